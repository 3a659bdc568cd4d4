// Package ledger is Tandem's double-entry ledger on PostgreSQL (DESIGN.md §3).
//
// Money lives in accounts; it moves only by entries, each made of at least two postings that
// balance per currency. Entries are append-only: a mistake is corrected by a reversal, a
// payout in flight is a pending entry whose holds count against the available balance until
// it is committed (in full or in part) or voided, exactly once.
//
// Every balance is kept current in the same transaction as its postings, and every posting
// records the account's running totals after it, so the balance as of any sequence number or
// time is one index lookup. The database enforces the invariants itself
// (migrations/001_ledger.sql): no code path can post an unbalanced entry, overdraw a
// no_overdraft account, edit history, or resolve a pending entry twice.
//
// Writes take the accounts' row locks in id order, one fixed order, so concurrent writers
// never deadlock. Post and PostPending coalesce concurrent calls into shared transactions
// (see Config.MaxBatch): a hot account, such as a program fund every award debits, is locked
// once per batch instead of once per entry, and each entry still succeeds or fails on its own.
// The ...Tx variants run inside a caller's transaction, e.g. to enqueue a River job with the
// entry that caused it.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
)

// DBTX is what the ledger needs to run SQL: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config tunes a Ledger. The zero value is a good default.
type Config struct {
	Logger *slog.Logger
	// MaxBatch is the most entries Post and PostPending coalesce into one transaction
	// (default 128). Set it to 1 to post every entry in a transaction of its own.
	MaxBatch int
	// Workers is how many coalesced transactions may be in flight at once (default 2).
	// Batches that share an account never run at the same time, so more workers help only
	// when traffic spreads over many accounts and the database has cores to spare: on a
	// 2-core machine, 2 workers posted the most (make bench, BENCH_WORKERS=1..4).
	Workers int
}

// Ledger is the entry point: create it once with New and share it.
type Ledger struct {
	db      *pgxpool.Pool
	logger  *slog.Logger
	batcher *batcher
}

// New returns a Ledger on pool. Call Close when done to stop its batching workers.
func New(pool *pgxpool.Pool, cfg *Config) *Ledger {
	if cfg == nil {
		cfg = &Config{}
	}
	l := &Ledger{db: pool, logger: cfg.Logger}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	maxBatch, workers := cfg.MaxBatch, cfg.Workers
	if maxBatch <= 0 {
		maxBatch = 128
	}
	if workers <= 0 {
		workers = 2
	}
	l.batcher = newBatcher(l, maxBatch, workers)
	return l
}

// Close stops the batching workers after the batches in flight finish. Later calls to Post
// and PostPending return ErrClosed; the other methods keep working.
func (l *Ledger) Close() { l.batcher.close() }

// NewAccount describes an account to open.
type NewAccount struct {
	Code        string          `json:"code"`
	Type        AccountType     `json:"type"`
	Currency    string          `json:"currency"`
	NoOverdraft bool            `json:"no_overdraft"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

// Validate checks the account description without touching the database.
func (a NewAccount) Validate() error {
	if err := ValidateCode(a.Code); err != nil {
		return err
	}
	if !a.Type.Valid() {
		return invalid("type", "must be one of asset, liability, equity, revenue, expense; got %q", truncate(string(a.Type), 20))
	}
	if _, ok := Exponent(a.Currency); !ok {
		return fmt.Errorf("%w: %q", ErrUnknownCurrency, truncate(a.Currency, 10))
	}
	_, err := canonicalMetadata(a.Metadata)
	return err
}

const accountColumns = `id, code, type, currency, no_overdraft, metadata, created_at, closed_at,
	posted_debits::text, posted_credits::text, pending_debits::text, pending_credits::text, version, last_seq`

func scanAccount(row pgx.Row) (Account, error) {
	var a Account
	var pd, pc, hd, hc string
	var version, seq int64
	if err := row.Scan(&a.ID, &a.Code, &a.Type, &a.Currency, &a.NoOverdraft, &a.Metadata, &a.CreatedAt,
		&a.ClosedAt, &pd, &pc, &hd, &hc, &version, &seq); err != nil {
		return Account{}, err
	}
	a.Balance = newBalance(a.Code, a.Currency, a.Type, dec(pd), dec(pc), dec(hd), dec(hc), version, seq)
	return a, nil
}

// dec parses a numeric the database printed; the database only prints valid numerics.
func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// CreateAccount opens an account. Opening an account that exists with the same type,
// currency and flags returns it with created false (a retried request is harmless); with
// different attributes it fails with ErrAccountExists.
func (l *Ledger) CreateAccount(ctx context.Context, na NewAccount) (acct Account, created bool, err error) {
	return l.CreateAccountTx(ctx, l.db, na)
}

// CreateAccountTx is CreateAccount inside the caller's transaction.
func (l *Ledger) CreateAccountTx(ctx context.Context, db DBTX, na NewAccount) (Account, bool, error) {
	if err := na.Validate(); err != nil {
		return Account{}, false, err
	}
	meta, _ := canonicalMetadata(na.Metadata)
	a, err := scanAccount(db.QueryRow(ctx, `
		INSERT INTO ledger_accounts (code, type, currency, no_overdraft, metadata)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (code) DO NOTHING
		RETURNING `+accountColumns, na.Code, na.Type, na.Currency, na.NoOverdraft, meta))
	if err == nil {
		return a, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Account{}, false, fmt.Errorf("create account %s: %w", na.Code, translate(err))
	}
	existing, err := l.AccountTx(ctx, db, na.Code)
	if err != nil {
		return Account{}, false, fmt.Errorf("create account %s: %w", na.Code, err)
	}
	if existing.Type != na.Type || existing.Currency != na.Currency || existing.NoOverdraft != na.NoOverdraft {
		return Account{}, false, fmt.Errorf("create account %s: %w as %s %s (no_overdraft %t)", na.Code,
			ErrAccountExists, existing.Type, existing.Currency, existing.NoOverdraft)
	}
	return existing, false, nil
}

// Account returns the account with its current balance.
func (l *Ledger) Account(ctx context.Context, code string) (Account, error) {
	return l.AccountTx(ctx, l.db, code)
}

// AccountTx is Account read on db: inside a caller's transaction, the balance agrees with
// everything else the transaction reads.
func (l *Ledger) AccountTx(ctx context.Context, db DBTX, code string) (Account, error) {
	if err := validateExistingCode(code); err != nil {
		return Account{}, err
	}
	a, err := scanAccount(db.QueryRow(ctx, `SELECT `+accountColumns+` FROM ledger_accounts WHERE code = $1`, code))
	if errors.Is(err, pgx.ErrNoRows) {
		return Account{}, fmt.Errorf("%w: %s", ErrAccountNotFound, code)
	}
	if err != nil {
		return Account{}, fmt.Errorf("read account %s: %w", code, err)
	}
	return a, nil
}

// AccountFilter selects accounts for Accounts.
type AccountFilter struct {
	Prefix string // only codes starting with Prefix
	After  string // keyset cursor: codes after this one
	Limit  int    // default 100, at most 1000
}

// Accounts lists accounts in code order, a page at a time.
func (l *Ledger) Accounts(ctx context.Context, f AccountFilter) ([]Account, error) {
	limit := clampLimit(f.Limit, 100, 1000)
	rows, err := l.db.Query(ctx, `SELECT `+accountColumns+` FROM ledger_accounts
		WHERE code > $1 AND ($2 = '' OR starts_with(code, $2)) ORDER BY code LIMIT $3`, f.After, f.Prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Account, error) { return scanAccount(r) })
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}

// CloseAccount closes an account for good: it must have no balance and no holds. A closed
// account keeps its history and can no longer be posted to.
func (l *Ledger) CloseAccount(ctx context.Context, code string) (Account, error) {
	return l.CloseAccountTx(ctx, l.db, code)
}

// CloseAccountTx is CloseAccount on db (a transaction of the caller's, for example to record
// the change in the same transaction).
func (l *Ledger) CloseAccountTx(ctx context.Context, db DBTX, code string) (Account, error) {
	if err := validateExistingCode(code); err != nil {
		return Account{}, err
	}
	a, err := scanAccount(db.QueryRow(ctx, `UPDATE ledger_accounts SET closed_at = clock_timestamp()
		WHERE code = $1 AND closed_at IS NULL RETURNING `+accountColumns, code))
	if err == nil {
		return a, nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		existing, err := l.AccountTx(ctx, db, code)
		if err != nil {
			return Account{}, fmt.Errorf("close account: %w", err)
		}
		return existing, fmt.Errorf("close account %s: %w since %s", code, ErrAccountClosed, existing.ClosedAt.Format(time.RFC3339))
	}
	return Account{}, fmt.Errorf("close account %s: %w", code, translate(err))
}

func clampLimit(n, def, max int) int {
	switch {
	case n <= 0:
		return def
	case n > max:
		return max
	}
	return n
}

// joinCodes is used in messages listing accounts.
func joinCodes(codes []string) string { return strings.Join(codes, ", ") }
