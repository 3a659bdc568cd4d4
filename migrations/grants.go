package migrations

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultAppRole is the role the server runs as: `tandem migrate` grants it what the server
// needs and nothing more.
const DefaultAppRole = "tandem_app"

// updatableColumns are the columns of append-only tables the server may still UPDATE, and
// no others of those tables: a trigger decides what it accepts, the privilege covers these
// columns alone. network_programs.id: PostgreSQL asks for an UPDATE privilege to lock a row
// (SELECT … FOR NO KEY UPDATE), and a program's row is the mutex of its funding
// (network/facts.go); the trigger refuses every update. audit_log.repeats and last_at: a
// refusal repeated within the minute is counted on its first line (access.Record), and
// audit_log_guard lets only that count grow.
var updatableColumns = map[string][]string{"network_programs": {"id"}, "audit_log": {"repeats", "last_at"}}

// ErrUnsafeAppRole means the role named for the server could change what it must not: a
// superuser, the migrating role itself, or a member of it.
var ErrUnsafeAppRole = errors.New("the server's role must not be a superuser nor the owner of the tables")

// grantApp gives role (created NOLOGIN when missing) what the server needs and no more, on
// every table of the public schema as the migrations left it, and is re-run after every
// migration, so tables added later are covered:
//
//   - SELECT and INSERT on every table, UPDATE and DELETE on every table except where the
//     database refuses the change anyway: a table whose trigger refuses an UPDATE (or DELETE,
//     through a *_refuse_change function) gets no UPDATE (DELETE) privilege either, so its
//     history rests on two locks, not on a trigger alone. River's tables get full DML;
//     tandem_migrations and river_migration are read-only.
//   - USAGE on the sequences (identity columns), EXECUTE on the functions.
//   - UPDATE on a few columns of append-only tables (updatableColumns), where the trigger
//     decides, e.g. to let the server lock a row.
//   - never TRUNCATE, REFERENCES, TRIGGER, nor ownership: only an owner or a superuser can
//     ALTER TABLE … DISABLE TRIGGER, and only a superuser can SET session_replication_role.
//
// None of Tandem's functions is SECURITY DEFINER (a test checks it): triggers run with the
// rights of the server's role, so they open no way around these grants.
func grantApp(ctx context.Context, conn *pgx.Conn, role string) error {
	if role == "" {
		return nil
	}
	ident := pgx.Identifier{role}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %s: %w", role, err)
	}
	if !exists {
		// NOLOGIN: a login user is made a member (GRANT tandem_app TO …), or the role gets a
		// password (ALTER ROLE tandem_app LOGIN PASSWORD …) — see the README.
		_, err := conn.Exec(ctx, "CREATE ROLE "+ident+" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION")
		var pgErr *pgconn.PgError
		// Two databases of one cluster migrated at once both create it: one wins.
		if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505")) {
			return fmt.Errorf("create role %s: %w (create it yourself, or migrate as a role with CREATEROLE)", role, err)
		}
	}
	var super, member bool
	if err := conn.QueryRow(ctx, `SELECT r.rolsuper OR r.rolbypassrls, r.rolname = current_user OR pg_has_role($1, current_user, 'USAGE')
		FROM pg_roles r WHERE r.rolname = $1`, role).Scan(&super, &member); err != nil {
		return fmt.Errorf("look up role %s: %w", role, err)
	}
	if super || member {
		return fmt.Errorf("role %s: %w", role, ErrUnsafeAppRole)
	}

	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT c.relname,
			       bool_or(p.proname LIKE '%\_refuse\_change' AND t.tgtype & 16 <> 0) AS no_update,
			       bool_or(p.proname LIKE '%\_refuse\_change' AND t.tgtype & 8 <> 0) AS no_delete
			  FROM pg_class c
			  JOIN pg_namespace n ON n.oid = c.relnamespace
			  LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
			  LEFT JOIN pg_proc p ON p.oid = t.tgfoid
			 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
			 GROUP BY c.relname ORDER BY c.relname`)
		if err != nil {
			return fmt.Errorf("grant %s: list tables: %w", role, err)
		}
		type table struct {
			name               string
			noUpdate, noDelete bool
		}
		var tables []table
		var tb table
		var noUpdate, noDelete *bool
		if _, err := pgx.ForEachRow(rows, []any{&tb.name, &noUpdate, &noDelete}, func() error {
			tb.noUpdate = noUpdate != nil && *noUpdate
			tb.noDelete = noDelete != nil && *noDelete
			tables = append(tables, tb)
			return nil
		}); err != nil {
			return fmt.Errorf("grant %s: list tables: %w", role, err)
		}
		stmts := []string{
			"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM " + ident,
			"GRANT USAGE ON SCHEMA public TO " + ident,
			"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO " + ident,
			"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO " + ident,
		}
		for _, t := range tables {
			privs := []string{"SELECT"}
			if t.name != "tandem_migrations" && t.name != "river_migration" {
				privs = append(privs, "INSERT")
				if _, cols := updatableColumns[t.name]; !t.noUpdate && !cols {
					privs = append(privs, "UPDATE")
				}
				if !t.noDelete {
					privs = append(privs, "DELETE")
				}
			}
			stmts = append(stmts, fmt.Sprintf("GRANT %s ON %s TO %s", strings.Join(privs, ", "), pgx.Identifier{t.name}.Sanitize(), ident))
			if cols, ok := updatableColumns[t.name]; ok {
				quoted := make([]string, len(cols))
				for i, c := range cols {
					quoted[i] = pgx.Identifier{c}.Sanitize()
				}
				stmts = append(stmts, fmt.Sprintf("GRANT UPDATE (%s) ON %s TO %s", strings.Join(quoted, ", "), pgx.Identifier{t.name}.Sanitize(), ident))
			}
		}
		// Before PostgreSQL 15 every role could create tables in public.
		var create bool
		if err := tx.QueryRow(ctx, `SELECT has_schema_privilege($1, 'public', 'CREATE')`, role).Scan(&create); err != nil {
			return fmt.Errorf("grant %s: %w", role, err)
		}
		if create {
			stmts = append(stmts, "REVOKE CREATE ON SCHEMA public FROM PUBLIC", "REVOKE CREATE ON SCHEMA public FROM "+ident)
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("grant %s: %s: %w", role, s, err)
			}
		}
		return nil
	})
}
