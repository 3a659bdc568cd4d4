package app_test

// Reliability of the milestone pipeline end to end, on a real PostgreSQL and real River
// clients: one evaluation per burst of facts, no fact lost while an evaluation runs, a worker
// killed mid-evaluation, two River clients at once, 10,000 facts for 500 participants, and
// awards waiting for funds.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// ruleMentor4 pays 50.00 once for four verified mentor conversations (no window, so that
// the recounts below need not model one).
const ruleMentor4 = `{"id": "mentor-4", "title": "Met your mentor 4 times", "count": "conversations",
	"where": {"role": "mentor"}, "at_least": 4, "award": {"amount": "50.00", "kind": "microgrant"}, "repeat": "once"}`

// ruleResourced pays 5.00 for each verified conversation that carried a resource, at most
// three times a term.
const ruleResourced = `{"id": "resourced", "title": "A well-resourced conversation", "count": "well_resourced_conversations",
	"at_least": 1, "award": {"amount": "5.00", "kind": "microgrant"}, "repeat": "each", "cap": {"awards": 3, "per": "term"}}`

// activeStates are the states of a job that has not finished.
const activeStates = `('available', 'pending', 'running', 'retryable', 'scheduled')`

// buildApp assembles an App on pool without starting its River client; it is stopped when
// the test ends.
func buildApp(t *testing.T, pool *pgxpool.Pool, cfg app.Config) *app.App {
	t.Helper()
	a, err := app.New(pool, cfg)
	require.NoError(t, err)
	adminTokens(t, a)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	})
	return a
}

// waitUntil polls cond every 20 ms until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func queryInt(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

// activeJobs counts milestone jobs not yet finished.
func activeJobs(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	return queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind IN ('evaluate_milestones', 'release_awards')
		AND state IN `+activeStates)
}

// waitDrained waits until every milestone job has finished.
func waitDrained(t *testing.T, pool *pgxpool.Pool, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, "the milestone jobs to drain", func() bool { return activeJobs(t, pool) == 0 })
}

// requireNoFailedJobs checks that no milestone job errored, was discarded or cancelled.
func requireNoFailedJobs(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, kind, state::text, args::text, coalesce(errors::text, '') FROM river_job
		WHERE kind IN ('evaluate_milestones', 'release_awards') AND (state IN ('discarded', 'cancelled') OR errors IS NOT NULL)`)
	require.NoError(t, err)
	var bad []string
	var id int64
	var kind, state, args, errs string
	_, err = pgx.ForEachRow(rows, []any{&id, &kind, &state, &args, &errs}, func() error {
		bad = append(bad, fmt.Sprintf("job %d %s %s %s: %s", id, kind, state, args, errs))
		return nil
	})
	require.NoError(t, err)
	require.Empty(t, bad, "failed milestone jobs")
}

// waitSweep waits for the first periodic sweep of waiting awards (run when the River client
// becomes leader) to complete, so that it cannot pay an award at a moment the test does not
// expect; the next sweep comes 10 minutes later.
func waitSweep(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	waitFor(t, "the first periodic sweep of waiting awards", func() bool {
		return queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'release_awards' AND args->>'program' = ''
			AND state = 'completed'`) > 0
	})
}

// lastJobID is the id of the latest job inserted.
func lastJobID(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	return queryInt(t, pool, `SELECT coalesce(max(id), 0) FROM river_job`)
}

// releaseJobsAfter counts the release_awards jobs of program inserted after job id since in state.
func releaseJobsAfter(t *testing.T, pool *pgxpool.Pool, program string, since int, state string) int {
	t.Helper()
	return queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'release_awards' AND args->>'program' = $1
		AND id > $2 AND state = $3::river_job_state`, program, since, state)
}

// evalJob is an evaluate_milestones job as river_job holds it.
type evalJob struct {
	ID      int64
	State   string
	Gen     int64
	Attempt int
	Errors  int
}

func evalJobs(t *testing.T, pool *pgxpool.Pool, participant string) []evalJob {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id, state::text, (args->>'gen')::bigint, attempt,
		coalesce(array_length(errors, 1), 0) FROM river_job
		WHERE kind = 'evaluate_milestones' AND args->>'participant' = $1 ORDER BY id`, participant)
	require.NoError(t, err)
	jobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[evalJob])
	require.NoError(t, err)
	return jobs
}

func evalGen(t *testing.T, pool *pgxpool.Pool, person string) int64 {
	t.Helper()
	var g int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT eval_gen FROM network_people WHERE id = $1`, person).Scan(&g))
	return g
}

// lockWaiting says whether a session of this test's database waits for a lock while running
// a statement whose text matches like.
func lockWaiting(t *testing.T, pool *pgxpool.Pool, like string) bool {
	t.Helper()
	return queryInt(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		AND wait_event_type = 'Lock' AND query LIKE $1`, like) > 0
}

// waitLockWait waits until lockWaiting: proof that the interleaving a test builds is real.
func waitLockWait(t *testing.T, pool *pgxpool.Pool, like string) {
	t.Helper()
	waitUntil(t, 20*time.Second, "a session waiting for a lock in "+like, func() bool { return lockWaiting(t, pool, like) })
}

func awardCount(t *testing.T, pool *pgxpool.Pool, participant string) int {
	t.Helper()
	return queryInt(t, pool, `SELECT count(*) FROM network_awards WHERE participant_id = $1`, participant)
}

func entriesWithKey(t *testing.T, pool *pgxpool.Pool, key string) int {
	t.Helper()
	return queryInt(t, pool, `SELECT count(*) FROM ledger_entries WHERE idempotency_key = $1`, key)
}

func posted(t *testing.T, a *app.App, account string) decimal.Decimal {
	t.Helper()
	b, err := a.Ledger.Balance(context.Background(), account, ledger.AsOf{})
	require.NoError(t, err)
	return b.Posted
}

// received is what a wallet was ever paid (its posted credits): awards stay counted after the
// sandbox pays them out of the wallet.
func received(t *testing.T, a *app.App, account string) decimal.Decimal {
	t.Helper()
	b, err := a.Ledger.Balance(context.Background(), account, ledger.AsOf{})
	require.NoError(t, err)
	return b.PostedCredits
}

func requireAmount(t *testing.T, want string, got decimal.Decimal, msgAndArgs ...any) {
	t.Helper()
	require.True(t, decimal.RequireFromString(want).Equal(got), "want %s, got %s %v", want, got, fmt.Sprint(msgAndArgs...))
}

// newProgram creates program id funded with fund (unless empty) and saves rules.
func newProgram(t *testing.T, n *network.Store, id, fund, autoApprove string, rules ...string) {
	t.Helper()
	ctx := context.Background()
	_, err := n.CreateProgram(ctx, admin, network.NewProgram{ID: id, Name: "Program " + id, Currency: "USD",
		StartsOn: "2026-01-01", EndsOn: "2026-12-31", AutoApproveLimit: autoApprove})
	require.NoError(t, err)
	if fund != "" {
		_, err = n.Fund(ctx, admin, id, fund, id+"-initial-funding")
		require.NoError(t, err)
	}
	for _, r := range rules {
		_, _, err := n.SaveRule(ctx, admin, id, []byte(r))
		require.NoError(t, err)
	}
}

func consent(person string) network.NewConsent {
	return network.NewConsent{Given: true, SignedBy: person, SignedOn: "2026-09-01", Scope: "network facts for the program"}
}

// addMentor records a mentor with consent.
func addMentor(t *testing.T, n *network.Store, id string) {
	t.Helper()
	ctx := context.Background()
	_, err := n.AddPerson(ctx, admin, network.NewPerson{ID: id, Name: "Mentor " + id, Roles: []string{"mentor"}})
	require.NoError(t, err)
	_, err = n.RecordConsent(ctx, admin, id, consent(id))
	require.NoError(t, err)
}

// addParticipant records a participant with consent, enrolled in program and connected to
// mentor; it returns the connection's id. Safe to call from several goroutines (it reports
// with assert, and returns "" on failure).
func addParticipant(t *testing.T, n *network.Store, program, id, mentor string) string {
	ctx := context.Background()
	_, err := n.AddPerson(ctx, admin, network.NewPerson{ID: id, Name: "Participant " + id, Roles: []string{"participant"}})
	if !assert.NoError(t, err) {
		return ""
	}
	if _, err := n.RecordConsent(ctx, admin, id, consent(id)); !assert.NoError(t, err) {
		return ""
	}
	if _, err := n.Enrol(ctx, admin, program, id, ""); !assert.NoError(t, err) {
		return ""
	}
	c, err := n.Connect(ctx, admin, network.NewConnection{ParticipantID: id, OtherID: mentor, Role: "mentor", Origin: "matched", StartedOn: "2026-09-01"})
	if !assert.NoError(t, err) {
		return ""
	}
	return c.ID
}

// conv logs the i-th conversation on connection (occurring i hours after 2026-10-01 09:00
// UTC), verified as logged or not, with resources; it returns its id. Goroutine-safe.
func conv(t *testing.T, n *network.Store, connection string, i int, verified bool, resources ...string) string {
	cv, err := n.LogConversation(context.Background(), admin, network.NewConversation{ConnectionID: connection,
		OccurredAt: time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour),
		Channel:    "video", Minutes: 30, Resources: resources, Verified: verified})
	if !assert.NoError(t, err) {
		return ""
	}
	return cv.ID
}

func verify(t *testing.T, n *network.Store, conversation string) {
	_, err := n.Review(context.Background(), admin, conversation, network.ReviewVerify, "")
	assert.NoError(t, err)
}

// TestBurstRunsOneEvaluation: 50 facts for one participant, each its own transaction and
// committed while no worker runs, leave one evaluate_milestones job; it awards once.
//
// It fails if the job's uniqueness is lost (InsertOpts dropped, or "available" missing from
// its unique states: 50 jobs), if a fact asked for a generation of its own (e.g. facts bumping
// eval_gen: 50 jobs), or if the evaluation were not idempotent (the extra evaluations below).
func TestBurstRunsOneEvaluation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 16})
	a := buildApp(t, pool, app.Config{}) // not started: nothing runs the jobs yet
	n := a.Network
	newProgram(t, n, "p1", "1000.00", "100.00", ruleMentor4)
	addMentor(t, n, "mo")
	c := addParticipant(t, n, "p1", "ana", "mo")
	require.NotEmpty(t, c)

	// 50 conversations, verified as logged, from 10 goroutines: each its own transaction.
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Go(func() {
			for i := range 5 {
				conv(t, n, c, g*5+i, true)
			}
		})
	}
	wg.Wait()
	require.False(t, t.Failed())
	require.Equal(t, 50, queryInt(t, pool, `SELECT count(*) FROM network_conversations`))

	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones' AND args->>'participant' = $1`, "ana"))
	jobs := evalJobs(t, pool, "ana")
	require.Len(t, jobs, 1)
	require.Equal(t, evalJob{ID: jobs[0].ID, State: "available", Gen: 0}, jobs[0])
	require.Equal(t, 0, awardCount(t, pool, "ana"), "nothing runs before River starts")

	require.NoError(t, a.Start(ctx))
	waitFor(t, "the evaluation to complete", func() bool {
		j := evalJobs(t, pool, "ana")
		return len(j) == 1 && j[0].State == "completed"
	})
	require.Equal(t, 1, awardCount(t, pool, "ana"))
	require.Equal(t, 1, entriesWithKey(t, pool, "award:p1:ana:mentor-4:once"))
	requireAmount(t, "50", received(t, a, network.WalletAccount("ana")))

	// Evaluating again finds the award made.
	for range 2 {
		res, err := n.EvaluateParticipant(ctx, "ana")
		require.NoError(t, err)
		require.Equal(t, network.EvalResult{}, res)
	}
	require.Equal(t, 1, awardCount(t, pool, "ana"))
	require.Equal(t, 1, entriesWithKey(t, pool, "award:p1:ana:mentor-4:once"))
	require.Len(t, evalJobs(t, pool, "ana"), 1, "an evaluation asks for no job")
	requireNoFailedJobs(t, pool)
}

// racer is a participant with three verified mentor conversations and a fourth unverified:
// verifying the fourth reaches mentor-4.
type racer struct {
	id, conn, fourth string
}

func newRacer(t *testing.T, n *network.Store, program, id, mentor string) racer {
	r := racer{id: id, conn: addParticipant(t, n, program, id, mentor)}
	if r.conn == "" {
		return r
	}
	for i := range 3 {
		conv(t, n, r.conn, i, true)
	}
	r.fourth = conv(t, n, r.conn, 3, false)
	return r
}

// TestFactDuringRunningEvaluationIsNotMissed proves the evaluation-generation protocol of
// network/facts.go: a fact committed while its participant's evaluation runs is evaluated.
// Two subtests build the two dangerous interleavings deterministically with locks (and check
// in pg_stat_activity that they happened); a third races them many times without locks.
func TestFactDuringRunningEvaluationIsNotMissed(t *testing.T) {
	t.Parallel()

	// The fact commits after the evaluation started but before it bumped eval_gen: the
	// fact's request for an evaluation is folded into the running job, so the running
	// evaluation must see the fact. It does because it reads the facts only after its UPDATE
	// of eval_gen, which waits for every fact holding the share lock.
	//
	// Fails if EvaluateParticipant read the facts before bumping eval_gen: it would read them
	// (3 verified) while blocked behind T, then bump and find nothing due, and no other job
	// would ever run (asserted below: the verification asked for no new job).
	t.Run("evaluation bumps before it reads", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		pool := dbtest.New(t, dbtest.Options{MaxConns: 16})
		a := newApp(t, pool)
		n := a.Network
		newProgram(t, n, "p1", "1000.00", "100.00", ruleMentor4)
		addMentor(t, n, "mo")
		ana := newRacer(t, n, "p1", "ana", "mo")
		require.False(t, t.Failed())
		waitDrained(t, pool, 30*time.Second)
		require.Equal(t, 0, awardCount(t, pool, "ana"))
		gen := evalGen(t, pool, "ana")

		// T holds ana's share lock as a fact in progress does.
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, `SELECT 1 FROM network_people WHERE id = 'ana' FOR SHARE`)
		require.NoError(t, err)

		// An unrelated fact (an unverified conversation counts for nothing) asks for the
		// evaluation of generation gen; its worker blocks on the UPDATE of eval_gen.
		conv(t, n, ana.conn, 10, false)
		require.False(t, t.Failed())
		waitUntil(t, 20*time.Second, "the evaluation to run", func() bool {
			for _, j := range evalJobs(t, pool, "ana") {
				if j.Gen == gen && j.State == "running" {
					return true
				}
			}
			return false
		})
		waitLockWait(t, pool, "UPDATE network_people SET eval_gen%")

		// The completing fact commits now, while the evaluation runs (share locks do not
		// wait for each other, nor for the UPDATE queued behind T).
		done := make(chan struct{})
		go func() { defer close(done); verify(t, n, ana.fourth) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatal("verifying waited for the blocked evaluation")
		}
		require.False(t, t.Failed())
		for _, j := range evalJobs(t, pool, "ana") {
			require.LessOrEqual(t, j.Gen, gen, "the verification's request must have been folded into the running job: %+v", j)
		}
		require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones'
			AND args->>'participant' = 'ana' AND state = 'running'`))

		require.NoError(t, tx.Rollback(ctx)) // the evaluation proceeds
		waitFor(t, "the award", func() bool { return awardCount(t, pool, "ana") == 1 })
		waitDrained(t, pool, 30*time.Second)
		require.Equal(t, 1, awardCount(t, pool, "ana"))
		for _, j := range evalJobs(t, pool, "ana") {
			require.LessOrEqual(t, j.Gen, gen, "no later evaluation was needed: %+v", j)
		}
		requireAmount(t, "50", received(t, a, network.WalletAccount("ana")))
		requireNoFailedJobs(t, pool)
	})

	// The fact starts after the evaluation bumped eval_gen and read the facts, before it
	// commits: the fact must wait for the evaluation (its FOR SHARE waits for the UPDATE) and
	// then ask for the next generation, which no running job can swallow.
	//
	// Fails if facts read eval_gen without FOR SHARE: the verification would not wait (the
	// check that it is blocked times out), would read the old generation, its request would
	// be folded into the running job that has already read the facts, and no award would
	// ever be made.
	t.Run("facts wait for a running evaluation", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		pool := dbtest.New(t, dbtest.Options{MaxConns: 16})
		a := newApp(t, pool)
		n := a.Network
		newProgram(t, n, "p1", "1000.00", "100.00", ruleMentor4)
		addMentor(t, n, "mo")
		bo := newRacer(t, n, "p1", "bo", "mo")
		require.False(t, t.Failed())
		waitDrained(t, pool, 30*time.Second)
		require.Equal(t, 0, awardCount(t, pool, "bo"))
		gen := evalGen(t, pool, "bo")

		// L stops every evaluation when it reads the awards made, after it bumped eval_gen
		// and read the facts.
		lock, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = lock.Rollback(ctx) }()
		_, err = lock.Exec(ctx, `LOCK TABLE network_awards IN ACCESS EXCLUSIVE MODE`)
		require.NoError(t, err)

		conv(t, n, bo.conn, 10, false) // the unrelated fact: evaluation of generation gen
		require.False(t, t.Failed())
		waitLockWait(t, pool, "%award_key, status FROM network_awards%")
		running := 0
		for _, j := range evalJobs(t, pool, "bo") {
			if j.State == "running" {
				require.Equal(t, gen, j.Gen)
				running++
			}
		}
		require.Equal(t, 1, running, "the evaluation of generation %d runs (it has bumped eval_gen and read the facts)", gen)

		done := make(chan struct{})
		go func() { defer close(done); verify(t, n, bo.fourth) }()
		waitUntil(t, 20*time.Second, "the verification to wait for the evaluation", func() bool {
			select {
			case <-done:
				t.Error("the verification committed while the evaluation that had read the facts was running")
				return true
			default:
				return lockWaiting(t, pool, "%FROM network_people p%")
			}
		})

		require.NoError(t, lock.Rollback(ctx)) // the evaluation finds nothing due and commits
		<-done
		waitFor(t, "the award", func() bool { return awardCount(t, pool, "bo") == 1 })
		waitDrained(t, pool, 30*time.Second)
		require.Equal(t, 1, awardCount(t, pool, "bo"))
		var later bool
		for _, j := range evalJobs(t, pool, "bo") {
			later = later || (j.Gen == gen+1 && j.State == "completed")
		}
		require.True(t, later, "the verification asked for generation %d: %+v", gen+1, evalJobs(t, pool, "bo"))
		requireAmount(t, "50", received(t, a, network.WalletAccount("bo")))
		requireNoFailedJobs(t, pool)
	})

	// No locks: in each of 20 rounds, 6 participants each get an unrelated fact and the
	// completing verification from two goroutines released by one channel close; the
	// verification waits to see the evaluation the unrelated fact asked for running, then
	// 0–8 ms more, and is the participant's last fact. Every participant must end with exactly one award. The test
	// checks from river_job that many verifications overlapped a running evaluation of their
	// participant, so the race it claims to exercise did happen.
	//
	// With either half of the protocol broken, a verification that overlaps a running
	// evaluation is lost whenever it commits after that evaluation read the facts (without
	// the bump first) or after it bumped (without the share lock) but before it committed: its
	// request for an evaluation went into the running job and no later fact follows. With dozens of overlaps a run, some land in that window (the
	// deterministic subtests above build it on purpose).
	t.Run("racing rounds", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		pool := dbtest.New(t, dbtest.Options{MaxConns: 40})
		a := buildApp(t, pool, app.Config{Workers: 20})
		require.NoError(t, a.Start(ctx))
		n := a.Network
		setupStart := time.Now()
		newProgram(t, n, "p1", "100000.00", "100.00", ruleMentor4)
		const rounds, perRound = 20, 6
		for m := range 4 {
			addMentor(t, n, fmt.Sprintf("m%d", m))
		}
		racers := make([]racer, rounds*perRound)
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range 16 {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < len(racers); i = int(next.Add(1)) - 1 {
					racers[i] = newRacer(t, n, "p1", fmt.Sprintf("r%03d", i), fmt.Sprintf("m%d", i%4))
				}
			})
		}
		wg.Wait()
		require.False(t, t.Failed())
		waitDrained(t, pool, 60*time.Second)
		require.Equal(t, 0, queryInt(t, pool, `SELECT count(*) FROM network_awards`))
		t.Logf("setup of %d participants: %s", len(racers), time.Since(setupStart).Round(time.Millisecond))
		racesStart := time.Now()

		type window struct{ start, end time.Time }
		windows := make([]window, len(racers))
		now := func() time.Time {
			var ts time.Time
			assert.NoError(t, pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&ts))
			return ts
		}
		running := func(id string) bool {
			var c int
			err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones'
				AND args->>'participant' = $1 AND state = 'running'`, id).Scan(&c)
			return err == nil && c > 0
		}
		rng := rand.New(rand.NewPCG(2, 7))
		for round := range rounds {
			start := make(chan struct{})
			var wg sync.WaitGroup
			for k := range perRound {
				i := round*perRound + k
				r := racers[i]
				delay := time.Duration(rng.IntN(8000)) * time.Microsecond
				wg.Go(func() { // the unrelated fact: an evaluation of r
					<-start
					conv(t, n, r.conn, 20, false)
				})
				wg.Go(func() { // the completing fact, the last one for r, soon after that evaluation starts
					<-start
					deadline := time.Now().Add(3 * time.Second)
					for !running(r.id) && time.Now().Before(deadline) {
						time.Sleep(500 * time.Microsecond)
					}
					time.Sleep(delay)
					w := window{start: now()}
					verify(t, n, r.fourth)
					w.end = now()
					windows[i] = w
				})
			}
			close(start)
			wg.Wait()
		}
		require.False(t, t.Failed())
		waitDrained(t, pool, 60*time.Second)

		overlapped := 0
		var wrong []string
		for i, r := range racers {
			if c := awardCount(t, pool, r.id); c != 1 {
				wrong = append(wrong, fmt.Sprintf("%s: %d awards", r.id, c))
			}
			if queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones' AND args->>'participant' = $1
				AND attempted_at < $2 AND finalized_at > $3`, r.id, windows[i].end, windows[i].start) > 0 {
				overlapped++
			}
		}
		t.Logf("%d of %d verifications overlapped a running evaluation of their participant (%d rounds in %s)",
			overlapped, len(racers), rounds, time.Since(racesStart).Round(time.Millisecond))
		require.Empty(t, wrong, "%d of %d participants without exactly one award", len(wrong), len(racers))
		require.Positive(t, overlapped, "the race did not happen")
		require.Equal(t, len(racers), queryInt(t, pool, `SELECT count(*) FROM network_awards`))
		requireNoFailedJobs(t, pool)
	})
}

// TestWorkerKilledMidEvaluation stops a River client (StopAndCancel) while its worker is
// inside the award transaction, blocked on the fund account's row lock; a fresh client
// retries the job and the award is made exactly once.
func TestWorkerKilledMidEvaluation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 16})
	first := buildApp(t, pool, app.Config{})
	require.NoError(t, first.Start(ctx))
	n := first.Network
	newProgram(t, n, "p1", "1000.00", "100.00", ruleMentor4)
	addMentor(t, n, "mo")
	ana := newRacer(t, n, "p1", "ana", "mo")
	require.False(t, t.Failed())
	waitDrained(t, pool, 30*time.Second)

	lock, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(ctx) }()
	_, err = lock.Exec(ctx, `SELECT 1 FROM ledger_accounts WHERE code = 'program/p1/fund' FOR UPDATE`)
	require.NoError(t, err)

	verify(t, n, ana.fourth)
	require.False(t, t.Failed())
	waitLockWait(t, pool, "%ledger_post(%") // the award's entry waits for the fund's row
	var job evalJob
	for _, j := range evalJobs(t, pool, "ana") {
		if j.State == "running" {
			job = j
		}
	}
	require.NotZero(t, job.ID, "a running evaluation: %+v", evalJobs(t, pool, "ana"))

	stopCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	require.NoError(t, first.River.StopAndCancel(stopCtx))
	var state string
	require.NoError(t, pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, job.ID).Scan(&state))
	t.Logf("after StopAndCancel the job is %s", state)
	require.Contains(t, []string{"available", "retryable"}, state, "the interrupted job must be retried, not stuck running")

	require.NoError(t, lock.Rollback(ctx))
	// The killed transaction committed nothing (its connection is gone; the server rolls it
	// back once the lock frees it).
	waitUntil(t, 20*time.Second, "the killed evaluation's session to end", func() bool {
		return queryInt(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%ledger_post(%'
			AND state <> 'idle' AND pid <> pg_backend_pid()`) == 0
	})
	require.Equal(t, 0, awardCount(t, pool, "ana"))
	require.Equal(t, 0, entriesWithKey(t, pool, "award:p1:ana:mentor-4:once"))

	second := buildApp(t, pool, app.Config{})
	require.NoError(t, second.Start(ctx))
	waitFor(t, "the retried job to complete", func() bool {
		var s string
		require.NoError(t, pool.QueryRow(ctx, `SELECT state::text FROM river_job WHERE id = $1`, job.ID).Scan(&s))
		return s == "completed"
	})
	waitDrained(t, pool, 30*time.Second)
	require.Equal(t, 1, awardCount(t, pool, "ana"))
	require.Equal(t, 1, entriesWithKey(t, pool, "award:p1:ana:mentor-4:once"))
	requireAmount(t, "50", received(t, second, network.WalletAccount("ana")))
	requireAmount(t, "950", posted(t, second, "program/p1/fund"))
	ds, err := second.Payouts.List(ctx, payouts.Filter{Person: "ana"})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	waitUntil(t, 30*time.Second, "the award's disbursement paid by the sandbox", func() bool {
		d, err := second.Payouts.Get(ctx, ds[0].ID)
		require.NoError(t, err)
		return d.State == payouts.Paid
	})
}

// TestTwoClientsAwardOnce runs two Apps (two River clients working) on one database while
// 16 goroutines also call EvaluateParticipant directly on both: each participant is awarded
// once, with one ledger entry, and the fund pays exactly 20 awards.
func TestTwoClientsAwardOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 40})
	a := buildApp(t, pool, app.Config{Workers: 10})
	b := buildApp(t, pool, app.Config{Workers: 10})
	require.NoError(t, a.Start(ctx))
	require.NoError(t, b.Start(ctx))
	newProgram(t, a.Network, "p1", "10000.00", "100.00", ruleMentor4)
	addMentor(t, a.Network, "mo")
	const people = 20
	racers := make([]racer, people)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { racers[i] = newRacer(t, a.Network, "p1", fmt.Sprintf("q%02d", i), "mo") })
	}
	wg.Wait()
	require.False(t, t.Failed())
	waitDrained(t, pool, 30*time.Second)

	start := make(chan struct{})
	var evals, errs atomic.Int64
	for i, r := range racers {
		stores := []*network.Store{a.Network, b.Network}
		wg.Go(func() { <-start; verify(t, stores[i%2], r.fourth) })
	}
	for g := range 16 {
		s := []*network.Store{a.Network, b.Network}[g%2]
		wg.Go(func() {
			<-start
			for pass := range 4 {
				for k := range people {
					r := racers[(k+g+pass)%people]
					if _, err := s.EvaluateParticipant(ctx, r.id); err != nil {
						errs.Add(1)
						t.Errorf("EvaluateParticipant(%s): %v", r.id, err)
					}
					evals.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	require.Zero(t, errs.Load())
	waitDrained(t, pool, 30*time.Second)
	t.Logf("%d direct evaluations", evals.Load())

	for _, r := range racers {
		require.Equal(t, 1, awardCount(t, pool, r.id), r.id)
		require.Equal(t, 1, entriesWithKey(t, pool, network.AwardKey("p1", r.id, "mentor-4", "once")), r.id)
		requireAmount(t, "50", received(t, a, network.WalletAccount(r.id)), r.id)
	}
	requireAmount(t, "9000", posted(t, a, "program/p1/fund")) // 10,000 − 20 × 50
	require.Equal(t, people, queryInt(t, pool, `SELECT count(*) FROM payouts_disbursements`))
	var clients []string
	rows, err := pool.Query(ctx, `SELECT DISTINCT unnest(attempted_by) FROM river_job WHERE kind = 'evaluate_milestones'`)
	require.NoError(t, err)
	clients, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	t.Logf("evaluate_milestones jobs were worked by %d clients", len(clients))
	requireNoFailedJobs(t, pool)
}

// TestTenThousandFactsFiveHundredParticipants logs 10,000 conversations for 500
// participants from 32 goroutines while 20 workers evaluate, and compares the awards with a
// recount made from what was logged. It does not run in parallel with the other tests, so
// that its throughput figure means something.
func TestTenThousandFactsFiveHundredParticipants(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 facts")
	}
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 40})
	a := buildApp(t, pool, app.Config{Workers: 20})
	require.NoError(t, a.Start(ctx))
	n := a.Network
	const (
		participants = 500
		mentors      = 50
		facts        = 10_000
		workers      = 32
		funding      = "1000000.00"
	)
	setupStart := time.Now()
	newProgram(t, n, "p1", funding, "100.00", ruleMentor4, ruleResourced)
	parallel := func(count int, fn func(i int)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < count; i = int(next.Add(1)) - 1 {
					fn(i)
				}
			})
		}
		wg.Wait()
		require.False(t, t.Failed())
	}
	parallel(mentors, func(i int) {
		id := fmt.Sprintf("m%02d", i)
		_, err := n.AddPerson(ctx, admin, network.NewPerson{ID: id, Name: "Mentor " + id, Roles: []string{"mentor"}})
		if assert.NoError(t, err) {
			_, err = n.RecordConsent(ctx, admin, id, consent(id))
			assert.NoError(t, err)
		}
	})
	conns := make([]string, participants)
	parallel(participants, func(i int) {
		conns[i] = addParticipant(t, n, "p1", fmt.Sprintf("p%03d", i), fmt.Sprintf("m%02d", i%mentors))
	})
	t.Logf("setup: %d participants and %d mentors in %s", participants, mentors, time.Since(setupStart).Round(time.Millisecond))

	// The plan, from a fixed seed: each participant's chance of a verified conversation
	// varies from 0 to 50%, so some reach mentor-4 and some do not; 15% carry a resource.
	type fact struct {
		participant int
		at          time.Time
		minutes     int
		verified    bool
		resources   []string
	}
	rng := rand.New(rand.NewPCG(20261126, 1))
	pVerified := make([]float64, participants)
	for i := range pVerified {
		pVerified[i] = rng.Float64() / 2
	}
	plan := make([]fact, facts)
	verified := make([]int, participants)
	resourced := make([]int, participants)
	base := time.Date(2026, 9, 2, 0, 0, 0, 0, time.UTC)
	for i := range plan {
		p := rng.IntN(participants)
		f := fact{participant: p, at: base.Add(time.Duration(rng.IntN(80*24*60)) * time.Minute), minutes: 5 + rng.IntN(115),
			verified: rng.Float64() < pVerified[p]}
		if rng.Float64() < 0.15 {
			f.resources = []string{network.ResourceKinds[rng.IntN(len(network.ResourceKinds))]}
		}
		if f.verified {
			verified[p]++
			if len(f.resources) > 0 {
				resourced[p]++
			}
		}
		plan[i] = f
	}

	insertStart := time.Now()
	parallel(facts, func(i int) {
		f := plan[i]
		_, err := n.LogConversation(ctx, admin, network.NewConversation{ConnectionID: conns[f.participant], OccurredAt: f.at,
			Channel: "video", Minutes: f.minutes, Resources: f.resources, Verified: f.verified})
		assert.NoError(t, err)
	})
	inserted := time.Since(insertStart)
	waitDrained(t, pool, 120*time.Second)
	drained := time.Since(insertStart)
	t.Logf("%d facts logged in %s (%.0f facts/s), all evaluated after %s; %d evaluations ran",
		facts, inserted.Round(time.Millisecond), float64(facts)/inserted.Seconds(), drained.Round(time.Millisecond),
		queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones' AND state = 'completed'`))
	requireNoFailedJobs(t, pool)
	require.Equal(t, facts, queryInt(t, pool, `SELECT count(*) FROM network_conversations`))

	// The recount.
	type key struct{ participant, rule string }
	want := map[key]int{}
	wantTotal := decimal.Zero
	for i := range participants {
		id := fmt.Sprintf("p%03d", i)
		if verified[i] >= 4 {
			want[key{id, "mentor-4"}] = 1
			wantTotal = wantTotal.Add(decimal.RequireFromString("50"))
		}
		if r := min(3, resourced[i]); r > 0 {
			want[key{id, "resourced"}] = r
			wantTotal = wantTotal.Add(decimal.RequireFromString("5").Mul(decimal.NewFromInt(int64(r))))
		}
	}
	rows, err := pool.Query(ctx, `SELECT participant_id, rule_id, count(*), count(*) FILTER (WHERE status = 'posted')
		FROM network_awards GROUP BY 1, 2`)
	require.NoError(t, err)
	got := map[key]int{}
	var pid, rule string
	var count, postedCount int
	_, err = pgx.ForEachRow(rows, []any{&pid, &rule, &count, &postedCount}, func() error {
		got[key{pid, rule}] = count
		assert.Equal(t, count, postedCount, "%s %s: every award is paid", pid, rule)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, want, got)
	var reached, capped int
	for i := range participants {
		if verified[i] >= 4 {
			reached++
		}
		if resourced[i] > 3 {
			capped++
		}
	}
	t.Logf("%d of %d participants reached mentor-4, %d hit the resourced cap; %d awards, %s paid", reached, participants, capped,
		queryInt(t, pool, `SELECT count(*) FROM network_awards`), wantTotal)
	require.Positive(t, reached)
	require.Less(t, reached, participants)
	require.Positive(t, capped)

	// Every award has its one entry, the ledger balances, and the fund paid exactly the awards.
	require.Equal(t, 0, queryInt(t, pool, `SELECT count(*) FROM network_awards a
		WHERE (SELECT count(*) FROM ledger_entries e WHERE e.idempotency_key = a.award_key) <> 1`))
	tb, err := a.Ledger.TrialBalance(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, tb.Totals)
	for _, tot := range tb.Totals {
		require.True(t, tot.Balanced, "%+v", tot)
	}
	d, err := a.Ledger.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, d)
	requireAmount(t, decimal.RequireFromString(funding).Sub(wantTotal).String(), posted(t, a, "program/p1/fund"))
	var wallets decimal.Decimal
	for i := range participants {
		wallets = wallets.Add(received(t, a, network.WalletAccount(fmt.Sprintf("p%03d", i))))
	}
	requireAmount(t, wantTotal.String(), wallets, "the wallets hold the awards")
}

// TestRetractAfterAward: retracting a conversation that earned awards takes nothing back and
// pays nothing again. A repeating rule's awards are numbered within the term (#1, #2…), so
// the next verified conversation takes the retracted one's place (#1, already paid) and the
// one after pays #2: a participant is paid for the highest count they ever reached.
func TestRetractAfterAward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := newApp(t, pool)
	n := a.Network
	newProgram(t, n, "p1", "1000.00", "100.00", ruleMentor4, ruleResourced)
	addMentor(t, n, "mo")
	c := addParticipant(t, n, "p1", "ana", "mo")
	require.NotEmpty(t, c)
	keys := func() []string {
		rows, err := pool.Query(ctx, `SELECT award_key FROM network_awards WHERE participant_id = 'ana' ORDER BY award_key`)
		require.NoError(t, err)
		k, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return k
	}
	settle := func() {
		t.Helper()
		require.False(t, t.Failed())
		waitDrained(t, pool, 30*time.Second)
	}

	first := conv(t, n, c, 0, true, "advice")
	for i := 1; i < 4; i++ {
		conv(t, n, c, i, true)
	}
	settle()
	require.Equal(t, []string{"award:p1:ana:mentor-4:once", "award:p1:ana:resourced:#1"}, keys())
	requireAmount(t, "55", received(t, a, network.WalletAccount("ana")))

	_, err := n.Review(ctx, admin, first, network.ReviewRetract, "reported in error")
	require.NoError(t, err)
	settle()
	require.Equal(t, []string{"award:p1:ana:mentor-4:once", "award:p1:ana:resourced:#1"}, keys(), "no award taken back or made again")
	requireAmount(t, "55", received(t, a, network.WalletAccount("ana")))
	prog, err := n.Progress(ctx, "ana")
	require.NoError(t, err)
	for _, r := range prog.Programs[0].Rules {
		if r.RuleID == "resourced" {
			require.Equal(t, "0", r.Count.String(), "the retracted conversation no longer counts")
		}
	}

	// A new well-resourced conversation, logged then verified, restores the count the
	// participant was paid for: no new award.
	second := conv(t, n, c, 10, false, "referral")
	settle()
	verify(t, n, second)
	settle()
	require.Len(t, keys(), 2)
	requireAmount(t, "55", received(t, a, network.WalletAccount("ana")))

	// The next one goes beyond it and pays.
	third := conv(t, n, c, 11, false, "introduction")
	verify(t, n, third)
	settle()
	require.Equal(t, []string{"award:p1:ana:mentor-4:once", "award:p1:ana:resourced:#1", "award:p1:ana:resourced:#2"}, keys())
	requireAmount(t, "60", received(t, a, network.WalletAccount("ana")))
	require.Equal(t, 1, entriesWithKey(t, pool, "award:p1:ana:resourced:#2"))
	requireNoFailedJobs(t, pool)
}

// TestShortFundWaitsAndReleases: an award the fund cannot cover waits (award and
// disbursement insufficient_funds) and is paid by the release job once the program is
// funded; the disbursement moves on by the program's auto-approve limit.
func TestShortFundWaitsAndReleases(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, limit, want string
	}{
		{"within the auto-approve limit", "100.00", payouts.Approved},
		{"above the auto-approve limit", "0", payouts.AwaitingApproval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
			a := newApp(t, pool)
			n := a.Network
			newProgram(t, n, "p1", "40.00", tc.limit, ruleMentor4)
			addMentor(t, n, "mo")
			c := addParticipant(t, n, "p1", "ana", "mo")
			require.NotEmpty(t, c)
			for i := range 4 {
				conv(t, n, c, i, true)
			}
			require.False(t, t.Failed())
			waitSweep(t, pool)
			waitFor(t, "the award", func() bool { return awardCount(t, pool, "ana") == 1 })
			waitDrained(t, pool, 30*time.Second)
			aw, err := n.Awards(ctx, network.AwardFilter{Participant: "ana"})
			require.NoError(t, err)
			require.Len(t, aw, 1)
			require.Equal(t, network.AwardInsufficientFunds, aw[0].Status)
			require.Empty(t, aw[0].EntryID)
			ds, err := a.Payouts.List(ctx, payouts.Filter{Person: "ana"})
			require.NoError(t, err)
			require.Len(t, ds, 1)
			require.Equal(t, payouts.InsufficientFunds, ds[0].State)
			requireAmount(t, "40", posted(t, a, "program/p1/fund"))
			requireAmount(t, "0", received(t, a, network.WalletAccount("ana")))
			require.Equal(t, 0, entriesWithKey(t, pool, aw[0].Key))

			since := lastJobID(t, pool)
			_, err = n.Fund(ctx, admin, "p1", "100.00", "fund-2")
			require.NoError(t, err)
			waitFor(t, "the award to be paid", func() bool {
				return queryInt(t, pool, `SELECT count(*) FROM network_awards WHERE status = 'posted'`) == 1
			})
			waitDrained(t, pool, 30*time.Second)
			require.Equal(t, 1, releaseJobsAfter(t, pool, "p1", since, "completed"), "the funding's release job")
			require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM audit_log WHERE action = 'network.award.pay'`))
			require.Equal(t, 1, entriesWithKey(t, pool, aw[0].Key))
			requireAmount(t, "50", received(t, a, network.WalletAccount("ana")))
			requireAmount(t, "90", posted(t, a, "program/p1/fund"))
			final, moves := tc.want, 2
			if tc.want == payouts.Approved {
				final, moves = payouts.Paid, 4 // then submitted and paid by the sandbox
			}
			var d payouts.Disbursement
			waitUntil(t, 30*time.Second, "the disbursement "+final, func() bool {
				var err error
				d, err = a.Payouts.Get(ctx, ds[0].ID)
				require.NoError(t, err)
				return d.State == final
			})
			require.Len(t, d.Transitions, moves)
			require.Equal(t, "", d.Transitions[0].From)
			require.Equal(t, payouts.InsufficientFunds, d.Transitions[0].To)
			require.Equal(t, payouts.InsufficientFunds, d.Transitions[1].From)
			require.Equal(t, tc.want, d.Transitions[1].To)
			require.Equal(t, network.SystemActor.Name, d.Transitions[1].Actor)
			requireNoFailedJobs(t, pool)
		})
	}
}

// TestFundingDuringShortEvaluationReleasesAward: a funding that commits while an evaluation
// is making an award the fund could not cover (before the funding) must still get the award
// paid. The evaluation is held, after its failed payment and before it commits, by a lock
// on payouts_disbursements (it creates the disbursement there); the funding commits and its
// release job runs meanwhile.
func TestFundingDuringShortEvaluationReleasesAward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 16})
	a := newApp(t, pool)
	n := a.Network
	newProgram(t, n, "p1", "40.00", "100.00", ruleMentor4)
	addMentor(t, n, "mo")
	ana := newRacer(t, n, "p1", "ana", "mo")
	require.False(t, t.Failed())
	waitSweep(t, pool)
	waitDrained(t, pool, 30*time.Second)

	lock, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = lock.Rollback(ctx) }()
	_, err = lock.Exec(ctx, `LOCK TABLE payouts_disbursements IN EXCLUSIVE MODE`)
	require.NoError(t, err)

	verify(t, n, ana.fourth)
	require.False(t, t.Failed())
	// The evaluation has tried to pay (40.00 < 50.00), recorded the award as waiting, and
	// waits to create its disbursement.
	waitLockWait(t, pool, "%FROM payouts_disbursements WHERE award_id%")

	// The funding must not slip in between: it waits for the evaluation of its program (the
	// program's share lock), so its release job sees the waiting award.
	since := lastJobID(t, pool)
	funded := make(chan error, 1)
	go func() {
		_, err := n.Fund(ctx, admin, "p1", "100.00", "fund-2")
		funded <- err
	}()
	waitLockWait(t, pool, "%FROM network_programs WHERE id = $1 FOR NO KEY UPDATE%")
	require.Equal(t, 0, awardCount(t, pool, "ana"), "the evaluation has not committed its award yet")
	require.NoError(t, lock.Rollback(ctx))
	require.NoError(t, <-funded)
	waitFor(t, "the funding's release job to complete", func() bool {
		return releaseJobsAfter(t, pool, "p1", since, "completed") == 1
	})
	waitDrained(t, pool, 30*time.Second)
	status := func() string {
		var st string
		require.NoError(t, pool.QueryRow(ctx, `SELECT status FROM network_awards WHERE participant_id = 'ana'`).Scan(&st))
		return st
	}
	waitFor(t, "the release job to pay the award", func() bool { return status() == network.AwardPosted })
	requireAmount(t, "50", received(t, a, network.WalletAccount("ana")))
	requireAmount(t, "90", posted(t, a, "program/p1/fund"))
}
