package payouts

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
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
}

// OfPerson reads a person's latest disbursements (at most limit, default 20, at most 100) and
// where their next payout goes, in one read-only transaction of two queries.
func (s *Store) OfPerson(ctx context.Context, person string, limit int) (PersonView, error) {
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, 100)
	v := PersonView{Provider: s.provider.Name()}
	err := pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		dest, err := s.destinationTx(ctx, tx, person)
		if err != nil && !errors.Is(err, ErrNoDestination) {
			return err
		}
		v.Destination = dest
		rows, err := tx.Query(ctx, `SELECT `+columns+`, coalesce(lt.last_reason, ''), coalesce(la.sent_to, ''), coalesce(la.failure, '')
			FROM payouts_disbursements d
			LEFT JOIN LATERAL (SELECT t.reason AS last_reason FROM payouts_transitions t WHERE t.disbursement_id = d.id
			                   ORDER BY t.id DESC LIMIT 1) lt ON true
			LEFT JOIN LATERAL (SELECT a.destination AS sent_to, CASE a.outcome WHEN 'failed' THEN a.reason ELSE '' END AS failure
			                   FROM payouts_attempts a WHERE a.disbursement_id = d.id ORDER BY a.attempt DESC LIMIT 1) la ON true
			WHERE d.person_id = $1 ORDER BY d.created_at DESC, d.id DESC LIMIT $2`, person, limit)
		if err != nil {
			return err
		}
		v.Lines, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Line, error) {
			var l Line
			d, err := scan(extraRow{r, []any{&l.Why, &l.SentTo, &l.Failure}})
			l.Disbursement = d
			return l, err
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
