package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
)

// raceTimeout bounds every concurrency test: a deadlock or a lost wake-up fails the test
// instead of hanging the run.
const raceTimeout = 2 * time.Minute

// concurrentSetup is setup with a pool big enough for one connection per goroutine.
func concurrentSetup(t *testing.T, conns int32) (*testBundle, context.Context) {
	t.Helper()
	b := setup(t, dbtest.Options{MaxConns: conns})
	ctx, cancel := context.WithTimeout(context.Background(), raceTimeout)
	t.Cleanup(cancel)
	b.ctx = ctx
	return b, ctx
}

func (b *testBundle) createAccounts(t *testing.T, nas ...ledger.NewAccount) {
	t.Helper()
	for _, na := range nas {
		_, _, err := b.ledger.CreateAccount(b.ctx, na)
		require.NoError(t, err)
	}
}

// requireSound checks what must hold after any race: Check finds nothing, and every
// currency's trial balance balances, pending included.
func (b *testBundle) requireSound(t *testing.T) {
	t.Helper()
	disc, err := b.ledger.Check(b.ctx)
	require.NoError(t, err)
	require.Empty(t, disc)
	tb, err := b.ledger.TrialBalance(b.ctx)
	require.NoError(t, err)
	for _, tot := range tb.Totals {
		require.True(t, tot.Balanced, "%+v", tot)
		require.True(t, tot.Debits.Equal(tot.Credits), "%+v", tot)
	}
}

// inOwnTx runs f in a transaction of its own (its own connection).
func inOwnTx(ctx context.Context, b *testBundle, f func(tx pgx.Tx) (ledger.Entry, error)) (ledger.Entry, error) {
	var e ledger.Entry
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		e, err = f(tx)
		return err
	})
	return e, err
}

// minAvailable is the lowest available balance account ever showed, by its postings'
// running totals (the whole history, not just the end state).
func (b *testBundle) minAvailable(t *testing.T, code string) decimal.Decimal {
	t.Helper()
	var s string
	require.NoError(t, b.pool.QueryRow(b.ctx, `
		SELECT coalesce(min(CASE WHEN a.type IN ('asset', 'expense')
			THEN p.posted_debits - p.posted_credits - p.pending_credits
			ELSE p.posted_credits - p.posted_debits - p.pending_debits END), 0)::text
		FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id WHERE a.code = $1`, code).Scan(&s))
	return decimal.RequireFromString(s)
}

func (b *testBundle) countSQL(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(b.ctx, sql, args...).Scan(&n))
	return n
}

// TestConcurrentOverdraft races 32 goroutines, each trying 5 transfers of 7.00, out of one
// no_overdraft fund holding 100.00. Exactly 14 transfers fit (98.00); every other attempt
// must fail with ErrInsufficientFunds, and the fund must never have shown a negative
// available balance. Each mode takes a different path to the database.
func TestConcurrentOverdraft(t *testing.T) {
	t.Parallel()
	const (
		workers  = 32
		attempts = 5
		fits     = 14 // floor(100.00 / 7.00)
	)
	modes := []struct {
		name    string
		pending bool // holds reduce the available balance, not the posted one
		post    func(ctx context.Context, b *testBundle, l *ledger.Ledger, e ledger.NewEntry) error
	}{
		{"Post", false, func(ctx context.Context, _ *testBundle, l *ledger.Ledger, e ledger.NewEntry) error {
			_, err := l.Post(ctx, e)
			return err
		}},
		{"PostUnbatched", false, func(ctx context.Context, _ *testBundle, l *ledger.Ledger, e ledger.NewEntry) error {
			_, err := l.Post(ctx, e)
			return err
		}},
		{"PostTx", false, func(ctx context.Context, b *testBundle, l *ledger.Ledger, e ledger.NewEntry) error {
			_, err := inOwnTx(ctx, b, func(tx pgx.Tx) (ledger.Entry, error) { return l.PostTx(ctx, tx, e) })
			return err
		}},
		{"PostBatch", false, func(ctx context.Context, _ *testBundle, l *ledger.Ledger, e ledger.NewEntry) error {
			_, err := l.PostBatch(ctx, []ledger.NewEntry{e})
			return err
		}},
		{"PostPending", true, func(ctx context.Context, _ *testBundle, l *ledger.Ledger, e ledger.NewEntry) error {
			_, err := l.PostPending(ctx, e)
			return err
		}},
		{"PostPendingTx", true, func(ctx context.Context, b *testBundle, l *ledger.Ledger, e ledger.NewEntry) error {
			_, err := inOwnTx(ctx, b, func(tx pgx.Tx) (ledger.Entry, error) { return l.PostPendingTx(ctx, tx, e) })
			return err
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b, ctx := concurrentSetup(t, workers+2)
			l := modeLedger(t, b, m.name)
			b.createAccounts(t,
				ledger.NewAccount{Code: "org/cash/stripe", Type: ledger.Asset, Currency: "USD"},
				ledger.NewAccount{Code: "program/p/fund", Type: ledger.Equity, Currency: "USD", NoOverdraft: true})
			for g := range workers {
				b.createAccounts(t, ledger.NewAccount{Code: fmt.Sprintf("participant/%d/wallet", g), Type: ledger.Liability, Currency: "USD", NoOverdraft: true})
			}
			_, err := l.Post(ctx, transfer("donor-1", "org/cash/stripe", "program/p/fund", "100.00"))
			require.NoError(t, err)

			var (
				mu         sync.Mutex
				ok, failed int
				unexpected []error
				wg         sync.WaitGroup
				start      = make(chan struct{})
			)
			for g := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for a := range attempts {
						err := m.post(ctx, b, l, transfer(fmt.Sprintf("award-%d-%d", g, a), "program/p/fund", fmt.Sprintf("participant/%d/wallet", g), "7.00"))
						mu.Lock()
						switch {
						case err == nil:
							ok++
						case errors.Is(err, ledger.ErrInsufficientFunds):
							failed++
						default:
							unexpected = append(unexpected, err)
						}
						mu.Unlock()
					}
				}()
			}
			close(start)
			wg.Wait()

			require.Empty(t, unexpected, "only ErrInsufficientFunds may refuse a transfer")
			require.Equal(t, fits, ok, "successful transfers")
			require.Equal(t, workers*attempts-fits, failed)

			fund := b.balance(t, "program/p/fund")
			require.Equal(t, "2", fund.Available.String())
			require.True(t, amt("7.00").Mul(decimal.NewFromInt(int64(ok))).Add(fund.Available).Equal(amt("100.00")),
				"%d x 7.00 + %s != 100.00", ok, fund.Available)
			if m.pending {
				require.Equal(t, "100", fund.Posted.String())
				require.Equal(t, "-98", fund.Pending.String())
			} else {
				require.Equal(t, "2", fund.Posted.String())
				require.True(t, fund.Pending.IsZero())
			}
			require.True(t, b.minAvailable(t, "program/p/fund").GreaterThanOrEqual(decimal.Zero),
				"the fund showed a negative available balance at some point")

			// The wallets received exactly what left the fund, one 7.00 per success.
			credited := decimal.Zero
			for g := range workers {
				w := b.balance(t, fmt.Sprintf("participant/%d/wallet", g))
				credited = credited.Add(w.Posted).Add(w.PendingCredits)
			}
			require.Equal(t, "98", credited.String())
			require.Equal(t, fits, b.countSQL(t, `SELECT count(*) FROM ledger_entries WHERE idempotency_key LIKE 'award-%'`))
			require.Equal(t, 2*fits, b.countSQL(t, `SELECT count(*) FROM ledger_postings p JOIN ledger_entries e ON e.id = p.entry_id
				WHERE e.idempotency_key LIKE 'award-%'`))
			b.requireSound(t)
		})
	}
}

// TestConcurrentIdempotency sends the same idempotency key from 16 goroutines at once.
func TestConcurrentIdempotency(t *testing.T) {
	t.Parallel()
	const n = 16
	type call func(ctx context.Context, b *testBundle, e ledger.NewEntry) (ledger.Entry, error)
	paths := map[string]call{
		"Post": func(ctx context.Context, b *testBundle, e ledger.NewEntry) (ledger.Entry, error) {
			return b.ledger.Post(ctx, e)
		},
		"PostPending": func(ctx context.Context, b *testBundle, e ledger.NewEntry) (ledger.Entry, error) {
			return b.ledger.PostPending(ctx, e)
		},
		"PostTx": func(ctx context.Context, b *testBundle, e ledger.NewEntry) (ledger.Entry, error) {
			return inOwnTx(ctx, b, func(tx pgx.Tx) (ledger.Entry, error) { return b.ledger.PostTx(ctx, tx, e) })
		},
		"PostBatch": func(ctx context.Context, b *testBundle, e ledger.NewEntry) (ledger.Entry, error) {
			es, err := b.ledger.PostBatch(ctx, []ledger.NewEntry{e})
			if err != nil {
				return ledger.Entry{}, err
			}
			return es[0], nil
		},
	}
	// amountOf gives goroutine i's amount: "same" sends one content, "different" 16, "two
	// groups" two contents, 8 goroutines each.
	scenarios := map[string]func(i int) string{
		"same":       func(int) string { return "10.00" },
		"different":  func(i int) string { return fmt.Sprintf("%d.00", i+1) },
		"two groups": func(i int) string { return fmt.Sprintf("%d.00", 1+i%2) },
	}
	for pname, post := range paths {
		for sname, amountOf := range scenarios {
			t.Run(pname+"/"+sname, func(t *testing.T) {
				t.Parallel()
				b, ctx := concurrentSetup(t, n+2)
				b.openAccounts(t)
				_, err := b.ledger.Post(ctx, transfer("donor-1", "org/cash/stripe", "program/p/fund", "100.00"))
				require.NoError(t, err)

				entries := make([]ledger.Entry, n)
				errs := make([]error, n)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						entries[i], errs[i] = post(ctx, b, transfer("award-1", "program/p/fund", "participant/x/wallet", amountOf(i)))
					}()
				}
				close(start)
				wg.Wait()

				// One content won; every call with that content got its entry, every other
				// call a conflict.
				winner := -1
				for i := range n {
					if errs[i] == nil && !entries[i].Replayed {
						require.Equal(t, -1, winner, "two calls (%d and %d) both inserted the entry", winner, i)
						winner = i
					}
				}
				require.NotEqual(t, -1, winner, "no call inserted the entry: %v", errs)
				won := amountOf(winner)
				var replays, conflicts int
				for i := range n {
					if amountOf(i) == won {
						require.NoError(t, errs[i], "call %d", i)
						require.Equal(t, entries[winner].ID, entries[i].ID, "call %d", i)
						require.Len(t, entries[i].Lines, 2)
						require.True(t, entries[i].Lines[0].Amount.Equal(amt(won)))
						if i != winner {
							require.True(t, entries[i].Replayed)
							replays++
						}
						continue
					}
					require.ErrorIs(t, errs[i], ledger.ErrIdempotencyConflict, "call %d", i)
					conflicts++
				}
				switch sname {
				case "same":
					require.Equal(t, n-1, replays)
				case "different":
					require.Equal(t, n-1, conflicts)
				case "two groups":
					require.Equal(t, n/2-1, replays)
					require.Equal(t, n/2, conflicts)
				}

				require.Equal(t, 1, b.countSQL(t, `SELECT count(*) FROM ledger_entries WHERE idempotency_key = 'award-1'`))
				require.Equal(t, 2, b.countSQL(t, `SELECT count(*) FROM ledger_postings WHERE entry_id = $1`, entries[winner].ID))
				fund := b.balance(t, "program/p/fund")
				require.True(t, amt("100.00").Sub(amt(won)).Equal(fund.Available), "the fund moved once: %s", fund.Available)
				b.requireSound(t)
			})
		}
	}
}

// TestConcurrentResolve races two resolutions of each of 20 pending entries: exactly one
// wins each race, the other gets ErrAlreadyResolved, and no hold is left behind.
func TestConcurrentResolve(t *testing.T) {
	t.Parallel()
	const rounds = 20
	type op struct {
		kind ledger.Kind
		do   func(ctx context.Context, b *testBundle, id uuid.UUID, key string) (ledger.Entry, error)
	}
	commit := op{ledger.KindCommit, func(ctx context.Context, b *testBundle, id uuid.UUID, key string) (ledger.Entry, error) {
		return b.ledger.Commit(ctx, id, ledger.Resolution{IdempotencyKey: key})
	}}
	partial := op{ledger.KindCommit, func(ctx context.Context, b *testBundle, id uuid.UUID, key string) (ledger.Entry, error) {
		return b.ledger.Commit(ctx, id, ledger.Resolution{IdempotencyKey: key, Postings: []ledger.Posting{
			{Account: "program/p/fund", Side: ledger.Debit, Amount: amt("2.00"), Currency: "USD"},
			{Account: "participant/x/wallet", Side: ledger.Credit, Amount: amt("2.00"), Currency: "USD"}}})
	}}
	void := op{ledger.KindVoid, func(ctx context.Context, b *testBundle, id uuid.UUID, key string) (ledger.Entry, error) {
		return b.ledger.Void(ctx, id, ledger.Resolution{IdempotencyKey: key})
	}}
	commitTx := op{ledger.KindCommit, func(ctx context.Context, b *testBundle, id uuid.UUID, key string) (ledger.Entry, error) {
		return inOwnTx(ctx, b, func(tx pgx.Tx) (ledger.Entry, error) {
			return b.ledger.CommitTx(ctx, tx, id, ledger.Resolution{IdempotencyKey: key})
		})
	}}
	voidTx := op{ledger.KindVoid, func(ctx context.Context, b *testBundle, id uuid.UUID, key string) (ledger.Entry, error) {
		return inOwnTx(ctx, b, func(tx pgx.Tx) (ledger.Entry, error) {
			return b.ledger.VoidTx(ctx, tx, id, ledger.Resolution{IdempotencyKey: key})
		})
	}}
	races := []struct {
		name string
		a, b op
		keys bool // give each call an idempotency key of its own
	}{
		{"commit vs void", commit, void, false},
		{"commit vs void with keys", commit, void, true},
		{"commit vs commit", commit, commit, false},
		{"full vs partial commit", commit, partial, true},
		{"void vs void", void, void, false},
		{"CommitTx vs VoidTx", commitTx, voidTx, false},
	}
	for _, race := range races {
		t.Run(race.name, func(t *testing.T) {
			t.Parallel()
			b, ctx := concurrentSetup(t, 2*rounds+2)
			b.openAccounts(t)
			_, err := b.ledger.Post(ctx, transfer("donor-1", "org/cash/stripe", "program/p/fund", "1000.00"))
			require.NoError(t, err)
			holds := make([]uuid.UUID, rounds)
			for i := range holds {
				e, err := b.ledger.PostPending(ctx, transfer(fmt.Sprintf("hold-%d", i), "program/p/fund", "participant/x/wallet", "5.00"))
				require.NoError(t, err)
				holds[i] = e.ID
			}
			require.Equal(t, "100", b.balance(t, "program/p/fund").PendingDebits.String())

			type outcome struct {
				e   ledger.Entry
				err error
			}
			res := make([][2]outcome, rounds)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range rounds {
				for side, o := range []op{race.a, race.b} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						key := ""
						if race.keys {
							key = fmt.Sprintf("resolve-%d-%d", i, side)
						}
						<-start
						e, err := o.do(ctx, b, holds[i], key)
						res[i][side] = outcome{e, err}
					}()
				}
			}
			close(start)
			wg.Wait()

			posted := decimal.Zero
			for i, r := range res {
				var winners []outcome
				for _, o := range r {
					if o.err == nil {
						winners = append(winners, o)
						continue
					}
					require.ErrorIs(t, o.err, ledger.ErrAlreadyResolved, "round %d", i)
				}
				require.Len(t, winners, 1, "round %d: exactly one resolution wins: %v / %v", i, r[0].err, r[1].err)
				w := winners[0].e
				require.Equal(t, holds[i], *w.TargetID)
				if w.Kind == ledger.KindCommit {
					for _, ln := range w.Lines {
						if ln.Phase == ledger.PhasePosted && ln.Side == ledger.Debit {
							posted = posted.Add(ln.Amount)
						}
					}
				}
				hold, err := b.ledger.Entry(ctx, holds[i])
				require.NoError(t, err)
				require.NotNil(t, hold.ResolvedBy)
				require.Equal(t, w.ID, *hold.ResolvedBy, "round %d", i)
				require.Equal(t, 1, b.countSQL(t, `SELECT count(*) FROM ledger_entries WHERE target_id = $1`, holds[i]))
			}

			fund := b.balance(t, "program/p/fund")
			wallet := b.balance(t, "participant/x/wallet")
			for _, bal := range []ledger.Balance{fund, wallet} {
				require.True(t, bal.PendingDebits.IsZero(), "%s still has holds: %+v", bal.Account, bal)
				require.True(t, bal.PendingCredits.IsZero(), "%s still has holds: %+v", bal.Account, bal)
			}
			require.True(t, amt("1000.00").Sub(posted).Equal(fund.Posted), "fund %s, committed %s", fund.Posted, posted)
			require.True(t, fund.Available.Equal(fund.Posted))
			require.True(t, posted.Equal(wallet.Posted), "wallet %s, committed %s", wallet.Posted, posted)
			b.requireSound(t)
		})
	}
}

// TestConcurrentReverse reverses one entry from 8 goroutines at once: one reversal, ever.
func TestConcurrentReverse(t *testing.T) {
	t.Parallel()
	const n = 8
	for _, mode := range []string{"no key", "distinct keys", "same key", "ReverseTx"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b, ctx := concurrentSetup(t, n+2)
			b.openAccounts(t)
			_, err := b.ledger.Post(ctx, transfer("donor-1", "org/cash/stripe", "program/p/fund", "100.00"))
			require.NoError(t, err)
			award, err := b.ledger.Post(ctx, transfer("award-1", "program/p/fund", "participant/x/wallet", "40.00"))
			require.NoError(t, err)

			entries := make([]ledger.Entry, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var res ledger.Resolution
					switch mode {
					case "distinct keys":
						res.IdempotencyKey = fmt.Sprintf("rev-%d", i)
					case "same key":
						res.IdempotencyKey = "rev"
					}
					<-start
					if mode == "ReverseTx" {
						entries[i], errs[i] = inOwnTx(ctx, b, func(tx pgx.Tx) (ledger.Entry, error) {
							return b.ledger.ReverseTx(ctx, tx, award.ID, res)
						})
						return
					}
					entries[i], errs[i] = b.ledger.Reverse(ctx, award.ID, res)
				}()
			}
			close(start)
			wg.Wait()

			var won []ledger.Entry
			for i := range n {
				if errs[i] != nil {
					require.NotEqual(t, "same key", mode, "a retry with the winner's key must get its entry: %v", errs[i])
					require.ErrorIs(t, errs[i], ledger.ErrAlreadyReversed, "call %d", i)
					continue
				}
				if !entries[i].Replayed {
					won = append(won, entries[i])
				}
			}
			require.Len(t, won, 1, "exactly one reversal is inserted")
			for i := range n {
				if errs[i] == nil {
					require.Equal(t, won[0].ID, entries[i].ID)
				}
			}
			require.Equal(t, ledger.KindReversal, won[0].Kind)
			require.Equal(t, 1, b.countSQL(t, `SELECT count(*) FROM ledger_entries WHERE kind = 'reversal' AND target_id = $1`, award.ID))
			e, err := b.ledger.Entry(ctx, award.ID)
			require.NoError(t, err)
			require.NotNil(t, e.ReversedBy)
			require.Equal(t, won[0].ID, *e.ReversedBy)
			require.Equal(t, "100", b.balance(t, "program/p/fund").Posted.String())
			require.True(t, b.balance(t, "participant/x/wallet").Posted.IsZero())
			b.requireSound(t)
		})
	}
}

// TestConcurrentNoDeadlock posts entries that touch the same accounts in opposite orders
// (A->B and B->A, and four-posting entries listing the accounts forwards and backwards) from
// many goroutines. Every entry must succeed — a deadlock would surface as an error (40P01)
// or a timeout — and the balances must come out exact.
func TestConcurrentNoDeadlock(t *testing.T) {
	t.Parallel()
	const (
		workers = 16
		perG    = 15
	)
	accts := []string{"pool/a", "pool/b", "pool/c", "pool/d"}
	// Entries by goroutine parity and step; every goroutine posts perG entries.
	entryFor := func(g, i int) ledger.NewEntry {
		key := fmt.Sprintf("e-%d-%d", g, i)
		p := func(acct string, side ledger.Side, amount string) ledger.Posting {
			return ledger.Posting{Account: acct, Side: side, Amount: amt(amount), Currency: "USD"}
		}
		var ps []ledger.Posting
		switch (g + i) % 4 {
		case 0: // A -> B
			ps = []ledger.Posting{p("pool/a", ledger.Debit, "1.00"), p("pool/b", ledger.Credit, "1.00")}
		case 1: // B -> A
			ps = []ledger.Posting{p("pool/b", ledger.Debit, "2.00"), p("pool/a", ledger.Credit, "2.00")}
		case 2: // four accounts forwards
			ps = []ledger.Posting{p("pool/a", ledger.Debit, "3.00"), p("pool/b", ledger.Credit, "1.00"),
				p("pool/c", ledger.Debit, "5.00"), p("pool/d", ledger.Credit, "7.00")}
		default: // four accounts backwards
			ps = []ledger.Posting{p("pool/d", ledger.Debit, "11.00"), p("pool/c", ledger.Credit, "4.00"),
				p("pool/b", ledger.Debit, "2.00"), p("pool/a", ledger.Credit, "9.00")}
		}
		return ledger.NewEntry{IdempotencyKey: key, Description: key, Postings: ps}
	}
	// Expected net debit balance of each (asset) account.
	want := map[string]decimal.Decimal{}
	for g := range workers {
		for i := range perG {
			for _, p := range entryFor(g, i).Postings {
				if p.Side == ledger.Debit {
					want[p.Account] = want[p.Account].Add(p.Amount)
				} else {
					want[p.Account] = want[p.Account].Sub(p.Amount)
				}
			}
		}
	}

	type poster func(ctx context.Context, b *testBundle, l *ledger.Ledger, es []ledger.NewEntry) error
	modes := []struct {
		name  string
		batch int // entries per call
		post  poster
	}{
		{"Post", 1, func(ctx context.Context, _ *testBundle, l *ledger.Ledger, es []ledger.NewEntry) error {
			_, err := l.Post(ctx, es[0])
			return err
		}},
		{"PostUnbatched", 1, func(ctx context.Context, _ *testBundle, l *ledger.Ledger, es []ledger.NewEntry) error {
			_, err := l.Post(ctx, es[0])
			return err
		}},
		{"PostTx", 1, func(ctx context.Context, b *testBundle, l *ledger.Ledger, es []ledger.NewEntry) error {
			_, err := inOwnTx(ctx, b, func(tx pgx.Tx) (ledger.Entry, error) { return l.PostTx(ctx, tx, es[0]) })
			return err
		}},
		{"PostPending+Commit", 1, func(ctx context.Context, _ *testBundle, l *ledger.Ledger, es []ledger.NewEntry) error {
			h, err := l.PostPending(ctx, es[0])
			if err != nil {
				return err
			}
			_, err = l.Commit(ctx, h.ID, ledger.Resolution{})
			return err
		}},
		{"PostBatch", 5, func(ctx context.Context, _ *testBundle, l *ledger.Ledger, es []ledger.NewEntry) error {
			_, err := l.PostBatch(ctx, es)
			return err
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b, ctx := concurrentSetup(t, workers+2)
			l := modeLedger(t, b, m.name)
			// Reverse creation order for two accounts so that ids and codes disagree.
			for _, code := range []string{"pool/d", "pool/b", "pool/a", "pool/c"} {
				b.createAccounts(t, ledger.NewAccount{Code: code, Type: ledger.Asset, Currency: "USD"})
			}
			var (
				mu   sync.Mutex
				errs []error
				wg   sync.WaitGroup
			)
			start := make(chan struct{})
			for g := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					for i := 0; i < perG; i += m.batch {
						var es []ledger.NewEntry
						for j := i; j < i+m.batch && j < perG; j++ {
							es = append(es, entryFor(g, j))
						}
						if err := m.post(ctx, b, l, es); err != nil {
							mu.Lock()
							errs = append(errs, err)
							mu.Unlock()
						}
					}
				}()
			}
			// A reader checks, while the writers run, that every snapshot balances.
			done := make(chan struct{})
			var reads int
			var readErrs []string
			readerDone := make(chan struct{})
			go func() {
				defer close(readerDone)
				for {
					select {
					case <-done:
						return
					default:
					}
					tb, err := l.TrialBalance(ctx)
					reads++
					if err != nil {
						readErrs = append(readErrs, err.Error())
						continue
					}
					for _, tot := range tb.Totals {
						if !tot.Balanced {
							readErrs = append(readErrs, fmt.Sprintf("unbalanced snapshot at seq %d: %+v", tb.AsOfSeq, tot))
						}
					}
				}
			}()
			close(start)
			wg.Wait()
			close(done)
			<-readerDone
			require.Empty(t, readErrs, "trial balances read during the race")
			require.Positive(t, reads)
			require.Empty(t, errs, "every entry must go through")
			for _, code := range accts {
				bal := b.balance(t, code)
				assert.True(t, want[code].Equal(bal.Posted), "%s: want %s, got %s", code, want[code], bal.Posted)
				assert.True(t, bal.PendingDebits.IsZero() && bal.PendingCredits.IsZero(), "%s: %+v", code, bal)
			}
			require.Equal(t, workers*perG, b.countSQL(t, `SELECT count(*) FROM ledger_entries WHERE idempotency_key LIKE 'e-%'`))
			b.requireSound(t)
		})
	}
}

// TestConcurrentCloseAndPost races CloseAccount against an entry crediting the same empty
// account: either the close wins (the entry fails with ErrAccountClosed) or the entry wins
// (the close fails with ErrAccountNotEmpty), never both.
func TestConcurrentCloseAndPost(t *testing.T) {
	t.Parallel()
	const rounds = 20
	b, ctx := concurrentSetup(t, 2*rounds+2)
	b.createAccounts(t, ledger.NewAccount{Code: "org/cash/stripe", Type: ledger.Asset, Currency: "USD"})
	for i := range rounds {
		b.createAccounts(t, ledger.NewAccount{Code: fmt.Sprintf("participant/%d/wallet", i), Type: ledger.Liability, Currency: "USD"})
	}
	closeErrs := make([]error, rounds)
	postErrs := make([]error, rounds)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range rounds {
		code := fmt.Sprintf("participant/%d/wallet", i)
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			_, closeErrs[i] = b.ledger.CloseAccount(ctx, code)
		}()
		go func() {
			defer wg.Done()
			<-start
			_, postErrs[i] = b.ledger.Post(ctx, transfer(fmt.Sprintf("deposit-%d", i), "org/cash/stripe", code, "1.00"))
		}()
	}
	close(start)
	wg.Wait()
	var closed, posted int
	for i := range rounds {
		a, err := b.ledger.Account(ctx, fmt.Sprintf("participant/%d/wallet", i))
		require.NoError(t, err)
		switch {
		case closeErrs[i] == nil:
			require.ErrorIs(t, postErrs[i], ledger.ErrAccountClosed, "round %d", i)
			require.NotNil(t, a.ClosedAt)
			require.True(t, a.Balance.Posted.IsZero())
			closed++
		case postErrs[i] == nil:
			require.ErrorIs(t, closeErrs[i], ledger.ErrAccountNotEmpty, "round %d", i)
			require.Nil(t, a.ClosedAt)
			require.Equal(t, "1", a.Balance.Posted.String())
			posted++
		default:
			t.Fatalf("round %d: both failed: close %v, post %v", i, closeErrs[i], postErrs[i])
		}
	}
	require.Equal(t, rounds, closed+posted)
	require.Equal(t, posted, b.countSQL(t, `SELECT count(*) FROM ledger_entries WHERE idempotency_key LIKE 'deposit-%'`))
	b.requireSound(t)
}

// modeLedger is the bundle's ledger, or for the PostUnbatched mode one that posts every entry
// in a transaction of its own.
func modeLedger(t *testing.T, b *testBundle, mode string) *ledger.Ledger {
	t.Helper()
	if mode != "PostUnbatched" {
		return b.ledger
	}
	l := ledger.New(b.pool, &ledger.Config{MaxBatch: 1, Workers: 8})
	t.Cleanup(l.Close)
	return l
}
