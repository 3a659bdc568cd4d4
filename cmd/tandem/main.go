// Command tandem is Tandem's one binary: the server, migrations and the ledger CLI.
//
//	tandem serve [--addr 127.0.0.1:8080]   apply migrations, run River workers, serve HTTP
//	tandem migrate                         apply migrations (Tandem's and River's)
//	tandem ledger ...                      accounts, entries, balances (tandem ledger help)
//	tandem token ...                       API tokens: create, list, revoke (tandem token help)
//	tandem network ...                     programs, people, facts, rules, progress (tandem network help)
//	tandem demo                            a demo program whose milestones pay out while you watch
//
// Every command reads the database from DATABASE_URL; the server runs as DATABASE_APP_URL's
// role when it is set (the migrations still run as DATABASE_URL's).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemledger/tandem/migrations"
)

const usage = `tandem — cash-plus-connections disbursement ledger

usage:
  tandem serve [--addr 127.0.0.1:8080] [--offer-demo[=ask|yes|no]]
                                         apply migrations, start River workers, serve HTTP
                                         (--offer-demo: on an empty database, offer the demo;
                                         =yes loads it without asking; 'tandem serve -h')
  tandem migrate [--app-role tandem_app] apply Tandem's and River's migrations (as the tables'
                                         owner), and grant the server's role what it needs
  tandem ledger <command>                the ledger: run 'tandem ledger help'
  tandem token <command>                 API tokens: run 'tandem token help'
  tandem network <command>               programs, people, facts, rules: 'tandem network help'
  tandem program fund P AMOUNT           donor money into a program's fund
  tandem program clock P advance 3d      move a sandbox program's test clock forward
  tandem payouts <command>               disbursements, approvals, providers: 'tandem payouts help'
  tandem demo [--addr HOST:PORT]         load a demo program and watch milestones pay out
                                         (--addr: the server's, for the sign-in page it prints)
  tandem export --format csv|jsonl|hledger --out FILE   the ledger for auditors ('tandem export -h')
  tandem verify [FILE]                   check the seal of the database or of an export file

environment:
  DATABASE_URL           PostgreSQL URL of the tables' owner: migrations and the command line
                         (make run and make test start a private server and set it)
  DATABASE_APP_URL       the server's URL, as the role migrate grants (tandem_app): no DDL, no
                         UPDATE/DELETE/TRUNCATE on the ledger's and the audit trail's history
  STRIPE_SECRET_KEY      pay through Stripe Connect (without it: the sandbox provider)
  STRIPE_WEBHOOK_SECRET  verifies POST /v1/webhooks/stripe
  STRIPE_API_BASE        Stripe's API address (default https://api.stripe.com; stripe-mock in tests)
  TANDEM_SANDBOX_DELAY   how long sandbox payouts take to settle (default 0s)
  TANDEM_1099_THRESHOLD  the 1099-NEC reporting threshold (default 2000.00)
  TANDEM_ADDR            the server's address for tandem demo's sign-in page (default 127.0.0.1:8080)
  TANDEM_RESCUE_AFTER    how long a job may run before it is taken for orphaned and retried (default 3m)
`

// errUsage marks command-line mistakes: they exit with status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// run is main without the process: tests call it with their own streams.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "migrate":
		return migrate(ctx, args[1:], stdout)
	case "ledger":
		return ledgerCmd(ctx, args[1:], stdin, stdout, stderr)
	case "token":
		return tokenCmd(ctx, args[1:], stdout, stderr)
	case "network":
		return networkCmd(ctx, args[1:], stdin, stdout, stderr)
	case "program": // tandem program fund P AMOUNT, tandem program clock P: short for tandem network program
		return networkCmd(ctx, append([]string{"program"}, args[1:]...), stdin, stdout, stderr)
	case "payouts":
		return payoutsCmd(ctx, args[1:], stdout, stderr)
	case "demo":
		return demo(ctx, args[1:], stdout, stderr)
	case "export":
		return exportCmd(ctx, args[1:], stdout, stderr)
	case "verify":
		return verifyCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// openPool connects to DATABASE_URL.
func openPool(ctx context.Context) (*pgxpool.Pool, error) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return nil, errors.New("DATABASE_URL is not set: `make run` starts a private PostgreSQL and prints the URL to export; or point it at your own database")
	}
	return openPoolURL(ctx, "DATABASE_URL", url)
}

// openPoolURL connects to url, read from the environment variable name.
func openPoolURL(ctx context.Context, name, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if cfg.MaxConns < 20 {
		cfg.MaxConns = 20
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	return pool, nil
}

func migrate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	appRole := fs.String("app-role", migrations.DefaultAppRole, "the role the server runs as: created NOLOGIN when missing, granted what the server needs (\"-\": none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := migrations.MigrateWith(ctx, pool, migrations.Options{AppRole: *appRole})
	if err != nil {
		return err
	}
	if len(res.Applied) == 0 && len(res.RiverApplied) == 0 {
		fmt.Fprintln(stdout, "database is up to date")
		return nil
	}
	for _, m := range res.Applied {
		fmt.Fprintln(stdout, "applied", m)
	}
	for _, v := range res.RiverApplied {
		fmt.Fprintf(stdout, "applied river %03d\n", v)
	}
	return nil
}
