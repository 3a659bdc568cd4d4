package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// settle returns a sequence number below which the ledger's history is final, and the
// database time at which it was read.
//
// Why: an entry's sequence number and posting time are taken inside its transaction, before
// it commits, and entries on different accounts commit in any order. A reader that has seen
// entry 7 may later see entry 6 appear. settle reads the highest number handed out so far,
// then waits for every transaction in flight at that moment to end: after that, every entry
// numbered up to it, and every posting time up to the returned time, is committed or will
// never exist. The wait is as long as the longest of those transactions (milliseconds for
// the ledger's own), and ends with ctx.
func (l *Ledger) settle(ctx context.Context) (int64, time.Time, error) {
	var high int64
	var called bool
	var now time.Time
	if err := l.db.QueryRow(ctx, `SELECT last_value, is_called, clock_timestamp() FROM ledger_entry_seq`).
		Scan(&high, &called, &now); err != nil {
		return 0, time.Time{}, fmt.Errorf("settle: read sequence: %w", err)
	}
	if !called {
		high = 0
	}
	if err := l.waitInFlight(ctx); err != nil {
		return 0, time.Time{}, fmt.Errorf("settle: %w", err)
	}
	return high, now, nil
}

// waitInFlight waits for every transaction in flight when it is called to end (see settle):
// the caller read the highest number handed out (high) before.
func (l *Ledger) waitInFlight(ctx context.Context) error {
	// A new statement, so a new snapshot. Every transaction that drew a number up to high
	// got its transaction id before that (ledger_post locks rows, which assigns one, before
	// it numbers entries; an audit line's trigger asks for one), so an id below ours; if it is still in flight, it is in the
	// snapshot's in-progress list or at or above the snapshot's xmax (ids assigned since the
	// last transaction ended, which the list leaves out). Asking for our own id assigns one;
	// the transaction writes nothing and ends at once.
	var inFlight []string
	err := pgx.BeginFunc(ctx, l.db, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `WITH s AS (SELECT pg_current_snapshot() AS snap, pg_current_xact_id() AS mine)
			SELECT coalesce(array_agg(x::text), '{}') FROM (
				SELECT pg_snapshot_xip(s.snap) AS x FROM s
				UNION
				SELECT g::text::xid8 FROM s, generate_series(pg_snapshot_xmax(s.snap)::text::bigint,
				                                             s.mine::text::bigint - 1) g
			) t`).Scan(&inFlight)
	})
	if err != nil {
		return fmt.Errorf("read transactions in flight: %w", err)
	}
	for wait := time.Millisecond; len(inFlight) > 0; wait = min(2*wait, 50*time.Millisecond) {
		if err := l.db.QueryRow(ctx, `SELECT coalesce(array_agg(x), '{}') FROM unnest($1::text[]) x
			WHERE pg_xact_status(x::xid8) = 'in progress'`, inFlight).Scan(&inFlight); err != nil {
			return fmt.Errorf("wait for transactions in flight: %w", err)
		}
		if len(inFlight) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d transactions still in flight: %w", len(inFlight), ctx.Err())
		case <-time.After(wait):
		}
	}
	return nil
}
