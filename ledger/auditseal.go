package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// The audit trail (audit_log, written by access.Record in the transaction of each change) is
// sealed by the same job and verified by the same `tandem verify` as the ledger, in a chain of
// its own (audit_seal, migrations/012): each sealed line's link is SHA-256(previous link ||
// canonical encoding of the line), in the order the sealer took the lines. The ledger package
// reads the table by name only; it imports nothing of access.

// auditSealVersion starts every audit line's canonical encoding.
const auditSealVersion = "tandem-audit-seal-v1"

// auditLine is an audit_log row as sealed: the columns every line has when it is inserted.
// Columns added later (a count of folded repeats, say) are not sealed: a later change to them
// is not a rewrite of what happened.
type auditLine struct {
	ID        int64
	At        time.Time
	Actor     string
	TokenID   *string
	Role      *string
	PersonID  *string
	Action    string
	Record    string
	Outcome   string
	Before    *string // JSON
	After     *string // JSON
	Detail    string
	RequestID string
}

// auditColumns reads an auditLine; prefix is the table's alias with its dot.
func auditColumns(prefix string) string {
	p := prefix
	return p + "id, " + p + "at, " + p + "actor, " + p + "token_id::text, " + p + "role, " + p + "person_id, " + p + "action, " +
		p + "record, " + p + "outcome, " + p + "before::text, " + p + "after::text, " + p + "detail, " + p + "request_id"
}

func (a *auditLine) dest() []any {
	return []any{&a.ID, &a.At, &a.Actor, &a.TokenID, &a.Role, &a.PersonID, &a.Action, &a.Record, &a.Outcome,
		&a.Before, &a.After, &a.Detail, &a.RequestID}
}

// appendAuditCanonical appends the seal's encoding of a line: netstrings of
//
//	"tandem-audit-seal-v1", id, at (RFC 3339, UTC, microseconds), actor, token id, role,
//	person id, action, record, outcome, before, after (JSON, keys sorted, no spaces),
//	detail, request id
//
// where a column that may be NULL is "" when NULL and "=" followed by its value otherwise,
// so NULL and an empty value differ.
func appendAuditCanonical(b []byte, a *auditLine) []byte {
	var num [40]byte
	opt := func(b []byte, s *string, json bool) []byte {
		if s == nil {
			return appendNetstring(b, "")
		}
		v := []byte(*s)
		if json {
			v = canonicalJSON(v)
		}
		return appendNetstring(b, append([]byte{'='}, v...))
	}
	b = appendNetstring(b, auditSealVersion)
	b = appendNetstring(b, strconv.AppendInt(num[:0], a.ID, 10))
	b = appendNetstring(b, appendTime(num[:0], a.At))
	b = appendNetstring(b, a.Actor)
	b = opt(b, a.TokenID, false)
	b = opt(b, a.Role, false)
	b = opt(b, a.PersonID, false)
	b = appendNetstring(b, a.Action)
	b = appendNetstring(b, a.Record)
	b = appendNetstring(b, a.Outcome)
	b = opt(b, a.Before, true)
	b = opt(b, a.After, true)
	b = appendNetstring(b, a.Detail)
	return appendNetstring(b, a.RequestID)
}

// auditLink computes a line's link from the previous one.
func auditLink(prev []byte, a *auditLine, scratch *[]byte) []byte {
	*scratch = appendAuditCanonical((*scratch)[:0], a)
	h := sha256.New()
	h.Write(prev)
	h.Write(*scratch)
	return h.Sum(nil)
}

// describe names a line for a mismatch.
func (a *auditLine) describe() string {
	return fmt.Sprintf("audit line %d (%s %s by %s, %s)", a.ID, a.Action, a.Record, a.Actor, a.At.UTC().Format(time.RFC3339))
}

// sealAudit extends the audit chain over every line committed so far, batch lines a
// transaction, and returns how many it sealed and the chain's head. Like Seal it reads the
// highest number handed out, then waits for the transactions in flight: each line drew its
// number after its transaction had an id (a trigger sees to it, migrations/012), so every
// line numbered up to it is then committed or never will be, and lines are sealed in number
// order without skipping one that commits late.
func (l *Ledger) sealAudit(ctx context.Context, batch int) (sealed int64, head []byte, err error) {
	var high int64
	var called bool
	if err := l.db.QueryRow(ctx, `SELECT last_value, is_called FROM audit_log_id_seq`).Scan(&high, &called); err != nil {
		return 0, nil, fmt.Errorf("seal audit trail: read sequence: %w", err)
	}
	if !called {
		high = 0
	}
	if err := l.waitInFlight(ctx); err != nil {
		return 0, nil, fmt.Errorf("seal audit trail: %w", err)
	}
	var scratch []byte
	for {
		var n int64
		err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, sealLock); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
			var headN, headID int64
			err := tx.QueryRow(ctx, `SELECT n, audit_id, hash FROM audit_seal ORDER BY n DESC LIMIT 1`).Scan(&headN, &headID, &head)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				head = genesis
			case err != nil:
				return fmt.Errorf("read head: %w", err)
			}
			rows, err := tx.Query(ctx, `SELECT `+auditColumns("a.")+` FROM audit_log a
				WHERE a.id > $1 AND a.id <= $2 ORDER BY a.id LIMIT $3`, headID, high, batch)
			if err != nil {
				return fmt.Errorf("read lines: %w", err)
			}
			var ns, ids []int64
			var prevs, hashes [][]byte
			var line auditLine
			prev := head
			if _, err := pgx.ForEachRow(rows, line.dest(), func() error {
				h := auditLink(prev, &line, &scratch)
				ns, ids = append(ns, headN+int64(len(ns))+1), append(ids, line.ID)
				prevs, hashes = append(prevs, prev), append(hashes, h)
				prev = h
				return nil
			}); err != nil {
				return fmt.Errorf("read lines: %w", err)
			}
			if len(ns) == 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_seal (n, audit_id, prev_hash, hash)
				SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])`, ns, ids, prevs, hashes); err != nil {
				return fmt.Errorf("store links: %w", err)
			}
			n, head = int64(len(ns)), prev
			return nil
		})
		if err != nil {
			return sealed, head, fmt.Errorf("seal audit trail: %w", err)
		}
		sealed += n
		if n < int64(batch) {
			return sealed, head, nil
		}
	}
}

// AuditHead is the head of the audit trail's chain.
type AuditHead struct {
	Lines   int64     `json:"lines"`    // lines sealed
	AuditID int64     `json:"audit_id"` // the last line sealed
	Hash    string    `json:"hash"`     // its link
	At      time.Time `json:"at"`       // when it was sealed
}

// auditStatus reads the head of the audit chain and counts the lines after it.
func (l *Ledger) auditStatus(ctx context.Context) (*AuditHead, int64, error) {
	var h AuditHead
	var hash []byte
	err := l.db.QueryRow(ctx, `SELECT n, audit_id, hash, sealed_at FROM audit_seal ORDER BY n DESC LIMIT 1`).Scan(&h.Lines, &h.AuditID, &hash, &h.At)
	var head *AuditHead
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, 0, fmt.Errorf("audit seal status: %w", err)
	default:
		h.Hash = hex.EncodeToString(hash)
		head = &h
	}
	var unsealed int64
	if err := l.db.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE id > $1`, h.AuditID).Scan(&unsealed); err != nil {
		return nil, 0, fmt.Errorf("audit seal status: count unsealed: %w", err)
	}
	return head, unsealed, nil
}

// verifyAudit recomputes the audit chain link by link and adds what it finds to rep: a line
// rewritten (audit_altered) or deleted (audit_missing) after it was sealed, links that do not
// follow each other (audit_chain), and a line that is not sealed although later ones are
// (audit_inserted).
func (l *Ledger) verifyAudit(ctx context.Context, rep *VerifyReport) error {
	rows, err := l.db.Query(ctx, `SELECT s.n, s.audit_id, s.prev_hash, s.hash, a.id IS NOT NULL, `+
		auditColumns("a.")+` FROM audit_seal s LEFT JOIN audit_log a ON a.id = s.audit_id ORDER BY s.n`)
	if err != nil {
		return fmt.Errorf("verify audit trail: %w", err)
	}
	var (
		n, auditID     int64
		prevH, hashH   []byte
		present        bool
		line           auditLine
		scratch        []byte
		prevStored     = genesis
		maxSealedID    int64
		id             *int64
		at             *time.Time
		actor, action  *string
		record, outcom *string
		detail, reqID  *string
	)
	dest := []any{&n, &auditID, &prevH, &hashH, &present, &id, &at, &actor, &line.TokenID, &line.Role, &line.PersonID,
		&action, &record, &outcom, &line.Before, &line.After, &detail, &reqID}
	if _, err := pgx.ForEachRow(rows, dest, func() error {
		rep.AuditLines++
		maxSealedID = max(maxSealedID, auditID)
		rep.AuditHeadHash = hex.EncodeToString(hashH)
		defer func() { prevStored = append(prevStored[:0:0], hashH...) }()
		if !bytes.Equal(prevH, prevStored) {
			rep.add(Mismatch{AuditID: auditID, Kind: "audit_chain",
				Detail: fmt.Sprintf("audit line %d: its stored previous link %s is not the link of the line sealed before it (%s) — the audit seal was edited",
					auditID, short(prevH), short(prevStored))})
		}
		if !present {
			rep.add(Mismatch{AuditID: auditID, Kind: "audit_missing",
				Detail: fmt.Sprintf("audit line %d was sealed but is missing — deleted after sealing", auditID)})
			return nil
		}
		line.ID, line.At, line.Actor, line.Action, line.Record, line.Outcome, line.Detail, line.RequestID =
			*id, *at, *actor, *action, *record, *outcom, *detail, *reqID
		if h := auditLink(prevH, &line, &scratch); !bytes.Equal(h, hashH) {
			rep.add(Mismatch{AuditID: auditID, Kind: "audit_altered",
				Detail: fmt.Sprintf("%s: hash differs — altered after sealing (sealed %s, recomputed %s)",
					line.describe(), hex.EncodeToString(hashH), hex.EncodeToString(h))})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("verify audit trail: %w", err)
	}
	rows, err = l.db.Query(ctx, `SELECT `+auditColumns("a.")+` FROM audit_log a
		WHERE a.id < $1 AND NOT EXISTS (SELECT 1 FROM audit_seal s WHERE s.audit_id = a.id) ORDER BY a.id`, maxSealedID)
	if err != nil {
		return fmt.Errorf("verify audit trail: unsealed lines: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, line.dest(), func() error {
		rep.add(Mismatch{AuditID: line.ID, Kind: "audit_inserted",
			Detail: fmt.Sprintf("%s is not sealed although later lines are — inserted after sealing", line.describe())})
		return nil
	}); err != nil {
		return fmt.Errorf("verify audit trail: unsealed lines: %w", err)
	}
	if err := l.db.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE id > $1`, maxSealedID).Scan(&rep.AuditUnsealed); err != nil {
		return fmt.Errorf("verify audit trail: count unsealed: %w", err)
	}
	return nil
}
