// Package payouts keeps disbursements (DESIGN.md §7): the money a person is owed on its way
// out of Tandem, with every state it took, who moved it there, when and why.
//
// A disbursement is made when money reaches a wallet — an award (OnAward), a manual grant by
// an admin (Create), a commitment's instalment (ReleaseInstalments), a coach stipend
// (PayStipends) — and starts approved (within the program's auto-approve limit and caps) or
// awaiting one or two admins' approval (Approve; dual control at the policy's threshold).
// Approved disbursements are submitted by a job (Submit): a pending ledger entry wallet → cash
// is made, then the provider is called with the attempt's idempotency key, so that a crash at
// any point neither loses nor doubles a payout. The provider's answer, a webhook
// (ProcessEvent) or a later look (Settle) posts the entry (paid) or voids it (failed); a
// payout returned after it was paid restores the wallet by an entry linked to it. Failed
// payouts are retried with backoff (Sweep), by an admin (Retry), or when the person sets a
// new destination, and are forfeited to the fund after the remediation window.
package payouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
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
	Returned          = "returned"
	Forfeited         = "forfeited"
)

// Errors callers can test with errors.Is; each is wrapped with the detail of the case.
var (
	ErrNotFound = errors.New("disbursement not found")
	ErrInvalid  = errors.New("invalid request")
	// ErrState: the disbursement is not in a state that allows the action.
	ErrState = errors.New("not allowed in the disbursement's state")
	// ErrSelfApproval: the admin requested the disbursement, or already approved it.
	ErrSelfApproval = errors.New("four eyes")
	// ErrCapExceeded: approving would take the person past the program's monthly or yearly cap.
	ErrCapExceeded = errors.New("cap exceeded")
	// ErrNoConsent: no money is paid to a person without consent on file.
	ErrNoConsent = errors.New("no consent on file")
)

// SystemActor is the author of what the payout jobs do.
var SystemActor = access.Principal{Name: "job:payouts"}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

var constraintErrors = map[string]error{
	"payouts_self_approval":           ErrSelfApproval,
	"payouts_requester_person":        ErrSelfApproval,
	"payouts_approver_admin":          access.ErrForbidden,
	"payouts_destination_approved":    ErrState,
	"payouts_commitments_person":      ErrSelfApproval,
	"payouts_stipend_policies_person": ErrSelfApproval,
	"payouts_approvals_pkey":          ErrSelfApproval,
	"payouts_transition":              ErrState,
	"payouts_dual_control":            ErrState,
	"payouts_policies_threshold":      ErrInvalid,
	"payouts_policies_caps":           ErrInvalid,
	"payouts_policies_remediation":    ErrInvalid,
	"payouts_policies_retries":        ErrInvalid,
	"payouts_policies_backoff":        ErrInvalid,
	"payouts_destinations_account":    ErrInvalid,
	"network_consent_required":        ErrNoConsent,
	// payouts/unowned.go
	"payouts_award_decisions_pkey":      ErrState,
	"payouts_return_settlements_exceed": ErrState,
	"payouts_clock_forward":             ErrInvalid,
}

func translate(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if kind, ok := constraintErrors[pg.ConstraintName]; ok {
			if pg.ConstraintName == "payouts_approvals_pkey" {
				return fmt.Errorf("%w: you already approved it; another admin must", kind)
			}
			return fmt.Errorf("%w: %s", kind, pg.Message)
		}
		if pg.Code == "23503" { // a person, program or entry that does not exist
			return fmt.Errorf("%w: %s", network.ErrNotFound, pg.Detail)
		}
	}
	return err
}

// Jobs is how payouts ask for background work inside the transaction that needs it.
type Jobs interface {
	// SubmitTx asks for disbursement to be sent to the provider. Round counts the times it
	// was approved (a retry approves it again), so that the submission of a retry is not
	// taken for the previous one's while that job is still finishing. It reports whether a
	// job was enqueued: false when one for this round is already waiting or running.
	SubmitTx(ctx context.Context, tx pgx.Tx, disbursement uuid.UUID, round int) (bool, error)
	// SettleTx asks, at at, what became of a sent attempt.
	SettleTx(ctx context.Context, tx pgx.Tx, disbursement uuid.UUID, attempt int, at time.Time) error
	// RetryTx asks, at at, for a failed disbursement to be retried automatically.
	RetryTx(ctx context.Context, tx pgx.Tx, disbursement uuid.UUID, failures int, at time.Time) error
	// EventTx asks for a recorded provider event to be processed.
	EventTx(ctx context.Context, tx pgx.Tx, provider, eventID string) error
}

// Config wires a Store.
type Config struct {
	Ledger *ledger.Ledger
	// Jobs is required: approvals ask for submission in their own transaction.
	Jobs Jobs
	// Provider pays; nil means the sandbox with no delay.
	Provider Provider
	// WebhookSecret verifies Stripe's webhook signatures (STRIPE_WEBHOOK_SECRET).
	WebhookSecret string
	// NECThreshold is the yearly total from which a payee is listed on the 1099-NEC report
	// (default: the year's, 600.00 through 2025 and 2000.00 after).
	NECThreshold decimal.Decimal
	Logger       *slog.Logger
	// Now is the clock for caps, retries and forfeits (default time.Now).
	Now func() time.Time
	// Fault, when set, is called at named points of submission and event processing; an
	// error it returns stops the work there as a crash would. For crash tests.
	Fault func(point string) error
}

// Store keeps disbursements and pays them.
type Store struct {
	db            *pgxpool.Pool
	ledger        *ledger.Ledger
	jobs          Jobs
	provider      Provider
	webhookSecret string
	nec           decimal.Decimal
	logger        *slog.Logger
	now           func() time.Time
	fault         func(string) error
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if cfg.Ledger == nil || cfg.Jobs == nil {
		return nil, errors.New("payouts: Config.Ledger and Config.Jobs are required")
	}
	s := &Store{db: pool, ledger: cfg.Ledger, jobs: cfg.Jobs, provider: cfg.Provider, webhookSecret: cfg.WebhookSecret,
		nec: cfg.NECThreshold, logger: cfg.Logger, now: cfg.Now, fault: cfg.Fault}
	if s.provider == nil {
		s.provider = NewSandbox(pool, SandboxConfig{})
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Provider is the provider payouts go through.
func (s *Store) Provider() Provider { return s.provider }

func (s *Store) crash(point string) error {
	if s.fault == nil {
		return nil
	}
	if err := s.fault(point); err != nil {
		return fmt.Errorf("fault at %s: %w", point, err)
	}
	return nil
}

// Disbursement is money on its way to a person, with its history.
type Disbursement struct {
	ID              string          `json:"id"`
	ProgramID       string          `json:"program_id"`
	PersonID        string          `json:"person_id"`
	Wallet          string          `json:"wallet"`
	Amount          decimal.Decimal `json:"amount"`
	Currency        string          `json:"currency"`
	Source          string          `json:"source"`
	AwardID         string          `json:"award_id,omitempty"`
	FundingEntryID  string          `json:"funding_entry_id,omitempty"`
	Reason          string          `json:"reason,omitempty"`
	State           string          `json:"state"`
	ApprovalsNeeded int             `json:"approvals_needed"`
	RequestedBy     string          `json:"requested_by"`
	ApprovedAt      *time.Time      `json:"approved_at,omitempty"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	// Filled by Get.
	Transitions []Transition `json:"transitions,omitempty"`
	Approvals   []Approval   `json:"approvals,omitempty"`
	Attempts    []Attempt    `json:"attempts,omitempty"`
	Returns     []Return     `json:"returns,omitempty"`
	// FundReturnEntryID is the entry that gave the money back to the fund (rejected,
	// canceled or forfeited after reaching the wallet).
	FundReturnEntryID string `json:"fund_return_entry_id,omitempty"`
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

// Approval is one admin's approval. Round counts the times the disbursement came to
// awaiting approval: only the approvals of its current round count. Destination is where the
// person was to be paid when the admin approved ("" none on file).
type Approval struct {
	Approver    string    `json:"approver"`
	Actor       string    `json:"actor"`
	Reason      string    `json:"reason,omitempty"`
	At          time.Time `json:"at"`
	Round       int       `json:"round"`
	Destination *string   `json:"destination,omitempty"`
}

// Attempt is one try at paying through a provider.
type Attempt struct {
	Attempt         int        `json:"attempt"`
	Provider        string     `json:"provider"`
	Destination     string     `json:"destination"`
	IdempotencyKey  string     `json:"idempotency_key"`
	PendingEntryID  string     `json:"pending_entry_id"`
	ProviderRef     string     `json:"provider_ref,omitempty"`
	Outcome         string     `json:"outcome,omitempty"`
	Reason          string     `json:"reason,omitempty"`
	ResolvedEntryID string     `json:"resolved_entry_id,omitempty"`
	Returned        string     `json:"returned"`
	SubmittedAt     time.Time  `json:"submitted_at"`
	SentAt          *time.Time `json:"sent_at,omitempty"`
	SettledAt       *time.Time `json:"settled_at,omitempty"`
}

// Return is money the provider gave back after paying, restored to the wallet by EntryID.
type Return struct {
	Attempt int       `json:"attempt"`
	Amount  string    `json:"amount"`
	EntryID string    `json:"entry_id"`
	Event   string    `json:"event"`
	At      time.Time `json:"at"`
}

func money(d decimal.Decimal, currency string) string {
	return ledger.Money{Amount: d, Currency: currency}.String()
}

// Filter selects disbursements.
type Filter struct {
	State, Program, Person string
	Limit                  int
}

const columns = `id::text, program_id, person_id, wallet, amount::text, currency, source, coalesce(award_id::text, ''),
	coalesce(funding_entry_id::text, ''), reason, state, approvals_needed, requested_by, approved_at, created_at, updated_at`

func scan(row pgx.Row) (Disbursement, error) {
	var d Disbursement
	var amount string
	if err := row.Scan(&d.ID, &d.ProgramID, &d.PersonID, &d.Wallet, &amount, &d.Currency, &d.Source, &d.AwardID,
		&d.FundingEntryID, &d.Reason, &d.State, &d.ApprovalsNeeded, &d.RequestedBy, &d.ApprovedAt, &d.CreatedAt, &d.UpdatedAt); err != nil {
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

// Get returns a disbursement with its transitions, approvals, attempts and returns.
func (s *Store) Get(ctx context.Context, id string) (Disbursement, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return Disbursement{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return getTx(ctx, s.db, uid)
}

func getTx(ctx context.Context, db access.DBTX, uid uuid.UUID) (Disbursement, error) {
	d, err := scan(db.QueryRow(ctx, `SELECT `+columns+` FROM payouts_disbursements WHERE id = $1`, uid))
	if errors.Is(err, pgx.ErrNoRows) {
		return Disbursement{}, fmt.Errorf("%w: %s", ErrNotFound, uid)
	}
	if err != nil {
		return Disbursement{}, err
	}
	rows, err := db.Query(ctx, `SELECT coalesce(from_state, ''), to_state, actor, reason, at FROM payouts_transitions
		WHERE disbursement_id = $1 ORDER BY id`, uid)
	if err != nil {
		return Disbursement{}, err
	}
	if d.Transitions, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Transition]); err != nil {
		return Disbursement{}, err
	}
	rows, err = db.Query(ctx, `SELECT approver, actor, reason, at, round, destination FROM payouts_approvals WHERE disbursement_id = $1 ORDER BY round, at`, uid)
	if err != nil {
		return Disbursement{}, err
	}
	if d.Approvals, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Approval]); err != nil {
		return Disbursement{}, err
	}
	rows, err = db.Query(ctx, `SELECT attempt, provider, destination, idempotency_key, pending_entry_id::text, coalesce(provider_ref, ''),
		coalesce(outcome, ''), reason, coalesce(resolved_entry_id::text, ''), returned::text, submitted_at, sent_at, settled_at
		FROM payouts_attempts WHERE disbursement_id = $1 ORDER BY attempt`, uid)
	if err != nil {
		return Disbursement{}, err
	}
	if d.Attempts, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Attempt]); err != nil {
		return Disbursement{}, err
	}
	for i := range d.Attempts {
		d.Attempts[i].Returned = ledger.FormatAmount(decimal.RequireFromString(d.Attempts[i].Returned), d.Currency)
	}
	rows, err = db.Query(ctx, `SELECT attempt, amount::text, entry_id::text, event, at FROM payouts_returns WHERE disbursement_id = $1 ORDER BY id`, uid)
	if err != nil {
		return Disbursement{}, err
	}
	if d.Returns, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Return]); err != nil {
		return Disbursement{}, err
	}
	for i := range d.Returns {
		d.Returns[i].Amount = ledger.FormatAmount(decimal.RequireFromString(d.Returns[i].Amount), d.Currency)
	}
	err = db.QueryRow(ctx, `SELECT entry_id::text FROM payouts_forfeits WHERE disbursement_id = $1`, uid).Scan(&d.FundReturnEntryID)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Disbursement{}, err
	}
	return d, nil
}

// lockTx reads a disbursement FOR UPDATE: every change of state takes this lock first.
func lockTx(ctx context.Context, tx pgx.Tx, id uuid.UUID) (Disbursement, error) {
	d, err := scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM payouts_disbursements WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Disbursement{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return d, err
}

// transition moves a disbursement from one state to another with its row in
// payouts_transitions (the database checks the move is legal). Moving to approved stamps
// approved_at, by which caps count: the first time, and again on the approval that ends a new
// round (a disbursement sent back for approval counts in the month it was approved again);
// a retry keeps it.
func (s *Store) transition(ctx context.Context, tx pgx.Tx, d *Disbursement, to, actor, reason string) error {
	id := uuid.MustParse(d.ID)
	if _, err := tx.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason) VALUES ($1, $2, $3, $4, $5)`,
		id, d.State, to, actor, reason); err != nil {
		return fmt.Errorf("transition %s %s → %s: %w", d.ID, d.State, to, translate(err))
	}
	approvedAt := s.now()
	if to == Approved { // in the program's time (clock.go): caps count by it
		var err error
		if approvedAt, err = s.programNowTx(ctx, tx, d.ProgramID); err != nil {
			return err
		}
	}
	tag, err := tx.Exec(ctx, `UPDATE payouts_disbursements SET state = $2, updated_at = clock_timestamp(),
		approved_at = CASE WHEN $2 = 'approved' AND $3 = 'awaiting_approval' THEN $4
			WHEN $2 = 'approved' THEN coalesce(approved_at, $4) ELSE approved_at END
		WHERE id = $1 AND state = $3`, id, to, d.State, approvedAt)
	if err != nil {
		return fmt.Errorf("transition %s %s → %s: %w", d.ID, d.State, to, translate(err))
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: %s is no longer %s", ErrState, d.ID, d.State)
	}
	d.State = to
	if to == Approved {
		return s.askSubmit(ctx, tx, id)
	}
	return nil
}

// askSubmit asks for an approved disbursement to be submitted, in this round of approval.
func (s *Store) askSubmit(ctx context.Context, tx pgx.Tx, id uuid.UUID) error {
	_, err := s.enqueueSubmit(ctx, tx, id)
	return err
}

// enqueueSubmit is askSubmit, reporting whether a job was enqueued (false: one of this round
// is already waiting or running).
func (s *Store) enqueueSubmit(ctx context.Context, tx pgx.Tx, id uuid.UUID) (bool, error) {
	var round int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM payouts_transitions WHERE disbursement_id = $1 AND to_state = 'approved'`, id).Scan(&round); err != nil {
		return false, err
	}
	queued, err := s.jobs.SubmitTx(ctx, tx, id, round)
	if err != nil {
		return false, fmt.Errorf("ask to submit %s: %w", id, err)
	}
	return queued, nil
}

// newDisbursement is what insert needs.
type newDisbursement struct {
	program        network.Program
	person, wallet string
	amount         decimal.Decimal
	source         string
	awardID        *uuid.UUID
	fundingEntry   *uuid.UUID
	reason         string
	requestedBy    string
	actor          string
	funded         bool // false: the award waits for funds
}

// insert makes a disbursement in the state the policy gives it.
func (s *Store) insert(ctx context.Context, tx pgx.Tx, n newDisbursement) (Disbursement, error) {
	pol, err := policyTx(ctx, tx, n.program)
	if err != nil {
		return Disbursement{}, err
	}
	needed := pol.approvalsNeeded(n.amount)
	state, why := InsufficientFunds, fmt.Sprintf("the program fund cannot cover %s yet", money(n.amount, n.program.Currency))
	if n.funded {
		state, why, err = s.admission(ctx, tx, pol, n.person, n.amount, needed)
		if err != nil {
			return Disbursement{}, err
		}
	}
	id := uuid.Must(uuid.NewV7())
	if _, err := tx.Exec(ctx, `INSERT INTO payouts_transitions (disbursement_id, from_state, to_state, actor, reason) VALUES ($1, NULL, $2, $3, $4)`,
		id, state, n.actor, n.reason+"; "+why); err != nil {
		return Disbursement{}, fmt.Errorf("first transition: %w", translate(err))
	}
	var approvedAt *time.Time
	if state == Approved {
		now, err := s.programNowTx(ctx, tx, n.program.ID)
		if err != nil {
			return Disbursement{}, err
		}
		approvedAt = &now
	}
	d, err := scan(tx.QueryRow(ctx, `INSERT INTO payouts_disbursements (id, program_id, person_id, wallet, amount, currency, source, award_id,
		funding_entry_id, reason, state, approvals_needed, requested_by, approved_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING `+columns,
		id, n.program.ID, n.person, n.wallet, n.amount.String(), n.program.Currency, n.source, n.awardID, n.fundingEntry,
		n.reason, state, needed, n.requestedBy, approvedAt))
	if err != nil {
		return Disbursement{}, fmt.Errorf("insert disbursement: %w", translate(err))
	}
	if state == Approved {
		if err := s.askSubmit(ctx, tx, id); err != nil {
			return Disbursement{}, err
		}
	}
	return d, nil
}

// admission says whether a funded disbursement is approved at once: within the auto-approve
// limit (needed 0) and the person's caps.
func (s *Store) admission(ctx context.Context, tx pgx.Tx, pol Policy, person string, amount decimal.Decimal, needed int) (string, string, error) {
	switch needed {
	case 2:
		return AwaitingApproval, fmt.Sprintf("at or above the dual-control threshold of %s: two different admins must approve",
			money(pol.DualControlThreshold, pol.Currency)), nil
	case 1:
		return AwaitingApproval, fmt.Sprintf("above the auto-approve limit of %s: an admin must approve",
			money(pol.AutoApproveLimit, pol.Currency)), nil
	}
	if err := s.checkCaps(ctx, tx, pol, person, amount); err != nil {
		if errors.Is(err, ErrCapExceeded) {
			return AwaitingApproval, err.Error() + "; it waits until the cap has room or an admin rejects it", nil
		}
		return "", "", err
	}
	return Approved, fmt.Sprintf("within the auto-approve limit of %s", money(pol.AutoApproveLimit, pol.Currency)), nil
}

// OnAward is the network.AwardHook: it creates the award's disbursement, or moves one that
// waited for funds on, in the award's own transaction.
func (s *Store) OnAward(ctx context.Context, tx pgx.Tx, a network.Award, p network.Program) error {
	aid, err := uuid.Parse(a.ID)
	if err != nil {
		return fmt.Errorf("award id %q: %w", a.ID, err)
	}
	var id uuid.UUID
	err = tx.QueryRow(ctx, `SELECT id FROM payouts_disbursements WHERE award_id = $1 FOR UPDATE`, aid).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		_, err = s.insert(ctx, tx, newDisbursement{program: p, person: a.ParticipantID, wallet: network.WalletAccount(a.ParticipantID),
			amount: a.Amount, source: "award", awardID: &aid, reason: "award " + a.Key, requestedBy: network.SystemActor.Name,
			actor: network.SystemActor.Name, funded: a.Status == network.AwardPosted})
		return err
	}
	if err != nil {
		return fmt.Errorf("disbursement of award %s: %w", a.Key, err)
	}
	d, err := lockTx(ctx, tx, id)
	if err != nil || a.Status != network.AwardPosted {
		return err
	}
	if d.State == Canceled || d.State == Rejected {
		// Canceled while it waited for funds: the award reached the wallet afterwards, and goes
		// straight back to the fund.
		var returned bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payouts_forfeits WHERE disbursement_id = $1)`, id).Scan(&returned); err != nil || returned {
			return err
		}
		return s.returnToFund(ctx, tx, d, d.State+" before award "+a.Key+" was paid")
	}
	if d.State != InsufficientFunds {
		return nil
	}
	pol, err := policyTx(ctx, tx, p)
	if err != nil {
		return err
	}
	to, why, err := s.admission(ctx, tx, pol, d.PersonID, d.Amount, d.ApprovalsNeeded)
	if err != nil {
		return err
	}
	return s.transition(ctx, tx, &d, to, network.SystemActor.Name, "award "+a.Key+" paid into the wallet after funding; "+why)
}

// apply runs fn in one transaction with its audit line.
func (s *Store) apply(ctx context.Context, by network.By, fn func(tx pgx.Tx) (access.Event, error)) error {
	return translate(access.Apply(ctx, s.db, by.Principal, by.RequestID, fn))
}

// parseID reads a disbursement id.
func parseID(id string) (uuid.UUID, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return uid, nil
}

// postFn is ledger.PostTx or ledger.PostPendingTx.
type postFn func(ctx context.Context, tx pgx.Tx, e ledger.NewEntry) (ledger.Entry, error)

// postOrShort posts e inside a savepoint of tx. When the ledger refuses it with one of
// short (the fund or wallet cannot cover it), the savepoint is rolled back and the refusal
// returned as refused, so that tx goes on to record why; any other error is err.
func postOrShort(ctx context.Context, tx pgx.Tx, post postFn, e ledger.NewEntry, short ...error) (entry ledger.Entry, refused, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return ledger.Entry{}, nil, err
	}
	entry, err = post(ctx, sp, e)
	for _, kind := range short {
		if errors.Is(err, kind) {
			if rerr := sp.Rollback(ctx); rerr != nil {
				return ledger.Entry{}, nil, rerr
			}
			return ledger.Entry{}, err, nil
		}
	}
	if err != nil {
		_ = sp.Rollback(ctx)
		return ledger.Entry{}, nil, err
	}
	return entry, nil, sp.Commit(ctx)
}
