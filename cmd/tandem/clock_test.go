package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/payouts"
)

// TestProgramClockCLI: tandem program clock P advance moves a sandbox program's clock
// forward, by a duration or to a date, and shows it; back in time, or under Stripe, it refuses.
func TestProgramClockCLI(t *testing.T) {
	c := setupPayoutsCLI(t)
	c.ok("", "network", "program", "create", "--id", "p1", "--name", "Pilot", "--currency", "USD",
		"--starts", "2026-01-01", "--ends", "2027-12-31")

	out := c.ok("", "program", "clock", "p1", "advance", "3d", "--reason", "try the window")
	require.Contains(t, out, "p1: test clock advanced by 72h0m0s to ")
	require.Contains(t, out, "(+3 days)")
	out = c.ok("", "network", "program", "clock", "p1")
	var clk map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &clk), out)
	require.Equal(t, "p1", clk["program"])
	require.Equal(t, true, clk["sandbox"])
	require.Len(t, clk["advances"], 1)
	require.Contains(t, out, `"offset": "72h0m0s"`)
	require.Contains(t, out, `"reason": "try the window"`)

	_, err := c.run("", "program", "clock", "p1", "advance", "2000-01-01")
	require.ErrorIs(t, err, payouts.ErrInvalid)
	_, err = c.run("", "program", "clock", "p1", "advance", "0s")
	require.ErrorIs(t, err, payouts.ErrInvalid)
	_, err = c.run("", "program", "clock", "p1", "forward", "2h")
	require.ErrorIs(t, err, errUsage)
	_, err = c.run("", "program", "clock")
	require.ErrorIs(t, err, errUsage)

	t.Setenv("STRIPE_SECRET_KEY", "sk_test_clock")
	_, err = c.run("", "program", "clock", "p1", "advance", "1h")
	require.ErrorIs(t, err, payouts.ErrNotSandbox)
}
