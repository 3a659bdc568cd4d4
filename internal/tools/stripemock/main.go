// Command stripemock runs a command with a stripe-mock server (Stripe's official API mock)
// started for it:
//
//	stripemock --version v0.203.0 -- COMMAND ARGS...
//
// With STRIPE_MOCK_URL already set it runs COMMAND as is. Otherwise it picks a free loopback
// port, starts `go run github.com/stripe/stripe-mock@VERSION` there, waits until it answers,
// runs COMMAND with STRIPE_MOCK_URL set, and stops stripe-mock when COMMAND exits. It exits
// with COMMAND's status. The first run downloads and builds stripe-mock through the Go module
// proxy, which takes a while; later runs use Go's build cache.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() { os.Exit(run()) }

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "stripemock: "+format+"\n", args...) }

func run() int {
	fs := flag.NewFlagSet("stripemock", flag.ContinueOnError)
	version := fs.String("version", "", "stripe-mock version (required)")
	goCmd := fs.String("go", "go", "the go command")
	logPath := fs.String("log", ".tandem/stripe-mock.log", "stripe-mock's output (it logs every request)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	args := fs.Args()
	if len(args) == 0 || *version == "" {
		logf("usage: stripemock --version vX.Y.Z -- COMMAND ARGS...")
		return 2
	}
	if os.Getenv("STRIPE_MOCK_URL") != "" {
		return runChild(args, os.Environ())
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		logf("find a free port: %v", err)
		return 1
	}
	addr := l.Addr().String()
	_ = l.Close()
	mock := exec.Command(*goCmd, "run", "github.com/stripe/stripe-mock@"+*version, "-http-addr", addr,
		"-https-addr", "127.0.0.1:") // stripe-mock serves HTTPS too; let the system pick its port
	if err := os.MkdirAll(filepath.Dir(*logPath), 0o755); err != nil {
		logf("log: %v", err)
		return 1
	}
	logFile, err := os.Create(*logPath)
	if err != nil {
		logf("log: %v", err)
		return 1
	}
	defer logFile.Close()
	mock.Stdout, mock.Stderr = logFile, logFile
	mock.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // go run's child dies with the group
	if err := mock.Start(); err != nil {
		logf("start stripe-mock: %v", err)
		return 1
	}
	done := make(chan struct{})
	go func() { _ = mock.Wait(); close(done) }()
	stop := func() {
		_ = syscall.Kill(-mock.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-mock.Process.Pid, syscall.SIGKILL)
		}
	}
	defer stop()
	url := "http://" + addr
	if err := waitReady(url, 5*time.Minute, done); err != nil {
		logf("stripe-mock %s did not start: %v (its output is in %s)", *version, err, *logPath)
		return 1
	}
	logf("stripe-mock %s on %s (its output: %s)", *version, url, *logPath)
	return runChild(args, append(os.Environ(), "STRIPE_MOCK_URL="+url))
}

// waitReady polls stripe-mock until it answers an authenticated request.
func waitReady(url string, timeout time.Duration, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/balance", nil)
		req.SetBasicAuth("sk_test_123", "")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("it exited")
		case <-ctx.Done():
			return errors.New("timed out")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func runChild(args []string, env []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Env = os.Stdin, os.Stdout, os.Stderr, env
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		logf("run %s: %v", args[0], err)
		return 1
	}
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		logf("run %s: %v", args[0], err)
		return 1
	}
	return 0
}
