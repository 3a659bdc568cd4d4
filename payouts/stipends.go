package payouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

// StipendPolicy is a program's coach stipend: Rate per verified session, paid monthly.
type StipendPolicy struct {
	Program string    `json:"program"`
	Rate    string    `json:"rate"`
	SetBy   string    `json:"set_by"`
	SetAt   time.Time `json:"set_at"`
}

// SetStipendPolicy sets the rate per verified coaching session (0 stops stipends). by must be
// a person: whoever set the rate in force requests the stipends paid at it, and may not
// approve them.
func (s *Store) SetStipendPolicy(ctx context.Context, by network.By, program, rate string) (StipendPolicy, error) {
	if err := requirePerson(by, "a stipend rate"); err != nil {
		return StipendPolicy{}, err
	}
	p, err := network.ProgramTx(ctx, s.db, program)
	if err != nil {
		return StipendPolicy{}, err
	}
	r, err := ledger.ParseAmount(rate, p.Currency)
	if err != nil || r.IsNegative() {
		return StipendPolicy{}, invalid("rate", "%q: an amount in %s, 0 to stop stipends", rate, p.Currency)
	}
	sp := StipendPolicy{Program: p.ID, Rate: ledger.FormatAmount(r, p.Currency), SetBy: by.Subject()}
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		if err := tx.QueryRow(ctx, `INSERT INTO payouts_stipend_policies (program_id, rate, set_by) VALUES ($1, $2, $3) RETURNING set_at`,
			p.ID, r.String(), sp.SetBy).Scan(&sp.SetAt); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "payouts.stipend_policy.set", Record: "program:" + p.ID, After: sp}, nil
	})
	return sp, err
}

// Stipend is a coach's stipend for one month of one program.
type Stipend struct {
	Program      string     `json:"program"`
	Coach        string     `json:"coach"`
	Month        string     `json:"month"`
	Sessions     int        `json:"sessions"`
	Rate         string     `json:"rate"`
	Amount       string     `json:"amount"`
	Currency     string     `json:"currency"`
	Status       string     `json:"status"`
	Reason       string     `json:"reason,omitempty"`
	EntryID      string     `json:"entry_id,omitempty"`
	Disbursement string     `json:"disbursement_id,omitempty"`
	PaidAt       *time.Time `json:"paid_at,omitempty"`
}

// PayStipends computes the stipends of month (its first day, UTC) for every program with a
// rate: a coach's sessions are the verified conversations that month on near_peer_coach
// connections of the program's participants. A coach with a W-9 on file (and consent) is
// paid — fund → coach wallet, then a disbursement like a grant's; one without is held,
// saying why, and paid by a later run once the form is on file. Safe to run twice: one
// stipend per (program, coach, month), paid once.
func (s *Store) PayStipends(ctx context.Context, month time.Time) ([]Stipend, error) {
	month = time.Date(month.Year(), month.Month(), 1, 0, 0, 0, 0, time.UTC)
	// Ended in real time, or in the time of a program whose test clock is ahead (clock.go).
	if ended, err := s.monthEnded(ctx, "", month); err != nil || !ended {
		if err != nil {
			return nil, err
		}
		return nil, invalid("month", "%s has not ended yet", month.Format("2006-01"))
	}
	// The rate in force of each program: its stipends are paid at that row's rate and
	// requested by whoever set it, even if another rate is set while they are paid.
	rows, err := s.db.Query(ctx, `SELECT DISTINCT ON (program_id) program_id, id, rate::text FROM payouts_stipend_policies ORDER BY program_id, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("stipend policies: %w", err)
	}
	policies := map[string]int64{}
	var program, rate string
	var policy int64
	if _, err := pgx.ForEachRow(rows, []any{&program, &policy, &rate}, func() error {
		if !decimal.RequireFromString(rate).IsZero() {
			policies[program] = policy
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var out []Stipend
	for program, policy := range policies {
		if ended, err := s.monthEnded(ctx, program, month); err != nil || !ended {
			if err != nil {
				return out, err
			}
			continue // not in this program's time: another program's test clock is ahead
		}
		rows, err := s.db.Query(ctx, `SELECT c.other_id, count(*) FROM network_conversations v
			JOIN network_connections c ON c.id = v.connection_id AND c.role = 'near_peer_coach'
			-- A session counts in one program: the one where the coach is assigned to the
			-- participant, else the participant's first enrolment (by program id).
			WHERE $1 = coalesce(
			    (SELECT min(e.program_id) FROM network_enrolments e WHERE e.person_id = c.participant_id AND e.coach_id = c.other_id),
			    (SELECT min(e.program_id) FROM network_enrolments e WHERE e.person_id = c.participant_id))
			  AND v.occurred_at >= $2 AND v.occurred_at < $3
			  AND (SELECT action FROM network_reviews r WHERE r.conversation_id = v.id ORDER BY r.id DESC LIMIT 1) = 'verify'
			GROUP BY c.other_id ORDER BY c.other_id`, program, month, month.AddDate(0, 1, 0))
		if err != nil {
			return nil, fmt.Errorf("sessions of %s: %w", program, err)
		}
		type count struct {
			Coach    string
			Sessions int
		}
		counts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[count])
		if err != nil {
			return nil, err
		}
		for _, c := range counts {
			st, err := s.payStipend(ctx, program, c.Coach, month, c.Sessions, policy)
			if err != nil {
				return out, err
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// payStipend computes and pays coach's stipend of month at the rate of stipend policy row
// policy, requested by whoever set that rate: rate and requester come from the same row.
func (s *Store) payStipend(ctx context.Context, program, coach string, month time.Time, sessions int, policy int64) (Stipend, error) {
	var st Stipend
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		p, err := network.ProgramTx(ctx, tx, program)
		if err != nil {
			return err
		}
		var rateText, setBy string
		if err := tx.QueryRow(ctx, `SELECT rate::text, set_by FROM payouts_stipend_policies WHERE id = $1 AND program_id = $2`,
			policy, program).Scan(&rateText, &setBy); err != nil {
			return fmt.Errorf("stipend rate %d of %s: %w", policy, program, err)
		}
		rate := decimal.RequireFromString(rateText)
		amount := rate.Mul(decimal.NewFromInt(int64(sessions)))
		var status string
		err = tx.QueryRow(ctx, `SELECT status FROM payouts_stipends WHERE program_id = $1 AND coach_id = $2 AND month = $3 FOR UPDATE`,
			program, coach, month).Scan(&status)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, `INSERT INTO payouts_stipends (program_id, coach_id, month, sessions, rate, amount, currency, status, reason)
				VALUES ($1, $2, $3, $4, $5, $6, $7, 'held', 'computed')`, program, coach, month, sessions, rate.String(), amount.String(), p.Currency); err != nil {
				return fmt.Errorf("stipend of %s: %w", coach, err)
			}
		case err != nil:
			return err
		case status == "paid":
			st, err = stipendTx(ctx, tx, program, coach, month)
			return err
		}
		var taxForm, consent bool
		if err := tx.QueryRow(ctx, `SELECT tax_form, network_has_consent(id) FROM network_people WHERE id = $1`, coach).Scan(&taxForm, &consent); err != nil {
			return err
		}
		hold := func(why string) error {
			_, err := tx.Exec(ctx, `UPDATE payouts_stipends SET sessions = $4, rate = $5, amount = $6, reason = $7, computed_at = clock_timestamp()
				WHERE program_id = $1 AND coach_id = $2 AND month = $3`, program, coach, month, sessions, rate.String(), amount.String(), why)
			if err == nil {
				st, err = stipendTx(ctx, tx, program, coach, month)
			}
			return err
		}
		switch {
		case !taxForm:
			return hold("held: no W-9 on file; paid once it is")
		case !consent:
			return hold("held: no consent on file")
		}
		wallet := network.CoachWalletAccount(coach)
		if _, _, err := s.ledger.CreateAccountTx(ctx, tx, ledger.NewAccount{Code: wallet, Type: ledger.Liability, NoOverdraft: true,
			Currency: p.Currency, Metadata: json.RawMessage(fmt.Sprintf(`{"person":%q}`, coach))}); err != nil && !errors.Is(err, ledger.ErrAccountExists) {
			return fmt.Errorf("wallet of coach %s: %w", coach, err)
		}
		e, short, err := postOrShort(ctx, tx, s.ledger.PostTx, ledger.NewEntry{
			IdempotencyKey: fmt.Sprintf("stipend:%s:%s:%s", program, coach, month.Format("2006-01")),
			Description:    fmt.Sprintf("coach stipend %s %s: %d verified sessions × %s", coach, month.Format("2006-01"), sessions, money(rate, p.Currency)),
			Metadata: json.RawMessage(fmt.Sprintf(`{"program":%q,"person":%q,"month":%q,"sessions":%d,"flow":"stipend"}`,
				program, coach, month.Format("2006-01"), sessions)),
			Postings: []ledger.Posting{
				{Account: p.FundAccount, Side: ledger.Debit, Amount: amount, Currency: p.Currency},
				{Account: wallet, Side: ledger.Credit, Amount: amount, Currency: p.Currency},
			},
		}, ledger.ErrInsufficientFunds)
		if err != nil {
			return fmt.Errorf("stipend entry of %s: %w", coach, err)
		}
		if short != nil {
			return hold(fmt.Sprintf("held: %s cannot cover %s yet", p.FundAccount, money(amount, p.Currency)))
		}
		d, err := s.insert(ctx, tx, newDisbursement{program: p, person: coach, wallet: wallet, amount: amount, source: "stipend",
			fundingEntry: &e.ID, reason: fmt.Sprintf("coach stipend %s: %d sessions", month.Format("2006-01"), sessions),
			requestedBy: setBy, actor: SystemActor.Name, funded: true}) // who set the rate may not approve it
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE payouts_stipends SET sessions = $4, rate = $5, amount = $6, status = 'paid', reason = '', entry_id = $7,
			disbursement_id = $8, paid_at = clock_timestamp() WHERE program_id = $1 AND coach_id = $2 AND month = $3`,
			program, coach, month, sessions, rate.String(), amount.String(), e.ID, d.ID); err != nil {
			return err
		}
		st, err = stipendTx(ctx, tx, program, coach, month)
		return err
	})
	return st, err
}

func stipendTx(ctx context.Context, db access.DBTX, program, coach string, month time.Time) (Stipend, error) {
	rows, err := db.Query(ctx, stipendQuery+` WHERE program_id = $1 AND coach_id = $2 AND month = $3`, program, coach, month)
	if err != nil {
		return Stipend{}, err
	}
	return pgx.CollectExactlyOneRow(rows, scanStipend)
}

const stipendQuery = `SELECT program_id, coach_id, to_char(month, 'YYYY-MM'), sessions, rate::text, amount::text, currency, status, reason,
	coalesce(entry_id::text, ''), coalesce(disbursement_id::text, ''), paid_at FROM payouts_stipends`

func scanStipend(r pgx.CollectableRow) (Stipend, error) {
	var st Stipend
	err := r.Scan(&st.Program, &st.Coach, &st.Month, &st.Sessions, &st.Rate, &st.Amount, &st.Currency, &st.Status, &st.Reason,
		&st.EntryID, &st.Disbursement, &st.PaidAt)
	if err == nil {
		st.Rate = ledger.FormatAmount(decimal.RequireFromString(st.Rate), st.Currency)
		st.Amount = ledger.FormatAmount(decimal.RequireFromString(st.Amount), st.Currency)
	}
	return st, err
}

// Stipends lists stipends, of one coach if coach is set, newest month first.
func (s *Store) Stipends(ctx context.Context, program, coach string) ([]Stipend, error) {
	rows, err := s.db.Query(ctx, stipendQuery+` WHERE ($1 = '' OR program_id = $1) AND ($2 = '' OR coach_id = $2)
		ORDER BY month DESC, coach_id LIMIT 1000`, program, coach)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanStipend)
}

// HeldStipendMonths are the months with stipends held (no W-9 yet, fund short), which the
// periodic job computes again.
func (s *Store) HeldStipendMonths(ctx context.Context) ([]time.Time, error) {
	rows, err := s.db.Query(ctx, `SELECT DISTINCT month FROM payouts_stipends WHERE status = 'held' ORDER BY month`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[time.Time])
}

// NECLine is a payee on the 1099-NEC report.
type NECLine struct {
	Coach    string `json:"coach"`
	Name     string `json:"name"`
	Total    string `json:"total"`
	Currency string `json:"currency"`
	Stipends int    `json:"stipends"`
	TaxForm  bool   `json:"w9_on_file"`
}

// NECReport lists, for a calendar year, the payees whose stipends were paid out to them that
// year (their disbursement paid, by the date it was; returned ones do not count) reach the
// 1099-NEC threshold: threshold when set, else Config.NECThreshold, else the year's — $600 for
// payments through 2025, $2,000 after (DOMAIN.md). USD only: the form is American.
func (s *Store) NECReport(ctx context.Context, year int, threshold decimal.Decimal) ([]NECLine, decimal.Decimal, error) {
	if year < 2000 || year > 2100 {
		return nil, decimal.Zero, invalid("year", "%d", year)
	}
	if threshold.IsZero() {
		threshold = s.nec
	}
	if threshold.IsZero() {
		threshold = decimal.RequireFromString("2000.00")
		if year <= 2025 {
			threshold = decimal.RequireFromString("600.00")
		}
	}
	start := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
	rows, err := s.db.Query(ctx, `SELECT s.coach_id, p.name, sum(s.amount)::text, s.currency, count(*), p.tax_form
		FROM payouts_stipends s JOIN network_people p ON p.id = s.coach_id
		JOIN payouts_disbursements d ON d.id = s.disbursement_id AND d.state = 'paid'
		WHERE s.status = 'paid' AND s.currency = 'USD'
		  AND (SELECT max(t.at) FROM payouts_transitions t WHERE t.disbursement_id = d.id AND t.to_state = 'paid') >= $1
		  AND (SELECT max(t.at) FROM payouts_transitions t WHERE t.disbursement_id = d.id AND t.to_state = 'paid') < $3
		GROUP BY s.coach_id, p.name, s.currency, p.tax_form HAVING sum(s.amount) >= $2 ORDER BY s.coach_id`, start, threshold.String(), start.AddDate(1, 0, 0))
	if err != nil {
		return nil, threshold, fmt.Errorf("1099-NEC report: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NECLine])
	for i := range lines {
		lines[i].Total = ledger.FormatAmount(decimal.RequireFromString(lines[i].Total), "USD")
	}
	return lines, threshold, err
}
