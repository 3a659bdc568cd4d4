package app_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/network"
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
	// The run and the change it applied have their trail lines, by the payout jobs.
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'payouts.reconciliation.run'
		AND record = 'reconciliation:' || $1::bigint AND actor = 'job:payouts'`, run.ID))
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'payouts.reconciliation.apply'
		AND record = 'disbursement:' || $1 AND actor = 'job:payouts' AND after->>'provider_ref' = 'sbx_' || $1
		AND after->>'outcome' = 'paid' AND before->>'provider_ref' = ''`, sent.ID))

	again, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	require.Len(t, again.Differences, 1)
	require.Equal(t, payouts.MissingAtProvider, again.Differences[0].Kind)
	require.Equal(t, unsent.ID, again.Differences[0].Disbursement)
}

// ruleOne pays 10.00 for one mentor conversation; ruleOneMore pays 20.00 for the same.
const (
	ruleOne = `{"id": "one", "title": "Met your mentor", "count": "conversations",
	"where": {"role": "mentor"}, "at_least": 1, "award": {"amount": "10.00", "kind": "microgrant"}, "repeat": "once"}`
	ruleOneMore = `{"id": "one-more", "title": "Met your mentor (bonus)", "count": "conversations",
	"where": {"role": "mentor"}, "at_least": 1, "award": {"amount": "20.00", "kind": "microgrant"}, "repeat": "once"}`
)

// TestAwardBlockedAlone: of two awards one evaluation makes, one cannot be handed over (a
// refusal every time, as a closed wallet would be). The evaluation succeeds: the other award
// is made and paid into the wallet, the failing one is rolled back alone and listed as
// blocked with its reason (and in the audit trail). Once the cause is gone, the next
// evaluation makes it and lifts the block. Before, the one failure failed the whole
// evaluation: no award at all until River gave up.
func TestAwardBlockedAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := buildApp(t, pool, app.Config{}) // not started: the test evaluates itself
	in, err := jobs.NewInserter(pool)
	require.NoError(t, err)
	var refuse atomic.Bool
	refuse.Store(true)
	n, err := network.New(pool, network.Config{Ledger: a.Ledger, Jobs: in,
		OnAward: func(ctx context.Context, tx pgx.Tx, aw network.Award, p network.Program) error {
			if aw.RuleID == "one-more" && refuse.Load() {
				return errors.New("the payee's wallet is closed")
			}
			return a.Payouts.OnAward(ctx, tx, aw, p)
		}})
	require.NoError(t, err)
	newProgram(t, n, "p1", "1000.00", "100.00", ruleOne, ruleOneMore)
	addMentor(t, n, "mo")
	c := addParticipant(t, n, "p1", "ana", "mo")
	conv(t, n, c, 1, true)
	require.False(t, t.Failed())

	res, err := n.EvaluateParticipant(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, network.EvalResult{Awarded: 1, Blocked: 1}, res)
	awards, err := n.Awards(ctx, network.AwardFilter{Participant: "ana"})
	require.NoError(t, err)
	require.Len(t, awards, 1)
	require.Equal(t, "one", awards[0].RuleID)
	requireAmount(t, "10", posted(t, a, network.WalletAccount("ana")))
	blocked, err := n.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Len(t, blocked, 1)
	require.Equal(t, "award:p1:ana:one-more:once", blocked[0].Key)
	require.Contains(t, blocked[0].Reason, "the payee's wallet is closed")
	require.Equal(t, 1, blocked[0].Attempts)
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'network.award.block' AND record LIKE '%award:p1:ana:one-more:once'`))
	who, err := n.BlockedParticipants(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"ana"}, who)

	// Still refused: still blocked, one more attempt counted.
	res, err = n.EvaluateParticipant(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, network.EvalResult{Blocked: 1}, res)
	blocked, err = n.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Len(t, blocked, 1)
	require.Equal(t, 2, blocked[0].Attempts)
	// A renewal for the same reason adds no line to the trail (the sweep renews every few
	// minutes); the block's creation has its line, and so will its removal.
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'network.award.block' AND record LIKE '%award:p1:ana:one-more:once'`))

	refuse.Store(false)
	res, err = n.EvaluateParticipant(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, network.EvalResult{Awarded: 1}, res)
	blocked, err = n.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Empty(t, blocked)
	requireAmount(t, "30", posted(t, a, network.WalletAccount("ana")))
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'network.award.unblock'
		AND record = 'award:award:p1:ana:one-more:once' AND detail = 'went through' AND before->>'reason' LIKE '%wallet is closed%'`))
}

// TestSweepReevaluatesLostEvaluations: an evaluate_milestones job was discarded (it gave up)
// with a fact folded into it, and another participant has a blocked award. The periodic
// awards sweep asks for both participants' evaluation again, so the award the fact earned
// is made without waiting for the participant's next fact.
func TestSweepReevaluatesLostEvaluations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := buildApp(t, pool, app.Config{})
	newProgram(t, a.Network, "p1", "1000.00", "100.00", ruleOne)
	addMentor(t, a.Network, "mo")
	c := addParticipant(t, a.Network, "p1", "ana", "mo")
	addParticipant(t, a.Network, "p1", "bo", "mo")
	conv(t, a.Network, c, 1, true)
	require.False(t, t.Failed())
	// ana's evaluation gave up; bo has a blocked award (recorded as an evaluation would).
	_, err := pool.Exec(ctx, `UPDATE river_job SET state = 'discarded', finalized_at = now(), attempt = 25
		WHERE kind = 'evaluate_milestones'`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO network_award_blocks (award_key, program_id, participant_id, rule_id, period, amount, currency, reason)
		VALUES ('award:p1:bo:one:once', 'p1', 'bo', 'one', 'once', 10, 'USD', 'test')`)
	require.NoError(t, err)

	require.NoError(t, a.Start(ctx))
	_, err = a.River.Insert(ctx, jobs.ReleaseAwardsArgs{Funding: "periodic sweep (test)"}, nil)
	require.NoError(t, err)
	waitFor(t, "ana's award", func() bool {
		awards, err := a.Network.Awards(ctx, network.AwardFilter{Participant: "ana"})
		require.NoError(t, err)
		return len(awards) == 1
	})
	// bo, who has no award due, was evaluated again too, which lifted the block of an award
	// no longer due.
	waitFor(t, "bo's evaluation", func() bool {
		return queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones' AND args->>'participant' = 'bo'
			AND state = 'completed'`) >= 1
	})
	blocked, err := a.Network.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Empty(t, blocked)
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'network.award.unblock'
		AND record = 'award:award:p1:bo:one:once' AND actor = 'job:milestones'`))
}

// TestReleaseWaitingBlocksAlone: the awards sweep pays the awards waiting for funds of two
// programs. In p2 one award cannot be paid (its hand-over is refused, as for a closed
// wallet): it is blocked alone, with its reason, and the program's other award is paid. In
// p1 the release fails for a passing reason: the sweep still releases p2 and reports p1's
// error at the end. Before, one failure rolled back the whole program's release and the
// sweep stopped at the first failing program. Once the causes are gone, the next sweep pays
// the rest and lifts the block, in the trail too.
func TestReleaseWaitingBlocksAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := buildApp(t, pool, app.Config{}) // not started: the test runs the sweep itself
	in, err := jobs.NewInserter(pool)
	require.NoError(t, err)
	var refuse, flaky atomic.Bool
	refuse.Store(true)
	flaky.Store(true)
	n, err := network.New(pool, network.Config{Ledger: a.Ledger, Jobs: in,
		OnAward: func(ctx context.Context, tx pgx.Tx, aw network.Award, p network.Program) error {
			if aw.Status == network.AwardPosted && aw.ParticipantID == "ana" && refuse.Load() {
				return errors.New("the payee's wallet is closed")
			}
			if aw.Status == network.AwardPosted && aw.ProgramID == "p1" && flaky.Load() {
				return fmt.Errorf("hand-over: %w", context.DeadlineExceeded)
			}
			return a.Payouts.OnAward(ctx, tx, aw, p)
		}})
	require.NoError(t, err)
	newProgram(t, n, "p1", "", "100.00", ruleOne)
	newProgram(t, n, "p2", "", "100.00", ruleOne)
	addMentor(t, n, "mo")
	for who, program := range map[string]string{"cy": "p1", "ana": "p2", "bo": "p2"} {
		conv(t, n, addParticipant(t, n, program, who, "mo"), 1, true)
		require.False(t, t.Failed())
		res, err := n.EvaluateParticipant(ctx, who)
		require.NoError(t, err)
		require.Equal(t, network.EvalResult{Waiting: 1}, res, who)
	}
	for _, p := range []string{"p1", "p2"} {
		_, err := n.Fund(ctx, admin, p, "100.00", p+"-funding")
		require.NoError(t, err)
	}
	sweep := &jobs.ReleaseAwardsWorker{Network: n}
	job := &river.Job[jobs.ReleaseAwardsArgs]{JobRow: &rivertype.JobRow{ID: 1}, Args: jobs.ReleaseAwardsArgs{Funding: "periodic sweep (test)"}}

	err = sweep.Work(ctx, job)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "p1")
	requireAmount(t, "10", posted(t, a, network.WalletAccount("bo")))
	requireAmount(t, "0", posted(t, a, network.WalletAccount("ana")))
	requireAmount(t, "0", posted(t, a, network.WalletAccount("cy")))
	blocked, err := n.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Len(t, blocked, 1)
	require.Equal(t, "award:p2:ana:one:once", blocked[0].Key)
	require.Contains(t, blocked[0].Reason, "the payee's wallet is closed")
	require.Equal(t, "10", blocked[0].Amount.String())
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'network.award.block' AND record = 'award:award:p2:ana:one:once'`))
	awards, err := n.Awards(ctx, network.AwardFilter{Participant: "ana"})
	require.NoError(t, err)
	require.Equal(t, network.AwardInsufficientFunds, awards[0].Status)

	refuse.Store(false)
	flaky.Store(false)
	require.NoError(t, sweep.Work(ctx, job))
	for _, who := range []string{"ana", "bo", "cy"} {
		requireAmount(t, "10", posted(t, a, network.WalletAccount(who)), who)
	}
	blocked, err = n.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Empty(t, blocked)
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'network.award.unblock' AND record = 'award:award:p2:ana:one:once'`))
}

// TestAwardBlockedByClosedWallet: the participant's wallet was closed; the evaluation does not
// fail (River would retry it 25 times and discard it) but blocks the award, saying why.
func TestAwardBlockedByClosedWallet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := buildApp(t, pool, app.Config{}) // not started: the test evaluates itself
	newProgram(t, a.Network, "p1", "1000.00", "100.00", ruleOne)
	addMentor(t, a.Network, "mo")
	c := addParticipant(t, a.Network, "p1", "ana", "mo")
	conv(t, a.Network, c, 1, true)
	require.False(t, t.Failed())
	_, err := a.Ledger.CloseAccount(ctx, network.WalletAccount("ana"))
	require.NoError(t, err)

	res, err := a.Network.EvaluateParticipant(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, network.EvalResult{Blocked: 1}, res)
	blocked, err := a.Network.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Len(t, blocked, 1)
	require.Equal(t, "award:p1:ana:one:once", blocked[0].Key)
	require.Contains(t, blocked[0].Reason, "closed")
	require.Equal(t, "10", blocked[0].Amount.String())
}

// TestReleaseBlockOutlivesEvaluation: the awards sweep blocks a waiting award it cannot pay
// (its hand-over is refused, as for a closed wallet) and asks for the participant's
// evaluation, which no longer reaches the award (its rule was retired). The award still
// waits unpaid, so its block stays, with no unblock line in the trail; the next sweep renews
// it without a new block line. Before, the evaluation removed the block as "no longer due"
// and the sweep blocked it again: two lines every ten minutes for as long as it waited. Once
// the cause is gone, the sweep pays it and lifts the block.
func TestReleaseBlockOutlivesEvaluation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := buildApp(t, pool, app.Config{}) // not started: the test runs the sweep itself
	in, err := jobs.NewInserter(pool)
	require.NoError(t, err)
	var refuse atomic.Bool
	refuse.Store(true)
	n, err := network.New(pool, network.Config{Ledger: a.Ledger, Jobs: in,
		OnAward: func(ctx context.Context, tx pgx.Tx, aw network.Award, p network.Program) error {
			if aw.Status == network.AwardPosted && refuse.Load() {
				return errors.New("the payee's wallet is closed")
			}
			return a.Payouts.OnAward(ctx, tx, aw, p)
		}})
	require.NoError(t, err)
	newProgram(t, n, "p1", "", "100.00", ruleOne)
	addMentor(t, n, "mo")
	conv(t, n, addParticipant(t, n, "p1", "ana", "mo"), 1, true)
	require.False(t, t.Failed())
	res, err := n.EvaluateParticipant(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, network.EvalResult{Waiting: 1}, res)
	_, err = n.Fund(ctx, admin, "p1", "100.00", "p1-funding")
	require.NoError(t, err)
	const key = "award:p1:ana:one:once"
	lines := func(action string) int {
		return queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = $1 AND record = 'award:'||$2`, action, key)
	}

	paid, err := n.ReleaseWaiting(ctx, "p1")
	require.NoError(t, err)
	require.Zero(t, paid)
	require.Equal(t, 1, lines("network.award.block"))
	_, err = n.RetireRule(ctx, admin, "p1", "one", "replaced")
	require.NoError(t, err)

	who, err := n.BlockedParticipants(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"ana"}, who)
	res, err = n.EvaluateParticipant(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, network.EvalResult{}, res)
	blocked, err := n.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Len(t, blocked, 1)
	require.Equal(t, key, blocked[0].Key)
	require.Zero(t, lines("network.award.unblock"), "the award still waits unpaid")

	paid, err = n.ReleaseWaiting(ctx, "p1")
	require.NoError(t, err)
	require.Zero(t, paid)
	blocked, err = n.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Len(t, blocked, 1)
	require.Equal(t, 2, blocked[0].Attempts)
	require.Equal(t, 1, lines("network.award.block"))

	refuse.Store(false)
	paid, err = n.ReleaseWaiting(ctx, "p1")
	require.NoError(t, err)
	require.Equal(t, 1, paid)
	requireAmount(t, "10", posted(t, a, network.WalletAccount("ana")))
	blocked, err = n.BlockedAwards(ctx)
	require.NoError(t, err)
	require.Empty(t, blocked)
	require.Equal(t, 1, lines("network.award.unblock"))
}
