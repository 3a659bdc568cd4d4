package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
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

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Tandem</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
label,input,button{display:block;font:inherit;margin:.5rem 0}input{width:100%;padding:.4rem}
.error{color:#a00}</style></head>
<body><main><h1>{{.Title}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Principal}}
<p>Signed in as <strong>{{.Principal.Name}}</strong> ({{.Principal.Role}}{{if .Principal.PersonID}}, person {{.Principal.PersonID}}{{end}}).</p>
<form method="post" action="/sign-out"><input type="hidden" name="csrf" value="{{.CSRF}}"><button>Sign out</button></form>
{{else}}
<form method="post" action="/sign-in">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="token">Your Tandem token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button>Sign in</button></form>
{{end}}
</main></body></html>`))

type pageData struct {
	Title     string
	Error     string
	CSRF      string
	Principal *access.Principal
}

func (s *Server) renderPage(w http.ResponseWriter, status int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, d)
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
	s.renderPage(w, http.StatusOK, pageData{Title: "Tandem", CSRF: sess.CSRF, Principal: &sess.Principal})
}

func (s *Server) signInForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.pageSession(r); ok {
		http.Redirect(w, r, "/", http.StatusSeeOther)
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
	s.renderPage(w, status, pageData{Title: "Sign in", Error: msg, CSRF: csrf})
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
	http.Redirect(w, r, "/", http.StatusSeeOther)
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
		s.renderPage(w, http.StatusForbidden, pageData{Title: "Tandem", Error: "This form expired or did not come from Tandem; try again.",
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
