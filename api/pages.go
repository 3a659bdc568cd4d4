package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tandemledger/tandem/access"
)

// Page sessions. A person signs in by pasting their token into a form; the browser then
// holds a session cookie (HttpOnly, SameSite=Strict, Secure over TLS) and every form that
// changes state carries the session's CSRF token. The sign-in form itself is protected by a
// double-submit cookie, so another site cannot sign a browser into someone else's session.
const (
	sessionCookie = "tandem_session"
	signInCookie  = "tandem_signin"
)

// layout is the frame of every page: a skip link, the navigation of the signed-in role, the
// flash and error messages, and the page's own "content" template. Pages work without
// JavaScript (plain links and forms), follow the document outline (one h1, landmarks, tables
// with header cells) and reflow to a phone's width. The style sheet is inline: the CSP allows
// nothing from elsewhere.
var layout = template.Must(template.New("layout").Funcs(pageFuncs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Tandem</title>
<style>
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fff}
a{color:#0b57b0}a:focus,button:focus,input:focus,select:focus,textarea:focus{outline:3px solid #b35c00;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem}
header{background:#12355b;color:#fff;padding:.5rem 1rem}header a{color:#fff}header a:focus,header button:focus{outline-color:#f5a623}
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem 1rem}
main{max-width:64rem;margin:0 auto;padding:1rem}
label{display:block;margin:.5rem 0 .2rem;font-weight:600}
input,select,textarea,button{font:inherit;padding:.4rem;max-width:100%}
input[type=text],input[type=password],input[type=number],input[type=date],input[type=datetime-local],select,textarea{width:100%}
button{background:#12355b;color:#fff;border:0;border-radius:4px;padding:.45rem .9rem;cursor:pointer;margin:.25rem 0}
button.secondary{background:#e8ecf1;color:#12355b}
.error{color:#a00;background:#fde8e8;padding:.5rem;border-radius:4px}
.flash{background:#e6f4ea;padding:.5rem;border-radius:4px}
.muted{color:#555}.amount{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.table-wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(12rem,1fr));gap:.75rem;margin:1rem 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.75rem}.card .figure{font-size:1.5rem;font-weight:700}
progress{width:100%;height:1rem}
svg{max-width:100%;height:auto}
form.inline{display:inline}
</style></head>
<body><a class="skip" href="#main">Skip to content</a>
<header>{{if .Principal}}<nav aria-label="Main"><ul>
{{range .Nav}}<li><a href="{{.Href}}"{{if .Current}} aria-current="page"{{end}}>{{.Label}}</a></li>{{end}}
<li><form class="inline" method="post" action="/sign-out"><input type="hidden" name="csrf" value="{{.CSRF}}"><button class="secondary">Sign out {{.Principal.Name}}</button></form></li>
</ul></nav>{{else}}<strong>Tandem</strong>{{end}}</header>
<main id="main"><h1>{{.Title}}</h1>
{{if .Flash}}<p class="flash" role="status">{{.Flash}}</p>{{end}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{template "content" .}}
</main></body></html>`))

// pageFuncs are the helpers every page template may use.
var pageFuncs = template.FuncMap{
	"date":     func(t time.Time) string { return t.UTC().Format("2 Jan 2006") },
	"datetime": func(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 UTC") },
}

// newPage parses a page's content template into a copy of the layout. Page templates are
// parsed once, when the package loads: a broken one fails every test at once.
func newPage(content string) *template.Template {
	t := template.Must(layout.Clone())
	template.Must(t.New("content").Parse(content))
	return t
}

var signInContent = newPage(`{{if .Principal}}
<p>Signed in as <strong>{{.Principal.Name}}</strong> ({{.Principal.Role}}{{if .Principal.PersonID}}, person {{.Principal.PersonID}}{{end}}).</p>
<p><a href="{{.Data}}">Go to your page</a></p>
{{else}}
<form method="post" action="/sign-in">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="token">Your Tandem token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button>Sign in</button></form>
{{end}}`)

// navLink is an entry of the page navigation.
type navLink struct {
	Href, Label string
	Current     bool
}

// pageData is what the layout needs; Data is the page's own.
type pageData struct {
	Title     string
	Flash     string
	Error     string
	CSRF      string
	Principal *access.Principal
	Nav       []navLink
	Data      any
}

// navFor lists the pages of a role, the current one marked.
func navFor(p *access.Principal, current string) []navLink {
	if p == nil {
		return nil
	}
	var links []navLink
	switch p.Role {
	case access.Admin:
		links = []navLink{{Href: "/admin/approvals", Label: "Approvals"}, {Href: "/admin/failed", Label: "Failed payouts"},
			{Href: "/admin/reconciliation", Label: "Reconciliation"}, {Href: "/admin/programs", Label: "Programs"},
			{Href: "/admin/retracted", Label: "Evidence retracted"}, {Href: "/admin/jobs", Label: "Jobs"}}
	case access.Auditor:
		links = []navLink{{Href: "/audit", Label: "Exports and seal"}, {Href: "/admin/approvals", Label: "Approvals"},
			{Href: "/admin/failed", Label: "Failed payouts"}, {Href: "/admin/reconciliation", Label: "Reconciliation"},
			{Href: "/admin/programs", Label: "Programs"}, {Href: "/admin/retracted", Label: "Evidence retracted"},
			{Href: "/admin/jobs", Label: "Jobs"}}
	case access.Coach:
		links = []navLink{{Href: "/coach", Label: "My participants"}, {Href: "/me", Label: "My home"}}
	case access.Participant:
		links = []navLink{{Href: "/me", Label: "My home"}}
	}
	for i := range links {
		links[i].Current = links[i].Href == current
	}
	return links
}

// renderPage writes a page. d.Nav is filled in from the principal when empty.
func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, t *template.Template, d pageData) {
	if d.Nav == nil {
		d.Nav = navFor(d.Principal, r.URL.Path)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, d); err != nil {
		s.logger.ErrorContext(r.Context(), "render page", "request_id", requestID(r.Context()), "path", r.URL.Path, "error", err)
		http.Error(w, "The page could not be drawn; the error was logged with request id "+requestID(r.Context()), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// pageFunc serves a page for a signed-in session whose principal the policy allowed.
// Returning an error shows it on an error page with the status of its problem kind; a
// handler that wrote its answer returns nil.
type pageFunc func(w http.ResponseWriter, r *http.Request, sess access.Session) error

var errorContent = newPage(`<p><a href="/">Back to your home page</a></p>`)

// page registers a page route. Like /v1 routes, each names the action it takes and the
// resource it acts on, and access.Authorize decides; refusals are recorded in the audit
// trail. A signed-out browser is sent to the sign-in page. POST forms must carry the
// session's CSRF token and are bounded by the token's write budget.
func (s *Server) page(pattern string, action access.Action, res resourceFunc, h pageFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		sess, ok := s.pageSession(r)
		if !ok {
			http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
			return
		}
		p := sess.Principal
		// Resource functions and handlers find the principal where /v1 routes put it.
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				s.pageError(w, r, sess, fmt.Errorf("%w: the form could not be read: %v", errMalformed, err))
				return
			}
			if err := sess.CheckCSRF(r.PostFormValue("csrf")); err != nil {
				s.logger.WarnContext(r.Context(), "form refused: CSRF", "request_id", requestID(r.Context()), "token", p.TokenID)
				s.renderPage(w, r, http.StatusForbidden, errorContent, pageData{Title: "Form expired",
					Error: "This form expired or did not come from Tandem; go back, reload and try again.", CSRF: sess.CSRF, Principal: &p})
				return
			}
		}
		budget := s.writes
		if action.ReadOnly() {
			budget = s.reads
		}
		if wait, ok := budget.allow(p.TokenID); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			s.pageError(w, r, sess, fmt.Errorf("%w: too many requests; retry in %s", errRateLimited, wait.Round(time.Millisecond)))
			return
		}
		if err := checkParams(r, pattern); err != nil {
			s.pageError(w, r, sess, err)
			return
		}
		if err := access.Authorize(p, action, res(r)); err != nil {
			s.deny(r, p, action, err)
			s.pageError(w, r, sess, err)
			return
		}
		if err := h(w, r, sess); err != nil {
			s.pageError(w, r, sess, err)
		}
	})
}

// pageError shows err on a page with the status its problem kind has in the JSON API.
// Unknown errors are logged and shown only by request id.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, sess access.Session, err error) {
	status, title, detail := http.StatusInternalServerError, "Something went wrong",
		"The error was logged with request id "+requestID(r.Context())+"."
	cause := err
	if err = classify(err); errors.Is(err, errUnavailable) {
		w.Header().Set("Retry-After", retryAfterUnavailable)
	}
	for _, k := range problemKinds {
		if errors.Is(err, k.err) {
			status, title, detail = k.status, k.title, err.Error()
			break
		}
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.logger.Log(r.Context(), level, "page failed", "request_id", requestID(r.Context()), "method", r.Method,
		"path", r.URL.Path, "status", status, "error", cause)
	s.renderPage(w, r, status, errorContent, pageData{Title: title, Error: detail, CSRF: sess.CSRF, Principal: &sess.Principal})
}

// homeFor is where a role lands after signing in.
func homeFor(p access.Principal) string {
	switch p.Role {
	case access.Admin:
		return "/admin/approvals"
	case access.Auditor:
		return "/audit"
	case access.Coach:
		return "/coach"
	case access.Participant:
		return "/me"
	}
	return "/sign-in"
}

// setCookie sets an HttpOnly, SameSite=Strict cookie, Secure when the request came over TLS
// here or through a TLS proxy the server was told about (Config.BehindTLSProxy).
func (s *Server) setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", Expires: expires, HttpOnly: true,
		Secure: r.TLS != nil || s.behindTLSProxy, SameSite: http.SameSiteStrictMode})
}

// pageSession returns the session of the request's cookie, if it is open.
func (s *Server) pageSession(r *http.Request) (access.Session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return access.Session{}, false
	}
	sess, err := s.access.Session(r.Context(), c.Value)
	if err != nil {
		return access.Session{}, false
	}
	return sess, true
}

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pageSession(r)
	if !ok {
		http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
		return
	}
	s.renderPage(w, r, http.StatusOK, signInContent, pageData{Title: "Tandem", CSRF: sess.CSRF, Principal: &sess.Principal,
		Data: homeFor(sess.Principal)})
}

func (s *Server) signInForm(w http.ResponseWriter, r *http.Request) {
	if sess, ok := s.pageSession(r); ok {
		http.Redirect(w, r, homeFor(sess.Principal), http.StatusSeeOther)
		return
	}
	s.signInPage(w, r, http.StatusOK, "")
}

// signInPage shows the form with a fresh double-submit CSRF value.
func (s *Server) signInPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	csrf := base64.RawURLEncoding.EncodeToString(b)
	s.setCookie(w, r, signInCookie, csrf, time.Now().Add(time.Hour))
	s.renderPage(w, r, status, signInContent, pageData{Title: "Sign in", Error: msg, CSRF: csrf})
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		s.signInPage(w, r, http.StatusBadRequest, "The form could not be read; try again.")
		return
	}
	c, err := r.Cookie(signInCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		s.logger.WarnContext(r.Context(), "sign-in refused: CSRF", "request_id", requestID(r.Context()))
		s.signInPage(w, r, http.StatusForbidden, "This form expired or did not come from Tandem; sign in again.")
		return
	}
	var previous string
	if c, err := r.Cookie(sessionCookie); err == nil {
		previous = c.Value
	}
	sess, err := s.access.SignIn(r.Context(), strings.TrimSpace(r.PostFormValue("token")), previous, requestID(r.Context()))
	if err != nil {
		if errors.Is(err, access.ErrUnauthenticated) {
			s.logger.WarnContext(r.Context(), "sign-in refused", "request_id", requestID(r.Context()), "reason", err)
			s.signInPage(w, r, http.StatusUnauthorized, "That token is unknown, revoked or expired.")
			return
		}
		s.writeProblem(w, r, err)
		return
	}
	s.setCookie(w, r, signInCookie, "", time.Unix(0, 0))
	s.setCookie(w, r, sessionCookie, sess.ID, sess.ExpiresAt)
	http.Redirect(w, r, homeFor(sess.Principal), http.StatusSeeOther)
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.pageSession(r)
	if !ok {
		http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
		return
	}
	if err := r.ParseForm(); err != nil {
		s.writeProblem(w, r, fmt.Errorf("%w: %v", errMalformed, err))
		return
	}
	if err := sess.CheckCSRF(r.PostFormValue("csrf")); err != nil {
		s.logger.WarnContext(r.Context(), "form refused: CSRF", "request_id", requestID(r.Context()), "token", sess.Principal.TokenID)
		s.renderPage(w, r, http.StatusForbidden, errorContent, pageData{Title: "Form expired", Error: "This form expired or did not come from Tandem; try again.",
			CSRF: sess.CSRF, Principal: &sess.Principal})
		return
	}
	if err := s.access.SignOut(r.Context(), sess, requestID(r.Context())); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	s.setCookie(w, r, sessionCookie, "", time.Unix(0, 0))
	http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
}
