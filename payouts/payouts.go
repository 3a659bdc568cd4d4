// Package payouts keeps disbursements (DESIGN.md §7): the money a person is owed on its way
// out of Tandem, with every state it took, who moved it there, when and why.
//
// So far it receives awards from the network (OnAward): an award paid into a wallet becomes
// a disbursement that is approved (within the program's auto-approve limit) or awaits an
// admin's approval; an award the fund could not cover waits as insufficient_funds and moves
// on when it is paid. Submitting payouts to providers comes next (issue 5).
package payouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

// Disbursement states (DESIGN.md §7).
const (
	AwaitingApproval  = "awaiting_approval"
	Approved          = "approved"
	Submitted         = "submitted"
	Paid              = "paid"
	Rejected          = "rejected"
	Canceled          = "canceled"
	InsufficientFunds = "insufficient_funds"
	Failed            = "failed"
)

// ErrNotFound: no such disbursement.
var ErrNotFound = errors.New("disbursement not found")

// Disbursement is money on its way to a person, with its history.
type Disbursement struct {
	ID          string          `json:"id"`
	ProgramID   string          `json:"program_id"`
	PersonID    string          `json:"person_id"`
	Amount      decimal.Decimal `json:"amount"`
	Currency    string          `json:"currency"`
	Source      string          `json:"source"`
	AwardID     string          `json:"award_id,omitempty"`
	State       string          `json:"state"`
	RequestedBy string          `json:"requested_by"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	Transitions []Transition    `json:"transitions,omitempty"`
}

// MarshalJSON writes the amount with its currency's places.
func (d Disbursement) MarshalJSON() ([]byte, error) {
	type plain Disbursement
	return json.Marshal(struct {
		plain
		Amount string `json:"amount"`
	}{plain(d), ledger.FormatAmount(d.Amount, d.Currency)})
}

// Transition is one state a disbursement took.
type Transition struct {
	From   string    `json:"from,omitempty"`
	To     string    `json:"to"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Store keeps disbursements.
type Store struct {
	db *pgxpool.Pool
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{db: pool} }

// OnAward is the network.AwardHook: it creates the award's disbursement, or moves one that
// waited for funds on, in the award's own transaction.
func (s *Store) OnAward(ctx context.Context, tx pgx.Tx, a network.Award, p network.Program) error {
	var id uuid.UUID
	var state string
	err := tx.QueryRow(ctx, `SELECT id, state FROM payouts_disbursements WHERE award_id = $1 FOR UPDATE`, a.ID).Scan(&id, &state)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("disbursement of award %s: %w", a.Key, err)
	}
	to, reason := InsufficientFunds, fmt.Sprintf("award %s: the program fund cannot cover %s yet", a.Key, money(a.Amount, a.Currency))
	if a.Status == network.AwardPosted {
		to, reason = approvalState(a.Amount, p.AutoApproveLimit, a.Currency)
		reason = fmt.Sprintf("award %s paid into the wallet; %s", a.Key, reason)
	}
	if exists && state == to {
		return nil
	}
	if !exists {
		id = uuid.Must(uuid.NewV7())
	}
	var from *string
	if exists {
		from = &state
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason) VALUES ($1, $2, $3, $4, $5)`,
		id, from, to, network.SystemActor.Name, reason); err != nil {
		return fmt.Errorf("transition of award %s: %w", a.Key, err)
	}
	if exists {
		_, err = tx.Exec(ctx, `UPDATE payouts_disbursements SET state = $2, updated_at = clock_timestamp() WHERE id = $1`, id, to)
	} else {
		_, err = tx.Exec(ctx, `INSERT INTO payouts_disbursements (id, program_id, person_id, amount, currency, source, award_id, state, requested_by)
			VALUES ($1, $2, $3, $4, $5, 'award', $6, $7, $8)`, id, a.ProgramID, a.ParticipantID, a.Amount.String(), a.Currency, a.ID, to,
			network.SystemActor.Name)
	}
	if err != nil {
		return fmt.Errorf("disbursement of award %s: %w", a.Key, err)
	}
	return nil
}

// approvalState applies the program's auto-approve limit.
func approvalState(amount, limit decimal.Decimal, currency string) (string, string) {
	if amount.LessThanOrEqual(limit) {
		return Approved, fmt.Sprintf("within the program's auto-approve limit of %s", money(limit, currency))
	}
	return AwaitingApproval, fmt.Sprintf("above the program's auto-approve limit of %s: an admin must approve", money(limit, currency))
}

func money(d decimal.Decimal, currency string) string {
	return ledger.Money{Amount: d, Currency: currency}.String()
}

// Filter selects disbursements.
type Filter struct {
	State, Program, Person string
	Limit                  int
}

const columns = `id::text, program_id, person_id, amount::text, currency, source, coalesce(award_id::text, ''), state,
	requested_by, created_at, updated_at`

func scan(row pgx.Row) (Disbursement, error) {
	var d Disbursement
	var amount string
	if err := row.Scan(&d.ID, &d.ProgramID, &d.PersonID, &amount, &d.Currency, &d.Source, &d.AwardID, &d.State,
		&d.RequestedBy, &d.CreatedAt, &d.UpdatedAt); err != nil {
		return Disbursement{}, err
	}
	var err error
	d.Amount, err = decimal.NewFromString(amount)
	return d, err
}

// List returns disbursements, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]Disbursement, error) {
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.db.Query(ctx, `SELECT `+columns+` FROM payouts_disbursements
		WHERE ($1 = '' OR state = $1) AND ($2 = '' OR program_id = $2) AND ($3 = '' OR person_id = $3)
		ORDER BY created_at DESC, id DESC LIMIT $4`, f.State, f.Program, f.Person, limit)
	if err != nil {
		return nil, fmt.Errorf("list disbursements: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Disbursement, error) { return scan(r) })
}

// Get returns a disbursement with its transitions.
func (s *Store) Get(ctx context.Context, id string) (Disbursement, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return Disbursement{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	d, err := scan(s.db.QueryRow(ctx, `SELECT `+columns+` FROM payouts_disbursements WHERE id = $1`, uid))
	if errors.Is(err, pgx.ErrNoRows) {
		return Disbursement{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Disbursement{}, err
	}
	rows, err := s.db.Query(ctx, `SELECT coalesce(from_state, ''), to_state, actor, reason, at FROM payouts_transitions
		WHERE disbursement_id = $1 ORDER BY id`, uid)
	if err != nil {
		return Disbursement{}, err
	}
	d.Transitions, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Transition])
	return d, err
}
