package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The seal (DESIGN.md §3) chains the ledger's entries in sequence order: each sealed entry's
// link is SHA-256(previous link || canonical encoding of the entry and its postings), the
// first entry's previous link being 32 zero bytes. Links are stored per entry
// (ledger_seal), so a verification names the first entry whose rows no longer hash to what
// was sealed, and the head of the chain is recorded in a checkpoint every time the sealer
// commits (ledger_seal_checkpoints), for auditors to keep elsewhere.
//
// The database refuses changes to entries and postings; the seal is for what bypasses the
// database's own rules: a superuser disabling triggers, a restored or edited backup, an
// export altered after it left.

// sealVersion starts every canonical encoding: a later change of the encoding gets a new
// version, and old links stay verifiable by the old one.
const sealVersion = "tandem-seal-v1"

// genesis is the previous link of the first sealed entry.
var genesis = make([]byte, sha256.Size)

// sealLock is the advisory lock a sealer holds while it extends the chain ("seal" in hex).
const sealLock int64 = 0x7365616c

// appendCanonical appends the seal's encoding of e: every field of the entry and of each of
// its postings, each as a netstring (its byte length in decimal, ':', the bytes, ','), so no
// two different entries encode alike whatever their text holds. The fields, in order:
//
//	"tandem-seal-v1", id (lower-case UUID), seq, kind, idempotency key ("" when none),
//	description, effective time and posting time (RFC 3339, UTC, microseconds),
//	metadata (JSON, keys sorted, no spaces, numbers as written), target id ("" when none),
//	the number of postings, then for each posting in line order:
//	line, account code, account type, phase, side, amount (canonicalAmount), currency.
//
// Everything in it is a column of a CSV or JSON Lines export, so verify recomputes the
// chain from a file as it does from the database; every column of an export that says
// something about the money is in it (account types included: the database refuses to
// change them, so a sealed entry's stay as sealed). Running balances are not: they are the
// account's, and ledger.Check recomputes them from postings.
func appendCanonical(b []byte, e *chainEntry) []byte {
	var num [40]byte
	b = appendNetstring(b, sealVersion)
	b = appendNetstring(b, e.ID)
	b = appendNetstring(b, strconv.AppendInt(num[:0], e.Seq, 10))
	b = appendNetstring(b, e.Kind)
	b = appendNetstring(b, e.Key)
	b = appendNetstring(b, e.Description)
	b = appendNetstring(b, appendTime(num[:0], e.EffectiveAt))
	b = appendNetstring(b, appendTime(num[:0], e.PostedAt))
	b = appendNetstring(b, canonicalJSON(e.Metadata))
	b = appendNetstring(b, e.TargetID)
	b = appendNetstring(b, strconv.AppendInt(num[:0], int64(len(e.Lines)), 10))
	for i := range e.Lines {
		l := &e.Lines[i]
		b = appendNetstring(b, strconv.AppendInt(num[:0], int64(l.Line), 10))
		b = appendNetstring(b, l.Account)
		b = appendNetstring(b, l.AccountType)
		b = appendNetstring(b, l.Phase)
		b = appendNetstring(b, l.Side)
		b = appendNetstring(b, l.Amount)
		b = appendNetstring(b, l.Currency)
	}
	return b
}

func appendNetstring[S ~string | ~[]byte](b []byte, s S) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	b = append(b, s...)
	return append(b, ',')
}

// link computes an entry's link from the previous one. scratch is reused between calls.
func link(prev []byte, e *chainEntry, scratch *[]byte) []byte {
	*scratch = appendCanonical((*scratch)[:0], e)
	h := sha256.New()
	h.Write(prev)
	h.Write(*scratch)
	return h.Sum(nil)
}

// appendTime writes a time as exports and the seal do: RFC 3339 in UTC with exactly six
// fractional digits, PostgreSQL's precision ("2026-11-22T12:00:00.000000Z"). Written by
// hand: time.Format was a tenth of an export's time.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

// appendDigits writes n with exactly width digits, zero-padded.
func appendDigits(b []byte, n, width int) []byte {
	var d [9]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, d[:width]...)
}

// canonicalAmount writes an amount with its currency's places ("12.50"), as FormatAmount
// does; an amount with more places than its currency allows, which only an edit behind the
// database's back can produce, keeps every significant place, so that it never rounds to
// the amount it replaced. Anything but a plain decimal (PostgreSQL prints numerics as
// plain decimals), or an amount of an unknown currency, is kept as written: an exponent in
// a damaged file must not make verify build a number of a billion digits.
func canonicalAmount(s, currency string) string {
	exp, ok := Exponent(currency)
	if !ok {
		return s
	}
	places := int(exp)
	neg := strings.HasPrefix(s, "-")
	intPart, frac, hasDot := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	if intPart == "" || !allDigits(intPart) || !allDigits(frac) || (hasDot && frac == "") {
		return s
	}
	if len(frac) == places && (len(intPart) == 1 || intPart[0] != '0') && !neg {
		return s // the usual case: already canonical
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	if len(frac) > places {
		frac = strings.TrimRight(frac, "0")
	}
	if len(frac) < places {
		frac += strings.Repeat("0", places-len(frac))
	}
	out := intPart
	if frac != "" {
		out += "." + frac
	}
	if neg && strings.Trim(out, "0.") != "" {
		out = "-" + out
	}
	return out
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// canonicalJSON is metadata in one spelling, defined here rather than by encoding/json's
// output (which has changed between Go releases) so that a link computed today verifies
// with any later build:
//
//   - no whitespace; object keys sorted by their bytes (decoded), the last of duplicate keys
//     kept (as jsonb keeps it); arrays in order;
//   - strings re-escaped: \" \\ \n \r \t, other characters below U+0020 as \u00XX
//     (lower-case hex), everything else as UTF-8 (invalid bytes as U+FFFD);
//   - numbers, true, false and null as written (PostgreSQL's jsonb already printed numbers
//     one way).
//
// Empty text and null are "{}". Text that is not one JSON value, which only a damaged
// export file holds, is kept as written.
func canonicalJSON(raw []byte) []byte {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return []byte("{}")
	}
	if string(t) == "{}" {
		return t
	}
	p := jsonCanon{in: t}
	out, ok := p.value(make([]byte, 0, len(t)), 0)
	if !ok {
		return t
	}
	p.space()
	if p.i != len(p.in) {
		return t
	}
	return out
}

// jsonCanon is canonicalJSON's parser: it writes each value's canonical form as it reads it.
type jsonCanon struct {
	in []byte
	i  int
}

// maxJSONDepth bounds nesting, so a hostile file cannot exhaust the stack.
const maxJSONDepth = 200

func (p *jsonCanon) space() {
	for p.i < len(p.in) && (p.in[p.i] == ' ' || p.in[p.i] == '\t' || p.in[p.i] == '\n' || p.in[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonCanon) value(out []byte, depth int) ([]byte, bool) {
	p.space()
	if p.i >= len(p.in) || depth > maxJSONDepth {
		return out, false
	}
	switch c := p.in[p.i]; {
	case c == '{':
		return p.object(out, depth)
	case c == '[':
		p.i++
		out = append(out, '[')
		p.space()
		if p.i < len(p.in) && p.in[p.i] == ']' {
			p.i++
			return append(out, ']'), true
		}
		for n := 0; ; n++ {
			if n > 0 {
				out = append(out, ',')
			}
			var ok bool
			if out, ok = p.value(out, depth+1); !ok {
				return out, false
			}
			p.space()
			if p.i >= len(p.in) {
				return out, false
			}
			if p.in[p.i] == ']' {
				p.i++
				return append(out, ']'), true
			}
			if p.in[p.i] != ',' {
				return out, false
			}
			p.i++
		}
	case c == '"':
		str, ok := p.str()
		if !ok {
			return out, false
		}
		return appendCanonicalString(out, str), true
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(p.in[p.i:], []byte(lit)) {
				p.i += len(lit)
				return append(out, lit...), true
			}
		}
		return out, false
	default:
		start := p.i
		if !p.number() {
			return out, false
		}
		return append(out, p.in[start:p.i]...), true
	}
}

// object reads an object's members, then writes them sorted by key.
func (p *jsonCanon) object(out []byte, depth int) ([]byte, bool) {
	p.i++ // '{'
	type member struct {
		key string
		val []byte
	}
	var members []member
	p.space()
	if p.i < len(p.in) && p.in[p.i] == '}' {
		p.i++
		return append(out, '{', '}'), true
	}
	for {
		p.space()
		if p.i >= len(p.in) || p.in[p.i] != '"' {
			return out, false
		}
		key, ok := p.str()
		if !ok {
			return out, false
		}
		p.space()
		if p.i >= len(p.in) || p.in[p.i] != ':' {
			return out, false
		}
		p.i++
		val, ok := p.value(nil, depth+1)
		if !ok {
			return out, false
		}
		members = append(members, member{key, val})
		p.space()
		if p.i >= len(p.in) {
			return out, false
		}
		if p.in[p.i] == '}' {
			p.i++
			break
		}
		if p.in[p.i] != ',' {
			return out, false
		}
		p.i++
	}
	// Sorted by key, stably, so that of duplicate keys the last one read is last; it wins.
	slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	out = append(out, '{')
	n := 0
	for i, m := range members {
		if i+1 < len(members) && members[i+1].key == m.key {
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = appendCanonicalString(out, m.key)
		out = append(out, ':')
		out = append(out, m.val...)
	}
	return append(out, '}'), true
}

// str reads a JSON string and returns its decoded text.
func (p *jsonCanon) str() (string, bool) {
	p.i++ // '"'
	start := p.i
	for p.i < len(p.in) && p.in[p.i] != '"' && p.in[p.i] != '\\' && p.in[p.i] >= 0x20 {
		p.i++
	}
	if p.i < len(p.in) && p.in[p.i] == '"' { // no escapes: the common case
		s := string(p.in[start:p.i])
		p.i++
		return s, true
	}
	var b []byte
	b = append(b, p.in[start:p.i]...)
	for p.i < len(p.in) {
		c := p.in[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b), true
		case c < 0x20:
			return "", false
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.in) {
			return "", false
		}
		esc := p.in[p.i+1]
		p.i += 2
		switch esc {
		case '"', '\\', '/':
			b = append(b, esc)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(utf8.RuneError)
				if p.i+1 < len(p.in) && p.in[p.i] == '\\' && p.in[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					if lo, ok := p.hex4(); ok && utf16.DecodeRune(r, lo) != utf8.RuneError {
						r2 = utf16.DecodeRune(r, lo)
					} else {
						p.i = save
					}
				}
				r = r2
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (p *jsonCanon) hex4() (rune, bool) {
	if p.i+4 > len(p.in) {
		return 0, false
	}
	var r rune
	for _, c := range p.in[p.i : p.i+4] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	p.i += 4
	return r, true
}

// number reads a JSON number (RFC 8259 grammar).
func (p *jsonCanon) number() bool {
	digits := func() int {
		n := 0
		for p.i < len(p.in) && p.in[p.i] >= '0' && p.in[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.in) && p.in[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.in) && p.in[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return false
	}
	if p.i < len(p.in) && p.in[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return false
		}
	}
	if p.i < len(p.in) && (p.in[p.i] == 'e' || p.in[p.i] == 'E') {
		p.i++
		if p.i < len(p.in) && (p.in[p.i] == '+' || p.in[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// appendCanonicalString writes s as canonicalJSON's strings are written.
func appendCanonicalString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// SealOptions tune Seal.
type SealOptions struct {
	// BatchSize is how many entries each transaction seals (default 5000): each commits
	// its links and a checkpoint, so a long first seal makes progress that survives a crash.
	BatchSize int
	// ProgressFunc, when set, is called after each batch with the entries sealed so far.
	ProgressFunc func(sealed int64)
}

// SealResult is what one Seal call did.
type SealResult struct {
	Sealed   int64  `json:"sealed"`    // entries sealed by this call
	HeadSeq  int64  `json:"head_seq"`  // the last sealed entry, by this call or before
	HeadHash string `json:"head_hash"` // its link
	Through  int64  `json:"through"`   // final history reached up to this sequence number
	// AuditSealed counts the audit trail's lines this call sealed; AuditHeadHash is the
	// link of the last line sealed (by this call or before), the audit chain's head.
	AuditSealed   int64  `json:"audit_sealed"`
	AuditHeadHash string `json:"audit_head_hash,omitempty"`
}

// Seal extends the chain over every final entry not yet sealed, then the audit trail's
// chain over every committed audit line not yet sealed (auditseal.go) (see settle: entries still
// committing are waited for, so an entry that took its number early and committed late is
// sealed in its place, never skipped). It is idempotent and safe to run in several processes
// at once: each batch takes an advisory lock and continues from the head it reads under it,
// and the database refuses a link that does not extend the head (migrations/006_seal.sql).
// Each batch holds three of the pool's connections. Do not call it while holding an open
// write transaction of your own.
func (l *Ledger) Seal(ctx context.Context, opt SealOptions) (SealResult, error) {
	batch := opt.BatchSize
	if batch <= 0 {
		batch = 5000
	}
	final, _, err := l.settle(ctx)
	if err != nil {
		return SealResult{}, fmt.Errorf("seal: %w", err)
	}
	res := SealResult{Through: final}
	var scratch []byte
	for {
		n, headSeq, headHash, err := l.sealBatch(ctx, final, batch, &scratch)
		if err != nil {
			return res, fmt.Errorf("seal: %w", err)
		}
		res.Sealed += n
		res.HeadSeq, res.HeadHash = headSeq, hex.EncodeToString(headHash)
		if n > 0 && opt.ProgressFunc != nil {
			opt.ProgressFunc(res.Sealed)
		}
		if n < int64(batch) {
			break
		}
	}
	n, head, err := l.sealAudit(ctx, batch)
	res.AuditSealed = n
	if len(head) > 0 && !bytes.Equal(head, genesis) {
		res.AuditHeadHash = hex.EncodeToString(head)
	}
	if err != nil {
		return res, fmt.Errorf("seal: %w", err)
	}
	return res, nil
}

// sealBatch seals up to limit entries after the head, up to final, in one transaction.
func (l *Ledger) sealBatch(ctx context.Context, final int64, limit int, scratch *[]byte) (int64, int64, []byte, error) {
	var (
		sealed   int64
		headSeq  int64
		headHash []byte
	)
	err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, sealLock); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		var entries int64
		err := tx.QueryRow(ctx, `SELECT s.seq, s.hash, coalesce(c.entries, 0) FROM ledger_seal s
			LEFT JOIN ledger_seal_checkpoints c ON c.seq = s.seq ORDER BY s.seq DESC LIMIT 1`).Scan(&headSeq, &headHash, &entries)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			headSeq, headHash = 0, genesis
		case err != nil:
			return fmt.Errorf("read head: %w", err)
		case entries == 0: // every batch leaves a checkpoint at its head; count if one is missing
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM ledger_seal`).Scan(&entries); err != nil {
				return fmt.Errorf("count links: %w", err)
			}
		}
		if headSeq >= final {
			return nil
		}
		var seqs []int64
		var ids []pgtype.UUID // not uuid.UUID: its driver.Valuer went through text, a third of the time
		var prevs, hashes [][]byte
		prev := headHash
		// The batch ends at the limit-th entry after the head, or at final.
		through := final
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), $2) FROM (SELECT seq FROM ledger_entries
			WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3) b`, headSeq, final, limit).Scan(&through); err != nil {
			return fmt.Errorf("bound the batch: %w", err)
		}
		err = l.streamEntries(ctx, selection{after: headSeq, through: through, noLinks: true}, nil, func(e *chainEntry) error {
			h := link(prev, e, scratch)
			id, err := uuid.Parse(e.ID)
			if err != nil {
				return err
			}
			seqs, prevs, hashes = append(seqs, e.Seq), append(prevs, prev), append(hashes, h)
			ids = append(ids, pgtype.UUID{Bytes: id, Valid: true})
			prev = h
			return nil
		})
		if err != nil {
			return err
		}
		if len(seqs) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ledger_seal (seq, entry_id, prev_hash, hash)
			SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bytea[], $4::bytea[])`, seqs, ids, prevs, hashes); err != nil {
			return fmt.Errorf("store links: %w", translate(err))
		}
		sealed = int64(len(seqs))
		headSeq, headHash = seqs[len(seqs)-1], prev
		if _, err := tx.Exec(ctx, `INSERT INTO ledger_seal_checkpoints (seq, entry_id, hash, entries) VALUES ($1, $2, $3, $4)`,
			headSeq, ids[len(ids)-1], headHash, entries+sealed); err != nil {
			return fmt.Errorf("store checkpoint: %w", translate(err))
		}
		return nil
	})
	return sealed, headSeq, headHash, err
}

// Checkpoint is the head of the chain when a sealer committed.
type Checkpoint struct {
	Seq     int64     `json:"seq"`
	EntryID string    `json:"entry_id"`
	Hash    string    `json:"hash"`
	Entries int64     `json:"entries"` // entries sealed up to and including Seq
	At      time.Time `json:"at"`
}

// Verification is a recorded verification of the database.
type Verification struct {
	ID           int64     `json:"id"`
	At           time.Time `json:"at"`
	Actor        string    `json:"actor"`
	OK           bool      `json:"ok"`
	Entries      int64     `json:"entries"`
	HeadSeq      int64     `json:"head_seq"`
	Problems     int64     `json:"problems"`
	FirstProblem string    `json:"first_problem,omitempty"`
	AuditLines   int64     `json:"audit_lines"` // audit lines recomputed
	DurationMS   int64     `json:"duration_ms"` // how long it took, in milliseconds
}

// Duration writes DurationMS in seconds to the hundredth, rounded half up ("0.03 s"), in
// integer arithmetic.
func (v Verification) Duration() string {
	cs := (v.DurationMS + 5) / 10
	return fmt.Sprintf("%d.%02d s", cs/100, cs%100)
}

// SealStatus is where the seal stands.
type SealStatus struct {
	// Head is the last checkpoint: the last sealed entry, its link and how many are sealed.
	Head *Checkpoint `json:"head,omitempty"`
	// Unsealed counts the entries numbered after the head: not sealed yet (the seal job
	// runs every minute by default).
	Unsealed int64 `json:"unsealed_entries"`
	// LastVerification is the latest verification of the database, if any.
	LastVerification *Verification `json:"last_verification,omitempty"`
	// AuditHead is the audit trail's chain's head; AuditUnsealed counts the lines after it.
	AuditHead     *AuditHead `json:"audit_head,omitempty"`
	AuditUnsealed int64      `json:"unsealed_audit_lines"`
}

// SealStatus reads the head of the chain, the entries after it and the last verification.
func (l *Ledger) SealStatus(ctx context.Context) (SealStatus, error) {
	var st SealStatus
	var c Checkpoint
	var id uuid.UUID
	var hash []byte
	err := l.db.QueryRow(ctx, `SELECT seq, entry_id, hash, entries, at FROM ledger_seal_checkpoints ORDER BY seq DESC LIMIT 1`).
		Scan(&c.Seq, &id, &hash, &c.Entries, &c.At)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("seal status: %w", err)
	default:
		c.EntryID, c.Hash = id.String(), hex.EncodeToString(hash)
		st.Head = &c
	}
	if err := l.db.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE seq > $1`, c.Seq).Scan(&st.Unsealed); err != nil {
		return st, fmt.Errorf("seal status: count unsealed: %w", err)
	}
	var v Verification
	// Rows recorded before duration_ms (migrations/012) kept seconds.
	err = l.db.QueryRow(ctx, `SELECT id, at, actor, ok, entries, head_seq, problems, first_problem,
			coalesce(audit_lines, 0), coalesce(duration_ms, round(seconds * 1000)::bigint)
		FROM ledger_seal_verifications ORDER BY id DESC LIMIT 1`).
		Scan(&v.ID, &v.At, &v.Actor, &v.OK, &v.Entries, &v.HeadSeq, &v.Problems, &v.FirstProblem, &v.AuditLines, &v.DurationMS)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("seal status: last verification: %w", err)
	default:
		st.LastVerification = &v
	}
	if st.AuditHead, st.AuditUnsealed, err = l.auditStatus(ctx); err != nil {
		return st, err
	}
	return st, nil
}

// ErrSealBroken: a verification found entries that do not match their seal.
var ErrSealBroken = errors.New("the seal does not verify")

// Mismatch is one thing a verification found wrong.
type Mismatch struct {
	EntryID string `json:"entry_id,omitempty"`
	Seq     int64  `json:"seq,omitempty"`
	AuditID int64  `json:"audit_id,omitempty"` // an audit line's (kinds audit_*)
	// Kind is machine-readable: altered (the entry no longer hashes to its link), missing
	// (a sealed entry is gone), replaced (another entry holds a sealed number), inserted (an
	// unsealed entry among sealed ones), chain (links do not follow each other), checkpoint,
	// malformed (a row of an export file that cannot be read as an entry), unlinked (an
	// export file's entry without links although the file says it was sealed), scope (a file
	// that says it is filtered, verified as a whole export); and for the audit trail
	// (database verifications): audit_altered, audit_missing, audit_inserted, audit_chain.
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func (m Mismatch) String() string { return m.Detail }

// maxReported bounds the mismatches a report lists; it counts them all.
const maxReported = 20

// VerifyReport is the outcome of a verification.
type VerifyReport struct {
	Source string `json:"source"` // "database", or the export file's format
	// Entries is how many sealed entries had their links recomputed.
	Entries int64 `json:"entries"`
	// Unsealed counts entries after the sealed head (database) or without links (file):
	// nothing to check them against yet.
	Unsealed    int64 `json:"unsealed"`
	Checkpoints int64 `json:"checkpoints,omitempty"`
	// HeadSeq and HeadHash are the last sealed entry checked and its link.
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash,omitempty"`
	// Scope is an export file's export_scope. Partial is true when the file was filtered:
	// each entry is checked against its recorded previous link, but whether the chain runs
	// unbroken could only be checked between entries that follow each other in the file
	// (Linked of them); Gaps counts the places where the file skips part of the chain.
	Scope   string `json:"scope,omitempty"`
	Partial bool   `json:"partial,omitempty"`
	Linked  int64  `json:"linked,omitempty"`
	Gaps    int64  `json:"gaps,omitempty"`
	// SealedThrough is an export file's sealed_through: the last entry sealed when the
	// export started. Every entry of the file numbered up to it must carry its links.
	SealedThrough int64 `json:"sealed_through,omitempty"`
	// Problems lists the first mismatches in sequence order; ProblemCount counts them all.
	Problems     []Mismatch    `json:"problems"`
	ProblemCount int64         `json:"problem_count"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	// Verification is the recorded row (database verifications).
	Verification *Verification `json:"verification,omitempty"`
	// AuditLines is how many sealed audit lines had their links recomputed (database), up
	// to the audit chain's head AuditHeadHash; AuditUnsealed counts the lines after it.
	AuditLines    int64  `json:"audit_lines,omitempty"`
	AuditHeadHash string `json:"audit_head_hash,omitempty"`
	AuditUnsealed int64  `json:"audit_unsealed,omitempty"`
}

// OK reports whether nothing was found wrong.
func (r *VerifyReport) OK() bool { return r.ProblemCount == 0 }

// Err is nil when the seal verifies, else ErrSealBroken with the first mismatch.
func (r *VerifyReport) Err() error {
	if r.OK() {
		return nil
	}
	more := ""
	if r.ProblemCount > 1 {
		more = fmt.Sprintf(" (and %d more)", r.ProblemCount-1)
	}
	return fmt.Errorf("%w: %s%s", ErrSealBroken, r.Problems[0].Detail, more)
}

func (r *VerifyReport) add(m Mismatch) {
	r.ProblemCount++
	if len(r.Problems) < maxReported {
		r.Problems = append(r.Problems, m)
	}
}

// VerifyProgress is how far a verification got.
type VerifyProgress struct {
	Entries int64 // checked so far
	Total   int64 // entries to check, when known (database); 0 for a file
	Elapsed time.Duration
	Done    bool
}

// VerifyOptions tune Verify and VerifyExport.
type VerifyOptions struct {
	// Actor is recorded with a verification of the database (e.g. "cli:alice",
	// "token:<id> (auditor)"). Empty records "unknown".
	Actor string
	// Partial (VerifyExport) accepts a filtered export: the auditor expects one, so gaps
	// in the chain where the filter left entries out are counted, not reported. Without it a
	// file must be a whole export, unbroken from the first entry; a file whose rows claim a
	// filtered scope is a mismatch (the scope column is not sealed: relabelling a whole
	// export must not turn a removed entry into a gap).
	Partial bool
	// ProgressFunc, when set, is called about every ProgressInterval (default 1s) and at
	// the end.
	ProgressFunc     func(VerifyProgress)
	ProgressInterval time.Duration
}

// progressor calls a ProgressFunc at most every interval.
type progressor struct {
	fn    func(VerifyProgress)
	every time.Duration
	start time.Time
	next  time.Time
	total int64
}

func newProgressor(opt VerifyOptions, total int64) *progressor {
	every := opt.ProgressInterval
	if every <= 0 {
		every = time.Second
	}
	now := time.Now()
	return &progressor{fn: opt.ProgressFunc, every: every, start: now, next: now.Add(every), total: total}
}

func (p *progressor) tick(n int64, done bool) {
	if p.fn == nil || (!done && (n%256 != 0 || time.Now().Before(p.next))) {
		return
	}
	p.next = time.Now().Add(p.every)
	p.fn(VerifyProgress{Entries: n, Total: p.total, Elapsed: time.Since(p.start), Done: done})
}

// sealLink is a stored link.
type sealLink struct {
	seq     int64
	entryID string
	prev    []byte
	hash    []byte
}

// linkReader streams the stored links in sequence order, up to the head, on a connection of
// its own beside the entries' two (one query: paging it went through generic plans that
// scanned the table for every page).
type linkReader struct {
	rows pgx.Rows
	cur  sealLink
}

func (l *Ledger) readLinks(ctx context.Context, head int64) (*linkReader, func(), error) {
	conn, err := l.db.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read links: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT seq, entry_id, prev_hash, hash FROM ledger_seal WHERE seq <= $1 ORDER BY seq`,
		pgx.QueryResultFormats{pgx.BinaryFormatCode}, head)
	if err != nil {
		conn.Release()
		return nil, nil, fmt.Errorf("read links: %w", err)
	}
	return &linkReader{rows: rows}, func() { rows.Close(); conn.Release() }, nil
}

// next returns the next link, nil after the last. The link is valid until the next call.
func (r *linkReader) next() (*sealLink, error) {
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return nil, fmt.Errorf("read links: %w", err)
		}
		return nil, nil
	}
	v := r.rows.RawValues()
	if len(v) != 4 || len(v[0]) != 8 || len(v[1]) != 16 {
		return nil, errors.New("read links: unexpected seq or entry_id value")
	}
	r.cur = sealLink{seq: int64(binary.BigEndian.Uint64(v[0])), entryID: uuid.UUID(v[1]).String(),
		prev: append([]byte(nil), v[2]...), hash: append([]byte(nil), v[3]...)}
	return &r.cur, nil
}

// Verify recomputes the chain from the first sealed entry to the head and compares every
// link, and every checkpoint, with what is stored. It names each entry that no longer hashes
// to its link ("altered after sealing"), a sealed entry that is gone, an entry that took a
// sealed number or slipped in among sealed ones, and links or checkpoints that do not follow
// the chain. The result is recorded (ledger_seal_verifications) for the seal status. A
// broken seal is a report with problems, not an error: the error is for failing to verify.
// It holds three of the pool's connections while it runs.
func (l *Ledger) Verify(ctx context.Context, opt VerifyOptions) (VerifyReport, error) {
	start := time.Now()
	rep := VerifyReport{Source: "database", Problems: []Mismatch{}}
	var head int64
	if err := l.db.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM ledger_seal`).Scan(&head); err != nil {
		return rep, fmt.Errorf("verify: read head: %w", err)
	}
	var total int64
	if err := l.db.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE seq <= $1`, head).Scan(&total); err != nil {
		return rep, fmt.Errorf("verify: count entries: %w", err)
	}
	prog := newProgressor(opt, total)
	links, closeLinks, err := l.readLinks(ctx, head)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	defer closeLinks()
	// Each entry is checked against the stored link before it (prevStored), not against a
	// chain recomputed from the genesis: after an altered entry that chain matches nothing,
	// and each later altered entry could not be told apart. Links that do not follow each
	// other are a problem of their own ("chain"), so nothing escapes either way.
	prevStored := genesis
	var scratch []byte
	var checked int64
	// cur is the next stored link; a copy, since the reader reuses its own.
	var cur *sealLink
	advance := func() error {
		next, err := links.next()
		if next != nil {
			c := *next
			next = &c
		}
		cur = next
		return err
	}
	if err := advance(); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	// missing reports the links before seq whose entries are gone.
	missing := func(seq int64) error {
		for cur != nil && cur.seq < seq {
			rep.add(Mismatch{EntryID: cur.entryID, Seq: cur.seq, Kind: "missing",
				Detail: fmt.Sprintf("entry %s (seq %d) was sealed but is missing — deleted after sealing", cur.entryID, cur.seq)})
			prevStored = cur.hash
			if err := advance(); err != nil {
				return err
			}
		}
		return nil
	}
	err = l.streamEntries(ctx, selection{through: head}, nil, func(e *chainEntry) error {
		if err := missing(e.Seq); err != nil {
			return err
		}
		checked++
		prog.tick(checked, false)
		if cur == nil || cur.seq != e.Seq {
			rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "inserted",
				Detail: fmt.Sprintf("entry %s (seq %d) is not sealed although later entries are — inserted after sealing", e.ID, e.Seq)})
			return nil
		}
		s := cur
		if err := advance(); err != nil {
			return err
		}
		rep.Entries++
		rep.HeadSeq, rep.HeadHash = s.seq, hex.EncodeToString(s.hash)
		defer func() { prevStored = s.hash }()
		if s.entryID != e.ID {
			rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "replaced",
				Detail: fmt.Sprintf("entry %s (seq %d) holds a number sealed for entry %s — replaced after sealing", e.ID, e.Seq, s.entryID)})
			return nil
		}
		if !bytes.Equal(s.prev, prevStored) {
			rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "chain",
				Detail: fmt.Sprintf("entry %s (seq %d): its stored previous link %s is not the link of the sealed entry before it (%s) — the seal was edited",
					e.ID, e.Seq, short(s.prev), short(prevStored))})
		}
		if h := link(s.prev, e, &scratch); !bytes.Equal(h, s.hash) {
			rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "altered",
				Detail: fmt.Sprintf("entry %s (seq %d): hash differs — altered after sealing (sealed %s, recomputed %s)",
					e.ID, e.Seq, hex.EncodeToString(s.hash), hex.EncodeToString(h))})
		}
		return nil
	})
	if err == nil {
		err = missing(head + 1)
	}
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	// Checkpoints: each must be the stored link at its number, and count the links up to it.
	// The links themselves were just checked against the recomputed chain.
	rows, err := l.db.Query(ctx, `WITH counted AS (
			SELECT seq, hash, row_number() OVER (ORDER BY seq) AS n FROM ledger_seal WHERE seq <= $1)
		SELECT c.seq, c.entry_id, c.hash, c.entries, s.hash, coalesce(s.n, 0)
		FROM ledger_seal_checkpoints c LEFT JOIN counted s ON s.seq = c.seq
		WHERE c.seq <= $1 ORDER BY c.seq`, head)
	if err != nil {
		return rep, fmt.Errorf("verify: read checkpoints: %w", err)
	}
	var (
		cseq, centries, count int64
		cid                   uuid.UUID
		chash, stored         []byte
	)
	if _, err := pgx.ForEachRow(rows, []any{&cseq, &cid, &chash, &centries, &stored, &count}, func() error {
		rep.Checkpoints++
		switch {
		case !bytes.Equal(chash, stored):
			rep.add(Mismatch{EntryID: cid.String(), Seq: cseq, Kind: "checkpoint",
				Detail: fmt.Sprintf("checkpoint at entry %s (seq %d): head %s differs from the entry's link %s", cid, cseq, short(chash), short(stored))})
		case centries != count:
			rep.add(Mismatch{EntryID: cid.String(), Seq: cseq, Kind: "checkpoint",
				Detail: fmt.Sprintf("checkpoint at entry %s (seq %d) counted %d sealed entries, the seal now holds %d up to it", cid, cseq, centries, count)})
		}
		return nil
	}); err != nil {
		return rep, fmt.Errorf("verify: read checkpoints: %w", err)
	}
	if err := l.db.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE seq > $1`, head).Scan(&rep.Unsealed); err != nil {
		return rep, fmt.Errorf("verify: count unsealed: %w", err)
	}
	sortMismatches(rep.Problems)
	// The audit trail's after the entries', in its own order.
	if err := l.verifyAudit(ctx, &rep); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	rep.Elapsed = time.Since(start)
	prog.tick(checked, true)
	v, err := l.recordVerification(ctx, opt.Actor, &rep)
	if err != nil {
		return rep, err
	}
	rep.Verification = &v
	return rep, nil
}

// sortMismatches orders the listed mismatches by sequence number (checkpoints are found
// after the entries).
func sortMismatches(ms []Mismatch) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].Seq < ms[j-1].Seq; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

func (l *Ledger) recordVerification(ctx context.Context, actor string, rep *VerifyReport) (Verification, error) {
	if actor == "" {
		actor = "unknown"
	}
	if len(actor) > 300 {
		actor = actor[:300]
	}
	v := Verification{Actor: actor, OK: rep.OK(), Entries: rep.Entries, HeadSeq: rep.HeadSeq, Problems: rep.ProblemCount,
		AuditLines: rep.AuditLines, DurationMS: rep.Elapsed.Milliseconds()}
	if !rep.OK() {
		v.FirstProblem = rep.Problems[0].Detail
	}
	err := l.db.QueryRow(context.WithoutCancel(ctx), `INSERT INTO ledger_seal_verifications
		(actor, ok, entries, head_seq, problems, first_problem, audit_lines, duration_ms)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, at`,
		v.Actor, v.OK, v.Entries, v.HeadSeq, v.Problems, v.FirstProblem, v.AuditLines, v.DurationMS).
		Scan(&v.ID, &v.At)
	if err != nil {
		return v, fmt.Errorf("verify: record the result: %w", err)
	}
	return v, nil
}

// short abbreviates a link for messages.
func short(h []byte) string {
	s := hex.EncodeToString(h)
	if len(s) > 16 {
		return s[:16] + "…"
	}
	if s == "" {
		return "(none)"
	}
	return s
}

// VerifyExport recomputes the chain from a CSV or JSON Lines export (the format is read
// from the content) and compares it with the links the file holds. Each sealed entry must
// hash, from its recorded previous link, to its recorded link: an altered row names its
// entry. Unless opt.Partial, the file must be a whole export: its links must follow each
// other from the genesis, so a removed or reordered entry is found too, and a file whose
// export_scope column (which no link covers) says it is filtered is a "scope" mismatch.
// With opt.Partial continuity can only be checked between entries that follow each other in
// the file (the report says so: Partial, Linked, Gaps). Entries without links (not sealed
// when exported) are counted, not checked; but one numbered up to the file's sealed_through
// (the last entry sealed when the export started) is an "unlinked" mismatch: its links were
// removed. A file that is not an export is an error wrapping ErrExportFile; a row that
// cannot be read as an entry (or an entry of more than MaxPostings rows) is a "malformed"
// mismatch.
//
// The file alone cannot show that nobody rewrote every link after an altered row, or cut
// the file short and lowered sealed_through: compare HeadSeq and HeadHash with the
// database's (tandem verify) or with a checkpoint kept elsewhere.
func VerifyExport(ctx context.Context, r io.Reader, opt VerifyOptions) (VerifyReport, error) {
	start := time.Now()
	rows, format, err := newRowReader(r)
	if err != nil {
		return VerifyReport{}, err
	}
	rep := VerifyReport{Source: string(format), Problems: []Mismatch{}, Partial: opt.Partial}
	prog := newProgressor(opt, 0)
	var (
		scratch   []byte
		e         chainEntry
		have      bool
		lastSeq   int64
		lastLink  []byte // the link of the previous entry in the file, if it was sealed
		first     = true
		unsealedN int64
		entries   int64
	)
	check := func() {
		entries++
		prog.tick(entries, false)
		defer func() { first = false; lastSeq = e.Seq }()
		if !first && e.Seq <= lastSeq {
			rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "chain",
				Detail: fmt.Sprintf("entry %s (seq %d) comes after seq %d — rows out of order", e.ID, e.Seq, lastSeq)})
		}
		if e.Hash == nil {
			lastLink = nil
			if e.Seq <= rep.SealedThrough {
				rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "unlinked",
					Detail: fmt.Sprintf("entry %s (seq %d) has no link although the export says entries through seq %d were sealed — its links were removed from the file",
						e.ID, e.Seq, rep.SealedThrough)})
				return
			}
			unsealedN++
			return
		}
		if unsealedN > 0 && !rep.Partial {
			rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "inserted",
				Detail: fmt.Sprintf("entry %s (seq %d) is sealed but follows entries without links — rows inserted or edited", e.ID, e.Seq)})
		}
		rep.Entries++
		h := link(e.PrevHash, &e, &scratch)
		if !bytes.Equal(h, e.Hash) {
			rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "altered",
				Detail: fmt.Sprintf("entry %s (seq %d): hash differs — altered after sealing or in the file (recorded %s, recomputed %s)",
					e.ID, e.Seq, hex.EncodeToString(e.Hash), hex.EncodeToString(h))})
		}
		switch {
		case rep.Partial && ((lastLink != nil && bytes.Equal(e.PrevHash, lastLink)) || (first && bytes.Equal(e.PrevHash, genesis))):
			rep.Linked++
		case rep.Partial:
			rep.Gaps++
		default:
			want := lastLink
			if first {
				want = genesis
			}
			if !bytes.Equal(e.PrevHash, want) {
				what := "the link of the entry before it in the file"
				if first {
					what = "the genesis (an export of everything starts at the first entry)"
				}
				rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "chain",
					Detail: fmt.Sprintf("entry %s (seq %d): its previous link %s is not %s — an entry before it was removed, reordered or altered",
						e.ID, e.Seq, short(e.PrevHash), what)})
			} else {
				rep.Linked++
			}
		}
		lastLink = e.Hash
		rep.HeadSeq, rep.HeadHash = e.Seq, hex.EncodeToString(e.Hash)
	}
	var rowErr string // a problem with the current entry's rows
	readFirst := false
	for {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		row, err := rows.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rep, err
		}
		if !readFirst {
			readFirst = true
			rep.Scope, rep.SealedThrough = row.ExportScope, row.SealedThrough
			if row.ExportScope != "all" && !opt.Partial {
				rep.add(Mismatch{Kind: "scope",
					Detail: fmt.Sprintf("the file's rows say it is a filtered export (export_scope %q): it is not verifiable as a whole export — if a filtered export is what you expect, verify it as one (tandem verify --partial), which checks continuity only between entries that follow each other in it",
						truncate(row.ExportScope, 80))})
			}
		}
		// The file-wide columns must agree on every row: no link covers them.
		var disagree string
		if row.ExportScope != rep.Scope || row.SealedThrough != rep.SealedThrough {
			disagree = fmt.Sprintf("%s: export_scope or sealed_through differs from the file's first row", row.where)
		}
		if have && row.EntryID == e.ID && row.Seq == e.Seq {
			if msg := sameEntry(&e, row); msg != "" && rowErr == "" {
				rowErr = fmt.Sprintf("%s: %s", row.where, msg)
			}
			if disagree != "" && rowErr == "" {
				rowErr = disagree
			}
			rowErr = addLine(&e, row, rowErr)
			continue
		}
		if have {
			finish(&rep, &e, rowErr, check)
		}
		have, rowErr = true, ""
		e = chainEntry{Lines: e.Lines[:0]}
		rowErr = fillEntry(&e, row)
		if disagree != "" {
			rowErr = strings.TrimPrefix(rowErr+"; "+disagree, "; ")
		}
		rowErr = addLine(&e, row, rowErr)
	}
	if have {
		finish(&rep, &e, rowErr, check)
	}
	switch {
	case rep.HeadSeq > rep.SealedThrough:
		rep.add(Mismatch{Kind: "chain", Seq: rep.HeadSeq,
			Detail: fmt.Sprintf("the file's last sealed entry is seq %d, but its sealed_through says entries were sealed only through seq %d — the column was edited",
				rep.HeadSeq, rep.SealedThrough)})
	case !opt.Partial && rep.HeadSeq < rep.SealedThrough:
		rep.add(Mismatch{Kind: "missing", Seq: rep.SealedThrough,
			Detail: fmt.Sprintf("the export says entries through seq %d were sealed, but the file's last sealed entry is seq %d — entries at its end were removed",
				rep.SealedThrough, rep.HeadSeq)})
	}
	rep.Unsealed = unsealedN
	rep.Elapsed = time.Since(start)
	prog.tick(entries, true)
	sortMismatches(rep.Problems)
	return rep, nil
}

// finish checks a complete entry of a file, or reports why its rows are not one.
func finish(rep *VerifyReport, e *chainEntry, rowErr string, check func()) {
	if rowErr != "" {
		rep.add(Mismatch{EntryID: e.ID, Seq: e.Seq, Kind: "malformed",
			Detail: fmt.Sprintf("entry %s (seq %d): %s", e.ID, e.Seq, rowErr)})
	}
	check()
}

// fillEntry reads an entry's fields from its first row; it returns what is wrong, if anything.
func fillEntry(e *chainEntry, row *exportRow) string {
	e.Seq, e.Kind, e.Description, e.Metadata = row.Seq, row.Kind, row.Description, row.Metadata
	var problems []string
	id, err := uuid.Parse(row.EntryID)
	if err != nil {
		e.ID = row.EntryID
		problems = append(problems, fmt.Sprintf("entry_id %q is not a UUID", truncate(row.EntryID, 40)))
	} else {
		e.ID = id.String()
	}
	if row.IdempotencyKey != nil {
		e.Key = *row.IdempotencyKey
	}
	if row.TargetID != nil {
		e.TargetID = *row.TargetID
		if t, err := uuid.Parse(e.TargetID); err == nil {
			e.TargetID = t.String()
		}
	}
	for _, f := range []struct {
		name string
		src  string
		dst  *time.Time
	}{{"effective_at", row.EffectiveAt, &e.EffectiveAt}, {"posted_at", row.PostedAt, &e.PostedAt}} {
		t, err := time.Parse(time.RFC3339Nano, f.src)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %q is not an RFC 3339 time", f.name, truncate(f.src, 40)))
		}
		*f.dst = t
	}
	for _, f := range []struct {
		name string
		src  *string
		dst  *[]byte
	}{{"entry_hash", row.EntryHash, &e.Hash}, {"prev_hash", row.PrevHash, &e.PrevHash}} {
		if f.src == nil {
			continue
		}
		h, err := hex.DecodeString(*f.src)
		if err != nil || len(h) != sha256.Size {
			problems = append(problems, fmt.Sprintf("%s %q is not a SHA-256 in hex", f.name, truncate(*f.src, 70)))
			h = make([]byte, sha256.Size) // still sealed: its link cannot match
		}
		*f.dst = h
	}
	if (e.Hash == nil) != (e.PrevHash == nil) {
		problems = append(problems, "entry_hash and prev_hash must be both set or both empty")
		if e.Hash == nil {
			e.Hash = make([]byte, sha256.Size)
		} else {
			e.PrevHash = make([]byte, sha256.Size)
		}
	}
	return strings.Join(problems, "; ")
}

// addLine appends a row's posting to its entry: up to MaxPostings of them, which no entry
// of the ledger exceeds, so a hostile file cannot make verify hold one entry without bound.
func addLine(e *chainEntry, row *exportRow, rowErr string) string {
	if len(e.Lines) >= MaxPostings {
		if rowErr == "" {
			rowErr = fmt.Sprintf("%s: more than %d postings in one entry (the ledger allows at most %d)", row.where, MaxPostings, MaxPostings)
		}
		return rowErr
	}
	e.Lines = append(e.Lines, chainLine{Line: row.Line, Account: row.Account, AccountType: row.AccountType,
		Phase: row.Phase, Side: row.Side, Amount: canonicalAmount(row.Amount, row.Currency), Currency: row.Currency})
	return rowErr
}

// sameEntry says how a later row of an entry disagrees with its first, if it does.
func sameEntry(e *chainEntry, row *exportRow) string {
	var probe chainEntry
	fillEntry(&probe, row)
	switch {
	case probe.Kind != e.Kind, probe.Key != e.Key, probe.Description != e.Description,
		!probe.EffectiveAt.Equal(e.EffectiveAt), !probe.PostedAt.Equal(e.PostedAt), probe.TargetID != e.TargetID,
		!bytes.Equal(canonicalJSON(probe.Metadata), canonicalJSON(e.Metadata)),
		!bytes.Equal(probe.Hash, e.Hash), !bytes.Equal(probe.PrevHash, e.PrevHash):
		return "the rows of the entry disagree on its fields"
	}
	return ""
}
