package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/network"
)

// TestLogConversationsBatch imports conversations in batches: one evaluation job per
// participant, idempotent replays, and a bad item failing the whole batch by position.
func TestLogConversationsBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := buildApp(t, pool, app.Config{})
	n := a.Network
	newProgram(t, n, "p1", "1000.00", "100.00", ruleMentor4)
	addMentor(t, n, "mo")
	conns := map[string]string{}
	for _, p := range []string{"ana", "ben", "cy"} {
		conns[p] = addParticipant(t, n, "p1", p, "mo")
	}
	require.False(t, t.Failed())
	jobs := func(p string) int {
		return queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones' AND args->>'participant' = $1
			AND state = 'available'`, p)
	}
	count := func() int { return queryInt(t, pool, `SELECT count(*) FROM network_conversations`) }
	item := func(p string, i int, verified bool, key string) network.NewConversation {
		return network.NewConversation{ConnectionID: conns[p], OccurredAt: time.Date(2026, 10, 1, 9, i, 0, 0, time.UTC),
			Channel: "video", Minutes: 20, Resources: []string{"advice"}, Verified: verified, IdempotencyKey: key}
	}

	// Start from an empty queue (the set-up's facts asked for evaluations too).
	_, err := pool.Exec(ctx, `DELETE FROM river_job`)
	require.NoError(t, err)
	var batch []network.NewConversation
	for i := range 4 {
		batch = append(batch, item("ana", i, true, fmt.Sprintf("ana-%d", i)), item("ben", i, i%2 == 0, ""))
	}
	out, err := n.LogConversations(ctx, admin, batch)
	require.NoError(t, err)
	require.Len(t, out, 8)
	require.Equal(t, "verified", out[0].Status)
	require.Equal(t, "ana", out[0].ParticipantID)
	require.Equal(t, "mentor", out[0].Role)
	require.Equal(t, "unverified", out[3].Status)
	require.Equal(t, 8, count())
	require.Equal(t, 1, jobs("ana"), "one evaluation per participant")
	require.Equal(t, 1, jobs("ben"))
	require.Equal(t, 0, jobs("cy"))

	// A replay returns the originals and records nothing.
	again, err := n.LogConversations(ctx, admin, []network.NewConversation{item("ana", 0, true, "ana-0")})
	require.NoError(t, err)
	require.True(t, again[0].Replayed)
	require.Equal(t, out[0].ID, again[0].ID)
	require.Equal(t, 8, count())

	// Bad items fail the batch, named by position, and nothing of it is recorded.
	bad := []struct {
		name  string
		items []network.NewConversation
		err   error
		msg   string
	}{
		{"bad channel", []network.NewConversation{item("cy", 1, false, ""), {ConnectionID: conns["cy"], OccurredAt: time.Now(), Channel: "fax", Minutes: 5}},
			network.ErrInvalid, "conversations[1]: invalid request: channel"},
		{"unknown connection", []network.NewConversation{item("cy", 1, false, ""), {ConnectionID: "018f0000-0000-7000-8000-000000000000",
			OccurredAt: time.Now(), Channel: "video", Minutes: 5}}, network.ErrNotFound, "conversations[1]"},
		{"key reused for other content", []network.NewConversation{item("cy", 1, false, ""), item("ana", 9, true, "ana-1")},
			network.ErrIdempotencyConflict, "conversations[1]"},
		{"key twice in the batch", []network.NewConversation{item("cy", 1, false, "k"), item("cy", 2, false, "k")},
			network.ErrInvalid, "conversations[1].idempotency_key"},
		{"empty", nil, network.ErrInvalid, "conversations"},
	}
	for _, c := range bad {
		_, err := n.LogConversations(ctx, admin, c.items)
		require.ErrorIs(t, err, c.err, c.name)
		require.ErrorContains(t, err, c.msg, c.name)
		require.Equal(t, 8, count(), c.name)
		require.Equal(t, 0, jobs("cy"), c.name)
	}

	// The jobs pay: ana's four verified conversations reach mentor-4; ben's two do not.
	require.NoError(t, a.Start(ctx))
	waitDrained(t, pool, 30*time.Second)
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM network_awards WHERE participant_id = 'ana'`))
	require.Equal(t, 0, queryInt(t, pool, `SELECT count(*) FROM network_awards WHERE participant_id = 'ben'`))
}
