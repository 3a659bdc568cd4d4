package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/payouts"
)

// setupPayoutsCLI is setupCLI with the sandbox provider, whatever the environment says.
func setupPayoutsCLI(t *testing.T) *cliBundle {
	c := setupCLI(t)
	for _, v := range []string{"STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "TANDEM_SANDBOX_DELAY", "TANDEM_1099_THRESHOLD"} {
		t.Setenv(v, "")
	}
	return c
}

// cliDisbursement is what tandem payouts create, approve, show, submit and reject print.
type cliDisbursement struct {
	ID              string `json:"id"`
	ProgramID       string `json:"program_id"`
	PersonID        string `json:"person_id"`
	Amount          string `json:"amount"`
	Source          string `json:"source"`
	State           string `json:"state"`
	ApprovalsNeeded int    `json:"approvals_needed"`
	RequestedBy     string `json:"requested_by"`
	Transitions     []struct {
		From, To, Actor, Reason string
	} `json:"transitions"`
	Approvals []struct {
		Approver, Actor, Reason string
	} `json:"approvals"`
	Attempts []struct {
		Attempt        int    `json:"attempt"`
		Provider       string `json:"provider"`
		Destination    string `json:"destination"`
		IdempotencyKey string `json:"idempotency_key"`
		Outcome        string `json:"outcome"`
	} `json:"attempts"`
	FundReturnEntryID string `json:"fund_return_entry_id"`
}

func (c *cliBundle) disbursement(args ...string) cliDisbursement {
	c.t.Helper()
	out := c.ok("", append([]string{"payouts"}, args...)...)
	var d cliDisbursement
	require.NoError(c.t, json.Unmarshal([]byte(out), &d), out)
	require.NotEmpty(c.t, d.ID, out)
	return d
}

func requireAmountCLI(t *testing.T, want string, got any) {
	t.Helper()
	s, ok := got.(string)
	require.True(t, ok, "amount %v is not a string", got)
	require.True(t, decimal.RequireFromString(want).Equal(decimal.RequireFromString(s)), "want %s, got %s", want, s)
}

// TestPayoutsCLI walks tandem payouts: a program's policy, a manual disbursement approved on
// the command line by a named admin (who must hold an admin token), submitted and paid in
// process, a cap holding one back, a rejection that needs a reason, the 1099-NEC report.
func TestPayoutsCLI(t *testing.T) {
	c := setupPayoutsCLI(t)
	me := cliActor().Name
	now := time.Now().UTC()
	c.ok("", "network", "program", "create", "--id", "p1", "--name", "Pilot", "--currency", "USD",
		"--starts", now.AddDate(0, -1, 0).Format(time.DateOnly), "--ends", now.AddDate(0, 6, 0).Format(time.DateOnly), "--auto-approve", "50.00")
	c.ok("", "program", "fund", "p1", "1000.00", "--key", "f1")
	c.ok("", "network", "person", "add", "--id", "ana", "--name", "Ana", "--roles", "participant")
	c.ok("", "network", "person", "consent", "ana", "--signed-by", "Ana", "--scope", "payouts")
	c.ok("", "network", "enrol", "p1", "ana")

	// help, and mistakes of usage.
	out := c.ok("", "payouts", "help")
	require.Contains(t, out, "usage: tandem payouts")
	require.Contains(t, out, "approve ID --as admin:PERSON")
	require.Contains(t, out, "1099 [--year 2026]")
	_, err := c.run("", "payouts")
	require.ErrorIs(t, err, errUsage)
	_, err = c.run("", "payouts", "frobnicate")
	require.ErrorIs(t, err, errUsage)
	_, err = c.run("", "payouts", "show")
	require.ErrorIs(t, err, errUsage)

	// The policy: the default, then dual control from 400.00 and a monthly cap of 100.00.
	var pol map[string]any
	require.NoError(t, json.Unmarshal([]byte(c.ok("", "payouts", "policy", "p1")), &pol))
	require.Equal(t, true, pol["default"])
	requireAmountCLI(t, "500", pol["dual_control_threshold"])
	out = c.ok("", "payouts", "policy", "p1", "--dual-control", "400.00", "--monthly-cap", "100.00")
	require.NoError(t, json.Unmarshal([]byte(out), &pol), out)
	require.Equal(t, false, pol["default"], out)
	requireAmountCLI(t, "400", pol["dual_control_threshold"])
	requireAmountCLI(t, "100", pol["monthly_cap"])
	require.Nil(t, pol["yearly_cap"])
	require.EqualValues(t, 2, pol["auto_retries"], "retries keep their default")
	require.Equal(t, me, pol["set_by"])
	require.NoError(t, json.Unmarshal([]byte(c.ok("", "payouts", "policy", "p1")), &pol))
	requireAmountCLI(t, "400", pol["dual_control_threshold"])
	for _, bad := range [][]string{{"--dual-control", "-5"}, {"--monthly-cap", "lots"}, {"--monthly-cap", "500", "--yearly-cap", "400"},
		{"--retry-backoff", "soon"}, {"--auto-retries", "11"}} {
		_, err := c.run("", append([]string{"payouts", "policy", "p1"}, bad...)...)
		require.ErrorIs(t, err, payouts.ErrInvalid, "%v", bad)
	}

	// A manual disbursement above the auto-approve limit: one approval needed.
	d := c.disbursement("create", "--program", "p1", "--person", "ana", "--amount", "80.00", "--reason", "bus pass", "--key", "g1")
	id := d.ID
	require.Equal(t, payouts.AwaitingApproval, d.State)
	require.Equal(t, 1, d.ApprovalsNeeded)
	require.Equal(t, "80.00", d.Amount)
	require.Equal(t, "manual", d.Source)
	require.Equal(t, me, d.RequestedBy)
	require.Equal(t, id, c.disbursement("create", "--program", "p1", "--person", "ana", "--amount", "80.00", "--reason", "bus pass",
		"--key", "g1").ID, "the same key is the same disbursement")
	_, err = c.run("", "payouts", "create", "--program", "p1", "--person", "ana", "--amount", "80.00", "--key", "g-no-reason")
	require.ErrorIs(t, err, payouts.ErrInvalid)
	require.ErrorContains(t, err, "reason")

	out = c.ok("", "payouts", "list")
	require.Contains(t, out, "STATE")
	require.Contains(t, out, id)
	require.Regexp(t, id+`\s+p1\s+ana\s+80.00 USD\s+manual\s+awaiting_approval`, out)
	require.NotContains(t, c.ok("", "payouts", "list", "--state", "paid"), id)
	require.Contains(t, c.ok("", "payouts", "list", "--person", "ana", "--state", "awaiting_approval"), id)

	// Approving needs --as admin:PERSON, and PERSON must hold an active admin token.
	_, err = c.run("", "payouts", "approve", id)
	require.ErrorIs(t, err, errUsage)
	_, err = c.run("", "payouts", "approve", id, "--as", "participant:dana")
	require.ErrorIs(t, err, errUsage)
	_, err = c.run("", "payouts", "approve", id, "--as", "admin:dana")
	require.ErrorIs(t, err, access.ErrForbidden)
	require.ErrorContains(t, err, "dana holds no active admin token")
	require.ErrorContains(t, err, "tandem token create --role admin --person dana")
	c.ok("", "token", "create", "--role", "participant", "--person", "dana", "--name", "not an admin")
	_, err = c.run("", "payouts", "approve", id, "--as", "admin:dana")
	require.ErrorIs(t, err, access.ErrForbidden, "a participant token does not make an admin")
	require.Equal(t, payouts.AwaitingApproval, c.disbursement("show", id).State, "refusals approve nothing")

	c.ok("", "token", "create", "--role", "admin", "--person", "dana", "--name", "x")
	d = c.disbursement("approve", id, "--as", "admin:dana", "--reason", "pass checked")
	require.Equal(t, payouts.Approved, d.State)
	require.Len(t, d.Approvals, 1)
	require.Equal(t, "person:dana", d.Approvals[0].Approver)
	require.Equal(t, "pass checked", d.Approvals[0].Reason)
	_, err = c.run("", "payouts", "approve", id, "--as", "admin:dana")
	require.ErrorIs(t, err, payouts.ErrState)

	// submit pays it in this process, through the sandbox.
	d = c.disbursement("submit", id)
	require.Equal(t, payouts.Paid, d.State)
	require.Len(t, d.Attempts, 1)
	require.Equal(t, "paid", d.Attempts[0].Outcome)
	require.Equal(t, "sandbox", d.Attempts[0].Provider)
	require.Equal(t, "sandbox:ana", d.Attempts[0].Destination)
	require.Equal(t, id, d.Attempts[0].IdempotencyKey)
	var tos []string
	for _, tr := range d.Transitions {
		tos = append(tos, tr.To)
	}
	require.Equal(t, []string{"awaiting_approval", "approved", "submitted", "paid"}, tos)
	require.Equal(t, payouts.Paid, c.disbursement("submit", id).State, "a second submit sends nothing")
	require.Len(t, c.disbursement("show", id).Attempts, 1)
	require.Regexp(t, `posted\s+0.00 USD`, c.ok("", "ledger", "balance", "participant/ana/wallet"))
	require.Regexp(t, `posted\s+920.00 USD`, c.ok("", "ledger", "balance", "program/p1/fund"))
	_, err = c.run("", "payouts", "retry", id)
	require.ErrorIs(t, err, payouts.ErrState, "only failed disbursements are retried")

	// The monthly cap: 80.00 paid this month, 60.00 more would pass 100.00.
	over := c.disbursement("create", "--program", "p1", "--person", "ana", "--amount", "60.00", "--reason", "books", "--key", "g2")
	require.Equal(t, payouts.AwaitingApproval, over.State)
	_, err = c.run("", "payouts", "approve", over.ID, "--as", "admin:dana")
	require.ErrorIs(t, err, payouts.ErrCapExceeded)
	require.ErrorContains(t, err, "monthly cap")

	// A rejection needs a reason; with one, the money goes back to the fund.
	_, err = c.run("", "payouts", "reject", over.ID)
	require.ErrorIs(t, err, payouts.ErrInvalid)
	require.ErrorContains(t, err, "reason")
	require.Equal(t, payouts.AwaitingApproval, c.disbursement("show", over.ID).State)
	d = c.disbursement("reject", over.ID, "--reason", "over the monthly cap")
	require.Equal(t, payouts.Rejected, d.State)
	require.NotEmpty(t, d.FundReturnEntryID)
	require.Regexp(t, `posted\s+920.00 USD`, c.ok("", "ledger", "balance", "program/p1/fund"))

	// Dual control from the program's threshold, 400.00.
	big := c.disbursement("create", "--program", "p1", "--person", "ana", "--amount", "400.00", "--reason", "rent", "--key", "g3")
	require.Equal(t, 2, big.ApprovalsNeeded)
	d = c.disbursement("cancel", big.ID, "--reason", "paid by another program")
	require.Equal(t, payouts.Canceled, d.State)

	// The 1099-NEC report: nobody was paid a stipend.
	out = c.ok("", "payouts", "1099", "--year", "2026")
	require.Contains(t, out, "1099-NEC 2026: payees with stipends of 2000.00 USD or more")
	require.Contains(t, out, "COACH")
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 2, "a title and a header, no payee: %s", out)
	require.Contains(t, c.ok("", "payouts", "1099", "--year", "2026", "--threshold", "600.00"), "stipends of 600.00 USD or more")
	_, err = c.run("", "payouts", "1099", "--year", "1999")
	require.ErrorIs(t, err, payouts.ErrInvalid)
	_, err = c.run("", "payouts", "1099", "--threshold", "lots")
	require.ErrorIs(t, err, ledger.ErrInvalidAmount)

	// The periodic work, and reconciliation of the one sandbox transfer.
	require.Contains(t, c.ok("", "payouts", "run"), "sweep: ")
	var run payouts.Reconciliation
	out = c.ok("", "payouts", "reconcile")
	require.NoError(t, json.Unmarshal([]byte(out), &run), out)
	require.Equal(t, "sandbox", run.Provider)
	require.Equal(t, 1, run.ProviderRecords)
	require.Equal(t, 1, run.LedgerRecords)
	require.Empty(t, run.Differences)
	require.Contains(t, c.ok("", "payouts", "reconciliations"), `"provider": "sandbox"`)
}

// TestPayoutsCLIBadFlags: a flag the command does not know is a mistake of usage, as in the
// ledger's commands (exit status 2).
func TestPayoutsCLIBadFlags(t *testing.T) {
	c := setupPayoutsCLI(t)
	for _, args := range [][]string{{"payouts", "list", "--bogus"}, {"payouts", "policy", "p1", "--auto-retries", "many"}} {
		_, err := c.run("", args...)
		require.Error(t, err, "%v", args)
		assert.ErrorIs(t, err, errUsage, "%v", args)
	}
}
