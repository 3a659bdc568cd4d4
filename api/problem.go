package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// Problem is an RFC 9457 problem document. Type is stable and machine-readable
// ("urn:tandem:problem:insufficient-funds"); Detail is for people and may change.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// ProblemTypePrefix starts every problem type.
const ProblemTypePrefix = "urn:tandem:problem:"

type problemKind struct {
	err    error
	status int
	slug   string
	title  string
}

// problemKinds maps domain errors to HTTP, in one table. Order matters: the first match
// wins, so specific errors come before the ones they wrap (ErrInvalidAmount before ErrInvalid).
var problemKinds = []problemKind{
	{ledger.ErrInvalidAmount, http.StatusUnprocessableEntity, "invalid-amount", "Invalid amount"},
	{ledger.ErrUnknownCurrency, http.StatusUnprocessableEntity, "unknown-currency", "Unknown currency"},
	{ledger.ErrUnbalanced, http.StatusUnprocessableEntity, "unbalanced-entry", "Entry does not balance"},
	{ledger.ErrInvalid, http.StatusUnprocessableEntity, "validation-failed", "Validation failed"},
	{ledger.ErrAccountNotFound, http.StatusNotFound, "account-not-found", "Account not found"},
	{ledger.ErrAccountExists, http.StatusConflict, "account-exists", "Account already exists"},
	{ledger.ErrAccountClosed, http.StatusConflict, "account-closed", "Account is closed"},
	{ledger.ErrAccountNotEmpty, http.StatusConflict, "account-not-empty", "Account is not empty"},
	{ledger.ErrCurrencyMismatch, http.StatusUnprocessableEntity, "currency-mismatch", "Currency does not match the account"},
	{ledger.ErrInsufficientFunds, http.StatusUnprocessableEntity, "insufficient-funds", "Insufficient funds"},
	{ledger.ErrIdempotencyConflict, http.StatusConflict, "idempotency-conflict", "Idempotency key reused with different content"},
	{ledger.ErrEntryNotFound, http.StatusNotFound, "entry-not-found", "Entry not found"},
	{ledger.ErrNotPending, http.StatusConflict, "not-pending", "Entry is not pending"},
	{ledger.ErrAlreadyResolved, http.StatusConflict, "already-resolved", "Pending entry already committed or voided"},
	{ledger.ErrAlreadyReversed, http.StatusConflict, "already-reversed", "Entry already reversed"},
	{ledger.ErrNotReversible, http.StatusConflict, "not-reversible", "Entry cannot be reversed"},
	{ledger.ErrImmutable, http.StatusConflict, "immutable", "Ledger records are immutable"},
	{ledger.ErrClosed, http.StatusServiceUnavailable, "unavailable", "Service shutting down"},
	{access.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", "Authentication required"},
	{access.ErrFourEyes, http.StatusForbidden, "four-eyes", "Four eyes: another admin must approve"},
	{access.ErrForbidden, http.StatusForbidden, "forbidden", "Forbidden"},
	{access.ErrCSRF, http.StatusForbidden, "csrf", "Missing or wrong CSRF token"},
	{errRateLimited, http.StatusTooManyRequests, "rate-limited", "Too many requests"},
	{access.ErrInvalid, http.StatusUnprocessableEntity, "validation-failed", "Validation failed"},
	{access.ErrNotFound, http.StatusNotFound, "not-found", "Not found"},
	{access.ErrAlreadyRevoked, http.StatusConflict, "already-revoked", "Token already revoked"},
	{network.ErrInvalid, http.StatusUnprocessableEntity, "validation-failed", "Validation failed"},
	{network.ErrNotFound, http.StatusNotFound, "not-found", "Not found"},
	{network.ErrExists, http.StatusConflict, "exists", "Already exists"},
	{network.ErrFourEyes, http.StatusForbidden, "four-eyes", "A party to a connection may not verify it"},
	{network.ErrNoConsent, http.StatusConflict, "no-consent", "No consent on file"},
	{network.ErrRetracted, http.StatusConflict, "retracted", "Retracted"},
	{network.ErrIdempotencyConflict, http.StatusConflict, "idempotency-conflict", "Idempotency key reused with different content"},
	{payouts.ErrNotFound, http.StatusNotFound, "not-found", "Not found"},
	{payouts.ErrInvalid, http.StatusUnprocessableEntity, "validation-failed", "Validation failed"},
	{payouts.ErrState, http.StatusConflict, "disbursement-state", "Not allowed in the disbursement's state"},
	{payouts.ErrSelfApproval, http.StatusForbidden, "four-eyes", "Four eyes: another admin must approve"},
	{payouts.ErrCapExceeded, http.StatusConflict, "cap-exceeded", "Over the person's monthly or yearly cap"},
	{payouts.ErrNoConsent, http.StatusConflict, "no-consent", "No consent on file"},
	{payouts.ErrNotSandbox, http.StatusConflict, "not-sandbox", "Test clocks are for sandbox programs only"},
	{payouts.ErrBadSignature, http.StatusUnauthorized, "bad-signature", "Webhook signature does not verify"},
	{payouts.ErrAPIVersion, http.StatusBadRequest, "api-version", "Webhook API version not supported"},
	{errInvalidInput, http.StatusUnprocessableEntity, "validation-failed", "Validation failed"},
	{errMalformed, http.StatusBadRequest, "malformed-request", "Malformed request"},
	{errTooLarge, http.StatusRequestEntityTooLarge, "request-too-large", "Request too large"},
	{errMediaType, http.StatusUnsupportedMediaType, "unsupported-media-type", "Unsupported media type"},
	{errNotFound, http.StatusNotFound, "not-found", "Not found"},
	{errUnavailable, http.StatusServiceUnavailable, "unavailable", "Service unavailable"},
	{context.DeadlineExceeded, http.StatusGatewayTimeout, "timeout", "Timed out"},
}

var (
	errMalformed = errors.New("malformed request")
	// errInvalidInput: a well-formed request with a value no record can hold (NUL).
	errInvalidInput = errors.New("invalid input")
	errTooLarge     = errors.New("request body too large")
	errMediaType    = errors.New("unsupported media type")
	errNotFound     = errors.New("not found")
	// errUnavailable: the database cannot be reached for now (Retry-After says when to try).
	errUnavailable = errors.New("unavailable")
	// errRateLimited: the token's write budget is spent for now (Retry-After says when).
	errRateLimited = errors.New("rate limited")
)

// writeProblem answers with the problem for err. Unknown errors are 500s whose detail is
// logged, not sent: they may carry internals.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	cause := err
	err = classify(err)
	if errors.Is(err, errUnavailable) {
		w.Header().Set("Retry-After", retryAfterUnavailable)
	}
	p := Problem{Type: ProblemTypePrefix + "internal", Title: "Internal error", Status: http.StatusInternalServerError,
		Detail: "the error was logged with this request id", Instance: r.URL.Path, RequestID: requestID(r.Context())}
	for _, k := range problemKinds {
		if errors.Is(err, k.err) {
			p.Type, p.Title, p.Status, p.Detail = ProblemTypePrefix+k.slug, k.title, k.status, err.Error()
			break
		}
	}
	level := slog.LevelInfo
	if p.Status >= 500 {
		level = slog.LevelError
	}
	s.logger.Log(r.Context(), level, "request failed", "request_id", p.RequestID, "method", r.Method,
		"path", r.URL.Path, "status", p.Status, "problem", p.Type, "error", cause)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// retryAfterUnavailable is the Retry-After, in seconds, of an unavailable database.
const retryAfterUnavailable = "5"

// classify gives errors that come from below the domain packages their problem kind:
// a database that cannot be reached (refused or lost connections, a pool that cannot
// connect, a server shutting down) is errUnavailable; a value PostgreSQL cannot store
// (bad encoding, too long) is errInvalidInput. The detail says no more: the original error,
// which may carry internals, is logged.
func classify(err error) error {
	// Any failure to connect, whatever the server said (shutting down, refusing connections,
	// unknown database); a connection cut under a query (unexpected EOF); a query that never
	// reached the server (SafeToRetry: a closed connection, a deadline on acquiring one): the
	// database is not available.
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: the database is not available; retry shortly", errUnavailable)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), strings.HasPrefix(pgErr.Code, "57P"), pgErr.Code == "53300":
			// connection exception; admin shutdown, cannot connect now; too many connections
			return fmt.Errorf("%w: the database is not available; retry shortly", errUnavailable)
		case pgErr.Code == "22021", pgErr.Code == "22P05", pgErr.Code == "22001", pgErr.Code == "54000":
			return fmt.Errorf("%w: a value could not be stored: %s", errInvalidInput, pgErr.Message)
		}
	}
	return err
}
