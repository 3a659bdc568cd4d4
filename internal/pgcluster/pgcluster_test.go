package pgcluster_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/pgcluster"
)

// requireBinaries skips the test, saying why, when this machine has no PostgreSQL server.
func requireBinaries(t *testing.T) {
	t.Helper()
	if _, err := pgcluster.FindBinaries("/usr/lib/postgresql"); err != nil {
		t.Skipf("skipping: this test starts a real PostgreSQL and none is installed: %v", err)
	}
}

// clusterDir returns a directory for a cluster inside t.TempDir().
//
// As root, pgcluster runs the server as the `postgres` user and hands it the data directory,
// but it does not open up the directories above it: it checks they can be traversed and
// fails with a `chmod o+x` hint when not (TestStartExplainsUnreachableDir). t.TempDir() makes
// mode 0700 directories, so the test opens its own temporary directories, as the hint says.
func clusterDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	if os.Geteuid() == 0 {
		root := filepath.Clean(os.TempDir())
		for p := base; p != root && p != "/" && p != "."; p = filepath.Dir(p) {
			st, err := os.Stat(p)
			require.NoError(t, err)
			require.NoError(t, os.Chmod(p, st.Mode().Perm()|0o011))
		}
	}
	return filepath.Join(base, "pg")
}

func startCluster(t *testing.T, opts pgcluster.Options) *pgcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := pgcluster.Start(ctx, opts)
	require.NoError(t, err)
	return c
}

// serverPID reads the postmaster's pid from its data directory.
func serverPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	require.NoError(t, err)
	require.Positive(t, pid)
	return pid
}

// processGone reports whether pid has exited. A zombie counts as gone: in a container whose
// init does not reap orphans, the stopped postmaster may linger as one.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	// pid (comm) STATE …; comm may hold spaces, so look after the last ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
}

func requirePortFree(t *testing.T, port int) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		_ = l.Close()
		return true
	}, 10*time.Second, 50*time.Millisecond, "port %d still in use after Stop", port)
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = conn.Close()
	}
	require.Error(t, err, "something still accepts connections on %s", addr)
}

func TestClusterLifecycle(t *testing.T) {
	requireBinaries(t)
	t.Parallel()
	dir := clusterDir(t)
	c := startCluster(t, pgcluster.Options{Dir: dir})
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = c.Stop(context.Background())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	require.Equal(t, dir, c.Dir())
	require.Positive(t, c.Port())
	require.Equal(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/x?sslmode=disable", c.Port()), c.URL("x"))
	bin := c.Bin()
	require.FileExists(t, bin.InitDB)
	require.FileExists(t, bin.PgCtl)
	require.FileExists(t, filepath.Join(bin.Dir, "postgres"))
	require.FileExists(t, filepath.Join(dir, "PG_VERSION"))

	if os.Geteuid() == 0 {
		// The server runs as an unprivileged user, which owns the data directory.
		st, err := os.Stat(dir)
		require.NoError(t, err)
		require.NotZero(t, st.Sys().(*syscall.Stat_t).Uid, "the data directory is owned by root")
	}

	admin, err := pgx.Connect(ctx, c.URL("postgres"))
	require.NoError(t, err)
	defer admin.Close(ctx)
	for name, want := range map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(c.Port()),
		"unix_socket_directories": "",
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"max_connections":         "300",
		"server_encoding":         "UTF8",
	} {
		var got string
		require.NoError(t, admin.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&got), name)
		require.Equal(t, want, got, name)
	}
	var collate string
	require.NoError(t, admin.QueryRow(ctx, "SELECT datcollate FROM pg_database WHERE datname = current_database()").Scan(&collate))
	require.Equal(t, "C", collate)
	var superuser bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&superuser))
	require.True(t, superuser)

	require.NoError(t, c.CreateDatabase(ctx, "tandem_test"))
	require.NoError(t, c.CreateDatabase(ctx, "tandem_test"), "creating an existing database is a no-op")
	require.NoError(t, c.CreateDatabase(ctx, `Odd "name"`), "names are quoted")
	var n int
	require.NoError(t, admin.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname IN ('tandem_test', 'Odd "name"')`).Scan(&n))
	require.Equal(t, 2, n)

	db, err := pgx.Connect(ctx, c.URL("tandem_test"))
	require.NoError(t, err)
	_, err = db.Exec(ctx, "CREATE TABLE t (v int); INSERT INTO t VALUES (41), (1)")
	require.NoError(t, err)
	require.NoError(t, db.QueryRow(ctx, "SELECT sum(v) FROM t").Scan(&n))
	require.Equal(t, 42, n)
	require.NoError(t, db.Close(ctx))

	// A plain login role, for the server: it connects, and is no superuser.
	_, err = admin.Exec(ctx, "CREATE ROLE app_role NOLOGIN")
	require.NoError(t, err)
	require.NoError(t, c.CreateLoginRole(ctx, "app_role"), "an existing NOLOGIN role may log in afterwards")
	require.NoError(t, c.CreateLoginRole(ctx, "other app"))
	require.Equal(t, fmt.Sprintf("postgres://other%%20app@127.0.0.1:%d/tandem_test?sslmode=disable", c.Port()), c.URLAs("other app", "tandem_test"))
	for _, role := range []string{"app_role", "other app"} {
		app, err := pgx.Connect(ctx, c.URLAs(role, "tandem_test"))
		require.NoError(t, err, role)
		var super, createRole bool
		require.NoError(t, app.QueryRow(ctx, "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user").Scan(&super, &createRole))
		require.False(t, super || createRole, role)
		require.NoError(t, app.Close(ctx))
	}

	pid := serverPID(t, dir)
	require.False(t, processGone(pid), "postmaster %d is not running", pid)

	// Stop ends open sessions (fast mode), waits for the server, and removes the directory.
	require.NoError(t, c.Stop(ctx))
	stopped = true
	require.Eventually(t, func() bool { return processGone(pid) }, 10*time.Second, 50*time.Millisecond,
		"postmaster %d still running after Stop", pid)
	requirePortFree(t, c.Port())
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, fs.ErrNotExist, "a non-persistent cluster's directory is removed")
	require.Error(t, admin.Ping(ctx), "the session survived Stop")
}

func TestClusterPersistentRestart(t *testing.T) {
	requireBinaries(t)
	t.Parallel()
	dir := clusterDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	c := startCluster(t, pgcluster.Options{Dir: dir, Persistent: true, Fsync: true, Settings: map[string]string{"work_mem": "7MB"}})
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	require.NoError(t, c.CreateDatabase(ctx, "keep"))
	db, err := pgx.Connect(ctx, c.URL("keep"))
	require.NoError(t, err)
	var setting string
	require.NoError(t, db.QueryRow(ctx, "SELECT current_setting('work_mem') || ' ' || current_setting('fsync')").Scan(&setting))
	require.Equal(t, "7MB on", setting)
	_, err = db.Exec(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')")
	require.NoError(t, err)
	require.NoError(t, db.Close(ctx))
	firstPID := serverPID(t, dir)

	// Starting again on a directory whose server still runs (a killed `make run`) stops that
	// server first, then starts afresh with the data.
	c2 := startCluster(t, pgcluster.Options{Dir: dir, Persistent: true})
	t.Cleanup(func() { _ = c2.Stop(context.Background()) })
	require.Eventually(t, func() bool { return processGone(firstPID) }, 10*time.Second, 50*time.Millisecond)
	secondPID := serverPID(t, dir)
	require.NotEqual(t, firstPID, secondPID)
	db, err = pgx.Connect(ctx, c2.URL("keep"))
	require.NoError(t, err)
	var v string
	require.NoError(t, db.QueryRow(ctx, "SELECT v FROM t").Scan(&v))
	require.Equal(t, "kept", v)
	require.NoError(t, db.Close(ctx))

	require.NoError(t, c2.Stop(ctx))
	require.Eventually(t, func() bool { return processGone(secondPID) }, 10*time.Second, 50*time.Millisecond)
	requirePortFree(t, c2.Port())
	require.FileExists(t, filepath.Join(dir, "PG_VERSION"), "a persistent cluster keeps its data")
	_, err = os.Stat(filepath.Join(dir, "postmaster.pid"))
	require.ErrorIs(t, err, fs.ErrNotExist, "a stopped server leaves no postmaster.pid")
}

// As root, a data directory below a directory the server's user cannot enter is refused with
// a hint, before initdb runs into a permission error of its own.
func TestStartExplainsUnreachableDir(t *testing.T) {
	requireBinaries(t)
	if os.Geteuid() != 0 {
		t.Skip("skipping: only root hands the directory to another user")
	}
	t.Parallel()
	base := t.TempDir()
	require.NoError(t, os.Chmod(base, 0o700))
	_, err := pgcluster.Start(context.Background(), pgcluster.Options{Dir: filepath.Join(base, "pg")})
	require.Error(t, err)
	require.Contains(t, err.Error(), "cannot enter "+base)
	require.Contains(t, err.Error(), "chmod o+x "+base)
}

func TestFindBinariesNotInstalled(t *testing.T) {
	t.Setenv("PATH", "")
	bogus := filepath.Join(t.TempDir(), "no-postgresql-here")
	_, err := pgcluster.FindBinaries(bogus)
	require.ErrorIs(t, err, pgcluster.ErrNotInstalled)
	msg := err.Error()
	require.Contains(t, msg, "apt-get install postgresql")
	require.Contains(t, msg, "brew install postgresql")
	require.Contains(t, msg, "DATABASE_URL")

	// Start reports the same, before touching the directory.
	dir := filepath.Join(t.TempDir(), "pg")
	_, err = pgcluster.Start(context.Background(), pgcluster.Options{Dir: dir, LibRoot: bogus})
	require.ErrorIs(t, err, pgcluster.ErrNotInstalled)
	require.Contains(t, err.Error(), "apt-get install postgresql")
	_, statErr := os.Stat(dir)
	require.ErrorIs(t, statErr, fs.ErrNotExist)
}

// fakeInstall lays out empty executables as …/VERSION/bin/NAME.
func fakeInstall(t *testing.T, root, version string, names ...string) string {
	t.Helper()
	dir := filepath.Join(root, version, "bin")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, n := range names {
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\nexit 1\n"), 0o755))
	}
	return dir
}

func TestFindBinariesPicksNewestVersion(t *testing.T) {
	t.Setenv("PATH", "")
	root := t.TempDir()
	fakeInstall(t, root, "9", "initdb", "pg_ctl", "postgres")
	fakeInstall(t, root, "14", "initdb", "pg_ctl", "postgres", "pgbench")
	want := fakeInstall(t, root, "16", "initdb", "pg_ctl", "postgres")
	b, err := pgcluster.FindBinaries(root)
	require.NoError(t, err)
	require.Equal(t, want, b.Dir, "16 is newer than 9 and 14 (numeric, not lexical, order)")
	require.Equal(t, filepath.Join(want, "initdb"), b.InitDB)
	require.Equal(t, filepath.Join(want, "pg_ctl"), b.PgCtl)
	require.Empty(t, b.PgBench, "no pgbench beside 16's initdb nor on PATH")

	// An installation without the server binary is reported, naming what is missing.
	broken := t.TempDir()
	dir := fakeInstall(t, broken, "17", "initdb", "pg_ctl")
	_, err = pgcluster.FindBinaries(broken)
	require.ErrorIs(t, err, pgcluster.ErrNotInstalled)
	require.Contains(t, err.Error(), filepath.Join(dir, "postgres"))
}

func TestFindBinariesFollowsPathSymlinks(t *testing.T) {
	root := t.TempDir()
	real := fakeInstall(t, root, "15", "initdb", "pg_ctl", "postgres", "pgbench")
	onPath := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.MkdirAll(onPath, 0o755))
	require.NoError(t, os.Symlink(filepath.Join(real, "initdb"), filepath.Join(onPath, "initdb")))
	t.Setenv("PATH", onPath)
	b, err := pgcluster.FindBinaries(filepath.Join(root, "elsewhere"))
	require.NoError(t, err)
	require.Equal(t, real, b.Dir, "pg_ctl must find postgres beside the real initdb")
	require.Equal(t, filepath.Join(real, "pgbench"), b.PgBench)
}
