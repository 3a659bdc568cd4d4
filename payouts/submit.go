package payouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/internal/textfmt"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

// attempt is a stored attempt, as submission and settlement need it.
type attempt struct {
	n         int
	provider  string
	dest      string
	key       string
	pending   uuid.UUID
	ref       string
	outcome   string
	returned  decimal.Decimal
	submitted time.Time
	sent      bool
}

const attemptColumns = `attempt, provider, destination, idempotency_key, pending_entry_id, coalesce(provider_ref, ''),
	coalesce(outcome, ''), returned::text, submitted_at, sent_at IS NOT NULL`

func scanAttempt(row pgx.Row) (attempt, error) {
	var a attempt
	var returned string
	err := row.Scan(&a.n, &a.provider, &a.dest, &a.key, &a.pending, &a.ref, &a.outcome, &returned, &a.submitted, &a.sent)
	if err == nil {
		a.returned = decimal.RequireFromString(returned)
	}
	return a, err
}

func (a attempt) payout(d Disbursement) Payout {
	return Payout{Disbursement: d.ID, Attempt: a.n, IdempotencyKey: a.key, Person: d.PersonID, Destination: a.dest,
		Amount: d.Amount, Currency: d.Currency, Description: fmt.Sprintf("Tandem %s disbursement %s", d.ProgramID, d.ID)}
}

// Submit sends a disbursement's payout. It is the submit job's work and safe to run any
// number of times, at any point of a crash:
//
//  1. in one transaction: the disbursement (locked) moves approved → submitted, with a new
//     attempt and its pending entry wallet → cash;
//  2. the provider is called with the attempt's idempotency key (the disbursement id for the
//     first attempt, id:n for the n-th) — outside any transaction;
//  3. in one transaction: the provider's reference is recorded, and a settled answer posts
//     or voids the pending entry.
//
// A run that finds an attempt open but not sent (a crash between 1 and 3) sends it again
// with the same key, which the provider answers with the first transfer; a run that finds it
// sent does not send it again, and only makes sure it will be settled.
func (s *Store) Submit(ctx context.Context, id uuid.UUID) error {
	var d Disbursement
	var a attempt
	send := false
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if d, err = lockTx(ctx, tx, id); err != nil {
			return err
		}
		a, err = scanAttempt(tx.QueryRow(ctx, `SELECT `+attemptColumns+` FROM payouts_attempts
			WHERE disbursement_id = $1 AND outcome IS NULL ORDER BY attempt DESC LIMIT 1`, id))
		switch {
		case err == nil && a.sent:
			return s.jobs.SettleTx(ctx, tx, id, a.n, s.now().Add(s.provider.SettleAfter()))
		case err == nil:
			send = true
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		case d.State != Approved:
			return nil // canceled, or already paid: nothing to send
		}
		return s.open(ctx, tx, &d, &a, &send)
	})
	if err != nil || !send {
		return err
	}
	if err := s.crash("submit:after-pending"); err != nil {
		return err
	}
	if f, ok := s.provider.(Finder); ok && time.Since(a.submitted) > time.Hour {
		// The key may have expired at the provider: look for the transfer before sending.
		r, found, err := f.Find(ctx, a.payout(d))
		if err != nil {
			return fmt.Errorf("find %s attempt %d: %w", d.ID, a.n, err)
		}
		if found {
			return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
				return s.record(ctx, tx, id, a.n, r, SystemActor.Name, s.provider.Name()+" (found)")
			})
		}
	}
	receipt, err := s.provider.Send(ctx, a.payout(d))
	var refusal *Refusal
	if errors.As(err, &refusal) {
		receipt = Receipt{Outcome: OutcomeFailed, Reason: refusal.Reason}
	} else if err != nil {
		return fmt.Errorf("send %s attempt %d: %w", d.ID, a.n, err)
	}
	if err := s.crash("submit:after-send"); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		return s.record(ctx, tx, id, a.n, receipt, SystemActor.Name, s.provider.Name())
	})
}

// open starts attempt n+1 of an approved disbursement: its pending entry and the move to
// submitted. Without a destination, or a wallet that cannot cover the payout, it fails; to a
// destination its approvals did not see, it goes back for approval (reapproveIfMoved).
func (s *Store) open(ctx context.Context, tx pgx.Tx, d *Disbursement, a *attempt, send *bool) error {
	var last int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(attempt), 0) FROM payouts_attempts WHERE disbursement_id = $1`, d.ID).Scan(&last); err != nil {
		return err
	}
	dest, err := s.destinationTx(ctx, tx, d.PersonID)
	if errors.Is(err, ErrNoDestination) {
		return s.fail(ctx, tx, d, err.Error())
	}
	if err != nil {
		return err
	}
	if back, err := s.reapproveIfMoved(ctx, tx, d, dest); err != nil || back {
		return err
	}
	n := last + 1
	key := d.ID
	if n > 1 {
		key = fmt.Sprintf("%s:%d", d.ID, n)
	}
	// A wallet that cannot pay fails the disbursement.
	e, refused, err := postOrShort(ctx, tx, s.ledger.PostPendingTx, ledger.NewEntry{
		IdempotencyKey: "payout:" + key,
		Description:    fmt.Sprintf("payout of disbursement %s to %s via %s (attempt %d)", d.ID, d.PersonID, s.provider.Name(), n),
		Metadata: json.RawMessage(fmt.Sprintf(`{"program":%q,"person":%q,"disbursement":%q,"attempt":%d,"provider":%q,"flow":"payout"}`,
			d.ProgramID, d.PersonID, d.ID, n, s.provider.Name())),
		Postings: []ledger.Posting{
			{Account: d.Wallet, Side: ledger.Debit, Amount: d.Amount, Currency: d.Currency},
			{Account: network.CashAccount(d.Currency), Side: ledger.Credit, Amount: d.Amount, Currency: d.Currency},
		},
	}, ledger.ErrInsufficientFunds, ledger.ErrAccountClosed)
	if err != nil {
		return fmt.Errorf("pending entry of %s: %w", d.ID, err)
	}
	if refused != nil {
		return s.fail(ctx, tx, d, fmt.Sprintf("the wallet %s cannot pay it: %v", d.Wallet, refused))
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payouts_attempts (disbursement_id, attempt, provider, destination, idempotency_key, pending_entry_id)
		VALUES ($1, $2, $3, $4, $5, $6)`, d.ID, n, s.provider.Name(), dest, key, e.ID); err != nil {
		return fmt.Errorf("attempt %d of %s: %w", n, d.ID, err)
	}
	if err := s.transition(ctx, tx, d, Submitted, SystemActor.Name,
		fmt.Sprintf("attempt %d sent to %s (%s), idempotency key %s", n, s.provider.Name(), dest, key)); err != nil {
		return err
	}
	*a = attempt{n: n, provider: s.provider.Name(), dest: dest, key: key, pending: e.ID, submitted: time.Now()}
	*send = true
	return nil
}

// record writes what the provider said about attempt n: its reference (once), and a settled
// outcome. It is where submission, settlement and webhooks meet; all of them lock the
// disbursement first, so one wins and the others find the outcome written.
func (s *Store) record(ctx context.Context, tx pgx.Tx, id uuid.UUID, n int, r Receipt, actor, source string) error {
	_, err := s.recordChange(ctx, tx, id, n, r, actor, source)
	return err
}

// recorded is what record did to an attempt: the attempt as read under the disbursement's
// lock, and as left. They are equal when someone else recorded it first.
type recorded struct {
	before, after attempt
	reason        string // why it failed, when record failed it
}

// changed reports whether record wrote anything of the attempt.
func (c recorded) changed() bool {
	return c.after.ref != c.before.ref || c.after.sent != c.before.sent || c.after.outcome != c.before.outcome ||
		!c.after.returned.Equal(c.before.returned)
}

// recordChange is record, reporting what it changed.
func (s *Store) recordChange(ctx context.Context, tx pgx.Tx, id uuid.UUID, n int, r Receipt, actor, source string) (recorded, error) {
	d, err := lockTx(ctx, tx, id)
	if err != nil {
		return recorded{}, err
	}
	a, err := scanAttempt(tx.QueryRow(ctx, `SELECT `+attemptColumns+` FROM payouts_attempts WHERE disbursement_id = $1 AND attempt = $2`, id, n))
	if err != nil {
		return recorded{}, fmt.Errorf("attempt %d of %s: %w", n, id, err)
	}
	c := recorded{before: a}
	if r.Ref != "" && a.ref == "" {
		if _, err := tx.Exec(ctx, `UPDATE payouts_attempts SET provider_ref = $3, sent_at = clock_timestamp()
			WHERE disbursement_id = $1 AND attempt = $2`, id, n, r.Ref); err != nil {
			return c, fmt.Errorf("record reference of %s: %w", id, err)
		}
		a.ref, a.sent = r.Ref, true
	} else if !a.sent && r.Outcome != OutcomePending {
		if _, err := tx.Exec(ctx, `UPDATE payouts_attempts SET sent_at = clock_timestamp() WHERE disbursement_id = $1 AND attempt = $2`, id, n); err != nil {
			return c, err
		}
		a.sent = true
	}
	c.after = a
	if a.outcome == "" && r.Outcome == OutcomePaid && r.Returned.GreaterThanOrEqual(d.Amount) {
		r = Receipt{Ref: r.Ref, Outcome: OutcomeFailed, Reason: "returned in full before it settled"}
	}
	switch {
	case a.outcome == "" && r.Outcome == OutcomePaid:
		if err := s.settle(ctx, tx, &d, a, OutcomePaid, "", actor, source); err != nil {
			return c, err
		}
		a.outcome = string(OutcomePaid)
		c.after = a
	case a.outcome == "" && r.Outcome == OutcomeFailed:
		c.after.outcome, c.reason = string(OutcomeFailed), r.Reason
		return c, s.settle(ctx, tx, &d, a, OutcomeFailed, r.Reason, actor, source)
	case a.outcome == "":
		return c, s.jobs.SettleTx(ctx, tx, id, n, s.now().Add(s.provider.SettleAfter()))
	}
	if a.outcome == string(OutcomePaid) && r.Returned.GreaterThan(a.returned) {
		if err := s.returned(ctx, tx, &d, &a, r.Returned, source); err != nil {
			return c, err
		}
		c.after = a
	}
	return c, nil
}

// settle posts (paid) or voids (failed) the attempt's pending entry and moves the
// disbursement on. A failure is retried automatically while the policy allows.
func (s *Store) settle(ctx context.Context, tx pgx.Tx, d *Disbursement, a attempt, outcome Outcome, reason, actor, source string) error {
	res := ledger.Resolution{IdempotencyKey: fmt.Sprintf("payout:%s:%s", a.key, outcome)}
	var e ledger.Entry
	var err error
	if outcome == OutcomePaid {
		res.Description = fmt.Sprintf("payout of disbursement %s paid (%s)", d.ID, source)
		e, err = s.ledger.CommitTx(ctx, tx, a.pending, res)
	} else {
		res.Description = fmt.Sprintf("payout of disbursement %s failed: %s", d.ID, reason)
		e, err = s.ledger.VoidTx(ctx, tx, a.pending, res)
	}
	if err != nil {
		return fmt.Errorf("settle %s attempt %d: %w", d.ID, a.n, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE payouts_attempts SET outcome = $3, reason = $4, resolved_entry_id = $5, settled_at = clock_timestamp()
		WHERE disbursement_id = $1 AND attempt = $2`, d.ID, a.n, string(outcome), reason, e.ID); err != nil {
		return fmt.Errorf("settle %s attempt %d: %w", d.ID, a.n, err)
	}
	if outcome == OutcomePaid {
		return s.transition(ctx, tx, d, Paid, actor, fmt.Sprintf("attempt %d paid (%s)", a.n, source))
	}
	return s.fail(ctx, tx, d, fmt.Sprintf("attempt %d failed (%s): %s", a.n, source, reason))
}

// fail moves a disbursement to failed and, while the policy's automatic retries last, asks
// for the next one after the backoff (doubling each time).
func (s *Store) fail(ctx context.Context, tx pgx.Tx, d *Disbursement, reason string) error {
	failures, err := failuresTx(ctx, tx, d.ID)
	if err != nil {
		return err
	}
	failures++
	pol, err := programPolicyTx(ctx, tx, d.ProgramID)
	if err != nil {
		return err
	}
	if failures <= pol.AutoRetries {
		at := s.now().Add(pol.RetryBackoff.Duration << (failures - 1))
		reason += fmt.Sprintf("; automatic retry %d of %d at %s", failures, pol.AutoRetries, at.UTC().Format(time.RFC3339))
		if err := s.jobs.RetryTx(ctx, tx, uuid.MustParse(d.ID), failures, at); err != nil {
			return fmt.Errorf("ask to retry %s: %w", d.ID, err)
		}
	} else {
		reason += fmt.Sprintf("; no automatic retry left: fix the destination or retry within %s, or it is forfeited to the fund",
			textfmt.Days(pol.RemediationDays))
	}
	return s.transition(ctx, tx, d, Failed, SystemActor.Name, reason)
}

// returned records money the provider gave back after paying (a.returned is updated): an entry cash → wallet for
// what is new, linked to the disbursement and the attempt, and — once all of it is back —
// the move paid → returned. A partial return stays paid, with the return listed.
func (s *Store) returned(ctx context.Context, tx pgx.Tx, d *Disbursement, a *attempt, total decimal.Decimal, event string) error {
	if total.GreaterThan(d.Amount) {
		total = d.Amount
	}
	delta := total.Sub(a.returned)
	if !delta.IsPositive() {
		return nil
	}
	e, err := s.ledger.PostTx(ctx, tx, ledger.NewEntry{
		IdempotencyKey: fmt.Sprintf("payout-return:%s:%s", a.key, total.String()),
		Description:    fmt.Sprintf("payout of disbursement %s returned by %s: %s back to the wallet", d.ID, a.provider, money(delta, d.Currency)),
		Metadata: json.RawMessage(fmt.Sprintf(`{"program":%q,"person":%q,"disbursement":%q,"attempt":%d,"returns":%q,"flow":"payout_return"}`,
			d.ProgramID, d.PersonID, d.ID, a.n, a.pending)),
		Postings: []ledger.Posting{
			{Account: network.CashAccount(d.Currency), Side: ledger.Debit, Amount: delta, Currency: d.Currency},
			{Account: d.Wallet, Side: ledger.Credit, Amount: delta, Currency: d.Currency},
		},
	})
	if err != nil {
		return fmt.Errorf("return of %s: %w", d.ID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payouts_returns (disbursement_id, attempt, amount, entry_id, event) VALUES ($1, $2, $3, $4, $5)`,
		d.ID, a.n, delta.String(), e.ID, event); err != nil {
		return fmt.Errorf("record return of %s: %w", d.ID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE payouts_attempts SET returned = $3 WHERE disbursement_id = $1 AND attempt = $2`, d.ID, a.n, total.String()); err != nil {
		return err
	}
	a.returned = total
	if d.State == Paid && total.GreaterThanOrEqual(d.Amount) {
		return s.transition(ctx, tx, d, Returned, SystemActor.Name,
			fmt.Sprintf("the provider returned the payout (%s); it is back in the wallet: retry it (e.g. after a new destination) or cancel it", event))
	}
	return nil
}

// Settle asks the provider what became of a sent attempt (the settle job, when no webhook
// told first) and records it. It returns the outcome; pending means ask again later.
func (s *Store) Settle(ctx context.Context, id uuid.UUID, n int) (Outcome, error) {
	// The disbursement alone, not its history: only the payout is asked about.
	d, err := scan(s.db.QueryRow(ctx, `SELECT `+columns+` FROM payouts_disbursements WHERE id = $1`, id))
	var a attempt
	if err == nil {
		a, err = scanAttempt(s.db.QueryRow(ctx, `SELECT `+attemptColumns+` FROM payouts_attempts WHERE disbursement_id = $1 AND attempt = $2`, id, n))
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("%w: attempt %d of %s", ErrNotFound, n, id)
	}
	if err != nil {
		return "", err
	}
	if a.ref == "" || a.provider != s.provider.Name() {
		return Outcome(a.outcome), nil // not sent yet (the submit job owns it), or another provider's
	}
	r, err := s.provider.Status(ctx, a.payout(d), a.ref)
	if err != nil {
		return "", err
	}
	if a.outcome != "" && !r.Returned.GreaterThan(a.returned) {
		return Outcome(a.outcome), nil
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		return s.record(ctx, tx, id, n, r, SystemActor.Name, s.provider.Name()+" status")
	})
	return r.Outcome, err
}

// AutoRetry is the retry job: it sends a failed disbursement again if it is still failed
// after the same number of failures (an admin may have retried or canceled it meanwhile).
func (s *Store) AutoRetry(ctx context.Context, id uuid.UUID, failures int) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		d, err := lockTx(ctx, tx, id)
		if err != nil || d.State != Failed {
			return err
		}
		n, err := failuresTx(ctx, tx, d.ID)
		if err != nil || n != failures {
			return err
		}
		return s.transition(ctx, tx, &d, Approved, SystemActor.Name, fmt.Sprintf("automatic retry after failure %d", failures))
	})
}

// failuresTx counts the times a disbursement failed: automatic retries are numbered by it.
func failuresTx(ctx context.Context, tx pgx.Tx, id string) (int, error) {
	var n int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM payouts_transitions WHERE disbursement_id = $1 AND to_state = 'failed'`, id).Scan(&n)
	return n, err
}
