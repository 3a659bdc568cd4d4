package network

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/ledger"
)

// snapshot is everything an evaluation of one participant reads, in one round trip.
type snapshot struct {
	facts    Facts // the participant's network; per program, enrolment and term are set by forProgram
	programs []programSnapshot
}

// programSnapshot is one of the participant's programs with its rules in force and the
// statuses of the participant's awards in it, by key.
type programSnapshot struct {
	enrolment Enrolment
	program   Program
	rules     []RuleVersion
	made      map[string]string
}

// forProgram is the facts a program's rules are evaluated on.
func (sn snapshot) forProgram(ps programSnapshot) Facts {
	f := sn.facts
	f.EnrolledAt, f.TermStart, f.TermEnd = ps.enrolment.EnrolledAt, ps.program.StartsOn.Time, ps.program.EndsOn.AddDate(0, 0, 1)
	return f
}

// loadSnapshot reads a participant's facts, programs, rules and awards in one pipelined
// batch. With lock, the programs are share-locked (see evaluateIn's reason) in id order.
// Retracted connections and conversations are left out.
func loadSnapshot(ctx context.Context, tx pgx.Tx, participant string, lock bool) (snapshot, error) {
	sn := snapshot{facts: Facts{Participant: participant}}
	lockClause := ""
	if lock {
		lockClause = " FOR SHARE OF pr"
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT coalesce(band, ''), network_has_consent(id) FROM network_people WHERE id = $1`, participant).
		QueryRow(func(row pgx.Row) error { return row.Scan(&sn.facts.Band, &sn.facts.Consent) })
	b.Queue(`SELECT pr.id, pr.name, pr.currency, pr.starts_on, pr.ends_on, pr.fund_account, pr.auto_approve_limit::text,
			pr.created_at, pr.created_by, e.program_id, e.person_id, coalesce(e.coach_id, ''), e.enrolled_at
		FROM network_enrolments e JOIN network_programs pr ON pr.id = e.program_id
		WHERE e.person_id = $1 ORDER BY pr.id`+lockClause, participant).
		Query(func(rows pgx.Rows) error {
			var ps programSnapshot
			var limit string
			_, err := pgx.ForEachRow(rows, []any{&ps.program.ID, &ps.program.Name, &ps.program.Currency, &ps.program.StartsOn.Time,
				&ps.program.EndsOn.Time, &ps.program.FundAccount, &limit, &ps.program.CreatedAt, &ps.program.CreatedBy,
				&ps.enrolment.ProgramID, &ps.enrolment.PersonID, &ps.enrolment.CoachID, &ps.enrolment.EnrolledAt}, func() error {
				ps.program.AutoApproveLimit = decimalOf(limit)
				ps.made = map[string]string{}
				sn.programs = append(sn.programs, ps)
				return nil
			})
			return err
		})
	type ruleRow struct {
		rv       RuleVersion
		currency string
	}
	var rules []ruleRow
	b.Queue(`SELECT r.program_id, r.rule_id, r.version, r.definition, r.active, r.created_at, r.created_by, pr.currency
		FROM (SELECT DISTINCT ON (program_id, rule_id) * FROM network_rules
		      WHERE program_id IN (SELECT program_id FROM network_enrolments WHERE person_id = $1)
		      ORDER BY program_id, rule_id, version DESC) r
		JOIN network_programs pr ON pr.id = r.program_id
		WHERE r.active ORDER BY r.program_id, r.rule_id`, participant).
		Query(func(rows pgx.Rows) error {
			var rr ruleRow
			var id string
			var def []byte
			_, err := pgx.ForEachRow(rows, []any{&rr.rv.ProgramID, &id, &rr.rv.Version, &def, &rr.rv.Active, &rr.rv.CreatedAt,
				&rr.rv.CreatedBy, &rr.currency}, func() error {
				r, err := ParseRule(def, rr.currency)
				if err != nil {
					return fmt.Errorf("stored rule %s/%s v%d no longer parses: %w", rr.rv.ProgramID, id, rr.rv.Version, err)
				}
				rr.rv.Rule = r
				rules = append(rules, rr)
				return nil
			})
			return err
		})
	b.Queue(`SELECT c.id, c.other_id, c.role, c.origin, c.started_on, e.ended_on, coalesce(o.band, '')
		FROM network_connections c JOIN network_people o ON o.id = c.other_id
		LEFT JOIN network_connection_ends e ON e.connection_id = c.id
		WHERE c.participant_id = $1 AND e.retracted IS NOT TRUE ORDER BY c.id`, participant).
		Query(func(rows pgx.Rows) (err error) {
			sn.facts.Connections, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ConnectionFact])
			return err
		})
	b.Queue(`SELECT v.id, v.connection_id, v.occurred_at, v.channel, v.minutes, v.resources, coalesce(r.action = 'verify', false)
		FROM network_connections c
		JOIN network_conversations v ON v.connection_id = c.id
		LEFT JOIN network_connection_ends e ON e.connection_id = c.id
		LEFT JOIN LATERAL (SELECT action FROM network_reviews WHERE conversation_id = v.id ORDER BY id DESC LIMIT 1) r ON true
		WHERE c.participant_id = $1 AND e.retracted IS NOT TRUE AND r.action IS DISTINCT FROM 'retract'`, participant).
		Query(func(rows pgx.Rows) (err error) {
			sn.facts.Conversations, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ConversationFact])
			return err
		})
	b.Queue(`SELECT r.connection_id, r.month, r.rater_id = c.participant_id, r.score::int
		FROM network_connections c
		JOIN network_ratings r ON r.connection_id = c.id
		LEFT JOIN network_connection_ends e ON e.connection_id = c.id
		WHERE c.participant_id = $1 AND e.retracted IS NOT TRUE`, participant).
		Query(func(rows pgx.Rows) (err error) {
			sn.facts.Ratings, err = pgx.CollectRows(rows, pgx.RowToStructByPos[RatingFact])
			return err
		})
	type madeRow struct{ program, key, status string }
	var made []madeRow
	b.Queue(`SELECT program_id, award_key, status FROM network_awards WHERE participant_id = $1`, participant).
		Query(func(rows pgx.Rows) error {
			var m madeRow
			_, err := pgx.ForEachRow(rows, []any{&m.program, &m.key, &m.status}, func() error { made = append(made, m); return nil })
			return err
		})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return snapshot{}, fmt.Errorf("%w: person %q", ErrNotFound, participant)
		}
		return snapshot{}, fmt.Errorf("facts of %s: %w", participant, err)
	}
	for i := range sn.programs {
		ps := &sn.programs[i]
		for _, rr := range rules {
			if rr.rv.ProgramID == ps.program.ID {
				ps.rules = append(ps.rules, rr.rv)
			}
		}
		for _, m := range made {
			if m.program == ps.program.ID {
				ps.made[m.key] = m.status
			}
		}
	}
	return sn, nil
}

// ProgramProgress is where a participant stands in one program: each rule in force, the
// awards made, and the wallet.
type ProgramProgress struct {
	Program     Program            `json:"program"`
	Consent     bool               `json:"consent"`
	Rules       []Progress         `json:"rules"`
	Awards      []Award            `json:"awards"`
	Wallet      ledger.Balance     `json:"wallet"`
	Metrics     ParticipantMetrics `json:"metrics"`
	EvaluatedAt time.Time          `json:"evaluated_at"`
}

// ParticipantProgress is a participant's progress in every program they are enrolled in.
type ParticipantProgress struct {
	Participant string            `json:"participant_id"`
	Programs    []ProgramProgress `json:"programs"`
}

// Progress evaluates the participant's rules now, without awarding anything: each rule met
// or not, the count so far and what is missing, with the awards already made.
func (s *Store) Progress(ctx context.Context, participant string) (ParticipantProgress, error) {
	out := ParticipantProgress{Participant: participant, Programs: []ProgramProgress{}}
	err := pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		sn, err := loadSnapshot(ctx, tx, participant, false)
		if err != nil {
			return err
		}
		now := s.now()
		for _, ps := range sn.programs {
			facts := sn.forProgram(ps)
			pp := ProgramProgress{Program: ps.program, Consent: facts.Consent, Rules: []Progress{}, EvaluatedAt: now,
				Metrics: MetricsOf(facts, now)}
			for _, rv := range ps.rules {
				pr := Evaluate(facts, rv.Rule, now)
				pr.Version = rv.Version
				pp.Rules = append(pp.Rules, pr)
			}
			rows, err := tx.Query(ctx, `SELECT `+awardColumns+` FROM network_awards WHERE program_id = $1 AND participant_id = $2
				ORDER BY created_at, id`, ps.program.ID, participant)
			if err != nil {
				return err
			}
			if pp.Awards, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Award, error) { return scanAward(r) }); err != nil {
				return err
			}
			// The wallet is read in the same snapshot as the awards, so the two agree.
			w, err := s.ledger.AccountTx(ctx, tx, WalletAccount(participant))
			if err != nil {
				return fmt.Errorf("wallet of %s: %w", participant, err)
			}
			pp.Wallet = w.Balance
			out.Programs = append(out.Programs, pp)
		}
		return nil
	})
	if err != nil {
		return ParticipantProgress{}, fmt.Errorf("progress of %s: %w", participant, err)
	}
	return out, nil
}
