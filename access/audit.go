package access

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Event is one line of the audit trail.
type Event struct {
	Actor     Principal
	Action    string // e.g. "ledger.entry.post"
	Record    string // what it acted on, e.g. "entry:<id>", "account:<code>"
	Denied    bool   // a refused attempt rather than a change
	Before    any    // the record before, where there was one
	After     any    // the record after
	Detail    string
	RequestID string
}

// Apply runs fn in one transaction on pool together with the audit line it returns, so that
// a change and its trail line commit together or not at all. fn returns an Event without
// Action when it changed nothing (an idempotent replay), and nothing is recorded. actor and
// requestID fill in the Event.
func Apply(ctx context.Context, pool *pgxpool.Pool, actor Principal, requestID string, fn func(tx pgx.Tx) (Event, error)) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		ev, err := fn(tx)
		if err != nil || ev.Action == "" {
			return err
		}
		ev.Actor, ev.RequestID = actor, requestID
		return Record(ctx, tx, ev)
	})
}

// Record appends ev to the audit trail on db — the transaction that makes the change, so
// that a change and its trail line commit or roll back together.
//
// No input can make a line fail: the texts (actor, record, detail, request id…) are stored
// as valid UTF-8 without NUL, whatever the caller passed. A refusal (Denied) that repeats
// one already recorded for the same token (or actor), action and record in the same minute
// counts on that line (repeats) rather than adding one, so a flood of refusals can neither
// fill the trail nor go unrecorded.
func Record(ctx context.Context, db DBTX, ev Event) error {
	for _, s := range []*string{&ev.Actor.Name, &ev.Actor.PersonID, &ev.Action, &ev.Record, &ev.Detail, &ev.RequestID} {
		*s = clean(*s)
	}
	before, err := jsonOrNil(ev.Before)
	if err != nil {
		return fmt.Errorf("audit %s: encode before: %w", ev.Action, err)
	}
	after, err := jsonOrNil(ev.After)
	if err != nil {
		return fmt.Errorf("audit %s: encode after: %w", ev.Action, err)
	}
	outcome := "ok"
	if ev.Denied {
		outcome = "denied"
	}
	var tokenID *string
	if ev.Actor.TokenID != "" {
		tokenID = &ev.Actor.TokenID
	}
	// A refusal folds with those of the same subject (token, else actor), action and record
	// in the same minute by the database's clock; a hash keeps the key short. The line's at
	// is the same clock reading as the key's minute, which audit_log_guard relies on (009).
	var fold string
	if ev.Denied {
		fold = "actor:" + ev.Actor.Name
		if tokenID != nil {
			fold = "token:" + *tokenID
		}
	}
	// A repeat's insert does nothing and audit_log_fold counts it on the first line (009).
	_, err = db.Exec(ctx, `WITH c AS (SELECT clock_timestamp() AS t),
		k AS (
			SELECT c.t, CASE WHEN $12::text <> '' THEN md5(concat_ws(E'\n', $12::text, $5::text, $6::text,
				to_char(date_trunc('minute', c.t AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:MI'))) END AS key FROM c),
		ins AS (
			INSERT INTO audit_log (at, actor, token_id, role, person_id, action, record, outcome, before, after, detail, request_id, fold_key)
			SELECT k.t, $1, $2, NULLIF($3, ''), NULLIF($4, ''), $5, $6, $7, $8, $9, $10, $11, k.key FROM k
			ON CONFLICT (fold_key) WHERE fold_key IS NOT NULL DO NOTHING
			RETURNING id)
		SELECT audit_log_fold(k.key, k.t) FROM k WHERE k.key IS NOT NULL AND NOT EXISTS (SELECT FROM ins)`,
		ev.Actor.Name, tokenID, string(ev.Actor.Role), ev.Actor.PersonID, ev.Action, ev.Record, outcome,
		before, after, ev.Detail, ev.RequestID, fold)
	if err != nil {
		return fmt.Errorf("audit %s: %w", ev.Action, err)
	}
	return nil
}

// clean makes s storable as PostgreSQL text: invalid UTF-8 becomes U+FFFD and NUL is
// written as the escape \x00.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", `\x00`)
}

// jsonOrNil encodes v for a jsonb column, which refuses NUL (\u0000): strings holding it
// are stored with the escape \x00 instead, as clean does.
func jsonOrNil(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil || !bytes.Contains(b, []byte(`\u0000`)) {
		return b, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, err
	}
	return json.Marshal(cleanJSON(generic))
}

func cleanJSON(v any) any {
	switch v := v.(type) {
	case string:
		return clean(v)
	case []any:
		for i := range v {
			v[i] = cleanJSON(v[i])
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[clean(k)] = cleanJSON(x)
		}
		return out
	}
	return v
}

// AuditLine is a stored audit event.
type AuditLine struct {
	ID        int64           `json:"id"`
	At        time.Time       `json:"at"`
	Actor     string          `json:"actor"`
	TokenID   string          `json:"token_id,omitempty"`
	Role      string          `json:"role,omitempty"`
	PersonID  string          `json:"person_id,omitempty"`
	Action    string          `json:"action"`
	Record    string          `json:"record"`
	Outcome   string          `json:"outcome"`
	Before    json.RawMessage `json:"before,omitempty"`
	After     json.RawMessage `json:"after,omitempty"`
	Detail    string          `json:"detail,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	// Repeats counts a refusal and its repeats within the minute (1 for every other line);
	// LastAt is the time of the latest repeat.
	Repeats int        `json:"repeats"`
	LastAt  *time.Time `json:"last_at,omitempty"`
}

// AuditFilter pages through the trail: lines with id > AfterID, oldest first.
type AuditFilter struct {
	AfterID int64
	Record  string // only lines about this record
	Limit   int    // default 100, at most 1000
}

// Audit lists the trail.
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]AuditLine, error) {
	switch {
	case f.Limit <= 0:
		f.Limit = 100
	case f.Limit > 1000:
		f.Limit = 1000
	}
	rows, err := s.db.Query(ctx, `SELECT id, at, actor, coalesce(token_id::text, ''), coalesce(role, ''),
			coalesce(person_id, ''), action, record, outcome, before, after, detail, request_id, repeats, last_at
		  FROM audit_log WHERE id > $1 AND ($2 = '' OR record = $2) ORDER BY id LIMIT $3`, f.AfterID, f.Record, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditLine, error) {
		var l AuditLine
		err := r.Scan(&l.ID, &l.At, &l.Actor, &l.TokenID, &l.Role, &l.PersonID, &l.Action, &l.Record, &l.Outcome,
			&l.Before, &l.After, &l.Detail, &l.RequestID, &l.Repeats, &l.LastAt)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}
