package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
	"golang.org/x/time/rate"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/api"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/payouts"
)

// setupPayouts is setupNetwork with the app's configuration (a webhook secret): the server
// on internal/app, River's workers running when river is set, and the same tokens.
func setupPayouts(t *testing.T, river bool, cfg app.Config) *netFixture {
	t.Helper()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a, err := app.New(pool, cfg)
	require.NoError(t, err)
	if river {
		require.NoError(t, a.Start(context.Background()))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = a.Stop(ctx)
		})
	} else {
		t.Cleanup(a.Ledger.Close)
	}
	srv := httptest.NewServer(api.New(api.Config{Pool: pool, Ledger: a.Ledger, Access: a.Access, Network: a.Network,
		Payouts: a.Payouts, Jobs: a.Jobs, WriteRate: rate.Inf}))
	t.Cleanup(srv.Close) // runs before the app stops
	f := &netFixture{testBundle: &testBundle{srv: srv, pool: pool, access: a.Access}, app: a,
		now: time.Now().UTC(), program: "p1"}
	f.token = f.newToken(t, access.Admin, "")
	f.auditor = f.newToken(t, access.Auditor, "")
	f.ana = f.newToken(t, access.Participant, "ana")
	f.ben = f.newToken(t, access.Participant, "ben")
	f.cy = f.newToken(t, access.Coach, "cy")
	return f
}

// walkRecords are the disbursements and commitments the route walk of network_test.go names
// in its paths, made on first use, one per fixture and person.
var walkRecords = struct {
	sync.Mutex
	ids map[string]string
}{ids: map[string]string{}}

func (f *netFixture) walkRecord(t *testing.T, kind, person string, make func() string) string {
	t.Helper()
	walkRecords.Lock()
	defer walkRecords.Unlock()
	key := f.srv.URL + " " + kind + " " + person
	if id, ok := walkRecords.ids[key]; ok {
		return id
	}
	id := make()
	walkRecords.ids[key] = id
	return id
}

// enrolled says whether person is enrolled in p1 (manual disbursements need it).
func (f *netFixture) enrolled(t *testing.T, person string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT 1 FROM network_enrolments WHERE program_id = 'p1' AND person_id = $1)`, person).Scan(&ok))
	return ok
}

// requesterToken is an admin token made with a person, adm0, made on first use (not safe for
// a concurrent first use): a manual disbursement needs a requester who is a person (four
// eyes), and the fixture's admin token (f.token) has none. adm0 may not approve what it
// requested; another admin who is a person may.
func (f *netFixture) requesterToken(t *testing.T) string {
	t.Helper()
	if f.requester == "" {
		f.requester = f.newToken(t, access.Admin, "adm0")
	}
	return f.requester
}

// disbursementOf is a manual disbursement of 150.00 to person, requested by adm0, an admin
// who is a person (above the seed's auto-approve limit: it awaits approval), or "" for
// someone not enrolled in p1.
func (f *netFixture) disbursementOf(t *testing.T, person string) string {
	t.Helper()
	if person == "" || !f.enrolled(t, person) {
		return ""
	}
	return f.walkRecord(t, "disbursement", person, func() string {
		r := f.as(t, f.requesterToken(t), "POST", "/v1/disbursements", grantBody(person, "150.00", "walk: a grant"),
			"Idempotency-Key", "walk-"+person)
		requireStatus(t, r, http.StatusCreated)
		require.Equal(t, "person:adm0", r.body["requested_by"], r.raw)
		return r.body["id"].(string)
	})
}

// commitmentOf is a commitment of two instalments of 40.00 to person, the first due in 30 days.
func (f *netFixture) commitmentOf(t *testing.T, person string) string {
	t.Helper()
	return f.walkRecord(t, "commitment", person, func() string {
		r := f.as(t, f.requesterToken(t), "POST", "/v1/commitments", fmt.Sprintf(`{"program":"p1","person":%q,"amount":"40.00","instalments":2,
			"every_months":3,"first_due":%q}`, person, f.day(30)), "Idempotency-Key", "walk-commitment-"+person)
		requireStatus(t, r, http.StatusCreated)
		return r.body["id"].(string)
	})
}

func grantBody(person, amount, reason string) string {
	return fmt.Sprintf(`{"program":"p1","person":%q,"amount":%q,"reason":%q}`, person, amount, reason)
}

// grant creates a manual disbursement as the admin token secret (one made with a person:
// others are refused, four-eyes) and returns it.
func (f *netFixture) grant(t *testing.T, secret, person, amount, key string) map[string]any {
	t.Helper()
	r := f.as(t, secret, "POST", "/v1/disbursements", grantBody(person, amount, "grant "+key), "Idempotency-Key", key)
	requireStatus(t, r, http.StatusCreated)
	require.NotEmpty(t, r.body["id"], r.raw)
	return r.body
}

// disbursement reads one as the admin.
func (f *netFixture) disbursement(t *testing.T, id string) map[string]any {
	t.Helper()
	r := f.do(t, "GET", "/v1/disbursements/"+id, "")
	requireStatus(t, r, http.StatusOK)
	return r.body
}

// waitDisbursement polls a disbursement until it reaches state.
func (f *netFixture) waitDisbursement(t *testing.T, id, state string) map[string]any {
	t.Helper()
	var d map[string]any
	waitFor(t, "disbursement "+id+" "+state, func() bool {
		d = f.disbursement(t, id)
		return d["state"] == state
	})
	return d
}

// posted is an account's posted balance, read over HTTP as the admin.
func (f *netFixture) posted(t *testing.T, account string) string {
	t.Helper()
	r := f.do(t, "GET", "/v1/ledger/balances/"+account, "")
	requireStatus(t, r, http.StatusOK)
	return r.body["posted"].(string)
}

// requireAmount compares amounts as numbers: "500" and "500.00" are the same threshold.
func requireAmount(t *testing.T, want string, got any, msgAndArgs ...any) {
	t.Helper()
	s, ok := got.(string)
	require.True(t, ok, "amount %v is not a string", got)
	g, err := decimal.NewFromString(s)
	require.NoError(t, err)
	require.True(t, decimal.RequireFromString(want).Equal(g), append([]any{"want %s, got %s", want, s}, msgAndArgs...)...)
}

// assertProblem is requireProblem that lets the test go on: for checks of known faults,
// so that the rest of a flow is checked too.
func assertProblem(t *testing.T, r response, status int, slug string) bool {
	t.Helper()
	return assert.Equal(t, status, r.status, r.raw) &&
		assert.Equal(t, "application/problem+json", r.header.Get("Content-Type")) &&
		assert.Equal(t, api.ProblemTypePrefix+slug, r.body["type"], r.raw)
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// states lists the to-states of a disbursement's transitions.
func states(d map[string]any) []string {
	var out []string
	for _, tr := range list(d["transitions"]) {
		out = append(out, obj(tr)["to"].(string))
	}
	return out
}

// ids lists the ids of a list of disbursements.
func ids(l any) []string {
	out := []string{}
	for _, d := range list(l) {
		out = append(out, obj(d)["id"].(string))
	}
	return out
}

func (f *netFixture) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// TestDisbursementApprovalsHTTP: a manual disbursement over HTTP with River and the sandbox —
// the idempotency key, four eyes, one admin's approval, payment, and dual control.
func TestDisbursementApprovalsHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, true, app.Config{})
	f.seed(t)
	adm1 := f.newToken(t, access.Admin, "adm1")
	adm2 := f.newToken(t, access.Admin, "adm2")
	adm3 := f.newToken(t, access.Admin, "adm3")
	requireStatus(t, f.do(t, "POST", "/v1/programs/p1/fund", `{"amount":"5000.00"}`, "Idempotency-Key", "donor-2"), http.StatusCreated)
	require.Equal(t, "6000.00", f.posted(t, "program/p1/fund"))

	// Without an idempotency key, or with two that disagree: 422, and nothing is written.
	before := f.networkRows(t)
	r := f.as(t, adm1, "POST", "/v1/disbursements", grantBody("ana", "300.00", "laptop repair"))
	requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
	require.Contains(t, r.body["detail"], "idempotency_key")
	r = f.as(t, adm1, "POST", "/v1/disbursements", `{"program":"p1","person":"ana","amount":"300.00","reason":"laptop repair",
		"idempotency_key":"body-key"}`, "Idempotency-Key", "header-key")
	requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
	require.Contains(t, r.body["detail"], "idempotency_key")
	require.Equal(t, before, f.networkRows(t), "a refused disbursement writes nothing")

	// An admin token without a person may not request one (README: four-eyes, 403): the
	// same admin could otherwise request with it and approve as their person. Nothing is
	// written, and the key stays free.
	r = f.do(t, "POST", "/v1/disbursements", grantBody("ana", "300.00", "laptop repair"), "Idempotency-Key", "k1")
	requireProblem(t, r, http.StatusForbidden, "four-eyes")
	require.Contains(t, r.body["detail"], "person")
	require.Equal(t, before, f.networkRows(t), "a refused disbursement writes nothing")

	// Above the auto-approve limit (100.00), below dual control (500.00): one admin approves.
	r = f.as(t, adm1, "POST", "/v1/disbursements", grantBody("ana", "300.00", "laptop repair"), "Idempotency-Key", "k1")
	requireStatus(t, r, http.StatusCreated)
	d := r.body
	id := d["id"].(string)
	require.Equal(t, "awaiting_approval", d["state"], r.raw)
	require.EqualValues(t, 1, d["approvals_needed"])
	require.Equal(t, "300.00", d["amount"])
	require.Equal(t, "USD", d["currency"])
	require.Equal(t, "manual", d["source"])
	require.Equal(t, "ana", d["person_id"])
	require.Equal(t, "p1", d["program_id"])
	require.Equal(t, "participant/ana/wallet", d["wallet"])
	require.Equal(t, "person:adm1", d["requested_by"])
	require.Equal(t, "laptop repair", d["reason"])
	require.Equal(t, "5700.00", f.posted(t, "program/p1/fund"), "the grant moved from the fund to the wallet")
	require.Equal(t, "300.00", f.posted(t, "participant/ana/wallet"))

	// The same key again is the same disbursement, paid into the wallet once; the key with
	// another amount is refused.
	r = f.as(t, adm1, "POST", "/v1/disbursements", grantBody("ana", "300.00", "laptop repair"), "Idempotency-Key", "k1")
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, r.status, r.raw)
	require.Equal(t, id, r.body["id"], "a replay answers the first disbursement")
	r = f.as(t, adm1, "POST", "/v1/disbursements", `{"program":"p1","person":"ana","amount":"300.00","reason":"laptop repair",
		"idempotency_key":"k1"}`)
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, r.status, r.raw)
	require.Equal(t, id, r.body["id"], "the key may be sent in the body instead")
	require.Equal(t, "5700.00", f.posted(t, "program/p1/fund"))
	require.Equal(t, 1, f.count(t, `SELECT count(*) FROM payouts_disbursements WHERE person_id = 'ana'`))
	requireProblem(t, f.as(t, adm1, "POST", "/v1/disbursements", grantBody("ana", "301.00", "laptop repair"), "Idempotency-Key", "k1"),
		http.StatusConflict, "idempotency-conflict")

	// GET shows its history: made awaiting approval, no approval nor attempt yet.
	d = f.disbursement(t, id)
	require.Equal(t, []string{"awaiting_approval"}, states(d), d)
	first := obj(list(d["transitions"])[0])
	require.Contains(t, first["reason"], "laptop repair")
	require.Empty(t, list(d["approvals"]))
	require.Empty(t, list(d["attempts"]))
	// Who may read it: its person, her coach, auditors; not another participant.
	requireStatus(t, f.as(t, f.ana, "GET", "/v1/disbursements/"+id, ""), http.StatusOK)
	requireStatus(t, f.as(t, f.cy, "GET", "/v1/disbursements/"+id, ""), http.StatusOK)
	requireStatus(t, f.as(t, f.auditor, "GET", "/v1/disbursements/"+id, ""), http.StatusOK)
	requireProblem(t, f.as(t, f.ben, "GET", "/v1/disbursements/"+id, ""), http.StatusForbidden, "forbidden")
	requireProblem(t, f.do(t, "GET", "/v1/disbursements/0193a0a0-0000-7000-8000-000000000000", ""), http.StatusNotFound, "not-found")
	requireProblem(t, f.do(t, "GET", "/v1/disbursements/nope", ""), http.StatusNotFound, "not-found")

	// Four eyes: the requester may not approve (README: four-eyes, 403), nor an admin token
	// without a person, nor an auditor or the participant.
	assertProblem(t, f.as(t, adm1, "POST", "/v1/disbursements/"+id+"/approve", `{"reason":"mine"}`), http.StatusForbidden, "four-eyes")
	r = f.do(t, "POST", "/v1/disbursements/"+id+"/approve", `{}`)
	requireProblem(t, r, http.StatusForbidden, "forbidden")
	require.Contains(t, r.body["detail"], "person")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/disbursements/"+id+"/approve", `{}`), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.ana, "POST", "/v1/disbursements/"+id+"/approve", `{}`), http.StatusForbidden, "forbidden")
	d = f.disbursement(t, id)
	require.Equal(t, "awaiting_approval", d["state"])
	require.Empty(t, list(d["approvals"]), "no refused approval is counted")

	// Approving a disbursement that does not exist: 404 to an admin who is a person (not a
	// four-eyes refusal); still 403 to a token without a person, an auditor or a participant.
	for _, unknown := range []string{"0193a0a0-0000-7000-8000-000000000000", "nope"} {
		requireProblem(t, f.as(t, adm2, "POST", "/v1/disbursements/"+unknown+"/approve", `{}`), http.StatusNotFound, "not-found")
		requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+unknown+"/approve", `{}`), http.StatusForbidden, "forbidden")
		requireProblem(t, f.as(t, f.auditor, "POST", "/v1/disbursements/"+unknown+"/approve", `{}`), http.StatusForbidden, "forbidden")
		requireProblem(t, f.as(t, f.ana, "POST", "/v1/disbursements/"+unknown+"/approve", `{}`), http.StatusForbidden, "forbidden")
	}

	// A second admin approves: approved at once, then paid by the sandbox.
	r = f.as(t, adm2, "POST", "/v1/disbursements/"+id+"/approve", `{"reason":"receipt checked","destination":"sandbox:ana"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "approved", r.body["state"], r.raw)
	require.Len(t, list(r.body["approvals"]), 1)
	approval := obj(list(r.body["approvals"])[0])
	require.Equal(t, "person:adm2", approval["approver"])
	require.Equal(t, "receipt checked", approval["reason"])
	d = f.waitDisbursement(t, id, "paid")
	require.Equal(t, []string{"awaiting_approval", "approved", "submitted", "paid"}, states(d))
	require.Len(t, list(d["attempts"]), 1, d)
	attempt := obj(list(d["attempts"])[0])
	require.Equal(t, "paid", attempt["outcome"])
	require.Equal(t, "sandbox", attempt["provider"])
	require.Equal(t, "sandbox:ana", attempt["destination"])
	require.Equal(t, id, attempt["idempotency_key"], "the first attempt's key is the disbursement id")
	require.NotEmpty(t, attempt["pending_entry_id"])
	require.NotEmpty(t, attempt["resolved_entry_id"])
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"), "paid out of the wallet")
	require.Equal(t, "5700.00", f.posted(t, "program/p1/fund"))

	// Paid is final: no second approval, no retry, no cancel.
	requireProblem(t, f.as(t, adm3, "POST", "/v1/disbursements/"+id+"/approve", `{}`), http.StatusConflict, "disbursement-state")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/retry", `{}`), http.StatusConflict, "disbursement-state")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/cancel", `{"reason":"too late"}`), http.StatusConflict, "disbursement-state")

	// Dual control from the default threshold, 500.00 inclusive: two different admins.
	below := f.grant(t, adm1, "ana", "499.99", "k-below")
	require.EqualValues(t, 1, below["approvals_needed"], "below the threshold one approval is enough")
	big := f.grant(t, adm1, "ana", "500.00", "k-big")
	bigID := big["id"].(string)
	require.Equal(t, "awaiting_approval", big["state"])
	require.EqualValues(t, 2, big["approvals_needed"], "at the threshold two approvals are needed")
	r = f.as(t, adm2, "POST", "/v1/disbursements/"+bigID+"/approve", `{"reason":"first","destination":"sandbox:ana"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "awaiting_approval", r.body["state"], "one approval of two: still waiting")
	require.Len(t, list(r.body["approvals"]), 1)
	time.Sleep(200 * time.Millisecond) // nothing may pay it meanwhile
	d = f.disbursement(t, bigID)
	require.Equal(t, "awaiting_approval", d["state"])
	require.Len(t, list(d["approvals"]), 1)
	require.Empty(t, list(d["attempts"]))
	// The same admin twice is still one pair of eyes; the requester none.
	requireProblem(t, f.as(t, adm2, "POST", "/v1/disbursements/"+bigID+"/approve", `{"reason":"again","destination":"sandbox:ana"}`), http.StatusForbidden, "four-eyes")
	assertProblem(t, f.as(t, adm1, "POST", "/v1/disbursements/"+bigID+"/approve", `{}`), http.StatusForbidden, "four-eyes")
	require.Len(t, list(f.disbursement(t, bigID)["approvals"]), 1)
	r = f.as(t, adm3, "POST", "/v1/disbursements/"+bigID+"/approve", `{"reason":"second","destination":"sandbox:ana"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "approved", r.body["state"], r.raw)
	var approvers []string
	for _, a := range list(r.body["approvals"]) {
		approvers = append(approvers, obj(a)["approver"].(string))
	}
	require.ElementsMatch(t, []string{"person:adm2", "person:adm3"}, approvers)
	last := obj(list(r.body["transitions"])[len(list(r.body["transitions"]))-1])
	require.Contains(t, last["reason"], "dual control")
	f.waitDisbursement(t, bigID, "paid")
	require.Equal(t, "4700.01", f.posted(t, "program/p1/fund"), "6000.00 less the grants of 300.00, 499.99 and 500.00")
}

// TestDisbursementRejectCancelRetryHTTP: rejected and canceled disbursements give their money
// back to the fund; a reason is required; only failed or returned disbursements are retried.
// River does not run here, so each state stays until the test moves it.
func TestDisbursementRejectCancelRetryHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	adm0 := f.requesterToken(t)
	adm2 := f.newToken(t, access.Admin, "adm2")
	require.Equal(t, "1000.00", f.posted(t, "program/p1/fund"))

	d := f.grant(t, adm0, "ana", "200.00", "r1")
	id := d["id"].(string)
	require.Equal(t, "awaiting_approval", d["state"])
	require.Equal(t, "800.00", f.posted(t, "program/p1/fund"))
	require.Equal(t, "200.00", f.posted(t, "participant/ana/wallet"))

	// A rejection needs a reason.
	for _, body := range []string{`{}`, `{"reason":"   "}`} {
		r := f.do(t, "POST", "/v1/disbursements/"+id+"/reject", body)
		requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
		require.Contains(t, r.body["detail"], "reason")
	}
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/reject", ""), http.StatusBadRequest, "malformed-request")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/disbursements/"+id+"/reject", `{"reason":"x"}`), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.ana, "POST", "/v1/disbursements/"+id+"/reject", `{"reason":"x"}`), http.StatusForbidden, "forbidden")
	require.Equal(t, "awaiting_approval", f.disbursement(t, id)["state"])
	require.Equal(t, "800.00", f.posted(t, "program/p1/fund"))

	// Rejected with a reason: the money goes back to the fund by an entry of its own.
	r := f.do(t, "POST", "/v1/disbursements/"+id+"/reject", `{"reason":"no receipt"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "rejected", r.body["state"], r.raw)
	require.NotEmpty(t, r.body["fund_return_entry_id"], r.raw)
	last := obj(list(r.body["transitions"])[len(list(r.body["transitions"]))-1])
	require.Equal(t, "awaiting_approval", last["from"])
	require.Equal(t, "rejected", last["to"])
	require.Equal(t, "no receipt", last["reason"])
	require.Equal(t, "1000.00", f.posted(t, "program/p1/fund"), "back in the fund")
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"))
	r = f.do(t, "GET", "/v1/ledger/entries/"+r.body["fund_return_entry_id"].(string), "")
	requireStatus(t, r, http.StatusOK)
	require.Contains(t, r.raw, "program/p1/fund")

	// Rejected is final.
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/reject", `{"reason":"again"}`), http.StatusConflict, "disbursement-state")
	requireProblem(t, f.as(t, adm2, "POST", "/v1/disbursements/"+id+"/approve", `{}`), http.StatusConflict, "disbursement-state")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/cancel", `{"reason":"x"}`), http.StatusConflict, "disbursement-state")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/retry", `{}`), http.StatusConflict, "disbursement-state")
	require.Equal(t, "1000.00", f.posted(t, "program/p1/fund"), "returned once")

	// Only failed or returned disbursements are retried; awaiting approval, it may be canceled.
	waiting := f.grant(t, adm0, "ana", "150.00", "c1")["id"].(string)
	r = f.do(t, "POST", "/v1/disbursements/"+waiting+"/retry", `{"reason":"try again"}`)
	requireProblem(t, r, http.StatusConflict, "disbursement-state")
	require.Contains(t, r.body["detail"], "only failed or returned disbursements are retried")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+waiting+"/cancel", `{}`), http.StatusUnprocessableEntity, "validation-failed")
	r = f.do(t, "POST", "/v1/disbursements/"+waiting+"/cancel", `{"reason":"duplicate request"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "canceled", r.body["state"])
	require.Equal(t, "1000.00", f.posted(t, "program/p1/fund"))

	// Approved within the limit but not submitted yet (no worker runs): it may be canceled,
	// and its submission job then sends nothing.
	approved := f.grant(t, adm0, "ana", "60.00", "c2")
	approvedID := approved["id"].(string)
	require.Equal(t, "approved", approved["state"])
	r = f.do(t, "POST", "/v1/disbursements/"+approvedID+"/cancel", `{"reason":"paid in cash instead"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "canceled", r.body["state"])
	require.NoError(t, f.app.Payouts.Submit(context.Background(), uuid.MustParse(approvedID)))
	d = f.disbursement(t, approvedID)
	require.Equal(t, "canceled", d["state"])
	require.Empty(t, list(d["attempts"]), "a canceled disbursement is not sent")
	require.Equal(t, "1000.00", f.posted(t, "program/p1/fund"))
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"))

	// Unknown disbursements: 404 to admins (approving, to an admin who is a person).
	const unknown = "0193a0a0-0000-7000-8000-000000000000"
	for _, action := range []string{"reject", "cancel", "retry"} {
		requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+unknown+"/"+action, `{"reason":"x"}`), http.StatusNotFound, "not-found")
	}
	requireProblem(t, f.as(t, adm2, "POST", "/v1/disbursements/"+unknown+"/approve", `{"reason":"x"}`), http.StatusNotFound, "not-found")
}

// TestDisbursementBadInputHTTP: each bad manual disbursement answers its problem and writes
// nothing.
func TestDisbursementBadInputHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	adm := f.requesterToken(t)
	cases := []struct {
		name, who, body string
		status          int
		slug, detail    string
	}{
		{"unknown program", adm, `{"program":"nope","person":"ana","amount":"10.00","reason":"x"}`, 404, "not-found", "nope"},
		{"person not enrolled", adm, grantBody("mo", "10.00", "x"), 404, "not-found", "mo"},
		{"person without consent", adm, grantBody("ben", "10.00", "x"), 409, "no-consent", "ben"},
		{"no reason", adm, grantBody("ana", "10.00", " "), 422, "validation-failed", "reason"},
		{"amount 0", adm, grantBody("ana", "0", "x"), 422, "validation-failed", "amount"},
		{"amount negative", adm, grantBody("ana", "-5.00", "x"), 422, "validation-failed", "amount"},
		{"amount not a number", adm, grantBody("ana", "ten", "x"), 422, "validation-failed", "amount"},
		{"amount with a third decimal", adm, grantBody("ana", "10.001", "x"), 422, "validation-failed", "amount"},
		{"more than the fund holds", adm, grantBody("ana", "1000.01", "x"), 422, "insufficient-funds", ""},
		{"unknown field", adm, `{"program":"p1","person":"ana","amount":"10.00","reason":"x","bonus":"1"}`, 400, "malformed-request", "bonus"},
		{"admin token without a person", f.token, grantBody("ana", "10.00", "x"), 403, "four-eyes", "person"},
		{"auditor", f.auditor, grantBody("ana", "10.00", "x"), 403, "forbidden", ""},
		{"participant for herself", f.ana, grantBody("ana", "10.00", "x"), 403, "forbidden", ""},
		{"coach for his participant", f.cy, grantBody("ana", "10.00", "x"), 403, "forbidden", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.networkRows(t)
			r := f.as(t, tc.who, "POST", "/v1/disbursements", tc.body, "Idempotency-Key", "bad-"+tc.name)
			requireProblem(t, r, tc.status, tc.slug)
			require.Contains(t, r.body["detail"], tc.detail)
			require.Equal(t, before, f.networkRows(t), "a refused disbursement writes nothing")
		})
	}
}

// TestPayoutDestinationHTTP: a payout to a destination that refuses it fails, shows in the
// failed list, is retried by an admin, and is paid once its person gives a new destination —
// which she may set herself, and her coach may not.
func TestPayoutDestinationHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, true, app.Config{})
	f.seed(t)

	// Only ana herself (or an admin) says where she is paid.
	before := f.count(t, `SELECT count(*) FROM payouts_destinations`)
	for _, who := range []string{f.cy, f.ben, f.auditor} {
		requireProblem(t, f.as(t, who, "POST", "/v1/people/ana/payout-destination", `{"account":"sandbox:mallory"}`),
			http.StatusForbidden, "forbidden")
	}
	requireProblem(t, f.as(t, f.ana, "POST", "/v1/people/ana/payout-destination", `{"account":" "}`),
		http.StatusUnprocessableEntity, "validation-failed")
	require.Equal(t, before, f.count(t, `SELECT count(*) FROM payouts_destinations`), "refusals set nothing")
	r := f.as(t, f.ana, "POST", "/v1/people/ana/payout-destination", `{"account":"fail:account-closed"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "ana", r.body["person"])
	require.Equal(t, "sandbox", r.body["provider"])
	require.Equal(t, "fail:account-closed", r.body["account"])
	require.Equal(t, "person:ana", r.body["set_by"])
	require.Empty(t, r.body["retried"])

	// Within the auto-approve limit: approved, sent, refused by the destination.
	d := f.grant(t, f.requesterToken(t), "ana", "80.00", "d1")
	id := d["id"].(string)
	require.Equal(t, "approved", d["state"])
	d = f.waitDisbursement(t, id, "failed")
	require.Len(t, list(d["attempts"]), 1)
	a := obj(list(d["attempts"])[0])
	require.Equal(t, "failed", a["outcome"])
	require.Equal(t, "account-closed", a["reason"])
	require.Equal(t, "fail:account-closed", a["destination"])
	last := obj(list(d["transitions"])[len(list(d["transitions"]))-1])
	require.Contains(t, last["reason"], "automatic retry 1 of 2", "the default policy retries twice")
	require.Equal(t, "80.00", f.posted(t, "participant/ana/wallet"), "a failed payout leaves the money in the wallet")

	// The failed list: admins, and ana for herself.
	r = f.do(t, "GET", "/v1/disbursements?state=failed", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, []string{id}, ids(r.body["disbursements"]))
	r = f.as(t, f.ana, "GET", "/v1/disbursements?state=failed&person=ana", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, []string{id}, ids(r.body["disbursements"]))
	r = f.do(t, "GET", "/v1/disbursements?state=paid", "")
	requireStatus(t, r, http.StatusOK)
	require.NotContains(t, ids(r.body["disbursements"]), id)

	// An admin retries it: a second attempt, with its own key, to the same refusing destination.
	r = f.do(t, "POST", "/v1/disbursements/"+id+"/retry", `{"reason":"try again"}`)
	requireStatus(t, r, http.StatusOK)
	require.Contains(t, []any{"approved", "submitted", "failed"}, r.body["state"], r.raw)
	waitFor(t, "the second attempt to fail", func() bool {
		d = f.disbursement(t, id)
		return d["state"] == "failed" && len(list(d["attempts"])) == 2
	})
	require.Equal(t, id+":2", obj(list(d["attempts"])[1])["idempotency_key"])

	// Ana gives a new destination: her failed payout is retried there and paid.
	r = f.as(t, f.ana, "POST", "/v1/people/ana/payout-destination", `{"account":"sandbox:ana-credit-union"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, []any{id}, r.body["retried"])
	d = f.waitDisbursement(t, id, "paid")
	require.Len(t, list(d["attempts"]), 3)
	a = obj(list(d["attempts"])[2])
	require.Equal(t, "paid", a["outcome"])
	require.Equal(t, "sandbox:ana-credit-union", a["destination"])
	require.Equal(t, id+":3", a["idempotency_key"])
	require.Equal(t, []string{"approved", "submitted", "failed", "approved", "submitted", "failed", "approved", "submitted", "paid"}, states(d))
	r = f.do(t, "GET", "/v1/disbursements?state=failed", "")
	requireStatus(t, r, http.StatusOK)
	require.Empty(t, list(r.body["disbursements"]))
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"))
	require.Equal(t, "920.00", f.posted(t, "program/p1/fund"))
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/retry", `{}`), http.StatusConflict, "disbursement-state")
}

// TestPayoutPolicyHTTP: the default policy, refused settings, a policy set and in force for
// the disbursements made after it (dual control, monthly cap).
func TestPayoutPolicyHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	adm0 := f.requesterToken(t)
	adm2 := f.newToken(t, access.Admin, "adm2")
	requireStatus(t, f.do(t, "POST", "/v1/programs/p1/fund", `{"amount":"5000.00"}`, "Idempotency-Key", "donor-2"), http.StatusCreated)

	r := f.do(t, "GET", "/v1/programs/p1/payout-policy", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, true, r.body["default"], r.raw)
	require.Equal(t, "p1", r.body["program"])
	requireAmount(t, "500", r.body["dual_control_threshold"])
	requireAmount(t, "100", r.body["auto_approve_limit"])
	require.Nil(t, r.body["monthly_cap"])
	require.Nil(t, r.body["yearly_cap"])
	require.EqualValues(t, 30, r.body["remediation_days"])
	require.EqualValues(t, 2, r.body["auto_retries"])
	require.Equal(t, "1h0m0s", r.body["retry_backoff"])
	requireStatus(t, f.as(t, f.auditor, "GET", "/v1/programs/p1/payout-policy", ""), http.StatusOK)
	requireProblem(t, f.as(t, f.ana, "GET", "/v1/programs/p1/payout-policy", ""), http.StatusForbidden, "forbidden")
	requireProblem(t, f.do(t, "GET", "/v1/programs/nope/payout-policy", ""), http.StatusNotFound, "not-found")

	bad := []struct {
		name, body, field string
	}{
		{"negative threshold", `{"dual_control_threshold":"-1"}`, "dual_control_threshold"},
		{"zero threshold", `{"dual_control_threshold":"0"}`, "dual_control_threshold"},
		{"threshold not an amount", `{"dual_control_threshold":"lots"}`, "dual_control_threshold"},
		{"cap with three decimals", `{"monthly_cap":"10.001"}`, "monthly_cap"},
		{"monthly over yearly", `{"monthly_cap":"500.00","yearly_cap":"400.00"}`, "monthly_cap"},
		{"negative yearly cap", `{"yearly_cap":"-400.00"}`, "yearly_cap"},
		{"remediation of a year and more", `{"remediation_days":400}`, "remediation_days"},
		{"negative remediation", `{"remediation_days":-1}`, "remediation_days"},
		{"eleven retries", `{"auto_retries":11}`, "auto_retries"},
		{"negative retries", `{"auto_retries":-1}`, "auto_retries"},
		{"backoff not a duration", `{"retry_backoff":"soon"}`, "retry_backoff"},
		{"backoff under a second", `{"retry_backoff":"1ms"}`, "retry_backoff"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			before := f.count(t, `SELECT count(*) FROM payouts_policies`)
			r := f.do(t, "POST", "/v1/programs/p1/payout-policy", tc.body)
			requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
			require.Contains(t, r.body["detail"], tc.field)
			require.Equal(t, before, f.count(t, `SELECT count(*) FROM payouts_policies`))
		})
	}
	requireProblem(t, f.do(t, "POST", "/v1/programs/p1/payout-policy", `{"dual_controll":"400.00"}`), http.StatusBadRequest, "malformed-request")
	requireProblem(t, f.do(t, "POST", "/v1/programs/nope/payout-policy", `{}`), http.StatusNotFound, "not-found")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/programs/p1/payout-policy", `{"dual_control_threshold":"400.00"}`),
		http.StatusForbidden, "forbidden")
	require.Equal(t, true, f.do(t, "GET", "/v1/programs/p1/payout-policy", "").body["default"], "nothing was set")

	r = f.do(t, "POST", "/v1/programs/p1/payout-policy", `{"dual_control_threshold":"400.00","monthly_cap":"250.00",
		"yearly_cap":"1000.00","remediation_days":10,"auto_retries":0,"retry_backoff":"30m"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, false, r.body["default"], r.raw)
	requireAmount(t, "400", r.body["dual_control_threshold"])
	requireAmount(t, "250", r.body["monthly_cap"])
	requireAmount(t, "1000", r.body["yearly_cap"])
	require.EqualValues(t, 10, r.body["remediation_days"])
	require.EqualValues(t, 0, r.body["auto_retries"], "zero retries is a setting, not the default")
	require.Equal(t, "30m0s", r.body["retry_backoff"])
	require.Contains(t, r.body["set_by"], "token:")
	got := f.as(t, f.auditor, "GET", "/v1/programs/p1/payout-policy", "")
	requireStatus(t, got, http.StatusOK)
	require.JSONEq(t, r.raw, got.raw, "the policy read is the policy set")

	// In force from now on: dual control at 400.00; the monthly cap holds a third grant back.
	require.EqualValues(t, 2, f.grant(t, adm0, "ana", "400.00", "p-400")["approvals_needed"])
	require.EqualValues(t, 1, f.grant(t, adm0, "ana", "399.99", "p-399")["approvals_needed"])
	for _, key := range []string{"p-a", "p-b"} {
		d := f.grant(t, adm0, "ana", "90.00", key)
		require.Equal(t, "approved", d["state"], "90.00 within the limit and the cap")
	}
	held := f.grant(t, adm0, "ana", "90.00", "p-c")
	require.Equal(t, "awaiting_approval", held["state"], "270.00 this month would pass the cap of 250.00")
	require.Contains(t, obj(list(f.disbursement(t, held["id"].(string))["transitions"])[0])["reason"], "monthly cap")
	r = f.as(t, adm2, "POST", "/v1/disbursements/"+held["id"].(string)+"/approve", `{"destination":"sandbox:ana"}`)
	requireProblem(t, r, http.StatusConflict, "cap-exceeded")
	require.Contains(t, r.body["detail"], "monthly cap")

	// The stipend policy: a rate per verified coaching session, set by an admin who is a
	// person (who requests the stipends paid at it: four eyes), admins only.
	r = f.do(t, "POST", "/v1/programs/p1/stipend-policy", `{"rate":"25.00"}`)
	requireProblem(t, r, http.StatusForbidden, "four-eyes")
	require.Contains(t, r.body["detail"], "person")
	require.Zero(t, f.count(t, `SELECT count(*) FROM payouts_stipend_policies`))
	r = f.as(t, adm0, "POST", "/v1/programs/p1/stipend-policy", `{"rate":"25.00"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "25.00", r.body["rate"])
	require.Equal(t, "p1", r.body["program"])
	require.Equal(t, "person:adm0", r.body["set_by"])
	requireProblem(t, f.as(t, adm0, "POST", "/v1/programs/p1/stipend-policy", `{"rate":"-1.00"}`), http.StatusUnprocessableEntity, "validation-failed")
	requireProblem(t, f.as(t, f.cy, "POST", "/v1/programs/p1/stipend-policy", `{"rate":"99.00"}`), http.StatusForbidden, "forbidden")
}

// TestCommitmentsHTTP: a commitment over HTTP, who reads it, its instalment released by the
// periodic run (POST /v1/payouts/run) the day after its due date into a disbursement that its
// creator requested (and may not approve), and its cancellation.
func TestCommitmentsHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	adm0 := f.requesterToken(t)
	adm2 := f.newToken(t, access.Admin, "adm2")

	// A commitment made by adm0 (an admin who is a person) whose first instalment was due
	// yesterday; 150.00 each, above the auto-approve limit.
	body := fmt.Sprintf(`{"program":"p1","person":"ana","amount":"150.00","instalments":2,"every_months":3,"first_due":%q}`, f.day(-1))
	r := f.as(t, adm0, "POST", "/v1/commitments", body)
	requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
	require.Contains(t, r.body["detail"], "idempotency_key")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/commitments", body, "Idempotency-Key", "cm1"), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.ana, "POST", "/v1/commitments", body, "Idempotency-Key", "cm1"), http.StatusForbidden, "forbidden")
	r = f.as(t, adm0, "POST", "/v1/commitments", body, "Idempotency-Key", "cm1")
	requireStatus(t, r, http.StatusCreated)
	commitment := r.body["id"].(string)
	require.Equal(t, "150.00", r.body["amount"])
	require.Equal(t, "person:adm0", r.body["created_by"], r.raw)
	require.Len(t, list(r.body["instalments"]), 2)
	require.Equal(t, "scheduled", obj(list(r.body["instalments"])[0])["state"])
	require.Equal(t, f.day(-1), obj(list(r.body["instalments"])[0])["due_on"])
	r = f.as(t, adm0, "POST", "/v1/commitments", body, "Idempotency-Key", "cm1")
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, r.status, r.raw)
	require.Equal(t, commitment, r.body["id"], "the same key is the same commitment")
	// The same key with any other request is a conflict, as on every keyed route.
	for _, other := range []string{
		strings.Replace(body, f.day(-1), f.day(-2), 1),
		strings.Replace(body, `"every_months":3`, `"every_months":2`, 1),
		strings.Replace(body, `"first_due"`, `"requirements":{"min_verified_conversations":1},"first_due"`, 1),
	} {
		requireProblem(t, f.as(t, adm0, "POST", "/v1/commitments", other, "Idempotency-Key", "cm1"), http.StatusConflict, "idempotency-conflict")
	}
	// An admin token that names no person may not commit money: its creator requests every
	// instalment, and must be a person who then may not approve one.
	r = f.do(t, "POST", "/v1/commitments", body, "Idempotency-Key", "cm-token")
	requireProblem(t, r, http.StatusForbidden, "four-eyes")
	require.Contains(t, r.body["detail"], "person")
	require.Equal(t, 1, f.count(t, `SELECT count(*) FROM payouts_commitments`))
	for _, who := range []string{f.token, f.auditor, f.ana, f.cy} {
		r := f.as(t, who, "GET", "/v1/commitments?person=ana", "")
		requireStatus(t, r, http.StatusOK)
		require.Len(t, list(r.body["commitments"]), 1, r.raw)
		require.Equal(t, commitment, obj(list(r.body["commitments"])[0])["id"])
	}
	requireProblem(t, f.as(t, f.ben, "GET", "/v1/commitments?person=ana", ""), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.ana, "GET", "/v1/commitments", ""), http.StatusForbidden, "forbidden")

	// Another whose only instalment is due today: not released before tomorrow.
	r = f.as(t, adm0, "POST", "/v1/commitments", fmt.Sprintf(`{"program":"p1","person":"ana","amount":"40.00","instalments":1,
		"every_months":1,"first_due":%q}`, f.day(0)), "Idempotency-Key", "cm-today")
	requireStatus(t, r, http.StatusCreated)
	dueToday := r.body["id"].(string)

	// The periodic run, now: the instalment due yesterday is released into a disbursement,
	// once; the one due today is not.
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/payouts/run", `{}`), http.StatusForbidden, "forbidden")
	r = f.do(t, "POST", "/v1/payouts/run", `{}`)
	requireStatus(t, r, http.StatusOK)
	require.EqualValues(t, 1, r.body["instalments_fulfilled"], r.raw)
	require.EqualValues(t, 0, r.body["instalments_failed"])
	require.NotNil(t, obj(r.body["sweep"]), r.raw)
	r = f.do(t, "POST", "/v1/payouts/run", `{}`)
	requireStatus(t, r, http.StatusOK)
	require.EqualValues(t, 0, r.body["instalments_fulfilled"], "released once, and not on its due date")
	r = f.do(t, "GET", "/v1/commitments?person=ana", "")
	requireStatus(t, r, http.StatusOK)
	for _, c := range list(r.body["commitments"]) {
		if obj(c)["id"] == dueToday {
			require.Equal(t, "scheduled", obj(list(obj(c)["instalments"])[0])["state"], "due today: released the day after")
		}
	}
	r = f.do(t, "GET", "/v1/disbursements?person=ana", "")
	requireStatus(t, r, http.StatusOK)
	require.Len(t, list(r.body["disbursements"]), 1, r.raw)
	instalment := obj(list(r.body["disbursements"])[0])
	require.Equal(t, "commitment", instalment["source"])
	require.Equal(t, "150.00", instalment["amount"])
	require.Equal(t, "awaiting_approval", instalment["state"], "above the auto-approve limit")
	require.Equal(t, "person:adm0", instalment["requested_by"], "requested by the commitment's creator")
	require.Equal(t, "850.00", f.posted(t, "program/p1/fund"))

	// Four eyes: the commitment's creator may not approve its instalment; another admin does.
	instalmentID := instalment["id"].(string)
	requireProblem(t, f.as(t, adm0, "POST", "/v1/disbursements/"+instalmentID+"/approve", `{}`), http.StatusForbidden, "four-eyes")
	require.Equal(t, "awaiting_approval", f.disbursement(t, instalmentID)["state"])
	r = f.as(t, adm2, "POST", "/v1/disbursements/"+instalmentID+"/approve", `{"reason":"instalment checked","destination":"sandbox:ana"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "approved", r.body["state"], r.raw)

	// Canceling the commitment cancels what is still scheduled; it needs a reason.
	requireProblem(t, f.do(t, "POST", "/v1/commitments/"+commitment+"/cancel", `{}`), http.StatusUnprocessableEntity, "validation-failed")
	requireProblem(t, f.as(t, f.ana, "POST", "/v1/commitments/"+commitment+"/cancel", `{"reason":"x"}`), http.StatusForbidden, "forbidden")
	r = f.do(t, "POST", "/v1/commitments/"+commitment+"/cancel", `{"reason":"left the program"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "fulfilled", obj(list(r.body["instalments"])[0])["state"])
	require.Equal(t, "canceled", obj(list(r.body["instalments"])[1])["state"])
}

// TestPayoutReportsHTTP: stipends, the 1099-NEC report and reconciliation, over HTTP.
func TestPayoutReportsHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	ctx := context.Background()

	adm0 := f.requesterToken(t)

	// One payout through the sandbox (no worker runs here: submitted in process), so that
	// reconciliation has a transfer to compare.
	grant := f.grant(t, adm0, "ana", "40.00", "rc1")
	require.Equal(t, "approved", grant["state"])
	require.NoError(t, f.app.Payouts.Submit(ctx, uuid.MustParse(grant["id"].(string))))
	require.Equal(t, "paid", f.disbursement(t, grant["id"].(string))["state"])

	// Stipends: cy coaches ana near-peer; one verified session last month, at a rate of 25.00
	// set by adm0.
	requireStatus(t, f.as(t, adm0, "POST", "/v1/programs/p1/stipend-policy", `{"rate":"25.00"}`), http.StatusOK)
	r := f.do(t, "POST", "/v1/connections", fmt.Sprintf(`{"participant_id":"ana","other_id":"cy","role":"near_peer_coach",
		"origin":"matched","started_on":%q}`, f.day(-70)))
	requireStatus(t, r, http.StatusCreated)
	month := time.Date(f.now.Year(), f.now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	at := month.AddDate(0, 0, 1).Add(12 * time.Hour).Format(time.RFC3339)
	requireStatus(t, f.do(t, "POST", "/v1/conversations", fmt.Sprintf(`{"connection_id":%q,"occurred_at":%q,"channel":"video",
		"minutes":30,"resources":["advice"],"idempotency_key":"coach-1","verified":true}`, r.body["id"], at)), http.StatusCreated)
	for _, m := range []string{"2026-13", "last month", f.now.Format("2006-01")} {
		requireProblem(t, f.do(t, "POST", "/v1/stipends/run", fmt.Sprintf(`{"month":%q}`, m)), http.StatusUnprocessableEntity, "validation-failed")
	}
	requireProblem(t, f.as(t, f.cy, "POST", "/v1/stipends/run", fmt.Sprintf(`{"month":%q}`, month.Format("2006-01"))), http.StatusForbidden, "forbidden")
	r = f.do(t, "POST", "/v1/stipends/run", fmt.Sprintf(`{"month":%q}`, month.Format("2006-01")))
	requireStatus(t, r, http.StatusOK)
	require.Len(t, list(r.body["stipends"]), 1, r.raw)
	st := obj(list(r.body["stipends"])[0])
	require.Equal(t, "cy", st["coach"])
	require.EqualValues(t, 1, st["sessions"])
	require.Equal(t, "25.00", st["amount"])
	require.Equal(t, "held", st["status"], "no W-9 on file")
	require.Contains(t, st["reason"], "W-9")
	for _, who := range []string{f.cy, f.auditor, f.token} {
		r := f.as(t, who, "GET", "/v1/stipends?coach=cy", "")
		requireStatus(t, r, http.StatusOK)
		require.Len(t, list(r.body["stipends"]), 1, r.raw)
	}
	requireProblem(t, f.as(t, f.ana, "GET", "/v1/stipends?coach=cy", ""), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.cy, "GET", "/v1/stipends", ""), http.StatusForbidden, "forbidden")

	// The 1099-NEC report: a held stipend is not paid, so nobody is listed. The threshold is
	// the year's: 600.00 for payments through 2025, 2000.00 after; ?threshold= overrides it.
	for _, who := range []string{f.token, f.auditor} {
		r := f.as(t, who, "GET", "/v1/reports/1099-nec?year=2026", "")
		requireStatus(t, r, http.StatusOK)
		require.EqualValues(t, 2026, r.body["year"])
		require.Equal(t, "2000.00", r.body["threshold"], "the threshold for payments after 2025")
		require.Equal(t, "USD", r.body["currency"])
		require.Equal(t, []any{}, r.body["payees"], r.raw)
	}
	for year, want := range map[string]string{"2024": "600.00", "2025": "600.00", "2026": "2000.00", "2030": "2000.00"} {
		r := f.do(t, "GET", "/v1/reports/1099-nec?year="+year, "")
		requireStatus(t, r, http.StatusOK)
		require.Equal(t, want, r.body["threshold"], "the threshold of %s", year)
	}
	r = f.do(t, "GET", "/v1/reports/1099-nec?year=2026&threshold=600.00", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "600.00", r.body["threshold"])
	r = f.do(t, "GET", "/v1/reports/1099-nec?year=2025&threshold=2000.00", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "2000.00", r.body["threshold"], "?threshold= overrides the year's")
	r = f.do(t, "GET", "/v1/reports/1099-nec", "")
	requireStatus(t, r, http.StatusOK)
	require.EqualValues(t, time.Now().Year(), r.body["year"], "this year by default")
	thisYears := "2000.00"
	if time.Now().Year() <= 2025 {
		thisYears = "600.00"
	}
	require.Equal(t, thisYears, r.body["threshold"], "this year's threshold by default")
	for _, q := range []string{"year=1999", "year=abc", "threshold=0", "threshold=-5", "threshold=lots"} {
		requireProblem(t, f.do(t, "GET", "/v1/reports/1099-nec?"+q, ""), http.StatusUnprocessableEntity, "validation-failed")
	}
	requireProblem(t, f.as(t, f.cy, "GET", "/v1/reports/1099-nec?year=2026", ""), http.StatusForbidden, "forbidden")

	// With cy's W-9 on file the held stipend is paid by the next run into his wallet, a
	// disbursement of his own (which he reads, and ana does not) requested by whoever set the
	// rate; he is on the report from 25.00 once that disbursement is paid out to him.
	requireProblem(t, f.as(t, f.cy, "POST", "/v1/people/cy/tax-form", `{"on_file":true}`), http.StatusForbidden, "forbidden")
	requireStatus(t, f.do(t, "POST", "/v1/people/cy/tax-form", `{"on_file":true}`), http.StatusOK)
	r = f.do(t, "POST", "/v1/stipends/run", fmt.Sprintf(`{"month":%q}`, month.Format("2006-01")))
	requireStatus(t, r, http.StatusOK)
	require.Len(t, list(r.body["stipends"]), 1, r.raw)
	st = obj(list(r.body["stipends"])[0])
	require.Equal(t, "paid", st["status"], r.raw)
	stipendPayout, _ := st["disbursement_id"].(string)
	require.NotEmpty(t, stipendPayout, r.raw)
	r = f.as(t, f.cy, "GET", "/v1/disbursements/"+stipendPayout, "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "stipend", r.body["source"])
	require.Equal(t, "coach/cy/wallet", r.body["wallet"])
	require.Equal(t, "person:adm0", r.body["requested_by"], "requested by whoever set the stipend rate")
	require.Equal(t, "approved", r.body["state"], "within the auto-approve limit; no worker sends it here")
	requireProblem(t, f.as(t, f.ana, "GET", "/v1/disbursements/"+stipendPayout, ""), http.StatusForbidden, "forbidden")
	year := strconv.Itoa(time.Now().UTC().Year())
	r = f.as(t, f.auditor, "GET", "/v1/reports/1099-nec?year="+year+"&threshold=25.00", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, []any{}, r.body["payees"], "paid into his wallet, not yet paid out to him: %s", r.raw)
	require.NoError(t, f.app.Payouts.Submit(ctx, uuid.MustParse(stipendPayout)))
	require.Equal(t, "paid", f.disbursement(t, stipendPayout)["state"])
	r = f.as(t, f.auditor, "GET", "/v1/reports/1099-nec?year="+year+"&threshold=25.00", "")
	requireStatus(t, r, http.StatusOK)
	require.Len(t, list(r.body["payees"]), 1, r.raw)
	payee := obj(list(r.body["payees"])[0])
	require.Equal(t, "cy", payee["coach"])
	require.Equal(t, "25.00", payee["total"])
	require.EqualValues(t, 1, payee["stipends"])
	require.Equal(t, true, payee["w9_on_file"])
	r = f.do(t, "GET", "/v1/reports/1099-nec?year="+year, "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, []any{}, r.body["payees"], "25.00 is under the 2000.00 threshold")

	// Reconciliation: the sandbox's two transfers (the grant, the stipend) match the ledger's
	// two attempts.
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/reconciliations", `{}`), http.StatusForbidden, "forbidden")
	for _, days := range []string{"-1", "401"} {
		requireProblem(t, f.do(t, "POST", "/v1/reconciliations", `{"days":`+days+`}`), http.StatusUnprocessableEntity, "validation-failed")
	}
	r = f.do(t, "POST", "/v1/reconciliations", `{}`)
	requireStatus(t, r, http.StatusCreated)
	run := r.body
	require.Equal(t, "sandbox", run["provider"])
	require.EqualValues(t, 2, run["provider_records"], r.raw)
	require.EqualValues(t, 2, run["ledger_records"])
	require.Equal(t, []any{}, run["differences"])
	since, err := time.Parse(time.RFC3339Nano, run["since"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().AddDate(0, 0, -7), since, time.Minute, "7 days back by default")
	r = f.as(t, f.auditor, "GET", "/v1/reconciliations", "")
	requireStatus(t, r, http.StatusOK)
	require.Len(t, list(r.body["reconciliations"]), 1, r.raw)
	require.Equal(t, run["id"], obj(list(r.body["reconciliations"])[0])["id"])
	// days, from 1 to 400, is how far back it looks.
	r = f.do(t, "POST", "/v1/reconciliations", `{"days":1}`)
	requireStatus(t, r, http.StatusCreated)
	since, err = time.Parse(time.RFC3339Nano, r.body["since"].(string))
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().AddDate(0, 0, -1), since, time.Minute, "{\"days\":1} looks one day back")
	r = f.do(t, "GET", "/v1/reconciliations?limit=1", "")
	requireStatus(t, r, http.StatusOK)
	require.Len(t, list(r.body["reconciliations"]), 1, "newest first, limited")
	require.NotEqual(t, run["id"], obj(list(r.body["reconciliations"])[0])["id"])
	requireProblem(t, f.as(t, f.ana, "GET", "/v1/reconciliations", ""), http.StatusForbidden, "forbidden")
}

// paidGrant is a manual disbursement of amount to ana within the auto-approve limit,
// submitted in process (no worker runs) and paid by the sandbox; it returns its id and the
// sandbox's reference of the transfer.
func (f *netFixture) paidGrant(t *testing.T, amount, key string) (id, ref string) {
	t.Helper()
	g := f.grant(t, f.requesterToken(t), "ana", amount, key)
	require.Equal(t, "approved", g["state"], "within the auto-approve limit")
	id = g["id"].(string)
	require.NoError(t, f.app.Payouts.Submit(context.Background(), uuid.MustParse(id)))
	d := f.disbursement(t, id)
	require.Equal(t, "paid", d["state"], d)
	ref, _ = obj(list(d["attempts"])[0])["provider_ref"].(string)
	require.NotEmpty(t, ref, d)
	return id, ref
}

// reconcileNow runs a reconciliation over HTTP as the admin and returns its differences.
func (f *netFixture) reconcileNow(t *testing.T) []any {
	t.Helper()
	r := f.do(t, "POST", "/v1/reconciliations", `{}`)
	requireStatus(t, r, http.StatusCreated)
	return list(r.body["differences"])
}

// TestReturnedDisbursementHTTP: the provider gives a payout back. Reconciliation applies the
// return the ledger missed (no webhook here); a partial return leaves the disbursement paid,
// with the return listed and the money in the wallet; returned in full it is returned, and
// may then be retried (paid again, by a new attempt) or canceled (the money back to the fund).
func TestReturnedDisbursementHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	ctx := context.Background()
	sandbox, ok := f.app.Payouts.Provider().(*payouts.Sandbox)
	require.True(t, ok, "the sandbox provider")

	id, ref := f.paidGrant(t, "60.00", "ret-1")
	require.Equal(t, "940.00", f.posted(t, "program/p1/fund"))
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"))
	require.Empty(t, f.reconcileNow(t), "the ledger and the sandbox agree")

	// 20.00 of 60.00 comes back: reconciliation reports the difference and applies it. The
	// disbursement stays paid, the return listed; neither retried nor canceled.
	require.NoError(t, sandbox.Reverse(ctx, ref, decimal.RequireFromString("20.00")))
	diffs := f.reconcileNow(t)
	require.Len(t, diffs, 1, diffs)
	require.Equal(t, "status_mismatch", obj(diffs[0])["kind"])
	require.Equal(t, id, obj(diffs[0])["disbursement_id"])
	require.Contains(t, obj(diffs[0])["detail"], "returned")
	d := f.disbursement(t, id)
	require.Equal(t, "paid", d["state"], "a partial return is not returned")
	require.Equal(t, []string{"approved", "submitted", "paid"}, states(d))
	require.Len(t, list(d["returns"]), 1, d)
	require.Equal(t, "20.00", obj(list(d["returns"])[0])["amount"])
	require.Equal(t, "20.00", obj(list(d["attempts"])[0])["returned"])
	require.Equal(t, "20.00", f.posted(t, "participant/ana/wallet"), "the return is back in the wallet")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/retry", `{"reason":"again"}`), http.StatusConflict, "disbursement-state")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/cancel", `{"reason":"x"}`), http.StatusConflict, "disbursement-state")
	require.Empty(t, f.reconcileNow(t), "applied once")

	// The other 40.00 comes back: returned in full.
	require.NoError(t, sandbox.Reverse(ctx, ref, decimal.RequireFromString("40.00")))
	require.Len(t, f.reconcileNow(t), 1)
	d = f.disbursement(t, id)
	require.Equal(t, "returned", d["state"], d)
	require.Equal(t, []string{"approved", "submitted", "paid", "returned"}, states(d))
	require.Len(t, list(d["returns"]), 2, d)
	require.Equal(t, "60.00", obj(list(d["attempts"])[0])["returned"])
	require.Equal(t, "60.00", f.posted(t, "participant/ana/wallet"))
	require.Equal(t, "940.00", f.posted(t, "program/p1/fund"))
	require.Empty(t, f.reconcileNow(t), "applied once")

	// Retried: a new attempt with its own key, paid out of the wallet again.
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/disbursements/"+id+"/retry", `{}`), http.StatusForbidden, "forbidden")
	r := f.do(t, "POST", "/v1/disbursements/"+id+"/retry", `{"reason":"new bank details"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "approved", r.body["state"], r.raw)
	require.NoError(t, f.app.Payouts.Submit(ctx, uuid.MustParse(id)))
	d = f.disbursement(t, id)
	require.Equal(t, "paid", d["state"], d)
	require.Equal(t, []string{"approved", "submitted", "paid", "returned", "approved", "submitted", "paid"}, states(d))
	require.Len(t, list(d["attempts"]), 2)
	require.Equal(t, id+":2", obj(list(d["attempts"])[1])["idempotency_key"])
	require.Equal(t, "paid", obj(list(d["attempts"])[1])["outcome"])
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"))
	require.Equal(t, "940.00", f.posted(t, "program/p1/fund"))

	// Another returned in full is canceled: a reason is needed, and the money goes back to the fund.
	id2, ref2 := f.paidGrant(t, "70.00", "ret-2")
	require.Equal(t, "870.00", f.posted(t, "program/p1/fund"))
	require.NoError(t, sandbox.Reverse(ctx, ref2, decimal.RequireFromString("70.00")))
	require.Len(t, f.reconcileNow(t), 1)
	require.Equal(t, "returned", f.disbursement(t, id2)["state"])
	require.Equal(t, "70.00", f.posted(t, "participant/ana/wallet"))
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id2+"/cancel", `{}`), http.StatusUnprocessableEntity, "validation-failed")
	requireProblem(t, f.as(t, f.ana, "POST", "/v1/disbursements/"+id2+"/cancel", `{"reason":"x"}`), http.StatusForbidden, "forbidden")
	r = f.do(t, "POST", "/v1/disbursements/"+id2+"/cancel", `{"reason":"she left the program"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "canceled", r.body["state"], r.raw)
	require.NotEmpty(t, r.body["fund_return_entry_id"], r.raw)
	require.Equal(t, []string{"approved", "submitted", "paid", "returned", "canceled"}, states(r.body))
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"))
	require.Equal(t, "940.00", f.posted(t, "program/p1/fund"), "back in the fund")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id2+"/retry", `{}`), http.StatusConflict, "disbursement-state")
	require.Empty(t, f.reconcileNow(t))
}

// TestReconciliationAppliesSettlementHTTP: a payout the provider settled while the ledger
// still shows it submitted (its webhook or settle job lost; no worker runs here) is paid by
// the next reconciliation, as the provider's word; not before the provider settles it.
func TestReconciliationAppliesSettlementHTTP(t *testing.T) {
	t.Parallel()
	const delay = 3 * time.Second
	f := setupPayouts(t, false, app.Config{Payouts: app.Payouts{Sandbox: payouts.SandboxConfig{Delay: delay}}})
	f.seed(t)
	g := f.grant(t, f.requesterToken(t), "ana", "50.00", "settle-1")
	id := g["id"].(string)
	sent := time.Now()
	require.NoError(t, f.app.Payouts.Submit(context.Background(), uuid.MustParse(id)))
	require.Equal(t, "submitted", f.disbursement(t, id)["state"], "the sandbox settles it later")

	require.Empty(t, f.reconcileNow(t))
	if time.Since(sent) < delay {
		require.Equal(t, "submitted", f.disbursement(t, id)["state"], "not settled at the provider yet: nothing to apply")
	}
	var d map[string]any
	waitFor(t, "reconciliation to pay "+id, func() bool {
		require.Empty(t, f.reconcileNow(t))
		d = f.disbursement(t, id)
		return d["state"] == "paid"
	})
	require.GreaterOrEqual(t, time.Since(sent), delay, "paid once the provider settled it")
	require.Equal(t, []string{"approved", "submitted", "paid"}, states(d))
	last := obj(list(d["transitions"])[len(list(d["transitions"]))-1])
	require.Contains(t, last["reason"], "reconciliation run")
	require.Equal(t, "paid", obj(list(d["attempts"])[0])["outcome"])
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"))
	// The change applied has its trail line, in the name of the admin who asked for the run
	// and committed with the change (a later run applies nothing and writes no such line).
	r := f.do(t, "POST", "/v1/reconciliations", `{}`, "X-Request-Id", "recon-after")
	requireStatus(t, r, http.StatusCreated)
	var actor, requestID, outcome string
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT count(*) OVER (), actor, request_id, after->>'outcome' FROM audit_log
		WHERE action = 'payouts.reconciliation.apply' AND record = 'disbursement:' || $1`, id).Scan(&n, &actor, &requestID, &outcome))
	require.Equal(t, 1, n)
	require.Equal(t, "admin", actor)
	require.NotEqual(t, "recon-after", requestID)
	require.Equal(t, "paid", outcome)
}

// TestNECThresholdConfiguredHTTP: a configured 1099-NEC threshold (TANDEM_1099_THRESHOLD,
// Config.NECThreshold) replaces the year's for every year; ?threshold= still overrides it.
func TestNECThresholdConfiguredHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{Payouts: app.Payouts{NECThreshold: decimal.RequireFromString("1000.00")}})
	for _, year := range []string{"2024", "2025", "2026"} {
		r := f.as(t, f.auditor, "GET", "/v1/reports/1099-nec?year="+year, "")
		requireStatus(t, r, http.StatusOK)
		require.Equal(t, "1000.00", r.body["threshold"], "the configured threshold in %s", year)
		require.Equal(t, []any{}, r.body["payees"], r.raw)
	}
	r := f.do(t, "GET", "/v1/reports/1099-nec?year=2026&threshold=250.00", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "250.00", r.body["threshold"])
}

// TestPayoutRefusalsInTheirRecordsTrail: a refused change to a disbursement or a commitment is
// filed in the audit trail under that record, as its changes are ("disbursement:<id>"), so
// that the record's trail shows the refused attempts too (api/auth.go recordOf).
func TestPayoutRefusalsInTheirRecordsTrail(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	id := f.grant(t, f.requesterToken(t), "ana", "150.00", "trail-1")["id"].(string)
	commitment := f.commitmentOf(t, "ana")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/disbursements/"+id+"/approve", `{}`), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.ana, "POST", "/v1/disbursements/"+id+"/cancel", `{"reason":"x"}`), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/commitments/"+commitment+"/cancel", `{"reason":"x"}`), http.StatusForbidden, "forbidden")

	r := f.as(t, f.auditor, "GET", "/v1/audit?record=disbursement:"+id, "")
	requireStatus(t, r, http.StatusOK)
	var outcomes []string
	for _, l := range list(r.body["lines"]) {
		outcomes = append(outcomes, obj(l)["outcome"].(string))
	}
	assert.Equal(t, []string{"ok", "denied", "denied"}, outcomes, "the disbursement's trail: its creation and the two refusals: %s", r.raw)
	var records []string
	rows, err := f.pool.Query(context.Background(), `SELECT record FROM audit_log WHERE outcome = 'denied' ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var rec string
		require.NoError(t, rows.Scan(&rec))
		records = append(records, rec)
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, []string{"disbursement:" + id, "disbursement:" + id, "commitment:" + commitment}, records)
}

// stripeEvent is a Stripe event of the API version stripe-go v76 reads.
func stripeEvent(id, typ, object string) []byte {
	return stripeEventOfVersion(id, typ, object, stripe.APIVersion)
}

func stripeEventOfVersion(id, typ, object, version string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"object":"event","api_version":%q,"created":%d,"livemode":false,"pending_webhooks":1,
		"type":%q,"data":{"object":%s}}`, id, version, time.Now().Unix(), typ, object))
}

// signature is the Stripe-Signature header of payload signed with secret.
func signature(payload []byte, secret string) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret}).Header
}

// stripePost posts a webhook as Stripe does: no Authorization unless bearer is set.
func (f *netFixture) stripePost(t *testing.T, payload []byte, sig, bearerSecret string) response {
	t.Helper()
	req, err := http.NewRequest("POST", f.srv.URL+"/v1/webhooks/stripe", strings.NewReader(string(payload)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	if bearerSecret != "" {
		req.Header.Set("Authorization", bearer(bearerSecret))
	}
	return send(t, req)
}

func (f *netFixture) events(t *testing.T, id string) int {
	t.Helper()
	return f.count(t, `SELECT count(*) FROM payouts_events WHERE provider = 'stripe' AND event_id = $1`, id)
}

// waitOutcome waits for a recorded event to be processed and returns its outcome.
func (f *netFixture) waitOutcome(t *testing.T, id string) string {
	t.Helper()
	var outcome string
	waitFor(t, "event "+id+" processed", func() bool {
		require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT coalesce(outcome, '') FROM payouts_events
			WHERE provider = 'stripe' AND event_id = $1`, id).Scan(&outcome))
		return outcome != ""
	})
	return outcome
}

const whsec = "whsec_x"

// TestStripeWebhookNeedsNoBearerToken: Stripe signs its webhooks and sends no bearer token;
// the signature is the authentication (README: "no bearer token").
func TestStripeWebhookNeedsNoBearerToken(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, true, app.Config{Payouts: app.Payouts{WebhookSecret: whsec}})

	t.Run("a signed event", func(t *testing.T) {
		ev := stripeEvent("evt_no_bearer", "customer.created", `{"id":"cus_1","object":"customer"}`)
		r := f.stripePost(t, ev, signature(ev, whsec), "")
		requireStatus(t, r, http.StatusOK)
		require.Equal(t, true, r.body["received"], r.raw)
		require.Equal(t, 1, f.events(t, "evt_no_bearer"))
	})
	// Without a valid signature: 401 bad-signature (not a demand for a bearer token), nothing recorded.
	t.Run("no valid signature", func(t *testing.T) {
		bad := stripeEvent("evt_no_bearer_bad", "customer.created", `{"id":"cus_1","object":"customer"}`)
		for _, sig := range []string{"", signature(bad, "whsec_other")} {
			r := f.stripePost(t, bad, sig, "")
			requireProblem(t, r, http.StatusUnauthorized, "bad-signature")
			require.Equal(t, "Stripe-Signature", r.header.Get("WWW-Authenticate"))
		}
		require.Equal(t, 0, f.events(t, "evt_no_bearer_bad"))
	})
}

// TestStripeWebhookHTTP: signed events are recorded once and processed by River; bad
// signatures and other API versions are refused and recorded nowhere. These requests carry
// an admin's bearer token, which the route ignores: so they check the webhook's own handling
// whatever TestStripeWebhookNeedsNoBearerToken finds.
func TestStripeWebhookHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, true, app.Config{Payouts: app.Payouts{WebhookSecret: whsec}})
	jobs := func(id string) int {
		return f.count(t, `SELECT count(*) FROM river_job WHERE kind = 'process_payout_event' AND args->>'event_id' = $1`, id)
	}

	t.Run("a signed event is recorded and acknowledged", func(t *testing.T) {
		ev := stripeEvent("evt_1", "customer.created", `{"id":"cus_1","object":"customer"}`)
		r := f.stripePost(t, ev, signature(ev, whsec), f.token)
		requireStatus(t, r, http.StatusOK)
		require.Equal(t, true, r.body["received"], r.raw)
		require.Equal(t, "false", r.header.Get("X-Tandem-Duplicate"))
		event := obj(r.body["event"])
		require.Equal(t, "stripe", event["provider"])
		require.Equal(t, "evt_1", event["id"])
		require.Equal(t, "customer.created", event["type"])
		require.Equal(t, false, event["duplicate"])
		require.Equal(t, 1, f.events(t, "evt_1"))
		// A type Tandem does not use is processed as ignored, with the reason.
		outcome := f.waitOutcome(t, "evt_1")
		require.True(t, strings.HasPrefix(outcome, "ignored"), outcome)
		require.Contains(t, outcome, "customer.created")
	})

	t.Run("the same event again is a duplicate", func(t *testing.T) {
		ev := stripeEvent("evt_1", "customer.created", `{"id":"cus_1","object":"customer"}`)
		r := f.stripePost(t, ev, signature(ev, whsec), f.token)
		requireStatus(t, r, http.StatusOK)
		require.Equal(t, true, r.body["received"])
		require.Equal(t, "true", r.header.Get("X-Tandem-Duplicate"))
		require.Equal(t, true, obj(r.body["event"])["duplicate"])
		require.Equal(t, 1, f.events(t, "evt_1"))
		require.Equal(t, 1, jobs("evt_1"), "processed once")
	})

	t.Run("a transfer Tandem did not make is ignored", func(t *testing.T) {
		ev := stripeEvent("evt_2", "transfer.created", `{"id":"tr_elsewhere","object":"transfer","amount":500,"currency":"usd",
			"amount_reversed":0,"reversed":false,"metadata":{}}`)
		requireStatus(t, f.stripePost(t, ev, signature(ev, whsec), f.token), http.StatusOK)
		outcome := f.waitOutcome(t, "evt_2")
		require.True(t, strings.HasPrefix(outcome, "ignored"), outcome)
		require.Contains(t, outcome, "tr_elsewhere")
	})

	t.Run("a bad signature is 401 and records nothing", func(t *testing.T) {
		ev := stripeEvent("evt_bad", "customer.created", `{"id":"cus_1","object":"customer"}`)
		tampered := []byte(strings.Replace(string(ev), "cus_1", "cus_2", 1))
		for name, sig := range map[string]string{
			"none":           "",
			"garbage":        "t=1,v1=deadbeef",
			"another secret": signature(ev, "whsec_other"),
			"another body":   signature(tampered, whsec),
			"too old": webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: ev, Secret: whsec,
				Timestamp: time.Now().Add(-time.Hour)}).Header,
		} {
			r := f.stripePost(t, ev, sig, f.token)
			requireProblem(t, r, http.StatusUnauthorized, "bad-signature")
			require.Equal(t, "Stripe-Signature", r.header.Get("WWW-Authenticate"), name)
		}
		require.Equal(t, 0, f.events(t, "evt_bad"))
		require.Equal(t, 0, jobs("evt_bad"))
	})

	t.Run("another API version is refused", func(t *testing.T) {
		ev := stripeEventOfVersion("evt_old", "transfer.created", `{"id":"tr_1","object":"transfer"}`, "2020-08-27")
		r := f.stripePost(t, ev, signature(ev, whsec), f.token)
		requireProblem(t, r, http.StatusBadRequest, "api-version")
		require.Contains(t, r.body["detail"], stripe.APIVersion)
		require.Equal(t, 0, f.events(t, "evt_old"))
	})
}

// TestStripeWebhookWithoutSecret: a server with no webhook secret verifies nothing, so it
// accepts nothing.
func TestStripeWebhookWithoutSecret(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	ev := stripeEvent("evt_1", "customer.created", `{"id":"cus_1","object":"customer"}`)
	r := f.stripePost(t, ev, signature(ev, whsec), f.token)
	requireProblem(t, r, http.StatusUnauthorized, "bad-signature")
	require.Contains(t, r.body["detail"], "STRIPE_WEBHOOK_SECRET")
	require.Equal(t, 0, f.events(t, "evt_1"))
}

// TestFourEyesEverySourceHTTP: every request that can lead to money leaving — a manual
// grant, a commitment, a stipend rate — is refused (403 four-eyes, nothing written) to an
// admin token that names no person; made by adm0, what follows from it is refused to adm0's
// approval (403 four-eyes) and approved by another admin. An approval is for the destination
// it saw: a destination changed before submission sends the payout back for approval.
func TestFourEyesEverySourceHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	ctx := context.Background()
	adm0 := f.requesterToken(t)
	adm2 := f.newToken(t, access.Admin, "adm2")
	requireStatus(t, f.do(t, "POST", "/v1/people/cy/tax-form", `{"on_file":true}`), http.StatusOK)
	r := f.do(t, "POST", "/v1/connections", fmt.Sprintf(`{"participant_id":"ana","other_id":"cy","role":"near_peer_coach",
		"origin":"matched","started_on":%q}`, f.day(-70)))
	requireStatus(t, r, http.StatusCreated)
	month := time.Date(f.now.Year(), f.now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	requireStatus(t, f.do(t, "POST", "/v1/conversations", fmt.Sprintf(`{"connection_id":%q,"occurred_at":%q,"channel":"video",
		"minutes":30,"resources":["advice"],"idempotency_key":"coach-1","verified":true}`, r.body["id"],
		month.AddDate(0, 0, 1).Add(12*time.Hour).Format(time.RFC3339))), http.StatusCreated)

	type source struct {
		name    string
		request func(token string) response
		follow  func(r response) string // the disbursement that follows from an accepted request
	}
	sources := []source{
		{"manual grant", func(token string) response {
			return f.as(t, token, "POST", "/v1/disbursements", grantBody("ana", "150.00", "rent gap"), "Idempotency-Key", "g1")
		}, func(r response) string { return r.body["id"].(string) }},
		{"commitment", func(token string) response {
			return f.as(t, token, "POST", "/v1/commitments", fmt.Sprintf(`{"program":"p1","person":"ana","amount":"150.00","instalments":1,
				"every_months":1,"first_due":%q}`, f.day(-1)), "Idempotency-Key", "c1")
		}, func(response) string {
			r := f.do(t, "POST", "/v1/payouts/run", `{}`)
			requireStatus(t, r, http.StatusOK)
			require.EqualValues(t, 1, r.body["instalments_fulfilled"], r.raw)
			r = f.do(t, "GET", "/v1/commitments?person=ana", "")
			requireStatus(t, r, http.StatusOK)
			return obj(list(obj(list(r.body["commitments"])[0])["instalments"])[0])["disbursement_id"].(string)
		}},
		{"stipend rate", func(token string) response {
			return f.as(t, token, "POST", "/v1/programs/p1/stipend-policy", `{"rate":"150.00"}`)
		}, func(response) string {
			r := f.do(t, "POST", "/v1/stipends/run", fmt.Sprintf(`{"month":%q}`, month.Format("2006-01")))
			requireStatus(t, r, http.StatusOK)
			require.Len(t, list(r.body["stipends"]), 1, r.raw)
			return obj(list(r.body["stipends"])[0])["disbursement_id"].(string)
		}},
	}
	for _, src := range sources {
		before := f.count(t, `SELECT (SELECT count(*) FROM payouts_disbursements) + (SELECT count(*) FROM payouts_commitments)
			+ (SELECT count(*) FROM payouts_stipend_policies) + (SELECT count(*) FROM ledger_entries)`)
		r := src.request(f.token)
		requireProblem(t, r, http.StatusForbidden, "four-eyes")
		require.Contains(t, r.body["detail"], "person", src.name)
		require.Equal(t, before, f.count(t, `SELECT (SELECT count(*) FROM payouts_disbursements) + (SELECT count(*) FROM payouts_commitments)
			+ (SELECT count(*) FROM payouts_stipend_policies) + (SELECT count(*) FROM ledger_entries)`), "%s: nothing written", src.name)

		r = src.request(adm0)
		require.Contains(t, []int{http.StatusOK, http.StatusCreated}, r.status, "%s: %s", src.name, r.raw)
		id := src.follow(r)
		d := f.disbursement(t, id)
		require.Equal(t, "awaiting_approval", d["state"], src.name)
		require.Equal(t, "person:adm0", d["requested_by"], src.name)
		requireProblem(t, f.as(t, adm0, "POST", "/v1/disbursements/"+id+"/approve", `{}`), http.StatusForbidden, "four-eyes")
		r = f.as(t, adm2, "POST", "/v1/disbursements/"+id+"/approve", `{"reason":"checked","destination":"sandbox:`+d["person_id"].(string)+`"}`)
		requireStatus(t, r, http.StatusOK)
		require.Equal(t, "approved", r.body["state"], src.name)
		require.Equal(t, "sandbox:"+d["person_id"].(string), obj(list(r.body["approvals"])[0])["destination"], "the approval records where it saw the payout go")
	}

	// The grant's destination changes after its approval: submission sends it back.
	grant := f.disbursement(t, f.textValue(t, `SELECT id::text FROM payouts_disbursements WHERE source = 'manual'`))
	requireStatus(t, f.as(t, f.ana, "POST", "/v1/people/ana/payout-destination", `{"account":"sandbox:ana-new"}`), http.StatusOK)
	require.NoError(t, f.app.Payouts.Submit(ctx, uuid.MustParse(grant["id"].(string))))
	d := f.disbursement(t, grant["id"].(string))
	require.Equal(t, "awaiting_approval", d["state"], "the approval was for another destination")
	require.Contains(t, obj(list(d["transitions"])[len(list(d["transitions"]))-1])["reason"], "the approvals no longer count")
	requireStatus(t, f.as(t, adm2, "POST", "/v1/disbursements/"+grant["id"].(string)+"/approve", `{"reason":"new bank checked","destination":"sandbox:ana-new"}`), http.StatusOK)
	require.NoError(t, f.app.Payouts.Submit(ctx, uuid.MustParse(grant["id"].(string))))
	d = f.disbursement(t, grant["id"].(string))
	require.Equal(t, "paid", d["state"], d)
	require.Equal(t, "sandbox:ana-new", obj(list(d["attempts"])[0])["destination"])
}

// textValue reads one text value.
func (f *netFixture) textValue(t *testing.T, sql string) string {
	t.Helper()
	var s string
	require.NoError(t, f.pool.QueryRow(context.Background(), sql).Scan(&s))
	return s
}

// TestApproveDestinationShownHTTP: POST /v1/disbursements/{id}/approve carries the payout
// destination the approver was shown. Without it (the person has one): 422. When the person
// set another since: 409 disbursement-state saying so, nothing approved. With the one on
// file now: approved, the approval recording it.
func TestApproveDestinationShownHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)
	adm1 := f.newToken(t, access.Admin, "adm1")
	adm2 := f.newToken(t, access.Admin, "adm2")
	id := f.grant(t, adm1, "ana", "150.00", "shown-1")["id"].(string)
	require.Equal(t, "awaiting_approval", f.disbursement(t, id)["state"])

	r := f.as(t, adm2, "POST", "/v1/disbursements/"+id+"/approve", `{"reason":"looked"}`)
	requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
	require.Contains(t, r.body["detail"], "destination: required")
	require.Contains(t, r.body["detail"], "it is now sandbox:ana")

	// Shown sandbox:ana; ana sets her own destination before the admin approves.
	requireStatus(t, f.as(t, f.ana, "POST", "/v1/people/ana/payout-destination", `{"account":"sandbox:ana-b"}`), http.StatusOK)
	r = f.as(t, adm2, "POST", "/v1/disbursements/"+id+"/approve", `{"reason":"looked","destination":"sandbox:ana"}`)
	requireProblem(t, r, http.StatusConflict, "disbursement-state")
	require.Contains(t, r.body["detail"], "changed to sandbox:ana-b since it was shown (sandbox:ana)")
	require.Contains(t, r.body["detail"], "look again")
	d := f.disbursement(t, id)
	require.Equal(t, "awaiting_approval", d["state"])
	require.Empty(t, list(d["approvals"]), "no refused approval is counted")

	r = f.as(t, adm2, "POST", "/v1/disbursements/"+id+"/approve", `{"reason":"looked again","destination":"sandbox:ana-b"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "approved", r.body["state"], r.raw)
	require.Equal(t, "sandbox:ana-b", obj(list(r.body["approvals"])[0])["destination"])
}
