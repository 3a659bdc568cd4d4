// Package app wires Tandem's domain packages together once, for the server, the command line,
// the demo and tests: the ledger, the network asking River for its jobs, awards handed to
// payouts, the payout provider, and the River client that runs every worker.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/shopspring/decimal"

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
	// SweepInterval is how often the payouts sweep runs (default 1 minute).
	SweepInterval time.Duration
	// SealInterval is how often the seal job chains new entries (default 1 minute).
	SealInterval time.Duration
	// RescueAfter is how long a job may run before River takes it for orphaned by a dead
	// process and retries it (default jobs.DefaultRescueAfter, 3 minutes).
	RescueAfter time.Duration
	// Now is the network's and payouts' clock (tests).
	Now func() time.Time
	// Payouts configures the payout provider; the zero value is the sandbox.
	Payouts Payouts
}

// Payouts configures the provider and its settings.
type Payouts struct {
	// StripeSecretKey selects Stripe (STRIPE_SECRET_KEY); empty means the sandbox.
	StripeSecretKey string
	// StripeBaseURL overrides Stripe's API address (STRIPE_API_BASE; stripe-mock in tests).
	StripeBaseURL string
	// WebhookSecret verifies Stripe webhooks (STRIPE_WEBHOOK_SECRET).
	WebhookSecret string
	// StripeSettleAfter is when to ask Stripe about a transfer no webhook reported.
	StripeSettleAfter time.Duration
	// Sandbox tunes the sandbox (TANDEM_SANDBOX_DELAY).
	Sandbox payouts.SandboxConfig
	// NECThreshold is the 1099-NEC reporting threshold (TANDEM_1099_THRESHOLD); unset, the
	// year's: 600.00 through 2025, 2000.00 after.
	NECThreshold decimal.Decimal
	// Fault injects crashes (tests).
	Fault func(point string) error
}

// PayoutsFromEnv reads the payout settings from the environment: STRIPE_SECRET_KEY,
// STRIPE_WEBHOOK_SECRET, STRIPE_API_BASE, TANDEM_SANDBOX_DELAY, TANDEM_1099_THRESHOLD.
func PayoutsFromEnv() (Payouts, error) {
	p := Payouts{StripeSecretKey: os.Getenv("STRIPE_SECRET_KEY"), StripeBaseURL: os.Getenv("STRIPE_API_BASE"),
		WebhookSecret: os.Getenv("STRIPE_WEBHOOK_SECRET")}
	if v := os.Getenv("TANDEM_SANDBOX_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return p, fmt.Errorf("TANDEM_SANDBOX_DELAY=%q: a duration like 2s", v)
		}
		p.Sandbox.Delay = d
	}
	if v := os.Getenv("TANDEM_1099_THRESHOLD"); v != "" {
		d, err := ledger.ParseAmount(v, "USD")
		if err != nil || !d.IsPositive() {
			return p, fmt.Errorf("TANDEM_1099_THRESHOLD=%q: a positive USD amount like 2000.00", v)
		}
		p.NECThreshold = d
	}
	return p, nil
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
	// Jobs lists failed jobs and retries or cancels them (the admins' jobs page).
	Jobs *jobs.Board
}

// New assembles Tandem on pool (migrations already applied).
func New(pool *pgxpool.Pool, cfg Config) (*App, error) {
	l := ledger.New(pool, &ledger.Config{Logger: cfg.Logger})
	in, err := jobs.NewInserter(pool)
	if err != nil {
		return nil, err
	}
	var provider payouts.Provider = payouts.NewSandbox(pool, cfg.Payouts.Sandbox)
	if cfg.Payouts.StripeSecretKey != "" {
		if provider, err = payouts.NewStripe(payouts.StripeConfig{SecretKey: cfg.Payouts.StripeSecretKey,
			BaseURL: cfg.Payouts.StripeBaseURL, SettleAfter: cfg.Payouts.StripeSettleAfter}); err != nil {
			return nil, err
		}
	}
	p, err := payouts.New(pool, payouts.Config{Ledger: l, Jobs: in, Provider: provider, WebhookSecret: cfg.Payouts.WebhookSecret,
		NECThreshold: cfg.Payouts.NECThreshold, Logger: cfg.Logger, Now: cfg.Now, Fault: cfg.Payouts.Fault})
	if err != nil {
		return nil, err
	}
	n, err := network.New(pool, network.Config{Ledger: l, Jobs: in, OnAward: p.OnAward, Logger: cfg.Logger, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	client, err := jobs.NewClient(jobs.Config{Pool: pool, Ledger: l, Network: n, Payouts: p, Logger: cfg.Logger,
		MaxWorkers: cfg.Workers, CheckInterval: cfg.CheckInterval, SweepInterval: cfg.SweepInterval,
		SealInterval: cfg.SealInterval, Now: cfg.Now, RescueAfter: cfg.RescueAfter})
	if err != nil {
		return nil, err
	}
	board, err := jobs.NewBoard(pool)
	if err != nil {
		return nil, err
	}
	return &App{Pool: pool, Ledger: l, Access: access.New(pool), Network: n, Payouts: p, River: client, Jobs: board}, nil
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
