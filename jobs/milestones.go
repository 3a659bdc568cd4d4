package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tandemledger/tandem/network"
)

// EvaluateMilestonesArgs asks for one participant's milestones to be evaluated.
type EvaluateMilestonesArgs struct {
	Participant string `json:"participant"`
	// Gen is the participant's evaluation generation when the fact was recorded: see the
	// protocol in network/facts.go. It is part of the job's uniqueness.
	Gen int64 `json:"gen"`
}

// Kind names the job in river_job.
func (EvaluateMilestonesArgs) Kind() string { return "evaluate_milestones" }

// InsertOpts makes jobs unique by (participant, generation) while they wait or run, so a
// burst of facts runs one evaluation. Completed and discarded jobs are deliberately not among
// the unique states (River counts completed ones by default): a fact after an evaluation
// finished must always get a new one. Running jobs must be (River requires it); the
// generation is what keeps a fact that arrives during a run from being swallowed.
func (EvaluateMilestonesArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: whileWaitingOrRunning}}
}

var whileWaitingOrRunning = []rivertype.JobState{ //nolint:gochecknoglobals
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
	rivertype.JobStateRetryable, rivertype.JobStateScheduled,
}

// EvaluateMilestonesWorker runs network.EvaluateParticipant. It is safe to run twice, or in
// two processes at once: awards are keyed and the evaluation takes the participant's lock.
type EvaluateMilestonesWorker struct {
	river.WorkerDefaults[EvaluateMilestonesArgs]
	Network *network.Store
	Logger  *slog.Logger
}

// Work evaluates one participant.
func (w *EvaluateMilestonesWorker) Work(ctx context.Context, job *river.Job[EvaluateMilestonesArgs]) error {
	res, err := w.Network.EvaluateParticipant(ctx, job.Args.Participant)
	if errors.Is(err, network.ErrNotFound) {
		return river.JobCancel(err) // no such participant: retrying cannot help
	}
	if err != nil {
		return err
	}
	if w.Logger != nil && (res.Awarded+res.Waiting+res.Paid) > 0 {
		w.Logger.InfoContext(ctx, "milestones evaluated", "participant", job.Args.Participant,
			"awarded", res.Awarded, "waiting_for_funds", res.Waiting, "paid_after_funding", res.Paid)
	}
	return nil
}

// Timeout bounds one evaluation.
func (w *EvaluateMilestonesWorker) Timeout(*river.Job[EvaluateMilestonesArgs]) time.Duration {
	return time.Minute
}

// ReleaseAwardsArgs asks for a program's awards waiting for funds to be paid, after a
// funding. Each funding asks once (Funding is its entry), so none is swallowed.
type ReleaseAwardsArgs struct {
	Program string `json:"program"`
	Funding string `json:"funding"`
}

// Kind names the job in river_job.
func (ReleaseAwardsArgs) Kind() string { return "release_awards" }

// ReleaseAwardsWorker runs network.ReleaseWaiting.
type ReleaseAwardsWorker struct {
	river.WorkerDefaults[ReleaseAwardsArgs]
	Network *network.Store
	// Pool reads River's discarded evaluations (the periodic sweep); nil skips them.
	Pool   *pgxpool.Pool
	Logger *slog.Logger
}

// Work pays what the fund now covers. Without a program (the periodic sweep) it tries every
// program with awards waiting: a fund can also grow without tandem program fund (an entry
// posted by an admin, a reversed award).
//
// The periodic sweep also asks again for the evaluation of participants whose
// evaluate_milestones job was discarded (it gave up: the facts folded into it would
// otherwise wait for the participant's next fact) since the previous sweep, and of
// participants with a blocked award.
//
// A program whose release fails does not hold up the others: each is tried, and the errors
// are returned together at the end (River retries the job; releases that committed find
// nothing left to pay).
func (w *ReleaseAwardsWorker) Work(ctx context.Context, job *river.Job[ReleaseAwardsArgs]) error {
	programs := []string{job.Args.Program}
	var errs []error
	if job.Args.Program == "" {
		if err := w.reevaluate(ctx, job.ID); err != nil {
			errs = append(errs, err)
		}
		var err error
		if programs, err = w.Network.ProgramsWaiting(ctx); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	for _, p := range programs {
		n, err := w.Network.ReleaseWaiting(ctx, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if w.Logger != nil && n > 0 {
			w.Logger.InfoContext(ctx, "awards paid after funding", "program", p, "paid", n)
		}
	}
	return errors.Join(errs...)
}

// reevaluate asks for the evaluations lost to discarded jobs since the previous sweep (the
// last one that completed; a week back, River's retention of discarded jobs, before the
// first) and for those of participants with blocked awards.
func (w *ReleaseAwardsWorker) reevaluate(ctx context.Context, self int64) error {
	if w.Pool == nil {
		return nil
	}
	rows, err := w.Pool.Query(ctx, `SELECT DISTINCT args->>'participant' FROM river_job
		WHERE kind = 'evaluate_milestones' AND state = 'discarded' AND finalized_at >= coalesce(
			(SELECT max(attempted_at) FROM river_job WHERE kind = 'release_awards' AND state = 'completed'
				AND coalesce(args->>'program', '') = '' AND id <> $1),
			now() - interval '7 days')
		ORDER BY 1`, self)
	if err != nil {
		return fmt.Errorf("discarded evaluations: %w", err)
	}
	lost, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("discarded evaluations: %w", err)
	}
	blocked, err := w.Network.BlockedParticipants(ctx)
	if err != nil {
		return err
	}
	people := slices.Compact(slices.Sorted(slices.Values(append(lost, blocked...))))
	n, err := w.Network.Reevaluate(ctx, people)
	if err != nil {
		return err
	}
	if w.Logger != nil && n > 0 {
		w.Logger.InfoContext(ctx, "evaluations asked for again", "after_discarded_jobs", len(lost), "with_blocked_awards", len(blocked))
	}
	return nil
}

// Inserter implements network.Jobs with an insert-only River client: facts ask for their
// jobs in their own transaction.
type Inserter struct {
	client *river.Client[pgx.Tx]
}

// NewInserter returns an Inserter on pool.
func NewInserter(pool *pgxpool.Pool) (*Inserter, error) {
	// River notifies workers of new jobs at most once per FetchCooldown per queue and
	// process: at the default 100 ms, a job inserted soon after another waited for the
	// workers' 1 s poll (make bench, (j): approval → paid p99 1.06 s).
	c, err := river.NewClient(riverpgxv5.New(pool), &river.Config{FetchCooldown: 10 * time.Millisecond})
	if err != nil {
		return nil, fmt.Errorf("new river inserter: %w", err)
	}
	return &Inserter{client: c}, nil
}

// EvaluateTx implements network.Jobs.
func (in *Inserter) EvaluateTx(ctx context.Context, tx pgx.Tx, evals []network.Evaluation) error {
	if len(evals) == 0 {
		return nil
	}
	// In participant order: a duplicate insert updates the waiting job's row, so two
	// transactions inserting for the same participants in different orders would deadlock.
	evals = slices.SortedFunc(slices.Values(evals), func(a, b network.Evaluation) int {
		return cmp.Or(strings.Compare(a.Participant, b.Participant), cmp.Compare(a.Gen, b.Gen))
	})
	params := make([]river.InsertManyParams, len(evals))
	for i, e := range evals {
		params[i] = river.InsertManyParams{Args: EvaluateMilestonesArgs{Participant: e.Participant, Gen: e.Gen}}
	}
	if _, err := in.client.InsertManyTx(ctx, tx, params); err != nil {
		return fmt.Errorf("insert evaluate_milestones: %w", err)
	}
	return nil
}

// ReleaseTx implements network.Jobs.
func (in *Inserter) ReleaseTx(ctx context.Context, tx pgx.Tx, program string) error {
	if _, err := in.client.InsertTx(ctx, tx, ReleaseAwardsArgs{Program: program, Funding: uuid.NewString()}, nil); err != nil {
		return fmt.Errorf("insert release_awards: %w", err)
	}
	return nil
}
