package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// prepared is an entry checked and ready for ledger_post.
type prepared struct {
	id          uuid.UUID
	kind        Kind
	key         string
	hash        []byte
	description string
	effective   *time.Time
	metadata    json.RawMessage
	target      *uuid.UUID
	lines       []Line
}

func prepare(kind Kind, key, description string, effective *time.Time, metadata json.RawMessage, target *uuid.UUID, ps []Posting, lines []Line) prepared {
	meta, _ := canonicalMetadata(metadata)
	// Time-ordered ids keep index inserts at the right edge of the primary keys.
	id := uuid.Must(uuid.NewV7())
	return prepared{id: id, kind: kind, key: key, hash: requestHash(kind, target, description, effective, meta, ps),
		description: description, effective: effective, metadata: meta, target: target, lines: lines}
}

func linesOf(ps []Posting, phase Phase) []Line {
	out := make([]Line, len(ps))
	for i, p := range ps {
		out[i] = Line{Line: i + 1, Account: p.Account, Phase: phase, Side: p.Side, Amount: p.Amount, Currency: p.Currency}
	}
	return out
}

func (l *Ledger) prepareNew(kind Kind, e NewEntry) (prepared, error) {
	if err := e.Validate(); err != nil {
		return prepared{}, err
	}
	if kind == KindPending && len(e.Postings) > MaxPendingPostings {
		return prepared{}, invalid("postings", "a pending entry takes at most %d postings (its commit repeats them as releases), got %d",
			MaxPendingPostings, len(e.Postings))
	}
	phase := PhasePosted
	if kind == KindPending {
		phase = PhaseHold
	}
	return prepare(kind, e.IdempotencyKey, e.Description, e.EffectiveAt, e.Metadata, nil, e.Postings, linesOf(e.Postings, phase)), nil
}

// Post records a posted entry. Concurrent calls are coalesced into shared transactions; each
// entry still succeeds or fails on its own. A retry with the same idempotency key and content
// returns the original entry with Replayed set.
func (l *Ledger) Post(ctx context.Context, e NewEntry) (Entry, error) {
	p, err := l.prepareNew(KindStandard, e)
	if err != nil {
		return Entry{}, fmt.Errorf("post entry: %w", err)
	}
	return l.batcher.submit(ctx, p)
}

// PostPending records a pending entry: its amounts are held (they reduce the available
// balance of the accounts they take from, and count against no_overdraft) until Commit or Void.
func (l *Ledger) PostPending(ctx context.Context, e NewEntry) (Entry, error) {
	p, err := l.prepareNew(KindPending, e)
	if err != nil {
		return Entry{}, fmt.Errorf("post pending entry: %w", err)
	}
	return l.batcher.submit(ctx, p)
}

// PostTx is Post inside the caller's transaction (no coalescing).
func (l *Ledger) PostTx(ctx context.Context, tx pgx.Tx, e NewEntry) (Entry, error) {
	p, err := l.prepareNew(KindStandard, e)
	if err != nil {
		return Entry{}, fmt.Errorf("post entry: %w", err)
	}
	return l.postOne(ctx, tx, p)
}

// PostPendingTx is PostPending inside the caller's transaction.
func (l *Ledger) PostPendingTx(ctx context.Context, tx pgx.Tx, e NewEntry) (Entry, error) {
	p, err := l.prepareNew(KindPending, e)
	if err != nil {
		return Entry{}, fmt.Errorf("post pending entry: %w", err)
	}
	return l.postOne(ctx, tx, p)
}

// PostBatch posts entries in one transaction: all of them, or none. Entries whose
// idempotency key was already used with the same content are returned as Replayed.
func (l *Ledger) PostBatch(ctx context.Context, entries []NewEntry) ([]Entry, error) {
	var out []Entry
	err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		var err error
		out, err = l.PostBatchTx(ctx, tx, entries)
		return err
	})
	return out, err
}

// PostBatchTx is PostBatch inside the caller's transaction.
func (l *Ledger) PostBatchTx(ctx context.Context, tx pgx.Tx, entries []NewEntry) ([]Entry, error) {
	if len(entries) == 0 {
		return nil, invalid("entries", "empty batch")
	}
	ps := make([]prepared, len(entries))
	keys := make(map[string]int, len(entries))
	for i, e := range entries {
		p, err := l.prepareNew(KindStandard, e)
		if err != nil {
			return nil, fmt.Errorf("post batch: entries[%d]: %w", i, err)
		}
		if j, dup := keys[e.IdempotencyKey]; dup {
			return nil, fmt.Errorf("post batch: entries[%d]: %w", i, invalid("idempotency_key", "%q also used by entries[%d]", truncate(e.IdempotencyKey, 40), j))
		}
		keys[e.IdempotencyKey] = i
		ps[i] = p
	}
	results, err := l.execute(ctx, tx, ps)
	if err != nil {
		return nil, fmt.Errorf("post batch: %w", err)
	}
	out := make([]Entry, len(ps))
	for i, r := range results {
		if r.err != nil {
			return nil, fmt.Errorf("post batch: entries[%d]: %w", i, r.err)
		}
		out[i] = r.entry
	}
	return out, nil
}

// postOne posts a single prepared entry on db.
func (l *Ledger) postOne(ctx context.Context, db DBTX, p prepared) (Entry, error) {
	res, err := l.execute(ctx, db, []prepared{p})
	if err != nil {
		return Entry{}, fmt.Errorf("post %s entry: %w", p.kind, err)
	}
	if res[0].err != nil {
		return Entry{}, fmt.Errorf("post %s entry: %w", p.kind, res[0].err)
	}
	return res[0].entry, nil
}

type result struct {
	entry Entry
	err   error
}

const postSQL = `SELECT idx, id, seq, posted_at, effective_at, inserted, request_hash FROM ledger_post(
	$1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::timestamptz[], $7::jsonb[],
	$8::uuid[], $9::int[], $10::int[], $11::text[], $12::text[], $13::text[], $14::text[]::numeric[], $15::text[])`

// execute runs ledger_post for ps on db and returns one result per entry. A database error
// (insufficient funds, unknown account…) fails the whole call: ledger_post is all or nothing.
// Per-entry results only report idempotency replays and conflicts.
func (l *Ledger) execute(ctx context.Context, db DBTX, ps []prepared) ([]result, error) {
	n := len(ps)
	var (
		ids     = make([]uuid.UUID, n)
		kinds   = make([]string, n)
		keys    = make([]*string, n)
		hashes  = make([][]byte, n)
		descs   = make([]string, n)
		effs    = make([]*time.Time, n)
		metas   = make([]string, n)
		targets = make([]*uuid.UUID, n)
		counts  = make([]int32, n)
		pEntry  []int32
		pAcct   []string
		pPhase  []string
		pSide   []string
		pAmount []string
		pCur    []string
	)
	for i, p := range ps {
		ids[i], kinds[i], hashes[i], descs[i], effs[i] = p.id, string(p.kind), p.hash, p.description, p.effective
		if p.key != "" {
			k := p.key
			keys[i] = &k
		}
		metas[i] = string(p.metadata)
		targets[i] = p.target
		counts[i] = int32(len(p.lines))
		for _, ln := range p.lines {
			pEntry = append(pEntry, int32(i+1))
			pAcct = append(pAcct, ln.Account)
			pPhase = append(pPhase, string(ln.Phase))
			pSide = append(pSide, string(ln.Side))
			pAmount = append(pAmount, ln.Amount.String())
			pCur = append(pCur, ln.Currency)
		}
	}
	rows, err := db.Query(ctx, postSQL, ids, kinds, keys, hashes, descs, effs, metas, targets, counts,
		pEntry, pAcct, pPhase, pSide, pAmount, pCur)
	if err != nil {
		return nil, translate(err)
	}
	out := make([]result, n)
	seen := 0
	for rows.Next() {
		var (
			idx       int32
			id        uuid.UUID
			seq       int64
			postedAt  time.Time
			effective time.Time
			inserted  bool
			hash      []byte
		)
		if err := rows.Scan(&idx, &id, &seq, &postedAt, &effective, &inserted, &hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read ledger_post result: %w", err)
		}
		i := int(idx) - 1
		p := ps[i]
		seen++
		if inserted {
			out[i].entry = Entry{ID: id, Seq: seq, Kind: p.kind, IdempotencyKey: p.key, Description: p.description,
				EffectiveAt: effective, PostedAt: postedAt, Metadata: p.metadata, TargetID: p.target, Lines: p.lines}
			continue
		}
		if !bytes.Equal(hash, p.hash) {
			out[i].err = fmt.Errorf("%w: key %q belongs to entry %s", ErrIdempotencyConflict, truncate(p.key, 60), id)
			continue
		}
		out[i].entry.ID = id // filled below, after the rows are closed
		out[i].entry.Replayed = true
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err)
	}
	if seen != n {
		return nil, fmt.Errorf("%w: ledger_post returned %d results for %d entries", ErrIntegrity, seen, n)
	}
	for i := range out {
		if out[i].err == nil && out[i].entry.Replayed {
			e, err := l.entryTx(ctx, db, out[i].entry.ID)
			if err != nil {
				return nil, err
			}
			e.Replayed = true
			out[i].entry = e
		}
	}
	return out, nil
}

// Commit posts a pending entry. With res.Postings nil it posts every hold in full; otherwise
// it posts those postings (each no more than was held on that account and side) and releases
// the rest. A pending entry is committed or voided once: a second attempt fails with
// ErrAlreadyResolved unless it repeats the idempotency key of the first.
func (l *Ledger) Commit(ctx context.Context, pendingID uuid.UUID, res Resolution) (Entry, error) {
	return l.resolve(ctx, l.db, KindCommit, pendingID, res)
}

// Void cancels a pending entry: its holds are released and the accounts are whole again.
func (l *Ledger) Void(ctx context.Context, pendingID uuid.UUID, res Resolution) (Entry, error) {
	return l.resolve(ctx, l.db, KindVoid, pendingID, res)
}

// Reverse posts the mirror image of a posted entry (standard or commit), at most once.
// Reversing can fail with ErrInsufficientFunds when the money has since moved on from a
// no_overdraft account.
func (l *Ledger) Reverse(ctx context.Context, entryID uuid.UUID, res Resolution) (Entry, error) {
	return l.resolve(ctx, l.db, KindReversal, entryID, res)
}

// CommitTx is Commit inside the caller's transaction.
func (l *Ledger) CommitTx(ctx context.Context, tx pgx.Tx, pendingID uuid.UUID, res Resolution) (Entry, error) {
	return l.resolve(ctx, tx, KindCommit, pendingID, res)
}

// VoidTx is Void inside the caller's transaction.
func (l *Ledger) VoidTx(ctx context.Context, tx pgx.Tx, pendingID uuid.UUID, res Resolution) (Entry, error) {
	return l.resolve(ctx, tx, KindVoid, pendingID, res)
}

// ReverseTx is Reverse inside the caller's transaction.
func (l *Ledger) ReverseTx(ctx context.Context, tx pgx.Tx, entryID uuid.UUID, res Resolution) (Entry, error) {
	return l.resolve(ctx, tx, KindReversal, entryID, res)
}

func (l *Ledger) resolve(ctx context.Context, db DBTX, kind Kind, targetID uuid.UUID, res Resolution) (Entry, error) {
	e, err := l.resolveEntry(ctx, db, kind, targetID, res)
	if err != nil {
		verb := map[Kind]string{KindCommit: "commit", KindVoid: "void", KindReversal: "reverse"}[kind]
		return Entry{}, fmt.Errorf("%s entry %s: %w", verb, targetID, err)
	}
	return e, nil
}

func (l *Ledger) resolveEntry(ctx context.Context, db DBTX, kind Kind, targetID uuid.UUID, res Resolution) (Entry, error) {
	if err := validateCommon(res.IdempotencyKey, res.Description, res.Metadata, false); err != nil {
		return Entry{}, err
	}
	if res.Postings != nil && kind != KindCommit {
		return Entry{}, invalid("postings", "only a commit takes postings")
	}
	if res.Postings != nil {
		if err := validatePostings(res.Postings); err != nil {
			return Entry{}, err
		}
	}
	target, err := l.entryTx(ctx, db, targetID)
	if err != nil {
		return Entry{}, err
	}
	var lines []Line
	var postings []Posting // what the request asked for, hashed
	switch kind {
	case KindCommit, KindVoid:
		if target.Kind != KindPending {
			return Entry{}, fmt.Errorf("%w: it is a %s entry", ErrNotPending, target.Kind)
		}
		for _, h := range target.Lines {
			lines = append(lines, Line{Account: h.Account, Phase: PhaseRelease, Side: h.Side, Amount: h.Amount, Currency: h.Currency})
		}
		if kind == KindCommit {
			posts := res.Postings
			if posts == nil {
				posts = make([]Posting, len(target.Lines))
				for i, h := range target.Lines {
					posts[i] = Posting{Account: h.Account, Side: h.Side, Amount: h.Amount, Currency: h.Currency}
				}
			} else if err := checkPartial(target.Lines, posts); err != nil {
				return Entry{}, err
			}
			postings = res.Postings
			for _, p := range posts {
				lines = append(lines, Line{Account: p.Account, Phase: PhasePosted, Side: p.Side, Amount: p.Amount, Currency: p.Currency})
			}
		}
	case KindReversal:
		if target.Kind != KindStandard && target.Kind != KindCommit {
			return Entry{}, fmt.Errorf("%w: a %s entry is not posted money (void a pending entry instead)", ErrNotReversible, target.Kind)
		}
		for _, p := range target.Lines {
			if p.Phase == PhasePosted {
				lines = append(lines, Line{Account: p.Account, Phase: PhasePosted, Side: p.Side.Opposite(), Amount: p.Amount, Currency: p.Currency})
			}
		}
	}
	if len(lines) > MaxPostings {
		return Entry{}, invalid("postings", "the %s would have %d lines (releases and postings), at most %d", kind, len(lines), MaxPostings)
	}
	for i := range lines {
		lines[i].Line = i + 1
	}
	description := res.Description
	if description == "" {
		description = fmt.Sprintf("%s of %s", kind, targetID)
	}
	p := prepare(kind, res.IdempotencyKey, description, nil, res.Metadata, &targetID, postings, lines)
	p.hash = requestHash(kind, &targetID, res.Description, nil, res.Metadata, postings)

	// A retry carrying the first call's idempotency key gets the first call's entry back,
	// not a "already resolved" error.
	if res.IdempotencyKey == "" {
		if kind == KindReversal && target.ReversedBy != nil {
			return Entry{}, fmt.Errorf("%w by entry %s", ErrAlreadyReversed, target.ReversedBy)
		}
		if kind != KindReversal && target.ResolvedBy != nil {
			return Entry{}, fmt.Errorf("%w by entry %s", ErrAlreadyResolved, target.ResolvedBy)
		}
	}
	return l.postOne(ctx, db, p)
}

// checkPartial verifies a partial commit posts, per account and side, no more than was held.
func checkPartial(holds []Line, posts []Posting) error {
	type key struct {
		account string
		side    Side
	}
	held := map[key]decimal.Decimal{}
	for _, h := range holds {
		held[key{h.Account, h.Side}] = held[key{h.Account, h.Side}].Add(h.Amount)
	}
	asked := map[key]decimal.Decimal{}
	for i, p := range posts {
		k := key{p.Account, p.Side}
		h, ok := held[k]
		if !ok {
			return invalid(fmt.Sprintf("postings[%d]", i), "no hold on %s %s to commit", p.Side, p.Account)
		}
		asked[k] = asked[k].Add(p.Amount)
		if asked[k].GreaterThan(h) {
			return invalid(fmt.Sprintf("postings[%d]", i), "commits %s on %s %s, more than the %s held",
				FormatAmount(asked[k], p.Currency), p.Side, p.Account, FormatAmount(h, p.Currency))
		}
	}
	return nil
}
