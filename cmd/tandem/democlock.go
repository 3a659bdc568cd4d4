package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/tandemledger/tandem/payouts"
)

// forfeit shows the program's test clock: the payout left failed (Tyler's tools) is never
// fixed, so the lead advances the sandbox program's clock past the remediation window and the
// sweep forfeits it, giving the money back to the fund by an entry of its own.
func (r *demoRun) forfeit(ctx context.Context) error {
	pay := r.a.Payouts
	frozen := r.pl.participants[r.pl.participantIndex(storyFrozen)]
	c, err := pay.AdvanceClock(ctx, r.lead.by, r.pid, payouts.ClockMove{By: fmt.Sprintf("%dd", demoRemediationDays+1),
		Reason: "the demo: let the remediation window of the payout left failed run out"})
	if err != nil {
		return err
	}
	res, err := pay.Sweep(ctx)
	if err != nil {
		return err
	}
	if err := r.wait(ctx); err != nil { // whatever the sweep approved is paid
		return err
	}
	ds, err := pay.List(ctx, payouts.Filter{Program: r.pid, Person: r.id(frozen.key), Limit: 1000})
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ds, func(d payouts.Disbursement) bool { return d.Source == "manual" })
	if i < 0 {
		return fmt.Errorf("demo: %s's grant is missing", frozen.name)
	}
	r.say("test clock: %s never does; %s moves the sandbox program's clock %s, past the %d-day remediation window, to %s;",
		firstName(frozen.name), firstName(r.pl.lead.name), c.Ahead(), demoRemediationDays, c.Now.UTC().Format("2 Jan 2006"))
	r.say("  the sweep forfeits %d payout: tools 60.00 to %s → %s (back in the fund)", res.Forfeited, firstName(frozen.name), ds[i].State)
	return nil
}
