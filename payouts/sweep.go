package payouts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SweepResult counts what a sweep did.
type SweepResult struct {
	AutoApproved int `json:"auto_approved"`
	Retried      int `json:"retried"`
	Forfeited    int `json:"forfeited"`
	Resubmitted  int `json:"resubmitted"`
}

// Sweep is the periodic payouts job, safe to run twice or in two processes at once (each
// disbursement is taken FOR UPDATE SKIP LOCKED and re-checked):
//   - disbursements within the auto-approve limit that waited for room under a cap are
//     approved once there is room;
//   - failed disbursements past the remediation window are forfeited to the fund by an
//     explicit entry; those still owed an automatic retry whose backoff passed are retried
//     (the retry job normally does it on time);
//   - approved or open submissions whose job was lost are asked for again; Resubmitted
//     counts the jobs really enqueued, not those found still waiting or running.
func (s *Store) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	now := s.now()
	rows, err := s.db.Query(ctx, `SELECT d.id, d.state, d.approvals_needed,
		(SELECT count(*) FROM payouts_transitions t WHERE t.disbursement_id = d.id AND t.to_state = 'failed'),
		d.updated_at FROM payouts_disbursements d
		WHERE d.state = 'failed' OR (d.state = 'awaiting_approval' AND d.approvals_needed = 0)
		   OR (d.state IN ('approved', 'submitted') AND d.updated_at < $1)
		ORDER BY d.id LIMIT 10000`, now.Add(-time.Minute))
	if err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	type item struct {
		id       uuid.UUID
		state    string
		needed   int
		failures int
		since    time.Time
	}
	var items []item
	var it item
	if _, err := pgx.ForEachRow(rows, []any{&it.id, &it.state, &it.needed, &it.failures, &it.since}, func() error {
		items = append(items, it)
		return nil
	}); err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	var errs []error
	// Provider events whose processing job was lost (discarded after its retries).
	if err := s.requeueEvents(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, it := range items {
		err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			d, err := scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM payouts_disbursements WHERE id = $1 FOR UPDATE SKIP LOCKED`, it.id))
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && d.State != it.state) {
				return nil // another sweeper or job has it
			}
			if err != nil {
				return err
			}
			if d.State == Approved || d.State == Submitted {
				// Submit resends an unsent attempt, or asks to settle a sent one. A job still
				// waiting or running (one orphaned by a dead process stays running until
				// River rescues it) is not enqueued again, and not counted.
				queued, err := s.enqueueSubmit(ctx, tx, it.id)
				if queued {
					res.Resubmitted++
				}
				return err
			}
			pol, err := programPolicyTx(ctx, tx, d.ProgramID)
			if err != nil {
				return err
			}
			if d.State == AwaitingApproval {
				to, why, err := s.admission(ctx, tx, pol, d.PersonID, d.Amount, 0)
				if err != nil || to != Approved {
					return err
				}
				res.AutoApproved++
				return s.transition(ctx, tx, &d, Approved, SystemActor.Name, "the cap has room now; "+why)
			}
			// Failed.
			var last time.Time
			if err := tx.QueryRow(ctx, `SELECT max(at) FROM payouts_transitions WHERE disbursement_id = $1 AND to_state = 'failed'`, it.id).Scan(&last); err != nil {
				return err
			}
			// Both in the program's time (clock.go): a test clock moves the window.
			if last, err = s.programTimeTx(ctx, tx, d.ProgramID, last); err != nil {
				return err
			}
			now, err := s.programNowTx(ctx, tx, d.ProgramID)
			if err != nil {
				return err
			}
			if !now.Before(last.AddDate(0, 0, pol.RemediationDays)) {
				if err := s.transition(ctx, tx, &d, Forfeited, SystemActor.Name,
					fmt.Sprintf("not fixed within the remediation window of %d days", pol.RemediationDays)); err != nil {
					return err
				}
				res.Forfeited++
				return s.returnToFund(ctx, tx, d, "forfeited")
			}
			if it.failures <= pol.AutoRetries && !now.Before(last.Add(pol.RetryBackoff.Duration<<(it.failures-1))) {
				res.Retried++
				return s.transition(ctx, tx, &d, Approved, SystemActor.Name, fmt.Sprintf("automatic retry after failure %d", it.failures))
			}
			return nil
		})
		if err != nil {
			// One disbursement that cannot move must not hold up the others.
			s.logger.ErrorContext(ctx, "payouts sweep", "disbursement", it.id, "error", err)
			errs = append(errs, fmt.Errorf("sweep %s: %w", it.id, err))
		}
	}
	return res, errors.Join(errs...)
}

// requeueEvents asks again for provider events received over a minute ago and not processed.
func (s *Store) requeueEvents(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT provider, event_id FROM payouts_events
			WHERE processed_at IS NULL AND received_at < clock_timestamp() - interval '1 minute' ORDER BY received_at LIMIT 1000`)
		if err != nil {
			return fmt.Errorf("unprocessed events: %w", err)
		}
		type ev struct{ Provider, ID string }
		evs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ev])
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := s.jobs.EventTx(ctx, tx, e.Provider, e.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// DueResult counts what RunDue did.
type DueResult struct {
	Sweep                SweepResult `json:"sweep"`
	InstalmentsFulfilled int         `json:"instalments_fulfilled"`
	InstalmentsFailed    int         `json:"instalments_failed"`
}

// RunDue runs the payouts work due now — the sweep, then the commitments' due instalments
// (those that waited for funds tried again) — every part even when another fails, whose
// errors are returned together. The periodic job, POST /v1/payouts/run and
// tandem payouts run all call it.
func (s *Store) RunDue(ctx context.Context) (DueResult, error) {
	var res DueResult
	var err, rerr, ierr error
	res.Sweep, err = s.Sweep(ctx)
	rerr = s.RetryWaitingInstalments(ctx)
	res.InstalmentsFulfilled, res.InstalmentsFailed, ierr = s.ReleaseInstalments(ctx)
	return res, errors.Join(err, rerr, ierr)
}
