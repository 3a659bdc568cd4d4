package network

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/ledger"
)

// ProgramMonth is a program's network figures for one calendar month (UTC).
type ProgramMonth struct {
	Month string `json:"month"` // 2026-01
	// Milestones counts the awards reached in the month (by their milestone's date), paid or
	// waiting for funds; MilestonesPaid those of them paid into the wallet.
	Milestones     int `json:"milestones"`
	MilestonesPaid int `json:"milestones_paid"`
	// EconomicConnectedness as of the month's last day, today for the current month
	// (DESIGN.md §5, as ProgramMetrics computes it for today; bands are today's): twice the share of high-band connections among the banded
	// connections of low-band participants active that day. Nil when there are none.
	EconomicConnectedness *decimal.Decimal `json:"economic_connectedness"`
	LowBandConnections    int              `json:"low_band_connections"`
	LowToHighConnections  int              `json:"low_to_high_connections"`
}

// MaxMonths bounds the months ProgramDashboard reports.
const MaxMonths = 120

// monthRange is the first days of first's and last's months, and how many months they span.
func monthRange(first, last time.Time) (time.Time, time.Time, int, error) {
	first = time.Date(first.Year(), first.Month(), 1, 0, 0, 0, 0, time.UTC)
	last = time.Date(last.Year(), last.Month(), 1, 0, 0, 0, 0, time.UTC)
	n := (last.Year()-first.Year())*12 + int(last.Month()-first.Month()) + 1
	if n < 1 || n > MaxMonths {
		return first, last, 0, invalid("months", "from %s to %s: from 1 to %d months", first.Format("2006-01"), last.Format("2006-01"), MaxMonths)
	}
	return first, last, n, nil
}

// ProgramDashboard is what a program's dashboard shows of the network.
type ProgramDashboard struct {
	Metrics ProgramMetrics `json:"metrics"`
	Months  []ProgramMonth `json:"months"`
}

// The dashboard's queries ($1 the program). Each reads its tables once, joined by hash (no
// query per connection or conversation), and they run at once on their own connections, so
// that a program of 10,000 participants, 20,000 connections and 40,000 conversations is
// summed in the time of the longest. They compute ProgramMetrics' figures by the same
// definitions (the tests compare the two).
const (
	// Participants, and those who went on to coach (the coach role granted after the
	// participant role: near-peer conversion).
	dashParticipants = `SELECT count(*)::int, count(cr.person_id)::int
		FROM network_enrolments en
		LEFT JOIN network_roles pr ON pr.person_id = en.person_id AND pr.role = 'participant'
		LEFT JOIN network_roles cr ON cr.person_id = en.person_id AND cr.role = 'coach' AND cr.since > pr.since
		WHERE en.program_id = $1`
	// The connections of the program's participants that were not retracted, grouped by what
	// the figures need: role and both bands; whether active today (not ended by today, as
	// ProgramMetrics counts); and, for low-band participants' banded connections started by
	// today ($3, UTC), the month each started in and the one it ended in (clamped to the first
	// month shown, $2; no end: NULL), for economic connectedness month by month.
	dashConnections = `SELECT c.role, coalesce(pp.band, ''), coalesce(o.band, ''),
			(x.connection_id IS NULL OR x.ended_on > current_date) AS active,
			CASE WHEN pp.band = 'low' AND o.band IS NOT NULL AND c.started_on <= $3::date
				THEN greatest(date_trunc('month', c.started_on::timestamp)::date, $2::date) END AS s,
			CASE WHEN pp.band = 'low' AND o.band IS NOT NULL AND c.started_on <= $3::date AND x.ended_on IS NOT NULL
				THEN greatest(date_trunc('month', x.ended_on::timestamp)::date, $2::date) END AS e,
			count(*)::int
		FROM network_connections c
		JOIN network_enrolments en ON en.person_id = c.participant_id AND en.program_id = $1
		JOIN network_people pp ON pp.id = c.participant_id
		JOIN network_people o ON o.id = c.other_id
		LEFT JOIN network_connection_ends x ON x.connection_id = c.id
		WHERE x.retracted IS NOT TRUE
		GROUP BY 1, 2, 3, 4, 5, 6`
	// Conversations by month (UTC): see conversationsByMonth.
	dashConversations = conversationsByMonth
	// Awards: paid and waiting, the amount paid, the participants with one, and the median
	// time from enrolment to a participant's first milestone (the lower median, in days to
	// one place; evidence before enrolment counts 0). The totals are one plain aggregate, and
	// only the first milestone is grouped by participant (EXPLAIN: one narrow hash aggregate
	// of 10,000 groups instead of one carrying four aggregates each, half the time).
	dashAwards = `SELECT t.posted, t.waiting, t.amount, f.n, f.median FROM
		(SELECT count(*) FILTER (WHERE status = 'posted')::int AS posted,
			count(*) FILTER (WHERE status = 'insufficient_funds')::int AS waiting,
			coalesce(sum(amount) FILTER (WHERE status = 'posted'), 0)::text AS amount
			FROM network_awards WHERE program_id = $1) t,
		(SELECT count(*)::int AS n,
			(percentile_disc(0.5) WITHIN GROUP (ORDER BY round(greatest(extract(epoch FROM a.first - en.enrolled_at), 0) / 86400, 1)))::text AS median
			FROM (SELECT participant_id, min(reached_at) AS first FROM network_awards WHERE program_id = $1 GROUP BY 1) a
			JOIN network_enrolments en ON en.person_id = a.participant_id AND en.program_id = $1) f`
	// Milestones reached per month (UTC), from $2 to $3 (first days of months).
	dashMilestones = `SELECT to_char(date_trunc('month', reached_at AT TIME ZONE 'UTC'), 'YYYY-MM'), count(*)::int,
			count(*) FILTER (WHERE status = 'posted')::int
		FROM network_awards
		WHERE program_id = $1 AND reached_at >= $2::date::timestamp AT TIME ZONE 'UTC'
		  AND reached_at < ($3::date + interval '1 month')::timestamp AT TIME ZONE 'UTC'
		GROUP BY 1`
)

// conversationsByMonth counts a program's conversations ($1) by month (UTC), verified and
// well-resourced by their latest review; retracted ones, and those of retracted connections,
// left out. ProgramMetrics and ProgramDashboard both read it.
//
// Its plan (EXPLAIN ANALYZE, 10,000 participants, 20,000 connections, 39,500 conversations):
// the program's unretracted connections are one hash (a semi-join: enrolments and ends are
// joined to 20,000 connections, not to every conversation); each conversation's latest review
// comes from an index-only scan of network_reviews_latest (007_dashboard.sql) in its order,
// cut by DISTINCT ON, no sort and no heap; the conversations are read once and probed against
// both hashes. Grouping is by the month's timestamp, formatted once a month. The latest
// review by a lookup per conversation (LATERAL … LIMIT 1), or by a window over the joined
// set, measured slower at this size.
const conversationsByMonth = `SELECT to_char(m, 'YYYY-MM'), n, verified, resourced FROM (
		SELECT date_trunc('month', v.occurred_at AT TIME ZONE 'UTC') AS m,
			count(*)::int AS n, count(*) FILTER (WHERE r.action = 'verify')::int AS verified,
			count(*) FILTER (WHERE r.action = 'verify' AND cardinality(v.resources) > 0)::int AS resourced
		FROM network_conversations v
		LEFT JOIN (SELECT DISTINCT ON (conversation_id) conversation_id, action FROM network_reviews
			ORDER BY conversation_id, id DESC) r ON r.conversation_id = v.id
		WHERE v.connection_id IN (SELECT c.id FROM network_connections c
				JOIN network_enrolments en ON en.person_id = c.participant_id AND en.program_id = $1
				WHERE NOT EXISTS (SELECT FROM network_connection_ends x WHERE x.connection_id = c.id AND x.retracted))
			AND r.action IS DISTINCT FROM 'retract'
		GROUP BY 1) g ORDER BY m`

// readFast runs fn in a read-only transaction without JIT compilation: the dashboard's
// queries take tens of milliseconds, less than PostgreSQL takes to compile them.
func (s *Store) readFast(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL jit = off"); err != nil {
			return err
		}
		return fn(tx)
	})
}

// connectionGroup is a row of dashConnections.
type connectionGroup struct {
	role, band, otherBand string
	active                bool
	started, ended        *time.Time // for the months: nil when it does not count there
	n                     int
}

// ProgramDashboard computes ProgramMetrics (the same figures) and ProgramMonths (from first
// to last). Its queries run at once, each in its own read-only transaction: a change that
// commits meanwhile may show in one figure and not yet in another.
func (s *Store) ProgramDashboard(ctx context.Context, program string, first, last time.Time) (ProgramDashboard, error) {
	p, err := s.Program(ctx, program)
	if err != nil {
		return ProgramDashboard{}, err
	}
	first, last, n, err := monthRange(first, last)
	if err != nil {
		return ProgramDashboard{}, err
	}
	m := ProgramMetrics{Program: p.ID, ConnectionsByRole: map[string]int{}, ConversationsByMonth: []MonthCount{}}
	var (
		groups        []connectionGroup
		amount        string
		median        *string
		milestones    = map[string][2]int{}
		wg            sync.WaitGroup
		errs          [4]error
		from, through = first.Format(time.DateOnly), last.Format(time.DateOnly)
		today         = time.Now().UTC().Format(time.DateOnly)
	)
	wg.Go(func() {
		errs[0] = s.readFast(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, dashConversations, p.ID)
			if err != nil {
				return err
			}
			m.ConversationsByMonth, err = pgx.CollectRows(rows, pgx.RowToStructByPos[MonthCount])
			return err
		})
	})
	wg.Go(func() {
		errs[1] = s.readFast(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, dashConnections, p.ID, from, today)
			if err != nil {
				return err
			}
			var g connectionGroup
			_, err = pgx.ForEachRow(rows, []any{&g.role, &g.band, &g.otherBand, &g.active, &g.started, &g.ended, &g.n}, func() error {
				groups = append(groups, g)
				return nil
			})
			return err
		})
	})
	wg.Go(func() {
		errs[2] = s.readFast(ctx, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, dashParticipants, p.ID).Scan(&m.Participants, &m.BecameCoaches); err != nil {
				return err
			}
			return tx.QueryRow(ctx, dashAwards, p.ID).Scan(&m.AwardsPosted, &m.AwardsWaiting, &amount, &m.ParticipantsWithMilestone, &median)
		})
	})
	wg.Go(func() {
		errs[3] = s.readFast(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, dashMilestones, p.ID, from, through)
			if err != nil {
				return err
			}
			var month string
			var reached, paid int
			_, err = pgx.ForEachRow(rows, []any{&month, &reached, &paid}, func() error {
				milestones[month] = [2]int{reached, paid}
				return nil
			})
			return err
		})
	})
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return ProgramDashboard{}, fmt.Errorf("dashboard of %s: %w", program, err)
	}

	// Today's figures, as ProgramMetrics computes them.
	var known, cross, lowConns, lowHigh int
	for _, g := range groups {
		if !g.active {
			continue
		}
		m.ConnectionsByRole[g.role] += g.n
		if g.band != "" && g.otherBand != "" {
			known += g.n
			if g.band != g.otherBand {
				cross += g.n
			}
			if g.band == "low" {
				lowConns += g.n
				if g.otherBand == "high" {
					lowHigh += g.n
				}
			}
		}
	}
	m.CrossClassShare = ratio(cross, known, 1)
	m.EconomicConnectedness = ratio(lowHigh, lowConns, 2)
	total := decimalOf(amount)
	m.AmountAwarded = ledger.FormatAmount(total, p.Currency)
	if m.AwardsPosted > 0 {
		per := ledger.FormatAmount(total.DivRound(decimal.NewFromInt(int64(m.AwardsPosted)), 2), p.Currency)
		m.AmountPerMilestone = &per
	}
	if median != nil {
		d := decimalOf(*median)
		m.MedianDaysToFirstMilestone = &d
	}
	m.NearPeerConversion = ratio(m.BecameCoaches, m.Participants, 1)
	if m.Fund, err = s.ledger.Balance(ctx, p.FundAccount, ledger.AsOf{}); err != nil {
		return ProgramDashboard{}, err
	}

	// The months: each low-band participant's banded connection counts from the month it
	// started to the month it ended (a running sum of starts less ends).
	delta := map[string][2]int{}
	for _, g := range groups {
		if g.started == nil {
			continue
		}
		high := 0
		if g.otherBand == "high" {
			high = g.n
		}
		k := g.started.Format("2006-01")
		delta[k] = [2]int{delta[k][0] + g.n, delta[k][1] + high}
		if g.ended != nil {
			k := g.ended.Format("2006-01")
			delta[k] = [2]int{delta[k][0] - g.n, delta[k][1] - high}
		}
	}
	months := make([]ProgramMonth, n)
	conns, high := 0, 0
	for i := range months {
		k := first.AddDate(0, i, 0).Format("2006-01")
		conns, high = conns+delta[k][0], high+delta[k][1]
		months[i] = ProgramMonth{Month: k, Milestones: milestones[k][0], MilestonesPaid: milestones[k][1],
			LowBandConnections: conns, LowToHighConnections: high, EconomicConnectedness: ratio(high, conns, 2)}
	}
	return ProgramDashboard{Metrics: m, Months: months}, nil
}
