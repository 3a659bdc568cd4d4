package payouts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

// Policy is a program's payout policy (DESIGN.md §7). The auto-approve limit is the
// program's own (network); the rest is set here, the latest setting in force.
type Policy struct {
	Program              string              `json:"program"`
	Currency             string              `json:"currency"`
	AutoApproveLimit     decimal.Decimal     `json:"auto_approve_limit"`
	DualControlThreshold decimal.Decimal     `json:"dual_control_threshold"`
	MonthlyCap           decimal.NullDecimal `json:"monthly_cap"`
	YearlyCap            decimal.NullDecimal `json:"yearly_cap"`
	RemediationDays      int                 `json:"remediation_days"`
	AutoRetries          int                 `json:"auto_retries"`
	RetryBackoff         Duration            `json:"retry_backoff"`
	SetBy                string              `json:"set_by,omitempty"`
	SetAt                *time.Time          `json:"set_at,omitempty"`
	Default              bool                `json:"default"`
}

// MarshalJSON writes amounts with the currency's places, and caps as null when none.
func (p Policy) MarshalJSON() ([]byte, error) {
	type plain Policy
	f := func(d decimal.Decimal) string { return ledger.FormatAmount(d, p.Currency) }
	opt := func(d decimal.NullDecimal) *string {
		if !d.Valid {
			return nil
		}
		s := f(d.Decimal)
		return &s
	}
	return json.Marshal(struct {
		plain
		AutoApproveLimit     string  `json:"auto_approve_limit"`
		DualControlThreshold string  `json:"dual_control_threshold"`
		MonthlyCap           *string `json:"monthly_cap"`
		YearlyCap            *string `json:"yearly_cap"`
	}{plain(p), f(p.AutoApproveLimit), f(p.DualControlThreshold), opt(p.MonthlyCap), opt(p.YearlyCap)})
}

// Duration is a time.Duration written as "1h0m0s" in JSON.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as Go does.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// Policy defaults, when a program has set none: dual control from 500 (in the program's
// currency, and above its auto-approve limit), no caps, 30 days to fix a failed payout, two
// automatic retries an hour apart (doubling).
var (
	DefaultDualControl     = decimal.RequireFromString("500")
	DefaultRemediationDays = 30
	DefaultAutoRetries     = 2
	DefaultRetryBackoff    = time.Hour
)

// defaultDualControl is 500 in the program's currency, but never at or below its
// auto-approve limit (a JPY program, or a generous limit): set a policy to decide otherwise.
func defaultDualControl(p network.Program) decimal.Decimal {
	if exp, ok := ledger.Exponent(p.Currency); ok && !DefaultDualControl.GreaterThan(p.AutoApproveLimit) {
		return p.AutoApproveLimit.Add(decimal.New(1, -exp))
	}
	return DefaultDualControl
}

// approvalsNeeded: two admins at or above the dual-control threshold, none within the
// auto-approve limit, otherwise one.
func (p Policy) approvalsNeeded(amount decimal.Decimal) int {
	switch {
	case amount.GreaterThanOrEqual(p.DualControlThreshold):
		return 2
	case amount.LessThanOrEqual(p.AutoApproveLimit):
		return 0
	}
	return 1
}

// Policy returns a program's policy in force.
func (s *Store) Policy(ctx context.Context, program string) (Policy, error) {
	return programPolicyTx(ctx, s.db, program)
}

// programPolicyTx is the policy in force for a program, by id.
func programPolicyTx(ctx context.Context, db access.DBTX, program string) (Policy, error) {
	p, err := network.ProgramTx(ctx, db, program)
	if err != nil {
		return Policy{}, err
	}
	return policyTx(ctx, db, p)
}

func policyTx(ctx context.Context, db access.DBTX, p network.Program) (Policy, error) {
	pol := Policy{Program: p.ID, Currency: p.Currency, AutoApproveLimit: p.AutoApproveLimit}
	var dual, monthly, yearly *string
	var backoff int
	var setAt time.Time
	err := db.QueryRow(ctx, `SELECT dual_control_threshold::text, monthly_cap::text, yearly_cap::text, remediation_days,
		auto_retries, retry_backoff_seconds, set_by, set_at FROM payouts_policies WHERE program_id = $1 ORDER BY id DESC LIMIT 1`, p.ID).
		Scan(&dual, &monthly, &yearly, &pol.RemediationDays, &pol.AutoRetries, &backoff, &pol.SetBy, &setAt)
	if errors.Is(err, pgx.ErrNoRows) {
		dual := defaultDualControl(p)
		pol.DualControlThreshold, pol.RemediationDays, pol.AutoRetries = dual, DefaultRemediationDays, DefaultAutoRetries
		pol.RetryBackoff, pol.Default = Duration{DefaultRetryBackoff}, true
		return pol, nil
	}
	if err != nil {
		return Policy{}, fmt.Errorf("policy of %s: %w", p.ID, err)
	}
	pol.SetAt = &setAt
	pol.DualControlThreshold = decimal.RequireFromString(*dual)
	if monthly != nil {
		pol.MonthlyCap = decimal.NewNullDecimal(decimal.RequireFromString(*monthly))
	}
	if yearly != nil {
		pol.YearlyCap = decimal.NewNullDecimal(decimal.RequireFromString(*yearly))
	}
	pol.RetryBackoff = Duration{time.Duration(backoff) * time.Second}
	return pol, nil
}

// NewPolicy is a policy to set. Amounts are decimal strings in the program's currency; an
// empty cap means none; zero values of the others keep the defaults.
type NewPolicy struct {
	DualControlThreshold string `json:"dual_control_threshold"`
	MonthlyCap           string `json:"monthly_cap"`
	YearlyCap            string `json:"yearly_cap"`
	RemediationDays      int    `json:"remediation_days"`
	AutoRetries          *int   `json:"auto_retries"`
	RetryBackoff         string `json:"retry_backoff"`
}

// SetPolicy sets a program's policy; it applies to disbursements made from now on (the
// approvals a disbursement needs are fixed when it is made).
func (s *Store) SetPolicy(ctx context.Context, by network.By, program string, n NewPolicy) (Policy, error) {
	p, err := network.ProgramTx(ctx, s.db, program)
	if err != nil {
		return Policy{}, err
	}
	amount := func(field, v string) (*string, error) {
		if strings.TrimSpace(v) == "" {
			return nil, nil
		}
		d, err := ledger.ParseAmount(v, p.Currency)
		if err != nil {
			return nil, invalid(field, "%v", err)
		}
		if !d.IsPositive() {
			return nil, invalid(field, "must be more than zero")
		}
		str := d.String()
		return &str, nil
	}
	dual, err := amount("dual_control_threshold", n.DualControlThreshold)
	if err != nil {
		return Policy{}, err
	}
	if dual == nil {
		str := defaultDualControl(p).String()
		dual = &str
	}
	monthly, err := amount("monthly_cap", n.MonthlyCap)
	if err != nil {
		return Policy{}, err
	}
	yearly, err := amount("yearly_cap", n.YearlyCap)
	if err != nil {
		return Policy{}, err
	}
	if monthly != nil && yearly != nil && decimal.RequireFromString(*monthly).GreaterThan(decimal.RequireFromString(*yearly)) {
		return Policy{}, invalid("monthly_cap", "%s is more than the yearly cap %s", *monthly, *yearly)
	}
	days := n.RemediationDays
	if days == 0 {
		days = DefaultRemediationDays
	}
	if days < 1 || days > 365 {
		return Policy{}, invalid("remediation_days", "%d: between 1 and 365", days)
	}
	retries := DefaultAutoRetries
	if n.AutoRetries != nil {
		retries = *n.AutoRetries
	}
	if retries < 0 || retries > 10 {
		return Policy{}, invalid("auto_retries", "%d: between 0 and 10", retries)
	}
	backoff := DefaultRetryBackoff
	if n.RetryBackoff != "" {
		if backoff, err = time.ParseDuration(n.RetryBackoff); err != nil || backoff < time.Second || backoff > 7*24*time.Hour {
			return Policy{}, invalid("retry_backoff", "%q: a duration like 30m or 2h, from 1s to 168h", n.RetryBackoff)
		}
	}
	var pol Policy
	err = s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO payouts_policies (program_id, dual_control_threshold, monthly_cap, yearly_cap,
			remediation_days, auto_retries, retry_backoff_seconds, set_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			p.ID, *dual, monthly, yearly, days, retries, int(backoff/time.Second), by.Subject()); err != nil {
			return access.Event{}, fmt.Errorf("set policy of %s: %w", p.ID, err)
		}
		var err error
		if pol, err = policyTx(ctx, tx, p); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "payouts.policy.set", Record: "program:" + p.ID, After: pol}, nil
	})
	return pol, err
}

// checkCaps refuses (ErrCapExceeded) an approval that would take the person's approved
// disbursements in the program past the monthly or yearly cap, counted by the month and
// year they were approved in (in the program's time, clock.go); returned, rejected,
// canceled and forfeited ones do not count.
// It takes a lock on (program, person) so two approvals cannot both fit the same room.
func (s *Store) checkCaps(ctx context.Context, tx pgx.Tx, pol Policy, person string, amount decimal.Decimal) error {
	return s.checkCapsAt(ctx, tx, pol, person, amount, time.Time{})
}

// checkCapsAt is checkCaps for an amount that counts in the month and year of at, a program
// time (a returned disbursement paid again counts in those of its approval); zero is now.
func (s *Store) checkCapsAt(ctx context.Context, tx pgx.Tx, pol Policy, person string, amount decimal.Decimal, at time.Time) error {
	if !pol.MonthlyCap.Valid && !pol.YearlyCap.Valid {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('payouts:caps:' || $1 || ':' || $2, 0))`, pol.Program, person); err != nil {
		return fmt.Errorf("lock caps of %s: %w", person, err)
	}
	now, err := s.programNowTx(ctx, tx, pol.Program)
	if err != nil {
		return err
	}
	now = now.UTC()
	if at.IsZero() {
		at = now
	}
	at = at.UTC()
	monthStart := time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC)
	yearStart := time.Date(at.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	inMonth, inYear := "this month", "this year"
	if at.Year() != now.Year() || at.Month() != now.Month() {
		inMonth = "in " + at.Format("January 2006")
	}
	if at.Year() != now.Year() {
		inYear = "in " + at.Format("2006")
	}
	var month, year string
	if err := tx.QueryRow(ctx, `SELECT coalesce(sum(amount) FILTER (WHERE approved_at >= $3 AND approved_at < $6), 0)::text, coalesce(sum(amount), 0)::text
		FROM payouts_disbursements WHERE program_id = $1 AND person_id = $2 AND approved_at >= $4 AND approved_at < $5
		AND state IN ('approved', 'submitted', 'paid', 'failed')`, pol.Program, person, monthStart, yearStart, yearStart.AddDate(1, 0, 0), monthStart.AddDate(0, 1, 0)).Scan(&month, &year); err != nil {
		return fmt.Errorf("caps of %s: %w", person, err)
	}
	m, y := decimal.RequireFromString(month), decimal.RequireFromString(year)
	if pol.MonthlyCap.Valid && m.Add(amount).GreaterThan(pol.MonthlyCap.Decimal) {
		return fmt.Errorf("%w: %s would take %s to %s %s, past the monthly cap of %s", ErrCapExceeded,
			money(amount, pol.Currency), person, money(m.Add(amount), pol.Currency), inMonth, money(pol.MonthlyCap.Decimal, pol.Currency))
	}
	if pol.YearlyCap.Valid && y.Add(amount).GreaterThan(pol.YearlyCap.Decimal) {
		return fmt.Errorf("%w: %s would take %s to %s %s, past the yearly cap of %s", ErrCapExceeded,
			money(amount, pol.Currency), person, money(y.Add(amount), pol.Currency), inYear, money(pol.YearlyCap.Decimal, pol.Currency))
	}
	return nil
}
