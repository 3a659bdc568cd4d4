// Package migrations holds Tandem's versioned SQL and applies it, together with River's own
// schema, to a PostgreSQL database.
//
// Tandem's files are named NNN_name.sql and applied in version order, each in its own
// transaction with its row in tandem_migrations, so a failed migration leaves the database as
// it was. A session-level advisory lock makes concurrent runs (two servers starting at once,
// parallel test packages) take turns. Applied files are checksummed: editing a migration
// after it shipped is reported instead of silently ignored.
//
// The runner is hand-written rather than taken from a library (jackc/tern was the candidate):
// it is under 150 lines, needs nothing beyond pgx, and the checksum check is one tern does not
// make. River's tables are migrated by River's own rivermigrate, in the same command.
package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed *.sql
var files embed.FS

// lockKey is the advisory lock held while migrating ("tandem-migrate" hashed by hand once).
const lockKey int64 = 0x74616e64656d6d

// Migration is one versioned SQL file.
type Migration struct {
	Version  int
	Name     string
	SQL      string
	Checksum string
}

// ErrChecksumMismatch means a migration file changed after it was applied.
var ErrChecksumMismatch = errors.New("migration changed after it was applied")

var fileName = regexp.MustCompile(`^(\d{3})_([a-z0-9_]+)\.sql$`)

// All returns Tandem's migrations in version order.
func All() ([]Migration, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q is not named NNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if prev, ok := seen[v]; ok {
			return nil, fmt.Errorf("migrations %s and %s share version %d", prev, e.Name(), v)
		}
		seen[v] = e.Name()
		body, err := fs.ReadFile(files, path.Join(".", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(body)
		out = append(out, Migration{Version: v, Name: m[2], SQL: string(body), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Result lists what a Migrate call applied.
type Result struct {
	Applied      []string // Tandem migrations applied by this call, as "NNN_name"
	RiverApplied []int    // River schema versions applied by this call
}

// Options tune MigrateWith.
type Options struct {
	Logger *slog.Logger // nil is silent
	// AppRole is the role the server runs as (default DefaultAppRole): created NOLOGIN when
	// missing, and granted what the server needs after the migrations (see grantApp). "-"
	// grants nothing.
	AppRole string
}

// Migrate brings the database up to date: Tandem's migrations first, then River's, then the
// server's role's grants (DefaultAppRole). Running it again changes nothing. It runs as the
// tables' owner.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (Result, error) {
	return MigrateWith(ctx, pool, Options{Logger: logger})
}

// MigrateWith is Migrate with options.
func MigrateWith(ctx context.Context, pool *pgxpool.Pool, opts Options) (Result, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var res Result
	all, err := All()
	if err != nil {
		return res, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("migrate: acquire connection: %w", err)
	}
	defer conn.Release()

	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return res, fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		// Unlock on a fresh context: the caller's may be done, and a held session lock would
		// outlive this call on a pooled connection.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey)
	}()

	// Checked first: a role without DDL (the server's) may run Migrate on a database that is
	// up to date, which then changes nothing.
	var have bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('tandem_migrations') IS NOT NULL`).Scan(&have); err != nil {
		return res, fmt.Errorf("migrate: look for tandem_migrations: %w", err)
	}
	if !have {
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS tandem_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			checksum   text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return res, fmt.Errorf("migrate: create tandem_migrations: %w", err)
		}
	}
	applied := map[int]string{}
	rows, _ := conn.Query(ctx, "SELECT version, checksum FROM tandem_migrations")
	var v int
	var sum string
	if _, err := pgx.ForEachRow(rows, []any{&v, &sum}, func() error { applied[v] = sum; return nil }); err != nil {
		return res, fmt.Errorf("migrate: read tandem_migrations: %w", err)
	}

	for _, m := range all {
		label := fmt.Sprintf("%03d_%s", m.Version, m.Name)
		if got, ok := applied[m.Version]; ok {
			if got != m.Checksum {
				return res, fmt.Errorf("migrate %s: %w (applied %s, file %s)", label, ErrChecksumMismatch, short(got), short(m.Checksum))
			}
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO tandem_migrations (version, name, checksum) VALUES ($1, $2, $3)",
				m.Version, m.Name, m.Checksum)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("migrate %s: %w", label, err)
		}
		logger.InfoContext(ctx, "applied migration", "migration", label)
		res.Applied = append(res.Applied, label)
	}

	// River's migrations run on the same connection, inside the advisory lock: through the
	// pool they would need a second connection, which concurrent callers waiting for the lock
	// could hold (a deadlock when the pool is small).
	migrator, err := rivermigrate.New(riverpgxv5.New(nil), &rivermigrate.Config{Logger: logger})
	if err != nil {
		return res, fmt.Errorf("migrate river: %w", err)
	}
	// One transaction per River version: some of River's migrations add enum values that a
	// later version uses, which PostgreSQL refuses within one transaction.
	for {
		var rr *rivermigrate.MigrateResult
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var err error
			rr, err = migrator.MigrateTx(ctx, tx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{MaxSteps: 1})
			return err
		})
		if err != nil {
			return res, fmt.Errorf("migrate river: %w", err)
		}
		if len(rr.Versions) == 0 {
			break
		}
		for _, v := range rr.Versions {
			res.RiverApplied = append(res.RiverApplied, v.Version)
		}
	}
	role := opts.AppRole
	if role == "" {
		role = DefaultAppRole
	}
	// Grants are the owner's to give: another role (the server's own) gives none.
	var owner bool
	if err := conn.QueryRow(ctx, `SELECT pg_has_role(current_user, relowner, 'USAGE') FROM pg_class WHERE oid = 'ledger_entries'::regclass`).Scan(&owner); err != nil {
		return res, fmt.Errorf("migrate: who owns the tables: %w", err)
	}
	if role != "-" && owner {
		if err := grantApp(ctx, conn.Conn(), role); err != nil {
			return res, fmt.Errorf("migrate: %w", err)
		}
	}
	return res, nil
}

// short abbreviates a checksum for messages.
func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}
