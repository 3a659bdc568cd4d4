package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/api"
	"github.com/tandemledger/tandem/ledger"
)

// apiSnapshot fingerprints every row of the ledger tables (count and md5 of the rows' text):
// a refused request must leave it unchanged.
func (b *testBundle) apiSnapshot(t *testing.T) string {
	t.Helper()
	var s string
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT concat_ws(' | ',
		'entries ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(e::text, ',' ORDER BY e.seq)), '-') FROM ledger_entries e),
		'postings ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(p::text, ',' ORDER BY p.entry_id, p.line)), '-') FROM ledger_postings p),
		'accounts ' || (SELECT count(*) || ' ' || coalesce(md5(string_agg(a::text, ',' ORDER BY a.id)), '-') FROM ledger_accounts a))`).Scan(&s))
	return s
}

// pj is one posting as JSON; amount is raw JSON (quote it for a string).
func pj(account, side, amount, currency string) string {
	return fmt.Sprintf(`{"account":%q,"side":%q,"amount":%s,"currency":%q}`, account, side, amount, currency)
}

// ej is an entry as JSON with the given postings.
func ej(key string, postings ...string) string {
	return fmt.Sprintf(`{"idempotency_key":%q,"description":%q,"postings":[%s]}`, key, key, strings.Join(postings, ","))
}

// usdPair is a transfer with the amount as raw JSON.
func usdPair(key, from, to, amount string) string {
	return ej(key, pj(from, "debit", amount, "USD"), pj(to, "credit", amount, "USD"))
}

// doReader is do with a body of unknown length (sent chunked).
func (b *testBundle) doReader(t *testing.T, method, path string, body io.Reader, contentType string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, io.MultiReader(body)) // MultiReader hides the length
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+b.token)
	return send(t, req)
}

// httpFixture mirrors the ledger package's bad-input fixture, built through HTTP.
type httpFixture struct {
	award, fix, fixReversal, committed, commitEntry, voided, void, open string
}

func newHTTPFixture(t *testing.T, b *testBundle) *httpFixture {
	t.Helper()
	b.openAccounts(t)
	for _, a := range []string{
		`{"code":"program/h/fund","type":"equity","currency":"USD","no_overdraft":true}`,
		`{"code":"program/q/fund","type":"equity","currency":"USD","no_overdraft":true}`,
		`{"code":"participant/h/wallet","type":"liability","currency":"USD","no_overdraft":true}`,
		`{"code":"closed/wallet","type":"liability","currency":"USD","no_overdraft":true}`,
		`{"code":"org/cash/eur","type":"asset","currency":"EUR"}`,
		`{"code":"program/p/eur","type":"equity","currency":"EUR"}`,
		`{"code":"org/cash/jpy","type":"asset","currency":"JPY"}`,
		`{"code":"program/p/jpy","type":"equity","currency":"JPY"}`,
	} {
		r := b.do(t, "POST", "/v1/ledger/accounts", a)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
	}
	r := b.do(t, "POST", "/v1/ledger/accounts/close", `{"code":"closed/wallet"}`)
	require.Equal(t, http.StatusOK, r.status, r.raw)

	created := func(path, body string, headers ...string) string {
		t.Helper()
		r := b.do(t, "POST", path, body, headers...)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
		return r.body["id"].(string)
	}
	f := &httpFixture{}
	created("/v1/ledger/entries", entryJSON("donor-1", "org/cash/stripe", "program/p/fund", "100.00"))
	created("/v1/ledger/entries", entryJSON("donor-h", "org/cash/stripe", "program/h/fund", "100.00"))
	created("/v1/ledger/pending-entries", entryJSON("hold-h", "program/h/fund", "participant/h/wallet", "60.00"))
	created("/v1/ledger/entries", entryJSON("donor-q", "org/cash/stripe", "program/q/fund", "100.00"))
	f.award = created("/v1/ledger/entries", entryJSON("award-1", "program/q/fund", "participant/x/wallet", "30.00"))
	f.committed = created("/v1/ledger/pending-entries", entryJSON("payout-c", "participant/x/wallet", "org/cash/stripe", "10.00"))
	f.commitEntry = created("/v1/ledger/entries/"+f.committed+"/commit", "", "Idempotency-Key", "commit-c")
	f.voided = created("/v1/ledger/pending-entries", entryJSON("payout-v", "participant/x/wallet", "org/cash/stripe", "5.00"))
	f.void = created("/v1/ledger/entries/"+f.voided+"/void", "")
	f.open = created("/v1/ledger/pending-entries", entryJSON("payout-open", "participant/x/wallet", "org/cash/stripe", "20.00"))
	f.fix = created("/v1/ledger/entries", entryJSON("fix-1", "org/cash/stripe", "program/q/fund", "3.00"))
	f.fixReversal = created("/v1/ledger/entries/"+f.fix+"/reverse", "")

	for code, want := range map[string]string{
		"program/p/fund": "100.00", "program/h/fund": "40.00", "program/q/fund": "70.00", "participant/x/wallet": "0.00",
	} {
		r := b.do(t, "GET", "/v1/ledger/balances/"+code, "")
		require.Equal(t, want, r.body["available"], code)
	}
	return f
}

type httpBadCase struct {
	name, method, path, body string
	headers                  []string
	status                   int
	slug                     string
}

func runHTTPBadCases(t *testing.T, b *testBundle, cases []httpBadCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := b.apiSnapshot(t)
			method := tc.method
			if method == "" {
				method = "POST"
			}
			r := b.do(t, method, tc.path, tc.body, tc.headers...)
			requireProblem(t, r, tc.status, tc.slug)
			require.Equal(t, float64(tc.status), r.body["status"], r.raw)
			require.Equal(t, before, b.apiSnapshot(t), "a refused request must write nothing")
		})
	}
	r := b.do(t, "GET", "/v1/ledger/check", "")
	require.Equal(t, true, r.body["ok"], r.raw)
}

// TestHTTPMalformedRequests: bodies that are not the JSON the API reads.
func TestHTTPMalformedRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newHTTPFixture(t, b)
	const entries, pending, batches, accounts = "/v1/ledger/entries", "/v1/ledger/pending-entries", "/v1/ledger/batches", "/v1/ledger/accounts"
	commit := "/v1/ledger/entries/" + f.open + "/commit"
	good := entryJSON("k-new", "org/cash/stripe", "program/p/fund", "1.00")
	deep := `{"idempotency_key":"k","metadata":{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `},"postings":[]}`

	cases := []httpBadCase{
		// not JSON, or not one object
		{name: "truncated", path: entries, body: `{"idempotency_key":`, status: 400, slug: "malformed-request"},
		{name: "trailing comma", path: entries, body: `{"idempotency_key":"k",}`, status: 400, slug: "malformed-request"},
		{name: "single quotes", path: entries, body: `{'idempotency_key':'k'}`, status: 400, slug: "malformed-request"},
		{name: "array", path: entries, body: `[` + good + `]`, status: 400, slug: "malformed-request"},
		{name: "string", path: entries, body: `"hello"`, status: 400, slug: "malformed-request"},
		{name: "two objects", path: entries, body: good + good, status: 400, slug: "malformed-request"},
		{name: "trailing garbage", path: entries, body: good + ` x`, status: 400, slug: "malformed-request"},
		{name: "whitespace only", path: entries, body: " \n\t ", status: 400, slug: "malformed-request"},
		{name: "key is a number", path: entries, body: `{"idempotency_key":5,"postings":[]}`, status: 400, slug: "malformed-request"},
		{name: "postings is an object", path: entries, body: `{"idempotency_key":"k","postings":{"a":1}}`, status: 400, slug: "malformed-request"},
		{name: "metadata nested too deep", path: entries, body: deep, status: 400, slug: "malformed-request"},
		{name: "JSON null", path: entries, body: `null`, status: 422, slug: "validation-failed"},
		{name: "posting is a number", path: entries, body: `{"idempotency_key":"k","postings":[1,2]}`, status: 422, slug: "validation-failed"},
		{name: "malformed pending", path: pending, body: `{"idempotency_key":`, status: 400, slug: "malformed-request"},
		{name: "malformed batch", path: batches, body: `{"entries":[`, status: 400, slug: "malformed-request"},
		{name: "malformed account", path: accounts, body: `{"code":"a/b",`, status: 400, slug: "malformed-request"},
		{name: "malformed close", path: accounts + "/close", body: `{"code":`, status: 400, slug: "malformed-request"},
		{name: "malformed commit", path: commit, body: `{"postings":[`, status: 400, slug: "malformed-request"},
		{name: "array commit", path: commit, body: `[]`, status: 400, slug: "malformed-request"},

		// amounts must be JSON strings holding a plain decimal
		{name: "amount as a JSON number", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `2.5`), status: 422, slug: "invalid-amount"},
		{name: "amount as a JSON integer", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `250`), status: 422, slug: "invalid-amount"},
		{name: "amount as a JSON exponent", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `1e2`), status: 422, slug: "invalid-amount"},
		{name: "one amount a number, one a string", path: entries, body: ej("k",
			pj("org/cash/stripe", "debit", `2.50`, "USD"), pj("program/p/fund", "credit", `"2.50"`, "USD")), status: 422, slug: "invalid-amount"},
		{name: "amount null", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `null`), status: 422, slug: "invalid-amount"},
		{name: "amount true", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `true`), status: 422, slug: "invalid-amount"},
		{name: "amount missing", path: entries, body: ej("k", `{"account":"org/cash/stripe","side":"debit","currency":"USD"}`,
			pj("program/p/fund", "credit", `"2.50"`, "USD")), status: 422, slug: "invalid-amount"},
		{name: "amount empty string", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `""`), status: 422, slug: "invalid-amount"},
		{name: "amount with exponent", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `"1e2"`), status: 422, slug: "invalid-amount"},
		{name: "amount with plus sign", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `"+2.50"`), status: 422, slug: "invalid-amount"},
		{name: "amount with spaces", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `" 2.50"`), status: 422, slug: "invalid-amount"},
		{name: "amount with comma", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `"2,50"`), status: 422, slug: "invalid-amount"},
		{name: "amount with thousands separator", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `"1,000.00"`), status: 422, slug: "invalid-amount"},
		{name: "amount hex", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `"0x10"`), status: 422, slug: "invalid-amount"},
		{name: "amount Infinity", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `"Infinity"`), status: 422, slug: "invalid-amount"},
		{name: "amount with leading zeros", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `"007.00"`), status: 422, slug: "invalid-amount"},
		{name: "amount non-ASCII digits", path: entries, body: usdPair("k", "org/cash/stripe", "program/p/fund", `"٣.٠٠"`), status: 422, slug: "invalid-amount"},
		{name: "amount as number in a commit", path: commit, body: `{"postings":[` + pj("participant/x/wallet", "debit", `5`, "USD") + `,` +
			pj("org/cash/stripe", "credit", `"5.00"`, "USD") + `]}`, status: 422, slug: "invalid-amount"},
		{name: "amount as number in a batch", path: batches, body: `{"entries":[` + usdPair("b1", "org/cash/stripe", "program/p/fund", `1`) + `]}`, status: 422, slug: "invalid-amount"},

		// unknown fields are refused, not ignored
		{name: "unknown top-level field", path: entries, body: `{"idempotency_key":"k","postingz":[]}`, status: 400, slug: "malformed-request"},
		{name: "camelCase key", path: entries, body: `{"idempotencyKey":"k","postings":[` + pj("org/cash/stripe", "debit", `"1.00"`, "USD") + `,` +
			pj("program/p/fund", "credit", `"1.00"`, "USD") + `]}`, status: 400, slug: "malformed-request"},
		{name: "unknown field in a posting", path: entries, body: ej("k", `{"account":"org/cash/stripe","side":"debit","amount":"1.00","currency":"USD","memo":"x"}`,
			pj("program/p/fund", "credit", `"1.00"`, "USD")), status: 422, slug: "validation-failed"},
		{name: "misspelt no_overdraft on an account", path: accounts, body: `{"code":"program/z/fund","type":"equity","currency":"USD","no_overdraw":true}`, status: 400, slug: "malformed-request"},
		{name: "unknown field on close", path: accounts + "/close", body: `{"code":"participant/x/wallet","force":true}`, status: 400, slug: "malformed-request"},
		{name: "unknown field on commit", path: commit, body: `{"amount":"5.00"}`, status: 400, slug: "malformed-request"},
		{name: "unknown field on a batch", path: batches, body: `{"entries":[],"atomic":false}`, status: 400, slug: "malformed-request"},
	}
	runHTTPBadCases(t, b, cases)
}

// TestHTTPOversizedAndContentType: bodies over api.MaxBodyBytes are 413 problem+json on
// every endpoint that reads a body, and only JSON content types are read.
func TestHTTPOversizedAndContentType(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newHTTPFixture(t, b)
	const entries = "/v1/ledger/entries"
	commit := "/v1/ledger/entries/" + f.open + "/commit"
	good := entryJSON("k-new", "org/cash/stripe", "program/p/fund", "1.00")

	pad := strings.Repeat("x", api.MaxBodyBytes)
	bigEntry := `{"idempotency_key":"big","description":"` + pad + `","postings":[]}`
	// A valid entry followed by whitespace: the body is over the limit even though the JSON is fine.
	padded := good + strings.Repeat(" ", api.MaxBodyBytes)
	cases := []httpBadCase{
		{name: "oversized entry", path: entries, body: bigEntry, status: 413, slug: "request-too-large"},
		{name: "oversized valid entry padded with spaces", path: entries, body: padded, status: 413, slug: "request-too-large"},
		{name: "oversized by one byte", path: entries, body: good + strings.Repeat(" ", api.MaxBodyBytes-len(good)+1), status: 413, slug: "request-too-large"},
		{name: "oversized pending entry", path: "/v1/ledger/pending-entries", body: bigEntry, status: 413, slug: "request-too-large"},
		{name: "oversized batch", path: "/v1/ledger/batches", body: `{"entries":[` + bigEntry + `]}`, status: 413, slug: "request-too-large"},
		{name: "oversized account", path: "/v1/ledger/accounts", body: `{"code":"a/b","type":"asset","currency":"USD","metadata":{"x":"` + pad + `"}}`, status: 413, slug: "request-too-large"},
		{name: "oversized close", path: "/v1/ledger/accounts/close", body: `{"code":"` + pad + `"}`, status: 413, slug: "request-too-large"},
		{name: "oversized commit", path: commit, body: `{"description":"` + pad + `"}`, status: 413, slug: "request-too-large"},
		{name: "oversized void", path: "/v1/ledger/entries/" + f.open + "/void", body: `{"description":"` + pad + `"}`, status: 413, slug: "request-too-large"},
		{name: "oversized reverse", path: "/v1/ledger/entries/" + f.award + "/reverse", body: `{"description":"` + pad + `"}`, status: 413, slug: "request-too-large"},

		{name: "text/plain", path: entries, body: good, headers: []string{"Content-Type", "text/plain"}, status: 415, slug: "unsupported-media-type"},
		{name: "form", path: entries, body: good, headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, slug: "unsupported-media-type"},
		{name: "multipart", path: entries, body: good, headers: []string{"Content-Type", "multipart/form-data; boundary=xyz"}, status: 415, slug: "unsupported-media-type"},
		{name: "xml", path: entries, body: good, headers: []string{"Content-Type", "application/xml"}, status: 415, slug: "unsupported-media-type"},
		{name: "text/json", path: entries, body: good, headers: []string{"Content-Type", "text/json"}, status: 415, slug: "unsupported-media-type"},
		{name: "unparseable content type", path: entries, body: good, headers: []string{"Content-Type", "application/json; charset"}, status: 415, slug: "unsupported-media-type"},
		{name: "wrong content type on pending", path: "/v1/ledger/pending-entries", body: good, headers: []string{"Content-Type", "text/plain"}, status: 415, slug: "unsupported-media-type"},
		{name: "wrong content type on batch", path: "/v1/ledger/batches", body: `{"entries":[` + good + `]}`, headers: []string{"Content-Type", "text/plain"}, status: 415, slug: "unsupported-media-type"},
		{name: "wrong content type on account", path: "/v1/ledger/accounts", body: `{"code":"a/b","type":"asset","currency":"USD"}`, headers: []string{"Content-Type", "text/plain"}, status: 415, slug: "unsupported-media-type"},
		{name: "wrong content type on close", path: "/v1/ledger/accounts/close", body: `{"code":"participant/x/wallet"}`, headers: []string{"Content-Type", "text/plain"}, status: 415, slug: "unsupported-media-type"},
		{name: "wrong content type on commit", path: commit, body: `{}`, headers: []string{"Content-Type", "text/plain"}, status: 415, slug: "unsupported-media-type"},
		{name: "wrong content type on reverse", path: "/v1/ledger/entries/" + f.award + "/reverse", body: `{}`, headers: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, slug: "unsupported-media-type"},
	}
	runHTTPBadCases(t, b, cases)

	// Bodies of unknown length (chunked) are bounded too.
	for _, path := range []string{entries, commit} {
		before := b.apiSnapshot(t)
		r := b.doReader(t, "POST", path, strings.NewReader(bigEntry), "application/json")
		requireProblem(t, r, 413, "request-too-large")
		require.Equal(t, before, b.apiSnapshot(t))
	}

	// Control: JSON with parameters or a +json suffix is read (and, here, replayed).
	for _, ct := range []string{"application/json; charset=utf-8", "application/merge-patch+json", "Application/JSON"} {
		r := b.do(t, "POST", entries, entryJSON("donor-1", "org/cash/stripe", "program/p/fund", "100.00"), "Content-Type", ct)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", ct, r.raw)
		require.Equal(t, true, r.body["replayed"])
	}
}

// TestHTTPLedgerBadInput: the ledger's refusals through HTTP, each with its status, problem
// type and an unchanged database.
func TestHTTPLedgerBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newHTTPFixture(t, b)
	const entries, pending, batches = "/v1/ledger/entries", "/v1/ledger/pending-entries", "/v1/ledger/batches"
	const stripe, fund, wallet = "org/cash/stripe", "program/p/fund", "participant/x/wallet"
	q := func(s string) string { return `"` + s + `"` }
	entryOp := func(id, op string) string { return "/v1/ledger/entries/" + id + "/" + op }
	partial := func(amount string) string {
		return `{"postings":[` + pj(wallet, "debit", q(amount), "USD") + `,` + pj(stripe, "credit", q(amount), "USD") + `]}`
	}

	cases := []httpBadCase{
		{name: "unbalanced", path: entries, body: ej("k", pj(stripe, "debit", q("2.00"), "USD"), pj(fund, "credit", q("1.00"), "USD")), status: 422, slug: "unbalanced-entry"},
		{name: "unbalanced pending", path: pending, body: ej("k", pj(stripe, "debit", q("2.00"), "USD"), pj(fund, "credit", q("1.00"), "USD")), status: 422, slug: "unbalanced-entry"},
		{name: "single posting", path: entries, body: ej("k", pj(stripe, "debit", q("2.00"), "USD")), status: 422, slug: "validation-failed"},
		{name: "no postings", path: entries, body: ej("k"), status: 422, slug: "validation-failed"},
		{name: "bad side", path: entries, body: ej("k", pj(stripe, "left", q("2.00"), "USD"), pj(fund, "credit", q("2.00"), "USD")), status: 422, slug: "validation-failed"},
		{name: "zero", path: entries, body: entryJSON("k", stripe, fund, "0.00"), status: 422, slug: "invalid-amount"},
		{name: "negative", path: entries, body: entryJSON("k", stripe, fund, "-5.00"), status: 422, slug: "invalid-amount"},
		{name: "too precise USD", path: entries, body: entryJSON("k", stripe, fund, "1.005"), status: 422, slug: "invalid-amount"},
		{name: "too precise JPY", path: entries, body: ej("k", pj("org/cash/jpy", "debit", q("1.5"), "JPY"), pj("program/p/jpy", "credit", q("1.5"), "JPY")), status: 422, slug: "invalid-amount"},
		{name: "MaxAmount", path: entries, body: entryJSON("k", stripe, fund, "1000000000000000.00"), status: 422, slug: "invalid-amount"},
		{name: "over MaxAmount", path: entries, body: entryJSON("k", stripe, fund, "99999999999999999.00"), status: 422, slug: "invalid-amount"},
		{name: "unknown currency", path: entries, body: ej("k", pj(stripe, "debit", q("2.00"), "XXX"), pj(fund, "credit", q("2.00"), "XXX")), status: 422, slug: "unknown-currency"},
		{name: "mixed currencies balanced in total only", path: entries, body: ej("k",
			pj(stripe, "debit", q("10.00"), "USD"), pj(fund, "credit", q("5.00"), "USD"),
			pj("org/cash/eur", "debit", q("5.00"), "EUR"), pj("program/p/eur", "credit", q("10.00"), "EUR")), status: 422, slug: "unbalanced-entry"},
		{name: "currency differs from the account's", path: entries, body: ej("k", pj(stripe, "debit", q("10.00"), "EUR"), pj("program/p/eur", "credit", q("10.00"), "EUR")), status: 422, slug: "currency-mismatch"},
		{name: "unknown account", path: entries, body: entryJSON("k", stripe, "program/nope/fund", "1.00"), status: 404, slug: "account-not-found"},
		{name: "closed account", path: entries, body: entryJSON("k", stripe, "closed/wallet", "1.00"), status: 409, slug: "account-closed"},
		{name: "overdraft", path: entries, body: entryJSON("k", fund, wallet, "100.01"), status: 422, slug: "insufficient-funds"},
		{name: "overdraft through a hold (60 of 100 held, post 50)", path: entries, body: entryJSON("k", "program/h/fund", wallet, "50.00"), status: 422, slug: "insufficient-funds"},
		{name: "second hold over the available", path: pending, body: entryJSON("k", "program/h/fund", wallet, "40.01"), status: 422, slug: "insufficient-funds"},
		{name: "batch with one overdraft", path: batches, body: `{"entries":[` + entryJSON("b1", stripe, fund, "1.00") + `,` + entryJSON("b2", fund, wallet, "500.00") + `]}`, status: 422, slug: "insufficient-funds"},
		{name: "empty batch", path: batches, body: `{"entries":[]}`, status: 422, slug: "validation-failed"},
		{name: "key reused with another amount", path: entries, body: entryJSON("donor-1", stripe, fund, "99.00"), status: 409, slug: "idempotency-conflict"},
		{name: "key reused as a pending entry", path: pending, body: entryJSON("donor-1", stripe, fund, "100.00"), status: 409, slug: "idempotency-conflict"},
		{name: "header key reused", path: entries, body: entryJSON("", stripe, fund, "1.00"), headers: []string{"Idempotency-Key", "donor-1"}, status: 409, slug: "idempotency-conflict"},
		{name: "commit with a standard entry's key", path: entryOp(f.open, "commit"), headers: []string{"Idempotency-Key", "donor-1"}, status: 409, slug: "idempotency-conflict"},
		{name: "commit twice", path: entryOp(f.committed, "commit"), status: 409, slug: "already-resolved"},
		{name: "commit twice, another key", path: entryOp(f.committed, "commit"), headers: []string{"Idempotency-Key", "commit-c-2"}, status: 409, slug: "already-resolved"},
		{name: "void after commit", path: entryOp(f.committed, "void"), status: 409, slug: "already-resolved"},
		{name: "commit after void", path: entryOp(f.voided, "commit"), status: 409, slug: "already-resolved"},
		{name: "void twice", path: entryOp(f.voided, "void"), status: 409, slug: "already-resolved"},
		{name: "partial commit over the held amount", path: entryOp(f.open, "commit"), body: partial("20.01"), status: 422, slug: "validation-failed"},
		{name: "partial commit unbalanced", path: entryOp(f.open, "commit"), body: `{"postings":[` + pj(wallet, "debit", q("5.00"), "USD") + `,` + pj(stripe, "credit", q("4.00"), "USD") + `]}`, status: 422, slug: "unbalanced-entry"},
		{name: "void with postings", path: entryOp(f.open, "void"), body: partial("5.00"), status: 422, slug: "validation-failed"},
		{name: "commit a standard entry", path: entryOp(f.award, "commit"), status: 409, slug: "not-pending"},
		{name: "void a reversal", path: entryOp(f.fixReversal, "void"), status: 409, slug: "not-pending"},
		{name: "reverse twice", path: entryOp(f.fix, "reverse"), status: 409, slug: "already-reversed"},
		{name: "reverse a pending entry", path: entryOp(f.open, "reverse"), status: 409, slug: "not-reversible"},
		{name: "reverse a void", path: entryOp(f.void, "reverse"), status: 409, slug: "not-reversible"},
		{name: "reverse a commit's pending entry", path: entryOp(f.committed, "reverse"), status: 409, slug: "not-reversible"},
		{name: "reverse into an overdraft", path: entryOp(f.award, "reverse"), status: 422, slug: "insufficient-funds"},
		{name: "commit an unknown entry", path: entryOp("0193a0a0-0000-7000-8000-000000000000", "commit"), status: 404, slug: "entry-not-found"},
		{name: "close an account with a balance", path: "/v1/ledger/accounts/close", body: `{"code":"program/p/fund"}`, status: 409, slug: "account-not-empty"},
		{name: "close an account with a hold", path: "/v1/ledger/accounts/close", body: `{"code":"participant/h/wallet"}`, status: 409, slug: "account-not-empty"},
		{name: "close a closed account", path: "/v1/ledger/accounts/close", body: `{"code":"closed/wallet"}`, status: 409, slug: "account-closed"},
		{name: "close an unknown account", path: "/v1/ledger/accounts/close", body: `{"code":"nope/nope"}`, status: 404, slug: "account-not-found"},
		{name: "open an account again as another type", path: "/v1/ledger/accounts", body: `{"code":"program/p/fund","type":"asset","currency":"USD","no_overdraft":true}`, status: 409, slug: "account-exists"},
		{name: "open an account with an unknown currency", path: "/v1/ledger/accounts", body: `{"code":"a/b","type":"asset","currency":"ABC"}`, status: 422, slug: "unknown-currency"},
		{name: "open an account with a bad type", path: "/v1/ledger/accounts", body: `{"code":"a/b","type":"cash","currency":"USD"}`, status: 422, slug: "validation-failed"},
	}
	runHTTPBadCases(t, b, cases)

	// The same key with the same content replays the original entry and writes nothing.
	before := b.apiSnapshot(t)
	r := b.do(t, "GET", "/v1/ledger/entries/"+f.award, "")
	require.Equal(t, 200, r.status, r.raw)
	for _, body := range []string{
		entryJSON("award-1", "program/q/fund", "participant/x/wallet", "30.00"),
		entryJSON("award-1", "program/q/fund", "participant/x/wallet", "30.0"),
		entryJSON("award-1", "program/q/fund", "participant/x/wallet", "30"),
	} {
		r := b.do(t, "POST", entries, body)
		require.Equal(t, http.StatusOK, r.status, r.raw)
		require.Equal(t, f.award, r.body["id"])
		require.Equal(t, true, r.body["replayed"])
	}
	r = b.do(t, "POST", entryOp(f.committed, "commit"), "", "Idempotency-Key", "commit-c")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, f.commitEntry, r.body["id"])
	require.Equal(t, before, b.apiSnapshot(t), "replays must write nothing")
}

// wildcard matches a route pattern's path parameters ({id}, {code...}).
var wildcard = regexp.MustCompile(`\{[^}]+\}`)

// TestEveryRouteRefusesNUL walks every route of the server's table with NUL (and bytes
// that are not UTF-8) in each path parameter, in the query and in a string of the body:
// each answers 422 naming where, never 5xx. PostgreSQL text holds neither.
func TestEveryRouteRefusesNUL(t *testing.T) {
	t.Parallel()
	f := setupNetwork(t, false)
	f.seed(t)
	routes := api.New(api.Config{}).Routes()
	require.NotEmpty(t, routes)
	admin := f.requesterToken(t) // an admin naming a person, as approving wants
	for _, rt := range routes {
		t.Run(rt.Method+" "+rt.Path, func(t *testing.T) {
			body := ""
			if rt.Method == "POST" {
				body = `{}`
			}
			if wildcard.MatchString(rt.Path) {
				for _, bad := range []string{"%00", "a%00b", "%ff", "ab%c3"} {
					r := f.do(t, rt.Method, wildcard.ReplaceAllString(rt.Path, bad), body)
					requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
					require.Contains(t, r.body["detail"], "(in the path)", r.raw)
					// A participant's request is refused the same way, before any record is read.
					r = f.as(t, f.ana, rt.Method, wildcard.ReplaceAllString(rt.Path, bad), body)
					requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
				}
			}
			// A well-formed id: routes that parse it before the body get as far as the body.
			path := wildcard.ReplaceAllString(rt.Path, "00000000-0000-4000-8000-000000000000")
			for _, q := range []string{"participant=%00", "program=p%00", "person=%ff", "a%00=1"} {
				r := f.do(t, rt.Method, path+"?"+q, body)
				requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
				require.Contains(t, r.body["detail"], "query", r.raw)
			}
			if rt.Method == "POST" {
				for field, b := range map[string]string{
					"reason":              `{"reason":"why\u0000"}`,
					"a.b[1]":              `{"a":{"b":["x","\u0000"]}}`,
					"a key":               `{"x\u0000":1}`,
					"idempotency_key":     `{"idempotency_key":"\u0000"}`,
					"postings[0].account": `{"postings":[{"account":"\u0000"}]}`,
				} {
					r := f.as(t, admin, "POST", path, b)
					requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
					require.Contains(t, r.body["detail"], fieldOrKey(field), r.raw)
				}
			}
		})
	}

	// The bodies of the routes that answered 500 before, each otherwise well formed.
	dis := f.grant(t, f.requesterToken(t), "ana", "5.00", "g-nul")
	for _, tc := range []struct{ path, body, field string }{
		{"/v1/programs", `{"id":"p\u0000","name":"X","currency":"USD","starts_on":"2026-01-01","ends_on":"2026-12-31"}`, "id"},
		{"/v1/people", `{"id":"zed","name":"Z\u0000","roles":["participant"]}`, "name"},
		{"/v1/people", `{"id":"zed","name":"Z","roles":["participant"],"interests":["a","b\u0000"]}`, "interests[1]"},
		{"/v1/people/ana/consent", `{"given":true,"signed_by":"ana\u0000","signed_on":"2026-01-01","scope":"s"}`, "signed_by"},
		{"/v1/people/ana/band", `{"band":"low","reason":"r\u0000"}`, "reason"},
		{"/v1/people/ana/roles", `{"role":"mentor\u0000"}`, "role"},
		{"/v1/programs/p1/enrolments", `{"person_id":"ben\u0000"}`, "person_id"},
		{"/v1/connections", `{"participant_id":"ana","other_id":"mo\u0000","role":"mentor","origin":"matched","started_on":"2026-01-01"}`, "other_id"},
		{"/v1/connections/" + f.conn + "/end", `{"reason":"\u0000"}`, "reason"},
		{"/v1/conversations", strings.Replace(f.conversationBody(f.conn, 1, "NUL", ""), `"NUL"`, `"k\u0000"`, 1), "idempotency_key"},
		{"/v1/conversations", strings.Replace(f.conversationBody("NUL", 1, "k", ""), `"NUL"`, `"\u0000"`, 1), "connection_id"},
		{"/v1/conversations/batch", `{"conversations":[` + f.conversationBody(f.conn, 1, "k", `,"notes":"\u0000"`) + `]}`, "conversations[0].notes"},
		{"/v1/rules", ruleBody("p1", strings.Replace(mentorRule, `"Met your`, `"\u0000Met your`, 1)), "rule.title"},
		{"/v1/rules/p1/mentor-4/retire", `{"reason":"\u0000"}`, "reason"},
		{"/v1/disbursements", `{"program":"p1","person":"ana","amount":"5.00","reason":"r\u0000"}`, "reason"},
		{"/v1/disbursements/" + dis["id"].(string) + "/reject", `{"reason":"\u0000"}`, "reason"},
		{"/v1/commitments", `{"program":"p1","person":"ana\u0000","amount":"40.00","instalments":2,"every_months":3,"first_due":"2030-01-01"}`, "person"},
		{"/v1/people/ana/payout-destination", `{"provider":"sandbox","account":"\u0000"}`, "account"},
	} {
		before := f.networkRows(t)
		r := f.as(t, admin, "POST", tc.path, tc.body, "Idempotency-Key", "nul-"+tc.field)
		requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
		require.Contains(t, r.body["detail"], tc.field+": ", "%s: %s", tc.path, r.raw)
		require.Equal(t, before, f.networkRows(t), tc.path)
	}
}

// fieldOrKey is what a NUL's problem detail names for the bodies of the walk above.
func fieldOrKey(field string) string {
	if field == "a key" {
		return "a key holds a NUL character"
	}
	return field + ": "
}

// TestEveryPostRouteBoundsTheBody: a 5 MiB body answers 413 on every POST route of the
// table, also where the authorization step reads the body first (connections,
// conversations), and whether or not its length is known in advance.
func TestEveryPostRouteBoundsTheBody(t *testing.T) {
	t.Parallel()
	f := setupNetwork(t, false)
	f.seed(t)
	admin := f.requesterToken(t)
	big := `{"reason":"` + strings.Repeat("x", 5<<20) + `"}`
	n := 0
	for _, rt := range api.New(api.Config{}).Routes() {
		if rt.Method != "POST" {
			continue
		}
		n++
		path := wildcard.ReplaceAllString(rt.Path, "00000000-0000-4000-8000-000000000000")
		before := f.networkRows(t)
		r := f.as(t, admin, "POST", path, big, "Idempotency-Key", "big")
		requireProblem(t, r, http.StatusRequestEntityTooLarge, "request-too-large")
		req, err := http.NewRequest("POST", f.srv.URL+path, io.MultiReader(strings.NewReader(big))) // chunked
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", bearer(admin))
		requireProblem(t, send(t, req), http.StatusRequestEntityTooLarge, "request-too-large")
		require.Equal(t, before, f.networkRows(t), rt.Path)
	}
	require.Greater(t, n, 30)
	// The provider's webhook carries no token and is not in the table: bounded all the same.
	r := f.do(t, "POST", "/v1/webhooks/stripe", big, "Stripe-Signature", "t=1,v1=00")
	requireProblem(t, r, http.StatusRequestEntityTooLarge, "request-too-large")
}

// TestDatabaseDownIsUnavailable: with PostgreSQL out of reach, requests answer 503
// unavailable with Retry-After, not 500, and say nothing of the connection.
func TestDatabaseDownIsUnavailable(t *testing.T) {
	t.Parallel()
	// A port nothing listens on: take one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	cfg, err := pgxpool.ParseConfig("postgres://tandem@" + addr + "/tandem?connect_timeout=2")
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	l2 := ledger.New(pool, nil)
	t.Cleanup(l2.Close)
	srv := httptest.NewServer(api.New(api.Config{Pool: pool, Ledger: l2, Access: access.New(pool), WriteRate: rate.Inf}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/ledger/accounts", ""},
		{"POST", "/v1/ledger/entries", entryJSON("k", "org/cash/stripe", "program/p/fund", "1.00")},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer tdm_whatever")
		r := send(t, req)
		requireProblem(t, r, http.StatusServiceUnavailable, "unavailable")
		require.Equal(t, "5", r.header.Get("Retry-After"))
		require.NotContains(t, r.raw, addr)
		require.NotContains(t, r.raw, "dial")
	}
}

// TestDatabaseStoppedIsUnavailable: a database that goes away under a running server —
// its connections cut, new ones refused — is 503 unavailable too. The database sits behind a
// TCP relay the test stops.
func TestDatabaseStoppedIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	cfg := b.pool.Config().ConnConfig
	target := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	relay := startRelay(t, target)
	pcfg, err := pgxpool.ParseConfig(b.pool.Config().ConnString())
	require.NoError(t, err)
	host, port, err := net.SplitHostPort(relay.addr())
	require.NoError(t, err)
	pcfg.ConnConfig.Host = host
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	pcfg.ConnConfig.Port = uint16(p)
	pcfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	l := ledger.New(pool, nil)
	t.Cleanup(l.Close)
	srv := httptest.NewServer(api.New(api.Config{Pool: pool, Ledger: l, Access: access.New(pool), WriteRate: rate.Inf}))
	t.Cleanup(srv.Close)
	get := func() response {
		req, err := http.NewRequest("GET", srv.URL+"/v1/ledger/accounts", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+b.token)
		return send(t, req)
	}
	require.Equal(t, http.StatusOK, get().status)

	relay.stop()
	for range 3 { // a cut connection first, then refused ones
		r := get()
		requireProblem(t, r, http.StatusServiceUnavailable, "unavailable")
		require.Equal(t, "5", r.header.Get("Retry-After"))
		require.NotContains(t, r.raw, relay.addr())
	}
}

// relay forwards TCP connections to a target until stopped; stopping cuts every connection
// and refuses new ones.
type relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relay{ln: ln}
	t.Cleanup(r.stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, up)
			r.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) stop() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// TestOddQueriesAreNot5xx: every GET route of the table with odd values for the query
// parameters the routes read answers 2xx or 4xx, never 5xx.
func TestOddQueriesAreNot5xx(t *testing.T) {
	t.Parallel()
	f := setupNetwork(t, false)
	f.seed(t)
	long := strings.Repeat("x", 5000)
	params := []string{"after", "after_id", "after_seq", "limit", "as_of", "as_of_seq", "status", "state", "participant",
		"coach", "person", "program", "prefix", "role", "retired", "year", "record", "scope", "format", "from", "to", "days", "month"}
	values := []string{"x", "-1", "0", "99999999999999999999", "9223372036854775807", "1e9", "2026-13-45", long, "%27%3B", "00000000-0000-0000-0000-000000000000", "ana/../ben"}
	for _, rt := range api.New(api.Config{}).Routes() {
		if rt.Method != "GET" {
			continue
		}
		path := wildcard.ReplaceAllString(rt.Path, "p1")
		if strings.Contains(rt.Path, "{code") {
			path = wildcard.ReplaceAllString(rt.Path, "program/p1/fund")
		}
		for _, p := range params {
			for _, v := range values {
				r := f.do(t, "GET", path+"?"+p+"="+v, "")
				require.Less(t, r.status, 500, "%s?%s=%.40s: %s", path, p, v, r.raw)
			}
		}
	}
}

// TestIdempotencyKeyHeaderNotUTF8: an Idempotency-Key header that is not UTF-8 is refused
// with 422 on every route that takes one, never 500.
func TestIdempotencyKeyHeaderNotUTF8(t *testing.T) {
	t.Parallel()
	f := setupNetwork(t, false)
	f.seed(t)
	admin := f.requesterToken(t)
	for _, tc := range []struct{ path, body string }{
		{"/v1/ledger/entries", entryJSON("", "org/cash/stripe", "program/p1/fund", "1.00")},
		{"/v1/programs/p1/fund", `{"amount":"1.00"}`},
		{"/v1/conversations", f.conversationBody(f.conn, 1, "", "")},
		{"/v1/disbursements", grantBody("ana", "5.00", "why")},
		{"/v1/commitments", fmt.Sprintf(`{"program":"p1","person":"ana","amount":"40.00","instalments":2,"every_months":3,"first_due":%q}`, f.day(30))},
	} {
		before := f.networkRows(t)
		r := f.as(t, admin, "POST", tc.path, tc.body, "Idempotency-Key", "k\xff\xfe")
		require.Less(t, r.status, 500, "%s: %s", tc.path, r.raw)
		requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
		require.Contains(t, r.body["detail"], "Idempotency-Key", "%s: %s", tc.path, r.raw)
		require.Equal(t, before, f.networkRows(t), tc.path)
	}
}
