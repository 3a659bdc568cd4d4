// Package jobs sets up River on Tandem's PostgreSQL and registers the workers. Workers call
// into the domain packages and hold no business logic of their own.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// Config wires the River client.
type Config struct {
	Pool   *pgxpool.Pool
	Ledger *ledger.Ledger
	// Network runs the milestone jobs (evaluate_milestones, release_awards).
	Network *network.Store
	// Payouts runs the payout jobs (submit, settle, retry, webhook events, sweep, reconcile).
	Payouts *payouts.Store
	// SweepInterval is how often the payouts sweep runs (default 1 minute); reconciliation
	// runs hourly over the last 7 days.
	SweepInterval time.Duration
	// Now is the payouts sweep's clock (default time.Now): which month's stipends are due.
	Now    func() time.Time
	Logger *slog.Logger
	// CheckInterval is how often the ledger self-check runs (default 1 hour).
	CheckInterval time.Duration
	// SealInterval is how often the seal job extends the hash chain over new entries
	// (default 1 minute).
	SealInterval time.Duration
	// MaxWorkers for the default queue (default 20).
	MaxWorkers int
	// RescueAfter is how long a job may stay running before River's rescuer takes it for
	// orphaned (its process died) and retries it (default DefaultRescueAfter). A kind whose
	// worker has a longer Timeout is rescued only once that timeout has passed too. A window
	// under a minute (tests) also shortens the default job timeout to it: River requires the
	// window to be at least the timeout.
	RescueAfter time.Duration
}

// DefaultRescueAfter is the rescue window: jobs time out after a minute (the ledger check
// and reconciliation after ten), so a job still running after three minutes belongs to a
// process that died. River's own default, an hour, held payouts that long after a crash: a
// unique submit or settle job left running blocks its own replacement until rescued.
const DefaultRescueAfter = 3 * time.Minute

// NewClient returns a River client with every Tandem worker and periodic job registered. The
// periodic jobs are configured on every client, because River runs them on whichever client
// is the leader at the time.
func NewClient(cfg Config) (*river.Client[pgx.Tx], error) {
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Hour
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = 20
	}
	if cfg.SealInterval <= 0 {
		cfg.SealInterval = time.Minute
	}
	if cfg.RescueAfter <= 0 {
		cfg.RescueAfter = DefaultRescueAfter
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &LedgerCheckWorker{Ledger: cfg.Ledger, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("register ledger check worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &SealLedgerWorker{Ledger: cfg.Ledger, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("register seal_ledger worker: %w", err)
	}
	if cfg.Network != nil {
		if err := river.AddWorkerSafely(workers, &EvaluateMilestonesWorker{Network: cfg.Network, Logger: cfg.Logger}); err != nil {
			return nil, fmt.Errorf("register evaluate_milestones worker: %w", err)
		}
		if err := river.AddWorkerSafely(workers, &ReleaseAwardsWorker{Network: cfg.Network, Pool: cfg.Pool, Logger: cfg.Logger}); err != nil {
			return nil, fmt.Errorf("register release_awards worker: %w", err)
		}
	}
	if cfg.Payouts != nil {
		if cfg.SweepInterval <= 0 {
			cfg.SweepInterval = time.Minute
		}
		for _, add := range []func() error{
			func() error { return river.AddWorkerSafely(workers, &SubmitPayoutWorker{Payouts: cfg.Payouts}) },
			func() error { return river.AddWorkerSafely(workers, &SettlePayoutWorker{Payouts: cfg.Payouts}) },
			func() error { return river.AddWorkerSafely(workers, &RetryPayoutWorker{Payouts: cfg.Payouts}) },
			func() error { return river.AddWorkerSafely(workers, &ProcessEventWorker{Payouts: cfg.Payouts}) },
			func() error {
				return river.AddWorkerSafely(workers, &PayoutsSweepWorker{Payouts: cfg.Payouts, Logger: cfg.Logger, Now: cfg.Now})
			},
			func() error { return river.AddWorkerSafely(workers, &ReconcileWorker{Payouts: cfg.Payouts}) },
		} {
			if err := add(); err != nil {
				return nil, fmt.Errorf("register payouts worker: %w", err)
			}
		}
	}
	periodic := []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(cfg.CheckInterval),
			func() (river.JobArgs, *river.InsertOpts) { return LedgerCheckArgs{}, nil },
			&river.PeriodicJobOpts{ID: "ledger_check", RunOnStart: true}),
		river.NewPeriodicJob(river.PeriodicInterval(cfg.SealInterval),
			func() (river.JobArgs, *river.InsertOpts) { return SealLedgerArgs{}, nil },
			&river.PeriodicJobOpts{ID: "seal_ledger", RunOnStart: true}),
	}
	if cfg.Network != nil {
		periodic = append(periodic, river.NewPeriodicJob(river.PeriodicInterval(10*time.Minute),
			func() (river.JobArgs, *river.InsertOpts) { return ReleaseAwardsArgs{Funding: "periodic sweep"}, nil },
			&river.PeriodicJobOpts{ID: "release_awards_sweep", RunOnStart: true}))
	}
	if cfg.Payouts != nil {
		periodic = append(periodic,
			river.NewPeriodicJob(river.PeriodicInterval(cfg.SweepInterval),
				func() (river.JobArgs, *river.InsertOpts) { return PayoutsSweepArgs{}, nil },
				&river.PeriodicJobOpts{ID: "payouts_sweep", RunOnStart: true}),
			river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
				func() (river.JobArgs, *river.InsertOpts) { return ReconcileArgs{Days: 7}, nil },
				&river.PeriodicJobOpts{ID: "reconcile_payouts"}))
	}
	client, err := river.NewClient(riverpgxv5.New(cfg.Pool), &river.Config{
		// River fetches at most once per cooldown, as many jobs as workers are free: at the
		// default 100 ms and 20 workers, evaluations topped out near 200/s and a completing
		// fact waited seconds in the queue under 500 facts/s (make bench, (f)).
		FetchCooldown: 10 * time.Millisecond,
		Logger:        cfg.Logger,
		// River rescues orphaned running jobs on the leader every 30 s, those running longer
		// than this (and than their kind's Timeout).
		RescueStuckJobsAfter: cfg.RescueAfter,
		// River's default job timeout, or the rescue window where that is shorter (tests):
		// River refuses a window shorter than the timeout.
		JobTimeout:   min(time.Minute, cfg.RescueAfter),
		Queues:       map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.MaxWorkers}},
		Workers:      workers,
		PeriodicJobs: periodic,
		// River's daily REINDEX needs the tables' owner, which the server's role is not
		// (migrations/grants.go): none here; the owner reindexes when the indexes bloat.
		ReindexerIndexNames: []string{},
	})
	if err != nil {
		return nil, fmt.Errorf("new river client: %w", err)
	}
	return client, nil
}

// LedgerCheckArgs asks for a ledger self-check.
type LedgerCheckArgs struct{}

// Kind names the job in river_job.
func (LedgerCheckArgs) Kind() string { return "ledger_check" }

// InsertOpts keeps at most one check queued or running. Completed checks are deliberately
// left out of the unique states (River counts them by default), so asking for a check after
// one finished always runs a new one.
func (LedgerCheckArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled,
	}}}
}

// ErrLedgerUnsound is returned by a self-check that found discrepancies.
var ErrLedgerUnsound = errors.New("ledger self-check found discrepancies")

// LedgerCheckWorker recomputes every balance from the postings (ledger.Check). The database
// makes discrepancies impossible through normal writes; the check catches what bypasses it
// (a superuser disabling triggers, a restored backup). A failing check errors the job, so it
// is visible among River's failed jobs and logged at ERROR.
type LedgerCheckWorker struct {
	river.WorkerDefaults[LedgerCheckArgs]
	Ledger *ledger.Ledger
	Logger *slog.Logger
}

// Work runs one check.
func (w *LedgerCheckWorker) Work(ctx context.Context, job *river.Job[LedgerCheckArgs]) error {
	d, err := w.Ledger.Check(ctx)
	if err != nil {
		return err
	}
	if len(d) == 0 {
		if w.Logger != nil {
			w.Logger.InfoContext(ctx, "ledger self-check passed")
		}
		return nil
	}
	problems := make([]string, len(d))
	for i, x := range d {
		problems[i] = strings.TrimSpace(x.Account + " " + x.Problem)
	}
	if w.Logger != nil {
		w.Logger.ErrorContext(ctx, "ledger self-check failed", "discrepancies", problems)
	}
	return fmt.Errorf("%w: %s", ErrLedgerUnsound, strings.Join(problems, "; "))
}

// Timeout bounds a check on a very large ledger.
func (w *LedgerCheckWorker) Timeout(*river.Job[LedgerCheckArgs]) time.Duration {
	return 10 * time.Minute
}

// Health reports River's state for /healthz: whether the client runs, and jobs by state.
func Health(client *river.Client[pgx.Tx], pool *pgxpool.Pool) func(ctx context.Context) (any, error) {
	return func(ctx context.Context) (any, error) {
		select {
		case <-client.Stopped():
			return nil, errors.New("river client stopped")
		default:
		}
		counts := map[string]int64{}
		rows, err := pool.Query(ctx, `SELECT state::text, count(*) FROM river_job GROUP BY state`)
		if err != nil {
			return nil, fmt.Errorf("count river jobs: %w", err)
		}
		var state string
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error { counts[state] = n; return nil }); err != nil {
			return nil, fmt.Errorf("count river jobs: %w", err)
		}
		return map[string]any{"client_id": client.ID(), "jobs": counts}, nil
	}
}
