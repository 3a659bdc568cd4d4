package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

// TestPropertyLedger drives the ledger with thousands of random operations, valid and
// invalid, and keeps an independent model of what every account must hold. After every
// checkEvery operations, and at the end, it compares the ledger with the model: balances now
// and as of earlier sequence numbers and times, sums of the raw postings, the trial balance,
// Check, statements page by page and the entry log.
//
// The seed is logged; rerun a failure with
//
//	TANDEM_PROPERTY_SEED=<seed> go test -run TestPropertyLedger ./ledger/
//
// or -args -ledger.seed=<seed>. -ledger.ops (or TANDEM_PROPERTY_OPS) sets the number of
// operations.
var (
	propSeedFlag = flag.Int64("ledger.seed", 0, "seed for TestPropertyLedger (default: TANDEM_PROPERTY_SEED, else the clock)")
	propOpsFlag  = flag.Int("ledger.ops", 0, "operations TestPropertyLedger runs (default: TANDEM_PROPERTY_OPS, else 3000, 300 with -short)")
)

const checkEvery = 100

func propertySeed(t *testing.T) int64 {
	if *propSeedFlag != 0 {
		return *propSeedFlag
	}
	if s := os.Getenv("TANDEM_PROPERTY_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "TANDEM_PROPERTY_SEED")
		return n
	}
	return time.Now().UnixNano()
}

func propertyOps(t *testing.T) int {
	if *propOpsFlag > 0 {
		return *propOpsFlag
	}
	if s := os.Getenv("TANDEM_PROPERTY_OPS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "TANDEM_PROPERTY_OPS")
		return n
	}
	if testing.Short() {
		return 300
	}
	return 3000
}

// ---- the model ----

type mbal struct {
	pd, pc, hd, hc decimal.Decimal
	version, seq   int64
}

type macct struct {
	code   string
	typ    ledger.AccountType
	cur    string
	noOD   bool
	temp   bool // may be drained and closed
	closed bool
	bal    mbal
}

type mline struct {
	acct   string
	phase  ledger.Phase
	side   ledger.Side
	amount decimal.Decimal
	cur    string
}

type mentry struct {
	id         uuid.UUID
	seq        int64
	postedAt   time.Time
	kind       ledger.Kind
	key        string
	desc       string
	lines      []mline
	target     int // index of the entry resolved or reversed, -1 if none
	resolvedBy int // pending entries: the commit or void, -1 while open
	reversedBy int // standard and commit entries: the reversal, -1 if none
}

// pastRequest is a standard or pending request that was posted, for replays and conflicts.
type pastRequest struct {
	kind  ledger.Kind
	req   ledger.NewEntry
	entry int
}

// pastResolution is a commit, void or reversal made with an idempotency key.
type pastResolution struct {
	kind   ledger.Kind
	target int
	res    ledger.Resolution
	entry  int
}

type model struct {
	accts       map[string]*macct
	codes       []string // creation order
	entries     []*mentry
	requests    []pastRequest
	resolutions []pastResolution
}

func normalSide(t ledger.AccountType) ledger.Side {
	if t == ledger.Asset || t == ledger.Expense {
		return ledger.Debit
	}
	return ledger.Credit
}

func (b *mbal) apply(l mline, seq int64) {
	switch {
	case l.phase == ledger.PhasePosted && l.side == ledger.Debit:
		b.pd = b.pd.Add(l.amount)
	case l.phase == ledger.PhasePosted:
		b.pc = b.pc.Add(l.amount)
	case l.phase == ledger.PhaseHold && l.side == ledger.Debit:
		b.hd = b.hd.Add(l.amount)
	case l.phase == ledger.PhaseHold:
		b.hc = b.hc.Add(l.amount)
	case l.side == ledger.Debit: // release
		b.hd = b.hd.Sub(l.amount)
	default:
		b.hc = b.hc.Sub(l.amount)
	}
	b.version++
	b.seq = seq
}

// figures derives the normal-side numbers: posted, pending and available.
func (b mbal) figures(t ledger.AccountType) (posted, pending, available decimal.Decimal) {
	if normalSide(t) == ledger.Debit {
		return b.pd.Sub(b.pc), b.hd.Sub(b.hc), b.pd.Sub(b.pc).Sub(b.hc)
	}
	return b.pc.Sub(b.pd), b.hc.Sub(b.hd), b.pc.Sub(b.pd).Sub(b.hd)
}

func (m *model) lastSeq() int64 {
	if len(m.entries) == 0 {
		return 0
	}
	return m.entries[len(m.entries)-1].seq
}

// simulate applies the entries' lines in order to a copy of the balances and returns every
// error the database may answer with; none means the entries must be posted. An entry is
// atomic: a no_overdraft account may dip between two lines of one entry, as long as it is
// whole after the entry (TestOverdraftIsCheckedPerEntry).
func (m *model) simulate(entries ...[]mline) []error {
	bal := map[string]mbal{}
	var errs []error
	add := func(e error) {
		for _, x := range errs {
			if x == e {
				return
			}
		}
		errs = append(errs, e)
	}
	for _, lines := range entries {
		var touched []*macct
		for _, l := range lines {
			a, ok := m.accts[l.acct]
			if !ok {
				add(ledger.ErrAccountNotFound)
				continue
			}
			if a.closed {
				add(ledger.ErrAccountClosed)
			}
			if a.cur != l.cur {
				add(ledger.ErrCurrencyMismatch)
			}
			b, seen := bal[l.acct]
			if !seen {
				b = a.bal
			}
			b.apply(l, 0)
			bal[l.acct] = b
			touched = append(touched, a)
		}
		for _, a := range touched {
			if _, _, avail := bal[a.code].figures(a.typ); a.noOD && avail.IsNegative() {
				add(ledger.ErrInsufficientFunds)
			}
		}
	}
	return errs
}

func (m *model) record(e *mentry) int {
	for _, l := range e.lines {
		m.accts[l.acct].bal.apply(l, e.seq)
	}
	m.entries = append(m.entries, e)
	return len(m.entries) - 1
}

// replay computes every account's balance after the entries selected by keep, from the log.
func (m *model) replay(keep func(e *mentry) bool) map[string]mbal {
	out := map[string]mbal{}
	for _, e := range m.entries {
		if !keep(e) {
			continue
		}
		for _, l := range e.lines {
			b := out[l.acct]
			b.apply(l, e.seq)
			out[l.acct] = b
		}
	}
	return out
}

type histLine struct {
	entry  *mentry
	lineNo int
	line   mline
	after  mbal
}

// history lists an account's postings in order with the balance after each.
func (m *model) history(code string) []histLine {
	var out []histLine
	var b mbal
	for _, e := range m.entries {
		for i, l := range e.lines {
			if l.acct != code {
				continue
			}
			b.apply(l, e.seq)
			out = append(out, histLine{entry: e, lineNo: i + 1, line: l, after: b})
		}
	}
	return out
}

// ---- the run ----

type propRun struct {
	t       *testing.T
	ctx     context.Context
	b       *testBundle
	rng     *rand.Rand
	m       *model
	seed    int64
	op      int
	keyN    int
	failed  []string // keys of requests that failed: free to reuse
	stats   map[string]int
	recent  []string
	tempN   int
	firstAt time.Time
}

var currenciesUnderTest = []string{"USD", "JPY", "KWD"}

func TestPropertyLedger(t *testing.T) {
	t.Parallel()
	seed := propertySeed(t)
	nOps := propertyOps(t)
	t.Logf("seed %d, %d operations (rerun with TANDEM_PROPERTY_SEED=%d)", seed, nOps, seed)

	b := setup(t)
	r := &propRun{t: t, ctx: b.ctx, b: b, rng: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
		m: &model{accts: map[string]*macct{}}, seed: seed, stats: map[string]int{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed at operation %d of seed %d; last operations:\n  %s", r.op, seed, strings.Join(r.recent, "\n  "))
		}
	})

	for _, a := range []macct{
		{code: "org/cash/usd", typ: ledger.Asset, cur: "USD"},
		{code: "equity/usd/capital", typ: ledger.Equity, cur: "USD"},
		{code: "program/usd/fund", typ: ledger.Equity, cur: "USD", noOD: true},
		{code: "participant/u1/wallet", typ: ledger.Liability, cur: "USD", noOD: true},
		{code: "participant/u2/wallet", typ: ledger.Liability, cur: "USD", noOD: true},
		{code: "revenue/usd/fees", typ: ledger.Revenue, cur: "USD"},
		{code: "expense/usd/payouts", typ: ledger.Expense, cur: "USD"},
		{code: "asset/usd/reserve", typ: ledger.Asset, cur: "USD", noOD: true},
		{code: "temp/usd/a", typ: ledger.Liability, cur: "USD", noOD: true, temp: true},
		{code: "temp/usd/b", typ: ledger.Asset, cur: "USD", temp: true},
		{code: "org/cash/jpy", typ: ledger.Asset, cur: "JPY"},
		{code: "equity/jpy/capital", typ: ledger.Equity, cur: "JPY"},
		{code: "program/jpy/fund", typ: ledger.Equity, cur: "JPY", noOD: true},
		{code: "participant/j1/wallet", typ: ledger.Liability, cur: "JPY", noOD: true},
		{code: "expense/jpy/payouts", typ: ledger.Expense, cur: "JPY", noOD: true},
		{code: "temp/jpy/a", typ: ledger.Revenue, cur: "JPY", temp: true},
		{code: "org/cash/kwd", typ: ledger.Asset, cur: "KWD"},
		{code: "equity/kwd/capital", typ: ledger.Equity, cur: "KWD"},
		{code: "participant/k1/wallet", typ: ledger.Liability, cur: "KWD", noOD: true},
		{code: "temp/kwd/a", typ: ledger.Asset, cur: "KWD", noOD: true, temp: true},
	} {
		r.createAccount(a)
	}

	type op struct {
		name   string
		weight int
		run    func()
	}
	ops := []op{
		{"transfer", 30, func() { r.transfer(false) }},
		{"multi", 10, func() { r.multi(false) }},
		{"pending", 10, func() { r.transfer(true) }},
		{"pending-multi", 4, func() { r.multi(true) }},
		{"commit", 6, r.commitFull},
		{"commit-partial", 5, r.commitPartial},
		{"void", 5, r.void},
		{"reverse", 6, r.reverse},
		{"replay", 4, r.replay},
		{"conflict", 3, r.conflict},
		{"overdraft", 3, r.overdraft},
		{"unbalanced", 2, r.unbalanced},
		{"dip", 2, r.dip},
		{"closed-account", 2, r.postToClosed},
		{"drain-close", 2, r.drainAndClose},
		{"close-refused", 1, r.closeRefused},
		{"resolve-again", 3, r.resolveAgain},
		{"reverse-again", 2, r.reverseAgain},
		{"wrong-kind", 2, r.wrongKind},
		{"resolution-replay", 2, r.resolutionReplay},
		{"bad-request", 5, r.badRequest},
		{"batch", 3, r.batch},
		{"new-account", 1, r.newTempAccount},
		{"concurrent", 2, r.concurrent},
		{"race-resolve", 2, r.raceResolve},
		{"race-reverse", 1, r.raceReverse},
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	start := time.Now()
	for r.op = 0; r.op < nOps; r.op++ {
		n := r.rng.IntN(total)
		for _, o := range ops {
			if n < o.weight {
				r.note("#%d %s", r.op, o.name)
				o.run()
				break
			}
			n -= o.weight
		}
		if (r.op+1)%checkEvery == 0 {
			r.verify((r.op+1)%(checkEvery*10) == 0)
		}
	}
	r.verify(true)

	keys := make([]string, 0, len(r.stats))
	for k := range r.stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "  %s: %d\n", k, r.stats[k])
	}
	t.Logf("%d operations, %d entries, %d accounts in %s:\n%s", nOps, len(r.m.entries), len(r.m.codes), time.Since(start).Round(time.Millisecond), sb.String())

	if nOps >= 3000 {
		// The run must have exercised what it claims to: every outcome below happened.
		for _, k := range []string{
			"ok:transfer", "ok:multi", "ok:pending", "ok:commit", "ok:commit-partial", "ok:void", "ok:reverse",
			"ok:replay", "ok:batch", "ok:close", "ok:resolution-replay", "ok:concurrent", "ok:race-resolve",
			"ok:race-reverse", "ok:dip",
			"err:insufficient funds", "err:entry does not balance", "err:account is closed",
			"err:idempotency key reused with different content", "err:pending entry already committed or voided",
			"err:entry already reversed", "err:entry is not pending", "err:entry cannot be reversed",
			"err:entry not found", "err:account not found", "err:posting currency differs from the account's",
			"err:invalid amount", "err:unknown currency", "err:account has a balance or pending holds",
		} {
			require.Positive(t, r.stats[k], "no %q in %d operations", k, nOps)
		}
	}
}

func (r *propRun) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.recent = append(r.recent, s)
	if len(r.recent) > 25 {
		r.recent = r.recent[1:]
	}
}

func (r *propRun) where() string { return fmt.Sprintf("seed %d op %d", r.seed, r.op) }

func (r *propRun) newKey() string {
	if len(r.failed) > 0 && r.rng.IntN(10) == 0 {
		k := r.failed[len(r.failed)-1]
		r.failed = r.failed[:len(r.failed)-1]
		return k
	}
	r.keyN++
	switch r.rng.IntN(40) {
	case 0:
		return fmt.Sprintf("%0255d", r.keyN)
	case 1:
		return fmt.Sprintf("clé-ü-%d", r.keyN)
	}
	return fmt.Sprintf("op-%d", r.keyN)
}

func (r *propRun) createAccount(a macct) {
	r.t.Helper()
	acct, created, err := r.b.ledger.CreateAccount(r.ctx, ledger.NewAccount{Code: a.code, Type: a.typ, Currency: a.cur, NoOverdraft: a.noOD})
	require.NoError(r.t, err)
	require.True(r.t, created)
	require.Equal(r.t, a.code, acct.Code)
	a2 := a
	r.m.accts[a.code] = &a2
	r.m.codes = append(r.m.codes, a.code)
}

// ---- choosing things ----

func (r *propRun) pickCurrency() string {
	return currenciesUnderTest[r.rng.IntN(len(currenciesUnderTest))]
}

func (r *propRun) open(cur string, keep func(*macct) bool) []*macct {
	var out []*macct
	for _, c := range r.m.codes {
		a := r.m.accts[c]
		if a.cur == cur && !a.closed && (keep == nil || keep(a)) {
			out = append(out, a)
		}
	}
	return out
}

func (r *propRun) pickAcct(list []*macct) *macct {
	if len(list) == 0 {
		return nil
	}
	return list[r.rng.IntN(len(list))]
}

func exponent(cur string) int32 {
	e, _ := ledger.Exponent(cur)
	return e
}

func minor(d decimal.Decimal, cur string) int64 { return d.Shift(exponent(cur)).IntPart() }

func fromMinor(n int64, cur string) decimal.Decimal { return decimal.New(n, -exponent(cur)) }

// randMinor is a random amount in minor units, mostly small, sometimes very large.
func (r *propRun) randMinor() int64 {
	if r.rng.IntN(50) == 0 {
		return 1 + r.rng.Int64N(1_000_000_000_000)
	}
	return 1 + r.rng.Int64N(int64(10)<<(2*r.rng.IntN(9)))
}

// headroom is how much a posting on side can move out of a without overdrawing it; -1 when
// unlimited.
func headroom(a *macct, side ledger.Side) int64 {
	if !a.noOD || side == normalSide(a.typ) {
		return -1
	}
	_, _, avail := a.bal.figures(a.typ)
	if !avail.IsPositive() {
		return 0
	}
	return minor(avail, a.cur)
}

func capMin(a, b int64) int64 {
	switch {
	case a < 0:
		return b
	case b < 0:
		return a
	case a < b:
		return a
	}
	return b
}

// amountWithin is mostly an amount the caps allow (so most requests succeed), sometimes any.
func (r *propRun) amountWithin(limit int64) int64 {
	amount := r.randMinor()
	if limit > 0 && r.rng.IntN(100) < 85 && amount > limit {
		amount = 1 + r.rng.Int64N(limit)
	}
	return amount
}

func (r *propRun) decorate(e *ledger.NewEntry) {
	if r.rng.IntN(4) == 0 {
		e.Metadata = json.RawMessage(fmt.Sprintf(`{"op": %d, "tags": ["a", "b"], "nested": {"z": 1, "a": null}}`, r.op))
	}
	if r.rng.IntN(5) == 0 {
		eff := time.Date(2020+r.rng.IntN(6), time.Month(1+r.rng.IntN(12)), 1+r.rng.IntN(28), r.rng.IntN(24), 0, 0,
			r.rng.IntN(1_000_000)*1000, time.UTC)
		e.EffectiveAt = &eff
	}
}

func linesOf(ps []ledger.Posting, phase ledger.Phase) []mline {
	out := make([]mline, len(ps))
	for i, p := range ps {
		out[i] = mline{acct: p.Account, phase: phase, side: p.Side, amount: p.Amount, cur: p.Currency}
	}
	return out
}

// ---- posting and checking ----

func errName(err error) string {
	for _, s := range []error{ledger.ErrInvalidAmount, ledger.ErrUnknownCurrency, ledger.ErrUnbalanced, ledger.ErrInvalid,
		ledger.ErrAccountNotFound, ledger.ErrAccountExists, ledger.ErrAccountClosed, ledger.ErrAccountNotEmpty,
		ledger.ErrCurrencyMismatch, ledger.ErrInsufficientFunds, ledger.ErrIdempotencyConflict, ledger.ErrEntryNotFound,
		ledger.ErrNotPending, ledger.ErrAlreadyResolved, ledger.ErrAlreadyReversed, ledger.ErrNotReversible,
		ledger.ErrImmutable, ledger.ErrIntegrity} {
		if errors.Is(err, s) {
			return strings.TrimPrefix(s.Error(), ledger.ErrInvalid.Error()+": ")
		}
	}
	return "unexpected"
}

// requireOneOf asserts err wraps one of the errors the model allows.
func (r *propRun) requireOneOf(err error, allowed []error, what string) {
	r.t.Helper()
	require.Error(r.t, err, "%s: %s succeeded, the model expected one of %v", r.where(), what, allowed)
	for _, a := range allowed {
		if errors.Is(err, a) {
			r.stats["err:"+errName(a)]++
			return
		}
	}
	require.Failf(r.t, "wrong error", "%s: %s: got %v, the model expected one of %v", r.where(), what, err, allowed)
}

func (r *propRun) requireLines(what string, want []mline, got []ledger.Line) {
	r.t.Helper()
	require.Len(r.t, got, len(want), "%s: %s lines", r.where(), what)
	for i, w := range want {
		g := got[i]
		require.Equal(r.t, i+1, g.Line, "%s: %s line %d", r.where(), what, i)
		require.Equal(r.t, w.acct, g.Account, "%s: %s line %d", r.where(), what, i+1)
		require.Equal(r.t, w.phase, g.Phase, "%s: %s line %d", r.where(), what, i+1)
		require.Equal(r.t, w.side, g.Side, "%s: %s line %d", r.where(), what, i+1)
		require.Equal(r.t, w.cur, g.Currency, "%s: %s line %d", r.where(), what, i+1)
		require.True(r.t, w.amount.Equal(g.Amount), "%s: %s line %d amount %s, want %s", r.where(), what, i+1, g.Amount, w.amount)
	}
}

// accept checks a newly posted entry and records it in the model.
func (r *propRun) accept(what string, got ledger.Entry, kind ledger.Kind, key, desc string, lines []mline, target int) int {
	r.t.Helper()
	require.False(r.t, got.Replayed, "%s: %s was a replay", r.where(), what)
	require.Equal(r.t, kind, got.Kind, "%s: %s", r.where(), what)
	require.Greater(r.t, got.Seq, r.m.lastSeq(), "%s: %s seq", r.where(), what)
	require.NotEqual(r.t, uuid.Nil, got.ID)
	require.Equal(r.t, key, got.IdempotencyKey, "%s: %s key", r.where(), what)
	if desc != "" {
		require.Equal(r.t, desc, got.Description, "%s: %s description", r.where(), what)
	}
	if target >= 0 {
		require.NotNil(r.t, got.TargetID, "%s: %s target", r.where(), what)
		require.Equal(r.t, r.m.entries[target].id, *got.TargetID, "%s: %s target", r.where(), what)
	} else {
		require.Nil(r.t, got.TargetID, "%s: %s target", r.where(), what)
	}
	r.requireLines(what, lines, got.Lines)
	if r.firstAt.IsZero() {
		r.firstAt = got.PostedAt
	}
	idx := r.m.record(&mentry{id: got.ID, seq: got.Seq, postedAt: got.PostedAt, kind: kind, key: key, desc: got.Description,
		lines: lines, target: target, resolvedBy: -1, reversedBy: -1})
	r.stats["ok:"+what]++
	return idx
}

func (r *propRun) submit(kind ledger.Kind, e ledger.NewEntry) (ledger.Entry, error) {
	if kind == ledger.KindPending {
		return r.b.ledger.PostPending(r.ctx, e)
	}
	return r.b.ledger.Post(r.ctx, e)
}

// post sends a new standard or pending entry and checks the outcome against the model.
func (r *propRun) post(what string, kind ledger.Kind, e ledger.NewEntry) (int, error) {
	r.t.Helper()
	phase := ledger.PhasePosted
	if kind == ledger.KindPending {
		phase = ledger.PhaseHold
	}
	lines := linesOf(e.Postings, phase)
	allowed := r.m.simulate(lines)
	got, err := r.submit(kind, e)
	if len(allowed) > 0 {
		r.requireOneOf(err, allowed, what)
		r.failed = append(r.failed, e.IdempotencyKey)
		return -1, err
	}
	require.NoError(r.t, err, "%s: %s", r.where(), what)
	idx := r.accept(what, got, kind, e.IdempotencyKey, e.Description, lines, -1)
	r.m.requests = append(r.m.requests, pastRequest{kind: kind, req: e, entry: idx})
	return idx, nil
}

// ---- operations ----

func (r *propRun) twoPostingEntry(pending bool) (ledger.NewEntry, bool) {
	cur := r.pickCurrency()
	accts := r.open(cur, nil)
	if len(accts) < 2 {
		return ledger.NewEntry{}, false
	}
	i := r.rng.IntN(len(accts))
	j := r.rng.IntN(len(accts) - 1)
	if j >= i {
		j++
	}
	from, to := accts[i], accts[j]
	amount := r.amountWithin(capMin(headroom(from, ledger.Debit), headroom(to, ledger.Credit)))
	kind := "transfer"
	if pending {
		kind = "hold"
	}
	e := ledger.NewEntry{IdempotencyKey: r.newKey(), Description: fmt.Sprintf("%s %d", kind, r.op), Postings: []ledger.Posting{
		{Account: from.code, Side: ledger.Debit, Amount: fromMinor(amount, cur), Currency: cur},
		{Account: to.code, Side: ledger.Credit, Amount: fromMinor(amount, cur), Currency: cur},
	}}
	r.decorate(&e)
	return e, true
}

func (r *propRun) transfer(pending bool) {
	e, ok := r.twoPostingEntry(pending)
	if !ok {
		return
	}
	if pending {
		_, _ = r.post("pending", ledger.KindPending, e)
	} else {
		_, _ = r.post("transfer", ledger.KindStandard, e)
	}
}

// split divides total minor units into n positive parts.
func (r *propRun) split(total int64, n int) []int64 {
	out := make([]int64, n)
	left := total
	for i := 0; i < n-1; i++ {
		out[i] = 1 + r.rng.Int64N(left-int64(n-1-i))
		left -= out[i]
	}
	out[n-1] = left
	return out
}

func (r *propRun) multiPostings() []ledger.Posting {
	var ps []ledger.Posting
	curs := []string{r.pickCurrency()}
	if r.rng.IntN(3) == 0 {
		other := r.pickCurrency()
		if other != curs[0] {
			curs = append(curs, other)
		}
	}
	for _, cur := range curs {
		accts := r.open(cur, nil)
		if len(accts) == 0 {
			continue
		}
		nd, nc := 1+r.rng.IntN(3), 1+r.rng.IntN(3)
		if nd+nc < 3 {
			nc++
		}
		var debits, credits []*macct
		limit := int64(-1)
		for range nd {
			a := r.pickAcct(accts)
			debits = append(debits, a)
			limit = capMin(limit, headroom(a, ledger.Debit))
		}
		for range nc {
			a := r.pickAcct(accts)
			credits = append(credits, a)
			limit = capMin(limit, headroom(a, ledger.Credit))
		}
		total := r.amountWithin(limit)
		if total < int64(max(nd, nc)) {
			total = int64(max(nd, nc))
		}
		for i, part := range r.split(total, nd) {
			ps = append(ps, ledger.Posting{Account: debits[i].code, Side: ledger.Debit, Amount: fromMinor(part, cur), Currency: cur})
		}
		for i, part := range r.split(total, nc) {
			ps = append(ps, ledger.Posting{Account: credits[i].code, Side: ledger.Credit, Amount: fromMinor(part, cur), Currency: cur})
		}
	}
	r.rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	return ps
}

func (r *propRun) multi(pending bool) {
	ps := r.multiPostings()
	if len(ps) < 2 {
		return
	}
	e := ledger.NewEntry{IdempotencyKey: r.newKey(), Description: fmt.Sprintf("multi %d", r.op), Postings: ps}
	r.decorate(&e)
	if pending {
		_, _ = r.post("pending", ledger.KindPending, e)
	} else {
		_, _ = r.post("multi", ledger.KindStandard, e)
	}
}

func (r *propRun) entriesWhere(keep func(*mentry) bool) []int {
	var out []int
	for i, e := range r.m.entries {
		if keep(e) {
			out = append(out, i)
		}
	}
	return out
}

func (r *propRun) pickEntry(keep func(*mentry) bool) int {
	idx := r.entriesWhere(keep)
	if len(idx) == 0 {
		return -1
	}
	return idx[r.rng.IntN(len(idx))]
}

func openPending(e *mentry) bool { return e.kind == ledger.KindPending && e.resolvedBy < 0 }

func (r *propRun) resolution() ledger.Resolution {
	var res ledger.Resolution
	if r.rng.IntN(2) == 0 {
		res.IdempotencyKey = r.newKey()
	}
	if r.rng.IntN(3) == 0 {
		res.Description = fmt.Sprintf("resolution %d", r.op)
	}
	if r.rng.IntN(5) == 0 {
		res.Metadata = json.RawMessage(fmt.Sprintf(`{"op":%d}`, r.op))
	}
	return res
}

func releases(p *mentry) []mline {
	out := make([]mline, len(p.lines))
	for i, h := range p.lines {
		out[i] = mline{acct: h.acct, phase: ledger.PhaseRelease, side: h.side, amount: h.amount, cur: h.cur}
	}
	return out
}

func (r *propRun) call(kind ledger.Kind, target uuid.UUID, res ledger.Resolution) (ledger.Entry, error) {
	switch kind {
	case ledger.KindCommit:
		return r.b.ledger.Commit(r.ctx, target, res)
	case ledger.KindVoid:
		return r.b.ledger.Void(r.ctx, target, res)
	}
	return r.b.ledger.Reverse(r.ctx, target, res)
}

// resolve commits, voids or reverses target and checks the outcome against the model.
func (r *propRun) resolve(what string, kind ledger.Kind, target int, res ledger.Resolution, lines []mline) {
	r.t.Helper()
	allowed := r.m.simulate(lines)
	tgt := r.m.entries[target]
	got, err := r.call(kind, tgt.id, res)
	if len(allowed) > 0 {
		r.requireOneOf(err, allowed, what)
		if res.IdempotencyKey != "" {
			r.failed = append(r.failed, res.IdempotencyKey)
		}
		return
	}
	require.NoError(r.t, err, "%s: %s of entry %d", r.where(), what, tgt.seq)
	idx := r.accept(what, got, kind, res.IdempotencyKey, res.Description, lines, target)
	if kind == ledger.KindReversal {
		tgt.reversedBy = idx
	} else {
		tgt.resolvedBy = idx
	}
	if res.IdempotencyKey != "" {
		r.m.resolutions = append(r.m.resolutions, pastResolution{kind: kind, target: target, res: res, entry: idx})
	}
}

func (r *propRun) commitFull() {
	i := r.pickEntry(openPending)
	if i < 0 {
		return
	}
	p := r.m.entries[i]
	res := r.resolution()
	lines := releases(p)
	explicit := r.rng.IntN(4) == 0 // the holds spelled out as postings: still a full commit
	for _, h := range p.lines {
		lines = append(lines, mline{acct: h.acct, phase: ledger.PhasePosted, side: h.side, amount: h.amount, cur: h.cur})
		if explicit {
			res.Postings = append(res.Postings, ledger.Posting{Account: h.acct, Side: h.side, Amount: h.amount, Currency: h.cur})
		}
	}
	r.resolve("commit", ledger.KindCommit, i, res, lines)
}

func (r *propRun) commitPartial() {
	i := r.pickEntry(openPending)
	if i < 0 {
		return
	}
	p := r.m.entries[i]
	// One debit hold and one credit hold of the same currency, posted for less.
	d := p.lines[r.rng.IntN(len(p.lines))]
	var credits []mline
	for _, h := range p.lines {
		if h.side != d.side && h.cur == d.cur {
			credits = append(credits, h)
		}
	}
	c := credits[r.rng.IntN(len(credits))]
	most := min(minor(d.amount, d.cur), minor(c.amount, c.cur))
	amount := fromMinor(1+r.rng.Int64N(most), d.cur)
	res := r.resolution()
	res.Postings = []ledger.Posting{
		{Account: d.acct, Side: d.side, Amount: amount, Currency: d.cur},
		{Account: c.acct, Side: c.side, Amount: amount, Currency: c.cur},
	}
	lines := releases(p)
	lines = append(lines, linesOf(res.Postings, ledger.PhasePosted)...)
	r.resolve("commit-partial", ledger.KindCommit, i, res, lines)
}

func (r *propRun) void() {
	i := r.pickEntry(openPending)
	if i < 0 {
		return
	}
	r.resolve("void", ledger.KindVoid, i, r.resolution(), releases(r.m.entries[i]))
}

func reversible(e *mentry) bool {
	return (e.kind == ledger.KindStandard || e.kind == ledger.KindCommit) && e.reversedBy < 0
}

func mirror(e *mentry) []mline {
	var out []mline
	for _, l := range e.lines {
		if l.phase == ledger.PhasePosted {
			l.side = l.side.Opposite()
			out = append(out, l)
		}
	}
	return out
}

func (r *propRun) reverse() {
	i := r.pickEntry(reversible)
	if i < 0 {
		return
	}
	res := r.resolution()
	res.Postings = nil
	r.resolve("reverse", ledger.KindReversal, i, res, mirror(r.m.entries[i]))
}

// respell writes the same request differently: amounts with extra zeros, metadata
// reformatted, the effective time in another zone. The ledger must see the same content.
func respell(e ledger.NewEntry) ledger.NewEntry {
	out := e
	out.Postings = make([]ledger.Posting, len(e.Postings))
	for i, p := range e.Postings {
		p.Amount = decimal.RequireFromString(p.Amount.StringFixed(-p.Amount.Exponent() + 2))
		out.Postings[i] = p
	}
	if len(e.Metadata) > 0 {
		var v map[string]any
		if json.Unmarshal(e.Metadata, &v) == nil {
			b, _ := json.MarshalIndent(v, "", "   ")
			out.Metadata = b
		}
	}
	if e.EffectiveAt != nil {
		t := e.EffectiveAt.In(time.FixedZone("X", -7*3600))
		out.EffectiveAt = &t
	}
	return out
}

func (r *propRun) replay() {
	if len(r.m.requests) == 0 {
		return
	}
	pr := r.m.requests[r.rng.IntN(len(r.m.requests))]
	req := pr.req
	if r.rng.IntN(2) == 0 {
		req = respell(req)
	}
	orig := r.m.entries[pr.entry]
	got, err := r.submit(pr.kind, req)
	require.NoError(r.t, err, "%s: replay of %q", r.where(), req.IdempotencyKey)
	require.True(r.t, got.Replayed, "%s: replay of %q posted again", r.where(), req.IdempotencyKey)
	require.Equal(r.t, orig.id, got.ID)
	require.Equal(r.t, orig.seq, got.Seq)
	require.Equal(r.t, orig.kind, got.Kind)
	r.requireLines("replay", orig.lines, got.Lines)
	r.stats["ok:replay"]++
}

func (r *propRun) conflict() {
	if len(r.m.requests) == 0 {
		return
	}
	pr := r.m.requests[r.rng.IntN(len(r.m.requests))]
	req := pr.req
	req.Postings = append([]ledger.Posting(nil), req.Postings...)
	kind := pr.kind
	switch r.rng.IntN(4) {
	case 0:
		req.Description += "!"
	case 1: // every amount doubled: still balanced, different content
		for i := range req.Postings {
			req.Postings[i].Amount = req.Postings[i].Amount.Mul(decimal.NewFromInt(2))
		}
	case 2:
		if kind == ledger.KindPending {
			kind = ledger.KindStandard
		} else {
			kind = ledger.KindPending
		}
	case 3:
		req.Metadata = json.RawMessage(`{"changed":true}`)
	}
	_, err := r.submit(kind, req)
	r.requireOneOf(err, []error{ledger.ErrIdempotencyConflict}, "conflicting reuse of "+req.IdempotencyKey)
}

func (r *propRun) overdraft() {
	cur := r.pickCurrency()
	a := r.pickAcct(r.open(cur, func(a *macct) bool { return a.noOD }))
	other := r.pickAcct(r.open(cur, func(a *macct) bool { return !a.noOD }))
	if a == nil || other == nil {
		return
	}
	_, _, avail := a.bal.figures(a.typ)
	amount := avail.Add(fromMinor(1+r.rng.Int64N(1000), cur))
	if amount.GreaterThanOrEqual(ledger.MaxAmount) {
		return
	}
	out := normalSide(a.typ).Opposite()
	e := ledger.NewEntry{IdempotencyKey: r.newKey(), Description: "overdraft", Postings: []ledger.Posting{
		{Account: a.code, Side: out, Amount: amount, Currency: cur},
		{Account: other.code, Side: out.Opposite(), Amount: amount, Currency: cur},
	}}
	kind := ledger.KindStandard
	if r.rng.IntN(3) == 0 {
		kind = ledger.KindPending
	}
	require.Contains(r.t, r.m.simulate(linesOf(e.Postings, ledger.PhasePosted)), ledger.ErrInsufficientFunds)
	_, _ = r.post("overdraft", kind, e)
}

// dip moves more than a no_overdraft account holds out of it and back in within one entry:
// fine when the entry leaves it whole, refused when it leaves it short.
func (r *propRun) dip() {
	cur := r.pickCurrency()
	a := r.pickAcct(r.open(cur, func(a *macct) bool { return a.noOD }))
	others := r.open(cur, func(a *macct) bool { return !a.noOD })
	if a == nil || len(others) == 0 {
		return
	}
	_, _, avail := a.bal.figures(a.typ)
	out := fromMinor(minor(avail, cur)+1+r.rng.Int64N(1000), cur)
	back := out
	if r.rng.IntN(3) == 0 {
		back = out.Sub(avail).Sub(fromMinor(1+r.rng.Int64N(5), cur)) // leaves it short
		if !back.IsPositive() {
			back = fromMinor(1, cur)
		}
	}
	side := normalSide(a.typ).Opposite()
	outPair := []ledger.Posting{
		{Account: a.code, Side: side, Amount: out, Currency: cur},
		{Account: r.pickAcct(others).code, Side: side.Opposite(), Amount: out, Currency: cur},
	}
	backPair := []ledger.Posting{
		{Account: r.pickAcct(others).code, Side: side, Amount: back, Currency: cur},
		{Account: a.code, Side: side.Opposite(), Amount: back, Currency: cur},
	}
	ps := append(outPair, backPair...)
	if r.rng.IntN(2) == 0 {
		ps = append(backPair, outPair...)
	}
	e := ledger.NewEntry{IdempotencyKey: r.newKey(), Description: fmt.Sprintf("dip %d", r.op), Postings: ps}
	kind := ledger.KindStandard
	if r.rng.IntN(4) == 0 {
		kind = ledger.KindPending
	}
	_, _ = r.post("dip", kind, e)
}

func (r *propRun) unbalanced() {
	e, ok := r.twoPostingEntry(false)
	if !ok {
		return
	}
	p := &e.Postings[r.rng.IntN(2)]
	p.Amount = p.Amount.Add(fromMinor(1+r.rng.Int64N(100), p.Currency))
	_, err := r.b.ledger.Post(r.ctx, e)
	r.requireOneOf(err, []error{ledger.ErrUnbalanced}, "unbalanced entry")
	r.failed = append(r.failed, e.IdempotencyKey)
}

func (r *propRun) closedAccounts() []*macct {
	var out []*macct
	for _, c := range r.m.codes {
		if a := r.m.accts[c]; a.closed {
			out = append(out, a)
		}
	}
	return out
}

func (r *propRun) postToClosed() {
	a := r.pickAcct(r.closedAccounts())
	if a == nil {
		return
	}
	other := r.pickAcct(r.open(a.cur, func(a *macct) bool { return !a.noOD }))
	if other == nil {
		return
	}
	amount := fromMinor(r.randMinor(), a.cur)
	side := ledger.Debit
	if r.rng.IntN(2) == 0 {
		side = ledger.Credit
	}
	e := ledger.NewEntry{IdempotencyKey: r.newKey(), Description: "to a closed account", Postings: []ledger.Posting{
		{Account: a.code, Side: side, Amount: amount, Currency: a.cur},
		{Account: other.code, Side: side.Opposite(), Amount: amount, Currency: a.cur},
	}}
	kind := ledger.KindStandard
	if r.rng.IntN(3) == 0 {
		kind = ledger.KindPending
	}
	_, _ = r.post("closed-account", kind, e)
}

func (r *propRun) closeAccount(a *macct) {
	r.t.Helper()
	got, err := r.b.ledger.CloseAccount(r.ctx, a.code)
	switch {
	case a.closed:
		r.requireOneOf(err, []error{ledger.ErrAccountClosed}, "closing closed "+a.code)
	case !a.bal.pd.Equal(a.bal.pc) || !a.bal.hd.IsZero() || !a.bal.hc.IsZero():
		r.requireOneOf(err, []error{ledger.ErrAccountNotEmpty}, "closing non-empty "+a.code)
	default:
		require.NoError(r.t, err, "%s: close %s", r.where(), a.code)
		require.NotNil(r.t, got.ClosedAt)
		a.closed = true
		r.stats["ok:close"]++
	}
}

func (r *propRun) drainAndClose() {
	a := r.pickAcct(r.openTemp())
	if a == nil {
		return
	}
	if a.bal.hd.IsZero() && a.bal.hc.IsZero() {
		posted, _, _ := a.bal.figures(a.typ)
		if !posted.IsZero() {
			sink := r.pickAcct(r.open(a.cur, func(s *macct) bool { return !s.noOD && !s.temp }))
			side := normalSide(a.typ).Opposite() // takes a positive balance out
			if posted.IsNegative() {
				side = side.Opposite()
			}
			e := ledger.NewEntry{IdempotencyKey: r.newKey(), Description: "drain " + a.code, Postings: []ledger.Posting{
				{Account: a.code, Side: side, Amount: posted.Abs(), Currency: a.cur},
				{Account: sink.code, Side: side.Opposite(), Amount: posted.Abs(), Currency: a.cur},
			}}
			_, err := r.post("transfer", ledger.KindStandard, e)
			require.NoError(r.t, err, "%s: drain %s", r.where(), a.code)
		}
	}
	r.closeAccount(a)
}

func (r *propRun) openTemp() []*macct {
	var out []*macct
	for _, c := range r.m.codes {
		if a := r.m.accts[c]; a.temp && !a.closed {
			out = append(out, a)
		}
	}
	return out
}

func (r *propRun) closeRefused() {
	// An account with a balance or holds, or one already closed: both refused.
	var cands []*macct
	for _, c := range r.m.codes {
		a := r.m.accts[c]
		if a.closed || !a.bal.pd.Equal(a.bal.pc) || !a.bal.hd.IsZero() || !a.bal.hc.IsZero() {
			cands = append(cands, a)
		}
	}
	if a := r.pickAcct(cands); a != nil {
		r.closeAccount(a)
	}
}

func (r *propRun) resolveAgain() {
	i := r.pickEntry(func(e *mentry) bool { return e.kind == ledger.KindPending && e.resolvedBy >= 0 })
	if i < 0 {
		return
	}
	kind := ledger.KindCommit
	if r.rng.IntN(2) == 0 {
		kind = ledger.KindVoid
	}
	res := ledger.Resolution{}
	if r.rng.IntN(2) == 0 {
		res.IdempotencyKey = r.newKey() // a fresh key reaches the database, which refuses too
	}
	_, err := r.call(kind, r.m.entries[i].id, res)
	r.requireOneOf(err, []error{ledger.ErrAlreadyResolved}, fmt.Sprintf("%s of resolved entry %d", kind, r.m.entries[i].seq))
	if res.IdempotencyKey != "" {
		r.failed = append(r.failed, res.IdempotencyKey)
	}
}

func (r *propRun) reverseAgain() {
	i := r.pickEntry(func(e *mentry) bool { return e.reversedBy >= 0 })
	if i < 0 {
		return
	}
	res := ledger.Resolution{}
	if r.rng.IntN(2) == 0 {
		res.IdempotencyKey = r.newKey()
	}
	_, err := r.b.ledger.Reverse(r.ctx, r.m.entries[i].id, res)
	r.requireOneOf(err, []error{ledger.ErrAlreadyReversed}, fmt.Sprintf("reversal of reversed entry %d", r.m.entries[i].seq))
	if res.IdempotencyKey != "" {
		r.failed = append(r.failed, res.IdempotencyKey)
	}
}

func (r *propRun) wrongKind() {
	switch r.rng.IntN(3) {
	case 0: // commit or void what is not pending
		i := r.pickEntry(func(e *mentry) bool { return e.kind != ledger.KindPending })
		if i < 0 {
			return
		}
		kind := ledger.KindCommit
		if r.rng.IntN(2) == 0 {
			kind = ledger.KindVoid
		}
		_, err := r.call(kind, r.m.entries[i].id, ledger.Resolution{})
		r.requireOneOf(err, []error{ledger.ErrNotPending}, fmt.Sprintf("%s of a %s entry", kind, r.m.entries[i].kind))
	case 1: // reverse what is not posted money
		i := r.pickEntry(func(e *mentry) bool {
			return e.kind == ledger.KindPending || e.kind == ledger.KindVoid || e.kind == ledger.KindReversal
		})
		if i < 0 {
			return
		}
		_, err := r.b.ledger.Reverse(r.ctx, r.m.entries[i].id, ledger.Resolution{})
		r.requireOneOf(err, []error{ledger.ErrNotReversible}, fmt.Sprintf("reversal of a %s entry", r.m.entries[i].kind))
	default:
		kind := []ledger.Kind{ledger.KindCommit, ledger.KindVoid, ledger.KindReversal}[r.rng.IntN(3)]
		_, err := r.call(kind, uuid.New(), ledger.Resolution{})
		r.requireOneOf(err, []error{ledger.ErrEntryNotFound}, string(kind)+" of an unknown entry")
	}
}

func (r *propRun) resolutionReplay() {
	if len(r.m.resolutions) == 0 {
		return
	}
	pr := r.m.resolutions[r.rng.IntN(len(r.m.resolutions))]
	orig := r.m.entries[pr.entry]
	tgt := r.m.entries[pr.target]
	if r.rng.IntN(4) == 0 {
		res := pr.res
		res.Description += " (changed)"
		_, err := r.call(pr.kind, tgt.id, res)
		r.requireOneOf(err, []error{ledger.ErrIdempotencyConflict}, "resolution key reused with different content")
		return
	}
	got, err := r.call(pr.kind, tgt.id, pr.res)
	require.NoError(r.t, err, "%s: retry of %s %q", r.where(), pr.kind, pr.res.IdempotencyKey)
	require.True(r.t, got.Replayed, "%s: retry of %s %q posted again", r.where(), pr.kind, pr.res.IdempotencyKey)
	require.Equal(r.t, orig.id, got.ID)
	require.Equal(r.t, orig.seq, got.Seq)
	r.requireLines("resolution replay", orig.lines, got.Lines)
	r.stats["ok:resolution-replay"]++
}

func (r *propRun) badRequest() {
	e, ok := r.twoPostingEntry(false)
	if !ok {
		return
	}
	cur := e.Postings[0].Currency
	switch r.rng.IntN(8) {
	case 0:
		e.Postings[r.rng.IntN(2)].Account = fmt.Sprintf("nobody/%d", r.op)
		_, _ = r.post("unknown-account", ledger.KindStandard, e) // the model answers ErrAccountNotFound
		return
	case 1: // both postings in a currency the accounts are not held in
		// A currency with at least as many places, so the amount itself stays valid.
		other := map[string]string{"USD": "KWD", "JPY": "USD", "KWD": "BHD"}[cur]
		for i := range e.Postings {
			e.Postings[i].Currency = other
		}
		_, _ = r.post("currency-mismatch", ledger.KindStandard, e)
		return
	case 2: // a fraction of a yen, or a tenth of a fils
		for i := range e.Postings {
			e.Postings[i].Amount = e.Postings[i].Amount.Add(decimal.New(5, -exponent(cur)-1))
		}
		_, err := r.b.ledger.Post(r.ctx, e)
		r.requireOneOf(err, []error{ledger.ErrInvalidAmount}, "too precise amount")
	case 3:
		for i := range e.Postings {
			e.Postings[i].Currency = "XXX"
		}
		_, err := r.b.ledger.PostPending(r.ctx, e)
		r.requireOneOf(err, []error{ledger.ErrUnknownCurrency}, "unknown currency")
	case 4:
		e.IdempotencyKey = ""
		_, err := r.b.ledger.Post(r.ctx, e)
		r.requireOneOf(err, []error{ledger.ErrInvalid}, "missing idempotency key")
		return
	case 5: // a partial commit of more than was held
		i := r.pickEntry(openPending)
		if i < 0 {
			return
		}
		p := r.m.entries[i]
		res := ledger.Resolution{Postings: make([]ledger.Posting, len(p.lines))}
		for j, h := range p.lines {
			res.Postings[j] = ledger.Posting{Account: h.acct, Side: h.side, Amount: h.amount.Mul(decimal.NewFromInt(2)), Currency: h.cur}
		}
		_, err := r.b.ledger.Commit(r.ctx, p.id, res)
		r.requireOneOf(err, []error{ledger.ErrInvalid}, "commit of more than was held")
		return
	case 6: // a partial commit on an account the pending entry does not hold
		i := r.pickEntry(openPending)
		if i < 0 {
			return
		}
		p := r.m.entries[i]
		h := p.lines[0]
		res := ledger.Resolution{Postings: []ledger.Posting{
			{Account: h.acct, Side: h.side, Amount: h.amount, Currency: h.cur},
			{Account: "nobody/held", Side: h.side.Opposite(), Amount: h.amount, Currency: h.cur},
		}}
		_, err := r.b.ledger.Commit(r.ctx, p.id, res)
		r.requireOneOf(err, []error{ledger.ErrInvalid}, "commit on an account without a hold")
		return
	default: // postings on a void
		i := r.pickEntry(openPending)
		if i < 0 {
			return
		}
		p := r.m.entries[i]
		h := p.lines[0]
		_, err := r.b.ledger.Void(r.ctx, p.id, ledger.Resolution{Postings: []ledger.Posting{
			{Account: h.acct, Side: h.side, Amount: h.amount, Currency: h.cur},
			{Account: h.acct, Side: h.side.Opposite(), Amount: h.amount, Currency: h.cur},
		}})
		r.requireOneOf(err, []error{ledger.ErrInvalid}, "void with postings")
		return
	}
	r.failed = append(r.failed, e.IdempotencyKey)
}

// batch posts several entries with PostBatch: all or none.
func (r *propRun) batch() {
	n := 2 + r.rng.IntN(3)
	var entries []ledger.NewEntry
	var fresh []int // indexes into entries of new (not replayed) entries
	replayOf := map[int]pastRequest{}
	twist := r.rng.IntN(10)
	for i := 0; i < n; i++ {
		if i == 1 && twist == 0 && len(r.m.requests) > 0 {
			pr := r.m.requests[r.rng.IntN(len(r.m.requests))]
			if pr.kind == ledger.KindStandard {
				replayOf[len(entries)] = pr
				entries = append(entries, pr.req)
				continue
			}
		}
		var e ledger.NewEntry
		if r.rng.IntN(3) == 0 {
			ps := r.multiPostings()
			if len(ps) < 2 {
				continue
			}
			e = ledger.NewEntry{IdempotencyKey: r.newKey(), Description: fmt.Sprintf("batch multi %d", r.op), Postings: ps}
		} else {
			var ok bool
			if e, ok = r.twoPostingEntry(false); !ok {
				continue
			}
		}
		fresh = append(fresh, len(entries))
		entries = append(entries, e)
	}
	if len(entries) < 2 {
		return
	}
	if twist == 1 { // two entries sharing a key: refused before the database
		entries[1].IdempotencyKey = entries[0].IdempotencyKey
		_, err := r.b.ledger.PostBatch(r.ctx, entries)
		r.requireOneOf(err, []error{ledger.ErrInvalid}, "batch with a duplicate key")
		return
	}
	if twist == 2 && len(r.m.requests) > 0 && len(fresh) > 0 {
		// A fresh entry reuses a posted entry's key with other content: the whole batch fails.
		pr := r.m.requests[r.rng.IntN(len(r.m.requests))]
		// The entries that do insert may fail first, e.g. overdraw an account.
		e := &entries[fresh[len(fresh)-1]]
		r.failed = append(r.failed, e.IdempotencyKey)
		e.IdempotencyKey = pr.req.IdempotencyKey
		e.Description = "not " + pr.req.Description
		var others [][]mline
		for _, i := range fresh[:len(fresh)-1] {
			others = append(others, linesOf(entries[i].Postings, ledger.PhasePosted))
			r.failed = append(r.failed, entries[i].IdempotencyKey)
		}
		_, err := r.b.ledger.PostBatch(r.ctx, entries)
		r.requireOneOf(err, append(r.m.simulate(others...), ledger.ErrIdempotencyConflict), "batch reusing a key")
		return
	}
	var lines [][]mline
	for _, i := range fresh {
		lines = append(lines, linesOf(entries[i].Postings, ledger.PhasePosted))
	}
	allowed := r.m.simulate(lines...)
	got, err := r.b.ledger.PostBatch(r.ctx, entries)
	if len(allowed) > 0 {
		r.requireOneOf(err, allowed, "batch")
		for _, i := range fresh {
			r.failed = append(r.failed, entries[i].IdempotencyKey)
		}
		return
	}
	require.NoError(r.t, err, "%s: batch", r.where())
	require.Len(r.t, got, len(entries))
	for i, e := range entries {
		if pr, ok := replayOf[i]; ok {
			require.True(r.t, got[i].Replayed, "%s: batch entry %d is a replay", r.where(), i)
			require.Equal(r.t, r.m.entries[pr.entry].id, got[i].ID)
			continue
		}
		idx := r.accept("batch", got[i], ledger.KindStandard, e.IdempotencyKey, e.Description, linesOf(e.Postings, ledger.PhasePosted), -1)
		r.m.requests = append(r.m.requests, pastRequest{kind: ledger.KindStandard, req: e, entry: idx})
	}
}

func (r *propRun) newTempAccount() {
	r.tempN++
	types := []ledger.AccountType{ledger.Asset, ledger.Liability, ledger.Equity, ledger.Revenue, ledger.Expense}
	a := macct{code: fmt.Sprintf("temp/new/%d", r.tempN), typ: types[r.rng.IntN(len(types))], cur: r.pickCurrency(),
		noOD: r.rng.IntN(2) == 0, temp: true}
	r.createAccount(a)
	na := ledger.NewAccount{Code: a.code, Type: a.typ, Currency: a.cur, NoOverdraft: a.noOD}
	got, created, err := r.b.ledger.CreateAccount(r.ctx, na)
	require.NoError(r.t, err)
	require.False(r.t, created, "re-creating %s", a.code)
	require.Equal(r.t, a.code, got.Code)
	na.NoOverdraft = !na.NoOverdraft
	_, _, err = r.b.ledger.CreateAccount(r.ctx, na)
	r.requireOneOf(err, []error{ledger.ErrAccountExists}, "re-creating "+a.code+" with other flags")
}

// ---- verification ----

func (r *propRun) requireDec(what string, want, got decimal.Decimal) {
	r.t.Helper()
	require.True(r.t, want.Equal(got), "%s: %s is %s, the model says %s", r.where(), what, got, want)
}

func (r *propRun) requireBalance(what string, a *macct, want mbal, got ledger.Balance) {
	r.t.Helper()
	require.Equal(r.t, a.code, got.Account, what)
	require.Equal(r.t, a.cur, got.Currency, what)
	r.requireDec(what+" posted debits", want.pd, got.PostedDebits)
	r.requireDec(what+" posted credits", want.pc, got.PostedCredits)
	r.requireDec(what+" pending debits", want.hd, got.PendingDebits)
	r.requireDec(what+" pending credits", want.hc, got.PendingCredits)
	posted, pending, avail := want.figures(a.typ)
	r.requireDec(what+" posted", posted, got.Posted)
	r.requireDec(what+" pending", pending, got.Pending)
	r.requireDec(what+" available", avail, got.Available)
	require.Equal(r.t, want.version, got.Version, "%s: %s version", r.where(), what)
	require.Equal(r.t, want.seq, got.Seq, "%s: %s seq", r.where(), what)
}

func (r *propRun) verify(full bool) {
	r.t.Helper()
	t := r.t
	ctx := r.ctx
	l := r.b.ledger

	// Current balances, and every account listed.
	listed := map[string]ledger.Account{}
	after := ""
	for {
		page, err := l.Accounts(ctx, ledger.AccountFilter{After: after, Limit: 7})
		require.NoError(t, err)
		for _, a := range page {
			listed[a.Code] = a
		}
		if len(page) < 7 {
			break
		}
		after = page[len(page)-1].Code
	}
	require.Len(t, listed, len(r.m.codes), "%s: accounts listed", r.where())
	for _, code := range r.m.codes {
		a := r.m.accts[code]
		got, err := l.Balance(ctx, code, ledger.AsOf{})
		require.NoError(t, err)
		r.requireBalance("balance of "+code, a, a.bal, got)
		la, ok := listed[code]
		require.True(t, ok, code)
		r.requireBalance("listed balance of "+code, a, a.bal, la.Balance)
		require.Equal(t, a.closed, la.ClosedAt != nil, "%s: %s closed", r.where(), code)
		require.Equal(t, a.typ, la.Type)
		require.Equal(t, a.noOD, la.NoOverdraft)
	}

	// The raw postings add up to the model, account by account.
	rows, err := r.b.pool.Query(ctx, `SELECT a.code,
			coalesce(sum(p.amount) FILTER (WHERE p.phase = 'posted' AND p.side = 'debit'), 0)::text,
			coalesce(sum(p.amount) FILTER (WHERE p.phase = 'posted' AND p.side = 'credit'), 0)::text,
			coalesce(sum(CASE p.phase WHEN 'hold' THEN p.amount WHEN 'release' THEN -p.amount END) FILTER (WHERE p.side = 'debit'), 0)::text,
			coalesce(sum(CASE p.phase WHEN 'hold' THEN p.amount WHEN 'release' THEN -p.amount END) FILTER (WHERE p.side = 'credit'), 0)::text,
			count(p.entry_id), coalesce(max(p.seq), 0)
		FROM ledger_accounts a LEFT JOIN ledger_postings p ON p.account_id = a.id
		GROUP BY a.code`)
	require.NoError(t, err)
	seen := 0
	for rows.Next() {
		var code, pd, pc, hd, hc string
		var n, maxSeq int64
		require.NoError(t, rows.Scan(&code, &pd, &pc, &hd, &hc, &n, &maxSeq))
		a, ok := r.m.accts[code]
		require.True(t, ok, "account %s is not in the model", code)
		what := "sum of the postings of " + code
		r.requireDec(what+": posted debits", a.bal.pd, decimal.RequireFromString(pd))
		r.requireDec(what+": posted credits", a.bal.pc, decimal.RequireFromString(pc))
		r.requireDec(what+": pending debits", a.bal.hd, decimal.RequireFromString(hd))
		r.requireDec(what+": pending credits", a.bal.hc, decimal.RequireFromString(hc))
		require.Equal(t, a.bal.version, n, "%s: %s: count", r.where(), what)
		require.Equal(t, a.bal.seq, maxSeq, "%s: %s: last seq", r.where(), what)
		seen++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, len(r.m.codes), seen)

	// Trial balance: zero per currency, and each account's column.
	tb, err := l.TrialBalance(ctx)
	require.NoError(t, err)
	require.Equal(t, r.m.lastSeq(), tb.AsOfSeq, "%s: trial balance as of", r.where())
	type totals struct{ d, c, hd, hc decimal.Decimal }
	want := map[string]*totals{}
	wantLines := map[string]decimal.Decimal{} // account -> net debit
	for _, code := range r.m.codes {
		a := r.m.accts[code]
		tt := want[a.cur]
		if tt == nil {
			tt = &totals{}
			want[a.cur] = tt
		}
		net := a.bal.pd.Sub(a.bal.pc)
		if net.IsPositive() {
			tt.d = tt.d.Add(net)
		} else {
			tt.c = tt.c.Sub(net)
		}
		tt.hd = tt.hd.Add(a.bal.hd)
		tt.hc = tt.hc.Add(a.bal.hc)
		if !net.IsZero() {
			wantLines[code] = net
		}
	}
	require.Len(t, tb.Totals, len(want))
	for _, tot := range tb.Totals {
		w := want[tot.Currency]
		require.NotNil(t, w, tot.Currency)
		require.True(t, tot.Balanced, "%s: %s does not balance: %+v", r.where(), tot.Currency, tot)
		r.requireDec(tot.Currency+" debits", w.d, tot.Debits)
		r.requireDec(tot.Currency+" credits", w.c, tot.Credits)
		r.requireDec(tot.Currency+" debits = credits", tot.Debits, tot.Credits)
		r.requireDec(tot.Currency+" pending debits", w.hd, tot.PendingDebits)
		r.requireDec(tot.Currency+" pending credits", w.hc, tot.PendingCredits)
		r.requireDec(tot.Currency+" pending debits = pending credits", tot.PendingDebits, tot.PendingCredits)
	}
	require.Len(t, tb.Lines, len(wantLines), "%s: trial balance lines", r.where())
	for _, ln := range tb.Lines {
		net, ok := wantLines[ln.Account]
		require.True(t, ok, "%s: trial balance lists %s", r.where(), ln.Account)
		require.Equal(t, r.m.accts[ln.Account].typ, ln.Type)
		require.Equal(t, r.m.accts[ln.Account].cur, ln.Currency)
		r.requireDec(ln.Account+" trial balance", net, ln.Debit.Sub(ln.Credit))
		require.True(t, ln.Debit.IsZero() || ln.Credit.IsZero(), "%s has both columns", ln.Account)
	}

	disc, err := l.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, disc, "%s: Check", r.where())

	r.verifyAsOf()
	if full {
		for _, code := range r.m.codes {
			r.verifyStatement(code, 1+r.rng.IntN(9))
		}
		r.verifyEntries()
	}
}

// verifyAsOf compares balances as of earlier sequence numbers and times with a replay of
// the model's log.
func (r *propRun) verifyAsOf() {
	t := r.t
	if len(r.m.entries) == 0 {
		return
	}
	var seqs []int64
	for range 6 {
		e := r.m.entries[r.rng.IntN(len(r.m.entries))]
		seqs = append(seqs, e.seq, e.seq-1) // seq-1: the entry before, or a gap left by a refused one
	}
	seqs = append(seqs, 1, r.m.lastSeq())
	for _, n := range seqs {
		if n <= 0 {
			continue
		}
		want := r.m.replay(func(e *mentry) bool { return e.seq <= n })
		for _, code := range r.m.codes {
			got, err := r.b.ledger.Balance(r.ctx, code, ledger.AsOf{Seq: n})
			require.NoError(t, err)
			r.requireBalance(fmt.Sprintf("balance of %s as of seq %d", code, n), r.m.accts[code], want[code], got)
		}
	}
	times := []time.Time{r.firstAt.Add(-time.Microsecond)}
	for range 3 {
		times = append(times, r.m.entries[r.rng.IntN(len(r.m.entries))].postedAt)
	}
	for _, at := range times {
		want := r.m.replay(func(e *mentry) bool { return !e.postedAt.After(at) })
		for _, code := range r.m.codes {
			got, err := r.b.ledger.Balance(r.ctx, code, ledger.AsOf{Time: at})
			require.NoError(t, err)
			r.requireBalance(fmt.Sprintf("balance of %s as of %s", code, at.Format(time.RFC3339Nano)), r.m.accts[code], want[code], got)
		}
	}
	_, err := r.b.ledger.Balance(r.ctx, r.m.codes[0], ledger.AsOf{Seq: 1, Time: r.firstAt})
	require.ErrorIs(t, err, ledger.ErrInvalid)
	// A point not yet reached could still change: refused rather than answered.
	_, err = r.b.ledger.Balance(r.ctx, r.m.codes[0], ledger.AsOf{Seq: r.m.lastSeq() + 1000})
	require.ErrorIs(t, err, ledger.ErrInvalid)
	_, err = r.b.ledger.Balance(r.ctx, r.m.codes[0], ledger.AsOf{Time: time.Now().Add(time.Hour)})
	require.ErrorIs(t, err, ledger.ErrInvalid)
	_, err = r.b.ledger.Balance(r.ctx, r.m.codes[0], ledger.AsOf{Seq: -1})
	require.ErrorIs(t, err, ledger.ErrInvalid)
}

// verifyStatement pages through an account's statement limit lines at a time.
func (r *propRun) verifyStatement(code string, limit int) {
	t := r.t
	a := r.m.accts[code]
	want := r.m.history(code)
	var got []ledger.StatementLine
	after := ""
	for pages := 0; ; pages++ {
		require.LessOrEqual(t, pages, len(want)/limit+1, "%s: statement of %s does not end", r.where(), code)
		st, err := r.b.ledger.Statement(r.ctx, code, ledger.StatementFilter{After: after, Limit: limit})
		require.NoError(t, err)
		require.Equal(t, code, st.Account.Code)
		require.LessOrEqual(t, len(st.Lines), limit)
		got = append(got, st.Lines...)
		if st.Next == "" {
			break
		}
		require.Len(t, st.Lines, limit, "%s: a page with a next cursor is full", r.where())
		after = st.Next
	}
	require.Len(t, got, len(want), "%s: statement of %s with limit %d", r.where(), code, limit)
	for i, w := range want {
		g := got[i]
		what := fmt.Sprintf("statement of %s line %d (limit %d)", code, i+1, limit)
		require.Equal(t, int64(i+1), g.Version, "%s: %s", r.where(), what)
		require.Equal(t, w.entry.id, g.EntryID, "%s: %s", r.where(), what)
		require.Equal(t, w.entry.seq, g.Seq, "%s: %s", r.where(), what)
		require.Equal(t, w.entry.kind, g.Kind, "%s: %s", r.where(), what)
		require.Equal(t, w.entry.desc, g.Description, "%s: %s", r.where(), what)
		require.True(t, w.entry.postedAt.Equal(g.PostedAt), "%s: %s posted at", r.where(), what)
		require.Equal(t, w.lineNo, g.Posting.Line, "%s: %s", r.where(), what)
		require.Equal(t, code, g.Posting.Account)
		require.Equal(t, w.line.phase, g.Posting.Phase, "%s: %s", r.where(), what)
		require.Equal(t, w.line.side, g.Posting.Side, "%s: %s", r.where(), what)
		require.Equal(t, w.line.cur, g.Posting.Currency, "%s: %s", r.where(), what)
		r.requireDec(what+" amount", w.line.amount, g.Posting.Amount)
		r.requireBalance(what, a, w.after, g.Balance)
	}
}

// verifyEntries pages through the whole entry log.
func (r *propRun) verifyEntries() {
	t := r.t
	limit := 1 + r.rng.IntN(60)
	var got []ledger.Entry
	var after int64
	for {
		page, err := r.b.ledger.Entries(r.ctx, ledger.EntryFilter{AfterSeq: after, Limit: limit})
		require.NoError(t, err)
		got = append(got, page...)
		if len(page) < limit {
			break
		}
		after = page[len(page)-1].Seq
	}
	require.Len(t, got, len(r.m.entries), "%s: entries", r.where())
	ref := func(i int) *uuid.UUID {
		if i < 0 {
			return nil
		}
		return &r.m.entries[i].id
	}
	for i, w := range r.m.entries {
		g := got[i]
		what := fmt.Sprintf("entry %d (seq %d)", i, w.seq)
		require.Equal(t, w.id, g.ID, "%s: %s", r.where(), what)
		require.Equal(t, w.seq, g.Seq, "%s: %s", r.where(), what)
		require.Equal(t, w.kind, g.Kind, "%s: %s", r.where(), what)
		require.Equal(t, w.key, g.IdempotencyKey, "%s: %s", r.where(), what)
		require.Equal(t, w.desc, g.Description, "%s: %s", r.where(), what)
		require.Equal(t, ref(w.target), g.TargetID, "%s: %s target", r.where(), what)
		require.Equal(t, ref(w.resolvedBy), g.ResolvedBy, "%s: %s resolved by", r.where(), what)
		require.Equal(t, ref(w.reversedBy), g.ReversedBy, "%s: %s reversed by", r.where(), what)
		r.requireLines(what, w.lines, g.Lines)
	}
}

// ---- concurrent operations ----

type outcome struct {
	entry ledger.Entry
	err   error
}

// together runs fns at once and returns their outcomes in order.
func together(fns ...func() (ledger.Entry, error)) []outcome {
	out := make([]outcome, len(fns))
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i, fn := range fns {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			out[i].entry, out[i].err = fn()
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return out
}

// concurrent posts several entries at once, so that Post and PostPending coalesce them:
// transfers between accounts without no_overdraft (they must all succeed, whatever the
// order), one naming an unknown account (it alone must fail), and retries of one of them
// (exactly one posts, the others replay it).
func (r *propRun) concurrent() {
	type item struct {
		kind    ledger.Kind
		e       ledger.NewEntry
		bad     bool
		retryOf int // index of the item retried, -1 if none
	}
	var items []item
	for range 2 + r.rng.IntN(6) {
		cur := r.pickCurrency()
		accts := r.open(cur, func(a *macct) bool { return !a.noOD })
		if len(accts) < 2 {
			continue
		}
		from, to := accts[r.rng.IntN(len(accts))], accts[r.rng.IntN(len(accts))]
		amount := fromMinor(r.randMinor(), cur)
		kind := ledger.KindStandard
		if r.rng.IntN(3) == 0 {
			kind = ledger.KindPending
		}
		items = append(items, item{kind: kind, retryOf: -1, e: ledger.NewEntry{IdempotencyKey: r.newKey(),
			Description: fmt.Sprintf("concurrent %d", r.op), Postings: []ledger.Posting{
				{Account: from.code, Side: ledger.Debit, Amount: amount, Currency: cur},
				{Account: to.code, Side: ledger.Credit, Amount: amount, Currency: cur},
			}}})
	}
	if len(items) == 0 {
		return
	}
	if r.rng.IntN(2) == 0 {
		bad := items[0]
		bad.e.IdempotencyKey = r.newKey()
		bad.e.Postings = append([]ledger.Posting(nil), bad.e.Postings...)
		bad.e.Postings[1].Account = fmt.Sprintf("nobody/concurrent/%d", r.op)
		bad.bad = true
		items = append(items, bad)
	}
	for range r.rng.IntN(3) {
		i := r.rng.IntN(len(items))
		if items[i].bad || items[i].retryOf >= 0 {
			continue
		}
		retry := items[i]
		retry.retryOf = i
		items = append(items, retry)
	}
	fns := make([]func() (ledger.Entry, error), len(items))
	for i, it := range items {
		fns[i] = func() (ledger.Entry, error) { return r.submit(it.kind, it.e) }
	}
	out := together(fns...)

	// Group each item with its retries: exactly one of a group posts.
	groups := map[int][]int{}
	for i, it := range items {
		root := i
		if it.retryOf >= 0 {
			root = it.retryOf
		}
		groups[root] = append(groups[root], i)
	}
	type posted struct {
		it    item
		entry ledger.Entry
	}
	var news []posted
	for root, members := range groups {
		if items[root].bad {
			r.requireOneOf(out[root].err, []error{ledger.ErrAccountNotFound}, "concurrent entry naming an unknown account")
			continue
		}
		var first *ledger.Entry
		for _, i := range members {
			require.NoError(r.t, out[i].err, "%s: concurrent %s %q", r.where(), items[i].kind, items[i].e.IdempotencyKey)
			if !out[i].entry.Replayed {
				require.Nil(r.t, first, "%s: %q posted twice", r.where(), items[i].e.IdempotencyKey)
				first = &out[i].entry
			}
		}
		require.NotNil(r.t, first, "%s: %q only replayed, never posted", r.where(), items[root].e.IdempotencyKey)
		for _, i := range members {
			require.Equal(r.t, first.ID, out[i].entry.ID, "%s: retries of %q", r.where(), items[i].e.IdempotencyKey)
		}
		news = append(news, posted{it: items[root], entry: *first})
	}
	sort.Slice(news, func(i, j int) bool { return news[i].entry.Seq < news[j].entry.Seq })
	for _, p := range news {
		phase := ledger.PhasePosted
		if p.it.kind == ledger.KindPending {
			phase = ledger.PhaseHold
		}
		idx := r.accept("concurrent", p.entry, p.it.kind, p.it.e.IdempotencyKey, p.it.e.Description, linesOf(p.it.e.Postings, phase), -1)
		r.m.requests = append(r.m.requests, pastRequest{kind: p.it.kind, req: p.it.e, entry: idx})
	}
}

// raceResolve commits and voids (or commits twice) one pending entry at once: exactly one
// call wins, the other is told the entry is already resolved.
func (r *propRun) raceResolve() {
	i := r.pickEntry(openPending)
	if i < 0 {
		return
	}
	p := r.m.entries[i]
	kinds := []ledger.Kind{ledger.KindCommit, ledger.KindVoid}
	if r.rng.IntN(3) == 0 {
		kinds[1] = ledger.KindCommit
	}
	res := []ledger.Resolution{r.resolution(), r.resolution()}
	res[0].Postings, res[1].Postings = nil, nil
	if res[0].IdempotencyKey != "" && res[0].IdempotencyKey == res[1].IdempotencyKey {
		res[1].IdempotencyKey = ""
	}
	out := together(
		func() (ledger.Entry, error) { return r.call(kinds[0], p.id, res[0]) },
		func() (ledger.Entry, error) { return r.call(kinds[1], p.id, res[1]) },
	)
	winners := 0
	for k, o := range out {
		if o.err != nil {
			r.requireOneOf(o.err, []error{ledger.ErrAlreadyResolved}, fmt.Sprintf("racing %s of entry %d", kinds[k], p.seq))
			if res[k].IdempotencyKey != "" {
				r.failed = append(r.failed, res[k].IdempotencyKey)
			}
			continue
		}
		winners++
		lines := releases(p)
		if kinds[k] == ledger.KindCommit {
			for _, h := range p.lines {
				lines = append(lines, mline{acct: h.acct, phase: ledger.PhasePosted, side: h.side, amount: h.amount, cur: h.cur})
			}
		}
		idx := r.accept("race-resolve", o.entry, kinds[k], res[k].IdempotencyKey, res[k].Description, lines, i)
		p.resolvedBy = idx
		if res[k].IdempotencyKey != "" {
			r.m.resolutions = append(r.m.resolutions, pastResolution{kind: kinds[k], target: i, res: res[k], entry: idx})
		}
	}
	require.Equal(r.t, 1, winners, "%s: racing resolutions of entry %d", r.where(), p.seq)
}

// raceReverse reverses one entry twice at once: at most one reversal is posted.
func (r *propRun) raceReverse() {
	i := r.pickEntry(reversible)
	if i < 0 {
		return
	}
	e := r.m.entries[i]
	lines := mirror(e)
	allowed := r.m.simulate(lines)
	out := together(
		func() (ledger.Entry, error) { return r.b.ledger.Reverse(r.ctx, e.id, ledger.Resolution{}) },
		func() (ledger.Entry, error) { return r.b.ledger.Reverse(r.ctx, e.id, ledger.Resolution{}) },
	)
	if len(allowed) > 0 {
		for _, o := range out {
			r.requireOneOf(o.err, allowed, fmt.Sprintf("racing reversals of entry %d", e.seq))
		}
		return
	}
	winners := 0
	for _, o := range out {
		if o.err != nil {
			r.requireOneOf(o.err, []error{ledger.ErrAlreadyReversed}, fmt.Sprintf("racing reversal of entry %d", e.seq))
			continue
		}
		winners++
		e.reversedBy = r.accept("race-reverse", o.entry, ledger.KindReversal, "", "", lines, i)
	}
	require.Equal(r.t, 1, winners, "%s: racing reversals of entry %d", r.where(), e.seq)
}
