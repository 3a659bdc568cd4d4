package ledger_test

// Export, seal and verify benchmarks ((k) and (l) of make bench). The fixture is a ledger of
// BENCH_EXPORT_POSTINGS postings (default 1,000,000: 500,000 award-like entries of two
// postings, with metadata), sealed once. Exports are measured twice: in this process, to
// io.Discard, and as the real `tandem export` binary writing a file, whose peak resident
// memory (getrusage's maxrss) is the figure that proves the export streams. bench.sh builds
// bin/tandem and passes it in TANDEM_BIN; without it the benchmark builds one.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
)

const benchExportWallets = 1000

// benchExportPostings is the fixture's size (BENCH_EXPORT_POSTINGS).
func benchExportPostings() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_EXPORT_POSTINGS")); err == nil && n >= 2 {
		return n
	}
	return 1_000_000
}

// buildExportFixture posts the history in batches of 1000 entries and seals it.
func buildExportFixture(b *testing.B) (*ledger.Ledger, string, int64) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	pool, url := dbtest.NewWithURL(b, dbtest.Options{MaxConns: 8})
	l := ledger.New(pool, nil)
	b.Cleanup(l.Close)
	accounts := []ledger.NewAccount{
		{Code: "org/cash/stripe", Type: ledger.Asset, Currency: "USD"},
		{Code: "program/bench/fund", Type: ledger.Equity, Currency: "USD"},
	}
	for i := range benchExportWallets {
		accounts = append(accounts, ledger.NewAccount{Code: fmt.Sprintf("participant/p%04d/wallet", i), Type: ledger.Liability, Currency: "USD"})
	}
	for _, na := range accounts {
		if _, _, err := l.CreateAccount(ctx, na); err != nil {
			b.Fatal(err)
		}
	}
	entries := benchExportPostings() / 2
	rng := mrand.New(mrand.NewPCG(7, 8))
	batch := make([]ledger.NewEntry, 0, 1000)
	for i := range entries {
		w := rng.IntN(benchExportWallets)
		meta, _ := json.Marshal(map[string]any{"program": "bench", "participant": fmt.Sprintf("p%04d", w), "flow": "award",
			"rule": "mentor-4", "rule_version": 1, "period": "2026-11"})
		amount := decimal.New(1+rng.Int64N(100_000), -2)
		batch = append(batch, ledger.NewEntry{IdempotencyKey: benchKey("export"), Description: "milestone: 4 verified mentor conversations",
			Metadata: meta, Postings: []ledger.Posting{
				{Account: "program/bench/fund", Side: ledger.Debit, Amount: amount, Currency: "USD"},
				{Account: fmt.Sprintf("participant/p%04d/wallet", w), Side: ledger.Credit, Amount: amount, Currency: "USD"},
			}})
		if len(batch) == cap(batch) || i == entries-1 {
			if _, err := l.PostBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
		if (i+1)%100_000 == 0 {
			benchProgress("%s: %d of %d entries posted (%v)", b.Name(), i+1, entries, time.Since(start).Round(time.Second))
		}
	}
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	sealStart := time.Now()
	res, err := l.Seal(ctx, ledger.SealOptions{})
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(sealStart)
	benchProgress("%s: %d postings of %d entries posted in %v; sealed in %v (%.0f entries/s)", b.Name(), 2*entries, entries,
		sealStart.Sub(start).Round(time.Second), took.Round(time.Millisecond), float64(res.Sealed)/took.Seconds())
	return l, url, int64(2 * entries)
}

// tandemBinary is TANDEM_BIN, or a tandem built for this benchmark.
func tandemBinary(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("TANDEM_BIN"); p != "" {
		return p
	}
	p := filepath.Join(b.TempDir(), "tandem")
	cmd := exec.Command("go", "build", "-o", p, "./cmd/tandem")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build tandem: %v\n%s", err, out)
	}
	return p
}

// BenchmarkExport is (k): one op is one whole export. Metrics: postings/s; for the binary,
// peak-rss-MiB too. Then (l): verify of the database (entries/s) and sealing 10,000 new
// entries (entries/s).
func BenchmarkExport(b *testing.B) {
	l, url, postings := buildExportFixture(b)
	ctx := context.Background()
	for _, format := range []ledger.ExportFormat{ledger.FormatCSV, ledger.FormatJSONL, ledger.FormatHledger} {
		b.Run("inprocess/"+string(format), func(b *testing.B) {
			var ms runtime.MemStats
			start := time.Now()
			for b.Loop() {
				sum, err := l.Export(ctx, io.Discard, ledger.ExportOptions{Format: format})
				if err != nil {
					b.Fatal(err)
				}
				if sum.Postings != postings {
					b.Fatalf("exported %d postings, want %d", sum.Postings, postings)
				}
			}
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(postings)*float64(b.N)/time.Since(start).Seconds(), "postings/s")
			b.ReportMetric(float64(ms.HeapSys)/(1<<20), "heap-sys-MiB")
			b.ReportMetric(0, "ns/op")
		})
	}
	bin := tandemBinary(b)
	for _, format := range []ledger.ExportFormat{ledger.FormatCSV, ledger.FormatJSONL} {
		b.Run("binary/"+string(format), func(b *testing.B) {
			out := filepath.Join(b.TempDir(), "ledger"+format.Extension())
			var peak int64
			var elapsed time.Duration
			var size int64
			for b.Loop() {
				cmd := exec.Command(bin, "export", "--format", string(format), "--out", out, "--quiet")
				cmd.Env = append(os.Environ(), "DATABASE_URL="+url)
				start := time.Now()
				if msg, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("tandem export: %v\n%s", err, msg)
				}
				elapsed += time.Since(start)
				ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
				if !ok {
					b.Fatal("no rusage for the tandem process")
				}
				peak = max(peak, ru.Maxrss*1024) // Linux reports KiB
				st, err := os.Stat(out)
				if err != nil {
					b.Fatal(err)
				}
				size = st.Size()
			}
			b.ReportMetric(float64(postings)*float64(b.N)/elapsed.Seconds(), "postings/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-rss-MiB")
			b.ReportMetric(float64(size)/1e6, "file-MB")
			b.ReportMetric(0, "ns/op")
			benchProgress("%s: %d postings, %.1f MB, peak RSS %.1f MiB", b.Name(), postings, float64(size)/1e6, float64(peak)/(1<<20))
		})
	}
	b.Run("verify", func(b *testing.B) {
		var checked int64
		start := time.Now()
		for b.Loop() {
			rep, err := l.Verify(ctx, ledger.VerifyOptions{Actor: "bench"})
			if err != nil || !rep.OK() {
				b.Fatalf("verify: %v %v", err, rep.Problems)
			}
			checked += rep.Entries
		}
		b.ReportMetric(float64(checked)/time.Since(start).Seconds(), "entries/s")
		b.ReportMetric(0, "ns/op")
	})
	b.Run("seal10k", func(b *testing.B) {
		const n = 10_000
		var elapsed time.Duration
		for b.Loop() {
			b.StopTimer()
			batch := make([]ledger.NewEntry, 0, 1000)
			for i := range n {
				batch = append(batch, benchTransfer("org/cash/stripe", "program/bench/fund", decimal.New(1, 0)))
				if len(batch) == cap(batch) || i == n-1 {
					if _, err := l.PostBatch(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			b.StartTimer()
			start := time.Now()
			res, err := l.Seal(ctx, ledger.SealOptions{})
			if err != nil || res.Sealed != n {
				b.Fatalf("seal: %v, sealed %d", err, res.Sealed)
			}
			elapsed += time.Since(start)
		}
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "entries/s")
		b.ReportMetric(0, "ns/op")
	})
}
