package app_test

// Four eyes on every path money takes (DESIGN.md §7): manual grants, commitments and stipend
// rates are requested by a person, who may not approve what follows; the database refuses an
// approval by the requester, by a person without an active admin token, or of a disbursement
// whose requester is not a person; an approval is for the destination it saw.

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// adminTokens gives the tests' admins (admin, admin2, admin3) their active admin tokens: the
// database lets only a person holding one approve.
func adminTokens(t testing.TB, a *app.App) {
	t.Helper()
	for _, by := range []network.By{admin, admin2, admin3} {
		_, _, err := a.Access.CreateToken(context.Background(), access.Principal{Name: "cli:test"},
			access.NewToken{Name: by.Name, Role: access.Admin, PersonID: by.PersonID})
		require.NoError(t, err)
	}
}

// moneySource requests money of more than the auto-approve limit (100.00) by by and returns
// the disbursement that follows from it ("" with the error when the request is refused).
type moneySource struct {
	name    string
	request func(e *payoutsEnv, by network.By) (string, error)
}

var moneySources = []moneySource{
	{"manual grant", func(e *payoutsEnv, by network.By) (string, error) {
		d, err := e.a.Payouts.Create(e.ctx, by, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "150.00",
			Reason: "rent gap", IdempotencyKey: "g1"})
		return d.ID, err
	}},
	{"commitment", func(e *payoutsEnv, by network.By) (string, error) {
		_, err := e.a.Payouts.CreateCommitment(e.ctx, by, payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "150.00",
			Instalments: 1, EveryMonths: 1, FirstDue: "2026-06-01", IdempotencyKey: "c1"})
		if err != nil {
			return "", err
		}
		fulfilled, _, err := e.a.Payouts.ReleaseInstalments(e.ctx)
		require.NoError(e.t, err)
		require.Equal(e.t, 1, fulfilled)
		cs, err := e.a.Payouts.Commitments(e.ctx, "p1", "ana")
		require.NoError(e.t, err)
		return cs[0].Instalments[0].Disbursement, nil
	}},
	{"stipend rate", func(e *payoutsEnv, by network.By) (string, error) {
		if _, err := e.a.Payouts.SetStipendPolicy(e.ctx, by, "p1", "150.00"); err != nil {
			return "", err
		}
		sts, err := e.a.Payouts.PayStipends(e.ctx, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
		require.NoError(e.t, err)
		require.Len(e.t, sts, 1)
		return sts[0].Disbursement, nil
	}},
}

// fourEyesEnv: program p1 (auto-approve 100.00, dual control from the default 500.00) with
// participant ana and coach cy (W-9 on file), who had one verified session with ana in May.
func fourEyesEnv(t *testing.T) *payoutsEnv {
	e, conns := stipendEnv(t, "5000.00", map[string]string{"cy": "ana"})
	e.w9("cy")
	e.talk(conns["cy"], time.Date(2026, 5, 5, 10, 0, 0, 0, time.UTC), true)
	return e
}

// TestFourEyesEverySource: for every source of money, an admin who names no person is
// refused with nothing written, and the person who requested may not approve what follows —
// another admin may.
func TestFourEyesEverySource(t *testing.T) {
	t.Parallel()
	noPerson := network.By{Principal: access.Principal{Name: "ops-token", TokenID: uuid.NewString(), Role: access.Admin}}
	for _, src := range moneySources {
		t.Run(src.name, func(t *testing.T) {
			t.Parallel()
			e := fourEyesEnv(t)
			entries := queryInt(t, e.pool, `SELECT count(*) FROM ledger_entries`)
			_, err := src.request(e, noPerson)
			require.ErrorIs(t, err, payouts.ErrSelfApproval)
			require.Contains(t, err.Error(), "needs an admin who is a person")
			for _, table := range []string{"payouts_disbursements", "payouts_commitments", "payouts_stipend_policies"} {
				require.Zero(t, queryInt(t, e.pool, `SELECT count(*) FROM `+table), table)
			}
			require.Equal(t, entries, queryInt(t, e.pool, `SELECT count(*) FROM ledger_entries`))

			id, err := src.request(e, admin)
			require.NoError(t, err)
			d := e.get(id)
			require.Equal(t, payouts.AwaitingApproval, d.State)
			require.Equal(t, "person:adm", d.RequestedBy)
			_, err = approveSeen(e.ctx, e.a.Payouts, admin, id, "")
			require.ErrorIs(t, err, payouts.ErrSelfApproval, "the requester")
			// The database refuses it too, without the store.
			_, err = e.pool.Exec(e.ctx, `INSERT INTO payouts_approvals (disbursement_id, approver, actor) VALUES ($1, 'person:adm', 'sql')`, id)
			requireConstraint(t, err, "payouts_self_approval")
			d, err = approveSeen(e.ctx, e.a.Payouts, admin2, id, "")
			require.NoError(t, err)
			require.Equal(t, payouts.Approved, d.State)
		})
	}
}

func requireConstraint(t *testing.T, err error, name string) {
	t.Helper()
	var pg *pgconn.PgError
	require.ErrorAs(t, err, &pg)
	require.Equal(t, name, pg.ConstraintName, pg.Message)
}

// TestFourEyesApproverInTheDatabase: the database records an approval only by a person who
// holds an active, unrevoked admin token, and only of a disbursement whose requester is a
// person (an award, made by a rule, excepted).
func TestFourEyesApproverInTheDatabase(t *testing.T) {
	t.Parallel()
	e := fourEyesEnv(t)
	ctx, p := e.ctx, e.a.Payouts
	d := e.grant(admin, "p1", "ana", "150.00", "g1")
	approve := func(approver string) error {
		_, err := e.pool.Exec(ctx, `INSERT INTO payouts_approvals (disbursement_id, approver, actor) VALUES ($1, $2, 'sql')`, d.ID, approver)
		return err
	}
	requireConstraint(t, approve("person:nobody"), "payouts_approver_admin")
	// A participant's token, a revoked admin token and an expired one are not enough.
	tok, _, err := e.a.Access.CreateToken(ctx, access.Principal{Name: "cli:test"}, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	require.NoError(t, err)
	require.NotEmpty(t, tok.ID)
	requireConstraint(t, approve("person:ana"), "payouts_approver_admin")
	rev, _, err := e.a.Access.CreateToken(ctx, access.Principal{Name: "cli:test"}, access.NewToken{Name: "gone", Role: access.Admin, PersonID: "gone"})
	require.NoError(t, err)
	_, err = e.a.Access.RevokeToken(ctx, access.Principal{Name: "cli:test"}, rev.ID)
	require.NoError(t, err)
	requireConstraint(t, approve("person:gone"), "payouts_approver_admin")
	_, err = e.pool.Exec(ctx, `INSERT INTO access_tokens (id, name, role, person_id, hash, created_by, expires_at)
		VALUES ($1, 'old', 'admin', 'old', sha256('old'::bytea), 'cli:test', now() - interval '1 day')`, uuid.New())
	require.NoError(t, err)
	requireConstraint(t, approve("person:old"), "payouts_approver_admin")
	// Through the store: the database's refusal is forbidden.
	_, err = approveSeen(ctx, p, network.By{Principal: access.Principal{Name: "cli:x as admin:gone", Role: access.Admin, PersonID: "gone"}}, d.ID, "")
	require.ErrorIs(t, err, access.ErrForbidden)
	require.Empty(t, e.get(d.ID).Approvals)
	require.NoError(t, approve("person:adm2"))

	// A disbursement requested by a token (as one made before requesters had to be persons):
	// nobody can approve it; it is rejected or canceled instead.
	var legacy uuid.UUID
	err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		en, err := e.a.Ledger.PostTx(ctx, tx, ledger.NewEntry{IdempotencyKey: "legacy", Description: "legacy grant",
			Postings: []ledger.Posting{
				{Account: "program/p1/fund", Side: ledger.Debit, Amount: decimal.RequireFromString("150.00"), Currency: "USD"},
				{Account: network.WalletAccount("ana"), Side: ledger.Credit, Amount: decimal.RequireFromString("150.00"), Currency: "USD"},
			}})
		if err != nil {
			return err
		}
		legacy = uuid.New()
		if _, err := tx.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, to_state, actor, reason) VALUES ($1, 'awaiting_approval', 'sql', 'legacy')`, legacy); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO payouts_disbursements (id, program_id, person_id, wallet, amount, currency, source, funding_entry_id,
			state, approvals_needed, requested_by) VALUES ($1, 'p1', 'ana', 'participant/ana/wallet', 150, 'USD', 'manual', $2, 'awaiting_approval', 1, 'token:t-ops')`,
			legacy, en.ID)
		return err
	})
	require.NoError(t, err)
	_, err = approveSeen(ctx, p, admin2, legacy.String(), "")
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	require.Contains(t, err.Error(), "not a person")
	dl, err := p.Reject(ctx, admin2, legacy.String(), "requested by a token")
	require.NoError(t, err)
	require.Equal(t, payouts.Rejected, dl.State)

	// New commitments and stipend rates are written by persons only, in the database too.
	_, err = e.pool.Exec(ctx, `INSERT INTO payouts_stipend_policies (program_id, rate, set_by) VALUES ('p1', 1, 'token:t-ops')`)
	requireConstraint(t, err, "payouts_stipend_policies_person")
	_, err = e.pool.Exec(ctx, `INSERT INTO payouts_commitments (id, program_id, person_id, amount, currency, instalments, every_months,
		first_due, idempotency_key, created_by) VALUES ($1, 'p1', 'ana', 1, 'USD', 1, 1, '2026-07-01', 'k', 'cli:root')`, uuid.New())
	requireConstraint(t, err, "payouts_commitments_person")
}

// TestFourEyesCommitmentKey: the same idempotency key with any other part of the request is a
// conflict; with the same request, the first commitment.
func TestFourEyesCommitmentKey(t *testing.T) {
	t.Parallel()
	e := fourEyesEnv(t)
	nc := payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "40.00", Instalments: 3, EveryMonths: 1, FirstDue: "2026-09-15",
		Requirements: json.RawMessage(`{"min_verified_conversations": 1}`), IdempotencyKey: "c-ana"}
	c, err := e.a.Payouts.CreateCommitment(e.ctx, admin, nc)
	require.NoError(t, err)
	for name, change := range map[string]func(*payouts.NewCommitment){
		"first_due":    func(n *payouts.NewCommitment) { n.FirstDue = "2026-10-15" },
		"every_months": func(n *payouts.NewCommitment) { n.EveryMonths = 2 },
		"requirements": func(n *payouts.NewCommitment) { n.Requirements = json.RawMessage(`{"min_verified_conversations": 2}`) },
		"none":         func(n *payouts.NewCommitment) { n.Requirements = nil },
		"amount":       func(n *payouts.NewCommitment) { n.Amount = "41.00" },
		"instalments":  func(n *payouts.NewCommitment) { n.Instalments = 4 },
	} {
		other := nc
		change(&other)
		_, err := e.a.Payouts.CreateCommitment(e.ctx, admin, other)
		require.ErrorIs(t, err, ledger.ErrIdempotencyConflict, name)
	}
	again, err := e.a.Payouts.CreateCommitment(e.ctx, admin2, nc)
	require.NoError(t, err)
	require.Equal(t, c.ID, again.ID)
	require.Equal(t, 1, queryInt(t, e.pool, `SELECT count(*) FROM payouts_commitments`))
}

// TestFourEyesDestinationChanged: an approval records the destination it saw. A payout that
// needed approval whose destination changed before it was submitted goes back to awaiting
// approval, its approvals no longer counting, and is paid to the new destination once
// approved again; one within the auto-approve limit is paid to the new one. A failed payout
// a new destination fixes is retried when it was within the limit, and sent back for approval
// when it needed one.
func TestFourEyesDestinationChanged(t *testing.T) {
	t.Parallel()
	e := fourEyesEnv(t)
	ctx, p := e.ctx, e.a.Payouts
	e.destination("ana", "sandbox:ana-a")

	big := e.grant(admin, "p1", "ana", "150.00", "big")
	small := e.grant(admin, "p1", "ana", "50.00", "small")
	require.Equal(t, payouts.Approved, small.State)
	d, err := approveSeen(ctx, p, admin2, big.ID, "lease seen")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	require.Len(t, d.Approvals, 1)
	require.Equal(t, "sandbox:ana-a", *d.Approvals[0].Destination)
	require.Equal(t, 1, d.Approvals[0].Round)

	dest := e.destination("ana", "sandbox:ana-b")
	require.Empty(t, dest.Retried)
	d = e.submit(nil, big.ID)
	require.Equal(t, payouts.AwaitingApproval, d.State)
	require.Empty(t, d.Attempts, "nothing was sent")
	last := lastTransition(t, d)
	require.Equal(t, "approved→awaiting_approval", last.From+"→"+last.To)
	require.Contains(t, last.Reason, "payout destination changed since it was approved (approved for sandbox:ana-a, now sandbox:ana-b)")
	require.Contains(t, last.Reason, "the approvals no longer count")
	q, err := p.Queue(ctx, payouts.QueueFilter{ID: big.ID})
	require.NoError(t, err)
	require.Len(t, q, 1)
	require.Empty(t, q[0].Approvals, "the queue shows the current round's approvals")

	// The same admin looks again: a new round.
	d, err = approveSeen(ctx, p, admin2, big.ID, "new bank seen")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	require.Len(t, d.Approvals, 2)
	require.Equal(t, 2, d.Approvals[1].Round)
	require.Equal(t, "sandbox:ana-b", *d.Approvals[1].Destination)
	d = e.submit(nil, big.ID)
	require.Equal(t, payouts.Paid, d.State)
	require.Equal(t, "sandbox:ana-b", d.Attempts[0].Destination)

	// Within the limit: paid where the person is now.
	s := e.submit(nil, small.ID)
	require.Equal(t, payouts.Paid, s.State)
	require.Equal(t, "sandbox:ana-b", s.Attempts[0].Destination)

	// The database pays no attempt elsewhere than the approvals saw.
	mid := e.grant(admin, "p1", "ana", "120.00", "mid")
	_, err = approveSeen(ctx, p, admin3, mid.ID, "")
	require.NoError(t, err)
	requireConstraint(t, sneakAttempt(ctx, e, mid.ID, "sandbox:elsewhere"), "payouts_destination_approved")

	// Failures fixed by a new destination.
	e.destination("ana", "fail:account-closed")
	failedBig := e.submit(nil, e.grantApproved(admin, admin2, "200.00", "fb").ID)
	failedSmall := e.submit(nil, e.grant(admin, "p1", "ana", "30.00", "fs").ID)
	require.Equal(t, payouts.Failed, failedBig.State)
	require.Equal(t, payouts.Failed, failedSmall.State)
	dest = e.destination("ana", "sandbox:ana-c")
	require.Equal(t, []string{failedSmall.ID}, dest.Retried)
	require.Equal(t, []string{failedBig.ID}, dest.Reapproval)
	fb := e.get(failedBig.ID)
	require.Equal(t, payouts.AwaitingApproval, fb.State)
	require.Contains(t, lastTransition(t, fb).Reason, "needs approving again for the new destination")
	_, err = approveSeen(ctx, p, admin3, fb.ID, "")
	require.NoError(t, err)
	require.Equal(t, payouts.Paid, e.submit(nil, fb.ID).State)
	require.Equal(t, payouts.Paid, e.submit(nil, failedSmall.ID).State)
	e.requireCheckClean()
}

// TestFourEyesApprovalWithoutDestination: an approval that recorded no destination known
// (NULL, as one recorded before approvals recorded theirs and left so by migration 008) tells
// nothing of where the payout may go: the payout goes back for approval before it is
// submitted, and the database pays no attempt for it.
func TestFourEyesApprovalWithoutDestination(t *testing.T) {
	t.Parallel()
	e := fourEyesEnv(t)
	ctx, p := e.ctx, e.a.Payouts
	e.destination("ana", "sandbox:ana-a")
	unknown := func(id string, approver network.By) {
		t.Helper()
		_, err := e.pool.Exec(ctx, `INSERT INTO payouts_approvals (disbursement_id, approver, actor, reason)
			VALUES ($1, $2, $3, 'approved before destinations were recorded')`, id, approver.Subject(), approver.Name)
		require.NoError(t, err)
	}

	big := e.grant(admin, "p1", "ana", "150.00", "big")
	unknown(big.ID, admin2)
	d, err := approveSeen(ctx, p, admin3, big.ID, "")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	d = e.submit(nil, big.ID)
	require.Equal(t, payouts.AwaitingApproval, d.State)
	require.Empty(t, d.Attempts, "nothing was sent")
	require.Contains(t, lastTransition(t, d).Reason, "approved for a destination not recorded, now sandbox:ana-a")
	d, err = approveSeen(ctx, p, admin2, big.ID, "destination seen")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	d = e.submit(nil, big.ID)
	require.Equal(t, payouts.Paid, d.State)
	require.Equal(t, "sandbox:ana-a", d.Attempts[0].Destination)

	// The database pays no attempt that an approval with no destination known let through.
	mid := e.grant(admin, "p1", "ana", "120.00", "mid")
	unknown(mid.ID, admin2)
	_, err = approveSeen(ctx, p, admin3, mid.ID, "")
	require.NoError(t, err)
	requireConstraint(t, sneakAttempt(ctx, e, mid.ID, "sandbox:ana-a"), "payouts_destination_approved")
	e.requireCheckClean()
}

// grantApproved is a grant of amount to ana by requester, approved by approver.
func (e *payoutsEnv) grantApproved(requester, approver network.By, amount, key string) payouts.Disbursement {
	e.t.Helper()
	d := e.grant(requester, "p1", "ana", amount, key)
	d, err := approveSeen(e.ctx, e.a.Payouts, approver, d.ID, "")
	require.NoError(e.t, err)
	require.Equal(e.t, payouts.Approved, d.State, fmt.Sprintf("%s needs one approval", amount))
	return d
}

// approveSeen approves id as an approver does: with the payout destination they were shown
// (for an id that names no disbursement, with none, so that Approve says why).
func approveSeen(ctx context.Context, p *payouts.Store, by network.By, id, reason string) (payouts.Disbursement, error) {
	var shown string
	if d, err := p.Get(ctx, id); err == nil {
		if shown, err = p.ApprovalDestination(ctx, d.PersonID); err != nil {
			return payouts.Disbursement{}, err
		}
	}
	return p.Approve(ctx, by, id, reason, shown)
}

// TestApproveDestinationShown: an approval is for the destination the approver was shown. A
// person who sets their own destination between the showing and the approval does not get
// the approval for the new one: it is refused, the approver looks again, and approves the
// destination now shown. Without the destination shown, approving is refused.
func TestApproveDestinationShown(t *testing.T) {
	t.Parallel()
	e := fourEyesEnv(t)
	ctx, p := e.ctx, e.a.Payouts
	e.destination("ana", "sandbox:ana-a")
	big := e.grant(admin, "p1", "ana", "150.00", "big")
	require.Equal(t, payouts.AwaitingApproval, big.State)

	shown, err := p.ApprovalDestination(ctx, "ana")
	require.NoError(t, err)
	require.Equal(t, "sandbox:ana-a", shown)
	q, err := p.Queue(ctx, payouts.QueueFilter{ID: big.ID})
	require.NoError(t, err)
	require.Len(t, q, 1)
	require.Equal(t, "sandbox:ana-a", q[0].Destination, "the queue shows where the person would be paid")

	ana := network.By{Principal: access.Principal{Name: "token:ana", Role: access.Participant, PersonID: "ana"}}
	_, err = p.SetDestination(ctx, ana, "ana", "sandbox:ana-b")
	require.NoError(t, err)

	_, err = p.Approve(ctx, admin2, big.ID, "lease seen", shown)
	require.ErrorIs(t, err, payouts.ErrState)
	require.ErrorIs(t, err, payouts.ErrDestinationChanged)
	require.ErrorContains(t, err, "changed to sandbox:ana-b since it was shown (sandbox:ana-a) for "+big.ID+": look again")
	_, err = p.Approve(ctx, admin2, big.ID, "lease seen", "")
	require.ErrorIs(t, err, payouts.ErrInvalid)
	require.ErrorContains(t, err, "destination: required")
	d := e.get(big.ID)
	require.Equal(t, payouts.AwaitingApproval, d.State)
	require.Empty(t, d.Approvals, "a refused approval is not recorded")

	// Four eyes speak before the destination.
	_, err = p.Approve(ctx, admin, big.ID, "", "")
	require.ErrorIs(t, err, payouts.ErrSelfApproval)

	d, err = p.Approve(ctx, admin2, big.ID, "new bank seen", "sandbox:ana-b")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	require.Len(t, d.Approvals, 1)
	require.Equal(t, "sandbox:ana-b", *d.Approvals[0].Destination)
	d = e.submit(nil, big.ID)
	require.Equal(t, payouts.Paid, d.State)
	require.Equal(t, "sandbox:ana-b", d.Attempts[0].Destination)
	e.requireCheckClean()
}

// sneakAttempt writes a payout attempt of 120.00 from ana's wallet to destination straight into
// the database, as code that skipped the approvals' check would: the database must refuse it.
func sneakAttempt(ctx context.Context, e *payoutsEnv, id, destination string) error {
	return pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		en, err := e.a.Ledger.PostPendingTx(ctx, tx, ledger.NewEntry{IdempotencyKey: "sneak", Description: "sneak",
			Postings: []ledger.Posting{
				{Account: network.WalletAccount("ana"), Side: ledger.Debit, Amount: decimal.RequireFromString("120.00"), Currency: "USD"},
				{Account: network.CashAccount("USD"), Side: ledger.Credit, Amount: decimal.RequireFromString("120.00"), Currency: "USD"},
			}})
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO payouts_attempts (disbursement_id, attempt, provider, destination, idempotency_key, pending_entry_id)
			VALUES ($1, 1, 'sandbox', $2, 'sneak', $3)`, id, destination, en.ID)
		return err
	})
}
