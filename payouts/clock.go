package payouts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/textfmt"
	"github.com/tandemledger/tandem/network"
)

// A program's test clock (after Stripe's test clocks): the program's time is real time plus
// an offset that an admin moves forward, never back, each advance in the audit trail. What
// payouts decide by date for the program follows it: the remediation window and automatic
// retries (Sweep), the month and year an approval counts in for the caps (approved_at is
// stamped in program time), and which commitment instalments are due (ReleaseInstalments).
//
// What it does not move: the ledger's times (an entry's posted and effective time stay the
// real clock's, as do transitions, attempts and the audit trail — history is never dated in
// the future), River's schedule (a retry job still runs at its real time; an advance that
// makes a retry or a forfeit due earlier leaves it to the next sweep). Coach stipends are
// computed for a month once it has ended in the program's time (PayStipends for that month;
// the periodic job asks for the months that ended in real time).
//
// The rule for "sandbox only": a program may have its clock advanced only while the server
// pays through the sandbox provider and none of the program's disbursements was ever sent
// through another provider (a Stripe account in test mode included: its own clock does not
// move). Offsets take effect only while the server pays through the sandbox; under any other
// provider every program runs on real time, so a clock advanced in a sandbox can never date a
// live payout's decisions.

// ErrNotSandbox: the program's money goes, or went, through a provider other than the
// sandbox, so its clock may not be moved.
var ErrNotSandbox = errors.New("test clocks are for sandbox programs only")

// MaxClockAdvance is the most one advance may move a program's clock.
const MaxClockAdvance = 10 * 366 * 24 * time.Hour

// Clock is a program's test clock.
type Clock struct {
	Program string `json:"program"`
	// Now is the program's time; Real the real time it was read at.
	Now  time.Time `json:"now"`
	Real time.Time `json:"real"`
	// Offset is how far the program's time is ahead of real time.
	Offset Duration `json:"offset"`
	// Sandbox: the clock may be advanced (see ErrNotSandbox); when false, Why says why not.
	Sandbox  bool           `json:"sandbox"`
	Why      string         `json:"why,omitempty"`
	Advances []ClockAdvance `json:"advances"`
}

// Ahead is the offset in words, "+3 days" or "+3 days 4h0m0s", "" when there is none.
func (c Clock) Ahead() string {
	d := c.Offset.Duration
	if d <= 0 {
		return ""
	}
	days, rest := d/(24*time.Hour), d%(24*time.Hour)
	var parts []string
	if days > 0 {
		parts = append(parts, textfmt.Days(int(days)))
	}
	if rest > 0 {
		parts = append(parts, rest.String())
	}
	return "+" + strings.Join(parts, " ")
}

// ClockAdvance is one move of a program's clock.
type ClockAdvance struct {
	By         Duration  `json:"by"`
	Offset     Duration  `json:"offset"`
	AdvancedBy string    `json:"advanced_by"`
	Reason     string    `json:"reason,omitempty"`
	At         time.Time `json:"at"`
}

// ClockMove is how far to move a clock: By a duration ("72h", "3d") or To a later program
// time ("2027-01-05", the start of that UTC day, or an RFC 3339 time). Exactly one is set.
type ClockMove struct {
	By     string `json:"by,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ParseClockDuration reads "72h", "90m", "3d" or "2w" (days and weeks of 24 hours).
func ParseClockDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil || v > int64(MaxClockAdvance/unit) || v < -int64(MaxClockAdvance/unit) {
				return 0, fmt.Errorf("%q: a duration like 72h, 3d or 2w", s)
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: a duration like 72h, 3d or 2w", s)
	}
	return d, nil
}

// clockOffsetTx is the program's offset in force now: zero without a test clock, or while the
// server pays through a provider other than the sandbox.
func (s *Store) clockOffsetTx(ctx context.Context, db access.DBTX, program string) (time.Duration, error) {
	if s.provider.Name() != "sandbox" {
		return 0, nil
	}
	var secs int64
	err := db.QueryRow(ctx, `SELECT coalesce((SELECT offset_seconds FROM payouts_clock_advances WHERE program_id = $1 ORDER BY id DESC LIMIT 1), 0)`,
		program).Scan(&secs)
	if err != nil {
		return 0, fmt.Errorf("clock of %s: %w", program, err)
	}
	return time.Duration(secs) * time.Second, nil
}

// programNowTx is the program's time now: the Store's clock plus the program's offset.
func (s *Store) programNowTx(ctx context.Context, db access.DBTX, program string) (time.Time, error) {
	off, err := s.clockOffsetTx(ctx, db, program)
	if err != nil {
		return time.Time{}, err
	}
	return s.now().Add(off), nil
}

// programTimeTx is the program's time at the real instant at (a transition's time): at plus
// the offset that was in force then.
func (s *Store) programTimeTx(ctx context.Context, db access.DBTX, program string, at time.Time) (time.Time, error) {
	if s.provider.Name() != "sandbox" {
		return at, nil
	}
	var t time.Time
	if err := db.QueryRow(ctx, `SELECT $2::timestamptz + payouts_clock_offset($1, $2)`, program, at).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("clock of %s at %s: %w", program, at, err)
	}
	return t, nil
}

// movedSinceTx is how far the program's clock was advanced after the real instant at: what
// to take off a program-time deadline counted from at to tell the real time it falls due.
func (s *Store) movedSinceTx(ctx context.Context, db access.DBTX, program string, at time.Time) (time.Duration, error) {
	if s.provider.Name() != "sandbox" {
		return 0, nil
	}
	var secs int64
	if err := db.QueryRow(ctx, `SELECT extract(epoch FROM payouts_clock_offset($1, 'infinity') - payouts_clock_offset($1, $2))::bigint`,
		program, at).Scan(&secs); err != nil {
		return 0, fmt.Errorf("clock of %s since %s: %w", program, at, err)
	}
	return time.Duration(secs) * time.Second, nil
}

// monthEnded says whether month (its first day, UTC) has ended in the program's time, or
// with program "", in the time of the program furthest ahead.
func (s *Store) monthEnded(ctx context.Context, program string, month time.Time) (bool, error) {
	var off time.Duration
	var err error
	if program != "" {
		off, err = s.clockOffsetTx(ctx, s.db, program)
	} else if s.provider.Name() == "sandbox" {
		var secs int64
		err = s.db.QueryRow(ctx, `SELECT coalesce(max(offset_seconds), 0) FROM payouts_clock_advances`).Scan(&secs)
		off = time.Duration(secs) * time.Second
	}
	if err != nil {
		return false, fmt.Errorf("clocks: %w", err)
	}
	now := s.now().Add(off).UTC()
	return month.Before(time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)), nil
}

// notSandbox says why the program's clock may not be moved, or "".
func (s *Store) notSandbox(ctx context.Context, db access.DBTX, program string) (string, error) {
	if name := s.provider.Name(); name != "sandbox" {
		return fmt.Sprintf("the server pays through %s, not the sandbox", name), nil
	}
	var provider string
	err := db.QueryRow(ctx, `SELECT a.provider FROM payouts_attempts a JOIN payouts_disbursements d ON d.id = a.disbursement_id
		WHERE d.program_id = $1 AND a.provider <> 'sandbox' LIMIT 1`, program).Scan(&provider)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("providers of %s: %w", program, err)
	}
	return fmt.Sprintf("%s has paid through %s", program, provider), nil
}

// Clock returns a program's test clock.
func (s *Store) Clock(ctx context.Context, program string) (Clock, error) {
	return s.clockTx(ctx, s.db, program)
}

func (s *Store) clockTx(ctx context.Context, db access.DBTX, program string) (Clock, error) {
	p, err := network.ProgramTx(ctx, db, program)
	if err != nil {
		return Clock{}, err
	}
	c := Clock{Program: p.ID, Real: s.now(), Advances: []ClockAdvance{}}
	if c.Why, err = s.notSandbox(ctx, db, p.ID); err != nil {
		return Clock{}, err
	}
	c.Sandbox = c.Why == ""
	off, err := s.clockOffsetTx(ctx, db, p.ID)
	if err != nil {
		return Clock{}, err
	}
	c.Offset, c.Now = Duration{off}, c.Real.Add(off)
	rows, err := db.Query(ctx, `SELECT by_seconds, offset_seconds, advanced_by, reason, at FROM payouts_clock_advances
		WHERE program_id = $1 ORDER BY id`, p.ID)
	if err != nil {
		return Clock{}, fmt.Errorf("clock of %s: %w", p.ID, err)
	}
	var by, offset int64
	var a ClockAdvance
	if _, err := pgx.ForEachRow(rows, []any{&by, &offset, &a.AdvancedBy, &a.Reason, &a.At}, func() error {
		a.By, a.Offset = Duration{time.Duration(by) * time.Second}, Duration{time.Duration(offset) * time.Second}
		c.Advances = append(c.Advances, a)
		return nil
	}); err != nil {
		return Clock{}, fmt.Errorf("clock of %s: %w", p.ID, err)
	}
	return c, nil
}

// AdvanceClock moves a sandbox program's clock forward, in whole seconds, recording the
// advance in the audit trail ("payouts.clock.advance"). It refuses (ErrNotSandbox) a program
// whose money goes or went through another provider, and (ErrInvalid) a move of zero, back in
// time, or of more than MaxClockAdvance. Nothing is run: the next sweep and instalment run
// (tandem payouts run, POST /v1/payouts/run, or the periodic job) act on the new time.
func (s *Store) AdvanceClock(ctx context.Context, by network.By, program string, m ClockMove) (Clock, error) {
	if (m.By == "") == (m.To == "") {
		return Clock{}, invalid("clock", `give one of "by" (a duration like 72h or 3d) or "to" (a date like 2027-01-05)`)
	}
	var to time.Time
	var step time.Duration
	if m.By != "" {
		d, err := ParseClockDuration(m.By)
		if err != nil {
			return Clock{}, invalid("by", "%v", err)
		}
		step = d
	} else {
		var err error
		if to, err = time.Parse(time.DateOnly, m.To); err != nil {
			if to, err = time.Parse(time.RFC3339, m.To); err != nil {
				return Clock{}, invalid("to", "%q: a date like 2027-01-05 or a time like 2027-01-05T09:00:00Z", m.To)
			}
		}
	}
	var c Clock
	err := s.apply(ctx, by, func(tx pgx.Tx) (access.Event, error) {
		// One advance of a program at a time (the trigger takes the same lock), so that two
		// at once add up rather than one refused.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('payouts:clock:' || $1, 0))`, program); err != nil {
			return access.Event{}, fmt.Errorf("lock the clock of %s: %w", program, err)
		}
		before, err := s.clockTx(ctx, tx, program)
		if err != nil {
			return access.Event{}, err
		}
		if !before.Sandbox {
			return access.Event{}, fmt.Errorf("%w: %s", ErrNotSandbox, before.Why)
		}
		if m.To != "" {
			step = to.Sub(before.Now)
		}
		step = step.Truncate(time.Second)
		switch {
		case step <= 0 && m.To != "":
			return access.Event{}, invalid("to", "%s is not after the program's time %s: a clock only moves forward",
				to.UTC().Format(time.RFC3339), before.Now.UTC().Format(time.RFC3339))
		case step <= 0:
			return access.Event{}, invalid("by", "%q: a clock only moves forward, by at least a second", m.By)
		case step > MaxClockAdvance:
			return access.Event{}, invalid("by", "%s: at most %s at a time", step, MaxClockAdvance)
		}
		secs := int64(step / time.Second)
		if _, err := tx.Exec(ctx, `INSERT INTO payouts_clock_advances (program_id, by_seconds, offset_seconds, advanced_by, reason)
			VALUES ($1, $2, $3, $4, $5)`, before.Program, secs, int64(before.Offset.Duration/time.Second)+secs, by.Subject(),
			strings.TrimSpace(m.Reason)); err != nil {
			return access.Event{}, fmt.Errorf("advance the clock of %s: %w", before.Program, translate(err))
		}
		if c, err = s.clockTx(ctx, tx, program); err != nil {
			return access.Event{}, err
		}
		return access.Event{Action: "payouts.clock.advance", Record: "program:" + c.Program,
			Before: map[string]any{"now": before.Now.UTC(), "offset": before.Offset},
			After:  map[string]any{"now": c.Now.UTC(), "offset": c.Offset},
			Detail: fmt.Sprintf("test clock of %s advanced by %s to %s", c.Program, step, c.Now.UTC().Format(time.RFC3339))}, nil
	})
	return c, err
}
