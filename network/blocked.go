package network

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
)

// BlockedAward is an award a rule earned that could not be made or paid (a closed wallet, a
// hand-over to payouts refused): the evaluation recorded why and went on with the
// participant's other awards. Every later evaluation tries it again (the periodic awards
// sweep asks for one); once it goes through, or is no longer due, its block is removed —
// except that of an award made and still waiting unpaid, which stays until it is paid.
type BlockedAward struct {
	Key         string          `json:"award_key"`
	Program     string          `json:"program_id"`
	Participant string          `json:"participant_id"`
	Rule        string          `json:"rule_id"`
	Period      string          `json:"period"`
	Amount      decimal.Decimal `json:"amount"`
	Currency    string          `json:"currency"`
	Reason      string          `json:"reason"`
	Attempts    int             `json:"attempts"`
	FirstAt     time.Time       `json:"first_blocked_at"`
	BlockedAt   time.Time       `json:"blocked_at"`
}

// transient reports errors that a later run of the same evaluation may not meet: the
// evaluation fails as a whole and River retries it, rather than blocking an award.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "40", "08", "53", "57", "58": // rollback (deadlock, serialization), connection, resources, operator, system
			return true
		}
		// A unique violation is a race another transaction won: the retry finds its result.
		return pe.Code == "23505"
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}

// isolated runs fn in a savepoint of tx: an award that fails is rolled back alone. A
// definite failure is returned as blocked (its reason); a transient one as err.
func isolated(ctx context.Context, tx pgx.Tx, fn func(sp pgx.Tx) error) (blocked error, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	if ferr := fn(sp); ferr != nil {
		if rerr := sp.Rollback(ctx); rerr != nil {
			return nil, errors.Join(ferr, rerr)
		}
		if transient(ferr) {
			return nil, ferr
		}
		return ferr, nil
	}
	return nil, sp.Commit(ctx)
}

// isolatedAward runs fn, the making or paying of one award, in a savepoint of its own
// (isolated): a lasting failure is rolled back alone, logged and recorded as the award's
// block (b, with the failure as its reason), and blocked is true; a passing failure is err,
// for the whole transaction to be retried.
func (s *Store) isolatedAward(ctx context.Context, tx pgx.Tx, b BlockedAward, fn func(sp pgx.Tx) error) (blocked bool, err error) {
	failed, err := isolated(ctx, tx, fn)
	if err != nil || failed == nil {
		return false, err
	}
	s.logger.WarnContext(ctx, "award blocked", "key", b.Key, "error", failed)
	b.Reason = failed.Error()
	return true, blockAward(ctx, tx, b)
}

// blockAward records (or renews) the block of an award. The audit line is written when the
// block is created or its reason changes, not on each renewal by an unchanged failure (the
// sweep renews every blocked award every few minutes; attempts and blocked_at count those).
func blockAward(ctx context.Context, tx pgx.Tx, b BlockedAward) error {
	// The CTE reads the block as it was before this statement.
	var before *string
	if err := tx.QueryRow(ctx, `WITH old AS (SELECT reason FROM network_award_blocks WHERE award_key = $1),
		up AS (INSERT INTO network_award_blocks (award_key, program_id, participant_id, rule_id, period, amount, currency, reason)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (award_key) DO UPDATE SET reason = EXCLUDED.reason, attempts = network_award_blocks.attempts + 1,
				blocked_at = clock_timestamp())
		SELECT (SELECT reason FROM old)`,
		b.Key, b.Program, b.Participant, b.Rule, b.Period, b.Amount.String(), b.Currency, b.Reason).Scan(&before); err != nil {
		return fmt.Errorf("block award %s: %w", b.Key, err)
	}
	if before != nil && *before == b.Reason {
		return nil
	}
	ev := access.Event{Actor: SystemActor, Action: "network.award.block", Record: "award:" + b.Key, After: b, Detail: b.Reason}
	if before != nil {
		ev.Before = map[string]string{"reason": *before}
	}
	return access.Record(ctx, tx, ev)
}

// unblockAward removes the block of an award that went through, with its audit line.
func unblockAward(ctx context.Context, tx pgx.Tx, key string) error {
	return removeBlocks(ctx, tx, "went through", `award_key = $1`, key)
}

// removeBlocks removes the blocks matching where (a condition on network_award_blocks b) and
// writes an audit line (network.award.unblock) for each, saying why.
func removeBlocks(ctx context.Context, tx pgx.Tx, why, where string, args ...any) error {
	rows, err := tx.Query(ctx, `DELETE FROM network_award_blocks b WHERE `+where+`
		RETURNING award_key, program_id, participant_id, rule_id, period, amount::text, currency, reason,
			attempts, first_blocked_at, blocked_at`, args...)
	if err != nil {
		return fmt.Errorf("remove award blocks: %w", err)
	}
	removed, err := pgx.CollectRows(rows, scanBlock)
	if err != nil {
		return fmt.Errorf("remove award blocks: %w", err)
	}
	for _, b := range removed {
		if err := access.Record(ctx, tx, access.Event{Actor: SystemActor, Action: "network.award.unblock",
			Record: "award:" + b.Key, Before: b, Detail: why}); err != nil {
			return err
		}
	}
	return nil
}

func scanBlock(r pgx.CollectableRow) (BlockedAward, error) {
	var b BlockedAward
	err := r.Scan(&b.Key, &b.Program, &b.Participant, &b.Rule, &b.Period, &amountText{&b.Amount}, &b.Currency, &b.Reason,
		&b.Attempts, &b.FirstAt, &b.BlockedAt)
	return b, err
}

// BlockedAwards lists the awards blocked now, oldest first.
func (s *Store) BlockedAwards(ctx context.Context) ([]BlockedAward, error) {
	rows, err := s.db.Query(ctx, `SELECT award_key, program_id, participant_id, rule_id, period, amount::text, currency, reason,
		attempts, first_blocked_at, blocked_at FROM network_award_blocks b WHERE NOT `+awardPaid+`
		ORDER BY first_blocked_at, award_key LIMIT 1000`)
	if err != nil {
		return nil, fmt.Errorf("blocked awards: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanBlock)
	if err != nil {
		return nil, fmt.Errorf("blocked awards: %w", err)
	}
	return out, nil
}

// awardPaid says of a block b that its award was paid since (by a release of waiting awards,
// which does not look at blocks): the block is stale.
const awardPaid = `EXISTS (SELECT 1 FROM network_awards a WHERE a.award_key = b.award_key AND a.status = 'posted')`

// awardWaiting says of a block b that its award exists and still waits unpaid (the release
// of waiting awards tries it again), so an evaluation that no longer reaches it keeps it.
const awardWaiting = `EXISTS (SELECT 1 FROM network_awards a WHERE a.award_key = b.award_key AND a.status = 'insufficient_funds')`

// BlockedParticipants lists the participants with a blocked award: the awards sweep asks
// for their evaluation again. Stale blocks (awards paid since) are removed first.
func (s *Store) BlockedParticipants(ctx context.Context) ([]string, error) {
	if err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		return removeBlocks(ctx, tx, "paid by a release of waiting awards", awardPaid)
	}); err != nil {
		return nil, fmt.Errorf("remove stale award blocks: %w", err)
	}
	rows, err := s.db.Query(ctx, `SELECT DISTINCT participant_id FROM network_award_blocks ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("participants with blocked awards: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Reevaluate asks, in one transaction, for the evaluation of participants (those who are
// not enrolled participants any more are skipped), as a fact would: for an evaluation whose
// job gave up, or awards that were blocked. It returns how many were asked for.
func (s *Store) Reevaluate(ctx context.Context, participants []string) (int, error) {
	if len(participants) == 0 {
		return 0, nil
	}
	n := 0
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		evals, err := lockFacts(ctx, tx, participants...)
		if err != nil || len(evals) == 0 {
			return err
		}
		n = len(evals)
		return s.jobs.EvaluateTx(ctx, tx, evals)
	})
	if err != nil {
		return 0, fmt.Errorf("ask to evaluate again: %w", err)
	}
	return n, nil
}
