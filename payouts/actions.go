package payouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

// NewDisbursement is a manual disbursement an admin requests (e.g. an emergency grant): the
// amount moves from the program's fund to the person's wallet, then follows the policy.
type NewDisbursement struct {
	Program        string `json:"program"`
	Person         string `json:"person"`
	Amount         string `json:"amount"`
	Reason         string `json:"reason"`
	IdempotencyKey string `json:"idempotency_key"`
}

// Create makes a manual disbursement. The same idempotency key returns the first one.
func (s *Store) Create(ctx context.Context, by network.By, n NewDisbursement) (Disbursement, error) {
	p, err := network.ProgramTx(ctx, s.db, n.Program)
	if err != nil {
		return Disbursement{}, err
	}
	amount, err := ledger.ParseAmount(n.Amount, p.Currency)
	if err != nil {
		return Disbursement{}, invalid("amount", "%v", err)
	}
	if !amount.IsPositive() {
		return Disbursement{}, invalid("amount", "must be more than zero")
	}
	n.Reason = strings.TrimSpace(n.Reason)
	if n.Reason == "" || len(n.Reason) > 500 {
		return Disbursement{}, invalid("reason", "required (up to 500 characters): the record of why this person is paid")
	}
	if strings.TrimSpace(n.IdempotencyKey) == "" || len(n.IdempotencyKey) > 200 {
		return Disbursement{}, invalid("idempotency_key", "required (up to 200 characters), so that a retried request does not pay twice")
	}
	if err := requirePerson(by, "a manual disbursement"); err != nil {
		return Disbursement{}, err
	}
	var d Disbursement
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		if err := requirePayable(ctx, tx, p.ID, n.Person); err != nil {
			return access.Event{}, err
		}
		e, err := s.ledger.PostTx(ctx, tx, ledger.NewEntry{
			IdempotencyKey: "grant:" + p.ID + ":" + n.IdempotencyKey,
			Description:    fmt.Sprintf("manual grant to %s: %s", n.Person, n.Reason),
			Metadata:       json.RawMessage(fmt.Sprintf(`{"program":%q,"person":%q,"flow":"grant"}`, p.ID, n.Person)),
			Postings: []ledger.Posting{
				{Account: p.FundAccount, Side: ledger.Debit, Amount: amount, Currency: p.Currency},
				{Account: network.WalletAccount(n.Person), Side: ledger.Credit, Amount: amount, Currency: p.Currency},
			},
		})
		if err != nil {
			return access.Event{}, fmt.Errorf("grant from %s: %w", p.FundAccount, err)
		}
		if e.Replayed {
			d, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM payouts_disbursements WHERE funding_entry_id = $1`, e.ID))
			return access.Event{}, err
		}
		d, err = s.insert(ctx, tx, newDisbursement{program: p, person: n.Person, wallet: network.WalletAccount(n.Person),
			amount: amount, source: "manual", fundingEntry: &e.ID, reason: n.Reason, requestedBy: by.Subject(),
			actor: by.Name, funded: true})
		if err != nil {
			return access.Event{}, err
		}
		if d, err = getTx(ctx, tx, uuid.MustParse(d.ID)); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "payouts.disbursement.create", Record: "disbursement:" + d.ID, After: d}, nil
	})
	return d, err
}

// requirePayable: the person is enrolled in the program and has consent on file.
func requirePayable(ctx context.Context, tx pgx.Tx, program, person string) error {
	var enrolled, consent bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM network_enrolments WHERE program_id = $1 AND person_id = $2),
		network_has_consent($2)`, program, person).Scan(&enrolled, &consent); err != nil {
		return fmt.Errorf("check %s: %w", person, err)
	}
	if !enrolled {
		return fmt.Errorf("%w: %s is not enrolled in %s", network.ErrNotFound, person, program)
	}
	if !consent {
		return fmt.Errorf("%w: %s", ErrNoConsent, person)
	}
	return nil
}

// act runs change on a disbursement, locked FOR UPDATE, in one transaction with its audit
// line (action, the detail change returns), and returns the disbursement as it is after,
// with its history.
func (s *Store) act(ctx context.Context, by network.By, id, action string, change func(tx pgx.Tx, d *Disbursement) (string, error)) (Disbursement, error) {
	uid, err := parseID(id)
	if err != nil {
		return Disbursement{}, err
	}
	var d Disbursement
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		var err error
		if d, err = lockTx(ctx, tx, uid); err != nil {
			return access.Event{}, err
		}
		detail, err := change(tx, &d)
		if err != nil {
			return access.Event{}, err
		}
		if d, err = getTx(ctx, tx, uid); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: action, Record: "disbursement:" + d.ID, After: d, Detail: detail}, nil
	})
	return d, err
}

// Approve records by's approval. With the approvals the disbursement needs (two different
// admins at the dual-control threshold) and room under the caps, it is approved and
// submitted; otherwise it keeps waiting, showing who approved. Nobody approves what they
// requested (the database refuses it too), nor twice.
//
// destination is the payout destination the approver was shown (ApprovalDestination), and
// the approval is for it: when the person has one it is required (ErrInvalid without it),
// and when it is no longer where the person would be paid — they set another since it was
// shown — the approval is refused (ErrState) and the approver looks again.
func (s *Store) Approve(ctx context.Context, by network.By, id, reason, destination string) (Disbursement, error) {
	if by.PersonID == "" {
		return Disbursement{}, fmt.Errorf("%w: approving needs an admin who is a person (a token made with --person)", ErrSelfApproval)
	}
	return s.act(ctx, by, id, "payouts.disbursement.approve", func(tx pgx.Tx, d *Disbursement) (string, error) {
		if d.State != AwaitingApproval {
			return "", fmt.Errorf("%w: %s is %s, not awaiting approval", ErrState, d.ID, d.State)
		}
		// The approval records where the person would be paid: a payout to anywhere else
		// needs approving again (reapproveIfMoved).
		dest, err := s.approvalDestinationTx(ctx, tx, d.PersonID)
		if err != nil {
			return "", err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO payouts_approvals (disbursement_id, approver, actor, reason, destination) VALUES ($1, $2, $3, $4, $5)`,
			d.ID, by.Subject(), by.Name, strings.TrimSpace(reason), dest); err != nil {
			return "", translate(err)
		}
		// After the insert, so that four eyes speak first; the transaction undoes it.
		if err := checkShownDestination(d.ID, strings.TrimSpace(destination), dest); err != nil {
			return "", err
		}
		count, err := approvalsCountTx(ctx, tx, d.ID)
		if err != nil {
			return "", err
		}
		detail := fmt.Sprintf("approval %d of %d", count, max(d.ApprovalsNeeded, 1))
		if count < max(d.ApprovalsNeeded, 1) {
			return detail, nil
		}
		pol, err := programPolicyTx(ctx, tx, d.ProgramID)
		if err != nil {
			return "", err
		}
		if err := s.checkCaps(ctx, tx, pol, d.PersonID, d.Amount); err != nil {
			return "", err
		}
		why := fmt.Sprintf("approved by %s", by.Subject())
		if count > 1 {
			why = fmt.Sprintf("second approval (dual control) by %s", by.Subject())
		}
		if reason != "" {
			why += ": " + reason
		}
		return detail, s.transition(ctx, tx, d, Approved, by.Name, why)
	})
}

// Reject refuses a disbursement awaiting approval; the money goes back to the fund.
func (s *Store) Reject(ctx context.Context, by network.By, id, reason string) (Disbursement, error) {
	return s.end(ctx, by, id, reason, Rejected, "payouts.disbursement.reject", AwaitingApproval)
}

// Cancel stops a disbursement that has not left (awaiting approval, approved and not yet
// submitted, failed, or waiting for funds) or came back (returned); money in the wallet for
// it goes back to the fund.
func (s *Store) Cancel(ctx context.Context, by network.By, id, reason string) (Disbursement, error) {
	return s.end(ctx, by, id, reason, Canceled, "payouts.disbursement.cancel", AwaitingApproval, Approved, Failed, InsufficientFunds, Returned)
}

func (s *Store) end(ctx context.Context, by network.By, id, reason, to, action string, from ...string) (Disbursement, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 500 {
		if _, err := parseID(id); err != nil {
			return Disbursement{}, err
		}
		return Disbursement{}, invalid("reason", "required (up to 500 characters)")
	}
	return s.act(ctx, by, id, action, func(tx pgx.Tx, d *Disbursement) (string, error) {
		if !slices.Contains(from, d.State) {
			return "", fmt.Errorf("%w: %s is %s; only %s can be %s", ErrState, d.ID, d.State, strings.Join(from, ", "), to)
		}
		if err := refuseIfSettled(ctx, tx, *d, to); err != nil {
			return "", err
		}
		funded := d.State != InsufficientFunds
		if err := s.transition(ctx, tx, d, to, by.Name, reason); err != nil {
			return "", err
		}
		if funded {
			if err := s.returnToFund(ctx, tx, *d, to+": "+reason); err != nil {
				return "", err
			}
		}
		return reason, nil
	})
}

// returnToFund gives a disbursement's money back to the program's fund by an explicit
// entry wallet → fund, recorded in payouts_forfeits.
func (s *Store) returnToFund(ctx context.Context, tx pgx.Tx, d Disbursement, why string) error {
	p, err := network.ProgramTx(ctx, tx, d.ProgramID)
	if err != nil {
		return err
	}
	e, err := s.ledger.PostTx(ctx, tx, ledger.NewEntry{
		IdempotencyKey: "fund-return:" + d.ID,
		Description:    fmt.Sprintf("disbursement %s %s: back to the fund", d.ID, why),
		Metadata:       json.RawMessage(fmt.Sprintf(`{"program":%q,"person":%q,"disbursement":%q,"flow":"fund_return"}`, d.ProgramID, d.PersonID, d.ID)),
		Postings: []ledger.Posting{
			{Account: d.Wallet, Side: ledger.Debit, Amount: d.Amount, Currency: d.Currency},
			{Account: p.FundAccount, Side: ledger.Credit, Amount: d.Amount, Currency: d.Currency},
		},
	})
	if err != nil {
		return fmt.Errorf("return %s to the fund: %w", d.ID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payouts_forfeits (disbursement_id, entry_id) VALUES ($1, $2)`, uuid.MustParse(d.ID), e.ID); err != nil {
		return fmt.Errorf("record return of %s: %w", d.ID, err)
	}
	return nil
}

// Retry sends a failed or returned disbursement again (a new attempt, with a new idempotency
// key). A returned one stopped counting under the caps when it came back: paid again it
// counts again, in the month and year of its approval (which it keeps), so it is refused
// (ErrCapExceeded) when that would take the person past a cap.
func (s *Store) Retry(ctx context.Context, by network.By, id, reason string) (Disbursement, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		reason = "retried by an admin"
	}
	return s.act(ctx, by, id, "payouts.disbursement.retry", func(tx pgx.Tx, d *Disbursement) (string, error) {
		if d.State != Failed && d.State != Returned {
			return "", fmt.Errorf("%w: %s is %s; only failed or returned disbursements are retried", ErrState, d.ID, d.State)
		}
		if err := refuseIfSettled(ctx, tx, *d, "retried"); err != nil {
			return "", err
		}
		if d.State == Returned {
			pol, err := programPolicyTx(ctx, tx, d.ProgramID)
			if err != nil {
				return "", err
			}
			var at time.Time
			if d.ApprovedAt != nil {
				at = *d.ApprovedAt
			}
			if err := s.checkCapsAt(ctx, tx, pol, d.PersonID, d.Amount, at); err != nil {
				return "", err
			}
		}
		return reason, s.transition(ctx, tx, d, Approved, by.Name, reason)
	})
}

// Destination is where a person is paid at a provider.
type Destination struct {
	Person   string `json:"person"`
	Provider string `json:"provider"`
	Account  string `json:"account"`
	SetBy    string `json:"set_by"`
	// Retried lists the failed disbursements the new destination sent again: those within
	// the auto-approve limit.
	Retried []string `json:"retried,omitempty"`
	// Reapproval lists the failed disbursements that needed an admin's approval: they are
	// awaiting approval again, for the new destination.
	Reapproval []string `json:"awaiting_approval,omitempty"`
}

// SetDestination records where person is paid at the configured provider, and retries their
// failed disbursements there: a new destination is how a failed payout is fixed. A failed
// disbursement that needed an admin's approval goes back to awaiting approval instead: its
// approvals were for the destination it failed to reach.
func (s *Store) SetDestination(ctx context.Context, by network.By, person, account string) (Destination, error) {
	account = strings.TrimSpace(account)
	if s.provider.Name() == "stripe" && !strings.HasPrefix(account, "acct_") {
		return Destination{}, invalid("account", "%q: a Stripe connected account id (acct_…)", account)
	}
	if account == "" {
		return Destination{}, invalid("account", "required")
	}
	dest := Destination{Person: person, Provider: s.provider.Name(), Account: account, SetBy: by.Subject()}
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO payouts_destinations (person_id, provider, account, set_by) VALUES ($1, $2, $3, $4)`,
			person, dest.Provider, account, by.Subject()); err != nil {
			return access.Event{}, fmt.Errorf("set destination of %s: %w", person, translate(err))
		}
		rows, err := tx.Query(ctx, `SELECT id FROM payouts_disbursements WHERE person_id = $1 AND state = 'failed' ORDER BY id`, person)
		if err != nil {
			return access.Event{}, err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return access.Event{}, err
		}
		for _, id := range ids {
			d, err := lockTx(ctx, tx, id)
			if err != nil {
				return access.Event{}, err
			}
			if d.State != Failed { // retried or forfeited meanwhile
				continue
			}
			if d.ApprovalsNeeded > 0 {
				// Its approvals were for where it failed to go: admins look at the new one.
				if err := s.transition(ctx, tx, &d, AwaitingApproval, by.Name,
					"payout destination updated: it needed approval, so it needs approving again for the new destination"); err != nil {
					return access.Event{}, err
				}
				dest.Reapproval = append(dest.Reapproval, d.ID)
				continue
			}
			if err := s.transition(ctx, tx, &d, Approved, by.Name, "payout destination updated: retried"); err != nil {
				return access.Event{}, err
			}
			dest.Retried = append(dest.Retried, d.ID)
		}
		return access.Event{Action: "payouts.destination.set", Record: "person:" + person, After: dest}, nil
	})
	return dest, err
}

// destinationTx is where person is paid at the provider: the latest set, or for the
// sandbox a default.
func (s *Store) destinationTx(ctx context.Context, tx access.DBTX, person string) (string, error) {
	var account string
	err := tx.QueryRow(ctx, `SELECT account FROM payouts_destinations WHERE person_id = $1 AND provider = $2 ORDER BY id DESC LIMIT 1`,
		person, s.provider.Name()).Scan(&account)
	if errors.Is(err, pgx.ErrNoRows) {
		if s.provider.Name() == "sandbox" {
			return SandboxDestination(person), nil
		}
		return "", fmt.Errorf("%w: %s has no %s account on file", ErrNoDestination, person, s.provider.Name())
	}
	return account, err
}
