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
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

// Money that would otherwise be left without an owner: an award paid into a wallet whose
// evidence was retracted after it was paid, and the part of a paid payout the provider gave
// back (a partial return, which leaves the disbursement paid). Each gets an admin's explicit,
// audited decision.

// Decisions on an award whose evidence was retracted.
const (
	// DecisionReverse gives the award's money back to the program's fund, as far as it is
	// still in the wallet: the award's disbursement is canceled (its entry wallet → fund), or,
	// for an award without one, the award's entry is reversed.
	DecisionReverse = "reverse"
	// DecisionKeep leaves the award paid, for the reason given.
	DecisionKeep = "keep"
)

// RetractedAward is an award paid into a wallet whose evidence was retracted since, not yet
// decided on, with its disbursement and what an admin may decide.
type RetractedAward struct {
	network.RetractedAward
	PersonName   string `json:"person_name"`
	Disbursement string `json:"disbursement_id,omitempty"`
	State        string `json:"disbursement_state,omitempty"`
	// Decisions are what may be decided now: keep always; reverse while the money has not
	// left the wallet (and is not on its way out).
	Decisions []string `json:"decisions"`
	// Note says why reversing is not offered, when it is not.
	Note string `json:"note,omitempty"`
}

// reversible: the award's money is in the wallet and not on its way out.
var reversible = []string{AwaitingApproval, Approved, Failed, Returned}

// settledBack: the award's money is back in the fund already (nothing to decide).
var settledBack = []string{Rejected, Canceled, Forfeited}

// RetractedAwards lists the awards of program ("" for every program) whose evidence was
// retracted after they were paid into the wallet and that no admin has decided on, oldest
// first. Awards whose disbursement already gave the money back to the fund are left out.
func (s *Store) RetractedAwards(ctx context.Context, program string) ([]RetractedAward, error) {
	return retractedAwardsTx(ctx, s.db, program, "")
}

func retractedAwardsTx(ctx context.Context, db access.DBTX, program, award string) ([]RetractedAward, error) {
	found, err := network.RetractedEvidenceTx(ctx, db, program, award)
	if err != nil || len(found) == 0 {
		return nil, err
	}
	ids := make([]string, len(found))
	for i, a := range found {
		ids[i] = a.Award.ID
	}
	type info struct {
		decided, settled bool
		name, id, state  string
	}
	infos := map[string]info{}
	rows, err := db.Query(ctx, `SELECT a.id::text, d.award_id IS NOT NULL, p.name, coalesce(b.id::text, ''), coalesce(b.state, ''),
			EXISTS (SELECT 1 FROM payouts_return_settlements s WHERE s.disbursement_id = b.id)
		FROM network_awards a JOIN network_people p ON p.id = a.participant_id
		LEFT JOIN payouts_award_decisions d ON d.award_id = a.id
		LEFT JOIN payouts_disbursements b ON b.award_id = a.id
		WHERE a.id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("decisions on retracted awards: %w", err)
	}
	var id string
	var in info
	if _, err := pgx.ForEachRow(rows, []any{&id, &in.decided, &in.name, &in.id, &in.state, &in.settled}, func() error {
		infos[id] = in
		return nil
	}); err != nil {
		return nil, fmt.Errorf("decisions on retracted awards: %w", err)
	}
	var out []RetractedAward
	for _, a := range found {
		in := infos[a.Award.ID]
		if in.decided || slices.Contains(settledBack, in.state) {
			continue
		}
		ra := RetractedAward{RetractedAward: a, PersonName: in.name, Disbursement: in.id, State: in.state, Decisions: []string{DecisionKeep}}
		switch {
		case in.settled:
			ra.Note = "Part of what its payout returned was paid again or given back already: it can only be kept."
		case in.id == "" || slices.Contains(reversible, in.state):
			ra.Decisions = append(ra.Decisions, DecisionReverse)
		case in.state == Submitted:
			ra.Note = "Its payout is on its way to the provider: it can be reversed if the payout fails, or kept."
		case in.state == Paid:
			ra.Note = "Its payout was paid: the money has left the wallet, so it can only be kept (Tandem records no debt)."
		default:
			ra.Note = "Its disbursement is " + in.state + ": it can only be kept."
		}
		out = append(out, ra)
	}
	return out, nil
}

// AwardDecision is an admin's decision on an award whose evidence was retracted.
type AwardDecision struct {
	AwardID   string    `json:"award_id"`
	AwardKey  string    `json:"award_key"`
	Decision  string    `json:"decision"`
	Reason    string    `json:"reason"`
	EntryID   string    `json:"entry_id,omitempty"` // the entry that gave the money back to the fund
	DecidedBy string    `json:"decided_by"`
	At        time.Time `json:"at"`
}

// DecideRetractedAward records an admin's decision on an award whose evidence was retracted
// (one listed by RetractedAwards), with a required reason, in one transaction with its
// audit line. Reverse gives the money back to the fund by an explicit entry wallet → fund:
// the award's disbursement is canceled, or an award without one has its entry reversed. It
// is refused (ErrState) when the money has left the wallet or is on its way out; keep is
// always possible. Each award is decided once.
func (s *Store) DecideRetractedAward(ctx context.Context, by network.By, award, decision, reason string) (AwardDecision, error) {
	reason = strings.TrimSpace(reason)
	switch {
	case uuid.Validate(award) != nil:
		return AwardDecision{}, fmt.Errorf("%w: award %q", network.ErrNotFound, award)
	case decision != DecisionReverse && decision != DecisionKeep:
		return AwardDecision{}, invalid("decision", "%q: reverse or keep", decision)
	case reason == "" || len(reason) > 500:
		return AwardDecision{}, invalid("reason", "required (up to 500 characters): why the award is reversed or kept")
	}
	out := AwardDecision{AwardID: award, Decision: decision, Reason: reason, DecidedBy: by.Subject()}
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		var key, entry string
		err := tx.QueryRow(ctx, `SELECT award_key, coalesce(entry_id::text, '') FROM network_awards WHERE id = $1 FOR UPDATE`, award).Scan(&key, &entry)
		if errors.Is(err, pgx.ErrNoRows) {
			return access.Event{}, fmt.Errorf("%w: award %s", network.ErrNotFound, award)
		}
		if err != nil {
			return access.Event{}, fmt.Errorf("lock award %s: %w", award, err)
		}
		out.AwardKey = key
		var decided bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payouts_award_decisions WHERE award_id = $1)`, award).Scan(&decided); err != nil {
			return access.Event{}, err
		}
		if decided {
			return access.Event{}, fmt.Errorf("%w: award %s was decided on already", ErrState, key)
		}
		var did uuid.UUID
		err = tx.QueryRow(ctx, `SELECT id FROM payouts_disbursements WHERE award_id = $1`, award).Scan(&did)
		hasDisbursement := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return access.Event{}, err
		}
		var d Disbursement
		if hasDisbursement {
			// Locked before the award's evidence is read, as every change to a disbursement does.
			if d, err = lockTx(ctx, tx, did); err != nil {
				return access.Event{}, err
			}
		}
		listed, err := retractedAwardsTx(ctx, tx, "", award)
		if err != nil {
			return access.Event{}, err
		}
		if len(listed) == 0 {
			return access.Event{}, fmt.Errorf("%w: award %s has no retracted evidence, or its money is back in the fund already", ErrState, key)
		}
		if !slices.Contains(listed[0].Decisions, decision) {
			return access.Event{}, fmt.Errorf("%w: award %s cannot be reversed. %s", ErrState, key, listed[0].Note)
		}
		if decision == DecisionReverse {
			why := "evidence retracted: " + reason
			if hasDisbursement {
				if err := refuseIfSettled(ctx, tx, d, "reversed"); err != nil {
					return access.Event{}, err
				}
				if err := s.transition(ctx, tx, &d, Canceled, by.Name, "award reversed, "+why); err != nil {
					return access.Event{}, err
				}
				if err := s.returnToFund(ctx, tx, d, "canceled (award reversed, "+why+")"); err != nil {
					return access.Event{}, err
				}
				if err := tx.QueryRow(ctx, `SELECT entry_id::text FROM payouts_forfeits WHERE disbursement_id = $1`, d.ID).Scan(&out.EntryID); err != nil {
					return access.Event{}, err
				}
			} else {
				e, err := s.ledger.ReverseTx(ctx, tx, uuid.MustParse(entry), ledger.Resolution{IdempotencyKey: "award-reversal:" + key,
					Description: fmt.Sprintf("award %s reversed, %s", key, why)})
				if err != nil {
					return access.Event{}, fmt.Errorf("reverse award %s: %w", key, err)
				}
				out.EntryID = e.ID.String()
			}
		}
		if err := tx.QueryRow(ctx, `INSERT INTO payouts_award_decisions (award_id, decision, reason, entry_id, decided_by)
			VALUES ($1, $2, $3, $4, $5) RETURNING at`, award, decision, reason, nullUUID(out.EntryID), out.DecidedBy).Scan(&out.At); err != nil {
			return access.Event{}, fmt.Errorf("record decision on award %s: %w", key, translate(err))
		}
		return access.Event{Action: "payouts.award." + decision, Record: "award:" + key,
			Before: listed[0], After: out, Detail: reason}, nil
	})
	if err != nil {
		return AwardDecision{}, err
	}
	return out, nil
}

// AwardDecisionOf is the decision recorded on award (ErrNotFound when there is none).
func (s *Store) AwardDecisionOf(ctx context.Context, award string) (AwardDecision, error) {
	if uuid.Validate(award) != nil {
		return AwardDecision{}, fmt.Errorf("%w: no decision on award %q", ErrNotFound, award)
	}
	d := AwardDecision{AwardID: award}
	err := s.db.QueryRow(ctx, `SELECT a.award_key, d.decision, d.reason, coalesce(d.entry_id::text, ''), d.decided_by, d.at
		FROM payouts_award_decisions d JOIN network_awards a ON a.id = d.award_id WHERE d.award_id = $1`, award).
		Scan(&d.AwardKey, &d.Decision, &d.Reason, &d.EntryID, &d.DecidedBy, &d.At)
	if errors.Is(err, pgx.ErrNoRows) {
		return AwardDecision{}, fmt.Errorf("%w: no decision on award %s", ErrNotFound, award)
	}
	return d, err
}

// refuseIfSettled refuses to move d's whole amount out of the wallet again (a retry, a
// cancellation back to the fund, a reversal) when part of what its payout returned was
// already paid again or given back: that part is no longer in the wallet.
func refuseIfSettled(ctx context.Context, tx pgx.Tx, d Disbursement, what string) error {
	if d.State != Returned {
		return nil
	}
	var settled bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payouts_return_settlements WHERE disbursement_id = $1)`, d.ID).Scan(&settled); err != nil {
		return err
	}
	if settled {
		return fmt.Errorf("%w: part of what %s's payout returned was already paid again or given back to the fund, so it cannot be %s; "+
			"pay the rest again or give it back (repay-returned, return-to-fund)", ErrState, d.ID, what)
	}
	return nil
}

func nullUUID(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ReturnedMoney is what a provider gave back of a paid payout and what became of it.
type ReturnedMoney struct {
	Disbursement string `json:"disbursement_id"`
	Currency     string `json:"currency"`
	// Returned is what the provider gave back of the latest attempt: what an earlier attempt
	// returned went out again with the retry that followed it, so it is no longer here.
	Returned    decimal.Decimal `json:"returned"`
	Settled     decimal.Decimal `json:"settled"`     // paid again or given back to the fund
	Outstanding decimal.Decimal `json:"outstanding"` // still in the wallet, owned by nothing
	Settlements []Settlement    `json:"settlements,omitempty"`
}

// MarshalJSON writes the amounts with the currency's places.
func (m ReturnedMoney) MarshalJSON() ([]byte, error) {
	type plain ReturnedMoney
	f := func(d decimal.Decimal) string { return ledger.FormatAmount(d, m.Currency) }
	return json.Marshal(struct {
		plain
		Returned    string `json:"returned"`
		Settled     string `json:"settled"`
		Outstanding string `json:"outstanding"`
	}{plain(m), f(m.Returned), f(m.Settled), f(m.Outstanding)})
}

// Settlement is one decision on returned money.
type Settlement struct {
	Kind            string    `json:"kind"` // repay or fund
	Amount          string    `json:"amount"`
	EntryID         string    `json:"entry_id"`                   // the entry wallet → fund
	NewDisbursement string    `json:"new_disbursement,omitempty"` // repay: the disbursement that pays it again
	DecidedBy       string    `json:"decided_by"`
	Reason          string    `json:"reason"`
	At              time.Time `json:"at"`
}

// Returned says what a provider gave back of disbursement id's payout (its latest attempt)
// and what became of it.
func (s *Store) Returned(ctx context.Context, id string) (ReturnedMoney, error) {
	uid, err := parseID(id)
	if err != nil {
		return ReturnedMoney{}, err
	}
	return returnedTx(ctx, s.db, uid)
}

func returnedTx(ctx context.Context, db access.DBTX, id uuid.UUID) (ReturnedMoney, error) {
	m := ReturnedMoney{Disbursement: id.String()}
	var returned, settled string
	err := db.QueryRow(ctx, `SELECT d.currency,
			(SELECT coalesce(sum(r.amount), 0)::text FROM payouts_returns r WHERE r.disbursement_id = d.id
				AND r.attempt = (SELECT max(a.attempt) FROM payouts_attempts a WHERE a.disbursement_id = d.id)),
			(SELECT coalesce(sum(amount), 0)::text FROM payouts_return_settlements WHERE disbursement_id = d.id)
		FROM payouts_disbursements d WHERE d.id = $1`, id).Scan(&m.Currency, &returned, &settled)
	if errors.Is(err, pgx.ErrNoRows) {
		return ReturnedMoney{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return ReturnedMoney{}, fmt.Errorf("returned money of %s: %w", id, err)
	}
	m.Returned, m.Settled = decimal.RequireFromString(returned), decimal.RequireFromString(settled)
	m.Outstanding = m.Returned.Sub(m.Settled)
	rows, err := db.Query(ctx, `SELECT kind, amount::text, entry_id::text, coalesce(new_disbursement_id::text, ''), decided_by, reason, at
		FROM payouts_return_settlements WHERE disbursement_id = $1 ORDER BY id`, id)
	if err != nil {
		return ReturnedMoney{}, err
	}
	var st Settlement
	if _, err := pgx.ForEachRow(rows, []any{&st.Kind, &st.Amount, &st.EntryID, &st.NewDisbursement, &st.DecidedBy, &st.Reason, &st.At}, func() error {
		st.Amount = ledger.FormatAmount(decimal.RequireFromString(st.Amount), m.Currency)
		m.Settlements = append(m.Settlements, st)
		return nil
	}); err != nil {
		return ReturnedMoney{}, err
	}
	return m, nil
}

// RepaidReturn is what RepayReturned did: the disbursement that pays the returned amount
// again, and the original's returned money after.
type RepaidReturn struct {
	Disbursement Disbursement  `json:"disbursement"`
	Returned     ReturnedMoney `json:"returned"`
}

// RepayReturned pays again what the provider gave back of a paid disbursement's payout (a
// partial return; one returned in full is retried instead). The returned amount goes back
// to the fund by an entry wallet → fund and is granted again by a new disbursement, which
// follows the program's approval policy like a manual grant: by requested it, so by must be
// a person and may not approve it. Refused (ErrState) when nothing returned remains.
func (s *Store) RepayReturned(ctx context.Context, by network.By, id, reason string) (RepaidReturn, error) {
	if by.PersonID == "" {
		return RepaidReturn{}, fmt.Errorf("%w: paying again needs an admin who is a person (a token made with --person): they request the new disbursement", ErrSelfApproval)
	}
	var out RepaidReturn
	err := s.settleReturn(ctx, by, id, "repay", reason, func(tx pgx.Tx, d Disbursement, amount decimal.Decimal, settleKey string, why string) (*uuid.UUID, error) {
		if !strings.HasPrefix(d.Wallet, "participant/") {
			return nil, fmt.Errorf("%w: %s paid a coach's stipend; give the returned amount back to the fund instead", ErrState, d.ID)
		}
		if err := requirePayable(ctx, tx, d.ProgramID, d.PersonID); err != nil {
			return nil, err
		}
		p, err := network.ProgramTx(ctx, tx, d.ProgramID)
		if err != nil {
			return nil, err
		}
		e, err := s.ledger.PostTx(ctx, tx, ledger.NewEntry{
			IdempotencyKey: "grant:" + p.ID + ":" + settleKey,
			Description:    fmt.Sprintf("returned payout of disbursement %s paid again to %s: %s", d.ID, d.PersonID, why),
			Metadata:       json.RawMessage(fmt.Sprintf(`{"program":%q,"person":%q,"repays":%q,"flow":"grant"}`, p.ID, d.PersonID, d.ID)),
			Postings: []ledger.Posting{
				{Account: p.FundAccount, Side: ledger.Debit, Amount: amount, Currency: p.Currency},
				{Account: network.WalletAccount(d.PersonID), Side: ledger.Credit, Amount: amount, Currency: p.Currency},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("grant again from %s: %w", p.FundAccount, err)
		}
		nd, err := s.insert(ctx, tx, newDisbursement{program: p, person: d.PersonID, wallet: network.WalletAccount(d.PersonID),
			amount: amount, source: "manual", fundingEntry: &e.ID, reason: fmt.Sprintf("pays again what disbursement %s's payout returned: %s", d.ID, why),
			requestedBy: by.Subject(), actor: by.Name, funded: true})
		if err != nil {
			return nil, err
		}
		if out.Disbursement, err = getTx(ctx, tx, uuid.MustParse(nd.ID)); err != nil {
			return nil, err
		}
		if err := access.Record(ctx, tx, access.Event{Actor: by.Principal, RequestID: by.RequestID, Action: "payouts.disbursement.create",
			Record: "disbursement:" + nd.ID, After: out.Disbursement, Detail: "pays again what disbursement " + d.ID + "'s payout returned"}); err != nil {
			return nil, err
		}
		nid := uuid.MustParse(nd.ID)
		return &nid, nil
	}, &out.Returned)
	return out, err
}

// ReturnReturnedToFund gives what the provider gave back of a paid disbursement's payout (a
// partial return) back to the program's fund, by an explicit entry wallet → fund. Refused
// (ErrState) when nothing returned remains.
func (s *Store) ReturnReturnedToFund(ctx context.Context, by network.By, id, reason string) (ReturnedMoney, error) {
	var out ReturnedMoney
	err := s.settleReturn(ctx, by, id, "fund", reason, func(pgx.Tx, Disbursement, decimal.Decimal, string, string) (*uuid.UUID, error) {
		return nil, nil
	}, &out)
	return out, err
}

// settleReturn moves what is outstanding of disbursement id's returned money out of the
// wallet (wallet → fund) and records it as kind, after then (which may pay it again), in
// one transaction with the audit line; out is the returned money after.
func (s *Store) settleReturn(ctx context.Context, by network.By, id, kind, reason string,
	then func(tx pgx.Tx, d Disbursement, amount decimal.Decimal, settleKey, why string) (*uuid.UUID, error), out *ReturnedMoney) error {
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 500 {
		if _, err := parseID(id); err != nil {
			return err
		}
		return invalid("reason", "required (up to 500 characters)")
	}
	action := map[string]string{"repay": "payouts.disbursement.repay_returned", "fund": "payouts.disbursement.return_to_fund"}[kind]
	_, err := s.act(ctx, by, id, action, func(tx pgx.Tx, d *Disbursement) (string, error) {
		m, err := returnedTx(ctx, tx, uuid.MustParse(d.ID))
		if err != nil {
			return "", err
		}
		// Paid and returned in part; or returned in full after part of it was settled here
		// (one returned in full at once is retried or canceled).
		if d.State != Paid && (d.State != Returned || len(m.Settlements) == 0) {
			return "", fmt.Errorf("%w: %s is %s; what a paid payout returned in part is paid again or given back here (one returned in full is retried or canceled)",
				ErrState, d.ID, d.State)
		}
		if !m.Outstanding.IsPositive() {
			return "", fmt.Errorf("%w: nothing returned remains in the wallet for %s (returned %s, already paid again or given back %s)",
				ErrState, d.ID, money(m.Returned, d.Currency), money(m.Settled, d.Currency))
		}
		p, err := network.ProgramTx(ctx, tx, d.ProgramID)
		if err != nil {
			return "", err
		}
		settleKey := fmt.Sprintf("return-settlement:%s:%d", d.ID, len(m.Settlements)+1)
		e, err := s.ledger.PostTx(ctx, tx, ledger.NewEntry{
			IdempotencyKey: settleKey,
			Description:    fmt.Sprintf("returned payout of disbursement %s: %s back to the fund (%s)", d.ID, money(m.Outstanding, d.Currency), reason),
			Metadata: json.RawMessage(fmt.Sprintf(`{"program":%q,"person":%q,"disbursement":%q,"flow":"fund_return","settles":%q}`,
				d.ProgramID, d.PersonID, d.ID, kind)),
			Postings: []ledger.Posting{
				{Account: d.Wallet, Side: ledger.Debit, Amount: m.Outstanding, Currency: d.Currency},
				{Account: p.FundAccount, Side: ledger.Credit, Amount: m.Outstanding, Currency: d.Currency},
			},
		})
		if err != nil {
			return "", fmt.Errorf("returned money of %s back to the fund: %w", d.ID, err)
		}
		nid, err := then(tx, *d, m.Outstanding, settleKey, reason)
		if err != nil {
			return "", err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO payouts_return_settlements (disbursement_id, kind, amount, entry_id, new_disbursement_id, decided_by, reason)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, d.ID, kind, m.Outstanding.String(), e.ID, nid, by.Subject(), reason); err != nil {
			return "", fmt.Errorf("record what became of %s's returned money: %w", d.ID, translate(err))
		}
		if *out, err = returnedTx(ctx, tx, uuid.MustParse(d.ID)); err != nil {
			return "", err
		}
		if d.State == Returned {
			// All of it is settled now: nothing is left for a retry or a cancellation.
			if err := s.transition(ctx, tx, d, Canceled, by.Name, "what the provider returned was paid again or given back to the fund: "+reason); err != nil {
				return "", err
			}
		}
		detail := fmt.Sprintf("%s returned: %s", money(m.Outstanding, d.Currency), reason)
		if nid != nil {
			detail = fmt.Sprintf("%s returned paid again by disbursement %s: %s", money(m.Outstanding, d.Currency), nid, reason)
		}
		return detail, nil
	})
	return err
}
