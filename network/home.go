package network

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reads for the people's pages (a participant's home, a coach's list): each answers a whole
// page section in one query, whatever the number of rows.

// Names returns the names of the people with the given ids, by id; unknown ids are left out.
func (s *Store) Names(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.db.Query(ctx, `SELECT id, name FROM network_people WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("names: %w", err)
	}
	var id, name string
	_, err = pgx.ForEachRow(rows, []any{&id, &name}, func() error { out[id] = name; return nil })
	if err != nil {
		return nil, fmt.Errorf("names: %w", err)
	}
	return out, nil
}

// RecentConversations lists a participant's latest conversations, newest first (by when they
// happened), retracted ones included with their status; at most limit (default 10, at most 100).
func (s *Store) RecentConversations(ctx context.Context, participant string, limit int) ([]Conversation, error) {
	rows, err := s.db.Query(ctx, conversationQuery+` WHERE c.participant_id = $1 ORDER BY v.occurred_at DESC, v.id DESC LIMIT $2`,
		participant, clamp(limit, 10, 100))
	if err != nil {
		return nil, fmt.Errorf("recent conversations of %s: %w", participant, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Conversation, error) { return scanConversation(r) })
}

// RosterLine is one participant a coach is assigned to, in one program, summed up: the
// milestones reached, the conversations (retracted ones and those on retracted connections
// left out) and the latest one.
type RosterLine struct {
	ParticipantID   string
	ParticipantName string
	ProgramID       string
	ProgramName     string
	// Rules is the number of milestone rules in force in the program; Reached the number of
	// them the participant was awarded at least once (paid or waiting for funds). Awards
	// under rules turned off since are not counted: Reached never exceeds Rules.
	Rules, Reached int
	// Verified and Awaiting count the participant's conversations in every program:
	// Awaiting are those not verified (yet).
	Verified, Awaiting int
	// Last is the latest conversation, nil when there is none.
	Last *RosterConversation
}

// RosterConversation is a participant's latest conversation on a coach's list.
type RosterConversation struct {
	OccurredAt time.Time
	OtherName  string
	Role       string
	Status     string // unverified, verified or retracted
}

// Roster lists the participants assigned to coach, by name, one line per program they are
// assigned in.
func (s *Store) Roster(ctx context.Context, coach string) ([]RosterLine, error) {
	rows, err := s.db.Query(ctx, `SELECT e.person_id, p.name, e.program_id, pr.name,
		(SELECT count(*) FROM (SELECT DISTINCT ON (rule_id) active FROM network_rules WHERE program_id = e.program_id
		                       ORDER BY rule_id, version DESC) r WHERE r.active),
		(SELECT count(DISTINCT a.rule_id) FROM network_awards a
		 JOIN (SELECT DISTINCT ON (rule_id) rule_id, active FROM network_rules WHERE program_id = e.program_id
		       ORDER BY rule_id, version DESC) r ON r.rule_id = a.rule_id AND r.active
		 WHERE a.program_id = e.program_id AND a.participant_id = e.person_id),
		coalesce(cv.verified, 0), coalesce(cv.awaiting, 0),
		lc.occurred_at, coalesce(lc.other_name, ''), coalesce(lc.role, ''), coalesce(lc.status, '')
		FROM network_enrolments e
		JOIN network_people p ON p.id = e.person_id
		JOIN network_programs pr ON pr.id = e.program_id
		LEFT JOIN LATERAL (
			SELECT count(*) FILTER (WHERE r.action = 'verify') AS verified,
			       count(*) FILTER (WHERE r.action IS NULL OR r.action = 'unverify') AS awaiting
			FROM network_connections c
			JOIN network_conversations v ON v.connection_id = c.id
			LEFT JOIN network_connection_ends ce ON ce.connection_id = c.id
			LEFT JOIN LATERAL (SELECT action FROM network_reviews WHERE conversation_id = v.id ORDER BY id DESC LIMIT 1) r ON true
			WHERE c.participant_id = e.person_id AND ce.retracted IS NOT TRUE) cv ON true
		LEFT JOIN LATERAL (
			SELECT v.occurred_at, o.name AS other_name, c.role,
			       CASE r.action WHEN 'verify' THEN 'verified' WHEN 'retract' THEN 'retracted' ELSE 'unverified' END AS status
			FROM network_connections c
			JOIN network_conversations v ON v.connection_id = c.id
			JOIN network_people o ON o.id = c.other_id
			LEFT JOIN LATERAL (SELECT action FROM network_reviews WHERE conversation_id = v.id ORDER BY id DESC LIMIT 1) r ON true
			WHERE c.participant_id = e.person_id
			ORDER BY v.occurred_at DESC, v.id DESC LIMIT 1) lc ON true
		WHERE e.coach_id = $1
		ORDER BY p.name, e.person_id, e.program_id LIMIT 1000`, coach)
	if err != nil {
		return nil, fmt.Errorf("participants of coach %s: %w", coach, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RosterLine, error) {
		var l RosterLine
		var at *time.Time
		var lc RosterConversation
		err := r.Scan(&l.ParticipantID, &l.ParticipantName, &l.ProgramID, &l.ProgramName, &l.Rules, &l.Reached,
			&l.Verified, &l.Awaiting, &at, &lc.OtherName, &lc.Role, &lc.Status)
		if at != nil {
			lc.OccurredAt = *at
			l.Last = &lc
		}
		return l, err
	})
}

// RulesInForce returns the rules in force in every program participant is enrolled in, by
// program id and rule id, in one query: what a page needs to put a rule's progress in words.
func (s *Store) RulesInForce(ctx context.Context, participant string) (map[string]map[string]Rule, error) {
	rows, err := s.db.Query(ctx, `SELECT r.program_id, r.rule_id, r.version, r.definition, pr.currency
		FROM (SELECT DISTINCT ON (program_id, rule_id) * FROM network_rules
		      WHERE program_id IN (SELECT program_id FROM network_enrolments WHERE person_id = $1)
		      ORDER BY program_id, rule_id, version DESC) r
		JOIN network_programs pr ON pr.id = r.program_id
		WHERE r.active`, participant)
	if err != nil {
		return nil, fmt.Errorf("rules of %s: %w", participant, err)
	}
	out := map[string]map[string]Rule{}
	var program, id, currency string
	var version int
	var def []byte
	_, err = pgx.ForEachRow(rows, []any{&program, &id, &version, &def, &currency}, func() error {
		r, err := ParseRule(def, currency)
		if err != nil {
			return fmt.Errorf("stored rule %s/%s v%d no longer parses: %w", program, id, version, err)
		}
		if out[program] == nil {
			out[program] = map[string]Rule{}
		}
		out[program][id] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rules of %s: %w", participant, err)
	}
	return out, nil
}

// Noun says what a rule counts, in the words its progress uses ("verified mentor
// conversations", "consecutive months rated 7 or more by both sides").
func Noun(r Rule) string {
	_, noun := countItems(Facts{}, r)
	return noun
}

// RevealsBand reports whether r's progress depends on the socio-economic band of the people a
// participant is connected with (or on the participant's own): economic connectedness, or a
// count narrowed by cross_class or other_band. Bands are for admins and auditors only
// (DESIGN.md §5), so participants and coaches see no count of such a rule, only its awards.
func RevealsBand(r Rule) bool {
	return r.Count == CountEconomicConnectedess || r.Where.CrossClass || r.Where.OtherBand != ""
}

// BandRules returns, by program and rule id, the rules of the programs participant is
// enrolled in that reveal bands (RevealsBand) in any of their versions, retired ones
// included: an award made under an old version carries that version's evidence. A stored
// definition that cannot be read counts as revealing.
func (s *Store) BandRules(ctx context.Context, participant string) (map[string]map[string]bool, error) {
	rows, err := s.db.Query(ctx, `SELECT program_id, rule_id, definition FROM network_rules
		WHERE program_id IN (SELECT program_id FROM network_enrolments WHERE person_id = $1)`, participant)
	if err != nil {
		return nil, fmt.Errorf("band rules of %s: %w", participant, err)
	}
	out := map[string]map[string]bool{}
	var program, id string
	var def []byte
	_, err = pgx.ForEachRow(rows, []any{&program, &id, &def}, func() error {
		var r Rule
		if json.Unmarshal(def, &struct {
			Count *string `json:"count"`
			Where *Where  `json:"where"`
		}{&r.Count, &r.Where}) == nil && !RevealsBand(r) {
			return nil
		}
		if out[program] == nil {
			out[program] = map[string]bool{}
		}
		out[program][id] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("band rules of %s: %w", participant, err)
	}
	return out, nil
}

// CoachQueue lists the conversations of coach's participants that await verification,
// oldest first (by when they were logged), in two lists of at most limit each (default 100,
// at most 1000): those coach may verify, and those coach took part in, which another coach
// or an admin verifies (four eyes). Each list is bounded on its own, so that conversations
// the coach cannot verify never push out those they can.
func (s *Store) CoachQueue(ctx context.Context, coach string, limit int) (verify, party []Conversation, err error) {
	list := func(asParty bool) ([]Conversation, error) {
		rows, err := s.db.Query(ctx, `SELECT * FROM (`+conversationQuery+`
			WHERE c.participant_id IN (SELECT person_id FROM network_enrolments WHERE coach_id = $1)
			  AND (c.participant_id = $1 OR c.other_id = $1) = $2) x
			WHERE x.status = 'unverified'
			ORDER BY x.id LIMIT $3`, coach, asParty, clamp(limit, 100, 1000))
		if err != nil {
			return nil, fmt.Errorf("conversations awaiting coach %s: %w", coach, err)
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Conversation, error) { return scanConversation(r) })
	}
	if verify, err = list(false); err != nil {
		return nil, nil, err
	}
	if party, err = list(true); err != nil {
		return nil, nil, err
	}
	return verify, party, nil
}
