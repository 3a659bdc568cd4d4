package app_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// partlyReturned pays a grant of amount to person through the sandbox and has the provider
// give back back of it: the disbursement stays paid with the returned money in the wallet.
func (e *payoutsEnv) partlyReturned(person, amount, back, key string) payouts.Disbursement {
	e.t.Helper()
	d := e.grant(admin, "p1", person, amount, key)
	if d.State == payouts.AwaitingApproval {
		_, err := approveSeen(e.ctx, e.a.Payouts, admin2, d.ID, "")
		require.NoError(e.t, err)
	}
	d = e.submit(nil, d.ID)
	require.Equal(e.t, payouts.Paid, d.State)
	e.giveBack(d, back)
	return e.get(d.ID)
}

// giveBack has the sandbox return amount more of d's first attempt, as the provider would.
func (e *payoutsEnv) giveBack(d payouts.Disbursement, amount string) {
	e.t.Helper()
	sandbox, ok := e.a.Payouts.Provider().(*payouts.Sandbox)
	require.True(e.t, ok)
	require.NoError(e.t, sandbox.Reverse(e.ctx, d.Attempts[0].ProviderRef, decimal.RequireFromString(amount)))
	_, err := e.a.Payouts.Settle(e.ctx, uuid.MustParse(d.ID), 1)
	require.NoError(e.t, err)
}

// auditCount counts the audit lines of action on record.
func (e *payoutsEnv) auditCount(action, record string) int {
	e.t.Helper()
	return queryInt(e.t, e.pool, `SELECT count(*) FROM audit_log WHERE action = $1 AND record = $2`, action, record)
}

// TestPartialReturnPaidAgainOrToFund: what a provider gave back of a paid payout in part is
// no longer left in the wallet of a paid disbursement: an admin pays it again (a new
// disbursement under the approval policy, requested by them, so another admin approves it)
// or gives it back to the fund by an entry wallet → fund; never more than was returned.
func TestPartialReturnPaidAgainOrToFund(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	p := e.a.Payouts
	newProgram(t, e.a.Network, "p1", "5000.00", "100.00")
	e.payee("p1", "ben")

	d := e.partlyReturned("ben", "300.00", "150", "part-1")
	require.Equal(t, payouts.Paid, d.State, "a partial return stays paid")
	requireAmount(t, "150", posted(t, e.a, network.WalletAccount("ben")))
	m, err := p.Returned(e.ctx, d.ID)
	require.NoError(t, err)
	requireAmount(t, "150", m.Outstanding)

	_, err = p.RepayReturned(e.ctx, admin, d.ID, " ")
	require.ErrorIs(t, err, payouts.ErrInvalid, "a reason is required")
	token := network.By{Principal: access.Principal{Name: "ops-token", TokenID: "t-ops", Role: access.Admin}}
	_, err = p.RepayReturned(e.ctx, token, d.ID, "new bank account")
	require.ErrorIs(t, err, payouts.ErrSelfApproval, "the requester of the new disbursement must be a person")

	// Paid again: back to the fund, granted again by a disbursement that needs another admin.
	out, err := p.RepayReturned(e.ctx, admin, d.ID, "new bank account")
	require.NoError(t, err)
	nd := out.Disbursement
	require.NotEqual(t, d.ID, nd.ID)
	require.Equal(t, "150.00", ledgerAmount(nd.Amount))
	require.Equal(t, "manual", nd.Source)
	require.Equal(t, "person:adm", nd.RequestedBy)
	require.Equal(t, payouts.AwaitingApproval, nd.State, "above the auto-approve limit: the policy applies")
	require.Contains(t, nd.Reason, d.ID)
	requireAmount(t, "0", out.Returned.Outstanding)
	require.Len(t, out.Returned.Settlements, 1)
	require.Equal(t, "repay", out.Returned.Settlements[0].Kind)
	require.Equal(t, nd.ID, out.Returned.Settlements[0].NewDisbursement)
	require.Equal(t, []string{"credit program/p1/fund 150.00", "debit participant/ben/wallet 150.00"},
		entryLines(t, e.a, out.Returned.Settlements[0].EntryID))
	require.Equal(t, []string{"credit participant/ben/wallet 150.00", "debit program/p1/fund 150.00"},
		entryLines(t, e.a, nd.FundingEntryID))
	require.Equal(t, 1, e.auditCount("payouts.disbursement.repay_returned", "disbursement:"+d.ID))
	require.Equal(t, 1, e.auditCount("payouts.disbursement.create", "disbursement:"+nd.ID))
	require.Equal(t, payouts.Paid, e.get(d.ID).State, "the original stays paid")

	_, err = approveSeen(e.ctx, p, admin, nd.ID, "")
	require.ErrorIs(t, err, payouts.ErrSelfApproval, "whoever asked to pay again may not approve it")
	_, err = approveSeen(e.ctx, p, admin2, nd.ID, "")
	require.NoError(t, err)
	require.Equal(t, payouts.Paid, e.submit(nil, nd.ID).State)
	requireAmount(t, "0", posted(t, e.a, network.WalletAccount("ben")))

	// Nothing returned remains: both refused, nothing moves.
	_, err = p.RepayReturned(e.ctx, admin, d.ID, "again")
	require.ErrorIs(t, err, payouts.ErrState)
	_, err = p.ReturnReturnedToFund(e.ctx, admin, d.ID, "again")
	require.ErrorIs(t, err, payouts.ErrState)

	// A second partial return goes back to the fund.
	e.giveBack(d, "50")
	require.Equal(t, payouts.Paid, e.get(d.ID).State)
	requireAmount(t, "50", posted(t, e.a, network.WalletAccount("ben")))
	fund := posted(t, e.a, "program/p1/fund")
	m, err = p.ReturnReturnedToFund(e.ctx, admin, d.ID, "the person left the program")
	require.NoError(t, err)
	requireAmount(t, "200", m.Returned)
	requireAmount(t, "200", m.Settled)
	requireAmount(t, "0", m.Outstanding)
	require.Equal(t, "fund", m.Settlements[1].Kind)
	require.Equal(t, "person:adm", m.Settlements[1].DecidedBy)
	require.Equal(t, []string{"credit program/p1/fund 50.00", "debit participant/ben/wallet 50.00"}, entryLines(t, e.a, m.Settlements[1].EntryID))
	requireAmount(t, "0", posted(t, e.a, network.WalletAccount("ben")))
	requireAmount(t, fund.Add(decimal.RequireFromString("50")).String(), posted(t, e.a, "program/p1/fund"))
	require.Equal(t, 1, e.auditCount("payouts.disbursement.return_to_fund", "disbursement:"+d.ID))
	_, err = p.ReturnReturnedToFund(e.ctx, admin, d.ID, "again")
	require.ErrorIs(t, err, payouts.ErrState)

	// Only a paid disbursement's partial return: one awaiting approval has nothing returned.
	w := e.grant(admin, "p1", "ben", "120.00", "waiting")
	_, err = p.ReturnReturnedToFund(e.ctx, admin, w.ID, "no")
	require.ErrorIs(t, err, payouts.ErrState)

	// Returned in part, settled, then returned in full: what was settled is no longer in the
	// wallet, so neither a retry nor a cancellation may take the whole amount again; the rest
	// is settled here, which ends the disbursement.
	e.payee("p1", "cal")
	r := e.partlyReturned("cal", "80.00", "30", "part-2")
	_, err = p.ReturnReturnedToFund(e.ctx, admin, r.ID, "first part back to the fund")
	require.NoError(t, err)
	e.giveBack(r, "50")
	require.Equal(t, payouts.Returned, e.get(r.ID).State)
	requireAmount(t, "50", posted(t, e.a, network.WalletAccount("cal")))
	_, err = p.Retry(e.ctx, admin, r.ID, "again")
	require.ErrorIs(t, err, payouts.ErrState)
	require.ErrorContains(t, err, "already paid again or given back")
	_, err = p.Cancel(e.ctx, admin, r.ID, "back to the fund")
	require.ErrorIs(t, err, payouts.ErrState)
	out, err = p.RepayReturned(e.ctx, admin, r.ID, "the rest, to the new account")
	require.NoError(t, err)
	require.Equal(t, "50.00", ledgerAmount(out.Disbursement.Amount))
	rd := e.get(r.ID)
	require.Equal(t, payouts.Canceled, rd.State, "nothing of it is left to retry or cancel")
	require.Contains(t, lastTransition(t, rd).Reason, "paid again or given back")
	requireAmount(t, "50", posted(t, e.a, network.WalletAccount("cal")), "the new disbursement's money, until it is paid")

	// The database refuses settling more than was returned, whoever asks.
	_, err = e.pool.Exec(e.ctx, `INSERT INTO payouts_return_settlements (disbursement_id, kind, amount, entry_id, decided_by, reason)
		VALUES ($1, 'fund', 1, $2, 'test:sql', 'more than returned')`, d.ID, m.Settlements[1].EntryID)
	require.Equal(t, "payouts_return_settlements_exceed", constraintOf(err))
	e.requireCheckClean()
}

func ledgerAmount(d decimal.Decimal) string { return d.StringFixed(2) }

// TestRetractedAwardDecisions: an award whose evidence is retracted (or whose verification
// is withdrawn) after it was paid is listed until an admin reverses it — its money, still in
// the wallet, back to the fund by an explicit entry — or keeps it, with a reason, audited.
// Money that has left the wallet can only be kept.
func TestRetractedAwardDecisions(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	p, n := e.a.Payouts, e.a.Network
	newProgram(t, n, "p1", "1000.00", "100.00", ruleMentor4)
	addMentor(t, n, "mo")
	earn := func(person string) ([]string, payouts.Disbursement) {
		t.Helper()
		c := addParticipant(t, n, "p1", person, "mo")
		var ids []string
		for i := range 4 {
			ids = append(ids, conv(t, n, c, i, true))
		}
		_, err := n.EvaluateParticipant(e.ctx, person)
		require.NoError(t, err)
		ds, err := p.List(e.ctx, payouts.Filter{Person: person})
		require.NoError(t, err)
		require.Len(t, ds, 1)
		require.Equal(t, payouts.Approved, ds[0].State)
		return ids, ds[0]
	}
	anaConvs, anaD := earn("ana")
	benConvs, benD := earn("ben")
	calConvs, _ := earn("cal")
	earn("dan")
	eveConvs, _ := earn("eve")
	fayConvs, fayD := earn("fay")
	list := func() map[string]payouts.RetractedAward {
		t.Helper()
		got, err := p.RetractedAwards(e.ctx, "p1")
		require.NoError(t, err)
		out := map[string]payouts.RetractedAward{}
		for _, a := range got {
			out[a.Award.ParticipantID] = a
		}
		return out
	}
	require.Empty(t, list(), "no evidence retracted yet")

	_, err := n.Review(e.ctx, admin, anaConvs[1], network.ReviewRetract, "logged twice")
	require.NoError(t, err)
	require.Equal(t, payouts.Paid, e.submit(nil, benD.ID).State)
	_, err = n.Review(e.ctx, admin, benConvs[0], network.ReviewRetract, "never happened")
	require.NoError(t, err)
	_, err = n.Review(e.ctx, admin, calConvs[3], network.ReviewUnverify, "the mentor does not remember it")
	require.NoError(t, err)
	// Fay's disbursement was canceled before her evidence was retracted: the money is back
	// in the fund, nothing to decide.
	_, err = p.Cancel(e.ctx, admin, fayD.ID, "she asked to be paid later")
	require.NoError(t, err)
	_, err = n.Review(e.ctx, admin, fayConvs[0], network.ReviewRetract, "duplicate")
	require.NoError(t, err)
	eveConv, err := n.Conversation(e.ctx, eveConvs[0])
	require.NoError(t, err)
	_, err = n.End(e.ctx, admin, eveConv.ConnectionID, network.EndConnection{EndedOn: time.Now().UTC().Format(time.DateOnly),
		Retracted: true, Reason: "not her mentor"})
	require.NoError(t, err)

	got := list()
	require.Len(t, got, 4, "dan's evidence stands; fay's money is back in the fund")
	ana := got["ana"]
	require.Equal(t, anaD.ID, ana.Disbursement)
	require.Equal(t, []string{payouts.DecisionKeep, payouts.DecisionReverse}, ana.Decisions)
	require.Len(t, ana.Withdrawn, 1)
	require.Equal(t, network.Withdrawn{Item: anaConvs[1], What: network.WithdrawnConversation, Reason: "logged twice",
		By: "person:adm", At: ana.Withdrawn[0].At}, ana.Withdrawn[0])
	require.Equal(t, []string{payouts.DecisionKeep}, got["ben"].Decisions, "paid out: only kept")
	require.Contains(t, got["ben"].Note, "left the wallet")
	require.Equal(t, network.WithdrawnVerification, got["cal"].Withdrawn[0].What)
	require.Len(t, got["eve"].Withdrawn, 4, "each of her conversations was on the retracted connection")
	require.Equal(t, network.WithdrawnConnection, got["eve"].Withdrawn[0].What)
	require.Equal(t, "not her mentor", got["eve"].Withdrawn[0].Reason)

	// Reversing ana's: the disbursement canceled, the money back to the fund.
	_, err = p.DecideRetractedAward(e.ctx, admin, ana.Award.ID, payouts.DecisionReverse, "")
	require.ErrorIs(t, err, payouts.ErrInvalid, "a reason is required")
	_, err = p.DecideRetractedAward(e.ctx, admin, ana.Award.ID, "forget", "x")
	require.ErrorIs(t, err, payouts.ErrInvalid)
	fund := posted(t, e.a, "program/p1/fund")
	dec, err := p.DecideRetractedAward(e.ctx, admin, ana.Award.ID, payouts.DecisionReverse, "the fourth meeting did not happen")
	require.NoError(t, err)
	require.Equal(t, payouts.DecisionReverse, dec.Decision)
	require.Equal(t, "person:adm", dec.DecidedBy)
	require.Equal(t, []string{"credit program/p1/fund 50.00", "debit participant/ana/wallet 50.00"}, entryLines(t, e.a, dec.EntryID))
	requireAmount(t, "0", posted(t, e.a, network.WalletAccount("ana")))
	requireAmount(t, fund.Add(decimal.RequireFromString("50")).String(), posted(t, e.a, "program/p1/fund"))
	d := e.get(anaD.ID)
	require.Equal(t, payouts.Canceled, d.State)
	require.Contains(t, lastTransition(t, d).Reason, "award reversed")
	require.Equal(t, 1, e.auditCount("payouts.award.reverse", "award:"+ana.Award.Key))
	_, err = p.DecideRetractedAward(e.ctx, admin, ana.Award.ID, payouts.DecisionKeep, "changed my mind")
	require.ErrorIs(t, err, payouts.ErrState, "decided once")

	// Ben's was paid out: reversing is refused, keeping recorded.
	_, err = p.DecideRetractedAward(e.ctx, admin, got["ben"].Award.ID, payouts.DecisionReverse, "claw back")
	require.ErrorIs(t, err, payouts.ErrState)
	_, err = p.DecideRetractedAward(e.ctx, admin, got["ben"].Award.ID, payouts.DecisionKeep, "paid in good faith; the coach was told")
	require.NoError(t, err)
	require.Equal(t, 1, e.auditCount("payouts.award.keep", "award:"+got["ben"].Award.Key))

	got = list()
	require.Len(t, got, 2, "decided awards leave the list")
	require.Contains(t, got, "cal")
	require.Contains(t, got, "eve")

	// An award whose evidence stands cannot be decided on.
	dan, err := n.Awards(e.ctx, network.AwardFilter{Participant: "dan"})
	require.NoError(t, err)
	_, err = p.DecideRetractedAward(e.ctx, admin, dan[0].ID, payouts.DecisionKeep, "nothing to keep")
	require.ErrorIs(t, err, payouts.ErrState)
	_, err = p.DecideRetractedAward(e.ctx, admin, uuid.NewString(), payouts.DecisionKeep, "no such award")
	require.ErrorIs(t, err, network.ErrNotFound)
	e.requireCheckClean()
}

// TestReturnedInFullRetriedIsNotSettledAgain: a payout returned in full and retried sent the
// returned money out again with its next attempt; once that attempt is paid, nothing of the
// first attempt's return is in the wallet, so neither paying again nor giving back may move
// it, and the database refuses a settlement of it too.
func TestReturnedInFullRetriedIsNotSettledAgain(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	p := e.a.Payouts
	newProgram(t, e.a.Network, "p1", "5000.00", "100.00")
	e.payee("p1", "ben")
	e.payee("p1", "cal")

	d := e.partlyReturned("ben", "80.00", "80", "full-1")
	require.Equal(t, payouts.Returned, d.State)
	requireAmount(t, "80", posted(t, e.a, network.WalletAccount("ben")))
	_, err := p.Retry(e.ctx, admin, d.ID, "once more")
	require.NoError(t, err)
	d = e.submit(nil, d.ID)
	require.Equal(t, payouts.Paid, d.State)
	require.Len(t, d.Attempts, 2)
	requireAmount(t, "0", posted(t, e.a, network.WalletAccount("ben")))

	m, err := p.Returned(e.ctx, d.ID)
	require.NoError(t, err)
	requireAmount(t, "0", m.Outstanding, "the first attempt's return was paid by the second")
	requireAmount(t, "0", m.Returned)

	// Other money in the wallet (cal's grant is elsewhere; ben gets a waiting one) is not taken.
	w := e.grant(admin, "p1", "ben", "120.00", "waiting")
	require.Equal(t, payouts.AwaitingApproval, w.State)
	requireAmount(t, "120", posted(t, e.a, network.WalletAccount("ben")))
	_, err = p.ReturnReturnedToFund(e.ctx, admin, d.ID, "give it back")
	require.ErrorIs(t, err, payouts.ErrState)
	_, err = p.RepayReturned(e.ctx, admin, d.ID, "pay it again")
	require.ErrorIs(t, err, payouts.ErrState)
	requireAmount(t, "120", posted(t, e.a, network.WalletAccount("ben")))

	// The database refuses it whoever asks: a settlement needs an entry, any will do for the check.
	var entry string
	require.NoError(t, e.pool.QueryRow(e.ctx, `SELECT entry_id::text FROM payouts_returns WHERE disbursement_id = $1`, d.ID).Scan(&entry))
	_, err = e.pool.Exec(e.ctx, `INSERT INTO payouts_return_settlements (disbursement_id, kind, amount, entry_id, decided_by, reason)
		VALUES ($1, 'fund', 1, $2, 'test:sql', 'returned before the retry')`, d.ID, entry)
	require.Equal(t, "payouts_return_settlements_exceed", constraintOf(err))

	// A return of the latest attempt is still settled as before.
	sandbox, ok := p.Provider().(*payouts.Sandbox)
	require.True(t, ok)
	require.NoError(t, sandbox.Reverse(e.ctx, d.Attempts[1].ProviderRef, decimal.RequireFromString("30")))
	_, err = p.Settle(e.ctx, uuid.MustParse(d.ID), 2)
	require.NoError(t, err)
	require.Equal(t, payouts.Paid, e.get(d.ID).State)
	m, err = p.ReturnReturnedToFund(e.ctx, admin, d.ID, "give the part back")
	require.NoError(t, err)
	requireAmount(t, "30", m.Returned)
	requireAmount(t, "30", m.Settled)
	requireAmount(t, "120", posted(t, e.a, network.WalletAccount("ben")))
	e.requireCheckClean()
}
