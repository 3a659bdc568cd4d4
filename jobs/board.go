package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
)

// Board shows admins the jobs that did not simply complete — retrying after errors,
// discarded after their last attempt, cancelled — and lets them retry or cancel one. It
// works through River's own client API on the shared database, from any process.
type Board struct {
	client *river.Client[pgx.Tx]
}

// NewBoard returns a Board on pool.
func NewBoard(pool *pgxpool.Pool) (*Board, error) {
	c, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		return nil, fmt.Errorf("new river client for the jobs board: %w", err)
	}
	return &Board{client: c}, nil
}

// ErrJobNotFound: no job with that id.
var ErrJobNotFound = errors.New("job not found")

// ErrDuplicate: the job cannot be retried while a job of its kind with the same arguments
// waits or runs (the kind is unique).
var ErrDuplicate = errors.New("an identical job is already waiting or running")

// ErrInvalidState: the state asked for is not one a job can be in.
var ErrInvalidState = errors.New("invalid job state")

// Job is a job as the board shows it.
type Job struct {
	ID          int64      `json:"id"`
	Kind        string     `json:"kind"`
	State       string     `json:"state"`
	Attempt     int        `json:"attempt"`
	MaxAttempts int        `json:"max_attempts"`
	Args        string     `json:"args"`
	LastError   string     `json:"last_error,omitempty"`
	ErrorAt     *time.Time `json:"error_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	ScheduledAt time.Time  `json:"scheduled_at"`
	FinalizedAt *time.Time `json:"finalized_at,omitempty"`
	Errors      int        `json:"errors"`
}

func jobOf(r *rivertype.JobRow) Job {
	j := Job{ID: r.ID, Kind: r.Kind, State: string(r.State), Attempt: r.Attempt, MaxAttempts: r.MaxAttempts,
		Args: string(r.EncodedArgs), CreatedAt: r.CreatedAt, ScheduledAt: r.ScheduledAt, FinalizedAt: r.FinalizedAt,
		Errors: len(r.Errors)}
	if n := len(r.Errors); n > 0 {
		last := r.Errors[n-1]
		j.LastError, j.ErrorAt = last.Error, &last.At
	}
	return j
}

// BoardStates are the states the board lists by default: the jobs someone may need to look at.
var BoardStates = []string{string(rivertype.JobStateRetryable), string(rivertype.JobStateDiscarded)} //nolint:gochecknoglobals

// List returns up to limit jobs (default 100, at most 500) in the given states (default
// BoardStates) and, when kind is not empty, of that kind, newest first.
func (b *Board) List(ctx context.Context, states []string, kind string, limit int) ([]Job, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	if len(states) == 0 {
		states = BoardStates
	}
	all := rivertype.JobStates()
	params := river.NewJobListParams().First(limit).OrderBy(river.JobListOrderByID, river.SortOrderDesc)
	var want []rivertype.JobState
	for _, s := range states {
		st := rivertype.JobState(s)
		if !slices.Contains(all, st) {
			return nil, fmt.Errorf("%w: %q (one of %v)", ErrInvalidState, s, all)
		}
		want = append(want, st)
	}
	params = params.States(want...)
	if kind != "" {
		params = params.Kinds(kind)
	}
	res, err := b.client.JobList(ctx, params)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out := make([]Job, len(res.Jobs))
	for i, r := range res.Jobs {
		out[i] = jobOf(r)
	}
	return out, nil
}

// Get returns one job.
func (b *Board) Get(ctx context.Context, id int64) (Job, error) {
	r, err := b.client.JobGet(ctx, id)
	if errors.Is(err, river.ErrNotFound) {
		return Job{}, fmt.Errorf("%w: %d", ErrJobNotFound, id)
	}
	if err != nil {
		return Job{}, fmt.Errorf("get job %d: %w", id, err)
	}
	return jobOf(r), nil
}

// RetryTx makes a job available to run now, in tx (with the audit line of who asked): a
// discarded, cancelled or retrying job runs again; a running one is left alone by River.
// It returns the job before and after.
func (b *Board) RetryTx(ctx context.Context, tx pgx.Tx, id int64) (before, after Job, err error) {
	return b.change(ctx, tx, id, "retry", b.client.JobRetryTx)
}

// CancelTx cancels a job in tx: one waiting or retrying is not run again; one running is
// asked to stop. A finished job is left as it is.
func (b *Board) CancelTx(ctx context.Context, tx pgx.Tx, id int64) (before, after Job, err error) {
	return b.change(ctx, tx, id, "cancel", b.client.JobCancelTx)
}

func (b *Board) change(ctx context.Context, tx pgx.Tx, id int64, what string,
	fn func(context.Context, pgx.Tx, int64) (*rivertype.JobRow, error)) (Job, Job, error) {
	r, err := b.client.JobGetTx(ctx, tx, id)
	if errors.Is(err, river.ErrNotFound) {
		return Job{}, Job{}, fmt.Errorf("%w: %d", ErrJobNotFound, id)
	}
	if err != nil {
		return Job{}, Job{}, fmt.Errorf("%s job %d: %w", what, id, err)
	}
	before := jobOf(r)
	r, err = fn(ctx, tx, id)
	if errors.Is(err, river.ErrNotFound) {
		return Job{}, Job{}, fmt.Errorf("%w: %d", ErrJobNotFound, id)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return Job{}, Job{}, fmt.Errorf("%s job %d: %w", what, id, ErrDuplicate)
	}
	if err != nil {
		return Job{}, Job{}, fmt.Errorf("%s job %d: %w", what, id, err)
	}
	return before, jobOf(r), nil
}
