package migrations_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/migrations"
)

// emptyDB is a database with nothing in it (not dbtest's migrated template), dropped when the
// test ends.
func emptyDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	return dbtest.New(t, dbtest.Options{Empty: true})
}

// schema describes every object in the public schema, to compare a database before and after.
func schema(t *testing.T, pool *pgxpool.Pool, except ...string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT 'relation ' || c.relname || ' ' || c.relkind::text FROM pg_class c
		  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
		UNION ALL
		SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) FROM pg_proc p
		  JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
		UNION ALL
		SELECT 'trigger ' || tg.tgname || ' on ' || tg.tgrelid::regclass::text FROM pg_trigger tg
		  JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = 'public' AND NOT tg.tgisinternal
		UNION ALL
		SELECT 'type ' || t.typname FROM pg_type t
		  JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public' AND t.typrelid = 0
		ORDER BY 1`)
	require.NoError(t, err)
	all, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	var out []string
	for _, s := range all {
		skip := false
		for _, e := range except {
			if strings.Contains(s, e) {
				skip = true
			}
		}
		if !skip {
			out = append(out, s)
		}
	}
	return out
}

func exists(t *testing.T, pool *pgxpool.Pool, relation string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", relation).Scan(&ok))
	return ok
}

// allLabels names every embedded migration as Migrate reports it ("001_ledger", …).
func allLabels(t *testing.T) []string {
	t.Helper()
	all, err := migrations.All()
	require.NoError(t, err)
	var out []string
	for _, m := range all {
		out = append(out, fmt.Sprintf("%03d_%s", m.Version, m.Name))
	}
	return out
}

func TestAll(t *testing.T) {
	t.Parallel()
	all, err := migrations.All()
	require.NoError(t, err)
	require.NotEmpty(t, all)
	require.Equal(t, 1, all[0].Version)
	require.Equal(t, "ledger", all[0].Name)
	for i, m := range all {
		require.Equal(t, i+1, m.Version, "versions are consecutive from 1")
		file := fmt.Sprintf("%03d_%s.sql", m.Version, m.Name)
		disk, err := os.ReadFile(file)
		require.NoError(t, err, "the embedded migration %s is a file of this directory", file)
		require.Equal(t, string(disk), m.SQL)
		sum := sha256.Sum256(disk)
		require.Equal(t, hex.EncodeToString(sum[:]), m.Checksum)
	}
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := emptyDB(t)
	all, err := migrations.All()
	require.NoError(t, err)
	var labels []string
	for _, m := range all {
		labels = append(labels, fmt.Sprintf("%03d_%s", m.Version, m.Name))
	}

	first, err := migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	require.Equal(t, labels, first.Applied)
	require.NotEmpty(t, first.RiverApplied)
	for i, v := range first.RiverApplied {
		require.Equal(t, i+1, v, "River's versions are applied in order from 1")
	}

	for _, rel := range []string{"tandem_migrations", "ledger_currencies", "ledger_accounts", "ledger_entries",
		"ledger_postings", "ledger_entry_seq", "river_job", "river_leader", "river_migration", "river_queue"} {
		require.True(t, exists(t, pool, rel), "%s is missing after Migrate", rel)
	}
	rows, err := pool.Query(ctx, "SELECT version, name, checksum FROM tandem_migrations ORDER BY version")
	require.NoError(t, err)
	type applied struct {
		Version  int
		Name     string
		Checksum string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[applied])
	require.NoError(t, err)
	require.Len(t, got, len(all))
	for i, m := range all {
		require.Equal(t, applied{m.Version, m.Name, m.Checksum}, got[i])
	}
	var riverVersions []int
	rows, err = pool.Query(ctx, "SELECT version FROM river_migration ORDER BY version")
	require.NoError(t, err)
	riverVersions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	require.Equal(t, first.RiverApplied, riverVersions)

	before := schema(t, pool)
	second, err := migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	require.Empty(t, second.Applied, "the second run applied Tandem migrations again")
	require.Empty(t, second.RiverApplied, "the second run applied River migrations again")
	require.Equal(t, before, schema(t, pool), "the second run changed the schema")
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM tandem_migrations").Scan(&n))
	require.Equal(t, len(all), n)

	// The advisory lock is released: a session of its own (a pooled one may be the very
	// session that holds it, and session locks are re-entrant) can take it at once.
	other, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	require.NoError(t, err)
	defer other.Close(ctx)
	var locked bool
	require.NoError(t, other.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(0x74616e64656d6d)).Scan(&locked))
	require.True(t, locked, "Migrate left its advisory lock held")
}

// The migration's currency list and the Go list are one list (money.go says a test keeps them
// equal: this is it).
func TestCurrenciesMatchGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := emptyDB(t)
	_, err := migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	rows, err := pool.Query(ctx, "SELECT code, exponent::int FROM ledger_currencies ORDER BY code")
	require.NoError(t, err)
	type cur struct {
		Code     string
		Exponent int32
	}
	inDB, err := pgx.CollectRows(rows, pgx.RowToStructByPos[cur])
	require.NoError(t, err)
	var inGo []cur
	for _, c := range ledger.Currencies() {
		e, ok := ledger.Exponent(c)
		require.True(t, ok)
		inGo = append(inGo, cur{c, e})
	}
	require.Equal(t, inGo, inDB)
}

func TestMigrateDetectsChangedMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := emptyDB(t)
	_, err := migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)

	// As if 001_ledger.sql had been edited after it was applied.
	_, err = pool.Exec(ctx, "UPDATE tandem_migrations SET checksum = $1 WHERE version = 1", strings.Repeat("ab", 32))
	require.NoError(t, err)
	res, err := migrations.Migrate(ctx, pool, nil)
	require.ErrorIs(t, err, migrations.ErrChecksumMismatch)
	require.Contains(t, err.Error(), "001_ledger")
	require.Contains(t, err.Error(), "abababababab")
	require.Empty(t, res.Applied)
	require.Empty(t, res.RiverApplied)
}

// Regression: the mismatch message once sliced the stored checksum with got[:12], so a
// tandem_migrations row whose checksum is shorter than 12 characters (hand-written, e.g. when
// baselining an existing database) made Migrate panic with "slice bounds out of range"
// instead of returning ErrChecksumMismatch.
func TestMigrateShortStoredChecksumIsAMismatchNotAPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := emptyDB(t)
	_, err := migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, "UPDATE tandem_migrations SET checksum = 'manual' WHERE version = 1")
	require.NoError(t, err)

	err = func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("Migrate panicked: %v", p)
			}
		}()
		_, err = migrations.Migrate(ctx, pool, nil)
		return err
	}()
	require.ErrorIs(t, err, migrations.ErrChecksumMismatch)
}

// Migrations run from an embedded file system that a test cannot replace, so a failing
// migration is made by making the real one fail: a function with ledger_post's signature
// exists already, and 001_ledger.sql's CREATE FUNCTION ledger_post, near its end, fails after
// every table, trigger and index before it was created. None of them may remain.
func TestFailedMigrationLeavesDatabaseAsItWas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := emptyDB(t)
	_, err := pool.Exec(ctx, `CREATE FUNCTION ledger_post(
		uuid[], text[], text[], bytea[], text[], timestamptz[], jsonb[], uuid[], integer[],
		integer[], text[], text[], text[], numeric[], text[]) RETURNS void LANGUAGE sql AS 'SELECT NULL'`)
	require.NoError(t, err)
	before := schema(t, pool, "tandem_migrations")
	require.Len(t, before, 1, "only the stand-in function: %v", before)

	res, err := migrations.Migrate(ctx, pool, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), "001_ledger")
	require.Contains(t, err.Error(), `function "ledger_post"`)
	require.Contains(t, err.Error(), "already exists")
	require.Empty(t, res.Applied)
	require.Empty(t, res.RiverApplied, "River ran after a failed Tandem migration")

	require.Equal(t, before, schema(t, pool, "tandem_migrations"), "the failed migration left objects behind")
	for _, rel := range []string{"ledger_currencies", "ledger_accounts", "ledger_entries", "ledger_postings", "river_job"} {
		require.False(t, exists(t, pool, rel), "%s survived the failed migration", rel)
	}
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM tandem_migrations").Scan(&n))
	require.Zero(t, n, "a failed migration is recorded as applied")

	// The lock is free and the next run, once the obstacle is gone, applies everything.
	_, err = pool.Exec(ctx, `DROP FUNCTION ledger_post(uuid[], text[], text[], bytea[], text[], timestamptz[],
		jsonb[], uuid[], integer[], integer[], text[], text[], text[], numeric[], text[])`)
	require.NoError(t, err)
	res, err = migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	require.Equal(t, allLabels(t), res.Applied)
	require.NotEmpty(t, res.RiverApplied)
	require.True(t, exists(t, pool, "ledger_postings"))
}

// Two servers starting at once on a new database (each with its own pool): the advisory lock
// makes them take turns, and each migration is applied once.
func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool := emptyDB(t)
	const n = 4
	results := make([]migrations.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		p, err := pgxpool.New(ctx, pool.Config().ConnString())
		require.NoError(t, err)
		defer p.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = migrations.Migrate(ctx, p, nil)
		}()
	}
	wg.Wait()
	var applied []string
	var river []int
	for i := range n {
		require.NoError(t, errs[i])
		applied = append(applied, results[i].Applied...)
		river = append(river, results[i].RiverApplied...)
	}
	require.Equal(t, allLabels(t), applied, "each Tandem migration applied exactly once")
	rows, err := pool.Query(ctx, "SELECT version FROM river_migration ORDER BY version")
	require.NoError(t, err)
	riverVersions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	require.ElementsMatch(t, riverVersions, river, "each River migration applied exactly once")
}

// Regression: Migrate holds one of the pool's connections (the one with the advisory lock)
// for the whole call, and River's migrator once took another connection from the same pool:
// with a pool of one connection, Migrate waited for itself forever (here: until the
// context's deadline).
func TestMigrateOnSingleConnectionPool(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	base := emptyDB(t)
	cfg := base.Config().Copy()
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	res, err := migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err, "Migrate on a pool of one connection")
	require.Equal(t, allLabels(t), res.Applied)
}

// Regression, same cause: MaxConns concurrent Migrate calls on one pool each take a
// connection and queue on the advisory lock; the holder's River step then waited for a free
// connection that never came.
func TestConcurrentMigrateOnSharedPool(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pool := emptyDB(t)
	n := int(pool.Config().MaxConns)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = migrations.Migrate(ctx, pool, nil)
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "Migrate call %d of %d on a pool of %d connections", i+1, n, n)
	}
}

// TestFourEyesBackfillsApprovalDestinations: approvals recorded before 008 get the destination
// on file when the admin approved (the person's latest set at or before, at the provider of
// the disbursement's latest attempt, or at the only provider they had one at), else the
// destination of the latest attempt when it was submitted at or before the approval; with
// neither they stay NULL (unknown, which needs approving again). A destination set or an
// attempt made after the approval is not what was approved.
func TestFourEyesBackfillsApprovalDestinations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := emptyDB(t)
	all, err := migrations.All()
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `CREATE TABLE tandem_migrations (version integer PRIMARY KEY, name text NOT NULL,
		checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	require.NoError(t, err)
	for _, m := range all[:7] {
		_, err := pool.Exec(ctx, m.SQL)
		require.NoError(t, err, m.Name)
		_, err = pool.Exec(ctx, `INSERT INTO tandem_migrations (version, name, checksum) VALUES ($1, $2, $3)`, m.Version, m.Name, m.Checksum)
		require.NoError(t, err)
	}
	require.Equal(t, 8, all[7].Version)

	// Rows as 007 left them, written around the triggers and references that would want a
	// whole ledger behind them. Every approval was made at approved.
	approved := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return approved.Add(d) }
	people := []string{"ana", "ben", "cy", "dee", "eve", "fay"}
	ids := map[string]string{}
	for i, person := range people {
		ids[person] = fmt.Sprintf("00000000-0000-7000-8000-%012d", i+1)
	}
	type attempt struct {
		provider, destination string
		submitted             time.Time
	}
	attempts := map[string][]attempt{
		// Sent before the approval (its latest attempt too); nothing on file then.
		"ana": {{"sandbox", "sandbox:first", at(-2 * time.Hour)}, {"sandbox", "sandbox:latest", at(-time.Hour)}},
		// Its latest attempt was after the approval: not what was approved.
		"dee": {{"sandbox", "sandbox:dee-first", at(-time.Hour)}, {"sandbox", "sandbox:dee-later", at(2 * time.Hour)}},
		// Its attempt names the provider: the destination on file there then.
		"eve": {{"stripe", "acct_eve_later", at(time.Hour)}},
	}
	type destination struct {
		person, provider, account string
		set                       time.Time
	}
	destinations := []destination{
		{"ana", "sandbox", "sandbox:ana-now", at(24 * time.Hour)},
		// Set before, at, and after the approval: the one set at it was on file.
		{"ben", "stripe", "acct_old", at(-24 * time.Hour)},
		{"ben", "stripe", "acct_then", approved},
		{"ben", "stripe", "acct_new", at(time.Hour)},
		{"dee", "sandbox", "sandbox:dee-later", at(time.Hour)},
		{"eve", "stripe", "acct_eve", at(-24 * time.Hour)},
		{"eve", "sandbox", "sandbox:eve", at(-time.Hour)},
		{"eve", "stripe", "acct_eve_later", at(30 * time.Minute)},
		// Two providers on file and no attempt to say which was paid through.
		{"fay", "stripe", "acct_fay", at(-24 * time.Hour)},
		{"fay", "sandbox", "sandbox:fay", at(-time.Hour)},
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		for person, id := range ids {
			if _, err := tx.Exec(ctx, `INSERT INTO payouts_disbursements (id, program_id, person_id, amount, currency, source, state,
				requested_by, wallet, funding_entry_id, approvals_needed, approved_at)
				VALUES ($1, 'p1', $2, 150, 'USD', 'manual', 'approved', 'person:adm', 'participant/' || $2 || '/wallet', gen_random_uuid(), 1, $3)`,
				id, person, approved); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO payouts_approvals (disbursement_id, approver, actor, at) VALUES ($1, 'person:adm2', 'test', $2)`,
				id, approved); err != nil {
				return err
			}
			for n, a := range attempts[person] {
				if _, err := tx.Exec(ctx, `INSERT INTO payouts_attempts (disbursement_id, attempt, provider, destination, idempotency_key,
					pending_entry_id, submitted_at) VALUES ($1, $2, $3, $4, $5, gen_random_uuid(), $6)`,
					id, n+1, a.provider, a.destination, fmt.Sprintf("%s:%d", id, n+1), a.submitted); err != nil {
					return err
				}
			}
		}
		for _, d := range destinations {
			if _, err := tx.Exec(ctx, `INSERT INTO payouts_destinations (person_id, provider, account, set_by, set_at) VALUES ($1, $2, $3, 'test', $4)`,
				d.person, d.provider, d.account, d.set); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)

	_, err = migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	got := map[string]*string{}
	for person, id := range ids {
		var dest *string
		require.NoError(t, pool.QueryRow(ctx, `SELECT destination FROM payouts_approvals WHERE disbursement_id = $1`, id).Scan(&dest))
		got[person] = dest
	}
	str := func(s string) *string { return &s }
	require.Equal(t, map[string]*string{"ana": str("sandbox:latest"), "ben": str("acct_then"), "cy": nil, "dee": nil,
		"eve": str("acct_eve"), "fay": nil}, got)
	var round int
	require.NoError(t, pool.QueryRow(ctx, `SELECT round FROM payouts_approvals WHERE disbursement_id = $1`, ids["ana"]).Scan(&round))
	require.Equal(t, 1, round)
}
