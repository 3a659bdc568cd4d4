package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/payouts"
)

// TestPayoutOrphanedJobRescued: a process dies (kill -9) while its submit job runs, after the
// provider paid and before the answer was recorded. The job's row stays running, and as the
// job is unique while running, the sweep cannot ask for another: it must say so (nothing
// resubmitted) rather than claim it did. A process started afterwards rescues the orphaned job
// within the rescue window (seconds here, minutes by default; River's own default is an hour)
// and the payout reaches paid with one transfer at the provider, under the first key.
func TestPayoutOrphanedJobRescued(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	plan := newFaultPlan()
	// The dead process's clock runs two minutes ahead, so that its sweep sees the
	// disbursement as left alone for over a minute.
	first := buildApp(t, pool, app.Config{Payouts: app.Payouts{Fault: plan.Fault},
		Now: func() time.Time { return time.Now().Add(2 * time.Minute) }}) // never started
	payoutFixture(t, first, "ana")
	d := createPayout(t, first.Payouts, "ana", "40.00", "orphaned", payouts.Approved)
	plan.failNext("submit:after-send", 1)
	require.ErrorIs(t, first.Payouts.Submit(ctx, uuid.MustParse(d.ID)), errCrash)
	_, err := pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '10 minutes',
		attempted_by = '{dead-process}' WHERE kind = 'submit_payout' AND args->>'disbursement' = $1`, d.ID)
	require.NoError(t, err)

	res, err := first.Payouts.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, res.Resubmitted, "the orphaned job is still running: nothing was enqueued")
	require.Len(t, payoutJobs(t, pool, "submit_payout", d.ID), 1)

	second := buildApp(t, pool, app.Config{RescueAfter: time.Second})
	require.NoError(t, second.Start(ctx))
	got := waitState(t, second.Payouts, d.ID, payouts.Paid)
	require.Len(t, got.Attempts, 1)
	require.Equal(t, d.ID, got.Attempts[0].IdempotencyKey)
	require.Equal(t, "sbx_"+d.ID, got.Attempts[0].ProviderRef)
	require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, pool, d.ID))
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM payouts_sandbox_transfers WHERE disbursement_id = $1`, d.ID))
	jobs := payoutJobs(t, pool, "submit_payout", d.ID)
	require.Len(t, jobs, 1)
	require.Contains(t, jobs[0].Text, "Stuck job rescued")
	requireLedgerClean(t, second, pool, "USD", decimal.RequireFromString("40.00"))
}
