package payouts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/network"
)

// Four eyes (DESIGN.md §7) on every path money takes: whoever requests money — an admin
// granting (Create), the creator of a commitment for its instalments (CreateCommitment),
// whoever set a stipend rate for its stipends (SetStipendPolicy) — is a named person, who may
// not approve what follows from it. A new source of disbursements asks requirePerson of its
// requester and passes by.Subject() as the disbursement's requested_by. The database refuses
// an approval of a disbursement (other than an award, which a rule makes) whose requester is
// not a person, and one by a person who holds no active admin token.

// requirePerson refuses a request for money by an admin who is not a person: otherwise the
// same admin could request with a token and approve with their person.
func requirePerson(by network.By, what string) error {
	if by.PersonID == "" {
		return fmt.Errorf("%w: %s needs an admin who is a person (a token made with --person, or --as admin:PERSON on the command line), who may not approve what follows from it",
			ErrSelfApproval, what)
	}
	return nil
}

// ErrDestinationChanged refuses an approval for a payout destination the person no longer
// has: they set another since the approver was shown it. It is an ErrState.
var ErrDestinationChanged = fmt.Errorf("%w: the payout destination changed", ErrState)

// approvalDestinationTx is where person would be paid now, as an approval records it: ""
// when there is none on file (the payout will fail for want of one).
func (s *Store) approvalDestinationTx(ctx context.Context, db access.DBTX, person string) (string, error) {
	dest, err := s.destinationTx(ctx, db, person)
	if errors.Is(err, ErrNoDestination) {
		return "", nil
	}
	return dest, err
}

// ApprovalDestination is the payout destination an approver of a disbursement to person is
// shown, and passes back to Approve: where the person would be paid now ("" when there is
// none on file yet).
func (s *Store) ApprovalDestination(ctx context.Context, person string) (string, error) {
	dest, err := s.approvalDestinationTx(ctx, s.db, person)
	if err != nil {
		return "", fmt.Errorf("payout destination of %s: %w", person, err)
	}
	return dest, nil
}

// checkShownDestination refuses an approval of disbursement id for shown, the destination
// the approver saw, when the person would now be paid at current instead: an approval is
// for the destination it saw, and the person may set their own at any time.
func checkShownDestination(id, shown, current string) error {
	switch {
	case shown == current:
		return nil
	case shown == "":
		return invalid("destination", "required: the payout destination you were shown when approving %s (it is now %s): look at it, then approve with it", id, current)
	}
	now := current
	if now == "" {
		now = "no destination"
	}
	return fmt.Errorf("%w to %s since it was shown (%s) for %s: look again", ErrDestinationChanged, now, shown, id)
}

// approvalsCountTx counts the approvals of the disbursement's current round.
func approvalsCountTx(ctx context.Context, tx pgx.Tx, id string) (int, error) {
	var n int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM payouts_approvals WHERE disbursement_id = $1 AND round = payouts_approval_round($1)`,
		id).Scan(&n)
	return n, err
}

// reapproveIfMoved sends an approved disbursement that needed admin approval back to
// awaiting_approval when dest, where it is about to be paid, is not the destination its
// approvals saw, or one of them recorded none known (NULL: an approval from before
// destinations were recorded, with nothing to tell it from): the approvals no longer count,
// and the admins look again. Within the auto-approve limit (no approval needed) a new
// destination is paid as it is. It reports whether it sent the disbursement back.
func (s *Store) reapproveIfMoved(ctx context.Context, tx pgx.Tx, d *Disbursement, dest string) (bool, error) {
	if d.ApprovalsNeeded == 0 {
		return false, nil
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT coalesce(destination, 'a destination not recorded') FROM payouts_approvals WHERE disbursement_id = $1
		AND round = payouts_approval_round($1) AND destination IS DISTINCT FROM $2 ORDER BY 1`, uuid.MustParse(d.ID), dest)
	if err != nil {
		return false, fmt.Errorf("approved destination of %s: %w", d.ID, err)
	}
	seen, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(seen) == 0 {
		return false, err
	}
	why := fmt.Sprintf("payout destination changed since it was approved (approved for %s, now %s): the approvals no longer count; it needs %d again",
		strings.Join(seen, ", "), dest, d.ApprovalsNeeded)
	return true, s.transition(ctx, tx, d, AwaitingApproval, SystemActor.Name, why)
}
