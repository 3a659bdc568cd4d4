package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/api"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
)

type testBundle struct {
	srv    *httptest.Server
	pool   *pgxpool.Pool
	access *access.Store
	token  string // an admin token, sent by do unless a request sets Authorization
}

func setup(t *testing.T, cfgs ...api.Config) *testBundle {
	t.Helper()
	pool := dbtest.New(t)
	l := ledger.New(pool, nil)
	t.Cleanup(l.Close)
	store := access.New(pool)
	cfg := api.Config{WriteRate: rate.Inf}
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	cfg.Pool, cfg.Ledger, cfg.Access = pool, l, store
	cfg.Health = map[string]api.HealthFunc{
		"database": func(ctx context.Context) (any, error) { return nil, pool.Ping(ctx) },
	}
	srv := httptest.NewServer(api.New(cfg))
	t.Cleanup(srv.Close)
	b := &testBundle{srv: srv, pool: pool, access: store}
	b.token = b.newToken(t, access.Admin, "")
	return b
}

// newToken creates a token with role and person and returns its secret.
func (b *testBundle) newToken(t *testing.T, role access.Role, person string) string {
	t.Helper()
	_, secret, err := b.access.CreateToken(context.Background(), access.Principal{Name: "test"},
		access.NewToken{Name: fmt.Sprintf("%s %s", role, person), Role: role, PersonID: person})
	require.NoError(t, err)
	return secret
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (b *testBundle) do(t *testing.T, method, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if _, set := req.Header["Authorization"]; !set {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	return send(t, req)
}

// send makes the request and reads the whole response, decoding a JSON body when there is one.
func send(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// requireProblem asserts a problem+json answer with the given status and type slug.
func requireProblem(t *testing.T, r response, status int, slug string) {
	t.Helper()
	require.Equal(t, status, r.status, r.raw)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	require.Equal(t, api.ProblemTypePrefix+slug, r.body["type"], r.raw)
	require.NotEmpty(t, r.body["detail"])
	require.NotEmpty(t, r.body["request_id"])
}

// rowCounts is what a refused request must leave unchanged.
func (b *testBundle) rowCounts(t *testing.T) string {
	t.Helper()
	var s string
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM ledger_accounts) || '/' || (SELECT count(*) FROM ledger_entries) || '/' ||
		(SELECT count(*) FROM ledger_postings) || '/' ||
		(SELECT coalesce(string_agg(code || ':' || posted_debits || ':' || posted_credits || ':' || pending_debits || ':' || pending_credits, ',' ORDER BY code), '') FROM ledger_accounts)`).Scan(&s))
	return s
}

func entryJSON(key, from, to, amount string) string {
	return fmt.Sprintf(`{"idempotency_key":%q,"description":"test","postings":[
		{"account":%q,"side":"debit","amount":%q,"currency":"USD"},
		{"account":%q,"side":"credit","amount":%q,"currency":"USD"}]}`, key, from, amount, to, amount)
}

func (b *testBundle) openAccounts(t *testing.T) {
	t.Helper()
	for _, a := range []string{
		`{"code":"org/cash/stripe","type":"asset","currency":"USD"}`,
		`{"code":"program/p/fund","type":"equity","currency":"USD","no_overdraft":true}`,
		`{"code":"participant/x/wallet","type":"liability","currency":"USD","no_overdraft":true}`,
	} {
		r := b.do(t, "POST", "/v1/ledger/accounts", a)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
	}
}

func TestAccounts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)

	r := b.do(t, "POST", "/v1/ledger/accounts", `{"code":"program/p/fund","type":"equity","currency":"USD","no_overdraft":true}`)
	require.Equal(t, http.StatusOK, r.status, "same attributes again is a harmless retry")
	requireProblem(t, b.do(t, "POST", "/v1/ledger/accounts", `{"code":"program/p/fund","type":"asset","currency":"USD"}`), 409, "account-exists")
	requireProblem(t, b.do(t, "POST", "/v1/ledger/accounts", `{"code":"bad code","type":"asset","currency":"USD"}`), 422, "validation-failed")
	requireProblem(t, b.do(t, "POST", "/v1/ledger/accounts", `{"code":"a/b","type":"asset","currency":"XXX"}`), 422, "unknown-currency")

	r = b.do(t, "GET", "/v1/ledger/accounts/program/p/fund", "")
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "program/p/fund", r.body["code"])
	require.Equal(t, "0.00", r.body["balance"].(map[string]any)["available"])

	r = b.do(t, "GET", "/v1/ledger/accounts?prefix=program/", "")
	require.Equal(t, 200, r.status)
	require.Len(t, r.body["accounts"], 1)

	requireProblem(t, b.do(t, "GET", "/v1/ledger/accounts/nope", ""), 404, "account-not-found")
	r = b.do(t, "POST", "/v1/ledger/accounts/close", `{"code":"participant/x/wallet"}`)
	require.Equal(t, 200, r.status, r.raw)
	require.NotNil(t, r.body["closed_at"])
	requireProblem(t, b.do(t, "POST", "/v1/ledger/accounts/close", `{"code":"participant/x/wallet"}`), 409, "account-closed")
}

func TestEntryLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)

	r := b.do(t, "POST", "/v1/ledger/entries", entryJSON("", "org/cash/stripe", "program/p/fund", "500.00"), "Idempotency-Key", "donor-1")
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	require.Equal(t, "standard", r.body["kind"])
	fundID := r.body["id"].(string)
	require.Equal(t, "/v1/ledger/entries/"+fundID, r.header.Get("Location"))

	r = b.do(t, "POST", "/v1/ledger/entries", entryJSON("", "org/cash/stripe", "program/p/fund", "500.00"), "Idempotency-Key", "donor-1")
	require.Equal(t, http.StatusOK, r.status, "a replay answers 200 with the original")
	require.Equal(t, fundID, r.body["id"])
	require.Equal(t, true, r.body["replayed"])

	r = b.do(t, "POST", "/v1/ledger/entries", entryJSON("award-1", "program/p/fund", "participant/x/wallet", "80.00"))
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	awardSeq := int64(r.body["seq"].(float64))

	r = b.do(t, "POST", "/v1/ledger/pending-entries", entryJSON("payout-1", "participant/x/wallet", "org/cash/stripe", "80.00"))
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	require.Equal(t, "pending", r.body["kind"])
	holdID := r.body["id"].(string)

	r = b.do(t, "GET", "/v1/ledger/balances/participant/x/wallet", "")
	require.Equal(t, "80.00", r.body["posted"])
	require.Equal(t, "0.00", r.body["available"])
	require.Equal(t, "-80.00", r.body["pending"])

	// partial commit of 30: 50 returns to the wallet
	r = b.do(t, "POST", "/v1/ledger/entries/"+holdID+"/commit", `{"postings":[
		{"account":"participant/x/wallet","side":"debit","amount":"30.00","currency":"USD"},
		{"account":"org/cash/stripe","side":"credit","amount":"30.00","currency":"USD"}]}`, "Idempotency-Key", "commit-1")
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	commitID := r.body["id"].(string)
	r = b.do(t, "GET", "/v1/ledger/balances/participant/x/wallet", "")
	require.Equal(t, "50.00", r.body["posted"])
	require.Equal(t, "50.00", r.body["available"])

	// the same commit retried with its key is harmless; voiding now is refused
	r = b.do(t, "POST", "/v1/ledger/entries/"+holdID+"/commit", `{"postings":[
		{"account":"participant/x/wallet","side":"debit","amount":"30.00","currency":"USD"},
		{"account":"org/cash/stripe","side":"credit","amount":"30.00","currency":"USD"}]}`, "Idempotency-Key", "commit-1")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, commitID, r.body["id"])
	before := b.rowCounts(t)
	requireProblem(t, b.do(t, "POST", "/v1/ledger/entries/"+holdID+"/void", ""), 409, "already-resolved")
	requireProblem(t, b.do(t, "POST", "/v1/ledger/entries/"+holdID+"/commit", ""), 409, "already-resolved")
	require.Equal(t, before, b.rowCounts(t))

	r = b.do(t, "GET", "/v1/ledger/entries/"+holdID, "")
	require.Equal(t, commitID, r.body["resolved_by"])

	// reverse the commit once
	r = b.do(t, "POST", "/v1/ledger/entries/"+commitID+"/reverse", `{"description":"returned transfer"}`)
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	require.Equal(t, "reversal", r.body["kind"])
	requireProblem(t, b.do(t, "POST", "/v1/ledger/entries/"+commitID+"/reverse", ""), 409, "already-reversed")

	r = b.do(t, "GET", fmt.Sprintf("/v1/ledger/balances/participant/x/wallet?as_of_seq=%d", awardSeq), "")
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "80.00", r.body["posted"], "as of the award")

	r = b.do(t, "GET", "/v1/ledger/statements/participant/x/wallet?limit=2", "")
	require.Equal(t, 200, r.status, r.raw)
	require.Len(t, r.body["lines"], 2)
	require.NotEmpty(t, r.body["next"])
	r = b.do(t, "GET", "/v1/ledger/statements/participant/x/wallet?limit=2&after="+r.body["next"].(string), "")
	require.Equal(t, 200, r.status, r.raw)
	require.Len(t, r.body["lines"], 2)
	requireProblem(t, b.do(t, "GET", "/v1/ledger/statements/participant/x/wallet?after=x", ""), 422, "validation-failed")

	r = b.do(t, "GET", "/v1/ledger/trial-balance", "")
	require.Equal(t, 200, r.status, r.raw)
	tot := r.body["totals"].([]any)[0].(map[string]any)
	require.Equal(t, true, tot["balanced"])
	require.Equal(t, tot["debits"], tot["credits"])

	r = b.do(t, "GET", "/v1/ledger/entries?after_seq=0&limit=2", "")
	require.Len(t, r.body["entries"], 2)

	r = b.do(t, "GET", "/v1/ledger/check", "")
	require.Equal(t, true, r.body["ok"], r.raw)
}

func TestBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.openAccounts(t)
	r := b.do(t, "POST", "/v1/ledger/entries", entryJSON("donor-1", "org/cash/stripe", "program/p/fund", "100.00"))
	require.Equal(t, http.StatusCreated, r.status, r.raw)

	huge := `{"idempotency_key":"big","description":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`
	cases := []struct {
		name, path, body string
		headers          []string
		status           int
		slug             string
	}{
		{"malformed json", "/v1/ledger/entries", `{"idempotency_key":`, nil, 400, "malformed-request"},
		{"trailing data", "/v1/ledger/entries", entryJSON("k1", "org/cash/stripe", "program/p/fund", "1.00") + "{}", nil, 400, "malformed-request"},
		{"unknown field", "/v1/ledger/entries", `{"idempotency_key":"k","postingz":[]}`, nil, 400, "malformed-request"},
		{"empty body", "/v1/ledger/entries", ``, nil, 400, "malformed-request"},
		{"oversized", "/v1/ledger/entries", huge, nil, 413, "request-too-large"},
		{"form content type", "/v1/ledger/entries", entryJSON("k1", "org/cash/stripe", "program/p/fund", "1.00"), []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported-media-type"},
		{"unbalanced", "/v1/ledger/entries", `{"idempotency_key":"k","postings":[
			{"account":"org/cash/stripe","side":"debit","amount":"2.00","currency":"USD"},
			{"account":"program/p/fund","side":"credit","amount":"1.00","currency":"USD"}]}`, nil, 422, "unbalanced-entry"},
		{"one posting", "/v1/ledger/entries", `{"idempotency_key":"k","postings":[
			{"account":"org/cash/stripe","side":"debit","amount":"2.00","currency":"USD"}]}`, nil, 422, "validation-failed"},
		{"amount as number", "/v1/ledger/entries", `{"idempotency_key":"k","postings":[
			{"account":"org/cash/stripe","side":"debit","amount":2.5,"currency":"USD"},
			{"account":"program/p/fund","side":"credit","amount":"2.50","currency":"USD"}]}`, nil, 422, "invalid-amount"},
		{"zero", "/v1/ledger/entries", entryJSON("k", "org/cash/stripe", "program/p/fund", "0.00"), nil, 422, "invalid-amount"},
		{"negative", "/v1/ledger/entries", entryJSON("k", "org/cash/stripe", "program/p/fund", "-5.00"), nil, 422, "invalid-amount"},
		{"NaN", "/v1/ledger/entries", entryJSON("k", "org/cash/stripe", "program/p/fund", "NaN"), nil, 422, "invalid-amount"},
		{"too precise", "/v1/ledger/entries", entryJSON("k", "org/cash/stripe", "program/p/fund", "1.005"), nil, 422, "invalid-amount"},
		{"unknown account", "/v1/ledger/entries", entryJSON("k", "org/cash/stripe", "program/nope/fund", "1.00"), nil, 404, "account-not-found"},
		{"overdraft", "/v1/ledger/entries", entryJSON("k", "program/p/fund", "participant/x/wallet", "100.01"), nil, 422, "insufficient-funds"},
		{"overdraft by hold", "/v1/ledger/pending-entries", entryJSON("k", "program/p/fund", "participant/x/wallet", "100.01"), nil, 422, "insufficient-funds"},
		{"key reused, other content", "/v1/ledger/entries", entryJSON("donor-1", "org/cash/stripe", "program/p/fund", "99.00"), nil, 409, "idempotency-conflict"},
		{"no key", "/v1/ledger/entries", entryJSON("", "org/cash/stripe", "program/p/fund", "1.00"), nil, 422, "validation-failed"},
		{"header and body keys differ", "/v1/ledger/entries", entryJSON("a", "org/cash/stripe", "program/p/fund", "1.00"), []string{"Idempotency-Key", "b"}, 422, "validation-failed"},
		{"bad entry id", "/v1/ledger/entries/not-a-uuid/void", "", nil, 404, "entry-not-found"},
		{"unknown entry", "/v1/ledger/entries/0193a0a0-0000-7000-8000-000000000000/reverse", "", nil, 404, "entry-not-found"},
		{"bad as_of", "/v1/ledger/balances/program/p/fund?as_of=yesterday", "", nil, 422, "validation-failed"},
		{"no route", "/v1/nothing", "", nil, 404, "not-found"},
		{"batch with one bad entry", "/v1/ledger/batches", `{"entries":[` + entryJSON("b1", "org/cash/stripe", "program/p/fund", "1.00") + `,` +
			entryJSON("b2", "program/p/fund", "participant/x/wallet", "500.00") + `]}`, nil, 422, "insufficient-funds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := b.rowCounts(t)
			method := "POST"
			if strings.Contains(tc.path, "balances") || tc.path == "/v1/nothing" {
				method = "GET"
			}
			r := b.do(t, method, tc.path, tc.body, tc.headers...)
			requireProblem(t, r, tc.status, tc.slug)
			require.Equal(t, before, b.rowCounts(t), "a refused request writes nothing")
		})
	}
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, "GET", "/healthz", "")
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "ok", r.body["status"])
	require.Equal(t, "ok", r.body["checks"].(map[string]any)["database"].(map[string]any)["status"])

	down := httptest.NewServer(api.New(api.Config{Health: map[string]api.HealthFunc{
		"database": func(context.Context) (any, error) { return nil, fmt.Errorf("connection refused") },
	}}))
	defer down.Close()
	resp, err := http.Get(down.URL + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	require.Contains(t, body.String(), "connection refused")
}
