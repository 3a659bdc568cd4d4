package app_test

// A program's test clock (payouts/clock.go): advanced by an admin, forward only, in sandbox
// programs only, with a line in the audit trail; the remediation window, automatic retries,
// caps and commitment instalments of that program follow it, and nothing else's.

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/payouts"
)

func (e *payoutsEnv) advance(program string, m payouts.ClockMove) payouts.Clock {
	e.t.Helper()
	c, err := e.a.Payouts.AdvanceClock(e.ctx, admin, program, m)
	require.NoError(e.t, err)
	return c
}

// TestClockForfeitsAfterTheWindow: a failed payout in a sandbox program is forfeited by the
// sweep once the program's clock is past the remediation window, while the same failure in
// another program, and one that failed after the advance, wait; the ledger's times stay real.
func TestClockForfeitsAfterTheWindow(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	for _, prog := range []string{"p1", "p2"} {
		newProgram(t, e.a.Network, prog, "1000.00", "100.00")
		_, err := p.SetPolicy(ctx, admin, prog, payouts.NewPolicy{RemediationDays: 7, AutoRetries: intPtr(0)})
		require.NoError(t, err)
	}
	e.payee("p1", "ivy")
	e.payee("p2", "jo")
	e.destination("ivy", "fail:closed")
	e.destination("jo", "fail:closed")
	d1 := e.grant(admin, "p1", "ivy", "20.00", "ivy-1")
	d2 := e.grant(admin, "p2", "jo", "20.00", "jo-1")
	require.Equal(t, payouts.Failed, e.submit(nil, d1.ID).State)
	require.Equal(t, payouts.Failed, e.submit(nil, d2.ID).State)
	res, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, res.Forfeited)

	c, err := p.Clock(ctx, "p1")
	require.NoError(t, err)
	require.True(t, c.Sandbox)
	require.Zero(t, c.Offset.Duration)
	require.Empty(t, c.Ahead())
	c = e.advance("p1", payouts.ClockMove{By: "6d", Reason: "show a forfeit"})
	require.Equal(t, 6*24*time.Hour, c.Offset.Duration)
	require.Equal(t, "+6 days", c.Ahead())
	res, err = p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, res.Forfeited, "6 of 7 days")
	// The failed queue and the person's page tell the real time it falls due: a day from the failure.
	q, err := p.Queue(ctx, payouts.QueueFilter{ID: d1.ID})
	require.NoError(t, err)
	require.Len(t, q, 1)
	require.NotNil(t, q[0].ForfeitAt)
	assert.Equal(t, q[0].FailedAt.Add(24*time.Hour), *q[0].ForfeitAt)
	home, err := p.OfPerson(ctx, "ivy", 10)
	require.NoError(t, err)
	require.Len(t, home.Lines, 1)
	assert.Equal(t, q[0].FailedAt.Add(24*time.Hour), *home.Lines[0].ForfeitAt)

	// A payout failing now, after the advance, has its own 7 days of program time.
	d3 := e.grant(admin, "p1", "ivy", "15.00", "ivy-2")
	require.Equal(t, payouts.Failed, e.submit(nil, d3.ID).State)

	c = e.advance("p1", payouts.ClockMove{By: "25h"})
	require.Equal(t, 7*24*time.Hour+time.Hour, c.Offset.Duration)
	require.Len(t, c.Advances, 2)
	require.Equal(t, "person:adm", c.Advances[0].AdvancedBy)
	require.Equal(t, "show a forfeit", c.Advances[0].Reason)
	res, err = p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, payouts.SweepResult{Forfeited: 1}, res)
	f := e.get(d1.ID)
	require.Equal(t, payouts.Forfeited, f.State)
	require.Equal(t, "not fixed within the remediation window of 7 days", lastTransition(t, f).Reason)
	require.Equal(t, payouts.Failed, e.get(d2.ID).State, "p2 has no test clock")
	require.Equal(t, payouts.Failed, e.get(d3.ID).State, "failed 25 program hours ago")

	// The forfeit's entry is dated by the real clock, not the program's.
	require.NotEmpty(t, f.FundReturnEntryID)
	entry, err := e.a.Ledger.Entry(ctx, uuid.MustParse(f.FundReturnEntryID))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), entry.PostedAt, time.Minute)
	assert.WithinDuration(t, time.Now(), entry.EffectiveAt, time.Minute)
	requireAmount(t, "985", posted(t, e.a, "program/p1/fund"), "the 20.00 is back in the fund, the 15.00 in ivy's wallet")

	// The trail has each advance.
	lines, err := e.a.Access.Audit(ctx, access.AuditFilter{Record: "program:p1"})
	require.NoError(t, err)
	var advances []access.AuditLine
	for _, l := range lines {
		if l.Action == "payouts.clock.advance" {
			advances = append(advances, l)
		}
	}
	require.Len(t, advances, 2)
	assert.Equal(t, "test-admin", advances[0].Actor)
	assert.Contains(t, advances[0].Detail, "test clock of p1 advanced by 144h0m0s")
	var after struct{ Offset string }
	require.NoError(t, json.Unmarshal(advances[1].After, &after))
	assert.Equal(t, "169h0m0s", after.Offset)
	e.requireCheckClean()
}

// TestClockRetriesFollowIt: the sweep makes an automatic retry once the program's clock is
// past its backoff, without waiting for the real hour.
func TestClockRetriesFollowIt(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "1000.00", "100.00")
	_, err := p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{AutoRetries: intPtr(1), RetryBackoff: "1h"})
	require.NoError(t, err)
	e.payee("p1", "ivy")
	e.destination("ivy", "fail:closed")
	d := e.grant(admin, "p1", "ivy", "20.00", "ivy-1")
	require.Equal(t, payouts.Failed, e.submit(nil, d.ID).State)
	res, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 0, res.Retried)
	e.advance("p1", payouts.ClockMove{By: "61m"})
	res, err = p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Retried)
	require.Equal(t, payouts.Approved, e.get(d.ID).State)
}

// TestClockMonthlyCapResets: caps count by the month of approval in the program's time, so
// advancing into the next month makes room, and the sweep approves what the cap held.
func TestClockMonthlyCapResets(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "5000.00", "100.00")
	e.payee("p1", "ana")
	_, err := p.SetPolicy(ctx, admin, "p1", payouts.NewPolicy{MonthlyCap: "100.00"})
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, e.grant(admin, "p1", "ana", "80.00", "mar-1").State)
	held := e.grant(admin, "p1", "ana", "30.00", "mar-2")
	require.Equal(t, payouts.AwaitingApproval, held.State)
	_, err = approveSeen(ctx, p, admin2, held.ID, "")
	require.ErrorIs(t, err, payouts.ErrCapExceeded)

	c := e.advance("p1", payouts.ClockMove{To: "2026-04-01"})
	require.Equal(t, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), c.Now.UTC())
	require.Equal(t, "+21 days 12h0m0s", c.Ahead())
	res, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.AutoApproved)
	d := e.get(held.ID)
	require.Equal(t, payouts.Approved, d.State)
	require.Equal(t, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), d.ApprovedAt.UTC(), "approved in April, program time")
	// April's count now holds 30.00: 80.00 more would pass the cap.
	require.Equal(t, payouts.AwaitingApproval, e.grant(admin, "p1", "ana", "80.00", "apr-1").State)
	require.Equal(t, payouts.Approved, e.grant(admin, "p1", "ana", "70.00", "apr-2").State)
}

// TestClockInstalmentDue: an instalment is decided once the program's clock is past its due
// date; another program's, due the same day, waits for real time.
func TestClockInstalmentDue(t *testing.T) {
	t.Parallel()
	e, _ := commitmentEnv(t, time.Date(2026, 9, 10, 12, 0, 0, 0, time.UTC), "1000.00")
	p := e.a.Payouts
	newProgram(t, e.a.Network, "p2", "1000.00", "100.00")
	e.payee("p2", "bo")
	c1 := e.commit(payouts.NewCommitment{Program: "p1", Person: "ana", Amount: "40.00", Instalments: 2, EveryMonths: 1,
		FirstDue: "2026-09-15", IdempotencyKey: "c-ana"})
	c2 := e.commit(payouts.NewCommitment{Program: "p2", Person: "bo", Amount: "40.00", Instalments: 2, EveryMonths: 1,
		FirstDue: "2026-09-15", IdempotencyKey: "c-bo"})
	fulfilled, failed, err := p.ReleaseInstalments(e.ctx)
	require.NoError(t, err)
	require.Equal(t, [2]int{0, 0}, [2]int{fulfilled, failed})

	e.advance("p1", payouts.ClockMove{By: "6d"}) // 2026-09-16 12:00 in p1
	fulfilled, failed, err = p.ReleaseInstalments(e.ctx)
	require.NoError(t, err)
	require.Equal(t, [2]int{1, 0}, [2]int{fulfilled, failed})
	require.Equal(t, []string{"2026-09-15 fulfilled", "2026-10-15 scheduled"}, instalmentStates(e.commitment(c1.ID)))
	require.Equal(t, []string{"2026-09-15 scheduled", "2026-10-15 scheduled"}, instalmentStates(e.commitment(c2.ID)))
	requireAmount(t, "960", posted(t, e.a, "program/p1/fund"))
	requireAmount(t, "1000", posted(t, e.a, "program/p2/fund"))
}

// TestClockRefused: a clock moves forward only, by a valid amount, and only in a sandbox
// program; the database refuses a backward or skipping advance too.
func TestClockRefused(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC), app.Config{})
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p1", "1000.00", "100.00")
	newProgram(t, e.a.Network, "live", "1000.00", "100.00")
	e.payee("live", "lu")
	e.advance("p1", payouts.ClockMove{By: "2d"})

	for _, m := range []payouts.ClockMove{
		{By: "-1h"}, {By: "0s"}, {By: "500ms"}, {To: "2026-03-12"}, {To: "2026-03-01"}, {By: "soon"}, {To: "tomorrow"},
		{}, {By: "1h", To: "2027-01-01"}, {By: "4000d"},
	} {
		_, err := p.AdvanceClock(ctx, admin, "p1", m)
		require.ErrorIs(t, err, payouts.ErrInvalid, "%+v", m)
	}
	_, err := p.AdvanceClock(ctx, admin, "p1", payouts.ClockMove{To: "2026-03-12"})
	require.ErrorContains(t, err, "is not after the program's time 2026-03-12T12:00:00Z: a clock only moves forward")
	_, err = p.AdvanceClock(ctx, admin, "nope", payouts.ClockMove{By: "1h"})
	require.Error(t, err)
	c, err := p.Clock(ctx, "p1")
	require.NoError(t, err)
	require.Len(t, c.Advances, 1, "nothing refused was recorded")

	// The database: each advance adds to the offset before it, forward.
	for _, row := range [][2]int64{{-3600, 169200}, {3600, 3600}, {3600, 0}} {
		_, err = e.pool.Exec(ctx, `INSERT INTO payouts_clock_advances (program_id, by_seconds, offset_seconds, advanced_by)
			VALUES ('p1', $1, $2, 'test:sql')`, row[0], row[1])
		require.Equal(t, "payouts_clock_forward", constraintOf(err), "%v: %v", row, err)
	}
	_, err = e.pool.Exec(ctx, `UPDATE payouts_clock_advances SET offset_seconds = 1`)
	require.Equal(t, "payouts_append_only", constraintOf(err))

	// A server paying through another provider refuses every clock, and ignores offsets.
	stripe := e.store(namedProvider{Provider: e.a.Payouts.Provider(), name: "stripe"}, payouts.Config{})
	_, err = stripe.AdvanceClock(ctx, admin, "p1", payouts.ClockMove{By: "1h"})
	require.ErrorIs(t, err, payouts.ErrNotSandbox)
	require.ErrorContains(t, err, "the server pays through stripe, not the sandbox")
	c, err = stripe.Clock(ctx, "p1")
	require.NoError(t, err)
	require.False(t, c.Sandbox)
	require.Zero(t, c.Offset.Duration, "offsets apply under the sandbox only")

	// A program that has paid through another provider refuses it under the sandbox too.
	_, err = stripe.SetDestination(ctx, admin, "lu", "acct_1LiveTest")
	require.NoError(t, err)
	d := e.grant(admin, "live", "lu", "10.00", "lu-1")
	require.NotEmpty(t, e.submit(stripe, d.ID).Attempts)
	_, err = p.AdvanceClock(ctx, admin, "live", payouts.ClockMove{By: "1h"})
	require.ErrorIs(t, err, payouts.ErrNotSandbox)
	require.ErrorContains(t, err, "live has paid through stripe")
}

// namedProvider is a provider under another name.
type namedProvider struct {
	payouts.Provider
	name string
}

func (n namedProvider) Name() string { return n.name }

func TestParseClockDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"72h": 72 * time.Hour, "3d": 72 * time.Hour, "2w": 14 * 24 * time.Hour,
		"90m": 90 * time.Minute, " 1d ": 24 * time.Hour, "-1d": -24 * time.Hour} {
		got, err := payouts.ParseClockDuration(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "d", "1.5d", "3 days", "99999999999d", "x"} {
		_, err := payouts.ParseClockDuration(in)
		require.Error(t, err, in)
	}
}

// TestClockStipendMonth: a month that has not ended in real time is paid for a program whose
// clock is past it, and for no other program.
func TestClockStipendMonth(t *testing.T) {
	t.Parallel()
	e, conns := stipendEnv(t, "1000.00", map[string]string{"cy": "ana"}) // clock at 2026-06-15
	ctx, p := e.ctx, e.a.Payouts
	newProgram(t, e.a.Network, "p2", "1000.00", "100.00")
	e.person("dee", "coach")
	e.payee("p2", "bo")
	dee := e.connect("bo", "dee", "near_peer_coach", "2026-04-01")
	e.talk(conns["cy"], time.Date(2026, 6, 2, 10, 0, 0, 0, time.UTC), true)
	e.talk(dee, time.Date(2026, 6, 3, 10, 0, 0, 0, time.UTC), true)
	for _, prog := range []string{"p1", "p2"} {
		_, err := p.SetStipendPolicy(ctx, admin, prog, "25.00")
		require.NoError(t, err)
	}
	june := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	_, err := p.PayStipends(ctx, june)
	require.ErrorIs(t, err, payouts.ErrInvalid, "June has not ended")

	e.advance("p1", payouts.ClockMove{To: "2026-07-01"})
	sts, err := p.PayStipends(ctx, june)
	require.NoError(t, err)
	require.Len(t, sts, 1, "p2's June has not ended")
	require.Equal(t, "p1", sts[0].Program)
	require.Equal(t, "cy", sts[0].Coach)
	require.Equal(t, 1, sts[0].Sessions)
}

// TestClockConcurrentAdvancesAddUp: advances at once are taken one after the other.
func TestClockConcurrentAdvancesAddUp(t *testing.T) {
	t.Parallel()
	e := newPayoutsEnv(t, time.Time{}, app.Config{})
	newProgram(t, e.a.Network, "p1", "", "100.00")
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := e.a.Payouts.AdvanceClock(e.ctx, admin, "p1", payouts.ClockMove{By: "1h"})
			errs <- err
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	c, err := e.a.Payouts.Clock(e.ctx, "p1")
	require.NoError(t, err)
	require.Equal(t, n*time.Hour, c.Offset.Duration)
	require.Len(t, c.Advances, n)
}
