package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

var admin = network.By{Principal: access.Principal{Name: "test-admin", Role: access.Admin, PersonID: "adm"}}

// waitFor polls cond until it holds or the test's deadline nears.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newApp(t *testing.T, pool *pgxpool.Pool) *app.App {
	t.Helper()
	a, err := app.New(pool, app.Config{})
	require.NoError(t, err)
	adminTokens(t, a)
	require.NoError(t, a.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	})
	return a
}

// TestMilestoneToWallet walks the whole path: a program, a participant and mentor with
// consent, a rule, four conversations logged unverified, verified by the coach, one
// evaluation job, the award in the wallet and its disbursement.
func TestMilestoneToWallet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := newApp(t, pool)
	n := a.Network

	_, err := n.CreateProgram(ctx, admin, network.NewProgram{ID: "p1", Name: "Pilot", Currency: "USD",
		StartsOn: "2026-01-01", EndsOn: "2026-12-31", AutoApproveLimit: "100.00"})
	require.NoError(t, err)
	_, err = n.Fund(ctx, admin, "p1", "1000.00", "fund-1")
	require.NoError(t, err)
	for _, np := range []network.NewPerson{
		{ID: "ana", Name: "Ana", Roles: []string{"participant"}},
		{ID: "cy", Name: "Cy", Roles: []string{"coach"}},
		{ID: "mo", Name: "Mo", Roles: []string{"mentor"}},
	} {
		_, err := n.AddPerson(ctx, admin, np)
		require.NoError(t, err)
	}
	_, err = n.Enrol(ctx, admin, "p1", "ana", "cy")
	require.NoError(t, err)

	// No consent: no connection can be recorded.
	_, err = n.Connect(ctx, admin, network.NewConnection{ParticipantID: "ana", OtherID: "mo", Role: "mentor", Origin: "matched", StartedOn: "2026-09-01"})
	require.ErrorIs(t, err, network.ErrNoConsent)
	for _, p := range []string{"ana", "mo"} {
		_, err := n.RecordConsent(ctx, admin, p, network.NewConsent{Given: true, SignedBy: p, SignedOn: "2026-09-01", Scope: "network facts for the pilot"})
		require.NoError(t, err)
	}
	c, err := n.Connect(ctx, admin, network.NewConnection{ParticipantID: "ana", OtherID: "mo", Role: "mentor", Origin: "matched", StartedOn: "2026-09-01"})
	require.NoError(t, err)
	_, _, err = n.SaveRule(ctx, admin, "p1", []byte(`{"id": "mentor-4", "title": "Met your mentor 4 times within 60 days",
		"count": "conversations", "where": {"role": "mentor"}, "at_least": 4, "within_days": 60,
		"award": {"amount": "50.00", "kind": "microgrant"}, "repeat": "once"}`))
	require.NoError(t, err)

	ana := network.By{Principal: access.Principal{Name: "ana-token", Role: access.Participant, PersonID: "ana"}}
	cy := network.By{Principal: access.Principal{Name: "cy-token", Role: access.Coach, PersonID: "cy"}}
	var ids []string
	for i := range 4 {
		cv, err := n.LogConversation(ctx, ana, network.NewConversation{ConnectionID: c.ID, OccurredAt: time.Date(2026, 10, 1+i, 17, 0, 0, 0, time.UTC),
			Channel: "video", Minutes: 30, Resources: []string{"advice"}, IdempotencyKey: fmt.Sprintf("ana-%d", i)})
		require.NoError(t, err)
		require.Equal(t, "unverified", cv.Status)
		ids = append(ids, cv.ID)
	}
	prog, err := n.Progress(ctx, "ana")
	require.NoError(t, err)
	require.Len(t, prog.Programs, 1)
	require.False(t, prog.Programs[0].Rules[0].Met)
	require.Contains(t, prog.Programs[0].Rules[0].Missing, "4 more verified mentor conversations")

	for _, id := range ids {
		_, err := n.Review(ctx, cy, id, network.ReviewVerify, "")
		require.NoError(t, err)
	}
	var awards []network.Award
	waitFor(t, "the award", func() bool {
		awards, err = n.Awards(ctx, network.AwardFilter{Participant: "ana"})
		require.NoError(t, err)
		return len(awards) == 1
	})
	require.Equal(t, network.AwardPosted, awards[0].Status)
	require.Equal(t, "award:p1:ana:mentor-4:once", awards[0].Key)
	b, err := a.Ledger.Balance(ctx, network.WalletAccount("ana"), ledger.AsOf{})
	require.NoError(t, err)
	// The award reached the wallet; the sandbox may have paid it out since (the wallet is then
	// 0 again), so the test reads what came in, not what is left.
	require.Equal(t, "50", b.PostedCredits.String())
	ds, err := a.Payouts.List(ctx, payouts.Filter{Person: "ana"})
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Contains(t, []string{payouts.Approved, payouts.Submitted, payouts.Paid}, ds[0].State)

	prog, err = n.Progress(ctx, "ana")
	require.NoError(t, err)
	require.True(t, prog.Programs[0].Rules[0].Met)
	require.Equal(t, "50", prog.Programs[0].Wallet.PostedCredits.String())
}
