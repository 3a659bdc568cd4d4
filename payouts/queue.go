package payouts

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Sources are the ways a disbursement is made.
var Sources = []string{"award", "manual", "commitment", "stipend"}

// States lists every disbursement state, in the order a disbursement goes through them.
var States = []string{AwaitingApproval, InsufficientFunds, Approved, Submitted, Paid, Failed, Returned, Rejected, Canceled, Forfeited}

// QueueFilter selects disbursements for review.
type QueueFilter struct {
	ID                      string // one disbursement
	Program, Person, Source string
	// States keeps disbursements in any of them; none keeps every state.
	States []string
	Limit  int // default and most: 500
}

// QueueItem is a disbursement as an admin reviews it: its person's and program's names, the
// approvals of its current round, the policy's limits it was measured against, and — once it failed or
// came back — what the provider said and what happens next.
type QueueItem struct {
	Disbursement
	PersonName  string
	ProgramName string
	// Names are the names of the people behind the requester's and approvers' subjects
	// (person:<id>), where they are people.
	Names map[string]string
	// AutoApproveLimit and DualControlThreshold are the program's policy in force.
	AutoApproveLimit     decimal.Decimal
	DualControlThreshold decimal.Decimal
	Attempts             int
	// Failures counts the times it failed; FailedAt is the latest, FailureReason the
	// provider's reason for it (or why it could not be sent).
	Failures      int
	FailedAt      *time.Time
	FailureReason string
	// NextRetryAt is when the automatic retry of a failed payout is due (nil: none left);
	// ForfeitAt is when a failed payout nobody fixed goes back to the fund.
	NextRetryAt *time.Time
	ForfeitAt   *time.Time
	// Returned is what the provider gave back after paying, and when it last did.
	Returned   decimal.Decimal
	ReturnedAt *time.Time
	// Destination is where the person would be paid now, as an approver is shown it and
	// passes it back to Approve ("" when there is none on file yet).
	Destination string
}

// Queue lists disbursements for review, newest first, with their approvals and, for failed
// and returned ones, the provider's reason, the next automatic retry and the forfeit date
// (as Submit and Sweep compute them from the program's policy).
func (s *Store) Queue(ctx context.Context, f QueueFilter) ([]QueueItem, error) {
	for _, st := range f.States {
		if !slices.Contains(States, st) {
			return nil, invalid("state", "%q is not a disbursement state", st)
		}
	}
	if f.Source != "" && !slices.Contains(Sources, f.Source) {
		return nil, invalid("source", "%q is not one of %v", f.Source, Sources)
	}
	limit := f.Limit
	if limit <= 0 || limit > 500 {
		limit = 500
	}
	states := f.States
	if states == nil {
		states = []string{}
	}
	var id any
	if f.ID != "" {
		uid, err := parseID(f.ID)
		if err != nil {
			return nil, err
		}
		id = uid
	}
	rows, err := s.db.Query(ctx, `WITH d AS (
			SELECT `+columns+`, id AS uid FROM payouts_disbursements
			WHERE ($1 = '' OR program_id = $1) AND ($2 = '' OR person_id = $2) AND ($3 = '' OR source = $3)
			  AND (cardinality($4::text[]) = 0 OR state = ANY ($4)) AND ($6::uuid IS NULL OR id = $6)
			ORDER BY created_at DESC, id DESC LIMIT $5)
		SELECT d.*, coalesce(p.name, d.person_id), coalesce(g.name, d.program_id),
			coalesce((SELECT json_agg(json_build_object('approver', a.approver, 'actor', a.actor, 'reason', a.reason, 'at', a.at,
				'round', a.round, 'destination', a.destination) ORDER BY a.at)
				FROM payouts_approvals a WHERE a.disbursement_id = d.uid AND a.round = payouts_approval_round(d.uid)), '[]'),
			(SELECT count(*)::int FROM payouts_attempts t WHERE t.disbursement_id = d.uid),
			f.failures, f.failed_at, coalesce(f.reason, ''),
			coalesce(la.outcome, ''), coalesce(la.reason, ''), coalesce(la.returned, 0)::text,
			(SELECT max(r.at) FROM payouts_returns r WHERE r.disbursement_id = d.uid),
			(SELECT json_object_agg(x.s, n.name) FROM (SELECT d.requested_by AS s UNION SELECT a.approver FROM payouts_approvals a
				WHERE a.disbursement_id = d.uid) x JOIN network_people n ON n.id = substring(x.s FROM 8) WHERE x.s LIKE 'person:%'),
			(SELECT account FROM payouts_destinations WHERE person_id = d.person_id AND provider = $7 ORDER BY id DESC LIMIT 1)
		FROM d
		LEFT JOIN network_people p ON p.id = d.person_id
		LEFT JOIN network_programs g ON g.id = d.program_id
		LEFT JOIN LATERAL (SELECT count(*)::int AS failures, max(at) AS failed_at, (array_agg(reason ORDER BY id DESC))[1] AS reason
			FROM payouts_transitions WHERE disbursement_id = d.uid AND to_state = 'failed') f ON true
		LEFT JOIN LATERAL (SELECT outcome, reason, returned FROM payouts_attempts WHERE disbursement_id = d.uid
			ORDER BY attempt DESC LIMIT 1) la ON true
		ORDER BY d.created_at DESC, d.uid DESC`, f.Program, f.Person, f.Source, states, limit, id, s.provider.Name())
	if err != nil {
		return nil, fmt.Errorf("disbursement queue: %w", err)
	}
	var items []QueueItem
	var it QueueItem
	var amount, returned, lastOutcome, lastReason, transitionReason string
	var account *string
	var uid any
	dest := []any{&it.ID, &it.ProgramID, &it.PersonID, &it.Wallet, &amount, &it.Currency, &it.Source, &it.AwardID,
		&it.FundingEntryID, &it.Reason, &it.State, &it.ApprovalsNeeded, &it.RequestedBy, &it.ApprovedAt, &it.CreatedAt, &it.UpdatedAt,
		&uid, &it.PersonName, &it.ProgramName, &it.Approvals, &it.Attempts, &it.Failures, &it.FailedAt, &transitionReason,
		&lastOutcome, &lastReason, &returned, &it.ReturnedAt, &it.Names, &account}
	if _, err := pgx.ForEachRow(rows, dest, func() error {
		x := it
		x.Amount = decimal.RequireFromString(amount)
		x.Returned = decimal.RequireFromString(returned)
		x.FailureReason = transitionReason
		if lastOutcome == string(OutcomeFailed) && lastReason != "" {
			x.FailureReason = lastReason
		}
		x.Approvals = slices.Clone(it.Approvals)
		switch {
		case account != nil:
			x.Destination = *account
		case s.provider.Name() == "sandbox": // as destinationTx
			x.Destination = SandboxDestination(x.PersonID)
		}
		items = append(items, x)
		it.Approvals, it.Names = nil, nil
		return nil
	}); err != nil {
		return nil, fmt.Errorf("disbursement queue: %w", err)
	}
	policies := map[string]Policy{}
	for i := range items {
		x := &items[i]
		pol, ok := policies[x.ProgramID]
		if !ok {
			if pol, err = programPolicyTx(ctx, s.db, x.ProgramID); err != nil {
				return nil, err
			}
			policies[x.ProgramID] = pol
		}
		x.AutoApproveLimit, x.DualControlThreshold = pol.AutoApproveLimit, pol.DualControlThreshold
		if x.State == Failed && x.FailedAt != nil {
			// As fail asks for the retry, and Sweep forfeits: the backoff doubles with each failure;
			// in real time, less what a test clock moved since (clock.go).
			moved, err := s.movedSinceTx(ctx, s.db, x.ProgramID, *x.FailedAt)
			if err != nil {
				return nil, err
			}
			if x.Failures >= 1 && x.Failures <= pol.AutoRetries {
				at := x.FailedAt.Add(pol.RetryBackoff.Duration<<(x.Failures-1) - moved)
				x.NextRetryAt = &at
			}
			forfeit := x.FailedAt.AddDate(0, 0, pol.RemediationDays).Add(-moved)
			x.ForfeitAt = &forfeit
		}
	}
	return items, nil
}

// Applied is a change a reconciliation run made on the provider's word (a settlement or a
// return the ledger had not heard of: a lost webhook).
type Applied struct {
	Disbursement string    `json:"disbursement_id"`
	To           string    `json:"to"` // paid, failed, returned
	Reason       string    `json:"reason"`
	At           time.Time `json:"at"`
}

// ReconciliationReport is a reconciliation run with what it applied.
type ReconciliationReport struct {
	Reconciliation
	Applied []Applied `json:"applied"`
}

// AppliedTo reports whether the run applied a change to disbursement id.
func (r ReconciliationReport) AppliedTo(id string) bool {
	return id != "" && slices.ContainsFunc(r.Applied, func(a Applied) bool { return a.Disbursement == id })
}

var (
	runInTransition = regexp.MustCompile(`\(reconciliation run (\d+)\)`)
	runInReturn     = regexp.MustCompile(`^reconciliation run (\d+)$`)
)

// ReconciliationReports returns the latest runs (Reconciliations) with the changes each
// applied: the transitions and returns whose source is the run.
func (s *Store) ReconciliationReports(ctx context.Context, limit int) ([]ReconciliationReport, error) {
	runs, err := s.Reconciliations(ctx, limit)
	if err != nil || len(runs) == 0 {
		return nil, err
	}
	out := make([]ReconciliationReport, len(runs))
	byID := map[int64]*ReconciliationReport{}
	for i, run := range runs {
		out[i] = ReconciliationReport{Reconciliation: run}
		byID[run.ID] = &out[i]
	}
	oldest := runs[len(runs)-1].StartedAt
	rows, err := s.db.Query(ctx, `SELECT disbursement_id::text, to_state, reason, at FROM payouts_transitions
			WHERE actor = $1 AND at >= $2 AND reason LIKE '%(reconciliation run %'
		UNION ALL
		SELECT disbursement_id::text, 'returned', event, at FROM payouts_returns WHERE at >= $2 AND event LIKE 'reconciliation run %'
		ORDER BY at`, SystemActor.Name, oldest)
	if err != nil {
		return nil, fmt.Errorf("reconciliation changes: %w", err)
	}
	var a Applied
	if _, err := pgx.ForEachRow(rows, []any{&a.Disbursement, &a.To, &a.Reason, &a.At}, func() error {
		m := runInTransition.FindStringSubmatch(a.Reason)
		if m == nil {
			m = runInReturn.FindStringSubmatch(a.Reason)
		}
		if m == nil {
			return nil
		}
		id, _ := strconv.ParseInt(m[1], 10, 64)
		if r, ok := byID[id]; ok && !(a.To == Returned && r.AppliedTo(a.Disbursement) && hasReturn(r.Applied, a.Disbursement)) {
			r.Applied = append(r.Applied, a)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reconciliation changes: %w", err)
	}
	return out, nil
}

// hasReturn: a full return is both a transition and a return row; it is listed once.
func hasReturn(as []Applied, id string) bool {
	return slices.ContainsFunc(as, func(a Applied) bool { return a.Disbursement == id && a.To == Returned })
}
