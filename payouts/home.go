package payouts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Line is a disbursement as its person sees it on their page: the disbursement, why it is in
// its state, and where its latest attempt went.
type Line struct {
	Disbursement
	// Why is the reason of its latest state change ("attempt 1 failed (sandbox): …").
	Why string
	// SentTo is the destination of the latest attempt ("" before the first); Failure is that
	// attempt's failure reason as the provider gave it ("" unless it failed).
	SentTo, Failure string
	// For a failed disbursement: Failures counts the times it failed; NextRetryAt is when it
	// is sent again automatically (nil: no automatic retry left); ForfeitAt is when, still
	// failed, it goes back to the fund (a later failure moves it later); Cause says what
	// failed (CauseDestination, CauseNoDestination or CauseProgram).
	Failures    int
	NextRetryAt *time.Time
	ForfeitAt   *time.Time
	Cause       string
}

// Causes of a failed payout, as far as the records tell them apart: what the person can fix
// (their payout account) from what they cannot.
const (
	// CauseDestination: the provider refused the payout to the person's payout account.
	CauseDestination = "destination"
	// CauseNoDestination: the person has no payout account at the provider.
	CauseNoDestination = "no_destination"
	// CauseProgram: Tandem or the program could not send it (the wallet could not cover it,
	// a currency or amount the provider does not take): not the person's doing.
	CauseProgram = "program"
)

// programRefusals are provider refusals about the payment itself, not about the account it
// was sent to (see Stripe.Send and stripeError).
var programRefusals = []string{"unknown currency", "decimal places", "(amount_too_small)", "(amount_too_large)", "(parameter_"}

// failureCause says whose side a failure is on, from the failed transition's reason (why) and
// the provider's reason for the latest attempt (failure).
func failureCause(why, failure string) string {
	switch {
	case strings.HasPrefix(why, ErrNoDestination.Error()):
		return CauseNoDestination
	case strings.HasPrefix(why, "attempt ") && failure != "":
		for _, p := range programRefusals {
			if strings.Contains(failure, p) {
				return CauseProgram
			}
		}
		return CauseDestination
	}
	return CauseProgram
}

// PersonView is what a person's page shows of their payouts.
type PersonView struct {
	// Lines are the person's latest disbursements, newest first.
	Lines []Line
	// Destination is where the next payout goes at the configured provider: the latest
	// destination set, or the sandbox's default; "" when the provider has none on file.
	Destination string
	// Provider names the configured provider ("sandbox", "stripe").
	Provider string
	// AwaitingApproval sums, by wallet account, the money credited to the person's wallets
	// whose disbursement awaits one or two admins' approval; AwaitingRoom what waits for room
	// under the program's monthly or yearly cap. Neither is the person's until approved.
	AwaitingApproval, AwaitingRoom map[string]decimal.Decimal
}

// OfPerson reads a person's latest disbursements (at most limit, default 20, at most 100),
// what awaits approval in their wallets, and where their next payout goes, in one read-only
// transaction.
func (s *Store) OfPerson(ctx context.Context, person string, limit int) (PersonView, error) {
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, 100)
	v := PersonView{Provider: s.provider.Name(), AwaitingApproval: map[string]decimal.Decimal{}, AwaitingRoom: map[string]decimal.Decimal{}}
	err := pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		dest, err := s.destinationTx(ctx, tx, person)
		if err != nil && !errors.Is(err, ErrNoDestination) {
			return err
		}
		v.Destination = dest
		rows, err := tx.Query(ctx, `SELECT `+columns+`, coalesce(lt.last_reason, ''), coalesce(la.sent_to, ''), coalesce(la.failure, ''),
			f.failures, f.failed_at
			FROM payouts_disbursements d
			LEFT JOIN LATERAL (SELECT t.reason AS last_reason FROM payouts_transitions t WHERE t.disbursement_id = d.id
			                   ORDER BY t.id DESC LIMIT 1) lt ON true
			LEFT JOIN LATERAL (SELECT a.destination AS sent_to, CASE a.outcome WHEN 'failed' THEN a.reason ELSE '' END AS failure
			                   FROM payouts_attempts a WHERE a.disbursement_id = d.id ORDER BY a.attempt DESC LIMIT 1) la ON true
			LEFT JOIN LATERAL (SELECT count(*)::int AS failures, max(t.at) AS failed_at FROM payouts_transitions t
			                   WHERE t.disbursement_id = d.id AND t.to_state = 'failed') f ON true
			WHERE d.person_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT $2`, person, limit)
		if err != nil {
			return err
		}
		var failedAt []*time.Time
		v.Lines, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Line, error) {
			var l Line
			var at *time.Time
			d, err := scan(extraRow{r, []any{&l.Why, &l.SentTo, &l.Failure, &l.Failures, &at}})
			l.Disbursement = d
			failedAt = append(failedAt, at)
			return l, err
		})
		if err != nil {
			return err
		}
		// As fail asks for the retry and Sweep forfeits: the backoff doubles with each failure.
		policies := map[string]Policy{}
		for i := range v.Lines {
			l := &v.Lines[i]
			if l.State != Failed || failedAt[i] == nil {
				continue
			}
			pol, ok := policies[l.ProgramID]
			if !ok {
				if pol, err = programPolicyTx(ctx, tx, l.ProgramID); err != nil {
					return err
				}
				policies[l.ProgramID] = pol
			}
			moved, err := s.movedSinceTx(ctx, tx, l.ProgramID, *failedAt[i]) // a test clock's advances (clock.go)
			if err != nil {
				return err
			}
			if l.Failures >= 1 && l.Failures <= pol.AutoRetries {
				at := failedAt[i].Add(pol.RetryBackoff.Duration<<(l.Failures-1) - moved)
				l.NextRetryAt = &at
			}
			forfeit := failedAt[i].AddDate(0, 0, pol.RemediationDays).Add(-moved)
			l.ForfeitAt = &forfeit
			l.Cause = failureCause(l.Why, l.Failure)
		}
		rows, err = tx.Query(ctx, `SELECT wallet, coalesce(sum(amount) FILTER (WHERE approvals_needed > 0), 0)::text,
			coalesce(sum(amount) FILTER (WHERE approvals_needed = 0), 0)::text
			FROM payouts_disbursements WHERE person_id = $1 AND state = 'awaiting_approval' GROUP BY wallet`, person)
		if err != nil {
			return err
		}
		var wallet, approval, room string
		_, err = pgx.ForEachRow(rows, []any{&wallet, &approval, &room}, func() error {
			if d := decimal.RequireFromString(approval); d.IsPositive() {
				v.AwaitingApproval[wallet] = d
			}
			if d := decimal.RequireFromString(room); d.IsPositive() {
				v.AwaitingRoom[wallet] = d
			}
			return nil
		})
		return err
	})
	if err != nil {
		return PersonView{}, fmt.Errorf("payouts of %s: %w", person, err)
	}
	return v, nil
}

// extraRow scans a row that has more columns than scan reads into extra.
type extraRow struct {
	pgx.Row
	extra []any
}

func (r extraRow) Scan(dest ...any) error { return r.Row.Scan(append(dest, r.extra...)...) }
