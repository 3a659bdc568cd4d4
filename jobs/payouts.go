package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/tandemledger/tandem/payouts"
)

// SubmitPayoutArgs asks for a disbursement's payout to be sent (payouts.Store.Submit).
type SubmitPayoutArgs struct {
	Disbursement uuid.UUID `json:"disbursement"`
	// Round is how many times it was approved: see payouts.Jobs.
	Round int `json:"round"`
}

// Kind names the job in river_job.
func (SubmitPayoutArgs) Kind() string { return "submit_payout" }

// InsertOpts: one waiting submission per disbursement. Submit itself is safe to run twice.
func (SubmitPayoutArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: whileWaitingOrRunning}}
}

// SubmitPayoutWorker runs payouts.Store.Submit; River retries it with the same attempt and
// key after a crash or a transient provider error.
type SubmitPayoutWorker struct {
	river.WorkerDefaults[SubmitPayoutArgs]
	Payouts *payouts.Store
}

// Work submits one payout.
func (w *SubmitPayoutWorker) Work(ctx context.Context, job *river.Job[SubmitPayoutArgs]) error {
	err := w.Payouts.Submit(ctx, job.Args.Disbursement)
	if errors.Is(err, payouts.ErrNotFound) {
		return river.JobCancel(err)
	}
	return err
}

// Timeout bounds one submission: a provider call that hangs must not hold the job (and, as
// the job is unique, the disbursement) for longer; River retries it with the same key.
func (w *SubmitPayoutWorker) Timeout(*river.Job[SubmitPayoutArgs]) time.Duration { return time.Minute }

// SettlePayoutArgs asks what became of a sent attempt.
type SettlePayoutArgs struct {
	Disbursement uuid.UUID `json:"disbursement"`
	Attempt      int       `json:"attempt"`
}

// Kind names the job in river_job.
func (SettlePayoutArgs) Kind() string { return "settle_payout" }

// InsertOpts: one waiting settlement per attempt.
func (SettlePayoutArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: whileWaitingOrRunning}}
}

// SettlePayoutWorker runs payouts.Store.Settle, asking again later while the payout is
// still pending at the provider.
type SettlePayoutWorker struct {
	river.WorkerDefaults[SettlePayoutArgs]
	Payouts *payouts.Store
}

// Work settles one attempt.
func (w *SettlePayoutWorker) Work(ctx context.Context, job *river.Job[SettlePayoutArgs]) error {
	outcome, err := w.Payouts.Settle(ctx, job.Args.Disbursement, job.Args.Attempt)
	if errors.Is(err, payouts.ErrNotFound) {
		return river.JobCancel(err)
	}
	if err != nil {
		return err
	}
	if outcome == payouts.OutcomePending {
		return river.JobSnooze(max(w.Payouts.Provider().SettleAfter(), time.Second))
	}
	return nil
}

// Timeout bounds one settlement.
func (w *SettlePayoutWorker) Timeout(*river.Job[SettlePayoutArgs]) time.Duration { return time.Minute }

// RetryPayoutArgs asks for a failed disbursement to be retried automatically.
type RetryPayoutArgs struct {
	Disbursement uuid.UUID `json:"disbursement"`
	Failures     int       `json:"failures"`
}

// Kind names the job in river_job.
func (RetryPayoutArgs) Kind() string { return "retry_payout" }

// RetryPayoutWorker runs payouts.Store.AutoRetry.
type RetryPayoutWorker struct {
	river.WorkerDefaults[RetryPayoutArgs]
	Payouts *payouts.Store
}

// Work retries one disbursement.
func (w *RetryPayoutWorker) Work(ctx context.Context, job *river.Job[RetryPayoutArgs]) error {
	return w.Payouts.AutoRetry(ctx, job.Args.Disbursement, job.Args.Failures)
}

// ProcessEventArgs asks for a recorded provider event (webhook) to be processed.
type ProcessEventArgs struct {
	Provider string `json:"provider"`
	EventID  string `json:"event_id"`
}

// Kind names the job in river_job.
func (ProcessEventArgs) Kind() string { return "process_payout_event" }

// InsertOpts: one waiting job per event (the sweep asks again for events left unprocessed).
func (ProcessEventArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: whileWaitingOrRunning}}
}

// ProcessEventWorker runs payouts.Store.ProcessEvent.
type ProcessEventWorker struct {
	river.WorkerDefaults[ProcessEventArgs]
	Payouts *payouts.Store
}

// Work processes one event.
func (w *ProcessEventWorker) Work(ctx context.Context, job *river.Job[ProcessEventArgs]) error {
	return w.Payouts.ProcessEvent(ctx, job.Args.Provider, job.Args.EventID)
}

// PayoutsSweepArgs asks for the periodic payouts work: the sweep (auto-approvals under caps,
// retries, forfeits, lost jobs), commitments' due instalments and stipends of the month that
// ended. Every part is safe to run twice.
type PayoutsSweepArgs struct{}

// Kind names the job in river_job.
func (PayoutsSweepArgs) Kind() string { return "payouts_sweep" }

// InsertOpts: one waiting sweep.
func (PayoutsSweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: whileWaitingOrRunning}}
}

// PayoutsSweepWorker runs the periodic payouts work.
type PayoutsSweepWorker struct {
	river.WorkerDefaults[PayoutsSweepArgs]
	Payouts *payouts.Store
	Logger  *slog.Logger
	Now     func() time.Time
}

// Work runs one sweep. Every phase runs even when another fails, so one stuck disbursement
// cannot stop instalments or stipends; the errors are returned together.
func (w *PayoutsSweepWorker) Work(ctx context.Context, _ *river.Job[PayoutsSweepArgs]) error {
	due, err := w.Payouts.RunDue(ctx)
	errs := []error{err}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	months, err := w.Payouts.HeldStipendMonths(ctx)
	errs = append(errs, err)
	// Last month's stipends from the 8th: sessions verified in the first week still count.
	today := now().UTC()
	if today.Day() >= StipendGraceDays {
		firstOfMonth := time.Date(today.Year(), today.Month(), 1, 0, 0, 0, 0, time.UTC)
		months = append(months, firstOfMonth.AddDate(0, -1, 0))
	}
	stipends := 0
	for _, m := range months {
		st, err := w.Payouts.PayStipends(ctx, m)
		errs = append(errs, err)
		stipends += len(st)
	}
	if res := due.Sweep; w.Logger != nil && due != (payouts.DueResult{}) {
		w.Logger.InfoContext(ctx, "payouts sweep", "auto_approved", res.AutoApproved, "retried", res.Retried,
			"forfeited", res.Forfeited, "resubmitted", res.Resubmitted, "instalments_fulfilled", due.InstalmentsFulfilled,
			"instalments_failed", due.InstalmentsFailed, "stipends_computed", stipends)
	}
	return errors.Join(errs...)
}

// StipendGraceDays: a month's stipends are computed from this day of the next month on.
const StipendGraceDays = 8

// ReconcileArgs asks for a reconciliation of the provider's last Days of transfers.
type ReconcileArgs struct {
	Days int `json:"days"`
}

// Kind names the job in river_job.
func (ReconcileArgs) Kind() string { return "reconcile_payouts" }

// ReconcileWorker runs payouts.Store.Reconcile.
type ReconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]
	Payouts *payouts.Store
}

// Work reconciles.
func (w *ReconcileWorker) Work(ctx context.Context, job *river.Job[ReconcileArgs]) error {
	days := max(job.Args.Days, 1)
	_, err := w.Payouts.Reconcile(ctx, time.Now().AddDate(0, 0, -days))
	return err
}

// Timeout bounds a reconciliation of a large provider history.
func (w *ReconcileWorker) Timeout(*river.Job[ReconcileArgs]) time.Duration { return 10 * time.Minute }

// SubmitTx implements payouts.Jobs: false when a submission of this round was already
// waiting or running (River skipped the insert as a duplicate).
func (in *Inserter) SubmitTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, round int) (bool, error) {
	res, err := in.client.InsertTx(ctx, tx, SubmitPayoutArgs{Disbursement: id, Round: round}, nil)
	if err != nil {
		return false, err
	}
	return !res.UniqueSkippedAsDuplicate, nil
}

// SettleTx implements payouts.Jobs.
func (in *Inserter) SettleTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, attempt int, at time.Time) error {
	_, err := in.client.InsertTx(ctx, tx, SettlePayoutArgs{Disbursement: id, Attempt: attempt}, &river.InsertOpts{ScheduledAt: at})
	return err
}

// RetryTx implements payouts.Jobs.
func (in *Inserter) RetryTx(ctx context.Context, tx pgx.Tx, id uuid.UUID, failures int, at time.Time) error {
	_, err := in.client.InsertTx(ctx, tx, RetryPayoutArgs{Disbursement: id, Failures: failures}, &river.InsertOpts{ScheduledAt: at})
	return err
}

// EventTx implements payouts.Jobs.
func (in *Inserter) EventTx(ctx context.Context, tx pgx.Tx, provider, eventID string) error {
	_, err := in.client.InsertTx(ctx, tx, ProcessEventArgs{Provider: provider, EventID: eventID}, nil)
	return err
}
