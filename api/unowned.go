package api

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// Money left without an owner (payouts/unowned.go), over HTTP and on the admin pages: awards
// whose evidence was retracted after they were paid, each reversed or kept by an admin with a
// reason; and what a paid payout's partial return left in the wallet, paid again or given
// back to the fund.

func (s *Server) unownedRoutes() {
	s.handle("GET /v1/retracted-awards", access.RetractedAwardList, noResource, s.listRetractedAwards)
	s.handle("POST /v1/awards/{id}/decision", access.RetractedAwardDecide, noResource, write(s, http.StatusOK, s.decideAward))
	s.handle("GET /v1/disbursements/{id}/returned", access.DisbursementRead, s.disbursementInPath, s.getReturned)
	s.handle("POST /v1/disbursements/{id}/repay-returned", access.DisbursementRepayReturned, s.disbursementInPath,
		write(s, http.StatusCreated, s.repayReturned))
	s.handle("POST /v1/disbursements/{id}/return-to-fund", access.DisbursementReturnToFund, s.disbursementInPath,
		write(s, http.StatusOK, s.returnToFund))
}

func (s *Server) unownedPages() {
	s.page("GET /admin/retracted", access.RetractedAwardList, noResource, s.adminGet(s.retractedView))
	s.page("POST /admin/awards/{id}/decision", access.RetractedAwardDecide, noResource, s.decideAwardForm)
	s.page("POST /admin/disbursements/{id}/repay-returned", access.DisbursementRepayReturned, s.disbursementInPath,
		s.settleReturnedForm(doneRepay, s.repayReturned))
	s.page("POST /admin/disbursements/{id}/return-to-fund", access.DisbursementReturnToFund, s.disbursementInPath,
		s.settleReturnedForm(doneToFund, s.returnToFund))
}

func (s *Server) listRetractedAwards(w http.ResponseWriter, r *http.Request) {
	as, err := s.payouts.RetractedAwards(r.Context(), r.URL.Query().Get("program"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if as == nil {
		as = []payouts.RetractedAward{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"awards": as})
}

// awardDecision is the body of POST /v1/awards/{id}/decision.
type awardDecision struct {
	Decision string `json:"decision"` // reverse or keep
	Reason   string `json:"reason"`
}

func (s *Server) decideAward(r *http.Request, body awardDecision) (any, error) {
	return s.payouts.DecideRetractedAward(r.Context(), by(r), r.PathValue("id"), body.Decision, body.Reason)
}

func (s *Server) getReturned(w http.ResponseWriter, r *http.Request) {
	m, err := s.payouts.Returned(r.Context(), r.PathValue("id"))
	s.reply(w, r, m, err)
}

func (s *Server) repayReturned(r *http.Request, body reason) (any, error) {
	return s.payouts.RepayReturned(r.Context(), by(r), r.PathValue("id"), body.Reason)
}

func (s *Server) returnToFund(r *http.Request, body reason) (any, error) {
	return s.payouts.ReturnReturnedToFund(r.Context(), by(r), r.PathValue("id"), body.Reason)
}

// The changes the forms here report when they send the browser back (?done=).
const (
	doneDecide = "decide"
	doneRepay  = "repay"
	doneToFund = "to-fund"
)

// unownedFlash is the message of a change made here, written from what the database says now.
func (s *Server) unownedFlash(ctx context.Context, q url.Values) string {
	switch q.Get("done") {
	case doneDecide:
		d, err := s.payouts.AwardDecisionOf(ctx, q.Get("award"))
		if err != nil {
			return ""
		}
		if d.Decision == payouts.DecisionReverse {
			return fmt.Sprintf("Reversed award %s: its money is back in the program's fund (entry %s).", d.AwardKey, d.EntryID)
		}
		return fmt.Sprintf("Kept award %s: “%s”.", d.AwardKey, d.Reason)
	case doneRepay:
		v, err := s.describeDisbursement(ctx, q.Get("id"))
		if err != nil {
			return ""
		}
		return fmt.Sprintf("The returned %s is paid again to %s by a new disbursement, now %s: %s.", v.Amount, v.Person, v.StateLabel, v.ID)
	case doneToFund:
		m, err := s.payouts.Returned(ctx, q.Get("id"))
		if err != nil || len(m.Settlements) == 0 {
			return ""
		}
		last := m.Settlements[len(m.Settlements)-1]
		return fmt.Sprintf("The returned %s %s is back in the program's fund (entry %s).", last.Amount, m.Currency, last.EntryID)
	}
	return ""
}

// decideAwardForm serves the reverse and keep buttons of /admin/retracted.
func (s *Server) decideAwardForm(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	back := safeReturn(r.PostFormValue("return_to"), "/admin/retracted")
	id := r.PathValue("id")
	if _, err := s.decideAward(r, awardDecision{Decision: r.PostFormValue("decision"), Reason: r.PostFormValue("reason")}); err != nil {
		return s.formFailed(w, r, sess, back, err)
	}
	http.Redirect(w, r, withDone(back, doneDecide, "award", id), http.StatusSeeOther)
	return nil
}

// settleReturnedForm serves the pay-again and back-to-the-fund forms of a disbursement's page.
func (s *Server) settleReturnedForm(done string, core func(*http.Request, reason) (any, error)) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, sess access.Session) error {
		id := r.PathValue("id")
		back := safeReturn("/admin/disbursements/"+id, "/admin/approvals")
		out, err := core(r, reason{Reason: r.PostFormValue("reason")})
		if err != nil {
			return s.formFailed(w, r, sess, back, err)
		}
		if repaid, ok := out.(payouts.RepaidReturn); ok {
			id = repaid.Disbursement.ID
		}
		http.Redirect(w, r, withDone(back, done, "id", id), http.StatusSeeOther)
		return nil
	}
}

// --- Evidence retracted --------------------------------------------------------------------------

type withdrawnRow struct {
	What, Item, Reason, By string
	At                     time.Time
}

type retractedRow struct {
	ID, Key, Amount, Person, PersonID, Program string
	Rule, Period                               string
	PaidAt                                     *time.Time
	Withdrawn                                  []withdrawnRow
	Disbursement, State                        string
	CanReverse, CanKeep                        bool
	Note                                       string
}

var withdrawnText = map[string]string{
	network.WithdrawnConversation: "Conversation retracted",
	network.WithdrawnVerification: "Verification withdrawn",
	network.WithdrawnConnection:   "Connection retracted",
}

var retractedContent = newPage(adminStyle + `
<p>Awards paid into a wallet whose evidence was retracted since — a conversation or connection withdrawn as recorded in
error, or a conversation's verification withdrawn where the rule counts verified ones. Each stays here until an admin
reverses it (the money, while still in the wallet, goes back to the program's fund by a ledger entry) or keeps it, with a
reason; the decision is in the audit trail. Money that has left the wallet can only be kept: Tandem records no debt.</p>
<form method="get" action="/admin/retracted" aria-label="Filter awards">
<label for="f-program">Program</label><select id="f-program" name="program">{{range .Data.Programs}}<option value="{{.Value}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select>
<button>Show awards</button></form>
<p id="summary">{{.Data.Summary}}</p>
{{range .Data.Rows}}
<article class="card item" aria-labelledby="a-{{.ID}}">
<h2 id="a-{{.ID}}">{{.Amount}} to {{.Person}} — {{.Rule}} ({{.Period}})</h2>
<dl class="facts">
<dt>Award</dt><dd>{{.Key}}</dd>
<dt>Person</dt><dd>{{.Person}} ({{.PersonID}})</dd>
<dt>Program</dt><dd><a href="/admin/programs/{{.Program}}">{{.Program}}</a></dd>
{{if .PaidAt}}<dt>Paid into the wallet</dt><dd>{{datetime .PaidAt}}</dd>{{end}}
<dt>Disbursement</dt><dd>{{if .Disbursement}}<a href="/admin/disbursements/{{.Disbursement}}">{{.State}}</a>{{else}}none{{end}}</dd>
</dl>
<ul>{{range .Withdrawn}}<li>{{.What}} {{.Item}}, {{datetime .At}} by {{.By}}{{if .Reason}}: “{{.Reason}}”{{end}}</li>{{end}}</ul>
{{if .Note}}<p class="muted">{{.Note}}</p>{{end}}
{{if .CanKeep}}<form method="post" action="/admin/awards/{{.ID}}/decision">
<input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="return_to" value="{{$.Data.Return}}">
<label for="why-{{.ID}}">Reason (required)</label>
<input id="why-{{.ID}}" name="reason" type="text" maxlength="500" required>
<div class="actions">{{if .CanReverse}}<button name="decision" value="reverse">Reverse {{.Amount}} to the fund</button>{{end}}
<button class="secondary" name="decision" value="keep">Keep the award</button></div></form>{{end}}
</article>
{{end}}`)

// retractedView lists the awards whose evidence was retracted, with the forms the reader may use.
func (s *Server) retractedView(ctx context.Context, sess access.Session, target *url.URL) (*template.Template, pageData, error) {
	program := target.Query().Get("program")
	awards, err := s.payouts.RetractedAwards(ctx, program)
	if err != nil {
		return nil, pageData{}, err
	}
	programs, err := s.network.Programs(ctx)
	if err != nil {
		return nil, pageData{}, err
	}
	options := []selectOption{{Value: "", Label: "Every program", Selected: program == ""}}
	for _, p := range programs {
		options = append(options, selectOption{Value: p.ID, Label: p.Name, Selected: p.ID == program})
	}
	may := func(a access.Action) bool { return access.Authorize(sess.Principal, a, access.Resource{}) == nil }
	var rows []retractedRow
	for _, a := range awards {
		aw := a.Award
		row := retractedRow{ID: aw.ID, Key: aw.Key, Amount: moneyText(aw.Amount, aw.Currency), Person: a.PersonName, PersonID: aw.ParticipantID,
			Program: aw.ProgramID, Rule: aw.RuleID, Period: aw.Period, PaidAt: aw.PostedAt, Disbursement: a.Disbursement,
			State: stateLabel(a.State), Note: a.Note, CanKeep: may(access.RetractedAwardDecide)}
		for _, d := range a.Decisions {
			row.CanReverse = row.CanReverse || (d == payouts.DecisionReverse && row.CanKeep)
		}
		for _, w := range a.Withdrawn {
			row.Withdrawn = append(row.Withdrawn, withdrawnRow{What: withdrawnText[w.What], Item: w.Item, Reason: w.Reason, By: w.By, At: w.At})
		}
		rows = append(rows, row)
	}
	summary := "No award waits for a decision."
	if len(rows) > 0 {
		summary = countText(len(rows), "award waits", "awards wait") + " for a decision."
	}
	ret := "/admin/retracted"
	if program != "" {
		ret += "?" + url.Values{"program": {program}}.Encode()
	}
	return retractedContent, pageData{Title: "Evidence retracted", CSRF: sess.CSRF, Principal: &sess.Principal,
		Data: struct {
			Programs []selectOption
			Rows     []retractedRow
			Summary  string
			Return   string
		}{options, rows, summary, ret}}, nil
}

// --- Returned money on a disbursement's page ------------------------------------------------------

// returnedView is what a disbursement's page shows of its returned money.
type returnedView struct {
	ID, CSRF                      string
	Returned, Settled, Left       string
	Settlements                   []payouts.Settlement
	CanRepay, CanFund             bool
	RepayLabel, FundLabel, Reason string
}

func (s *Server) returnedOf(ctx context.Context, p access.Principal, d payouts.Disbursement, csrf string) (*returnedView, error) {
	m, err := s.payouts.Returned(ctx, d.ID)
	if err != nil || !m.Returned.IsPositive() {
		return nil, err
	}
	left := moneyText(m.Outstanding, m.Currency)
	v := &returnedView{ID: d.ID, CSRF: csrf, Returned: moneyText(m.Returned, m.Currency), Settled: moneyText(m.Settled, m.Currency),
		Left: left, Settlements: m.Settlements, RepayLabel: "Pay the returned " + left + " again", FundLabel: "Give the returned " + left + " back to the fund"}
	if m.Outstanding.IsPositive() && (d.State == payouts.Paid || (d.State == payouts.Returned && len(m.Settlements) > 0)) {
		res := access.Resource{Owner: d.PersonID, RequestedBy: d.RequestedBy}
		v.CanRepay = access.Authorize(p, access.DisbursementRepayReturned, res) == nil && strings.HasPrefix(d.Wallet, "participant/")
		v.CanFund = access.Authorize(p, access.DisbursementReturnToFund, res) == nil
	}
	return v, nil
}

// returnedSection is the disbursement page's part on returned money ({{template "returned" .}}).
const returnedSection = `{{define "returned"}}{{with .}}<h2>Returned money</h2>
<p>The provider gave back {{.Returned}} of this payout; {{.Settled}} of it was paid again or given back to the fund; <strong>{{.Left}}</strong> is left in the wallet.</p>
{{if .Settlements}}<ul>{{range .Settlements}}<li>{{datetime .At}}: {{.Amount}} {{if eq .Kind "repay"}}paid again by <a href="/admin/disbursements/{{.NewDisbursement}}">a new disbursement</a>{{else}}given back to the fund{{end}}
(entry {{.EntryID}}), by {{.DecidedBy}}: “{{.Reason}}”</li>{{end}}</ul>{{end}}
{{if or .CanRepay .CanFund}}<div class="actions">
{{if .CanRepay}}<form method="post" action="/admin/disbursements/{{.ID}}/repay-returned">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="repay-{{.ID}}">Why pay it again (required; you request the new disbursement, another admin approves it if the policy asks)</label>
<input id="repay-{{.ID}}" name="reason" type="text" maxlength="500" required>
<button>{{.RepayLabel}}</button></form>{{end}}
{{if .CanFund}}<form method="post" action="/admin/disbursements/{{.ID}}/return-to-fund">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="tofund-{{.ID}}">Why give it back (required)</label>
<input id="tofund-{{.ID}}" name="reason" type="text" maxlength="500" required>
<button class="secondary">{{.FundLabel}}</button></form>{{end}}
</div>{{end}}{{end}}{{end}}`
