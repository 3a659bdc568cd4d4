package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Entry returns an entry with its postings, and what later resolved or reversed it.
func (l *Ledger) Entry(ctx context.Context, id uuid.UUID) (Entry, error) {
	return l.entryTx(ctx, l.db, id)
}

const entryColumns = `e.id, e.seq, e.kind, coalesce(e.idempotency_key, ''), e.description, e.effective_at,
	e.posted_at, e.metadata, e.target_id,
	(SELECT r.id FROM ledger_entries r WHERE r.target_id = e.id AND r.kind IN ('commit', 'void')),
	(SELECT r.id FROM ledger_entries r WHERE r.target_id = e.id AND r.kind = 'reversal')`

func scanEntry(row pgx.Row) (Entry, error) {
	var e Entry
	err := row.Scan(&e.ID, &e.Seq, &e.Kind, &e.IdempotencyKey, &e.Description, &e.EffectiveAt, &e.PostedAt,
		&e.Metadata, &e.TargetID, &e.ResolvedBy, &e.ReversedBy)
	return e, err
}

func (l *Ledger) entryTx(ctx context.Context, db DBTX, id uuid.UUID) (Entry, error) {
	e, err := scanEntry(db.QueryRow(ctx, `SELECT `+entryColumns+` FROM ledger_entries e WHERE e.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, fmt.Errorf("%w: %s", ErrEntryNotFound, id)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read entry %s: %w", id, err)
	}
	if err := l.loadLines(ctx, db, []*Entry{&e}); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// loadLines fills the postings of entries in one query.
func (l *Ledger) loadLines(ctx context.Context, db DBTX, entries []*Entry) error {
	if len(entries) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(entries))
	byID := make(map[uuid.UUID]*Entry, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
		byID[e.ID] = e
		e.Lines = nil
	}
	rows, err := db.Query(ctx, `SELECT p.entry_id, p.line, a.code, p.phase, p.side, p.amount::text, p.currency
		FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id
		WHERE p.entry_id = ANY($1) ORDER BY p.entry_id, p.line`, ids)
	if err != nil {
		return fmt.Errorf("read postings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var ln Line
		var amt string
		if err := rows.Scan(&id, &ln.Line, &ln.Account, &ln.Phase, &ln.Side, &amt, &ln.Currency); err != nil {
			return fmt.Errorf("read postings: %w", err)
		}
		ln.Amount = dec(amt)
		byID[id].Lines = append(byID[id].Lines, ln)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read postings: %w", err)
	}
	return nil
}

// EntryFilter selects entries for Entries.
type EntryFilter struct {
	AfterSeq int64 // keyset cursor: entries with a larger sequence number
	Limit    int   // default 100, at most 1000
}

// Entries lists entries in sequence order with their postings, a page at a time. A page
// holds only final history: it waits for entries still committing below the highest number
// handed out (see settle), so paging with AfterSeq never skips an entry that commits late.
// Do not call it while holding an open write transaction of your own.
func (l *Ledger) Entries(ctx context.Context, f EntryFilter) ([]Entry, error) {
	limit := clampLimit(f.Limit, 100, 1000)
	final, _, err := l.settle(ctx)
	if err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	rows, err := l.db.Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries e WHERE e.seq > $1 AND e.seq <= $3
		ORDER BY e.seq LIMIT $2`, f.AfterSeq, limit, final)
	if err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) { return scanEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	ptrs := make([]*Entry, len(out))
	for i := range out {
		ptrs[i] = &out[i]
	}
	if err := l.loadLines(ctx, l.db, ptrs); err != nil {
		return nil, fmt.Errorf("list entries: %w", err)
	}
	return out, nil
}

// AsOf picks a point in an account's history. The zero value means now. Seq selects the
// state after every entry numbered up to Seq; Time the state after every entry posted (by
// the system clock, not the effective date) at or before Time. Set one of them.
type AsOf struct {
	Seq  int64
	Time time.Time
}

// Balance returns an account's balance now or as of a past point. Both are exact and cost
// one index lookup, however long the account's history: every posting carries the running
// totals after it. A past point must be final — a sequence number already handed out, a
// time not in the future — and Balance first waits for entries still committing before it
// (see settle), so the answer never changes afterwards.
func (l *Ledger) Balance(ctx context.Context, code string, at AsOf) (Balance, error) {
	if at.Seq < 0 {
		return Balance{}, invalid("as_of_seq", "must not be negative")
	}
	if at.Seq != 0 && !at.Time.IsZero() {
		return Balance{}, invalid("as_of", "give a time or a sequence number, not both")
	}
	a, err := l.Account(ctx, code)
	if err != nil {
		return Balance{}, fmt.Errorf("balance: %w", err)
	}
	if at.Seq == 0 && at.Time.IsZero() {
		return a.Balance, nil
	}
	final, now, err := l.settle(ctx)
	if err != nil {
		return Balance{}, fmt.Errorf("balance: %w", err)
	}
	if at.Seq > final {
		return Balance{}, invalid("as_of_seq", "%d has not been reached: the last entry is numbered %d", at.Seq, final)
	}
	if at.Time.After(now) {
		return Balance{}, invalid("as_of", "%s is in the future (the database clock reads %s)",
			at.Time.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	var q string
	var arg any
	if at.Seq != 0 {
		q = `SELECT posted_debits::text, posted_credits::text, pending_debits::text, pending_credits::text, account_version, seq
			FROM ledger_postings WHERE account_id = $1 AND seq <= $2 ORDER BY seq DESC, account_version DESC LIMIT 1`
		arg = at.Seq
	} else {
		q = `SELECT posted_debits::text, posted_credits::text, pending_debits::text, pending_credits::text, account_version, seq
			FROM ledger_postings WHERE account_id = $1 AND posted_at <= $2 ORDER BY posted_at DESC, account_version DESC LIMIT 1`
		arg = at.Time
	}
	var pd, pc, hd, hc string
	var version, seq int64
	err = l.db.QueryRow(ctx, q, a.ID, arg).Scan(&pd, &pc, &hd, &hc, &version, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		zero := decimal.Zero
		return newBalance(a.Code, a.Currency, a.Type, zero, zero, zero, zero, 0, 0), nil
	}
	if err != nil {
		return Balance{}, fmt.Errorf("balance of %s as of %v: %w", code, at, err)
	}
	return newBalance(a.Code, a.Currency, a.Type, dec(pd), dec(pc), dec(hd), dec(hc), version, seq), nil
}

// StatementLine is one posting on an account with the balance after it.
type StatementLine struct {
	Version     int64     `json:"version"` // the posting's place in the account's history, from 1
	EntryID     uuid.UUID `json:"entry_id"`
	Seq         int64     `json:"seq"`
	Kind        Kind      `json:"kind"`
	Description string    `json:"description"`
	EffectiveAt time.Time `json:"effective_at"`
	PostedAt    time.Time `json:"posted_at"`
	Posting     Line      `json:"posting"`
	Balance     Balance   `json:"balance"` // the account's balance after this posting
}

// Statement is a page of an account's postings.
type Statement struct {
	Account Account         `json:"account"`
	Lines   []StatementLine `json:"lines"`
	// Next is the cursor for the following page (StatementFilter.After); empty at the end.
	Next string `json:"next,omitempty"`
}

// StatementFilter pages through a statement.
type StatementFilter struct {
	After string // keyset cursor from Statement.Next; empty for the first page
	Limit int    // default 100, at most 1000
}

// A statement cursor is "SEQ.VERSION" of the last line shown: the postings of an account are
// ordered by entry sequence number, then by version within an entry.
func statementCursor(seq, version int64) string { return fmt.Sprintf("%d.%d", seq, version) }

func parseStatementCursor(c string) (seq, version int64, err error) {
	if c == "" {
		return 0, 0, nil
	}
	if _, err := fmt.Sscanf(c, "%d.%d", &seq, &version); err != nil || seq < 0 || version < 0 || statementCursor(seq, version) != c {
		return 0, 0, invalid("after", "%q is not a statement cursor (use the previous page's next)", truncate(c, 40))
	}
	return seq, version, nil
}

// Statement lists an account's postings in the order they changed it, with the running
// balance after each, a page at a time.
func (l *Ledger) Statement(ctx context.Context, code string, f StatementFilter) (Statement, error) {
	afterSeq, afterVersion, err := parseStatementCursor(f.After)
	if err != nil {
		return Statement{}, err
	}
	a, err := l.Account(ctx, code)
	if err != nil {
		return Statement{}, fmt.Errorf("statement: %w", err)
	}
	limit := clampLimit(f.Limit, 100, 1000)
	rows, err := l.db.Query(ctx, `SELECT p.account_version, p.entry_id, e.seq, e.kind, e.description, e.effective_at,
			p.posted_at, p.line, p.phase, p.side, p.amount::text, p.currency,
			p.posted_debits::text, p.posted_credits::text, p.pending_debits::text, p.pending_credits::text
		FROM ledger_postings p JOIN ledger_entries e ON e.id = p.entry_id
		WHERE p.account_id = $1 AND (p.seq, p.account_version) > ($2, $3)
		ORDER BY p.seq, p.account_version LIMIT $4`, a.ID, afterSeq, afterVersion, limit+1)
	if err != nil {
		return Statement{}, fmt.Errorf("statement of %s: %w", code, err)
	}
	defer rows.Close()
	st := Statement{Account: a, Lines: []StatementLine{}}
	for rows.Next() {
		var sl StatementLine
		var amt, pd, pc, hd, hc string
		if err := rows.Scan(&sl.Version, &sl.EntryID, &sl.Seq, &sl.Kind, &sl.Description, &sl.EffectiveAt, &sl.PostedAt,
			&sl.Posting.Line, &sl.Posting.Phase, &sl.Posting.Side, &amt, &sl.Posting.Currency, &pd, &pc, &hd, &hc); err != nil {
			return Statement{}, fmt.Errorf("statement of %s: %w", code, err)
		}
		sl.Posting.Amount = dec(amt)
		sl.Posting.Account = a.Code
		sl.Balance = newBalance(a.Code, a.Currency, a.Type, dec(pd), dec(pc), dec(hd), dec(hc), sl.Version, sl.Seq)
		st.Lines = append(st.Lines, sl)
	}
	if err := rows.Err(); err != nil {
		return Statement{}, fmt.Errorf("statement of %s: %w", code, err)
	}
	if len(st.Lines) > limit {
		st.Lines = st.Lines[:limit]
		last := st.Lines[limit-1]
		st.Next = statementCursor(last.Seq, last.Version)
	}
	return st, nil
}

// TrialBalanceLine is one account's posted balance, on the debit or the credit column.
type TrialBalanceLine struct {
	Account  string          `json:"account"`
	Type     AccountType     `json:"type"`
	Currency string          `json:"currency"`
	Debit    decimal.Decimal `json:"debit"`
	Credit   decimal.Decimal `json:"credit"`
}

// MarshalJSON writes amounts with the currency's places.
func (l TrialBalanceLine) MarshalJSON() ([]byte, error) {
	type plain TrialBalanceLine
	return json.Marshal(struct {
		plain
		Debit  string `json:"debit"`
		Credit string `json:"credit"`
	}{plain(l), FormatAmount(l.Debit, l.Currency), FormatAmount(l.Credit, l.Currency)})
}

// CurrencyTotal sums a trial balance for one currency. Balanced means the debit and credit
// columns are equal, and so are pending debits and credits.
type CurrencyTotal struct {
	Currency       string          `json:"currency"`
	Debits         decimal.Decimal `json:"debits"`
	Credits        decimal.Decimal `json:"credits"`
	PendingDebits  decimal.Decimal `json:"pending_debits"`
	PendingCredits decimal.Decimal `json:"pending_credits"`
	Balanced       bool            `json:"balanced"`
}

// MarshalJSON writes amounts with the currency's places.
func (t CurrencyTotal) MarshalJSON() ([]byte, error) {
	type plain CurrencyTotal
	f := func(d decimal.Decimal) string { return FormatAmount(d, t.Currency) }
	return json.Marshal(struct {
		plain
		Debits         string `json:"debits"`
		Credits        string `json:"credits"`
		PendingDebits  string `json:"pending_debits"`
		PendingCredits string `json:"pending_credits"`
	}{plain(t), f(t.Debits), f(t.Credits), f(t.PendingDebits), f(t.PendingCredits)})
}

// TrialBalance lists every account with a posted balance and the totals per currency.
type TrialBalance struct {
	AsOfSeq int64              `json:"as_of_seq"`
	Lines   []TrialBalanceLine `json:"lines"`
	Totals  []CurrencyTotal    `json:"totals"`
}

// TrialBalance reads every account's balance in one snapshot. In a sound ledger each
// currency's debits equal its credits.
func (l *Ledger) TrialBalance(ctx context.Context) (TrialBalance, error) {
	tb := TrialBalance{Lines: []TrialBalanceLine{}, Totals: []CurrencyTotal{}} // empty lists, not null, in JSON
	err := pgx.BeginTxFunc(ctx, l.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(last_seq), 0) FROM ledger_accounts`).Scan(&tb.AsOfSeq); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT code, type, currency, posted_debits::text, posted_credits::text,
				pending_debits::text, pending_credits::text
			FROM ledger_accounts ORDER BY currency, code`)
		if err != nil {
			return err
		}
		defer rows.Close()
		totals := map[string]*CurrencyTotal{}
		var order []string
		for rows.Next() {
			var ln TrialBalanceLine
			var pd, pc, hd, hc string
			if err := rows.Scan(&ln.Account, &ln.Type, &ln.Currency, &pd, &pc, &hd, &hc); err != nil {
				return err
			}
			t := totals[ln.Currency]
			if t == nil {
				t = &CurrencyTotal{Currency: ln.Currency}
				totals[ln.Currency] = t
				order = append(order, ln.Currency)
			}
			net := dec(pd).Sub(dec(pc))
			if net.IsPositive() {
				ln.Debit = net
				t.Debits = t.Debits.Add(net)
			} else {
				ln.Credit = net.Neg()
				t.Credits = t.Credits.Add(ln.Credit)
			}
			t.PendingDebits = t.PendingDebits.Add(dec(hd))
			t.PendingCredits = t.PendingCredits.Add(dec(hc))
			if !net.IsZero() {
				tb.Lines = append(tb.Lines, ln)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, c := range order {
			t := totals[c]
			t.Balanced = t.Debits.Equal(t.Credits) && t.PendingDebits.Equal(t.PendingCredits)
			tb.Totals = append(tb.Totals, *t)
		}
		return nil
	})
	if err != nil {
		return TrialBalance{}, fmt.Errorf("trial balance: %w", err)
	}
	return tb, nil
}

// Discrepancy is something Check found that a sound ledger never shows.
type Discrepancy struct {
	Account string `json:"account,omitempty"`
	Problem string `json:"problem"`
}

// Check recomputes, in one snapshot, every account's balances from its postings and compares
// them with the stored balances and the running totals of its last posting, and checks that
// every currency balances. It reads the whole ledger: an auditor's tool, not a hot path.
func (l *Ledger) Check(ctx context.Context) ([]Discrepancy, error) {
	var out []Discrepancy
	err := pgx.BeginTxFunc(ctx, l.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH sums AS (
				SELECT account_id, count(*) AS n,
					sum(CASE WHEN phase = 'posted' AND side = 'debit' THEN amount ELSE 0 END) AS pd,
					sum(CASE WHEN phase = 'posted' AND side = 'credit' THEN amount ELSE 0 END) AS pc,
					sum(CASE WHEN side = 'debit' THEN CASE phase WHEN 'hold' THEN amount WHEN 'release' THEN -amount ELSE 0 END ELSE 0 END) AS hd,
					sum(CASE WHEN side = 'credit' THEN CASE phase WHEN 'hold' THEN amount WHEN 'release' THEN -amount ELSE 0 END ELSE 0 END) AS hc
				FROM ledger_postings GROUP BY account_id
			), last AS (
				SELECT DISTINCT ON (account_id) account_id, posted_debits, posted_credits, pending_debits, pending_credits
				FROM ledger_postings ORDER BY account_id, account_version DESC
			)
			SELECT a.code,
				(a.posted_debits, a.posted_credits, a.pending_debits, a.pending_credits, a.version)
					IS DISTINCT FROM (coalesce(s.pd, 0), coalesce(s.pc, 0), coalesce(s.hd, 0), coalesce(s.hc, 0), coalesce(s.n, 0)),
				s.n IS NOT NULL AND (a.posted_debits, a.posted_credits, a.pending_debits, a.pending_credits)
					IS DISTINCT FROM (l.posted_debits, l.posted_credits, l.pending_debits, l.pending_credits)
			FROM ledger_accounts a LEFT JOIN sums s ON s.account_id = a.id LEFT JOIN last l ON l.account_id = a.id
			ORDER BY a.code`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var code string
			var badSum, badRunning bool
			if err := rows.Scan(&code, &badSum, &badRunning); err != nil {
				return err
			}
			if badSum {
				out = append(out, Discrepancy{Account: code, Problem: "stored balance differs from the sum of its postings"})
			}
			if badRunning {
				out = append(out, Discrepancy{Account: code, Problem: "stored balance differs from its last posting's running totals"})
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT currency, sum(CASE side WHEN 'debit' THEN amount ELSE -amount END)::text
			FROM ledger_postings WHERE phase = 'posted' GROUP BY currency
			HAVING sum(CASE side WHEN 'debit' THEN amount ELSE -amount END) <> 0`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var cur, diff string
			if err := rows.Scan(&cur, &diff); err != nil {
				return err
			}
			d, err := decimal.NewFromString(diff)
			if err != nil {
				return fmt.Errorf("imbalance %s: %w", diff, err)
			}
			out = append(out, Discrepancy{Problem: "posted: " + Imbalance(cur, d)})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("check ledger: %w", err)
	}
	return out, nil
}
