package payouts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
)

// Sandbox is the provider used when none is configured: it pays in process, keeping its own
// books in payouts_sandbox_transfers as a real provider would (so it survives restarts, is
// idempotent by key, and can be reconciled). Payouts settle Delay after they are sent.
//
// A payout fails when its destination starts with "fail" (e.g. "fail:account-closed": the
// reason is what follows the colon), or when Fail returns a reason: a participant fixes such
// a payout by setting another destination, which retries it.
type Sandbox struct {
	db    *pgxpool.Pool
	delay time.Duration
	fail  func(Payout) string
	now   func() time.Time
}

// SandboxConfig tunes the sandbox.
type SandboxConfig struct {
	// Delay before a payout settles (0: it settles when sent).
	Delay time.Duration
	// Fail, when set, returns a reason to fail a payout, or "".
	Fail func(Payout) string
}

// NewSandbox returns the sandbox provider on pool.
func NewSandbox(pool *pgxpool.Pool, cfg SandboxConfig) *Sandbox {
	return &Sandbox{db: pool, delay: cfg.Delay, fail: cfg.Fail, now: time.Now}
}

// Name implements Provider.
func (s *Sandbox) Name() string { return "sandbox" }

// SettleAfter implements Provider.
func (s *Sandbox) SettleAfter() time.Duration { return s.delay }

// SandboxDestination is where a person without one is paid in the sandbox.
func SandboxDestination(person string) string { return "sandbox:" + person }

func (s *Sandbox) outcome(p Payout) (string, string) {
	if rest, ok := strings.CutPrefix(p.Destination, "fail"); ok {
		reason := strings.TrimPrefix(rest, ":")
		if reason == "" {
			reason = "destination refused the transfer"
		}
		return "failed", reason
	}
	if s.fail != nil {
		if reason := s.fail(p); reason != "" {
			return "failed", reason
		}
	}
	return "paid", ""
}

// Send implements Provider: one row per idempotency key; a repeated key returns the first.
func (s *Sandbox) Send(ctx context.Context, p Payout) (Receipt, error) {
	outcome, reason := s.outcome(p)
	ref := "sbx_" + strings.ReplaceAll(p.IdempotencyKey, ":", "_")
	if _, err := s.db.Exec(ctx, `INSERT INTO payouts_sandbox_transfers (ref, idempotency_key, disbursement_id, amount, currency,
		destination, outcome, reason, settles_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp() + $9::bigint * interval '1 microsecond')
		ON CONFLICT (idempotency_key) DO NOTHING`, ref, p.IdempotencyKey, p.Disbursement, p.Amount.String(), p.Currency,
		p.Destination, outcome, reason, s.delay.Microseconds()); err != nil {
		return Receipt{}, fmt.Errorf("sandbox send %s: %w", p.IdempotencyKey, err)
	}
	return s.status(ctx, `idempotency_key = $1`, p.IdempotencyKey)
}

// Status implements Provider.
func (s *Sandbox) Status(ctx context.Context, _ Payout, ref string) (Receipt, error) {
	return s.status(ctx, `ref = $1`, ref)
}

func (s *Sandbox) status(ctx context.Context, where, arg string) (Receipt, error) {
	var r Receipt
	var outcome, reversed string
	var due bool
	err := s.db.QueryRow(ctx, `SELECT ref, outcome, reason, reversed::text, settles_at <= clock_timestamp()
		FROM payouts_sandbox_transfers WHERE `+where, arg).Scan(&r.Ref, &outcome, &r.Reason, &reversed, &due)
	if err != nil {
		return Receipt{}, fmt.Errorf("sandbox transfer %s: %w", arg, err)
	}
	r.Returned = decimal.RequireFromString(reversed)
	r.Outcome = OutcomePending
	if due {
		r.Outcome = Outcome(outcome)
	}
	return r, nil
}

// List implements Provider.
func (s *Sandbox) List(ctx context.Context, since time.Time, fn func(Record) error) error {
	rows, err := s.db.Query(ctx, `SELECT ref, disbursement_id::text, idempotency_key, amount::text, currency, destination, reversed::text,
		outcome = 'failed', settles_at <= clock_timestamp(), created_at FROM payouts_sandbox_transfers WHERE created_at >= $1 ORDER BY created_at, ref`, since)
	if err != nil {
		return fmt.Errorf("sandbox list: %w", err)
	}
	var rec Record
	var amount, reversed string
	_, err = pgx.ForEachRow(rows, []any{&rec.Ref, &rec.Disbursement, &rec.IdempotencyKey, &amount, &rec.Currency, &rec.Destination, &reversed,
		&rec.Failed, &rec.Settled, &rec.Created}, func() error {
		rec.Amount, rec.Returned = decimal.RequireFromString(amount), decimal.RequireFromString(reversed)
		return fn(rec)
	})
	return err
}

// Reverse gives back amount of a paid sandbox transfer, as a bank return would: the next
// Status reports it, and Store.Settle records the return (an entry cash → wallet).
func (s *Sandbox) Reverse(ctx context.Context, ref string, amount decimal.Decimal) error {
	tag, err := s.db.Exec(ctx, `UPDATE payouts_sandbox_transfers SET reversed = reversed + $2
		WHERE ref = $1 AND outcome = 'paid' AND reversed + $2 <= amount`, ref, amount.String())
	if err != nil {
		return fmt.Errorf("sandbox reverse %s: %w", ref, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("sandbox reverse %s: no paid transfer with %s left to reverse", ref, amount)
	}
	return nil
}
