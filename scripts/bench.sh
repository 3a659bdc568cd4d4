#!/usr/bin/env bash
# Ledger and network performance benchmarks next to PostgreSQL's own pgbench, on the same
# cluster and in the same run, so each figure can be read as a ratio to what the machine does
# for a TPC-B-like workload. `make bench` runs this under pgrun (a private cluster with fsync
# on), which sets DATABASE_URL, PGHOST, PGPORT, PGUSER and PGBENCH; with DATABASE_URL already
# set it runs against that server instead (the pgbench database is created and dropped there).
#
# Steps: pgbench -i -s 16 into a database of its own, pgbench (16 clients, 10 s), the Go
# benchmarks of ./ledger and then of ./internal/app (the network: facts ingested, fact to
# award while ingesting, evaluations; one package at a time, so they do not compete), the
# payout benchmarks of ./internal/app (payouts submitted through the sandbox and through
# stripe-mock, approval latency; run apart with their own -benchtime, since one op is a round
# of 2,000 payouts), pgbench again (the machine is noisy: both tps figures are shown and the
# ratios use their mean), then a summary table against the targets.
#
# The ledger's benchmarks include the exports, (k), and the seal, (l) (BenchmarkExport): a
# ledger of 1,000,000 postings is exported by the real bin/tandem binary (built first, passed
# in TANDEM_BIN) as CSV and as JSON Lines, and the process's peak resident memory is read
# from getrusage (maxrss), which shows the export streams; the in-process export of each
# format, a verification of the database and the sealing of 10,000 new entries follow.
#
# Environment knobs:
#   BENCHTIME     go test -benchtime (default 10s)
#   BENCH         go test -bench pattern (default .: every ledger and network benchmark;
#                 e.g. Network for the network's alone, Post|Balance for the ledger's);
#                 the payout benchmarks are left to the next two
#   PAYOUTS_BENCH      go test -bench pattern of the payout step (default Payouts: every
#                      BenchmarkPayouts*; empty: no payout step). The Stripe ones need
#                      STRIPE_MOCK_URL (make bench runs stripe-mock) and are skipped without it
#   PAYOUTS_BENCHTIME  go test -benchtime of the payout step (default 1x: one round each)
#   BENCH_EXPORT_POSTINGS  postings in the export benchmark's ledger (default 1000000)
#   PGBENCH_TIME  seconds per pgbench run (default 10)
#   DASHBOARD_BENCH      go test -bench pattern of the dashboard step (default BenchmarkDashboard;
#                        empty: no dashboard step): ./api's render of a program's dashboard
#   DASHBOARD_BENCHTIME  its -benchtime (default 200x: 200 renders, for a p99 worth the name)
#   BENCH_STRICT  1: exit 1 when a figure misses its target (default: report only)
set -euo pipefail
cd "$(dirname "$0")/.."

BENCHTIME=${BENCHTIME:-10s}
BENCH=${BENCH:-.}
PAYOUTS_BENCH=${PAYOUTS_BENCH-Payouts}
PAYOUTS_BENCHTIME=${PAYOUTS_BENCHTIME:-1x}
PGBENCH_TIME=${PGBENCH_TIME:-10}
DASHBOARD_BENCH=${DASHBOARD_BENCH-BenchmarkDashboard}
DASHBOARD_BENCHTIME=${DASHBOARD_BENCHTIME:-200x}
PGBENCH_CLIENTS=16
PGBENCH_SCALE=16
BENCH_DB=pgbench

started=$SECONDS
log() { printf '[bench %4ds] %s\n' "$((SECONDS - started))" "$*"; }
die() { log "error: $*" >&2; exit 1; }

[[ -n ${DATABASE_URL:-} ]] || die "DATABASE_URL is not set: run \`make bench\`, which starts a private PostgreSQL"

# --- PostgreSQL client programs -------------------------------------------------------------
find_pg_program() { # NAME: $PGBENCH's directory, then PATH, then the newest /usr/lib/postgresql
	local name=$1 p
	if [[ -n ${PGBENCH:-} && -x $(dirname "$PGBENCH")/$name ]]; then
		echo "$(dirname "$PGBENCH")/$name"
		return
	fi
	if p=$(command -v "$name" 2>/dev/null); then
		echo "$p"
		return
	fi
	p=$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -t/ -k5,5n | tail -n1)
	[[ -n $p ]] && echo "$p"
}
pgbench=${PGBENCH:-}
[[ -n $pgbench && -x $pgbench ]] || pgbench=$(find_pg_program pgbench) ||
	die "pgbench not found: install the PostgreSQL client programs (apt-get install postgresql-contrib or postgresql)"
psql=$(find_pg_program psql) || die "psql not found"

# The pgbench database sits beside DATABASE_URL's: same server, same credentials.
case $DATABASE_URL in
postgres://* | postgresql://*) ;;
*) die "DATABASE_URL must be a postgres:// URL" ;;
esac
url_base=${DATABASE_URL%%\?*}
url_query=""
[[ $DATABASE_URL == *\?* ]] && url_query="?${DATABASE_URL#*\?}"
url_server=$url_base
rest=${url_base#*://}
[[ $rest == */* ]] && url_server=${url_base%/"${rest#*/}"}
url_server=${url_server%/}
PGBENCH_URL="$url_server/$BENCH_DB$url_query"

sql() { PGOPTIONS="-c client_min_messages=warning" "$psql" "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -At -c "$1"; }

tmp=$(mktemp -d)
cleanup() {
	sql "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }
log "server: $(sql 'SHOW server_version'), fsync=$(sql 'SHOW fsync'), synchronous_commit=$(sql 'SHOW synchronous_commit'), shared_buffers=$(sql 'SHOW shared_buffers'); $(nproc) CPUs, load average $(loadavg)"
[[ $(sql 'SHOW fsync') == on ]] || log "warning: fsync is off, commits are not durable and the figures mean little"

# --- pgbench ----------------------------------------------------------------------------------
log "pgbench: creating database $BENCH_DB, pgbench -i -s $PGBENCH_SCALE"
sql "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)"
sql "CREATE DATABASE $BENCH_DB"
"$pgbench" -i -s "$PGBENCH_SCALE" -q "$PGBENCH_URL" >"$tmp/pgbench-init.log" 2>&1 ||
	{ cat "$tmp/pgbench-init.log" >&2; die "pgbench -i failed"; }

run_pgbench() { # LABEL: prints the tps
	local label=$1 out tps lat
	log "pgbench ($label): $PGBENCH_CLIENTS clients, ${PGBENCH_TIME}s, built-in TPC-B-like script" >&2
	out=$("$pgbench" -c "$PGBENCH_CLIENTS" -j 2 -T "$PGBENCH_TIME" -n "$PGBENCH_URL" 2>&1) ||
		{ echo "$out" >&2; die "pgbench failed"; }
	echo "$out" >"$tmp/pgbench-$label.log"
	tps=$(awk '/^tps = / { print $3; exit }' <<<"$out")
	lat=$(awk '/^latency average = / { print $4; exit }' <<<"$out")
	[[ -n $tps ]] || { echo "$out" >&2; die "could not read tps from pgbench"; }
	log "pgbench ($label): $tps tps, latency average $lat ms" >&2
	echo "$tps"
}
tps1=$(run_pgbench before)
export PGBENCH_TPS=$tps1

# --- Go benchmarks ----------------------------------------------------------------------------
# The export benchmark runs the real binary: build it from this tree.
go build -o bin/tandem ./cmd/tandem || die "go build ./cmd/tandem failed"
export TANDEM_BIN=$PWD/bin/tandem
log "go benchmarks: -bench '$BENCH' -benchtime $BENCHTIME (set-up lines start with 'bench:'; several minutes)"
go_status=0
go test -p 1 -run '^$' -bench "$BENCH" -skip '^BenchmarkPayouts' -benchtime "$BENCHTIME" -timeout 30m ./ledger/ ./internal/app/ 2>&1 |
	tee "$tmp/go.log" || go_status=$?
[[ $go_status == 0 ]] || log "go test failed (status $go_status); the summary shows what finished"
if [[ -n $PAYOUTS_BENCH ]]; then
	[[ -n ${STRIPE_MOCK_URL:-} ]] || log "STRIPE_MOCK_URL is not set: the stripe-mock payout benchmarks, (i), are skipped (make bench runs stripe-mock)"
	log "payout benchmarks: -bench '$PAYOUTS_BENCH' -benchtime $PAYOUTS_BENCHTIME (one op is a round of 2,000 payouts, or of 200 approvals; many minutes under fsync)"
	payouts_status=0
	go test -run '^$' -bench "$PAYOUTS_BENCH" -benchtime "$PAYOUTS_BENCHTIME" -timeout 60m ./internal/app/ 2>&1 |
		tee -a "$tmp/go.log" || payouts_status=$?
	[[ $payouts_status == 0 ]] || { log "payout benchmarks failed (status $payouts_status); the summary shows what finished"; go_status=$payouts_status; }
fi

# The program dashboard (GET /admin/programs/{id}) of a program of 10,000 participants, one
# render at a time; its fixture is built first (a minute or two under fsync).
if [[ -n $DASHBOARD_BENCH ]]; then
	log "dashboard benchmark: -bench '$DASHBOARD_BENCH' -benchtime $DASHBOARD_BENCHTIME (the fixture of 10,000 participants first)"
	dashboard_status=0
	go test -run '^$' -bench "$DASHBOARD_BENCH" -benchtime "$DASHBOARD_BENCHTIME" -timeout 30m ./api/ 2>&1 |
		tee -a "$tmp/go.log" || dashboard_status=$?
	[[ $dashboard_status == 0 ]] || { log "dashboard benchmark failed (status $dashboard_status); the summary shows what finished"; go_status=$dashboard_status; }
fi

tps2=$(run_pgbench after)

# --- Summary ----------------------------------------------------------------------------------
# Benchmark lines: NAME-PROCS  N  VALUE UNIT  VALUE UNIT ...  ->  "name unit value" rows.
awk '/^Benchmark/ { name = $1; sub(/-[0-9]+$/, "", name); for (i = 3; i < NF; i += 2) print name, $(i+1), $i }' \
	"$tmp/go.log" >"$tmp/metrics"

log "done in $((SECONDS - started))s; load average $(loadavg) (other work on the machine skews every figure)"
echo
awk -v tps1="$tps1" -v tps2="$tps2" -v strict="${BENCH_STRICT:-0}" '
	{ m[$1, $2] = $3 }
	function has(name, unit) { return ((name, unit) in m) }
	function get(name, unit) { return has(name, unit) ? m[name, unit] + 0 : 0 }
	function row(fig, measured, target, ratio, result) {
		printf "%-32s %-30s %-36s %-10s %s\n", fig, measured, target, ratio, result
	}
	function verdict(ok) { if (!ok) misses++; return ok ? "PASS" : "MISS" }
	# A throughput figure in unit: rate, latency line, ratio to pgbench; without a target
	# (report only) there is no verdict.
	function rate_row(fig, name, unit, target, ok_extra, extra_note,    r, ok) {
		if (!has(name, unit)) { row(fig, "n/a (not run)", target, "-", "n/a"); return }
		r = get(name, unit)
		row(fig, sprintf("%.0f %s%s", r, unit, extra_note), target, sprintf("%.3fx", r / tps),
			target == "(report only)" ? "-" : verdict(ok_extra))
		row("    latency p50 / p99", sprintf("%.1f / %.1f ms", get(name, "p50-ms"), get(name, "p99-ms")), "", "", "")
	}
	function p99_row(fig, name, limit,    p, ok) {
		if (!has(name, "p99-ms")) { row(fig, "n/a (not run)", sprintf("p99 < %g ms", limit), "-", "n/a"); return }
		p = get(name, "p99-ms")
		row(fig, sprintf("p99 %.3f ms (p50 %.3f)", p, get(name, "p50-ms")), sprintf("p99 < %g ms", limit),
			sprintf("%.3fx", get(name, "lookups/s") / tps), verdict(p < limit))
		row("    rate (1 client)", sprintf("%.0f lookups/s", get(name, "lookups/s")), "", "", "")
	}
	# Fact to award while ingesting: p99 by the database clock, under a background load
	# whose achieved rate must be at least 90% of the one asked for.
	function award_row(fig, name, limit, load,    p, r) {
		if (!has(name, "p99-ms")) { row(fig, "n/a (not run)", sprintf("p99 < %g ms at >= %g facts/s", limit, 0.9 * load), "-", "n/a"); return }
		p = get(name, "p99-ms"); r = get(name, "facts/s")
		row(fig, sprintf("p99 %.0f ms (p50 %.0f)", p, get(name, "p50-ms")), sprintf("p99 < %g ms at >= %g facts/s", limit, 0.9 * load),
			"-", verdict(p < limit && r >= 0.9 * load))
		row("    background load achieved", sprintf("%.0f facts/s (asked %g)", r, load), "", sprintf("%.3fx", r / tps), "")
		row("    seen by poller p50 / p99", sprintf("%.0f / %.0f ms", get(name, "seen-p50-ms"), get(name, "seen-p99-ms")), "", "", "")
		row("    evaluations meanwhile", sprintf("%.0f evals/s", get(name, "evals/s")), "", "", "")
	}
	# Payouts submitted through prov: River with 20 workers (the default of the app), started
	# once a round of 2,000 approved disbursements waits, carries the verdict (target: at
	# least limit/s; 0: report only); River with 50 workers and Store.Submit called directly
	# from 20 goroutines (the submission path alone) are shown below it.
	function payout_rows(fig, prov, target, limit,    name, r) {
		name = "BenchmarkPayoutsSubmit/" prov "/river/workers=20"
		if (!has(name, "payouts/s")) {
			row(fig, "n/a (not run)", target, "-", "n/a")
		} else {
			r = get(name, "payouts/s")
			row(fig, sprintf("%.0f payouts/s", r), target, sprintf("%.3fx", r / tps), limit > 0 ? verdict(r >= limit) : "-")
			row("    River start / then", sprintf("%.0f ms / %.0f payouts/s", get(name, "start-ms"), get(name, "steady-payouts/s")), "", "", "")
			row("    submit job p50 / p99", sprintf("%.0f / %.0f ms", get(name, "p50-ms"), get(name, "p99-ms")), "", "", "")
		}
		name = "BenchmarkPayoutsSubmit/" prov "/river/workers=50"
		if (has(name, "payouts/s")) {
			r = get(name, "payouts/s")
			row("    River, 50 workers", sprintf("%.0f payouts/s", r), "", sprintf("%.3fx", r / tps), "")
			row("        submit job p50 / p99", sprintf("%.0f / %.0f ms", get(name, "p50-ms"), get(name, "p99-ms")), "", "", "")
		}
		name = "BenchmarkPayoutsSubmit/" prov "/direct/goroutines=20"
		if (has(name, "payouts/s")) {
			r = get(name, "payouts/s")
			row("    Store.Submit, 20 goroutines", sprintf("%.0f payouts/s", r), "", sprintf("%.3fx", r / tps), "")
			row("        Submit p50 / p99", sprintf("%.0f / %.0f ms", get(name, "p50-ms"), get(name, "p99-ms")), "", "", "")
		}
	}
	# Approvals one at a time by a second admin, River running: the latency of Store.Approve,
	# and approval to paid (database clock; seen: from the return of Approve to a 5 ms poller).
	function approve_rows(fig, name) {
		if (!has(name, "p99-ms")) { row(fig, "n/a (not run)", "(report only)", "-", "n/a"); return }
		row(fig, sprintf("p99 %.1f ms (p50 %.1f)", get(name, "p99-ms"), get(name, "p50-ms")), "(report only)", "-", "-")
		row("    approval to paid p50 / p99", sprintf("%.0f / %.0f ms", get(name, "paid-p50-ms"), get(name, "paid-p99-ms")), "", "", "")
		row("    seen by poller p50 / p99", sprintf("%.0f / %.0f ms", get(name, "seen-p50-ms"), get(name, "seen-p99-ms")), "", "", "")
	}
	# The dashboard: render time of one page, one at a time (p50, p99), and pages per second.
	function dashboard_row(fig, name, limit,    p) {
		if (!has(name, "p99-ms")) { row(fig, "n/a (not run)", sprintf("p99 < %g ms", limit), "-", "n/a"); return }
		p = get(name, "p99-ms")
		row(fig, sprintf("p99 %.0f ms (p50 %.0f)", p, get(name, "p50-ms")), sprintf("p99 < %g ms", limit), "-", verdict(p < limit))
		row("    renders (1 client)", sprintf("%.1f pages/s", get(name, "pages/s")), "", "", "")
	}
	# Exports of the export benchmark ledger by the tandem binary: postings/s against the
	# target for CSV, and the peak resident memory of the process against 100 MiB; then the
	# in-process exports, verify and the seal (report only).
	function export_rows(    c, j, name, r, p) {
		c = "BenchmarkExport/binary/csv"; j = "BenchmarkExport/binary/jsonl"
		if (!has(c, "postings/s")) {
			row("(k) export CSV (bin/tandem)", "n/a (not run)", ">= 200000 postings/s", "-", "n/a")
		} else {
			r = get(c, "postings/s"); p = get(c, "peak-rss-MiB")
			row("(k) export CSV (bin/tandem)", sprintf("%.0f postings/s", r), ">= 200000 postings/s", "-", verdict(r >= 200000))
			row("    peak RSS, file size", sprintf("%.1f MiB, %.0f MB", p, get(c, "file-MB")), "< 100 MiB", "", verdict(p < 100))
		}
		if (has(j, "postings/s")) {
			r = get(j, "postings/s"); p = get(j, "peak-rss-MiB")
			row("(k) export JSONL (bin/tandem)", sprintf("%.0f postings/s", r), "(report only)", "-", "-")
			row("    peak RSS, file size", sprintf("%.1f MiB, %.0f MB", p, get(j, "file-MB")), "< 100 MiB", "", verdict(p < 100))
		}
		name = "BenchmarkExport/inprocess/"
		if (has(name "csv", "postings/s"))
			row("    in process csv/jsonl/hledger", sprintf("%.0f/%.0f/%.0f postings/s", get(name "csv", "postings/s"),
				get(name "jsonl", "postings/s"), get(name "hledger", "postings/s")), "", "", "")
		if (has("BenchmarkExport/verify", "entries/s"))
			row("(l) verify the database", sprintf("%.0f entries/s", get("BenchmarkExport/verify", "entries/s")), "(report only)", "-", "-")
		if (has("BenchmarkExport/seal10k", "entries/s"))
			row("(l) seal 10,000 new entries", sprintf("%.0f entries/s", get("BenchmarkExport/seal10k", "entries/s")), "(report only)", "-", "-")
	}
	END {
		tps = (tps1 + tps2) / 2
		a = "BenchmarkPostRandomPairs/clients=16"; b = "BenchmarkPostHotAccount/clients=16"
		c = "BenchmarkPostBatch/size=1000"; d = "BenchmarkBalance/"
		e = "BenchmarkNetworkIngest/clients=16"; f = "BenchmarkNetworkFactToAward/participants=200/load=500"
		g = "BenchmarkNetworkEvaluate/conversations=1000"; eb = "BenchmarkNetworkIngest/batch=500/clients=4"
		ra = get(a, "entries/s"); rb = get(b, "entries/s"); rc = get(c, "entries/s")
		printf "Summary (pgbench tps: %.1f before, %.1f after, mean %.1f; ratios use the mean)\n\n", tps1, tps2, tps
		row("figure", "measured", "target", "x pgbench", "result")
		row("------", "--------", "------", "---------", "------")
		rate_row("(a) random pairs, 16 clients", a, "entries/s", ">= 2000/s and >= 0.75x pgbench",
			ra >= 2000 && ra >= 0.75 * tps, "")
		rate_row("(b) hot account, 16 clients", b, "entries/s", ">= 1000/s and >= 0.5x (a)",
			rb >= 1000 && ra > 0 && rb >= 0.5 * ra, ra > 0 ? sprintf(" (%.2fx a)", rb / ra) : "")
		rate_row("(c) PostBatch, 1000 per call", c, "entries/s", ">= 20000/s", rc >= 20000, "")
		p99_row("(d) balance, current", d "current", 1)
		p99_row("(d) balance, as of seq", d "as_of_seq", 20)
		p99_row("(d) balance, as of time", d "as_of_time", 20)
		rate_row("(e) facts ingested, batches of 500", eb, "facts/s", ">= 2000/s (River not started)",
			get(eb, "facts/s") >= 2000, "")
		rate_row("(e) facts ingested, one a request", e, "facts/s", "(report: a transaction each)", 1, "")
		award_row("(f) fact to award, ingesting", f, 2000, 500)
		rate_row("(g) evaluations, 1000 convs", g, "evaluations/s", "(report only)", 1, "")
		payout_rows("(h) payouts, sandbox", "sandbox", ">= 500/s (River, 20 workers)", 500)
		payout_rows("(i) payouts, stripe-mock", "stripe", "(report only)", 0)
		approve_rows("(j) approval, one at a time", "BenchmarkPayoutsApprove/sandbox/approvals=200")
		dashboard_row("dashboard, 10,000 participants", "BenchmarkDashboard/participants=10000", 200)
		export_rows()
		printf "\n%d figure(s) missed their target.\n", misses
		exit (strict == 1 && misses > 0) ? 3 : 0
	}
' "$tmp/metrics" || { [[ $? == 3 ]] && exit 1; }
exit "$go_status"
