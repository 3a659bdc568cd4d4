package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/textfmt"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/migrations"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// defaultDemoProgram is the demo program's id; its people's ids carry no prefix. Another id
// (--program) prefixes them, so that several demos can share a database.
const defaultDemoProgram = "riverside"

// defaultDemoAddr is where make run serves (the Makefile's ADDR), for the sign-in page
// tandem demo prints when neither --addr nor TANDEM_ADDR says otherwise.
const defaultDemoAddr = "127.0.0.1:8080"

// demoSignInURL is the sign-in page printed with the demo's tokens: signIn when given, else
// http://<addr>/sign-in with addr from --addr, TANDEM_ADDR, or make run's.
func demoSignInURL(signIn, addr string, getenv func(string) string) string {
	if signIn != "" {
		return signIn
	}
	return "http://" + cmp.Or(addr, getenv("TANDEM_ADDR"), defaultDemoAddr) + "/sign-in"
}

// demoProgramID is what --program takes: a program id with room for the earlier cohort's.
var demoProgramID = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,49}$`)

// demoTokenTTL is how long the demo's tokens live.
const demoTokenTTL = 30 * 24 * time.Hour

// demo loads the demo program (tandem demo) with the River workers running in this process,
// so the awards and payouts happen while it narrates.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	programID := fs.String("program", defaultDemoProgram, "id of the demo program to create")
	addr := fs.String("addr", "", "the address tandem serve listens on, for the sign-in page printed with the tokens (default $TANDEM_ADDR, else "+defaultDemoAddr+")")
	signIn := fs.String("sign-in", "", "the sign-in page to print with the tokens, in full (e.g. behind a TLS proxy); overrides --addr")
	tokensFile := fs.String("tokens-file", "", "also write the summary and the tokens to this file (mode 0600)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrations.Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}
	// The sandbox, whatever the environment says: the demo's people have no Stripe accounts.
	a, err := app.New(pool, app.Config{})
	if err != nil {
		return err
	}
	started := false
	defer func() {
		if !started {
			a.Ledger.Close()
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Stop(sctx)
	}()
	// The workers start once the history is recorded, as a server started after an import
	// would: each participant's facts then make one evaluation, not one per fact.
	return loadDemo(ctx, a, demoOptions{Program: *programID, SignIn: demoSignInURL(*signIn, *addr, os.Getenv), Out: stdout,
		TokensFile: *tokensFile, StartWorkers: func(ctx context.Context) error {
			started = true
			return a.Start(ctx)
		}})
}

// demoOptions tune loadDemo.
type demoOptions struct {
	Program string    // the program's id (default riverside)
	SignIn  string    // the sign-in page printed with the tokens
	Out     io.Writer // the narration
	// TokensFile, when set, receives a copy of the summary and the tokens (mode 0600).
	TokensFile string
	// StartWorkers starts a's River workers before loadDemo first waits for them; nil when
	// they run already (serve).
	StartWorkers func(context.Context) error
}

// demoToken is one of the demo's people at the keyboard: the principal the demo acts as
// and, once the program is loaded, the token printed for them.
type demoToken struct {
	role   access.Role
	label  string
	id     string // the token's id, once made
	secret string // "" until makeTokens
	by     network.By
}

// demoRun is one loading of the demo: the plan, the stores, and the ids things got.
type demoRun struct {
	a       *app.App
	pl      *demoPlan
	pid     string // the program
	earlier string // the earlier cohort's program
	prefix  string
	out     io.Writer

	lead, ops, finance *demoToken
	tokens             []*demoToken

	summary *bytes.Buffer // a copy of the summary and the tokens, for demoOptions.TokensFile

	connIDs, fairIDs []string // by index into pl.conns, pl.fairConns
	startWorkers     func(context.Context) error
	mu               sync.Mutex
	logged           int // conversations logged
}

func (r *demoRun) id(key string) string { return r.prefix + key }

func (r *demoRun) say(format string, args ...any) { fmt.Fprintf(r.out, format+"\n", args...) }

// newDemoRun plans the demo into program pid (whose id must be valid) for the day of now.
// The admins act as the command line acting for them (as tandem payouts --as admin:PERSON
// records it); adminTokens gives them their tokens before the first grant, since only a
// person holding an active admin token may approve (the database checks it).
func newDemoRun(a *app.App, pid string, now time.Time, out io.Writer) *demoRun {
	r := &demoRun{a: a, pl: planDemo(now), pid: pid, out: out}
	if pid != defaultDemoProgram {
		r.prefix = pid + "-"
	}
	r.earlier = fmt.Sprintf("%s-%d", pid, r.pl.start.Year()-1)
	admin := func(p demoPerson) *demoToken {
		id := r.id(p.key)
		by := network.By{Principal: access.Principal{Name: cliActor().Name + " as admin:" + id, Role: access.Admin, PersonID: id}, RequestID: "demo:" + pid}
		return &demoToken{role: access.Admin, label: p.name + ", " + p.about, by: by}
	}
	r.lead, r.ops, r.finance = admin(r.pl.lead), admin(r.pl.ops), admin(r.pl.finance)
	return r
}

// demoStep is a part of the load: what it writes, for the account of a load that fails.
type demoStep struct {
	name  string
	wrote string
	run   func(context.Context) error
}

func (r *demoRun) steps() []demoStep {
	return []demoStep{
		{"recording the earlier cohort", fmt.Sprintf("program %s with its %d participants (4 now coach), their consent, bands and payout accounts",
			r.earlier, len(r.pl.coaches)+len(r.pl.alumni)), r.earlierCohort},
		{"creating the program", fmt.Sprintf("program %s, its %s USD funding (a ledger entry), payout policy and %d rules", r.pid, money(demoFunding), len(demoRules)), r.program},
		{"recording the people", fmt.Sprintf("%d mentors and professionals and %d participants, with consent, bands, enrolments and payout accounts",
			len(r.pl.mentors)+len(r.pl.pros), len(r.pl.participants)), r.people},
		{"recording the history", "connections, conversations, reviews and ratings; the awards they earned and their payouts", r.history},
		{"recording the career fair", "the career fair's connections and conversations, and their awards", r.careerFair},
		{"making the admins' tokens", "", r.adminTokens},
		{"making the grants", "grants (paid, rejected, waiting) and failing payouts", r.grants},
		{"paying the stipends", "the coaches' stipend rate and stipends, some approved and paid", r.stipends},
		{"forfeiting on the test clock", "an advance of the program's test clock and the forfeit of the payout left failed", r.forfeit}, // democlock.go
		{"reconciling", "a reconciliation with the sandbox", r.finish},
		{"making the tokens", "", r.makeTokens},
		{"recording that it finished", "", func(ctx context.Context) error { return r.mark(ctx, demoFinished, "") }},
	}
}

// loadDemo records the demo program through the stores the API and the command line use —
// people, consent, connections, conversations, reviews, ratings, rules, funding, grants,
// approvals, payouts, stipends, reconciliation — waits for the River workers of a to make the
// awards and payouts, and makes the admins' tokens before the grants (approvers hold one) and
// the other tokens last. It checks every id it will write before it
// writes anything, and refuses a program the demo was loaded into. The audit trail records
// the load's start, and its end or where it failed (record demo:<program>), so that a later
// run can tell a loaded demo from one that stopped part-way.
func loadDemo(ctx context.Context, a *app.App, opt demoOptions) error {
	began := time.Now()
	pid := cmp.Or(opt.Program, defaultDemoProgram)
	if !demoProgramID.MatchString(pid) {
		return fmt.Errorf("%w: --program %q: 1–50 lower-case letters, digits and dashes (the earlier cohort's id adds a year)", errUsage, pid)
	}
	if name := a.Payouts.Provider().Name(); name != "sandbox" {
		return fmt.Errorf("%w: the demo pays its people through the sandbox, and the payout provider is %s: unset STRIPE_SECRET_KEY to load it", errUsage, name)
	}
	r := newDemoRun(a, pid, began, opt.Out)
	r.startWorkers = opt.StartWorkers
	if opt.TokensFile != "" {
		r.summary = &bytes.Buffer{}
	}
	if err := r.check(ctx); err != nil {
		return err
	}
	if err := r.mark(ctx, demoStarted, ""); err != nil {
		return err
	}
	steps := r.steps()
	for i, st := range steps {
		if err := st.run(ctx); err != nil {
			return r.failed(ctx, steps[:i+1], err)
		}
	}
	r.say("\nLoaded in %.1f s.", time.Since(began).Seconds())
	r.printTokens(cmp.Or(opt.SignIn, "http://"+defaultDemoAddr+"/sign-in"))
	if opt.TokensFile != "" {
		// The tokens are secrets: the file is the operator's alone.
		if err := os.WriteFile(opt.TokensFile, r.summary.Bytes(), 0o600); err != nil {
			fmt.Fprintf(opt.Out, "\nThe summary and tokens could not be saved: %v\n", err)
		} else {
			fmt.Fprintf(opt.Out, "\nThis summary and the tokens are also in %s.\n", opt.TokensFile)
		}
	}
	return nil
}

// beginSummary ends the narration with a rule the eye finds among the server's log lines,
// and from here copies what is said for demoOptions.TokensFile.
func (r *demoRun) beginSummary() {
	r.say("\n%s", strings.Repeat("=", 78))
	if r.summary != nil {
		r.out = io.MultiWriter(r.out, r.summary)
	}
}

// The audit trail's lines about a demo load (record demo:<program>).
const (
	demoStarted  = "demo.load.start"
	demoFailed   = "demo.load.fail"
	demoFinished = "demo.load.finish"
)

func demoRecord(pid string) string { return "demo:" + pid }

// mark records a step of the load in the audit trail.
func (r *demoRun) mark(ctx context.Context, action, detail string) error {
	return access.Apply(ctx, r.a.Pool, cliActor(), "demo:"+r.pid, func(pgx.Tx) (access.Event, error) {
		return access.Event{Action: action, Record: demoRecord(r.pid), Detail: detail,
			After: map[string]any{"program": r.pid, "earlier_program": r.earlier, "seed": demoSeed, "day": r.pl.now.Format(time.DateOnly)}}, nil
	})
}

// failed tells what a load that failed wrote and how to recover, records where it failed
// (even when ctx was cancelled: Ctrl-C), revokes the tokens made, and returns the error.
// done are the steps begun, the last the one that failed.
func (r *demoRun) failed(ctx context.Context, done []demoStep, cause error) error {
	at, why := done[len(done)-1].name, cause.Error()
	if ctx.Err() != nil {
		why = "interrupted: " + context.Cause(ctx).Error() // Ctrl-C, or the server stopped
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	revoked := 0
	for _, t := range r.tokens {
		if _, err := r.a.Access.RevokeToken(mctx, cliActor(), t.id); err == nil {
			revoked++
		}
	}
	r.tokens = nil
	merr := r.mark(mctx, demoFailed, "while "+at+": "+why)
	r.say("\nThe demo stopped while %s: %s", at, why)
	r.say("What it wrote stays (the ledger and the audit trail are append-only):")
	for i, st := range done {
		if st.wrote == "" {
			continue
		}
		if i == len(done)-1 {
			r.say("  part of: %s", st.wrote)
		} else {
			r.say("  %s", st.wrote)
		}
	}
	if revoked > 0 {
		r.say("The %d tokens it had made are revoked; no token of this demo signs in.", revoked)
	} else {
		r.say("It made no token: the admins' come just before the grants, the others last, once everything else is loaded.")
	}
	again, err := freeDemoID(mctx, r.a, r.pid)
	if err != nil {
		again = "<another id>"
	}
	r.say("To load the demo: tandem demo --program %s (it prefixes every id), or start from a fresh database (make run: remove .tandem/pgdata).", again)
	if merr != nil {
		r.say("(The audit trail could not record where it stopped: %v)", merr)
	}
	return fmt.Errorf("demo: failed while %s: %w", at, cause)
}

// demoStatus is what the audit trail says of the demo in a program.
type demoStatus int

const (
	demoAbsent  demoStatus = iota // never started there
	demoLoaded                    // loaded to the end
	demoPartial                   // started, and failed or stopped part-way (or is loading now)
)

// demoState reads the audit trail's lines about the demo loaded into program pid; for a
// partial load, how it ended.
func demoState(ctx context.Context, a *app.App, pid string) (demoStatus, string, error) {
	lines, err := a.Access.Audit(ctx, access.AuditFilter{Record: demoRecord(pid), Limit: 1000})
	if err != nil {
		return demoAbsent, "", err
	}
	if len(lines) == 0 {
		return demoAbsent, "", nil
	}
	switch last := lines[len(lines)-1]; last.Action {
	case demoFinished:
		return demoLoaded, "", nil
	case demoFailed:
		return demoPartial, "failed " + last.Detail, nil
	default:
		return demoPartial, "started at " + last.At.Format(time.DateTime) + " and did not finish: interrupted, or loading now", nil
	}
}

// check refuses, before anything is written, a program the demo was loaded into and any
// id the demo would write that is taken: its programs, people and idempotency keys.
func (r *demoRun) check(ctx context.Context) error {
	again := func() string {
		id, err := freeDemoID(ctx, r.a, r.pid)
		if err != nil {
			return "<another id>"
		}
		return id
	}
	st, how, err := demoState(ctx, r.a, r.pid)
	switch {
	case err != nil:
		return err
	case st == demoLoaded:
		return fmt.Errorf("%w: program %q: the demo is loaded (its tokens were printed then; tandem token create makes more); run tandem demo --program %s for a second copy",
			errUsage, r.pid, again())
	case st == demoPartial:
		return fmt.Errorf("%w: program %q: the demo is partially loaded (%s); what it wrote stays: use --program %s, or a fresh database",
			errUsage, r.pid, how, again())
	}
	taken, err := r.taken(ctx)
	if err != nil || len(taken) == 0 {
		return err
	}
	return fmt.Errorf("%w: the demo would write ids that are taken (%s): use --program %s (it prefixes every id), or a fresh database",
		errUsage, strings.Join(taken, ", "), again())
}

// taken lists the ids of programs, people and idempotency keys the demo would write that
// exist already.
func (r *demoRun) taken(ctx context.Context) ([]string, error) {
	var out []string
	for _, p := range []string{r.earlier, r.pid} {
		if _, err := r.a.Network.Program(ctx, p); err == nil {
			out = append(out, "program "+p)
		} else if !errors.Is(err, network.ErrNotFound) {
			return nil, err
		}
	}
	var people []string
	for _, group := range [][]demoPerson{r.pl.coaches, r.pl.alumni, r.pl.mentors, r.pl.pros} {
		for _, p := range group {
			people = append(people, r.id(p.key))
		}
	}
	for _, p := range r.pl.participants {
		people = append(people, r.id(p.key))
	}
	names, err := r.a.Network.Names(ctx, people)
	if err != nil {
		return nil, err
	}
	for _, id := range slices.Sorted(maps.Keys(names)) {
		out = append(out, "person "+id)
	}
	keys := []string{r.fundKey()}
	for _, key := range []string{storyRent, storyLaptop, storyLicence, storyTransit, storyFrozen} {
		keys = append(keys, "grant:"+r.pid+":"+r.grantKey(key))
	}
	for k := range r.pl.convs {
		keys = append(keys, r.convKey(k))
	}
	for k := range r.pl.fairConvs {
		keys = append(keys, r.fairKey(k))
	}
	rows, err := r.a.Pool.Query(ctx, `SELECT k FROM unnest($1::text[]) AS k
		WHERE EXISTS (SELECT 1 FROM ledger_entries WHERE idempotency_key = k)
		   OR EXISTS (SELECT 1 FROM network_conversations WHERE idempotency_key = k)
		ORDER BY k`, keys)
	if err != nil {
		return nil, fmt.Errorf("look for the demo's idempotency keys: %w", err)
	}
	used, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("look for the demo's idempotency keys: %w", err)
	}
	for _, k := range used {
		out = append(out, "idempotency key "+k)
	}
	if len(out) > 6 {
		out = append(out[:5], fmt.Sprintf("%d more", len(out)-5))
	}
	return out, nil
}

// The demo's idempotency keys.
func (r *demoRun) fundKey() string            { return "demo:" + r.pid + ":riverside-community-foundation" }
func (r *demoRun) grantKey(key string) string { return "demo:" + r.pid + ":" + key }
func (r *demoRun) convKey(k int) string       { return fmt.Sprintf("demo:%s:conversation:%d", r.pid, k) }
func (r *demoRun) fairKey(k int) string       { return fmt.Sprintf("demo:%s:fair:%d", r.pid, k) }

// freeDemoID is a program id for another copy of the demo: pid (without a -N suffix) with
// the first -2, -3, … whose ids are all free.
func freeDemoID(ctx context.Context, a *app.App, pid string) (string, error) {
	base := pid
	if m := demoCopySuffix.FindStringSubmatch(pid); m != nil {
		base = m[1]
	}
	now := time.Now()
	for n := 2; n < 100; n++ {
		id := fmt.Sprintf("%s-%d", base, n)
		if !demoProgramID.MatchString(id) {
			break
		}
		r := newDemoRun(a, id, now, io.Discard)
		if st, _, err := demoState(ctx, a, id); err != nil || st != demoAbsent {
			if err != nil {
				return "", err
			}
			continue
		}
		taken, err := r.taken(ctx)
		if err != nil {
			return "", err
		}
		if len(taken) == 0 {
			return id, nil
		}
	}
	return "", fmt.Errorf("no free program id like %s-2", base)
}

var demoCopySuffix = regexp.MustCompile(`^(.+)-[0-9]{1,2}$`)

// adminTokens creates the admins' tokens, as tandem token create does, before the grants:
// an approver must hold an active admin token. A token made before a later failure is
// revoked by failed.
func (r *demoRun) adminTokens(ctx context.Context) error {
	for _, t := range []*demoToken{r.lead, r.ops, r.finance} {
		if err := r.newToken(ctx, t, t.label, t.by.PersonID); err != nil {
			return err
		}
	}
	return nil
}

// newToken creates t's token, as tandem token create does, and checks that it authenticates.
func (r *demoRun) newToken(ctx context.Context, t *demoToken, name, person string) error {
	tok, secret, err := r.a.Access.CreateToken(ctx, cliActor(), access.NewToken{Name: name + " (demo)", Role: t.role, PersonID: person, TTL: demoTokenTTL})
	if err != nil {
		return err
	}
	t.id = tok.ID
	r.tokens = append(r.tokens, t)
	if _, err := r.a.Access.Authenticate(ctx, secret); err != nil {
		return fmt.Errorf("token %s does not authenticate: %w", tok.ID, err)
	}
	t.secret = secret
	return nil
}

// makeTokens creates the demo's other tokens once the program is loaded. A token made before
// a later failure is revoked by failed.
func (r *demoRun) makeTokens(ctx context.Context) error {
	newToken := func(t *demoToken, name, person string) error {
		return r.newToken(ctx, t, name, person)
	}
	if err := newToken(&demoToken{role: access.Auditor, label: "Riverside Community Foundation auditor"}, "Riverside Community Foundation auditor", ""); err != nil {
		return err
	}
	if err := newToken(&demoToken{role: access.Coach, label: "Lee Okafor, Maya's coach"}, "Lee Okafor", r.id(storyCoach)); err != nil {
		return err
	}
	maya := r.pl.participants[r.pl.participantIndex(storyMaya)]
	return newToken(&demoToken{role: access.Participant, label: maya.name}, maya.name, r.id(maya.key))
}

// earlierCohort records last year's cohort: its participants, four of whom now coach.
func (r *demoRun) earlierCohort(ctx context.Context) error {
	n, by := r.a.Network, r.lead.by
	start := r.pl.start.AddDate(-1, 0, 0)
	p, err := n.CreateProgram(ctx, by, network.NewProgram{ID: r.earlier, Name: fmt.Sprintf("Riverside near-peer mentoring, %d–%02d cohort", start.Year(), (start.Year()+1)%100),
		Currency: "USD", StartsOn: start.Format(time.DateOnly), EndsOn: r.pl.start.AddDate(0, 0, -1).Format(time.DateOnly), AutoApproveLimit: demoAutoApprove})
	if err != nil {
		return err
	}
	signed := start.AddDate(0, 0, -5).Format(time.DateOnly)
	for _, x := range slices.Concat(r.pl.coaches, r.pl.alumni) {
		if err := r.addPerson(ctx, x, []string{"participant"}, "", network.NewConsent{Given: true, SignedBy: x.name, SignedOn: signed,
			Scope: "records: enrolment, network facts, payments; purpose: Riverside near-peer mentoring; recipients: Riverside staff and auditors"}); err != nil {
			return err
		}
		if _, err := n.Enrol(ctx, by, p.ID, r.id(x.key), ""); err != nil {
			return err
		}
	}
	// A year on, four of them coach this year's cohort: near-peer conversion.
	for _, c := range r.pl.coaches {
		if _, err := n.AddRole(ctx, by, r.id(c.key), "coach"); err != nil {
			return err
		}
		if c.w9 {
			if _, err := n.RecordTaxForm(ctx, by, r.id(c.key)); err != nil {
				return err
			}
		}
		if _, err := r.a.Payouts.SetDestination(ctx, r.as("coach", c.key), r.id(c.key), "sandbox:riverside-cu-"+c.key); err != nil {
			return err
		}
	}
	m, err := n.ProgramMetrics(ctx, p.ID)
	if err != nil {
		return err
	}
	r.say("earlier cohort %s (%s to %s, ended): %d participants; %d of them now coach this year's cohort (near-peer conversion %s)",
		p.ID, p.StartsOn.Format(time.DateOnly), p.EndsOn.Format(time.DateOnly), m.Participants, m.BecameCoaches, decOrDash(m.NearPeerConversion))
	return nil
}

// as is the principal of a participant or coach acting for themselves, as tandem network
// --as records it: the command line's user acting as that person, under the same policy.
func (r *demoRun) as(role, key string) network.By {
	by, err := actAs(role + ":" + r.id(key))
	if err != nil {
		panic(err) // the demo's ids are valid
	}
	by.RequestID = "demo:" + r.pid
	return by
}

// addPerson records a person with their consent and band.
func (r *demoRun) addPerson(ctx context.Context, x demoPerson, roles []string, birth string, c network.NewConsent) error {
	n, by := r.a.Network, r.lead.by
	if _, err := n.AddPerson(ctx, by, network.NewPerson{ID: r.id(x.key), Name: x.name, Roles: roles, Interests: x.interests, BirthDate: birth}); err != nil {
		return err
	}
	if _, err := n.RecordConsent(ctx, by, r.id(x.key), c); err != nil {
		return err
	}
	if x.band == "" {
		return nil
	}
	reason := "intake form: household income above the area median, or a bachelor's degree"
	if x.band == "low" {
		reason = "intake form: household income below the area median, no bachelor's degree"
	}
	_, err := n.SetBand(ctx, by, r.id(x.key), x.band, reason)
	return err
}

// program creates this year's program: funding, payout policy and rules.
func (r *demoRun) program(ctx context.Context) error {
	n, by := r.a.Network, r.lead.by
	end := r.pl.start.AddDate(1, 0, -1)
	p, err := n.CreateProgram(ctx, by, network.NewProgram{ID: r.pid, Name: "Riverside near-peer mentoring", Currency: "USD",
		StartsOn: r.pl.start.Format(time.DateOnly), EndsOn: end.Format(time.DateOnly), AutoApproveLimit: demoAutoApprove})
	if err != nil {
		return err
	}
	if _, err := n.Fund(ctx, r.finance.by, p.ID, demoFunding, r.fundKey()); err != nil {
		return err
	}
	retries := payouts.DefaultAutoRetries
	pol, err := r.a.Payouts.SetPolicy(ctx, by, p.ID, payouts.NewPolicy{DualControlThreshold: demoDualControl, MonthlyCap: demoMonthlyCap,
		YearlyCap: demoYearlyCap, RemediationDays: demoRemediationDays, AutoRetries: &retries})
	if err != nil {
		return err
	}
	r.say("program %s: %s, USD, %s to %s", p.ID, p.Name, p.StartsOn.Format(time.DateOnly), p.EndsOn.Format(time.DateOnly))
	r.say("  funded with %s USD by the Riverside Community Foundation (%s)", money(demoFunding), p.FundAccount)
	r.say("  payout policy: approved automatically up to %s, two admins from %s, at most %s a month and %s a year a person; a failed payout is forfeited after %d days",
		money(pol.AutoApproveLimit.String()), money(pol.DualControlThreshold.String()), money(pol.MonthlyCap.Decimal.String()),
		money(pol.YearlyCap.Decimal.String()), pol.RemediationDays)
	for _, def := range demoRules {
		rv, _, err := n.SaveRule(ctx, by, p.ID, []byte(def))
		if err != nil {
			return err
		}
		r.say("  rule %-15s %s: %s", rv.Rule.ID, money(rv.Rule.Award.Amount.String()), rv.Rule.Title)
	}
	return nil
}

// people records this year's mentors, professionals and 40 participants, each with consent
// (a guardian's for a minor), band, interests, enrolment with their coach and where they are
// paid.
func (r *demoRun) people(ctx context.Context) error {
	signed := r.pl.consentOn.Format(time.DateOnly)
	scope := "records: enrolment, network facts, payments; purpose: Riverside near-peer mentoring; recipients: Riverside staff, coaches and auditors"
	for _, group := range []struct {
		people []demoPerson
		role   string
	}{{r.pl.mentors, "mentor"}, {r.pl.pros, "professional"}} {
		for _, x := range group.people {
			if err := r.addPerson(ctx, x, []string{group.role}, "", network.NewConsent{Given: true, SignedBy: x.name, SignedOn: signed,
				Scope: "records: connections and conversations with participants; purpose: Riverside near-peer mentoring"}); err != nil {
				return err
			}
		}
	}
	minors, bands, youngest, oldest := 0, map[string]int{}, 100, 0
	for _, p := range r.pl.participants {
		if p.guardian != "" {
			minors++
		}
		bands[cmp.Or(p.band, "unknown")]++
		age := r.pl.now.Year() - p.birth.Year()
		if r.pl.now.YearDay() < p.birth.YearDay() {
			age--
		}
		youngest, oldest = min(youngest, age), max(oldest, age)
	}
	err := parallel(ctx, len(r.pl.participants), 4, func(gctx context.Context, i int) error {
		p := r.pl.participants[i]
		c := network.NewConsent{Given: true, SignedBy: p.name, SignedOn: signed, Scope: scope}
		if p.guardian != "" {
			c.SignedBy, c.Guardian = fmt.Sprintf("%s's %s", firstName(p.name), p.guardian), true
		}
		if err := r.addPerson(gctx, p.demoPerson, []string{"participant"}, p.birth.Format(time.DateOnly), c); err != nil {
			return err
		}
		if _, err := r.a.Network.Enrol(gctx, r.lead.by, r.pid, r.id(p.key), r.id(r.pl.coaches[p.coach].key)); err != nil {
			return err
		}
		// Each participant says where they are paid (only they or an admin may).
		self := r.as("participant", p.key)
		if err := access.Authorize(self.Principal, access.DestinationWrite, access.Resource{Owner: r.id(p.key)}); err != nil {
			return err
		}
		_, err := r.a.Payouts.SetDestination(gctx, self, r.id(p.key), p.bank)
		return err
	})
	if err != nil {
		return err
	}
	noW9 := r.pl.coaches[slices.IndexFunc(r.pl.coaches, func(c demoPerson) bool { return !c.w9 })]
	r.say("%d participants enrolled, aged %d to %d (%d were minors when they joined: a guardian signed their consent); bands: %d low, %d high, %d not yet known",
		len(r.pl.participants), youngest, oldest, minors, bands["low"], bands["high"], bands["unknown"])
	r.say("  %d near-peer coaches, each with %d participants: W-9 on file for all but %s; %d mentors and %d professionals (%d high-band, %d low-band)",
		len(r.pl.coaches), len(r.pl.participants)/len(r.pl.coaches), noW9.name, len(r.pl.mentors), len(r.pl.pros),
		countBand(slices.Concat(r.pl.mentors, r.pl.pros), "high"), countBand(slices.Concat(r.pl.mentors, r.pl.pros), "low"))
	return nil
}

// countBand counts the people of a band.
func countBand(people []demoPerson, band string) int {
	n := 0
	for _, p := range people {
		if p.band == band {
			n++
		}
	}
	return n
}

// history records four months of the network, one participant at a time (four at once):
// connections, conversations logged by participants and coaches, their reviews, and the
// monthly ratings; then waits for the awards and their payouts.
func (r *demoRun) history(ctx context.Context) error {
	r.connIDs = make([]string, len(r.pl.conns))
	convIDs := make([]string, len(r.pl.convs))
	if err := parallel(ctx, len(r.pl.participants), 4, func(ctx context.Context, i int) error {
		return r.recordParticipant(ctx, i, convIDs)
	}); err != nil {
		return err
	}
	roles := map[string]int{}
	for _, c := range r.pl.conns {
		roles[c.role]++
	}
	verified, selfReported, sessions, resourced, retracted := 0, 0, 0, 0, 0
	for _, c := range r.pl.convs {
		switch {
		case c.retract != "":
			retracted++
		case c.verified || c.review != byNobody:
			verified++
			if len(c.resources) > 0 {
				resourced++
			}
		case c.reporter == byParticipant:
			selfReported++
		default:
			sessions++
		}
	}
	r.say("%d connections: %s", len(r.pl.conns), joinCounts(roles))
	r.say("%d conversations logged over %s: %d verified (%d carried a resource); awaiting review: %d self-reported by participants, %d coaching sessions of the last week; %d logged twice and retracted",
		r.logged, r.monthSpan(), verified, resourced, selfReported, sessions, retracted)
	r.say("%d monthly ratings of mentor pairs (1–10, by both sides)", len(r.pl.ratings))
	if err := r.wait(ctx); err != nil {
		return err
	}
	return r.sayAwards(ctx, "awards released")
}

// monthSpan is "4 months (Aug–Nov 2026)".
func (r *demoRun) monthSpan() string {
	months := 0
	for m := r.pl.start; !m.After(r.pl.now); m = m.AddDate(0, 1, 0) {
		months++
	}
	return fmt.Sprintf("%d months (%s–%s)", months, r.pl.start.Format("Jan"), r.pl.now.Format("Jan 2006"))
}

// recordParticipant records participant i's connections, conversations, reviews and ratings.
func (r *demoRun) recordParticipant(ctx context.Context, i int, convIDs []string) error {
	n, pl := r.a.Network, r.pl
	p := pl.participants[i]
	coach, allowed := r.actorsOf(i)
	self := r.as("participant", p.key)
	for k, c := range pl.conns {
		if c.participant != i {
			continue
		}
		id, err := r.connect(ctx, c, coach, allowed)
		if err != nil {
			return err
		}
		r.connIDs[k] = id
	}
	for k, c := range pl.convs {
		if pl.conns[c.conn].participant != i {
			continue
		}
		by := self
		if c.reporter == byCoach {
			by = coach
		}
		cv, err := r.converse(ctx, c, r.connIDs[c.conn], by, allowed, r.convKey(k))
		if err != nil {
			return err
		}
		convIDs[k] = cv.ID
	}
	// Reviews: the coach verifies what participants reported; the program lead verifies the
	// coaching sessions (a coach may not verify their own); a duplicate is retracted.
	for k, c := range pl.convs {
		if pl.conns[c.conn].participant != i {
			continue
		}
		by, action, reason := coach, network.ReviewVerify, ""
		switch {
		case c.retract != "":
			action, reason = network.ReviewRetract, c.retract
		case c.review == byLead:
			by = r.lead.by
		case c.review != byCoach:
			continue
		}
		if err := allowed(by, access.ConversationReview); err != nil {
			return err
		}
		if _, err := n.Review(ctx, by, convIDs[k], action, reason); err != nil {
			return fmt.Errorf("review conversation %s of %s: %w", convIDs[k], p.key, err)
		}
	}
	// Ratings: the participant rates for themselves; a mentor's rating comes from their
	// monthly survey, entered by the program lead.
	for _, rt := range pl.ratings {
		c := pl.conns[rt.conn]
		if c.participant != i {
			continue
		}
		by, rater := r.lead.by, r.id(c.other)
		if rt.byParticipant {
			by, rater = self, r.id(p.key)
			if err := allowed(by, access.ConnectionRate); err != nil {
				return err
			}
		}
		if err := n.Rate(ctx, by, r.connIDs[rt.conn], network.NewRating{RaterID: rater, Month: rt.month, Score: rt.score}); err != nil {
			return fmt.Errorf("rate %s for %s: %w", r.connIDs[rt.conn], rt.month, err)
		}
	}
	return nil
}

// actorsOf returns participant i's coach, acting as themselves, and the check of the access
// policy that the API applies to a request about i's records.
func (r *demoRun) actorsOf(i int) (coach network.By, allowed func(network.By, access.Action) error) {
	p := r.pl.participants[i]
	res := access.Resource{Owner: r.id(p.key), OwnerRole: access.Participant, Coaches: []string{r.id(r.pl.coaches[p.coach].key)}}
	return r.as("coach", r.pl.coaches[p.coach].key), func(by network.By, action access.Action) error {
		return access.Authorize(by.Principal, action, res)
	}
}

// connect records a connection, by the participant's coach or by the program lead.
func (r *demoRun) connect(ctx context.Context, c demoConn, coach network.By, allowed func(network.By, access.Action) error) (string, error) {
	by := r.lead.by
	if c.byCoach {
		by = coach
	}
	if err := allowed(by, access.ConnectionCreate); err != nil {
		return "", err
	}
	conn, err := r.a.Network.Connect(ctx, by, network.NewConnection{ParticipantID: r.id(r.pl.participants[c.participant].key), OtherID: r.id(c.other),
		Role: c.role, Origin: c.origin, StartedOn: c.started.Format(time.DateOnly)})
	if err != nil {
		return "", fmt.Errorf("connect %s with %s: %w", r.pl.participants[c.participant].key, c.other, err)
	}
	return conn.ID, nil
}

// converse logs a conversation, as its reporter.
func (r *demoRun) converse(ctx context.Context, c demoConv, conn string, by network.By, allowed func(network.By, access.Action) error, key string) (network.Conversation, error) {
	if err := allowed(by, access.ConversationCreate); err != nil {
		return network.Conversation{}, err
	}
	if c.verified {
		if err := allowed(by, access.ConversationReview); err != nil {
			return network.Conversation{}, err
		}
	}
	cv, err := r.a.Network.LogConversation(ctx, by, network.NewConversation{ConnectionID: conn, OccurredAt: c.at, Channel: c.channel,
		Minutes: c.minutes, Resources: c.resources, Note: c.note, Verified: c.verified, IdempotencyKey: key})
	if err != nil {
		return cv, fmt.Errorf("conversation %s on %s: %w", key, conn, err)
	}
	r.mu.Lock()
	r.logged++
	r.mu.Unlock()
	return cv, nil
}

// careerFair records today's career fair: each of eight participants meets a professional,
// logged (verified) by their coach. The new high-band connection is the program's doing, so
// it raises their economic connectedness above the baseline they came with.
func (r *demoRun) careerFair(ctx context.Context) error {
	before, err := r.awardsByRule(ctx)
	if err != nil {
		return err
	}
	r.fairIDs = make([]string, len(r.pl.fairConns))
	var names []string
	for k, c := range r.pl.fairConns {
		coach, allowed := r.actorsOf(c.participant)
		id, err := r.connect(ctx, c, coach, allowed)
		if err != nil {
			return err
		}
		r.fairIDs[k] = id
		names = append(names, firstName(r.pl.participants[c.participant].name))
	}
	for k, c := range r.pl.fairConvs {
		coach, allowed := r.actorsOf(r.pl.fairConns[c.conn].participant)
		if _, err := r.converse(ctx, c, r.fairIDs[c.conn], coach, allowed, r.fairKey(k)); err != nil {
			return err
		}
	}
	if err := r.wait(ctx); err != nil {
		return err
	}
	after, err := r.awardsByRule(ctx)
	if err != nil {
		return err
	}
	diff := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			diff[k] = d
		}
	}
	r.say("today's %s: %s each met a professional → awards %s", demoFairLabel, joinNames(names), joinCounts(diff))
	return nil
}

// awardsByRule counts the program's posted awards by rule.
func (r *demoRun) awardsByRule(ctx context.Context) (map[string]int, error) {
	awards, err := r.a.Network.Awards(ctx, network.AwardFilter{Program: r.pid, Limit: 1000})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, a := range awards {
		out[a.RuleID]++
	}
	return out, nil
}

// sayAwards narrates the awards made so far.
func (r *demoRun) sayAwards(ctx context.Context, what string) error {
	awards, err := r.a.Network.Awards(ctx, network.AwardFilter{Program: r.pid, Limit: 1000})
	if err != nil {
		return err
	}
	byRule, total, people := map[string]int{}, decimal.Zero, map[string]bool{}
	for _, a := range awards {
		byRule[a.RuleID]++
		total = total.Add(a.Amount)
		people[a.ParticipantID] = true
	}
	ds, err := r.a.Payouts.List(ctx, payouts.Filter{Program: r.pid, Limit: 1000})
	if err != nil {
		return err
	}
	paid := 0
	for _, d := range ds {
		if d.Source == "award" && d.State == payouts.Paid {
			paid++
		}
	}
	r.say("%s: %d (%s USD) to %d participants — %s; %d paid out to their accounts by the sandbox", what, len(awards), money(total.String()),
		len(people), joinCounts(byRule), paid)
	return nil
}

// grants tells the payout stories: a grant above the dual-control threshold approved by two
// admins, one rejected, one waiting, a payout that fails and is paid after the person gives
// a new account, and one that fails and waits for a new destination.
func (r *demoRun) grants(ctx context.Context) error {
	pay := r.a.Payouts
	name := func(key string) string {
		for _, p := range []demoPerson{r.pl.lead, r.pl.ops, r.pl.finance} {
			if p.key == key {
				return firstName(p.name)
			}
		}
		return firstName(r.pl.participants[r.pl.participantIndex(key)].name)
	}
	grant := func(by *demoToken, key, amount, reason string) (payouts.Disbursement, error) {
		return pay.Create(ctx, by.by, payouts.NewDisbursement{Program: r.pid, Person: r.id(key), Amount: amount, Reason: reason,
			IdempotencyKey: r.grantKey(key)})
	}
	// Above the dual-control threshold: requested by one admin, approved by two others.
	rent, err := grant(r.ops, storyRent, "600.00", "emergency grant: rent gap after his mother's hours were cut")
	if err != nil {
		return err
	}
	if _, err := r.approveAll(ctx, rent, "lease and arrears letter seen", r.lead, r.finance); err != nil {
		return err
	}
	// Rejected, with the reason.
	laptop, err := grant(r.ops, storyLaptop, "250.00", "replacement laptop for online coursework")
	if err != nil {
		return err
	}
	if laptop, err = pay.Reject(ctx, r.lead.by, laptop.ID, "covered by the school district's device-loan programme: referred there"); err != nil {
		return err
	}
	// Waiting for an admin: the approvals queue.
	licence, err := grant(r.finance, storyLicence, "150.00", "driver's licence and road-test fees for the auto-tech apprenticeship")
	if err != nil {
		return err
	}
	// Payouts that fail: Priscila's credit union closed her account, Tyler's bank froze his.
	transit := r.pl.participants[r.pl.participantIndex(storyTransit)]
	if _, err := pay.SetDestination(ctx, r.as("participant", transit.key), r.id(transit.key), "fail:account-closed"); err != nil {
		return err
	}
	frozen := r.pl.participants[r.pl.participantIndex(storyFrozen)]
	if _, err := pay.SetDestination(ctx, r.as("participant", frozen.key), r.id(frozen.key), "fail:account-frozen"); err != nil {
		return err
	}
	bus, err := grant(r.lead, storyTransit, "45.00", "monthly bus pass for her clinical placement")
	if err != nil {
		return err
	}
	tools, err := grant(r.lead, storyFrozen, "60.00", "tools for the auto-tech course")
	if err != nil {
		return err
	}
	if err := r.wait(ctx); err != nil {
		return err
	}
	for _, x := range []*payouts.Disbursement{&rent, &bus, &tools} {
		if *x, err = pay.Get(ctx, x.ID); err != nil {
			return err
		}
	}
	var approvers []string
	for _, ap := range rent.Approvals {
		approvers = append(approvers, name(strings.TrimPrefix(ap.Approver, "person:"+r.prefix)))
	}
	r.say("grant: rent gap 600.00 to %s, requested by %s; from %s two other admins approve (%s) → %s",
		name(storyRent), firstName(r.pl.ops.name), money(demoDualControl), strings.Join(approvers, " and "), rent.State)
	r.say("grant: laptop 250.00 to %s → %s by %s (the money is back in the fund)", name(storyLaptop), laptop.State, firstName(r.pl.lead.name))
	r.say("grant: licence fees 150.00 to %s, requested by %s → %s (in the admins' approvals queue)", name(storyLicence),
		firstName(r.pl.finance.name), licence.State)
	r.say("payout: bus pass 45.00 to %s → %s (%s)", firstName(transit.name), bus.State, lastReason(bus))
	dest, err := pay.SetDestination(ctx, r.as("participant", transit.key), r.id(transit.key), transit.bank+"-new")
	if err != nil {
		return err
	}
	if err := r.wait(ctx); err != nil {
		return err
	}
	if bus, err = pay.Get(ctx, bus.ID); err != nil {
		return err
	}
	r.say("  %s gives her new account (%s): %d failed payout retried → %s on attempt %d", firstName(transit.name), dest.Account,
		len(dest.Retried), bus.State, len(bus.Attempts))
	r.say("payout: tools 60.00 to %s → %s (%s); it waits for him to give a new account", firstName(frozen.name), tools.State, lastReason(tools))
	return nil
}

// lastReason is what the last failed attempt said.
func lastReason(d payouts.Disbursement) string {
	for i := len(d.Attempts) - 1; i >= 0; i-- {
		if d.Attempts[i].Reason != "" {
			return d.Attempts[i].Reason
		}
	}
	return "no reason given"
}

// stipends sets the coaches' rate and pays the stipends of the months that ended: an admin
// other than the one who set the rate approves them, except the last month's, which waits.
func (r *demoRun) stipends(ctx context.Context) error {
	pay := r.a.Payouts
	if _, err := pay.SetStipendPolicy(ctx, r.lead.by, r.pid, demoStipendRate); err != nil {
		return err
	}
	last := time.Date(r.pl.now.Year(), r.pl.now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	paid, held, approved, waiting := 0, 0, 0, 0
	total := decimal.Zero
	for m := r.pl.start; !m.After(last); m = m.AddDate(0, 1, 0) {
		sts, err := pay.PayStipends(ctx, m)
		if err != nil {
			return err
		}
		for _, st := range sts {
			if st.Program != r.pid {
				continue
			}
			if st.Status != "paid" {
				held++
				continue
			}
			paid++
			total = total.Add(decimal.RequireFromString(st.Amount))
			if m.Equal(last) {
				waiting++
				continue
			}
			d, err := pay.Get(ctx, st.Disbursement)
			if err != nil {
				return err
			}
			ok, err := r.approveAll(ctx, d, "sessions checked against the coaching log", r.ops, r.finance)
			if err != nil {
				return err
			}
			if ok {
				approved++
			} else {
				waiting++
			}
		}
	}
	if err := r.wait(ctx); err != nil {
		return err
	}
	r.say("coach stipends at %s a verified session, %s to %s: %d computed (%s USD), %d approved by %s, %d waiting for approval; %d held (%s has no W-9 on file)",
		money(demoStipendRate), r.pl.start.Format("Jan"), last.Format("Jan"), paid, money(total.String()), approved, firstName(r.pl.ops.name), waiting, held,
		r.pl.coaches[slices.IndexFunc(r.pl.coaches, func(c demoPerson) bool { return !c.w9 })].name)
	return nil
}

// approveAll approves a disbursement awaiting approval by as many of admins as it needs,
// each checked by the access policy as the API checks them (four eyes); false when it still
// waits (a cap with no room).
func (r *demoRun) approveAll(ctx context.Context, d payouts.Disbursement, reason string, admins ...*demoToken) (bool, error) {
	for _, t := range admins {
		if err := access.Authorize(t.by.Principal, access.DisbursementApprove, access.Resource{RequestedBy: d.RequestedBy}); err != nil {
			return false, err
		}
		// The demo's admins approve where the person would be paid now, as shown to them.
		dest, err := r.a.Payouts.ApprovalDestination(ctx, d.PersonID)
		if err != nil {
			return false, err
		}
		after, err := r.a.Payouts.Approve(ctx, t.by, d.ID, reason, dest)
		if errors.Is(err, payouts.ErrCapExceeded) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if after.State != payouts.AwaitingApproval {
			return true, nil
		}
	}
	return false, nil
}

// finish reconciles with the provider and reads the figures back from the system.
func (r *demoRun) finish(ctx context.Context) error {
	n, pay, l := r.a.Network, r.a.Payouts, r.a.Ledger
	rec, err := pay.Reconcile(ctx, r.pl.now.AddDate(0, 0, -7))
	if err != nil {
		return err
	}
	if err := r.wait(ctx); err != nil {
		return err
	}
	r.say("reconciliation with the sandbox: %d transfers, %d payout attempts in the ledger, %d differences", rec.ProviderRecords, rec.LedgerRecords, len(rec.Differences))
	m, err := n.ProgramMetrics(ctx, r.pid)
	if err != nil {
		return err
	}
	prev, err := n.ProgramMetrics(ctx, r.earlier)
	if err != nil {
		return err
	}
	ds, err := pay.List(ctx, payouts.Filter{Program: r.pid, Limit: 1000})
	if err != nil {
		return err
	}
	states, paid := map[string]int{}, decimal.Zero
	for _, d := range ds {
		states[d.State]++
		if d.State == payouts.Paid {
			paid = paid.Add(d.Amount)
		}
	}
	var retried int
	if err := r.a.Pool.QueryRow(ctx, `SELECT count(DISTINCT d.id) FROM payouts_disbursements d
		JOIN payouts_transitions t ON t.disbursement_id = d.id AND t.to_state = 'failed'
		WHERE d.program_id = $1 AND d.state = 'paid'`, r.pid).Scan(&retried); err != nil {
		return err
	}
	cash, err := l.Balance(ctx, network.CashAccount("USD"), ledger.AsOf{})
	if err != nil {
		return err
	}
	tb, err := l.TrialBalance(ctx)
	if err != nil {
		return err
	}
	conversations, verified := 0, 0
	for _, mc := range m.ConversationsByMonth {
		conversations += mc.Conversations
		verified += mc.Verified
	}
	r.beginSummary()
	r.say("%s (%s), read back from Tandem:", "Riverside near-peer mentoring", r.pid)
	tw := tabwriter.NewWriter(r.out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  participants\t%d, coached by %d alumni of %s (near-peer conversion there: %s)\n", m.Participants, prev.BecameCoaches, r.earlier, decOrDash(prev.NearPeerConversion))
	fmt.Fprintf(tw, "  connections\t%s; cross-class share %s, economic connectedness %s\n", joinCounts(m.ConnectionsByRole), decOrDash(m.CrossClassShare), decOrDash(m.EconomicConnectedness))
	fmt.Fprintf(tw, "  conversations\t%d (%d verified) over %s\n", conversations, verified, r.monthSpan())
	fmt.Fprintf(tw, "  awards\t%d, %s USD, %d participants with a milestone\n", m.AwardsPosted, money(m.AmountAwarded), m.ParticipantsWithMilestone)
	fmt.Fprintf(tw, "  payouts\t%d paid (%s USD); %d failed then paid; %s\n", states[payouts.Paid], money(paid.String()), retried,
		joinCounts(map[string]int{"failed": states[payouts.Failed], "forfeited": states[payouts.Forfeited], "awaiting approval": states[payouts.AwaitingApproval], "rejected": states[payouts.Rejected]}))
	fmt.Fprintf(tw, "  fund\t%s USD left of %s (program/%s/fund)\n", money(m.Fund.Posted.String()), money(demoFunding), r.pid)
	fmt.Fprintf(tw, "  cash at the provider\t%s USD (%s)\n", money(cash.Posted.String()), network.CashAccount("USD"))
	for _, t := range tb.Totals {
		verdict := "balanced"
		if !t.Balanced {
			verdict = "NOT BALANCED"
		}
		fmt.Fprintf(tw, "  trial balance\tdebits %s = credits %s %s: %s\n", money(t.Debits.String()), money(t.Credits.String()), t.Currency, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	prog, err := n.Progress(ctx, r.id(storyMaya))
	if err != nil {
		return err
	}
	return r.sayProgress(prog)
}

// sayProgress shows where Maya stands, rule by rule.
func (r *demoRun) sayProgress(prog network.ParticipantProgress) error {
	for _, pp := range prog.Programs {
		total := decimal.Zero
		for _, a := range pp.Awards {
			total = total.Add(a.Amount)
		}
		r.say("\nMaya's progress (she signs in below): %d awards, %s USD, paid out to her account; %s USD in her wallet",
			len(pp.Awards), money(total.String()), money(pp.Wallet.Posted.String()))
		tw := tabwriter.NewWriter(r.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  rule\tmet\tcount\tmissing")
		for _, p := range pp.Rules {
			met := "no"
			if p.Met {
				met = "yes"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s of %s\t%s\n", p.RuleID, met, p.Count, p.Target, p.Missing)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// printTokens prints the sign-in block.
func (r *demoRun) printTokens(signIn string) {
	r.say("\nSign in at %s with one of these demo tokens (valid %d days):", signIn, int(demoTokenTTL.Hours()/24))
	tw := tabwriter.NewWriter(r.out, 2, 4, 2, ' ', 0)
	for _, t := range r.tokens {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", t.role, t.label, t.secret)
	}
	_ = tw.Flush()
	r.say(`
Things to try: as Lee, verify Maya's latest mentor talk (her 4th): as Maya, a 50.00 USD
award for mentor-4 then appears on her page and is paid to her account; as Eli, approve last
month's coach stipends (Dana set the rate, so she may not); as Dana, approve Carlos's licence
fees; as the auditor, export the ledger.
These are demo tokens: anyone who can read this output can use them. Revoke them
(tandem token list, tandem token revoke ID) before this database holds real data.`)
}

// wait starts the workers if they are not running yet, and waits for them (waitForJobs).
func (r *demoRun) wait(ctx context.Context) error {
	if r.startWorkers != nil {
		if err := r.startWorkers(ctx); err != nil {
			return err
		}
		r.startWorkers = nil
	}
	return waitForJobs(ctx, r.a)
}

// waitForJobs waits until River has run the milestone and payout work asked for so far
// (retries scheduled for later excepted).
func waitForJobs(ctx context.Context, a *app.App) error {
	kinds := []string{"evaluate_milestones", "release_awards", "submit_payout", "settle_payout", "retry_payout", "process_payout_event"}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var busy int
		var kind string
		err := a.Pool.QueryRow(ctx, `SELECT count(*), coalesce(min(kind), '') FROM river_job WHERE kind = ANY($1)
			AND (state IN ('available', 'running', 'retryable', 'pending')
			     OR (state = 'scheduled' AND scheduled_at < now() + interval '5 seconds'))`, kinds).Scan(&busy, &kind)
		if err != nil {
			return fmt.Errorf("wait for the workers: %w", err)
		}
		if busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d jobs (%s…) did not finish within 2 minutes: are the River workers running?", busy, kind)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// parallel runs fn for 0 … n-1, at most limit at once, and returns the first error (the
// others then see ctx cancelled).
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// joinCounts is "a ×3, b ×1" in key order, leaving out zeros.
func joinCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// joinNames is "a, b and c".
func joinNames(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// money writes a decimal amount with thousands separators and two places: 20,000.00.
func money(s string) string {
	d, err := decimal.NewFromString(strings.ReplaceAll(s, ",", ""))
	if err != nil {
		return s
	}
	return textfmt.GroupDigits(d.StringFixed(2))
}

func decOrDash(d *decimal.Decimal) string {
	if d == nil {
		return "-"
	}
	return d.String()
}
