// Package api serves Tandem's HTTP interface: JSON under /v1 with RFC 9457 problem documents
// for errors, /healthz, and the pages (sign-in so far).
//
// Every /v1 request carries a bearer token; each route names the access.Action it takes and
// access.Authorize decides, in one place. Writes record themselves in the audit trail in the
// same transaction as the change.
//
// Handlers decode, call the domain packages and encode; the rules live in the domain
// packages, so the CLI and HTTP refuse the same bad input with the same errors.
package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/time/rate"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// MaxBodyBytes bounds every request body. The largest legitimate body, a batch of entries,
// fits well within it.
const MaxBodyBytes = 4 << 20

// HealthFunc reports the health of a dependency; a non-nil error marks it down.
type HealthFunc func(ctx context.Context) (detail any, err error)

// Config wires a Server.
type Config struct {
	Pool   *pgxpool.Pool // the database: writes and their audit lines share a transaction
	Ledger *ledger.Ledger
	Access *access.Store
	// Network and Payouts serve the network and disbursement routes.
	Network *network.Store
	Payouts *payouts.Store
	// Jobs serves /v1/jobs and /admin/jobs: failed jobs, retried or cancelled by admins.
	Jobs   *jobs.Board
	Logger *slog.Logger
	// Health checks, by name (e.g. "database", "river"), shown by /healthz.
	Health map[string]HealthFunc
	// WriteRate and WriteBurst bound each token's write requests, refused or not: defaults
	// 20/s, burst 40. Reads, refused or not, get ten times as much. rate.Inf turns the limits
	// off. Every refusal within the budget is recorded (repeats fold, access.Record).
	WriteRate  rate.Limit
	WriteBurst int
	// BehindTLSProxy says TLS is terminated by a proxy in front: cookies are marked Secure
	// although requests arrive here in plain HTTP.
	BehindTLSProxy bool
}

// Server is Tandem's HTTP handler.
type Server struct {
	pool    *pgxpool.Pool
	ledger  *ledger.Ledger
	access  *access.Store
	network *network.Store
	payouts *payouts.Store
	jobs    *jobs.Board
	logger  *slog.Logger
	health  map[string]HealthFunc
	mux     *http.ServeMux
	table   []route
	writes  *limiter // write requests, per token
	reads   *limiter // read requests, per token

	behindTLSProxy bool
}

// New builds the handler with every route.
func New(cfg Config) *Server {
	s := &Server{pool: cfg.Pool, ledger: cfg.Ledger, access: cfg.Access, network: cfg.Network, payouts: cfg.Payouts,
		jobs: cfg.Jobs, logger: cfg.Logger, health: cfg.Health,
		mux: http.NewServeMux(), behindTLSProxy: cfg.BehindTLSProxy}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	every, burst := cfg.WriteRate, cfg.WriteBurst
	if every == 0 {
		every = 20
	}
	if burst <= 0 {
		burst = 40
	}
	s.writes = newLimiter(every, burst)
	s.reads = newLimiter(every*10, burst*10)
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.healthz)

	s.mux.HandleFunc("GET /{$}", s.home)
	s.mux.HandleFunc("GET /sign-in", s.signInForm)
	s.mux.HandleFunc("POST /sign-in", s.signIn)
	s.mux.HandleFunc("POST /sign-out", s.signOut)

	s.handle("POST /v1/ledger/accounts", access.LedgerAccountCreate, noResource, s.createAccount)
	s.handle("GET /v1/ledger/accounts", access.LedgerAccountList, noResource, s.listAccounts)
	s.handle("GET /v1/ledger/accounts/{code...}", access.LedgerAccountRead, s.accountInPath, s.getAccount)
	s.handle("POST /v1/ledger/accounts/close", access.LedgerAccountClose, noResource, s.closeAccount)
	s.handle("GET /v1/ledger/balances/{code...}", access.LedgerBalanceRead, s.accountInPath, s.getBalance)
	s.handle("GET /v1/ledger/statements/{code...}", access.LedgerStatementRead, s.accountInPath, s.getStatement)

	s.handle("POST /v1/ledger/entries", access.LedgerEntryPost, noResource, s.postEntry(ledger.KindStandard))
	s.handle("POST /v1/ledger/pending-entries", access.LedgerEntryHold, noResource, s.postEntry(ledger.KindPending))
	s.handle("POST /v1/ledger/batches", access.LedgerBatchPost, noResource, s.postBatch)
	s.handle("GET /v1/ledger/entries", access.LedgerEntryList, noResource, s.listEntries)
	s.handle("GET /v1/ledger/entries/{id}", access.LedgerEntryRead, noResource, s.getEntry)
	s.handle("POST /v1/ledger/entries/{id}/commit", access.LedgerEntryCommit, noResource, s.resolve(ledger.KindCommit))
	s.handle("POST /v1/ledger/entries/{id}/void", access.LedgerEntryVoid, noResource, s.resolve(ledger.KindVoid))
	s.handle("POST /v1/ledger/entries/{id}/reverse", access.LedgerEntryReverse, noResource, s.resolve(ledger.KindReversal))
	s.handle("GET /v1/ledger/trial-balance", access.LedgerTrialBalance, noResource, s.trialBalance)
	s.handle("GET /v1/ledger/check", access.LedgerCheck, noResource, s.check)

	s.handle("GET /v1/audit", access.AuditRead, noResource, s.audit)
	s.networkRoutes()
	s.payoutRoutes()
	s.clockRoutes()  // clock.go: sandbox programs' test clocks
	s.exportRoutes() // exports.go: /v1/exports, the seal, the auditor's page
	s.adminPages()   // pages_admin.go
	s.peoplePages()  // pages_people.go: participants' and coaches' pages

	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeProblem(w, r, fmt.Errorf("%w: no route for %s %s", errNotFound, r.Method, r.URL.Path))
	})
}

// ServeHTTP adds a request id, bounds the body, recovers panics and logs each request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if !validRequestID(id) { // it goes into logs and the audit trail: short printable ASCII only
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
	w.Header().Set("X-Request-Id", id)
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.serve(rec, r, id, start)
}

func (s *Server) serve(rec *statusRecorder, r *http.Request, id string, start time.Time) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger.ErrorContext(r.Context(), "panic", "request_id", id, "panic", v)
			s.writeProblem(rec, r, fmt.Errorf("panic: %v", v))
		}
		s.logger.InfoContext(r.Context(), "http", "request_id", id, "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration_ms", time.Since(start).Milliseconds())
	}()
	// Every /v1 request is authenticated before routing, except provider webhooks: they carry
	// no token, and their handler verifies the provider's signature instead.
	if strings.HasPrefix(r.URL.Path, "/v1/") && !strings.HasPrefix(r.URL.Path, "/v1/webhooks/") {
		p, err := s.authenticate(r)
		if err != nil {
			rec.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
			s.writeProblem(rec, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
	}
	s.mux.ServeHTTP(rec, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }

type requestIDKey struct{}

// validRequestID reports whether a client's X-Request-Id can be kept: 1 to 64 printable
// ASCII characters, no spaces. Anything else is replaced by one the server makes.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// decode reads one JSON object from the body into v, refusing unknown fields, trailing data,
// a wrong content type and oversized bodies.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return fmt.Errorf("%w: send application/json, not %q", errMediaType, ct)
		}
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%w: empty body, expected a JSON object", errMalformed)
	}
	// NUL first, so that every route names the field the same way, whatever else is wrong.
	if err := nulString(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// Validation errors raised while decoding (a bad amount) keep their meaning.
		if errors.Is(err, ledger.ErrInvalid) || errors.Is(err, network.ErrInvalid) {
			return err
		}
		return fmt.Errorf("%w: %v", errMalformed, err)
	}
	if len(bytes.TrimSpace(body[dec.InputOffset():])) > 0 {
		return fmt.Errorf("%w: trailing data after the JSON object", errMalformed)
	}
	return nil
}

// decodeOptional is decode for bodies whose every field is optional: an empty body is {}.
func decodeOptional(r *http.Request, v any) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return decode(r, v)
}

// readBody reads the whole body, answering errTooLarge past MaxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: the limit is %d bytes", errTooLarge, mbe.Limit)
		}
		return nil, fmt.Errorf("%w: read body: %v", errMalformed, err)
	}
	return body, nil
}

// nulString refuses a JSON document with a NUL character (\u0000) in a key or a string,
// naming where (e.g. "postings[1].account"): PostgreSQL text cannot hold NUL, and every
// route answers the same way for every field.
func nulString(body []byte) error {
	if !bytes.Contains(body, []byte(`\u0000`)) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	type level struct {
		object bool
		key    string // the object's current key
		index  int    // the array's next index
		atKey  bool   // the object expects a key next
	}
	var stack []level
	where := func() string {
		var b strings.Builder
		for _, l := range stack {
			if l.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(l.key)
			} else {
				fmt.Fprintf(&b, "[%d]", l.index-1)
			}
		}
		if b.Len() == 0 {
			return "body"
		}
		return b.String()
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errMalformed, err)
		}
		var top *level
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if top != nil && top.object && top.atKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if top := len(stack) - 1; top >= 0 && stack[top].object {
					stack[top].atKey = true
				}
				continue
			}
			top.key, top.atKey = tok.(string), false
			if strings.ContainsRune(top.key, 0) {
				return fmt.Errorf("%w: %s: a key holds a NUL character", errInvalidInput, where())
			}
			continue
		}
		if top != nil && !top.object {
			if d, ok := tok.(json.Delim); !ok || d != ']' {
				top.index++
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, level{object: true, atKey: true})
				continue
			case '[':
				stack = append(stack, level{})
				continue
			default: // ']'
				stack = stack[:len(stack)-1]
			}
		case string:
			if strings.ContainsRune(t, 0) {
				return fmt.Errorf("%w: %s: must not contain NUL characters", errInvalidInput, where())
			}
		}
		if top := len(stack) - 1; top >= 0 && stack[top].object {
			stack[top].atKey = true
		}
	}
}

// checkParams refuses path, query and form parameters that no record can hold: invalid
// UTF-8 or NUL (PostgreSQL text takes neither), naming the parameter.
func checkParams(r *http.Request, pattern string) error {
	bad := func(v string) bool { return !utf8.ValidString(v) || strings.ContainsRune(v, 0) }
	for rest := pattern; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			break
		}
		name := strings.TrimSuffix(rest[i+1:i+j], "...")
		rest = rest[i+j+1:]
		if name != "$" && bad(r.PathValue(name)) {
			return fmt.Errorf("%w: %s (in the path): must be UTF-8 without NUL characters", errInvalidInput, name)
		}
	}
	if err := checkValues(r.URL.Query(), "query", bad); err != nil {
		return err
	}
	// A page's form, parsed already for its CSRF token.
	return checkValues(r.PostForm, "form", bad)
}

func checkValues(values map[string][]string, where string, bad func(string) bool) error {
	for k, vs := range values {
		if bad(k) {
			return fmt.Errorf("%w: a %s parameter's name must be UTF-8 without NUL characters", errInvalidInput, where)
		}
		for _, v := range vs {
			if bad(v) {
				return fmt.Errorf("%w: %s (in the %s): must be UTF-8 without NUL characters", errInvalidInput, k, where)
			}
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeList answers one keyset page: the items under key (an empty list, never null) and,
// when there are any, the cursor of the next page under cursorKey.
func writeList[T any](w http.ResponseWriter, key string, items []T, cursorKey string, cursor func(T) int64) {
	out := map[string]any{key: items}
	if len(items) == 0 {
		out[key] = []T{}
	} else {
		out[cursorKey] = cursor(items[len(items)-1])
	}
	writeJSON(w, http.StatusOK, out)
}

// idempotencyKey merges the Idempotency-Key header with a key in the body: either may be
// given; if both are, they must agree.
func idempotencyKey(r *http.Request, body string) (string, error) {
	h := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if !utf8.ValidString(h) {
		return "", fmt.Errorf("%w: Idempotency-Key: the header must be UTF-8", errInvalidInput)
	}
	switch {
	case h == "":
		return body, nil
	case body == "" || body == h:
		return h, nil
	}
	return "", fmt.Errorf("%w: idempotency_key: the Idempotency-Key header and the body disagree", ledger.ErrInvalid)
}

func queryInt(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s: %q is not a non-negative integer", ledger.ErrInvalid, name, v)
	}
	return n, nil
}

// pageParams reads a keyset page's cursor (query parameter after) and limit.
func pageParams(r *http.Request, after string) (int64, int64, error) {
	a, err := queryInt(r, after)
	if err != nil {
		return 0, 0, err
	}
	limit, err := queryInt(r, "limit")
	return a, limit, err
}

func pathUUID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("%w: %q is not an entry id", ledger.ErrEntryNotFound, r.PathValue("id"))
	}
	return id, nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	out := map[string]any{}
	status, code := "ok", http.StatusOK
	for name, f := range s.health {
		detail, err := f(ctx)
		c := map[string]any{"status": "ok"}
		if detail != nil {
			c["detail"] = detail
		}
		if err != nil {
			c["status"], c["error"] = "down", err.Error()
			status, code = "down", http.StatusServiceUnavailable
		}
		out[name] = c
	}
	writeJSON(w, code, map[string]any{"status": status, "checks": out})
}
