package payouts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

// Instalment states.
const (
	Scheduled = "scheduled"
	Fulfilled = "fulfilled"
)

// Requirements are what a person must meet at each instalment's due date, besides being
// enrolled with consent on file (always required).
type Requirements struct {
	// MinVerifiedConversations in the period the instalment covers (since the previous due
	// date, or every_months before the first).
	MinVerifiedConversations int `json:"min_verified_conversations,omitempty"`
}

// NewCommitment is a scheduled, unrestricted payment plan (DESIGN.md §7), e.g. 8 quarterly
// instalments of $400.
type NewCommitment struct {
	Program        string          `json:"program"`
	Person         string          `json:"person"`
	Amount         string          `json:"amount"`
	Instalments    int             `json:"instalments"`
	EveryMonths    int             `json:"every_months"`
	FirstDue       string          `json:"first_due"`
	Requirements   json.RawMessage `json:"requirements,omitempty"`
	IdempotencyKey string          `json:"idempotency_key"`
}

// Commitment with its instalments.
type Commitment struct {
	ID           string       `json:"id"`
	Program      string       `json:"program"`
	Person       string       `json:"person"`
	Amount       string       `json:"amount"`
	Currency     string       `json:"currency"`
	EveryMonths  int          `json:"every_months"`
	Requirements Requirements `json:"requirements"`
	CreatedBy    string       `json:"created_by"`
	CreatedAt    time.Time    `json:"created_at"`
	Instalments  []Instalment `json:"instalments"`
}

// Instalment is one scheduled payment of a commitment.
type Instalment struct {
	N            int        `json:"n"`
	DueOn        string     `json:"due_on"`
	State        string     `json:"state"`
	Reason       string     `json:"reason,omitempty"`
	EntryID      string     `json:"entry_id,omitempty"`
	Disbursement string     `json:"disbursement_id,omitempty"`
	DecidedBy    string     `json:"decided_by,omitempty"`
	DecidedAt    *time.Time `json:"decided_at,omitempty"`
}

func parseRequirements(raw json.RawMessage) (Requirements, error) {
	var r Requirements
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return r, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, invalid("requirements", "%v (known: min_verified_conversations)", err)
	}
	if r.MinVerifiedConversations < 0 || r.MinVerifiedConversations > 1000 {
		return r, invalid("requirements", "min_verified_conversations %d: between 0 and 1000", r.MinVerifiedConversations)
	}
	return r, nil
}

// CreateCommitment schedules a commitment's instalments. by must be a person: the
// commitment's creator requests every instalment, and may not approve one. The same
// idempotency key with the same request returns the first commitment; with a different one,
// ledger.ErrIdempotencyConflict.
func (s *Store) CreateCommitment(ctx context.Context, by network.By, n NewCommitment) (Commitment, error) {
	if err := requirePerson(by, "a commitment"); err != nil {
		return Commitment{}, err
	}
	p, err := network.ProgramTx(ctx, s.db, n.Program)
	if err != nil {
		return Commitment{}, err
	}
	amount, err := ledger.ParseAmount(n.Amount, p.Currency)
	if err != nil || !amount.IsPositive() {
		return Commitment{}, invalid("amount", "%q: a positive amount in %s", n.Amount, p.Currency)
	}
	if n.Instalments < 1 || n.Instalments > 120 {
		return Commitment{}, invalid("instalments", "%d: between 1 and 120", n.Instalments)
	}
	if n.EveryMonths < 1 || n.EveryMonths > 24 {
		return Commitment{}, invalid("every_months", "%d: between 1 and 24", n.EveryMonths)
	}
	first, err := time.Parse(time.DateOnly, n.FirstDue)
	if err != nil {
		return Commitment{}, invalid("first_due", "%q is not a date like 2027-01-15", n.FirstDue)
	}
	req, err := parseRequirements(n.Requirements)
	if err != nil {
		return Commitment{}, err
	}
	if strings.TrimSpace(n.IdempotencyKey) == "" {
		return Commitment{}, invalid("idempotency_key", "required, so that a retried request does not schedule twice")
	}
	reqJSON, _ := json.Marshal(req)
	var c Commitment
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		var existing uuid.UUID
		err := tx.QueryRow(ctx, `SELECT id FROM payouts_commitments WHERE idempotency_key = $1`, n.IdempotencyKey).Scan(&existing)
		if err == nil {
			c, err = commitmentTx(ctx, tx, existing)
			if err == nil && (c.Person != n.Person || c.Program != p.ID || c.Amount != ledger.FormatAmount(amount, p.Currency) ||
				len(c.Instalments) != n.Instalments || c.EveryMonths != n.EveryMonths || c.Requirements != req ||
				len(c.Instalments) == 0 || c.Instalments[0].DueOn != first.Format(time.DateOnly)) {
				err = fmt.Errorf("%w: idempotency key %q was used for another commitment (%s)", ledger.ErrIdempotencyConflict, n.IdempotencyKey, c.ID)
			}
			return access.Event{}, err
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return access.Event{}, err
		}
		if err := requirePayable(ctx, tx, p.ID, n.Person); err != nil {
			return access.Event{}, err
		}
		id := uuid.Must(uuid.NewV7())
		if _, err := tx.Exec(ctx, `INSERT INTO payouts_commitments (id, program_id, person_id, amount, currency, instalments, every_months,
			first_due, requirements, idempotency_key, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			id, p.ID, n.Person, amount.String(), p.Currency, n.Instalments, n.EveryMonths, first, reqJSON, n.IdempotencyKey, by.Subject()); err != nil {
			return access.Event{}, fmt.Errorf("create commitment: %w", translate(err))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO payouts_instalments (commitment_id, n, due_on)
			SELECT $1, g, ($2::date + make_interval(months => (g - 1) * $3))::date FROM generate_series(1, $4) g`,
			id, first, n.EveryMonths, n.Instalments); err != nil {
			return access.Event{}, fmt.Errorf("schedule instalments: %w", err)
		}
		if c, err = commitmentTx(ctx, tx, id); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "payouts.commitment.create", Record: "commitment:" + c.ID, After: c}, nil
	})
	return c, err
}

func commitmentTx(ctx context.Context, db access.DBTX, id uuid.UUID) (Commitment, error) {
	var c Commitment
	var amount string
	var req []byte
	err := db.QueryRow(ctx, `SELECT id::text, program_id, person_id, amount::text, currency, every_months, requirements, created_by, created_at
		FROM payouts_commitments WHERE id = $1`, id).Scan(&c.ID, &c.Program, &c.Person, &amount, &c.Currency, &c.EveryMonths, &req, &c.CreatedBy, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("%w: commitment %s", ErrNotFound, id)
	}
	if err != nil {
		return c, err
	}
	c.Amount = ledger.FormatAmount(decimal.RequireFromString(amount), c.Currency)
	_ = json.Unmarshal(req, &c.Requirements)
	rows, err := db.Query(ctx, `SELECT n, to_char(due_on, 'YYYY-MM-DD'), state, reason, coalesce(entry_id::text, ''), coalesce(disbursement_id::text, ''),
		coalesce(decided_by, ''), decided_at FROM payouts_instalments WHERE commitment_id = $1 ORDER BY n`, id)
	if err != nil {
		return c, err
	}
	c.Instalments, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Instalment])
	return c, err
}

// Commitments lists commitments, of one person if person is set.
func (s *Store) Commitments(ctx context.Context, program, person string) ([]Commitment, error) {
	rows, err := s.db.Query(ctx, `SELECT id FROM payouts_commitments WHERE ($1 = '' OR program_id = $1) AND ($2 = '' OR person_id = $2)
		ORDER BY created_at DESC LIMIT 500`, program, person)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, err
	}
	out := make([]Commitment, 0, len(ids))
	for _, id := range ids {
		c, err := commitmentTx(ctx, s.db, id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// CancelCommitment cancels the instalments still scheduled; released ones are not touched.
func (s *Store) CancelCommitment(ctx context.Context, by network.By, id, reason string) (Commitment, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return Commitment{}, fmt.Errorf("%w: commitment %q", ErrNotFound, id)
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return Commitment{}, invalid("reason", "required")
	}
	var c Commitment
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		if _, err := commitmentTx(ctx, tx, uid); err != nil {
			return access.Event{}, err
		}
		if _, err := tx.Exec(ctx, `UPDATE payouts_instalments SET state = 'canceled', reason = $2, decided_by = $3, decided_at = clock_timestamp()
			WHERE commitment_id = $1 AND state = 'scheduled'`, uid, "commitment canceled: "+reason, by.Subject()); err != nil {
			return access.Event{}, err
		}
		var err error
		if c, err = commitmentTx(ctx, tx, uid); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "payouts.commitment.cancel", Record: "commitment:" + c.ID, After: c, Detail: reason}, nil
	})
	return c, err
}

// ReleaseInstalments is the periodic commitments job, safe to run twice or at once in two
// processes: each due instalment is taken FOR UPDATE SKIP LOCKED, and decided once. A person
// who meets the requirements gets the amount in their wallet (fund → wallet, keyed by the
// instalment) and a disbursement that follows the policy; one who does not, a failed
// instalment with the reason. An instalment the fund cannot cover stays scheduled, saying so.
func (s *Store) ReleaseInstalments(ctx context.Context) (fulfilled, failed int, err error) {
	// Due: before today in the program's time (clock.go), which moves with a test clock.
	now, sandbox := s.now(), s.provider.Name() == "sandbox"
	for {
		done := false
		err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
			var cid uuid.UUID
			var n int
			var from, due time.Time
			var program, person, amount, currency, createdBy string
			var req []byte
			// The period an instalment covers: after the previous due date (for the first, the
			// same span before it), up to and including its own.
			err := tx.QueryRow(ctx, `SELECT i.commitment_id, i.n, coalesce((SELECT p.due_on FROM payouts_instalments p
				WHERE p.commitment_id = i.commitment_id AND p.n = i.n - 1), (c.first_due - make_interval(months => c.every_months))::date),
				i.due_on, c.program_id, c.person_id, c.amount::text, c.currency, c.requirements, c.created_by
				FROM payouts_instalments i JOIN payouts_commitments c ON c.id = i.commitment_id
				WHERE i.state = 'scheduled' AND i.reason NOT LIKE 'waiting for funds%'
				  AND i.due_on < (($1::timestamptz + CASE WHEN $2 THEN payouts_clock_offset(c.program_id, 'infinity') ELSE interval '0' END)
				      AT TIME ZONE 'UTC')::date
				ORDER BY i.due_on, i.commitment_id, i.n LIMIT 1 FOR UPDATE OF i SKIP LOCKED`, now, sandbox).
				Scan(&cid, &n, &from, &due, &program, &person, &amount, &currency, &req, &createdBy)
			if errors.Is(err, pgx.ErrNoRows) {
				done = true
				return nil
			}
			if err != nil {
				return err
			}
			var r Requirements
			_ = json.Unmarshal(req, &r)
			if why, err := s.unmet(ctx, tx, program, person, r, from, due); err != nil {
				return err
			} else if why != "" {
				failed++
				_, err := tx.Exec(ctx, `UPDATE payouts_instalments SET state = 'failed', reason = $3, decided_by = $4, decided_at = clock_timestamp()
					WHERE commitment_id = $1 AND n = $2`, cid, n, why, SystemActor.Name)
				return err
			}
			p, err := network.ProgramTx(ctx, tx, program)
			if err != nil {
				return err
			}
			amt := decimal.RequireFromString(amount)
			e, short, err := postOrShort(ctx, tx, s.ledger.PostTx, ledger.NewEntry{
				IdempotencyKey: fmt.Sprintf("instalment:%s:%d", cid, n),
				Description:    fmt.Sprintf("commitment %s instalment %d to %s", cid, n, person),
				Metadata:       json.RawMessage(fmt.Sprintf(`{"program":%q,"person":%q,"commitment":%q,"instalment":%d,"flow":"instalment"}`, program, person, cid, n)),
				Postings: []ledger.Posting{
					{Account: p.FundAccount, Side: ledger.Debit, Amount: amt, Currency: currency},
					{Account: network.WalletAccount(person), Side: ledger.Credit, Amount: amt, Currency: currency},
				},
			}, ledger.ErrInsufficientFunds)
			if err != nil {
				return fmt.Errorf("instalment %d of %s: %w", n, cid, err)
			}
			if short != nil {
				_, err := tx.Exec(ctx, `UPDATE payouts_instalments SET reason = $3 WHERE commitment_id = $1 AND n = $2`, cid, n,
					fmt.Sprintf("waiting for funds: %s cannot cover %s", p.FundAccount, money(amt, currency)))
				return err
			}
			d, err := s.insert(ctx, tx, newDisbursement{program: p, person: person, wallet: network.WalletAccount(person), amount: amt,
				source: "commitment", fundingEntry: &e.ID, reason: fmt.Sprintf("commitment %s instalment %d", cid, n),
				requestedBy: createdBy, actor: SystemActor.Name, funded: true}) // its creator may not approve it
			if err != nil {
				return err
			}
			fulfilled++
			_, err = tx.Exec(ctx, `UPDATE payouts_instalments SET state = 'fulfilled', reason = '', entry_id = $3, disbursement_id = $4,
				decided_by = $5, decided_at = clock_timestamp() WHERE commitment_id = $1 AND n = $2`, cid, n, e.ID, d.ID, SystemActor.Name)
			return err
		})
		if err != nil || done {
			return fulfilled, failed, err
		}
	}
}

// RetryWaitingInstalments makes instalments that waited for funds due again (after a
// funding, or on the next periodic run).
func (s *Store) RetryWaitingInstalments(ctx context.Context) error {
	_, err := s.db.Exec(ctx, `UPDATE payouts_instalments SET reason = 'funds re-checked' WHERE state = 'scheduled' AND reason LIKE 'waiting for funds%'`)
	return err
}

// unmet says why a person does not meet an instalment's requirements, or "". Conversations
// count from the day after from to the end of to (UTC days), so no day is in two periods.
func (s *Store) unmet(ctx context.Context, tx pgx.Tx, program, person string, r Requirements, from, to time.Time) (string, error) {
	var enrolled, consent bool
	var conversations int
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM network_enrolments WHERE program_id = $1 AND person_id = $2), network_has_consent($2),
		(SELECT count(*) FROM network_conversations v JOIN network_connections c ON c.id = v.connection_id
		 WHERE c.participant_id = $2 AND v.occurred_at >= $3::timestamptz AND v.occurred_at < $4::timestamptz
		 AND (SELECT action FROM network_reviews r WHERE r.conversation_id = v.id ORDER BY r.id DESC LIMIT 1) = 'verify')`,
		program, person, dayAfter(from), dayAfter(to)).Scan(&enrolled, &consent, &conversations)
	if err != nil {
		return "", fmt.Errorf("requirements of %s: %w", person, err)
	}
	switch {
	case !enrolled:
		return "not enrolled in " + program, nil
	case !consent:
		return "no consent on file", nil
	case conversations < r.MinVerifiedConversations:
		return fmt.Sprintf("%d verified conversations from %s to %s; the commitment asks for %d", conversations,
			dayAfter(from).Format(time.DateOnly), to.Format(time.DateOnly), r.MinVerifiedConversations), nil
	}
	return "", nil
}

// dayAfter is the start (UTC) of the day after d's date.
func dayAfter(d time.Time) time.Time {
	return time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, time.UTC)
}
