package payouts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// Provider moves money out of Tandem. Implementations: Sandbox (the default) and Stripe.
//
// Send must be idempotent by Payout.IdempotencyKey: calling it again with the same key (a
// retried job, a crash between the call and the commit that records it) must return the
// first transfer, never make a second. A refusal the provider will repeat (a bad destination,
// an account that cannot receive) is returned as a *Refusal; any other error is taken as
// transient and the call is retried with the same key.
type Provider interface {
	// Name is stored with every attempt ("sandbox", "stripe").
	Name() string
	// Send asks the provider to pay p.
	Send(ctx context.Context, p Payout) (Receipt, error)
	// Status reports what became of a payout sent earlier under ref.
	Status(ctx context.Context, p Payout, ref string) (Receipt, error)
	// List calls fn with every transfer the provider made since since, for reconciliation.
	List(ctx context.Context, since time.Time, fn func(Record) error) error
	// SettleAfter is how long after sending to ask Status, when no webhook told first.
	SettleAfter() time.Duration
}

// Finder is implemented by providers whose idempotency keys expire (Stripe keeps them 24
// hours): before sending again an attempt that was opened long ago and never recorded as
// sent, Submit asks whether the provider made the transfer after all.
type Finder interface {
	Find(ctx context.Context, p Payout) (Receipt, bool, error)
}

// Payout is one attempt at paying a disbursement.
type Payout struct {
	Disbursement   string
	Attempt        int
	IdempotencyKey string
	Person         string
	Destination    string
	Amount         decimal.Decimal
	Currency       string
	Description    string
}

// Outcome of a payout at its provider.
type Outcome string

const (
	// OutcomePending: sent, not settled yet.
	OutcomePending Outcome = "pending"
	OutcomePaid    Outcome = "paid"
	OutcomeFailed  Outcome = "failed"
)

// Receipt is what a provider says about a payout.
type Receipt struct {
	Ref     string
	Outcome Outcome
	// Reason explains a failure, in the provider's words.
	Reason string
	// Returned is how much the provider gave back after paying (a reversed transfer).
	Returned decimal.Decimal
}

// Record is one transfer in the provider's books.
type Record struct {
	Ref          string
	Disbursement string // from the transfer's metadata, when the provider keeps it
	// IdempotencyKey is the key the transfer was made under (Payout.IdempotencyKey), when the
	// provider tells it: reconciliation matches it to an attempt whose answer was never
	// recorded (a crash between sending and recording).
	IdempotencyKey string
	Amount         decimal.Decimal
	Currency       string
	Destination    string
	Returned       decimal.Decimal
	Failed         bool
	// Settled: the outcome (Failed or not) is final at the provider.
	Settled bool
	Created time.Time
}

// Refusal is a provider's definite no: retrying the same payout cannot succeed. The
// disbursement fails with Reason.
type Refusal struct{ Reason string }

func (r *Refusal) Error() string { return "refused by the provider: " + r.Reason }

// ErrNoDestination: the person has no payout destination at the provider.
var ErrNoDestination = errors.New("no payout destination")

// minorUnits converts an amount to the currency's minor units (cents), exactly.
func minorUnits(amount decimal.Decimal, exp int32) (int64, error) {
	m := amount.Shift(exp)
	if !m.Equal(m.Truncate(0)) || !m.IsPositive() {
		return 0, fmt.Errorf("amount %s has more than %d decimal places or is not positive", amount, exp)
	}
	return m.IntPart(), nil
}
