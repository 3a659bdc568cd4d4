package api

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
)

// jobRoutes serves the jobs that need a look — retrying after errors, discarded after their
// last attempt — with their last error, and lets admins retry or cancel one; auditors read.
// Every retry and cancel is in the audit trail (record job:<id>, the job before and after).
// The JSON routes and the page (/admin/jobs) call the same code.
func (s *Server) jobRoutes() {
	s.handle("GET /v1/jobs", access.JobList, noResource, s.listJobs)
	s.handle("POST /v1/jobs/{id}/retry", access.JobRetry, noResource, write(s, http.StatusOK, s.jobAction(access.JobRetry)))
	s.handle("POST /v1/jobs/{id}/cancel", access.JobCancel, noResource, write(s, http.StatusOK, s.jobAction(access.JobCancel)))

	s.page("GET /admin/jobs", access.JobList, noResource, s.adminGet(s.jobsView))
	s.page("POST /admin/jobs/{id}/retry", access.JobRetry, noResource, s.jobForm(access.JobRetry, doneJobRetry))
	s.page("POST /admin/jobs/{id}/cancel", access.JobCancel, noResource, s.jobForm(access.JobCancel, doneJobCancel))
}

// jobsError gives the board's errors the API's meaning.
func jobsError(err error) error {
	switch {
	case errors.Is(err, jobs.ErrJobNotFound):
		return fmt.Errorf("%w: %v", errNotFound, err)
	case errors.Is(err, jobs.ErrDuplicate):
		return fmt.Errorf("%w: %v", network.ErrExists, err)
	case errors.Is(err, jobs.ErrInvalidState):
		return fmt.Errorf("%w: %v", ledger.ErrInvalid, err)
	}
	return err
}

// jobsQuery reads ?state= (repeated or comma-separated; default retryable and discarded),
// ?kind= and ?limit=.
func jobsQuery(q url.Values) (states []string, kind string, limit int, err error) {
	for _, v := range q["state"] {
		for _, st := range strings.Split(v, ",") {
			if st = strings.TrimSpace(st); st != "" {
				states = append(states, st)
			}
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return nil, "", 0, fmt.Errorf("%w: limit: %q is not a non-negative integer", ledger.ErrInvalid, v)
		}
	}
	return states, strings.TrimSpace(q.Get("kind")), limit, nil
}

// listJobs answers GET /v1/jobs: the jobs, and the awards blocked now (as the page shows).
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	states, kind, limit, err := jobsQuery(r.URL.Query())
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	var list []jobs.Job
	// A server built without a jobs board (one that runs no River client) has none to list,
	// as its page shows.
	if s.jobs != nil {
		if list, err = s.jobs.List(r.Context(), states, kind, limit); err != nil {
			s.writeProblem(w, r, jobsError(err))
			return
		}
	}
	if list == nil {
		list = []jobs.Job{}
	}
	var blocked []network.BlockedAward
	if s.network != nil {
		if blocked, err = s.network.BlockedAwards(r.Context()); err != nil {
			s.writeProblem(w, r, err)
			return
		}
	}
	if blocked == nil {
		blocked = []network.BlockedAward{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"jobs": list, "blocked_awards": blocked})
}

// jobNote is the body of a retry or cancel: why, for the audit trail.
type jobNote struct {
	Note string `json:"note"`
}

// jobAction retries or cancels the job in the path, with its audit line in one transaction.
func (s *Server) jobAction(action access.Action) func(r *http.Request, body jobNote) (any, error) {
	return func(r *http.Request, body jobNote) (any, error) {
		id, err := jobID(r)
		if err != nil {
			return nil, err
		}
		return s.changeJob(r.Context(), by(r), action, id, body.Note)
	}
}

// jobID is the job id in the path: a positive integer, or no job is found.
func jobID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: job id %q is not a positive integer", errNotFound, r.PathValue("id"))
	}
	return id, nil
}

func (s *Server) changeJob(ctx context.Context, b network.By, action access.Action, id int64, note string) (jobs.Job, error) {
	if s.jobs == nil {
		// A server built without a jobs board (one that runs no River client) lists none.
		return jobs.Job{}, fmt.Errorf("%w: job %d: this server keeps no jobs board", errNotFound, id)
	}
	var after jobs.Job
	err := access.Apply(ctx, s.pool, b.Principal, b.RequestID, func(tx pgx.Tx) (access.Event, error) {
		change := s.jobs.RetryTx
		if action == access.JobCancel {
			change = s.jobs.CancelTx
		}
		before, a, err := change(ctx, tx, id)
		if err != nil {
			return access.Event{}, err
		}
		after = a
		return access.Event{Action: string(action), Record: fmt.Sprintf("job:%d", id), Before: before, After: a,
			Detail: strings.TrimSpace(note)}, nil
	})
	return after, jobsError(err)
}

const (
	doneJobRetry  = "job-retry"
	doneJobCancel = "job-cancel"
)

// jobForm serves the page's retry and cancel buttons.
func (s *Server) jobForm(action access.Action, done string) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, sess access.Session) error {
		back := safeReturn("/admin/jobs", "/admin/jobs")
		id, err := jobID(r)
		if err != nil {
			return s.formFailed(w, r, sess, back, err)
		}
		if _, err := s.changeJob(r.Context(), by(r), action, id, r.PostFormValue("note")); err != nil {
			return s.formFailed(w, r, sess, back, err)
		}
		http.Redirect(w, r, withDone(back, done, "job", strconv.FormatInt(id, 10)), http.StatusSeeOther)
		return nil
	}
}

// jobFlash is the message after a retry or cancel, from the job as it is now.
func (s *Server) jobFlash(ctx context.Context, done, id string) string {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || s.jobs == nil {
		return ""
	}
	j, err := s.jobs.Get(ctx, n)
	if err != nil {
		return ""
	}
	verb := "Retried"
	if done == doneJobCancel {
		verb = "Cancelled"
	}
	return fmt.Sprintf("%s job %d (%s): it is now %s.", verb, j.ID, j.Kind, j.State)
}

type jobKindRows struct {
	Kind string
	Jobs []jobs.Job
}

var jobsContent = newPage(adminStyle + `
<p>Jobs that did not simply complete: <strong>retryable</strong> ones failed and will run again
after a backoff; <strong>discarded</strong> ones gave up after their last attempt and will not run
again unless retried here. Jobs orphaned by a process that died are rescued and retried
automatically after the rescue window.</p>
<form method="get" action="/admin/jobs" class="filter-grid">
<div><label for="state">State</label><select id="state" name="state">
{{range .Data.States}}<option value="{{.Value}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select></div>
<div><label for="kind">Kind</label><input id="kind" name="kind" type="text" value="{{.Data.Kind}}"></div>
<div><button>Show</button></div></form>
{{range .Data.Kinds}}<section class="item"><h2>{{.Kind}}</h2><div class="table-wrap"><table>
<thead><tr><th scope="col">Job</th><th scope="col">State</th><th scope="col">Attempts</th><th scope="col">Arguments</th><th scope="col">Last error</th>{{if or $.Data.CanRetry $.Data.CanCancel}}<th scope="col">Actions</th>{{end}}</tr></thead>
<tbody>{{range .Jobs}}<tr><th scope="row">{{.ID}}</th><td>{{.State}}</td><td>{{.Attempt}} of {{.MaxAttempts}}</td>
<td><code>{{.Args}}</code></td><td>{{if .LastError}}{{.LastError}}{{if .ErrorAt}} <span class="muted">({{datetime .ErrorAt}})</span>{{end}}{{else}}<span class="muted">none</span>{{end}}</td>
{{if or $.Data.CanRetry $.Data.CanCancel}}<td>
{{if $.Data.CanRetry}}<form class="inline" method="post" action="/admin/jobs/{{.ID}}/retry"><input type="hidden" name="csrf" value="{{$.CSRF}}"><button aria-label="Retry job {{.ID}}">Retry</button></form>{{end}}
{{if and $.Data.CanCancel (ne .State "cancelled") (ne .State "discarded")}}<form class="inline" method="post" action="/admin/jobs/{{.ID}}/cancel"><input type="hidden" name="csrf" value="{{$.CSRF}}"><button class="secondary" aria-label="Cancel job {{.ID}}">Cancel</button></form>{{end}}
</td>{{end}}</tr>{{end}}</tbody></table></div></section>
{{else}}<p>No jobs in this state.</p>{{end}}
{{if .Data.Blocked}}<section class="item"><h2>Blocked awards</h2>
<p>Awards a rule earned that could not be paid (the reason says why); the payouts sweep tries them again, and the participant's other awards went through.</p>
<div class="table-wrap"><table><thead><tr><th scope="col">Participant</th><th scope="col">Program</th><th scope="col">Rule</th><th scope="col">Period</th><th scope="col" class="amount">Amount</th><th scope="col">Since</th><th scope="col">Reason</th></tr></thead>
<tbody>{{range .Data.Blocked}}<tr><th scope="row">{{.Participant}}</th><td>{{.Program}}</td><td>{{.Rule}}</td><td>{{.Period}}</td><td class="amount">{{.Amount}}</td><td>{{datetime .BlockedAt}}</td><td>{{.Reason}}</td></tr>{{end}}</tbody></table></div></section>{{end}}`)

type stateOption struct {
	Value, Label string
	Selected     bool
}

// jobsView lists the jobs of the state asked for (retryable and discarded by default), by kind.
func (s *Server) jobsView(ctx context.Context, sess access.Session, target *url.URL) (*template.Template, pageData, error) {
	q := target.Query()
	states, kind, _, err := jobsQuery(url.Values{"state": q["state"], "kind": q["kind"]})
	if err != nil {
		return nil, pageData{}, err
	}
	selected := strings.Join(states, ",")
	var list []jobs.Job
	if s.jobs != nil {
		if list, err = s.jobs.List(ctx, states, kind, 200); err != nil {
			return nil, pageData{}, jobsError(err)
		}
	}
	var kinds []jobKindRows
	at := map[string]int{}
	for _, j := range list {
		i, ok := at[j.Kind]
		if !ok {
			i = len(kinds)
			at[j.Kind] = i
			kinds = append(kinds, jobKindRows{Kind: j.Kind})
		}
		kinds[i].Jobs = append(kinds[i].Jobs, j)
	}
	var options []stateOption
	for _, o := range []stateOption{{"", "retryable and discarded", false}, {"retryable", "retryable", false},
		{"discarded", "discarded", false}, {"cancelled", "cancelled", false}, {"running", "running", false},
		{"available", "available", false}, {"scheduled", "scheduled", false}} {
		o.Selected = o.Value == selected
		options = append(options, o)
	}
	var blocked []network.BlockedAward
	if s.network != nil {
		if blocked, err = s.network.BlockedAwards(ctx); err != nil {
			return nil, pageData{}, err
		}
	}
	p := sess.Principal
	return jobsContent, pageData{Title: "Jobs", CSRF: sess.CSRF, Principal: &p, Data: struct {
		Kinds               []jobKindRows
		States              []stateOption
		Kind                string
		CanRetry, CanCancel bool
		Blocked             []network.BlockedAward
	}{kinds, options, kind, access.Authorize(p, access.JobRetry, access.Resource{}) == nil,
		access.Authorize(p, access.JobCancel, access.Resource{}) == nil, blocked}}, nil
}
