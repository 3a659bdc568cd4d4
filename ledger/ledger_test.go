package ledger_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
)

type testBundle struct {
	ctx    context.Context
	pool   *pgxpool.Pool
	ledger *ledger.Ledger
}

func setup(t testing.TB, opts ...dbtest.Options) *testBundle {
	t.Helper()
	pool := dbtest.New(t, opts...)
	l := ledger.New(pool, nil)
	t.Cleanup(l.Close)
	return &testBundle{ctx: context.Background(), pool: pool, ledger: l}
}

// fundFlow opens the accounts of DESIGN.md §4 for one program and one participant.
func (b *testBundle) openAccounts(t testing.TB) {
	t.Helper()
	for _, na := range []ledger.NewAccount{
		{Code: "org/cash/stripe", Type: ledger.Asset, Currency: "USD"},
		{Code: "program/p/fund", Type: ledger.Equity, Currency: "USD", NoOverdraft: true},
		{Code: "participant/x/wallet", Type: ledger.Liability, Currency: "USD", NoOverdraft: true},
	} {
		_, _, err := b.ledger.CreateAccount(b.ctx, na)
		require.NoError(t, err)
	}
}

func amt(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func transfer(key, from, to, amount string) ledger.NewEntry {
	return ledger.NewEntry{IdempotencyKey: key, Description: key, Postings: []ledger.Posting{
		{Account: from, Side: ledger.Debit, Amount: amt(amount), Currency: "USD"},
		{Account: to, Side: ledger.Credit, Amount: amt(amount), Currency: "USD"},
	}}
}

func (b *testBundle) balance(t testing.TB, code string) ledger.Balance {
	t.Helper()
	bal, err := b.ledger.Balance(b.ctx, code, ledger.AsOf{})
	require.NoError(t, err)
	return bal
}

func TestFundFlow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)

	fund, err := b.ledger.Post(b.ctx, transfer("donor-1", "org/cash/stripe", "program/p/fund", "500.00"))
	require.NoError(t, err)
	require.Equal(t, ledger.KindStandard, fund.Kind)
	require.Len(t, fund.Lines, 2)

	_, err = b.ledger.Post(b.ctx, transfer("award-1", "program/p/fund", "participant/x/wallet", "50.00"))
	require.NoError(t, err)

	hold, err := b.ledger.PostPending(b.ctx, transfer("payout-1", "participant/x/wallet", "org/cash/stripe", "50.00"))
	require.NoError(t, err)
	w := b.balance(t, "participant/x/wallet")
	require.Equal(t, "50", w.Posted.String())
	require.Equal(t, "0", w.Available.String())

	_, err = b.ledger.Commit(b.ctx, hold.ID, ledger.Resolution{})
	require.NoError(t, err)
	w = b.balance(t, "participant/x/wallet")
	require.True(t, w.Posted.IsZero(), w.Posted.String())
	require.True(t, w.Available.IsZero())

	_, err = b.ledger.Void(b.ctx, hold.ID, ledger.Resolution{})
	require.ErrorIs(t, err, ledger.ErrAlreadyResolved)

	_, err = b.ledger.Reverse(b.ctx, fund.ID, ledger.Resolution{})
	require.ErrorIs(t, err, ledger.ErrInsufficientFunds)

	_, err = b.ledger.Reverse(b.ctx, uuid.New(), ledger.Resolution{})
	require.ErrorIs(t, err, ledger.ErrEntryNotFound)

	tb, err := b.ledger.TrialBalance(b.ctx)
	require.NoError(t, err)
	require.Len(t, tb.Totals, 1)
	require.True(t, tb.Totals[0].Balanced)
	disc, err := b.ledger.Check(b.ctx)
	require.NoError(t, err)
	require.Empty(t, disc)
}

// An entry is atomic: a no_overdraft account may dip inside an entry as long as the entry
// leaves it whole, whatever the order of the entry's lines; an entry that leaves it short is
// refused in either order.
func TestOverdraftIsCheckedPerEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	line := func(code string, side ledger.Side, amount string) ledger.Posting {
		return ledger.Posting{Account: code, Side: side, Amount: amt(amount), Currency: "USD"}
	}
	const fund, cash, wallet = "program/p/fund", "org/cash/stripe", "participant/x/wallet"

	// The fund is empty: out first, then back in, nets to zero.
	_, err := b.ledger.Post(b.ctx, ledger.NewEntry{IdempotencyKey: "dip", Postings: []ledger.Posting{
		line(fund, ledger.Debit, "10.00"), line(wallet, ledger.Credit, "10.00"),
		line(cash, ledger.Debit, "10.00"), line(fund, ledger.Credit, "10.00"),
	}})
	require.NoError(t, err)
	require.True(t, b.balance(t, fund).Available.IsZero())

	for i, postings := range [][]ledger.Posting{
		{line(fund, ledger.Debit, "10.00"), line(wallet, ledger.Credit, "10.00"),
			line(cash, ledger.Debit, "9.99"), line(fund, ledger.Credit, "9.99")},
		{line(cash, ledger.Debit, "9.99"), line(fund, ledger.Credit, "9.99"),
			line(fund, ledger.Debit, "10.00"), line(wallet, ledger.Credit, "10.00")},
	} {
		_, err := b.ledger.Post(b.ctx, ledger.NewEntry{IdempotencyKey: fmt.Sprint("short-", i), Postings: postings})
		require.ErrorIs(t, err, ledger.ErrInsufficientFunds)
	}
	require.Equal(t, "10", b.balance(t, wallet).Posted.String())
	require.True(t, b.balance(t, fund).Posted.IsZero())
}
