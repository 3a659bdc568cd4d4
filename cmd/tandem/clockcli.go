package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

const clockUsage = `usage: tandem program clock P [advance BY|TO [--reason TEXT]]

A sandbox program's test clock (README: "Test clocks"). Without advance, shows the program's
time, its offset from real time and every advance. advance moves it forward only: BY a
duration (72h, 90m, 3d, 2w) or TO a later date (2027-01-05) or time (RFC 3339). The next
tandem payouts run (or the periodic job) then forfeits, retries, approves and releases what
the program's new time makes due.
`

// clockCmd runs tandem program clock …
func clockCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, clockUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: tandem program clock needs a program", errUsage)
		}
		return nil
	}
	fs := flag.NewFlagSet("tandem program clock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	reason := fs.String("reason", "", "why")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	advance := len(pos) == 3 && pos[1] == "advance"
	if len(pos) != 1 && !advance {
		return fmt.Errorf("%w: tandem program clock P [advance BY|TO]", errUsage)
	}
	a, closeApp, err := openApp(ctx)
	if err != nil {
		return err
	}
	defer closeApp()
	if !advance {
		return jsonShow(stdout)(a.Payouts.Clock(ctx, pos[0]))
	}
	m := payouts.ClockMove{By: pos[2], Reason: *reason}
	if looksLikeTime(pos[2]) {
		m = payouts.ClockMove{To: pos[2], Reason: *reason}
	}
	c, err := a.Payouts.AdvanceClock(ctx, network.By{Principal: cliActor()}, pos[0], m)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: test clock advanced by %s to %s (%s)\n", c.Program, c.Advances[len(c.Advances)-1].By,
		c.Now.UTC().Format(time.RFC3339), c.Ahead())
	return nil
}

// looksLikeTime: a date (2027-01-05) or an RFC 3339 time, rather than a duration.
func looksLikeTime(s string) bool {
	return len(s) >= len(time.DateOnly) && strings.Count(s[:len(time.DateOnly)], "-") == 2
}
