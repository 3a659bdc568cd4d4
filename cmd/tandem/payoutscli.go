package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

const payoutsUsage = `usage: tandem payouts <command> [flags]

disbursements:
  list [--state S] [--program P] [--person X]
  show ID                                 with transitions, approvals, attempts, returns
  create --program P --person X --amount 250.00 --reason TEXT --key K --as admin:PERSON
                                          a manual disbursement (e.g. an emergency grant),
                                          requested by PERSON, who may not approve it
  approve ID --as admin:PERSON --destination D [--reason TEXT]
                                          PERSON must hold an active admin token; nobody
                                          approves what they requested. D is the payout
                                          destination approved (sandbox:X, acct_…); without
                                          it, approve says where the person would be paid
  reject ID --reason TEXT | cancel ID --reason TEXT | retry ID [--reason TEXT]
  submit ID                               send an approved payout now, in this process
                                          (the server's jobs do it otherwise)

policy and destinations:
  policy P                                show the program's payout policy
  policy P [--dual-control 500.00] [--monthly-cap 100.00|none] [--yearly-cap 1000.00|none]
           [--remediation-days 30] [--auto-retries 2] [--retry-backoff 1h]
                                          what is not given stays as it is
  destination X ACCOUNT                   where X is paid (Stripe: acct_…); retries X's failed payouts
                                          within the auto-approve limit, sends the others back
                                          for approval (approvals are for a destination)

commitments and stipends:
  commit --program P --person X --amount 400.00 --instalments 8 --every 3 --first-due D
         --key K [--min-conversations N] --as admin:PERSON
                                          PERSON requests every instalment, and may not
                                          approve one
  commitments [--program P] [--person X] | commitment-cancel ID --reason TEXT
  stipend-policy P RATE --as admin:PERSON a rate per verified coaching session (0 stops);
                                          PERSON requests the stipends paid at it, and may
                                          not approve one
  stipends [--program P] [--coach C] | stipends-run 2026-10
  1099 [--year 2026] [--threshold 2000.00]

money left without an owner:
  retracted [--program P]                 awards whose evidence was retracted after they were paid
  award-decide AWARD reverse|keep --reason TEXT
                                          reverse: what is still in the wallet back to the fund
  returned ID                             what a paid payout's partial return left in the wallet
  repay-returned ID --reason TEXT --as admin:PERSON
                                          pay it again: a new disbursement PERSON requests
  return-to-fund ID --reason TEXT         give it back to the program's fund

the periodic work, now:
  run                                     sweep (auto-approvals, retries, forfeits) and due instalments
  reconcile [--days 7] | reconciliations

--as admin:PERSON names the admin who acts (PERSON must hold an active admin token): it is
required to request or approve money (create, approve, commit, stipend-policy) and, when
given, is the author of any other change; without it the author is cli:<user>.

The provider is the sandbox unless STRIPE_SECRET_KEY is set (see the README).
`

// payoutsCmd runs tandem payouts ….
func payoutsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, payoutsUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: tandem payouts needs a command", errUsage)
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("tandem payouts "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(name, usage string) *string { return fs.String(name, "", usage) }
	var (
		state, program, person, amount = str("state", "state"), str("program", "program"), str("person", "person"), str("amount", "amount")
		reason, key, as, coach         = str("reason", "why"), str("key", "idempotency key"), str("as", "admin:PERSON"), str("coach", "coach")
		dual, monthly, yearly, backoff = str("dual-control", "dual-control threshold"), str("monthly-cap", "monthly cap"),
			str("yearly-cap", "yearly cap"), str("retry-backoff", "first retry after")
		firstDue, threshold = str("first-due", "first due date"), str("threshold", "1099-NEC threshold")
		destination         = str("destination", "the payout destination you were shown")
		remediation         = fs.Int("remediation-days", 0, "days to fix a failed payout")
		retries             = fs.Int("auto-retries", -1, "automatic retries")
		instalments         = fs.Int("instalments", 0, "instalments")
		every               = fs.Int("every", 0, "months between instalments")
		minConv             = fs.Int("min-conversations", 0, "verified conversations per period")
		year                = fs.Int("year", time.Now().Year(), "year")
		days                = fs.Int("days", 7, "days back")
	)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	need := argCount("tandem payouts "+cmd, pos)
	a, closeApp, err := openApp(ctx)
	if err != nil {
		return err
	}
	defer closeApp()
	p := a.Payouts
	by := network.By{Principal: cliActor()}
	show := jsonShow(stdout)
	if (cmd == "create" || cmd == "commit") && *key == "" {
		return fmt.Errorf("%w: tandem payouts %s needs --key K: the same key again returns the first instead of paying twice", errUsage, cmd)
	}
	switch cmd {
	case "create", "approve", "commit", "stipend-policy":
		// Four eyes: requesting or approving money needs a person, named here.
		if by, err = actAsAdmin(ctx, a.Access, *as); err != nil {
			return err
		}
	default:
		if *as != "" {
			if by, err = actAsAdmin(ctx, a.Access, *as); err != nil {
				return err
			}
		}
	}
	switch cmd {
	case "list":
		ds, err := p.List(ctx, payouts.Filter{State: *state, Program: *program, Person: *person, Limit: 1000})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPROGRAM\tPERSON\tAMOUNT\tSOURCE\tSTATE\tAPPROVALS\tUPDATED")
		for _, d := range ds {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s %s\t%s\t%s\t%d\t%s\n", d.ID, d.ProgramID, d.PersonID, ledger.FormatAmount(d.Amount, d.Currency),
				d.Currency, d.Source, d.State, d.ApprovalsNeeded, d.UpdatedAt.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	case "show":
		if err := need(1, "ID"); err != nil {
			return err
		}
		return show(p.Get(ctx, pos[0]))
	case "create":
		return show(p.Create(ctx, by, payouts.NewDisbursement{Program: *program, Person: *person, Amount: *amount, Reason: *reason, IdempotencyKey: *key}))
	case "approve":
		if err := need(1, "ID --as admin:PERSON"); err != nil {
			return err
		}
		return show(approveCmd(ctx, p, by, pos[0], *reason, *destination))
	case "reject", "cancel", "retry":
		if err := need(1, "ID --reason TEXT"); err != nil {
			return err
		}
		fn := map[string]func(context.Context, network.By, string, string) (payouts.Disbursement, error){
			"reject": p.Reject, "cancel": p.Cancel, "retry": p.Retry}[cmd]
		return show(fn(ctx, by, pos[0], *reason))
	case "submit":
		if err := need(1, "ID"); err != nil {
			return err
		}
		id, err := uuid.Parse(pos[0])
		if err != nil {
			return fmt.Errorf("%w: %q", payouts.ErrNotFound, pos[0])
		}
		if err := p.Submit(ctx, id); err != nil {
			return err
		}
		d, err := p.Get(ctx, pos[0])
		if err == nil && d.State == payouts.Submitted && len(d.Attempts) > 0 {
			time.Sleep(p.Provider().SettleAfter())
			if _, err := p.Settle(ctx, id, d.Attempts[len(d.Attempts)-1].Attempt); err != nil {
				return err
			}
		}
		return show(p.Get(ctx, pos[0]))
	case "policy":
		if err := need(1, "P [flags]"); err != nil {
			return err
		}
		if *dual == "" && *monthly == "" && *yearly == "" && *remediation == 0 && *retries < 0 && *backoff == "" {
			return show(p.Policy(ctx, pos[0]))
		}
		// The API replaces the whole policy; here, what is not given stays as it is ("none"
		// removes a cap).
		cur, err := p.Policy(ctx, pos[0])
		if err != nil {
			return err
		}
		keep := func(flag string, v decimal.Decimal, valid bool) string {
			switch {
			case flag == "none":
				return ""
			case flag != "":
				return flag
			case valid:
				return v.String()
			}
			return ""
		}
		np := payouts.NewPolicy{DualControlThreshold: keep(*dual, cur.DualControlThreshold, !cur.Default),
			MonthlyCap: keep(*monthly, cur.MonthlyCap.Decimal, cur.MonthlyCap.Valid), YearlyCap: keep(*yearly, cur.YearlyCap.Decimal, cur.YearlyCap.Valid),
			RemediationDays: cmp.Or(*remediation, cur.RemediationDays), RetryBackoff: cmp.Or(*backoff, cur.RetryBackoff.String())}
		np.AutoRetries = &cur.AutoRetries
		if *retries >= 0 {
			np.AutoRetries = retries
		}
		return show(p.SetPolicy(ctx, by, pos[0], np))
	case "destination":
		if err := need(2, "X ACCOUNT"); err != nil {
			return err
		}
		return show(p.SetDestination(ctx, by, pos[0], pos[1]))
	case "commit":
		var req json.RawMessage
		if *minConv > 0 {
			req = json.RawMessage(fmt.Sprintf(`{"min_verified_conversations":%d}`, *minConv))
		}
		return show(p.CreateCommitment(ctx, by, payouts.NewCommitment{Program: *program, Person: *person, Amount: *amount,
			Instalments: *instalments, EveryMonths: *every, FirstDue: *firstDue, Requirements: req, IdempotencyKey: *key}))
	case "commitments":
		return show(p.Commitments(ctx, *program, *person))
	case "commitment-cancel":
		if err := need(1, "ID --reason TEXT"); err != nil {
			return err
		}
		return show(p.CancelCommitment(ctx, by, pos[0], *reason))
	case "stipend-policy":
		if err := need(2, "P RATE"); err != nil {
			return err
		}
		return show(p.SetStipendPolicy(ctx, by, pos[0], pos[1]))
	case "stipends":
		return show(p.Stipends(ctx, *program, *coach))
	case "stipends-run":
		if err := need(1, "MONTH (2026-10)"); err != nil {
			return err
		}
		m, err := time.Parse("2006-01", pos[0])
		if err != nil {
			return fmt.Errorf("%w: %q is not a month like 2026-10", errUsage, pos[0])
		}
		return show(p.PayStipends(ctx, m))
	case "1099":
		t := decimal.Zero
		if *threshold != "" {
			if t, err = ledger.ParseAmount(*threshold, "USD"); err != nil {
				return fmt.Errorf("--threshold: %w", err)
			}
		}
		lines, used, err := p.NECReport(ctx, *year, t)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "1099-NEC %d: payees with stipends of %s USD or more\n", *year, ledger.FormatAmount(used, "USD"))
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "COACH\tNAME\tTOTAL\tSTIPENDS\tW-9")
		for _, l := range lines {
			fmt.Fprintf(tw, "%s\t%s\t%s %s\t%d\t%v\n", l.Coach, l.Name, l.Total, l.Currency, l.Stipends, l.TaxForm)
		}
		return tw.Flush()
	case "run":
		res, err := p.RunDue(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "sweep: %d auto-approved, %d retried, %d forfeited, %d asked to submit again; instalments: %d fulfilled, %d failed\n",
			res.Sweep.AutoApproved, res.Sweep.Retried, res.Sweep.Forfeited, res.Sweep.Resubmitted, res.InstalmentsFulfilled, res.InstalmentsFailed)
		return nil
	case "retracted":
		as, err := p.RetractedAwards(ctx, *program)
		if as == nil {
			as = []payouts.RetractedAward{}
		}
		return show(as, err)
	case "award-decide":
		if err := need(2, "AWARD reverse|keep --reason TEXT"); err != nil {
			return err
		}
		return show(p.DecideRetractedAward(ctx, by, pos[0], pos[1], *reason))
	case "returned":
		if err := need(1, "ID"); err != nil {
			return err
		}
		return show(p.Returned(ctx, pos[0]))
	case "repay-returned":
		if err := need(1, "ID --reason TEXT --as admin:PERSON"); err != nil {
			return err
		}
		// The new disbursement's requester is a person, who may not approve it.
		requester, err := actAsAdmin(ctx, a.Access, *as)
		if err != nil {
			return err
		}
		return show(p.RepayReturned(ctx, requester, pos[0], *reason))
	case "return-to-fund":
		if err := need(1, "ID --reason TEXT"); err != nil {
			return err
		}
		return show(p.ReturnReturnedToFund(ctx, by, pos[0], *reason))
	case "reconcile":
		return show(p.ReconcileBy(ctx, by, time.Now().AddDate(0, 0, -*days)))
	case "reconciliations":
		return show(p.Reconciliations(ctx, 10))
	}
	fmt.Fprint(stderr, payoutsUsage)
	return fmt.Errorf("%w: unknown command tandem payouts %s", errUsage, strings.TrimSpace(cmd))
}

// actAsAdmin is --as admin:PERSON for requests and approvals (and, when given, any other
// change): four eyes need a person, and the command line has none. PERSON must hold an active admin token, so that only admins can
// be named. The command line trusts its operator (who has the database anyway): it cannot
// prove that PERSON is at the keyboard, which a token over HTTP does.
func actAsAdmin(ctx context.Context, store *access.Store, as string) (network.By, error) {
	role, person, ok := strings.Cut(as, ":")
	if !ok || role != string(access.Admin) || !access.ValidPersonID(person) {
		return network.By{}, fmt.Errorf("%w: --as %q: requesting and approving money need --as admin:PERSON (four eyes: PERSON may not approve what they requested)", errUsage, as)
	}
	admin, err := store.IsAdmin(ctx, person)
	if err != nil {
		return network.By{}, err
	}
	if !admin {
		return network.By{}, fmt.Errorf("%w: %s holds no active admin token (tandem token create --role admin --person %s)", access.ErrForbidden, person, person)
	}
	p := cliActor()
	return network.By{Principal: access.Principal{Name: p.Name + " as " + as, Role: access.Admin, PersonID: person}}, nil
}

// approveCmd approves id for destination, the payout destination the admin looked at. Without
// one, when the person has a destination, Approve refuses, and the refusal says what to pass.
func approveCmd(ctx context.Context, p *payouts.Store, by network.By, id, reason, destination string) (payouts.Disbursement, error) {
	d, err := p.Approve(ctx, by, id, reason, destination)
	if destination == "" && errors.Is(err, payouts.ErrInvalid) {
		if got, gerr := p.Get(ctx, id); gerr == nil {
			if now, derr := p.ApprovalDestination(ctx, got.PersonID); derr == nil && now != "" {
				return d, fmt.Errorf("%w: destination: required: %s pays %s at %s; once you have checked it, run tandem payouts approve %s --destination %s",
					payouts.ErrInvalid, id, got.PersonID, now, id, now)
			}
		}
	}
	return d, err
}
