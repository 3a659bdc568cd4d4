package ledger_test

// Performance benchmarks (`make bench` runs them with scripts/bench.sh, next to pgbench on the
// same cluster). They need DATABASE_URL like the tests, and durable commits to mean anything.
//
// Each top-level benchmark builds its database once (accounts, funding, history) and runs the
// measurement in a sub-benchmark, so the fixture is shared by every b.N round and every -count
// repetition and is dropped when the top-level benchmark ends. Rates are reported as
// entries/s (or lookups/s) over the measured wall time, latencies as p50-ms and p99-ms of the
// individual calls; with PGBENCH_TPS set, x-pgbench is the rate divided by pgbench's tps.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/ledger"
)

const (
	benchAccounts    = 10_000    // wallets the posting benchmarks move money between
	benchClients     = 16        // concurrent Post callers in (a) and (b)
	benchBatchSize   = 1000      // entries per PostBatch call in (c)
	benchHistory     = 1_000_000 // postings on the account of the balance benchmarks (d)
	benchHistoryLine = 999       // of them per entry (an entry holds at most 1000 postings)

	benchCash = "org/cash/bench"
	benchFund = "program/bench/fund"
)

// benchRun tells this process's idempotency keys apart from any earlier run's.
var (
	benchRun = func() string {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}()
	benchKeys atomic.Int64
)

func benchKey(kind string) string {
	return "bench/" + benchRun + "/" + kind + "/" + strconv.FormatInt(benchKeys.Add(1), 10)
}

func benchWallet(i int) string { return fmt.Sprintf("participant/w%05d/wallet", i) }

// benchCents returns a random amount between 0.01 and 10.00.
func benchCents(rng *mrand.Rand) decimal.Decimal { return decimal.New(1+rng.Int64N(1000), -2) }

// benchProgress prints set-up steps, which take seconds to minutes, as they happen.
func benchProgress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// openBenchAccounts opens the cash account, the program fund and benchAccounts wallets in one
// transaction, then funds every wallet with 1,000,000.00 and the fund with 10,000,000,000.00
// from the cash account. Wallets and the fund are no_overdraft, so every benchmark entry runs
// the overdraft check.
func openBenchAccounts(b *testing.B, tb *testBundle) {
	b.Helper()
	start := time.Now()
	ctx := tb.ctx
	tx, err := tb.pool.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	accounts := []ledger.NewAccount{
		{Code: benchCash, Type: ledger.Asset, Currency: "USD"},
		{Code: benchFund, Type: ledger.Equity, Currency: "USD", NoOverdraft: true},
	}
	for i := range benchAccounts {
		accounts = append(accounts, ledger.NewAccount{Code: benchWallet(i), Type: ledger.Liability, Currency: "USD", NoOverdraft: true})
	}
	for _, na := range accounts {
		if _, _, err := tb.ledger.CreateAccountTx(ctx, tx, na); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}

	// Funding: two-posting entries, like the benchmarks' own, so that the planner's statistics
	// (ANALYZE below) describe the table the benchmarks write to. Entries of hundreds of
	// postings would make entry_id look nearly constant, and the planner would then check each
	// new entry's postings (ledger_entries_have_postings) with a sequential scan.
	perWallet := decimal.New(1_000_000, 0)
	fund := decimal.New(10_000_000_000, 0)
	entries := []ledger.NewEntry{benchTransfer(benchCash, benchFund, fund)}
	for i := range benchAccounts {
		entries = append(entries, benchTransfer(benchCash, benchWallet(i), perWallet))
	}
	for batch := range slices.Chunk(entries, benchBatchSize) {
		if _, err := tb.ledger.PostBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	benchAnalyze(b, tb)
	benchProgress("%s: opened and funded %d accounts in %v", b.Name(), len(accounts), time.Since(start).Round(time.Millisecond))
}

// benchAnalyze refreshes the planner's statistics after a bulk load, as autovacuum would shortly.
func benchAnalyze(b *testing.B, tb *testBundle) {
	b.Helper()
	if _, err := tb.pool.Exec(tb.ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
}

// benchTransfer is a two-posting entry moving amount from one account to another.
func benchTransfer(from, to string, amount decimal.Decimal) ledger.NewEntry {
	return ledger.NewEntry{IdempotencyKey: benchKey("t"), Description: "bench transfer", Postings: []ledger.Posting{
		{Account: from, Side: ledger.Debit, Amount: amount, Currency: "USD"},
		{Account: to, Side: ledger.Credit, Amount: amount, Currency: "USD"},
	}}
}

// benchPair returns two different wallets.
func benchPair(rng *mrand.Rand) (string, string) {
	i := rng.IntN(benchAccounts)
	j := rng.IntN(benchAccounts - 1)
	if j >= i {
		j++
	}
	return benchWallet(i), benchWallet(j)
}

// benchRunClients runs b.N calls of op spread over clients goroutines, each taking the next call
// number until b.N are taken, and reports the rate (perOp units per call) and the latency
// percentiles of the calls.
func benchRunClients(b *testing.B, clients, perOp int, unit string, op func(ctx context.Context, rng *mrand.Rand) error) {
	ctx := context.Background()
	var (
		next     atomic.Int64
		failed   atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
		lats     = make([][]time.Duration, clients)
	)
	for c := range clients {
		lats[c] = make([]time.Duration, 0, b.N/clients+1)
	}
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(c)))
			for !failed.Load() && next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				err := op(ctx, rng)
				lats[c] = append(lats[c], time.Since(t0))
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	benchReport(b, float64(b.N*perOp)/elapsed.Seconds(), unit, slices.Concat(lats...))
}

// benchReport sets the benchmark's metrics: the rate, p50 and p99 latency in milliseconds, the
// ratio to pgbench when PGBENCH_TPS is set; ns/op is dropped (an op is not always an entry).
func benchReport(b *testing.B, rate float64, unit string, lats []time.Duration) {
	slices.Sort(lats)
	b.ReportMetric(rate, unit)
	b.ReportMetric(benchMillis(benchPercentile(lats, 0.50)), "p50-ms")
	b.ReportMetric(benchMillis(benchPercentile(lats, 0.99)), "p99-ms")
	b.ReportMetric(0, "ns/op")
	if tps, err := strconv.ParseFloat(os.Getenv("PGBENCH_TPS"), 64); err == nil && tps > 0 {
		b.ReportMetric(rate/tps, "x-pgbench")
	}
}

// benchPercentile of sorted latencies, nearest rank.
func benchPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func benchMillis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchLedger is the ledger Post benchmarks call: the default configuration, or the number of
// batcher workers in BENCH_WORKERS, to compare settings on the same machine.
func benchLedger(b *testing.B, tb *testBundle) *ledger.Ledger {
	w, _ := strconv.Atoi(os.Getenv("BENCH_WORKERS"))
	if w <= 0 {
		return tb.ledger
	}
	l := ledger.New(tb.pool, &ledger.Config{Workers: w})
	b.Cleanup(l.Close)
	return l
}

// BenchmarkPostRandomPairs is (a): two-posting entries between random pairs of the wallets,
// posted with Post (through the batcher) by 16 concurrent clients. One op is one entry.
func BenchmarkPostRandomPairs(b *testing.B) {
	tb := setup(b)
	openBenchAccounts(b, tb)
	l := benchLedger(b, tb)
	b.Run(fmt.Sprintf("clients=%d", benchClients), func(b *testing.B) {
		benchRunClients(b, benchClients, 1, "entries/s", func(ctx context.Context, rng *mrand.Rand) error {
			from, to := benchPair(rng)
			_, err := l.Post(ctx, benchTransfer(from, to, benchCents(rng)))
			return err
		})
	})
}

// BenchmarkPostHotAccount is (b): every entry debits the same program fund and credits a
// random wallet, 16 concurrent clients calling Post. One op is one entry.
func BenchmarkPostHotAccount(b *testing.B) {
	tb := setup(b)
	openBenchAccounts(b, tb)
	l := benchLedger(b, tb)
	b.Run(fmt.Sprintf("clients=%d", benchClients), func(b *testing.B) {
		benchRunClients(b, benchClients, 1, "entries/s", func(ctx context.Context, rng *mrand.Rand) error {
			_, err := l.Post(ctx, benchTransfer(benchFund, benchWallet(rng.IntN(benchAccounts)), benchCents(rng)))
			return err
		})
	})
}

// BenchmarkPostBatch is (c): PostBatch calls of 1000 two-posting entries between random pairs
// of wallets, one call at a time, each in one transaction. One op is one call; the rate
// counts entries and the latencies are those of whole calls.
func BenchmarkPostBatch(b *testing.B) {
	tb := setup(b)
	openBenchAccounts(b, tb)
	b.Run(fmt.Sprintf("size=%d", benchBatchSize), func(b *testing.B) {
		benchRunClients(b, 1, benchBatchSize, "entries/s", func(ctx context.Context, rng *mrand.Rand) error {
			entries := make([]ledger.NewEntry, benchBatchSize)
			for i := range entries {
				from, to := benchPair(rng)
				entries[i] = benchTransfer(from, to, benchCents(rng))
			}
			_, err := tb.ledger.PostBatch(ctx, entries)
			return err
		})
	})
}

// benchHistoryFixture is an account with benchHistory postings and the range of its history.
type benchHistoryFixture struct {
	code               string
	firstSeq, lastSeq  int64
	firstAt, lastAt    time.Time
	entries, postings  int64
	buildTime, perCall time.Duration
}

// buildBenchHistory gives benchFund benchHistory postings, fast: entries of 999 credits to the
// fund and one debit to cash, one entry per PostBatch call. Every call takes a posting time
// of its own, so the history holds about a thousand distinct times and sequence numbers, with
// 999 postings at each: a pessimistic history for AsOf{Time}, which reads every posting of
// the account sharing the posting time it lands on (the entries of one batch of Post share
// a posting time too, up to Config.MaxBatch of them).
func buildBenchHistory(b *testing.B, tb *testBundle) benchHistoryFixture {
	b.Helper()
	ctx := tb.ctx
	for _, na := range []ledger.NewAccount{
		{Code: benchCash, Type: ledger.Asset, Currency: "USD"},
		{Code: benchFund, Type: ledger.Equity, Currency: "USD", NoOverdraft: true},
	} {
		if _, _, err := tb.ledger.CreateAccount(ctx, na); err != nil {
			b.Fatal(err)
		}
	}
	benchProgress("%s: posting %d postings on %s (%d per entry)", b.Name(), benchHistory, benchFund, benchHistoryLine)
	start := time.Now()
	rng := mrand.New(mrand.NewPCG(1, 2))
	f := benchHistoryFixture{code: benchFund}
	lastReport := start
	for done := 0; done < benchHistory; {
		n := min(benchHistoryLine, benchHistory-done)
		ps := make([]ledger.Posting, 0, n+1)
		total := decimal.Zero
		for range n {
			a := benchCents(rng)
			total = total.Add(a)
			ps = append(ps, ledger.Posting{Account: benchFund, Side: ledger.Credit, Amount: a, Currency: "USD"})
		}
		ps = append(ps, ledger.Posting{Account: benchCash, Side: ledger.Debit, Amount: total, Currency: "USD"})
		if _, err := tb.ledger.PostBatch(ctx, []ledger.NewEntry{{IdempotencyKey: benchKey("history"), Description: "bench donations", Postings: ps}}); err != nil {
			b.Fatal(err)
		}
		done += n
		f.entries++
		if time.Since(lastReport) > 10*time.Second {
			lastReport = time.Now()
			benchProgress("%s: %d postings so far (%v)", b.Name(), done, time.Since(start).Round(time.Second))
		}
	}
	f.buildTime = time.Since(start)
	f.perCall = f.buildTime / time.Duration(f.entries)
	benchAnalyze(b, tb)
	err := tb.pool.QueryRow(ctx, `SELECT min(p.seq), max(p.seq), min(p.posted_at), max(p.posted_at), count(*)
		FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id WHERE a.code = $1`, benchFund).
		Scan(&f.firstSeq, &f.lastSeq, &f.firstAt, &f.lastAt, &f.postings)
	if err != nil {
		b.Fatal(err)
	}
	if f.postings != benchHistory {
		b.Fatalf("history has %d postings, want %d", f.postings, benchHistory)
	}
	benchProgress("%s: history of %d postings in %d entries built in %v (%v per entry)", b.Name(),
		f.postings, f.entries, f.buildTime.Round(time.Millisecond), f.perCall.Round(time.Microsecond))
	return f
}

// BenchmarkBalance is (d): the current balance and balances as of random points in the
// history (by sequence number and by time) of an account with 1,000,000 postings, one caller
// at a time. One op is one Balance call.
func BenchmarkBalance(b *testing.B) {
	tb := setup(b)
	h := buildBenchHistory(b, tb)
	lookups := func(b *testing.B, at func(rng *mrand.Rand) ledger.AsOf) {
		benchRunClients(b, 1, 1, "lookups/s", func(ctx context.Context, rng *mrand.Rand) error {
			bal, err := tb.ledger.Balance(ctx, h.code, at(rng))
			if err == nil && bal.Version == 0 {
				err = fmt.Errorf("balance of %s: empty history", h.code)
			}
			return err
		})
	}
	b.Run("current", func(b *testing.B) {
		lookups(b, func(*mrand.Rand) ledger.AsOf { return ledger.AsOf{} })
	})
	b.Run("as_of_seq", func(b *testing.B) {
		lookups(b, func(rng *mrand.Rand) ledger.AsOf {
			return ledger.AsOf{Seq: h.firstSeq + rng.Int64N(h.lastSeq-h.firstSeq+1)}
		})
	})
	b.Run("as_of_time", func(b *testing.B) {
		span := h.lastAt.Sub(h.firstAt)
		lookups(b, func(rng *mrand.Rand) ledger.AsOf {
			return ledger.AsOf{Time: h.firstAt.Add(time.Duration(rng.Int64N(int64(span) + 1)))}
		})
	})
}
