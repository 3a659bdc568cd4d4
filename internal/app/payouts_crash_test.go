package app_test

// Payouts against crashes, concurrency and reconciliation, on a real PostgreSQL and real River
// clients: a fault injected at each point of submission and of webhook processing, a process
// that dies after the pending entry and a new one that finishes its work, 200 approvals racing
// while three River clients pay, and reconciliation against a tampered provider.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// errCrash is what an injected fault returns: the work stops there as if the process died.
var errCrash = errors.New("injected crash")

// faultPlan is an app.Payouts.Fault that fails the next n calls at a point, and counts calls.
// onCrash, when set, runs (in the worker's goroutine) each time it fails a call.
type faultPlan struct {
	mu      sync.Mutex
	fail    map[string]int
	hits    map[string]int
	crashes map[string]int
	onCrash func(point string)
}

func newFaultPlan() *faultPlan {
	return &faultPlan{fail: map[string]int{}, hits: map[string]int{}, crashes: map[string]int{}}
}

// failNext makes the next n calls at point fail.
func (f *faultPlan) failNext(point string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[point] += n
}

// Fault is the hook given to app.Config.
func (f *faultPlan) Fault(point string) error {
	f.mu.Lock()
	f.hits[point]++
	crash := f.fail[point] > 0
	if crash {
		f.fail[point]--
		f.crashes[point]++
	}
	hook := f.onCrash
	f.mu.Unlock()
	if !crash {
		return nil
	}
	if hook != nil {
		hook(point)
	}
	return errCrash
}

func (f *faultPlan) crashed(point string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashes[point]
}

// payoutEntries counts a disbursement's payout entries in the ledger by kind: pending
// (wallet → cash), commit (paid), void (failed); returns are counted under "return".
func payoutEntries(t *testing.T, pool *pgxpool.Pool, id string) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT CASE WHEN idempotency_key LIKE 'payout-return:%' THEN 'return' ELSE kind END, count(*)
		FROM ledger_entries WHERE idempotency_key LIKE 'payout:' || $1 || '%' OR idempotency_key LIKE 'payout-return:' || $1 || '%'
		GROUP BY 1`, id)
	require.NoError(t, err)
	out := map[string]int{}
	var kind string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&kind, &n}, func() error { out[kind] = n; return nil })
	require.NoError(t, err)
	return out
}

func queryDecimal(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) decimal.Decimal {
	t.Helper()
	var s string
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&s), sql)
	return decimal.RequireFromString(s)
}

// payoutSums is, for currency, what left the participants' wallets (their posted debits) and
// what the commits of payout entries took out of cash (their posted cash credits).
func payoutSums(t *testing.T, pool *pgxpool.Pool, currency string) (walletDebits, commitCredits decimal.Decimal) {
	t.Helper()
	walletDebits = queryDecimal(t, pool, `SELECT coalesce(sum(posted_debits), 0)::text FROM ledger_accounts
		WHERE code LIKE 'participant/%/wallet' AND currency = $1`, currency)
	commitCredits = queryDecimal(t, pool, `SELECT coalesce(sum(p.amount), 0)::text FROM ledger_postings p
		JOIN ledger_entries e ON e.id = p.entry_id JOIN ledger_accounts a ON a.id = p.account_id
		WHERE e.kind = 'commit' AND e.idempotency_key LIKE 'payout:%' AND p.phase = 'posted' AND p.side = 'credit' AND a.code = $1`,
		network.CashAccount(currency))
	return walletDebits, commitCredits
}

// requireLedgerClean: the ledger's self-check finds nothing, and every currency's wallets paid
// out exactly what the payout commits took out of cash: want, when given.
func requireLedgerClean(t *testing.T, a *app.App, pool *pgxpool.Pool, currency string, want decimal.Decimal) {
	t.Helper()
	problems, err := a.Ledger.Check(context.Background())
	require.NoError(t, err)
	require.Empty(t, problems, "ledger self-check")
	debits, credits := payoutSums(t, pool, currency)
	requireAmount(t, want.String(), debits, "wallet debits")
	requireAmount(t, want.String(), credits, "cash credits of payout commits")
}

// payoutJobs describes the payout jobs of a kind for a disbursement: state and errors.
type payoutJob struct {
	ID     int64
	State  string
	Errors int
	Text   string
}

func payoutJobs(t *testing.T, pool *pgxpool.Pool, kind, disbursement string) []payoutJob {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, state::text, coalesce(array_length(errors, 1), 0), coalesce(errors::text, '')
		FROM river_job WHERE kind = $1 AND args->>'disbursement' = $2 ORDER BY id`, kind, disbursement)
	require.NoError(t, err)
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[payoutJob])
	require.NoError(t, err)
	return jobs
}

// requireNoFailedPayoutJobs: no payout job errored, was discarded or cancelled.
func requireNoFailedPayoutJobs(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT format('job %s %s %s %s: %s', id, kind, state, args, coalesce(errors::text, ''))
		FROM river_job WHERE kind IN ('submit_payout', 'settle_payout', 'retry_payout', 'process_payout_event', 'payouts_sweep', 'ledger_check')
		AND (state IN ('discarded', 'cancelled') OR errors IS NOT NULL)`)
	require.NoError(t, err)
	bad, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, bad, "failed payout jobs")
}

// payoutFixture is a program p1 (fund 5000.00, auto-approve up to 100.00) with participants.
func payoutFixture(t *testing.T, a *app.App, people ...string) {
	t.Helper()
	newProgram(t, a.Network, "p1", "5000.00", "100.00")
	addMentor(t, a.Network, "mo")
	for _, p := range people {
		addParticipant(t, a.Network, "p1", p, "mo")
	}
	require.False(t, t.Failed())
}

func createPayout(t *testing.T, p *payouts.Store, person, amount, key, want string) payouts.Disbursement {
	t.Helper()
	d, err := p.Create(context.Background(), admin, payouts.NewDisbursement{Program: "p1", Person: person, Amount: amount,
		Reason: "test payout " + key, IdempotencyKey: key})
	require.NoError(t, err)
	require.Equal(t, want, d.State, "disbursement %s", key)
	return d
}

// TestPayoutCrashes injects one crash into the submit job, with River running, before the
// provider is called (submit:after-pending) and after it answered but before the answer is
// recorded (submit:after-send), through the sandbox and through Stripe (stripe-mock, behind a
// recording proxy). River retries the job; each case must end with one transfer at the
// provider, one attempt with one pending entry and one commit, the disbursement paid, and a
// balanced ledger.
//
// It fails if Submit opened a new attempt (or a new key) when it finds one open, if the
// retried send used another idempotency key, if a crash before the send left a transfer behind,
// or if the pending entry were posted twice.
func TestPayoutCrashes(t *testing.T) {
	t.Parallel()
	for _, provider := range []string{"sandbox", "stripe"} {
		for _, point := range []string{"submit:after-pending", "submit:after-send"} {
			t.Run(provider+" "+point, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				var mock string
				if provider == "stripe" {
					mock = stripeMockURL(t)
				}
				pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
				plan := newFaultPlan()
				plan.failNext(point, 1)
				cfg := app.Config{Payouts: app.Payouts{Fault: plan.Fault}}
				var rec *stripeRecorder
				if provider == "stripe" {
					var base string
					base, rec = stripeProxy(t, mock)
					cfg.Payouts.StripeSecretKey, cfg.Payouts.StripeBaseURL, cfg.Payouts.WebhookSecret = "sk_test_123", base, testWebhookSecret
				}
				// What the provider had been asked when the crash came.
				var atCrash atomic.Int64
				atCrash.Store(-1)
				plan.onCrash = func(string) {
					if rec != nil {
						atCrash.Store(int64(len(rec.transfers(""))))
						return
					}
					var n int64
					if err := pool.QueryRow(ctx, `SELECT count(*) FROM payouts_sandbox_transfers`).Scan(&n); err == nil {
						atCrash.Store(n)
					}
				}
				a := buildApp(t, pool, cfg)
				require.NoError(t, a.Start(ctx))
				payoutFixture(t, a, "ana")
				if provider == "stripe" {
					_, err := a.Payouts.SetDestination(ctx, admin, "ana", "acct_123")
					require.NoError(t, err)
				}

				d := createPayout(t, a.Payouts, "ana", "42.50", "crash", payouts.Approved)
				got := waitState(t, a.Payouts, d.ID, payouts.Paid)
				require.Equal(t, 1, plan.crashed(point), "the fault fired once")

				wantAtCrash := int64(0) // stopped before the provider was called
				if point == "submit:after-send" {
					wantAtCrash = 1 // the provider had made the transfer
				}
				require.Equal(t, wantAtCrash, atCrash.Load(), "transfers at the provider when the crash came")

				require.Len(t, got.Attempts, 1, "one attempt")
				at := got.Attempts[0]
				require.Equal(t, d.ID, at.IdempotencyKey)
				require.Equal(t, "paid", at.Outcome)
				require.Equal(t, provider, at.Provider)
				require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, pool, d.ID))

				if provider == "sandbox" {
					require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM payouts_sandbox_transfers WHERE disbursement_id = $1`, d.ID),
						"one sandbox transfer")
					require.Equal(t, "sbx_"+d.ID, at.ProviderRef)
					requireAmount(t, "42.50", queryDecimal(t, pool, `SELECT sum(amount)::text FROM payouts_sandbox_transfers`))
				} else {
					calls := rec.transfers(d.ID)
					want := 1
					if point == "submit:after-send" {
						want = 2 // sent, crashed, sent again under the same key
					}
					require.Len(t, calls, want, "POST /v1/transfers for the disbursement")
					for _, c := range calls {
						require.Equal(t, d.ID, c.Header.Get("Idempotency-Key"), "every send carries the attempt's key")
						require.Equal(t, "4250", c.Form.Get("amount"))
					}
					// stripe-mock keeps no state, so it answered the resend with a new id; Stripe
					// would have answered with the first transfer. The recorded reference is the
					// answer the committed run got.
					require.Equal(t, calls[len(calls)-1].transferID(t), at.ProviderRef)
				}

				jobs := payoutJobs(t, pool, "submit_payout", d.ID)
				require.Len(t, jobs, 1)
				waitFor(t, "the submit job to complete", func() bool {
					return payoutJobs(t, pool, "submit_payout", d.ID)[0].State == "completed"
				})
				jobs = payoutJobs(t, pool, "submit_payout", d.ID)
				require.Equal(t, 1, jobs[0].Errors, "the job failed once, at the crash")
				require.Contains(t, jobs[0].Text, "fault at "+point)
				requireLedgerClean(t, a, pool, "USD", decimal.RequireFromString("42.50"))
				requireAmount(t, "0", posted(t, a, network.WalletAccount("ana")))
			})
		}
	}
}

// TestPayoutCrashDuringWebhook: the submit job sends a Stripe transfer and dies before
// recording it (held at submit:after-send until the webhook is through); the webhook
// transfer.created for it arrives meanwhile, and its processing crashes once before
// committing (event:before-commit). River retries the event, which pays the disbursement;
// the submit job, retried after, finds it paid and sends nothing more. One transfer, one
// attempt, one pending entry, one commit.
//
// It fails if the crashed processing left any effect, if the event were marked processed
// without its effect (the retry would then skip it and the disbursement stay submitted), or
// if the retried submit job sent again after the webhook settled the attempt.
func TestPayoutCrashDuringWebhook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	mock := stripeMockURL(t)
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	base, rec := stripeProxy(t, mock)
	plan := newFaultPlan()
	plan.failNext("submit:after-send", 1)
	plan.failNext("event:before-commit", 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	plan.onCrash = func(point string) {
		if point == "submit:after-send" {
			select {
			case <-release:
			case <-time.After(time.Minute):
			}
		}
	}
	a := buildApp(t, pool, app.Config{Payouts: app.Payouts{StripeSecretKey: "sk_test_123", StripeBaseURL: base,
		WebhookSecret: testWebhookSecret, Fault: plan.Fault}})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the App stops
	require.NoError(t, a.Start(ctx))
	payoutFixture(t, a, "ana")
	_, err := a.Payouts.SetDestination(ctx, admin, "ana", "acct_123")
	require.NoError(t, err)

	d := createPayout(t, a.Payouts, "ana", "40.00", "webhook-crash", payouts.Approved)
	waitFor(t, "the transfer to be sent", func() bool { return plan.crashed("submit:after-send") == 1 })
	calls := rec.transfers(d.ID)
	require.Len(t, calls, 1)
	ref := calls[0].transferID(t)
	got, err := a.Payouts.Get(ctx, d.ID)
	require.NoError(t, err)
	require.Equal(t, payouts.Submitted, got.State)
	require.Len(t, got.Attempts, 1)
	require.Empty(t, got.Attempts[0].ProviderRef, "the crash came before the reference was recorded")

	payload := stripeEvent("evt_crash_1", "transfer.created", payouts.WebhookAPIVersion, stripeTransfer(ref, d, 1, 0, false))
	ev, err := a.Payouts.RecordStripeEvent(ctx, payload, signStripe(payload, testWebhookSecret))
	require.NoError(t, err)
	require.False(t, ev.Duplicate)
	got = waitState(t, a.Payouts, d.ID, payouts.Paid)
	require.Equal(t, 1, plan.crashed("event:before-commit"), "the event's processing crashed once")
	require.Equal(t, ref, got.Attempts[0].ProviderRef)
	require.Contains(t, got.Transitions[len(got.Transitions)-1].Reason, "evt_crash_1")
	var processed bool
	var outcome string
	require.NoError(t, pool.QueryRow(ctx, `SELECT processed_at IS NOT NULL, coalesce(outcome, '') FROM payouts_events WHERE event_id = 'evt_crash_1'`).
		Scan(&processed, &outcome))
	require.True(t, processed)
	require.Equal(t, fmt.Sprintf("applied to disbursement %s attempt 1", d.ID), outcome)
	var evJobErrors int
	var evJobText string
	require.NoError(t, pool.QueryRow(ctx, `SELECT coalesce(array_length(errors, 1), 0), coalesce(errors::text, '') FROM river_job
		WHERE kind = 'process_payout_event' AND args->>'event_id' = 'evt_crash_1'`).Scan(&evJobErrors, &evJobText))
	require.Equal(t, 1, evJobErrors)
	require.Contains(t, evJobText, "fault at event:before-commit")

	releaseOnce.Do(func() { close(release) }) // the submit job now dies after its send
	waitFor(t, "the retried submit job to complete", func() bool {
		jobs := payoutJobs(t, pool, "submit_payout", d.ID)
		return len(jobs) == 1 && jobs[0].State == "completed" && jobs[0].Errors == 1
	})
	require.Len(t, rec.transfers(d.ID), 1, "the retried submit job found the attempt settled and sent nothing")
	got, err = a.Payouts.Get(ctx, d.ID)
	require.NoError(t, err)
	require.Equal(t, payouts.Paid, got.State)
	require.Len(t, got.Attempts, 1)
	require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, pool, d.ID))
	requireLedgerClean(t, a, pool, "USD", decimal.RequireFromString("40.00"))
}

// TestPayoutProcessDiesAfterPending: a process runs Submit and dies after the pending entry
// (one disbursement before the provider call, one after it); a brand new App on the same
// database, with its own River client, finishes both submit jobs: one sandbox transfer each,
// one attempt, paid, balanced.
//
// It fails if the new process opened a second attempt or a second pending entry, or if the
// sandbox made a second transfer for the resent key.
func TestPayoutProcessDiesAfterPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	plan := newFaultPlan()
	first := buildApp(t, pool, app.Config{Payouts: app.Payouts{Fault: plan.Fault}}) // never started: its jobs wait
	payoutFixture(t, first, "ana", "bo")
	before := createPayout(t, first.Payouts, "ana", "30.00", "dies-before-send", payouts.Approved)
	after := createPayout(t, first.Payouts, "bo", "70.00", "dies-after-send", payouts.Approved)

	plan.failNext("submit:after-pending", 1)
	require.ErrorIs(t, first.Payouts.Submit(ctx, uuid.MustParse(before.ID)), errCrash)
	plan.failNext("submit:after-send", 1)
	require.ErrorIs(t, first.Payouts.Submit(ctx, uuid.MustParse(after.ID)), errCrash)
	for _, c := range []struct {
		d         payouts.Disbursement
		transfers int
	}{{before, 0}, {after, 1}} {
		d, err := first.Payouts.Get(ctx, c.d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Submitted, d.State)
		require.Len(t, d.Attempts, 1)
		require.Empty(t, d.Attempts[0].ProviderRef)
		require.Equal(t, map[string]int{"pending": 1}, payoutEntries(t, pool, d.ID))
		require.Equal(t, c.transfers, queryInt(t, pool, `SELECT count(*) FROM payouts_sandbox_transfers WHERE disbursement_id = $1`, d.ID))
	}
	requireAmount(t, "-30", pendingOf(t, first, network.WalletAccount("ana")))

	second := buildApp(t, pool, app.Config{})
	require.NoError(t, second.Start(ctx))
	for _, d := range []payouts.Disbursement{before, after} {
		got := waitState(t, second.Payouts, d.ID, payouts.Paid)
		require.Len(t, got.Attempts, 1)
		require.Equal(t, d.ID, got.Attempts[0].IdempotencyKey)
		require.Equal(t, "sbx_"+d.ID, got.Attempts[0].ProviderRef)
		require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, pool, d.ID))
		require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM payouts_sandbox_transfers WHERE disbursement_id = $1`, d.ID))
		jobs := payoutJobs(t, pool, "submit_payout", d.ID)
		require.Len(t, jobs, 1)
	}
	requireLedgerClean(t, second, pool, "USD", decimal.RequireFromString("100.00"))
	requireAmount(t, "0", posted(t, second, network.WalletAccount("ana")))
	requireAmount(t, "0", pendingOf(t, second, network.WalletAccount("ana")))
	requireAmount(t, "100", queryDecimal(t, pool, `SELECT sum(amount)::text FROM payouts_sandbox_transfers`))
}

func pendingOf(t *testing.T, a *app.App, account string) decimal.Decimal {
	t.Helper()
	b, err := a.Ledger.Balance(context.Background(), account, ledger.AsOf{})
	require.NoError(t, err)
	return b.Pending
}

// TestPayoutsThreeClientsPayOnce: 200 disbursements above the auto-approve limit for 20
// participants (no caps) are approved from 16 goroutines — each by two admins racing, one of
// whom must lose — while three Apps, each with its own pool and River client, pay them through
// the sandbox (settling 200 ms after the send, so the settle jobs run too). Each is paid
// exactly once: one sandbox transfer, one attempt, one commit; what the sandbox paid, what the
// commits took out of cash and what left the wallets are the same sum; the ledger is clean
// and no payout job failed.
func TestPayoutsThreeClientsPayOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const people, count = 20, 200
	pool, url := dbtest.NewWithURL(t, dbtest.Options{MaxConns: 12})
	cfg := app.Config{Workers: 10, Payouts: app.Payouts{Sandbox: payouts.SandboxConfig{Delay: 200 * time.Millisecond}}}
	apps := []*app.App{buildApp(t, pool, cfg)}
	for range 2 {
		pc, err := pgxpool.ParseConfig(url)
		require.NoError(t, err)
		pc.MaxConns = 12
		p, err := pgxpool.NewWithConfig(ctx, pc)
		require.NoError(t, err)
		t.Cleanup(p.Close) // after its App stops (cleanups run last first)
		apps = append(apps, buildApp(t, p, cfg))
	}
	for _, a := range apps {
		require.NoError(t, a.Start(ctx))
	}
	a := apps[0]
	newProgram(t, a.Network, "p1", "100000.00", "100.00")
	_, err := a.Payouts.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{DualControlThreshold: "10000.00"})
	require.NoError(t, err)
	pol, err := a.Payouts.Policy(ctx, "p1")
	require.NoError(t, err)
	require.False(t, pol.MonthlyCap.Valid || pol.YearlyCap.Valid, "no caps")
	addMentor(t, a.Network, "mo")
	var wg sync.WaitGroup
	for i := range people {
		wg.Go(func() { addParticipant(t, a.Network, "p1", fmt.Sprintf("c%02d", i), "mo") })
	}
	wg.Wait()
	require.False(t, t.Failed())

	ids := make([]string, count)
	total := decimal.Zero
	amounts := make([]decimal.Decimal, count)
	for i := range count {
		amounts[i] = decimal.New(int64(10100+i*137%29900), -2) // 101.00 to 399.99
		total = total.Add(amounts[i])
	}
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				d, err := apps[i%3].Payouts.Create(ctx, admin, payouts.NewDisbursement{Program: "p1", Person: fmt.Sprintf("c%02d", i%people),
					Amount: amounts[i].StringFixed(2), Reason: "concurrency", IdempotencyKey: fmt.Sprintf("cc-%d", i)})
				if assert.NoError(t, err) && assert.Equal(t, payouts.AwaitingApproval, d.State) {
					ids[i] = d.ID
				}
			}
		})
	}
	for i := range count {
		work <- i
	}
	close(work)
	wg.Wait()
	require.False(t, t.Failed())

	// Each disbursement is approved by admin2 and admin3 at once; one approval wins.
	type approval struct {
		id string
		by network.By
	}
	var todo []approval
	for _, id := range ids {
		todo = append(todo, approval{id, admin2}, approval{id, admin3})
	}
	rand.Shuffle(len(todo), func(i, j int) { todo[i], todo[j] = todo[j], todo[i] })
	var won, lost atomic.Int64
	jobs := make(chan approval)
	start := time.Now()
	for g := range 16 {
		wg.Go(func() {
			for x := range jobs {
				d, err := approveSeen(ctx, apps[g%3].Payouts, x.by, x.id, "ok")
				switch {
				case err == nil:
					assert.NotEqual(t, payouts.AwaitingApproval, d.State)
					won.Add(1)
				case errors.Is(err, payouts.ErrState):
					lost.Add(1)
				default:
					t.Errorf("approve %s by %s: %v", x.id, x.by.Name, err)
				}
			}
		})
	}
	for _, x := range todo {
		jobs <- x
	}
	close(jobs)
	wg.Wait()
	require.False(t, t.Failed())
	require.EqualValues(t, count, won.Load(), "one approval per disbursement wins")
	require.EqualValues(t, count, lost.Load())
	t.Logf("400 racing approvals in %s", time.Since(start).Round(time.Millisecond))

	waitUntil(t, 2*time.Minute, "every disbursement to be paid", func() bool {
		return queryInt(t, pool, `SELECT count(*) FROM payouts_disbursements WHERE state = 'paid'`) == count
	})
	t.Logf("200 approvals and payouts in %s", time.Since(start).Round(time.Millisecond))

	rows, err := pool.Query(ctx, `SELECT d.id::text || ' ' || d.state
		|| ' transfers=' || (SELECT count(*) FROM payouts_sandbox_transfers s WHERE s.disbursement_id = d.id)
		|| ' attempts=' || (SELECT count(*) FROM payouts_attempts a WHERE a.disbursement_id = d.id)
		|| ' approvals=' || (SELECT count(*) FROM payouts_approvals a WHERE a.disbursement_id = d.id)
		|| ' pending=' || (SELECT count(*) FROM ledger_entries e WHERE e.idempotency_key = 'payout:' || d.id)
		|| ' commits=' || (SELECT count(*) FROM ledger_entries e WHERE e.idempotency_key = 'payout:' || d.id || ':paid')
		|| ' submits=' || (SELECT count(*) FROM river_job j WHERE j.kind = 'submit_payout' AND j.args->>'disbursement' = d.id::text)
		FROM payouts_disbursements d ORDER BY d.id`)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Len(t, lines, count)
	for _, l := range lines {
		id, rest, _ := strings.Cut(l, " ")
		require.Equal(t, "paid transfers=1 attempts=1 approvals=1 pending=1 commits=1 submits=1", rest, id)
	}

	requireAmount(t, total.String(), queryDecimal(t, pool, `SELECT sum(amount)::text FROM payouts_sandbox_transfers`), "sandbox transfers")
	requireAmount(t, total.String(), queryDecimal(t, pool, `SELECT sum(amount)::text FROM payouts_disbursements`), "disbursements")
	requireLedgerClean(t, a, pool, "USD", total)
	for i := range people {
		requireAmount(t, "0", posted(t, a, network.WalletAccount(fmt.Sprintf("c%02d", i))))
	}
	requireAmount(t, decimal.RequireFromString("100000").Sub(total).String(), posted(t, a, "program/p1/fund"))
	requireNoFailedPayoutJobs(t, pool)
	rows, err = pool.Query(ctx, `SELECT DISTINCT unnest(attempted_by) FROM river_job WHERE kind IN ('submit_payout', 'settle_payout')`)
	require.NoError(t, err)
	clients, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	t.Logf("submit and settle jobs were worked by %d River clients", len(clients))
	require.GreaterOrEqual(t, len(clients), 2, "the payouts were shared between the clients")
}

// TestReconcileSandbox: after payouts (five paid, one failed at the provider) reconciliation
// finds no difference; after the sandbox's books are tampered with — an amount changed, a
// paid transfer marked failed, a transfer Tandem never made added, one deleted, one paid
// transfer reversed in full and one in part — it records exactly amount_mismatch,
// status_mismatch (three), missing_in_ledger and missing_at_provider with the right
// disbursements, and Reconciliations lists both runs, newest first. What the provider gave
// back is applied as a lost webhook would have: a return entry for each, the one returned in
// full is returned, the other stays paid; the one marked failed is not failed in the ledger
// (a paid transfer does not fail later). A third run finds only what was not applied.
func TestReconcileSandbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := newApp(t, pool)
	payoutFixture(t, a, "ana", "bo", "cy", "dee", "eve", "fay")
	_, err := a.Payouts.SetDestination(ctx, admin, "eve", "fail:account-closed")
	require.NoError(t, err)
	since := time.Now().Add(-time.Hour)
	var ds []payouts.Disbursement
	for i, p := range []string{"ana", "bo", "cy", "dee", "fay"} {
		d := createPayout(t, a.Payouts, p, fmt.Sprintf("%d.25", 10+i), "rec-"+p, payouts.Approved)
		ds = append(ds, waitState(t, a.Payouts, d.ID, payouts.Paid))
	}
	failed := createPayout(t, a.Payouts, "eve", "15.00", "rec-eve", payouts.Approved)
	waitState(t, a.Payouts, failed.ID, payouts.Failed)

	clean, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	require.Empty(t, clean.Differences)
	require.Equal(t, 6, clean.ProviderRecords)
	require.Equal(t, 6, clean.LedgerRecords)

	stranger := uuid.NewString()
	_, err = pool.Exec(ctx, `UPDATE payouts_sandbox_transfers SET amount = amount + 1 WHERE disbursement_id = $1`, ds[0].ID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE payouts_sandbox_transfers SET outcome = 'failed' WHERE disbursement_id = $1`, ds[1].ID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO payouts_sandbox_transfers (ref, idempotency_key, disbursement_id, amount, currency, destination,
		outcome, settles_at) VALUES ('sbx_stranger', 'stranger', $1, 12.34, 'USD', 'sandbox:zed', 'paid', now())`, stranger)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM payouts_sandbox_transfers WHERE disbursement_id = $1`, ds[2].ID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE payouts_sandbox_transfers SET reversed = amount WHERE disbursement_id = $1`, ds[3].ID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE payouts_sandbox_transfers SET reversed = 5 WHERE disbursement_id = $1`, ds[4].ID)
	require.NoError(t, err)
	before := map[string]payouts.Disbursement{}
	for _, d := range ds {
		before[d.ID] = d
	}

	run, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	require.Equal(t, 6, run.ProviderRecords) // 6 − 1 deleted + 1 added
	require.Equal(t, 6, run.LedgerRecords)
	type diff struct{ kind, disbursement, ref, ledger, provider string }
	summarize := func(list []payouts.Difference) []diff {
		var out []diff
		for _, d := range list {
			x := diff{kind: d.Kind, disbursement: d.Disbursement, ref: d.ProviderRef}
			if d.LedgerAmount != "" {
				x.ledger = decimal.RequireFromString(d.LedgerAmount).StringFixed(2)
			}
			if d.ProviderAmount != "" {
				x.provider = decimal.RequireFromString(d.ProviderAmount).StringFixed(2)
			}
			out = append(out, x)
		}
		return out
	}
	want := []diff{
		{payouts.AmountMismatch, ds[0].ID, "sbx_" + ds[0].ID, "10.25", "11.25"},
		{payouts.StatusMismatch, ds[1].ID, "sbx_" + ds[1].ID, "11.25", "11.25"},
		{payouts.MissingInLedger, stranger, "sbx_stranger", "", "12.34"},
		{payouts.MissingAtProvider, ds[2].ID, "sbx_" + ds[2].ID, "12.25", ""},
		{payouts.StatusMismatch, ds[3].ID, "sbx_" + ds[3].ID, "13.25", "13.25"},
		{payouts.StatusMismatch, ds[4].ID, "sbx_" + ds[4].ID, "14.25", "14.25"},
	}
	require.ElementsMatch(t, want, summarize(run.Differences))
	details := map[string]string{}
	for _, d := range run.Differences {
		if d.Kind == payouts.StatusMismatch {
			details[d.Disbursement] = d.Detail
		}
	}
	require.Equal(t, map[string]string{
		ds[1].ID: "the provider failed it; the ledger shows it paid",
		ds[3].ID: "returned: ledger 0, provider 13.25",
		ds[4].ID: "returned: ledger 0, provider 5",
	}, details)

	runs, err := a.Payouts.Reconciliations(ctx, 10)
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.Equal(t, run.ID, runs[0].ID, "newest first")
	require.Equal(t, clean.ID, runs[1].ID)
	require.Equal(t, "sandbox", runs[0].Provider)
	require.ElementsMatch(t, want, summarize(runs[0].Differences))
	require.Empty(t, runs[1].Differences)
	require.Equal(t, 6, queryInt(t, pool, `SELECT differences FROM payouts_reconciliations WHERE id = $1`, run.ID))

	// Applied: what the provider gave back is in the wallets, by a return entry each.
	source := fmt.Sprintf("reconciliation run %d", run.ID)
	full := getPayout(t, a, ds[3].ID)
	require.Equal(t, payouts.Returned, full.State, "returned in full")
	require.Len(t, full.Returns, 1)
	require.Equal(t, "13.25", full.Returns[0].Amount)
	require.Equal(t, source, full.Returns[0].Event)
	require.Equal(t, "13.25", full.Attempts[0].Returned)
	last := full.Transitions[len(full.Transitions)-1]
	require.Equal(t, "paid→returned", last.From+"→"+last.To)
	require.Equal(t, payouts.SystemActor.Name, last.Actor)
	require.Equal(t, "the provider returned the payout ("+source+"); it is back in the wallet: retry it (e.g. after a new destination) or cancel it",
		last.Reason)
	require.Equal(t, map[string]int{"pending": 1, "commit": 1, "return": 1}, payoutEntries(t, pool, ds[3].ID))
	requireAmount(t, "13.25", posted(t, a, network.WalletAccount("dee")))

	part := getPayout(t, a, ds[4].ID)
	require.Equal(t, payouts.Paid, part.State, "a partial return stays paid")
	require.Len(t, part.Transitions, len(before[ds[4].ID].Transitions))
	require.Len(t, part.Returns, 1)
	require.Equal(t, "5.00", part.Returns[0].Amount)
	require.Equal(t, source, part.Returns[0].Event)
	require.Equal(t, "5.00", part.Attempts[0].Returned)
	require.Equal(t, map[string]int{"pending": 1, "commit": 1, "return": 1}, payoutEntries(t, pool, ds[4].ID))
	requireAmount(t, "5", posted(t, a, network.WalletAccount("fay")))

	// Not applied: the transfer marked failed stays paid in the ledger, as do the others.
	for _, i := range []int{0, 1, 2} {
		d := getPayout(t, a, ds[i].ID)
		require.Equal(t, payouts.Paid, d.State, ds[i].ID)
		require.Equal(t, "paid", d.Attempts[0].Outcome)
		require.Equal(t, "0.00", d.Attempts[0].Returned)
		require.Empty(t, d.Returns)
		require.Len(t, d.Transitions, len(before[ds[i].ID].Transitions))
		require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, pool, ds[i].ID))
	}

	// Once applied, the returns agree: a third run finds the rest only, and applies nothing twice.
	third, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	require.ElementsMatch(t, want[:4], summarize(third.Differences))
	require.Equal(t, 2, queryInt(t, pool, `SELECT count(*) FROM ledger_entries WHERE idempotency_key LIKE 'payout-return:%'`))
	require.Len(t, getPayout(t, a, ds[3].ID).Transitions, len(full.Transitions))
	requireLedgerClean(t, a, pool, "USD", decimal.RequireFromString("61.25"))
}

// TestReconcileAppliesLostSettlement: a payout the provider settled while the ledger still
// shows its attempt open (the webhook was lost, the settle job not run yet) is applied by
// reconciliation: paid — the pending entry committed — or failed — voided, the money back in
// the wallet — as the provider says; nothing before the provider settled it, nothing twice.
// The ledger was behind, not wrong: no difference is recorded.
func TestReconcileAppliesLostSettlement(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, a := e.ctx, e.a
	newProgram(t, a.Network, "p1", "1000.00", "100.00")
	e.payee("p1", "ana")
	e.payee("p1", "bo")
	e.destination("bo", "fail:account-closed")
	slow := e.store(payouts.NewSandbox(e.pool, payouts.SandboxConfig{Delay: 5 * time.Second}), payouts.Config{})
	since := time.Now().Add(-time.Hour)
	paid := e.submit(slow, e.grant(admin, "p1", "ana", "40.00", "lost-paid").ID)
	failed := e.submit(slow, e.grant(admin, "p1", "bo", "30.00", "lost-failed").ID)
	for _, d := range []payouts.Disbursement{paid, failed} {
		require.Equal(t, payouts.Submitted, d.State)
		require.Len(t, d.Attempts, 1)
		require.NotEmpty(t, d.Attempts[0].ProviderRef)
		require.Empty(t, d.Attempts[0].Outcome)
		require.Equal(t, map[string]int{"pending": 1}, payoutEntries(t, e.pool, d.ID))
	}

	run, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	require.Zero(t, queryInt(t, e.pool, `SELECT count(*) FROM payouts_sandbox_transfers WHERE settles_at <= clock_timestamp()`),
		"the run came before the sandbox settled (a slow machine would make this test void, not wrong)")
	require.Empty(t, run.Differences)
	require.Equal(t, 2, run.ProviderRecords)
	require.Equal(t, 2, run.LedgerRecords)
	for _, d := range []payouts.Disbursement{paid, failed} {
		require.Equal(t, payouts.Submitted, e.get(d.ID).State, "not settled at the provider yet")
	}

	waitUntil(t, 20*time.Second, "the sandbox to settle both transfers", func() bool {
		return queryInt(t, e.pool, `SELECT count(*) FROM payouts_sandbox_transfers WHERE settles_at <= clock_timestamp()`) == 2
	})
	run, err = a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	require.Empty(t, run.Differences, "the ledger was behind, not wrong")
	source := fmt.Sprintf("reconciliation run %d", run.ID)

	d := e.get(paid.ID)
	require.Equal(t, payouts.Paid, d.State)
	require.Equal(t, []string{"→approved", "approved→submitted", "submitted→paid"}, moves(d))
	require.Equal(t, "attempt 1 paid ("+source+")", lastTransition(t, d).Reason)
	require.Equal(t, payouts.SystemActor.Name, lastTransition(t, d).Actor)
	require.Equal(t, "paid", d.Attempts[0].Outcome)
	require.NotNil(t, d.Attempts[0].SettledAt)
	require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, e.pool, d.ID))
	requireAmount(t, "0", posted(t, a, network.WalletAccount("ana")))
	requireAmount(t, "0", pendingOf(t, a, network.WalletAccount("ana")))

	d = e.get(failed.ID)
	require.Equal(t, payouts.Failed, d.State)
	require.Equal(t, []string{"→approved", "approved→submitted", "submitted→failed"}, moves(d))
	require.Contains(t, lastTransition(t, d).Reason, "attempt 1 failed ("+source+"): the provider failed it (found by reconciliation)")
	require.Equal(t, "failed", d.Attempts[0].Outcome)
	require.Equal(t, "the provider failed it (found by reconciliation)", d.Attempts[0].Reason)
	require.Equal(t, map[string]int{"pending": 1, "void": 1}, payoutEntries(t, e.pool, d.ID))
	requireAmount(t, "30", posted(t, a, network.WalletAccount("bo")), "the money is back in the wallet")
	requireAmount(t, "0", pendingOf(t, a, network.WalletAccount("bo")))

	// The settle jobs, come late, find them settled; another run applies nothing.
	for id, want := range map[string]payouts.Outcome{paid.ID: payouts.OutcomePaid, failed.ID: payouts.OutcomeFailed} {
		n := len(e.get(id).Transitions)
		out, err := slow.Settle(ctx, uuid.MustParse(id), 1)
		require.NoError(t, err)
		require.Equal(t, want, out)
		require.Len(t, e.get(id).Transitions, n)
	}
	again, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	require.Empty(t, again.Differences)
	require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, e.pool, paid.ID))
	require.Equal(t, map[string]int{"pending": 1, "void": 1}, payoutEntries(t, e.pool, failed.ID))
	require.Len(t, e.get(paid.ID).Transitions, 3)
	require.Len(t, e.get(failed.ID).Transitions, 3)
	e.requireCheckClean()
}

// listedFirst is a provider whose List calls after once its records are all listed: what
// happens between reconciliation's reading of the provider and its applying of updates.
type listedFirst struct {
	payouts.Provider
	after func(ctx context.Context) error
}

func (p *listedFirst) List(ctx context.Context, since time.Time, fn func(payouts.Record) error) error {
	if err := p.Provider.List(ctx, since, fn); err != nil {
		return err
	}
	return p.after(ctx)
}

// TestReconcileAppliesNothingSettledSince: reconciliation lists a transfer the provider
// settled while the ledger shows its attempt open, and before it applies that, the settle
// job records the outcome. The apply finds the attempt settled: it changes nothing and writes
// no payouts.reconciliation.apply line (before, it wrote one in the reconciler's name, with
// the open attempt as Before, for a change the settle job made), and the payout is paid once.
func TestReconcileAppliesNothingSettledSince(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, a := e.ctx, e.a
	newProgram(t, a.Network, "p1", "1000.00", "100.00")
	e.payee("p1", "ana")
	sandbox := payouts.NewSandbox(e.pool, payouts.SandboxConfig{Delay: time.Hour})
	since := time.Now().Add(-time.Hour)
	d := e.submit(e.store(sandbox, payouts.Config{}), e.grant(admin, "p1", "ana", "40.00", "settled-since").ID)
	require.Equal(t, payouts.Submitted, d.State)
	require.Empty(t, d.Attempts[0].Outcome)
	// The provider settled it; the webhook was lost.
	_, err := e.pool.Exec(ctx, `UPDATE payouts_sandbox_transfers SET settles_at = clock_timestamp() - interval '1 second'
		WHERE disbursement_id = $1`, d.ID)
	require.NoError(t, err)

	settler := e.store(sandbox, payouts.Config{})
	settled := 0
	reconciler := e.store(&listedFirst{Provider: sandbox, after: func(ctx context.Context) error {
		settled++
		out, err := settler.Settle(ctx, uuid.MustParse(d.ID), 1)
		if err == nil && out != payouts.OutcomePaid {
			err = fmt.Errorf("settle job found %s", out)
		}
		return err
	}}, payouts.Config{})
	run, err := reconciler.ReconcileBy(ctx, admin, since)
	require.NoError(t, err)
	require.Equal(t, 1, settled)
	require.Empty(t, run.Differences)

	got := e.get(d.ID)
	require.Equal(t, payouts.Paid, got.State)
	require.Equal(t, []string{"→approved", "approved→submitted", "submitted→paid"}, moves(got))
	require.NotContains(t, lastTransition(t, got).Reason, "reconciliation", "the settle job paid it")
	require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, e.pool, d.ID))
	require.Zero(t, queryInt(t, e.pool, `SELECT count(*) FROM audit_log WHERE action = 'payouts.reconciliation.apply'
		AND record = 'disbursement:' || $1`, d.ID))
	requireAmount(t, "0", pendingOf(t, a, network.WalletAccount("ana")))
}

// getPayout reads a disbursement with its history.
func getPayout(t *testing.T, a *app.App, id string) payouts.Disbursement {
	t.Helper()
	d, err := a.Payouts.Get(context.Background(), id)
	require.NoError(t, err)
	return d
}
