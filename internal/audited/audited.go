// Package audited is the ledger's write API as people use it, through HTTP or the command
// line: each change runs in one transaction with its line in the audit trail (access.Apply),
// so no change can commit without saying who made it.
//
// It uses the ledger's Tx methods, not the coalescing batcher: one request, one transaction.
// In-process callers that need throughput (River jobs) use the ledger directly and record
// their own trail.
package audited

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
)

// Ledger writes to L on Pool as Actor, tagging trail lines with RequestID.
type Ledger struct {
	L         *ledger.Ledger
	Pool      *pgxpool.Pool
	Actor     access.Principal
	RequestID string
}

func (a Ledger) apply(ctx context.Context, fn func(tx pgx.Tx) (access.Event, error)) error {
	return access.Apply(ctx, a.Pool, a.Actor, a.RequestID, fn)
}

// CreateAccount opens an account; an identical existing account is returned unchanged and
// recorded nowhere (created is false).
func (a Ledger) CreateAccount(ctx context.Context, na ledger.NewAccount) (acct ledger.Account, created bool, err error) {
	err = a.apply(ctx, func(tx pgx.Tx) (access.Event, error) {
		var err error
		if acct, created, err = a.L.CreateAccountTx(ctx, tx, na); err != nil || !created {
			return access.Event{}, err
		}
		return access.Event{Action: string(access.LedgerAccountCreate), Record: "account:" + acct.Code, After: acct}, nil
	})
	return acct, created, err
}

// CloseAccount closes an empty account.
func (a Ledger) CloseAccount(ctx context.Context, code string) (acct ledger.Account, err error) {
	err = a.apply(ctx, func(tx pgx.Tx) (access.Event, error) {
		var err error
		if acct, err = a.L.CloseAccountTx(ctx, tx, code); err != nil {
			return access.Event{}, err
		}
		before := acct // closing changes nothing but closed_at
		before.ClosedAt = nil
		return access.Event{Action: string(access.LedgerAccountClose), Record: "account:" + acct.Code, Before: before, After: acct}, nil
	})
	return acct, err
}

// Post posts a standard or (kind ledger.KindPending) pending entry. A replay of an earlier
// entry changes nothing and is not recorded again.
func (a Ledger) Post(ctx context.Context, kind ledger.Kind, ne ledger.NewEntry) (e ledger.Entry, err error) {
	action, post := access.LedgerEntryPost, a.L.PostTx
	if kind == ledger.KindPending {
		action, post = access.LedgerEntryHold, a.L.PostPendingTx
	}
	err = a.apply(ctx, func(tx pgx.Tx) (access.Event, error) {
		var err error
		if e, err = post(ctx, tx, ne); err != nil || e.Replayed {
			return access.Event{}, err
		}
		return access.Event{Action: string(action), Record: "entry:" + e.ID.String(), After: e}, nil
	})
	return e, err
}

// PostBatch posts entries in one transaction, all or nothing. The trail line names the
// entries it posted (the entries themselves are in the ledger).
func (a Ledger) PostBatch(ctx context.Context, entries []ledger.NewEntry) (out []ledger.Entry, err error) {
	err = a.apply(ctx, func(tx pgx.Tx) (access.Event, error) {
		var err error
		if out, err = a.L.PostBatchTx(ctx, tx, entries); err != nil {
			return access.Event{}, err
		}
		var posted []uuid.UUID
		for _, e := range out {
			if !e.Replayed {
				posted = append(posted, e.ID)
			}
		}
		if len(posted) == 0 {
			return access.Event{}, nil
		}
		return access.Event{Action: string(access.LedgerBatchPost), Record: "batch", After: map[string]any{"entries": posted}}, nil
	})
	return out, err
}

// Resolve commits or voids a pending entry, or reverses an entry (kind KindCommit, KindVoid,
// KindReversal). The trail line is about the target entry.
func (a Ledger) Resolve(ctx context.Context, kind ledger.Kind, target uuid.UUID, res ledger.Resolution) (e ledger.Entry, err error) {
	action, resolve := access.LedgerEntryReverse, a.L.ReverseTx
	switch kind {
	case ledger.KindCommit:
		action, resolve = access.LedgerEntryCommit, a.L.CommitTx
	case ledger.KindVoid:
		action, resolve = access.LedgerEntryVoid, a.L.VoidTx
	}
	err = a.apply(ctx, func(tx pgx.Tx) (access.Event, error) {
		var err error
		if e, err = resolve(ctx, tx, target, res); err != nil || e.Replayed {
			return access.Event{}, err
		}
		return access.Event{Action: string(action), Record: "entry:" + target.String(), After: e}, nil
	})
	return e, err
}
