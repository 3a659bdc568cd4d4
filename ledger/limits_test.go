package ledger_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/ledger"
)

// manyCredits is an entry moving n cents from one account to n postings on another.
func manyCredits(key, from, to string, n int) ledger.NewEntry {
	ps := []ledger.Posting{{Account: from, Side: ledger.Debit, Amount: amt(fmt.Sprintf("%d.%02d", n/100, n%100)), Currency: "USD"}}
	for range n {
		ps = append(ps, ledger.Posting{Account: to, Side: ledger.Credit, Amount: amt("0.01"), Currency: "USD"})
	}
	return ledger.NewEntry{IdempotencyKey: key, Postings: ps}
}

// Every pending entry the ledger accepts can be committed in full: a commit repeats each
// hold as a release, so pending entries are bounded at half the posting limit.
func TestPendingEntriesFitTheirCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	_, err := b.ledger.PostPending(b.ctx, manyCredits("too-big", "org/cash/stripe", "program/p/fund", ledger.MaxPendingPostings))
	require.ErrorIs(t, err, ledger.ErrInvalid, "%d postings", ledger.MaxPendingPostings+1)

	hold, err := b.ledger.PostPending(b.ctx, manyCredits("largest", "org/cash/stripe", "program/p/fund", ledger.MaxPendingPostings-1))
	require.NoError(t, err)
	require.Len(t, hold.Lines, ledger.MaxPendingPostings)
	c, err := b.ledger.Commit(b.ctx, hold.ID, ledger.Resolution{})
	require.NoError(t, err)
	require.Len(t, c.Lines, 2*ledger.MaxPendingPostings)
	require.Equal(t, "4.99", b.balance(t, "program/p/fund").Posted.StringFixed(2))

	// The database refuses a larger pending entry too.
	_, err = b.pool.Exec(b.ctx, `INSERT INTO ledger_entries (id, seq, kind, posted_at, effective_at, posting_count)
		VALUES (gen_random_uuid(), nextval('ledger_entry_seq'), 'pending', now(), now(), 501)`)
	require.ErrorContains(t, err, "ledger_entries_posting_count")
}

// What PostgreSQL text cannot hold is refused as invalid input, naming the field.
func TestNULAndMetadataSizeAreInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	for name, e := range map[string]ledger.NewEntry{
		"description": {IdempotencyKey: "nul-d", Description: "a\x00b"},
		"key":         {IdempotencyKey: "nul\x00k"},
		"metadata":    {IdempotencyKey: "nul-m", Metadata: json.RawMessage(`{"a":"\u0000"}`)},
		"big metadata": {IdempotencyKey: "big-m", Metadata: json.RawMessage(
			`{"a":"` + strings.Repeat("x", ledger.MaxMetadataBytes) + `"}`)},
	} {
		e.Postings = transfer("x", "org/cash/stripe", "program/p/fund", "1.00").Postings
		_, err := b.ledger.Post(b.ctx, e)
		require.ErrorIs(t, err, ledger.ErrInvalid, name)
	}
	// The largest metadata Go accepts, in its least compact shape, fits the database's limit.
	var sb strings.Builder
	sb.WriteString("{")
	for i := 0; sb.Len() < ledger.MaxMetadataBytes-20; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `"%d":1`, i)
	}
	sb.WriteString("}")
	e := transfer("meta-max", "org/cash/stripe", "program/p/fund", "1.00")
	e.Metadata = json.RawMessage(sb.String())
	_, err := b.ledger.Post(b.ctx, e)
	require.NoError(t, err)
}

// A caller that gives up while its entry waits for a busy account gets its context's error,
// and the entry is not posted.
func TestCancelledPostWaitingForABusyAccountIsNotPosted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	// Hold the fund's row lock so the first batch blocks in the database.
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	_, err = tx.Exec(b.ctx, `SELECT 1 FROM ledger_accounts WHERE code = 'program/p/fund' FOR UPDATE`)
	require.NoError(t, err)

	firstDone := make(chan error, 1)
	go func() {
		_, err := b.ledger.Post(b.ctx, transfer("first", "org/cash/stripe", "program/p/fund", "1.00"))
		firstDone <- err
	}()
	// Wait until the first batch is in the database, waiting for the lock.
	require.Eventually(t, func() bool {
		var n int
		err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return err == nil && n > 0
	}, 10*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(b.ctx, 200*time.Millisecond)
	defer cancel()
	_, err = b.ledger.Post(ctx, transfer("second", "org/cash/stripe", "program/p/fund", "2.00"))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	require.NoError(t, tx.Rollback(b.ctx))
	require.NoError(t, <-firstDone)
	time.Sleep(100 * time.Millisecond) // let the waiting batch run, if it were going to
	require.Equal(t, "1", b.balance(t, "program/p/fund").Posted.String(), "only the first entry is posted")
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM ledger_entries WHERE idempotency_key = 'second'`).Scan(&n))
	require.Zero(t, n)
}
