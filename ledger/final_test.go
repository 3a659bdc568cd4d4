package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

// An entry that takes its sequence number first but commits last is neither skipped by a
// reader paging through entries nor missing from an as-of balance: readers wait for it.
func TestReadersWaitForEntriesStillCommitting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	for _, na := range []ledger.NewAccount{
		{Code: "program/q/fund", Type: ledger.Equity, Currency: "USD"},
		{Code: "org/cash/bank", Type: ledger.Asset, Currency: "USD"},
	} {
		_, _, err := b.ledger.CreateAccount(b.ctx, na)
		require.NoError(t, err)
	}

	// Entry 1 is posted in a transaction that stays open; entry 2 commits at once.
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background()) //nolint:errcheck
	first, err := b.ledger.PostTx(b.ctx, tx, transfer("slow", "org/cash/stripe", "program/p/fund", "10.00"))
	require.NoError(t, err)
	second, err := b.ledger.Post(b.ctx, transfer("fast", "org/cash/bank", "program/q/fund", "5.00")) // other accounts
	require.NoError(t, err)
	require.Less(t, first.Seq, second.Seq)

	// A reader now waits; commit the slow entry a little later.
	committed := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		committed <- tx.Commit(context.Background())
	}()
	defer func() { <-committed }() // before the deferred Rollback: one goroutine at a time on tx
	page, err := b.ledger.Entries(b.ctx, ledger.EntryFilter{})
	require.NoError(t, err)
	// Without the wait the page would hold only the second entry, and a reader paging on
	// from it would never see the first.
	require.Len(t, page, 2, "the reader waited: the entry that committed last is listed, in its place")
	require.Equal(t, first.ID, page[0].ID)
	require.Equal(t, second.ID, page[1].ID)

	bal, err := b.ledger.Balance(b.ctx, "program/p/fund", ledger.AsOf{Seq: second.Seq})
	require.NoError(t, err)
	require.Equal(t, "10", bal.Posted.String())

	// A reader gives up with its context while a transaction stays open.
	tx2, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer tx2.Rollback(context.Background()) //nolint:errcheck
	_, err = b.ledger.PostTx(b.ctx, tx2, transfer("stuck", "org/cash/stripe", "program/p/fund", "1.00"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(b.ctx, 100*time.Millisecond)
	defer cancel()
	_, err = b.ledger.Entries(ctx, ledger.EntryFilter{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, tx2.Rollback(b.ctx))
	page, err = b.ledger.Entries(b.ctx, ledger.EntryFilter{AfterSeq: second.Seq})
	require.NoError(t, err)
	require.Empty(t, page, "a rolled-back entry never appears")
}
