package app_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// TestServerRoleRunsTheFlow runs Tandem as the role the server logs in as (granted by the
// migrations, no DDL, no UPDATE or DELETE on history): funding, a disbursement approved by a
// second admin and paid through River, the seal job, an export and a verification.
func TestServerRoleRunsTheFlow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	owner, pool := dbtest.NewApp(t, dbtest.Options{MaxConns: 12})
	a := newApp(t, pool)
	newProgram(t, a.Network, "p1", "5000.00", "100.00")
	addMentor(t, a.Network, "mo")
	addParticipant(t, a.Network, "p1", "ana", "mo")
	p := a.Payouts

	d, err := p.Create(ctx, admin, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "300.00", Reason: "laptop repair", IdempotencyKey: "k1"})
	require.NoError(t, err)
	require.Equal(t, payouts.AwaitingApproval, d.State)
	_, err = approveSeen(ctx, p, admin2, d.ID, "ok")
	require.NoError(t, err)
	waitState(t, p, d.ID, payouts.Paid)
	requireAmount(t, "300", received(t, a, network.WalletAccount("ana")))

	// The seal job, through River, as this role.
	res, err := a.River.Insert(ctx, jobs.SealLedgerArgs{}, nil)
	require.NoError(t, err)
	waitFor(t, "the seal job", func() bool {
		var state string
		require.NoError(t, owner.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, res.Job.ID).Scan(&state))
		return state == "completed"
	})
	waitFor(t, "every entry sealed", func() bool {
		st, err := a.Ledger.SealStatus(ctx)
		require.NoError(t, err)
		return st.Head != nil && st.Unsealed == 0
	})

	var buf bytes.Buffer
	sum, err := a.Ledger.Export(ctx, &buf, ledger.ExportOptions{Format: ledger.FormatJSONL})
	require.NoError(t, err)
	require.Positive(t, sum.Entries)
	rep, err := ledger.VerifyExport(ctx, &buf, ledger.VerifyOptions{})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	rep, err = a.Ledger.Verify(ctx, ledger.VerifyOptions{Actor: "test"})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)

	var user string
	require.NoError(t, pool.QueryRow(ctx, "SELECT current_user").Scan(&user))
	require.Equal(t, "tandem_app", user)
}
