package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/tandemledger/tandem/internal/app"
)

// openApp opens the database and assembles Tandem for a command (River is not started: the
// server's workers run the jobs a command asks for). close releases both.
func openApp(ctx context.Context) (a *app.App, closeApp func(), err error) {
	pool, err := openPool(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := app.PayoutsFromEnv()
	if err == nil {
		a, err = app.New(pool, app.Config{Payouts: cfg})
	}
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return a, func() { a.Ledger.Close(); pool.Close() }, nil
}

// jsonShow returns a printer of a result as indented JSON, or of its error.
func jsonShow(w io.Writer) func(v any, err error) error {
	return func(v any, err error) error {
		if err != nil {
			return err
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
}

// argCount returns a check that a command got n positional arguments; what names them.
func argCount(command string, pos []string) func(n int, what string) error {
	return func(n int, what string) error {
		if len(pos) != n {
			return fmt.Errorf("%w: %s %s", errUsage, command, what)
		}
		return nil
	}
}
