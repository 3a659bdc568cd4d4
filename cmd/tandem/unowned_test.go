package main

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// TestUnownedMoneyCLI: tandem payouts lists awards whose evidence was retracted, shows what
// a partial return left in the wallet, pays it again (requested --as a named admin) or gives
// it back to the fund, and refuses when nothing is left.
func TestUnownedMoneyCLI(t *testing.T) {
	c := setupPayoutsCLI(t)
	now := time.Now().UTC()
	c.ok("", "network", "program", "create", "--id", "p1", "--name", "Pilot", "--currency", "USD",
		"--starts", now.AddDate(0, -1, 0).Format(time.DateOnly), "--ends", now.AddDate(0, 6, 0).Format(time.DateOnly), "--auto-approve", "100.00")
	c.ok("", "program", "fund", "p1", "1000.00", "--key", "f1")
	c.ok("", "network", "person", "add", "--id", "ana", "--name", "Ana", "--roles", "participant")
	c.ok("", "network", "person", "consent", "ana", "--signed-by", "Ana", "--scope", "payouts")
	c.ok("", "network", "enrol", "p1", "ana")
	c.ok("", "token", "create", "--role", "admin", "--person", "eli", "--name", "eli")

	help := c.ok("", "payouts", "help")
	require.Contains(t, help, "award-decide AWARD reverse|keep --reason TEXT")
	require.Contains(t, help, "repay-returned ID --reason TEXT --as admin:PERSON")
	require.Equal(t, "[]\n", c.ok("", "payouts", "retracted", "--program", "p1"))
	_, err := c.run("", "payouts", "award-decide", "0193a0a0-0000-7000-8000-000000000000", "keep", "--reason", "x")
	require.ErrorIs(t, err, network.ErrNotFound)
	_, err = c.run("", "payouts", "award-decide", "0193a0a0-0000-7000-8000-000000000000")
	require.ErrorIs(t, err, errUsage)

	d := c.disbursement("create", "--program", "p1", "--person", "ana", "--amount", "60.00", "--reason", "bus pass", "--key", "g1", "--as", "admin:eli")
	require.Equal(t, payouts.Paid, c.disbursement("submit", d.ID).State)
	var attempts struct {
		Attempts []struct {
			ProviderRef string `json:"provider_ref"`
		} `json:"attempts"`
	}
	out := c.ok("", "payouts", "show", d.ID)
	require.NoError(t, json.Unmarshal([]byte(out), &attempts), out)
	_, err = c.run("", "payouts", "return-to-fund", d.ID, "--reason", "nothing came back")
	require.ErrorIs(t, err, payouts.ErrState)

	// The provider gives 25.00 back; reconciliation brings it into the wallet.
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	require.NoError(t, err)
	defer pool.Close()
	sandbox := payouts.NewSandbox(pool, payouts.SandboxConfig{})
	require.NoError(t, sandbox.Reverse(context.Background(), attempts.Attempts[0].ProviderRef, decimal.RequireFromString("25.00")))
	c.ok("", "payouts", "reconcile")
	var m struct {
		Outstanding string `json:"outstanding"`
		Settlements []struct {
			Kind string `json:"kind"`
		} `json:"settlements"`
	}
	out = c.ok("", "payouts", "returned", d.ID)
	require.NoError(t, json.Unmarshal([]byte(out), &m), out)
	require.Equal(t, "25.00", m.Outstanding)

	_, err = c.run("", "payouts", "repay-returned", d.ID, "--reason", "new bank")
	require.ErrorIs(t, err, errUsage, "the new disbursement's requester is named")
	var repaid struct {
		Disbursement struct {
			ID, Amount, Source string
			RequestedBy        string `json:"requested_by"`
		} `json:"disbursement"`
	}
	out = c.ok("", "payouts", "repay-returned", d.ID, "--reason", "new bank", "--as", "admin:eli")
	require.NoError(t, json.Unmarshal([]byte(out), &repaid), out)
	require.Equal(t, "25.00", repaid.Disbursement.Amount)
	require.Equal(t, "manual", repaid.Disbursement.Source)
	require.Equal(t, "person:eli", repaid.Disbursement.RequestedBy)
	out = c.ok("", "payouts", "returned", d.ID)
	require.NoError(t, json.Unmarshal([]byte(out), &m), out)
	require.Equal(t, "0.00", m.Outstanding)
	require.Len(t, m.Settlements, 1)
	_, err = c.run("", "payouts", "return-to-fund", d.ID, "--reason", "again")
	require.ErrorIs(t, err, payouts.ErrState, "nothing returned remains")
}
