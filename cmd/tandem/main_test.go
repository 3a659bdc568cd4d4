package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
)

// cliBundle runs the tandem command against its own database. Tests using it set
// DATABASE_URL (the owner's) and DATABASE_APP_URL (the server's role) with t.Setenv, so they
// cannot run in parallel with each other.
type cliBundle struct{ t *testing.T }

func setupCLI(t *testing.T) *cliBundle {
	_, url := dbtest.NewWithURL(t)
	t.Setenv("DATABASE_URL", url)
	t.Setenv("DATABASE_APP_URL", dbtest.AppURL(t, url))
	return &cliBundle{t: t}
}

func (c *cliBundle) run(stdin string, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String() + errOut.String(), err
}

func (c *cliBundle) ok(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(stdin, args...)
	require.NoError(c.t, err, out)
	return out
}

func entry(key, from, to, amount string) string {
	return fmt.Sprintf(`{"idempotency_key":%q,"description":"cli test","postings":[
		{"account":%q,"side":"debit","amount":%q,"currency":"USD"},
		{"account":%q,"side":"credit","amount":%q,"currency":"USD"}]}`, key, from, amount, to, amount)
}

func TestLedgerCLI(t *testing.T) {
	c := setupCLI(t)
	out := c.ok("", "ledger", "account", "create", "--code", "org/cash/stripe", "--type", "asset", "--currency", "usd")
	require.Contains(t, out, "created account")
	c.ok("", "ledger", "account", "create", "--code", "program/p/fund", "--type", "equity", "--currency", "USD", "--no-overdraft")
	c.ok("", "ledger", "account", "create", "--code", "participant/x/wallet", "--type", "liability", "--currency", "USD", "--no-overdraft")
	out = c.ok("", "ledger", "account", "create", "--code", "program/p/fund", "--type", "equity", "--currency", "USD", "--no-overdraft")
	require.Contains(t, out, "exists")

	out = c.ok(entry("gift-1", "org/cash/stripe", "program/p/fund", "1000.00"), "ledger", "post")
	require.Contains(t, out, "1000.00 USD")
	out = c.ok(entry("gift-1", "org/cash/stripe", "program/p/fund", "1000.00"), "ledger", "post")
	require.Contains(t, out, "nothing new written")

	out, err := c.run(entry("award-1", "program/p/fund", "participant/x/wallet", "1000.01"), "ledger", "post")
	require.ErrorIs(t, err, ledger.ErrInsufficientFunds)
	require.Contains(t, err.Error(), "program/p/fund would be overdrawn (available -0.01)")
	_ = out

	c.ok(entry("award-1", "program/p/fund", "participant/x/wallet", "50.00"), "ledger", "post")
	out = c.ok(entry("payout-1", "participant/x/wallet", "org/cash/stripe", "50.00"), "ledger", "post-pending", "--json")
	id := between(out, `"id": "`, `"`)
	require.NotEmpty(t, id, out)

	out = c.ok("", "ledger", "balance", "participant/x/wallet")
	require.Regexp(t, `posted\s+50.00 USD`, out)
	require.Regexp(t, `available\s+0.00 USD`, out)

	c.ok("", "ledger", "void", id)
	_, err = c.run("", "ledger", "commit", id)
	require.ErrorIs(t, err, ledger.ErrAlreadyResolved)

	out = c.ok("", "ledger", "balance", "participant/x/wallet", "--as-of-seq", "1")
	require.Regexp(t, `posted\s+0.00 USD`, out)

	out = c.ok("", "ledger", "statement", "program/p/fund", "--all")
	require.Contains(t, out, "950.00")
	out = c.ok("", "ledger", "trial-balance")
	require.Contains(t, out, "total USD")
	require.Contains(t, out, "balanced")
	require.Contains(t, c.ok("", "ledger", "check"), "ledger is sound")
}

func TestCLIBadInput(t *testing.T) {
	c := setupCLI(t)
	cases := []struct {
		name  string
		stdin string
		args  []string
		want  error
		usage bool
	}{
		{"no command", "", []string{}, nil, true},
		{"unknown command", "", []string{"frobnicate"}, nil, true},
		{"unknown ledger command", "", []string{"ledger", "frob"}, nil, true},
		{"missing argument", "", []string{"ledger", "balance"}, nil, true},
		{"bad flag", "", []string{"ledger", "balance", "x", "--as-of", "yesterday"}, nil, true},
		{"bad entry id", "", []string{"ledger", "void", "nope"}, nil, true},
		{"malformed json", `{"idempotency_key":`, []string{"ledger", "post"}, ledger.ErrInvalid, false},
		{"empty stdin", ``, []string{"ledger", "post"}, ledger.ErrInvalid, false},
		{"unbalanced", `{"idempotency_key":"k","postings":[{"account":"a","side":"debit","amount":"1.00","currency":"USD"},{"account":"b","side":"credit","amount":"2.00","currency":"USD"}]}`, []string{"ledger", "post"}, ledger.ErrUnbalanced, false},
		{"bad type", "", []string{"ledger", "account", "create", "--code", "a", "--type", "cash", "--currency", "USD"}, ledger.ErrInvalid, false},
		{"unknown account", "", []string{"ledger", "balance", "nope/nope"}, ledger.ErrAccountNotFound, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.run(tc.stdin, tc.args...)
			require.Error(t, err)
			if tc.usage {
				require.ErrorIs(t, err, errUsage)
			}
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	c := setupCLI(t)
	require.Contains(t, c.ok("", "migrate"), "up to date")
}

// serverRoles lists the roles connected to DATABASE_URL's database other than ours.
func serverRoles(t *testing.T) []string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), os.Getenv("DATABASE_URL"))
	require.NoError(t, err)
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT DISTINCT usename::text FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY 1`)
	require.NoError(t, err)
	roles, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return roles
}

// startServe runs serve on a free port until the test ends, and waits for /healthz.
func startServe(t *testing.T, log io.Writer) (addr string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr = ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, []string{"--addr", addr}, log) }()
	var resp *http.Response
	require.Eventually(t, func() bool {
		resp, err = http.Get("http://" + addr + "/healthz")
		return err == nil
	}, 15*time.Second, 50*time.Millisecond)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Contains(t, string(body), `"river"`)
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(40 * time.Second):
				stopErr = errors.New("serve did not stop")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return addr, stop
}

// TestServeRunsAsTheAppRole: the server migrates as DATABASE_URL's role, then serves as
// DATABASE_APP_URL's; without DATABASE_APP_URL, as a superuser, it warns.
func TestServeRunsAsTheAppRole(t *testing.T) {
	setupCLI(t)
	var log bytes.Buffer
	_, stop := startServe(t, &log)
	require.Equal(t, []string{"tandem_app"}, serverRoles(t))
	require.NoError(t, stop())
	require.NotContains(t, log.String(), "can disable the ledger's append-only triggers")

	t.Setenv("DATABASE_APP_URL", "")
	log.Reset()
	_, stop = startServe(t, &log)
	require.NoError(t, stop())
	require.Contains(t, log.String(), "the server runs as a superuser or the tables' owner, who can disable the ledger's append-only triggers")
}

// TestServeShutsDownGracefully starts the server, reads /healthz, then cancels its context as
// SIGINT would, and expects a clean return.
func TestServeShutsDownGracefully(t *testing.T) {
	setupCLI(t)
	addr, stop := startServe(t, io.Discard)
	require.NoError(t, stop(), "serve returns cleanly once its context is canceled")
	_, err := http.Get("http://" + addr + "/healthz")
	require.Error(t, err, "nothing listens after shutdown")
}

func TestServeRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	err := serve(context.Background(), []string{"--addr", "0.0.0.0:8080"}, io.Discard)
	require.ErrorIs(t, err, errUsage)
	require.Contains(t, err.Error(), "in the clear")
}

func TestServeTLSFlagsGoTogether(t *testing.T) {
	err := serve(context.Background(), []string{"--tls-cert", "cert.pem"}, io.Discard)
	require.ErrorIs(t, err, errUsage)
	require.Contains(t, err.Error(), "--tls-key")
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}
