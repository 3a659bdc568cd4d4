package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/migrations"
	"github.com/tandemledger/tandem/network"
)

// demoRules are DOMAIN.md's example rules in Tandem's rule language.
var demoRules = []string{
	`{"id": "mentor-4", "title": "Met your mentor 4 times within 60 days", "count": "conversations",
	  "where": {"role": "mentor"}, "at_least": 4, "within_days": 60,
	  "award": {"amount": "50.00", "kind": "microgrant"}, "repeat": "once"}`,
	`{"id": "well-resourced", "title": "A conversation that carried a resource", "count": "well_resourced_conversations",
	  "at_least": 1, "award": {"amount": "30.00", "kind": "microgrant"}, "repeat": "each", "cap": {"awards": 3, "per": "month"}}`,
	`{"id": "bridge", "title": "A new high-band connection and a conversation with them", "count": "connections",
	  "where": {"other_band": "high", "with_conversation": true}, "at_least": 1,
	  "award": {"amount": "40.00", "kind": "microgrant"}, "repeat": "each", "cap": {"awards": 3, "per": "term"}}`,
	`{"id": "ec-up", "title": "Economic connectedness up 0.2 from your baseline", "count": "economic_connectedness",
	  "up_by": "0.2", "award": {"amount": "75.00", "kind": "microgrant"}, "repeat": "once"}`,
}

// demo loads a small program through the same code paths as real use and runs the River
// workers in process, so the awards arrive while it narrates.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	programID := fs.String("program", "demo", "id of the demo program to create")
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
	a, err := app.New(pool, app.Config{})
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Stop(sctx)
	}()
	n := a.Network
	admin := network.By{Principal: cliActor()}
	say := func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }
	now := time.Now().UTC()
	pid := *programID
	p := func(s string) string { return pid + "-" + s } // people ids unique per demo program

	if _, err := n.Program(ctx, pid); err == nil {
		return fmt.Errorf("%w: program %q exists already: run tandem demo --program <another id>", errUsage, pid)
	}
	_, err = n.CreateProgram(ctx, admin, network.NewProgram{ID: pid, Name: "Riverside near-peer mentoring (demo)", Currency: "USD",
		StartsOn: now.AddDate(0, -3, 0).Format(time.DateOnly), EndsOn: now.AddDate(0, 9, 0).Format(time.DateOnly), AutoApproveLimit: "100.00"})
	if err != nil {
		return err
	}
	if _, err := n.Fund(ctx, admin, pid, "2000.00", "demo-fund:"+pid); err != nil {
		return err
	}
	say("program %s created and funded with 2,000.00 USD (program/%s/fund)", pid, pid)
	for _, r := range demoRules {
		rv, _, err := n.SaveRule(ctx, admin, pid, []byte(r))
		if err != nil {
			return err
		}
		say("  rule %-15s %s → %s", rv.Rule.ID, rv.Rule.Title, ledger.FormatAmount(rv.Rule.Award.Amount, "USD"))
	}
	people := []struct {
		id, name, band string
		roles          []string
	}{
		{"maya", "Maya Torres", "low", []string{"participant"}},
		{"jon", "Jon Reyes", "low", []string{"participant"}},
		{"lee", "Lee Okafor", "low", []string{"participant"}}, // a former participant: becomes a coach below
		{"ruth", "Ruth Feld", "high", []string{"mentor"}},
		{"omar", "Omar Haddad", "high", []string{"professional"}},
		{"tia", "Tia Brooks", "low", []string{"peer"}},
	}
	for _, x := range people {
		if _, err := n.AddPerson(ctx, admin, network.NewPerson{ID: p(x.id), Name: x.name, Roles: x.roles}); err != nil {
			return err
		}
		if _, err := n.RecordConsent(ctx, admin, p(x.id), network.NewConsent{Given: true, SignedBy: x.name,
			SignedOn: now.AddDate(0, -1, 0).Format(time.DateOnly), Scope: "network facts and payments for the demo program"}); err != nil {
			return err
		}
		if _, err := n.SetBand(ctx, admin, p(x.id), x.band, "intake form"); err != nil {
			return err
		}
	}
	if _, err := n.AddRole(ctx, admin, p("lee"), "coach"); err != nil { // near-peer conversion
		return err
	}
	for _, x := range []string{"maya", "jon", "lee"} {
		coach := p("lee")
		if x == "lee" {
			coach = ""
		}
		if _, err := n.Enrol(ctx, admin, pid, p(x), coach); err != nil {
			return err
		}
	}
	say("people: Maya and Jon (participants, coached by Lee — a former participant), mentor Ruth, professional Omar, peer Tia")

	connect := func(who, other, role string, daysAgo int) (network.Connection, error) {
		return n.Connect(ctx, admin, network.NewConnection{ParticipantID: p(who), OtherID: p(other), Role: role, Origin: "matched",
			StartedOn: now.AddDate(0, 0, -daysAgo).Format(time.DateOnly)})
	}
	// Maya's baseline at enrolment: her peer Tia. Her mentor Ruth and Omar come later.
	if _, err := connect("maya", "tia", "peer", 60); err != nil {
		return err
	}
	mentor, err := connect("maya", "ruth", "mentor", 0)
	if err != nil {
		return err
	}
	maya := network.By{Principal: access.Principal{Name: "demo:maya", Role: access.Participant, PersonID: p("maya")}}
	lee := network.By{Principal: access.Principal{Name: "demo:lee", Role: access.Coach, PersonID: p("lee")}}

	wallet := func() string {
		b, err := a.Ledger.Balance(ctx, network.WalletAccount(p("maya")), ledger.AsOf{})
		if err != nil {
			return "?"
		}
		return ledger.FormatAmount(b.PostedCredits, "USD") // awarded so far; the sandbox pays it out
	}
	settle := func() error { // wait for the evaluation jobs to run
		deadline := time.Now().Add(30 * time.Second)
		for {
			var busy int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'evaluate_milestones'
				AND state IN ('available', 'running', 'retryable', 'scheduled', 'pending')`).Scan(&busy); err != nil {
				return err
			}
			if busy == 0 {
				return nil
			}
			if time.Now().After(deadline) {
				return errors.New("the evaluation jobs did not finish within 30 s: is another worker holding them?")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	say("\nMaya has received %s USD", wallet())
	// Today's matches, today's conversations: spread between midnight (UTC) and now, so they
	// fall within the connections' dates and never in the future.
	today := now.Truncate(24 * time.Hour)
	sinceMidnight := now.Sub(today)
	var logged []network.Conversation
	for i, res := range [][]string{{}, {"advice"}, {}, {"referral"}} {
		cv, err := n.LogConversation(ctx, maya, network.NewConversation{ConnectionID: mentor.ID,
			OccurredAt: today.Add(sinceMidnight * time.Duration(i) / 5), Channel: "video", Minutes: 45, Resources: res,
			IdempotencyKey: fmt.Sprintf("demo:%s:maya:%d", pid, i)})
		if err != nil {
			return err
		}
		logged = append(logged, cv)
		say("Maya logs conversation %d with her mentor Ruth (%v) — %s", i+1, res, cv.Status)
	}
	if err := settle(); err != nil {
		return err
	}
	say("Maya has received %s USD (her new mentor and peer raised her economic connectedness; self-reported conversations count once a coach verifies them)", wallet())
	for i, cv := range logged {
		if _, err := n.Review(ctx, lee, cv.ID, network.ReviewVerify, ""); err != nil {
			return err
		}
		if err := settle(); err != nil {
			return err
		}
		say("Lee verifies conversation %d → Maya has received %s USD", i+1, wallet())
	}
	bridge, err := connect("maya", "omar", "professional", 0)
	if err != nil {
		return err
	}
	if _, err := n.LogConversation(ctx, lee, network.NewConversation{ConnectionID: bridge.ID, OccurredAt: today.Add(sinceMidnight * 4 / 5),
		Channel: "in_person", Minutes: 30, Resources: []string{"introduction"}, Verified: true, IdempotencyKey: "demo:" + pid + ":omar"}); err != nil {
		return err
	}
	if err := settle(); err != nil {
		return err
	}
	say("Lee logs (verified) Maya's first conversation with Omar, a professional → Maya has received %s USD", wallet())

	prog, err := n.Progress(ctx, p("maya"))
	if err != nil {
		return err
	}
	say("\nMaya's progress:")
	printProgress(stdout, prog)
	m, err := n.ProgramMetrics(ctx, pid)
	if err != nil {
		return err
	}
	say("\nprogram %s: %d awards, %s USD awarded, fund %s USD left, economic connectedness %s, near-peer conversion %s",
		pid, m.AwardsPosted, m.AmountAwarded, ledger.FormatAmount(m.Fund.Posted, "USD"), decOrDash(m.EconomicConnectedness), decOrDash(m.NearPeerConversion))
	say("every award is a ledger entry keyed award:%s:<participant>:<rule>:<period>; see `tandem network awards --program %s`", pid, pid)
	return nil
}

func decOrDash(d interface{ String() string }) string {
	if d == nil {
		return "-"
	}
	return d.String()
}
