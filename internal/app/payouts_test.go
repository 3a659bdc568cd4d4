package app_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

var admin2 = network.By{Principal: access.Principal{Name: "test-admin-2", Role: access.Admin, PersonID: "adm2"}}
var admin3 = network.By{Principal: access.Principal{Name: "test-admin-3", Role: access.Admin, PersonID: "adm3"}}

func waitState(t *testing.T, p *payouts.Store, id, state string) payouts.Disbursement {
	t.Helper()
	var d payouts.Disbursement
	waitFor(t, "disbursement "+id+" "+state, func() bool {
		var err error
		d, err = p.Get(context.Background(), id)
		require.NoError(t, err)
		return d.State == state
	})
	return d
}

// TestDisbursementLife walks manual disbursements through the sandbox: requested by an admin
// who is a person, auto-approved and paid; one admin's approval; dual control by two different
// admins, self-approval refused.
func TestDisbursementLife(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := newApp(t, pool)
	newProgram(t, a.Network, "p1", "5000.00", "100.00")
	addMentor(t, a.Network, "mo")
	addParticipant(t, a.Network, "p1", "ana", "mo")
	p := a.Payouts

	small, err := p.Create(ctx, admin, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "50.00", Reason: "bus fare", IdempotencyKey: "k1"})
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, small.State)
	d := waitState(t, p, small.ID, payouts.Paid)
	require.Len(t, d.Attempts, 1)
	require.Equal(t, "paid", d.Attempts[0].Outcome)
	require.Equal(t, small.ID, d.Attempts[0].IdempotencyKey)
	requireAmount(t, "0", posted(t, a, network.WalletAccount("ana")))
	requireAmount(t, "50", received(t, a, network.WalletAccount("ana")))

	again, err := p.Create(ctx, admin, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "50.00", Reason: "bus fare", IdempotencyKey: "k1"})
	require.NoError(t, err)
	require.Equal(t, small.ID, again.ID, "the same key returns the first disbursement")
	require.Equal(t, "person:adm", again.RequestedBy)

	// An admin token that is no person cannot request one (it could then approve it as a person).
	token := network.By{Principal: access.Principal{Name: "ops-token", TokenID: "t-ops", Role: access.Admin}}
	_, err = p.Create(ctx, token, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "50.00", Reason: "bus fare", IdempotencyKey: "k-token"})
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	ds, err := p.List(ctx, payouts.Filter{Person: "ana"})
	require.NoError(t, err)
	require.Len(t, ds, 1, "nothing was made")

	mid, err := p.Create(ctx, admin, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "300.00", Reason: "laptop repair", IdempotencyKey: "k2"})
	require.NoError(t, err)
	require.Equal(t, payouts.AwaitingApproval, mid.State)
	_, err = approveSeen(ctx, p, admin, mid.ID, "")
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	_, err = approveSeen(ctx, p, admin2, mid.ID, "ok")
	require.NoError(t, err)
	waitState(t, p, mid.ID, payouts.Paid)

	big, err := p.Create(ctx, admin, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "600.00", Reason: "emergency rent", IdempotencyKey: "k3"})
	require.NoError(t, err)
	require.Equal(t, 2, big.ApprovalsNeeded)
	d, err = approveSeen(ctx, p, admin2, big.ID, "first")
	require.NoError(t, err)
	require.Equal(t, payouts.AwaitingApproval, d.State)
	_, err = approveSeen(ctx, p, admin2, big.ID, "again")
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	d, err = approveSeen(ctx, p, admin3, big.ID, "second")
	require.NoError(t, err)
	require.NotEqual(t, payouts.AwaitingApproval, d.State)
	waitState(t, p, big.ID, payouts.Paid)
	requireAmount(t, "950", received(t, a, network.WalletAccount("ana")))
	requireAmount(t, "0", posted(t, a, network.WalletAccount("ana")))
	requireAmount(t, "4050", posted(t, a, "program/p1/fund"))
	requireAmount(t, "4050", posted(t, a, network.CashAccount("USD")))

	// A failing destination: failed, retried when the person fixes the destination.
	_, err = p.SetDestination(ctx, admin, "ana", "fail:account-closed")
	require.NoError(t, err)
	f, err := p.Create(ctx, admin, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "20.00", Reason: "books", IdempotencyKey: "k4"})
	require.NoError(t, err)
	d = waitState(t, p, f.ID, payouts.Failed)
	require.Contains(t, d.Transitions[len(d.Transitions)-1].Reason, "account-closed")
	requireAmount(t, "20", posted(t, a, network.WalletAccount("ana")))
	dest, err := p.SetDestination(ctx, admin, "ana", "sandbox:ana-new-bank")
	require.NoError(t, err)
	require.Equal(t, []string{f.ID}, dest.Retried)
	d = waitState(t, p, f.ID, payouts.Paid)
	require.Len(t, d.Attempts, 2)
	require.Equal(t, f.ID+":2", d.Attempts[1].IdempotencyKey)
	requireAmount(t, "0", posted(t, a, network.WalletAccount("ana")))
	problems, err := a.Ledger.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// TestTransitionRowNeedsItsStateChange: the trail cannot be forged by a transition row that
// no state change goes with, nor a disbursement approved without its approvals, even by SQL.
func TestTransitionRowNeedsItsStateChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 4})
	a := buildApp(t, pool, app.Config{})
	newProgram(t, a.Network, "p1", "1000.00", "10.00")
	addMentor(t, a.Network, "mo")
	addParticipant(t, a.Network, "p1", "ana", "mo")
	d, err := a.Payouts.Create(ctx, admin, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "50.00", Reason: "books", IdempotencyKey: "k"})
	require.NoError(t, err)
	require.Equal(t, payouts.AwaitingApproval, d.State)

	_, err = pool.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason)
		VALUES ($1, 'awaiting_approval', 'rejected', 'mallory', 'forged')`, d.ID)
	requirePgConstraint(t, err, "payouts_transition")

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason)
		VALUES ($1, 'awaiting_approval', 'approved', 'mallory', 'no approvals')`, d.ID)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE payouts_disbursements SET state = 'approved', approved_at = now() WHERE id = $1`, d.ID)
	requirePgConstraint(t, err, "payouts_dual_control")

	got, err := a.Payouts.Get(ctx, d.ID)
	require.NoError(t, err)
	require.Equal(t, payouts.AwaitingApproval, got.State)
	require.Len(t, got.Transitions, 1)
}

func requirePgConstraint(t *testing.T, err error, name string) {
	t.Helper()
	var pg *pgconn.PgError
	require.ErrorAs(t, err, &pg)
	require.Equal(t, name, pg.ConstraintName, pg.Message)
}
