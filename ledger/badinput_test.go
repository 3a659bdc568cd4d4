package ledger_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

// dbSnapshotSQL fingerprints every row a refused request must leave alone: the count and an
// md5 of the full text of every row of the ledger tables (and of the currency list, which
// the attack test also tries to change).
const dbSnapshotSQL = `SELECT concat_ws(' | ',
	'entries ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(e::text, ',' ORDER BY e.seq)), '-') FROM ledger_entries e),
	'postings ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(p::text, ',' ORDER BY p.entry_id, p.line)), '-') FROM ledger_postings p),
	'accounts ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(a::text, ',' ORDER BY a.id)), '-') FROM ledger_accounts a),
	'currencies ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(c::text, ',' ORDER BY c.code)), '-') FROM ledger_currencies c))`

// dbSnapshot is what dbSnapshotSQL returns for b's database.
func (b *testBundle) dbSnapshot(t testing.TB) string {
	t.Helper()
	var s string
	require.NoError(t, b.pool.QueryRow(b.ctx, dbSnapshotSQL).Scan(&s))
	return s
}

// mkPosting builds a posting.
func mkPosting(account string, side ledger.Side, amount, currency string) ledger.Posting {
	return ledger.Posting{Account: account, Side: side, Amount: amt(amount), Currency: currency}
}

// badFixture is a small ledger holding every state the bad-input cases need:
//
//	program/p/fund      equity USD no_overdraft, 100.00 available, no holds
//	program/h/fund      equity USD no_overdraft, 100.00 posted, 60.00 on hold (hold-h) -> 40.00 available
//	participant/h/wallet                    0.00 posted, 60.00 pending credit (cannot be closed)
//	program/q/fund      equity USD no_overdraft, 100.00 funded, 30.00 awarded to participant/x/wallet (award-1)
//	participant/x/wallet liability USD no_overdraft: payout-c committed (10.00), payout-v voided (5.00),
//	                    payout-open pending (20.00)
//	fix-1               standard entry org/cash/stripe -> program/q/fund 3.00, reversed once
//	closed/wallet       a closed USD liability
//	org/cash/eur, program/p/eur (EUR), org/cash/jpy, program/p/jpy (JPY)
type badFixture struct {
	donor, award, fix, fixReversal       uuid.UUID
	committed, commitEntry, voided, void uuid.UUID
	open, holdH                          uuid.UUID
}

func newBadFixture(t testing.TB, b *testBundle) *badFixture {
	t.Helper()
	ctx := b.ctx
	l := b.ledger
	for _, na := range []ledger.NewAccount{
		{Code: "org/cash/stripe", Type: ledger.Asset, Currency: "USD"},
		{Code: "program/p/fund", Type: ledger.Equity, Currency: "USD", NoOverdraft: true},
		{Code: "program/h/fund", Type: ledger.Equity, Currency: "USD", NoOverdraft: true},
		{Code: "program/q/fund", Type: ledger.Equity, Currency: "USD", NoOverdraft: true},
		{Code: "participant/x/wallet", Type: ledger.Liability, Currency: "USD", NoOverdraft: true},
		{Code: "participant/h/wallet", Type: ledger.Liability, Currency: "USD", NoOverdraft: true},
		{Code: "closed/wallet", Type: ledger.Liability, Currency: "USD", NoOverdraft: true},
		{Code: "org/cash/eur", Type: ledger.Asset, Currency: "EUR"},
		{Code: "program/p/eur", Type: ledger.Equity, Currency: "EUR"},
		{Code: "org/cash/jpy", Type: ledger.Asset, Currency: "JPY"},
		{Code: "program/p/jpy", Type: ledger.Equity, Currency: "JPY"},
	} {
		_, created, err := l.CreateAccount(ctx, na)
		require.NoError(t, err)
		require.True(t, created)
	}
	_, err := l.CloseAccount(ctx, "closed/wallet")
	require.NoError(t, err)

	f := &badFixture{}
	post := func(e ledger.NewEntry) uuid.UUID {
		t.Helper()
		got, err := l.Post(ctx, e)
		require.NoError(t, err)
		return got.ID
	}
	pending := func(e ledger.NewEntry) uuid.UUID {
		t.Helper()
		got, err := l.PostPending(ctx, e)
		require.NoError(t, err)
		return got.ID
	}
	donor := transfer("donor-1", "org/cash/stripe", "program/p/fund", "100.00")
	donor.Metadata = json.RawMessage(`{"source":"stripe","ref":"ch_1"}`)
	f.donor = post(donor)
	post(transfer("donor-h", "org/cash/stripe", "program/h/fund", "100.00"))
	f.holdH = pending(transfer("hold-h", "program/h/fund", "participant/h/wallet", "60.00"))
	post(transfer("donor-q", "org/cash/stripe", "program/q/fund", "100.00"))
	f.award = post(transfer("award-1", "program/q/fund", "participant/x/wallet", "30.00"))

	f.committed = pending(transfer("payout-c", "participant/x/wallet", "org/cash/stripe", "10.00"))
	c, err := l.Commit(ctx, f.committed, ledger.Resolution{IdempotencyKey: "commit-c"})
	require.NoError(t, err)
	f.commitEntry = c.ID
	f.voided = pending(transfer("payout-v", "participant/x/wallet", "org/cash/stripe", "5.00"))
	v, err := l.Void(ctx, f.voided, ledger.Resolution{IdempotencyKey: "void-v"})
	require.NoError(t, err)
	f.void = v.ID
	f.open = pending(transfer("payout-open", "participant/x/wallet", "org/cash/stripe", "20.00"))

	f.fix = post(transfer("fix-1", "org/cash/stripe", "program/q/fund", "3.00"))
	r, err := l.Reverse(ctx, f.fix, ledger.Resolution{IdempotencyKey: "fix-1-rev"})
	require.NoError(t, err)
	f.fixReversal = r.ID

	// The fixture is what the cases assume.
	for code, want := range map[string][3]string{ // posted, pending, available
		"program/p/fund":       {"100", "0", "100"},
		"program/h/fund":       {"100", "-60", "40"},
		"participant/h/wallet": {"0", "60", "0"},
		"program/q/fund":       {"70", "0", "70"},
		"participant/x/wallet": {"20", "-20", "0"},
	} {
		bal := b.balance(t, code)
		require.Equal(t, want[0], bal.Posted.String(), code)
		require.Equal(t, want[1], bal.Pending.String(), code)
		require.Equal(t, want[2], bal.Available.String(), code)
	}
	return f
}

// TestBadInput runs every kind of bad request against a ledger in a known state and requires
// the specific error and an unchanged database.
func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newBadFixture(t, b)
	ctx, l := b.ctx, b.ledger

	entry := func(key string, ps ...ledger.Posting) ledger.NewEntry {
		return ledger.NewEntry{IdempotencyKey: key, Description: key, Postings: ps}
	}
	post := func(e ledger.NewEntry) func() error {
		return func() error { _, err := l.Post(ctx, e); return err }
	}
	pending := func(e ledger.NewEntry) func() error {
		return func() error { _, err := l.PostPending(ctx, e); return err }
	}
	postTx := func(e ledger.NewEntry) func() error {
		return func() error {
			return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { _, err := l.PostTx(ctx, tx, e); return err })
		}
	}
	commit := func(id uuid.UUID, res ledger.Resolution) func() error {
		return func() error { _, err := l.Commit(ctx, id, res); return err }
	}
	void := func(id uuid.UUID, res ledger.Resolution) func() error {
		return func() error { _, err := l.Void(ctx, id, res); return err }
	}
	reverse := func(id uuid.UUID, res ledger.Resolution) func() error {
		return func() error { _, err := l.Reverse(ctx, id, res); return err }
	}
	closeAcct := func(code string) func() error {
		return func() error { _, err := l.CloseAccount(ctx, code); return err }
	}
	const stripe, fund, wallet = "org/cash/stripe", "program/p/fund", "participant/x/wallet"
	D, C := ledger.Debit, ledger.Credit
	maxPlus := ledger.MaxAmount.Add(decimal.RequireFromString("0.01"))
	withAmount := func(e ledger.NewEntry, d decimal.Decimal) ledger.NewEntry {
		for i := range e.Postings {
			e.Postings[i].Amount = d
		}
		return e
	}
	donorWith := func(mut func(*ledger.NewEntry)) ledger.NewEntry {
		e := transfer("donor-1", stripe, fund, "100.00")
		e.Metadata = json.RawMessage(`{"source":"stripe","ref":"ch_1"}`)
		mut(&e)
		return e
	}
	yesterday := time.Now().Add(-24 * time.Hour)
	openPartial := func(amount string) ledger.Resolution {
		return ledger.Resolution{Postings: []ledger.Posting{mkPosting(wallet, D, amount, "USD"), mkPosting(stripe, C, amount, "USD")}}
	}

	cases := []struct {
		name string
		do   func() error
		want error
	}{
		// shape of the entry
		{"unbalanced", post(entry("k", mkPosting(stripe, D, "2.00", "USD"), mkPosting(fund, C, "1.00", "USD"))), ledger.ErrUnbalanced},
		{"unbalanced pending", pending(entry("k", mkPosting(stripe, D, "2.00", "USD"), mkPosting(fund, C, "1.00", "USD"))), ledger.ErrUnbalanced},
		{"unbalanced three postings", post(entry("k", mkPosting(stripe, D, "2.00", "USD"), mkPosting(fund, C, "1.00", "USD"), mkPosting(wallet, C, "0.99", "USD"))), ledger.ErrUnbalanced},
		{"single posting", post(entry("k", mkPosting(stripe, D, "2.00", "USD"))), ledger.ErrInvalid},
		{"no postings", post(entry("k")), ledger.ErrInvalid},
		{"two debits", post(entry("k", mkPosting(stripe, D, "2.00", "USD"), mkPosting(fund, D, "2.00", "USD"))), ledger.ErrUnbalanced},
		{"bad side", post(entry("k", mkPosting(stripe, "DEBIT", "2.00", "USD"), mkPosting(fund, C, "2.00", "USD"))), ledger.ErrInvalid},
		{"bad account code", post(entry("k", mkPosting("org//stripe", D, "2.00", "USD"), mkPosting(fund, C, "2.00", "USD"))), ledger.ErrInvalid},
		{"no idempotency key", post(entry("", mkPosting(stripe, D, "2.00", "USD"), mkPosting(fund, C, "2.00", "USD"))), ledger.ErrInvalid},
		{"idempotency key too long", post(entry(strings.Repeat("k", ledger.MaxIdempotencyKey+1), mkPosting(stripe, D, "2.00", "USD"), mkPosting(fund, C, "2.00", "USD"))), ledger.ErrInvalid},
		{"metadata not an object", post(ledger.NewEntry{IdempotencyKey: "k", Metadata: json.RawMessage(`[1]`), Postings: []ledger.Posting{mkPosting(stripe, D, "2.00", "USD"), mkPosting(fund, C, "2.00", "USD")}}), ledger.ErrInvalid},
		{"description too long", post(ledger.NewEntry{IdempotencyKey: "k", Description: strings.Repeat("d", ledger.MaxDescription+1), Postings: []ledger.Posting{mkPosting(stripe, D, "2.00", "USD"), mkPosting(fund, C, "2.00", "USD")}}), ledger.ErrInvalid},

		// amounts
		{"zero amount", post(transfer("k", stripe, fund, "0.00")), ledger.ErrInvalidAmount},
		{"negative amount", post(transfer("k", stripe, fund, "-5.00")), ledger.ErrInvalidAmount},
		{"negative amount through PostTx", postTx(transfer("k", stripe, fund, "-5.00")), ledger.ErrInvalidAmount},
		{"too precise USD (3 places)", post(transfer("k", stripe, fund, "1.005")), ledger.ErrInvalidAmount},
		{"too precise USD through PostTx", postTx(transfer("k", stripe, fund, "1.005")), ledger.ErrInvalidAmount},
		{"too precise JPY (1 place)", post(entry("k", mkPosting("org/cash/jpy", D, "1.5", "JPY"), mkPosting("program/p/jpy", C, "1.5", "JPY"))), ledger.ErrInvalidAmount},
		{"too precise BHD (4 places)", post(entry("k", mkPosting(stripe, D, "1.0005", "BHD"), mkPosting(fund, C, "1.0005", "BHD"))), ledger.ErrInvalidAmount},
		{"amount equal to MaxAmount", post(withAmount(transfer("k", stripe, fund, "1"), ledger.MaxAmount)), ledger.ErrInvalidAmount},
		{"amount over MaxAmount", post(withAmount(transfer("k", stripe, fund, "1"), maxPlus)), ledger.ErrInvalidAmount},
		{"pending amount over MaxAmount", pending(withAmount(transfer("k", stripe, fund, "1"), maxPlus)), ledger.ErrInvalidAmount},

		// currencies
		{"unknown currency", post(entry("k", mkPosting(stripe, D, "2.00", "XXX"), mkPosting(fund, C, "2.00", "XXX"))), ledger.ErrUnknownCurrency},
		{"lower-case currency", post(entry("k", mkPosting(stripe, D, "2.00", "usd"), mkPosting(fund, C, "2.00", "usd"))), ledger.ErrUnknownCurrency},
		{"mixed currencies balanced in total only", post(entry("k",
			mkPosting(stripe, D, "10.00", "USD"), mkPosting(fund, C, "5.00", "USD"),
			mkPosting("org/cash/eur", D, "5.00", "EUR"), mkPosting("program/p/eur", C, "10.00", "EUR"))), ledger.ErrUnbalanced},
		{"USD against EUR", post(entry("k", mkPosting(stripe, D, "10.00", "USD"), mkPosting("program/p/eur", C, "10.00", "EUR"))), ledger.ErrUnbalanced},
		{"currency differs from the account's", post(entry("k", mkPosting(stripe, D, "10.00", "EUR"), mkPosting("program/p/eur", C, "10.00", "EUR"))), ledger.ErrCurrencyMismatch},
		{"currency differs from the account's, pending", pending(entry("k", mkPosting("org/cash/eur", D, "10.00", "EUR"), mkPosting(fund, C, "10.00", "EUR"))), ledger.ErrCurrencyMismatch},

		// accounts
		{"unknown account", post(transfer("k", stripe, "program/nope/fund", "1.00")), ledger.ErrAccountNotFound},
		{"unknown account through PostTx", postTx(transfer("k", "program/nope/fund", stripe, "1.00")), ledger.ErrAccountNotFound},
		{"unknown account pending", pending(transfer("k", stripe, "program/nope/fund", "1.00")), ledger.ErrAccountNotFound},
		{"closed account credited", post(transfer("k", stripe, "closed/wallet", "1.00")), ledger.ErrAccountClosed},
		{"closed account, pending", pending(transfer("k", stripe, "closed/wallet", "1.00")), ledger.ErrAccountClosed},
		{"close an account with a balance", closeAcct(fund), ledger.ErrAccountNotEmpty},
		{"close an account with only a hold", closeAcct("participant/h/wallet"), ledger.ErrAccountNotEmpty},
		{"close a closed account", closeAcct("closed/wallet"), ledger.ErrAccountClosed},
		{"close an unknown account", closeAcct("nope/nope"), ledger.ErrAccountNotFound},
		{"open an account again with other attributes", func() error {
			_, _, err := l.CreateAccount(ctx, ledger.NewAccount{Code: fund, Type: ledger.Asset, Currency: "USD", NoOverdraft: true})
			return err
		}, ledger.ErrAccountExists},
		{"open an account again without no_overdraft", func() error {
			_, _, err := l.CreateAccount(ctx, ledger.NewAccount{Code: fund, Type: ledger.Equity, Currency: "USD"})
			return err
		}, ledger.ErrAccountExists},

		// funds
		{"overdraft", post(transfer("k", fund, wallet, "100.01")), ledger.ErrInsufficientFunds},
		{"overdraft through PostTx", postTx(transfer("k", fund, wallet, "100.01")), ledger.ErrInsufficientFunds},
		{"overdraft by a hold", pending(transfer("k", fund, wallet, "100.01")), ledger.ErrInsufficientFunds},
		{"overdraft through a hold (60 of 100 held, post 50)", post(transfer("k", "program/h/fund", wallet, "50.00")), ledger.ErrInsufficientFunds},
		{"overdraft through a hold by a cent", post(transfer("k", "program/h/fund", wallet, "40.01")), ledger.ErrInsufficientFunds},
		{"second hold over the available", pending(transfer("k", "program/h/fund", wallet, "50.00")), ledger.ErrInsufficientFunds},
		{"overdraft on a multi-posting entry", post(entry("k", mkPosting(fund, D, "60.00", "USD"), mkPosting(fund, D, "40.01", "USD"), mkPosting(wallet, C, "100.01", "USD"))), ledger.ErrInsufficientFunds},
		{"overdraft of a wallet with money on hold", post(transfer("k", wallet, stripe, "0.01")), ledger.ErrInsufficientFunds},
		{"batch with one overdraft", func() error {
			_, err := l.PostBatch(ctx, []ledger.NewEntry{transfer("b1", stripe, fund, "1.00"), transfer("b2", fund, wallet, "500.00")})
			return err
		}, ledger.ErrInsufficientFunds},
		{"batch with one unknown account", func() error {
			_, err := l.PostBatch(ctx, []ledger.NewEntry{transfer("b1", stripe, fund, "1.00"), transfer("b2", stripe, "nope/nope", "1.00")})
			return err
		}, ledger.ErrAccountNotFound},
		{"batch reusing a key", func() error {
			_, err := l.PostBatch(ctx, []ledger.NewEntry{transfer("b1", stripe, fund, "1.00"), transfer("b1", stripe, fund, "1.00")})
			return err
		}, ledger.ErrInvalid},
		{"empty batch", func() error { _, err := l.PostBatch(ctx, nil); return err }, ledger.ErrInvalid},

		// idempotency
		{"key reused with another amount", post(donorWith(func(e *ledger.NewEntry) { e.Postings[0].Amount, e.Postings[1].Amount = amt("99.00"), amt("99.00") })), ledger.ErrIdempotencyConflict},
		{"key reused with another account", post(donorWith(func(e *ledger.NewEntry) { e.Postings[1].Account = "program/q/fund" })), ledger.ErrIdempotencyConflict},
		{"key reused with sides swapped", post(donorWith(func(e *ledger.NewEntry) { e.Postings[0].Side, e.Postings[1].Side = C, D })), ledger.ErrIdempotencyConflict},
		{"key reused with another description", post(donorWith(func(e *ledger.NewEntry) { e.Description = "other" })), ledger.ErrIdempotencyConflict},
		{"key reused with other metadata", post(donorWith(func(e *ledger.NewEntry) { e.Metadata = json.RawMessage(`{"source":"stripe","ref":"ch_2"}`) })), ledger.ErrIdempotencyConflict},
		{"key reused with an effective date", post(donorWith(func(e *ledger.NewEntry) { e.EffectiveAt = &yesterday })), ledger.ErrIdempotencyConflict},
		{"key reused as a pending entry", pending(donorWith(func(*ledger.NewEntry) {})), ledger.ErrIdempotencyConflict},
		{"key reused through PostTx", postTx(donorWith(func(e *ledger.NewEntry) { e.Description = "other" })), ledger.ErrIdempotencyConflict},
		{"key reused in a batch", func() error {
			_, err := l.PostBatch(ctx, []ledger.NewEntry{transfer("b1", stripe, fund, "1.00"), donorWith(func(e *ledger.NewEntry) { e.Description = "x" })})
			return err
		}, ledger.ErrIdempotencyConflict},
		{"commit with a standard entry's key", commit(f.open, ledger.Resolution{IdempotencyKey: "donor-1"}), ledger.ErrIdempotencyConflict},
		{"commit key replayed on another pending entry", commit(f.open, ledger.Resolution{IdempotencyKey: "commit-c"}), ledger.ErrIdempotencyConflict},
		{"void with a commit's key", void(f.open, ledger.Resolution{IdempotencyKey: "commit-c"}), ledger.ErrIdempotencyConflict},
		{"reversal key reused with another description", reverse(f.fix, ledger.Resolution{IdempotencyKey: "fix-1-rev", Description: "other"}), ledger.ErrIdempotencyConflict},

		// two-phase
		{"commit twice", commit(f.committed, ledger.Resolution{}), ledger.ErrAlreadyResolved},
		{"commit twice, another key", commit(f.committed, ledger.Resolution{IdempotencyKey: "commit-c-2"}), ledger.ErrAlreadyResolved},
		{"void after commit", void(f.committed, ledger.Resolution{}), ledger.ErrAlreadyResolved},
		{"void after commit, with a key", void(f.committed, ledger.Resolution{IdempotencyKey: "void-c"}), ledger.ErrAlreadyResolved},
		{"commit after void", commit(f.voided, ledger.Resolution{}), ledger.ErrAlreadyResolved},
		{"commit after void, with a key", commit(f.voided, ledger.Resolution{IdempotencyKey: "commit-v"}), ledger.ErrAlreadyResolved},
		{"void twice", void(f.voided, ledger.Resolution{}), ledger.ErrAlreadyResolved},
		{"partial commit over the held amount", commit(f.open, openPartial("20.01")), ledger.ErrInvalid},
		{"partial commit over the held amount in two postings", commit(f.open, ledger.Resolution{Postings: []ledger.Posting{
			mkPosting(wallet, D, "15.00", "USD"), mkPosting(wallet, D, "5.01", "USD"), mkPosting(stripe, C, "20.01", "USD")}}), ledger.ErrInvalid},
		{"partial commit on an account not held", commit(f.open, ledger.Resolution{Postings: []ledger.Posting{
			mkPosting(wallet, D, "5.00", "USD"), mkPosting(fund, C, "5.00", "USD")}}), ledger.ErrInvalid},
		{"partial commit on the wrong side", commit(f.open, ledger.Resolution{Postings: []ledger.Posting{
			mkPosting(wallet, C, "5.00", "USD"), mkPosting(stripe, D, "5.00", "USD")}}), ledger.ErrInvalid},
		{"partial commit unbalanced", commit(f.open, ledger.Resolution{Postings: []ledger.Posting{
			mkPosting(wallet, D, "5.00", "USD"), mkPosting(stripe, C, "4.00", "USD")}}), ledger.ErrUnbalanced},
		{"partial commit with a zero amount", commit(f.open, openPartial("0.00")), ledger.ErrInvalidAmount},
		{"partial commit too precise", commit(f.open, openPartial("5.001")), ledger.ErrInvalidAmount},
		{"void with postings", void(f.open, openPartial("5.00")), ledger.ErrInvalid},
		{"commit a standard entry", commit(f.award, ledger.Resolution{}), ledger.ErrNotPending},
		{"void a standard entry", void(f.award, ledger.Resolution{}), ledger.ErrNotPending},
		{"commit a commit entry", commit(f.commitEntry, ledger.Resolution{}), ledger.ErrNotPending},
		{"void a reversal", void(f.fixReversal, ledger.Resolution{}), ledger.ErrNotPending},
		{"commit an unknown entry", commit(uuid.New(), ledger.Resolution{}), ledger.ErrEntryNotFound},
		{"void an unknown entry", void(uuid.New(), ledger.Resolution{}), ledger.ErrEntryNotFound},

		// reversals
		{"reverse twice", reverse(f.fix, ledger.Resolution{}), ledger.ErrAlreadyReversed},
		{"reverse twice, another key", reverse(f.fix, ledger.Resolution{IdempotencyKey: "fix-1-rev-2"}), ledger.ErrAlreadyReversed},
		{"reverse a pending entry", reverse(f.open, ledger.Resolution{}), ledger.ErrNotReversible},
		{"reverse a resolved pending entry", reverse(f.committed, ledger.Resolution{}), ledger.ErrNotReversible},
		{"reverse a void", reverse(f.void, ledger.Resolution{}), ledger.ErrNotReversible},
		{"reverse a reversal", reverse(f.fixReversal, ledger.Resolution{}), ledger.ErrNotReversible},
		{"reverse an unknown entry", reverse(uuid.New(), ledger.Resolution{}), ledger.ErrEntryNotFound},
		{"reverse with postings", reverse(f.award, openPartial("1.00")), ledger.ErrInvalid},
		{"reverse into an overdraft", reverse(f.award, ledger.Resolution{}), ledger.ErrInsufficientFunds},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := b.dbSnapshot(t)
			err := tc.do()
			require.ErrorIs(t, err, tc.want)
			require.Equal(t, before, b.dbSnapshot(t), "a refused request must write nothing")
		})
	}

	// The ledger is still sound and the fixture untouched.
	disc, err := l.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, disc)
	require.Equal(t, "40", b.balance(t, "program/h/fund").Available.String())
}

// TestBadInputReplayWritesNothing: the same idempotency key with the same content (however
// it is spelled) returns the original entry and writes nothing.
func TestBadInputReplayWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newBadFixture(t, b)
	ctx, l := b.ctx, b.ledger
	before := b.dbSnapshot(t)

	donor := func(amount, meta string) ledger.NewEntry {
		e := transfer("donor-1", "org/cash/stripe", "program/p/fund", amount)
		e.Metadata = json.RawMessage(meta)
		return e
	}
	for name, e := range map[string]ledger.NewEntry{
		"identical":            donor("100.00", `{"source":"stripe","ref":"ch_1"}`),
		"amount with 1 place":  donor("100.0", `{"source":"stripe","ref":"ch_1"}`),
		"amount with 0 places": donor("100", `{"source":"stripe","ref":"ch_1"}`),
		"metadata reordered":   donor("100.00", `{ "ref": "ch_1", "source": "stripe" }`),
	} {
		got, err := l.Post(ctx, e)
		require.NoError(t, err, name)
		require.True(t, got.Replayed, name)
		require.Equal(t, f.donor, got.ID, name)
		require.Len(t, got.Lines, 2, name)
		require.Equal(t, "100", got.Lines[0].Amount.String(), name)

		err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			got, err := l.PostTx(ctx, tx, e)
			if err == nil && (!got.Replayed || got.ID != f.donor) {
				err = errors.New("PostTx did not replay the original entry")
			}
			return err
		})
		require.NoError(t, err, name)

		batch, err := l.PostBatch(ctx, []ledger.NewEntry{e})
		require.NoError(t, err, name)
		require.Len(t, batch, 1)
		require.True(t, batch[0].Replayed, name)
		require.Equal(t, f.donor, batch[0].ID, name)
	}

	// Pending, commit, void and reversal retried with their keys.
	hold, err := l.PostPending(ctx, transfer("payout-open", "participant/x/wallet", "org/cash/stripe", "20.00"))
	require.NoError(t, err)
	require.True(t, hold.Replayed)
	require.Equal(t, f.open, hold.ID)
	require.Equal(t, ledger.KindPending, hold.Kind)

	c, err := l.Commit(ctx, f.committed, ledger.Resolution{IdempotencyKey: "commit-c"})
	require.NoError(t, err)
	require.True(t, c.Replayed)
	require.Equal(t, f.commitEntry, c.ID)

	v, err := l.Void(ctx, f.voided, ledger.Resolution{IdempotencyKey: "void-v"})
	require.NoError(t, err)
	require.True(t, v.Replayed)
	require.Equal(t, f.void, v.ID)

	r, err := l.Reverse(ctx, f.fix, ledger.Resolution{IdempotencyKey: "fix-1-rev"})
	require.NoError(t, err)
	require.True(t, r.Replayed)
	require.Equal(t, f.fixReversal, r.ID)

	require.Equal(t, before, b.dbSnapshot(t), "replays must write nothing")
}

// sqlAttack is one statement that tries to break an invariant behind the ledger's back.
type sqlAttack struct {
	name       string
	sql        string
	args       []any
	constraint string // the constraint name the database must report ("" = any error)
}

// forgedLine is a posting for forgeEntry.
type forgedLine struct{ code, phase, side, amount, currency string }

// forgeEntry builds one INSERT statement that writes an entry and its postings directly,
// bypassing ledger_post, with running totals that continue each account's chain (plus
// creditBonus on posted_credits, to forge a balance).
func forgeEntry(kind string, target *uuid.UUID, creditBonus string, lines ...forgedLine) (string, []any) {
	codes, phases, sides, amounts, curs := []string{}, []string{}, []string{}, []string{}, []string{}
	for _, ln := range lines {
		codes, phases, sides = append(codes, ln.code), append(phases, ln.phase), append(sides, ln.side)
		amounts, curs = append(amounts, ln.amount), append(curs, ln.currency)
	}
	return `WITH e AS (
		INSERT INTO ledger_entries (id, seq, kind, idempotency_key, description, effective_at, posted_at, target_id, posting_count)
		VALUES (gen_random_uuid(), nextval('ledger_entry_seq'), $1, 'forged-' || gen_random_uuid(), 'forged', now(), now(), $2, $3)
		RETURNING id, seq, posted_at
	), v AS (
		SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]::numeric[], $8::text[]) WITH ORDINALITY
			AS v(code, phase, side, amount, currency, line)
	)
	INSERT INTO ledger_postings (entry_id, line, account_id, phase, side, amount, currency, seq, posted_at,
		account_version, posted_debits, posted_credits, pending_debits, pending_credits)
	SELECT e.id, v.line::smallint, a.id, v.phase, v.side, v.amount, v.currency, e.seq, e.posted_at,
		a.version + row_number() OVER w,
		a.posted_debits + sum(CASE WHEN v.phase = 'posted' AND v.side = 'debit' THEN v.amount ELSE 0 END) OVER w,
		a.posted_credits + sum(CASE WHEN v.phase = 'posted' AND v.side = 'credit' THEN v.amount ELSE 0 END) OVER w + $9::numeric,
		a.pending_debits + sum(CASE WHEN v.side = 'debit' THEN CASE v.phase WHEN 'hold' THEN v.amount WHEN 'release' THEN -v.amount ELSE 0 END ELSE 0 END) OVER w,
		a.pending_credits + sum(CASE WHEN v.side = 'credit' THEN CASE v.phase WHEN 'hold' THEN v.amount WHEN 'release' THEN -v.amount ELSE 0 END ELSE 0 END) OVER w
	FROM e CROSS JOIN v JOIN ledger_accounts a ON a.code = v.code
	WINDOW w AS (PARTITION BY a.id ORDER BY v.line ROWS UNBOUNDED PRECEDING)`,
		[]any{kind, target, len(lines), codes, phases, sides, amounts, curs, creditBonus}
}

func forgedAttack(name, constraint, kind string, target *uuid.UUID, creditBonus string, lines ...forgedLine) sqlAttack {
	q, args := forgeEntry(kind, target, creditBonus, lines...)
	return sqlAttack{name: name, sql: q, args: args, constraint: constraint}
}

// backdated is a forged entry posted a day in the past: posting times never go back on an
// account, so balances as of a time stay exact even if the clock steps back.
func backdated(name, constraint string, lines ...forgedLine) sqlAttack {
	q, args := forgeEntry("standard", nil, "0", lines...)
	q = strings.Replace(q, "now(), now(), $2", "now(), now() - interval '1 day', $2", 1)
	return sqlAttack{name: name, sql: q, args: args, constraint: constraint}
}

// ledgerPostCall calls ledger_post directly with one entry of the given kind and postings.
func ledgerPostCall(name, constraint, kind string, lines ...forgedLine) sqlAttack {
	var entry []int32
	var codes, phases, sides, amounts, curs []string
	for _, ln := range lines {
		entry = append(entry, 1)
		codes, phases, sides = append(codes, ln.code), append(phases, ln.phase), append(sides, ln.side)
		amounts, curs = append(amounts, ln.amount), append(curs, ln.currency)
	}
	return sqlAttack{name: name, constraint: constraint, sql: `SELECT * FROM ledger_post(
		ARRAY[gen_random_uuid()], ARRAY[$1::text], ARRAY['direct-' || gen_random_uuid()], ARRAY[NULL::bytea], ARRAY['direct'],
		ARRAY[NULL::timestamptz], ARRAY['{}'::jsonb], ARRAY[NULL::uuid], ARRAY[$2::int],
		$3::int[], $4::text[], $5::text[], $6::text[], $7::text[]::numeric[], $8::text[])`,
		args: []any{kind, len(lines), entry, codes, phases, sides, amounts, curs}}
}

func runSQLAttacks(t *testing.T, b *testBundle, attacks []sqlAttack) {
	t.Helper()
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			before := b.dbSnapshot(t)
			_, err := b.pool.Exec(b.ctx, a.sql, a.args...)
			require.Error(t, err, "the database accepted: %s", a.sql)
			var pgErr *pgconn.PgError
			require.True(t, errors.As(err, &pgErr), "not a database refusal: %v", err)
			if a.constraint != "" {
				require.Equal(t, a.constraint, pgErr.ConstraintName, "refused for another reason: %v", err)
			}
			require.Equal(t, before, b.dbSnapshot(t), "a refused statement must change nothing")
		})
	}
	disc, err := b.ledger.Check(b.ctx)
	require.NoError(t, err)
	require.Empty(t, disc)
}

// TestSQLAttacks: statements a psql session (or a bug elsewhere) might run to edit history,
// bypass ledger_post or move balances directly. The database must refuse each one.
func TestSQLAttacks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newBadFixture(t, b)
	P, H, R := "posted", "hold", "release"
	usd := func(code, phase, side, amount string) forgedLine { return forgedLine{code, phase, side, amount, "USD"} }

	// Control: the forging statement is right, so the attacks below fail for the reason they
	// name. A balanced, chain-continuing entry is accepted (and rolled back).
	require.EqualError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		q, args := forgeEntry("standard", nil, "0", usd("org/cash/stripe", P, "debit", "1.00"), usd("program/p/fund", P, "credit", "1.00"))
		if _, err := tx.Exec(b.ctx, q, args...); err != nil {
			return err
		}
		return errors.New("rollback")
	}), "rollback", "the control forged entry must be accepted")

	const appendOnly = "ledger_append_only"
	const immutable = "ledger_accounts_immutable"
	missingEntry := uuid.New()
	attacks := []sqlAttack{
		// history is append-only
		{name: "update entry description", sql: `UPDATE ledger_entries SET description = 'tampered'`, constraint: appendOnly},
		{name: "update entry kind", sql: `UPDATE ledger_entries SET kind = 'void' WHERE id = $1`, args: []any{f.commitEntry}, constraint: appendOnly},
		{name: "update entry idempotency key", sql: `UPDATE ledger_entries SET idempotency_key = NULL WHERE idempotency_key = 'donor-1'`, constraint: appendOnly},
		{name: "update entry effective date", sql: `UPDATE ledger_entries SET effective_at = effective_at - interval '1 year'`, constraint: appendOnly},
		{name: "delete a reversal", sql: `DELETE FROM ledger_entries WHERE id = $1`, args: []any{f.fixReversal}, constraint: appendOnly},
		{name: "delete all entries", sql: `DELETE FROM ledger_entries`, constraint: appendOnly},
		// CASCADE: without it, the network's awards (which reference entries) refuse first.
		{name: "truncate entries", constraint: appendOnly, sql: `TRUNCATE ledger_entries CASCADE`},
		{name: "truncate everything", constraint: appendOnly, sql: `TRUNCATE ledger_postings, ledger_entries, ledger_accounts CASCADE`},
		{name: "update posting amount", sql: `UPDATE ledger_postings SET amount = amount + 1`, constraint: appendOnly},
		{name: "swap posting sides", sql: `UPDATE ledger_postings SET side = CASE side WHEN 'debit' THEN 'credit' ELSE 'debit' END WHERE entry_id = $1`, args: []any{f.donor}, constraint: appendOnly},
		{name: "move a posting to another account", sql: `UPDATE ledger_postings SET account_id = (SELECT id FROM ledger_accounts WHERE code = 'program/q/fund') WHERE entry_id = $1 AND line = 2`, args: []any{f.donor}, constraint: appendOnly},
		{name: "turn a hold into a release", sql: `UPDATE ledger_postings SET phase = 'release' WHERE entry_id = $1`, args: []any{f.holdH}, constraint: appendOnly},
		{name: "delete postings", sql: `DELETE FROM ledger_postings`, constraint: appendOnly},
		{name: "delete one posting", sql: `DELETE FROM ledger_postings WHERE entry_id = $1 AND line = 1`, args: []any{f.donor}, constraint: appendOnly},
		{name: "truncate postings", sql: `TRUNCATE ledger_postings`, constraint: appendOnly},

		// postings only through an entry that balances
		{name: "insert an entry without postings", sql: `INSERT INTO ledger_entries (id, seq, kind, description, effective_at, posted_at, posting_count)
			VALUES (gen_random_uuid(), nextval('ledger_entry_seq'), 'standard', 'x', now(), now(), 2)`, constraint: "ledger_entry_postings"},
		{name: "insert postings for no entry", sql: `INSERT INTO ledger_postings (entry_id, line, account_id, phase, side, amount, currency, seq, posted_at,
				account_version, posted_debits, posted_credits, pending_debits, pending_credits)
			SELECT '00000000-0000-0000-0000-000000000001', 1, a.id, 'posted', 'credit', 1000, 'USD', 1, now(), a.version + 1,
				a.posted_debits, a.posted_credits + 1000, a.pending_debits, a.pending_credits
			FROM ledger_accounts a WHERE a.code = 'program/p/fund'`, constraint: "ledger_entry_postings"},
		{name: "append a posting pair to an existing entry", sql: `INSERT INTO ledger_postings (entry_id, line, account_id, phase, side, amount, currency, seq, posted_at,
				account_version, posted_debits, posted_credits, pending_debits, pending_credits)
			SELECT e.id, v.line, a.id, 'posted', v.side, 50, 'USD', e.seq, e.posted_at, a.version + 1,
				a.posted_debits + CASE v.side WHEN 'debit' THEN 50 ELSE 0 END,
				a.posted_credits + CASE v.side WHEN 'credit' THEN 50 ELSE 0 END, a.pending_debits, a.pending_credits
			FROM ledger_entries e, (VALUES (3, 'org/cash/stripe', 'debit'), (4, 'program/p/fund', 'credit')) v(line, code, side)
			JOIN ledger_accounts a ON a.code = v.code WHERE e.id = $1`, args: []any{f.donor},
			// The appended lines carry the old entry's time, earlier than the accounts' latest
			// postings; were they not, the per-entry check (ledger_entry_postings) refuses them.
			constraint: "ledger_posting_time"},
		{name: "insert a posting with a zero amount", sql: `INSERT INTO ledger_postings (entry_id, line, account_id, phase, side, amount, currency, seq, posted_at,
				account_version, posted_debits, posted_credits, pending_debits, pending_credits)
			VALUES (gen_random_uuid(), 1, 1, 'posted', 'debit', 0, 'USD', 1, now(), 1, 0, 0, 0, 0)`, constraint: "ledger_postings_amount"},
		forgedAttack("forged unbalanced entry", "ledger_entry_unbalanced", "standard", nil, "0",
			usd("org/cash/stripe", P, "debit", "1.00"), usd("program/p/fund", P, "credit", "1000.00")),
		forgedAttack("forged one-sided entry", "ledger_entry_unbalanced", "standard", nil, "0",
			usd("program/p/fund", P, "credit", "1000.00"), usd("program/q/fund", P, "credit", "1000.00")),
		forgedAttack("forged entry with mixed currencies", "ledger_entry_unbalanced", "standard", nil, "0",
			usd("org/cash/stripe", P, "debit", "10.00"), forgedLine{"org/cash/eur", P, "debit", "5.00", "EUR"},
			usd("program/p/fund", P, "credit", "5.00"), forgedLine{"program/p/eur", P, "credit", "10.00", "EUR"},
		),
		forgedAttack("forged entry with a forged running balance", "ledger_posting_chain", "standard", nil, "1000000",
			usd("org/cash/stripe", P, "debit", "1.00"), usd("program/p/fund", P, "credit", "1.00")),
		forgedAttack("forged overdraft", "ledger_accounts_no_overdraft", "standard", nil, "0",
			usd("program/p/fund", P, "debit", "100.01"), usd("participant/x/wallet", P, "credit", "100.01")),
		forgedAttack("forged overdraft through a hold", "ledger_accounts_no_overdraft", "standard", nil, "0",
			usd("program/h/fund", P, "debit", "50.00"), usd("participant/x/wallet", P, "credit", "50.00")),
		forgedAttack("forged posting to a closed account", "ledger_account_closed", "standard", nil, "0",
			usd("org/cash/stripe", P, "debit", "1.00"), usd("closed/wallet", P, "credit", "1.00")),
		forgedAttack("forged posting in the wrong currency", "ledger_posting_currency", "standard", nil, "0",
			forgedLine{"org/cash/eur", P, "debit", "1.00", "USD"}, usd("program/p/fund", P, "credit", "1.00")),
		forgedAttack("forged posting too precise", "ledger_posting_precision", "standard", nil, "0",
			usd("org/cash/stripe", P, "debit", "1.001"), usd("program/p/fund", P, "credit", "1.001")),
		forgedAttack("forged standard entry with holds", "ledger_entry_postings", "standard", nil, "0",
			usd("org/cash/stripe", H, "debit", "1.00"), usd("program/p/fund", H, "credit", "1.00")),
		forgedAttack("forged pending entry that posts", "ledger_entry_postings", "pending", nil, "0",
			usd("org/cash/stripe", P, "debit", "1.00"), usd("program/p/fund", P, "credit", "1.00")),
		forgedAttack("forged second commit of a committed entry", "ledger_entries_resolves_once", "commit", &f.committed, "0",
			usd("participant/x/wallet", R, "debit", "10.00"), usd("org/cash/stripe", R, "credit", "10.00"),
		),
		forgedAttack("forged void releasing half a hold", "ledger_entry_mirror", "void", &f.open, "0",
			usd("participant/x/wallet", R, "debit", "10.00"), usd("org/cash/stripe", R, "credit", "10.00")),
		forgedAttack("forged release of a hold that was never made", "ledger_posting_chain", "void", &f.award, "0",
			usd("program/q/fund", R, "debit", "30.00"), usd("participant/x/wallet", R, "credit", "30.00")),
		forgedAttack("forged void of a standard entry releasing another entry's hold", "ledger_entry_target", "void", &f.award, "0",
			usd("program/h/fund", R, "debit", "60.00"), usd("participant/h/wallet", R, "credit", "60.00")),
		forgedAttack("forged void of one pending entry releasing another's hold", "ledger_entry_mirror", "void", &f.open, "0",
			usd("program/h/fund", R, "debit", "60.00"), usd("participant/h/wallet", R, "credit", "60.00")),
		forgedAttack("forged commit posting more than held", "ledger_entry_mirror", "commit", &f.holdH, "0",
			usd("program/h/fund", R, "debit", "60.00"), usd("participant/h/wallet", R, "credit", "60.00"),
			usd("program/h/fund", P, "debit", "60.01"), usd("participant/h/wallet", P, "credit", "60.01")),
		forgedAttack("forged commit that keeps the hold", "ledger_entry_mirror", "commit", &f.holdH, "0",
			usd("program/h/fund", P, "debit", "30.00"), usd("participant/h/wallet", P, "credit", "30.00")),
		backdated("forged entry dated before the account's last posting", "ledger_posting_time",
			usd("org/cash/stripe", P, "debit", "1.00"), usd("program/p/fund", P, "credit", "1.00")),
		forgedAttack("forged void of an entry that does not exist", "ledger_entry_target", "void", &missingEntry, "0",
			usd("program/h/fund", R, "debit", "60.00"), usd("participant/h/wallet", R, "credit", "60.00")),
		forgedAttack("forged reversal of an entry that does not exist", "ledger_entry_target", "reversal", &missingEntry, "0",
			usd("program/q/fund", P, "debit", "3.00"), usd("org/cash/stripe", P, "credit", "3.00")),
		forgedAttack("forged second reversal", "ledger_entries_reverses_once", "reversal", &f.fix, "0",
			usd("program/q/fund", P, "debit", "3.00"), usd("org/cash/stripe", P, "credit", "3.00")),
		forgedAttack("forged reversal that does not mirror", "ledger_entry_mirror", "reversal", &f.donor, "0",
			usd("program/p/fund", P, "debit", "1.00"), usd("org/cash/stripe", P, "credit", "1.00")),
		ledgerPostCall("ledger_post with an unbalanced entry", "ledger_entry_unbalanced", "standard",
			usd("org/cash/stripe", P, "debit", "1.00"), usd("program/p/fund", P, "credit", "1000.00")),
		ledgerPostCall("ledger_post with a negative amount", "ledger_postings_amount", "standard",
			usd("org/cash/stripe", P, "debit", "-1.00"), usd("program/p/fund", P, "credit", "-1.00")),
		ledgerPostCall("ledger_post with a standard entry of holds", "ledger_entry_postings", "standard",
			usd("org/cash/stripe", H, "debit", "1.00"), usd("program/p/fund", H, "credit", "1.00")),
		ledgerPostCall("ledger_post overdrawing", "ledger_accounts_no_overdraft", "standard",
			usd("program/p/fund", P, "debit", "100.01"), usd("org/cash/stripe", P, "credit", "100.01")),
		ledgerPostCall("ledger_post with an unknown account", "ledger_account_unknown", "standard",
			usd("program/p/fund", P, "debit", "1.00"), usd("nope/nope", P, "credit", "1.00")),

		// balances move only through postings
		{name: "credit a fund directly", sql: `UPDATE ledger_accounts SET posted_credits = posted_credits + 1000 WHERE code = 'program/p/fund'`, constraint: immutable},
		{name: "release a hold directly", sql: `UPDATE ledger_accounts SET pending_debits = 0 WHERE code = 'program/h/fund'`, constraint: immutable},
		{name: "zero every balance", sql: `UPDATE ledger_accounts SET posted_debits = 0, posted_credits = 0, pending_debits = 0, pending_credits = 0`, constraint: immutable},
		{name: "rewind an account's version", sql: `UPDATE ledger_accounts SET version = 0, last_seq = 0 WHERE code = 'program/p/fund'`, constraint: immutable},
		{name: "drop no_overdraft", sql: `UPDATE ledger_accounts SET no_overdraft = false WHERE code = 'program/p/fund'`, constraint: immutable},
		{name: "change an account's currency", sql: `UPDATE ledger_accounts SET currency = 'EUR' WHERE code = 'program/p/fund'`, constraint: immutable},
		{name: "change an account's type", sql: `UPDATE ledger_accounts SET type = 'liability' WHERE code = 'program/p/fund'`, constraint: immutable},
		{name: "rename an account", sql: `UPDATE ledger_accounts SET code = 'program/p/fund2' WHERE code = 'program/p/fund'`, constraint: immutable},
		{name: "reopen a closed account", sql: `UPDATE ledger_accounts SET closed_at = NULL WHERE code = 'closed/wallet'`, constraint: "ledger_account_closed"},
		{name: "close an account with a balance directly", sql: `UPDATE ledger_accounts SET closed_at = now() WHERE code = 'program/p/fund'`, constraint: "ledger_accounts_closed_empty"},
		{name: "close an account with a hold directly", sql: `UPDATE ledger_accounts SET closed_at = now() WHERE code = 'participant/h/wallet'`, constraint: "ledger_accounts_closed_empty"},
		{name: "delete an account", sql: `DELETE FROM ledger_accounts WHERE code = 'closed/wallet'`, constraint: appendOnly},
		{name: "truncate accounts", constraint: appendOnly, sql: `TRUNCATE ledger_accounts`},
		{name: "delete a currency in use", sql: `DELETE FROM ledger_currencies WHERE code = 'USD'`, constraint: "ledger_append_only"},
		{name: "delete an unused currency", sql: `DELETE FROM ledger_currencies WHERE code = 'CLF'`, constraint: "ledger_append_only"},
		{name: "change the exponent of a currency in use", sql: `UPDATE ledger_currencies SET exponent = 0 WHERE code = 'USD'`, constraint: "ledger_append_only"},
		{name: "insert an account with a balance", sql: `INSERT INTO ledger_accounts (code, type, currency, posted_credits)
			VALUES ('forged/fund', 'equity', 'USD', 1000000)`, constraint: immutable},
		{name: "insert an account with a hold", sql: `INSERT INTO ledger_accounts (code, type, currency, no_overdraft, pending_debits)
			VALUES ('forged/held', 'liability', 'USD', false, 5)`, constraint: immutable},
		{name: "insert a closed account", sql: `INSERT INTO ledger_accounts (code, type, currency, closed_at)
			VALUES ('forged/closed', 'asset', 'USD', now())`, constraint: immutable},
		// A code a URL would resolve away (ValidateCode refuses it too).
		{name: "insert an account with a dot-dot segment", sql: `INSERT INTO ledger_accounts (code, type, currency)
			VALUES ('participant/../admin/wallet', 'liability', 'USD')`, constraint: "ledger_accounts_code_segments"},
		{name: "insert an account with a dot segment", sql: `INSERT INTO ledger_accounts (code, type, currency)
			VALUES ('./x', 'asset', 'USD')`, constraint: "ledger_accounts_code_segments"},
		// An UPDATE issued from inside another trigger (here one any role can create on a
		// temporary table) is checked like any other.
		{name: "update balances from a trigger on a temp table", sql: `
			CREATE TEMP TABLE IF NOT EXISTS ledger_poke (x int);
			CREATE OR REPLACE FUNCTION pg_temp.ledger_poke() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				UPDATE ledger_accounts SET posted_credits = posted_credits + 1000000 WHERE code = 'program/p/fund';
				RETURN NULL;
			END $$;
			DROP TRIGGER IF EXISTS ledger_poke ON ledger_poke;
			CREATE TRIGGER ledger_poke AFTER INSERT ON ledger_poke FOR EACH ROW EXECUTE FUNCTION pg_temp.ledger_poke();
			INSERT INTO ledger_poke VALUES (1);`, constraint: immutable},
	}
	runSQLAttacks(t, b, attacks)
}

// TestOldDotSegmentAccountStaysUsable: an account opened before codes with a segment of dots
// alone were refused is still posted to, read and closed — the refusal applies to new
// accounts only (a CHECK would have been tested on every update of its balances).
func TestOldDotSegmentAccountStaysUsable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	const old = "participant/../old/wallet"
	// Opened as before 009: the owner sets the refusal aside for this one insert.
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(b.ctx, `ALTER TABLE ledger_accounts DISABLE TRIGGER ledger_accounts_code_segments`)
	require.NoError(t, err)
	_, err = tx.Exec(b.ctx, `INSERT INTO ledger_accounts (code, type, currency, no_overdraft) VALUES ($1, 'liability', 'USD', true)`, old)
	require.NoError(t, err)
	_, err = tx.Exec(b.ctx, `ALTER TABLE ledger_accounts ENABLE TRIGGER ledger_accounts_code_segments`)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(b.ctx))

	_, err = b.ledger.Post(b.ctx, transfer("in", "org/cash/stripe", old, "5.00"))
	require.NoError(t, err)
	require.Equal(t, "5", b.balance(t, old).Posted.String())
	_, err = b.ledger.Post(b.ctx, transfer("out", old, "org/cash/stripe", "5.00"))
	require.NoError(t, err)
	_, err = b.ledger.CloseAccount(b.ctx, old)
	require.NoError(t, err)

	// A new one is still refused, by the database too.
	_, err = b.pool.Exec(b.ctx, `INSERT INTO ledger_accounts (code, type, currency) VALUES ('participant/../new/wallet', 'liability', 'USD')`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "ledger_accounts_code_segments", pgErr.ConstraintName)
	_, _, err = b.ledger.CreateAccount(b.ctx, ledger.NewAccount{Code: "participant/../new/wallet", Type: ledger.Liability, Currency: "USD"})
	require.ErrorIs(t, err, ledger.ErrInvalid)
}
