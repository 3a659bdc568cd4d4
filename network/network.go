// Package network keeps the network participants build (DESIGN.md §5) — people, consent,
// enrolments, connections, conversations with the resources they carried, relationship
// ratings — and the milestone rules programs declare (§6), and turns a reached milestone into
// an award: an entry from the program's fund to the participant's wallet.
//
// Every fact that can change a participant's outcome asks, in its own transaction, for that
// participant's milestones to be evaluated (Config.Jobs). Evaluation (EvaluateParticipant) is
// a pure function of the facts and the rule (Evaluate) followed by an award step keyed by
// (program, participant, rule, period), so evaluating twice, or in two workers at once,
// awards once.
//
// Facts are corrected by new facts — a conversation's verification withdrawn, a conversation
// or connection retracted — never edited; every change has its line in the audit trail.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
)

// Errors callers can test with errors.Is; each is wrapped with the detail of the case.
var (
	// ErrInvalid: a malformed request (a missing field, an unknown role, a bad rule).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: no such program, person, connection, conversation or rule.
	ErrNotFound = errors.New("not found")
	// ErrExists: a program, person, enrolment or connection that already exists differently.
	ErrExists = errors.New("already exists")
	// ErrNoConsent: the person has no consent on file, so nothing beyond enrolment can be
	// recorded about them and no award can be made.
	ErrNoConsent = errors.New("no consent on file")
	// ErrRetracted: the conversation or connection was retracted; it takes no new facts.
	ErrRetracted = errors.New("retracted")
	// ErrFourEyes: a person on a connection may not verify its conversations — that would
	// let two people release money between them.
	ErrFourEyes = errors.New("four eyes")
	// ErrIdempotencyConflict: an idempotency key reused for a different conversation.
	ErrIdempotencyConflict = errors.New("idempotency key reused with different content")
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// constraintErrors maps the database's refusals (migrations/003_network.sql) to errors.
var constraintErrors = map[string]error{
	"network_consent_required":         ErrNoConsent,
	"network_consent_minor":            ErrInvalid,
	"network_connection_retracted":     ErrRetracted,
	"network_conversation_retracted":   ErrRetracted,
	"network_rating_side":              ErrInvalid,
	"network_connection_participant":   ErrInvalid,
	"network_connections_unique":       ErrExists,
	"network_programs_pkey":            ErrExists,
	"network_people_pkey":              ErrExists,
	"network_enrolments_pkey":          ErrExists,
	"network_ratings_pkey":             ErrExists,
	"network_connection_ends_pkey":     ErrExists,
	"network_conversations_not_future": ErrInvalid,
	"network_conversation_dates":       ErrInvalid,
	"network_connection_end_date":      ErrInvalid,
	"network_enrolments_coach":         ErrInvalid,
}

// translate turns a database refusal into one of the errors above, keeping its message.
func translate(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if kind, ok := constraintErrors[pg.ConstraintName]; ok {
			return fmt.Errorf("%w: %s", kind, pg.Message)
		}
		if pg.Code == "23503" { // foreign_key_violation
			return fmt.Errorf("%w: %s", ErrNotFound, pg.Detail)
		}
	}
	return err
}

// Jobs is how the network asks for background work inside the transaction of the fact that
// needs it, so that the work is asked for exactly when the fact commits. The jobs package
// implements it with River.
type Jobs interface {
	// EvaluateTx asks for the milestones of each participant to be evaluated.
	EvaluateTx(ctx context.Context, tx pgx.Tx, evals []Evaluation) error
	// ReleaseTx asks for the awards of program waiting for funds to be paid again.
	ReleaseTx(ctx context.Context, tx pgx.Tx, program string) error
}

// Evaluation asks for one participant's milestones to be evaluated. Gen is the participant's
// evaluation generation, read under a share lock by the fact that asks: see lockFacts.
type Evaluation struct {
	Participant string `json:"participant"`
	Gen         int64  `json:"gen"`
}

// AwardHook is called in an award's transaction when an award is made (paid or waiting for
// funds) and when a waiting award is paid: the payouts package creates or advances the
// award's disbursement there (DESIGN.md §7).
type AwardHook func(ctx context.Context, tx pgx.Tx, a Award, p Program) error

// Config wires a Store.
type Config struct {
	Ledger *ledger.Ledger
	// Jobs is required: without it facts could not ask for their evaluation.
	Jobs Jobs
	// OnAward hands awards to the payouts package; nil in tests of the network alone.
	OnAward AwardHook
	Logger  *slog.Logger
	// Now is the clock (default time.Now); tests set it.
	Now func() time.Time
}

// Store records the network and evaluates milestones.
type Store struct {
	db      *pgxpool.Pool
	ledger  *ledger.Ledger
	jobs    Jobs
	onAward AwardHook
	logger  *slog.Logger
	now     func() time.Time
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if cfg.Ledger == nil || cfg.Jobs == nil {
		return nil, errors.New("network: Config.Ledger and Config.Jobs are required")
	}
	s := &Store{db: pool, ledger: cfg.Ledger, jobs: cfg.Jobs, onAward: cfg.OnAward, logger: cfg.Logger, now: cfg.Now}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// By is who makes a change, for the audit trail and the conversation's reporter.
type By struct {
	access.Principal
	RequestID string
}

// apply runs fn in one transaction with its audit line (access.Apply).
func (s *Store) apply(ctx context.Context, by By, fn func(tx pgx.Tx) (access.Event, error)) error {
	err := access.Apply(ctx, s.db, by.Principal, by.RequestID, fn)
	return translate(err)
}

// Date is a calendar date, written "2006-01-02" in JSON.
type Date struct{ time.Time }

// ParseDate reads "2006-01-02".
func ParseDate(field, s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return Date{}, invalid(field, "%q is not a date like 2026-09-01", s)
	}
	return Date{t}, nil
}

// MarshalJSON writes the date.
func (d Date) MarshalJSON() ([]byte, error) {
	if d.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(d.Format(time.DateOnly))
}

// UnmarshalJSON reads "2006-01-02".
func (d *Date) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return invalid("date", "%s is not a date string like \"2026-09-01\"", b)
	}
	v, err := ParseDate("date", s)
	*d = v
	return err
}

// Program is a program with its fund and approval policy.
type Program struct {
	ID               string          `json:"id"`
	Name             string          `json:"name"`
	Currency         string          `json:"currency"`
	StartsOn         Date            `json:"starts_on"`
	EndsOn           Date            `json:"ends_on"`
	FundAccount      string          `json:"fund_account"`
	AutoApproveLimit decimal.Decimal `json:"auto_approve_limit"`
	CreatedAt        time.Time       `json:"created_at"`
	CreatedBy        string          `json:"created_by"`
}

// MarshalJSON writes the auto-approve limit with the currency's places ("100.00").
func (p Program) MarshalJSON() ([]byte, error) {
	type plain Program
	return json.Marshal(struct {
		plain
		AutoApproveLimit string `json:"auto_approve_limit"`
	}{plain(p), ledger.FormatAmount(p.AutoApproveLimit, p.Currency)})
}

// Person is someone in the network. Band is sensitive: the API shows it to admins and
// auditors only.
type Person struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Roles     []Role    `json:"roles"`
	Interests []string  `json:"interests"`
	Band      string    `json:"band,omitempty"`
	BirthDate *Date     `json:"birth_date,omitempty"`
	TaxForm   bool      `json:"tax_form_on_file"`
	Consent   *Consent  `json:"consent,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Role is one of a person's roles, since when.
type Role struct {
	Role  string    `json:"role"`
	Since time.Time `json:"since"`
}

// PersonRoles are the roles a person may have.
var PersonRoles = []string{"participant", "coach", "mentor", "professional", "peer"}

// Consent is a person's consent record (the latest one is in force).
type Consent struct {
	Given      bool      `json:"given"`
	SignedBy   string    `json:"signed_by"`
	Guardian   bool      `json:"guardian"`
	SignedOn   Date      `json:"signed_on"`
	Scope      string    `json:"scope"`
	RecordedAt time.Time `json:"recorded_at"`
	RecordedBy string    `json:"recorded_by"`
}

// Enrolment is a participant in a program.
type Enrolment struct {
	ProgramID  string    `json:"program_id"`
	PersonID   string    `json:"person_id"`
	CoachID    string    `json:"coach_id,omitempty"`
	EnrolledAt time.Time `json:"enrolled_at"`
}

// Connection is a participant's relationship with another person.
type Connection struct {
	ID            string    `json:"id"`
	ParticipantID string    `json:"participant_id"`
	OtherID       string    `json:"other_id"`
	Role          string    `json:"role"`
	Origin        string    `json:"origin"`
	StartedOn     Date      `json:"started_on"`
	CrossClass    *bool     `json:"cross_class,omitempty"` // admins and auditors only: it reveals bands
	EndedOn       *Date     `json:"ended_on,omitempty"`
	Retracted     bool      `json:"retracted,omitempty"`
	EndReason     string    `json:"end_reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	CreatedBy     string    `json:"created_by"`
}

// Conversation is an interaction on a connection.
type Conversation struct {
	ID            string    `json:"id"`
	ConnectionID  string    `json:"connection_id"`
	ParticipantID string    `json:"participant_id"`
	OtherID       string    `json:"other_id"`
	Role          string    `json:"role"`
	OccurredAt    time.Time `json:"occurred_at"`
	Channel       string    `json:"channel"`
	Minutes       int       `json:"minutes"`
	Resources     []string  `json:"resources"`
	Note          string    `json:"note,omitempty"`
	ReportedBy    string    `json:"reported_by"`
	RecordedAt    time.Time `json:"recorded_at"`
	// Status is unverified, verified or retracted: the latest review decides.
	Status     string     `json:"status"`
	ReviewedBy string     `json:"reviewed_by,omitempty"`
	ReviewedAt *time.Time `json:"reviewed_at,omitempty"`
	Replayed   bool       `json:"replayed,omitempty"`
}

// Award is a rule reached for a period.
type Award struct {
	ID            string          `json:"id"`
	Key           string          `json:"award_key"`
	ProgramID     string          `json:"program_id"`
	ParticipantID string          `json:"participant_id"`
	RuleID        string          `json:"rule_id"`
	RuleVersion   int             `json:"rule_version"`
	Period        string          `json:"period"`
	Amount        decimal.Decimal `json:"amount"`
	Currency      string          `json:"currency"`
	Kind          string          `json:"kind"`
	// Status is posted (the wallet was credited) or insufficient_funds (waiting for the
	// program to be funded).
	Status    string          `json:"status"`
	EntryID   string          `json:"entry_id,omitempty"`
	Evidence  json.RawMessage `json:"evidence"`
	ReachedAt time.Time       `json:"reached_at"`
	CreatedAt time.Time       `json:"created_at"`
	PostedAt  *time.Time      `json:"posted_at,omitempty"`
}

// MarshalJSON writes the amount with its currency's places.
func (a Award) MarshalJSON() ([]byte, error) {
	type plain Award
	return json.Marshal(struct {
		plain
		Amount string `json:"amount"`
	}{plain(a), ledger.FormatAmount(a.Amount, a.Currency)})
}

// Award statuses.
const (
	AwardPosted            = "posted"
	AwardInsufficientFunds = "insufficient_funds"
)

// WalletAccount is the ledger account of a participant's wallet (DESIGN.md §4).
func WalletAccount(person string) string { return "participant/" + person + "/wallet" }

// CashAccount is the organisation's cash at the payout provider in currency: DESIGN.md §4's
// org/cash/stripe for USD, and org/cash/stripe/<currency> for any other.
func CashAccount(currency string) string {
	if currency == "USD" {
		return "org/cash/stripe"
	}
	return "org/cash/stripe/" + strings.ToLower(currency)
}

// AwardKey is the key of an award and the idempotency key of the entry that pays it.
func AwardKey(program, participant, rule, period string) string {
	return "award:" + program + ":" + participant + ":" + rule + ":" + period
}

// actorName is how a change's author is written in network records.
func actorName(by By) string { return by.Subject() }

// CoachWalletAccount is a coach's wallet (DESIGN.md §4): stipends are paid into it.
func CoachWalletAccount(person string) string { return "coach/" + person + "/wallet" }
