package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
)

// TestLedgerCheckJob runs the self-check through a real River client: it completes on a sound
// ledger and fails, naming the account, once a posting is altered behind the triggers' back
// (as a superuser with session_replication_role = replica could).
func TestLedgerCheckJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t)
	l := ledger.New(pool, nil)
	t.Cleanup(l.Close)

	for _, na := range []ledger.NewAccount{
		{Code: "org/cash/stripe", Type: ledger.Asset, Currency: "USD"},
		{Code: "program/p/fund", Type: ledger.Equity, Currency: "USD", NoOverdraft: true},
	} {
		_, _, err := l.CreateAccount(ctx, na)
		require.NoError(t, err)
	}
	_, err := l.Post(ctx, ledger.NewEntry{IdempotencyKey: "gift", Postings: []ledger.Posting{
		{Account: "org/cash/stripe", Side: ledger.Debit, Amount: decimal.RequireFromString("10.00"), Currency: "USD"},
		{Account: "program/p/fund", Side: ledger.Credit, Amount: decimal.RequireFromString("10.00"), Currency: "USD"},
	}})
	require.NoError(t, err)

	client, err := jobs.NewClient(jobs.Config{Pool: pool, Ledger: l, CheckInterval: time.Hour})
	require.NoError(t, err)
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer cancel()
	require.NoError(t, client.Start(ctx))
	t.Cleanup(func() { _ = client.Stop(context.Background()) })

	next := func() *river.Event {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if ev.Job.Kind == (jobs.LedgerCheckArgs{}).Kind() {
					return ev
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no ledger_check event")
			}
		}
	}
	// RunOnStart: the periodic check runs as soon as the client leads.
	ev := next()
	require.Equal(t, river.EventKindJobCompleted, ev.Kind)

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET session_replication_role = replica")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "UPDATE ledger_postings SET amount = amount + 1 WHERE line = 1")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "RESET session_replication_role")
	require.NoError(t, err)
	conn.Release()

	// A check asked for after the first completed must run: uniqueness ignores completed jobs.
	_, err = client.Insert(ctx, jobs.LedgerCheckArgs{}, nil)
	require.NoError(t, err)
	ev = next()
	require.Equal(t, river.EventKindJobFailed, ev.Kind)
	require.NotEmpty(t, ev.Job.Errors)
	require.Contains(t, ev.Job.Errors[len(ev.Job.Errors)-1].Error, "org/cash/stripe")
}
