package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
)

// SystemActor is who makes awards in the audit trail: the milestone jobs.
var SystemActor = access.Principal{Name: "job:milestones"}

// EvalResult counts what one evaluation did.
type EvalResult struct {
	Awarded int // new awards paid into the wallet
	Waiting int // new awards waiting for funds
	Paid    int // awards that were waiting for funds and are now paid
	Blocked int // awards that could not be made or paid (see BlockedAward)
}

// EvaluateParticipant evaluates every rule in force of every program participant is
// enrolled in and makes the awards that are due and not yet made, in one transaction. It
// first bumps the participant's evaluation generation (see lockFacts), which also makes two
// evaluations of one participant take turns. An award is keyed by (program, participant,
// rule, period) in the database and in the ledger, so it is made at most once however often
// and wherever this runs; a retry after a crash starts over and finds what committed.
func (s *Store) EvaluateParticipant(ctx context.Context, participant string) (EvalResult, error) {
	var res EvalResult
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		res = EvalResult{}
		// The same statement says whether the participant has blocked awards (BlockedAward).
		var hasBlocks bool
		err := tx.QueryRow(ctx, `UPDATE network_people SET eval_gen = eval_gen + 1 WHERE id = $1
			RETURNING EXISTS (SELECT 1 FROM network_award_blocks WHERE participant_id = $1)`, participant).Scan(&hasBlocks)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: person %q", ErrNotFound, participant)
		}
		if err != nil {
			return fmt.Errorf("bump evaluation generation: %w", err)
		}
		now := s.now()
		sn, err := loadSnapshot(ctx, tx, participant, true)
		if err != nil {
			return err
		}
		for _, ps := range sn.programs {
			if err := s.evaluateIn(ctx, tx, sn, ps, now, &res); err != nil {
				return fmt.Errorf("program %s: %w", ps.program.ID, err)
			}
		}
		if hasBlocks {
			// Blocks this evaluation did not renew are of awards made since, or no longer due;
			// but one whose award still waits unpaid stays, whatever the evaluation reached:
			// the release of waiting awards tries it again, and lifts it once it is paid.
			if err := removeBlocks(ctx, tx, "no longer due, or made since", `participant_id = $1 AND blocked_at < transaction_timestamp()
				AND NOT `+awardWaiting, participant); err != nil {
				return fmt.Errorf("remove lifted award blocks: %w", err)
			}
		}
		if res == (EvalResult{}) && !hasBlocks {
			// Nothing was paid: all this transaction wrote is the generation bump, which
			// need not wait for the disk. Losing it in a crash is harmless — any fact that
			// read the bumped generation committed after it in the WAL, so it is lost too or
			// the bump is kept — and most evaluations end here.
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return EvalResult{}, fmt.Errorf("evaluate %s: %w", participant, err)
	}
	return res, nil
}

// evaluateIn evaluates the rules of one program and makes the awards due. The program was
// share-locked by loadSnapshot, against Fund's update lock: a funding either commits before
// this evaluation tries to pay (and pays it) or waits until the awards this evaluation leaves
// waiting for funds are committed (and its release job sees them). The lock is taken before
// any award is posted, so never while holding the fund's ledger lock, which Fund takes after.
func (s *Store) evaluateIn(ctx context.Context, tx pgx.Tx, sn snapshot, ps programSnapshot, now time.Time, res *EvalResult) error {
	p, rules, made, facts := ps.program, ps.rules, ps.made, sn.forProgram(ps)
	e := ps.enrolment
	for _, rv := range rules {
		for _, due := range Evaluate(facts, rv.Rule, now).Due {
			key := AwardKey(p.ID, e.PersonID, rv.Rule.ID, due.Period)
			if made[key] == AwardPosted {
				continue
			}
			// Each award in a savepoint of its own: one that fails is blocked, with its
			// reason, and does not hold up the participant's others.
			var status string
			blocked, err := s.isolatedAward(ctx, tx, BlockedAward{Key: key, Program: p.ID, Participant: e.PersonID, Rule: rv.Rule.ID,
				Period: due.Period, Amount: rv.Rule.Award.Amount, Currency: p.Currency}, func(sp pgx.Tx) error {
				if made[key] == AwardInsufficientFunds {
					paid, err := s.payWaiting(ctx, sp, p, key)
					if paid {
						status = "paid"
					}
					return err
				}
				a, err := s.makeAward(ctx, sp, p, rv, e.PersonID, key, due)
				status = a.Status
				return err
			})
			if err != nil {
				return fmt.Errorf("rule %s period %s: %w", rv.Rule.ID, due.Period, err)
			}
			if blocked {
				res.Blocked++
				continue
			}
			switch status {
			case "paid":
				res.Paid++
			case AwardPosted:
				res.Awarded++
			case "":
				continue // waiting still, or another evaluation has it
			default:
				res.Waiting++
			}
			if err := unblockAward(ctx, tx, key); err != nil {
				return err
			}
		}
	}
	return nil
}

// awardEntry is the ledger entry that pays an award: the program's fund to the wallet.
func awardEntry(p Program, a Award, title string) ledger.NewEntry {
	meta, _ := json.Marshal(map[string]any{"award_id": a.ID, "program": a.ProgramID, "participant": a.ParticipantID,
		"rule": a.RuleID, "rule_version": a.RuleVersion, "period": a.Period, "flow": "award"})
	return ledger.NewEntry{
		IdempotencyKey: a.Key,
		Description:    fmt.Sprintf("%s: %s", a.Kind, title),
		Metadata:       meta,
		Postings: []ledger.Posting{
			{Account: p.FundAccount, Side: ledger.Debit, Amount: a.Amount, Currency: p.Currency},
			{Account: WalletAccount(a.ParticipantID), Side: ledger.Credit, Amount: a.Amount, Currency: p.Currency},
		},
	}
}

// pay posts the award's entry in a savepoint: a fund too short leaves the transaction usable
// and reports paid false.
func (s *Store) pay(ctx context.Context, tx pgx.Tx, ne ledger.NewEntry) (ledger.Entry, bool, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return ledger.Entry{}, false, err
	}
	e, err := s.ledger.PostTx(ctx, sp, ne)
	if errors.Is(err, ledger.ErrInsufficientFunds) {
		return ledger.Entry{}, false, sp.Rollback(ctx)
	}
	if err != nil {
		_ = sp.Rollback(ctx)
		return ledger.Entry{}, false, err
	}
	return e, true, sp.Commit(ctx)
}

func (s *Store) makeAward(ctx context.Context, tx pgx.Tx, p Program, rv RuleVersion, participant, key string, due Due) (Award, error) {
	evidence, err := json.Marshal(due.Evidence)
	if err != nil {
		return Award{}, err
	}
	a := Award{ID: uuid.Must(uuid.NewV7()).String(), Key: key, ProgramID: p.ID, ParticipantID: participant, RuleID: rv.Rule.ID,
		RuleVersion: rv.Version, Period: due.Period, Amount: rv.Rule.Award.Amount, Currency: p.Currency, Kind: rv.Rule.Award.Kind,
		Status: AwardInsufficientFunds, Evidence: evidence, ReachedAt: due.ReachedAt}
	e, paid, err := s.pay(ctx, tx, awardEntry(p, a, rv.Rule.Title))
	if err != nil {
		return Award{}, err
	}
	var entryID *uuid.UUID
	if paid {
		a.Status, a.EntryID, entryID = AwardPosted, e.ID.String(), &e.ID
	}
	// posted_at is the entry's posting time; the award row's own clock is created_at.
	var postedAt *time.Time
	if paid {
		postedAt = &e.PostedAt
	}
	if err := tx.QueryRow(ctx, `INSERT INTO network_awards (id, award_key, program_id, participant_id, rule_id, rule_version, period,
		amount, currency, kind, status, entry_id, evidence, reached_at, posted_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING created_at`,
		a.ID, a.Key, a.ProgramID, a.ParticipantID, a.RuleID, a.RuleVersion, a.Period, a.Amount.String(), a.Currency, a.Kind,
		a.Status, entryID, evidence, a.ReachedAt, postedAt).Scan(&a.CreatedAt); err != nil {
		return Award{}, fmt.Errorf("record award %s: %w", key, translate(err))
	}
	a.PostedAt = postedAt
	if err := s.handOver(ctx, tx, a, p, "network.award.create"); err != nil {
		return Award{}, err
	}
	s.logger.InfoContext(ctx, "award", "key", key, "status", a.Status, "amount", ledger.FormatAmount(a.Amount, a.Currency))
	return a, nil
}

// handOver gives the award to the payouts package and writes its audit line.
func (s *Store) handOver(ctx context.Context, tx pgx.Tx, a Award, p Program, action string) error {
	if s.onAward != nil {
		if err := s.onAward(ctx, tx, a, p); err != nil {
			return fmt.Errorf("hand award %s over: %w", a.Key, err)
		}
	}
	return access.Record(ctx, tx, access.Event{Actor: SystemActor, Action: action, Record: "award:" + a.Key, After: a})
}

// payWaiting pays an award that was waiting for funds, if the fund now covers it. The award
// row is locked first, so an evaluation and a release racing for it pay it once; one that is
// locked already is left to whoever holds it (never waiting for it: an evaluation may hold
// the fund's lock, which a release holding award rows waits for).
func (s *Store) payWaiting(ctx context.Context, tx pgx.Tx, p Program, key string) (bool, error) {
	a, err := scanAward(tx.QueryRow(ctx, `SELECT `+awardColumns+` FROM network_awards WHERE award_key = $1 FOR UPDATE SKIP LOCKED`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock award %s: %w", key, err)
	}
	if a.Status != AwardInsufficientFunds {
		return false, nil
	}
	// Consent withdrawn while the award waited: it stays waiting (the database refuses to
	// pay it too).
	var consent bool
	if err := tx.QueryRow(ctx, `SELECT network_has_consent($1)`, a.ParticipantID).Scan(&consent); err != nil || !consent {
		return false, err
	}
	var title string
	if err := tx.QueryRow(ctx, `SELECT definition->>'title' FROM network_rules WHERE program_id = $1 AND rule_id = $2 AND version = $3`,
		a.ProgramID, a.RuleID, a.RuleVersion).Scan(&title); err != nil {
		return false, err
	}
	e, paid, err := s.pay(ctx, tx, awardEntry(p, a, title))
	if err != nil || !paid {
		return false, err
	}
	if err := tx.QueryRow(ctx, `UPDATE network_awards SET status = 'posted', entry_id = $2, posted_at = $3 WHERE id = $1 RETURNING `+awardColumns,
		a.ID, e.ID, e.PostedAt).Scan(awardDest(&a)...); err != nil {
		return false, fmt.Errorf("mark award %s paid: %w", key, translate(err))
	}
	return true, s.handOver(ctx, tx, a, p, "network.award.pay")
}

// ReleaseWaiting pays the awards of program that wait for funds, oldest first, as far as the
// fund covers them (one that does not fit is skipped for smaller later ones). Awards an
// evaluation is paying at the same moment are left to it. Each award is paid in a savepoint
// of its own, as an evaluation does: one that fails for a lasting reason (a closed wallet, a
// hand-over refused) is rolled back alone and blocked (BlockedAward), and the others are
// paid; a transient error fails the release, which its job retries.
func (s *Store) ReleaseWaiting(ctx context.Context, program string) (paid int, err error) {
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		paid = 0
		p, err := programTx(ctx, tx, program)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+awardColumns+` FROM network_awards WHERE program_id = $1 AND status = 'insufficient_funds'
			ORDER BY created_at, id FOR UPDATE SKIP LOCKED`, program)
		if err != nil {
			return err
		}
		waiting, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Award, error) { return scanAward(r) })
		if err != nil {
			return err
		}
		for _, a := range waiting {
			var ok bool
			blocked, err := s.isolatedAward(ctx, tx, BlockedAward{Key: a.Key, Program: p.ID, Participant: a.ParticipantID, Rule: a.RuleID,
				Period: a.Period, Amount: a.Amount, Currency: a.Currency}, func(sp pgx.Tx) error {
				var err error
				ok, err = s.payWaiting(ctx, sp, p, a.Key)
				return err
			})
			if err != nil {
				return fmt.Errorf("award %s: %w", a.Key, err)
			}
			if blocked {
				continue
			}
			if ok {
				paid++
				if err := unblockAward(ctx, tx, a.Key); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("release awards of %s: %w", program, err)
	}
	return paid, nil
}

// ProgramsWaiting lists the programs with awards waiting for funds.
func (s *Store) ProgramsWaiting(ctx context.Context) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT DISTINCT program_id FROM network_awards WHERE status = 'insufficient_funds' ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("programs with waiting awards: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

const awardColumns = `id::text, award_key, program_id, participant_id, rule_id, rule_version, period, amount::text, currency, kind,
	status, coalesce(entry_id::text, ''), evidence, reached_at, created_at, posted_at`

func awardDest(a *Award) []any {
	return []any{&a.ID, &a.Key, &a.ProgramID, &a.ParticipantID, &a.RuleID, &a.RuleVersion, &a.Period, &amountText{&a.Amount},
		&a.Currency, &a.Kind, &a.Status, &a.EntryID, &a.Evidence, &a.ReachedAt, &a.CreatedAt, &a.PostedAt}
}

func scanAward(row pgx.Row) (Award, error) {
	var a Award
	err := row.Scan(awardDest(&a)...)
	return a, err
}

// amountText scans a numeric sent as text into a decimal.
type amountText struct{ d *decimal.Decimal }

func (t *amountText) Scan(src any) error {
	s, ok := src.(string)
	if !ok {
		return fmt.Errorf("amount: want text, got %T", src)
	}
	d, err := decimal.NewFromString(s)
	*t.d = d
	return err
}

// AwardFilter selects awards.
type AwardFilter struct {
	Participant, Coach, Program, Status string
	Limit                               int
}

// Awards lists awards, newest first.
func (s *Store) Awards(ctx context.Context, f AwardFilter) ([]Award, error) {
	rows, err := s.db.Query(ctx, `SELECT `+awardColumns+` FROM network_awards
		WHERE ($1 = '' OR participant_id = $1) AND ($2 = '' OR program_id = $2) AND ($3 = '' OR status = $3)
		  AND ($5 = '' OR participant_id IN (SELECT person_id FROM network_enrolments WHERE coach_id = $5))
		ORDER BY created_at DESC, id DESC LIMIT $4`, f.Participant, f.Program, f.Status, clamp(f.Limit, 100, 1000), f.Coach)
	if err != nil {
		return nil, fmt.Errorf("list awards: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Award, error) { return scanAward(r) })
}

func decimalOf(s string) decimal.Decimal { return decimal.RequireFromString(s) }
