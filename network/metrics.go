package network

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/ledger"
)

// MonthCount counts conversations in a calendar month (UTC).
type MonthCount struct {
	Month         string `json:"month"`
	Conversations int    `json:"conversations"`
	Verified      int    `json:"verified"`
	WellResourced int    `json:"well_resourced"`
}

// ParticipantMetrics are DESIGN.md §5's metrics for one participant, from their facts.
type ParticipantMetrics struct {
	ConnectionsByRole map[string]int `json:"connections_by_role"`
	// CrossClassShare is the share of active connections whose band differs from the
	// participant's, among those where both bands are known (nil when none are).
	CrossClassShare *decimal.Decimal `json:"cross_class_share"`
	// EconomicConnectedness is EC_i (see EconomicConnectedness); nil where it is left
	// out for the reader (Redacted): it would reveal the bands of their connections.
	EconomicConnectedness *decimal.Decimal `json:"economic_connectedness"`
	ConversationsByMonth  []MonthCount     `json:"conversations_by_month"`
	// Redacted says the band-derived figures were left out for this reader.
	Redacted bool `json:"redacted,omitempty"`
}

// MetricsOf computes a participant's metrics from their facts at now.
func MetricsOf(f Facts, now time.Time) ParticipantMetrics {
	m := ParticipantMetrics{ConnectionsByRole: map[string]int{}, ConversationsByMonth: []MonthCount{}}
	known, cross := 0, 0
	for _, c := range f.Connections {
		if c.StartedOn.After(now) || (c.EndedOn != nil && !c.EndedOn.After(now)) {
			continue
		}
		m.ConnectionsByRole[c.Role]++
		if f.Band != "" && c.OtherBand != "" {
			known++
			if c.OtherBand != f.Band {
				cross++
			}
		}
	}
	if known > 0 {
		share := decimal.NewFromInt(int64(cross)).DivRound(decimal.NewFromInt(int64(known)), 4)
		m.CrossClassShare = &share
	}
	ec, _, _ := EconomicConnectedness(f.Connections, now)
	m.EconomicConnectedness = &ec
	byMonth := map[string]*MonthCount{}
	for _, cv := range f.Conversations {
		k := cv.OccurredAt.UTC().Format("2006-01")
		mc := byMonth[k]
		if mc == nil {
			mc = &MonthCount{Month: k}
			byMonth[k] = mc
		}
		mc.Conversations++
		if cv.Verified {
			mc.Verified++
			if len(cv.Resources) > 0 {
				mc.WellResourced++
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(byMonth)) {
		m.ConversationsByMonth = append(m.ConversationsByMonth, *byMonth[k])
	}
	return m
}

// ProgramMetrics are DESIGN.md §5's metrics for a program.
type ProgramMetrics struct {
	Program           string         `json:"program"`
	Participants      int            `json:"participants"`
	ConnectionsByRole map[string]int `json:"connections_by_role"`
	// CrossClassShare: active connections between people of different bands, among those
	// where both bands are known.
	CrossClassShare *decimal.Decimal `json:"cross_class_share"`
	// EconomicConnectedness after Chetty et al.: twice the share of high-band connections
	// among the connections (with a known band) of low-band participants. 1.0 means no class
	// gap. Nil when no low-band participant has such a connection.
	EconomicConnectedness *decimal.Decimal `json:"economic_connectedness"`
	ConversationsByMonth  []MonthCount     `json:"conversations_by_month"`
	AwardsPosted          int              `json:"awards_posted"`
	AwardsWaiting         int              `json:"awards_waiting_for_funds"`
	AmountAwarded         string           `json:"amount_awarded"`
	// AmountPerMilestone is the amount awarded divided by posted awards.
	AmountPerMilestone *string `json:"amount_per_milestone"`
	// MedianDaysToFirstMilestone counts from enrolment to the first award's milestone (the
	// lower median, in days to one place; a milestone whose evidence predates enrolment
	// counts as 0).
	MedianDaysToFirstMilestone *decimal.Decimal `json:"median_days_to_first_milestone"`
	ParticipantsWithMilestone  int              `json:"participants_with_milestone"`
	// NearPeerConversion: participants who went on to coach (the coach role granted after
	// the participant role), and their share of participants.
	BecameCoaches      int              `json:"became_coaches"`
	NearPeerConversion *decimal.Decimal `json:"near_peer_conversion"`
	Fund               ledger.Balance   `json:"fund"`
}

// ProgramMetrics computes a program's metrics from the database, over active, unretracted
// connections and unretracted conversations of its participants.
func (s *Store) ProgramMetrics(ctx context.Context, program string) (ProgramMetrics, error) {
	p, err := s.Program(ctx, program)
	if err != nil {
		return ProgramMetrics{}, err
	}
	m := ProgramMetrics{Program: p.ID, ConnectionsByRole: map[string]int{}, ConversationsByMonth: []MonthCount{}}
	err = pgx.BeginTxFunc(ctx, s.db, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM network_enrolments WHERE program_id = $1`, p.ID).Scan(&m.Participants); err != nil {
			return err
		}
		const active = `FROM network_connections c
			JOIN network_enrolments en ON en.person_id = c.participant_id AND en.program_id = $1
			JOIN network_people pp ON pp.id = c.participant_id
			JOIN network_people o ON o.id = c.other_id
			LEFT JOIN network_connection_ends x ON x.connection_id = c.id
			WHERE (x.connection_id IS NULL OR (NOT x.retracted AND x.ended_on > current_date))`
		rows, err := tx.Query(ctx, `SELECT c.role, count(*)::int `+active+` GROUP BY c.role`, p.ID)
		if err != nil {
			return err
		}
		var role string
		var n int
		if _, err := pgx.ForEachRow(rows, []any{&role, &n}, func() error { m.ConnectionsByRole[role] = n; return nil }); err != nil {
			return err
		}
		var known, cross, lowConns, lowHigh int
		if err := tx.QueryRow(ctx, `SELECT
				count(*) FILTER (WHERE pp.band IS NOT NULL AND o.band IS NOT NULL)::int,
				count(*) FILTER (WHERE pp.band <> o.band)::int,
				count(*) FILTER (WHERE pp.band = 'low' AND o.band IS NOT NULL)::int,
				count(*) FILTER (WHERE pp.band = 'low' AND o.band = 'high')::int `+active, p.ID).
			Scan(&known, &cross, &lowConns, &lowHigh); err != nil {
			return err
		}
		m.CrossClassShare = ratio(cross, known, 1)
		m.EconomicConnectedness = ratio(lowHigh, lowConns, 2)
		// Every conversation's latest review in one pass (see conversationsByMonth).
		rows, err = tx.Query(ctx, conversationsByMonth, p.ID)
		if err != nil {
			return err
		}
		if m.ConversationsByMonth, err = pgx.CollectRows(rows, pgx.RowToStructByPos[MonthCount]); err != nil {
			return err
		}
		var amount string
		var median *string
		if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'posted')::int,
				count(*) FILTER (WHERE status = 'insufficient_funds')::int,
				coalesce(sum(amount) FILTER (WHERE status = 'posted'), 0)::text
			FROM network_awards WHERE program_id = $1`, p.ID).Scan(&m.AwardsPosted, &m.AwardsWaiting, &amount); err != nil {
			return err
		}
		total := decimalOf(amount)
		m.AmountAwarded = ledger.FormatAmount(total, p.Currency)
		if m.AwardsPosted > 0 {
			per := ledger.FormatAmount(total.DivRound(decimal.NewFromInt(int64(m.AwardsPosted)), 2), p.Currency)
			m.AmountPerMilestone = &per
		}
		if err := tx.QueryRow(ctx, `SELECT count(*)::int,
				(percentile_disc(0.5) WITHIN GROUP (ORDER BY round(greatest(extract(epoch FROM first - en.enrolled_at), 0) / 86400, 1)))::text
			FROM (SELECT participant_id, min(reached_at) AS first FROM network_awards WHERE program_id = $1 GROUP BY 1) a
			JOIN network_enrolments en ON en.person_id = a.participant_id AND en.program_id = $1`, p.ID).
			Scan(&m.ParticipantsWithMilestone, &median); err != nil {
			return err
		}
		if median != nil {
			d := decimalOf(*median)
			m.MedianDaysToFirstMilestone = &d
		}
		if err := tx.QueryRow(ctx, `SELECT count(*)::int FROM network_enrolments en
			JOIN network_roles pr ON pr.person_id = en.person_id AND pr.role = 'participant'
			JOIN network_roles cr ON cr.person_id = en.person_id AND cr.role = 'coach' AND cr.since > pr.since
			WHERE en.program_id = $1`, p.ID).Scan(&m.BecameCoaches); err != nil {
			return err
		}
		m.NearPeerConversion = ratio(m.BecameCoaches, m.Participants, 1)
		return nil
	})
	if err != nil {
		return ProgramMetrics{}, fmt.Errorf("metrics of %s: %w", program, err)
	}
	fund, err := s.ledger.Balance(ctx, p.FundAccount, ledger.AsOf{})
	if err != nil {
		return ProgramMetrics{}, err
	}
	m.Fund = fund
	return m, nil
}

// ratio is factor × num ÷ den to 4 places, nil when den is 0.
func ratio(num, den, factor int) *decimal.Decimal {
	if den == 0 {
		return nil
	}
	r := decimal.NewFromInt(int64(factor*num)).DivRound(decimal.NewFromInt(int64(den)), 4)
	return &r
}
