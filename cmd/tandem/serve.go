package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/tandemledger/tandem/api"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/migrations"
)

// shutdownGrace is how long in-flight requests and jobs get to finish on SIGINT/SIGTERM.
const shutdownGrace = 30 * time.Second

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (loopback only until authentication lands)")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, nil)
	if *logJSON {
		handler = slog.NewJSONHandler(stderr, nil)
	}
	logger := slog.New(handler)

	// There is no authentication yet: refuse to listen anywhere but loopback.
	if err := requireLoopback(*addr); err != nil {
		return err
	}

	pool, err := openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := migrations.Migrate(ctx, pool, logger)
	if err != nil {
		return err
	}
	logger.Info("migrations", "applied", len(res.Applied), "river_applied", len(res.RiverApplied))

	l := ledger.New(pool, &ledger.Config{Logger: logger})
	client, err := jobs.NewClient(jobs.Config{Pool: pool, Ledger: l, Logger: logger})
	if err != nil {
		return err
	}
	// River runs on its own context: SIGINT must let running jobs finish, not cancel them.
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start river: %w", err)
	}

	h := api.New(api.Config{Ledger: l, Logger: logger, Health: map[string]api.HealthFunc{
		"database": func(ctx context.Context) (any, error) {
			st := pool.Stat()
			return map[string]any{"total_conns": st.TotalConns(), "idle_conns": st.IdleConns()}, pool.Ping(ctx)
		},
		"river": jobs.Health(client, pool),
	}})
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(handler, slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	logger.Info("serving", "addr", "http://"+ln.Addr().String(), "healthz", "http://"+ln.Addr().String()+"/healthz")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err = <-served:
	case <-ctx.Done():
		logger.Info("shutting down: finishing in-flight requests and jobs", "grace", shutdownGrace)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		logger.Warn("http shutdown", "error", serr)
	}
	l.Close()
	if serr := client.Stop(sctx); serr != nil {
		logger.Warn("river did not stop in time: cancelling jobs (they will be retried)", "error", serr)
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = client.StopAndCancel(cctx)
		ccancel()
	}
	logger.Info("stopped")
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: --addr %q: %v", errUsage, addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: --addr %q: Tandem has no authentication yet, so it serves on loopback only (e.g. 127.0.0.1:8080)", errUsage, addr)
}
