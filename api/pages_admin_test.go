package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/payouts"
)

// adminFixture is the payouts fixture (seeded: p1 funded with 1000.00, ana and ben enrolled)
// with two admins who are people, adm1 (who requests) and adm2 (who approves), and a sandbox
// that fails the payouts of 77.00 while failing is set.
type adminFixture struct {
	*netFixture
	adm1, adm2 string
	failing    *atomic.Bool
}

func setupAdmin(t *testing.T, river bool) *adminFixture {
	t.Helper()
	failing := &atomic.Bool{}
	failing.Store(true)
	cfg := app.Config{Payouts: app.Payouts{Sandbox: payouts.SandboxConfig{Fail: func(p payouts.Payout) string {
		if failing.Load() && p.Amount.Equal(decimal.NewFromInt(77)) {
			return "account closed at the bank"
		}
		return ""
	}}}}
	f := &adminFixture{netFixture: setupPayouts(t, river, cfg), failing: failing}
	f.seed(t)
	f.adm1 = f.newToken(t, access.Admin, "adm1")
	f.adm2 = f.newToken(t, access.Admin, "adm2")
	return f
}

// adminSession is a browser-like client signed in, with its session's CSRF token.
type adminSession struct {
	t    *testing.T
	c    *http.Client
	base string
	csrf string
}

func (f *adminFixture) session(t *testing.T, secret string) *adminSession {
	t.Helper()
	c := pageClient(true)
	signIn(t, c, f.srv.URL, secret)
	return &adminSession{t: t, c: c, base: f.srv.URL, csrf: csrfOf(t, getPage(t, c, f.srv.URL+"/"))}
}

func (s *adminSession) get(path string) page {
	s.t.Helper()
	return getPage(s.t, s.c, s.base+path)
}

// post sends a form with the session's CSRF token (unless the form has one).
func (s *adminSession) post(path string, form url.Values) page {
	s.t.Helper()
	values := url.Values{}
	for k, v := range form {
		values[k] = v
	}
	if _, ok := values["csrf"]; !ok {
		values.Set("csrf", s.csrf)
	}
	return postForm(s.t, s.c, s.base+path, values)
}

// follow is the page a 303 leads to.
func (s *adminSession) follow(p page) page {
	s.t.Helper()
	require.Equal(s.t, http.StatusSeeOther, p.status, p.body)
	require.True(s.t, strings.HasPrefix(p.location, "/admin/"), "redirected within the admin pages: %q", p.location)
	return s.get(p.location)
}

// awaiting is a manual grant by adm1 to ana, awaiting approval.
func (f *adminFixture) awaiting(t *testing.T, amount, key string) string {
	t.Helper()
	g := f.grant(t, f.adm1, "ana", amount, key)
	require.Equal(t, "awaiting_approval", g["state"], g)
	return g["id"].(string)
}

// failed is a grant of 77.00 to ana submitted and failed by the sandbox.
func (f *adminFixture) failed(t *testing.T, key string) string {
	t.Helper()
	g := f.grant(t, f.adm1, "ana", "77.00", key)
	require.Equal(t, "approved", g["state"], "within the auto-approve limit")
	id := g["id"].(string)
	require.NoError(t, f.app.Payouts.Submit(context.Background(), uuid.MustParse(id)))
	require.Equal(t, "failed", f.disbursement(t, id)["state"])
	return id
}

var (
	inputTag  = regexp.MustCompile(`<(input|select|textarea)\b[^>]*>`)
	idAttr    = regexp.MustCompile(`\bid="([^"]+)"`)
	typeAttr  = regexp.MustCompile(`\btype="([^"]+)"`)
	thTag     = regexp.MustCompile(`<th\b[^>]*>`)
	tableTag  = regexp.MustCompile(`<table\b`)
	formTag   = regexp.MustCompile(`<form\b[^>]*method="post"[^>]*>`)
	buttonTxt = regexp.MustCompile(`<button[^>]*>([^<]*)</button>`)
)

// requireAccessible checks what every admin page promises: every field has a label, every
// header cell a scope, every table a scrolling wrapper for phones, every form that changes
// something the CSRF token, every button words, and no script.
func requireAccessible(t *testing.T, p page) {
	t.Helper()
	body := p.body
	for _, tag := range inputTag.FindAllString(body, -1) {
		if m := typeAttr.FindStringSubmatch(tag); m != nil && (m[1] == "hidden") {
			continue
		}
		id := idAttr.FindStringSubmatch(tag)
		require.NotNil(t, id, "a field without an id cannot have a label: %s", tag)
		assert.Contains(t, body, `<label for="`+id[1]+`"`, "field %s has a label", id[1])
	}
	for _, th := range thTag.FindAllString(body, -1) {
		assert.Contains(t, th, "scope=", "header cells have a scope: %s", th)
	}
	assert.Equal(t, len(tableTag.FindAllString(body, -1)), strings.Count(body, `<div class="table-wrap"><table`),
		"every table scrolls on its own on a phone")
	for _, form := range formTag.FindAllStringIndex(body, -1) {
		end := strings.Index(body[form[1]:], "</form>")
		require.Positive(t, end)
		assert.Contains(t, body[form[1]:form[1]+end], `name="csrf"`, "a form that changes something carries the CSRF token")
	}
	for _, b := range buttonTxt.FindAllStringSubmatch(body, -1) {
		assert.NotEmpty(t, strings.TrimSpace(b[1]), "buttons say what they do")
	}
	assert.NotContains(t, strings.ToLower(body), "<script")
	assert.Contains(t, p.header.Get("Content-Security-Policy"), "default-src 'self'")
}

// TestAdminPagesByRole: admins see every page with its forms; auditors see every page and
// no form, and their POSTs are refused (403, audited); coaches and participants are refused
// the lists and dashboards; a disbursement's own page follows GET /v1/disbursements/{id}
// (its person and her coach may read it, without forms); signed-out browsers go to sign in.
func TestAdminPagesByRole(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	waiting := f.awaiting(t, "150.00", "role-1")
	failed := f.failed(t, "role-2")
	pages := []string{"/admin/approvals", "/admin/failed", "/admin/reconciliation", "/admin/programs", "/admin/programs/p1",
		"/admin/disbursements/" + waiting, "/admin/disbursements/" + failed}

	admin := f.session(t, f.adm2)
	for _, path := range pages {
		p := admin.get(path)
		require.Equal(t, http.StatusOK, p.status, "%s: %s", path, p.body)
		requireAccessible(t, p)
	}
	p := admin.get("/admin/approvals")
	assert.Contains(t, p.body, `action="/admin/disbursements/`+waiting+`/approve"`)
	assert.Contains(t, p.body, ">Approve 150.00 USD to Ana</button>")
	assert.Contains(t, p.body, ">Reject 150.00 USD to Ana</button>")
	assert.Contains(t, p.body, `aria-current="page">Approvals</a>`)
	p = admin.get("/admin/failed")
	assert.Contains(t, p.body, ">Retry 77.00 USD to Ana</button>")
	assert.Contains(t, admin.get("/admin/reconciliation").body, ">Run reconciliation now</button>")

	auditor := f.session(t, f.auditor)
	for _, path := range pages {
		p := auditor.get(path)
		require.Equal(t, http.StatusOK, p.status, "%s: %s", path, p.body)
		requireAccessible(t, p)
		assert.NotRegexp(t, `action="/admin/(disbursements|reconciliation)`, p.body, "%s: an auditor is shown no form", path)
	}
	before := f.networkRows(t)
	denials := f.denials(t)
	for _, post := range []string{"/admin/disbursements/" + waiting + "/approve", "/admin/disbursements/" + waiting + "/reject",
		"/admin/disbursements/" + failed + "/retry", "/admin/reconciliation"} {
		p := auditor.post(post, url.Values{"reason": {"auditing"}})
		assert.Equal(t, http.StatusForbidden, p.status, "%s: %s", post, p.body)
		assert.Contains(t, p.body, "auditors read and change nothing")
	}
	assert.Equal(t, before, f.networkRows(t), "an auditor changed nothing")
	assert.Equal(t, denials+4, f.denials(t), "each refusal is in the audit trail")
	assert.Equal(t, 0, f.count(t, `SELECT count(*) FROM payouts_reconciliations`))

	for name, secret := range map[string]string{"coach": f.cy, "participant": f.ana, "other participant": f.ben} {
		s := f.session(t, secret)
		for _, path := range pages[:5] {
			p := s.get(path)
			assert.Equal(t, http.StatusForbidden, p.status, "%s %s: %s", name, path, p.body)
		}
		p := s.post("/admin/disbursements/"+waiting+"/approve", nil)
		assert.Equal(t, http.StatusForbidden, p.status, "%s approves: %s", name, p.body)
	}
	// A disbursement's page is readable as GET /v1/disbursements/{id} is: by ana (hers) and
	// cy (her coach), without forms; not by ben.
	for _, secret := range []string{f.ana, f.cy} {
		p := f.session(t, secret).get("/admin/disbursements/" + waiting)
		require.Equal(t, http.StatusOK, p.status, p.body)
		assert.NotContains(t, p.body, `action="/admin/disbursements/`)
	}
	assert.Equal(t, http.StatusForbidden, f.session(t, f.ben).get("/admin/disbursements/"+waiting).status)

	// Signed out: to the sign-in page, for reads and forms alike.
	bare := pageClient(false)
	for _, path := range pages {
		p := getPage(t, bare, f.srv.URL+path)
		assert.Equal(t, http.StatusSeeOther, p.status, path)
		assert.Equal(t, "/sign-in", p.location)
	}
	p = postForm(t, bare, f.srv.URL+"/admin/disbursements/"+waiting+"/approve", url.Values{})
	assert.Equal(t, "/sign-in", p.location)

	// Unknown records: 404 pages.
	assert.Equal(t, http.StatusNotFound, admin.get("/admin/programs/nope").status)
	assert.Equal(t, http.StatusNotFound, admin.get("/admin/disbursements/0193a0a0-0000-7000-8000-000000000000").status)
	assert.Equal(t, http.StatusNotFound, admin.get("/admin/disbursements/nope").status)
}

// TestAdminApprovalForms: approving and rejecting through the approvals page — CSRF, four
// eyes shown on the page, one approval, dual control (one of two, then two), a reason
// required to reject, the cap, a state that moved on, the filters, and messages that echo
// nothing of the request.
func TestAdminApprovalForms(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	adm3 := f.newToken(t, access.Admin, "adm3")
	requireStatus(t, f.do(t, "POST", "/v1/programs/p1/fund", `{"amount":"5000.00"}`, "Idempotency-Key", "donor-2"), http.StatusCreated)
	one := f.awaiting(t, "150.00", "forms-1")
	requester, approver := f.session(t, f.adm1), f.session(t, f.adm2)
	back := url.Values{"return_to": {"/admin/approvals?state=awaiting_approval&person=ana"}}

	// Without the session's CSRF token: refused, nothing changed.
	before := f.networkRows(t)
	p := approver.post("/admin/disbursements/"+one+"/approve", url.Values{"csrf": {"forged"}})
	assert.Equal(t, http.StatusForbidden, p.status)
	assert.Contains(t, p.body, "This form expired or did not come from Tandem")
	p = approver.post("/admin/disbursements/"+one+"/approve", url.Values{"csrf": {""}})
	assert.Equal(t, http.StatusForbidden, p.status)
	assert.Equal(t, before, f.networkRows(t))

	// The requester sees why they cannot approve, and a forged form is refused on the page.
	p = requester.get("/admin/approvals")
	assert.Contains(t, p.body, "You requested it, so another admin must approve it (four eyes).")
	assert.NotContains(t, p.body, `/approve"`)
	assert.Contains(t, p.body, ">Reject 150.00 USD to Ana</button>", "the requester may still reject it")
	denials := f.denials(t)
	p = requester.post("/admin/disbursements/"+one+"/approve", back)
	assert.Equal(t, http.StatusForbidden, p.status)
	assert.Contains(t, p.body, `role="alert"`)
	assert.Contains(t, p.body, "you requested it; another admin must approve")
	assert.Equal(t, denials+1, f.denials(t), "the refusal is audited")
	assert.Equal(t, "awaiting_approval", f.disbursement(t, one)["state"])

	// Another admin approves with a note: back to the list, filters kept, a message.
	p = approver.post("/admin/disbursements/"+one+"/approve", url.Values{"note": {"receipt checked"},
		"return_to": back["return_to"], "destination": {"sandbox:ana"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	loc, err := url.Parse(p.location)
	require.NoError(t, err)
	assert.Equal(t, "/admin/approvals", loc.Path)
	assert.Equal(t, "ana", loc.Query().Get("person"), "the filters are kept")
	assert.Equal(t, "approve", loc.Query().Get("done"))
	p = approver.follow(p)
	assert.Contains(t, p.body, `<p class="flash" role="status">Approved 150.00 USD to Ana: it is now approved.</p>`)
	d := f.disbursement(t, one)
	assert.Equal(t, "approved", d["state"])
	assert.Equal(t, "receipt checked", obj(list(d["approvals"])[0])["reason"])
	assert.Equal(t, 1, f.count(t, `SELECT count(*) FROM audit_log WHERE action = 'payouts.disbursement.approve' AND record = $1
		AND person_id = 'adm2' AND outcome = 'ok'`, "disbursement:"+one), "the approval is in the audit trail")

	// Dual control: two different admins.
	big := f.awaiting(t, "600.00", "forms-2")
	p = approver.get("/admin/disbursements/" + big)
	assert.Contains(t, p.body, "0 of 2 approvals — dual control at or above 500.00 USD")
	p = approver.follow(approver.post("/admin/disbursements/"+big+"/approve", url.Values{"return_to": {"/admin/disbursements/" + big},
		"destination": {"sandbox:ana"}}))
	assert.Contains(t, p.body, "Your approval of 600.00 USD to Ana is recorded: 1 of 2 approvals — dual control at or above 500.00 USD.")
	assert.Contains(t, p.body, "1 of 2 approvals — dual control at or above 500.00 USD: person:adm2")
	assert.Contains(t, p.body, "You approved it; another admin must give the second approval.")
	assert.NotContains(t, p.body, `/approve"`)
	p = approver.post("/admin/disbursements/"+big+"/approve", url.Values{"return_to": {"/admin/disbursements/" + big}})
	assert.Equal(t, http.StatusForbidden, p.status)
	assert.Contains(t, p.body, "Not approved — four eyes")
	assert.Contains(t, p.body, "you already approved it")
	assert.Contains(t, p.body, "<h1>600.00 USD to Ana</h1>", "the page the form was on, with the refusal")
	third := f.session(t, adm3)
	p = third.follow(third.post("/admin/disbursements/"+big+"/approve", url.Values{"return_to": back["return_to"], "destination": {"sandbox:ana"}}))
	assert.Contains(t, p.body, "Approved 600.00 USD to Ana: it is now approved.")
	assert.ElementsMatch(t, []string{"person:adm2", "person:adm3"}, approvers(f.disbursement(t, big)))

	// A rejection needs a reason.
	rej := f.awaiting(t, "120.00", "forms-3")
	for _, reason := range []string{"", "   "} {
		p = approver.post("/admin/disbursements/"+rej+"/reject", url.Values{"reason": {reason}, "return_to": back["return_to"]})
		assert.Equal(t, http.StatusUnprocessableEntity, p.status)
		assert.Contains(t, p.body, "Nothing was changed — check the form: reason: required (up to 500 characters).")
		assert.Contains(t, p.body, `value="ana"`, "the list is shown again with its filters")
	}
	assert.Equal(t, "awaiting_approval", f.disbursement(t, rej)["state"])
	fund := f.posted(t, "program/p1/fund")
	p = approver.follow(approver.post("/admin/disbursements/"+rej+"/reject", url.Values{"reason": {"duplicate request"}}))
	assert.Contains(t, p.body, "Rejected 120.00 USD to Ana; the money is back in the program&#39;s fund.")
	assert.Equal(t, "rejected", f.disbursement(t, rej)["state"])
	assert.True(t, decimal.RequireFromString(fund).Add(decimal.NewFromInt(120)).Equal(decimal.RequireFromString(f.posted(t, "program/p1/fund"))))

	// A state that moved on: 409, in words.
	p = approver.post("/admin/disbursements/"+rej+"/reject", url.Values{"reason": {"again"}})
	assert.Equal(t, http.StatusConflict, p.status)
	assert.Contains(t, p.body, "no longer in a state that allows this")
	p = third.post("/admin/disbursements/"+one+"/approve", nil)
	assert.Equal(t, http.StatusConflict, p.status)

	// Filters: state, person, program, source; a bad state is refused in words.
	pending := f.awaiting(t, "200.00", "forms-4")
	p = approver.get("/admin/approvals")
	assert.Contains(t, p.body, "1 disbursement awaiting approval, newest first.")
	assert.Contains(t, p.body, "200.00 USD to Ana")
	assert.NotContains(t, p.body, "600.00 USD to Ana")
	p = approver.get("/admin/approvals?state=any")
	assert.Contains(t, p.body, "4 disbursements, newest first.")
	p = approver.get("/admin/approvals?state=rejected")
	assert.Contains(t, p.body, "120.00 USD to Ana")
	assert.NotContains(t, p.body, "200.00 USD to Ana")
	assert.Contains(t, p.body, `<option value="rejected" selected>rejected</option>`)
	for _, q := range []string{"state=any&person=ben", "state=any&program=nope", "state=any&source=award"} {
		p = approver.get("/admin/approvals?" + q)
		assert.Equal(t, http.StatusOK, p.status)
		assert.Contains(t, p.body, "No disbursements match these filters.", q)
	}
	p = approver.get("/admin/approvals?state=any&source=manual&program=p1&person=ana")
	assert.Contains(t, p.body, "4 disbursements")
	p = approver.get("/admin/approvals?state=bogus")
	assert.Equal(t, http.StatusUnprocessableEntity, p.status)
	assert.Contains(t, p.body, "is not a disbursement state")

	// Messages name a change and a record only; nothing of the request is echoed.
	for _, q := range []string{"done=<script>alert(1)</script>&id=" + one, "done=approve&id=<b>x</b>", "done=reconcile&run=<i>1</i>",
		"done=approve&id=" + uuid.NewString()} {
		p = approver.get("/admin/approvals?" + q)
		assert.Equal(t, http.StatusOK, p.status)
		assert.NotContains(t, p.body, `class="flash"`, q)
		assert.NotContains(t, p.body, "<script>alert")
		assert.NotContains(t, p.body, "<b>x</b>")
	}
	// A form cannot send the browser elsewhere, nor carry parameters other than the filters.
	other := f.awaiting(t, "130.00", "forms-5")
	p = approver.post("/admin/disbursements/"+other+"/approve", url.Values{"return_to": {"https://evil.example/admin/approvals?done=x"}, "destination": {"sandbox:ana"}})
	require.Equal(t, http.StatusSeeOther, p.status)
	assert.True(t, strings.HasPrefix(p.location, "/admin/approvals?done=approve&id="+other), p.location)
	other = f.awaiting(t, "140.00", "forms-6")
	p = approver.post("/admin/disbursements/"+other+"/approve", url.Values{"return_to": {"//evil.example/x"}, "destination": {"sandbox:ana"}})
	assert.True(t, strings.HasPrefix(p.location, "/admin/approvals?"), p.location)
	other = f.awaiting(t, "141.00", "forms-7")
	p = approver.post("/admin/disbursements/"+other+"/approve", url.Values{"return_to": {"/admin/failed?state=failed&evil=1&done=x"}, "destination": {"sandbox:ana"}})
	assert.Equal(t, "/admin/failed?done=approve&id="+other+"&state=failed", p.location)

	// The cap: 1161.00 approved this month; 1200.00 is the monthly cap.
	requireStatus(t, f.do(t, "POST", "/v1/programs/p1/payout-policy", `{"monthly_cap":"1200.00"}`), http.StatusOK)
	p = approver.post("/admin/disbursements/"+pending+"/approve", url.Values{"destination": {"sandbox:ana"}})
	assert.Equal(t, http.StatusConflict, p.status)
	assert.Contains(t, p.body, "past the program&#39;s monthly or yearly cap")
	assert.Contains(t, p.body, "past the monthly cap of 1200.00 USD")
	assert.Equal(t, "awaiting_approval", f.disbursement(t, pending)["state"])
	assert.Empty(t, list(f.disbursement(t, pending)["approvals"]), "a refused approval is not counted")
}

// requireSameMetrics: the dashboard's figures (network.Store.ProgramDashboard) are those of
// GET /v1/programs/{id}/metrics (network.Store.ProgramMetrics), by other queries.
func requireSameMetrics(t testing.TB, a *app.App, program string) {
	t.Helper()
	ctx := context.Background()
	want, err := a.Network.ProgramMetrics(ctx, program)
	require.NoError(t, err)
	now := time.Now().UTC()
	got, err := a.Network.ProgramDashboard(ctx, program, now.AddDate(0, -11, 0), now)
	require.NoError(t, err)
	wantJSON, err := json.Marshal(want)
	require.NoError(t, err)
	gotJSON, err := json.Marshal(got.Metrics)
	require.NoError(t, err)
	require.JSONEq(t, string(wantJSON), string(gotJSON))
	require.Len(t, got.Months, 12)
	// This month's economic connectedness, month by month, is today's.
	last := got.Months[11]
	require.Equal(t, now.Format("2006-01"), last.Month)
	if want.EconomicConnectedness == nil {
		require.Nil(t, last.EconomicConnectedness)
	} else {
		require.NotNil(t, last.EconomicConnectedness)
		require.True(t, want.EconomicConnectedness.Equal(*last.EconomicConnectedness), "%s and %s", want.EconomicConnectedness, last.EconomicConnectedness)
	}
}

func approvers(d map[string]any) []string {
	var out []string
	for _, a := range list(d["approvals"]) {
		out = append(out, obj(a)["approver"].(string))
	}
	return out
}

// TestAdminFailedAndReconciliation: a failed payout with the provider's reason, its next
// automatic retry and forfeit date, retried from the page and paid; a payout the provider
// returned, found by a reconciliation run from the page, shown with what the run applied and
// listed among the payouts to retry; differences listed.
func TestAdminFailedAndReconciliation(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	ctx := context.Background()
	failed := f.failed(t, "failed-1")
	admin := f.session(t, f.adm2)

	p := admin.get("/admin/failed")
	require.Equal(t, http.StatusOK, p.status, p.body)
	assert.Contains(t, p.body, "77.00 USD to Ana")
	assert.Contains(t, p.body, "account closed at the bank", "the provider's reason")
	var failedAt time.Time
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT max(at) FROM payouts_transitions WHERE disbursement_id = $1 AND to_state = 'failed'`,
		failed).Scan(&failedAt))
	assert.Contains(t, p.body, failedAt.Add(time.Hour).UTC().Format("2 Jan 2006 15:04 UTC"), "the first automatic retry, an hour later")
	assert.Contains(t, p.body, failedAt.AddDate(0, 0, 30).UTC().Format("2 Jan 2006"), "forfeited after the 30 days of the default policy")
	assert.Contains(t, p.body, `<td class="amount">1</td>`, "one attempt")
	assert.Contains(t, p.body, "1 disbursement, newest first.")
	p = admin.get("/admin/disbursements/" + failed)
	assert.Contains(t, p.body, "account closed at the bank")
	assert.Contains(t, p.body, "<h2>Payout attempts</h2>")

	// Retried from the page once the bank account works: a new attempt, paid.
	f.failing.Store(false)
	p = admin.follow(admin.post("/admin/disbursements/"+failed+"/retry", url.Values{"return_to": {"/admin/failed"}}))
	assert.Contains(t, p.body, "Sent 77.00 USD to Ana again: it is now approved.")
	assert.Contains(t, p.body, "No failed or returned payouts.")
	require.NoError(t, f.app.Payouts.Submit(ctx, uuid.MustParse(failed)))
	d := f.disbursement(t, failed)
	assert.Equal(t, "paid", d["state"])
	assert.Len(t, list(d["attempts"]), 2)
	assert.Contains(t, states(d), "approved")
	assert.Equal(t, 1, f.count(t, `SELECT count(*) FROM audit_log WHERE action = 'payouts.disbursement.retry' AND record = $1`, "disbursement:"+failed))
	p = admin.post("/admin/disbursements/"+failed+"/retry", nil)
	assert.Equal(t, http.StatusConflict, p.status, "a paid payout is not retried")
	assert.Contains(t, p.body, "only failed or returned disbursements are retried")

	// The provider gives a paid payout back; nobody told the ledger. A reconciliation run
	// from the page finds it, applies it and the payout is listed to retry.
	sandbox := f.app.Payouts.Provider().(*payouts.Sandbox)
	ref := obj(list(d["attempts"])[1])["provider_ref"].(string)
	require.NoError(t, sandbox.Reverse(ctx, ref, decimal.NewFromInt(77)))
	// And a transfer the ledger never made.
	_, err := f.pool.Exec(ctx, `INSERT INTO payouts_sandbox_transfers (ref, idempotency_key, disbursement_id, amount, currency, destination,
		outcome, settles_at) VALUES ('sbx_stray', 'stray', $1, 12.34, 'USD', 'sandbox:nobody', 'paid', now())`, uuid.New())
	require.NoError(t, err)

	p = admin.get("/admin/reconciliation")
	assert.Contains(t, p.body, "No reconciliation has run yet.")
	p = admin.post("/admin/reconciliation", url.Values{"days": {"many"}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.status)
	assert.Contains(t, p.body, `days: &#34;many&#34; is not a whole number of days`)
	p = admin.post("/admin/reconciliation", url.Values{"days": {"1000"}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.status)
	assert.Contains(t, p.body, "from 1 to 400")
	p = admin.follow(admin.post("/admin/reconciliation", url.Values{"days": {"7"}}))
	require.Equal(t, http.StatusOK, p.status, p.body)
	assert.Contains(t, p.body, "finished: 2 differences.")
	assert.Contains(t, p.body, "missing in ledger")
	assert.Contains(t, p.body, "<td>returned: ledger 0, provider 77</td><td>yes: the provider&#39;s outcome was recorded</td>")
	assert.Contains(t, p.body, "sbx_stray")
	assert.Contains(t, p.body, `<td class="amount">12.34</td>`)
	assert.Contains(t, p.body, "1 change applied from the provider&#39;s records")
	assert.Contains(t, p.body, `<a href="/admin/disbursements/`+failed+`">`+failed+`</a>: returned`)
	requireAccessible(t, p)

	require.Equal(t, "returned", f.disbursement(t, failed)["state"])
	p = admin.get("/admin/failed")
	assert.Contains(t, p.body, "77.00 USD returned")
	assert.Contains(t, p.body, ">Retry 77.00 USD to Ana</button>")
	assert.Contains(t, p.body, "1 disbursement, newest first.")
	p = admin.get("/admin/failed?state=failed")
	assert.Contains(t, p.body, "No failed or returned payouts.")
}

// TestAdminDashboard: a program's dashboard after a milestone was reached and paid, with
// bands on both sides of the connection: the figures of DESIGN.md §5 and the three charts.
func TestAdminDashboard(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, true)
	requireStatus(t, f.do(t, "POST", "/v1/people/ana/band", `{"band":"low","reason":"intake form"}`), http.StatusOK)
	requireStatus(t, f.do(t, "POST", "/v1/people/mo/band", `{"band":"high","reason":"intake form"}`), http.StatusOK)
	requireStatus(t, f.do(t, "POST", "/v1/rules", ruleBody("p1", mentorRule)), http.StatusCreated)
	for i := range 4 {
		id := f.logConversation(t, 10-i, fmt.Sprintf("dash-%d", i))
		requireStatus(t, f.as(t, f.cy, "POST", "/v1/conversations/"+id+"/verify", `{}`), http.StatusOK)
	}
	var award string
	waitFor(t, "the award paid out", func() bool {
		return f.pool.QueryRow(context.Background(), `SELECT id::text FROM payouts_disbursements WHERE source = 'award' AND state = 'paid'`).Scan(&award) == nil
	})
	f.awaiting(t, "150.00", "dash-grant")

	// The dashboard's metrics are ProgramMetrics', computed by other queries.
	requireSameMetrics(t, f.app, "p1")

	for _, secret := range []string{f.adm2, f.auditor} {
		s := f.session(t, secret)
		p := s.get("/admin/programs")
		require.Equal(t, http.StatusOK, p.status, p.body)
		assert.Contains(t, p.body, `<a href="/admin/programs/p1">Pilot</a>`)
		assert.Contains(t, p.body, "800.00 USD", "the fund's available balance: 1000.00 less the award and the grant")
		requireAccessible(t, p)

		start := time.Now()
		p = s.get("/admin/programs/p1")
		t.Logf("dashboard drawn in %v", time.Since(start))
		require.Equal(t, http.StatusOK, p.status, p.body)
		requireAccessible(t, p)
		body := p.body
		for _, want := range []string{
			"<h1>Pilot dashboard</h1>",
			"Approvals: none up to 100.00 USD, one admin above, two different admins at or above 500.00 USD.",
			"Fund balance</div><div class=\"figure\">800.00 USD",
			"Released</div><div class=\"figure\">200.00 USD",
			"Paid</div><div class=\"figure\">50.00 USD",
			"Pending</div><div class=\"figure\">150.00 USD",
			"Dollars per milestone</div><div class=\"figure\">50.00 USD",
			"Participants</div><div class=\"figure\">2",
			"Economic connectedness</div><div class=\"figure\">2.00",
			"Cross-class share</div><div class=\"figure\">100.0%",
			"Milestones reached</div><div class=\"figure\">1",
			"Near-peer conversion</div><div class=\"figure\">0.0%",
			"Funds released per month", "Milestones reached per month", "Economic connectedness over time",
			"<th scope=\"row\">mentor</th><td class=\"amount\">1</td>",
			"<th scope=\"row\">paid</th><td class=\"amount\">1</td><td class=\"amount\">50.00 USD</td>",
			"<th scope=\"row\">awaiting approval</th><td class=\"amount\">1</td><td class=\"amount\">150.00 USD</td>",
		} {
			assert.Contains(t, body, want)
		}
		assert.Equal(t, 3, strings.Count(body, `<svg xmlns="http://www.w3.org/2000/svg" role="img"`), "three charts")
		month := time.Now().UTC().Format("January 2006")
		assert.Contains(t, body, "<th scope=\"row\">"+month+"</th><td class=\"amount\">200.00 USD</td><td class=\"amount\">50.00 USD</td>",
			"this month's released and paid, in the chart's table")
		assert.Contains(t, body, "<title>"+month+": 2.00</title>", "this month's economic connectedness on the line")
		assert.Contains(t, body, "<caption>Conversations of the program's participants (retracted ones left out)</caption>")
	}
}

// TestAdminApprovalDestination: the approvals queue and a disbursement's page show the payout
// destination next to the approve form, which posts it back. A person who sets their own
// destination after the page was shown does not get the approval for it: the form is refused
// (409) with the new destination shown, and approving that one works.
func TestAdminApprovalDestination(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	one := f.awaiting(t, "150.00", "dest-1")
	approver := f.session(t, f.adm2)
	shown := `<dd class="destination"><code>sandbox:ana</code>`
	hidden := `<input type="hidden" name="destination" value="sandbox:ana">`
	for _, path := range []string{"/admin/approvals", "/admin/disbursements/" + one} {
		p := approver.get(path)
		require.Equal(t, http.StatusOK, p.status, p.body)
		assert.Contains(t, p.body, shown, path)
		assert.Contains(t, p.body, hidden, path)
	}

	requireStatus(t, f.as(t, f.ana, "POST", "/v1/people/ana/payout-destination", `{"account":"sandbox:ana-b"}`), http.StatusOK)
	back := "/admin/disbursements/" + one
	p := approver.post("/admin/disbursements/"+one+"/approve", url.Values{"destination": {"sandbox:ana"}, "return_to": {back}})
	assert.Equal(t, http.StatusConflict, p.status)
	assert.Contains(t, p.body, "Not approved — the person&#39;s payout destination changed since it was shown to you")
	assert.Contains(t, p.body, "changed to sandbox:ana-b since it was shown (sandbox:ana)")
	assert.Contains(t, p.body, `<dd class="destination"><code>sandbox:ana-b</code>`, "the page shows the new one")
	assert.Contains(t, p.body, `<input type="hidden" name="destination" value="sandbox:ana-b">`)
	assert.Equal(t, "awaiting_approval", f.disbursement(t, one)["state"])
	assert.Empty(t, list(f.disbursement(t, one)["approvals"]), "a refused approval is not counted")

	// A form without the destination is refused: the page always sends it.
	p = approver.post("/admin/disbursements/"+one+"/approve", url.Values{"return_to": {back}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.status)
	assert.Contains(t, p.body, "destination: required")

	p = approver.follow(approver.post("/admin/disbursements/"+one+"/approve", url.Values{"destination": {"sandbox:ana-b"}, "return_to": {back}}))
	assert.Contains(t, p.body, "Approved 150.00 USD to Ana")
	d := f.disbursement(t, one)
	assert.Equal(t, "approved", d["state"])
	assert.Equal(t, "sandbox:ana-b", obj(list(d["approvals"])[0])["destination"])
}
