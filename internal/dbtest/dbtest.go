// Package dbtest gives each test its own PostgreSQL database, cloned from a template that
// holds every migration, so tests run in parallel against a real server without sharing rows.
//
// The server is the one DATABASE_URL points at: `make test` starts a private cluster and sets
// it. The template is built once per migration set (its name carries a hash of the
// migrations), under an advisory lock so parallel test binaries build it once between them.
package dbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemledger/tandem/migrations"
)

// Options tune a test database.
type Options struct {
	MaxConns int32 // pool size (default 8)
	Empty    bool  // an empty database, without the migrations (to test the migrations)
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// URL returns the server's URL, failing the test with a hint when it is not set.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		t.Fatal("DATABASE_URL is not set: run the tests with `make test`, which starts a private PostgreSQL, or point DATABASE_URL at a server you own")
	}
	return u
}

// New returns a pool on a new database with every migration applied. The database is
// dropped when the test ends.
func New(t testing.TB, opts ...Options) *pgxpool.Pool {
	t.Helper()
	pool, _ := NewWithURL(t, opts...)
	return pool
}

// NewWithURL is New, also returning the database's URL (for code that opens its own pool).
func NewWithURL(t testing.TB, opts ...Options) (*pgxpool.Pool, string) {
	t.Helper()
	base := URL(t)
	ctx := context.Background()
	var opt Options
	if len(opts) > 0 {
		opt = opts[0]
	}
	template := "template0"
	if !opt.Empty {
		templateOnce.Do(func() { templateName, templateErr = buildTemplate(ctx, base) })
		if templateErr != nil {
			t.Fatalf("dbtest: build template database: %v", templateErr)
		}
		template = templateName
	}
	name := "t_" + randomHex(8)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("dbtest: connect %s: %v", redact(base), err)
	}
	defer admin.Close(ctx)
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template))
		var pgErr *pgconn.PgError
		// 55006: another session is copying or connected to the template; it passes.
		if err != nil && errors.As(err, &pgErr) && pgErr.Code == "55006" && attempt < 50 {
			time.Sleep(time.Duration(20+attempt*10) * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("dbtest: create database: %v", err)
	}
	dbURL := withDatabase(base, name)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("dbtest: parse url: %v", err)
	}
	cfg.MaxConns = 8
	if opt.MaxConns > 0 {
		cfg.MaxConns = opt.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("dbtest: open pool: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		conn, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Logf("dbtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			t.Logf("dbtest: drop %s: %v", name, err)
		}
	})
	return pool, dbURL
}

// AppURL returns dbURL (a database of New's) as the server's role: DATABASE_APP_URL's user
// and password (pgrun sets it to the tandem_app login it created), on dbURL's database. The
// migrations granted that role what the server needs and no more (migrations.DefaultAppRole).
func AppURL(t testing.TB, dbURL string) string {
	t.Helper()
	app := os.Getenv("DATABASE_APP_URL")
	if app == "" {
		t.Fatal("DATABASE_APP_URL is not set: run the tests with `make test` (pgrun sets it to the server's role), or point it at a login of that role (tandem_app) on DATABASE_URL's server")
	}
	a, err := url.Parse(app)
	if err != nil {
		t.Fatalf("dbtest: DATABASE_APP_URL: %v", err)
	}
	d, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	d.User = a.User
	return d.String()
}

// NewApp is New, also returning a pool on the same database as the server's role (AppURL):
// tests that must hold for the server itself run through it, the owner's pool sets up and
// inspects.
func NewApp(t testing.TB, opts ...Options) (owner, app *pgxpool.Pool) {
	t.Helper()
	owner, dbURL := NewWithURL(t, opts...)
	cfg, err := pgxpool.ParseConfig(AppURL(t, dbURL))
	if err != nil {
		t.Fatalf("dbtest: parse app url: %v", err)
	}
	cfg.MaxConns = owner.Config().MaxConns
	app, err = pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("dbtest: open app pool: %v", err)
	}
	var user string
	if err := app.QueryRow(context.Background(), "SELECT current_user").Scan(&user); err != nil {
		app.Close()
		t.Fatalf("dbtest: connect as the server's role: %v", err)
	}
	// Closed before the database is dropped (cleanups run last-registered first).
	t.Cleanup(app.Close)
	return owner, app
}

// buildTemplate creates (once per migration set) a migrated template database.
func buildTemplate(ctx context.Context, base string) (string, error) {
	all, err := migrations.All()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, m := range all {
		h.Write([]byte(m.Checksum))
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/riverqueue/river" {
				h.Write([]byte(d.Version))
			}
		}
	}
	name := "tandem_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", redact(base), err)
	}
	defer admin.Close(ctx)
	const lock = 0x64627465737400 // "dbtest"
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", lock); err != nil {
		return "", err
	}
	defer admin.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lock) //nolint:errcheck

	var ready *bool
	err = admin.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&ready)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", err
	}
	if ready != nil && *ready {
		return name, nil
	}
	if ready != nil { // a build that died half way
		if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE %s WITH (FORCE)", name)); err != nil {
			return "", err
		}
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s", name)); err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, withDatabase(base, name))
	if err != nil {
		return "", err
	}
	_, err = migrations.Migrate(ctx, pool, nil)
	pool.Close()
	if err != nil {
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH is_template true", name)); err != nil {
		return "", err
	}
	return name, nil
}

func withDatabase(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = "/" + name
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable url)"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
