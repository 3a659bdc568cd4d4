package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tandemledger/tandem/access"
)

type principalKey struct{}

func principalFrom(ctx context.Context) (access.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(access.Principal)
	return p, ok
}

// resourceFunc tells the policy what a request acts on.
type resourceFunc func(r *http.Request) access.Resource

func noResource(*http.Request) access.Resource { return access.Resource{} }

// accountInPath is the resource of routes ending in an account code. A participant's
// wallet names their coaches when a coach asks: a coach reads what the participants assigned
// to them read of their own.
func (s *Server) accountInPath(r *http.Request) access.Resource {
	res := access.AccountResource(r.PathValue("code"))
	if p, _ := principalFrom(r.Context()); p.Role == access.Coach && res.OwnerRole == access.Participant && s.network != nil {
		coaches, err := s.network.Coaches(r.Context(), res.Owner)
		if err != nil {
			s.logger.ErrorContext(r.Context(), "look up coaches", "person", res.Owner, "error", err)
		}
		res.Coaches = coaches
	}
	return res
}

// route is one authenticated /v1 endpoint: its pattern, the action it takes and what it acts
// on. Routes lists them all, so a test can walk every route with every role.
type route struct {
	Pattern  string
	Action   access.Action
	resource resourceFunc
	handler  http.HandlerFunc
}

// Route describes an authenticated endpoint for tests and documentation.
type Route struct {
	Method, Path string
	Action       access.Action
}

// Routes lists every authenticated endpoint with the action it takes.
func (s *Server) Routes() []Route {
	out := make([]Route, 0, len(s.table))
	for _, rt := range s.table {
		method, path, _ := strings.Cut(rt.Pattern, " ")
		out = append(out, Route{Method: method, Path: path, Action: rt.Action})
	}
	return out
}

// handle registers an authenticated route: authentication happened in ServeHTTP; here the
// policy decides, refusals are logged and recorded, and writes spend the token's rate budget.
func (s *Server) handle(pattern string, action access.Action, res resourceFunc, h http.HandlerFunc) {
	s.table = append(s.table, route{Pattern: pattern, Action: action, resource: res, handler: h})
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, ok := principalFrom(r.Context())
		if !ok { // ServeHTTP authenticates every /v1 request; this is a wiring mistake
			s.writeProblem(w, r, fmt.Errorf("%w: no principal", access.ErrUnauthenticated))
			return
		}
		// The budget is spent before the policy runs: a refusal writes (or counts on) an
		// audit line, so refusals are bounded as much as the requests they refuse.
		budget := s.writes
		if action.ReadOnly() {
			budget = s.reads
		}
		if wait, ok := budget.allow(p.TokenID); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			s.writeProblem(w, r, fmt.Errorf("%w: token %s: at most %g requests a second of this kind (burst %d); retry in %s",
				errRateLimited, p.Name, float64(budget.every), budget.burst, wait.Round(time.Millisecond)))
			return
		}
		if err := checkParams(r, pattern); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		if err := access.Authorize(p, action, res(r)); err != nil {
			s.deny(r, p, action, err)
			s.writeProblem(w, r, err)
			return
		}
		h(w, r)
	})
}

// deny logs and records a refused attempt. The trail line is written on its own: there is
// no change to attach it to. Every refusal is recorded: repeats within a minute fold into
// one line's count (access.Record), so a flood of refusals cannot fill the trail, and the
// request already spent its token's budget.
func (s *Server) deny(r *http.Request, p access.Principal, action access.Action, err error) {
	s.logger.WarnContext(r.Context(), "forbidden", "request_id", requestID(r.Context()), "token", p.TokenID,
		"role", p.Role, "person", p.PersonID, "action", action, "path", r.URL.Path, "error", err)
	if s.pool == nil {
		return
	}
	ev := access.Event{Actor: p, Action: string(action), Record: recordOf(r), Denied: true, Detail: err.Error(),
		RequestID: requestID(r.Context())}
	if rerr := access.Record(context.WithoutCancel(r.Context()), s.pool, ev); rerr != nil {
		s.logger.ErrorContext(r.Context(), "audit a refusal", "request_id", requestID(r.Context()), "error", rerr)
	}
}

// recordOf names what a request is about the way successful changes do ("account:<code>",
// "entry:<id>"), so a record's trail shows refused attempts too; else the path.
func recordOf(r *http.Request) string {
	rec := r.URL.Path
	if code := r.PathValue("code"); code != "" {
		rec = "account:" + code
	} else if id := r.PathValue("id"); id != "" {
		rec = "entry:" + id
		for prefix, kind := range recordKinds {
			if strings.HasPrefix(r.URL.Path, prefix) {
				rec = kind + id
			}
		}
	} else if rule := r.PathValue("rule"); rule != "" {
		rec = "rule:" + r.PathValue("program") + "/" + rule
	}
	if len(rec) > maxRecord { // the path is the caller's: bound what it can write
		rec = rec[:maxRecord] + "…"
	}
	return rec
}

// recordKinds name the records of /v1 paths with an {id} as changes name them.
var recordKinds = map[string]string{
	"/v1/programs/": "program:", "/v1/people/": "person:", "/v1/participants/": "person:",
	"/v1/connections/": "connection:", "/v1/conversations/": "conversation:",
	"/v1/disbursements/": "disbursement:", "/v1/commitments/": "commitment:",
	"/coach/conversations/": "conversation:", // the coach page's verify and retract forms
	"/admin/disbursements/": "disbursement:", "/admin/programs/": "program:",
}

// maxRecord bounds the record name of a refusal in the audit trail.
const maxRecord = 256

// authenticate resolves the bearer token of a /v1 request. Unknown, revoked and expired
// tokens are logged with the reason; the client learns only that it is not authenticated.
func (s *Server) authenticate(r *http.Request) (access.Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, secret, found := strings.Cut(h, " ")
	if h == "" || !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return access.Principal{}, fmt.Errorf("%w: send Authorization: Bearer <token> (create one with `tandem token create`)", access.ErrUnauthenticated)
	}
	p, err := s.access.Authenticate(r.Context(), strings.TrimSpace(secret))
	if err != nil {
		if errors.Is(err, access.ErrUnauthenticated) {
			s.logger.WarnContext(r.Context(), "unauthenticated", "request_id", requestID(r.Context()), "path", r.URL.Path, "reason", err)
			return access.Principal{}, fmt.Errorf("%w: the token is unknown, revoked or expired", access.ErrUnauthenticated)
		}
		return access.Principal{}, err
	}
	return p, nil
}

// limiter is a token bucket per access token for write requests (golang.org/x/time/rate:
// the Go team's limiter; a hand-written bucket would repeat it). Buckets live in memory, per
// process: a limit against accidents and runaway scripts, not a quota.
type limiter struct {
	every rate.Limit
	burst int
	mu    sync.Mutex
	byTok map[string]*rate.Limiter
}

func newLimiter(every rate.Limit, burst int) *limiter {
	return &limiter{every: every, burst: burst, byTok: map[string]*rate.Limiter{}}
}

// allow spends one write for the token, or says how long to wait.
func (l *limiter) allow(token string) (time.Duration, bool) {
	if l.every == rate.Inf {
		return 0, true
	}
	l.mu.Lock()
	lim, ok := l.byTok[token]
	if !ok {
		lim = rate.NewLimiter(l.every, l.burst)
		l.byTok[token] = lim
	}
	l.mu.Unlock()
	res := lim.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return d, false
	}
	return 0, true
}
