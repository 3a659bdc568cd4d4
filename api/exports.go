package api

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
)

// Exports and the seal for auditors (DESIGN.md §3, §9):
//
//	GET /v1/exports?format=csv|jsonl|hledger&from=&to=&program=   the ledger, streamed
//	GET /v1/seal                                                 the seal's status
//	GET /v1/seal/verify                                          verify the database now
//	GET /audit, GET /audit/export?…, POST /audit/verify          the same for a browser
//
// Verifying is a GET under /v1: it reads the ledger and changes nothing in it (it records its
// result), so it is a read action that auditors may take, like every route they may use.
func (s *Server) exportRoutes() {
	s.handle("GET /v1/exports", access.LedgerExport, noResource, s.exportLedger)
	s.handle("GET /v1/seal", access.SealRead, noResource, s.sealStatus)
	s.handle("GET /v1/seal/verify", access.SealVerify, noResource, s.verifySeal)

	s.page("GET /audit", access.SealRead, noResource, s.auditPage)
	s.page("GET /audit/export", access.LedgerExport, noResource, s.auditExport)
	s.page("POST /audit/verify", access.SealVerify, noResource, s.auditVerify)
}

// exportRequest reads an export's query parameters. The format defaults to CSV; from and to
// bound the effective date (from inclusive, to exclusive) as dates (2026-11-22) or RFC 3339
// times.
func exportRequest(q url.Values) (ledger.ExportOptions, error) {
	opt := ledger.ExportOptions{Format: ledger.FormatCSV}
	for key := range q {
		switch key {
		case "format", "from", "to", "program":
		default:
			return opt, fmt.Errorf("%w: %s: not an export parameter (format, from, to, program)", ledger.ErrInvalid, truncateParam(key))
		}
	}
	if v := q.Get("format"); v != "" {
		f, err := ledger.ParseExportFormat(v)
		if err != nil {
			return opt, err
		}
		opt.Format = f
	}
	var err error
	if opt.Filter.From, err = ledger.ParseExportTime("from", q.Get("from")); err != nil {
		return opt, err
	}
	if opt.Filter.To, err = ledger.ParseExportTime("to", q.Get("to")); err != nil {
		return opt, err
	}
	opt.Filter.Program = strings.TrimSpace(q.Get("program"))
	return opt, opt.Filter.Validate()
}

func truncateParam(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// exportFileName names a download: tandem-ledger-<program>-<UTC time><extension>.
func exportFileName(opt ledger.ExportOptions, now time.Time) string {
	name := "tandem-ledger"
	if opt.Filter.Program != "" {
		name += "-" + opt.Filter.Program
	}
	return name + "-" + now.UTC().Format("20060102T150405Z") + opt.Format.Extension()
}

// writtenCounter tells whether a stream has started: before it, a failure can still be
// answered with an error document.
type writtenCounter struct {
	http.ResponseWriter
	n int64
}

func (c *writtenCounter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// longResponse lifts the server's write timeout (cmd/tandem serve: 60 s) for a response that
// streams a whole ledger or verifies it: an hour, however long the ledger. The server's
// statusRecorder hides the connection's controls, so it is looked through.
func longResponse(w http.ResponseWriter) {
	for {
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Hour)); err == nil {
			return
		}
		sr, ok := w.(*statusRecorder)
		if !ok {
			return
		}
		w = sr.ResponseWriter
	}
}

// streamExport checks the options, then streams the export with its download headers and
// trailers carrying the counts and the last seal link. It returns an error only while
// nothing was sent; a failure mid-stream aborts the response, so that the client sees a
// broken transfer instead of a short file that looks whole.
func (s *Server) streamExport(w http.ResponseWriter, r *http.Request, opt ledger.ExportOptions) error {
	if err := s.ledger.CheckExport(r.Context(), opt); err != nil {
		return err
	}
	longResponse(w)
	h := w.Header()
	h.Set("Content-Type", opt.Format.ContentType())
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": exportFileName(opt, time.Now())}))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Trailer", "Tandem-Export-Postings, Tandem-Export-Entries, Tandem-Export-Through-Seq, Tandem-Export-Last-Hash")
	cw := &writtenCounter{ResponseWriter: w}
	sum, err := s.ledger.Export(r.Context(), cw, opt)
	if err != nil {
		if cw.n == 0 {
			h.Del("Content-Disposition")
			h.Del("Trailer")
			return err
		}
		s.logger.ErrorContext(r.Context(), "export failed mid-stream", "request_id", requestID(r.Context()),
			"bytes", cw.n, "error", err)
		s.recordExport(r, opt, sum, cw.n, err)
		panic(http.ErrAbortHandler)
	}
	s.recordExport(r, opt, sum, cw.n, nil)
	h.Set("Tandem-Export-Postings", strconv.FormatInt(sum.Postings, 10))
	h.Set("Tandem-Export-Entries", strconv.FormatInt(sum.Entries, 10))
	h.Set("Tandem-Export-Through-Seq", strconv.FormatInt(sum.ThroughSeq, 10))
	h.Set("Tandem-Export-Last-Hash", sum.LastHash)
	p, _ := principalFrom(r.Context())
	s.logger.InfoContext(r.Context(), "ledger exported", "request_id", requestID(r.Context()), "by", p.Subject(),
		"format", sum.Format, "scope", sum.Scope, "postings", sum.Postings, "bytes", sum.Bytes, "through_seq", sum.ThroughSeq)
	return nil
}

// recordExport records an export that was sent, whole or in part, in the audit trail: an
// export hands out everyone's money, so who took what and when is kept with the changes.
func (s *Server) recordExport(r *http.Request, opt ledger.ExportOptions, sum ledger.ExportSummary, sent int64, failed error) {
	if s.pool == nil {
		return
	}
	p, _ := principalFrom(r.Context())
	ev := access.Event{Actor: p, Action: string(access.LedgerExport), Record: opt.Filter.Scope(),
		Detail: sum.AuditDetail(opt.Format, sent, failed), RequestID: requestID(r.Context())}
	if err := access.Record(context.WithoutCancel(r.Context()), s.pool, ev); err != nil {
		s.logger.ErrorContext(r.Context(), "audit an export", "request_id", requestID(r.Context()), "error", err)
	}
}

func (s *Server) exportLedger(w http.ResponseWriter, r *http.Request) {
	opt, err := exportRequest(r.URL.Query())
	if err == nil {
		err = s.streamExport(w, r, opt)
	}
	if err != nil {
		s.writeProblem(w, r, err)
	}
}

func (s *Server) sealStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.ledger.SealStatus(r.Context())
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// verifying lets one verification of the database run at a time in the process (one lock a
// Server, which a process serves one of; tests run several side by side): each reads the
// whole ledger on three connections, and a second at once adds load, not information.
var verifying sync.Map // *Server → *sync.Mutex

// errVerifying: a verification is running already.
var errVerifying = fmt.Errorf("%w: a verification is running; try again when it has finished", errRateLimited)

// verifyOnce runs a verification unless one is running (errVerifying).
func (s *Server) verifyOnce(w http.ResponseWriter, r *http.Request, actor string) (ledger.VerifyReport, error) {
	mu, _ := verifying.LoadOrStore(s, &sync.Mutex{})
	lock := mu.(*sync.Mutex)
	if !lock.TryLock() {
		w.Header().Set("Retry-After", "10")
		return ledger.VerifyReport{}, errVerifying
	}
	defer lock.Unlock()
	longResponse(w)
	return s.ledger.Verify(r.Context(), ledger.VerifyOptions{Actor: actor})
}

// verifyActor names who asked for a verification in its record.
func verifyActor(p access.Principal) string {
	return fmt.Sprintf("%s (%s, %s)", p.Subject(), p.Name, p.Role)
}

// verifySeal answers 200 with the report whether or not the seal holds: the verification
// itself succeeded. ok and problems say what it found.
func (s *Server) verifySeal(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		s.writeProblem(w, r, fmt.Errorf("%w: verify takes no parameters", ledger.ErrInvalid))
		return
	}
	p, _ := principalFrom(r.Context())
	rep, err := s.verifyOnce(w, r, verifyActor(p))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if !rep.OK() {
		s.logger.ErrorContext(r.Context(), "the seal does not verify", "request_id", requestID(r.Context()),
			"problems", rep.ProblemCount, "first", rep.Problems[0].Detail)
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": rep.OK(), "report": rep})
}

// auditStyle is the auditor page's own style (the CSP allows inline styles only).
const auditStyle = `<style>
.audit-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,12rem),1fr));gap:0 1rem}
.hash{font-family:ui-monospace,monospace;font-size:.9rem;overflow-wrap:anywhere}
dl.seal{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .75rem}
dl.seal dt{font-weight:600}dl.seal dd{margin:0;overflow-wrap:anywhere}
@media (max-width:32rem){dl.seal{grid-template-columns:1fr}dl.seal dd{margin-bottom:.4rem}}
.bad{color:#a00;font-weight:600}.good{color:#176b2c;font-weight:600}
</style>`

var auditContent = newPage(auditStyle + `{{with .Data}}
<section aria-labelledby="export-h">
<h2 id="export-h">Export the ledger</h2>
<p>Every posting of the ledger's final history, one a row with its entry's and account's fields and the entry's seal links.
Dates filter by the entries' effective date: from is included, to is not.
A program's export holds the entries that touch its accounts or name it, and what committed, voided or reversed them.</p>
<form method="get" action="/audit/export">
<div class="audit-grid">
<div><label for="format">Format</label>
<select id="format" name="format">{{range .Formats}}<option value="{{.Value}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select></div>
<div><label for="from">Effective from (included)</label>
<input id="from" name="from" type="date" value="{{.From}}"></div>
<div><label for="to">Effective before (not included)</label>
<input id="to" name="to" type="date" value="{{.To}}"></div>
<div><label for="program">Program (empty: all)</label>
<input id="program" name="program" type="text" list="programs" value="{{.Program}}" autocomplete="off">
<datalist id="programs">{{range .Programs}}<option value="{{.}}">{{end}}</datalist></div>
</div>
<button>Download the export</button>
</form>
<p class="muted">The same from the command line: <code>tandem export --format csv --out ledger.csv</code>; check a file with <code>tandem verify ledger.csv</code> (a filtered one with <code>tandem verify --partial FILE</code>).</p>
</section>

<section aria-labelledby="seal-h">
<h2 id="seal-h">Seal</h2>
<p>A job chains the entries in sequence order: each sealed entry's link is a SHA-256 over the link before it and the entry with its postings.
Verifying recomputes every link and names the first entry that no longer matches.</p>
<div class="cards">
<div class="card"><div>Sealed entries</div><div class="figure">{{.Sealed}}</div></div>
<div class="card"><div>Not sealed yet</div><div class="figure">{{.Unsealed}}</div><div class="muted">sealed within a minute by the seal job</div></div>
<div class="card"><div>Last verification</div><div class="figure">{{if .Verification}}{{if .Verification.OK}}<span class="good">Holds</span>{{else}}<span class="bad">Broken</span>{{end}}{{else}}None yet{{end}}</div></div>
</div>
{{with .Status.Head}}<dl class="seal">
<dt>Last sealed entry</dt><dd>seq {{.Seq}}, <span class="hash">{{.EntryID}}</span></dd>
<dt>Sealed at</dt><dd>{{datetime .At}}</dd>
<dt>Head link</dt><dd class="hash">{{.Hash}}</dd>
</dl>{{else}}<p>Nothing is sealed yet.</p>{{end}}
<p>The audit trail is sealed the same way, in a chain of its own:
{{with .Status.AuditHead}}{{.Lines}} lines through line {{.AuditID}}, head link <span class="hash">{{.Hash}}</span>{{else}}no line yet{{end}};
{{.Status.AuditUnsealed}} not sealed yet.</p>
{{with .Verification}}<h3>Last verification</h3>
<dl class="seal">
<dt>When</dt><dd>{{datetime .At}} ({{.Duration}})</dd>
<dt>By</dt><dd>{{.Actor}}</dd>
<dt>Result</dt><dd>{{if .OK}}<span class="good">The seal holds</span> for {{.Entries}} entries, through seq {{.HeadSeq}}, and {{.AuditLines}} audit lines.{{else}}<span class="bad">{{.Problems}} problem(s)</span>; the first: {{.FirstProblem}}{{end}}</dd>
</dl>{{end}}
<form method="post" action="/audit/verify">
<input type="hidden" name="csrf" value="{{$.CSRF}}">
<button>Verify the seal now</button>
</form>
</section>
{{end}}`)

// auditOption is a format in the export form.
type auditOption struct {
	Value, Label string
	Selected     bool
}

// auditView is the auditor page's data.
type auditView struct {
	Formats           []auditOption
	From, To, Program string
	Programs          []string
	Status            ledger.SealStatus
	Sealed            int64
	Unsealed          int64
	Verification      *ledger.Verification
}

// auditData gathers the page: the export form (with what was asked, after a refused
// export) and the seal's status.
func (s *Server) auditData(r *http.Request, q url.Values) (auditView, error) {
	st, err := s.ledger.SealStatus(r.Context())
	if err != nil {
		return auditView{}, err
	}
	v := auditView{From: q.Get("from"), To: q.Get("to"), Program: q.Get("program"), Status: st, Unsealed: st.Unsealed,
		Verification: st.LastVerification}
	if st.Head != nil {
		v.Sealed = st.Head.Entries
	}
	format := q.Get("format")
	for _, f := range []auditOption{{string(ledger.FormatCSV), "CSV (one posting a row)", false},
		{string(ledger.FormatJSONL), "JSON Lines (one posting a line)", false},
		{string(ledger.FormatHledger), "hledger journal (posted amounts)", false}} {
		f.Selected = f.Value == format
		v.Formats = append(v.Formats, f)
	}
	accts, err := s.ledger.Accounts(r.Context(), ledger.AccountFilter{Prefix: "program/", Limit: 1000})
	if err != nil {
		return auditView{}, err
	}
	for _, a := range accts {
		id := strings.SplitN(a.Code, "/", 3)[1]
		if len(v.Programs) == 0 || v.Programs[len(v.Programs)-1] != id {
			v.Programs = append(v.Programs, id)
		}
	}
	return v, nil
}

// auditPage shows the export form and the seal; ?verified=<id> reports a verification the
// page's button just ran.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	v, err := s.auditData(r, url.Values{})
	if err != nil {
		return err
	}
	d := pageData{Title: "Exports and seal", CSRF: sess.CSRF, Principal: &sess.Principal, Data: v}
	if id, err := strconv.ParseInt(r.URL.Query().Get("verified"), 10, 64); err == nil && v.Verification != nil && v.Verification.ID == id {
		if v.Verification.OK {
			d.Flash = fmt.Sprintf("Verified: the seal holds for %d entries, through seq %d.", v.Verification.Entries, v.Verification.HeadSeq)
		} else {
			d.Error = fmt.Sprintf("The seal does not verify: %d problem(s). The first: %s", v.Verification.Problems, v.Verification.FirstProblem)
		}
	}
	s.renderPage(w, r, http.StatusOK, auditContent, d)
	return nil
}

// auditExport downloads an export for a signed-in auditor or admin; a refused request shows
// the page again with the reason and the values asked for.
func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	q := r.URL.Query()
	for _, k := range []string{"from", "to", "program"} { // empty form fields are no filter
		if strings.TrimSpace(q.Get(k)) == "" {
			q.Del(k)
		}
	}
	opt, err := exportRequest(q)
	if err == nil {
		err = s.streamExport(w, r, opt)
	}
	if err == nil {
		return nil
	}
	status := http.StatusInternalServerError
	for _, k := range problemKinds {
		if errors.Is(err, k.err) {
			status = k.status
			break
		}
	}
	if status >= 500 {
		return err
	}
	v, verr := s.auditData(r, r.URL.Query())
	if verr != nil {
		return err
	}
	s.renderPage(w, r, status, auditContent, pageData{Title: "Exports and seal", Error: "No export: " + err.Error(),
		CSRF: sess.CSRF, Principal: &sess.Principal, Data: v, Nav: navFor(&sess.Principal, "/audit")})
	return nil
}

// auditVerify runs a verification and sends the browser back to the page, which shows it.
func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	rep, err := s.verifyOnce(w, r, verifyActor(sess.Principal))
	if err != nil {
		return err
	}
	if !rep.OK() {
		s.logger.ErrorContext(r.Context(), "the seal does not verify", "request_id", requestID(r.Context()),
			"problems", rep.ProblemCount, "first", rep.Problems[0].Detail)
	}
	http.Redirect(w, r, "/audit?verified="+strconv.FormatInt(rep.Verification.ID, 10), http.StatusSeeOther)
	return nil
}
