// Command pgrun runs a command against a private PostgreSQL cluster:
//
//	pgrun [--dir DIR] [--persistent] [--fsync] [--db NAME] [--env-file F] -- COMMAND ARGS...
//
// With DATABASE_URL already set it runs COMMAND as is. Otherwise it starts a cluster
// (internal/pgcluster), creates database NAME and the login role the server runs as
// (tandem_app), runs COMMAND with DATABASE_URL (the cluster's superuser, who migrates and
// owns the tables), DATABASE_APP_URL (the server's role, granted by `tandem migrate`) and
// the PG* variables set, and stops the cluster when COMMAND exits — also on Ctrl-C, which is passed
// on to COMMAND so it can shut down first. It exits with COMMAND's status.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/tandemledger/tandem/internal/pgcluster"
	"github.com/tandemledger/tandem/migrations"
)

func main() {
	os.Exit(run())
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "pgrun: "+format+"\n", args...) }

func run() int {
	fs := flag.NewFlagSet("pgrun", flag.ContinueOnError)
	dir := fs.String("dir", "", "cluster directory (default: a fresh .tandem/pg-XXXX, removed afterwards)")
	persistent := fs.Bool("persistent", false, "keep the cluster's data when done")
	fsync := fs.Bool("fsync", false, "durable commits (fsync, synchronous_commit on)")
	db := fs.String("db", "tandem", "database to create and point DATABASE_URL at")
	envFile := fs.String("env-file", "", "write `export DATABASE_URL=… DATABASE_APP_URL=…` to this file while running")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	args := fs.Args()
	if len(args) == 0 {
		logf("usage: pgrun [flags] -- COMMAND ARGS...")
		return 2
	}
	if os.Getenv("DATABASE_URL") != "" {
		return runChild(args, os.Environ())
	}

	if *dir == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		*dir = filepath.Join(".tandem", "pg-"+hex.EncodeToString(b))
	}
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: *dir, Persistent: *persistent, Fsync: *fsync, Logf: logf})
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if err := c.Stop(sctx); err != nil {
			logf("%v", err)
			return
		}
		logf("PostgreSQL stopped")
	}()
	if err := c.CreateDatabase(ctx, *db); err != nil {
		logf("create database %s: %v", *db, err)
		return 1
	}
	// The role `tandem migrate` grants by default.
	appRole := migrations.DefaultAppRole
	if err := c.CreateLoginRole(ctx, appRole); err != nil {
		logf("create role %s: %v", appRole, err)
		return 1
	}
	url, appURL := c.URL(*db), c.URLAs(appRole, *db)
	if *envFile != "" {
		content := fmt.Sprintf("export DATABASE_URL=%q\nexport DATABASE_APP_URL=%q\n", url, appURL)
		if err := os.WriteFile(*envFile, []byte(content), 0o600); err != nil {
			logf("write %s: %v", *envFile, err)
		} else {
			logf("DATABASE_URL is in %s (`. %s` to use the CLI meanwhile)", *envFile, *envFile)
			defer os.Remove(*envFile)
		}
	}
	env := append(os.Environ(), "DATABASE_URL="+url, "DATABASE_APP_URL="+appURL, "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(c.Port()),
		"PGUSER=postgres", "PGDATABASE="+*db)
	if c.Bin().PgBench != "" {
		env = append(env, "PGBENCH="+c.Bin().PgBench)
	}
	return runChild(args, env)
}

// runChild runs the command and returns its exit status. SIGINT and SIGTERM are passed on;
// pgrun itself waits for the child, so the cluster outlives it.
func runChild(args, env []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Env = os.Stdin, os.Stdout, os.Stderr, env
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		logf("%v", err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var first time.Time
	for {
		select {
		case err := <-done:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				if st, ok := exit.Sys().(syscall.WaitStatus); ok && st.Signaled() {
					return 128 + int(st.Signal())
				}
				return exit.ExitCode()
			}
			if err != nil {
				logf("%v", err)
				return 1
			}
			return 0
		case sig := <-sigs:
			switch {
			case first.IsZero():
				first = time.Now()
				logf("%v: waiting for the command to finish (again after 10 s to kill it)", sig)
				_ = cmd.Process.Signal(sig)
			case time.Since(first) > 10*time.Second:
				logf("killing the command")
				_ = cmd.Process.Kill()
			}
		}
	}
}
