package api_test

// BenchmarkDashboard is the program dashboard's render time (scripts/bench.sh, target p99 <
// 200 ms) for a program of 10,000 participants, each with two connections (a mentor shared
// with nine others, a professional shared with nineteen), bands on everyone, four verified
// conversations each over the program's year, a milestone award each (most paid, some in
// flight, some failed), a few ended connections and manual grants awaiting approval.
//
// The fixture is built once, through the Stores (every trigger, audit line and job insert
// runs, as in internal/app's benchmarks), 16 at a time; conversations go in batches
// (LogConversations) and awards are made by evaluating each participant. It takes a minute
// or two. Each op is one GET /admin/programs/{id} served by the handler (session, policy,
// the dashboard's queries, the charts and the template), as an admin; p50-ms and p99-ms are
// reported, ns/op dropped. TANDEM_BENCH_DASHBOARD_PARTICIPANTS changes the size.
//
// TANDEM_BENCH_DASHBOARD_DB=name keeps the fixture in database name on DATABASE_URL's server
// (created, migrated and filled the first time; migrated and reused, not dropped, after), for
// profiling the queries on it with psql or re-running the benchmark without the set-up. Drop
// it by hand; a fixture kept for days has dates that age (months shift).

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/time/rate"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/api"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/migrations"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

const (
	benchDashProgram  = "dash"
	benchDashClients  = 16
	benchDashMentors  = 10 // participants per mentor
	benchDashPros     = 20 // participants per professional
	benchDashConvs    = 4  // conversations per participant
	benchDashGrants   = 100
	benchDashEndEvery = 40 // one mentor connection in 40 ends
)

var benchDashAdmin = network.By{Principal: access.Principal{Name: "bench-admin", Role: access.Admin, PersonID: "bench-adm"}}

// benchDashRule: two verified conversations with one's mentor within 60 days, 25.00 (within
// the auto-approve limit: paid without an admin).
const benchDashRule = `{"id": "mentor-2", "title": "Met your mentor twice within 60 days", "count": "conversations",
	"where": {"role": "mentor", "verified": true}, "at_least": 2, "within_days": 60,
	"award": {"amount": "25.00", "kind": "microgrant"}, "repeat": "once"}`

func benchDashProgress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// benchDashParallel runs fn(0..n-1) on workers goroutines; the first error wins.
func benchDashParallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var failed atomic.Bool
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return first
}

// failsInSandbox: about 3% of the payouts fail, by person.
func failsInSandbox(p payouts.Payout) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(p.Person))
	if h.Sum32()%33 == 0 {
		return "account closed at the bank"
	}
	return ""
}

func BenchmarkDashboard(b *testing.B) {
	n := 10000
	if v := os.Getenv("TANDEM_BENCH_DASHBOARD_PARTICIPANTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < benchDashPros {
			b.Fatalf("TANDEM_BENCH_DASHBOARD_PARTICIPANTS=%q: a number from %d", v, benchDashPros)
		}
	}
	ctx := context.Background()
	pool, reuse := benchDashPool(b, ctx)
	a, err := app.New(pool, app.Config{Payouts: app.Payouts{Sandbox: payouts.SandboxConfig{Fail: failsInSandbox}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Ledger.Close)
	start := time.Now()
	if reuse {
		benchDashProgress("%s: the fixture kept in $TANDEM_BENCH_DASHBOARD_DB reused (its size is that it was built with)", b.Name())
	} else {
		benchDashFixture(b, ctx, a, n)
	}
	if _, err := pool.Exec(ctx, "ANALYZE"); err != nil {
		b.Fatal(err)
	}
	benchDashProgress("%s: fixture of %d participants ready in %v", b.Name(), n, time.Since(start).Round(time.Second))
	requireSameMetrics(b, a, benchDashProgram)

	srv := api.New(api.Config{Pool: pool, Ledger: a.Ledger, Access: a.Access, Network: a.Network, Payouts: a.Payouts, WriteRate: rate.Inf})
	_, secret, err := a.Access.CreateToken(ctx, access.Principal{Name: "bench"}, access.NewToken{Name: "bench admin", Role: access.Admin, PersonID: "bench-adm2"})
	if err != nil {
		b.Fatal(err)
	}
	sess, err := a.Access.SignIn(ctx, secret, "", "bench")
	if err != nil {
		b.Fatal(err)
	}
	get := func() (int, int) {
		req := httptest.NewRequest("GET", "/admin/programs/"+benchDashProgram, nil)
		req.AddCookie(&http.Cookie{Name: "tandem_session", Value: sess.ID})
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec.Code, rec.Body.Len()
	}
	if code, size := get(); code != http.StatusOK {
		b.Fatalf("dashboard: status %d", code)
	} else {
		benchDashProgress("%s: the dashboard is %d bytes", b.Name(), size)
	}

	b.Run(fmt.Sprintf("participants=%d", n), func(b *testing.B) {
		var lats []time.Duration
		for b.Loop() {
			t0 := time.Now()
			if code, _ := get(); code != http.StatusOK {
				b.Fatalf("dashboard: status %d", code)
			}
			lats = append(lats, time.Since(t0))
		}
		slices.Sort(lats)
		pct := func(p float64) float64 {
			i := max(0, min(len(lats)-1, int(math.Ceil(p*float64(len(lats))))-1))
			return float64(lats[i]) / float64(time.Millisecond)
		}
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(len(lats))/b.Elapsed().Seconds(), "pages/s")
		b.ReportMetric(0, "ns/op")
	})
}

// benchDashPool is a pool of 40 on a new test database, or on the kept one named by
// TANDEM_BENCH_DASHBOARD_DB (see BenchmarkDashboard), migrated; reuse says its fixture is built.
func benchDashPool(b *testing.B, ctx context.Context) (*pgxpool.Pool, bool) {
	name := os.Getenv("TANDEM_BENCH_DASHBOARD_DB")
	if name == "" {
		return dbtest.New(b, dbtest.Options{MaxConns: 40}), false
	}
	if !regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`).MatchString(name) {
		b.Fatalf("TANDEM_BENCH_DASHBOARD_DB=%q: a lower-case database name", name)
	}
	base, err := url.Parse(dbtest.URL(b))
	if err != nil {
		b.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, base.String())
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		b.Fatal(err)
	}
	if !exists {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			b.Fatal(err)
		}
	}
	base.Path = "/" + name
	cfg, err := pgxpool.ParseConfig(base.String())
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 40
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := migrations.Migrate(ctx, pool, nil); err != nil {
		b.Fatal(err)
	}
	var built bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM payouts_disbursements WHERE program_id = $1 AND source = 'manual')`,
		benchDashProgram).Scan(&built); err != nil {
		b.Fatal(err)
	}
	if !built {
		var program bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM network_programs WHERE id = $1)`, benchDashProgram).Scan(&program); err != nil {
			b.Fatal(err)
		} else if program {
			b.Fatalf("database %s holds a fixture left half built: drop it", name)
		}
	}
	return pool, built
}

// benchDashFixture builds the program of n participants (see BenchmarkDashboard).
//
// The people, their roles, consents, bands, wallets, enrolments and connections are written by
// SQL in one transaction (the triggers that guard them run; the audit lines and evaluation
// jobs of 70,000 single facts, which would take many minutes under fsync, are left out). The
// conversations go through network.Store.LogConversations in batches; the awards through
// the ledger's batch API, their rows, and payouts.Store.OnAward (the hook an evaluation
// calls), 500 a transaction. A quarter of the awards are then paid one by one through
// payouts.Store.Submit and the sandbox (each touches the hot cash account twice, which is
// what bounds the set-up); the rest stay approved, on their way.
func benchDashFixture(b testing.TB, ctx context.Context, a *app.App, n int) {
	b.Helper()
	net := a.Network
	now := time.Now().UTC()
	day := func(t time.Time) string { return t.Format(time.DateOnly) }
	termBeg := now.AddDate(0, 0, -360).Truncate(24 * time.Hour)
	p, err := net.CreateProgram(ctx, benchDashAdmin, network.NewProgram{ID: benchDashProgram, Name: "Dashboard bench", Currency: "USD",
		StartsOn: day(termBeg), EndsOn: day(now.AddDate(0, 0, 30)), AutoApproveLimit: "100.00"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := net.Fund(ctx, benchDashAdmin, benchDashProgram, "10000000.00", "bench-fund"); err != nil {
		b.Fatal(err)
	}
	rule, _, err := net.SaveRule(ctx, benchDashAdmin, benchDashProgram, []byte(benchDashRule))
	if err != nil {
		b.Fatal(err)
	}
	// Each step ends with ANALYZE: the next one's queries are planned on the tables as they
	// are now, not as they were when empty.
	timed := func(what string, count int, fn func() error) {
		b.Helper()
		t0 := time.Now()
		if err := fn(); err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		if _, err := a.Pool.Exec(ctx, "ANALYZE"); err != nil {
			b.Fatal(err)
		}
		benchDashProgress("%s: %d %s in %v", b.Name(), count, what, time.Since(t0).Round(time.Millisecond))
	}
	// Participant i starts 30 to 330 days ago (so the year's months all move) and meets
	// their mentor every week for four weeks from then; 60% are low band, as are 30% of the
	// mentors and professionals.
	startOf := func(i int) time.Time { return now.AddDate(0, 0, -30-(i*7919)%300).Truncate(24 * time.Hour) }
	mentors, pros := (n+benchDashMentors-1)/benchDashMentors, (n+benchDashPros-1)/benchDashPros
	timed("people with roles, consent, bands, wallets, enrolments and two connections each (SQL)", n+mentors+pros, func() error {
		starts := make([]time.Time, n)
		for i := range starts {
			starts[i] = startOf(i)
		}
		return pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) error {
			for _, st := range []struct {
				q    string
				args []any
			}{
				{`CREATE TEMP TABLE bench_people ON COMMIT DROP AS
					SELECT format('p%s', lpad(i::text, 5, '0')) AS id, format('Participant %s', i) AS name, 'participant' AS role,
						CASE WHEN i % 5 < 3 THEN 'low' ELSE 'high' END AS band FROM generate_series(0, $1 - 1) i
					UNION ALL SELECT format('m%s', lpad(i::text, 5, '0')), format('Mentor %s', i), 'mentor',
						CASE WHEN i % 10 < 3 THEN 'low' ELSE 'high' END FROM generate_series(0, $2 - 1) i
					UNION ALL SELECT format('pro%s', lpad(i::text, 5, '0')), format('Professional %s', i), 'professional',
						CASE WHEN i % 10 < 3 THEN 'low' ELSE 'high' END FROM generate_series(0, $3 - 1) i`, []any{n, mentors, pros}},
				{`INSERT INTO network_people (id, name, created_by) SELECT id, name, 'bench' FROM bench_people`, nil},
				{`INSERT INTO network_roles (person_id, role, since, granted_by) SELECT id, role, $1, 'bench' FROM bench_people`, []any{termBeg}},
				{`INSERT INTO network_consents (person_id, given, signed_by, guardian, signed_on, scope, recorded_by)
					SELECT id, true, name, false, $1::date, 'network facts for the dashboard bench', 'bench' FROM bench_people`, []any{day(termBeg)}},
				{`INSERT INTO network_bands (person_id, band, changed_by, reason) SELECT id, band, 'bench', 'intake form' FROM bench_people`, nil},
				{`UPDATE network_people p SET band = b.band FROM bench_people b WHERE b.id = p.id`, nil},
				// The wallets Enrol opens.
				{`INSERT INTO ledger_accounts (code, type, currency, no_overdraft, metadata)
					SELECT 'participant/' || id || '/wallet', 'liability', 'USD', true, jsonb_build_object('person', id)
					FROM bench_people WHERE role = 'participant'`, nil},
				{`INSERT INTO network_enrolments (program_id, person_id, enrolled_at, enrolled_by)
					SELECT $1, format('p%s', lpad((i - 1)::text, 5, '0')), s - interval '7 days', 'bench'
					FROM unnest($2::timestamptz[]) WITH ORDINALITY AS u(s, i)`, []any{benchDashProgram, starts}},
				{`INSERT INTO network_connections (id, participant_id, other_id, role, origin, started_on, created_by)
					SELECT gen_random_uuid(), format('p%s', lpad((i - 1)::text, 5, '0')), format('m%s', lpad(((i - 1) / $2)::text, 5, '0')),
						'mentor', 'matched', s::date, 'bench' FROM unnest($1::timestamptz[]) WITH ORDINALITY AS u(s, i)
					UNION ALL
					SELECT gen_random_uuid(), format('p%s', lpad((i - 1)::text, 5, '0')), format('pro%s', lpad(((i - 1) / $3)::text, 5, '0')),
						'professional', 'self_reported', s::date, 'bench' FROM unnest($1::timestamptz[]) WITH ORDINALITY AS u(s, i)`,
					[]any{starts, benchDashMentors, benchDashPros}},
				{`INSERT INTO network_connection_ends (connection_id, ended_on, retracted, reason, recorded_by)
					SELECT c.id, c.started_on + 14, false, 'moved away', 'bench' FROM network_connections c
					WHERE c.role = 'mentor' AND substring(c.participant_id FROM 2)::int % $1 = 0`, []any{benchDashEndEvery}},
			} {
				if _, err := tx.Exec(ctx, st.q, st.args...); err != nil {
					return fmt.Errorf("%.70s: %w", st.q, err)
				}
			}
			return nil
		})
	})
	conns := make([]string, n)
	rows, err := a.Pool.Query(ctx, `SELECT substring(participant_id FROM 2)::int, id::text FROM network_connections WHERE role = 'mentor'`)
	if err != nil {
		b.Fatal(err)
	}
	var i int
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&i, &id}, func() error { conns[i] = id; return nil }); err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	batches := (n*benchDashConvs + batch - 1) / batch
	var keys atomic.Int64
	timed("batches of verified conversations (LogConversations)", batches, func() error {
		return benchDashParallel(batches, 4, func(k int) error {
			var ncs []network.NewConversation
			for j := k * batch; j < min((k+1)*batch, n*benchDashConvs); j++ {
				i, c := j/benchDashConvs, j%benchDashConvs
				if c >= 2 && i%benchDashEndEvery == 0 {
					continue // the connection ended after its second week
				}
				at := startOf(i).Add(time.Duration(c*7*24+10) * time.Hour)
				resources := []string{"advice"}
				if c%2 == 1 {
					resources = nil
				}
				ncs = append(ncs, network.NewConversation{ConnectionID: conns[i], OccurredAt: at, Channel: "video", Minutes: 30,
					Resources: resources, Verified: true, IdempotencyKey: fmt.Sprintf("bench/%d", keys.Add(1))})
			}
			_, err := net.LogConversations(ctx, benchDashAdmin, ncs)
			return err
		})
	})
	// An award each, reached with the second conversation.
	const perTx = 500
	timed("awards (ledger batches, award rows, payouts.Store.OnAward)", n, func() error {
		return benchDashParallel((n+perTx-1)/perTx, 1, func(k int) error {
			return pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) error {
				var awards []network.Award
				var entries []ledger.NewEntry
				for i := k * perTx; i < min((k+1)*perTx, n); i++ {
					pid := fmt.Sprintf("p%05d", i)
					aw := network.Award{ID: uuid.Must(uuid.NewV7()).String(), Key: network.AwardKey(benchDashProgram, pid, rule.Rule.ID, "once"),
						ProgramID: benchDashProgram, ParticipantID: pid, RuleID: rule.Rule.ID, RuleVersion: rule.Version, Period: "once",
						Amount: rule.Rule.Award.Amount, Currency: "USD", Kind: rule.Rule.Award.Kind, Status: network.AwardPosted,
						Evidence: json.RawMessage(`[]`), ReachedAt: startOf(i).Add(7*24*time.Hour + 10*time.Hour)}
					awards = append(awards, aw)
					entries = append(entries, ledger.NewEntry{IdempotencyKey: aw.Key, Description: "microgrant: " + rule.Rule.Title,
						Metadata: json.RawMessage(fmt.Sprintf(`{"award_id":%q,"program":%q,"participant":%q,"flow":"award"}`, aw.ID, benchDashProgram, pid)),
						Postings: []ledger.Posting{
							{Account: p.FundAccount, Side: ledger.Debit, Amount: aw.Amount, Currency: "USD"},
							{Account: network.WalletAccount(pid), Side: ledger.Credit, Amount: aw.Amount, Currency: "USD"},
						}})
				}
				posted, err := a.Ledger.PostBatchTx(ctx, tx, entries)
				if err != nil {
					return err
				}
				for j := range awards {
					aw := &awards[j]
					aw.EntryID, aw.PostedAt = posted[j].ID.String(), &posted[j].PostedAt
					if _, err := tx.Exec(ctx, `INSERT INTO network_awards (id, award_key, program_id, participant_id, rule_id, rule_version, period,
						amount, currency, kind, status, entry_id, evidence, reached_at, posted_at)
						VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
						aw.ID, aw.Key, aw.ProgramID, aw.ParticipantID, aw.RuleID, aw.RuleVersion, aw.Period, aw.Amount.String(), aw.Currency,
						aw.Kind, aw.Status, posted[j].ID, aw.Evidence, aw.ReachedAt, aw.PostedAt); err != nil {
						return err
					}
					if err := a.Payouts.OnAward(ctx, tx, *aw, p); err != nil {
						return err
					}
				}
				return nil
			})
		})
	})
	rows, err = a.Pool.Query(ctx, `SELECT id FROM payouts_disbursements WHERE program_id = $1 AND state = 'approved' ORDER BY id`, benchDashProgram)
	if err != nil {
		b.Fatal(err)
	}
	approved, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		b.Fatal(err)
	}
	if len(approved) != n {
		b.Fatalf("%d awards approved for payment, for %d participants", len(approved), n)
	}
	toPay := approved[:n/4]
	timed("payouts submitted to the sandbox one by one (payouts.Store.Submit)", len(toPay), func() error {
		return benchDashParallel(len(toPay), benchDashClients, func(i int) error { return a.Payouts.Submit(ctx, toPay[i]) })
	})
	timed("manual grants awaiting approval (payouts.Store.Create)", benchDashGrants, func() error {
		return benchDashParallel(benchDashGrants, benchDashClients, func(i int) error {
			_, err := a.Payouts.Create(ctx, benchDashAdmin, payouts.NewDisbursement{Program: benchDashProgram,
				Person: fmt.Sprintf("p%05d", i*(n/benchDashGrants)), Amount: "250.00", Reason: "emergency grant",
				IdempotencyKey: fmt.Sprintf("bench-grant-%d", i)})
			return err
		})
	})
}
