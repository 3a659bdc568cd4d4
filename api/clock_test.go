package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/app"
)

// TestClockHTTP: an admin reads and advances a sandbox program's test clock, forward only;
// auditors read it; participants neither; every advance is in the audit trail.
func TestClockHTTP(t *testing.T) {
	t.Parallel()
	f := setupPayouts(t, false, app.Config{})
	f.seed(t)

	r := f.do(t, "GET", "/v1/programs/p1/clock", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "p1", r.body["program"])
	require.Equal(t, "0s", r.body["offset"])
	require.Equal(t, true, r.body["sandbox"])

	r = f.do(t, "POST", "/v1/programs/p1/clock/advance", `{"by":"72h","reason":"exercise the window"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "72h0m0s", r.body["offset"], r.raw)
	require.Len(t, list(r.body["advances"]), 1)
	r = f.do(t, "POST", "/v1/programs/p1/clock/advance", `{"by":"1d"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "96h0m0s", r.body["offset"], r.raw)

	for _, body := range []string{`{}`, `{"by":"-1h"}`, `{"to":"2000-01-05"}`, `{"by":"1h","to":"2099-01-01"}`, `{"by":"later"}`} {
		r := f.do(t, "POST", "/v1/programs/p1/clock/advance", body)
		requireProblem(t, r, http.StatusUnprocessableEntity, "validation-failed")
	}
	requireProblem(t, f.do(t, "POST", "/v1/programs/p9/clock/advance", `{"by":"1h"}`), http.StatusNotFound, "not-found")
	requireProblem(t, f.as(t, f.auditor, "POST", "/v1/programs/p1/clock/advance", `{"by":"1h"}`), http.StatusForbidden, "forbidden")
	requireProblem(t, f.as(t, f.ana, "GET", "/v1/programs/p1/clock", ""), http.StatusForbidden, "forbidden")
	r = f.as(t, f.auditor, "GET", "/v1/programs/p1/clock", "")
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "96h0m0s", r.body["offset"], "refused moves moved nothing")

	r = f.do(t, "GET", "/v1/audit?record=program:p1", "")
	requireStatus(t, r, http.StatusOK)
	advances := 0
	for _, l := range list(r.body["lines"]) {
		if obj(l)["action"] == "payouts.clock.advance" && obj(l)["outcome"] != "denied" {
			advances++
		}
	}
	require.Equal(t, 2, advances, r.raw)
}

// TestDashboardShowsTestClock: the program dashboard shows the program's time once its test
// clock is ahead of real time, and nothing before.
func TestDashboardShowsTestClock(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	s := f.session(t, f.adm1)
	p := s.get("/admin/programs/p1")
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.NotContains(t, p.body, "Test clock")

	requireStatus(t, f.do(t, "POST", "/v1/programs/p1/clock/advance", `{"by":"3d"}`), http.StatusOK)
	c, err := f.app.Payouts.Clock(context.Background(), "p1")
	require.NoError(t, err)
	p = s.get("/admin/programs/p1")
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.Contains(t, p.body, "<strong>Test clock: "+c.Now.UTC().Format("2006-01-02")+" ")
	require.Contains(t, p.body, " UTC (&#43;3 days)</strong>", "html/template writes + as &#43;")
	requireAccessible(t, p)
}
