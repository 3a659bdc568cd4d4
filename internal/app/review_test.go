package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/network"
)

// TestAuditorFindings pins the fixes of the independent review: each case was reproduced
// against the code before the fix.
func TestAuditorFindings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 8})
	a := buildApp(t, pool, app.Config{})
	n := a.Network

	t.Run("a waiting award is not paid after consent is withdrawn", func(t *testing.T) {
		newProgram(t, n, "p1", "10.00", "100.00", ruleMentor4)
		addMentor(t, n, "mo")
		r := newRacer(t, n, "p1", "bea", "mo")
		verify(t, n, r.fourth)
		res, err := n.EvaluateParticipant(ctx, "bea")
		require.NoError(t, err)
		require.Equal(t, 1, res.Waiting)
		_, err = n.RecordConsent(ctx, admin, "bea", network.NewConsent{Given: false, SignedBy: "bea", SignedOn: "2026-10-02", Scope: "withdrawn"})
		require.NoError(t, err)
		_, err = n.Fund(ctx, admin, "p1", "100.00", "more")
		require.NoError(t, err)
		paid, err := n.ReleaseWaiting(ctx, "p1")
		require.NoError(t, err)
		require.Equal(t, 0, paid)
		require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM network_awards WHERE participant_id = 'bea' AND status = 'insufficient_funds'`))
		// Nor directly in SQL.
		_, err = pool.Exec(ctx, `UPDATE network_awards SET status = 'posted', entry_id = (SELECT id FROM ledger_entries LIMIT 1),
			posted_at = now() WHERE participant_id = 'bea'`)
		require.Error(t, err)
	})

	t.Run("changing how a rule repeats is refused", func(t *testing.T) {
		_, _, err := n.SaveRule(ctx, admin, "p1", []byte(`{"id": "mentor-4", "title": "Met your mentor 4 times", "count": "conversations",
			"where": {"role": "mentor"}, "at_least": 4, "award": {"amount": "50.00", "kind": "microgrant"},
			"repeat": "each", "cap": {"awards": 2, "per": "month"}}`))
		require.ErrorIs(t, err, network.ErrInvalid)
		require.ErrorContains(t, err, "new id")
	})

	t.Run("a party to a connection cannot verify it", func(t *testing.T) {
		_, err := n.AddPerson(ctx, admin, network.NewPerson{ID: "kim", Name: "Kim", Roles: []string{"coach"}})
		require.NoError(t, err)
		_, err = n.RecordConsent(ctx, admin, "kim", consent("kim"))
		require.NoError(t, err)
		conn := addParticipant(t, n, "p1", "ana", "mo")
		_, err = n.AssignCoach(ctx, admin, "p1", "ana", "kim")
		require.NoError(t, err)
		self, err := n.Connect(ctx, admin, network.NewConnection{ParticipantID: "ana", OtherID: "kim", Role: "near_peer_coach",
			Origin: "matched", StartedOn: "2026-09-01"})
		require.NoError(t, err)
		kim := network.By{Principal: access.Principal{Name: "kim", Role: access.Coach, PersonID: "kim"}}
		_, err = n.LogConversation(ctx, kim, network.NewConversation{ConnectionID: self.ID, OccurredAt: time.Date(2026, 10, 3, 9, 0, 0, 0, time.UTC),
			Channel: "video", Minutes: 30, Verified: true})
		require.ErrorIs(t, err, network.ErrFourEyes)
		cv, err := n.LogConversation(ctx, kim, network.NewConversation{ConnectionID: self.ID, OccurredAt: time.Date(2026, 10, 3, 9, 0, 0, 0, time.UTC),
			Channel: "video", Minutes: 30})
		require.NoError(t, err)
		_, err = n.Review(ctx, kim, cv.ID, network.ReviewVerify, "")
		require.ErrorIs(t, err, network.ErrFourEyes)
		// Her conversations with her mentor, kim may verify.
		other, err := n.LogConversation(ctx, kim, network.NewConversation{ConnectionID: conn, OccurredAt: time.Date(2026, 10, 3, 9, 0, 0, 0, time.UTC),
			Channel: "video", Minutes: 30, Verified: true})
		require.NoError(t, err)
		require.Equal(t, "verified", other.Status)
	})

	t.Run("a connection ends within its dates", func(t *testing.T) {
		cs, err := n.Connections(ctx, network.ConnectionFilter{Participant: "ana"})
		require.NoError(t, err)
		for _, d := range []string{"2026-08-31", time.Now().AddDate(0, 0, 2).Format(time.DateOnly)} {
			_, err := n.End(ctx, admin, cs[0].ID, network.EndConnection{EndedOn: d, Reason: "test"})
			require.ErrorIs(t, err, network.ErrInvalid, d)
		}
		_, err = pool.Exec(ctx, `INSERT INTO network_connection_ends (connection_id, ended_on, retracted, reason, recorded_by)
			VALUES ($1, '2026-08-01', false, 'r', 't')`, cs[0].ID)
		require.ErrorContains(t, err, "cannot end on 2026-08-01")
	})

	t.Run("enrolling someone as their own coach is a validation error", func(t *testing.T) {
		_, err := n.AddPerson(ctx, admin, network.NewPerson{ID: "lee", Name: "Lee", Roles: []string{"participant", "coach"}})
		require.NoError(t, err)
		_, err = n.Enrol(ctx, admin, "p1", "lee", "lee")
		require.ErrorIs(t, err, network.ErrInvalid)
	})

	t.Run("wallets cannot be overdrawn", func(t *testing.T) {
		acct, err := a.Ledger.Account(ctx, network.WalletAccount("ana"))
		require.NoError(t, err)
		require.True(t, acct.NoOverdraft)
	})
}
