package api_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/browsertest"
	"github.com/tandemledger/tandem/ledger"
)

// exportFixture is the API with a small sealed ledger and tokens of every role.
type exportFixture struct {
	*testBundle
	ledger                   *ledger.Ledger // for sealing: the server's own seals too, but only by its job
	auditor, participant, cy string
	award                    string // an entry id
}

func setupExports(t *testing.T) *exportFixture {
	t.Helper()
	b := setup(t)
	b.openAccounts(t)
	f := &exportFixture{testBundle: b, ledger: ledger.New(b.pool, nil)}
	t.Cleanup(f.ledger.Close)
	r := b.do(t, "POST", "/v1/ledger/entries", entryJSON("gift", "org/cash/stripe", "program/p/fund", "100.00"))
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	r = b.do(t, "POST", "/v1/ledger/entries", entryJSON("award", "program/p/fund", "participant/x/wallet", "30.00"))
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	f.award = r.body["id"].(string)
	_, err := f.ledger.Seal(context.Background(), ledger.SealOptions{})
	require.NoError(t, err)
	f.auditor = b.newToken(t, access.Auditor, "")
	f.participant = b.newToken(t, access.Participant, "x")
	f.cy = b.newToken(t, access.Coach, "cy")
	return f
}

// get sends a GET with a bearer token and returns the response with its trailers read.
func (f *exportFixture) get(t *testing.T, token, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", f.srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestExportsHTTP(t *testing.T) {
	t.Parallel()
	f := setupExports(t)

	resp, body := f.get(t, f.auditor, "/v1/exports")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "text/csv; charset=utf-8; header=present", resp.Header.Get("Content-Type"))
	disp, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	require.NoError(t, err)
	require.Equal(t, "attachment", disp)
	require.Regexp(t, `^tandem-ledger-\d{8}T\d{6}Z\.csv$`, params["filename"])
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 5, "a header and two postings of two entries")
	require.Equal(t, "entry_id", recs[0][0])
	require.Equal(t, "4", resp.Trailer.Get("Tandem-Export-Postings"))
	require.Equal(t, "2", resp.Trailer.Get("Tandem-Export-Entries"))
	require.Len(t, resp.Trailer.Get("Tandem-Export-Last-Hash"), 64)
	rep, err := ledger.VerifyExport(context.Background(), strings.NewReader(body), ledger.VerifyOptions{})
	require.NoError(t, err)
	require.True(t, rep.OK(), "%v", rep.Problems)
	require.Equal(t, int64(2), rep.Entries)

	resp, body = f.get(t, f.auditor, "/v1/exports?format=jsonl&program=p&from=2000-01-01&to=2100-01-01")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "application/jsonl; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Contains(t, resp.Header.Get("Content-Disposition"), "tandem-ledger-p-")
	require.Equal(t, 4, strings.Count(body, "\n"))
	require.Contains(t, body, `"export_scope":"from=2000-01-01;to=2100-01-01;program=p"`)

	resp, body = f.get(t, f.token, "/v1/exports?format=hledger")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Contains(t, resp.Header.Get("Content-Disposition"), ".journal")
	require.Contains(t, body, "    liabilities:participant:x:wallet  -30.00 USD")

	// Participants and coaches may not export: it is everyone's money.
	for _, tok := range []string{f.participant, f.cy} {
		r := f.do(t, "GET", "/v1/exports", "", "Authorization", "Bearer "+tok)
		requireProblem(t, r, http.StatusForbidden, "forbidden")
	}
	for q, want := range map[string]string{
		"format=xlsx":                       `"xlsx" is not an export format`,
		"from=yesterday":                    `from: "yesterday" is not a date`,
		"from=2026-02-01&to=2026-01-01":     "is not after from",
		"program=nope":                      `unknown program: "nope"`,
		"program=a/b":                       "is not a program id",
		"limit=5":                           "limit: not an export parameter",
		"to=2026-13-01":                     `to: "2026-13-01" is not a date`,
		"from=" + url.QueryEscape("1 OR 1"): "is not a date",
	} {
		r := f.do(t, "GET", "/v1/exports?"+q, "", "Authorization", "Bearer "+f.auditor)
		requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
		require.Contains(t, r.body["detail"], want, q)
		require.Empty(t, r.header.Get("Content-Disposition"), q)
	}
}

func TestSealHTTP(t *testing.T) {
	t.Parallel()
	f := setupExports(t)
	r := f.do(t, "GET", "/v1/seal", "", "Authorization", "Bearer "+f.auditor)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	head := r.body["head"].(map[string]any)
	require.Equal(t, float64(2), head["entries"])
	require.Len(t, head["hash"], 64)
	require.Equal(t, float64(0), r.body["unsealed_entries"])

	r = f.do(t, "GET", "/v1/seal/verify", "", "Authorization", "Bearer "+f.auditor)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, true, r.body["ok"])
	report := r.body["report"].(map[string]any)
	require.Equal(t, float64(2), report["entries"])
	require.Contains(t, report["verification"].(map[string]any)["actor"], "(auditor, auditor)")
	requireProblem(t, f.do(t, "GET", "/v1/seal/verify?x=1", "", "Authorization", "Bearer "+f.auditor), 422, "validation-failed")

	for _, path := range []string{"/v1/seal", "/v1/seal/verify"} {
		for _, tok := range []string{f.participant, f.cy} {
			requireProblem(t, f.do(t, "GET", path, "", "Authorization", "Bearer "+tok), http.StatusForbidden, "forbidden")
		}
	}

	// Altered behind the triggers: the answer is still 200 (the verification ran), not ok,
	// and names the entry; the status shows the failed verification.
	conn, err := f.pool.Acquire(context.Background())
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), "SET session_replication_role = replica")
	require.NoError(t, err)
	_, err = conn.Exec(context.Background(), "UPDATE ledger_entries SET description = 'x' WHERE id = $1", f.award)
	require.NoError(t, err)
	conn.Release()
	r = f.do(t, "GET", "/v1/seal/verify", "", "Authorization", "Bearer "+f.auditor)
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, false, r.body["ok"])
	problems := r.body["report"].(map[string]any)["problems"].([]any)
	require.Len(t, problems, 1)
	require.Equal(t, f.award, problems[0].(map[string]any)["entry_id"])
	require.Contains(t, problems[0].(map[string]any)["detail"], "altered after sealing")
	r = f.do(t, "GET", "/v1/seal", "", "Authorization", "Bearer "+f.auditor)
	require.Equal(t, false, r.body["last_verification"].(map[string]any)["ok"])
}

var exportLabelFor = regexp.MustCompile(`<label for="([a-z_]+)">`)

func TestAuditPage(t *testing.T) {
	t.Parallel()
	f := setupExports(t)
	base := f.srv.URL
	c := pageClient(true)
	signIn(t, c, base, f.auditor)

	p := getPage(t, c, base+"/audit")
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.Contains(t, p.body, "<h1>Exports and seal</h1>")
	require.Contains(t, p.body, `<form method="get" action="/audit/export">`)
	require.Contains(t, p.body, `<a href="/audit" aria-current="page">`)
	labels := map[string]bool{}
	for _, m := range exportLabelFor.FindAllStringSubmatch(p.body, -1) {
		labels[m[1]] = true
	}
	for _, id := range []string{"format", "from", "to", "program"} {
		require.True(t, labels[id], "a label for %s", id)
		require.Contains(t, p.body, `id="`+id+`"`)
	}
	require.Contains(t, p.body, `<option value="p">`, "the programs the ledger knows")
	require.Regexp(t, `Sealed entries</div><div class="figure">2<`, p.body)
	require.Contains(t, p.body, "None yet")

	// Verify now: the page says so after the redirect.
	v := postForm(t, c, base+"/audit/verify", url.Values{"csrf": {csrfOf(t, p)}})
	require.Equal(t, http.StatusSeeOther, v.status, v.body)
	require.Regexp(t, `^/audit\?verified=\d+$`, v.location)
	p = getPage(t, c, base+v.location)
	require.Equal(t, http.StatusOK, p.status)
	require.Contains(t, p.body, "Verified: the seal holds for 2 entries")
	require.Contains(t, p.body, "The seal holds</span> for 2 entries")
	require.Regexp(t, `\(\d+\.\d\d s\)</dd>`, p.body, "the duration, from whole milliseconds")
	require.Regexp(t, `through seq \d+, and \d+ audit lines`, p.body)
	require.Equal(t, http.StatusForbidden, postForm(t, c, base+"/audit/verify", url.Values{"csrf": {"wrong"}}).status)

	// The form downloads the export; empty fields are no filter.
	d := getPage(t, c, base+"/audit/export?format=jsonl&from=&to=&program=")
	require.Equal(t, http.StatusOK, d.status, d.body)
	require.Contains(t, d.header.Get("Content-Disposition"), ".jsonl")
	require.Equal(t, 4, strings.Count(d.body, "\n"))
	d = getPage(t, c, base+"/audit/export?format=csv&program=p&from=2000-01-01")
	require.Equal(t, http.StatusOK, d.status, d.body)
	rep, err := ledger.VerifyExport(context.Background(), bytes.NewReader([]byte(d.body)), ledger.VerifyOptions{Partial: true})
	require.NoError(t, err)
	require.True(t, rep.OK())
	require.True(t, rep.Partial)
	// A refused export shows the page again with the reason and what was asked for.
	d = getPage(t, c, base+"/audit/export?format=csv&from=2026-03-01&to=2026-02-01&program=p")
	require.Equal(t, http.StatusUnprocessableEntity, d.status)
	require.Contains(t, d.body, `class="error" role="alert">No export:`)
	require.Contains(t, d.body, "is not after from")
	require.Contains(t, d.body, `value="2026-03-01"`)
	require.Empty(t, d.header.Get("Content-Disposition"))

	// Participants and coaches get the forbidden page, and no export.
	for _, tok := range []string{f.participant, f.cy} {
		pc := pageClient(true)
		signIn(t, pc, base, tok)
		for _, path := range []string{"/audit", "/audit/export?format=csv"} {
			r := getPage(t, pc, base+path)
			require.Equal(t, http.StatusForbidden, r.status, path)
			require.NotContains(t, r.body, "entry_id", path)
		}
		home := getPage(t, pc, base+"/")
		r := postForm(t, pc, base+"/audit/verify", url.Values{"csrf": {csrfOf(t, home)}})
		require.Equal(t, http.StatusForbidden, r.status)
	}
	// Signed out: to the sign-in page.
	r := getPage(t, pageClient(true), base+"/audit")
	require.Equal(t, http.StatusSeeOther, r.status)
	require.Equal(t, "/sign-in", r.location)
}

// TestAuditPageInBrowser: an auditor verifies the seal from the page in a real Chromium;
// every field is labelled and a phone's width needs no sideways scrolling.
func TestAuditPageInBrowser(t *testing.T) {
	t.Parallel()
	br := browsertest.New(t) // skips without Chromium unless TANDEM_REQUIRE_BROWSER=1
	f := setupExports(t)
	base := f.srv.URL
	br.SignIn(base, f.auditor)
	require.Equal(t, http.StatusOK, br.Visit(base+"/audit"))
	eval := func(js string) any {
		t.Helper()
		ctx, cancel := context.WithTimeout(br.Context(), browsertest.Timeout)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
		require.NoError(t, err, js)
		return v
	}
	const unlabelledFields = `[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
		.filter(e => !e.labels || e.labels.length === 0).map(e => e.name || e.id)`
	require.Empty(t, eval(unlabelledFields))
	require.Equal(t, http.StatusOK, br.Click(`form[action="/audit/verify"] button`))
	require.Contains(t, br.Text(".flash"), "Verified: the seal holds for 2 entries")
	br.Viewport(390, 844)
	require.Equal(t, http.StatusOK, br.Visit(base+"/audit"))
	require.Equal(t, false, eval(`document.documentElement.scrollWidth > window.innerWidth`), "no sideways scrolling on a phone")
	require.Empty(t, eval(unlabelledFields))
	require.Contains(t, br.Text("main"), fmt.Sprintf("seq %d", 2))
	if os.Getenv("TANDEM_SCREENSHOTS") == "1" {
		br.Screenshot("audit-phone")
	}
}

// TestExportRoutesClosedToParticipantsAndCoaches: every export and seal route refuses
// participants and coaches, and hands them nothing of the ledger.
func TestExportRoutesClosedToParticipantsAndCoaches(t *testing.T) {
	t.Parallel()
	f := setupExports(t)
	for _, tok := range []string{f.participant, f.cy} {
		for _, path := range []string{"/v1/exports", "/v1/exports?program=p", "/v1/exports?format=hledger",
			"/v1/seal", "/v1/seal/verify"} { // the pages: TestAuditPage
			resp, body := f.get(t, tok, path)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", path, body)
			require.NotContains(t, body, f.award, path)
		}
	}
}

// TestExportIsAudited: an export hands out everyone's money: the audit trail records who
// exported what, with the export's counts and last link, once the stream has ended.
func TestExportIsAudited(t *testing.T) {
	t.Parallel()
	f := setupExports(t)
	resp, body := f.get(t, f.auditor, "/v1/exports?format=jsonl&program=p")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var actor, role, record, outcome, detail string
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`SELECT actor, coalesce(role, ''), record, outcome, detail FROM audit_log WHERE action = 'ledger.export' ORDER BY id DESC LIMIT 1`).
		Scan(&actor, &role, &record, &outcome, &detail))
	require.Equal(t, "auditor", role)
	require.Equal(t, "program=p", record)
	require.Equal(t, "ok", outcome)
	require.Contains(t, detail, "completed: format jsonl, 4 postings of 2 entries")
	require.Contains(t, detail, "through seq "+resp.Trailer.Get("Tandem-Export-Through-Seq"))
	require.Contains(t, detail, "last link "+resp.Trailer.Get("Tandem-Export-Last-Hash"))

	// A refused export (a bad parameter) sent nothing and is no export.
	var n int64
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'ledger.export'`).Scan(&n))
	r := f.do(t, "GET", "/v1/exports?format=xlsx", "", "Authorization", "Bearer "+f.auditor)
	requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
	var after int64
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'ledger.export'`).Scan(&after))
	require.Equal(t, n, after)
}

// TestOneVerificationAtATime: while a verification runs, another is refused (429) instead of
// reading the whole ledger a second time at once.
func TestOneVerificationAtATime(t *testing.T) {
	t.Parallel()
	f := setupExports(t)
	ctx := context.Background()
	// Hold the verification at its last step: recording its result.
	tx, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = tx.Exec(ctx, `LOCK TABLE ledger_seal_verifications IN SHARE MODE`)
	require.NoError(t, err)
	first := make(chan response, 1)
	go func() { first <- f.do(t, "GET", "/v1/seal/verify", "", "Authorization", "Bearer "+f.auditor) }()
	require.Eventually(t, func() bool {
		var waiting bool
		err := f.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO ledger_seal_verifications%')`).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, 20*time.Millisecond, "the first verification waits")
	r := f.do(t, "GET", "/v1/seal/verify", "", "Authorization", "Bearer "+f.auditor)
	requireProblem(t, r, http.StatusTooManyRequests, "rate-limited")
	require.Contains(t, r.body["detail"], "a verification is running")
	require.NoError(t, tx.Rollback(ctx))
	r = <-first
	require.Equal(t, http.StatusOK, r.status, r.raw)
	r = f.do(t, "GET", "/v1/seal/verify", "", "Authorization", "Bearer "+f.auditor)
	require.Equal(t, http.StatusOK, r.status, r.raw, "the next one runs once it has finished")
}
