package app_test

// Network benchmarks, next to the ledger's (scripts/bench.sh runs both). They need
// DATABASE_URL like the tests; each top-level benchmark gets a database of its own.
//
// As in ledger/bench_test.go, each top-level benchmark builds its fixture once (through the
// network.Store API, so every trigger and the evaluation protocol run; only the 1,000
// conversations per participant of BenchmarkNetworkEvaluate are loaded by SQL) and measures
// in a sub-benchmark; set-up lines start with "bench:". Rates are over the measured wall
// time, latencies are p50-ms and p99-ms; ns/op is dropped.
//
//   - BenchmarkNetworkIngest: facts (LogConversation, each in its own transaction with its
//     evaluate_milestones job insert and audit line) from 16 clients on 500 participants,
//     River NOT started, so no evaluation competes: the ingest figure alone. One op is one
//     fact.
//   - BenchmarkNetworkFactToAward: River started (20 workers); a background load of 500
//     facts/s on 500 other participants while, every 40 ms, one of 200 participants with 3
//     verified mentor conversations logs the 4th that completes a rule. Latency is award
//     created_at minus the conversation's recorded_at, both clock_timestamp() on the same
//     server (seen-p*-ms: from LogConversation returning to a 5 ms poller seeing the award).
//     One op is one round of 200 completions.
//   - BenchmarkNetworkEvaluate: EvaluateParticipant on participants with 1,000 conversations
//     each and three rules, after a first evaluation made their awards: the steady-state cost
//     of an evaluation that finds nothing new. One op is one evaluation.

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/network"
)

const (
	benchNetProgram = "bench"
	benchNetClients = 16 // concurrent callers in the ingest benchmark and the set-up

	benchIngestPeople = 500 // participants the ingest benchmark logs conversations for

	benchF2AWorkers     = 20                    // River MaxWorkers
	benchF2ATargets     = 200                   // participants completing the rule, per round
	benchF2AInterval    = 40 * time.Millisecond // between two completing conversations
	benchF2ALoadPeople  = 500                   // participants of the background load
	benchF2ALoadRate    = 500                   // background facts per second
	benchF2ALoadClients = 16                    // goroutines sending the background facts
	benchF2AWarmUp      = time.Second           // load before the first completion
	benchF2APoll        = 5 * time.Millisecond  // award poller period
	benchF2ATimeout     = time.Minute           // awards must appear within this

	benchEvalPeople        = 20
	benchEvalConversations = 1000
)

// The rules: mentor-4 is the one of TestMilestoneToWallet; the evaluate benchmark adds a
// monthly and a repeating one, so an evaluation checks three rules over the same facts.
var (
	benchRuleMentor4 = `{"id": "mentor-4", "title": "Met your mentor 4 times within 60 days",
		"count": "conversations", "where": {"role": "mentor"}, "at_least": 4, "within_days": 60,
		"award": {"amount": "50.00", "kind": "microgrant"}, "repeat": "once"}`
	benchRuleMonthly = `{"id": "monthly-4", "title": "4 verified mentor conversations in a month",
		"count": "conversations", "where": {"role": "mentor"}, "at_least": 4,
		"award": {"amount": "10.00", "kind": "microgrant"}, "repeat": "monthly", "cap": {"awards": 12, "per": "term"}}`
	benchRuleResourced = `{"id": "resourced-10", "title": "10 well-resourced conversations",
		"count": "well_resourced_conversations", "at_least": 10,
		"award": {"amount": "5.00", "kind": "microgrant"}, "repeat": "each", "cap": {"awards": 3, "per": "month"}}`
)

var benchNetKeys atomic.Int64

// benchNetKey is a fresh idempotency key (each benchmark has a database of its own).
func benchNetKey(kind string) string { return fmt.Sprintf("bench/%s/%d", kind, benchNetKeys.Add(1)) }

// benchNetProgress prints set-up steps as they happen.
func benchNetProgress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// benchNetFixture is Tandem assembled on a database of its own, with one program.
type benchNetFixture struct {
	ctx     context.Context
	pool    *pgxpool.Pool
	app     *app.App
	net     *network.Store
	termBeg time.Time // the program's first day
}

// benchNetParticipant is an enrolled participant with consent, and their connection with a
// mentor of their own (who has consent too).
type benchNetParticipant struct {
	ID   string
	Conn string
	By   network.By
}

// benchNetSetup assembles Tandem (River not started) with Workers River workers, creates
// the program (a term from 330 days ago to 30 days ahead, so every date used is in it),
// funds it generously and saves rules before anyone is enrolled.
func benchNetSetup(b *testing.B, workers int, rules ...string) *benchNetFixture {
	b.Helper()
	ctx := context.Background()
	pool := dbtest.New(b, dbtest.Options{MaxConns: 40})
	a, err := app.New(pool, app.Config{Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	})
	now := time.Now().UTC()
	f := &benchNetFixture{ctx: ctx, pool: pool, app: a, net: a.Network, termBeg: now.AddDate(0, 0, -330).Truncate(24 * time.Hour)}
	if _, err := f.net.CreateProgram(ctx, admin, network.NewProgram{ID: benchNetProgram, Name: "Bench", Currency: "USD",
		StartsOn: f.termBeg.Format(time.DateOnly), EndsOn: now.AddDate(0, 0, 30).Format(time.DateOnly), AutoApproveLimit: "100.00"}); err != nil {
		b.Fatal(err)
	}
	if _, err := f.net.Fund(ctx, admin, benchNetProgram, "10000000.00", "bench-fund"); err != nil {
		b.Fatal(err)
	}
	for _, r := range rules {
		if _, _, err := f.net.SaveRule(ctx, admin, benchNetProgram, []byte(r)); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

// benchNetParallel runs fn(0..n-1) on workers goroutines and returns the first error.
func benchNetParallel(n, workers int, fn func(i int) error) error {
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		failed   atomic.Bool
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// benchNetEnrol records n participants named prefix0000…, each with a mentor of their own:
// both people, both consents, the enrolment and the mentor connection, through the Store
// (six transactions a participant), 16 at a time.
func benchNetEnrol(b *testing.B, f *benchNetFixture, prefix string, n int) []benchNetParticipant {
	b.Helper()
	start := time.Now()
	out := make([]benchNetParticipant, n)
	started := f.termBeg.Format(time.DateOnly)
	err := benchNetParallel(n, benchNetClients, func(i int) error {
		ctx := f.ctx
		p := fmt.Sprintf("%s%04d", prefix, i)
		m := p + "-mentor"
		for _, np := range []network.NewPerson{
			{ID: p, Name: "Participant " + p, Roles: []string{"participant"}},
			{ID: m, Name: "Mentor of " + p, Roles: []string{"mentor"}},
		} {
			if _, err := f.net.AddPerson(ctx, admin, np); err != nil {
				return err
			}
			if _, err := f.net.RecordConsent(ctx, admin, np.ID, network.NewConsent{Given: true, SignedBy: np.Name,
				SignedOn: started, Scope: "network facts for the bench program"}); err != nil {
				return err
			}
		}
		if _, err := f.net.Enrol(ctx, admin, benchNetProgram, p, ""); err != nil {
			return err
		}
		c, err := f.net.Connect(ctx, admin, network.NewConnection{ParticipantID: p, OtherID: m, Role: "mentor", Origin: "matched", StartedOn: started})
		if err != nil {
			return err
		}
		out[i] = benchNetParticipant{ID: p, Conn: c.ID,
			By: network.By{Principal: access.Principal{Name: p + "-token", Role: access.Participant, PersonID: p}}}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	benchNetProgress("%s: enrolled %d participants %s* with consent and a mentor connection in %v", b.Name(), n, prefix,
		time.Since(start).Round(time.Millisecond))
	return out
}

// benchNetLog logs a conversation on p's connection: by the participant, unverified, or
// verified as it is logged (by an admin, as a coach would).
func benchNetLog(ctx context.Context, f *benchNetFixture, p benchNetParticipant, verified bool, at time.Time) (network.Conversation, error) {
	by := p.By
	if verified {
		by = admin
	}
	return f.net.LogConversation(ctx, by, network.NewConversation{ConnectionID: p.Conn, OccurredAt: at, Channel: "video",
		Minutes: 30, Resources: []string{"advice"}, Verified: verified, IdempotencyKey: benchNetKey(p.ID)})
}

// benchNetAnalyze refreshes the planner's statistics after a bulk set-up.
func benchNetAnalyze(b *testing.B, f *benchNetFixture) {
	b.Helper()
	if _, err := f.pool.Exec(f.ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
}

// benchNetQueued counts River jobs not yet finished.
func benchNetQueued(ctx context.Context, f *benchNetFixture) (int, error) {
	var n int
	err := f.pool.QueryRow(ctx, `SELECT count(*) FROM river_job
		WHERE state IN ('available', 'pending', 'running', 'retryable', 'scheduled')`).Scan(&n)
	return n, err
}

// benchNetDrain waits until River has run every job (River must be started).
func benchNetDrain(b *testing.B, f *benchNetFixture) {
	b.Helper()
	start := time.Now()
	for {
		n, err := benchNetQueued(f.ctx, f)
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Since(start) > 2*time.Minute {
			b.Fatalf("%d River jobs still queued after %v", n, time.Since(start).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
	benchNetJobErrors(b, f)
	benchNetProgress("%s: River queue drained in %v", b.Name(), time.Since(start).Round(time.Millisecond))
}

// benchNetJobErrors fails the benchmark if a River job failed, was retried or cancelled,
// with the first error recorded.
func benchNetJobErrors(b *testing.B, f *benchNetFixture) {
	b.Helper()
	var n int
	var first *string
	if err := f.pool.QueryRow(f.ctx, `SELECT count(*), min(kind || ': ' || (errors[1]->>'error'))
		FROM river_job WHERE state IN ('discarded', 'cancelled') OR errors IS NOT NULL`).Scan(&n, &first); err != nil {
		b.Fatal(err)
	}
	if n > 0 {
		msg := ""
		if first != nil {
			msg = *first
		}
		b.Fatalf("%d River jobs failed, were retried or cancelled; first error: %s", n, msg)
	}
}

// benchNetReport sets the metrics: the rate in unit, p50 and p99 of lats; ns/op is dropped
// (an op is not always one call).
func benchNetReport(b *testing.B, rate float64, unit string, lats []time.Duration) {
	slices.Sort(lats)
	b.ReportMetric(rate, unit)
	b.ReportMetric(benchNetMillis(benchNetPercentile(lats, 0.50)), "p50-ms")
	b.ReportMetric(benchNetMillis(benchNetPercentile(lats, 0.99)), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// benchNetPercentile of sorted durations, nearest rank.
func benchNetPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func benchNetMillis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkNetworkIngest is (e): 16 clients log conversations (each LogConversation its own
// transaction: share lock of the protocol, the row, its evaluate_milestones job, the audit
// line) for random ones of 500 participants. River is not started, so no evaluation competes
// for the two CPUs: this is the ingest path alone. Every fact of a participant asks for the
// same job (same generation), so after the first, the job insert is River's unique-conflict
// path. One op is one fact.
// benchIngestBatch is the size of a batch in BenchmarkNetworkIngest/batch (its latencies
// are per batch).
const benchIngestBatch = 500

func BenchmarkNetworkIngest(b *testing.B) {
	f := benchNetSetup(b, 0, benchRuleMentor4)
	ps := benchNetEnrol(b, f, "p", benchIngestPeople)
	benchNetAnalyze(b, f)
	var logged atomic.Int64
	b.Run(fmt.Sprintf("clients=%d", benchNetClients), func(b *testing.B) {
		var (
			next     atomic.Int64
			failed   atomic.Bool
			errOnce  sync.Once
			firstErr error
			wg       sync.WaitGroup
			lats     = make([][]time.Duration, benchNetClients)
		)
		b.ResetTimer()
		start := time.Now()
		for c := range benchNetClients {
			wg.Go(func() {
				rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(c)))
				for !failed.Load() && next.Add(1) <= int64(b.N) {
					p := ps[rng.IntN(len(ps))]
					at := time.Now().Add(-time.Duration(rng.IntN(30*24*60)) * time.Minute)
					t0 := time.Now()
					_, err := benchNetLog(f.ctx, f, p, false, at)
					lats[c] = append(lats[c], time.Since(t0))
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						failed.Store(true)
						continue
					}
					logged.Add(1)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		if firstErr != nil {
			b.Fatal(firstErr)
		}
		benchNetReport(b, float64(b.N)/elapsed.Seconds(), "facts/s", slices.Concat(lats...))
	})
	// The import path: an integration sends conversations in batches (POST
	// /v1/conversations/batch), one transaction and one evaluation job per participant.
	b.Run(fmt.Sprintf("batch=%d/clients=4", benchIngestBatch), func(b *testing.B) {
		var (
			next     atomic.Int64
			errOnce  sync.Once
			firstErr error
			wg       sync.WaitGroup
			lats     = make([][]time.Duration, 4)
		)
		b.ResetTimer()
		start := time.Now()
		for c := range 4 {
			wg.Go(func() {
				rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(c)))
				for firstErr == nil {
					from := next.Add(benchIngestBatch) - benchIngestBatch
					if from >= int64(b.N) {
						return
					}
					size := min(int64(benchIngestBatch), int64(b.N)-from)
					batch := make([]network.NewConversation, size)
					for i := range batch {
						p := ps[rng.IntN(len(ps))]
						batch[i] = network.NewConversation{ConnectionID: p.Conn, Channel: "video", Minutes: 30,
							OccurredAt: time.Now().Add(-time.Duration(rng.IntN(30*24*60)) * time.Minute),
							Resources:  []string{"advice"}, IdempotencyKey: benchNetKey(p.ID)}
					}
					t0 := time.Now()
					_, err := f.net.LogConversations(f.ctx, admin, batch)
					lats[c] = append(lats[c], time.Since(t0))
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
					logged.Add(size)
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		b.StopTimer()
		if firstErr != nil {
			b.Fatal(firstErr)
		}
		benchNetReport(b, float64(b.N)/elapsed.Seconds(), "facts/s", slices.Concat(lats...))
	})
	var convs, jobs, updates int64
	time.Sleep(time.Second) // the other connections' statistics reach pg_stat within a second
	if err := f.pool.QueryRow(f.ctx, `SELECT (SELECT count(*) FROM network_conversations),
		(SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones' AND state = 'available'),
		(SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'river_job')`).Scan(&convs, &jobs, &updates); err != nil {
		b.Fatal(err)
	}
	if convs != logged.Load() {
		b.Fatalf("%d conversations recorded, %d logged", convs, logged.Load())
	}
	// A fact whose participant already has a job waiting goes through River's unique insert
	// ON CONFLICT DO UPDATE: a new version of the job row, locked until the fact commits.
	benchNetProgress("%s: %d conversations logged; %d evaluate_milestones jobs waiting (River not started); river_job rows updated by duplicate inserts: %d",
		b.Name(), convs, jobs, updates)
}

// benchF2ARound is what one round of BenchmarkNetworkFactToAward measured.
type benchF2ARound struct {
	db, seen  []time.Duration // fact-to-award by the database's clock, and as seen by the poller
	loadFacts int64           // background facts completed while the load ran
	loadTime  time.Duration
	loadLats  []time.Duration
	maxQueue  int   // most River jobs waiting at one sample
	evals     int64 // evaluate_milestones jobs completed while the load ran
}

// benchNetEvalsDone counts the evaluate_milestones jobs River has completed.
func benchNetEvalsDone(b *testing.B, f *benchNetFixture) int64 {
	b.Helper()
	var n int64
	if err := f.pool.QueryRow(f.ctx, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones' AND state = 'completed'`).
		Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// benchF2ALoad sends background facts at benchF2ALoadRate until stop is closed: unverified
// conversations on random load participants, each asking for an evaluation that finds
// nothing. A dispatcher tops the sent count up to rate × elapsed every 5 ms; the clients
// take from a small buffer, so a load the machine cannot keep up with shows as a lower
// achieved rate, not as a burst later.
func benchF2ALoad(f *benchNetFixture, load []benchNetParticipant, stop <-chan struct{}, r *benchF2ARound) (wait func() error) {
	var (
		wg       sync.WaitGroup
		done     atomic.Int64
		errOnce  sync.Once
		firstErr error
		mu       sync.Mutex
		work     = make(chan struct{}, benchF2ALoadRate/5) // up to 200 ms behind
	)
	start := time.Now()
	wg.Go(func() {
		defer close(work)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var sent int64
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			due := int64(time.Since(start).Seconds()*benchF2ALoadRate) - sent
			for ; due > 0; due-- {
				select {
				case work <- struct{}{}:
					sent++
				default:
					sent += due // the clients are behind: these facts are not sent
					due = 0
				}
			}
		}
	})
	for c := range benchF2ALoadClients {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(c)+100))
			var lats []time.Duration
			for range work {
				p := load[rng.IntN(len(load))]
				t0 := time.Now()
				_, err := benchNetLog(f.ctx, f, p, false, time.Now().Add(-time.Duration(rng.IntN(30*24*60))*time.Minute))
				lats = append(lats, time.Since(t0))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				select {
				case <-stop:
				default:
					done.Add(1)
				}
			}
			mu.Lock()
			r.loadLats = append(r.loadLats, lats...)
			mu.Unlock()
		})
	}
	return func() error {
		<-stop
		r.loadTime = time.Since(start)
		r.loadFacts = done.Load()
		wg.Wait()
		return firstErr
	}
}

// benchF2ARun runs one round: the background load, then a completing verified conversation
// for each target every benchF2AInterval, until every award has appeared.
func benchF2ARun(b *testing.B, f *benchNetFixture, load, targets []benchNetParticipant) benchF2ARound {
	b.Helper()
	ctx := f.ctx
	var r benchF2ARound
	evals0 := benchNetEvalsDone(b, f)
	stop := make(chan struct{})
	waitLoad := benchF2ALoad(f, load, stop, &r)
	stopOnce := sync.OnceFunc(func() { close(stop) })
	defer stopOnce()
	time.Sleep(benchF2AWarmUp)

	type pending struct {
		key        string
		returned   time.Time
		recordedAt time.Time
	}
	var (
		mu      sync.Mutex
		waiting = map[string]pending{}
		seen    = map[string]time.Duration{}
		pollErr error
		polled  = make(chan struct{})
	)
	// The poller: every 5 ms, which of the awards waited for exist; every 500 ms, how many
	// jobs River has waiting.
	go func() {
		defer close(polled)
		var err error
		defer func() {
			mu.Lock()
			pollErr = err
			mu.Unlock()
		}()
		tick := time.NewTicker(benchF2APoll)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			keys := make([]string, 0, len(waiting))
			for k := range waiting {
				keys = append(keys, k)
			}
			mu.Unlock()
			if i%100 == 0 {
				var n int
				if n, err = benchNetQueued(ctx, f); err != nil {
					return
				}
				r.maxQueue = max(r.maxQueue, n)
			}
			if len(keys) == 0 {
				continue
			}
			rows, qerr := f.pool.Query(ctx, `SELECT award_key FROM network_awards WHERE award_key = ANY($1)`, keys)
			if qerr != nil {
				err = qerr
				return
			}
			var found []string
			if found, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			for _, k := range found {
				seen[k] = now.Sub(waiting[k].returned)
				delete(waiting, k)
			}
			mu.Unlock()
		}
	}()

	all := make([]pending, 0, len(targets))
	start := time.Now()
	for i, p := range targets {
		time.Sleep(time.Until(start.Add(time.Duration(i) * benchF2AInterval)))
		cv, err := benchNetLog(ctx, f, p, true, time.Now().Add(-time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		pd := pending{key: network.AwardKey(benchNetProgram, p.ID, "mentor-4", "once"), returned: time.Now(), recordedAt: cv.RecordedAt}
		mu.Lock()
		waiting[pd.key] = pd
		mu.Unlock()
		all = append(all, pd)
	}
	deadline := time.Now().Add(benchF2ATimeout)
	for {
		mu.Lock()
		left, failed := len(waiting), pollErr != nil
		mu.Unlock()
		if left == 0 || failed {
			break
		}
		if time.Now().After(deadline) {
			stopOnce()
			_ = waitLoad()
			b.Fatalf("%d of %d awards missing %v after the last completing conversation", left, len(targets), benchF2ATimeout)
		}
		time.Sleep(benchF2APoll)
	}
	stopOnce()
	r.evals = benchNetEvalsDone(b, f) - evals0
	<-polled
	if err := errors.Join(waitLoad(), pollErr); err != nil {
		b.Fatal(err)
	}

	keys := make([]string, len(all))
	for i, pd := range all {
		keys[i] = pd.key
	}
	created := map[string]time.Time{}
	rows, err := f.pool.Query(ctx, `SELECT award_key, created_at FROM network_awards WHERE award_key = ANY($1)`, keys)
	if err != nil {
		b.Fatal(err)
	}
	var k string
	var at time.Time
	for rows.Next() {
		if err := rows.Scan(&k, &at); err != nil {
			b.Fatal(err)
		}
		created[k] = at
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	for _, pd := range all {
		r.db = append(r.db, created[pd.key].Sub(pd.recordedAt))
		r.seen = append(r.seen, seen[pd.key])
	}
	benchNetJobErrors(b, f)
	// Where the time went: the completing facts' evaluation jobs, waiting in River's queue and
	// running.
	ids := make([]string, len(targets))
	for i, p := range targets {
		ids[i] = p.ID
	}
	var wait50, wait99, run50, run99 float64
	if err := f.pool.QueryRow(ctx, `SELECT
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM attempted_at - created_at)) * 1000,
			percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM attempted_at - created_at)) * 1000,
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finalized_at - attempted_at)) * 1000,
			percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finalized_at - attempted_at)) * 1000
		FROM river_job WHERE kind = 'evaluate_milestones' AND args->>'participant' = ANY($1) AND created_at >= $2`,
		ids, all[0].recordedAt).Scan(&wait50, &wait99, &run50, &run99); err != nil {
		b.Fatal(err)
	}
	benchNetProgress("%s: completing facts' evaluation jobs: queued p50 %.0f ms, p99 %.0f ms; ran p50 %.0f ms, p99 %.0f ms",
		b.Name(), wait50, wait99, run50, run99)
	return r
}

// BenchmarkNetworkFactToAward is (f): River started with 20 workers; 500 background facts/s
// on 500 participants (unverified conversations: each asks for an evaluation, which finds
// nothing), and meanwhile one of 200 participants with three verified mentor conversations
// logs, every 40 ms, the verified fourth that completes mentor-4. For each, the time from the
// conversation (recorded_at) to its award (created_at), by the database's clock; seen-p*-ms
// is the same from the Go side (LogConversation returned → a 5 ms poller saw the award row).
// facts/s is the background rate achieved, evals/s the evaluate_milestones jobs River
// completed meanwhile. One op is one round of 200 completions (a round after the first enrols
// 200 fresh participants first, timer stopped).
//
// Reading it: River fetches at most once per FetchCooldown (100 ms by default) and then only
// as many jobs as it has free workers, so one client runs at most MaxWorkers jobs per 100 ms
// (200 evaluations/s with 20 workers, however short they are). Facts of a participant whose
// evaluation is still queued share its job, so under a sustained load the queue holds about
// one job per participant with recent facts, and a completing fact waits about that many
// jobs divided by evals/s. The "queued"/"ran" set-up line splits the latency that way.
func BenchmarkNetworkFactToAward(b *testing.B) {
	f := benchNetSetup(b, benchF2AWorkers, benchRuleMentor4)
	load := benchNetEnrol(b, f, "load", benchF2ALoadPeople)
	batch := 0
	prepare := func(b *testing.B) []benchNetParticipant {
		ps := benchNetEnrol(b, f, fmt.Sprintf("t%d-", batch), benchF2ATargets)
		batch++
		start := time.Now()
		if err := benchNetParallel(len(ps)*3, benchNetClients, func(i int) error {
			_, err := benchNetLog(f.ctx, f, ps[i/3], true, time.Now().Add(-time.Duration(i%3+2)*24*time.Hour))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		benchNetProgress("%s: 3 verified mentor conversations for each of %d participants in %v", b.Name(), len(ps),
			time.Since(start).Round(time.Millisecond))
		return ps
	}
	next := prepare(b)
	if err := f.app.Start(f.ctx); err != nil {
		b.Fatal(err)
	}
	benchNetDrain(b, f)
	benchNetAnalyze(b, f)
	b.Run(fmt.Sprintf("participants=%d/load=%d", benchF2ATargets, benchF2ALoadRate), func(b *testing.B) {
		var db, seen, loadLats []time.Duration
		var loadFacts, evals int64
		var loadTime time.Duration
		b.ResetTimer()
		for range b.N {
			if next == nil {
				b.StopTimer()
				next = prepare(b)
				benchNetDrain(b, f)
				b.StartTimer()
			}
			r := benchF2ARun(b, f, load, next)
			next = nil
			db, seen, loadLats = append(db, r.db...), append(seen, r.seen...), append(loadLats, r.loadLats...)
			loadFacts += r.loadFacts
			evals += r.evals
			loadTime += r.loadTime
			slices.Sort(r.loadLats)
			benchNetProgress("%s: round: %d background facts in %v (%.0f/s, p99 %.1f ms); %d evaluations (%.0f/s); at most %d River jobs waiting",
				b.Name(), r.loadFacts, r.loadTime.Round(time.Millisecond), float64(r.loadFacts)/r.loadTime.Seconds(),
				benchNetMillis(benchNetPercentile(r.loadLats, 0.99)), r.evals, float64(r.evals)/r.loadTime.Seconds(), r.maxQueue)
		}
		b.StopTimer()
		benchNetReport(b, float64(loadFacts)/loadTime.Seconds(), "facts/s", db)
		slices.Sort(seen)
		b.ReportMetric(benchNetMillis(benchNetPercentile(seen, 0.50)), "seen-p50-ms")
		b.ReportMetric(benchNetMillis(benchNetPercentile(seen, 0.99)), "seen-p99-ms")
		b.ReportMetric(benchNetMillis(slices.Max(db)), "max-ms")
		b.ReportMetric(float64(evals)/loadTime.Seconds(), "evals/s")
	})
}

// benchEvalLoad gives each participant benchEvalConversations conversations on their mentor
// connection by SQL (the set-up only: the insert triggers still check consent and
// retraction), spread evenly from the program's first day to an hour ago, in four channels
// and lengths; a third carry advice; three in four are verified, and one in 50 of those is
// then retracted.
func benchEvalLoad(b *testing.B, f *benchNetFixture, ps []benchNetParticipant) {
	b.Helper()
	start := time.Now()
	from := f.termBeg.Add(time.Hour)
	step := time.Now().Add(-time.Hour).Sub(from) / benchEvalConversations
	for _, p := range ps {
		if _, err := f.pool.Exec(f.ctx, `WITH v AS (
				INSERT INTO network_conversations (id, connection_id, occurred_at, channel, minutes, resources, reported_by)
				SELECT gen_random_uuid(), $1, $2::timestamptz + g * $3::interval,
					(ARRAY['in_person', 'video', 'phone', 'message'])[1 + g % 4], 15 + (g % 4) * 15,
					CASE WHEN g % 3 = 0 THEN ARRAY['advice'] ELSE '{}'::text[] END, 'bench:set-up'
				FROM generate_series(0, $4::int - 1) g
				RETURNING id, minutes)
			INSERT INTO network_reviews (conversation_id, action, reviewed_by, reason)
			SELECT id, 'verify', 'bench:set-up', 'set-up' FROM v WHERE minutes <> 60`,
			p.Conn, from, step, benchEvalConversations); err != nil {
			b.Fatal(err)
		}
		if _, err := f.pool.Exec(f.ctx, `INSERT INTO network_reviews (conversation_id, action, reviewed_by, reason)
			SELECT id, 'retract', 'bench:set-up', 'set-up' FROM (
				SELECT id, row_number() OVER (ORDER BY occurred_at) AS n FROM network_conversations
				WHERE connection_id = $1 AND minutes <> 60) c
			WHERE n % 50 = 0`, p.Conn); err != nil {
			b.Fatal(err)
		}
	}
	benchNetProgress("%s: %d conversations for each of %d participants in %v", b.Name(), benchEvalConversations, len(ps),
		time.Since(start).Round(time.Millisecond))
}

// BenchmarkNetworkEvaluate is (g): EvaluateParticipant, one call at a time, on 20
// participants with 1,000 conversations each and three rules (mentor-4 once, monthly-4,
// resourced-10 each with a monthly cap), called in turn. The first evaluation of each, which
// makes its 33 awards (1 mentor-4, 11 monthly-4, 21 resourced-10), runs in the set-up and is
// printed; the benchmark measures the evaluations after it, which load and evaluate every
// fact and find every award made: the steady-state cost. One op is one evaluation.
func BenchmarkNetworkEvaluate(b *testing.B) {
	f := benchNetSetup(b, 0, benchRuleMentor4, benchRuleMonthly, benchRuleResourced)
	ps := benchNetEnrol(b, f, "e", benchEvalPeople)
	benchEvalLoad(b, f, ps)
	benchNetAnalyze(b, f)
	var first []time.Duration
	awards := 0
	for _, p := range ps {
		t0 := time.Now()
		res, err := f.net.EvaluateParticipant(f.ctx, p.ID)
		first = append(first, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if res.Awarded == 0 || res.Waiting > 0 {
			b.Fatalf("first evaluation of %s: %+v, want awards paid", p.ID, res)
		}
		awards += res.Awarded
	}
	slices.Sort(first)
	benchNetProgress("%s: first evaluations made %d awards (%d each): p50 %.1f ms, max %.1f ms", b.Name(), awards, awards/len(ps),
		benchNetMillis(benchNetPercentile(first, 0.5)), benchNetMillis(first[len(first)-1]))
	benchNetAnalyze(b, f)
	b.Run(fmt.Sprintf("conversations=%d", benchEvalConversations), func(b *testing.B) {
		lats := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		start := time.Now()
		for i := range b.N {
			t0 := time.Now()
			res, err := f.net.EvaluateParticipant(f.ctx, ps[i%len(ps)].ID)
			lats = append(lats, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if res != (network.EvalResult{}) {
				b.Fatalf("evaluation of %s found something new: %+v", ps[i%len(ps)].ID, res)
			}
		}
		elapsed := time.Since(start)
		b.StopTimer()
		benchNetReport(b, float64(b.N)/elapsed.Seconds(), "evaluations/s", lats)
	})
}
