package access

import (
	"fmt"
	"slices"
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
	// The network (DESIGN.md §5, §6).
	ProgramCreate      Action = "network.program.create"
	ProgramList        Action = "network.program.list"
	ProgramRead        Action = "network.program.read"
	ProgramFund        Action = "network.program.fund"
	ProgramMetrics     Action = "network.program.metrics"
	PersonCreate       Action = "network.person.create"
	PersonList         Action = "network.person.list"
	PersonRead         Action = "network.person.read"
	PersonUpdate       Action = "network.person.update"
	EnrolmentWrite     Action = "network.enrolment.write"
	ConnectionCreate   Action = "network.connection.create"
	ConnectionList     Action = "network.connection.list"
	ConnectionEnd      Action = "network.connection.end"
	ConnectionRate     Action = "network.connection.rate"
	ConversationCreate Action = "network.conversation.create"
	ConversationList   Action = "network.conversation.list"
	ConversationReview Action = "network.conversation.review"
	// ConversationBatch imports many conversations at once: integrations, admins only.
	ConversationBatch Action = "network.conversation.batch"
	RuleWrite         Action = "network.rule.write"
	RuleRead          Action = "network.rule.read"
	ProgressRead      Action = "network.progress.read"
	AwardList         Action = "network.award.list"
	DisbursementList  Action = "payouts.disbursement.list"
	// DisbursementApprove is the four-eyes action of DESIGN.md §7: an admin may not approve
	// what they requested (Resource.RequestedBy).
	DisbursementApprove Action = "disbursement.approve"
	// Payouts (DESIGN.md §7).
	DisbursementRead   Action = "payouts.disbursement.read"
	DisbursementCreate Action = "payouts.disbursement.create"
	DisbursementReject Action = "payouts.disbursement.reject"
	DisbursementRetry  Action = "payouts.disbursement.retry"
	DisbursementCancel Action = "payouts.disbursement.cancel"
	PayoutPolicyRead   Action = "payouts.policy.read"
	PayoutPolicyWrite  Action = "payouts.policy.write"
	// DestinationWrite sets where a person is paid: admins, or the person themselves —
	// never their coach, who could otherwise redirect a participant's money.
	DestinationWrite   Action = "payouts.destination.write"
	CommitmentWrite    Action = "payouts.commitment.write"
	CommitmentList     Action = "payouts.commitment.list"
	StipendList        Action = "payouts.stipend.list"
	StipendRun         Action = "payouts.stipend.run"
	TaxReportRead      Action = "payouts.report.nec"
	ReconciliationRead Action = "payouts.reconciliation.read"
	ReconciliationRun  Action = "payouts.reconciliation.run"
	PayoutsRun         Action = "payouts.run"
	// Money left without an owner (payouts/unowned.go): awards whose evidence was retracted
	// after they were paid, listed for a decision (reverse or keep); what a paid payout's
	// partial return left in the wallet, paid again or given back to the fund. Admins decide;
	// auditors read the list.
	RetractedAwardList        Action = "payouts.award.retracted.list"
	RetractedAwardDecide      Action = "payouts.award.decide"
	DisbursementRepayReturned Action = "payouts.disbursement.repay_returned"
	DisbursementReturnToFund  Action = "payouts.disbursement.return_to_fund"
	// A sandbox program's test clock (payouts/clock.go): admins move it, auditors read it.
	ClockRead    Action = "payouts.clock.read"
	ClockAdvance Action = "payouts.clock.advance"
	// Exports and the seal (DESIGN.md §3, §9): auditors and admins export the ledger, read
	// the seal's status and verify it; participants and coaches may not (an export holds
	// everyone's money). Verifying records its result but changes nothing in the ledger.
	LedgerExport Action = "ledger.export"
	SealRead     Action = "ledger.seal.read"
	SealVerify   Action = "ledger.seal.verify"
	// Jobs (DESIGN.md §8): a job that gives up is visible to admins, who may retry or cancel
	// it; auditors read the list.
	JobList   Action = "jobs.list"
	JobRetry  Action = "jobs.retry"
	JobCancel Action = "jobs.cancel"
)

var readActions = map[Action]bool{
	LedgerAccountList: true, LedgerAccountRead: true, LedgerBalanceRead: true, LedgerStatementRead: true,
	LedgerEntryList: true, LedgerEntryRead: true, LedgerTrialBalance: true, LedgerCheck: true, AuditRead: true,
	ProgramList: true, ProgramRead: true, ProgramMetrics: true, PersonList: true, PersonRead: true, ConnectionList: true,
	ConversationList: true, RuleRead: true, ProgressRead: true, AwardList: true, DisbursementList: true,
	DisbursementRead: true, PayoutPolicyRead: true, CommitmentList: true, StipendList: true, TaxReportRead: true,
	ReconciliationRead: true, LedgerExport: true, SealRead: true, SealVerify: true, RetractedAwardList: true,
	ClockRead: true, JobList: true,
}

// publicReads are program-level reads open to every role: what a program is and its rules.
var publicReads = map[Action]bool{ProgramList: true, ProgramRead: true, RuleRead: true}

// ownerReadable are the reads a participant or coach may take on records they own.
var ownerReadable = map[Action]bool{LedgerAccountRead: true, LedgerBalanceRead: true, LedgerStatementRead: true,
	PersonRead: true, ConnectionList: true, ConversationList: true, ProgressRead: true, AwardList: true, DisbursementList: true,
	DisbursementRead: true, CommitmentList: true, StipendList: true}

// selfWritable are the changes a person may make to their own records only.
var selfWritable = map[Action]bool{DestinationWrite: true}

// ownerWritable are the changes a participant may make to their own records, and their
// coach for them: logging a conversation (self-reported, unverified).
var ownerWritable = map[Action]bool{ConversationCreate: true}

// sideWritable are the changes only the two sides of a connection make, each as themselves:
// rating it (DESIGN.md §5: each side rates). A participant's coach is not a side of her
// connections (unless it is theirs with her), so they may not rate them for her.
var sideWritable = map[Action]bool{ConnectionRate: true}

// coachWritable are the changes only a participant's assigned coach (or an admin) may make:
// verifying conversations, recording and ending connections.
var coachWritable = map[Action]bool{ConversationReview: true, ConnectionCreate: true, ConnectionEnd: true}

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
	// Coaches are the coaches assigned to Owner (filled in from the network's enrolments).
	Coaches []string
	// RequestedBy is the Subject of whoever requested it (four-eyes actions).
	RequestedBy string
	// Other is the other side of a connection, for the actions of its two sides
	// (ConnectionRate); Owner is its participant.
	Other string
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
//     a participant — and everything the participants assigned to them may read of their
//     own: wallet, person, connections, conversations, progress, awards, payouts), and every
//     role may read programs and their rules;
//   - a participant may log conversations of their own, and so may their assigned coach, who
//     alone (with admins) may also verify or retract conversations and record or end
//     connections for them;
//   - a connection is rated by its two sides, each as themselves (the handler checks the
//     rater), never by a coach for a participant;
//   - where a person is paid is set by an admin or by that person alone.
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
				return fmt.Errorf("%w: %s: you requested it; another admin must approve", ErrFourEyes, a)
			}
		}
		return nil
	case Auditor:
		if a.ReadOnly() {
			return nil
		}
		return fmt.Errorf("%w: %s: auditors read and change nothing", ErrForbidden, a)
	case Participant, Coach:
		if publicReads[a] {
			return nil
		}
		if !ownerReadable[a] && !ownerWritable[a] && !coachWritable[a] && !selfWritable[a] && !sideWritable[a] {
			return fmt.Errorf("%w: %s: not open to the %s role", ErrForbidden, a, p.Role)
		}
		if selfWritable[a] {
			if p.PersonID != "" && r.Owner == p.PersonID {
				return nil
			}
			return fmt.Errorf("%w: %s: only the person themselves or an admin may", ErrForbidden, a)
		}
		if sideWritable[a] {
			if p.PersonID != "" && (r.Owner == p.PersonID || r.Other == p.PersonID) {
				return nil
			}
			return fmt.Errorf("%w: %s: only a side of the connection, as themselves, or an admin may", ErrForbidden, a)
		}
		own := r.Owner != "" && r.Owner == p.PersonID && (r.OwnerRole == "" || r.OwnerRole == p.Role ||
			(p.Role == Coach && r.OwnerRole == Participant))
		coaching := p.Role == Coach && p.PersonID != "" && slices.Contains(r.Coaches, p.PersonID)
		switch {
		case p.PersonID == "":
		case coachWritable[a] && coaching:
			return nil
		case coachWritable[a]:
			return fmt.Errorf("%w: %s: only the participant's coach or an admin may", ErrForbidden, a)
		case own || coaching:
			return nil
		}
		return fmt.Errorf("%w: %s: not your record", ErrForbidden, a)
	}
	return fmt.Errorf("%w: unknown role %q", ErrForbidden, p.Role)
}
