package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// TestDemoLoadsALivingProgram interrupts a first load part-way (Ctrl-C), as a newcomer
// might, checks that the newcomer is told what was written and how to recover, recovers as
// told (tandem demo --program <the id it gives>), and reads back, through the stores, what
// the newcomer is promised: 40 participants, coaches who were participants of the earlier
// cohort, awards released and paid, a payout that failed and was paid after a new
// destination, one failed, one awaiting approval, one rejected, a held stipend, a balanced
// ledger, and tokens that sign in.
func TestDemoLoadsALivingProgram(t *testing.T) {
	pool, url := dbtest.NewWithURL(t, dbtest.Options{MaxConns: 4})
	t.Setenv("DATABASE_URL", url)
	ctx := context.Background()
	a, err := app.New(pool, app.Config{}) // not started: reads only
	require.NoError(t, err)
	t.Cleanup(a.Ledger.Close)
	n, pay := a.Network, a.Payouts

	// Ctrl-C once the program is funded: both programs and the funding are written.
	ictx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	var errOut bytes.Buffer
	stopped := &cancelOn{text: "funded with", cancel: interrupt}
	err = run(ictx, []string{"demo"}, strings.NewReader(""), stopped, &errOut)
	require.ErrorIs(t, err, context.Canceled)
	require.Contains(t, err.Error(), "failed while creating the program")
	said := stopped.String()
	for _, want := range []string{"The demo stopped while creating the program", "What it wrote stays", "program riverside-2025 with its 12 participants",
		"part of: program riverside, its 20,000.00 USD funding",
		"It made no token", "tandem demo --program riverside-2", "fresh database"} {
		require.Contains(t, said, want)
	}
	require.NotContains(t, said, "tdm_")
	tokens, err := a.Access.Tokens(ctx)
	require.NoError(t, err)
	require.Empty(t, tokens, "tokens come last: an interrupted demo made none")
	st, how, err := demoState(ctx, a, defaultDemoProgram)
	require.NoError(t, err)
	require.Equal(t, demoPartial, st)
	require.Equal(t, "failed while creating the program: interrupted: context canceled", how)

	// A rerun says the demo is partially loaded, where it failed, and which id to use.
	var out bytes.Buffer
	err = run(ctx, []string{"demo"}, strings.NewReader(""), &out, &errOut)
	require.ErrorIs(t, err, errUsage)
	require.Contains(t, err.Error(), "partially loaded (failed while creating the program: ")
	require.NotContains(t, err.Error(), "the demo is loaded")
	again := regexp.MustCompile(`--program ([a-z0-9-]+)`).FindStringSubmatch(err.Error())
	require.NotNil(t, again, err.Error())
	pid := again[1]
	require.Equal(t, "riverside-2", pid)

	// serve --offer-demo offers it again, into that id.
	var offered bytes.Buffer
	require.NoError(t, offerDemo(ctx, a, demoOffer{In: strings.NewReader("n\n"), Terminal: true, Out: &offered}))
	require.Contains(t, offered.String(), "did not finish loading (program riverside: failed while creating the program")
	require.Contains(t, offered.String(), "Load it as program riverside-2")
	require.Contains(t, offered.String(), "bin/tandem demo --program riverside-2")

	// The newcomer recovers as told, with a server on another port, keeping the tokens.
	out.Reset()
	tokensFile := filepath.Join(t.TempDir(), "demo-tokens.txt")
	require.NoError(t, run(ctx, []string{"demo", "--program", pid, "--addr", "127.0.0.1:9090", "--tokens-file", tokensFile},
		strings.NewReader(""), &out, &errOut), errOut.String())
	text := out.String()
	t.Log(text)
	for _, want := range []string{"40 participants enrolled", "conversations logged over", "awards released:",
		"Sign in at http://127.0.0.1:9090/sign-in with one of these demo tokens", "These are demo tokens", ": balanced",
		"\n" + strings.Repeat("=", 78) + "\nRiverside near-peer mentoring (" + pid + "), read back from Tandem:",
		"This summary and the tokens are also in " + tokensFile} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, text, "8080")
	saved, err := os.ReadFile(tokensFile)
	require.NoError(t, err)
	fi, err := os.Stat(tokensFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the tokens are the operator's alone")
	require.True(t, strings.HasPrefix(string(saved), "Riverside near-peer mentoring ("+pid+")"), string(saved))
	require.Contains(t, string(saved), "Sign in at http://127.0.0.1:9090/sign-in")
	require.Contains(t, string(saved), "mentor-4")
	require.NotContains(t, string(saved), "conversations logged over", "the summary, not the narration")
	id := func(key string) string { return pid + "-" + key }
	pl := planDemo(time.Now())
	earlier := fmt.Sprintf("%s-%d", pid, pl.start.Year()-1)

	participants, err := n.People(ctx, network.PeopleFilter{Program: pid, Role: "participant", Limit: 1000})
	require.NoError(t, err)
	require.Len(t, participants, 40)
	minors := 0
	for _, p := range participants {
		require.NotNil(t, p.Consent, p.ID)
		require.True(t, p.Consent.Given, p.ID)
		if p.BirthDate != nil && p.BirthDate.AddDate(18, 0, 0).After(p.Consent.SignedOn.Time) {
			require.True(t, p.Consent.Guardian, "%s is a minor: a guardian signs", p.ID)
			minors++
		}
	}
	require.Positive(t, minors, "some participants are minors, with a guardian's consent")

	// The coaches were participants of the earlier cohort, which has ended.
	prev, err := n.Program(ctx, earlier)
	require.NoError(t, err)
	require.True(t, prev.EndsOn.Before(time.Now()))
	for _, c := range demoCoaches {
		enrolments, err := n.Enrolments(ctx, id(c.key))
		require.NoError(t, err)
		require.True(t, slices.ContainsFunc(enrolments, func(e network.Enrolment) bool { return e.ProgramID == earlier }), c.key)
		coached, err := n.People(ctx, network.PeopleFilter{Program: pid, Coach: id(c.key)})
		require.NoError(t, err)
		require.Len(t, coached, 10, c.key)
	}
	pm, err := n.ProgramMetrics(ctx, earlier)
	require.NoError(t, err)
	require.Equal(t, len(demoCoaches), pm.BecameCoaches)
	require.True(t, pm.NearPeerConversion != nil && pm.NearPeerConversion.IsPositive())

	// Awards released and paid; Maya is one talk short of her mentor award.
	m, err := n.ProgramMetrics(ctx, pid)
	require.NoError(t, err)
	require.Greater(t, m.AwardsPosted, 100)
	require.Zero(t, m.AwardsWaiting)
	require.Greater(t, m.ConnectionsByRole["mentor"], 0)
	require.Greater(t, m.ConnectionsByRole["professional"], 0)
	require.GreaterOrEqual(t, len(m.ConversationsByMonth), 3, "conversations over several months")
	prog, err := n.Progress(ctx, id(storyMaya))
	require.NoError(t, err)
	require.Len(t, prog.Programs, 1)
	i := slices.IndexFunc(prog.Programs[0].Rules, func(p network.Progress) bool { return p.RuleID == "mentor-4" })
	require.False(t, prog.Programs[0].Rules[i].Met)
	require.Equal(t, "3", prog.Programs[0].Rules[i].Count.String())
	unverified, err := n.Conversations(ctx, network.ConversationFilter{Participant: id(storyMaya), Status: "unverified"})
	require.NoError(t, err)
	require.NotEmpty(t, unverified, "her fourth talk waits for her coach")

	// Payouts: every award paid; the stories of the grants.
	byState := map[string][]payouts.Disbursement{}
	ds, err := pay.List(ctx, payouts.Filter{Program: pid, Limit: 1000})
	require.NoError(t, err)
	for _, d := range ds {
		byState[d.State] = append(byState[d.State], d)
	}
	require.Greater(t, len(byState[payouts.Paid]), 100)
	require.Empty(t, byState[payouts.Submitted], "nothing left in flight")
	require.Empty(t, byState[payouts.Approved], "nothing left unsent")
	require.Empty(t, byState[payouts.Failed], "the payout left failed is forfeited on the test clock")
	require.Len(t, byState[payouts.Forfeited], 1)
	require.Equal(t, id(storyFrozen), byState[payouts.Forfeited][0].PersonID)
	forfeited, err := pay.Get(ctx, byState[payouts.Forfeited][0].ID)
	require.NoError(t, err)
	require.Equal(t, "not fixed within the remediation window of 7 days", forfeited.Transitions[len(forfeited.Transitions)-1].Reason)
	require.NotEmpty(t, forfeited.FundReturnEntryID)
	clk, err := pay.Clock(ctx, pid)
	require.NoError(t, err)
	require.Equal(t, 8*24*time.Hour, clk.Offset.Duration, "the demo program's clock is 8 days ahead")
	require.Contains(t, text, "test clock: ")
	require.Contains(t, text, "the sweep forfeits 1 payout: tools 60.00 to Tyler → forfeited (back in the fund)")
	require.Contains(t, text, "forfeited ×1")
	trail, err := a.Access.Audit(ctx, access.AuditFilter{Record: "program:" + pid})
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(trail, func(l access.AuditLine) bool { return l.Action == "payouts.clock.advance" }),
		"the advance is in the trail")
	require.Len(t, byState[payouts.Rejected], 1)
	require.NotEmpty(t, byState[payouts.AwaitingApproval])
	require.True(t, slices.ContainsFunc(byState[payouts.AwaitingApproval], func(d payouts.Disbursement) bool { return d.PersonID == id(storyLicence) }))
	for _, d := range byState[payouts.Paid] {
		if d.PersonID == id(storyRent) && d.Source == "manual" {
			full, err := pay.Get(ctx, d.ID)
			require.NoError(t, err)
			require.Len(t, full.Approvals, 2, "dual control")
			require.Equal(t, "person:"+id(demoOps.key), full.RequestedBy)
		}
	}
	retried := 0
	for _, d := range byState[payouts.Paid] {
		if d.PersonID != id(storyTransit) || d.Source != "manual" {
			continue
		}
		full, err := pay.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Len(t, full.Attempts, 2)
		require.Equal(t, "failed", full.Attempts[0].Outcome)
		require.Equal(t, "account-closed", full.Attempts[0].Reason)
		require.Equal(t, "paid", full.Attempts[1].Outcome)
		retried++
	}
	require.Equal(t, 1, retried, "a payout failed, then was paid")
	stipends, err := pay.Stipends(ctx, pid, id(storyNoW9))
	require.NoError(t, err)
	require.NotEmpty(t, stipends)
	for _, st := range stipends {
		require.Equal(t, "held", st.Status, "no W-9 on file")
	}
	recs, err := pay.Reconciliations(ctx, 1)
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Empty(t, recs[0].Differences)

	// The ledger balances and is sound.
	tb, err := a.Ledger.TrialBalance(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, tb.Totals)
	for _, total := range tb.Totals {
		require.True(t, total.Balanced, total.Currency)
	}
	problems, err := a.Ledger.Check(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)

	// The printed tokens sign in, with the roles they were printed with.
	secrets := regexp.MustCompile(`(?m)^\s+(admin|auditor|coach|participant)\s.*\s(tdm_[A-Za-z0-9_-]+)$`).FindAllStringSubmatch(text, -1)
	require.Len(t, secrets, 6, text)
	roles := map[access.Role]int{}
	for _, s := range secrets {
		p, err := a.Access.Authenticate(ctx, s[2])
		require.NoError(t, err)
		require.Equal(t, access.Role(s[1]), p.Role)
		roles[p.Role]++
		if p.Role != access.Auditor {
			require.NotEmpty(t, p.PersonID, "admins, coaches and participants act as people")
		}
	}
	require.Equal(t, map[access.Role]int{access.Admin: 3, access.Auditor: 1, access.Coach: 1, access.Participant: 1}, roles)

	// Loading it again is refused, with the way to load a second copy; serve --offer-demo
	// leaves a database with a loaded demo alone.
	err = run(ctx, []string{"demo", "--program", pid}, strings.NewReader(""), &out, &errOut)
	require.ErrorIs(t, err, errUsage)
	require.Contains(t, err.Error(), "the demo is loaded")
	require.Contains(t, err.Error(), "--program riverside-3")
	offered.Reset()
	require.NoError(t, offerDemo(ctx, a, demoOffer{In: strings.NewReader("y\n"), Terminal: true, Out: &offered}))
	require.Empty(t, offered.String())
}

// cancelOn is the narration's writer that cancels (Ctrl-C) once it is told text.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	text   string
	cancel func()
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.Contains(string(p), w.text) {
		w.cancel()
	}
	return w.buf.Write(p)
}

func (w *cancelOn) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestDemoRefusesTakenIDsBeforeWriting: when an id the demo would write is taken (here a
// mentor it records late), the demo refuses before it writes anything — no program, no
// funding, no token — and says which id to load it into instead.
func TestDemoRefusesTakenIDsBeforeWriting(t *testing.T) {
	pool, url := dbtest.NewWithURL(t, dbtest.Options{MaxConns: 4})
	t.Setenv("DATABASE_URL", url)
	ctx := context.Background()
	a, err := app.New(pool, app.Config{})
	require.NoError(t, err)
	t.Cleanup(a.Ledger.Close)
	_, err = a.Network.AddPerson(ctx, network.By{Principal: cliActor()}, network.NewPerson{ID: "ruth-feld", Name: "Ruth Feld", Roles: []string{"mentor"}})
	require.NoError(t, err)

	var out, errOut bytes.Buffer
	err = run(ctx, []string{"demo"}, strings.NewReader(""), &out, &errOut)
	require.ErrorIs(t, err, errUsage)
	require.Contains(t, err.Error(), "person ruth-feld")
	require.Contains(t, err.Error(), "--program riverside-2")
	require.NotContains(t, out.String(), "tdm_")
	programs, err := a.Network.Programs(ctx)
	require.NoError(t, err)
	require.Empty(t, programs, "nothing was written")
	tokens, err := a.Access.Tokens(ctx)
	require.NoError(t, err)
	require.Empty(t, tokens)
	st, _, err := demoState(ctx, a, defaultDemoProgram)
	require.NoError(t, err)
	require.Equal(t, demoAbsent, st, "the demo did not start")

	// serve --offer-demo offers it into the free id.
	out.Reset()
	require.NoError(t, offerDemo(ctx, a, demoOffer{In: strings.NewReader(""), Terminal: false, Out: &out}))
	require.Contains(t, out.String(), "The database is empty")
	require.Contains(t, out.String(), "bin/tandem demo --program riverside-2")
}

// TestDemoPlanSameDaySameStory: a morning and an evening run of the same day plan the same
// participants, connections and career fair (the draws do not depend on the hour).
func TestDemoPlanSameDaySameStory(t *testing.T) {
	t.Parallel()
	morning := planDemo(time.Date(2026, 11, 27, 4, 30, 0, 0, time.UTC))
	evening := planDemo(time.Date(2026, 11, 27, 21, 0, 0, 0, time.UTC))
	require.Equal(t, morning.participants, evening.participants)
	require.Equal(t, morning.conns, evening.conns, "the same connections on the same day")
	require.Equal(t, morning.convs, evening.convs, "the same conversations on the same day")
	require.Equal(t, morning.ratings, evening.ratings)
	require.Equal(t, morning.fairConns, evening.fairConns, "the same career fair on the same day")
}

// TestDemoPlanIsDeterministic: the same day gives the same story, and the story keeps the
// promises the narration makes.
func TestDemoPlanIsDeterministic(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 4, 30, 0, 0, time.UTC)
	a, b := planDemo(now), planDemo(now)
	require.Equal(t, len(a.convs), len(b.convs))
	for i := range a.convs {
		require.Equal(t, a.convs[i], b.convs[i])
	}
	require.Equal(t, a.participants, b.participants)
	require.Len(t, a.participants, 40)
	require.Equal(t, time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC), a.start)
	for _, c := range a.convs {
		conn := a.conns[c.conn]
		require.False(t, c.at.After(now), "no conversation in the future")
		require.False(t, c.at.Before(conn.started), "no conversation before its connection")
		require.False(t, c.at.Before(a.start), "within the program's term")
	}
	require.Len(t, a.fairConns, 8)
	keys := map[string]bool{}
	for _, p := range a.participants {
		require.False(t, keys[p.key], "ids are unique: %s", p.key)
		keys[p.key] = true
	}
	for _, k := range []string{storyMaya, storyRent, storyLaptop, storyLicence, storyTransit, storyFrozen, storyDupe} {
		require.True(t, keys[k], k)
	}
}

// TestOfferDemo: serve --offer-demo offers the demo only on an empty database; without a
// terminal it prints how to load it, and a "no" loads nothing.
func TestOfferDemo(t *testing.T) {
	pool := dbtest.New(t)
	a, err := app.New(pool, app.Config{})
	require.NoError(t, err)
	t.Cleanup(a.Ledger.Close)
	ctx := context.Background()

	var out bytes.Buffer
	require.NoError(t, offerDemo(ctx, a, demoOffer{In: strings.NewReader("y\n"), Terminal: false, Out: &out}))
	require.Contains(t, out.String(), "The database is empty")
	require.Contains(t, out.String(), "bin/tandem demo")
	require.NotContains(t, out.String(), "[Y/n]", "no question without a terminal")

	out.Reset()
	require.NoError(t, offerDemo(ctx, a, demoOffer{In: strings.NewReader(""), Terminal: false, Out: &out, Addr: "127.0.0.1:9090"}))
	require.Contains(t, out.String(), "bin/tandem demo --addr 127.0.0.1:9090`", "the hint names the server's address")

	for _, answer := range []string{"n\n", "no\n", ""} {
		out.Reset()
		require.NoError(t, offerDemo(ctx, a, demoOffer{In: strings.NewReader(answer), Terminal: true, Out: &out}))
		require.Contains(t, out.String(), "[Y/n]")
		require.Contains(t, out.String(), "bin/tandem demo", "answer %q", answer)
	}
	programs, err := a.Network.Programs(ctx)
	require.NoError(t, err)
	require.Empty(t, programs, "nothing was loaded")

	_, err = a.Network.CreateProgram(ctx, network.By{Principal: cliActor()}, network.NewProgram{ID: "p1", Name: "Pilot", Currency: "USD",
		StartsOn: "2026-01-01", EndsOn: "2026-12-31"})
	require.NoError(t, err)
	for _, terminal := range []bool{false, true} {
		for _, mode := range []demoMode{demoAsk, demoYes} {
			out.Reset()
			require.NoError(t, offerDemo(ctx, a, demoOffer{In: strings.NewReader("y\n"), Terminal: terminal, Mode: mode, Out: &out,
				Loading: func() func() { t.Error("loading"); return func() {} }}))
			require.Empty(t, out.String(), "a database with a program is left alone")
		}
	}
}

// TestOfferDemoYes: serve --offer-demo=yes (make run DEMO=1) loads the demo without asking,
// at a terminal or not, with the server's log turned aside (Loading) while it loads. The load
// is stopped as it begins: the full load is TestDemoLoadsALivingProgram's.
func TestOfferDemoYes(t *testing.T) {
	t.Parallel()
	pool := dbtest.New(t)
	a, err := app.New(pool, app.Config{})
	require.NoError(t, err)
	t.Cleanup(a.Ledger.Close)
	for _, terminal := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		var out bytes.Buffer
		began, ended := 0, 0
		err := offerDemo(ctx, a, demoOffer{In: strings.NewReader("n\n"), Terminal: terminal, Mode: demoYes, Out: &out,
			Loading: func() func() {
				began++
				cancel() // stop the load as it begins
				return func() { ended++ }
			}})
		cancel()
		require.ErrorIs(t, err, context.Canceled)
		require.Contains(t, out.String(), "The database is empty. Loading the demo program as riverside (--offer-demo=yes).")
		require.NotContains(t, out.String(), "[Y/n]", "no question")
		require.Equal(t, 1, began)
		require.Equal(t, 1, ended, "the log comes back when the load is over")
	}
}

func TestDemoModeFlag(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]demoMode{"": demoNever, "--offer-demo": demoAsk, "--offer-demo=ask": demoAsk,
		"--offer-demo=yes": demoYes, "--offer-demo=no": demoNever, "--offer-demo=true": demoAsk, "--offer-demo=false": demoNever} {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		m := demoNever
		fs.Var(&m, "offer-demo", "")
		require.NoError(t, fs.Parse(strings.Fields(args)), args)
		require.Equal(t, want, m, args)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	m := demoNever
	fs.Var(&m, "offer-demo", "")
	require.Error(t, fs.Parse([]string{"--offer-demo=maybe"}))
}

func TestDemoSignInURL(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "TANDEM_ADDR" {
				return v
			}
			return ""
		}
	}
	require.Equal(t, "http://127.0.0.1:8080/sign-in", demoSignInURL("", "", env("")), "make run's address")
	require.Equal(t, "http://127.0.0.1:9000/sign-in", demoSignInURL("", "", env("127.0.0.1:9000")), "TANDEM_ADDR")
	require.Equal(t, "http://localhost:7000/sign-in", demoSignInURL("", "localhost:7000", env("127.0.0.1:9000")), "--addr first")
	require.Equal(t, "https://tandem.example.org/sign-in", demoSignInURL("https://tandem.example.org/sign-in", "localhost:7000", env("x")), "--sign-in in full")
}

func TestReachable(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"127.0.0.1:8080": "127.0.0.1:8080", "0.0.0.0:443": "localhost:443",
		"[::]:8443": "localhost:8443", "[::1]:9000": "[::1]:9000"} {
		addr, err := net.ResolveTCPAddr("tcp", in)
		require.NoError(t, err)
		require.Equal(t, want, reachable(addr), in)
	}
}

// TestLogAside: while the demo loads, the server's log goes to the file; then back.
func TestLogAside(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	out := &switchWriter{w: &stderr}
	logger := slog.New(slog.NewTextHandler(out, nil))
	path := filepath.Join(t.TempDir(), "server.log")
	done := logAside(out, path, logger)()
	logger.Info("a job ran")
	done()
	logger.Info("after")
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(file), "a job ran")
	require.NotContains(t, string(file), "after")
	require.NotContains(t, stderr.String(), "a job ran")
	require.Contains(t, stderr.String(), "until it is loaded, the server's log goes to "+path)
	require.Contains(t, stderr.String(), "after")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	stderr.Reset()
	logAside(out, "", logger)()()
	logger.Info("no file")
	require.Contains(t, stderr.String(), "no file")
}

// TestWhileServingStopsTheOfferWhenServeFails: an early Serve failure is noticed while the
// demo's question waits for an answer (the offer is cancelled and waited for), and an offer
// that ends first leaves the server serving.
func TestWhileServingStopsTheOfferWhenServeFails(t *testing.T) {
	t.Parallel()
	served := make(chan error, 1)
	broken := errors.New("accept: too many open files")
	var offerErr error
	go func() { served <- broken }()
	fnErr, serveErr, stopped := whileServing(context.Background(), served, func(ctx context.Context) error {
		_, err := readLine(ctx, blockingReader{}) // the question waits for an answer that never comes
		offerErr = context.Cause(ctx)
		return err
	})
	require.True(t, stopped)
	require.ErrorIs(t, serveErr, broken)
	require.ErrorIs(t, fnErr, context.Canceled)
	require.ErrorIs(t, offerErr, broken, "the offer learns why it was cancelled")

	served = make(chan error, 1)
	fnErr, serveErr, stopped = whileServing(context.Background(), served, func(context.Context) error { return nil })
	require.False(t, stopped)
	require.NoError(t, fnErr)
	require.NoError(t, serveErr)
}

// blockingReader is a terminal nobody types at.
type blockingReader struct{}

func (blockingReader) Read([]byte) (int, error) { select {} }

func TestMoney(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"0": "0.00", "5": "5.00", "999.5": "999.50", "1000": "1,000.00",
		"20000.00": "20,000.00", "1234567.891": "1,234,567.89", "-4000": "-4,000.00"} {
		require.Equal(t, want, money(in), in)
	}
}
