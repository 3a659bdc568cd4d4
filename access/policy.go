package access

import (
	"fmt"
	"strings"
)

// Action is something a principal may try. Every HTTP route names exactly one.
type Action string

// Actions. Read actions change nothing; an auditor may take every one of them.
const (
	LedgerAccountCreate Action = "ledger.account.create"
	LedgerAccountList   Action = "ledger.account.list"
	LedgerAccountRead   Action = "ledger.account.read"
	LedgerAccountClose  Action = "ledger.account.close"
	LedgerBalanceRead   Action = "ledger.balance.read"
	LedgerStatementRead Action = "ledger.statement.read"
	LedgerEntryPost     Action = "ledger.entry.post"
	LedgerEntryHold     Action = "ledger.entry.post_pending"
	LedgerBatchPost     Action = "ledger.batch.post"
	LedgerEntryList     Action = "ledger.entry.list"
	LedgerEntryRead     Action = "ledger.entry.read"
	LedgerEntryCommit   Action = "ledger.entry.commit"
	LedgerEntryVoid     Action = "ledger.entry.void"
	LedgerEntryReverse  Action = "ledger.entry.reverse"
	LedgerTrialBalance  Action = "ledger.trial_balance.read"
	LedgerCheck         Action = "ledger.check.read"
	AuditRead           Action = "audit.read"
	// DisbursementApprove is the four-eyes action of DESIGN.md §7: an admin may not approve
	// what they requested (Resource.RequestedBy).
	DisbursementApprove Action = "disbursement.approve"
)

var readActions = map[Action]bool{
	LedgerAccountList: true, LedgerAccountRead: true, LedgerBalanceRead: true, LedgerStatementRead: true,
	LedgerEntryList: true, LedgerEntryRead: true, LedgerTrialBalance: true, LedgerCheck: true, AuditRead: true,
}

// ownerReadable are the reads a participant or coach may take on records they own.
var ownerReadable = map[Action]bool{LedgerAccountRead: true, LedgerBalanceRead: true, LedgerStatementRead: true}

// ReadOnly reports whether a changes nothing.
func (a Action) ReadOnly() bool { return readActions[a] }

// Resource is what an action acts on, as far as the policy needs to know.
type Resource struct {
	// Owner is the person the record belongs to ("" for program-level records such as a
	// program fund or the trial balance).
	Owner string
	// OwnerRole is the role the record belongs to the owner in: a participant wallet
	// (Participant) or a coach wallet (Coach). "" when the record is not role-specific.
	OwnerRole Role
	// Coach is the coach assigned to Owner, when there is one (filled in by the network).
	Coach string
	// RequestedBy is the Subject of whoever requested it (four-eyes actions).
	RequestedBy string
}

// AccountResource is the resource of a ledger account: wallets are owned by their person,
// by the code conventions of DESIGN.md §3 (participant/<id>/..., coach/<id>/...).
func AccountResource(code string) Resource {
	parts := strings.Split(code, "/")
	if len(parts) >= 2 && (parts[0] == "participant" || parts[0] == "coach") {
		return Resource{Owner: parts[1], OwnerRole: Role(parts[0])}
	}
	return Resource{}
}

// Authorize is the one policy of Tandem (DESIGN.md §1):
//   - admins may do everything, except approve what they requested themselves: an approval
//     needs a person behind the token and a known requester who is someone else;
//   - auditors may read everything and change nothing;
//   - participants and coaches may read their own records (a participant their participant
//     records; a coach their coach records, their participant records — a coach may have been
//     a participant — and those of the participants assigned to them), and nothing else here.
//
// A refusal wraps ErrForbidden with the reason.
func Authorize(p Principal, a Action, r Resource) error {
	switch p.Role {
	case Admin:
		if a == DisbursementApprove {
			// Four eyes are two people: tokens and command-line users are not.
			switch {
			case p.PersonID == "":
				return fmt.Errorf("%w: %s: approving needs a token that names its person (--person)", ErrForbidden, a)
			case r.RequestedBy == "":
				return fmt.Errorf("%w: %s: the requester is unknown, so four eyes cannot be shown", ErrForbidden, a)
			case r.RequestedBy == p.Subject():
				return fmt.Errorf("%w: %s: you requested it; another admin must approve", ErrForbidden, a)
			}
		}
		return nil
	case Auditor:
		if a.ReadOnly() {
			return nil
		}
		return fmt.Errorf("%w: %s: auditors read and change nothing", ErrForbidden, a)
	case Participant, Coach:
		if !ownerReadable[a] {
			return fmt.Errorf("%w: %s: not open to %ss", ErrForbidden, a, p.Role)
		}
		own := r.Owner == p.PersonID && (r.OwnerRole == "" || r.OwnerRole == p.Role ||
			(p.Role == Coach && r.OwnerRole == Participant))
		if p.PersonID != "" && (own || (p.Role == Coach && r.Coach == p.PersonID)) {
			return nil
		}
		return fmt.Errorf("%w: %s: not your record", ErrForbidden, a)
	}
	return fmt.Errorf("%w: unknown role %q", ErrForbidden, p.Role)
}
