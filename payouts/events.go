package payouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tandemledger/tandem/ledger"
)

var (
	// ErrBadSignature: a webhook whose signature does not verify. Nothing is recorded.
	ErrBadSignature = errors.New("webhook signature does not verify")
	// ErrAPIVersion: a webhook of another Stripe API version than stripe-go v76's.
	ErrAPIVersion = errors.New("webhook API version not supported")
)

// WebhookAPIVersion is the Stripe API version webhook endpoints must be created with: the
// one stripe-go v76 is pinned to. Events of another version are refused (400), so Stripe
// keeps retrying them and shows the failures, rather than Tandem reading fields whose
// meaning may have changed; the settle job still finds every payout's outcome.
const WebhookAPIVersion = stripe.APIVersion

// Event is a recorded provider event.
type Event struct {
	Provider  string `json:"provider"`
	ID        string `json:"id"`
	Type      string `json:"type"`
	Duplicate bool   `json:"duplicate"`
}

// RecordStripeEvent verifies a Stripe webhook and records it once, asking in the same
// transaction for it to be processed. A replayed or duplicated event changes nothing.
func (s *Store) RecordStripeEvent(ctx context.Context, payload []byte, signature string) (Event, error) {
	if s.webhookSecret == "" {
		return Event{}, fmt.Errorf("%w: no webhook secret configured (STRIPE_WEBHOOK_SECRET)", ErrBadSignature)
	}
	ev, err := webhook.ConstructEventWithOptions(payload, signature, s.webhookSecret,
		webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
	if err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	// stripe-go refuses a signature older than its tolerance but not one from the future:
	// Stripe signs as it sends, so a timestamp ahead of the clock by more than the tolerance
	// is not Stripe's delivery (or a clock far off). Refused unrecorded, like any signature
	// that does not hold, so Stripe's own retry is taken when it comes.
	if ts, ok := signatureTime(signature); ok && ts.Sub(s.now()) > webhook.DefaultTolerance {
		return Event{}, fmt.Errorf("%w: signed at %s, more than %s ahead of this server's clock", ErrBadSignature,
			ts.UTC().Format(time.RFC3339), webhook.DefaultTolerance)
	}
	if ev.APIVersion != WebhookAPIVersion {
		return Event{}, fmt.Errorf("%w: event %s is version %q; create the endpoint with API version %s", ErrAPIVersion,
			ev.ID, ev.APIVersion, WebhookAPIVersion)
	}
	if ev.ID == "" || ev.Type == "" {
		return Event{}, fmt.Errorf("%w: event without id or type", ErrInvalid)
	}
	out := Event{Provider: "stripe", ID: ev.ID, Type: string(ev.Type)}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO payouts_events (provider, event_id, type, api_version, payload) VALUES ('stripe', $1, $2, $3, $4)
			ON CONFLICT (provider, event_id) DO NOTHING`, ev.ID, string(ev.Type), ev.APIVersion, payload)
		if err != nil {
			return fmt.Errorf("record event %s: %w", ev.ID, err)
		}
		if tag.RowsAffected() == 0 {
			out.Duplicate = true
			return nil
		}
		return s.jobs.EventTx(ctx, tx, "stripe", ev.ID)
	})
	return out, err
}

// signatureTime is the t= timestamp of a Stripe-Signature header ("t=…,v1=…").
func signatureTime(header string) (time.Time, bool) {
	for _, part := range strings.Split(header, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "t="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return time.Unix(n, 0), err == nil
		}
	}
	return time.Time{}, false
}

// ProcessEvent applies a recorded event, once: the change it makes and the mark that it was
// processed commit together. Events for transfers Tandem did not make, and types it does
// not use, are marked ignored with the reason.
func (s *Store) ProcessEvent(ctx context.Context, provider, eventID string) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var typ string
		var payload []byte
		var processed bool
		err := tx.QueryRow(ctx, `SELECT type, payload, processed_at IS NOT NULL FROM payouts_events WHERE provider = $1 AND event_id = $2 FOR UPDATE`,
			provider, eventID).Scan(&typ, &payload, &processed)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: event %s/%s", ErrNotFound, provider, eventID)
		}
		if err != nil || processed {
			return err
		}
		outcome, err := s.applyStripeEvent(ctx, tx, eventID, typ, payload)
		if err != nil {
			return fmt.Errorf("process event %s: %w", eventID, err)
		}
		if err := s.crash("event:before-commit"); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE payouts_events SET processed_at = clock_timestamp(), outcome = $3 WHERE provider = $1 AND event_id = $2`,
			provider, eventID, outcome)
		return err
	})
}

func (s *Store) applyStripeEvent(ctx context.Context, tx pgx.Tx, eventID, typ string, payload []byte) (string, error) {
	switch typ {
	case "transfer.created", "transfer.updated", "transfer.reversed":
	default:
		return "ignored: Tandem does not use " + typ, nil
	}
	var ev stripe.Event
	if err := json.Unmarshal(payload, &ev); err != nil || ev.Data == nil {
		return "ignored: unreadable event", nil
	}
	var t stripe.Transfer
	if err := json.Unmarshal(ev.Data.Raw, &t); err != nil || t.ID == "" {
		return "ignored: the event carries no transfer", nil
	}
	var id uuid.UUID
	var n int
	err := tx.QueryRow(ctx, `SELECT disbursement_id, attempt FROM payouts_attempts WHERE provider = 'stripe' AND provider_ref = $1`, t.ID).Scan(&id, &n)
	if errors.Is(err, pgx.ErrNoRows) {
		// Out of order: the webhook came before the submit job recorded the reference.
		var perr error
		id, perr = uuid.Parse(t.Metadata["disbursement_id"])
		n, _ = strconv.Atoi(t.Metadata["attempt"])
		if perr != nil || n < 1 {
			return "ignored: transfer " + t.ID + " is not Tandem's", nil
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payouts_attempts WHERE disbursement_id = $1 AND attempt = $2 AND provider = 'stripe')`,
			id, n).Scan(&exists); err != nil {
			return "", err
		}
		if !exists {
			return "ignored: transfer " + t.ID + " names no attempt of Tandem's", nil
		}
		var ref string
		if err := tx.QueryRow(ctx, `SELECT coalesce(provider_ref, '') FROM payouts_attempts WHERE disbursement_id = $1 AND attempt = $2`, id, n).Scan(&ref); err != nil {
			return "", err
		}
		if ref != "" && ref != t.ID {
			s.logger.ErrorContext(ctx, "a second Stripe transfer for one attempt", "disbursement", id, "attempt", n, "recorded", ref, "event_transfer", t.ID)
			return fmt.Sprintf("ignored: DUPLICATE transfer %s for disbursement %s attempt %d, which already has %s: reconcile and recover it",
				t.ID, id, n, ref), nil
		}
	} else if err != nil {
		return "", err
	}
	currency := strings.ToUpper(string(t.Currency))
	exp, known := ledger.Exponent(currency)
	var amount decimal.Decimal
	var want string
	if err := tx.QueryRow(ctx, `SELECT amount, currency FROM payouts_disbursements WHERE id = $1`, id).Scan(&amount, &want); err != nil {
		return "", fmt.Errorf("disbursement %s: %w", id, err)
	}
	// An event that cannot be about this payout as Tandem made it changes nothing: a
	// transfer in another currency, of another amount, or reversed by more than it was.
	refuse := func(format string, args ...any) (string, error) {
		reason := fmt.Sprintf("refused: transfer %s for disbursement %s attempt %d: ", t.ID, id, n) + fmt.Sprintf(format, args...)
		s.logger.ErrorContext(ctx, "a Stripe event that does not fit its payout", "event", eventID, "reason", reason)
		return reason, nil
	}
	switch {
	case !known || currency != want:
		return refuse("currency %q, but the disbursement is in %s", currency, want)
	case t.Amount != amount.Shift(exp).IntPart() || !amount.Shift(exp).IsInteger():
		return refuse("amount %s %s, but the disbursement is %s %s", decimal.New(t.Amount, -exp).StringFixed(exp), currency,
			amount.StringFixed(exp), want)
	case t.AmountReversed < 0 || t.AmountReversed > t.Amount:
		return refuse("reversed %s %s of a transfer of %s %s", decimal.New(t.AmountReversed, -exp).StringFixed(exp), currency,
			decimal.New(t.Amount, -exp).StringFixed(exp), currency)
	}
	r := receiptOf(&t, exp)
	if err := s.record(ctx, tx, id, n, r, "stripe:"+eventID, "stripe "+typ+" "+eventID); err != nil {
		return "", err
	}
	return fmt.Sprintf("applied to disbursement %s attempt %d", id, n), nil
}
