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

// TestReconcileUnrecordedSend: a process died after the provider paid one attempt and before
// the answer was recorded, and another before it sent its attempt at all. Reconciliation
// reports the first once, as unrecorded_send — not as a transfer missing in the ledger and an
// attempt missing at the provider at once — records the transfer's reference and applies the
// provider's outcome (paid); the second stays missing_at_provider. A second run finds only
// the attempt never sent.
func TestReconcileUnrecordedSend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	plan := newFaultPlan()
	a := buildApp(t, pool, app.Config{Payouts: app.Payouts{Fault: plan.Fault}}) // never started: no job interferes
	payoutFixture(t, a, "ana", "bo")
	since := time.Now().Add(-time.Hour)
	sent := createPayout(t, a.Payouts, "ana", "30.00", "sent-unrecorded", payouts.Approved)
	unsent := createPayout(t, a.Payouts, "bo", "20.00", "never-sent", payouts.Approved)
	plan.failNext("submit:after-send", 1)
	require.ErrorIs(t, a.Payouts.Submit(ctx, uuid.MustParse(sent.ID)), errCrash)
	plan.failNext("submit:after-pending", 1)
	require.ErrorIs(t, a.Payouts.Submit(ctx, uuid.MustParse(unsent.ID)), errCrash)
	// Both opened over a minute ago (the attempts' guard keeps submitted_at; bypassed here).
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET session_replication_role = replica")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "UPDATE payouts_attempts SET submitted_at = submitted_at - interval '5 minutes'")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "RESET session_replication_role")
	require.NoError(t, err)
	conn.Release()

	run, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	type diff struct{ kind, disbursement, ref string }
	var got []diff
	for _, d := range run.Differences {
		got = append(got, diff{d.Kind, d.Disbursement, d.ProviderRef})
	}
	require.ElementsMatch(t, []diff{
		{payouts.UnrecordedSend, sent.ID, "sbx_" + sent.ID},
		{payouts.MissingAtProvider, unsent.ID, ""},
	}, got)
	for _, d := range run.Differences {
		if d.Kind == payouts.UnrecordedSend {
			require.Equal(t, "attempt 1 reached sandbox as sbx_"+sent.ID+" (paid), which the ledger had not recorded: recorded now", d.Detail)
		}
	}
	paid := getPayout(t, a, sent.ID)
	require.Equal(t, payouts.Paid, paid.State)
	require.Len(t, paid.Attempts, 1)
	require.Equal(t, "sbx_"+sent.ID, paid.Attempts[0].ProviderRef)
	require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, pool, sent.ID))
	require.Equal(t, payouts.Submitted, getPayout(t, a, unsent.ID).State)

	again, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	require.Len(t, again.Differences, 1)
	require.Equal(t, payouts.MissingAtProvider, again.Differences[0].Kind)
	require.Equal(t, unsent.ID, again.Differences[0].Disbursement)
}
