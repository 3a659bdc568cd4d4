package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/payouts"
)

// TestReturnedMoneyPagesAndHTTP: what a paid payout's partial return left in the wallet is
// shown on the disbursement's page with what became of it; an admin pays it again (a new
// disbursement they request) or gives it back to the fund, from the page or over /v1;
// auditors and the person see it and change nothing; nothing is done twice.
func TestReturnedMoneyPagesAndHTTP(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	sandbox, ok := f.app.Payouts.Provider().(*payouts.Sandbox)
	require.True(t, ok)
	id, ref := f.paidGrant(t, "60.00", "ret-1")
	require.NoError(t, sandbox.Reverse(context.Background(), ref, decimal.RequireFromString("20.00")))
	require.Len(t, f.reconcileNow(t), 1)

	r := f.do(t, "GET", "/v1/disbursements/"+id+"/returned", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "20.00", r.body["outstanding"], r.raw)
	requireStatus(t, f.as(t, f.ana, "GET", "/v1/disbursements/"+id+"/returned", ""), http.StatusOK)

	adm1 := f.session(t, f.adm1)
	p := adm1.get("/admin/disbursements/" + id)
	require.Equal(t, http.StatusOK, p.status)
	assert.Contains(t, p.body, "<strong>20.00 USD</strong> is left in the wallet")
	assert.Contains(t, p.body, `action="/admin/disbursements/`+id+`/repay-returned"`)
	assert.Contains(t, p.body, `action="/admin/disbursements/`+id+`/return-to-fund"`)
	assert.Contains(t, p.body, ">Pay the returned 20.00 USD again</button>")
	requireAccessible(t, p)
	aud := f.session(t, f.auditor).get("/admin/disbursements/" + id)
	assert.Contains(t, aud.body, "is left in the wallet")
	assert.NotContains(t, aud.body, "/repay-returned", "an auditor is shown no form")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/disbursements/"+id+"/return-to-fund", `{"reason":"x"}`), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.ana, "POST", "/v1/disbursements/"+id+"/repay-returned", `{"reason":"x"}`), http.StatusForbidden, "forbidden")

	// Paid again from the page: adm1 requests the new disbursement.
	p = adm1.post("/admin/disbursements/"+id+"/repay-returned", url.Values{"reason": {""}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.status, "a reason is required")
	assert.Contains(t, p.body, "is left in the wallet", "the page again, with why")
	p = adm1.follow(adm1.post("/admin/disbursements/"+id+"/repay-returned", url.Values{"reason": {"new bank account"}}))
	assert.Contains(t, p.body, "The returned 20.00 USD is paid again to Ana by a new disbursement")
	assert.Contains(t, p.body, "<strong>0.00 USD</strong> is left in the wallet")
	assert.NotContains(t, p.body, `/repay-returned"`, "nothing left to pay again")
	r = f.do(t, "GET", "/v1/disbursements/"+id+"/returned", "")
	settlements := list(r.body["settlements"])
	require.Len(t, settlements, 1, r.raw)
	newID := obj(settlements[0])["new_disbursement"].(string)
	nd := f.disbursement(t, newID)
	require.Equal(t, "person:adm1", nd["requested_by"])
	require.Equal(t, "20.00", nd["amount"])
	require.Equal(t, "manual", nd["source"])
	require.Equal(t, "20.00", f.posted(t, "participant/ana/wallet"), "the new disbursement pays it from the wallet")
	requireProblem(t, f.as(t, f.adm2, "POST", "/v1/disbursements/"+id+"/repay-returned", `{"reason":"again"}`), http.StatusConflict, "disbursement-state")

	// Another 10.00 comes back and goes to the fund over /v1.
	require.NoError(t, sandbox.Reverse(context.Background(), ref, decimal.RequireFromString("10.00")))
	require.Len(t, f.reconcileNow(t), 1)
	fund := f.posted(t, "program/p1/fund")
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/return-to-fund", `{"reason":" "}`), http.StatusUnprocessableEntity, "validation-failed")
	r = f.do(t, "POST", "/v1/disbursements/"+id+"/return-to-fund", `{"reason":"the person left the program"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "30.00", r.body["returned"], r.raw)
	require.Equal(t, "0.00", r.body["outstanding"], r.raw)
	requireAmount(t, decimal.RequireFromString(fund).Add(decimal.NewFromInt(10)).String(), f.posted(t, "program/p1/fund"))
	requireProblem(t, f.do(t, "POST", "/v1/disbursements/"+id+"/return-to-fund", `{"reason":"again"}`), http.StatusConflict, "disbursement-state")
	require.Equal(t, "paid", f.disbursement(t, id)["state"], "the original stays paid")
}

// TestRetractedAwardsPageAndHTTP: an award whose evidence a coach retracts after it was paid
// is listed on /admin/retracted and GET /v1/retracted-awards until an admin reverses or keeps
// it with a reason; auditors read the list and change nothing; participants see none of it.
func TestRetractedAwardsPageAndHTTP(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	requireStatus(t, f.do(t, "POST", "/v1/rules", ruleBody("p1", mentorRule)), http.StatusCreated)
	var convs []string
	for i := range 4 {
		id := f.logConversation(t, i+1, "rc-"+string(rune('a'+i)))
		requireStatus(t, f.as(t, f.cy, "POST", "/v1/conversations/"+id+"/verify", `{}`), http.StatusOK)
		convs = append(convs, id)
	}
	_, err := f.app.Network.EvaluateParticipant(context.Background(), "ana")
	require.NoError(t, err)
	require.Equal(t, "50.00", f.posted(t, "participant/ana/wallet"))

	r := f.do(t, "GET", "/v1/retracted-awards?program=p1", "")
	requireStatus(t, r, http.StatusOK)
	require.Empty(t, list(r.body["awards"]), "no evidence retracted yet")

	requireStatus(t, f.as(t, f.cy, "POST", "/v1/conversations/"+convs[2]+"/retract", `{"reason":"logged by mistake"}`), http.StatusOK)
	r = f.do(t, "GET", "/v1/retracted-awards?program=p1", "")
	requireStatus(t, r, http.StatusOK)
	awards := list(r.body["awards"])
	require.Len(t, awards, 1, r.raw)
	award := obj(awards[0])
	awardID := obj(award["award"])["id"].(string)
	require.Equal(t, []any{"keep", "reverse"}, award["decisions"])
	require.Equal(t, convs[2], obj(list(award["withdrawn"])[0])["item"])
	require.Equal(t, "conversation_retracted", obj(list(award["withdrawn"])[0])["what"])
	requireStatus(t, f.as(t, f.auditor, "GET", "/v1/retracted-awards", ""), http.StatusOK)
	requireProblem(t, f.as(t, f.ana, "GET", "/v1/retracted-awards", ""), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/awards/"+awardID+"/decision", `{"decision":"keep","reason":"x"}`),
		http.StatusForbidden, "forbidden")

	adm1 := f.session(t, f.adm1)
	p := adm1.get("/admin/retracted")
	require.Equal(t, http.StatusOK, p.status)
	assert.Contains(t, p.body, "1 award waits for a decision.")
	assert.Contains(t, p.body, "Conversation retracted "+convs[2])
	assert.Contains(t, p.body, "logged by mistake")
	assert.Contains(t, p.body, ">Reverse 50.00 USD to the fund</button>")
	assert.Contains(t, p.body, ">Keep the award</button>")
	assert.Contains(t, p.body, `href="/admin/retracted"`, "in the admin's navigation")
	requireAccessible(t, p)
	aud := f.session(t, f.auditor).get("/admin/retracted")
	assert.Contains(t, aud.body, convs[2])
	assert.NotContains(t, aud.body, `action="/admin/awards/`, "an auditor is shown no form")
	assert.Equal(t, http.StatusForbidden, f.session(t, f.ana).get("/admin/retracted").status)

	// Reversed from the page: a reason is needed; the money goes back to the fund.
	p = adm1.post("/admin/awards/"+awardID+"/decision", url.Values{"decision": {"reverse"}, "reason": {""}, "return_to": {"/admin/retracted"}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.status)
	assert.Contains(t, p.body, "1 award waits for a decision.", "the list again, with why")
	fund := f.posted(t, "program/p1/fund")
	p = adm1.follow(adm1.post("/admin/awards/"+awardID+"/decision", url.Values{"decision": {"reverse"},
		"reason": {"the third meeting did not happen"}, "return_to": {"/admin/retracted?program=p1"}}))
	assert.Contains(t, p.body, "Reversed award award:p1:ana:mentor-4:once")
	assert.Contains(t, p.body, "No award waits for a decision.")
	requireAmount(t, decimal.RequireFromString(fund).Add(decimal.NewFromInt(50)).String(), f.posted(t, "program/p1/fund"))
	require.Equal(t, "0.00", f.posted(t, "participant/ana/wallet"))
	r = f.do(t, "GET", "/v1/retracted-awards", "")
	require.Empty(t, list(r.body["awards"]), r.raw)
	r = f.do(t, "POST", "/v1/awards/"+awardID+"/decision", `{"decision":"keep","reason":"again"}`)
	requireProblem(t, r, http.StatusConflict, "disbursement-state")
	require.True(t, strings.Contains(r.raw, "decided on already"), r.raw)
}
