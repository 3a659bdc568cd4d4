package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
)

// RuleVersion is one stored version of a program's rule. Awards point at the version that
// paid them.
type RuleVersion struct {
	ProgramID string    `json:"program_id"`
	Rule      Rule      `json:"rule"`
	Version   int       `json:"version"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// SaveRule validates a rule (ParseRule) and stores it as the next version of its id in
// program. Saving a rule identical to the version in force changes nothing (created false).
// A new or changed rule can make awards due to anyone enrolled, so every participant of the
// program is evaluated.
func (s *Store) SaveRule(ctx context.Context, by By, program string, definition []byte) (rv RuleVersion, created bool, err error) {
	p, err := s.Program(ctx, program)
	if err != nil {
		return RuleVersion{}, false, err
	}
	r, err := ParseRule(definition, p.Currency)
	if err != nil {
		return RuleVersion{}, false, err
	}
	return s.storeRule(ctx, by, p, r, true, "")
}

// RetireRule takes a rule out of force by storing a new, inactive version of it. Awards made
// under earlier versions stand.
func (s *Store) RetireRule(ctx context.Context, by By, program, id, reason string) (RuleVersion, error) {
	if strings.TrimSpace(reason) == "" || len(reason) > 500 {
		return RuleVersion{}, invalid("reason", "required (why the rule is retired), at most 500 characters")
	}
	p, err := s.Program(ctx, program)
	if err != nil {
		return RuleVersion{}, err
	}
	cur, err := s.Rule(ctx, program, id)
	if err != nil {
		return RuleVersion{}, err
	}
	rv, _, err := s.storeRule(ctx, by, p, cur.Rule, false, reason)
	return rv, err
}

func (s *Store) storeRule(ctx context.Context, by By, p Program, r Rule, active bool, reason string) (rv RuleVersion, created bool, err error) {
	def, err := json.Marshal(r)
	if err != nil {
		return RuleVersion{}, false, err
	}
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		// One version at a time per rule: concurrent saves of a rule queue up here instead
		// of failing on the version number. An advisory lock, not the program's row, which
		// evaluations share-lock while they hold their participant's (a deadlock otherwise).
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('network_rules'), hashtext($1))`, p.ID+"/"+r.ID); err != nil {
			return access.Event{}, err
		}
		prev, err := ruleTx(ctx, tx, p.ID, r.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			if !active {
				return access.Event{}, err
			}
		case err != nil:
			return access.Event{}, err
		default:
			prevDef, _ := json.Marshal(prev.Rule)
			if prev.Active == active && jsonEqual(prevDef, def) {
				rv = prev
				return access.Event{}, nil
			}
			// Awards are keyed by period, and how periods are named follows repeat and the
			// cap: changing them would pay the same evidence again under new periods.
			if prev.Rule.Repeat != r.Repeat || capPer(prev.Rule) != capPer(r) {
				return access.Event{}, invalid("repeat", "rule %s pays %s (cap per %q); changing how it repeats would pay past milestones again: retire it and save a rule with a new id",
					r.ID, prev.Rule.Repeat, capPer(prev.Rule))
			}
		}
		if err := tx.QueryRow(ctx, `INSERT INTO network_rules (program_id, rule_id, version, definition, active, created_by)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING version, created_at`, p.ID, r.ID, prev.Version+1, def, active, actorName(by)).
			Scan(&rv.Version, &rv.CreatedAt); err != nil {
			return access.Event{}, translate(err)
		}
		rv.ProgramID, rv.Rule, rv.Active, rv.CreatedBy, created = p.ID, r, active, actorName(by), true
		if active {
			if err := s.evaluateProgramTx(ctx, tx, p.ID); err != nil {
				return access.Event{}, err
			}
		}
		action := "network.rule.save"
		if !active {
			action = "network.rule.retire"
		}
		var before any
		if prev.Version > 0 {
			before = prev
		}
		return access.Event{Action: action, Record: "rule:" + p.ID + "/" + r.ID, Before: before, After: rv, Detail: reason}, nil
	})
	return rv, created, err
}

func capPer(r Rule) string {
	if r.Cap == nil {
		return ""
	}
	return r.Cap.Per
}

// evaluateProgramTx asks for the evaluation of every participant of program.
func (s *Store) evaluateProgramTx(ctx context.Context, tx pgx.Tx, program string) error {
	rows, err := tx.Query(ctx, `SELECT person_id FROM network_enrolments WHERE program_id = $1`, program)
	if err != nil {
		return err
	}
	people, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(people) == 0 {
		return err
	}
	evals, err := lockFacts(ctx, tx, people...)
	if err != nil {
		return err
	}
	return s.jobs.EvaluateTx(ctx, tx, evals)
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

const ruleColumns = `program_id, rule_id, version, definition, active, created_at, created_by`

func scanRule(row pgx.Row, currency string) (RuleVersion, error) {
	var rv RuleVersion
	var id string
	var def []byte
	if err := row.Scan(&rv.ProgramID, &id, &rv.Version, &def, &rv.Active, &rv.CreatedAt, &rv.CreatedBy); err != nil {
		return RuleVersion{}, err
	}
	r, err := ParseRule(def, currency)
	if err != nil {
		return RuleVersion{}, fmt.Errorf("stored rule %s/%s v%d no longer parses: %w", rv.ProgramID, id, rv.Version, err)
	}
	rv.Rule = r
	return rv, nil
}

// Rule returns the latest version of a rule (which may be retired).
func (s *Store) Rule(ctx context.Context, program, id string) (RuleVersion, error) {
	return ruleTx(ctx, s.db, program, id)
}

func ruleTx(ctx context.Context, db access.DBTX, program, id string) (RuleVersion, error) {
	p, err := programTx(ctx, db, program)
	if err != nil {
		return RuleVersion{}, err
	}
	rv, err := scanRule(db.QueryRow(ctx, `SELECT `+ruleColumns+` FROM network_rules WHERE program_id = $1 AND rule_id = $2
		ORDER BY version DESC LIMIT 1`, program, id), p.Currency)
	if errors.Is(err, pgx.ErrNoRows) {
		return RuleVersion{}, fmt.Errorf("%w: rule %q in program %q", ErrNotFound, id, program)
	}
	return rv, err
}

// Rules lists the latest version of each rule of program; retired rules only with all.
func (s *Store) Rules(ctx context.Context, program string, all bool) ([]RuleVersion, error) {
	return rulesTx(ctx, s.db, program, all)
}

func rulesTx(ctx context.Context, db access.DBTX, program string, all bool) ([]RuleVersion, error) {
	p, err := programTx(ctx, db, program)
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT * FROM (SELECT DISTINCT ON (rule_id) `+ruleColumns+` FROM network_rules
		WHERE program_id = $1 ORDER BY rule_id, version DESC) r WHERE $2 OR active ORDER BY rule_id`, program, all)
	if err != nil {
		return nil, fmt.Errorf("rules of %s: %w", program, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RuleVersion, error) { return scanRule(r, p.Currency) })
}

// RuleVersions lists every version of a rule, oldest first.
func (s *Store) RuleVersions(ctx context.Context, program, id string) ([]RuleVersion, error) {
	p, err := s.Program(ctx, program)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT `+ruleColumns+` FROM network_rules WHERE program_id = $1 AND rule_id = $2 ORDER BY version`, program, id)
	if err != nil {
		return nil, fmt.Errorf("versions of rule %s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RuleVersion, error) { return scanRule(r, p.Currency) })
	if err == nil && len(out) == 0 {
		return nil, fmt.Errorf("%w: rule %q in program %q", ErrNotFound, id, program)
	}
	return out, err
}
