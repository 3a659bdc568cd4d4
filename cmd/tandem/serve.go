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
	"sync"
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
	offer := demoNever
	fs.Var(&offer, "offer-demo", "on an empty database, offer the demo program: ask (the same as a bare --offer-demo: at a terminal, ask; elsewhere, say how), yes (load it without asking), no (make run)")
	demoLog := fs.String("demo-log", "", "while the offered demo loads, write the server's log to this file rather than standard error")
	demoTokens := fs.String("demo-tokens", "", "also write the offered demo's summary and tokens to this file (mode 0600)")
	appRole := fs.String("app-role", migrations.DefaultAppRole, "the role DATABASE_APP_URL logs in as (or a member of): granted by the migrations")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The log's destination can be turned aside while the demo loads (--demo-log), so that
	// its narration and tokens are not lost among the workers' lines.
	logOut := &switchWriter{w: stderr}
	var handler slog.Handler = slog.NewTextHandler(logOut, nil)
	if *logJSON {
		handler = slog.NewJSONHandler(logOut, nil)
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
	var rescueAfter time.Duration
	if v := os.Getenv("TANDEM_RESCUE_AFTER"); v != "" {
		if rescueAfter, err = time.ParseDuration(v); err != nil || rescueAfter < time.Second {
			return fmt.Errorf("%w: TANDEM_RESCUE_AFTER=%q: a duration of at least 1s, like 3m", errUsage, v)
		}
	}
	a, err := app.New(pool, app.Config{Logger: logger, Payouts: payoutCfg, RescueAfter: rescueAfter})
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
	h := api.New(api.Config{Pool: pool, Ledger: l, Access: store, Network: a.Network, Payouts: a.Payouts, Jobs: a.Jobs, Logger: logger, BehindTLSProxy: *behindProxy, Health: map[string]api.HealthFunc{
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
	base := scheme + "://" + reachable(ln.Addr())
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
	if offer != demoNever {
		// The server's own River workers make the demo's awards and payouts. The question,
		// the narration and the demo's tokens go to standard output (the terminal), apart
		// from the server's log, which keeps its level.
		var derr error
		derr, err, stopped = whileServing(ctx, served, func(ctx context.Context) error {
			return offerDemo(ctx, a, demoOffer{In: os.Stdin, Terminal: stdinIsTerminal(), Mode: offer, Out: os.Stdout,
				SignIn: base + "/sign-in", Addr: reachable(ln.Addr()), Loading: logAside(logOut, *demoLog, logger), TokensFile: *demoTokens})
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

// reachable is a listening address as a browser on this machine reaches it: an unspecified
// host (0.0.0.0, ::) becomes localhost.
func reachable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// switchWriter is a writer whose destination can change while it is written to.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// swap sends what follows to w and returns the destination it replaces.
func (s *switchWriter) swap(w io.Writer) io.Writer {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.w
	s.w = w
	return prev
}

// logAside returns the demo's Loading hook: while the demo loads, the server's log (out)
// goes to the file at path (appended to, created 0600), and back when it is loaded. With no
// path, or a file it cannot open (said in the log), the log stays where it is.
func logAside(out *switchWriter, path string, logger *slog.Logger) func() func() {
	return func() func() {
		if path == "" {
			return func() {}
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			logger.Warn("the server's log stays here while the demo loads", "error", err)
			return func() {}
		}
		logger.Info("the demo is loading: until it is loaded, the server's log goes to " + path)
		prev := out.swap(f)
		return func() {
			out.swap(prev)
			_ = f.Close()
			logger.Info("the demo's load is over; the server's log meanwhile is in " + path)
		}
	}
}

// demoMode is serve --offer-demo: never (no flag), ask (a bare --offer-demo), yes or no.
type demoMode string

const (
	demoNever demoMode = ""
	demoAsk   demoMode = "ask"
	demoYes   demoMode = "yes"
)

func (m *demoMode) String() string { return string(*m) }

// Set takes ask, yes or no (and true, false: a bare --offer-demo is ask).
func (m *demoMode) Set(v string) error {
	switch strings.ToLower(v) {
	case "ask", "true", "1":
		*m = demoAsk
	case "yes", "y":
		*m = demoYes
	case "no", "n", "false", "0", "":
		*m = demoNever
	default:
		return fmt.Errorf("%q: ask, yes or no", v)
	}
	return nil
}

// IsBoolFlag lets --offer-demo stand alone (ask).
func (m *demoMode) IsBoolFlag() bool { return true }

// demoOffer is what offerDemo needs: where the answer comes from, whether a person is there
// to give it, and where to write.
type demoOffer struct {
	In       io.Reader
	Terminal bool
	// Mode yes loads the demo without asking, at a terminal or not; otherwise (ask) a
	// terminal is asked and anything else is told how to load it.
	Mode   demoMode
	Out    io.Writer // the question, the narration and the tokens: the terminal, not the log
	SignIn string
	// Addr is the server's address, for the hint's tandem demo --addr.
	Addr string
	// Loading, when set, is called as the demo begins to load; what it returns, when the
	// load is over (serve: the server's log goes to --demo-log meanwhile).
	Loading func() (done func())
	// TokensFile, when set, receives a copy of the summary and the tokens.
	TokensFile string
}

// demoHint tells how to load the demo by hand into program id, for a server at addr.
func demoHint(id, addr string) string {
	flag := ""
	if id != defaultDemoProgram {
		flag = " --program " + id
	}
	if addr != "" && addr != defaultDemoAddr {
		flag += " --addr " + addr
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
	switch {
	case o.Mode == demoYes:
		fmt.Fprintf(o.Out, "%s Loading the demo program as %s (--offer-demo=yes).\n", state, id)
		return o.load(ctx, a, id)
	case !o.Terminal:
		fmt.Fprintln(o.Out, state+" "+demoHint(id, o.Addr))
		return nil
	case id == defaultDemoProgram:
		fmt.Fprint(o.Out, state+" Load the demo program (40 participants, 4 months of conversations)? [Y/n] ")
	default:
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
		fmt.Fprintln(o.Out, demoHint(id, o.Addr))
		return nil
	}
	return o.load(ctx, a, id)
}

// load loads the demo into program id, the server's log turned aside meanwhile (Loading).
func (o demoOffer) load(ctx context.Context, a *app.App, id string) error {
	if o.Loading != nil {
		defer o.Loading()()
	}
	return loadDemo(ctx, a, demoOptions{Program: id, SignIn: o.SignIn, Out: o.Out, TokensFile: o.TokensFile})
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
