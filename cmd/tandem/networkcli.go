package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

const networkUsage = `usage: tandem network <command> [flags]

programs:
  program create --id P --name N --currency USD --starts 2026-09-01 --ends 2027-06-30 [--auto-approve 100.00]
  program list | program show P
  program fund P AMOUNT [--key K]        donor money into the program's fund (also: tandem program fund)
  program clock P [advance 3d|2027-01-05]  a sandbox program's test clock (also: tandem program clock)
  metrics P                              the program's metrics (DESIGN.md §5)

people:
  person add --id X --name N --roles participant[,coach,mentor,professional,peer] [--interests a,b] [--birth-date D]
  person show X | person list [--role R] [--program P] [--coach C]
  person consent X --signed-by NAME --scope TEXT [--guardian] [--signed-on D] [--withdraw]
  person band X low|high|unknown --reason TEXT
  person role X ROLE                     e.g. a participant who becomes a coach
  person w9 X                            X's tax form (W-9) is on file: coach stipends need it
  enrol P X [--coach C]                  enrol participant X in program P (opens their wallet)
  coach P X C                            assign coach C to participant X in P ("" removes)

facts:
  connect PARTICIPANT OTHER --role mentor|near_peer_coach|peer|professional [--origin matched|self_reported] [--started D]
  end CONNECTION --reason TEXT [--on D] [--retract]
  rate CONNECTION --rater X --month 2026-10 --score 1..10
  converse CONNECTION [--at TIME] --channel in_person|video|phone|message --minutes N
           [--resources advice,referral,…] [--note TEXT] [--verified] [--key K] [--as ROLE:PERSON]
  conversations [--participant X] [--status unverified|verified|retracted]
  verify | unverify | retract CONVERSATION [--reason TEXT] [--as coach:PERSON]

rules (JSON as DESIGN.md §6, on stdin or --file F):
  rule save P [--file F] | rule list P [--retired] | rule versions P ID | rule retire P ID --reason TEXT

milestones:
  progress X                             each rule: met or not, the count so far, what is missing
  evaluate X                             evaluate X's milestones now (River does it after every fact)
  awards [--participant X] [--program P] [--status posted|insufficient_funds]

The command line acts as an admin named cli:<user>. --as acts as a participant or coach
(e.g. --as participant:ana): the change is recorded as theirs, made by you, and the access
policy applies to them.
`

// networkCmd runs tandem network … (and tandem program …).
func networkCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, networkUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: tandem network needs a command", errUsage)
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	if (cmd == "program" || cmd == "person" || cmd == "rule") && len(rest) > 0 {
		cmd, rest = cmd+" "+rest[0], rest[1:]
	}
	if cmd == "program clock" {
		return clockCmd(ctx, rest, stdout, stderr) // clockcli.go
	}
	fs := flag.NewFlagSet("tandem network "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(name, usage string) *string { return fs.String(name, "", usage) }
	var (
		id, name, currency, starts, ends, auto = str("id", "id"), str("name", "name"), str("currency", "currency"),
			str("starts", "first day"), str("ends", "last day"), str("auto-approve", "auto-approve limit")
		key, roles, interests, birth          = str("key", "idempotency key"), str("roles", "roles"), str("interests", "interests"), str("birth-date", "birth date")
		signedBy, scope, signedOn, reason     = str("signed-by", "who signed"), str("scope", "records, purpose, recipients"), str("signed-on", "date signed"), str("reason", "why")
		role, origin, started, on             = str("role", "connection role"), str("origin", "origin"), str("started", "start date"), str("on", "end date")
		rater, month, at, channel             = str("rater", "rater"), str("month", "month"), str("at", "when (RFC 3339; default now)"), str("channel", "channel")
		resources, note, as, file             = str("resources", "resource kinds"), str("note", "note"), str("as", "ROLE:PERSON"), str("file", "file")
		participant, program, status, coach   = str("participant", "participant"), str("program", "program"), str("status", "status"), str("coach", "coach")
		guardian, withdraw, retract, verified = fs.Bool("guardian", false, "a guardian signed"), fs.Bool("withdraw", false, "withdraw consent"),
			fs.Bool("retract", false, "recorded in error"), fs.Bool("verified", false, "log verified")
		retired = fs.Bool("retired", false, "include retired rules")
		score   = fs.Int("score", 0, "1–10")
		minutes = fs.Int("minutes", 0, "minutes")
	)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	need := argCount("tandem network "+cmd, pos)
	a, closeApp, err := openApp(ctx)
	if err != nil {
		return err
	}
	defer closeApp()
	n := a.Network
	by := network.By{Principal: cliActor()}
	if *as != "" {
		switch cmd {
		case "converse", "rate", "verify", "unverify", "retract":
		default:
			return fmt.Errorf("%w: --as is for what participants and coaches do (converse, rate, verify, unverify, retract), not %s", errUsage, cmd)
		}
		if by, err = actAs(*as); err != nil {
			return err
		}
		if cmd == "rate" && *rater != by.PersonID {
			return fmt.Errorf("%w: %s may rate only as themselves (--rater %s)", access.ErrForbidden, by.PersonID, by.PersonID)
		}
	}
	show := jsonShow(stdout)
	today := time.Now().UTC().Format(time.DateOnly)
	switch cmd {
	case "program create":
		return show(n.CreateProgram(ctx, by, network.NewProgram{ID: *id, Name: *name, Currency: *currency, StartsOn: *starts, EndsOn: *ends, AutoApproveLimit: *auto}))
	case "program list":
		return show(n.Programs(ctx))
	case "program show":
		if err := need(1, "P"); err != nil {
			return err
		}
		return show(n.Program(ctx, pos[0]))
	case "program fund":
		if err := need(2, "P AMOUNT"); err != nil {
			return err
		}
		k := *key
		if k == "" {
			k = "fund:" + pos[0] + ":" + uuid.NewString()
			fmt.Fprintf(stderr, "idempotency key %s (repeat it with --key to retry safely)\n", k)
		}
		e, err := n.Fund(ctx, by, pos[0], pos[1], k)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "funded %s with %s: entry %s (seq %d)%s\n", pos[0], pos[1], e.ID, e.Seq, replayed(e.Replayed))
		return nil
	case "metrics":
		if err := need(1, "P"); err != nil {
			return err
		}
		return show(n.ProgramMetrics(ctx, pos[0]))
	case "person add":
		return show(n.AddPerson(ctx, by, network.NewPerson{ID: *id, Name: *name, Roles: splitList(*roles), Interests: splitList(*interests), BirthDate: *birth}))
	case "person show":
		if err := need(1, "X"); err != nil {
			return err
		}
		return show(n.Person(ctx, pos[0]))
	case "person list":
		return show(n.People(ctx, network.PeopleFilter{Role: *role, Program: *program, Coach: *coach}))
	case "person consent":
		if err := need(1, "X --signed-by NAME --scope TEXT"); err != nil {
			return err
		}
		d := *signedOn
		if d == "" {
			d = today
		}
		return show(n.RecordConsent(ctx, by, pos[0], network.NewConsent{Given: !*withdraw, SignedBy: *signedBy, Guardian: *guardian, SignedOn: d, Scope: *scope}))
	case "person band":
		if err := need(2, "X low|high|unknown --reason TEXT"); err != nil {
			return err
		}
		band := pos[1]
		if band == "unknown" {
			band = ""
		}
		return show(n.SetBand(ctx, by, pos[0], band, *reason))
	case "person w9":
		if err := need(1, "X"); err != nil {
			return err
		}
		return show(n.RecordTaxForm(ctx, by, pos[0]))
	case "person role":
		if err := need(2, "X ROLE"); err != nil {
			return err
		}
		return show(n.AddRole(ctx, by, pos[0], pos[1]))
	case "enrol":
		if err := need(2, "P X [--coach C]"); err != nil {
			return err
		}
		return show(n.Enrol(ctx, by, pos[0], pos[1], *coach))
	case "coach":
		if err := need(3, "P X C"); err != nil {
			return err
		}
		return show(n.AssignCoach(ctx, by, pos[0], pos[1], pos[2]))
	case "connect":
		if err := need(2, "PARTICIPANT OTHER --role R"); err != nil {
			return err
		}
		o, s := *origin, *started
		if o == "" {
			o = "matched"
		}
		if s == "" {
			s = today
		}
		return show(n.Connect(ctx, by, network.NewConnection{ParticipantID: pos[0], OtherID: pos[1], Role: *role, Origin: o, StartedOn: s}))
	case "end":
		if err := need(1, "CONNECTION --reason TEXT"); err != nil {
			return err
		}
		return show(n.End(ctx, by, pos[0], network.EndConnection{EndedOn: *on, Retracted: *retract, Reason: *reason}))
	case "rate":
		if err := need(1, "CONNECTION --rater X --month M --score N"); err != nil {
			return err
		}
		if err := authorizeFor(ctx, n, by, access.ConnectionRate, pos[0], ""); err != nil {
			return err
		}
		if err := n.Rate(ctx, by, pos[0], network.NewRating{RaterID: *rater, Month: *month, Score: *score}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rated %s: %s gave %d for %s\n", pos[0], *rater, *score, *month)
		return nil
	case "converse":
		if err := need(1, "CONNECTION [--at TIME] --channel C --minutes N"); err != nil {
			return err
		}
		when, err := time.Now().UTC().Truncate(time.Second), error(nil)
		if *at != "" {
			when, err = time.Parse(time.RFC3339, *at)
		}
		if err != nil {
			return fmt.Errorf("%w: --at %q: a time like 2026-11-20T16:00:00Z", errUsage, *at)
		}
		if err := authorizeFor(ctx, n, by, access.ConversationCreate, pos[0], ""); err != nil {
			return err
		}
		if *verified {
			if err := authorizeFor(ctx, n, by, access.ConversationReview, pos[0], ""); err != nil {
				return err
			}
		}
		return show(n.LogConversation(ctx, by, network.NewConversation{ConnectionID: pos[0], OccurredAt: when, Channel: *channel,
			Minutes: *minutes, Resources: splitList(*resources), Note: *note, Verified: *verified, IdempotencyKey: *key}))
	case "conversations":
		return show(n.Conversations(ctx, network.ConversationFilter{Participant: *participant, Status: *status}))
	case "verify", "unverify", "retract":
		if err := need(1, "CONVERSATION"); err != nil {
			return err
		}
		if err := authorizeFor(ctx, n, by, access.ConversationReview, "", pos[0]); err != nil {
			return err
		}
		return show(n.Review(ctx, by, pos[0], cmd, *reason))
	case "rule save":
		if err := need(1, "P [--file F]"); err != nil {
			return err
		}
		def, err := readInput(stdin, *file)
		if err != nil {
			return err
		}
		rv, created, err := n.SaveRule(ctx, by, pos[0], def)
		if err == nil && !created {
			fmt.Fprintf(stderr, "rule %s is unchanged (version %d)\n", rv.Rule.ID, rv.Version)
		}
		return show(rv, err)
	case "rule list":
		if err := need(1, "P"); err != nil {
			return err
		}
		return show(n.Rules(ctx, pos[0], *retired))
	case "rule versions":
		if err := need(2, "P ID"); err != nil {
			return err
		}
		return show(n.RuleVersions(ctx, pos[0], pos[1]))
	case "rule retire":
		if err := need(2, "P ID --reason TEXT"); err != nil {
			return err
		}
		return show(n.RetireRule(ctx, by, pos[0], pos[1], *reason))
	case "progress":
		if err := need(1, "X"); err != nil {
			return err
		}
		p, err := n.Progress(ctx, pos[0])
		if err != nil {
			return err
		}
		printProgress(stdout, p)
		return nil
	case "evaluate":
		if err := need(1, "X"); err != nil {
			return err
		}
		res, err := n.EvaluateParticipant(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "evaluated %s: %d awarded, %d waiting for funds, %d paid after funding\n", pos[0], res.Awarded, res.Waiting, res.Paid)
		return nil
	case "awards":
		return show(n.Awards(ctx, network.AwardFilter{Participant: *participant, Program: *program, Status: *status}))
	}
	fmt.Fprint(stderr, networkUsage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// actAs is the principal of --as ROLE:PERSON, still named after the command-line user.
func actAs(s string) (network.By, error) {
	role, person, ok := strings.Cut(s, ":")
	if !ok || (role != string(access.Participant) && role != string(access.Coach)) || !access.ValidPersonID(person) {
		return network.By{}, fmt.Errorf("%w: --as %q: participant:PERSON or coach:PERSON", errUsage, s)
	}
	p := cliActor()
	return network.By{Principal: access.Principal{Name: p.Name + " as " + s, Role: access.Role(role), PersonID: person}}, nil
}

// authorizeFor applies the access policy to --as principals (admins pass): the resource is
// the participant of the connection or conversation.
func authorizeFor(ctx context.Context, n *network.Store, by network.By, action access.Action, connection, conversation string) error {
	if by.Role == access.Admin {
		return nil
	}
	var participant, other string
	if connection != "" {
		c, err := n.Connection(ctx, connection)
		if err != nil {
			return err
		}
		participant, other = c.ParticipantID, c.OtherID
	} else {
		c, err := n.Conversation(ctx, conversation)
		if err != nil {
			return err
		}
		participant = c.ParticipantID
	}
	coaches, err := n.Coaches(ctx, participant)
	if err != nil {
		return err
	}
	return access.Authorize(by.Principal, action, access.Resource{Owner: participant, OwnerRole: access.Participant, Coaches: coaches, Other: other})
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func readInput(stdin io.Reader, file string) ([]byte, error) {
	if file != "" {
		return os.ReadFile(file)
	}
	return io.ReadAll(io.LimitReader(stdin, 1<<20))
}

func replayed(r bool) string {
	if r {
		return " (already posted under this key: nothing new)"
	}
	return ""
}

// printProgress writes a participant's progress as people read it.
func printProgress(w io.Writer, p network.ParticipantProgress) {
	if len(p.Programs) == 0 {
		fmt.Fprintf(w, "%s is not enrolled in any program\n", p.Participant)
		return
	}
	for _, pp := range p.Programs {
		fmt.Fprintf(w, "%s in %s (%s): wallet %s %s", p.Participant, pp.Program.Name, pp.Program.ID,
			ledger.FormatAmount(pp.Wallet.Posted, pp.Wallet.Currency), pp.Wallet.Currency)
		if !pp.Consent {
			fmt.Fprint(w, " — no consent on file: no award can be made")
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  rule\tv\tmet\tcount\tmissing")
		for _, r := range pp.Rules {
			met := "no"
			if r.Met {
				met = "yes"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s of %s\t%s\n", r.RuleID, r.Version, met, r.Count, r.Target, r.Missing)
		}
		_ = tw.Flush()
		for _, a := range pp.Awards {
			fmt.Fprintf(w, "  award %s: %s %s %s\n", a.Key, ledger.FormatAmount(a.Amount, a.Currency), a.Currency, a.Status)
		}
	}
}
