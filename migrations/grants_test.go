package migrations_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/migrations"
)

// requireDenied runs sql on its own connection of pool and expects PostgreSQL to refuse it
// for want of a privilege or of ownership (42501), not for any other reason (a trigger's
// refusal would be P0001 or 23xxx: the trigger could then be switched off).
func requireDenied(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	_, err := pool.Exec(context.Background(), sql)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%s: want a refusal, got %v", sql, err)
	require.Equal(t, "42501", pgErr.Code, "%s: %s", sql, pgErr.Message)
}

// TestServerRoleCannotBypassHistory: the role the server runs as can neither switch off the
// triggers that keep the ledger and the audit trail append-only nor change their history
// itself, while it posts entries like the owner.
func TestServerRoleCannotBypassHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, app := dbtest.NewApp(t, dbtest.Options{MaxConns: 4})

	var super, createRole, createDB bool
	var user string
	require.NoError(t, app.QueryRow(ctx, `SELECT current_user, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user`).
		Scan(&user, &super, &createRole, &createDB))
	require.Equal(t, migrations.DefaultAppRole, user)
	require.False(t, super || createRole || createDB)

	// It works: accounts, an entry, its balances (a trigger updates them as this role).
	l := ledger.New(app, nil)
	t.Cleanup(l.Close)
	for _, a := range []ledger.NewAccount{
		{Code: "org/cash", Type: ledger.Asset, Currency: "USD"},
		{Code: "program/p/fund", Type: ledger.Equity, Currency: "USD"},
	} {
		_, _, err := l.CreateAccount(ctx, a)
		require.NoError(t, err)
	}
	hundred := decimal.RequireFromString("100.00")
	_, err := l.Post(ctx, ledger.NewEntry{IdempotencyKey: "fund-1", Description: "grant",
		Postings: []ledger.Posting{
			{Account: "org/cash", Side: ledger.Debit, Amount: hundred, Currency: "USD"},
			{Account: "program/p/fund", Side: ledger.Credit, Amount: hundred, Currency: "USD"},
		}})
	require.NoError(t, err)
	_, err = app.Exec(ctx, `INSERT INTO audit_log (actor, action, outcome) VALUES ('test', 'ledger.entry.post', 'ok')`)
	require.NoError(t, err)
	_, err = l.Seal(ctx, ledger.SealOptions{})
	require.NoError(t, err)

	for _, sql := range []string{
		`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only`,
		`ALTER TABLE ledger_postings DISABLE TRIGGER ALL`,
		`ALTER TABLE audit_log DISABLE TRIGGER USER`,
		`DROP TRIGGER audit_log_guard ON audit_log`,
		`SET session_replication_role = replica`,
		`CREATE TABLE sneaky (id int)`,
		`CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
		`UPDATE ledger_entries SET description = 'rewritten'`,
		`DELETE FROM ledger_entries`,
		`TRUNCATE ledger_entries CASCADE`,
		`UPDATE ledger_postings SET amount = amount * 2`,
		`DELETE FROM ledger_postings`,
		`TRUNCATE ledger_postings`,
		`UPDATE ledger_seal SET hash = prev_hash`,
		`DELETE FROM ledger_seal`,
		`TRUNCATE ledger_seal`,
		`DELETE FROM ledger_seal_checkpoints`,
		`UPDATE audit_log SET actor = 'someone else'`,
		`DELETE FROM audit_log`,
		`TRUNCATE audit_log`,
		`UPDATE payouts_transitions SET reason = 'rewritten'`,
		`DELETE FROM payouts_transitions`,
		`TRUNCATE payouts_transitions`,
		`DELETE FROM tandem_migrations`,
		`ALTER ROLE tandem_app SUPERUSER`,
		`SET ROLE postgres`,
	} {
		requireDenied(t, app, sql)
	}

	// Every table whose trigger refuses a change grants no privilege to make it, and no table
	// is the server's to truncate.
	rows, err := owner.Query(ctx, `
		SELECT c.relname, t.tgtype & 16 <> 0 AND has_table_privilege($1, c.oid, 'UPDATE'),
		       t.tgtype & 8 <> 0 AND has_table_privilege($1, c.oid, 'DELETE')
		  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_class c ON c.oid = t.tgrelid
		 WHERE p.proname LIKE '%\_refuse\_change'`, migrations.DefaultAppRole)
	require.NoError(t, err)
	var table string
	var upd, del bool
	n := 0
	_, err = pgx.ForEachRow(rows, []any{&table, &upd, &del}, func() error {
		n++
		require.False(t, upd, "%s: UPDATE granted", table)
		require.False(t, del, "%s: DELETE granted", table)
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, n, 20)
	var truncatable, definer []string
	require.NoError(t, owner.QueryRow(ctx, `SELECT coalesce(array_agg(c.relname), '{}') FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r' AND has_table_privilege($1, c.oid, 'TRUNCATE')`, migrations.DefaultAppRole).Scan(&truncatable))
	require.Empty(t, truncatable)
	// A SECURITY DEFINER function would run as the owner, whoever calls it.
	require.NoError(t, owner.QueryRow(ctx, `SELECT coalesce(array_agg(p.proname), '{}') FROM pg_proc p
		JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' AND p.prosecdef`).Scan(&definer))
	require.Empty(t, definer)

	// The history is intact.
	var entries int
	require.NoError(t, owner.QueryRow(ctx, `SELECT count(*) FROM ledger_entries WHERE description = 'grant'`).Scan(&entries))
	require.Equal(t, 1, entries)
}

// TestMigrateRefusesUnsafeAppRole: naming a superuser, or the owner itself, as the server's
// role is an error, not a silent grant.
func TestMigrateRefusesUnsafeAppRole(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 2})
	var me string
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT current_user").Scan(&me))
	_, err := migrations.MigrateWith(context.Background(), pool, migrations.Options{AppRole: me})
	require.ErrorIs(t, err, migrations.ErrUnsafeAppRole)
}

// TestMigrateGrantsNewTables: grants are given afresh on every run, so a table a later
// migration adds is the server's to use, and an append-only one stays append-only for it.
func TestMigrateGrantsNewTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, app := dbtest.NewApp(t, dbtest.Options{MaxConns: 2})
	_, err := owner.Exec(ctx, `
		CREATE TABLE later_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);
		CREATE TABLE later_history (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);
		CREATE TRIGGER later_history_append_only BEFORE UPDATE OR DELETE ON later_history
			FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();`)
	require.NoError(t, err)
	requireDenied(t, app, `INSERT INTO later_notes (body) VALUES ('x')`)

	_, err = migrations.Migrate(ctx, owner, nil)
	require.NoError(t, err)
	for _, sql := range []string{
		`INSERT INTO later_notes (body) VALUES ('x')`,
		`UPDATE later_notes SET body = 'y'`,
		`DELETE FROM later_notes`,
		`INSERT INTO later_history (body) VALUES ('x')`,
	} {
		_, err := app.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	requireDenied(t, app, `UPDATE later_history SET body = 'y'`)
	requireDenied(t, app, `DELETE FROM later_history`)
	requireDenied(t, app, `TRUNCATE later_notes`)
}
