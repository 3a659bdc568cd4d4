package ledger

import (
	"context"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// batcher coalesces concurrent Post and PostPending calls into shared ledger_post calls.
//
// Why: a transaction holds its accounts' row locks until its commit is flushed to disk. When
// every award debits the same program fund, one entry per transaction means one disk flush
// per entry on that row, in series. A batch takes the lock once and flushes once for all the
// entries waiting, and no_overdraft stays exact because the batch applies its entries in
// order under the lock.
//
// Each worker takes the requests that are waiting (up to maxBatch) and posts them in one
// call. If the call fails — one entry overdraws an account, names an unknown account — the
// worker posts that batch's entries one at a time, so each caller gets its own answer and no
// entry fails because of another. Requests sharing an idempotency key never share a batch:
// the second waits for the next one and finds the first committed.
//
// Batches that share an account are not sent to the database at the same time. The second
// would only wait there for the first one's row locks, with half the entries it could have
// carried; instead its worker keeps collecting requests until the account is free, so a hot
// account is moved by one large batch at a time while batches on disjoint accounts run in
// parallel on other connections.
type batcher struct {
	l        *Ledger
	maxBatch int
	reqs     chan *request
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	mu       sync.RWMutex
	closed   bool

	flight   sync.Mutex
	busy     map[string]int // accounts of the batches in flight, counted per batch
	released chan struct{}  // closed (and replaced) whenever a batch in flight ends
}

type request struct {
	ctx  context.Context
	p    prepared
	done chan result
}

func newBatcher(l *Ledger, maxBatch, workers int) *batcher {
	b := &batcher{l: l, maxBatch: maxBatch, reqs: make(chan *request, maxBatch*workers), stop: make(chan struct{}),
		busy: map[string]int{}, released: make(chan struct{})}
	for range workers {
		b.wg.Add(1)
		go b.work()
	}
	return b
}

func (b *batcher) close() {
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.stop)
		b.wg.Wait()
	})
}

// submit queues p and waits for its result. If ctx ends before p's batch is sent to the
// database (while p is queued, or waits for a busy account), p is not posted; if it ends
// after, the outcome is unknown to the caller, who retries with the same idempotency key as
// after any network failure — never with a new key.
func (b *batcher) submit(ctx context.Context, p prepared) (Entry, error) {
	r := &request{ctx: ctx, p: p, done: make(chan result, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return Entry{}, ErrClosed
	}
	select {
	case b.reqs <- r:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return Entry{}, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.entry, res.err
	case <-ctx.Done():
		return Entry{}, ctx.Err()
	}
}

func (b *batcher) work() {
	defer b.wg.Done()
	var carry []*request // requests held back because their key was already in a batch
	for {
		var batch []*request
		keys := map[string]bool{}
		add := func(r *request) bool {
			if r.ctx.Err() != nil {
				r.done <- result{err: r.ctx.Err()}
				return true
			}
			if r.p.key != "" && keys[r.p.key] {
				return false
			}
			keys[r.p.key] = true
			batch = append(batch, r)
			return true
		}
		var held []*request
		for _, r := range carry {
			if !add(r) {
				held = append(held, r)
			}
		}
		carry = held
		if len(batch) == 0 {
			select {
			case r := <-b.reqs:
				add(r)
			case <-b.stop:
				b.drain(carry)
				return
			}
		}
	fill:
		for len(batch) < b.maxBatch {
			select {
			case r := <-b.reqs:
				if !add(r) {
					carry = append(carry, r)
				}
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			continue
		}
		// Wait, still collecting, until no batch in flight shares an account with this one.
		var claimed []string
		for {
			var wait <-chan struct{}
			if claimed, wait = b.claim(batch); wait == nil {
				break
			}
			if len(batch) >= b.maxBatch {
				<-wait
				continue
			}
			select {
			case <-wait:
			case r := <-b.reqs:
				if !add(r) {
					carry = append(carry, r)
				}
			}
		}
		b.run(batch)
		b.release(claimed)
	}
}

// claim marks the batch's accounts busy and returns them, if none was busy; otherwise it
// returns a channel that is closed when some batch in flight ends.
func (b *batcher) claim(batch []*request) ([]string, <-chan struct{}) {
	accts := batchAccounts(batch)
	b.flight.Lock()
	defer b.flight.Unlock()
	for _, acct := range accts {
		if b.busy[acct] > 0 {
			return nil, b.released
		}
	}
	for _, acct := range accts {
		b.busy[acct]++
	}
	return accts, nil
}

// release frees the accounts claim returned and wakes the workers waiting for them.
func (b *batcher) release(accts []string) {
	b.flight.Lock()
	defer b.flight.Unlock()
	for _, acct := range accts {
		if b.busy[acct]--; b.busy[acct] <= 0 {
			delete(b.busy, acct)
		}
	}
	close(b.released)
	b.released = make(chan struct{})
}

// batchAccounts lists each account of the batch once.
func batchAccounts(batch []*request) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range batch {
		for _, ln := range r.p.lines {
			if !seen[ln.Account] {
				seen[ln.Account] = true
				out = append(out, ln.Account)
			}
		}
	}
	return out
}

// drain answers what is left at shutdown: queued requests are posted, not dropped.
func (b *batcher) drain(carry []*request) {
	for _, r := range carry {
		b.run([]*request{r})
	}
	for {
		select {
		case r := <-b.reqs:
			b.run([]*request{r})
		default:
			return
		}
	}
}

func (b *batcher) run(batch []*request) {
	// A caller that gave up while its request waited (for an account busy in another batch,
	// say) is answered now and its entry is not posted.
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- result{err: err}
			continue
		}
		live = append(live, r)
	}
	if batch = live; len(batch) == 0 {
		return
	}
	// The batch runs on its own context: one caller giving up must not abort the others.
	ctx := context.WithoutCancel(batch[0].ctx)
	ps := make([]prepared, len(batch))
	for i, r := range batch {
		ps[i] = r.p
	}
	results, err := b.l.execute(ctx, b.l.db, ps)
	if err == nil {
		for i, r := range batch {
			r.done <- wrapResult(r.p, results[i])
		}
		return
	}
	if len(batch) == 1 || !retryable(err) {
		for _, r := range batch {
			r.done <- wrapResult(r.p, result{err: err})
		}
		return
	}
	for _, r := range batch {
		res, err := b.l.execute(ctx, b.l.db, []prepared{r.p})
		if err != nil {
			r.done <- wrapResult(r.p, result{err: err})
			continue
		}
		r.done <- wrapResult(r.p, res[0])
	}
}

// retryable reports whether a failed batch may have failed because of one of its entries,
// or of the batch as a whole (a deadlock with another writer), so that each entry deserves a
// try of its own — rather than because the database is out of reach.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

func wrapResult(p prepared, r result) result {
	if r.err != nil {
		r.err = &postError{kind: p.kind, err: r.err}
	}
	return r
}

type postError struct {
	kind Kind
	err  error
}

func (e *postError) Error() string { return "post " + string(e.kind) + " entry: " + e.err.Error() }
func (e *postError) Unwrap() error { return e.err }
