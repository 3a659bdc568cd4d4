package network

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
)

// loadFacts reads what the participant's rules in program p are evaluated on.
func loadFacts(ctx context.Context, db access.DBTX, e Enrolment, p Program) (Facts, error) {
	f := Facts{Participant: e.PersonID, EnrolledAt: e.EnrolledAt, TermStart: p.StartsOn.Time, TermEnd: p.EndsOn.AddDate(0, 0, 1)}
	if err := db.QueryRow(ctx, `SELECT coalesce(band, ''), network_has_consent(id) FROM network_people WHERE id = $1`, e.PersonID).
		Scan(&f.Band, &f.Consent); err != nil {
		return Facts{}, fmt.Errorf("facts of %s: %w", e.PersonID, err)
	}
	rows, err := db.Query(ctx, `SELECT c.id, c.other_id, c.role, c.origin, c.started_on, e.ended_on, coalesce(o.band, '')
		FROM network_connections c JOIN network_people o ON o.id = c.other_id
		LEFT JOIN network_connection_ends e ON e.connection_id = c.id
		WHERE c.participant_id = $1 AND e.retracted IS NOT TRUE ORDER BY c.id`, e.PersonID)
	if err != nil {
		return Facts{}, fmt.Errorf("connections of %s: %w", e.PersonID, err)
	}
	if f.Connections, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ConnectionFact]); err != nil {
		return Facts{}, fmt.Errorf("connections of %s: %w", e.PersonID, err)
	}
	rows, err = db.Query(ctx, `SELECT v.id, v.connection_id, v.occurred_at, v.channel, v.minutes, v.resources,
		coalesce(r.action = 'verify', false)
		FROM network_connections c
		JOIN network_conversations v ON v.connection_id = c.id
		LEFT JOIN network_connection_ends e ON e.connection_id = c.id
		LEFT JOIN LATERAL (SELECT action FROM network_reviews WHERE conversation_id = v.id ORDER BY id DESC LIMIT 1) r ON true
		WHERE c.participant_id = $1 AND e.retracted IS NOT TRUE AND r.action IS DISTINCT FROM 'retract'`, e.PersonID)
	if err != nil {
		return Facts{}, fmt.Errorf("conversations of %s: %w", e.PersonID, err)
	}
	if f.Conversations, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ConversationFact]); err != nil {
		return Facts{}, fmt.Errorf("conversations of %s: %w", e.PersonID, err)
	}
	rows, err = db.Query(ctx, `SELECT r.connection_id, r.month, r.rater_id = c.participant_id, r.score::int
		FROM network_connections c
		JOIN network_ratings r ON r.connection_id = c.id
		LEFT JOIN network_connection_ends e ON e.connection_id = c.id
		WHERE c.participant_id = $1 AND e.retracted IS NOT TRUE`, e.PersonID)
	if err != nil {
		return Facts{}, fmt.Errorf("ratings of %s: %w", e.PersonID, err)
	}
	if f.Ratings, err = pgx.CollectRows(rows, pgx.RowToStructByPos[RatingFact]); err != nil {
		return Facts{}, fmt.Errorf("ratings of %s: %w", e.PersonID, err)
	}
	return f, nil
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
		if err := requirePerson(ctx, tx, participant); err != nil {
			return err
		}
		enrolments, err := enrolmentsTx(ctx, tx, participant)
		if err != nil {
			return err
		}
		now := s.now()
		for _, e := range enrolments {
			p, err := programTx(ctx, tx, e.ProgramID)
			if err != nil {
				return err
			}
			facts, err := loadFacts(ctx, tx, e, p)
			if err != nil {
				return err
			}
			rules, err := rulesTx(ctx, tx, p.ID, false)
			if err != nil {
				return err
			}
			pp := ProgramProgress{Program: p, Consent: facts.Consent, Rules: []Progress{}, EvaluatedAt: now,
				Metrics: MetricsOf(facts, now)}
			for _, rv := range rules {
				pr := Evaluate(facts, rv.Rule, now)
				pr.Version = rv.Version
				pp.Rules = append(pp.Rules, pr)
			}
			rows, err := tx.Query(ctx, `SELECT `+awardColumns+` FROM network_awards WHERE program_id = $1 AND participant_id = $2
				ORDER BY created_at, id`, p.ID, participant)
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
