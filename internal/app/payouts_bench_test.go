package app_test

// Payout benchmarks, rows (h), (i) and (j) of scripts/bench.sh. Like the network's
// (bench_test.go, whose fixture and helpers they reuse), each top-level benchmark gets a
// database of its own, builds its fixture once through the Store APIs and measures in
// sub-benchmarks; set-up lines start with "bench:" and ns/op is dropped.
//
// One op is one round: a round's disbursements are made with the timer stopped (manual
// disbursements of an admin, Store.Create, 16 at a time, spread over 200 participants
// enrolled with consent), then the round is timed.
//
//   - BenchmarkPayoutsSubmit/sandbox/river/workers=W, (h): a round of 2,000 disbursements
//     within the auto-approve limit, approved at once, whose submit jobs wait while River is
//     not started; then a fresh App with W River workers is started and the round is timed
//     from Start until every one is paid (a 20 ms poller). payouts/s is over that time, River's
//     start included; steady-payouts/s is by the database's clock, from the first attempt
//     opened to the last payout sent (River's start left out); p50-ms/p99-ms are the submit
//     jobs' run times (River's attempted_at → finalized_at); start-ms is Start → the first
//     attempt opened.
//   - BenchmarkPayoutsSubmit/sandbox/direct/goroutines=K: the submission path alone, no
//     River: K goroutines call Store.Submit on a round's disbursements. p50-ms/p99-ms are
//     Submit's latency. The round's submit jobs, never run, are deleted afterwards.
//   - BenchmarkPayoutsSubmit/stripe/…, (i): the same through stripe-mock (STRIPE_MOCK_URL,
//     set by bin/stripemock; skipped without it), each participant with a Stripe destination
//     (acct_…). stripe-mock sends no webhooks: a payout counts once its attempt has Stripe's
//     transfer id (the Stripe provider also takes a created transfer as paid).
//   - BenchmarkPayoutsApprove/sandbox, (j): River started (20 workers); a round of 200
//     disbursements of 200.00 (above the auto-approve limit of 100.00, below the default
//     dual-control threshold of 500.00: one approval) requested by one admin, approved one
//     at a time by another, one every 200 ms (or once the previous one is paid, if later).
//     p50-ms/p99-ms are Store.Approve's latency; paid-p50-ms/paid-p99-ms the time from the
//     approval to the payout by the database's clock (the approved transition's at → the
//     paid transition's at), seen-p50-ms/seen-p99-ms from Approve's return to a 5 ms poller
//     seeing it paid.
//
//     Why 200 ms apart: River sends the insert notification that wakes the workers at most
//     once per 100 ms per queue and process (jobs.NewInserter's River client has the default
//     FetchCooldown), so a submit job inserted within 100 ms of another job insert of the
//     process waits for River's next poll (FetchPollInterval, 1 s). Approving back to back
//     (each as soon as the previous one is paid, ~70 ms) shows it: every other approval took
//     about 1 s to be paid.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

const (
	benchPayPeople   = 200     // participants paid, in turn
	benchPayRound    = 2000    // disbursements submitted per round
	benchPayAmount   = "25.00" // within the program's auto-approve limit (100.00)
	benchPayDirect   = 20      // goroutines calling Store.Submit in the direct sub-benchmarks
	benchPayPoll     = 20 * time.Millisecond
	benchPayTimeout  = 5 * time.Minute // a round must be done within this
	benchPayMaxConns = 80              // pool: 50 River workers, River's own connections, the poller

	benchApproveRound   = 200
	benchApproveAmount  = "200.00" // one approval: above 100.00, below the 500.00 dual-control default
	benchApproveWorkers = 20
	benchApproveEvery   = 200 * time.Millisecond // an admin working through a queue, fast
)

// benchPayWorkers are the River MaxWorkers the submit rounds run with.
var benchPayWorkers = []int{20, 50}

// benchPayApprover approves what admin requested: another admin, a person.
var benchPayApprover = network.By{Principal: access.Principal{Name: "bench-admin-2", Role: access.Admin, PersonID: "adm2"}}

// benchPayFixture is the network fixture with participants to pay.
type benchPayFixture struct {
	*benchNetFixture
	people []benchNetParticipant
	next   int // the participant the next disbursement goes to
}

// benchPaySetup assembles Tandem on a database of its own (River not started), with the
// network benchmarks' program (auto-approve limit 100.00, a fund of 10,000,000.00) and
// benchPayPeople participants with consent.
func benchPaySetup(b *testing.B) *benchPayFixture {
	b.Helper()
	ctx := context.Background()
	pool := dbtest.New(b, dbtest.Options{MaxConns: benchPayMaxConns})
	a, err := app.New(pool, app.Config{})
	if err != nil {
		b.Fatal(err)
	}
	adminTokens(b, a)
	b.Cleanup(func() { benchPayStop(a) })
	now := time.Now().UTC()
	f := &benchNetFixture{ctx: ctx, pool: pool, app: a, net: a.Network, termBeg: now.AddDate(0, 0, -330).Truncate(24 * time.Hour)}
	if _, err := f.net.CreateProgram(ctx, admin, network.NewProgram{ID: benchNetProgram, Name: "Bench", Currency: "USD",
		StartsOn: f.termBeg.Format(time.DateOnly), EndsOn: now.AddDate(0, 0, 30).Format(time.DateOnly), AutoApproveLimit: "100.00"}); err != nil {
		b.Fatal(err)
	}
	if _, err := f.net.Fund(ctx, admin, benchNetProgram, "10000000.00", "bench-fund"); err != nil {
		b.Fatal(err)
	}
	return &benchPayFixture{benchNetFixture: f, people: benchNetEnrol(b, f, "pay", benchPayPeople)}
}

// benchPayStop stops an App (started or not).
func benchPayStop(a *app.App) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = a.Stop(ctx)
}

// benchPayCreate makes n manual disbursements of amount, requested by admin through
// Store.Create (16 at a time), to the participants in turn; each must come out in state want.
func benchPayCreate(b *testing.B, f *benchPayFixture, n int, amount, want string) []string {
	b.Helper()
	start := time.Now()
	ids := make([]string, n)
	first := f.next
	f.next += n
	err := benchNetParallel(n, benchNetClients, func(i int) error {
		p := f.people[(first+i)%len(f.people)]
		d, err := f.app.Payouts.Create(f.ctx, admin, payouts.NewDisbursement{Program: benchNetProgram, Person: p.ID, Amount: amount,
			Reason: "bench payout", IdempotencyKey: benchNetKey("payout")})
		if err != nil {
			return err
		}
		if d.State != want {
			return fmt.Errorf("disbursement %s of %s is %s, want %s", d.ID, amount, d.State, want)
		}
		ids[i] = d.ID
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	benchNetProgress("%s: %d disbursements of %s made (%s) in %v", b.Name(), n, amount, want, time.Since(start).Round(time.Millisecond))
	return ids
}

// benchPayRemaining counts the disbursements not yet sent: approved, or submitted without a
// provider reference.
func benchPayRemaining(ctx context.Context, f *benchPayFixture) (int, error) {
	var n int
	err := f.pool.QueryRow(ctx, `SELECT count(*) FROM payouts_disbursements d WHERE d.state = 'approved'
		OR (d.state = 'submitted' AND NOT EXISTS (SELECT 1 FROM payouts_attempts a WHERE a.disbursement_id = d.id AND a.provider_ref IS NOT NULL))`).
		Scan(&n)
	return n, err
}

// benchPayCheck fails the benchmark unless every disbursement of ids was sent through
// provider (one attempt with a reference) and is paid.
func benchPayCheck(b *testing.B, f *benchPayFixture, ids []string, provider string) {
	b.Helper()
	var total, ok int
	var states string
	if err := f.pool.QueryRow(f.ctx, `SELECT count(*), count(*) FILTER (WHERE d.state = 'paid' AND a.provider = $2 AND a.provider_ref IS NOT NULL),
			coalesce(string_agg(DISTINCT d.state, ', '), '')
		FROM payouts_disbursements d LEFT JOIN payouts_attempts a ON a.disbursement_id = d.id WHERE d.id = ANY($1::uuid[])`,
		ids, provider).Scan(&total, &ok, &states); err != nil {
		b.Fatal(err)
	}
	if total != len(ids) || ok != len(ids) {
		b.Fatalf("%d of %d disbursements paid through %s with a reference (%d rows; states: %s)", ok, len(ids), provider, total, states)
	}
}

// benchPayRiverRound is what a River round measured.
type benchPayRiverRound struct {
	elapsed time.Duration   // Start → every payout sent (Go clock)
	start   time.Duration   // Start → the first attempt opened
	steady  time.Duration   // the first attempt opened → the last payout sent (database clock)
	runs    []time.Duration // the round's submit jobs' run times (attempted_at → finalized_at)
}

// benchPayRiver starts a fresh App (cfg) on the fixture's database, whose River finds the
// round's submit jobs waiting, and returns when every payout of ids is sent.
func benchPayRiver(b *testing.B, f *benchPayFixture, cfg app.Config, ids []string) benchPayRiverRound {
	b.Helper()
	ctx := f.ctx
	a, err := app.New(f.pool, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer benchPayStop(a)
	var r benchPayRiverRound
	started := time.Now()
	if err := a.Start(ctx); err != nil {
		b.Fatal(err)
	}
	for {
		n, err := benchPayRemaining(ctx, f)
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Since(started) > benchPayTimeout {
			benchNetJobErrors(b, f.benchNetFixture)
			b.Fatalf("%d of %d payouts not sent %v after River started", n, len(ids), benchPayTimeout)
		}
		time.Sleep(benchPayPoll)
	}
	r.elapsed = time.Since(started)
	var first, last time.Time
	if err := f.pool.QueryRow(ctx, `SELECT min(submitted_at), max(sent_at) FROM payouts_attempts WHERE disbursement_id = ANY($1::uuid[])`,
		ids).Scan(&first, &last); err != nil {
		b.Fatal(err)
	}
	r.start, r.steady = first.Sub(started), last.Sub(first)
	// Wait for River's completer to record the last jobs before reading their times.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(benchPayPoll) {
		var running int
		if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'submit_payout' AND state <> 'completed'`).
			Scan(&running); err != nil {
			b.Fatal(err)
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			benchNetJobErrors(b, f.benchNetFixture)
			b.Fatalf("%d submit_payout jobs not completed 10 s after their payouts were sent", running)
		}
	}
	rows, err := f.pool.Query(ctx, `SELECT extract(epoch FROM finalized_at - attempted_at)
		FROM river_job WHERE kind = 'submit_payout' AND (args->>'disbursement') = ANY($1)`, ids)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var run float64
		if err := rows.Scan(&run); err != nil {
			b.Fatal(err)
		}
		r.runs = append(r.runs, time.Duration(run*float64(time.Second)))
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	if len(r.runs) != len(ids) {
		b.Fatalf("%d submit_payout jobs for %d disbursements", len(r.runs), len(ids))
	}
	benchNetJobErrors(b, f.benchNetFixture)
	return r
}

// benchPayRiverBench is a River sub-benchmark: per op, a round of benchPayRound approved
// disbursements (made with the timer stopped), then River started and the round timed.
func benchPayRiverBench(f *benchPayFixture, cfg app.Config, provider string) func(b *testing.B) {
	return func(b *testing.B) {
		var elapsed, steady, start time.Duration
		var runs []time.Duration
		for range b.N {
			b.StopTimer()
			ids := benchPayCreate(b, f, benchPayRound, benchPayAmount, payouts.Approved)
			benchNetAnalyze(b, f.benchNetFixture)
			b.StartTimer()
			r := benchPayRiver(b, f, cfg, ids)
			b.StopTimer()
			benchPayCheck(b, f, ids, provider)
			elapsed, steady, start = elapsed+r.elapsed, steady+r.steady, start+r.start
			runs = append(runs, r.runs...)
			slices.Sort(r.runs)
			benchNetProgress("%s: round: %d payouts in %v (%.0f/s) from River's Start; first attempt after %v, then %.0f/s; submit jobs ran p50 %.1f ms, p99 %.1f ms; load average %s",
				b.Name(), len(ids), r.elapsed.Round(time.Millisecond), float64(len(ids))/r.elapsed.Seconds(), r.start.Round(time.Millisecond),
				float64(len(ids))/r.steady.Seconds(), benchNetMillis(benchNetPercentile(r.runs, 0.5)),
				benchNetMillis(benchNetPercentile(r.runs, 0.99)), benchPayLoad())
		}
		n := float64(b.N * benchPayRound)
		benchNetReport(b, n/elapsed.Seconds(), "payouts/s", runs)
		b.ReportMetric(n/steady.Seconds(), "steady-payouts/s")
		b.ReportMetric(benchNetMillis(start)/float64(b.N), "start-ms")
	}
}

// benchPayDirectBench is a direct sub-benchmark: per op, a round of benchPayRound approved
// disbursements (made with the timer stopped), each then submitted by Store.Submit on s from
// benchPayDirect goroutines, no River.
func benchPayDirectBench(f *benchPayFixture, s *payouts.Store, provider string) func(b *testing.B) {
	return func(b *testing.B) {
		var elapsed time.Duration
		var lats []time.Duration
		for range b.N {
			b.StopTimer()
			ids := benchPayCreate(b, f, benchPayRound, benchPayAmount, payouts.Approved)
			benchNetAnalyze(b, f.benchNetFixture)
			round := make([]time.Duration, len(ids))
			b.StartTimer()
			start := time.Now()
			err := benchNetParallel(len(ids), benchPayDirect, func(i int) error {
				t0 := time.Now()
				err := s.Submit(f.ctx, uuid.MustParse(ids[i]))
				round[i] = time.Since(t0)
				return err
			})
			took := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			benchPayCheck(b, f, ids, provider)
			// The round's submit jobs were never run: gone, so that the next River round finds
			// only its own.
			if _, err := f.pool.Exec(f.ctx, `DELETE FROM river_job WHERE kind = 'submit_payout' AND state = 'available'`); err != nil {
				b.Fatal(err)
			}
			elapsed += took
			lats = append(lats, round...)
			slices.Sort(round)
			benchNetProgress("%s: round: %d payouts in %v (%.0f/s); Submit p50 %.1f ms, p99 %.1f ms; load average %s", b.Name(), len(ids),
				took.Round(time.Millisecond), float64(len(ids))/took.Seconds(), benchNetMillis(benchNetPercentile(round, 0.5)),
				benchNetMillis(benchNetPercentile(round, 0.99)), benchPayLoad())
		}
		benchNetReport(b, float64(b.N*benchPayRound)/elapsed.Seconds(), "payouts/s", lats)
	}
}

// BenchmarkPayoutsSubmit is (h) and (i): payouts submitted per second through the sandbox
// and through stripe-mock, by River (W workers, River started once a round is waiting) and
// by Store.Submit called directly from benchPayDirect goroutines.
func BenchmarkPayoutsSubmit(b *testing.B) {
	f := benchPaySetup(b)
	for _, w := range benchPayWorkers {
		b.Run(fmt.Sprintf("sandbox/river/workers=%d", w), benchPayRiverBench(f, app.Config{Workers: w}, "sandbox"))
	}
	b.Run(fmt.Sprintf("sandbox/direct/goroutines=%d", benchPayDirect), benchPayDirectBench(f, f.app.Payouts, "sandbox"))

	stripeURL := os.Getenv("STRIPE_MOCK_URL")
	stripeCfg := func(workers int) app.Config {
		return app.Config{Workers: workers, Payouts: app.Payouts{StripeSecretKey: "sk_test_x", StripeBaseURL: stripeURL}}
	}
	var stripe *payouts.Store // a Store paying through stripe-mock (its App never started)
	stripeReady := func(b *testing.B) bool {
		b.Helper()
		if stripeURL == "" {
			b.Skip("STRIPE_MOCK_URL is not set: run under bin/stripemock (make bench does)")
			return false
		}
		if stripe != nil {
			return true
		}
		a, err := app.New(f.pool, stripeCfg(0))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { benchPayStop(a) })
		start := time.Now()
		if err := benchNetParallel(len(f.people), benchNetClients, func(i int) error {
			_, err := a.Payouts.SetDestination(f.ctx, admin, f.people[i].ID, fmt.Sprintf("acct_bench%04d", i))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		benchNetProgress("%s: Stripe destinations (acct_…) set for %d participants in %v; stripe-mock at %s", b.Name(), len(f.people),
			time.Since(start).Round(time.Millisecond), stripeURL)
		stripe = a.Payouts
		return true
	}
	for _, w := range benchPayWorkers {
		b.Run(fmt.Sprintf("stripe/river/workers=%d", w), func(b *testing.B) {
			if stripeReady(b) {
				benchPayRiverBench(f, stripeCfg(w), "stripe")(b)
			}
		})
	}
	b.Run(fmt.Sprintf("stripe/direct/goroutines=%d", benchPayDirect), func(b *testing.B) {
		if stripeReady(b) {
			benchPayDirectBench(f, stripe, "stripe")(b)
		}
	})
}

// BenchmarkPayoutsApprove is (j): River started (20 workers); per op, a round of 200
// disbursements awaiting one approval (made with the timer stopped), approved one at a time
// by a second admin, one every 200 ms, each once the previous one is paid (so no backlog
// builds up): Store.Approve's latency, and approval → paid, by the database's clock
// (paid-p*-ms) and as seen by a 5 ms poller from Approve's return (seen-p*-ms).
func BenchmarkPayoutsApprove(b *testing.B) {
	f := benchPaySetup(b)
	a, err := app.New(f.pool, app.Config{Workers: benchApproveWorkers})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { benchPayStop(a) })
	if err := a.Start(f.ctx); err != nil {
		b.Fatal(err)
	}
	benchNetDrain(b, f.benchNetFixture) // River's jobs on start (ledger check, sweeps)
	b.Run(fmt.Sprintf("sandbox/approvals=%d", benchApproveRound), func(b *testing.B) {
		var lats, paid, seen []time.Duration
		var elapsed time.Duration
		for range b.N {
			b.StopTimer()
			ids := benchPayCreate(b, f, benchApproveRound, benchApproveAmount, payouts.AwaitingApproval)
			benchNetAnalyze(b, f.benchNetFixture)
			round := make([]time.Duration, len(ids))
			roundSeen := make([]time.Duration, len(ids))
			b.StartTimer()
			start := time.Now()
			for i, id := range ids {
				time.Sleep(time.Until(start.Add(time.Duration(i) * benchApproveEvery)))
				t0 := time.Now()
				d, err := approveSeen(f.ctx, a.Payouts, benchPayApprover, id, "bench approval")
				round[i] = time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				if d.State == payouts.AwaitingApproval {
					b.Fatalf("disbursement %s still awaiting approval after one", id)
				}
				t1 := time.Now()
				for {
					var state string
					if err := f.pool.QueryRow(f.ctx, `SELECT state FROM payouts_disbursements WHERE id = $1`, id).Scan(&state); err != nil {
						b.Fatal(err)
					}
					if state == payouts.Paid {
						break
					}
					if state != payouts.Approved && state != payouts.Submitted {
						b.Fatalf("disbursement %s is %s after its approval", id, state)
					}
					if time.Since(t1) > time.Minute {
						benchNetJobErrors(b, f.benchNetFixture)
						b.Fatalf("disbursement %s not paid a minute after its approval", id)
					}
					time.Sleep(5 * time.Millisecond)
				}
				roundSeen[i] = time.Since(t1)
			}
			took := time.Since(start)
			b.StopTimer()
			benchPayCheck(b, f, ids, "sandbox")
			benchNetJobErrors(b, f.benchNetFixture)
			rows, err := f.pool.Query(f.ctx, `SELECT extract(epoch FROM p.at - a.at) FROM payouts_transitions a
				JOIN payouts_transitions p ON p.disbursement_id = a.disbursement_id AND p.to_state = 'paid'
				WHERE a.to_state = 'approved' AND a.disbursement_id = ANY($1::uuid[])`, ids)
			if err != nil {
				b.Fatal(err)
			}
			var toPaid []time.Duration
			for rows.Next() {
				var s float64
				if err := rows.Scan(&s); err != nil {
					b.Fatal(err)
				}
				toPaid = append(toPaid, time.Duration(s*float64(time.Second)))
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			if len(toPaid) != len(ids) {
				b.Fatalf("%d approved → paid pairs for %d disbursements", len(toPaid), len(ids))
			}
			// Where approval → paid goes: waiting for River to fetch the submit job, and the job.
			var wait50, wait99, run50, run99 float64
			if err := f.pool.QueryRow(f.ctx, `SELECT
					percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM j.attempted_at - a.at)) * 1000,
					percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM j.attempted_at - a.at)) * 1000,
					percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM p.at - j.attempted_at)) * 1000,
					percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM p.at - j.attempted_at)) * 1000
				FROM payouts_transitions a
				JOIN payouts_transitions p ON p.disbursement_id = a.disbursement_id AND p.to_state = 'paid'
				JOIN river_job j ON j.kind = 'submit_payout' AND (j.args->>'disbursement')::uuid = a.disbursement_id
				WHERE a.to_state = 'approved' AND a.disbursement_id = ANY($1::uuid[])`, ids).Scan(&wait50, &wait99, &run50, &run99); err != nil {
				b.Fatal(err)
			}
			benchNetProgress("%s: approval → submit job started p50 %.0f ms, p99 %.0f ms; job started → paid p50 %.0f ms, p99 %.0f ms",
				b.Name(), wait50, wait99, run50, run99)
			elapsed += took
			lats, paid, seen = append(lats, round...), append(paid, toPaid...), append(seen, roundSeen...)
			slices.Sort(round)
			slices.Sort(toPaid)
			slices.Sort(roundSeen)
			benchNetProgress("%s: round: %d approvals, at most one every %v, each paid before the next, in %v: Approve p50 %.1f ms, p99 %.1f ms; approval → paid p50 %.0f ms, p99 %.0f ms (seen p50 %.0f ms, p99 %.0f ms); load average %s",
				b.Name(), len(ids), benchApproveEvery, took.Round(time.Millisecond), benchNetMillis(benchNetPercentile(round, 0.5)),
				benchNetMillis(benchNetPercentile(round, 0.99)), benchNetMillis(benchNetPercentile(toPaid, 0.5)),
				benchNetMillis(benchNetPercentile(toPaid, 0.99)), benchNetMillis(benchNetPercentile(roundSeen, 0.5)),
				benchNetMillis(benchNetPercentile(roundSeen, 0.99)), benchPayLoad())
		}
		slices.Sort(lats)
		b.ReportMetric(benchNetMillis(benchNetPercentile(lats, 0.50)), "p50-ms")
		b.ReportMetric(benchNetMillis(benchNetPercentile(lats, 0.99)), "p99-ms")
		slices.Sort(paid)
		b.ReportMetric(benchNetMillis(benchNetPercentile(paid, 0.5)), "paid-p50-ms")
		b.ReportMetric(benchNetMillis(benchNetPercentile(paid, 0.99)), "paid-p99-ms")
		slices.Sort(seen)
		b.ReportMetric(benchNetMillis(benchNetPercentile(seen, 0.5)), "seen-p50-ms")
		b.ReportMetric(benchNetMillis(benchNetPercentile(seen, 0.99)), "seen-p99-ms")
		b.ReportMetric(0, "ns/op")
	})
}

// benchPayLoad is the machine's load average (1, 5 and 15 minutes): other work on the two
// CPUs skews every figure.
func benchPayLoad() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
