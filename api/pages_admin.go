package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/textfmt"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// The admins' pages (DESIGN.md §9): the approvals queue, failed payouts, reconciliation and
// the program dashboards. Auditors may read every one of them; the forms that change
// something are shown only to whom the policy would let use them, and their POST routes are
// authorised like the /v1 routes they mirror (same actions, same resources, four eyes
// included). The changes go through the same payouts.Store methods as /v1, which write the
// audit trail. After a change the browser is sent back (303) to the page the form was on,
// with a message; a refusal shows that page again with the reason, under the status /v1
// would answer.
func (s *Server) adminPages() {
	s.page("GET /admin/approvals", access.DisbursementList, noResource, s.adminGet(s.approvalsView))
	s.page("GET /admin/failed", access.DisbursementList, noResource, s.adminGet(s.failedView))
	s.page("GET /admin/disbursements/{id}", access.DisbursementRead, s.disbursementInPath, s.adminGet(s.disbursementView))
	s.page("POST /admin/disbursements/{id}/approve", access.DisbursementApprove, s.disbursementInPath,
		s.decideForm(doneApprove, func(r *http.Request) (any, error) {
			// The form carries the destination the page showed next to it.
			return s.approve(r, approval{Reason: r.PostFormValue("note"), Destination: r.PostFormValue("destination")})
		}))
	s.page("POST /admin/disbursements/{id}/reject", access.DisbursementReject, s.disbursementInPath,
		s.decideForm(doneReject, s.reasonForm("reason", (*payouts.Store).Reject)))
	s.page("POST /admin/disbursements/{id}/retry", access.DisbursementRetry, s.disbursementInPath,
		s.decideForm(doneRetry, s.reasonForm("note", (*payouts.Store).Retry)))
	s.page("GET /admin/reconciliation", access.ReconciliationRead, noResource, s.adminGet(s.reconciliationView))
	s.page("POST /admin/reconciliation", access.ReconciliationRun, noResource, s.reconcileForm)
	s.page("GET /admin/programs", access.ProgramMetrics, noResource, s.adminGet(s.programsView))
	s.page("GET /admin/programs/{id}", access.ProgramMetrics, noResource, s.adminGet(s.dashboardView))
	s.unownedPages()
	s.jobRoutes() // jobs.go: /admin/jobs and /v1/jobs
}

// adminStyle is the admin pages' own style sheet, inline like the layout's (the CSP allows
// inline styles only).
const adminStyle = `<style>
.filter-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,12rem),1fr));gap:0 1rem}
.item{margin:1rem 0}.item h2{font-size:1.15rem;margin:0 0 .5rem}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .75rem;margin:0 0 .5rem}
dl.facts dt{font-weight:600}dl.facts dd{margin:0;overflow-wrap:anywhere}
@media (max-width:32rem){dl.facts{grid-template-columns:1fr}dl.facts dd{margin-bottom:.4rem}}
.actions{display:flex;flex-wrap:wrap;gap:.25rem 1.5rem;align-items:flex-end}.actions form{flex:1 1 16rem}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,30rem),1fr));gap:1rem 2rem}
figure.chart{margin:0 0 1rem}figure.chart figcaption{font-weight:600;margin:.25rem 0}
.card .note{font-size:.9rem;color:#555}
td form.inline button{white-space:nowrap}
caption{text-align:left;font-weight:600;padding:.25rem 0}
</style>`

// adminView builds a page for target (the URL of the page: its path and query). A GET shows
// it; a refused form shows the page it came from again, with the refusal.
type adminView func(ctx context.Context, sess access.Session, target *url.URL) (*template.Template, pageData, error)

// adminGet serves a view, with the message of the change that led here (?done=…).
func (s *Server) adminGet(view adminView) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, sess access.Session) error {
		t, d, err := view(r.Context(), sess, r.URL)
		if err != nil {
			return err
		}
		d.Flash = s.adminFlash(r.Context(), r.URL.Query())
		s.renderPage(w, r, http.StatusOK, t, d)
		return nil
	}
}

// viewFor is the view of an admin page's path (forms send the browser back to one of these).
func (s *Server) viewFor(path string) adminView {
	switch {
	case path == "/admin/approvals":
		return s.approvalsView
	case path == "/admin/failed":
		return s.failedView
	case path == "/admin/reconciliation":
		return s.reconciliationView
	case path == "/admin/retracted":
		return s.retractedView
	case path == "/admin/jobs":
		return s.jobsView
	case strings.HasPrefix(path, "/admin/disbursements/"):
		return s.disbursementView
	}
	return nil
}

// filterKeys are the query parameters the lists keep when a form sends the browser back.
var filterKeys = []string{"program", "person", "state", "source"}

// safeReturn is where a form sends the browser back: one of the admin lists or a
// disbursement's page, with the lists' filters, and nothing else (no other site, no other
// parameter: a form cannot be made to redirect anywhere or to echo anything).
func safeReturn(v, fallback string) *url.URL {
	u, err := url.Parse(v)
	ok := err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && u.Opaque == ""
	if ok {
		switch id, isDetail := strings.CutPrefix(u.Path, "/admin/disbursements/"); {
		case u.Path == "/admin/approvals" || u.Path == "/admin/failed" || u.Path == "/admin/reconciliation" || u.Path == "/admin/retracted" || u.Path == "/admin/jobs":
		case isDetail && uuid.Validate(id) == nil:
		default:
			ok = false
		}
	}
	if !ok {
		u, _ = url.Parse(fallback)
	}
	q := url.Values{}
	for _, k := range filterKeys {
		if v := u.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	return &url.URL{Path: u.Path, RawQuery: q.Encode()}
}

// The changes a form reports when it sends the browser back (?done=).
const (
	doneApprove   = "approve"
	doneReject    = "reject"
	doneRetry     = "retry"
	doneReconcile = "reconcile"
)

// withDone adds the change's message parameters to u.
func withDone(u *url.URL, done string, params ...string) string {
	q := u.Query()
	q.Set("done", done)
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	return (&url.URL{Path: u.Path, RawQuery: q.Encode()}).String()
}

// adminFlash is the message of a change, written from what the database says now: the query only
// names the change and its record, so nothing of the request is echoed.
func (s *Server) adminFlash(ctx context.Context, q url.Values) string {
	switch done := q.Get("done"); done {
	case doneApprove, doneReject, doneRetry:
		v, err := s.describeDisbursement(ctx, q.Get("id"))
		if err != nil {
			return ""
		}
		switch {
		case done == doneReject:
			return fmt.Sprintf("Rejected %s to %s; the money is back in the program's fund.", v.Amount, v.Person)
		case done == doneRetry:
			return fmt.Sprintf("Sent %s to %s again: it is now %s.", v.Amount, v.Person, v.StateLabel)
		case v.State == payouts.AwaitingApproval:
			return fmt.Sprintf("Your approval of %s to %s is recorded: %s. It waits for another admin.", v.Amount, v.Person, v.ApprovalText)
		}
		return fmt.Sprintf("Approved %s to %s: it is now %s.", v.Amount, v.Person, v.StateLabel)
	case doneJobRetry, doneJobCancel:
		return s.jobFlash(ctx, done, q.Get("job"))
	case doneReconcile:
		id, err := strconv.ParseInt(q.Get("run"), 10, 64)
		if err != nil {
			return ""
		}
		runs, err := s.payouts.Reconciliations(ctx, 100)
		if err != nil {
			return ""
		}
		for _, run := range runs {
			if run.ID == id {
				return fmt.Sprintf("Reconciliation run %d finished: %s.", id, countText(len(run.Differences), "difference", "differences"))
			}
		}
	default:
		return s.unownedFlash(ctx, q)
	}
	return ""
}

// decideForm serves an approve, reject or retry form through decide, the core of the /v1
// route (Server.approve, or Server.decide through reasonForm; s.page put the session's
// principal where the /v1 routes find it).
func (s *Server) decideForm(done string, decide func(*http.Request) (any, error)) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, sess access.Session) error {
		back := safeReturn(r.PostFormValue("return_to"), "/admin/approvals")
		out, err := decide(r)
		if err != nil {
			return s.formFailed(w, r, sess, back, err)
		}
		d, _ := out.(payouts.Disbursement)
		http.Redirect(w, r, withDone(back, done, "id", d.ID), http.StatusSeeOther)
		return nil
	}
}

// reasonForm is Server.decide of act with the form's field as the reason.
func (s *Server) reasonForm(field string, act func(*payouts.Store, context.Context, network.By, string, string) (payouts.Disbursement, error)) func(*http.Request) (any, error) {
	decide := s.decide(act)
	return func(r *http.Request) (any, error) { return decide(r, reason{Reason: r.PostFormValue(field)}) }
}

// reconcileForm runs a reconciliation as POST /v1/reconciliations does.
func (s *Server) reconcileForm(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	back := safeReturn("/admin/reconciliation", "/admin/reconciliation")
	days := 0
	if v := strings.TrimSpace(r.PostFormValue("days")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return s.formFailed(w, r, sess, back, fmt.Errorf("%w: days: %q is not a whole number of days", payouts.ErrInvalid, v))
		}
		days = n
	}
	out, err := s.reconcile(r, reconcileRequest{Days: days})
	if err != nil {
		return s.formFailed(w, r, sess, back, err)
	}
	run, _ := out.(payouts.Reconciliation)
	http.Redirect(w, r, withDone(back, doneReconcile, "run", strconv.FormatInt(run.ID, 10)), http.StatusSeeOther)
	return nil
}

// formFailed shows the page the form came from again with why the change was refused, under
// the status /v1 answers for it. Errors without a problem kind go to the error page (logged).
func (s *Server) formFailed(w http.ResponseWriter, r *http.Request, sess access.Session, back *url.URL, err error) error {
	status := adminStatus(err)
	view := s.viewFor(back.Path)
	if status >= 500 || view == nil {
		return err
	}
	t, d, verr := view(r.Context(), sess, back)
	if verr != nil {
		return err
	}
	s.logger.InfoContext(r.Context(), "form refused", "request_id", requestID(r.Context()), "path", r.URL.Path, "status", status, "error", err)
	d.Error = plainError(err)
	d.Nav = navFor(&sess.Principal, back.Path)
	s.renderPage(w, r, status, t, d)
	return nil
}

// adminStatus is the status /v1 answers for err (500 when it has no problem kind).
func adminStatus(err error) int {
	for _, k := range problemKinds {
		if errors.Is(err, k.err) {
			return k.status
		}
	}
	return http.StatusInternalServerError
}

// plainError says in plain words why a change was refused, followed by the detail.
func plainError(err error) string {
	detail := err.Error()
	switch {
	case errors.Is(err, access.ErrFourEyes), errors.Is(err, payouts.ErrSelfApproval):
		return "Not approved — four eyes: whoever requested a disbursement may not approve it, and nobody approves it twice; another admin must. (" + detail + ")"
	case errors.Is(err, payouts.ErrCapExceeded):
		return "Nothing was changed — it would take the person past the program's monthly or yearly cap: it keeps waiting, or stays returned. (" + detail + ")"
	case errors.Is(err, payouts.ErrDestinationChanged):
		return "Not approved — the person's payout destination changed since it was shown to you; look at the one shown now, and approve again if it is right. (" + detail + ")"
	case errors.Is(err, payouts.ErrState):
		return "Nothing was changed — the disbursement is no longer in a state that allows this; someone may have acted on it first. (" + detail + ")"
	case errors.Is(err, payouts.ErrNotFound):
		return "There is no such disbursement. (" + detail + ")"
	case errors.Is(err, payouts.ErrNoConsent), errors.Is(err, network.ErrNoConsent):
		return "Nothing was changed — the person has no consent on file, and no money is paid without it. (" + detail + ")"
	case errors.Is(err, payouts.ErrInvalid), errors.Is(err, network.ErrInvalid), errors.Is(err, ledger.ErrInvalid):
		return "Nothing was changed — check the form: " + strings.TrimPrefix(detail, payouts.ErrInvalid.Error()+": ") + "."
	case errors.Is(err, access.ErrForbidden):
		return "You may not do this. (" + detail + ")"
	}
	return detail
}

// --- Disbursements -------------------------------------------------------------------------------

// disbursementRow is a disbursement as the admin pages show it, with the forms the reader may use.
type disbursementRow struct {
	ID, Href                string
	ReturnTo, CSRF          string // where its forms send the browser back, and the session's CSRF token
	Amount                  string // 250.00 USD
	Person, PersonID        string
	Program, ProgramID      string
	Source, State           string
	StateLabel              string
	Reason                  string
	RequestedBy             string
	RequestedAt             time.Time
	ApprovalText            string // 1 of 2 approvals — dual control at or above 500.00 USD
	Approvers               []approverRow
	CanApprove, CanReject   bool
	CanRetry                bool
	ApproveNote             string // why the reader cannot approve, when they are an admin
	ApproveLabel            string // Approve 250.00 USD to Ana
	RejectLabel, RetryLabel string
	Attempts, Failures      int
	FailureReason           string
	FailedAt, NextRetryAt   *time.Time
	ForfeitAt, ReturnedAt   *time.Time
	Returned                string
	UpdatedAt               time.Time
	// Destination is the payout destination on file now ("" none yet): shown next to the
	// approve form, which posts it back as the destination the approval is for.
	Destination string
}

type approverRow struct {
	Who, Note string
	At        time.Time
}

// subjectName names a subject (person:<id>) by the person's name where there is one.
func subjectName(subject string, names map[string]string) string {
	if name, ok := names[subject]; ok {
		return name + " (" + strings.TrimPrefix(subject, "person:") + ")"
	}
	return subject
}

func (s *Server) disbursementRow(p access.Principal, it payouts.QueueItem) disbursementRow {
	amount := moneyText(it.Amount, it.Currency)
	row := disbursementRow{ID: it.ID, Href: "/admin/disbursements/" + it.ID, Amount: amount, Person: it.PersonName,
		PersonID: it.PersonID, Program: it.ProgramName, ProgramID: it.ProgramID, Source: it.Source, State: it.State,
		StateLabel: stateLabel(it.State), Reason: it.Reason, RequestedBy: subjectName(it.RequestedBy, it.Names), RequestedAt: it.CreatedAt,
		ApprovalText: approvalText(it), Attempts: it.Attempts, Failures: it.Failures, FailureReason: it.FailureReason,
		FailedAt: it.FailedAt, NextRetryAt: it.NextRetryAt, ForfeitAt: it.ForfeitAt, ReturnedAt: it.ReturnedAt, UpdatedAt: it.UpdatedAt,
		ApproveLabel: "Approve " + amount + " to " + it.PersonName, RejectLabel: "Reject " + amount + " to " + it.PersonName,
		RetryLabel: "Retry " + amount + " to " + it.PersonName, Destination: it.Destination}
	if it.Returned.IsPositive() {
		row.Returned = moneyText(it.Returned, it.Currency)
	}
	approvedByReader := false
	for _, a := range it.Approvals {
		row.Approvers = append(row.Approvers, approverRow{Who: subjectName(a.Approver, it.Names), Note: a.Reason, At: a.At})
		approvedByReader = approvedByReader || a.Approver == p.Subject()
	}
	res := access.Resource{Owner: it.PersonID, RequestedBy: it.RequestedBy}
	may := func(a access.Action) bool { return access.Authorize(p, a, res) == nil }
	if it.State == payouts.AwaitingApproval {
		switch err := access.Authorize(p, access.DisbursementApprove, res); {
		case approvedByReader:
			row.ApproveNote = "You approved it; another admin must give the second approval."
		case err == nil:
			row.CanApprove = true
		case errors.Is(err, access.ErrFourEyes):
			row.ApproveNote = "You requested it, so another admin must approve it (four eyes)."
		case p.Role == access.Admin:
			row.ApproveNote = "Approving needs a token that names its person: four eyes are two people."
		}
		row.CanReject = may(access.DisbursementReject)
	}
	if it.State == payouts.Failed || it.State == payouts.Returned {
		row.CanRetry = may(access.DisbursementRetry)
	}
	return row
}

// approvalText says how many approvals a disbursement has of those it needs, and why it needs them.
func approvalText(it payouts.QueueItem) string {
	got := len(it.Approvals)
	switch it.ApprovalsNeeded {
	case 2:
		return fmt.Sprintf("%d of 2 approvals — dual control at or above %s", got, moneyText(it.DualControlThreshold, it.Currency))
	case 1:
		return fmt.Sprintf("%d of 1 approval — above the auto-approve limit of %s", got, moneyText(it.AutoApproveLimit, it.Currency))
	}
	if it.State == payouts.AwaitingApproval {
		return "No approval needed (within the auto-approve limit); it waits for room under the person's cap"
	}
	return fmt.Sprintf("No approval needed — within the auto-approve limit of %s", moneyText(it.AutoApproveLimit, it.Currency))
}

// describeDisbursement is a disbursement's row for messages.
func (s *Server) describeDisbursement(ctx context.Context, id string) (disbursementRow, error) {
	if uuid.Validate(id) != nil {
		return disbursementRow{}, payouts.ErrNotFound
	}
	items, err := s.payouts.Queue(ctx, payouts.QueueFilter{ID: id})
	if err != nil || len(items) == 0 {
		return disbursementRow{}, errors.Join(payouts.ErrNotFound, err)
	}
	return s.disbursementRow(access.Principal{}, items[0]), nil
}

// selectOption is an entry of a <select>.
type selectOption struct {
	Value, Label string
	Selected     bool
}

// listData is what the approvals and failed pages show.
type listData struct {
	Programs, States, Sources []selectOption
	Person                    string
	Rows                      []disbursementRow
	Summary                   string
	Return                    string // the page with its filters, where forms send the browser back
	Limit                     int
}

const listLimit = 200

// listFilters reads a list's filters; state "" means the default (awaiting approval), "any" every state.
func (s *Server) listFilters(ctx context.Context, q url.Values, defaultState string, states []string) (payouts.QueueFilter, listData, error) {
	f := payouts.QueueFilter{Program: q.Get("program"), Person: strings.TrimSpace(q.Get("person")), Source: q.Get("source"), Limit: listLimit}
	state := q.Get("state")
	if state == "" {
		state = defaultState
	}
	if state != "any" {
		f.States = []string{state}
	}
	if state == "any" && len(states) > 0 {
		f.States = states
	}
	programs, err := s.network.Programs(ctx)
	if err != nil {
		return f, listData{}, err
	}
	d := listData{Person: f.Person, Limit: listLimit}
	d.Programs = []selectOption{{Value: "", Label: "All programs", Selected: f.Program == ""}}
	for _, p := range programs {
		d.Programs = append(d.Programs, selectOption{Value: p.ID, Label: p.Name + " (" + p.ID + ")", Selected: p.ID == f.Program})
	}
	if len(states) == 0 {
		states = payouts.States
	}
	d.States = []selectOption{{Value: "any", Label: "Any state", Selected: state == "any"}}
	for _, st := range states {
		d.States = append(d.States, selectOption{Value: st, Label: stateLabel(st), Selected: st == state})
	}
	d.Sources = []selectOption{{Value: "", Label: "Any source", Selected: f.Source == ""}}
	for _, src := range payouts.Sources {
		d.Sources = append(d.Sources, selectOption{Value: src, Label: src, Selected: src == f.Source})
	}
	return f, d, nil
}

func (s *Server) listRows(ctx context.Context, p access.Principal, f payouts.QueueFilter) ([]disbursementRow, error) {
	items, err := s.payouts.Queue(ctx, f)
	if err != nil {
		return nil, err
	}
	rows := make([]disbursementRow, 0, len(items))
	for _, it := range items {
		rows = append(rows, s.disbursementRow(p, it))
	}
	return rows, nil
}

// decideForms are the approve and reject forms of a disbursement row, on the approvals queue
// and on the disbursement's own page.
const decideForms = `{{define "decide"}}{{if .CanApprove}}<form method="post" action="/admin/disbursements/{{.ID}}/approve">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="return_to" value="{{.ReturnTo}}">
<input type="hidden" name="destination" value="{{.Destination}}">
<label for="note-{{.ID}}">Note with your approval (optional)</label>
<input id="note-{{.ID}}" name="note" type="text" maxlength="500">
<button>{{.ApproveLabel}}</button></form>
{{else if .ApproveNote}}<p class="muted">{{.ApproveNote}}</p>{{end}}
{{if .CanReject}}<form method="post" action="/admin/disbursements/{{.ID}}/reject">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="return_to" value="{{.ReturnTo}}">
<label for="reason-{{.ID}}">Reason for rejecting (required)</label>
<input id="reason-{{.ID}}" name="reason" type="text" maxlength="500" required>
<button class="secondary">{{.RejectLabel}}</button></form>{{end}}{{end}}`

var approvalsContent = newPage(adminStyle + decideForms + `
<form method="get" action="/admin/approvals" aria-label="Filter disbursements">
<div class="filter-grid">
<div><label for="f-program">Program</label><select id="f-program" name="program">{{range .Data.Programs}}<option value="{{.Value}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select></div>
<div><label for="f-person">Person (id)</label><input id="f-person" name="person" type="text" value="{{.Data.Person}}" autocomplete="off"></div>
<div><label for="f-state">State</label><select id="f-state" name="state">{{range .Data.States}}<option value="{{.Value}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select></div>
<div><label for="f-source">Source</label><select id="f-source" name="source">{{range .Data.Sources}}<option value="{{.Value}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select></div>
</div>
<button>Show disbursements</button> <a href="/admin/approvals">Clear the filters</a>
</form>
<p id="summary">{{.Data.Summary}}</p>
{{range .Data.Rows}}
<article class="card item" aria-labelledby="d-{{.ID}}">
<h2 id="d-{{.ID}}"><a href="{{.Href}}">{{.Amount}} to {{.Person}}</a></h2>
<dl class="facts">
<dt>State</dt><dd>{{.StateLabel}}</dd>
<dt>Approvals</dt><dd>{{.ApprovalText}}{{range $i, $a := .Approvers}}{{if $i}};{{else}}:{{end}} {{$a.Who}}, {{datetime $a.At}}{{if $a.Note}} (“{{$a.Note}}”){{end}}{{end}}</dd>
<dt>Person</dt><dd>{{.Person}} ({{.PersonID}})</dd>
<dt>Program</dt><dd><a href="/admin/programs/{{.ProgramID}}">{{.Program}}</a></dd>
<dt>Source</dt><dd>{{.Source}}</dd>
<dt>Requested</dt><dd>by {{.RequestedBy}}, {{datetime .RequestedAt}}</dd>
<dt>Reason</dt><dd>{{.Reason}}</dd>
<dt>Payout destination</dt><dd class="destination">{{if .Destination}}<code>{{.Destination}}</code> (on file now{{if .CanApprove}}: your approval is for it{{end}}){{else}}no destination yet{{end}}</dd>
</dl>
{{if or .CanApprove .CanReject .ApproveNote}}<div class="actions">
{{template "decide" .}}
</div>{{end}}
</article>
{{else}}<p>No disbursements match these filters.</p>{{end}}`)

// approvalsView is the approvals queue: disbursements awaiting approval (or those the
// filters pick), each with its approvals and the forms to approve or reject it.
func (s *Server) approvalsView(ctx context.Context, sess access.Session, target *url.URL) (*template.Template, pageData, error) {
	f, d, err := s.listFilters(ctx, target.Query(), payouts.AwaitingApproval, nil)
	if err != nil {
		return nil, pageData{}, err
	}
	if d.Rows, err = s.listRows(ctx, sess.Principal, f); err != nil {
		return nil, pageData{}, err
	}
	d.Return = safeReturn(target.String(), "/admin/approvals").String()
	for i := range d.Rows {
		d.Rows[i].ReturnTo, d.Rows[i].CSRF = d.Return, sess.CSRF
	}
	d.Summary = listSummary(len(d.Rows), listLimit, f)
	return approvalsContent, pageData{Title: "Approvals", CSRF: sess.CSRF, Principal: &sess.Principal, Data: d}, nil
}

func listSummary(n, limit int, f payouts.QueueFilter) string {
	what := countText(n, "disbursement", "disbursements")
	if len(f.States) == 1 {
		what += " " + stateLabel(f.States[0])
	}
	if n >= limit {
		return fmt.Sprintf("The newest %s; narrow the filters to see others.", what)
	}
	return what + ", newest first."
}

var failedContent = newPage(adminStyle + `
<p>Payouts the provider refused or gave back. A failed payout is retried automatically while the program's policy allows,
and is forfeited to the fund if nobody fixes it (a new payout destination retries it) before the date shown.</p>
<form method="get" action="/admin/failed" aria-label="Filter failed payouts">
<div class="filter-grid">
<div><label for="f-program">Program</label><select id="f-program" name="program">{{range .Data.Programs}}<option value="{{.Value}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select></div>
<div><label for="f-state">State</label><select id="f-state" name="state">{{range .Data.States}}<option value="{{.Value}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select></div>
</div>
<button>Show payouts</button> <a href="/admin/failed">Clear the filters</a>
</form>
<p id="summary">{{.Data.Summary}}</p>
{{if .Data.Rows}}<div class="table-wrap"><table>
<caption>Failed and returned payouts</caption>
<thead><tr><th scope="col">Payout</th><th scope="col">State</th><th scope="col">Provider's reason</th><th scope="col">Attempts</th>
<th scope="col">Next automatic retry</th><th scope="col">Forfeited to the fund on</th><th scope="col">Action</th></tr></thead>
<tbody>{{range .Data.Rows}}<tr>
<th scope="row"><a href="{{.Href}}">{{.Amount}} to {{.Person}}</a><br><span class="muted">{{.Program}}</span></th>
<td>{{.StateLabel}}{{if .FailedAt}}<br><span class="muted">last failed {{datetime .FailedAt}}</span>{{end}}{{if .ReturnedAt}}<br><span class="muted">{{.Returned}} returned {{datetime .ReturnedAt}}</span>{{end}}</td>
<td>{{.FailureReason}}</td>
<td class="amount">{{.Attempts}}</td>
<td>{{if .NextRetryAt}}{{datetime .NextRetryAt}}{{else if eq .State "failed"}}none left{{else}}—{{end}}</td>
<td>{{if .ForfeitAt}}{{date .ForfeitAt}}{{else}}—{{end}}</td>
<td>{{if .CanRetry}}<form class="inline" method="post" action="/admin/disbursements/{{.ID}}/retry">
<input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="return_to" value="{{$.Data.Return}}">
<button>{{.RetryLabel}}</button></form>{{else}}—{{end}}</td>
</tr>{{end}}</tbody></table></div>
{{else}}<p>No failed or returned payouts. </p>{{end}}`)

// failedView lists failed and returned payouts with the provider's reason, what happens next
// and a retry button.
func (s *Server) failedView(ctx context.Context, sess access.Session, target *url.URL) (*template.Template, pageData, error) {
	states := []string{payouts.Failed, payouts.Returned}
	f, d, err := s.listFilters(ctx, target.Query(), "any", states)
	if err != nil {
		return nil, pageData{}, err
	}
	if d.Rows, err = s.listRows(ctx, sess.Principal, f); err != nil {
		return nil, pageData{}, err
	}
	d.Return = safeReturn(target.String(), "/admin/failed").String()
	d.Summary = listSummary(len(d.Rows), listLimit, f)
	return failedContent, pageData{Title: "Failed payouts", CSRF: sess.CSRF, Principal: &sess.Principal, Data: d}, nil
}

var disbursementContent = newPage(adminStyle + decideForms + returnedSection + `
{{with .Data.Row}}
<dl class="facts">
<dt>State</dt><dd id="state">{{.StateLabel}} <span class="muted">(since {{datetime .UpdatedAt}})</span></dd>
<dt>Approvals</dt><dd>{{.ApprovalText}}{{range $i, $a := .Approvers}}{{if $i}};{{else}}:{{end}} {{$a.Who}}, {{datetime $a.At}}{{if $a.Note}} (“{{$a.Note}}”){{end}}{{end}}</dd>
<dt>Person</dt><dd>{{.Person}} ({{.PersonID}})</dd>
<dt>Program</dt><dd><a href="/admin/programs/{{.ProgramID}}">{{.Program}}</a></dd>
<dt>Source</dt><dd>{{.Source}}</dd>
<dt>Requested</dt><dd>by {{.RequestedBy}}, {{datetime .RequestedAt}}</dd>
<dt>Reason</dt><dd>{{.Reason}}</dd>
<dt>Payout destination</dt><dd class="destination">{{if .Destination}}<code>{{.Destination}}</code> (on file now{{if .CanApprove}}: your approval is for it{{end}}){{else}}no destination yet{{end}}</dd>
{{if .FailedAt}}<dt>Last failure</dt><dd>{{datetime .FailedAt}}: {{.FailureReason}}</dd>{{end}}
{{if .NextRetryAt}}<dt>Next automatic retry</dt><dd>{{datetime .NextRetryAt}}</dd>{{end}}
{{if .ForfeitAt}}<dt>Forfeited to the fund on</dt><dd>{{date .ForfeitAt}} unless fixed</dd>{{end}}
<dt>Id</dt><dd>{{.ID}}</dd>
</dl>
{{if or .CanApprove .CanReject .CanRetry .ApproveNote}}<div class="actions">
{{template "decide" .}}
{{if .CanRetry}}<form method="post" action="/admin/disbursements/{{.ID}}/retry">
<input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="return_to" value="{{.Href}}">
<label for="retry-note-{{.ID}}">Note with the retry (optional)</label>
<input id="retry-note-{{.ID}}" name="note" type="text" maxlength="500">
<button>{{.RetryLabel}}</button></form>{{end}}
</div>{{end}}
{{end}}
{{with .Data.D}}
<h2>History</h2>
<div class="table-wrap"><table><caption>Every state it took, with who and why</caption>
<thead><tr><th scope="col">When</th><th scope="col">From</th><th scope="col">To</th><th scope="col">By</th><th scope="col">Why</th></tr></thead>
<tbody>{{range .Transitions}}<tr><th scope="row">{{datetime .At}}</th><td>{{.From}}</td><td>{{.To}}</td><td>{{.Actor}}</td><td>{{.Reason}}</td></tr>{{end}}</tbody></table></div>
<h2>Payout attempts</h2>
{{if .Attempts}}<div class="table-wrap"><table><caption>Tries at paying it through a provider</caption>
<thead><tr><th scope="col">Attempt</th><th scope="col">Provider</th><th scope="col">Destination</th><th scope="col">Submitted</th><th scope="col">Settled</th><th scope="col">Outcome</th><th scope="col">Provider reference</th><th scope="col" class="amount">Returned</th></tr></thead>
<tbody>{{range .Attempts}}<tr><th scope="row">{{.Attempt}}</th><td>{{.Provider}}</td><td>{{.Destination}}</td><td>{{datetime .SubmittedAt}}</td>
<td>{{if .SettledAt}}{{datetime .SettledAt}}{{else}}not yet{{end}}</td><td>{{if .Outcome}}{{.Outcome}}{{else}}open{{end}}{{if .Reason}}: {{.Reason}}{{end}}</td>
<td>{{.ProviderRef}}</td><td class="amount">{{.Returned}}</td></tr>{{end}}</tbody></table></div>
{{else}}<p>None yet.</p>{{end}}
{{if .Returns}}<h2>Returns</h2><div class="table-wrap"><table><caption>Money the provider gave back after paying</caption>
<thead><tr><th scope="col">When</th><th scope="col">Attempt</th><th scope="col" class="amount">Amount</th><th scope="col">Event</th><th scope="col">Ledger entry</th></tr></thead>
<tbody>{{range .Returns}}<tr><th scope="row">{{datetime .At}}</th><td>{{.Attempt}}</td><td class="amount">{{.Amount}}</td><td>{{.Event}}</td><td>{{.EntryID}}</td></tr>{{end}}</tbody></table></div>{{end}}
{{if .FundReturnEntryID}}<p>The money went back to the program's fund by ledger entry {{.FundReturnEntryID}}.</p>{{end}}
{{end}}
{{template "returned" .Data.Returned}}
<p><a href="/admin/approvals">Back to the approvals</a> · <a href="/admin/failed">Failed payouts</a></p>`)

// disbursementView is one disbursement: its facts, the forms the reader may use, and its
// history of transitions, attempts and returns.
func (s *Server) disbursementView(ctx context.Context, sess access.Session, target *url.URL) (*template.Template, pageData, error) {
	id := strings.TrimPrefix(target.Path, "/admin/disbursements/")
	items, err := s.payouts.Queue(ctx, payouts.QueueFilter{ID: id})
	if err != nil {
		return nil, pageData{}, err
	}
	if len(items) == 0 {
		return nil, pageData{}, fmt.Errorf("%w: %s", payouts.ErrNotFound, id)
	}
	d, err := s.payouts.Get(ctx, id)
	if err != nil {
		return nil, pageData{}, err
	}
	row := s.disbursementRow(sess.Principal, items[0])
	row.ReturnTo, row.CSRF = row.Href, sess.CSRF
	returned, err := s.returnedOf(ctx, sess.Principal, d, sess.CSRF)
	if err != nil {
		return nil, pageData{}, err
	}
	return disbursementContent, pageData{Title: row.Amount + " to " + row.Person, CSRF: sess.CSRF, Principal: &sess.Principal,
		Data: struct {
			Row      disbursementRow
			D        payouts.Disbursement
			Returned *returnedView
		}{row, d, returned}}, nil
}

// --- Reconciliation ------------------------------------------------------------------------------

type differenceRow struct {
	Kind, Disbursement, ProviderRef, LedgerAmount, ProviderAmount, Detail string
	Applied                                                               string
}

type runRow struct {
	ID                              int64
	Provider                        string
	Since, StartedAt                time.Time
	ProviderRecords, LedgerRecords  int
	Differences                     []differenceRow
	Applied                         []payouts.Applied
	DifferenceCount, AppliedSummary string
}

var reconciliationContent = newPage(adminStyle + `
<p>Reconciliation compares the payout provider's transfers with the payouts in the ledger, applies what the provider
settled or returned that the ledger had not heard of (a lost webhook), and lists every difference. It also runs by itself.</p>
{{if .Data.CanRun}}<form method="post" action="/admin/reconciliation">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="days">Compare the transfers of the last (days)</label>
<input id="days" name="days" type="number" min="1" max="400" value="7" inputmode="numeric" style="max-width:8rem">
<button>Run reconciliation now</button></form>{{end}}
{{range .Data.Runs}}
<section aria-labelledby="run-{{.ID}}">
<h2 id="run-{{.ID}}">Run {{.ID}}, {{datetime .StartedAt}}</h2>
<p>{{.Provider}} transfers since {{datetime .Since}}: {{.ProviderRecords}} at the provider, {{.LedgerRecords}} in the ledger; {{.DifferenceCount}}; {{.AppliedSummary}}.</p>
{{if .Differences}}<div class="table-wrap"><table><caption>Differences found by run {{.ID}}</caption>
<thead><tr><th scope="col">Kind</th><th scope="col">Disbursement</th><th scope="col">Provider reference</th><th scope="col" class="amount">Ledger amount</th>
<th scope="col" class="amount">Provider amount</th><th scope="col">Ledger and provider</th><th scope="col">Applied</th></tr></thead>
<tbody>{{range .Differences}}<tr><th scope="row">{{.Kind}}</th><td>{{if .Disbursement}}<a href="/admin/disbursements/{{.Disbursement}}">{{.Disbursement}}</a>{{else}}—{{end}}</td>
<td>{{.ProviderRef}}</td><td class="amount">{{.LedgerAmount}}</td><td class="amount">{{.ProviderAmount}}</td><td>{{.Detail}}</td><td>{{.Applied}}</td></tr>{{end}}</tbody></table></div>{{end}}
{{if .Applied}}<h3>Applied by run {{.ID}}</h3><ul>{{range .Applied}}<li><a href="/admin/disbursements/{{.Disbursement}}">{{.Disbursement}}</a>: {{.To}}, {{datetime .At}} ({{.Reason}})</li>{{end}}</ul>{{end}}
</section>
{{else}}<p>No reconciliation has run yet.</p>{{end}}`)

// reconciliationView shows the latest runs, their differences and what they applied.
func (s *Server) reconciliationView(ctx context.Context, sess access.Session, _ *url.URL) (*template.Template, pageData, error) {
	reports, err := s.payouts.ReconciliationReports(ctx, 10)
	if err != nil {
		return nil, pageData{}, err
	}
	var runs []runRow
	for _, rep := range reports {
		run := runRow{ID: rep.ID, Provider: rep.Provider, Since: rep.Since, StartedAt: rep.StartedAt, ProviderRecords: rep.ProviderRecords,
			LedgerRecords: rep.LedgerRecords, Applied: rep.Applied,
			DifferenceCount: countText(len(rep.Differences), "difference", "differences"),
			AppliedSummary:  countText(len(rep.Applied), "change", "changes") + " applied from the provider's records"}
		for _, d := range rep.Differences {
			applied := "no"
			if rep.AppliedTo(d.Disbursement) {
				applied = "yes: the provider's outcome was recorded"
			}
			run.Differences = append(run.Differences, differenceRow{Kind: strings.ReplaceAll(d.Kind, "_", " "), Disbursement: d.Disbursement,
				ProviderRef: d.ProviderRef, LedgerAmount: textfmt.GroupDigits(d.LedgerAmount), ProviderAmount: textfmt.GroupDigits(d.ProviderAmount),
				Detail: d.Detail, Applied: applied})
		}
		runs = append(runs, run)
	}
	canRun := access.Authorize(sess.Principal, access.ReconciliationRun, access.Resource{}) == nil
	return reconciliationContent, pageData{Title: "Reconciliation", CSRF: sess.CSRF, Principal: &sess.Principal,
		Data: struct {
			Runs   []runRow
			CanRun bool
		}{runs, canRun}}, nil
}

// --- Programs and their dashboards ---------------------------------------------------------------

type programRow struct {
	ID, Name, Currency, Period, Fund string
}

var programsContent = newPage(adminStyle + `
{{if .Data}}<div class="table-wrap"><table><caption>Programs</caption>
<thead><tr><th scope="col">Program</th><th scope="col">Runs</th><th scope="col">Currency</th><th scope="col" class="amount">Fund available</th></tr></thead>
<tbody>{{range .Data}}<tr><th scope="row"><a href="/admin/programs/{{.ID}}">{{.Name}}</a> <span class="muted">({{.ID}})</span></th>
<td>{{.Period}}</td><td>{{.Currency}}</td><td class="amount">{{.Fund}}</td></tr>{{end}}</tbody></table></div>
{{else}}<p>No programs yet.</p>{{end}}`)

// programsView lists the programs, each linking to its dashboard.
func (s *Server) programsView(ctx context.Context, sess access.Session, _ *url.URL) (*template.Template, pageData, error) {
	programs, err := s.network.Programs(ctx)
	if err != nil {
		return nil, pageData{}, err
	}
	rows := make([]programRow, 0, len(programs))
	for _, p := range programs {
		row := programRow{ID: p.ID, Name: p.Name, Currency: p.Currency,
			Period: p.StartsOn.Format("2 Jan 2006") + " to " + p.EndsOn.Format("2 Jan 2006")}
		acct, err := s.ledger.Account(ctx, p.FundAccount)
		switch {
		case err == nil:
			row.Fund = moneyText(acct.Balance.Available, p.Currency)
		case errors.Is(err, ledger.ErrAccountNotFound):
			row.Fund = moneyText(decimal.Zero, p.Currency)
		default:
			return nil, pageData{}, err
		}
		rows = append(rows, row)
	}
	return programsContent, pageData{Title: "Programs", CSRF: sess.CSRF, Principal: &sess.Principal, Data: rows}, nil
}

// dashFigure is one of a dashboard's headline figures.
type dashFigure struct {
	Label, Value, Note string
}

type countRow struct {
	Label  string
	Count  int
	Amount string
}

type dashboard struct {
	Program       network.Program
	Period, Rules string
	Money         []dashFigure
	Network       []dashFigure
	Roles         []countRow
	States        []countRow
	Conversations []conversationRow
	Charts        []template.HTML
	// Clock is the program's time when its test clock is ahead of real time, else "".
	Clock string
}

type conversationRow struct {
	Month                                  string
	Conversations, Verified, WellResourced int
}

var dashboardContent = newPage(adminStyle + `
{{with .Data}}
<p>{{.Program.Name}} ({{.Program.ID}}), {{.Program.Currency}}, from {{date .Program.StartsOn.Time}} to {{date .Program.EndsOn.Time}}. {{.Rules}}</p>
{{if .Clock}}<p><strong>Test clock: {{.Clock}}</strong>. This sandbox program's forfeits, retries, caps and instalments follow it.</p>{{end}}
<h2>Money</h2>
<div class="cards">{{range .Money}}<div class="card"><div>{{.Label}}</div><div class="figure">{{.Value}}</div>{{if .Note}}<div class="note">{{.Note}}</div>{{end}}</div>{{end}}</div>
<h2>Network</h2>
<div class="cards">{{range .Network}}<div class="card"><div>{{.Label}}</div><div class="figure">{{.Value}}</div>{{if .Note}}<div class="note">{{.Note}}</div>{{end}}</div>{{end}}</div>
<h2>Month by month</h2>
<p class="muted">{{.Period}}; months in UTC. Each chart's figures are in the table under it.</p>
<div class="charts">{{range .Charts}}{{.}}{{end}}</div>
<h2>Conversations per month</h2>
{{if .Conversations}}<div class="table-wrap"><table><caption>Conversations of the program's participants (retracted ones left out)</caption>
<thead><tr><th scope="col">Month</th><th scope="col" class="amount">Conversations</th><th scope="col" class="amount">Verified</th><th scope="col" class="amount">Well-resourced</th></tr></thead>
<tbody>{{range .Conversations}}<tr><th scope="row">{{.Month}}</th><td class="amount">{{.Conversations}}</td><td class="amount">{{.Verified}}</td><td class="amount">{{.WellResourced}}</td></tr>{{end}}</tbody></table></div>
{{else}}<p>No conversations yet.</p>{{end}}
<h2>Connections by role</h2>
{{if .Roles}}<div class="table-wrap"><table><caption>Active connections of the program's participants</caption>
<thead><tr><th scope="col">Role</th><th scope="col" class="amount">Connections</th></tr></thead>
<tbody>{{range .Roles}}<tr><th scope="row">{{.Label}}</th><td class="amount">{{.Count}}</td></tr>{{end}}</tbody></table></div>
{{else}}<p>No connections yet.</p>{{end}}
<h2>Disbursements by state</h2>
<div class="table-wrap"><table><caption>Every disbursement of the program, by state</caption>
<thead><tr><th scope="col">State</th><th scope="col" class="amount">Disbursements</th><th scope="col" class="amount">Amount</th></tr></thead>
<tbody>{{range .States}}<tr><th scope="row">{{.Label}}</th><td class="amount">{{.Count}}</td><td class="amount">{{.Amount}}</td></tr>{{end}}</tbody></table></div>
{{end}}`)

// dashboardMonths is how many months a dashboard shows at most: the latest of the program's.
const dashboardMonths = 24

// dashboardView is a program's dashboard: the metrics of DESIGN.md §5, the money, and three
// charts. Its three reads run at once, each a few queries whatever the program's size.
func (s *Server) dashboardView(ctx context.Context, sess access.Session, target *url.URL) (*template.Template, pageData, error) {
	id := strings.TrimPrefix(target.Path, "/admin/programs/")
	p, err := s.network.Program(ctx, id)
	if err != nil {
		return nil, pageData{}, err
	}
	first, last := dashboardPeriod(p, time.Now().UTC())
	var (
		wg    sync.WaitGroup
		nd    network.ProgramDashboard
		money payouts.ProgramMoney
		pol   payouts.Policy
		clock payouts.Clock
		errs  [4]error
	)
	wg.Go(func() { nd, errs[0] = s.network.ProgramDashboard(ctx, p.ID, first, last) })
	wg.Go(func() { money, errs[1] = s.payouts.ProgramMoney(ctx, p.ID, first, last) })
	wg.Go(func() { pol, errs[2] = s.payouts.Policy(ctx, p.ID) })
	wg.Go(func() { clock, errs[3] = s.payouts.Clock(ctx, p.ID) })
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, pageData{}, err
	}
	d := buildDashboard(p, nd.Metrics, nd.Months, money, pol, first, last)
	if ahead := clock.Ahead(); ahead != "" {
		d.Clock = clock.Now.UTC().Format("2006-01-02 15:04 UTC") + " (" + ahead + ")"
	}
	return dashboardContent, pageData{Title: p.Name + " dashboard", CSRF: sess.CSRF, Principal: &sess.Principal, Data: d}, nil
}

// dashboardPeriod is the months a dashboard shows: from the program's first month to its last
// or the current one, whichever is earlier, at most dashboardMonths of them (the latest).
func dashboardPeriod(p network.Program, now time.Time) (time.Time, time.Time) {
	month := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC) }
	first, last := month(p.StartsOn.Time), month(now)
	if end := month(p.EndsOn.Time); end.Before(last) {
		last = end
	}
	if last.Before(first) { // a program that has not started: its first month
		last = first
	}
	if earliest := last.AddDate(0, -(dashboardMonths - 1), 0); first.Before(earliest) {
		first = earliest
	}
	return first, last
}

func buildDashboard(p network.Program, m network.ProgramMetrics, months []network.ProgramMonth, money payouts.ProgramMoney,
	pol payouts.Policy, first, last time.Time) dashboard {
	cur := p.Currency
	mt := func(d decimal.Decimal) string { return moneyText(d, cur) }
	st := money.State
	d := dashboard{Program: p, Period: monthLabel(first) + " to " + monthLabel(last)}
	d.Rules = fmt.Sprintf("Approvals: none up to %s, one admin above, two different admins at or above %s.",
		mt(pol.AutoApproveLimit), mt(pol.DualControlThreshold))
	inFlight := st(payouts.Approved).Amount.Add(st(payouts.Submitted).Amount)
	pending := st(payouts.AwaitingApproval).Amount.Add(st(payouts.InsufficientFunds).Amount).Add(inFlight)
	d.Money = []dashFigure{
		{"Fund balance", mt(m.Fund.Available), "available to award; posted " + mt(m.Fund.Posted)},
		{"Released", mt(money.Released), "from the fund to wallets; " + mt(money.ReturnedToFund) + " came back to the fund"},
		{"Paid", mt(money.Paid), "paid out by the provider"},
		{"Pending", mt(pending), fmt.Sprintf("%s awaiting approval, %s waiting for funds, %s on its way",
			mt(st(payouts.AwaitingApproval).Amount), mt(st(payouts.InsufficientFunds).Amount), mt(inFlight))},
		{"Failed or returned", mt(st(payouts.Failed).Amount.Add(st(payouts.Returned).Amount)),
			countText(st(payouts.Failed).Count+st(payouts.Returned).Count, "payout", "payouts") + " to fix or retry"},
	}
	per := "—"
	if m.AmountPerMilestone != nil {
		per = textfmt.GroupDigits(*m.AmountPerMilestone) + " " + cur
	}
	d.Money = append(d.Money, dashFigure{"Dollars per milestone", per, "amount awarded ÷ milestones paid (" + textfmt.GroupDigits(m.AmountAwarded) + " " + cur + " in all)"})
	connections := 0
	for role, n := range m.ConnectionsByRole {
		connections += n
		d.Roles = append(d.Roles, countRow{Label: strings.ReplaceAll(role, "_", " "), Count: n})
	}
	sortRows(d.Roles)
	days := "—"
	if m.MedianDaysToFirstMilestone != nil {
		days = m.MedianDaysToFirstMilestone.String() + " days"
	}
	d.Network = []dashFigure{
		{"Participants", strconv.Itoa(m.Participants), "enrolled in the program"},
		{"Connections", strconv.Itoa(connections), "active, by role below"},
		{"Economic connectedness", ratioText(m.EconomicConnectedness, 2), "twice the share of high-band connections among low-band participants' connections; 1.00 means no class gap"},
		{"Cross-class share", percentText(m.CrossClassShare), "of connections where both bands are known"},
		{"Milestones reached", strconv.Itoa(m.AwardsPosted), fmt.Sprintf("paid into wallets; %d waiting for funds; %s reached at least one",
			m.AwardsWaiting, countText(m.ParticipantsWithMilestone, "participant", "participants"))},
		{"Time to first milestone", days, "median, from enrolment"},
		{"Near-peer conversion", percentText(m.NearPeerConversion), countText(m.BecameCoaches, "participant", "participants") + " went on to coach"},
	}
	if n := len(m.ConversationsByMonth); n > 0 {
		latest := m.ConversationsByMonth[n-1]
		d.Network = append(d.Network, dashFigure{"Conversations in " + monthName(latest.Month), strconv.Itoa(latest.Conversations),
			fmt.Sprintf("%d verified, %d well-resourced", latest.Verified, latest.WellResourced)})
	}
	for i := len(m.ConversationsByMonth) - 1; i >= 0; i-- { // newest first
		c := m.ConversationsByMonth[i]
		d.Conversations = append(d.Conversations, conversationRow{Month: monthName(c.Month), Conversations: c.Conversations,
			Verified: c.Verified, WellResourced: c.WellResourced})
	}
	for _, s := range money.ByState {
		d.States = append(d.States, countRow{Label: stateLabel(s.State), Count: s.Count, Amount: mt(s.Amount)})
	}
	d.Charts = dashboardCharts(cur, months, money)
	return d
}

// dashboardCharts draws funds released and milestones reached per month (bars) and economic
// connectedness at each month's end (a line).
func dashboardCharts(cur string, months []network.ProgramMonth, money payouts.ProgramMoney) []template.HTML {
	released := chart{ID: "released", Title: "Funds released per month", YLabel: cur, LabelHeader: "Month", ValueHeader: "Released",
		Desc: "Money released from the program's fund to participants' and coaches' wallets, by month"}
	paid, back := chartColumn{Header: "Paid out"}, chartColumn{Header: "Back to the fund"}
	for i, mm := range money.Months {
		released.Points = append(released.Points, monthPoint(mm.Month, i, mm.Released, moneyText(mm.Released, cur)))
		paid.Cells = append(paid.Cells, moneyText(mm.Paid, cur))
		back.Cells = append(back.Cells, moneyText(mm.ReturnedToFund, cur))
	}
	released.Extra = []chartColumn{paid, back}
	milestones := chart{ID: "milestones", Title: "Milestones reached per month", YLabel: "milestones", LabelHeader: "Month",
		ValueHeader: "Milestones reached", Whole: true, Desc: "Awards by the month their milestone was reached"}
	paidAwards := chartColumn{Header: "Paid into wallets"}
	ec := chart{ID: "ec", Title: "Economic connectedness over time", LabelHeader: "Month", ValueHeader: "Economic connectedness",
		Desc:      "Economic connectedness at each month's end: twice the share of high-band connections among low-band participants' connections",
		Reference: &chartReference{Value: decimal.NewFromInt(1), Label: "1.0 = no class gap"}}
	lows, highs := chartColumn{Header: "Low-band participants' connections"}, chartColumn{Header: "of which to high-band people"}
	for i, pm := range months {
		n := decimal.NewFromInt(int64(pm.Milestones))
		milestones.Points = append(milestones.Points, monthPoint(pm.Month, i, n, strconv.Itoa(pm.Milestones)))
		paidAwards.Cells = append(paidAwards.Cells, strconv.Itoa(pm.MilestonesPaid))
		p := monthPoint(pm.Month, i, decimal.Zero, "")
		if pm.EconomicConnectedness == nil {
			p.Missing = true
		} else {
			p.Value, p.Text = *pm.EconomicConnectedness, pm.EconomicConnectedness.StringFixed(2)
		}
		ec.Points = append(ec.Points, p)
		lows.Cells = append(lows.Cells, strconv.Itoa(pm.LowBandConnections))
		highs.Cells = append(highs.Cells, strconv.Itoa(pm.LowToHighConnections))
	}
	milestones.Extra = []chartColumn{paidAwards}
	ec.Extra = []chartColumn{lows, highs}
	return []template.HTML{barChart(released), barChart(milestones), lineChart(ec)}
}

// monthPoint is a chart point of month "2026-01": "January 2026" in full, "Jan" on the
// axis with the year under the first month and every January.
func monthPoint(month string, i int, v decimal.Decimal, text string) chartPoint {
	t, err := time.Parse("2006-01", month)
	if err != nil {
		return chartPoint{Label: month, Value: v, Text: text}
	}
	short := t.Format("Jan")
	if i == 0 || t.Month() == time.January {
		short += "\n" + t.Format("2006")
	}
	return chartPoint{Label: t.Format("January 2006"), Short: short, Value: v, Text: text}
}

func monthLabel(t time.Time) string { return t.Format("January 2006") }

// monthName writes "2026-01" as "January 2026".
func monthName(month string) string {
	t, err := time.Parse("2006-01", month)
	if err != nil {
		return month
	}
	return monthLabel(t)
}

// sortRows puts the largest counts first, then by label.
func sortRows(rows []countRow) {
	slices.SortFunc(rows, func(a, b countRow) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Label, b.Label))
	})
}

// --- Formatting ------------------------------------------------------------------------------------

// moneyText writes an amount with its currency's places, thousands grouped: 1,250.00 USD.
func moneyText(d decimal.Decimal, currency string) string {
	return textfmt.GroupDigits(ledger.FormatAmount(d, currency)) + " " + currency
}

func ratioText(d *decimal.Decimal, places int32) string {
	if d == nil {
		return "—"
	}
	return d.StringFixed(places)
}

func percentText(d *decimal.Decimal) string {
	if d == nil {
		return "—"
	}
	return d.Shift(2).StringFixed(1) + "%"
}

// stateLabel writes a disbursement state in words: awaiting_approval → awaiting approval.
func stateLabel(state string) string { return strings.ReplaceAll(state, "_", " ") }

func countText(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
