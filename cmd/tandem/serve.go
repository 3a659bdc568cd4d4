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
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/migrations"
)

// shutdownGrace is how long in-flight requests and jobs get to finish on SIGINT/SIGTERM.
const shutdownGrace = 30 * time.Second

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate (PEM); with --tls-key")
	tlsKey := fs.String("tls-key", "", "the certificate's private key (PEM)")
	behindProxy := fs.Bool("behind-tls-proxy", false, "TLS is terminated by a proxy in front: mark cookies Secure and allow a non-loopback --addr")
	logJSON := fs.Bool("log-json", false, "log JSON lines instead of text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, nil)
	if *logJSON {
		handler = slog.NewJSONHandler(stderr, nil)
	}
	logger := slog.New(handler)

	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if *tlsCert == "" && !*behindProxy && !isLoopback(*addr) {
		// Tokens and session cookies would cross the network in the clear.
		return fmt.Errorf("%w: --addr %q: plain HTTP beyond loopback would send tokens in the clear: give --tls-cert and --tls-key, or --behind-tls-proxy when a TLS proxy is in front", errUsage, *addr)
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

	payoutCfg, err := app.PayoutsFromEnv()
	if err != nil {
		return err
	}
	a, err := app.New(pool, app.Config{Logger: logger, Payouts: payoutCfg})
	if err != nil {
		return err
	}
	// River runs on its own context: SIGINT must let running jobs finish, not cancel them.
	if err := a.Start(ctx); err != nil {
		return err
	}
	logger.Info("payouts", "provider", a.Payouts.Provider().Name(), "webhook_secret_set", payoutCfg.WebhookSecret != "")
	l, client, store := a.Ledger, a.River, a.Access
	if ok, err := store.AnyAdmin(ctx); err != nil {
		return fmt.Errorf("look for admin tokens: %w", err)
	} else if !ok {
		logger.Warn("no admin token yet: every /v1 request needs one. Create the first with: " +
			"`. .tandem/env && bin/tandem token create --role admin --name <you>` (make run) or `tandem token create --role admin --name <you>`")
	}
	h := api.New(api.Config{Pool: pool, Ledger: l, Access: store, Network: a.Network, Payouts: a.Payouts, Logger: logger, BehindTLSProxy: *behindProxy, Health: map[string]api.HealthFunc{
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
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
	}
	base := scheme + "://" + ln.Addr().String()
	logger.Info("serving", "addr", base, "healthz", base+"/healthz", "sign_in", base+"/sign-in")
	served := make(chan error, 1)
	go func() {
		if *tlsCert != "" {
			served <- srv.ServeTLS(ln, *tlsCert, *tlsKey)
			return
		}
		served <- srv.Serve(ln)
	}()

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

// isLoopback reports whether addr listens on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
