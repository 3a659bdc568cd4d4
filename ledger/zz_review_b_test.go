package ledger_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

func TestZZEntriesPaginationSkips(t *testing.T) {
	b := setup(t)
	b.openAccounts(t)
	_, _, err := b.ledger.CreateAccount(b.ctx, ledger.NewAccount{Code: "org/cash/bank", Type: ledger.Asset, Currency: "USD"})
	require.NoError(t, err)
	_, _, err = b.ledger.CreateAccount(b.ctx, ledger.NewAccount{Code: "program/q/fund", Type: ledger.Equity, Currency: "USD"})
	require.NoError(t, err)

	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	slow, err := b.ledger.PostTx(b.ctx, tx, transfer("slow", "org/cash/stripe", "program/p/fund", "10.00"))
	require.NoError(t, err)
	fast, err := b.ledger.Post(b.ctx, transfer("fast", "org/cash/bank", "program/q/fund", "20.00"))
	require.NoError(t, err)
	t.Logf("slow seq %d (uncommitted), fast seq %d (committed)", slow.Seq, fast.Seq)

	page1, err := b.ledger.Entries(b.ctx, ledger.EntryFilter{})
	require.NoError(t, err)
	cursor := page1[len(page1)-1].Seq
	bal, _ := b.ledger.Balance(b.ctx, "program/p/fund", ledger.AsOf{Seq: fast.Seq})
	tb, _ := b.ledger.TrialBalance(b.ctx)
	require.NoError(t, tx.Commit(b.ctx))
	bal2, _ := b.ledger.Balance(b.ctx, "program/p/fund", ledger.AsOf{Seq: fast.Seq})
	page2, err := b.ledger.Entries(b.ctx, ledger.EntryFilter{AfterSeq: cursor})
	require.NoError(t, err)
	t.Logf("page1 %d entries, cursor %d; page2 %d entries -> entry seq %d never listed", len(page1), cursor, len(page2), slow.Seq)
	t.Logf("fund as of seq %d: before commit %s, after commit %s; trial balance as_of_seq %d then", fast.Seq, bal.Posted, bal2.Posted, tb.AsOfSeq)
}

func TestZZMetadataJsonbText(t *testing.T) {
	b := setup(t)
	b.openAccounts(t)
	var sb strings.Builder
	sb.WriteString("{")
	for i := 0; i < 1300; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"k%05d":1`, i)
	}
	sb.WriteString("}")
	e := transfer("bigmeta", "org/cash/stripe", "participant/x/wallet", "1.00")
	e.Metadata = []byte(sb.String())
	t.Logf("meta len %d validate=%v", sb.Len(), e.Validate())
	_, err := b.ledger.Post(b.ctx, e)
	t.Logf("post: %v", err)
}
