package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/jobs"
)

// TestJobsBoard: a discarded job and a retrying one are listed, by kind with their last
// error, to admins and auditors (GET /v1/jobs and /admin/jobs); only admins retry or cancel
// (the auditor's page has no buttons, the auditor's POST is refused), and each change is in
// the audit trail with the job before and after and the admin's note.
func TestJobsBoard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupAdmin(t, false) // no workers: the jobs stay as the test leaves them
	insert := func(args river.JobArgs, state, msg string) int64 {
		res, err := f.app.River.Insert(ctx, args, nil)
		require.NoError(t, err)
		_, err = f.pool.Exec(ctx, `UPDATE river_job SET state = $2::text::river_job_state, attempt = 1, attempted_at = now(),
			finalized_at = CASE WHEN $2::text = 'discarded' THEN now() END,
			errors = ARRAY[jsonb_build_object('at', now(), 'attempt', 1, 'error', $3::text, 'trace', '')] WHERE id = $1`,
			res.Job.ID, state, msg)
		require.NoError(t, err)
		return res.Job.ID
	}
	discarded := insert(jobs.LedgerCheckArgs{}, "discarded", "ledger self-check found discrepancies: org/cash/stripe")
	retrying := insert(jobs.LedgerCheckArgs{}, "retryable", "connection refused")
	insert(jobs.SealLedgerArgs{}, "retryable", "another")

	r := f.as(t, f.auditor, "GET", "/v1/jobs", "")
	requireStatus(t, r, http.StatusOK)
	list := r.body["jobs"].([]any)
	require.Len(t, list, 3)
	first := list[len(list)-1].(map[string]any)
	require.EqualValues(t, discarded, first["id"])
	require.Equal(t, "discarded", first["state"])
	require.Equal(t, "ledger self-check found discrepancies: org/cash/stripe", first["last_error"])
	r = f.as(t, f.auditor, "GET", "/v1/jobs?state=retryable&kind=ledger_check", "")
	requireStatus(t, r, http.StatusOK)
	require.Len(t, r.body["jobs"].([]any), 1)
	require.EqualValues(t, retrying, r.body["jobs"].([]any)[0].(map[string]any)["id"])
	require.Equal(t, http.StatusUnprocessableEntity, f.as(t, f.auditor, "GET", "/v1/jobs?state=bogus", "").status)
	require.Equal(t, http.StatusForbidden, f.as(t, f.ana, "GET", "/v1/jobs", "").status)

	// Retried only once the identical job waiting is gone (the kind is unique).
	require.Equal(t, http.StatusConflict, f.as(t, f.adm1, "POST", fmt.Sprintf("/v1/jobs/%d/retry", discarded), `{}`).status)

	// The page: by kind, with the last error; buttons for admins only; blocked awards.
	_, err := f.pool.Exec(ctx, `INSERT INTO network_award_blocks (award_key, program_id, participant_id, rule_id, period, amount, currency, reason)
		VALUES ('award:p1:ana:bonus:once', 'p1', 'ana', 'bonus', 'once', 20, 'USD', 'hand award over: the wallet is closed')`)
	require.NoError(t, err)
	aud := f.session(t, f.auditor)
	p := aud.get("/admin/jobs")
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.Contains(t, p.body, "Blocked awards")
	require.Contains(t, p.body, "hand award over: the wallet is closed")
	r = f.as(t, f.auditor, "GET", "/v1/jobs", "")
	requireStatus(t, r, http.StatusOK)
	ba := r.body["blocked_awards"].([]any)
	require.Len(t, ba, 1)
	require.Equal(t, "award:p1:ana:bonus:once", ba[0].(map[string]any)["award_key"])
	require.Equal(t, "hand award over: the wallet is closed", ba[0].(map[string]any)["reason"])
	require.Contains(t, p.body, "<h2>ledger_check</h2>")
	require.Contains(t, p.body, "<h2>seal_ledger</h2>")
	require.Contains(t, p.body, "connection refused")
	require.NotContains(t, p.body, `method="post" action="/admin/jobs/`)
	p = aud.post(fmt.Sprintf("/admin/jobs/%d/cancel", retrying), url.Values{})
	require.Equal(t, http.StatusForbidden, p.status)

	adm := f.session(t, f.adm1)
	p = adm.get("/admin/jobs")
	require.Contains(t, p.body, fmt.Sprintf(`action="/admin/jobs/%d/cancel"`, retrying))
	p = adm.follow(adm.post(fmt.Sprintf("/admin/jobs/%d/cancel", retrying), url.Values{}))
	require.Contains(t, p.body, fmt.Sprintf("Cancelled job %d (ledger_check): it is now cancelled.", retrying))
	require.False(t, strings.Contains(p.body, "connection refused"), "a cancelled job leaves the default list")

	path := fmt.Sprintf("/v1/jobs/%d/retry", discarded)
	require.Equal(t, http.StatusForbidden, f.as(t, f.auditor, "POST", path, `{}`).status)
	r = f.as(t, f.adm1, "POST", path, `{"note":"the books were repaired"}`)
	requireStatus(t, r, http.StatusOK)
	require.Equal(t, "available", r.body["state"])
	require.Equal(t, http.StatusNotFound, f.as(t, f.adm1, "POST", "/v1/jobs/999999/cancel", `{}`).status)
	var before, after, detail string
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT before->>'state', after->>'state', detail FROM audit_log
		WHERE action = 'jobs.retry' AND record = $1`, fmt.Sprintf("job:%d", discarded)).Scan(&before, &after, &detail))
	require.Equal(t, []string{"discarded", "available", "the books were repaired"}, []string{before, after, detail})

	var n int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = $1 AND record = $2`,
		string(access.JobCancel), fmt.Sprintf("job:%d", retrying)).Scan(&n))
	require.Equal(t, 1, n)
}
