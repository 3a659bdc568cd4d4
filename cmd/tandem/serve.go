package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemledger/tandem/api"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/migrations"
	"github.com/tandemledger/tandem/network"
)

// serverPool migrates the database as DATABASE_URL's role (the tables' owner), then opens the
// server's pool as DATABASE_APP_URL's role, which the migrations granted only what the
// server needs: it cannot disable the ledger's triggers, nor change or delete its history.
// Without DATABASE_APP_URL the server runs as DATABASE_URL's role, with a warning when that
// role could; without DATABASE_URL it does not migrate (`tandem migrate` did).
func serverPool(ctx context.Context, logger *slog.Logger, appRole string) (*pgxpool.Pool, error) {
	ownerURL, appURL := os.Getenv("DATABASE_URL"), os.Getenv("DATABASE_APP_URL")
	if ownerURL == "" && appURL == "" {
		return openPool(ctx) // its error says what to set
	}
	var owner *pgxpool.Pool
	if ownerURL != "" {
		var err error
		if owner, err = openPoolURL(ctx, "DATABASE_URL", ownerURL); err != nil {
			return nil, err
		}
		res, err := migrations.MigrateWith(ctx, owner, migrations.Options{Logger: logger, AppRole: appRole})
		if err != nil {
			owner.Close()
			return nil, err
		}
		logger.Info("migrations", "applied", len(res.Applied), "river_applied", len(res.RiverApplied))
	}
	if appURL == "" {
		var unsafe bool
		err := owner.QueryRow(ctx, `SELECT rolsuper OR EXISTS (SELECT 1 FROM pg_tables WHERE tableowner = current_user AND tablename = 'ledger_entries')
			FROM pg_roles WHERE rolname = current_user`).Scan(&unsafe)
		if err == nil && unsafe {
			logger.Warn("the server runs as a superuser or the tables' owner, who can disable the ledger's append-only triggers: " +
				"set DATABASE_APP_URL to a login of the role `tandem migrate` grants (" + appRole + "); see the README")
		}
		return owner, nil
	}
	if owner != nil {
		owner.Close()
	}
	return openPoolURL(ctx, "DATABASE_APP_URL", appURL)
}

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
	offer := fs.Bool("offer-demo", false, "on an empty database, offer to load the demo program (make run)")
	appRole := fs.String("app-role", migrations.DefaultAppRole, "the role DATABASE_APP_URL logs in as (or a member of): granted by the migrations")
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

	pool, err := serverPool(ctx, logger, *appRole)
	if err != nil {
		return err
	}
	defer pool.Close()

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

	stopped := false // Serve returned
	if *offer {
		// The server's own River workers make the demo's awards and payouts. The question,
		// the narration and the demo's tokens go to standard output (the terminal), apart
		// from the server's log, which keeps its level.
		var derr error
		derr, err, stopped = whileServing(ctx, served, func(ctx context.Context) error {
			return offerDemo(ctx, a, demoOffer{In: os.Stdin, Terminal: stdinIsTerminal(), Out: os.Stdout, SignIn: base + "/sign-in"})
		})
		switch {
		case stopped:
			logger.Error("the server stopped while the demo was offered", "error", err)
		case derr != nil && ctx.Err() == nil:
			logger.Warn("the demo was not loaded; serving what the database holds", "error", derr)
		}
	}
	if !stopped {
		select {
		case err = <-served:
		case <-ctx.Done():
			logger.Info("shutting down: finishing in-flight requests and jobs", "grace", shutdownGrace)
		}
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

// whileServing runs fn (the demo's offer) while the server serves. If Serve returns first
// (an early failure), fn's context is cancelled — a question waiting for an answer is given
// up, a demo loading stops and says what it wrote — and fn is waited for: stopped is then
// true and serveErr is Serve's error.
func whileServing(ctx context.Context, served <-chan error, fn func(context.Context) error) (fnErr, serveErr error, stopped bool) {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- fn(fctx) }()
	select {
	case fnErr = <-done:
		return fnErr, nil, false
	case serveErr = <-served:
		cancel(fmt.Errorf("the server stopped: %w", serveErr))
		return <-done, serveErr, true
	}
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

// demoOffer is what offerDemo needs: where the answer comes from, whether a person is there
// to give it, and where to write.
type demoOffer struct {
	In       io.Reader
	Terminal bool
	Out      io.Writer // the question, the narration and the tokens: the terminal, not the log
	SignIn   string
}

// demoHint tells how to load the demo by hand into program id.
func demoHint(id string) string {
	flag := ""
	if id != defaultDemoProgram {
		flag = " --program " + id
	}
	return "To load the demo program (40 participants, 4 months of conversations), run in another terminal: " +
		"`. .tandem/env && bin/tandem demo" + flag + "` (make run), or `tandem demo" + flag + "` with this server's DATABASE_URL."
}

// offerDemo offers the demo when the database holds no program (serve --offer-demo), or
// only what demos that did not finish loading left (then into a program id of its own):
// at a terminal it asks, and loads it in this process on yes (the default); otherwise it
// prints how to load it. A database with any other program is left alone, silently.
func offerDemo(ctx context.Context, a *app.App, o demoOffer) error {
	programs, err := a.Network.Programs(ctx)
	if err != nil {
		return fmt.Errorf("look for programs: %w", err)
	}
	state := "The database is empty."
	if len(programs) > 0 {
		partial, err := unfinishedDemos(ctx, a, programs)
		if err != nil || partial == "" {
			return err
		}
		state = "The demo did not finish loading (" + partial + "); what it wrote stays."
	}
	// The demo's own id, unless a demo that did not finish (or someone) holds its ids.
	id := defaultDemoProgram
	if err := newDemoRun(a, id, time.Now(), io.Discard).check(ctx); errors.Is(err, errUsage) {
		if id, err = freeDemoID(ctx, a, id); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if !o.Terminal {
		fmt.Fprintln(o.Out, state+" "+demoHint(id))
		return nil
	}
	if id == defaultDemoProgram {
		fmt.Fprint(o.Out, state+" Load the demo program (40 participants, 4 months of conversations)? [Y/n] ")
	} else {
		fmt.Fprintf(o.Out, "%s Load it as program %s (40 participants, 4 months of conversations)? [Y/n] ", state, id)
	}
	answer, err := readLine(ctx, o.In)
	if err != nil {
		fmt.Fprintln(o.Out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		answer = "n" // no answer (end of input) is not a yes
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "", "y", "yes":
	default:
		fmt.Fprintln(o.Out, demoHint(id))
		return nil
	}
	return loadDemo(ctx, a, demoOptions{Program: id, SignIn: o.SignIn, Out: o.Out})
}

// unfinishedDemos describes the demo loads that did not finish when they are all the
// programs hold (a demo's program and its earlier cohort's, <id>-<year>); "" when any
// program is something else: a loaded demo, or real use.
func unfinishedDemos(ctx context.Context, a *app.App, programs []network.Program) (string, error) {
	states := map[string]string{} // demo program → how its load ended; "" when not unfinished
	state := func(pid string) (string, error) {
		how, ok := states[pid]
		if !ok {
			st, h, err := demoState(ctx, a, pid)
			if err != nil {
				return "", err
			}
			if st == demoPartial {
				how = h
			}
			states[pid] = how
		}
		return how, nil
	}
	var parts []string
	for _, p := range programs {
		pid := p.ID
		how, err := state(pid)
		if err != nil {
			return "", err
		}
		if m := earlierCohortID.FindStringSubmatch(p.ID); how == "" && m != nil {
			pid = m[1]
			if how, err = state(pid); err != nil {
				return "", err
			}
		}
		if how == "" {
			return "", nil
		}
		if part := "program " + pid + ": " + how; !slices.Contains(parts, part) {
			parts = append(parts, part)
		}
	}
	return strings.Join(parts, "; "), nil
}

// earlierCohortID is the id of a demo's earlier cohort: the demo's program id and a year.
var earlierCohortID = regexp.MustCompile(`^(.+)-[0-9]{4}$`)

// readLine reads one line from in, or gives up when ctx ends (the read is left behind).
func readLine(ctx context.Context, in io.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err == io.EOF && line != "" {
			err = nil
		}
		got <- result{line, err}
	}()
	select {
	case r := <-got:
		return r.line, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// stdinIsTerminal reports whether standard input is a terminal: a character device other
// than /dev/null (which is one too).
func stdinIsTerminal() bool {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}
