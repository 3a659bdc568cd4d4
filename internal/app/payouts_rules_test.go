package app_test

// The rules of payouts (DESIGN.md §7), on a real PostgreSQL: the state machine (every legal
// move through the Store, every other one refused by the database and the API), dual
// control, caps, money going back to the fund, automatic retries with backoff and forfeits,
// commitments and coach stipends with the 1099-NEC report.
//
// Most tests do not start River: they call the work of the payout jobs themselves (Submit,
// Settle, AutoRetry, Sweep, ReleaseInstalments, PayStipends), on a clock they move, so that
// every step is deterministic. TestPayoutsAutoRetryThenForfeit runs River to show the retry
// happening by itself after its backoff.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// payoutsClock is the clock of the network and payouts in these tests: real time moved by an
// offset, or (Set) a fixed instant moved by the offset.
type payoutsClock struct {
	mu    sync.Mutex
	fixed time.Time
	off   time.Duration
}

func (c *payoutsClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fixed.IsZero() {
		return time.Now().Add(c.off)
	}
	return c.fixed.Add(c.off)
}

// Add moves the clock forward (or back) by d.
func (c *payoutsClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// Set fixes the clock at at.
func (c *payoutsClock) Set(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fixed, c.off = at, 0
}

// payoutsEnv is an App on its own database, its River client not started, on a clock the
// test moves.
type payoutsEnv struct {
	t    *testing.T
	ctx  context.Context
	pool *pgxpool.Pool
	a    *app.App
	clk  *payoutsClock
}

// newPayoutsEnv builds the env; at zero means the clock follows real time.
func newPayoutsEnv(t *testing.T, at time.Time, cfg app.Config) *payoutsEnv {
	t.Helper()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	clk := &payoutsClock{}
	if !at.IsZero() {
		clk.Set(at)
	}
	cfg.Now = clk.Now
	return &payoutsEnv{t: t, ctx: context.Background(), pool: pool, a: buildApp(t, pool, cfg), clk: clk}
}

// store is another payouts Store on the env's database, paying through provider.
func (e *payoutsEnv) store(provider payouts.Provider, cfg payouts.Config) *payouts.Store {
	e.t.Helper()
	in, err := jobs.NewInserter(e.pool)
	require.NoError(e.t, err)
	cfg.Ledger, cfg.Jobs, cfg.Provider, cfg.Now = e.a.Ledger, in, provider, e.clk.Now
	s, err := payouts.New(e.pool, cfg)
	require.NoError(e.t, err)
	return s
}

// earlyConsent is a consent signed before any clock these tests use.
func earlyConsent(person string) network.NewConsent {
	return network.NewConsent{Given: true, SignedBy: person, SignedOn: "2025-12-01", Scope: "network facts and payouts"}
}

// person records someone with roles and consent.
func (e *payoutsEnv) person(id string, roles ...string) {
	e.t.Helper()
	_, err := e.a.Network.AddPerson(e.ctx, admin, network.NewPerson{ID: id, Name: "Coach " + id, Roles: roles})
	require.NoError(e.t, err)
	_, err = e.a.Network.RecordConsent(e.ctx, admin, id, earlyConsent(id))
	require.NoError(e.t, err)
}

// payee records a participant with consent, enrolled in program (and so with a wallet).
func (e *payoutsEnv) payee(program, id string) {
	e.t.Helper()
	e.person(id, "participant")
	_, err := e.a.Network.Enrol(e.ctx, admin, program, id, "")
	require.NoError(e.t, err)
}

// connect records a connection started on started.
func (e *payoutsEnv) connect(participant, other, role, started string) string {
	e.t.Helper()
	c, err := e.a.Network.Connect(e.ctx, admin, network.NewConnection{ParticipantID: participant, OtherID: other, Role: role,
		Origin: "matched", StartedOn: started})
	require.NoError(e.t, err)
	return c.ID
}

// talk logs a conversation on connection at at, verified or not.
func (e *payoutsEnv) talk(connection string, at time.Time, verified bool) {
	e.t.Helper()
	_, err := e.a.Network.LogConversation(e.ctx, admin, network.NewConversation{ConnectionID: connection, OccurredAt: at,
		Channel: "video", Minutes: 30, Verified: verified})
	require.NoError(e.t, err)
}

// grant creates a manual disbursement requested by by.
func (e *payoutsEnv) grant(by network.By, program, person, amount, key string) payouts.Disbursement {
	e.t.Helper()
	d, err := e.a.Payouts.Create(e.ctx, by, payouts.NewDisbursement{Program: program, Person: person, Amount: amount,
		Reason: "grant " + key, IdempotencyKey: key})
	require.NoError(e.t, err)
	return d
}

func (e *payoutsEnv) get(id string) payouts.Disbursement {
	e.t.Helper()
	d, err := e.a.Payouts.Get(e.ctx, id)
	require.NoError(e.t, err)
	return d
}

// submit runs the submit job's work for id with s (the App's store when nil).
func (e *payoutsEnv) submit(s *payouts.Store, id string) payouts.Disbursement {
	e.t.Helper()
	if s == nil {
		s = e.a.Payouts
	}
	require.NoError(e.t, s.Submit(e.ctx, uuid.MustParse(id)))
	return e.get(id)
}

func (e *payoutsEnv) destination(person, account string) payouts.Destination {
	e.t.Helper()
	d, err := e.a.Payouts.SetDestination(e.ctx, admin, person, account)
	require.NoError(e.t, err)
	return d
}

func (e *payoutsEnv) requireCheckClean() {
	e.t.Helper()
	problems, err := e.a.Ledger.Check(e.ctx)
	require.NoError(e.t, err)
	require.Empty(e.t, problems)
}

// moves lists a disbursement's transitions as from→to ("→x" for the first).
func moves(d payouts.Disbursement) []string {
	out := make([]string, 0, len(d.Transitions))
	for _, tr := range d.Transitions {
		out = append(out, tr.From+"→"+tr.To)
	}
	return out
}

func lastTransition(t *testing.T, d payouts.Disbursement) payouts.Transition {
	t.Helper()
	require.NotEmpty(t, d.Transitions)
	return d.Transitions[len(d.Transitions)-1]
}

// entryLines lists an entry's lines as "side account amount", sorted.
func entryLines(t *testing.T, a *app.App, id string) []string {
	t.Helper()
	require.NotEmpty(t, id, "entry id")
	e, err := a.Ledger.Entry(context.Background(), uuid.MustParse(id))
	require.NoError(t, err)
	var out []string
	for _, l := range e.Lines {
		out = append(out, fmt.Sprintf("%s %s %s", l.Side, l.Account, ledger.FormatAmount(l.Amount, l.Currency)))
	}
	sort.Strings(out)
	return out
}

// constraintOf is the constraint a database error names, or "".
func constraintOf(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.ConstraintName
	}
	return ""
}

// sqlMove tries to move a disbursement from → to straight in the database, as the Store
// does (the transition row first, then the state, approved_at stamped when approving), and
// rolls back whatever happened: it returns the database's answer.
func sqlMove(t *testing.T, pool *pgxpool.Pool, id, from, to string) error {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason)
		VALUES ($1, $2, $3, 'test:sql', 'a direct move')`, id, from, to); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE payouts_disbursements SET state = $2, updated_at = clock_timestamp(),
		approved_at = CASE WHEN $2 = 'approved' THEN coalesce(approved_at, clock_timestamp()) ELSE approved_at END
		WHERE id = $1`, id, to)
	return err
}

// sqlInsert tries to create a manual disbursement of person straight in state to (its first
// transition from NULL), funded by entry, and rolls back.
func sqlInsert(t *testing.T, pool *pgxpool.Pool, program, person, entry, to string) error {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	id := uuid.Must(uuid.NewV7())
	if _, err := tx.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason)
		VALUES ($1, NULL, $2, 'test:sql', 'a direct insert')`, id, to); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO payouts_disbursements (id, program_id, person_id, wallet, amount, currency, source,
		funding_entry_id, reason, state, approvals_needed, requested_by, approved_at)
		VALUES ($1, $2, $3, $4, 10, 'USD', 'manual', $5, 'a direct insert', $6, 0, 'test:sql',
		CASE WHEN $6 = 'approved' THEN clock_timestamp() END)`, id, program, person, network.WalletAccount(person), entry, to)
	return err
}

func intPtr(i int) *int { return &i }

// allStates are the states of payouts_disbursements.
var allStates = []string{payouts.AwaitingApproval, payouts.Approved, payouts.Submitted, payouts.Paid, payouts.Rejected,
	payouts.Canceled, payouts.InsufficientFunds, payouts.Failed, payouts.Returned, payouts.Forfeited}

// legalMoves is payouts_legal_transitions as DESIGN.md §7 and migrations 004, 005 and 008 define it
// ("" is a disbursement's birth).
var legalMoves = []string{
	"→awaiting_approval", "→approved", "→insufficient_funds",
	"insufficient_funds→awaiting_approval", "insufficient_funds→approved", "insufficient_funds→canceled",
	"awaiting_approval→approved", "awaiting_approval→rejected", "awaiting_approval→canceled",
	"approved→submitted", "approved→canceled", "approved→failed",
	"submitted→paid", "submitted→failed",
	"failed→approved", "failed→canceled", "failed→forfeited",
	"paid→returned",
	"returned→approved", "returned→canceled", // returned in full: paid again, or given back to the fund
	// back for approval: the destination changed after approval (008; TestFourEyesDestinationChanged)
	"approved→awaiting_approval", "failed→awaiting_approval",
}

// waitingAward makes participant (connected to mentor mo) earn program's ruleMentor4 award
// (50.00) while the program's fund cannot cover it: the award's disbursement waits in
// insufficient_funds.
func (e *payoutsEnv) waitingAward(program, participant string) payouts.Disbursement {
	e.t.Helper()
	c := addParticipant(e.t, e.a.Network, program, participant, "mo")
	require.NotEmpty(e.t, c)
	for i := range 4 {
		require.NotEmpty(e.t, conv(e.t, e.a.Network, c, i, true))
	}
	_, err := e.a.Network.EvaluateParticipant(e.ctx, participant)
	require.NoError(e.t, err)
	ds, err := e.a.Payouts.List(e.ctx, payouts.Filter{Person: participant})
	require.NoError(e.t, err)
	require.Len(e.t, ds, 1)
	require.Equal(e.t, payouts.InsufficientFunds, ds[0].State)
	require.Equal(e.t, "award", ds[0].Source)
	return e.get(ds[0].ID)
}

// TestPayoutsLegalTransitions reaches every legal move of payouts_legal_transitions through
// the Store, checking who made it, why, and what it did to the money.
func TestPayoutsLegalTransitions(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	newProgram(t, a.Network, "p1", "10000.00", "100.00")
	for _, id := range []string{"ana", "ben", "cat", "fay", "gus", "hal", "ivy", "jo"} {
		e.payee("p1", id)
	}
	addMentor(t, a.Network, "mo")
	// A sandbox whose payouts settle a second after they are sent, and Stripe, where nobody
	// has a destination (its API is never reached: submission fails before).
	slow := e.store(payouts.NewSandbox(e.pool, payouts.SandboxConfig{Delay: time.Second}), payouts.Config{})
	stripe, err := payouts.NewStripe(payouts.StripeConfig{SecretKey: "sk_test_unused", BaseURL: "http://127.0.0.1:9"})
	require.NoError(t, err)
	viaStripe := e.store(stripe, payouts.Config{})

	var rows [][2]string
	r, err := e.pool.Query(ctx, `SELECT coalesce(from_state, ''), to_state FROM payouts_legal_transitions`)
	require.NoError(t, err)
	for r.Next() {
		var from, to string
		require.NoError(t, r.Scan(&from, &to))
		rows = append(rows, [2]string{from, to})
	}
	require.NoError(t, r.Err())
	var table []string
	for _, row := range rows {
		table = append(table, row[0]+"→"+row[1])
	}
	require.ElementsMatch(t, legalMoves, table, "payouts_legal_transitions")
	require.Len(t, table, 22)

	t.Run("awaiting_approval→approved", func(t *testing.T) {
		d := e.grant(admin, "p1", "ana", "300.00", "aw-approve")
		require.Equal(t, payouts.AwaitingApproval, d.State)
		require.Equal(t, 1, d.ApprovalsNeeded)
		require.Nil(t, d.ApprovedAt)
		d, err := approveSeen(ctx, p, admin2, d.ID, "checked the invoice")
		require.NoError(t, err)
		require.Equal(t, payouts.Approved, d.State)
		require.NotNil(t, d.ApprovedAt)
		require.Equal(t, []string{"→awaiting_approval", "awaiting_approval→approved"}, moves(d))
		last := lastTransition(t, d)
		require.Equal(t, "test-admin-2", last.Actor)
		require.Equal(t, "approved by person:adm2: checked the invoice", last.Reason)
		require.Len(t, d.Approvals, 1)
		require.Equal(t, "person:adm2", d.Approvals[0].Approver)
		require.Equal(t, 1, queryInt(t, e.pool, `SELECT count(*) FROM river_job WHERE kind = 'submit_payout' AND args->>'disbursement' = $1`, d.ID),
			"approval asks for submission")
	})

	t.Run("awaiting_approval→rejected", func(t *testing.T) {
		d := e.grant(admin, "p1", "ana", "300.00", "aw-reject")
		d, err := p.Reject(ctx, admin2, d.ID, "duplicate request")
		require.NoError(t, err)
		require.Equal(t, payouts.Rejected, d.State)
		require.Equal(t, []string{"→awaiting_approval", "awaiting_approval→rejected"}, moves(d))
		require.Equal(t, "duplicate request", lastTransition(t, d).Reason)
		require.Equal(t, "test-admin-2", lastTransition(t, d).Actor)
		require.NotEmpty(t, d.FundReturnEntryID)
	})

	t.Run("awaiting_approval→canceled", func(t *testing.T) {
		d := e.grant(admin, "p1", "ana", "300.00", "aw-cancel")
		d, err := p.Cancel(ctx, admin, d.ID, "requested by mistake")
		require.NoError(t, err)
		require.Equal(t, payouts.Canceled, d.State)
		require.Equal(t, []string{"→awaiting_approval", "awaiting_approval→canceled"}, moves(d))
		require.Equal(t, "requested by mistake", lastTransition(t, d).Reason)
		require.NotEmpty(t, d.FundReturnEntryID)
	})

	t.Run("approved→submitted→paid", func(t *testing.T) {
		d := e.grant(admin, "p1", "ben", "50.00", "ap-paid")
		require.Equal(t, payouts.Approved, d.State)
		require.Equal(t, 0, d.ApprovalsNeeded)
		d = e.submit(nil, d.ID)
		require.Equal(t, payouts.Paid, d.State)
		require.Equal(t, []string{"→approved", "approved→submitted", "submitted→paid"}, moves(d))
		require.Len(t, d.Attempts, 1)
		at := d.Attempts[0]
		require.Equal(t, "paid", at.Outcome)
		require.Equal(t, d.ID, at.IdempotencyKey)
		require.Equal(t, "sandbox:ben", at.Destination)
		require.Equal(t, "sbx_"+d.ID, at.ProviderRef)
		require.Equal(t, payouts.SystemActor.Name, lastTransition(t, d).Actor)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("ben")))
	})

	t.Run("submitted→paid on a later look (Settle)", func(t *testing.T) {
		d := e.grant(admin, "p1", "cat", "40.00", "slow-paid")
		d = e.submit(slow, d.ID)
		require.Equal(t, payouts.Submitted, d.State, "the slow sandbox has not settled it")
		require.Len(t, d.Attempts, 1)
		require.Empty(t, d.Attempts[0].Outcome)
		require.NotEmpty(t, d.Attempts[0].ProviderRef)
		b, err := a.Ledger.Balance(ctx, network.WalletAccount("cat"), ledger.AsOf{})
		require.NoError(t, err)
		requireAmount(t, "40", b.Posted)
		requireAmount(t, "0", b.Available, "the pending payout holds the wallet")
		require.Equal(t, 1, queryInt(t, e.pool, `SELECT count(*) FROM river_job WHERE kind = 'settle_payout' AND args->>'disbursement' = $1`, d.ID))
		waitUntil(t, 5*time.Second, "the slow payout to settle", func() bool {
			out, err := slow.Settle(ctx, uuid.MustParse(d.ID), 1)
			require.NoError(t, err)
			return out == payouts.OutcomePaid
		})
		d = e.get(d.ID)
		require.Equal(t, payouts.Paid, d.State)
		require.Equal(t, []string{"→approved", "approved→submitted", "submitted→paid"}, moves(d))
		require.Equal(t, "attempt 1 paid (sandbox status)", lastTransition(t, d).Reason)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("cat")))
	})

	t.Run("approved→canceled", func(t *testing.T) {
		d := e.grant(admin, "p1", "cat", "30.00", "ap-cancel")
		require.Equal(t, payouts.Approved, d.State)
		d, err := p.Cancel(ctx, admin, d.ID, "paid by cheque instead")
		require.NoError(t, err)
		require.Equal(t, payouts.Canceled, d.State)
		require.Equal(t, []string{"→approved", "approved→canceled"}, moves(d))
		d = e.submit(nil, d.ID) // the submission asked for at approval finds it canceled
		require.Equal(t, payouts.Canceled, d.State)
		require.Empty(t, d.Attempts)
		require.NotEmpty(t, d.FundReturnEntryID)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("cat")))
	})

	t.Run("approved→failed (no destination at the provider)", func(t *testing.T) {
		d := e.grant(admin, "p1", "jo", "30.00", "ap-nodest")
		d = e.submit(viaStripe, d.ID)
		require.Equal(t, payouts.Failed, d.State)
		require.Equal(t, []string{"→approved", "approved→failed"}, moves(d))
		require.Empty(t, d.Attempts, "nothing was sent")
		reason := lastTransition(t, d).Reason
		require.Contains(t, reason, "no payout destination: jo has no stripe account on file")
		require.Contains(t, reason, "automatic retry 1 of 2")
		requireAmount(t, "30", posted(t, a, network.WalletAccount("jo")), "the money stays in the wallet")
	})

	var fayID string
	t.Run("submitted→failed", func(t *testing.T) {
		e.destination("fay", "fail:account-closed")
		d := e.grant(admin, "p1", "fay", "20.00", "fail-1")
		fayID = d.ID
		d = e.submit(nil, d.ID)
		require.Equal(t, payouts.Failed, d.State)
		require.Equal(t, []string{"→approved", "approved→submitted", "submitted→failed"}, moves(d))
		require.Len(t, d.Attempts, 1)
		require.Equal(t, "failed", d.Attempts[0].Outcome)
		require.Equal(t, "account-closed", d.Attempts[0].Reason)
		require.Equal(t, "fail:account-closed", d.Attempts[0].Destination)
		require.Contains(t, lastTransition(t, d).Reason, "attempt 1 failed (sandbox): account-closed; automatic retry 1 of 2")
		requireAmount(t, "20", posted(t, a, network.WalletAccount("fay")), "the pending payout is voided")
	})

	t.Run("failed→approved by Retry", func(t *testing.T) {
		require.NotEmpty(t, fayID)
		d, err := p.Retry(ctx, admin, fayID, "")
		require.NoError(t, err)
		require.Equal(t, payouts.Approved, d.State)
		last := lastTransition(t, d)
		require.Equal(t, "failed→approved", last.From+"→"+last.To)
		require.Equal(t, "retried by an admin", last.Reason)
		require.Equal(t, "test-admin", last.Actor)
		d = e.submit(nil, fayID)
		require.Equal(t, payouts.Failed, d.State, "the destination still refuses")
		require.Len(t, d.Attempts, 2)
		require.Equal(t, fayID+":2", d.Attempts[1].IdempotencyKey)
	})

	t.Run("failed→approved by SetDestination", func(t *testing.T) {
		require.NotEmpty(t, fayID)
		dest := e.destination("fay", "sandbox:fay-new-bank")
		require.Equal(t, []string{fayID}, dest.Retried)
		d := e.get(fayID)
		require.Equal(t, payouts.Approved, d.State)
		require.Equal(t, "payout destination updated: retried", lastTransition(t, d).Reason)
		d = e.submit(nil, fayID)
		require.Equal(t, payouts.Paid, d.State)
		require.Len(t, d.Attempts, 3)
		require.Equal(t, "sandbox:fay-new-bank", d.Attempts[2].Destination)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("fay")))
	})

	t.Run("failed→approved by AutoRetry", func(t *testing.T) {
		e.destination("gus", "fail:insufficient")
		d := e.grant(admin, "p1", "gus", "20.00", "auto-1")
		d = e.submit(nil, d.ID)
		require.Equal(t, payouts.Failed, d.State)
		require.Equal(t, 1, queryInt(t, e.pool, `SELECT count(*) FROM river_job WHERE kind = 'retry_payout'
			AND args->>'disbursement' = $1 AND (args->>'failures')::int = 1`, d.ID), "the failure asks for its automatic retry")
		require.NoError(t, p.AutoRetry(ctx, uuid.MustParse(d.ID), 2))
		require.Equal(t, payouts.Failed, e.get(d.ID).State, "a retry for another failure does nothing")
		require.NoError(t, p.AutoRetry(ctx, uuid.MustParse(d.ID), 1))
		d = e.get(d.ID)
		require.Equal(t, payouts.Approved, d.State)
		last := lastTransition(t, d)
		require.Equal(t, "failed→approved", last.From+"→"+last.To)
		require.Equal(t, payouts.SystemActor.Name, last.Actor)
		require.Equal(t, "automatic retry after failure 1", last.Reason)
		require.NoError(t, p.AutoRetry(ctx, uuid.MustParse(d.ID), 1))
		require.Len(t, e.get(d.ID).Transitions, len(d.Transitions), "a repeated retry job does nothing")
	})

	t.Run("failed→canceled", func(t *testing.T) {
		e.destination("hal", "fail:closed")
		d := e.grant(admin, "p1", "hal", "25.00", "fail-cancel")
		require.Equal(t, payouts.Failed, e.submit(nil, d.ID).State)
		d, err := p.Cancel(ctx, admin, d.ID, "the person left the program")
		require.NoError(t, err)
		require.Equal(t, payouts.Canceled, d.State)
		require.Equal(t, "failed→canceled", lastTransition(t, d).From+"→"+lastTransition(t, d).To)
		require.NotEmpty(t, d.FundReturnEntryID)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("hal")))
	})

	var returnedID string
	t.Run("paid→returned (in full; a partial return stays paid)", func(t *testing.T) {
		d := e.grant(admin, "p1", "ben", "80.00", "ret-1")
		d = e.submit(nil, d.ID)
		require.Equal(t, payouts.Paid, d.State)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("ben")))
		sandbox, ok := p.Provider().(*payouts.Sandbox)
		require.True(t, ok)

		// 30.00 of 80.00 back: the return is recorded and in the wallet, the disbursement stays paid.
		require.NoError(t, sandbox.Reverse(ctx, d.Attempts[0].ProviderRef, decimal.RequireFromString("30")))
		out, err := p.Settle(ctx, uuid.MustParse(d.ID), 1)
		require.NoError(t, err)
		require.Equal(t, payouts.OutcomePaid, out)
		d = e.get(d.ID)
		require.Equal(t, payouts.Paid, d.State, "a partial return stays paid")
		require.Equal(t, []string{"→approved", "approved→submitted", "submitted→paid"}, moves(d))
		require.Len(t, d.Returns, 1)
		require.Equal(t, 1, d.Returns[0].Attempt)
		require.Equal(t, "30.00", d.Returns[0].Amount)
		require.Equal(t, "sandbox status", d.Returns[0].Event)
		require.Equal(t, "30.00", d.Attempts[0].Returned)
		require.Equal(t, "paid", d.Attempts[0].Outcome)
		require.Equal(t, []string{"credit participant/ben/wallet 30.00", "debit org/cash/stripe 30.00"}, entryLines(t, a, d.Returns[0].EntryID))
		requireAmount(t, "30", posted(t, a, network.WalletAccount("ben")), "the return is back in the wallet")

		// Looking again finds nothing new.
		_, err = p.Settle(ctx, uuid.MustParse(d.ID), 1)
		require.NoError(t, err)
		d = e.get(d.ID)
		require.Len(t, d.Returns, 1)
		require.Equal(t, payouts.Paid, d.State)

		// The rest comes back: returned in full, the disbursement is returned.
		require.NoError(t, sandbox.Reverse(ctx, d.Attempts[0].ProviderRef, decimal.RequireFromString("50")))
		_, err = p.Settle(ctx, uuid.MustParse(d.ID), 1)
		require.NoError(t, err)
		d = e.get(d.ID)
		require.Equal(t, payouts.Returned, d.State)
		require.Equal(t, []string{"→approved", "approved→submitted", "submitted→paid", "paid→returned"}, moves(d))
		last := lastTransition(t, d)
		require.Equal(t, payouts.SystemActor.Name, last.Actor)
		require.Equal(t, "the provider returned the payout (sandbox status); it is back in the wallet: retry it (e.g. after a new destination) or cancel it",
			last.Reason)
		require.Len(t, d.Returns, 2)
		require.Equal(t, "50.00", d.Returns[1].Amount)
		require.Equal(t, []string{"credit participant/ben/wallet 50.00", "debit org/cash/stripe 50.00"}, entryLines(t, a, d.Returns[1].EntryID))
		require.Equal(t, "80.00", d.Attempts[0].Returned)
		require.Empty(t, d.FundReturnEntryID)
		requireAmount(t, "80", posted(t, a, network.WalletAccount("ben")))
		returnedID = d.ID
	})

	t.Run("returned→approved by Retry", func(t *testing.T) {
		require.NotEmpty(t, returnedID)
		_, err := approveSeen(ctx, p, admin2, returnedID, "")
		require.ErrorIs(t, err, payouts.ErrState, "a returned disbursement is not approved again, it is retried")
		d, err := p.Retry(ctx, admin, returnedID, "paid again to the new account")
		require.NoError(t, err)
		require.Equal(t, payouts.Approved, d.State)
		last := lastTransition(t, d)
		require.Equal(t, "returned→approved", last.From+"→"+last.To)
		require.Equal(t, "paid again to the new account", last.Reason)
		require.Equal(t, "test-admin", last.Actor)
		require.Equal(t, 2, queryInt(t, e.pool, `SELECT count(*) FROM river_job WHERE kind = 'submit_payout' AND args->>'disbursement' = $1`, d.ID),
			"the retry asks for its own submission")
		d = e.submit(nil, returnedID)
		require.Equal(t, payouts.Paid, d.State)
		require.Equal(t, []string{"→approved", "approved→submitted", "submitted→paid", "paid→returned", "returned→approved",
			"approved→submitted", "submitted→paid"}, moves(d))
		require.Len(t, d.Attempts, 2)
		require.Equal(t, returnedID+":2", d.Attempts[1].IdempotencyKey, "a new attempt with a new key")
		require.Equal(t, "paid", d.Attempts[1].Outcome)
		require.Equal(t, "0.00", d.Attempts[1].Returned)
		require.Equal(t, "80.00", d.Attempts[0].Returned)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("ben")), "the returned money left again")
	})

	t.Run("returned→canceled", func(t *testing.T) {
		d := e.grant(admin, "p1", "ben", "60.00", "ret-cancel")
		d = e.submit(nil, d.ID)
		require.Equal(t, payouts.Paid, d.State)
		require.NoError(t, p.Provider().(*payouts.Sandbox).Reverse(ctx, d.Attempts[0].ProviderRef, decimal.RequireFromString("60")))
		_, err := p.Settle(ctx, uuid.MustParse(d.ID), 1)
		require.NoError(t, err)
		require.Equal(t, payouts.Returned, e.get(d.ID).State)
		requireAmount(t, "60", posted(t, a, network.WalletAccount("ben")))
		fund := posted(t, a, "program/p1/fund")

		d, err = p.Cancel(ctx, admin, d.ID, "the person left the program")
		require.NoError(t, err)
		require.Equal(t, payouts.Canceled, d.State)
		last := lastTransition(t, d)
		require.Equal(t, "returned→canceled", last.From+"→"+last.To)
		require.Equal(t, "the person left the program", last.Reason)
		require.Equal(t, "test-admin", last.Actor)
		require.NotEmpty(t, d.FundReturnEntryID)
		require.Equal(t, []string{"credit program/p1/fund 60.00", "debit participant/ben/wallet 60.00"}, entryLines(t, a, d.FundReturnEntryID))
		require.Equal(t, 1, entriesWithKey(t, e.pool, "fund-return:"+d.ID))
		requireAmount(t, "0", posted(t, a, network.WalletAccount("ben")))
		requireAmount(t, fund.Add(decimal.RequireFromString("60")).String(), posted(t, a, "program/p1/fund"), "back in the fund")
		_, err = p.Retry(ctx, admin, d.ID, "")
		require.ErrorIs(t, err, payouts.ErrState)
	})

	t.Run("insufficient_funds→approved, awaiting_approval, canceled", func(t *testing.T) {
		newProgram(t, a.Network, "pa", "", "100.00", ruleMentor4)
		newProgram(t, a.Network, "pb", "", "0", ruleMentor4)
		newProgram(t, a.Network, "pc", "", "100.00", ruleMentor4)
		una := e.waitingAward("pa", "una")
		vic := e.waitingAward("pb", "vic")
		wes := e.waitingAward("pc", "wes")
		require.Equal(t, []string{"→insufficient_funds"}, moves(una))
		require.Contains(t, una.Transitions[0].Reason, "the program fund cannot cover 50.00 USD yet")
		requireAmount(t, "0", received(t, a, network.WalletAccount("una")))

		for _, prog := range []string{"pa", "pb"} {
			_, err := a.Network.Fund(ctx, admin, prog, "100.00", prog+"-late-funding")
			require.NoError(t, err)
			paid, err := a.Network.ReleaseWaiting(ctx, prog)
			require.NoError(t, err)
			require.Equal(t, 1, paid)
		}
		d := e.get(una.ID)
		require.Equal(t, payouts.Approved, d.State)
		require.Equal(t, []string{"→insufficient_funds", "insufficient_funds→approved"}, moves(d))
		require.Contains(t, lastTransition(t, d).Reason, "paid into the wallet after funding; within the auto-approve limit")
		requireAmount(t, "50", posted(t, a, network.WalletAccount("una")))
		d = e.get(vic.ID)
		require.Equal(t, payouts.AwaitingApproval, d.State)
		require.Equal(t, []string{"→insufficient_funds", "insufficient_funds→awaiting_approval"}, moves(d))
		require.Contains(t, lastTransition(t, d).Reason, "above the auto-approve limit of 0.00 USD: an admin must approve")

		d, err := p.Cancel(ctx, admin, wes.ID, "the participant left")
		require.NoError(t, err)
		require.Equal(t, payouts.Canceled, d.State)
		require.Equal(t, []string{"→insufficient_funds", "insufficient_funds→canceled"}, moves(d))
		require.Empty(t, d.FundReturnEntryID, "the money never reached the wallet: nothing goes back")
		requireAmount(t, "0", posted(t, a, "program/pc/fund"))

		// A manual grant the fund cannot cover is refused outright.
		e.payee("pc", "xan")
		_, err = p.Create(ctx, admin, payouts.NewDisbursement{Program: "pc", Person: "xan", Amount: "10.00", Reason: "fare", IdempotencyKey: "pc-1"})
		require.ErrorIs(t, err, ledger.ErrInsufficientFunds)
		ds, err := p.List(ctx, payouts.Filter{Person: "xan"})
		require.NoError(t, err)
		require.Empty(t, ds)
	})

	t.Run("failed→forfeited", func(t *testing.T) {
		e.destination("ivy", "fail:account-frozen")
		d := e.grant(admin, "p1", "ivy", "35.00", "forfeit-1")
		require.Equal(t, payouts.Failed, e.submit(nil, d.ID).State)
		fund := posted(t, a, "program/p1/fund")
		res, err := p.Sweep(ctx)
		require.NoError(t, err)
		require.Equal(t, payouts.SweepResult{}, res, "nothing is due yet")

		// Past the default remediation window of 30 days: ivy's and jo's failed payouts are
		// forfeited; the approved ones are asked for again, but their submit jobs still wait
		// (no worker runs here), so nothing new is enqueued and none counts as resubmitted.
		e.clk.Add(30*24*time.Hour + time.Hour)
		res, err = p.Sweep(ctx)
		require.NoError(t, err)
		require.Equal(t, payouts.SweepResult{Forfeited: 2}, res)
		d = e.get(d.ID)
		require.Equal(t, payouts.Forfeited, d.State)
		last := lastTransition(t, d)
		require.Equal(t, "failed→forfeited", last.From+"→"+last.To)
		require.Equal(t, "not fixed within the remediation window of 30 days", last.Reason)
		require.Equal(t, []string{"credit program/p1/fund 35.00", "debit participant/ivy/wallet 35.00"}, entryLines(t, a, d.FundReturnEntryID))
		require.Equal(t, payouts.Forfeited, e.get(d.ID).State)
		jo, err := p.List(ctx, payouts.Filter{Person: "jo"})
		require.NoError(t, err)
		require.Len(t, jo, 1)
		require.Equal(t, payouts.Forfeited, jo[0].State)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("ivy")))
		requireAmount(t, "0", posted(t, a, network.WalletAccount("jo")))
		requireAmount(t, fund.Add(decimal.RequireFromString("65")).String(), posted(t, a, "program/p1/fund"))
	})

	e.requireCheckClean()
}

// TestPayoutsIllegalTransitions: with a disbursement in every state, every move not in
// payouts_legal_transitions is refused by the database (constraint payouts_transition), and
// the Store's actions refuse every state they do not apply to (ErrState), changing nothing.
func TestPayoutsIllegalTransitions(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	newProgram(t, a.Network, "p1", "10000.00", "100.00")
	for _, id := range []string{"ana", "ben", "fay", "ivy"} {
		e.payee("p1", id)
	}
	addMentor(t, a.Network, "mo")
	hold := e.store(payouts.NewSandbox(e.pool, payouts.SandboxConfig{Delay: time.Hour}), payouts.Config{})

	ids := map[string]string{}
	// forfeited first: the sweep that forfeits it runs on a clock 31 days ahead.
	e.destination("ivy", "fail:frozen")
	d := e.grant(admin, "p1", "ivy", "20.00", "s-forfeited")
	e.submit(nil, d.ID)
	e.clk.Add(31 * 24 * time.Hour)
	res, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Forfeited)
	e.clk.Add(-31 * 24 * time.Hour)
	ids[payouts.Forfeited] = d.ID

	ids[payouts.AwaitingApproval] = e.grant(admin, "p1", "ana", "300.00", "s-awaiting").ID
	ids[payouts.Approved] = e.grant(admin, "p1", "ana", "50.00", "s-approved").ID
	d = e.grant(admin, "p1", "ana", "40.00", "s-submitted")
	e.submit(hold, d.ID)
	ids[payouts.Submitted] = d.ID
	d = e.grant(admin, "p1", "ben", "30.00", "s-paid")
	e.submit(nil, d.ID)
	ids[payouts.Paid] = d.ID
	d = e.grant(admin, "p1", "ben", "20.00", "s-returned")
	d = e.submit(nil, d.ID)
	require.NoError(t, p.Provider().(*payouts.Sandbox).Reverse(ctx, d.Attempts[0].ProviderRef, decimal.RequireFromString("20")))
	_, err = p.Settle(ctx, uuid.MustParse(d.ID), 1)
	require.NoError(t, err)
	ids[payouts.Returned] = d.ID
	d = e.grant(admin, "p1", "ana", "300.00", "s-rejected")
	_, err = p.Reject(ctx, admin2, d.ID, "no")
	require.NoError(t, err)
	ids[payouts.Rejected] = d.ID
	d = e.grant(admin, "p1", "ana", "300.00", "s-canceled")
	_, err = p.Cancel(ctx, admin, d.ID, "no")
	require.NoError(t, err)
	ids[payouts.Canceled] = d.ID
	e.destination("fay", "fail:closed")
	d = e.grant(admin, "p1", "fay", "20.00", "s-failed")
	e.submit(nil, d.ID)
	ids[payouts.Failed] = d.ID
	newProgram(t, a.Network, "pw", "", "100.00", ruleMentor4)
	ids[payouts.InsufficientFunds] = e.waitingAward("pw", "una").ID
	for _, s := range allStates {
		require.Equal(t, s, e.get(ids[s]).State, "the disbursement for %s", s)
	}

	legal := map[string]bool{}
	for _, m := range legalMoves {
		legal[m] = true
	}
	t.Run("database", func(t *testing.T) {
		var mismatches []string
		illegal := 0
		for _, from := range allStates {
			for _, to := range allStates {
				move := from + "→" + to
				want := "payouts_transition"
				switch {
				case move == "awaiting_approval→approved":
					want = "payouts_dual_control" // legal, with the approvals it needs (it has none)
				case from == payouts.InsufficientFunds && !contains([]string{payouts.InsufficientFunds, payouts.Canceled, payouts.Rejected}, to):
					// The award guard comes first: the award is not paid into the wallet.
					want = "payouts_award"
				case legal[move]:
					want = ""
				}
				if !legal[move] {
					illegal++
				}
				err := sqlMove(t, e.pool, ids[from], from, to)
				if got := constraintOf(err); got != want || (want == "" && err != nil) {
					mismatches = append(mismatches, fmt.Sprintf("%s: want %q, got %q (%v)", move, want, got, err))
				}
			}
		}
		var entry string
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT id::text FROM ledger_entries WHERE idempotency_key = 'p1-initial-funding'`).Scan(&entry))
		for _, to := range allStates {
			want := "payouts_transition"
			if legal["→"+to] {
				want = ""
			} else {
				illegal++
			}
			err := sqlInsert(t, e.pool, "p1", "ana", entry, to)
			if got := constraintOf(err); got != want || (want == "" && err != nil) {
				mismatches = append(mismatches, fmt.Sprintf("→%s: want %q, got %q (%v)", to, want, got, err))
			}
		}
		require.Empty(t, mismatches)
		require.Equal(t, 100+10-len(legalMoves), illegal)
		for _, s := range allStates {
			require.Equal(t, s, e.get(ids[s]).State, "nothing was changed")
		}
	})

	t.Run("a state change without its transition row", func(t *testing.T) {
		_, err := e.pool.Exec(ctx, `UPDATE payouts_disbursements SET state = 'canceled' WHERE id = $1`, ids[payouts.Approved])
		require.Equal(t, "payouts_transition", constraintOf(err), "%v", err)
		_, err = e.pool.Exec(ctx, `DELETE FROM payouts_transitions WHERE disbursement_id = $1`, ids[payouts.Approved])
		require.Equal(t, "payouts_append_only", constraintOf(err), "%v", err)
	})

	t.Run("an attempt's outcome is its pending entry's commit or void", func(t *testing.T) {
		// The open attempt of the submitted disbursement (its sandbox settles in an hour).
		open := e.get(ids[payouts.Submitted])
		require.Len(t, open.Attempts, 1)
		require.Empty(t, open.Attempts[0].Outcome)
		pending := open.Attempts[0].PendingEntryID
		paid := e.get(ids[payouts.Paid]).Attempts[0]
		failed := e.get(ids[payouts.Failed]).Attempts[0]
		require.Equal(t, "paid", paid.Outcome)
		require.Equal(t, "failed", failed.Outcome)
		settle := func(db interface {
			Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		}, outcome string, entry any) error {
			_, err := db.Exec(ctx, `UPDATE payouts_attempts SET outcome = $2, resolved_entry_id = $3::uuid, settled_at = clock_timestamp()
				WHERE disbursement_id = $1 AND attempt = 1`, ids[payouts.Submitted], outcome, entry)
			return err
		}
		for name, c := range map[string]struct {
			outcome string
			entry   any
		}{
			"paid without an entry":                   {"paid", nil},
			"paid by the pending entry itself":        {"paid", pending},
			"paid by another attempt's commit":        {"paid", paid.ResolvedEntryID},
			"failed by another attempt's void":        {"failed", failed.ResolvedEntryID},
			"failed by another attempt's commit":      {"failed", paid.ResolvedEntryID},
			"paid by another attempt's pending entry": {"paid", paid.PendingEntryID},
		} {
			err := settle(e.pool, c.outcome, c.entry)
			assert.Equal(t, "payouts_attempt_outcome", constraintOf(err), "%s: %v", name, err)
		}

		// Its own commit settles it as paid, not as failed; its own void as failed, not as
		// paid (each tried in a transaction rolled back).
		for _, c := range []struct{ resolve, wrong, right string }{{"commit", "failed", "paid"}, {"void", "paid", "failed"}} {
			tx, err := e.pool.Begin(ctx)
			require.NoError(t, err)
			res := ledger.Resolution{IdempotencyKey: "test-" + c.resolve + ":" + ids[payouts.Submitted], Description: "by hand"}
			var entry ledger.Entry
			if c.resolve == "commit" {
				entry, err = a.Ledger.CommitTx(ctx, tx, uuid.MustParse(pending), res)
			} else {
				entry, err = a.Ledger.VoidTx(ctx, tx, uuid.MustParse(pending), res)
			}
			require.NoError(t, err)
			sp, err := tx.Begin(ctx)
			require.NoError(t, err)
			err = settle(sp, c.wrong, entry.ID.String())
			assert.Equal(t, "payouts_attempt_outcome", constraintOf(err), "%s by its own %s: %v", c.wrong, c.resolve, err)
			require.NoError(t, sp.Rollback(ctx))
			assert.NoError(t, settle(tx, c.right, entry.ID.String()), "%s by its own %s", c.right, c.resolve)
			require.NoError(t, tx.Rollback(ctx))
		}
		after := e.get(ids[payouts.Submitted])
		require.Equal(t, payouts.Submitted, after.State)
		require.Empty(t, after.Attempts[0].Outcome, "nothing was changed")
		require.Empty(t, after.Attempts[0].ResolvedEntryID)
	})

	t.Run("api", func(t *testing.T) {
		type action struct {
			name    string
			allowed []string
			do      func(id string) error
		}
		actions := []action{
			{"approve", []string{payouts.AwaitingApproval}, func(id string) error {
				_, err := approveSeen(ctx, p, admin2, id, "ok")
				return err
			}},
			{"reject", []string{payouts.AwaitingApproval}, func(id string) error {
				_, err := p.Reject(ctx, admin2, id, "no")
				return err
			}},
			{"cancel", []string{payouts.AwaitingApproval, payouts.Approved, payouts.Failed, payouts.InsufficientFunds, payouts.Returned}, func(id string) error {
				_, err := p.Cancel(ctx, admin, id, "stop")
				return err
			}},
			{"retry", []string{payouts.Failed, payouts.Returned}, func(id string) error {
				_, err := p.Retry(ctx, admin, id, "again")
				return err
			}},
		}
		refused := 0
		for _, act := range actions {
			for _, s := range allStates {
				if contains(act.allowed, s) {
					continue
				}
				before := e.get(ids[s])
				err := act.do(ids[s])
				assert.ErrorIs(t, err, payouts.ErrState, "%s on %s", act.name, s)
				after := e.get(ids[s])
				assert.Equal(t, s, after.State, "%s on %s", act.name, s)
				assert.Len(t, after.Transitions, len(before.Transitions), "%s on %s", act.name, s)
				assert.Len(t, after.Approvals, len(before.Approvals), "%s on %s", act.name, s)
				refused++
			}
		}
		require.Equal(t, 9+9+5+8, refused)

		// The jobs' work does nothing to a disbursement in another state than theirs.
		for _, s := range allStates {
			before := e.get(ids[s])
			if s != payouts.Failed {
				require.NoError(t, p.AutoRetry(ctx, uuid.MustParse(ids[s]), 1), s)
			}
			if s != payouts.Approved {
				require.NoError(t, p.Submit(ctx, uuid.MustParse(ids[s])), s)
			}
			after := e.get(ids[s])
			require.Equal(t, s, after.State)
			require.Len(t, after.Transitions, len(before.Transitions), s)
			require.Len(t, after.Attempts, len(before.Attempts), s)
		}
	})
	e.requireCheckClean()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestPayoutsDualControl: at the threshold two different admins approve; nobody approves
// what they requested, nor twice, nor without being a person; the database refuses the same
// by itself.
func TestPayoutsDualControl(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "5000.00", "100.00")
	e.payee("p1", "ana")
	noPerson := network.By{Principal: access.Principal{Name: "ops-token", TokenID: "t-ops", Role: access.Admin}}

	// Only a person requests: otherwise one admin could request with a token and approve
	// with their person. Nothing is made, not even the grant's entry.
	fund := posted(t, e.a, "program/p1/fund")
	_, err := p.Create(ctx, noPerson, payouts.NewDisbursement{Program: "p1", Person: "ana", Amount: "50.00", Reason: "fare",
		IdempotencyKey: "by-token"})
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	require.Contains(t, err.Error(), "a manual disbursement needs an admin who is a person")
	require.Equal(t, 0, queryInt(t, e.pool, `SELECT count(*) FROM payouts_disbursements`))
	require.Equal(t, 0, entriesWithKey(t, e.pool, "grant:p1:by-token"))
	requireAmount(t, fund.String(), posted(t, e.a, "program/p1/fund"))

	pol, err := p.Policy(ctx, "p1")
	require.NoError(t, err)
	require.True(t, pol.Default)
	requireAmount(t, "500", pol.DualControlThreshold, "the default: 500 in the program's currency, above its limit of 100.00")
	big := e.grant(admin, "p1", "ana", "500.00", "big")
	require.Equal(t, payouts.AwaitingApproval, big.State)
	require.Equal(t, 2, big.ApprovalsNeeded)
	require.Equal(t, "person:adm", big.RequestedBy)
	require.Contains(t, e.get(big.ID).Transitions[0].Reason, "at or above the dual-control threshold of 500.00 USD: two different admins must approve")

	for _, tc := range []struct {
		name string
		by   network.By
	}{{"the requester", admin}, {"an admin who is not a person", noPerson}} {
		_, err := approveSeen(ctx, p, tc.by, big.ID, "")
		require.ErrorIs(t, err, payouts.ErrSelfApproval, tc.name)
	}
	d := e.get(big.ID)
	require.Equal(t, payouts.AwaitingApproval, d.State)
	require.Empty(t, d.Approvals)

	d, err = approveSeen(ctx, p, admin2, big.ID, "first look")
	require.NoError(t, err)
	require.Equal(t, payouts.AwaitingApproval, d.State, "one approval of two")
	require.Len(t, d.Approvals, 1)
	_, err = approveSeen(ctx, p, admin2, big.ID, "again")
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	require.Contains(t, err.Error(), "you already approved it")
	_, err = approveSeen(ctx, p, admin, big.ID, "")
	require.ErrorIs(t, err, payouts.ErrSelfApproval, "the requester, even after another approval")
	require.Len(t, e.get(big.ID).Approvals, 1)
	d, err = approveSeen(ctx, p, admin3, big.ID, "second look")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	require.Len(t, d.Approvals, 2)
	require.Equal(t, []string{"person:adm2", "person:adm3"}, []string{d.Approvals[0].Approver, d.Approvals[1].Approver})
	require.Equal(t, "second approval (dual control) by person:adm3: second look", lastTransition(t, d).Reason)

	// Below the threshold, one admin is enough; the one who requested it is who may not.
	mid := e.grant(admin2, "p1", "ana", "499.99", "mid")
	require.Equal(t, 1, mid.ApprovalsNeeded)
	_, err = approveSeen(ctx, p, admin2, mid.ID, "")
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	d, err = approveSeen(ctx, p, admin, mid.ID, "")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	require.Equal(t, "approved by person:adm", lastTransition(t, d).Reason)

	// A policy threshold of its own.
	_, err = p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{DualControlThreshold: "250.00"})
	require.NoError(t, err)
	require.Equal(t, 2, e.grant(admin, "p1", "ana", "250.00", "at-new-threshold").ApprovalsNeeded)
	require.Equal(t, 1, e.grant(admin, "p1", "ana", "249.99", "below-new-threshold").ApprovalsNeeded)
	require.Equal(t, 2, e.get(big.ID).ApprovalsNeeded, "fixed when it was made")

	t.Run("default threshold above the auto-approve limit", func(t *testing.T) {
		// With no policy, dual control starts at 500 in the program's currency, or one minor
		// unit above the auto-approve limit when the limit is 500 or more.
		for _, c := range []struct {
			program, limit, threshold string
			within, above             string // the largest amount approved at once; the smallest needing two
		}{
			{"lim499", "499.99", "500", "499.99", "500.00"},
			{"lim500", "500.00", "500.01", "500.00", "500.01"},
			{"lim800", "800.00", "800.01", "800.00", "800.01"},
		} {
			newProgram(t, e.a.Network, c.program, "5000.00", c.limit)
			person := "payee-" + c.program
			e.payee(c.program, person)
			pol, err := p.Policy(ctx, c.program)
			require.NoError(t, err)
			require.True(t, pol.Default, c.program)
			requireAmount(t, c.threshold, pol.DualControlThreshold, c.program)
			d, err := p.Create(ctx, admin, payouts.NewDisbursement{Program: c.program, Person: person, Amount: c.within,
				Reason: "within", IdempotencyKey: c.program + "-within"})
			require.NoError(t, err)
			require.Equal(t, 0, d.ApprovalsNeeded, "%s: %s is within the limit", c.program, c.within)
			require.Equal(t, payouts.Approved, d.State, c.program)
			d, err = p.Create(ctx, admin, payouts.NewDisbursement{Program: c.program, Person: person, Amount: c.above,
				Reason: "above", IdempotencyKey: c.program + "-above"})
			require.NoError(t, err)
			require.Equal(t, 2, d.ApprovalsNeeded, "%s: %s", c.program, c.above)
			require.Contains(t, e.get(d.ID).Transitions[0].Reason,
				"at or above the dual-control threshold of "+ledger.FormatAmount(decimal.RequireFromString(c.threshold), "USD")+" USD")
		}
	})

	t.Run("database", func(t *testing.T) {
		two := e.grant(admin, "p1", "ana", "600.00", "db-two")
		one := e.grant(admin, "p1", "ana", "200.00", "db-one")
		require.Equal(t, 2, two.ApprovalsNeeded)
		require.Equal(t, 1, one.ApprovalsNeeded)
		insert := func(id, approver string) error {
			_, err := e.pool.Exec(ctx, `INSERT INTO payouts_approvals (disbursement_id, approver, actor) VALUES ($1, $2, 'psql')`, id, approver)
			return err
		}
		err := insert(two.ID, "person:adm")
		require.Equal(t, "payouts_self_approval", constraintOf(err), "%v", err)
		err = insert(two.ID, "token:t-ops")
		require.Equal(t, "payouts_approvals_person", constraintOf(err), "%v", err)

		err = sqlMove(t, e.pool, one.ID, payouts.AwaitingApproval, payouts.Approved)
		require.Equal(t, "payouts_dual_control", constraintOf(err), "no approval: %v", err)
		require.NoError(t, insert(two.ID, "person:adm2"))
		err = insert(two.ID, "person:adm2")
		require.Equal(t, "payouts_approvals_pkey", constraintOf(err), "%v", err)
		err = sqlMove(t, e.pool, two.ID, payouts.AwaitingApproval, payouts.Approved)
		require.Equal(t, "payouts_dual_control", constraintOf(err), "one approval of two: %v", err)
		require.NoError(t, insert(two.ID, "person:adm3"))
		require.NoError(t, sqlMove(t, e.pool, two.ID, payouts.AwaitingApproval, payouts.Approved), "two approvals (rolled back)")
		require.Equal(t, payouts.AwaitingApproval, e.get(two.ID).State)

		// An approval of a disbursement no longer awaiting one.
		err = insert(big.ID, "person:adm4")
		require.Equal(t, "payouts_transition", constraintOf(err), "%v", err)
		_, err = e.pool.Exec(ctx, `DELETE FROM payouts_approvals WHERE disbursement_id = $1`, big.ID)
		require.Equal(t, "payouts_append_only", constraintOf(err), "%v", err)
	})
}

// TestPayoutsCaps: a person's approved disbursements in a program may not pass the monthly
// and yearly caps, counted by the month and year of approval. Within the auto-approve limit,
// one over a cap waits (awaiting_approval, saying which cap) and an admin cannot approve it
// past the cap; the monthly cap starts again each month, the yearly one holds; the sweep
// approves a waiting one once there is room.
func TestPayoutsCaps(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "5000.00", "100.00")
	e.payee("p1", "ana")
	e.payee("p1", "bo")
	pol, err := p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{MonthlyCap: "100.00", YearlyCap: "150.00"})
	require.NoError(t, err)
	require.False(t, pol.Default)
	requireAmount(t, "100", pol.MonthlyCap.Decimal)
	requireAmount(t, "150", pol.YearlyCap.Decimal)
	requireAmount(t, "500", pol.DualControlThreshold)
	requireAmount(t, "100", pol.AutoApproveLimit)
	require.Equal(t, "person:adm", pol.SetBy)

	// March: 80.00 fits; 30.00 more would make 110.00 this month.
	d1 := e.grant(admin, "p1", "ana", "80.00", "mar-1")
	require.Equal(t, payouts.Approved, d1.State)
	require.Equal(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), d1.ApprovedAt.UTC())
	d2 := e.grant(admin, "p1", "ana", "30.00", "mar-2")
	require.Equal(t, payouts.AwaitingApproval, d2.State)
	require.Equal(t, 0, d2.ApprovalsNeeded, "within the auto-approve limit: only the cap holds it")
	require.Equal(t, "grant mar-2", d2.Reason)
	why := e.get(d2.ID).Transitions[0].Reason
	require.Contains(t, why, "30.00 USD would take ana to 110.00 USD this month, past the monthly cap of 100.00 USD")
	require.Contains(t, why, "it waits until the cap has room")
	_, err = approveSeen(ctx, p, admin2, d2.ID, "urgent")
	require.ErrorIs(t, err, payouts.ErrCapExceeded)
	require.Contains(t, err.Error(), "monthly cap")
	d := e.get(d2.ID)
	require.Equal(t, payouts.AwaitingApproval, d.State)
	require.Empty(t, d.Approvals, "the refused approval is not recorded")
	res, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, res.AutoApproved)
	require.Equal(t, payouts.Approved, e.grant(admin, "p1", "bo", "100.00", "bo-mar").State, "caps are per person")

	// April: the monthly cap starts again (60.00 fits), the yearly one holds (80 + 60 + 20 > 150).
	e.clk.Set(time.Date(2026, 4, 10, 12, 0, 0, 0, time.UTC))
	d3 := e.grant(admin, "p1", "ana", "60.00", "apr-1")
	require.Equal(t, payouts.Approved, d3.State)
	d4 := e.grant(admin, "p1", "ana", "20.00", "apr-2")
	require.Equal(t, payouts.AwaitingApproval, d4.State)
	require.Contains(t, e.get(d4.ID).Transitions[0].Reason, "20.00 USD would take ana to 160.00 USD this year, past the yearly cap of 150.00 USD")
	_, err = approveSeen(ctx, p, admin2, d2.ID, "")
	require.ErrorIs(t, err, payouts.ErrCapExceeded)
	require.Contains(t, err.Error(), "170.00 USD this year, past the yearly cap of 150.00 USD")
	res, err = p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, res.AutoApproved)
	require.Equal(t, payouts.AwaitingApproval, e.get(d2.ID).State)
	require.Equal(t, payouts.AwaitingApproval, e.get(d4.ID).State)

	// Canceling April's 60.00 makes room (canceled disbursements do not count): the sweep
	// approves both waiting ones (80 + 30 + 20 = 130 this year, 50 this month).
	_, err = p.Cancel(ctx, admin, d3.ID, "paid another way")
	require.NoError(t, err)
	res, err = p.Sweep(ctx)
	require.NoError(t, err, "the sweep approves the disbursements the cap held")
	assert.Equal(t, 2, res.AutoApproved)
	for _, id := range []string{d2.ID, d4.ID} {
		d := e.get(id)
		if assert.Equal(t, payouts.Approved, d.State, "held by the cap, approved by the sweep") {
			assert.Equal(t, "the cap has room now; within the auto-approve limit of 100.00 USD", lastTransition(t, d).Reason)
			assert.Equal(t, payouts.SystemActor.Name, lastTransition(t, d).Actor)
			assert.Equal(t, time.Date(2026, 4, 10, 12, 0, 0, 0, time.UTC), d.ApprovedAt.UTC())
		}
	}
}

// TestPayoutsCapsCountTheLatestApproval: a disbursement sent back for approval (its
// destination changed) counts under the caps in the month of the approval that completes its
// new round, not of its first: approved again in April, it leaves no room in April for
// another that would take the person past the monthly cap.
func TestPayoutsCapsCountTheLatestApproval(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "5000.00", "100.00")
	e.payee("p1", "ana")
	_, err := p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{MonthlyCap: "1000.00", DualControlThreshold: "5000.00"})
	require.NoError(t, err)
	e.destination("ana", "sandbox:ana-a")

	d1 := e.grant(admin, "p1", "ana", "800.00", "d1")
	require.Equal(t, payouts.AwaitingApproval, d1.State)
	d, err := approveSeen(ctx, p, admin2, d1.ID, "")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	require.Equal(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), d.ApprovedAt.UTC())

	e.destination("ana", "sandbox:ana-b")
	require.Equal(t, payouts.AwaitingApproval, e.submit(nil, d1.ID).State, "sent back for approval")
	e.advance("p1", payouts.ClockMove{To: "2026-04-10T12:00:00Z"})
	d, err = approveSeen(ctx, p, admin2, d1.ID, "new bank seen")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	require.Equal(t, time.Date(2026, 4, 10, 12, 0, 0, 0, time.UTC), d.ApprovedAt.UTC(), "counts in the month of its latest approval")

	d2 := e.grant(admin, "p1", "ana", "800.00", "d2")
	require.Equal(t, payouts.AwaitingApproval, d2.State)
	_, err = approveSeen(ctx, p, admin2, d2.ID, "")
	require.ErrorIs(t, err, payouts.ErrCapExceeded)
	require.Contains(t, err.Error(), "1600.00 USD this month")
	require.Equal(t, payouts.AwaitingApproval, e.get(d2.ID).State)
	require.Equal(t, payouts.Paid, e.submit(nil, d1.ID).State)
	e.requireCheckClean()
}

// TestPayoutsCapsCountARetriedReturn: a disbursement returned in full stops counting under
// the caps, so another fits its room; retried, it would count again in the month of its
// approval, and is refused (ErrCapExceeded, staying returned) while that takes the person
// past the cap — in that month, even once the program's month has moved on. With room again
// it is retried, keeping its approval's time.
func TestPayoutsCapsCountARetriedReturn(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "5000.00", "100.00")
	e.payee("p1", "ana")
	_, err := p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{MonthlyCap: "1000.00", DualControlThreshold: "5000.00"})
	require.NoError(t, err)

	a := e.partlyReturned("ana", "1000.00", "1000", "a")
	require.Equal(t, payouts.Returned, a.State)
	b := e.grant(admin, "p1", "ana", "1000.00", "b")
	b, err = approveSeen(ctx, p, admin2, b.ID, "")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, b.State, "a returned disbursement leaves room under the cap")

	_, err = p.Retry(ctx, admin, a.ID, "paid again")
	require.ErrorIs(t, err, payouts.ErrCapExceeded)
	require.ErrorContains(t, err, "1000.00 USD would take ana to 2000.00 USD this month, past the monthly cap of 1000.00 USD")
	require.Equal(t, payouts.Returned, e.get(a.ID).State)

	e.advance("p1", payouts.ClockMove{To: "2026-04-10T12:00:00Z"})
	_, err = p.Retry(ctx, admin, a.ID, "paid again")
	require.ErrorIs(t, err, payouts.ErrCapExceeded, "it counts in the month it was approved in")
	require.ErrorContains(t, err, "to 2000.00 USD in March 2026, past the monthly cap")
	require.Equal(t, payouts.Returned, e.get(a.ID).State)

	_, err = p.Cancel(ctx, admin, b.ID, "not needed")
	require.NoError(t, err)
	d, err := p.Retry(ctx, admin, a.ID, "paid again")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	require.Equal(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), d.ApprovedAt.UTC())
	e.requireCheckClean()
}

// TestPayoutsApprovedAtOnlyMovesForward: the approval that ends a new round stamps approved_at
// again, never earlier than before (program time does not go back): the database refuses a
// backdated one from whoever writes it, here the owner.
func TestPayoutsApprovedAtOnlyMovesForward(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "5000.00", "100.00")
	e.payee("p1", "ana")
	_, err := p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{DualControlThreshold: "5000.00"})
	require.NoError(t, err)
	e.destination("ana", "sandbox:ana-a")
	d := e.grant(admin, "p1", "ana", "800.00", "d")
	d, err = approveSeen(ctx, p, admin2, d.ID, "")
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, d.State)
	first := *d.ApprovedAt
	e.destination("ana", "sandbox:ana-b")
	require.Equal(t, payouts.AwaitingApproval, e.submit(nil, d.ID).State, "sent back for approval")

	// approve approves d straight in the database with approved_at at, and rolls back.
	approve := func(at time.Time) error {
		tx, err := e.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, `INSERT INTO payouts_approvals (disbursement_id, approver, actor, destination)
			VALUES ($1, 'person:adm2', 'test:sql', 'sandbox:ana-b')`, d.ID)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason)
			VALUES ($1, 'awaiting_approval', 'approved', 'test:sql', 'a direct approval')`, d.ID)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `UPDATE payouts_disbursements SET state = 'approved', approved_at = $2 WHERE id = $1`, d.ID, at)
		return err
	}
	for _, at := range []time.Time{first.Add(-time.Microsecond), first.AddDate(0, -1, 0)} {
		err := approve(at)
		require.Equal(t, "payouts_append_only", constraintOf(err), "%s: %v", at, err)
	}
	require.NoError(t, approve(first))
	require.NoError(t, approve(first.AddDate(0, 1, 0)))
	require.Equal(t, payouts.AwaitingApproval, e.get(d.ID).State)
}

// TestPayoutsSweepContinuesPastCapHeld: a disbursement the cap held, now with room, must not
// stop the sweep's other work: here, forfeiting a failed payout past its remediation window.
func TestPayoutsSweepContinuesPastCapHeld(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "1000.00", "100.00")
	e.payee("p1", "ana")
	e.payee("p1", "ivy")
	_, err := p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{MonthlyCap: "100.00", RemediationDays: 7})
	require.NoError(t, err)
	d1 := e.grant(admin, "p1", "ana", "80.00", "a-1")
	held := e.grant(admin, "p1", "ana", "30.00", "a-2")
	require.Equal(t, payouts.AwaitingApproval, held.State)
	e.destination("ivy", "fail:closed")
	failed := e.grant(admin, "p1", "ivy", "20.00", "i-1")
	require.Equal(t, payouts.Failed, e.submit(nil, failed.ID).State)
	_, err = p.Cancel(ctx, admin, d1.ID, "room for the next one")
	require.NoError(t, err)

	e.clk.Add(8 * 24 * time.Hour)
	res, err := p.Sweep(ctx)
	assert.NoError(t, err)
	assert.Equal(t, 1, res.AutoApproved)
	assert.Equal(t, 1, res.Forfeited)
	assert.Equal(t, payouts.Approved, e.get(held.ID).State)
	assert.Equal(t, payouts.Forfeited, e.get(failed.ID).State, "forfeited although the sweep met a disbursement held by the cap first")
}

// TestPayoutsPolicyValidation: SetPolicy refuses what the policy cannot be (ErrInvalid) and
// records nothing; the bounds themselves are accepted; zero values keep the defaults.
func TestPayoutsPolicyValidation(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "", "100.00")
	for _, tc := range []struct {
		name string
		pol  payouts.NewPolicy
	}{
		{"monthly cap above the yearly one", payouts.NewPolicy{MonthlyCap: "200.00", YearlyCap: "100.00"}},
		{"negative monthly cap", payouts.NewPolicy{MonthlyCap: "-1.00"}},
		{"zero monthly cap", payouts.NewPolicy{MonthlyCap: "0"}},
		{"negative yearly cap", payouts.NewPolicy{YearlyCap: "-100"}},
		{"negative threshold", payouts.NewPolicy{DualControlThreshold: "-5"}},
		{"threshold with a third decimal", payouts.NewPolicy{DualControlThreshold: "10.001"}},
		{"remediation 400 days", payouts.NewPolicy{RemediationDays: 400}},
		{"remediation -1 day", payouts.NewPolicy{RemediationDays: -1}},
		{"11 retries", payouts.NewPolicy{AutoRetries: intPtr(11)}},
		{"-1 retries", payouts.NewPolicy{AutoRetries: intPtr(-1)}},
		{"backoff 1ms", payouts.NewPolicy{RetryBackoff: "1ms"}},
		{"backoff 0s", payouts.NewPolicy{RetryBackoff: "0s"}},
		{"backoff 169h", payouts.NewPolicy{RetryBackoff: "169h"}},
		{"backoff in days", payouts.NewPolicy{RetryBackoff: "2d"}},
	} {
		_, err := p.SetPolicy(ctx, admin, "p1", tc.pol)
		assert.ErrorIs(t, err, payouts.ErrInvalid, tc.name)
	}
	require.Equal(t, 0, queryInt(t, e.pool, `SELECT count(*) FROM payouts_policies`))
	pol, err := p.Policy(ctx, "p1")
	require.NoError(t, err)
	require.True(t, pol.Default)
	_, err = p.SetPolicy(ctx, admin, "nope", payouts.NewPolicy{})
	require.ErrorIs(t, err, network.ErrNotFound)

	// The bounds.
	pol, err = p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{DualControlThreshold: "0.01", MonthlyCap: "150.00", YearlyCap: "150.00",
		RemediationDays: 365, AutoRetries: intPtr(10), RetryBackoff: "168h"})
	require.NoError(t, err)
	requireAmount(t, "0.01", pol.DualControlThreshold)
	require.Equal(t, 365, pol.RemediationDays)
	require.Equal(t, 10, pol.AutoRetries)
	require.Equal(t, 168*time.Hour, pol.RetryBackoff.Duration)
	pol, err = p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{RemediationDays: 1, AutoRetries: intPtr(0), RetryBackoff: "1s"})
	require.NoError(t, err)
	require.Equal(t, 1, pol.RemediationDays)
	require.Equal(t, 0, pol.AutoRetries)
	require.Equal(t, time.Second, pol.RetryBackoff.Duration)
	require.False(t, pol.MonthlyCap.Valid)
	require.False(t, pol.YearlyCap.Valid)

	// Zero values keep the defaults: remediation_days 0 is 30 days, not an error.
	pol, err = p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{})
	require.NoError(t, err)
	require.Equal(t, payouts.DefaultRemediationDays, pol.RemediationDays)
	require.Equal(t, payouts.DefaultAutoRetries, pol.AutoRetries)
	require.Equal(t, payouts.DefaultRetryBackoff, pol.RetryBackoff.Duration)
	requireAmount(t, payouts.DefaultDualControl.String(), pol.DualControlThreshold)
	require.Equal(t, 3, queryInt(t, e.pool, `SELECT count(*) FROM payouts_policies`))

	// The database holds the same bounds.
	for name, sql := range map[string]string{
		"payouts_policies_caps":        `INSERT INTO payouts_policies (program_id, dual_control_threshold, monthly_cap, yearly_cap, remediation_days, auto_retries, retry_backoff_seconds, set_by) VALUES ('p1', 500, 200, 100, 30, 2, 3600, 'psql')`,
		"payouts_policies_remediation": `INSERT INTO payouts_policies (program_id, dual_control_threshold, remediation_days, auto_retries, retry_backoff_seconds, set_by) VALUES ('p1', 500, 0, 2, 3600, 'psql')`,
		"payouts_policies_retries":     `INSERT INTO payouts_policies (program_id, dual_control_threshold, remediation_days, auto_retries, retry_backoff_seconds, set_by) VALUES ('p1', 500, 30, 11, 3600, 'psql')`,
		"payouts_policies_backoff":     `INSERT INTO payouts_policies (program_id, dual_control_threshold, remediation_days, auto_retries, retry_backoff_seconds, set_by) VALUES ('p1', 500, 30, 2, 0, 'psql')`,
		"payouts_policies_threshold":   `INSERT INTO payouts_policies (program_id, dual_control_threshold, remediation_days, auto_retries, retry_backoff_seconds, set_by) VALUES ('p1', 0, 30, 2, 3600, 'psql')`,
	} {
		_, err := e.pool.Exec(ctx, sql)
		assert.Equal(t, name, constraintOf(err), "%v", err)
	}
}

// TestPayoutsRejectAndCancelReturnToFund: a rejected or canceled disbursement whose money
// reached the wallet (or came back to it, returned by the provider) gives it back to the fund
// by an explicit entry wallet → fund, once.
func TestPayoutsRejectAndCancelReturnToFund(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	newProgram(t, a.Network, "p1", "1000.00", "100.00")
	for _, tc := range []struct {
		name, person, amount, from, to string
		end                            func(id string) (payouts.Disbursement, error)
	}{
		{"reject awaiting approval", "ana", "300.00", payouts.AwaitingApproval, payouts.Rejected, func(id string) (payouts.Disbursement, error) {
			return p.Reject(ctx, admin2, id, "not eligible")
		}},
		{"cancel awaiting approval", "ben", "250.00", payouts.AwaitingApproval, payouts.Canceled, func(id string) (payouts.Disbursement, error) {
			return p.Cancel(ctx, admin, id, "not eligible")
		}},
		{"cancel approved", "cal", "60.00", payouts.Approved, payouts.Canceled, func(id string) (payouts.Disbursement, error) {
			return p.Cancel(ctx, admin, id, "not eligible")
		}},
		{"cancel failed", "dee", "45.00", payouts.Failed, payouts.Canceled, func(id string) (payouts.Disbursement, error) {
			return p.Cancel(ctx, admin, id, "not eligible")
		}},
		{"cancel returned", "eli", "70.00", payouts.Returned, payouts.Canceled, func(id string) (payouts.Disbursement, error) {
			return p.Cancel(ctx, admin, id, "not eligible")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.payee("p1", tc.person)
			if tc.from == payouts.Failed {
				e.destination(tc.person, "fail:closed")
			}
			fund := posted(t, a, "program/p1/fund")
			d := e.grant(admin, "p1", tc.person, tc.amount, "k-"+tc.person)
			if tc.from == payouts.Failed {
				d = e.submit(nil, d.ID)
			}
			if tc.from == payouts.Returned { // paid, then returned in full by the provider
				d = e.submit(nil, d.ID)
				require.Equal(t, payouts.Paid, d.State)
				requireAmount(t, "0", posted(t, a, network.WalletAccount(tc.person)))
				require.NoError(t, p.Provider().(*payouts.Sandbox).Reverse(ctx, d.Attempts[0].ProviderRef, d.Amount))
				_, err := p.Settle(ctx, uuid.MustParse(d.ID), 1)
				require.NoError(t, err)
				d = e.get(d.ID)
			}
			require.Equal(t, tc.from, d.State)
			requireAmount(t, fund.Sub(d.Amount).String(), posted(t, a, "program/p1/fund"))
			requireAmount(t, tc.amount, posted(t, a, network.WalletAccount(tc.person)))

			_, err := p.Reject(ctx, admin2, d.ID, " ")
			require.ErrorIs(t, err, payouts.ErrInvalid, "a reason is required")
			d, err = tc.end(d.ID)
			require.NoError(t, err)
			require.Equal(t, tc.to, d.State)
			require.Equal(t, tc.from+"→"+tc.to, lastTransition(t, d).From+"→"+lastTransition(t, d).To)
			require.Equal(t, "not eligible", lastTransition(t, d).Reason)
			require.NotEmpty(t, d.FundReturnEntryID)
			amount := ledger.FormatAmount(d.Amount, "USD")
			require.Equal(t, []string{"credit program/p1/fund " + amount, "debit participant/" + tc.person + "/wallet " + amount},
				entryLines(t, a, d.FundReturnEntryID))
			entry, err := a.Ledger.Entry(ctx, uuid.MustParse(d.FundReturnEntryID))
			require.NoError(t, err)
			require.Equal(t, "fund-return:"+d.ID, entry.IdempotencyKey)
			require.Contains(t, entry.Description, tc.to+": not eligible: back to the fund")
			requireAmount(t, fund.String(), posted(t, a, "program/p1/fund"), "the fund has it back")
			requireAmount(t, "0", posted(t, a, network.WalletAccount(tc.person)))

			_, err = p.Cancel(ctx, admin, d.ID, "again")
			require.ErrorIs(t, err, payouts.ErrState)
			require.Equal(t, 1, entriesWithKey(t, e.pool, "fund-return:"+d.ID))
			requireAmount(t, fund.String(), posted(t, a, "program/p1/fund"))
		})
	}
	e.requireCheckClean()
}

// TestPayoutsAutoRetryThenForfeit runs River: with auto_retries 1 and a 1 s backoff, a payout
// to a refusing destination fails, is retried once by itself after the backoff, then stays
// failed saying no automatic retry is left; past the remediation window the sweep forfeits it
// to the fund.
func TestPayoutsAutoRetryThenForfeit(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{SweepInterval: time.Hour})
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	newProgram(t, a.Network, "p1", "1000.00", "100.00")
	e.payee("p1", "ana")
	_, err := p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{AutoRetries: intPtr(1), RetryBackoff: "1s", RemediationDays: 7})
	require.NoError(t, err)
	e.destination("ana", "fail:card-declined")
	require.NoError(t, a.Start(ctx))

	d := e.grant(admin, "p1", "ana", "50.00", "retry-1")
	waitFor(t, "two failed attempts", func() bool {
		d = e.get(d.ID)
		return d.State == payouts.Failed && len(d.Attempts) == 2
	})
	require.Equal(t, []string{"→approved", "approved→submitted", "submitted→failed", "failed→approved", "approved→submitted",
		"submitted→failed"}, moves(d))
	require.Contains(t, d.Transitions[2].Reason, "attempt 1 failed (sandbox): card-declined; automatic retry 1 of 1 at ")
	require.Equal(t, payouts.SystemActor.Name, d.Transitions[3].Actor)
	require.Equal(t, "automatic retry after failure 1", d.Transitions[3].Reason)
	last := lastTransition(t, d).Reason
	require.Contains(t, last, "attempt 2 failed (sandbox): card-declined")
	require.Contains(t, last, "no automatic retry left: fix the destination or retry within 7 days, or it is forfeited to the fund")
	require.Equal(t, d.ID+":2", d.Attempts[1].IdempotencyKey)
	require.NotNil(t, d.Attempts[0].SettledAt)
	gap := d.Attempts[1].SubmittedAt.Sub(*d.Attempts[0].SettledAt)
	require.GreaterOrEqual(t, gap, 900*time.Millisecond, "the retry waited for its backoff")

	// No third attempt is asked for: the one retry job is all.
	require.Equal(t, 1, queryInt(t, e.pool, `SELECT count(*) FROM river_job WHERE kind = 'retry_payout'`))
	require.Equal(t, 1, queryInt(t, e.pool, `SELECT count(*) FROM river_job WHERE kind = 'retry_payout'
		AND args->>'disbursement' = $1 AND (args->>'failures')::int = 1 AND scheduled_at >= $2`, d.ID, d.Attempts[0].SettledAt.Add(time.Second)),
		"the retry was scheduled a backoff after the failure")
	requireAmount(t, "50", posted(t, a, network.WalletAccount("ana")))
	requireAmount(t, "950", posted(t, a, "program/p1/fund"))

	// The sweep, from now on run by hand on a moved clock.
	require.NoError(t, a.River.Stop(ctx))
	e.clk.Add(6 * 24 * time.Hour)
	res, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, res.Forfeited)
	require.Equal(t, 0, res.Retried)
	require.Equal(t, payouts.Failed, e.get(d.ID).State, "within the remediation window")
	e.clk.Add(24*time.Hour + time.Minute)
	res, err = p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, payouts.SweepResult{Forfeited: 1}, res)
	d = e.get(d.ID)
	require.Equal(t, payouts.Forfeited, d.State)
	require.Equal(t, "not fixed within the remediation window of 7 days", lastTransition(t, d).Reason)
	require.Equal(t, []string{"credit program/p1/fund 50.00", "debit participant/ana/wallet 50.00"}, entryLines(t, a, d.FundReturnEntryID))
	requireAmount(t, "0", posted(t, a, network.WalletAccount("ana")))
	requireAmount(t, "1000", posted(t, a, "program/p1/fund"))
	res, err = p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, payouts.SweepResult{}, res, "forfeited once")
	e.requireCheckClean()
}

// commitmentEnv: program p1 (fund, auto-approve 100.00) and participant ana, enrolled, with a
// mentor connection started on 2025-12-01, on a clock fixed at at.
func commitmentEnv(t *testing.T, at time.Time, fund string) (*payoutsEnv, string) {
	e := newPayoutsEnv(t, at, app.Config{})
	newProgram(t, e.a.Network, "p1", fund, "100.00")
	e.payee("p1", "ana")
	e.person("mo", "mentor")
	return e, e.connect("ana", "mo", "mentor", "2025-12-01")
}

func (e *payoutsEnv) commit(n payouts.NewCommitment) payouts.Commitment {
	e.t.Helper()
	c, err := e.a.Payouts.CreateCommitment(e.ctx, admin, n)
	require.NoError(e.t, err)
	return c
}

func (e *payoutsEnv) commitment(id string) payouts.Commitment {
	e.t.Helper()
	cs, err := e.a.Payouts.Commitments(e.ctx, "", "")
	require.NoError(e.t, err)
	for _, c := range cs {
		if c.ID == id {
			return c
		}
	}
	e.t.Fatalf("commitment %s not found", id)
	return payouts.Commitment{}
}

func instalmentStates(c payouts.Commitment) []string {
	var out []string
	for _, i := range c.Instalments {
		out = append(out, i.DueOn+" "+i.State)
	}
	return out
}

// TestPayoutsCommitments: a commitment's due instalments are released once each, from the
// day after their due date — paid into the wallet, with a disbursement requested by the
// commitment's creator (who may not approve it), when the period had the verified
// conversations asked for, failed with the reason otherwise, kept waiting while the fund is
// short; canceling stops only what is still scheduled; the database takes no instalment off
// the commitment's schedule.
func TestPayoutsCommitments(t *testing.T) {
	t.Parallel()
	e, conn := commitmentEnv(t, time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), "1000.00")
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	e.talk(conn, time.Date(2026, 9, 10, 12, 0, 0, 0, time.UTC), true)  // period 1 (Aug 15 – Sep 15)
	e.talk(conn, time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC), false) // period 2, unverified: does not count
	e.talk(conn, time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), true)  // period 3 (Oct 15 – Nov 15)

	req := json.RawMessage(`{"min_verified_conversations": 1}`)
	nc := payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "40.00", Instalments: 3, EveryMonths: 1, FirstDue: "2026-09-15",
		Requirements: req, IdempotencyKey: "c-ana"}
	c := e.commit(nc)
	require.Equal(t, "40.00", c.Amount)
	require.Equal(t, "USD", c.Currency)
	require.Equal(t, 1, c.Requirements.MinVerifiedConversations)
	require.Equal(t, "person:adm", c.CreatedBy)
	require.Equal(t, []string{"2026-09-15 scheduled", "2026-10-15 scheduled", "2026-11-15 scheduled"}, instalmentStates(c))
	again := e.commit(nc)
	require.Equal(t, c.ID, again.ID, "the same key returns the same commitment")
	require.Len(t, again.Instalments, 3)
	other := nc
	other.Amount = "41.00"
	_, err := p.CreateCommitment(ctx, admin, other)
	require.ErrorIs(t, err, ledger.ErrIdempotencyConflict, "the same key for another commitment")
	require.Equal(t, 1, queryInt(t, e.pool, `SELECT count(*) FROM payouts_commitments`))

	fulfilled, failed, err := p.ReleaseInstalments(ctx)
	require.NoError(t, err)
	require.Equal(t, [2]int{2, 1}, [2]int{fulfilled, failed})
	c = e.commitment(c.ID)
	require.Equal(t, []string{"2026-09-15 fulfilled", "2026-10-15 failed", "2026-11-15 fulfilled"}, instalmentStates(c))
	require.Equal(t, "0 verified conversations from 2026-09-16 to 2026-10-15; the commitment asks for 1", c.Instalments[1].Reason)
	require.Empty(t, c.Instalments[1].EntryID)
	require.Equal(t, payouts.SystemActor.Name, c.Instalments[1].DecidedBy)
	for _, i := range []payouts.Instalment{c.Instalments[0], c.Instalments[2]} {
		require.Equal(t, []string{"credit participant/ana/wallet 40.00", "debit program/p1/fund 40.00"}, entryLines(t, a, i.EntryID))
		require.Equal(t, 1, entriesWithKey(t, e.pool, fmt.Sprintf("instalment:%s:%d", c.ID, i.N)))
		d := e.get(i.Disbursement)
		require.Equal(t, "commitment", d.Source)
		require.Equal(t, i.EntryID, d.FundingEntryID)
		require.Equal(t, payouts.Approved, d.State)
		require.Equal(t, "ana", d.PersonID)
		require.Equal(t, c.CreatedBy, d.RequestedBy, "requested by the commitment's creator")
		require.Equal(t, payouts.SystemActor.Name, d.Transitions[0].Actor)
		require.Equal(t, fmt.Sprintf("commitment %s instalment %d", c.ID, i.N), d.Reason)
		requireAmount(t, "40", d.Amount)
		require.NotNil(t, i.DecidedAt)
	}
	requireAmount(t, "920", posted(t, a, "program/p1/fund"))
	requireAmount(t, "80", posted(t, a, network.WalletAccount("ana")))

	fulfilled, failed, err = p.ReleaseInstalments(ctx)
	require.NoError(t, err)
	require.Equal(t, [2]int{0, 0}, [2]int{fulfilled, failed}, "released once")
	require.Equal(t, 2, queryInt(t, e.pool, `SELECT count(*) FROM payouts_disbursements WHERE source = 'commitment'`))

	t.Run("two releases at once", func(t *testing.T) {
		c := e.commit(payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "10.00", Instalments: 6, EveryMonths: 1,
			FirstDue: "2026-05-20", IdempotencyKey: "c-concurrent"})
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := [2]int{}
		start := make(chan struct{})
		for range 2 {
			wg.Go(func() {
				<-start
				f, x, err := p.ReleaseInstalments(ctx)
				assert.NoError(t, err)
				mu.Lock()
				total[0] += f
				total[1] += x
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, [2]int{6, 0}, total)
		c = e.commitment(c.ID)
		for _, i := range c.Instalments {
			require.Equal(t, payouts.Fulfilled, i.State, i.DueOn)
			require.Equal(t, 1, entriesWithKey(t, e.pool, fmt.Sprintf("instalment:%s:%d", c.ID, i.N)))
		}
		require.Equal(t, 6, queryInt(t, e.pool, `SELECT count(*) FROM payouts_disbursements d JOIN payouts_instalments i
			ON i.disbursement_id = d.id WHERE i.commitment_id = $1`, c.ID))
		requireAmount(t, "860", posted(t, a, "program/p1/fund"))
	})

	t.Run("waiting for funds", func(t *testing.T) {
		newProgram(t, a.Network, "p2", "30.00", "100.00")
		e.payee("p2", "bo")
		c := e.commit(payouts.NewCommitment{Program: "p2", Person: "bo", Amount: "50.00", Instalments: 1, EveryMonths: 3,
			FirstDue: "2026-11-01", IdempotencyKey: "c-bo"})
		for range 2 {
			fulfilled, failed, err := p.ReleaseInstalments(ctx)
			require.NoError(t, err)
			require.Equal(t, [2]int{0, 0}, [2]int{fulfilled, failed})
			c = e.commitment(c.ID)
			require.Equal(t, payouts.Scheduled, c.Instalments[0].State)
			require.Equal(t, "waiting for funds: program/p2/fund cannot cover 50.00 USD", c.Instalments[0].Reason)
			require.Nil(t, c.Instalments[0].DecidedAt)
		}
		requireAmount(t, "30", posted(t, a, "program/p2/fund"))
		_, err := a.Network.Fund(ctx, admin, "p2", "100.00", "p2-more")
		require.NoError(t, err)
		require.NoError(t, p.RetryWaitingInstalments(ctx))
		fulfilled, failed, err := p.ReleaseInstalments(ctx)
		require.NoError(t, err)
		require.Equal(t, [2]int{1, 0}, [2]int{fulfilled, failed})
		c = e.commitment(c.ID)
		require.Equal(t, payouts.Fulfilled, c.Instalments[0].State)
		require.Empty(t, c.Instalments[0].Reason)
		requireAmount(t, "80", posted(t, a, "program/p2/fund"))
		requireAmount(t, "50", posted(t, a, network.WalletAccount("bo")))
	})

	t.Run("cancel", func(t *testing.T) {
		c := e.commit(payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "5.00", Instalments: 4, EveryMonths: 1,
			FirstDue: "2026-10-20", IdempotencyKey: "c-cancel"})
		fulfilled, failed, err := p.ReleaseInstalments(ctx)
		require.NoError(t, err)
		require.Equal(t, [2]int{1, 0}, [2]int{fulfilled, failed}, "Oct 20 is due; Nov 20 is today, released once the day is over")
		require.Equal(t, []string{"2026-10-20 fulfilled", "2026-11-20 scheduled", "2026-12-20 scheduled", "2027-01-20 scheduled"},
			instalmentStates(e.commitment(c.ID)))
		e.clk.Set(time.Date(2026, 11, 20, 23, 59, 59, 0, time.UTC))
		fulfilled, failed, err = p.ReleaseInstalments(ctx)
		require.NoError(t, err)
		require.Equal(t, [2]int{0, 0}, [2]int{fulfilled, failed}, "the last second of its due date")
		e.clk.Set(time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC))
		fulfilled, failed, err = p.ReleaseInstalments(ctx)
		require.NoError(t, err)
		require.Equal(t, [2]int{1, 0}, [2]int{fulfilled, failed}, "Nov 20 on the day after")
		_, err = p.CancelCommitment(ctx, admin, c.ID, " ")
		require.ErrorIs(t, err, payouts.ErrInvalid)
		c, err = p.CancelCommitment(ctx, admin, c.ID, "program ended")
		require.NoError(t, err)
		require.Equal(t, []string{"2026-10-20 fulfilled", "2026-11-20 fulfilled", "2026-12-20 canceled", "2027-01-20 canceled"}, instalmentStates(c))
		for _, i := range c.Instalments[2:] {
			require.Equal(t, "commitment canceled: program ended", i.Reason)
			require.Equal(t, "person:adm", i.DecidedBy)
			require.Empty(t, i.EntryID)
		}
		require.Equal(t, payouts.SystemActor.Name, c.Instalments[0].DecidedBy)
		e.clk.Set(time.Date(2027, 2, 1, 12, 0, 0, 0, time.UTC))
		fulfilled, failed, err = p.ReleaseInstalments(ctx)
		require.NoError(t, err)
		require.Equal(t, [2]int{0, 0}, [2]int{fulfilled, failed}, "canceled instalments are not released")
		_, err = p.CancelCommitment(ctx, admin, uuid.NewString(), "no such")
		require.ErrorIs(t, err, payouts.ErrNotFound)
	})

	t.Run("its creator may not approve its instalments", func(t *testing.T) {
		// Created by admin2; 150.00 is above the auto-approve limit: an admin must approve
		// each instalment's disbursement, and not the one who committed the money.
		c, err := p.CreateCommitment(ctx, admin2, payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "150.00", Instalments: 1,
			EveryMonths: 1, FirstDue: "2026-11-01", IdempotencyKey: "c-four-eyes"})
		require.NoError(t, err)
		require.Equal(t, "person:adm2", c.CreatedBy)
		fulfilled, failed, err := p.ReleaseInstalments(ctx)
		require.NoError(t, err)
		require.Equal(t, [2]int{1, 0}, [2]int{fulfilled, failed})
		c = e.commitment(c.ID)
		d := e.get(c.Instalments[0].Disbursement)
		require.Equal(t, payouts.AwaitingApproval, d.State)
		require.Equal(t, 1, d.ApprovalsNeeded)
		require.Equal(t, "person:adm2", d.RequestedBy)
		_, err = approveSeen(ctx, p, admin2, d.ID, "")
		require.ErrorIs(t, err, payouts.ErrSelfApproval, "the commitment's creator")
		require.Empty(t, e.get(d.ID).Approvals)
		d, err = approveSeen(ctx, p, admin, d.ID, "checked")
		require.NoError(t, err)
		require.Equal(t, payouts.Approved, d.State)
		require.Equal(t, []string{"person:adm"}, []string{d.Approvals[0].Approver})
	})

	t.Run("database: instalments are the commitment's schedule", func(t *testing.T) {
		insert := func(db interface {
			Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		}, commitment string, n int, due, state string) error {
			_, err := db.Exec(ctx, `INSERT INTO payouts_instalments (commitment_id, n, due_on, state, decided_at)
				VALUES ($1, $2, $3::date, $4, CASE WHEN $4 = 'scheduled' THEN NULL ELSE clock_timestamp() END)`, commitment, n, due, state)
			return err
		}
		// c: 3 monthly instalments from 2026-09-15.
		for name, row := range map[string]struct {
			n          int
			due, state string
		}{
			"a fourth instalment":             {4, "2026-12-15", "scheduled"},
			"instalment 0":                    {0, "2026-08-15", "scheduled"},
			"a negative instalment":           {-1, "2026-07-15", "scheduled"},
			"an existing n on another date":   {2, "2026-10-16", "scheduled"},
			"an existing n on its date":       {3, "2026-11-15", "fulfilled"},
			"born fulfilled beyond the end":   {4, "2026-12-15", "fulfilled"},
			"born canceled beyond the end":    {5, "2027-01-15", "canceled"},
			"the right date for another n":    {4, "2026-11-15", "scheduled"},
			"a date a year later on the same": {4, "2027-12-15", "scheduled"},
		} {
			err := insert(e.pool, c.ID, row.n, row.due, row.state)
			assert.Equal(t, "payouts_instalments_schedule", constraintOf(err), "%s: %v", name, err)
		}
		require.Len(t, e.commitment(c.ID).Instalments, 3)

		// A commitment made by hand (rolled back): its own schedule is accepted, month ends
		// included (Jan 31 + 3 months is Apr 30), and nothing else.
		tx, err := e.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		id := uuid.NewString()
		_, err = tx.Exec(ctx, `INSERT INTO payouts_commitments (id, program_id, person_id, amount, currency, instalments, every_months,
			first_due, idempotency_key, created_by) VALUES ($1, 'p1', 'ana', 10, 'USD', 2, 3, '2027-01-31', 'c-by-hand', 'person:adm')`, id)
		require.NoError(t, err)
		require.NoError(t, insert(tx, id, 1, "2027-01-31", "scheduled"))
		require.NoError(t, insert(tx, id, 2, "2027-04-30", "scheduled"))
		err = insert(tx, id, 3, "2027-07-31", "scheduled")
		require.Equal(t, "payouts_instalments_schedule", constraintOf(err), "%v", err)
	})

	t.Run("validation", func(t *testing.T) {
		n := func(change func(*payouts.NewCommitment)) payouts.NewCommitment {
			c := payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "10.00", Instalments: 2, EveryMonths: 1, FirstDue: "2027-01-15",
				IdempotencyKey: "c-invalid"}
			change(&c)
			return c
		}
		before := queryInt(t, e.pool, `SELECT count(*) FROM payouts_commitments`)
		for name, nc := range map[string]payouts.NewCommitment{
			"0 instalments":          n(func(c *payouts.NewCommitment) { c.Instalments = 0 }),
			"121 instalments":        n(func(c *payouts.NewCommitment) { c.Instalments = 121 }),
			"every 0 months":         n(func(c *payouts.NewCommitment) { c.EveryMonths = 0 }),
			"every 25 months":        n(func(c *payouts.NewCommitment) { c.EveryMonths = 25 }),
			"month 13":               n(func(c *payouts.NewCommitment) { c.FirstDue = "2027-13-01" }),
			"not ISO":                n(func(c *payouts.NewCommitment) { c.FirstDue = "15/01/2027" }),
			"no date":                n(func(c *payouts.NewCommitment) { c.FirstDue = "" }),
			"unknown requirement":    n(func(c *payouts.NewCommitment) { c.Requirements = json.RawMessage(`{"min_conversations": 1}`) }),
			"negative requirement":   n(func(c *payouts.NewCommitment) { c.Requirements = json.RawMessage(`{"min_verified_conversations": -1}`) }),
			"requirements not a map": n(func(c *payouts.NewCommitment) { c.Requirements = json.RawMessage(`[1]`) }),
			"zero amount":            n(func(c *payouts.NewCommitment) { c.Amount = "0" }),
			"negative amount":        n(func(c *payouts.NewCommitment) { c.Amount = "-5.00" }),
			"third decimal":          n(func(c *payouts.NewCommitment) { c.Amount = "1.001" }),
			"no idempotency key":     n(func(c *payouts.NewCommitment) { c.IdempotencyKey = " " }),
		} {
			_, err := p.CreateCommitment(ctx, admin, nc)
			assert.ErrorIs(t, err, payouts.ErrInvalid, name)
		}
		require.Equal(t, before, queryInt(t, e.pool, `SELECT count(*) FROM payouts_commitments`))
	})
	e.requireCheckClean()
}

// TestPayoutsCommitmentPeriodsDoNotOverlap: an instalment's period runs from the previous
// due date to its own; a conversation counts toward one instalment, not two. Here the only
// verified conversation is on the first due date (in the afternoon): it meets the first
// instalment's requirement or the second's, never both.
func TestPayoutsCommitmentPeriodsDoNotOverlap(t *testing.T) {
	t.Parallel()
	e, conn := commitmentEnv(t, time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), "1000.00")
	e.talk(conn, time.Date(2026, 9, 15, 14, 0, 0, 0, time.UTC), true)
	c := e.commit(payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "40.00", Instalments: 2, EveryMonths: 1,
		FirstDue: "2026-09-15", Requirements: json.RawMessage(`{"min_verified_conversations": 1}`), IdempotencyKey: "c-overlap"})
	fulfilled, failed, err := e.a.Payouts.ReleaseInstalments(e.ctx)
	require.NoError(t, err)
	c = e.commitment(c.ID)
	assert.Equal(t, [2]int{1, 1}, [2]int{fulfilled, failed}, "one conversation paid %v", instalmentStates(c))
	requireAmount(t, "40", posted(t, e.a, network.WalletAccount("ana")), "one instalment's worth")
}

// TestPayoutsCommitmentPeriodAtMonthEnd: instalments due on the 31st fall on the last day of
// shorter months (Jan 31, Feb 28, Mar 31); the third one's period is Feb 28 – Mar 31, so a
// verified conversation on Mar 1 meets it.
func TestPayoutsCommitmentPeriodAtMonthEnd(t *testing.T) {
	t.Parallel()
	e, conn := commitmentEnv(t, time.Date(2026, 4, 10, 12, 0, 0, 0, time.UTC), "1000.00")
	e.talk(conn, time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC), true)
	e.talk(conn, time.Date(2026, 2, 10, 12, 0, 0, 0, time.UTC), true)
	e.talk(conn, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), true)
	c := e.commit(payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "40.00", Instalments: 3, EveryMonths: 1,
		FirstDue: "2026-01-31", Requirements: json.RawMessage(`{"min_verified_conversations": 1}`), IdempotencyKey: "c-month-end"})
	require.Equal(t, []string{"2026-01-31 scheduled", "2026-02-28 scheduled", "2026-03-31 scheduled"}, instalmentStates(c))
	fulfilled, failed, err := e.a.Payouts.ReleaseInstalments(e.ctx)
	require.NoError(t, err)
	c = e.commitment(c.ID)
	assert.Equal(t, [2]int{3, 0}, [2]int{fulfilled, failed})
	assert.Equal(t, []string{"2026-01-31 fulfilled", "2026-02-28 fulfilled", "2026-03-31 fulfilled"}, instalmentStates(c))
	for _, i := range c.Instalments {
		assert.Empty(t, i.Reason, i.DueOn)
	}
}

// TestPayoutsInstalmentReleasedTheDayAfter: an instalment is released the day after its due
// date (UTC, the Store's clock), once that day's conversations are in; it covers the UTC days
// after the previous due date up to and including its own, the first one every_months
// before first_due. Two commitments with the same schedule (monthly from 2026-09-15) ask for
// 2 and 3 verified conversations; the reasons tell exactly which conversations counted.
func TestPayoutsInstalmentReleasedTheDayAfter(t *testing.T) {
	t.Parallel()
	e, conn := commitmentEnv(t, time.Date(2026, 9, 15, 12, 0, 0, 0, time.UTC), "1000.00")
	p := e.a.Payouts
	e.talk(conn, time.Date(2026, 8, 15, 12, 0, 0, 0, time.UTC), true) // first_due − 1 month: before the first period
	e.talk(conn, time.Date(2026, 8, 16, 0, 0, 0, 0, time.UTC), true)  // the first period's first moment
	two := e.commit(payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "40.00", Instalments: 2, EveryMonths: 1,
		FirstDue: "2026-09-15", Requirements: json.RawMessage(`{"min_verified_conversations": 2}`), IdempotencyKey: "c-two"})
	three := e.commit(payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "40.00", Instalments: 2, EveryMonths: 1,
		FirstDue: "2026-09-15", Requirements: json.RawMessage(`{"min_verified_conversations": 3}`), IdempotencyKey: "c-three"})
	release := func(want [2]int, why string) {
		t.Helper()
		fulfilled, failed, err := p.ReleaseInstalments(e.ctx)
		require.NoError(t, err)
		require.Equal(t, want, [2]int{fulfilled, failed}, why)
	}

	release([2]int{0, 0}, "due today: not released on its due date")
	e.clk.Set(time.Date(2026, 9, 15, 23, 59, 0, 0, time.UTC))
	e.talk(conn, time.Date(2026, 9, 15, 23, 30, 0, 0, time.UTC), true) // late on the due date: counts for it
	release([2]int{0, 0}, "still its due date")
	e.clk.Set(time.Date(2026, 9, 16, 0, 0, 0, 0, time.UTC))
	release([2]int{1, 1}, "the day after")
	c2, c3 := e.commitment(two.ID), e.commitment(three.ID)
	require.Equal(t, []string{"2026-09-15 fulfilled", "2026-10-15 scheduled"}, instalmentStates(c2))
	require.Equal(t, []string{"2026-09-15 failed", "2026-10-15 scheduled"}, instalmentStates(c3))
	require.Equal(t, "2 verified conversations from 2026-08-16 to 2026-09-15; the commitment asks for 3", c3.Instalments[0].Reason,
		"Aug 16 00:00 and Sep 15 23:30 count; Aug 15 belongs before the first period")
	requireAmount(t, "40", posted(t, e.a, network.WalletAccount("ana")))

	e.clk.Set(time.Date(2026, 10, 15, 23, 59, 0, 0, time.UTC))
	e.talk(conn, time.Date(2026, 10, 15, 23, 50, 0, 0, time.UTC), true)
	release([2]int{0, 0}, "Oct 15 is still its due date")
	e.clk.Set(time.Date(2026, 10, 16, 0, 0, 0, 0, time.UTC))
	e.talk(conn, time.Date(2026, 10, 16, 0, 0, 0, 0, time.UTC), true) // the next period's: too late for Oct 15
	release([2]int{0, 2}, "the day after")
	c2, c3 = e.commitment(two.ID), e.commitment(three.ID)
	require.Equal(t, []string{"2026-09-15 fulfilled", "2026-10-15 failed"}, instalmentStates(c2))
	require.Equal(t, "1 verified conversations from 2026-09-16 to 2026-10-15; the commitment asks for 2", c2.Instalments[1].Reason,
		"Sep 15 23:30 counted for the first period, Oct 16 00:00 is after the second")
	require.Equal(t, "1 verified conversations from 2026-09-16 to 2026-10-15; the commitment asks for 3", c3.Instalments[1].Reason)
	release([2]int{0, 0}, "released once")
	e.requireCheckClean()
}

// stipendEnv: program p1 (fund, auto-approve 100.00) on a clock fixed at 2026-06-15, with
// coaches, each coaching one participant on a near_peer_coach connection started 2026-04-01.
func stipendEnv(t *testing.T, fund string, coaches map[string]string) (*payoutsEnv, map[string]string) {
	e := newPayoutsEnv(t, time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC), app.Config{})
	newProgram(t, e.a.Network, "p1", fund, "100.00")
	conns := map[string]string{}
	for coach, participant := range coaches {
		e.person(coach, "coach")
		e.payee("p1", participant)
		conns[coach] = e.connect(participant, coach, "near_peer_coach", "2026-04-01")
	}
	return e, conns
}

func (e *payoutsEnv) w9(coach string) {
	e.t.Helper()
	p, err := e.a.Network.RecordTaxForm(e.ctx, admin, coach)
	require.NoError(e.t, err)
	require.True(e.t, p.TaxForm)
}

// TestPayoutsStipends: a coach's stipend for a month is the verified near_peer_coach
// conversations of that month times the rate; it is held while no W-9 is on file, then paid
// once into the coach's wallet with a disbursement; a month not ended is refused.
func TestPayoutsStipends(t *testing.T) {
	t.Parallel()
	e, conns := stipendEnv(t, "1000.00", map[string]string{"cy": "ana"})
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	may := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	e.talk(conns["cy"], time.Date(2026, 5, 5, 10, 0, 0, 0, time.UTC), true)
	e.talk(conns["cy"], time.Date(2026, 5, 31, 23, 30, 0, 0, time.UTC), true)
	e.talk(conns["cy"], time.Date(2026, 5, 25, 10, 0, 0, 0, time.UTC), false) // unverified
	e.talk(conns["cy"], time.Date(2026, 4, 28, 10, 0, 0, 0, time.UTC), true)  // April
	e.talk(conns["cy"], time.Date(2026, 6, 2, 10, 0, 0, 0, time.UTC), true)   // June, not ended
	// A mentor conversation in May is no coaching session.
	e.person("mo", "mentor")
	e.talk(e.connect("ana", "mo", "mentor", "2026-04-01"), time.Date(2026, 5, 6, 10, 0, 0, 0, time.UTC), true)

	_, err := p.SetStipendPolicy(ctx, admin, "p1", "-1.00")
	require.ErrorIs(t, err, payouts.ErrInvalid)
	sp, err := p.SetStipendPolicy(ctx, admin, "p1", "25.00")
	require.NoError(t, err)
	require.Equal(t, "25.00", sp.Rate)
	require.Equal(t, "person:adm", sp.SetBy)

	sts, err := p.PayStipends(ctx, time.Date(2026, 5, 17, 0, 0, 0, 0, time.UTC)) // any day of the month
	require.NoError(t, err)
	require.Len(t, sts, 1)
	st := sts[0]
	require.Equal(t, payouts.Stipend{Program: "p1", Coach: "cy", Month: "2026-05", Sessions: 2, Rate: "25.00", Amount: "50.00",
		Currency: "USD", Status: "held", Reason: "held: no W-9 on file; paid once it is"}, st)
	require.Equal(t, 0, entriesWithKey(t, e.pool, "stipend:p1:cy:2026-05"))
	require.Equal(t, 0, queryInt(t, e.pool, `SELECT count(*) FROM payouts_disbursements`))
	requireAmount(t, "1000", posted(t, a, "program/p1/fund"))
	months, err := p.HeldStipendMonths(ctx)
	require.NoError(t, err)
	require.Len(t, months, 1)
	require.True(t, months[0].Equal(may), "%v", months)

	sts, err = p.PayStipends(ctx, may)
	require.NoError(t, err)
	require.Len(t, sts, 1)
	require.Equal(t, "held", sts[0].Status, "still no W-9")

	e.w9("cy")
	sts, err = p.PayStipends(ctx, may)
	require.NoError(t, err)
	require.Len(t, sts, 1)
	st = sts[0]
	require.Equal(t, "paid", st.Status)
	require.Empty(t, st.Reason)
	require.Equal(t, "50.00", st.Amount)
	require.Equal(t, 2, st.Sessions)
	require.NotNil(t, st.PaidAt)
	require.Equal(t, []string{"credit coach/cy/wallet 50.00", "debit program/p1/fund 50.00"}, entryLines(t, a, st.EntryID))
	d := e.get(st.Disbursement)
	require.Equal(t, "stipend", d.Source)
	require.Equal(t, "cy", d.PersonID)
	require.Equal(t, network.CoachWalletAccount("cy"), d.Wallet)
	require.Equal(t, st.EntryID, d.FundingEntryID)
	require.Equal(t, payouts.Approved, d.State)
	require.Equal(t, sp.SetBy, d.RequestedBy, "requested by who set the rate")
	require.Equal(t, payouts.SystemActor.Name, d.Transitions[0].Actor)
	require.Equal(t, "coach stipend 2026-05: 2 sessions", d.Reason)
	requireAmount(t, "50", d.Amount)
	requireAmount(t, "950", posted(t, a, "program/p1/fund"))
	requireAmount(t, "50", posted(t, a, network.CoachWalletAccount("cy")))
	months, err = p.HeldStipendMonths(ctx)
	require.NoError(t, err)
	require.Empty(t, months)

	// Once paid, running again changes nothing.
	sts, err = p.PayStipends(ctx, may)
	require.NoError(t, err)
	require.Len(t, sts, 1)
	require.Equal(t, st.EntryID, sts[0].EntryID)
	require.Equal(t, st.Disbursement, sts[0].Disbursement)
	require.Equal(t, 1, entriesWithKey(t, e.pool, "stipend:p1:cy:2026-05"))
	require.Equal(t, 1, queryInt(t, e.pool, `SELECT count(*) FROM payouts_disbursements`))
	requireAmount(t, "950", posted(t, a, "program/p1/fund"))

	// April is its own month.
	sts, err = p.PayStipends(ctx, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, sts, 1)
	require.Equal(t, "paid", sts[0].Status)
	require.Equal(t, 1, sts[0].Sessions)
	require.Equal(t, "25.00", sts[0].Amount)
	all, err := p.Stipends(ctx, "p1", "cy")
	require.NoError(t, err)
	require.Len(t, all, 2)

	// The month that has not ended, and later ones, are refused.
	for _, m := range []time.Time{time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)} {
		_, err := p.PayStipends(ctx, m)
		require.ErrorIs(t, err, payouts.ErrInvalid, m.String())
	}
	require.Equal(t, 0, queryInt(t, e.pool, `SELECT count(*) FROM payouts_stipends WHERE month = '2026-06-01'`))
	e.requireCheckClean()
}

// TestPayoutsStipendRequesterIsWhoSetItsRate: stipends are paid at the rate in force when
// the run read it and requested by whoever set that rate, even when another admin sets a new
// rate while they are being paid: the admin who set the rate paid may not approve them.
func TestPayoutsStipendRequesterIsWhoSetItsRate(t *testing.T) {
	t.Parallel()
	e := fourEyesEnv(t)
	ctx, p := e.ctx, e.a.Payouts
	_, err := p.SetStipendPolicy(ctx, admin, "p1", "150.00")
	require.NoError(t, err)

	// Hold the run inside a stipend's transaction (it locks its stipend row) after it read the
	// rates; another admin sets a new rate meanwhile.
	hold, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = hold.Rollback(ctx) }()
	_, err = hold.Exec(ctx, `LOCK TABLE payouts_stipends IN EXCLUSIVE MODE`)
	require.NoError(t, err)
	type result struct {
		sts []payouts.Stipend
		err error
	}
	done := make(chan result, 1)
	go func() {
		sts, err := p.PayStipends(ctx, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
		done <- result{sts, err}
	}()
	require.Eventually(t, func() bool {
		return queryInt(t, e.pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE '%payouts_stipends%'`) == 1
	}, 10*time.Second, 10*time.Millisecond, "the run waits on the stipend row")
	_, err = p.SetStipendPolicy(ctx, admin2, "p1", "10.00")
	require.NoError(t, err)
	require.NoError(t, hold.Rollback(ctx))
	r := <-done
	require.NoError(t, r.err)
	require.Len(t, r.sts, 1)
	require.Equal(t, "paid", r.sts[0].Status)
	require.Equal(t, "150.00", r.sts[0].Rate)
	d := e.get(r.sts[0].Disbursement)
	require.Equal(t, "person:adm", d.RequestedBy, "requested by who set the rate it is paid at")
	require.Equal(t, payouts.AwaitingApproval, d.State)
	_, err = approveSeen(ctx, p, admin, d.ID, "")
	require.ErrorIs(t, err, payouts.ErrSelfApproval)
	_, err = approveSeen(ctx, p, admin2, d.ID, "")
	require.NoError(t, err)
}

// TestPayoutsNECReport: a coach whose stipends were paid out this year (their disbursement
// paid, counted by the time it was) reach the threshold is on the 1099-NEC report, one below
// is not; a stipend whose disbursement is not paid yet, or was returned, does not count. The
// default threshold is the year's (600.00 through 2025, 2000.00 after); the threshold
// argument overrides it, and so does Config.NECThreshold. The stipends' disbursements are
// requested by who set the rate in force, who may not approve them.
func TestPayoutsNECReport(t *testing.T) {
	t.Parallel()
	e, conns := stipendEnv(t, "10000.00", map[string]string{"cy": "ana", "dee": "bo"})
	ctx, p := e.ctx, e.a.Payouts
	e.talk(conns["cy"], time.Date(2026, 5, 5, 10, 0, 0, 0, time.UTC), true)
	e.talk(conns["cy"], time.Date(2026, 5, 6, 10, 0, 0, 0, time.UTC), true)
	e.talk(conns["dee"], time.Date(2026, 5, 7, 10, 0, 0, 0, time.UTC), true)
	e.w9("cy")
	e.w9("dee")
	_, err := p.SetStipendPolicy(ctx, admin, "p1", "500.00")
	require.NoError(t, err)
	sp, err := p.SetStipendPolicy(ctx, admin2, "p1", "1000.00") // the latest is in force
	require.NoError(t, err)
	require.Equal(t, "person:adm2", sp.SetBy)
	sts, err := p.PayStipends(ctx, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, sts, 2)
	paid := map[string]string{}
	ds := map[string]string{}
	for _, st := range sts {
		require.Equal(t, "paid", st.Status, st.Coach)
		paid[st.Coach] = st.Amount
		ds[st.Coach] = st.Disbursement
	}
	require.Equal(t, map[string]string{"cy": "2000.00", "dee": "1000.00"}, paid)

	coaches := func(lines []payouts.NECLine) []string {
		out := []string{}
		for _, l := range lines {
			out = append(out, l.Coach)
		}
		return out
	}
	// Paid into the wallets, not out to the coaches yet: nobody is on the report.
	now := time.Now().UTC().Year()
	for _, y := range []int{now - 1, now, now + 1} {
		lines, _, err := p.NECReport(ctx, y, decimal.RequireFromString("0.01"))
		require.NoError(t, err)
		require.Empty(t, lines, "%d: no stipend was paid out yet", y)
	}

	// Both disbursements wait for two admins (dual control from 500.00); admin2 set the rate.
	pay := func(coach string) payouts.Disbursement {
		t.Helper()
		d := e.get(ds[coach])
		require.Equal(t, payouts.AwaitingApproval, d.State, coach)
		require.Equal(t, 2, d.ApprovalsNeeded, coach)
		require.Equal(t, "person:adm2", d.RequestedBy, coach)
		_, err := approveSeen(ctx, p, admin2, d.ID, "")
		require.ErrorIs(t, err, payouts.ErrSelfApproval, "%s: who set the rate", coach)
		for _, by := range []network.By{admin, admin3} {
			_, err := approveSeen(ctx, p, by, d.ID, "")
			require.NoError(t, err, coach)
		}
		d = e.submit(nil, d.ID)
		require.Equal(t, payouts.Paid, d.State, coach)
		return d
	}
	dcy := pay("cy")
	year := lastTransition(t, dcy).At.UTC().Year() // stipends count in the year they were paid out

	lines, threshold, err := p.NECReport(ctx, year, decimal.Zero)
	require.NoError(t, err)
	require.GreaterOrEqual(t, year, 2026)
	requireAmount(t, "2000", threshold, "the threshold for payments after 2025")
	require.Equal(t, []payouts.NECLine{{Coach: "cy", Name: "Coach cy", Total: "2000.00", Currency: "USD", Stipends: 1, TaxForm: true}}, lines,
		"2000.00 reaches the default threshold")
	lines, threshold, err = p.NECReport(ctx, year, decimal.RequireFromString("1000"))
	require.NoError(t, err)
	requireAmount(t, "1000", threshold)
	require.Equal(t, []string{"cy"}, coaches(lines), "dee's stipend is not paid out yet")

	ddee := pay("dee")
	lines, _, err = p.NECReport(ctx, year, decimal.Zero)
	require.NoError(t, err)
	require.Equal(t, []string{"cy"}, coaches(lines), "1000.00 does not reach the default threshold")
	lines, _, err = p.NECReport(ctx, year, decimal.RequireFromString("1000"))
	require.NoError(t, err)
	require.Equal(t, []string{"cy", "dee"}, coaches(lines))
	lines, _, err = p.NECReport(ctx, year, decimal.RequireFromString("2000.01"))
	require.NoError(t, err)
	require.Empty(t, lines)
	lines, _, err = p.NECReport(ctx, year-1, decimal.Zero)
	require.NoError(t, err)
	require.Empty(t, lines, "nothing was paid the year before")
	_, _, err = p.NECReport(ctx, 1999, decimal.Zero)
	require.ErrorIs(t, err, payouts.ErrInvalid)

	// The default threshold is the year's.
	for y, want := range map[int]string{2024: "600", 2025: "600", 2026: "2000", 2027: "2000"} {
		_, threshold, err := p.NECReport(ctx, y, decimal.Zero)
		require.NoError(t, err)
		requireAmount(t, want, threshold, "year ", y)
	}

	lower := e.store(p.Provider(), payouts.Config{NECThreshold: decimal.RequireFromString("1000.00")})
	lines, threshold, err = lower.NECReport(ctx, year, decimal.Zero)
	require.NoError(t, err)
	requireAmount(t, "1000", threshold)
	require.Equal(t, []string{"cy", "dee"}, coaches(lines))
	_, threshold, err = lower.NECReport(ctx, 2025, decimal.Zero)
	require.NoError(t, err)
	requireAmount(t, "1000", threshold, "Config.NECThreshold holds for every year")

	// dee's payout comes back in full: returned, it no longer counts.
	require.NoError(t, p.Provider().(*payouts.Sandbox).Reverse(ctx, ddee.Attempts[0].ProviderRef, ddee.Amount))
	_, err = p.Settle(ctx, uuid.MustParse(ddee.ID), 1)
	require.NoError(t, err)
	require.Equal(t, payouts.Returned, e.get(ddee.ID).State)
	lines, _, err = p.NECReport(ctx, year, decimal.RequireFromString("1000"))
	require.NoError(t, err)
	require.Equal(t, []string{"cy"}, coaches(lines), "a returned stipend was not paid out")
}

// TestPayoutsStipendSessionInOneProgram: a participant enrolled in two programs that both pay
// stipends is coached once: each verified session counts in one program — the one where the
// coach is the participant's assigned coach, else the participant's first enrolment by
// program id — so the coach is paid once for it.
func TestPayoutsStipendSessionInOneProgram(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC), app.Config{})
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	newProgram(t, a.Network, "pa", "1000.00", "100.00")
	newProgram(t, a.Network, "pb", "1000.00", "100.00")
	e.person("cy", "coach")
	e.w9("cy")
	// ana: in pa without a coach, in pb with cy as her coach: her sessions count in pb.
	e.payee("pa", "ana")
	_, err := a.Network.Enrol(ctx, admin, "pb", "ana", "cy")
	require.NoError(t, err)
	// bo: in both, no coach assigned: his sessions count in pa, his first program by id.
	e.payee("pb", "bo")
	_, err = a.Network.Enrol(ctx, admin, "pa", "bo", "")
	require.NoError(t, err)
	ana := e.connect("ana", "cy", "near_peer_coach", "2026-04-01")
	bo := e.connect("bo", "cy", "near_peer_coach", "2026-04-01")
	e.talk(ana, time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC), true)
	e.talk(ana, time.Date(2026, 5, 11, 10, 0, 0, 0, time.UTC), true)
	e.talk(bo, time.Date(2026, 5, 12, 10, 0, 0, 0, time.UTC), true)
	for prog, rate := range map[string]string{"pa": "10.00", "pb": "25.00"} {
		_, err := p.SetStipendPolicy(ctx, admin, prog, rate)
		require.NoError(t, err)
	}

	sts, err := p.PayStipends(ctx, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	sort.Slice(sts, func(i, j int) bool { return sts[i].Program < sts[j].Program })
	require.Len(t, sts, 2)
	require.Equal(t, [2]string{"pa", "pb"}, [2]string{sts[0].Program, sts[1].Program})
	require.Equal(t, []int{1, 2}, []int{sts[0].Sessions, sts[1].Sessions}, "three sessions, each counted once")
	require.Equal(t, []string{"10.00", "50.00"}, []string{sts[0].Amount, sts[1].Amount})
	for _, st := range sts {
		require.Equal(t, "cy", st.Coach)
		require.Equal(t, "paid", st.Status)
	}
	requireAmount(t, "60", posted(t, a, network.CoachWalletAccount("cy")), "paid once per session")
	requireAmount(t, "990", posted(t, a, "program/pa/fund"))
	requireAmount(t, "950", posted(t, a, "program/pb/fund"))
	require.Equal(t, 2, queryInt(t, e.pool, `SELECT count(*) FROM payouts_disbursements WHERE source = 'stipend'`))
	require.Equal(t, 3, queryInt(t, e.pool, `SELECT sum(sessions) FROM payouts_stipends`))

	// Computed again, May is as it was.
	again, err := p.PayStipends(ctx, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	sort.Slice(again, func(i, j int) bool { return again[i].Program < again[j].Program })
	require.Equal(t, sts, again)
	requireAmount(t, "60", posted(t, a, network.CoachWalletAccount("cy")))

	// Once cy is bo's coach in pb, bo's sessions count there.
	_, err = a.Network.AssignCoach(ctx, admin, "pb", "bo", "cy")
	require.NoError(t, err)
	e.talk(bo, time.Date(2026, 4, 20, 10, 0, 0, 0, time.UTC), true)
	sts, err = p.PayStipends(ctx, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, sts, 1)
	require.Equal(t, "pb", sts[0].Program, "bo's April session counts where cy is his coach")
	require.Equal(t, 1, sts[0].Sessions)
	requireAmount(t, "85", posted(t, a, network.CoachWalletAccount("cy")))
	e.requireCheckClean()
}

// TestPayoutsSweepStipendGraceDays: the periodic sweep computes last month's stipends from
// day jobs.StipendGraceDays (the 8th, UTC) of the month on, so that sessions verified in the
// first week still count; months with held stipends are computed again at every run.
func TestPayoutsSweepStipendGraceDays(t *testing.T) {
	t.Parallel()
	e, conns := stipendEnv(t, "1000.00", map[string]string{"cy": "ana", "dee": "bo"})
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	require.Equal(t, 8, jobs.StipendGraceDays)
	_, err := p.SetStipendPolicy(ctx, admin, "p1", "20.00")
	require.NoError(t, err)
	e.w9("cy")
	// dee, without a W-9, is held for April.
	e.talk(conns["dee"], time.Date(2026, 4, 20, 10, 0, 0, 0, time.UTC), true)
	sts, err := p.PayStipends(ctx, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, sts, 1)
	require.Equal(t, "held", sts[0].Status)
	e.talk(conns["cy"], time.Date(2026, 5, 20, 10, 0, 0, 0, time.UTC), true)
	e.talk(conns["cy"], time.Date(2026, 5, 31, 23, 0, 0, 0, time.UTC), true)

	w := &jobs.PayoutsSweepWorker{Payouts: p, Now: e.clk.Now}
	sweep := func() {
		t.Helper()
		require.NoError(t, w.Work(ctx, &river.Job[jobs.PayoutsSweepArgs]{}))
	}
	may := func() int {
		return queryInt(t, e.pool, `SELECT count(*) FROM payouts_stipends WHERE month = '2026-05-01'`)
	}
	e.clk.Set(time.Date(2026, 6, 7, 23, 59, 59, 0, time.UTC))
	sweep()
	require.Zero(t, may(), "on the 7th, May is not computed yet")
	st, err := p.Stipends(ctx, "p1", "dee")
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.Equal(t, "held", st[0].Status, "still no W-9")

	// A held month is computed again at every run: dee's W-9 pays April, still on the 7th.
	e.w9("dee")
	sweep()
	require.Zero(t, may())
	st, err = p.Stipends(ctx, "p1", "dee")
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.Equal(t, "paid", st[0].Status)
	requireAmount(t, "20", posted(t, a, network.CoachWalletAccount("dee")))
	months, err := p.HeldStipendMonths(ctx)
	require.NoError(t, err)
	require.Empty(t, months)

	// A session of May verified in June's first week still counts.
	e.talk(conns["cy"], time.Date(2026, 5, 31, 23, 30, 0, 0, time.UTC), true)
	e.clk.Set(time.Date(2026, 6, 8, 0, 0, 0, 0, time.UTC))
	sweep()
	st, err = p.Stipends(ctx, "p1", "cy")
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.Equal(t, "2026-05", st[0].Month)
	require.Equal(t, "paid", st[0].Status)
	require.Equal(t, 3, st[0].Sessions)
	requireAmount(t, "60", posted(t, a, network.CoachWalletAccount("cy")))
	sweep()
	require.Equal(t, 1, may(), "once")
	require.Equal(t, 1, entriesWithKey(t, e.pool, "stipend:p1:cy:2026-05"))
	e.requireCheckClean()
}

// TestPayoutsCanceledWaitingAwardStaysInFund: canceling the disbursement of an award that
// waits for funds ends it: a later funding must not move the award's money into the wallet,
// where no disbursement would ever pay it out or give it back.
func TestPayoutsCanceledWaitingAwardStaysInFund(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, a, p := e.ctx, e.a, e.a.Payouts
	newProgram(t, a.Network, "pw", "", "100.00", ruleMentor4)
	addMentor(t, a.Network, "mo")
	d := e.waitingAward("pw", "una")
	d, err := p.Cancel(ctx, admin, d.ID, "the participant left")
	require.NoError(t, err)
	require.Equal(t, payouts.Canceled, d.State)

	_, err = a.Network.Fund(ctx, admin, "pw", "100.00", "pw-funding")
	require.NoError(t, err)
	_, err = a.Network.ReleaseWaiting(ctx, "pw")
	require.NoError(t, err)
	require.Equal(t, payouts.Canceled, e.get(d.ID).State)
	assert.True(t, posted(t, a, network.WalletAccount("una")).IsZero(),
		"the wallet holds %s for a canceled disbursement", posted(t, a, network.WalletAccount("una")))
	assert.True(t, posted(t, a, "program/pw/fund").Equal(decimal.RequireFromString("100")),
		"the fund holds %s of the 100.00 given", posted(t, a, "program/pw/fund"))
	e.requireCheckClean()
}
