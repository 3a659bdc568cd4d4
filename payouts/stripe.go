package payouts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/tandemledger/tandem/ledger"
)

// Stripe pays through Stripe Connect: a transfer from the platform's balance to the person's
// connected account (acct_…), with the attempt's idempotency key as Stripe's Idempotency-Key
// — never left empty, since stripe-go would then send a random one and a retried job would
// pay twice. Network retries inside stripe-go are turned off: River retries the job, with the
// same key.
//
// A transfer that Stripe creates has moved the money to the connected account, so it is paid
// (on the transfer.created webhook, or when Status finds it); an API refusal fails the payout;
// a reversal afterwards (transfer.reversed) returns money to the wallet.
type Stripe struct {
	api         *client.API
	settleAfter time.Duration
}

// StripeConfig configures the Stripe provider.
type StripeConfig struct {
	SecretKey string
	// BaseURL overrides https://api.stripe.com (stripe-mock in tests).
	BaseURL string
	// SettleAfter is when to ask about a transfer no webhook reported (default 1 minute).
	SettleAfter time.Duration
	HTTPClient  *http.Client
}

// NewStripe returns the Stripe provider.
func NewStripe(cfg StripeConfig) (*Stripe, error) {
	if cfg.SecretKey == "" {
		return nil, errors.New("stripe: a secret key is required (STRIPE_SECRET_KEY)")
	}
	if cfg.SettleAfter <= 0 {
		cfg.SettleAfter = time.Minute
	}
	bc := &stripe.BackendConfig{MaxNetworkRetries: stripe.Int64(0), HTTPClient: cfg.HTTPClient,
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelError}}
	if cfg.BaseURL != "" {
		bc.URL = stripe.String(strings.TrimRight(cfg.BaseURL, "/"))
	}
	api := &client.API{}
	api.Init(cfg.SecretKey, &stripe.Backends{API: stripe.GetBackendWithConfig(stripe.APIBackend, bc),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, bc), Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, bc)})
	return &Stripe{api: api, settleAfter: cfg.SettleAfter}, nil
}

// Name implements Provider.
func (s *Stripe) Name() string { return "stripe" }

// SettleAfter implements Provider.
func (s *Stripe) SettleAfter() time.Duration { return s.settleAfter }

// Send implements Provider.
func (s *Stripe) Send(ctx context.Context, p Payout) (Receipt, error) {
	if strings.TrimSpace(p.IdempotencyKey) == "" {
		// stripe-go would send none (or a random one on its retries): a retry could pay twice.
		return Receipt{}, errors.New("stripe: refusing to create a transfer without an idempotency key")
	}
	if !strings.HasPrefix(p.Destination, "acct_") {
		return Receipt{}, &Refusal{Reason: fmt.Sprintf("destination %q is not a Stripe connected account (acct_…)", p.Destination)}
	}
	exp, ok := ledger.Exponent(p.Currency)
	if !ok {
		return Receipt{}, &Refusal{Reason: "unknown currency " + p.Currency}
	}
	amount, err := minorUnits(p.Amount, exp)
	if err != nil {
		return Receipt{}, &Refusal{Reason: err.Error()}
	}
	params := &stripe.TransferParams{
		Amount:        stripe.Int64(amount),
		Currency:      stripe.String(strings.ToLower(p.Currency)),
		Destination:   stripe.String(p.Destination),
		Description:   stripe.String(p.Description),
		TransferGroup: stripe.String(p.Disbursement),
	}
	params.Context = ctx
	params.SetIdempotencyKey(p.IdempotencyKey)
	params.AddMetadata("disbursement_id", p.Disbursement)
	params.AddMetadata("attempt", strconv.Itoa(p.Attempt))
	t, err := s.api.Transfers.New(params)
	if err != nil {
		return Receipt{}, stripeError("create transfer", err)
	}
	return receiptOf(t, exp), nil
}

// Find implements Finder: the transfer of the disbursement's group made for this attempt.
func (s *Stripe) Find(ctx context.Context, p Payout) (Receipt, bool, error) {
	exp, _ := ledger.Exponent(p.Currency)
	params := &stripe.TransferListParams{TransferGroup: stripe.String(p.Disbursement)}
	params.Context = ctx
	it := s.api.Transfers.List(params)
	for it.Next() {
		t := it.Transfer()
		if t.Metadata["attempt"] == strconv.Itoa(p.Attempt) {
			return receiptOf(t, exp), true, nil
		}
	}
	if err := it.Err(); err != nil {
		return Receipt{}, false, stripeError("find transfer of "+p.Disbursement, err)
	}
	return Receipt{}, false, nil
}

// Status implements Provider.
func (s *Stripe) Status(ctx context.Context, p Payout, ref string) (Receipt, error) {
	exp, _ := ledger.Exponent(p.Currency)
	params := &stripe.TransferParams{}
	params.Context = ctx
	t, err := s.api.Transfers.Get(ref, params)
	if err != nil {
		return Receipt{}, stripeError("get transfer "+ref, err)
	}
	return receiptOf(t, exp), nil
}

// List implements Provider: every transfer created since since, page by page.
func (s *Stripe) List(ctx context.Context, since time.Time, fn func(Record) error) error {
	params := &stripe.TransferListParams{}
	params.Context = ctx
	params.Filters.AddFilter("created", "gte", strconv.FormatInt(since.Unix(), 10))
	params.Limit = stripe.Int64(100)
	it := s.api.Transfers.List(params)
	for it.Next() {
		t := it.Transfer()
		currency := strings.ToUpper(string(t.Currency))
		exp, _ := ledger.Exponent(currency)
		rec := Record{Ref: t.ID, Disbursement: t.Metadata["disbursement_id"], Currency: currency,
			Amount: decimal.New(t.Amount, -exp), Returned: decimal.New(t.AmountReversed, -exp), Settled: true, Created: time.Unix(t.Created, 0)}
		if rec.Disbursement == "" {
			rec.Disbursement = t.TransferGroup
		}
		// Send's keys: the disbursement id for the first attempt, id:n for the n-th.
		switch n := t.Metadata["attempt"]; {
		case n == "1":
			rec.IdempotencyKey = rec.Disbursement
		case n != "" && rec.Disbursement != "":
			rec.IdempotencyKey = rec.Disbursement + ":" + n
		}
		if t.Destination != nil {
			rec.Destination = t.Destination.ID
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err := it.Err(); err != nil {
		return stripeError("list transfers", err)
	}
	return nil
}

func receiptOf(t *stripe.Transfer, exp int32) Receipt {
	r := Receipt{Ref: t.ID, Outcome: OutcomePaid, Returned: decimal.New(t.AmountReversed, -exp)}
	if t.Reversed && t.AmountReversed >= t.Amount {
		r.Reason = "transfer reversed"
	}
	return r
}

// stripeError tells refusals (Stripe answered 4xx: it will answer the same again) from
// transient trouble (network, 5xx, 409 idempotency in flight, 429 rate limits).
func stripeError(op string, err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		switch {
		case se.Code == stripe.ErrorCodeBalanceInsufficient || strings.HasPrefix(string(se.Code), "platform_") || se.Code == stripe.ErrorCodeRateLimit:
			// The organisation's problem (its Stripe balance, its account): retried, never
			// the payee's failure — it must not use up their retries or forfeit their money.
		case se.HTTPStatusCode == http.StatusUnauthorized || se.HTTPStatusCode == http.StatusForbidden ||
			se.HTTPStatusCode == http.StatusConflict || se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode >= 500:
		case se.HTTPStatusCode >= 400:
			reason := se.Msg
			if se.Code != "" {
				reason = fmt.Sprintf("%s (%s)", se.Msg, se.Code)
			}
			return &Refusal{Reason: "stripe: " + reason}
		}
	}
	return fmt.Errorf("stripe %s: %w", op, err)
}
