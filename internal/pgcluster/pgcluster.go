// Package pgcluster runs a private PostgreSQL cluster from the server binaries installed on
// the machine, for `make run`, `make test` and `make bench`: no Docker, no shared server, no
// set-up beyond having PostgreSQL installed.
//
// The cluster listens on 127.0.0.1 only, on a free port, with trust authentication: it is
// reachable from this machine alone and holds development or test data, so a password would
// add set-up without adding safety. PostgreSQL refuses to run as root, so when the caller is
// root the server runs as the unprivileged `postgres` user (or `nobody`).
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// Bin holds the paths of the PostgreSQL programs.
type Bin struct {
	Dir     string // the directory holding initdb, pg_ctl and postgres
	InitDB  string
	PgCtl   string
	PgBench string // empty when not installed
}

// ErrNotInstalled means no PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries not found (initdb, pg_ctl): install them with `apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS), or set DATABASE_URL to a database you own")

// FindBinaries locates initdb and pg_ctl: on PATH first, else the newest version under
// libRoot (normally /usr/lib/postgresql). Symlinks are resolved so that pg_ctl finds the
// postgres binary beside the real initdb.
func FindBinaries(libRoot string) (Bin, error) {
	var dir string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir = filepath.Dir(p)
	} else {
		matches, _ := filepath.Glob(filepath.Join(libRoot, "*", "bin", "initdb"))
		sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
		if len(matches) > 0 {
			dir = filepath.Dir(matches[0])
		}
	}
	if dir == "" {
		return Bin{}, ErrNotInstalled
	}
	b := Bin{Dir: dir, InitDB: filepath.Join(dir, "initdb"), PgCtl: filepath.Join(dir, "pg_ctl")}
	for _, p := range []string{b.InitDB, b.PgCtl, filepath.Join(dir, "postgres")} {
		if _, err := os.Stat(p); err != nil {
			return Bin{}, fmt.Errorf("%w: %s is missing", ErrNotInstalled, p)
		}
	}
	if p := filepath.Join(dir, "pgbench"); exists(p) {
		b.PgBench = p
	} else if p, err := exec.LookPath("pgbench"); err == nil {
		b.PgBench = p
	}
	return b, nil
}

// version extracts the major version from …/postgresql/NN/bin/initdb for sorting.
func version(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Options configure a cluster.
type Options struct {
	// Dir holds the cluster's data. Created when missing.
	Dir string
	// Persistent keeps Dir when the cluster stops; otherwise Stop removes it.
	Persistent bool
	// Fsync keeps fsync, synchronous_commit and full_page_writes on. Off is faster and fine
	// for tests, whose data is thrown away; benchmarks and `make run` want it on.
	Fsync bool
	// Settings are extra server settings (name → value).
	Settings map[string]string
	// LibRoot is where to look for versioned binaries (default /usr/lib/postgresql).
	LibRoot string
	// Logf receives progress lines; nil is silent.
	Logf func(format string, args ...any)
}

// Cluster is a running private server.
type Cluster struct {
	bin  Bin
	opts Options
	port int
	cred *syscall.Credential
}

// Start initialises the cluster when Dir is new, and starts it on a free port.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.LibRoot == "" {
		opts.LibRoot = "/usr/lib/postgresql"
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	bin, err := FindBinaries(opts.LibRoot)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = dir
	c := &Cluster{bin: bin, opts: opts}
	if os.Geteuid() == 0 {
		if c.cred, err = unprivileged(); err != nil {
			return nil, err
		}
	}
	if err := c.prepareDir(); err != nil {
		return nil, err
	}
	if !exists(filepath.Join(dir, "PG_VERSION")) {
		opts.Logf("initdb %s", dir)
		args := []string{"-D", dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"}
		if !opts.Fsync {
			args = append(args, "--no-sync")
		}
		if out, err := c.command(ctx, bin.InitDB, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("initdb %s: %w\n%s", dir, err, out)
		}
	}
	// A server left running on this directory (a killed make run) is stopped first; a stale
	// postmaster.pid without a server is removed by pg_ctl itself.
	if c.command(ctx, bin.PgCtl, "status", "-D", dir).Run() == nil {
		opts.Logf("stopping a server left running on %s", dir)
		_ = c.command(ctx, bin.PgCtl, "stop", "-D", dir, "-m", "fast", "-w").Run()
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		c.port = port
		if lastErr = c.start(ctx); lastErr == nil {
			opts.Logf("PostgreSQL %s running on 127.0.0.1:%d (data %s)", bin.Dir, port, dir)
			return c, nil
		}
	}
	return nil, lastErr
}

func (c *Cluster) start(ctx context.Context) error {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(c.port),
		"unix_socket_directories": "",
		"max_connections":         "300",
		"shared_buffers":          "256MB",
	}
	if !c.opts.Fsync {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range c.opts.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var o []string
	for _, k := range keys {
		o = append(o, fmt.Sprintf("-c %s='%s'", k, settings[k]))
	}
	logFile := filepath.Join(c.opts.Dir, "server.log")
	out, err := c.command(ctx, c.bin.PgCtl, "start", "-D", c.opts.Dir, "-l", logFile, "-w", "-t", "60",
		"-o", strings.Join(o, " ")).CombinedOutput()
	if err != nil {
		tail, _ := os.ReadFile(logFile)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("start PostgreSQL on port %d: %w\n%s\n%s", c.port, err, out, tail)
	}
	return nil
}

// prepareDir creates Dir owned by the server's user, and lets that user reach it.
func (c *Cluster) prepareDir() error {
	// Ancestors are created traversable so the server's user can reach Dir; Dir itself is
	// private, as initdb requires.
	if err := os.MkdirAll(filepath.Dir(c.opts.Dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(c.opts.Dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if c.cred == nil {
		return nil
	}
	if err := filepath.Walk(c.opts.Dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(c.cred.Uid), int(c.cred.Gid))
	}); err != nil {
		return fmt.Errorf("hand %s to the postgres user: %w", c.opts.Dir, err)
	}
	// The server user must be able to traverse the ancestors (e.g. a checkout under /root).
	for p := filepath.Dir(c.opts.Dir); p != "/"; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("the postgres user cannot enter %s: run `chmod o+x %s`, or put the checkout elsewhere", p, p)
		}
	}
	return nil
}

// unprivileged returns the credentials the server runs under when we are root.
func unprivileged() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		u, err = user.Lookup("nobody")
	}
	if err != nil {
		return nil, errors.New("running as root, and neither a `postgres` nor a `nobody` user exists to run PostgreSQL (it refuses root): create one with `useradd --system postgres`")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.opts.Dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// Detach the server from our process group: a Ctrl-C in the terminal reaches pgrun,
	// which stops the server cleanly, rather than killing it mid-write.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port is the TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Dir is the data directory.
func (c *Cluster) Dir() string { return c.opts.Dir }

// Bin returns the binaries the cluster runs.
func (c *Cluster) Bin() Bin { return c.bin }

// URL returns a connection URL for database name, as the cluster's superuser.
func (c *Cluster) URL(name string) string { return c.URLAs("postgres", name) }

// URLAs returns a connection URL for database name as role (no password: trust
// authentication).
func (c *Cluster) URLAs(role, name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", url.PathEscape(role), c.port, name)
}

// CreateLoginRole creates role, or alters it when it exists, as a plain role that may log
// in: no superuser, no CREATEDB or CREATEROLE. `tandem migrate` grants it what the
// server needs.
func (c *Cluster) CreateLoginRole(ctx context.Context, role string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return err
	}
	verb := "CREATE"
	if exists { // e.g. created NOLOGIN by `tandem migrate`
		verb = "ALTER"
	}
	_, err = conn.Exec(ctx, verb+" ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION")
	return err
}

// CreateDatabase creates database name unless it exists.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// Stop shuts the server down (fast: open sessions are ended, committed data is safe) and,
// unless the cluster is persistent, removes its directory.
func (c *Cluster) Stop(ctx context.Context) error {
	out, err := c.command(ctx, c.bin.PgCtl, "stop", "-D", c.opts.Dir, "-m", "fast", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop PostgreSQL: %w\n%s", err, out)
	}
	if !c.opts.Persistent {
		return os.RemoveAll(c.opts.Dir)
	}
	return nil
}
