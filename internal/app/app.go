// Package app wires Tandem's domain packages together once, for the server, the command line,
// the demo and tests: the ledger, the network asking River for its jobs, awards handed to
// payouts, and the River client that runs every worker.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// Config tunes an App.
type Config struct {
	Logger *slog.Logger
	// Workers is River's MaxWorkers for the default queue (default 20).
	Workers int
	// CheckInterval is how often the ledger self-check runs (default 1 hour).
	CheckInterval time.Duration
	// Now is the network's clock (tests).
	Now func() time.Time
}

// App is Tandem assembled.
type App struct {
	Pool    *pgxpool.Pool
	Ledger  *ledger.Ledger
	Access  *access.Store
	Network *network.Store
	Payouts *payouts.Store
	// River runs the workers once Start is called; it is not started by New.
	River *river.Client[pgx.Tx]
}

// New assembles Tandem on pool (migrations already applied).
func New(pool *pgxpool.Pool, cfg Config) (*App, error) {
	l := ledger.New(pool, &ledger.Config{Logger: cfg.Logger})
	in, err := jobs.NewInserter(pool)
	if err != nil {
		return nil, err
	}
	p := payouts.New(pool)
	n, err := network.New(pool, network.Config{Ledger: l, Jobs: in, OnAward: p.OnAward, Logger: cfg.Logger, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	client, err := jobs.NewClient(jobs.Config{Pool: pool, Ledger: l, Network: n, Logger: cfg.Logger,
		MaxWorkers: cfg.Workers, CheckInterval: cfg.CheckInterval})
	if err != nil {
		return nil, err
	}
	return &App{Pool: pool, Ledger: l, Access: access.New(pool), Network: n, Payouts: p, River: client}, nil
}

// Start runs the River workers until Stop. They run on a context of their own: a cancelled
// request context must let running jobs finish.
func (a *App) Start(ctx context.Context) error {
	if err := a.River.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start river: %w", err)
	}
	return nil
}

// Stop lets running jobs finish (until ctx ends) and closes the ledger's workers.
func (a *App) Stop(ctx context.Context) error {
	err := a.River.Stop(ctx)
	a.Ledger.Close()
	return err
}
