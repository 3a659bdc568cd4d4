package network

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
)

var programID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

const programColumns = `id, name, currency, starts_on, ends_on, fund_account, auto_approve_limit, created_at, created_by`

func scanProgram(row pgx.Row) (Program, error) {
	var p Program
	var limit string
	err := row.Scan(&p.ID, &p.Name, &p.Currency, &p.StartsOn.Time, &p.EndsOn.Time, &p.FundAccount, &limit, &p.CreatedAt, &p.CreatedBy)
	if err != nil {
		return Program{}, err
	}
	p.AutoApproveLimit = decimalOf(limit)
	return p, nil
}

// Program returns a program.
func (s *Store) Program(ctx context.Context, id string) (Program, error) {
	return programTx(ctx, s.db, id)
}

func programTx(ctx context.Context, db access.DBTX, id string) (Program, error) {
	p, err := scanProgram(db.QueryRow(ctx, `SELECT `+programColumns+` FROM network_programs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Program{}, fmt.Errorf("%w: program %q", ErrNotFound, id)
	}
	return p, err
}

// Programs lists every program by id.
func (s *Store) Programs(ctx context.Context) ([]Program, error) {
	rows, err := s.db.Query(ctx, `SELECT `+programColumns+` FROM network_programs ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list programs: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Program, error) { return scanProgram(r) })
}

const personQuery = `SELECT p.id, p.name, p.interests, coalesce(p.band, ''), p.birth_date, p.tax_form, p.created_at,
	coalesce((SELECT json_agg(json_build_object('role', r.role, 'since', r.since) ORDER BY r.since, r.role)
	          FROM network_roles r WHERE r.person_id = p.id), '[]'),
	c.given, c.signed_by, c.guardian, c.signed_on, c.scope, c.recorded_at, c.recorded_by
	FROM network_people p
	LEFT JOIN LATERAL (SELECT * FROM network_consents WHERE person_id = p.id ORDER BY id DESC LIMIT 1) c ON true`

func scanPerson(row pgx.Row) (Person, error) {
	var p Person
	var birth *time.Time
	var given, guardian *bool
	var signedBy, scope, recordedBy *string
	var signedOn, recordedAt *time.Time
	if err := row.Scan(&p.ID, &p.Name, &p.Interests, &p.Band, &birth, &p.TaxForm, &p.CreatedAt, &p.Roles,
		&given, &signedBy, &guardian, &signedOn, &scope, &recordedAt, &recordedBy); err != nil {
		return Person{}, err
	}
	if birth != nil {
		p.BirthDate = &Date{*birth}
	}
	if given != nil {
		p.Consent = &Consent{Given: *given, SignedBy: *signedBy, Guardian: *guardian, SignedOn: Date{*signedOn},
			Scope: *scope, RecordedAt: *recordedAt, RecordedBy: *recordedBy}
	}
	return p, nil
}

// Person returns a person with their roles and consent in force.
func (s *Store) Person(ctx context.Context, id string) (Person, error) {
	return s.personTx(ctx, s.db, id)
}

func (s *Store) personTx(ctx context.Context, db access.DBTX, id string) (Person, error) {
	p, err := scanPerson(db.QueryRow(ctx, personQuery+` WHERE p.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Person{}, fmt.Errorf("%w: person %q", ErrNotFound, id)
	}
	return p, err
}

// PeopleFilter selects people: by role, by program enrolment, by coach; After is the last id
// of the previous page.
type PeopleFilter struct {
	Role, Program, Coach, After string
	Limit                       int
}

// People lists people by id.
func (s *Store) People(ctx context.Context, f PeopleFilter) ([]Person, error) {
	rows, err := s.db.Query(ctx, personQuery+`
		WHERE ($1 = '' OR EXISTS (SELECT 1 FROM network_roles r WHERE r.person_id = p.id AND r.role = $1))
		  AND ($2 = '' OR EXISTS (SELECT 1 FROM network_enrolments e WHERE e.person_id = p.id AND e.program_id = $2))
		  AND ($3 = '' OR EXISTS (SELECT 1 FROM network_enrolments e WHERE e.person_id = p.id AND e.coach_id = $3))
		  AND p.id > $4
		ORDER BY p.id LIMIT $5`, f.Role, f.Program, f.Coach, f.After, clamp(f.Limit, 100, 1000))
	if err != nil {
		return nil, fmt.Errorf("list people: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Person, error) { return scanPerson(r) })
}

// Enrolments lists the programs a person is enrolled in.
func (s *Store) Enrolments(ctx context.Context, person string) ([]Enrolment, error) {
	rows, err := s.db.Query(ctx, `SELECT program_id, person_id, coalesce(coach_id, ''), enrolled_at
		FROM network_enrolments WHERE person_id = $1 ORDER BY program_id`, person)
	if err != nil {
		return nil, fmt.Errorf("enrolments of %s: %w", person, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Enrolment])
}

// Coaches lists the coaches assigned to a participant in any program: the access policy lets
// them act for the participant.
func (s *Store) Coaches(ctx context.Context, participant string) ([]string, error) {
	rows, err := s.db.Query(ctx, `SELECT DISTINCT coach_id FROM network_enrolments WHERE person_id = $1 AND coach_id IS NOT NULL ORDER BY 1`, participant)
	if err != nil {
		return nil, fmt.Errorf("coaches of %s: %w", participant, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

const connectionQuery = `SELECT c.id::text, c.participant_id, c.other_id, c.role, c.origin, c.started_on,
	p.band IS NOT NULL AND o.band IS NOT NULL AND p.band <> o.band, e.ended_on, coalesce(e.retracted, false),
	coalesce(e.reason, ''), c.created_at, c.created_by
	FROM network_connections c
	JOIN network_people p ON p.id = c.participant_id
	JOIN network_people o ON o.id = c.other_id
	LEFT JOIN network_connection_ends e ON e.connection_id = c.id`

func scanConnection(row pgx.Row) (Connection, error) {
	var c Connection
	var cross bool
	var ended *time.Time
	if err := row.Scan(&c.ID, &c.ParticipantID, &c.OtherID, &c.Role, &c.Origin, &c.StartedOn.Time, &cross, &ended,
		&c.Retracted, &c.EndReason, &c.CreatedAt, &c.CreatedBy); err != nil {
		return Connection{}, err
	}
	c.CrossClass = &cross
	if ended != nil {
		c.EndedOn = &Date{*ended}
	}
	return c, nil
}

// Connection returns a connection.
func (s *Store) Connection(ctx context.Context, id string) (Connection, error) {
	cid, err := uuid.Parse(id)
	if err != nil {
		return Connection{}, fmt.Errorf("%w: connection %q", ErrNotFound, id)
	}
	return s.connectionTx(ctx, s.db, cid)
}

func (s *Store) connectionTx(ctx context.Context, db access.DBTX, id uuid.UUID) (Connection, error) {
	c, err := scanConnection(db.QueryRow(ctx, connectionQuery+` WHERE c.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Connection{}, fmt.Errorf("%w: connection %s", ErrNotFound, id)
	}
	return c, err
}

// ConnectionFilter selects connections: a participant's, or those of a coach's
// participants; After is the last id of the previous page.
type ConnectionFilter struct {
	Participant, Coach, After string
	Limit                     int
}

// Connections lists connections by creation.
func (s *Store) Connections(ctx context.Context, f ConnectionFilter) ([]Connection, error) {
	var a *uuid.UUID
	if f.After != "" {
		id, err := uuid.Parse(f.After)
		if err != nil {
			return nil, invalid("after", "%q is not a connection id", f.After)
		}
		a = &id
	}
	rows, err := s.db.Query(ctx, connectionQuery+` WHERE ($1 = '' OR c.participant_id = $1) AND ($2::uuid IS NULL OR c.id > $2)
		AND ($4 = '' OR c.participant_id IN (SELECT person_id FROM network_enrolments WHERE coach_id = $4))
		ORDER BY c.id LIMIT $3`, f.Participant, a, clamp(f.Limit, 100, 1000), f.Coach)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Connection, error) { return scanConnection(r) })
}

const conversationQuery = `SELECT v.id::text, v.connection_id::text, c.participant_id, c.other_id, c.role, v.occurred_at,
	v.channel, v.minutes, v.resources, v.note, v.reported_by, v.recorded_at,
	CASE r.action WHEN 'verify' THEN 'verified' WHEN 'retract' THEN 'retracted' ELSE 'unverified' END AS status,
	coalesce(r.reviewed_by, ''), r.reviewed_at
	FROM network_conversations v
	JOIN network_connections c ON c.id = v.connection_id
	LEFT JOIN LATERAL (SELECT action, reviewed_by, reviewed_at FROM network_reviews
	                   WHERE conversation_id = v.id ORDER BY id DESC LIMIT 1) r ON true`

func scanConversation(row pgx.Row) (Conversation, error) {
	var c Conversation
	err := row.Scan(&c.ID, &c.ConnectionID, &c.ParticipantID, &c.OtherID, &c.Role, &c.OccurredAt, &c.Channel, &c.Minutes,
		&c.Resources, &c.Note, &c.ReportedBy, &c.RecordedAt, &c.Status, &c.ReviewedBy, &c.ReviewedAt)
	return c, err
}

// Conversation returns a conversation with its current status.
func (s *Store) Conversation(ctx context.Context, id string) (Conversation, error) {
	cid, err := uuid.Parse(id)
	if err != nil {
		return Conversation{}, fmt.Errorf("%w: conversation %q", ErrNotFound, id)
	}
	return s.conversationTx(ctx, s.db, cid)
}

func (s *Store) conversationTx(ctx context.Context, db access.DBTX, id uuid.UUID) (Conversation, error) {
	c, err := scanConversation(db.QueryRow(ctx, conversationQuery+` WHERE v.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Conversation{}, fmt.Errorf("%w: conversation %s", ErrNotFound, id)
	}
	return c, err
}

// ConversationFilter selects conversations: a participant's, a coach's participants', or by
// status; After is the last id of the previous page (ids grow with time).
type ConversationFilter struct {
	Participant, Coach, Status, After string
	Limit                             int
}

// Conversations lists conversations, oldest first.
func (s *Store) Conversations(ctx context.Context, f ConversationFilter) ([]Conversation, error) {
	var a *uuid.UUID
	if f.After != "" {
		id, err := uuid.Parse(f.After)
		if err != nil {
			return nil, invalid("after", "%q is not a conversation id", f.After)
		}
		a = &id
	}
	if f.Status != "" && f.Status != "verified" && f.Status != "unverified" && f.Status != "retracted" {
		return nil, invalid("status", "%q: verified, unverified or retracted", f.Status)
	}
	rows, err := s.db.Query(ctx, `SELECT * FROM (`+conversationQuery+`
		WHERE ($1 = '' OR c.participant_id = $1)
		  AND ($2 = '' OR c.participant_id IN (SELECT person_id FROM network_enrolments WHERE coach_id = $2))
		  AND ($3::uuid IS NULL OR v.id > $3)) x
		WHERE ($4 = '' OR x.status = $4)
		ORDER BY x.id LIMIT $5`, f.Participant, f.Coach, a, f.Status, clamp(f.Limit, 100, 1000))
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Conversation, error) { return scanConversation(r) })
}

// clamp is a page size: def when none was asked for, never more than most.
func clamp(n, def, most int) int {
	if n <= 0 {
		return def
	}
	return min(n, most)
}

// ProgramTx reads a program on db (a transaction of another package, e.g. payouts).
func ProgramTx(ctx context.Context, db access.DBTX, id string) (Program, error) {
	return programTx(ctx, db, id)
}
