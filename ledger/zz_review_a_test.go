package ledger_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

func TestZZBigPendingCannotCommit(t *testing.T) {
	b := setup(t)
	b.openAccounts(t)
	_, err := b.ledger.Post(b.ctx, transfer("fund", "org/cash/stripe", "participant/x/wallet", "1000.00"))
	require.NoError(t, err)
	ps := []ledger.Posting{{Account: "participant/x/wallet", Side: ledger.Debit, Amount: amt("5.00"), Currency: "USD"}}
	for i := 0; i < 500; i++ {
		ps = append(ps, ledger.Posting{Account: "org/cash/stripe", Side: ledger.Credit, Amount: amt("0.01"), Currency: "USD"})
	}
	p, err := b.ledger.PostPending(b.ctx, ledger.NewEntry{IdempotencyKey: "big", Postings: ps})
	require.NoError(t, err)
	t.Logf("pending with %d lines posted; wallet %+v", len(p.Lines), b.balance(t, "participant/x/wallet").Available)
	_, err = b.ledger.Commit(b.ctx, p.ID, ledger.Resolution{})
	t.Logf("full commit: %v (integrity=%v)", err, errors.Is(err, ledger.ErrIntegrity))
	_, err = b.ledger.Void(b.ctx, p.ID, ledger.Resolution{})
	t.Logf("void: %v", err)
}

func TestZZNulDescription(t *testing.T) {
	b := setup(t)
	b.openAccounts(t)
	e := transfer("nul", "org/cash/stripe", "participant/x/wallet", "1.00")
	e.Description = "a\x00b"
	_, err := b.ledger.Post(b.ctx, e)
	t.Logf("NUL description: %v invalid=%v integrity=%v", err, errors.Is(err, ledger.ErrInvalid), errors.Is(err, ledger.ErrIntegrity))
	e = transfer("nulmeta", "org/cash/stripe", "participant/x/wallet", "1.00")
	e.Metadata = []byte(`{"a":"\u0000"}`)
	_, err = b.ledger.Post(b.ctx, e)
	t.Logf("NUL metadata: %v invalid=%v", err, errors.Is(err, ledger.ErrInvalid))
	var sb strings.Builder
	sb.WriteString("{")
	for i := 0; i < 1500; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"k%05d":1`, i)
	}
	sb.WriteString("}")
	e = transfer("bigmeta", "org/cash/stripe", "participant/x/wallet", "1.00")
	e.Metadata = []byte(sb.String())
	t.Logf("meta len %d validate=%v", sb.Len(), e.Validate())
	_, err = b.ledger.Post(b.ctx, e)
	t.Logf("big metadata: %v", err)
}
