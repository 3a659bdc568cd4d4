package payouts

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/network"
)

// StateTotal counts a program's disbursements in one state.
type StateTotal struct {
	State  string          `json:"state"`
	Count  int             `json:"count"`
	Amount decimal.Decimal `json:"amount"`
}

// MoneyMonth is what moved in a program in one calendar month (UTC).
type MoneyMonth struct {
	Month string `json:"month"` // 2026-01
	// Released is what left the fund for wallets: awards when they were paid into the
	// wallet, and manual grants, instalments and stipends when they were made.
	Released decimal.Decimal `json:"released"`
	// Paid is what the provider paid out (attempts settled paid, by settlement).
	Paid decimal.Decimal `json:"paid"`
	// ReturnedToFund is what went back to the fund (rejected, canceled or forfeited after
	// reaching the wallet).
	ReturnedToFund decimal.Decimal `json:"returned_to_fund"`
}

// ProgramMoney is the disbursement side of a program's dashboard.
type ProgramMoney struct {
	Program  string       `json:"program"`
	Currency string       `json:"currency"`
	ByState  []StateTotal `json:"by_state"` // every state, in the order of States
	// Months runs from the first month asked for to the last, one entry each.
	Months []MoneyMonth `json:"months"`
	// Totals over the program's life (not only the months shown).
	Released       decimal.Decimal `json:"released"`
	Paid           decimal.Decimal `json:"paid"`
	ReturnedToFund decimal.Decimal `json:"returned_to_fund"`
}

// State is the total of one state.
func (m ProgramMoney) State(state string) StateTotal {
	for _, st := range m.ByState {
		if st.State == state {
			return st
		}
	}
	return StateTotal{State: state}
}

// MaxMonths bounds the months ProgramMoney reports.
const MaxMonths = 120

// ProgramMoney sums a program's disbursements by state, and what was released, paid and
// returned to the fund in each month from first to last (calendar months, UTC).
func (s *Store) ProgramMoney(ctx context.Context, program string, first, last time.Time) (ProgramMoney, error) {
	p, err := network.ProgramTx(ctx, s.db, program)
	if err != nil {
		return ProgramMoney{}, err
	}
	first = time.Date(first.Year(), first.Month(), 1, 0, 0, 0, 0, time.UTC)
	last = time.Date(last.Year(), last.Month(), 1, 0, 0, 0, 0, time.UTC)
	n := (last.Year()-first.Year())*12 + int(last.Month()-first.Month()) + 1
	if n < 1 || n > MaxMonths {
		return ProgramMoney{}, invalid("months", "from %s to %s: from 1 to %d months", first.Format("2006-01"), last.Format("2006-01"), MaxMonths)
	}
	m := ProgramMoney{Program: p.ID, Currency: p.Currency, Months: make([]MoneyMonth, n)}
	index := map[string]int{}
	for i := range m.Months {
		k := first.AddDate(0, i, 0).Format("2006-01")
		m.Months[i] = MoneyMonth{Month: k}
		index[k] = i
	}
	byState := map[string]StateTotal{}
	err = pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// Short aggregates: compiling them (JIT) would take longer than running them.
		if _, err := tx.Exec(ctx, "SET LOCAL jit = off"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT state, count(*)::int, sum(amount)::text FROM payouts_disbursements
			WHERE program_id = $1 GROUP BY state`, p.ID)
		if err != nil {
			return err
		}
		var st StateTotal
		var amount string
		if _, err := pgx.ForEachRow(rows, []any{&st.State, &st.Count, &amount}, func() error {
			st.Amount = decimal.RequireFromString(amount)
			byState[st.State] = st
			return nil
		}); err != nil {
			return err
		}
		// Each flow by month; months outside those asked for count in the totals only.
		rows, err = tx.Query(ctx, `SELECT 'released', to_char(coalesce(a.posted_at, d.created_at) AT TIME ZONE 'UTC', 'YYYY-MM'), sum(d.amount)::text
				FROM payouts_disbursements d LEFT JOIN network_awards a ON a.id = d.award_id
				WHERE d.program_id = $1 AND (d.funding_entry_id IS NOT NULL OR a.status = 'posted') GROUP BY 2
			UNION ALL
			SELECT 'paid', to_char(t.settled_at AT TIME ZONE 'UTC', 'YYYY-MM'), sum(d.amount)::text
				FROM payouts_attempts t JOIN payouts_disbursements d ON d.id = t.disbursement_id
				WHERE d.program_id = $1 AND t.outcome = 'paid' GROUP BY 2
			UNION ALL
			SELECT 'returned', to_char(f.at AT TIME ZONE 'UTC', 'YYYY-MM'), sum(d.amount)::text
				FROM payouts_forfeits f JOIN payouts_disbursements d ON d.id = f.disbursement_id
				WHERE d.program_id = $1 GROUP BY 2`, p.ID)
		if err != nil {
			return err
		}
		var flow, month string
		_, err = pgx.ForEachRow(rows, []any{&flow, &month, &amount}, func() error {
			v := decimal.RequireFromString(amount)
			i, shown := index[month]
			switch flow {
			case "released":
				m.Released = m.Released.Add(v)
				if shown {
					m.Months[i].Released = v
				}
			case "paid":
				m.Paid = m.Paid.Add(v)
				if shown {
					m.Months[i].Paid = v
				}
			case "returned":
				m.ReturnedToFund = m.ReturnedToFund.Add(v)
				if shown {
					m.Months[i].ReturnedToFund = v
				}
			}
			return nil
		})
		return err
	})
	if err != nil {
		return ProgramMoney{}, fmt.Errorf("money of %s: %w", program, err)
	}
	for _, st := range States {
		t := byState[st]
		t.State = st
		m.ByState = append(m.ByState, t)
	}
	return m, nil
}
