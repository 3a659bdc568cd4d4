package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
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

// TestPayoutsCLI walks tandem payouts: a program's policy (changed a setting at a time), a
// manual disbursement requested and approved on the command line by two named admins (who
// must hold admin tokens; the requester may not approve), submitted and paid in process, a
// cap holding one back, a rejection that needs a reason, a commitment, the 1099-NEC report.
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
	require.Contains(t, out, "create --program P --person X --amount 250.00 --reason TEXT --key K --as admin:PERSON")
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
	policy := func(args ...string) map[string]any {
		t.Helper()
		out := c.ok("", append([]string{"payouts", "policy", "p1"}, args...)...)
		var pol map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &pol), out)
		return pol
	}
	pol = policy()
	require.Equal(t, true, pol["default"])
	requireAmountCLI(t, "500", pol["dual_control_threshold"])
	pol = policy("--dual-control", "400.00", "--monthly-cap", "100.00")
	require.Equal(t, false, pol["default"], pol)
	requireAmountCLI(t, "400", pol["dual_control_threshold"])
	requireAmountCLI(t, "100", pol["monthly_cap"])
	require.Nil(t, pol["yearly_cap"])
	require.EqualValues(t, 2, pol["auto_retries"], "retries keep their default")
	require.EqualValues(t, 30, pol["remediation_days"], "the remediation window keeps its default")
	require.Equal(t, "1h0m0s", pol["retry_backoff"], "the backoff keeps its default")
	require.Equal(t, me, pol["set_by"])
	pol = policy()
	requireAmountCLI(t, "400", pol["dual_control_threshold"])
	requireAmountCLI(t, "100", pol["monthly_cap"])

	// One setting at a time: what is not given stays as it was; "none" removes a cap.
	pol = policy("--yearly-cap", "1000.00", "--remediation-days", "20", "--retry-backoff", "30m")
	requireAmountCLI(t, "400", pol["dual_control_threshold"])
	requireAmountCLI(t, "100", pol["monthly_cap"])
	requireAmountCLI(t, "1000", pol["yearly_cap"])
	require.EqualValues(t, 20, pol["remediation_days"])
	require.Equal(t, "30m0s", pol["retry_backoff"])
	require.EqualValues(t, 2, pol["auto_retries"])
	pol = policy("--auto-retries", "0")
	require.EqualValues(t, 0, pol["auto_retries"], "zero retries is a setting")
	requireAmountCLI(t, "400", pol["dual_control_threshold"])
	requireAmountCLI(t, "100", pol["monthly_cap"])
	requireAmountCLI(t, "1000", pol["yearly_cap"])
	require.EqualValues(t, 20, pol["remediation_days"])
	require.Equal(t, "30m0s", pol["retry_backoff"])
	pol = policy("--monthly-cap", "none")
	require.Nil(t, pol["monthly_cap"], "none removes the monthly cap")
	requireAmountCLI(t, "1000", pol["yearly_cap"])
	requireAmountCLI(t, "400", pol["dual_control_threshold"])
	require.EqualValues(t, 0, pol["auto_retries"], "zero retries stay zero")
	pol = policy("--monthly-cap", "100.00")
	requireAmountCLI(t, "100", pol["monthly_cap"])
	requireAmountCLI(t, "1000", pol["yearly_cap"])
	requireAmountCLI(t, "400", pol["dual_control_threshold"])
	require.EqualValues(t, 20, pol["remediation_days"])
	require.Equal(t, "30m0s", pol["retry_backoff"])
	require.EqualValues(t, 0, pol["auto_retries"])
	pol = policy("--yearly-cap", "none")
	require.Nil(t, pol["yearly_cap"], "none removes the yearly cap")
	requireAmountCLI(t, "100", pol["monthly_cap"])
	require.Equal(t, pol, policy(), "the policy read is the policy set")
	for _, bad := range [][]string{{"--dual-control", "-5"}, {"--monthly-cap", "lots"}, {"--monthly-cap", "500", "--yearly-cap", "400"},
		{"--retry-backoff", "soon"}, {"--auto-retries", "11"}} {
		_, err := c.run("", append([]string{"payouts", "policy", "p1"}, bad...)...)
		require.ErrorIs(t, err, payouts.ErrInvalid, "%v", bad)
	}

	// A manual disbursement needs --key K and --as admin:PERSON, PERSON holding an active
	// admin token (requests, like approvals, are a person's); mistakes write nothing.
	grant := func(more ...string) []string {
		return append([]string{"create", "--program", "p1", "--person", "ana", "--amount", "80.00", "--reason", "bus pass"}, more...)
	}
	for _, args := range [][]string{grant(), grant("--as", "admin:eli"), grant("--key", "g1"), grant("--key", "g1", "--as", "participant:eli")} {
		_, err := c.run("", append([]string{"payouts"}, args...)...)
		require.ErrorIs(t, err, errUsage, "%v", args)
	}
	_, err = c.run("", append([]string{"payouts"}, grant("--key", "g1", "--as", "admin:eli")...)...)
	require.ErrorIs(t, err, access.ErrForbidden)
	require.ErrorContains(t, err, "eli holds no active admin token")
	require.NotContains(t, c.ok("", "payouts", "list"), "manual", "refused requests make no disbursement")
	c.ok("", "token", "create", "--role", "admin", "--person", "eli", "--name", "eli")

	// Above the auto-approve limit: one approval needed.
	d := c.disbursement(grant("--key", "g1", "--as", "admin:eli")...)
	id := d.ID
	require.Equal(t, payouts.AwaitingApproval, d.State)
	require.Equal(t, 1, d.ApprovalsNeeded)
	require.Equal(t, "80.00", d.Amount)
	require.Equal(t, "manual", d.Source)
	require.Equal(t, "person:eli", d.RequestedBy)
	require.Equal(t, me+" as admin:eli", d.Transitions[0].Actor)
	require.Equal(t, id, c.disbursement(grant("--key", "g1", "--as", "admin:eli")...).ID, "the same key is the same disbursement")
	_, err = c.run("", "payouts", "create", "--program", "p1", "--person", "ana", "--amount", "80.00", "--key", "g-no-reason", "--as", "admin:eli")
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

	// The requester may not approve it (four eyes); another admin who is a person does.
	_, err = c.run("", "payouts", "approve", id, "--as", "admin:eli")
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	require.Equal(t, payouts.AwaitingApproval, c.disbursement("show", id).State, "refusals approve nothing")
	c.ok("", "token", "create", "--role", "admin", "--person", "dana", "--name", "x")
	// An approval is for the payout destination the admin looked at: without one, approve
	// says where the person would be paid; a stale one is refused.
	_, err = c.run("", "payouts", "approve", id, "--as", "admin:dana")
	require.ErrorIs(t, err, payouts.ErrInvalid)
	require.ErrorContains(t, err, "tandem payouts approve "+id+" --destination sandbox:ana")
	_, err = c.run("", "payouts", "approve", id, "--as", "admin:dana", "--destination", "sandbox:ana-old")
	require.ErrorIs(t, err, payouts.ErrDestinationChanged)
	require.ErrorContains(t, err, "changed to sandbox:ana since it was shown (sandbox:ana-old)")
	require.Equal(t, payouts.AwaitingApproval, c.disbursement("show", id).State, "refusals approve nothing")
	d = c.disbursement("approve", id, "--as", "admin:dana", "--reason", "pass checked", "--destination", "sandbox:ana")
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
	require.ErrorIs(t, err, payouts.ErrState, "only failed or returned disbursements are retried")

	// The monthly cap: 80.00 paid this month, 60.00 more would pass 100.00.
	over := c.disbursement("create", "--program", "p1", "--person", "ana", "--amount", "60.00", "--reason", "books", "--key", "g2",
		"--as", "admin:eli")
	require.Equal(t, payouts.AwaitingApproval, over.State)
	_, err = c.run("", "payouts", "approve", over.ID, "--as", "admin:dana", "--destination", "sandbox:ana")
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
	big := c.disbursement("create", "--program", "p1", "--person", "ana", "--amount", "400.00", "--reason", "rent", "--key", "g3",
		"--as", "admin:eli")
	require.Equal(t, 2, big.ApprovalsNeeded)
	d = c.disbursement("cancel", big.ID, "--reason", "paid by another program")
	require.Equal(t, payouts.Canceled, d.State)

	// A commitment needs --key K and --as admin:PERSON too: PERSON requests its instalments.
	commit := []string{"payouts", "commit", "--program", "p1", "--person", "ana", "--amount", "20.00", "--instalments", "2",
		"--every", "3", "--first-due", now.AddDate(0, 1, 0).Format(time.DateOnly)}
	_, err = c.run("", append(commit, "--as", "admin:eli")...)
	require.ErrorIs(t, err, errUsage)
	require.ErrorContains(t, err, "--key")
	_, err = c.run("", append(commit, "--key", "c1")...)
	require.ErrorIs(t, err, errUsage)
	require.ErrorContains(t, err, "--as admin:PERSON")
	require.Equal(t, "[]\n", c.ok("", "payouts", "commitments"), "a refused commitment schedules nothing")
	var cm payouts.Commitment
	out = c.ok("", append(commit, "--key", "c1", "--as", "admin:eli")...)
	require.NoError(t, json.Unmarshal([]byte(out), &cm), out)
	require.Len(t, cm.Instalments, 2)
	require.Equal(t, "person:eli", cm.CreatedBy)
	var again payouts.Commitment
	require.NoError(t, json.Unmarshal([]byte(c.ok("", append(commit, "--key", "c1", "--as", "admin:eli")...)), &again))
	require.Equal(t, cm.ID, again.ID, "the same key is the same commitment")
	_, err = c.run("", append(commit[:len(commit)-1], now.AddDate(0, 2, 0).Format(time.DateOnly), "--key", "c1", "--as", "admin:eli")...)
	require.ErrorIs(t, err, ledger.ErrIdempotencyConflict, "the same key with another first due date")

	// The 1099-NEC report: nobody was paid a stipend. The threshold is the year's: 2000.00
	// for payments after 2025, 600.00 through 2025.
	out = c.ok("", "payouts", "1099", "--year", "2026")
	require.Contains(t, out, "1099-NEC 2026: payees with stipends of 2000.00 USD or more")
	require.Contains(t, out, "COACH")
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 2, "a title and a header, no payee: %s", out)
	require.Contains(t, c.ok("", "payouts", "1099", "--year", "2025"), "1099-NEC 2025: payees with stipends of 600.00 USD or more")
	require.Contains(t, c.ok("", "payouts", "1099", "--year", "2026", "--threshold", "600.00"), "stipends of 600.00 USD or more")
	t.Setenv("TANDEM_1099_THRESHOLD", "1000.00")
	require.Contains(t, c.ok("", "payouts", "1099", "--year", "2025"), "stipends of 1000.00 USD or more", "TANDEM_1099_THRESHOLD sets it")
	t.Setenv("TANDEM_1099_THRESHOLD", "")
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
	// The run is in the trail in the name of who ran the command.
	pool, err := pgxpool.New(context.Background(), os.Getenv("DATABASE_URL"))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var actor string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT actor FROM audit_log WHERE action = 'payouts.reconciliation.run'
		AND record = 'reconciliation:' || $1::bigint`, run.ID).Scan(&actor))
	require.Equal(t, me, actor)
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

// TestFourEyesCLI: every command that requests money — create, commit, stipend-policy — is
// refused without --as admin:PERSON (nothing written); with it, PERSON requests what follows
// (a grant, an instalment, a stipend) and may not approve it, another admin may. --as names
// the author of other changes too.
func TestFourEyesCLI(t *testing.T) {
	c := setupPayoutsCLI(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	count := func() int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM payouts_disbursements) + (SELECT count(*) FROM payouts_commitments)
			+ (SELECT count(*) FROM payouts_stipend_policies) + (SELECT count(*) FROM ledger_entries)`).Scan(&n))
		return n
	}
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	c.ok("", "network", "program", "create", "--id", "p1", "--name", "Pilot", "--currency", "USD",
		"--starts", now.AddDate(0, -3, 0).Format(time.DateOnly), "--ends", now.AddDate(0, 6, 0).Format(time.DateOnly), "--auto-approve", "50.00")
	c.ok("", "program", "fund", "p1", "5000.00", "--key", "f1")
	for _, p := range [][]string{{"ana", "participant"}, {"cy", "coach"}} {
		c.ok("", "network", "person", "add", "--id", p[0], "--name", p[0], "--roles", p[1])
		c.ok("", "network", "person", "consent", p[0], "--signed-by", p[0], "--scope", "payouts", "--signed-on", now.AddDate(0, -3, 0).Format(time.DateOnly))
	}
	c.ok("", "network", "enrol", "p1", "ana", "--coach", "cy")
	c.ok("", "network", "person", "w9", "cy")
	var conn struct{ ID string }
	out := c.ok("", "network", "connect", "ana", "cy", "--role", "near_peer_coach", "--started", now.AddDate(0, -3, 0).Format(time.DateOnly))
	require.NoError(t, json.Unmarshal([]byte(out), &conn), out)
	c.ok("", "network", "converse", conn.ID, "--at", month.AddDate(0, 0, 1).Add(12*time.Hour).Format(time.RFC3339), "--channel", "video",
		"--minutes", "30", "--verified", "--key", "k1")
	c.ok("", "token", "create", "--role", "admin", "--person", "eli", "--name", "eli")
	c.ok("", "token", "create", "--role", "admin", "--person", "dana", "--name", "dana")

	help := c.ok("", "payouts", "help")
	require.Contains(t, help, "--key K [--min-conversations N] --as admin:PERSON")
	require.Contains(t, help, "stipend-policy P RATE --as admin:PERSON")

	for _, src := range []struct {
		name    string
		request []string
		follow  func(out string) string // the disbursement that follows from the request
	}{
		{"create", []string{"create", "--program", "p1", "--person", "ana", "--amount", "80.00", "--reason", "bus pass", "--key", "g1"},
			func(out string) string {
				var d cliDisbursement
				require.NoError(t, json.Unmarshal([]byte(out), &d), out)
				return d.ID
			}},
		{"commit", []string{"commit", "--program", "p1", "--person", "ana", "--amount", "80.00", "--instalments", "1", "--every", "1",
			"--first-due", now.AddDate(0, 0, -1).Format(time.DateOnly), "--key", "c1"}, func(string) string {
			require.Contains(t, c.ok("", "payouts", "run"), "instalments: 1 fulfilled")
			var cs []payouts.Commitment
			out := c.ok("", "payouts", "commitments")
			require.NoError(t, json.Unmarshal([]byte(out), &cs), out)
			return cs[0].Instalments[0].Disbursement
		}},
		{"stipend-policy", []string{"stipend-policy", "p1", "80.00"}, func(string) string {
			var sts []payouts.Stipend
			out := c.ok("", "payouts", "stipends-run", month.Format("2006-01"))
			require.NoError(t, json.Unmarshal([]byte(out), &sts), out)
			require.Len(t, sts, 1, out)
			return sts[0].Disbursement
		}},
	} {
		before := count()
		_, err := c.run("", append([]string{"payouts"}, src.request...)...)
		require.ErrorIs(t, err, errUsage, src.name)
		require.ErrorContains(t, err, "--as admin:PERSON", src.name)
		require.Equal(t, before, count(), "%s without --as writes nothing", src.name)

		id := src.follow(c.ok("", append([]string{"payouts"}, append(src.request, "--as", "admin:eli")...)...))
		d := c.disbursement("show", id)
		require.Equal(t, payouts.AwaitingApproval, d.State, src.name)
		require.Equal(t, "person:eli", d.RequestedBy, src.name)
		_, err = c.run("", "payouts", "approve", id, "--as", "admin:eli")
		require.ErrorIs(t, err, payouts.ErrSelfApproval, src.name)
		require.Equal(t, payouts.Approved, c.disbursement("approve", id, "--as", "admin:dana", "--destination", "sandbox:"+d.PersonID).State, src.name)
	}

	// --as names the author of any other change it is given to.
	var dest payouts.Destination
	out = c.ok("", "payouts", "destination", "ana", "sandbox:ana-2", "--as", "admin:dana")
	require.NoError(t, json.Unmarshal([]byte(out), &dest), out)
	require.Equal(t, "person:dana", dest.SetBy)
	_, err = c.run("", "payouts", "destination", "ana", "sandbox:ana-3", "--as", "admin:nobody")
	require.ErrorIs(t, err, access.ErrForbidden)
}
