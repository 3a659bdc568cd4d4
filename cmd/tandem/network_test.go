package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDemo runs tandem demo: the participant's wallet rises as the coach verifies her
// conversations, and the totals add up.
func TestNetworkCLI(t *testing.T) {
	c := setupCLI(t)
	c.ok("", "migrate")
	c.ok("", "network", "program", "create", "--id", "p1", "--name", "Pilot", "--currency", "USD",
		"--starts", "2026-01-01", "--ends", "2026-12-31", "--auto-approve", "100.00")
	require.Contains(t, c.ok("", "program", "fund", "p1", "500.00", "--key", "f1"), "funded p1 with 500.00")
	require.Contains(t, c.ok("", "program", "fund", "p1", "500.00", "--key", "f1"), "already posted under this key")
	for _, p := range [][]string{{"ana", "participant"}, {"cy", "coach"}, {"mo", "mentor"}} {
		c.ok("", "network", "person", "add", "--id", p[0], "--name", strings.ToUpper(p[0]), "--roles", p[1])
	}
	c.ok("", "network", "enrol", "p1", "ana", "--coach", "cy")
	_, err := c.run("", "network", "connect", "ana", "mo", "--role", "mentor", "--started", "2026-09-01")
	require.ErrorContains(t, err, "no consent on file")
	for _, p := range []string{"ana", "mo"} {
		c.ok("", "network", "person", "consent", p, "--signed-by", p, "--signed-on", "2026-09-01", "--scope", "pilot")
	}
	var conn struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(c.ok("", "network", "connect", "ana", "mo", "--role", "mentor", "--started", "2026-09-01")), &conn))
	c.ok(`{"id": "mentor-2", "title": "Two mentor talks", "count": "conversations", "where": {"role": "mentor"},
		"at_least": 2, "award": {"amount": "25.00", "kind": "microgrant"}, "repeat": "once"}`, "network", "rule", "save", "p1")
	var ids []string
	for i, at := range []string{"2026-10-01T17:00:00Z", "2026-10-08T17:00:00Z"} {
		var cv struct{ ID, Status string }
		out := c.ok("", "network", "converse", conn.ID, "--at", at, "--channel", "video", "--minutes", "30",
			"--as", "participant:ana", "--key", "k"+string(rune('0'+i)))
		require.NoError(t, json.Unmarshal([]byte(out), &cv))
		require.Equal(t, "unverified", cv.Status)
		ids = append(ids, cv.ID)
	}
	// A participant cannot verify, even her own.
	_, err = c.run("", "network", "verify", ids[0], "--as", "participant:ana")
	require.ErrorContains(t, err, "forbidden")
	for _, id := range ids {
		require.Contains(t, c.ok("", "network", "verify", id, "--as", "coach:cy"), `"status": "verified"`)
	}
	require.Contains(t, c.ok("", "network", "evaluate", "ana"), "1 awarded")
	require.Contains(t, c.ok("", "network", "evaluate", "ana"), "0 awarded") // awards once
	out := c.ok("", "network", "progress", "ana")
	require.Contains(t, out, "wallet 25.00 USD")
	require.Contains(t, out, "award:p1:ana:mentor-2:once: 25.00 USD posted")

	// A conversation logged without --at happened now.
	var now struct {
		OccurredAt time.Time `json:"occurred_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(c.ok("", "network", "converse", conn.ID, "--channel", "phone", "--minutes", "10",
		"--as", "participant:ana")), &now))
	require.WithinDuration(t, time.Now(), now.OccurredAt, time.Minute)

	// Bad input is refused with the field at fault.
	_, err = c.run(`{"id": "x", "title": "t", "count": "conversations", "at_least": 2, "rol": 1,
		"award": {"amount": "1.00", "kind": "microgrant"}, "repeat": "once"}`, "network", "rule", "save", "p1")
	require.ErrorContains(t, err, `unknown field "rol"`)
	_, err = c.run("", "network", "converse", conn.ID, "--at", "yesterday", "--channel", "video", "--minutes", "30")
	require.ErrorIs(t, err, errUsage)
}
