package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/api"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/jobs"
	"github.com/tandemledger/tandem/ledger"
)

// logBuffer collects the server's log; the server writes from its own goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// accessFixture is setup's server built here, so that the test also holds the *api.Server
// (for Routes), the server log and the admin token's id.
type accessFixture struct {
	*testBundle
	server  *api.Server
	log     *logBuffer
	adminID string
}

// setupAccess builds the server like setup does; a zero cfg turns the write limit off.
func setupAccess(t *testing.T, cfg api.Config) *accessFixture {
	t.Helper()
	pool := dbtest.New(t)
	l := ledger.New(pool, nil)
	t.Cleanup(l.Close)
	store := access.New(pool)
	if cfg.WriteRate == 0 {
		cfg.WriteRate = rate.Inf
	}
	logs := &logBuffer{}
	cfg.Pool, cfg.Ledger, cfg.Access = pool, l, store
	if cfg.Jobs == nil {
		board, err := jobs.NewBoard(pool)
		require.NoError(t, err)
		cfg.Jobs = board
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Health = map[string]api.HealthFunc{
		"database": func(ctx context.Context) (any, error) { return nil, pool.Ping(ctx) },
	}
	server := api.New(cfg)
	srv := httptest.NewServer(server)
	t.Cleanup(srv.Close)
	f := &accessFixture{testBundle: &testBundle{srv: srv, pool: pool, access: store}, server: server, log: logs}
	tok, secret := f.mint(t, access.NewToken{Name: "root admin", Role: access.Admin})
	f.token, f.adminID = secret, tok.ID
	return f
}

// mint creates a token and returns it with its secret.
func (f *accessFixture) mint(t *testing.T, nt access.NewToken) (access.Token, string) {
	t.Helper()
	tok, secret, err := f.access.CreateToken(context.Background(), access.Principal{Name: "test"}, nt)
	require.NoError(t, err)
	return tok, secret
}

// call sends a request with exactly the given Authorization header ("" sends none).
func (f *accessFixture) call(t *testing.T, method, path, body, authorization string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return send(t, req)
}

func bearer(secret string) string { return "Bearer " + secret }

// wallets opens the accounts of a small program and funds them: ana 40.00, ben 70.00,
// coach cy 25.00. It returns the id of the donation entry.
func (f *accessFixture) wallets(t *testing.T) string {
	t.Helper()
	for _, a := range []string{
		`{"code":"org/cash/stripe","type":"asset","currency":"USD"}`,
		`{"code":"program/p/fund","type":"equity","currency":"USD","no_overdraft":true}`,
		`{"code":"participant/ana/wallet","type":"liability","currency":"USD","no_overdraft":true}`,
		`{"code":"participant/ben/wallet","type":"liability","currency":"USD","no_overdraft":true}`,
		`{"code":"coach/cy/wallet","type":"liability","currency":"USD","no_overdraft":true}`,
	} {
		r := f.do(t, "POST", "/v1/ledger/accounts", a)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
	}
	r := f.do(t, "POST", "/v1/ledger/entries", entryJSON("donation", "org/cash/stripe", "program/p/fund", "500.00"))
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	donation := r.body["id"].(string)
	for key, to := range map[string]string{"40.00": "participant/ana/wallet", "70.00": "participant/ben/wallet", "25.00": "coach/cy/wallet"} {
		r := f.do(t, "POST", "/v1/ledger/entries", entryJSON("award-"+to, "program/p/fund", to, key))
		require.Equal(t, http.StatusCreated, r.status, r.raw)
	}
	return donation
}

func (f *accessFixture) auditCount(t *testing.T, where string) int {
	t.Helper()
	var n int
	// A refusal's line counts its repeats: the count is of requests, not lines.
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT coalesce(sum(repeats), 0) FROM audit_log WHERE `+where).Scan(&n))
	return n
}

// routeActions is the expected action of every authenticated route. A route added to the
// server without a row here fails TestEveryRouteEveryRole.
var routeActions = map[string]access.Action{
	"POST /v1/ledger/accounts":             access.LedgerAccountCreate,
	"GET /v1/ledger/accounts":              access.LedgerAccountList,
	"GET /v1/ledger/accounts/{code...}":    access.LedgerAccountRead,
	"POST /v1/ledger/accounts/close":       access.LedgerAccountClose,
	"GET /v1/ledger/balances/{code...}":    access.LedgerBalanceRead,
	"GET /v1/ledger/statements/{code...}":  access.LedgerStatementRead,
	"POST /v1/ledger/entries":              access.LedgerEntryPost,
	"POST /v1/ledger/pending-entries":      access.LedgerEntryHold,
	"POST /v1/ledger/batches":              access.LedgerBatchPost,
	"GET /v1/ledger/entries":               access.LedgerEntryList,
	"GET /v1/ledger/entries/{id}":          access.LedgerEntryRead,
	"POST /v1/ledger/entries/{id}/commit":  access.LedgerEntryCommit,
	"POST /v1/ledger/entries/{id}/void":    access.LedgerEntryVoid,
	"POST /v1/ledger/entries/{id}/reverse": access.LedgerEntryReverse,
	"GET /v1/ledger/trial-balance":         access.LedgerTrialBalance,
	"GET /v1/ledger/check":                 access.LedgerCheck,
	"GET /v1/audit":                        access.AuditRead,
	// Exports and the seal (exports.go): auditors and admins; walked here.
	"GET /v1/exports":     access.LedgerExport,
	"GET /v1/seal":        access.SealRead,
	"GET /v1/seal/verify": access.SealVerify,

	// The network's routes: their callers are walked in network_test.go, with fixtures of
	// programs, participants and coaches (TestEveryNetworkRouteEveryRole).
	"POST /v1/programs":                                access.ProgramCreate,
	"GET /v1/programs":                                 access.ProgramList,
	"GET /v1/programs/{id}":                            access.ProgramRead,
	"POST /v1/programs/{id}/fund":                      access.ProgramFund,
	"GET /v1/programs/{id}/metrics":                    access.ProgramMetrics,
	"POST /v1/programs/{id}/enrolments":                access.EnrolmentWrite,
	"POST /v1/programs/{id}/enrolments/{person}/coach": access.EnrolmentWrite,
	"POST /v1/people":                                  access.PersonCreate,
	"GET /v1/people":                                   access.PersonList,
	"GET /v1/people/{id}":                              access.PersonRead,
	"POST /v1/people/{id}/consent":                     access.PersonUpdate,
	"POST /v1/people/{id}/band":                        access.PersonUpdate,
	"POST /v1/people/{id}/roles":                       access.PersonUpdate,
	"POST /v1/people/{id}/tax-form":                    access.PersonUpdate,
	"POST /v1/connections":                             access.ConnectionCreate,
	"GET /v1/connections":                              access.ConnectionList,
	"POST /v1/connections/{id}/end":                    access.ConnectionEnd,
	"POST /v1/connections/{id}/ratings":                access.ConnectionRate,
	"POST /v1/conversations":                           access.ConversationCreate,
	"GET /v1/conversations":                            access.ConversationList,
	"POST /v1/conversations/batch":                     access.ConversationBatch,
	"POST /v1/conversations/{id}/verify":               access.ConversationReview,
	"POST /v1/conversations/{id}/unverify":             access.ConversationReview,
	"POST /v1/conversations/{id}/retract":              access.ConversationReview,
	"POST /v1/rules":                                   access.RuleWrite,
	"GET /v1/rules":                                    access.RuleRead,
	"GET /v1/rules/{program}/{rule}":                   access.RuleRead,
	"POST /v1/rules/{program}/{rule}/retire":           access.RuleWrite,
	"GET /v1/participants/{id}/progress":               access.ProgressRead,
	"GET /v1/awards":                                   access.AwardList,
	"GET /v1/disbursements":                            access.DisbursementList,

	// Payouts' routes: walked with the network's in network_test.go (networkExpected).
	"POST /v1/disbursements":                  access.DisbursementCreate,
	"GET /v1/disbursements/{id}":              access.DisbursementRead,
	"POST /v1/disbursements/{id}/approve":     access.DisbursementApprove,
	"POST /v1/disbursements/{id}/reject":      access.DisbursementReject,
	"POST /v1/disbursements/{id}/retry":       access.DisbursementRetry,
	"POST /v1/disbursements/{id}/cancel":      access.DisbursementCancel,
	"GET /v1/programs/{id}/payout-policy":     access.PayoutPolicyRead,
	"POST /v1/programs/{id}/payout-policy":    access.PayoutPolicyWrite,
	"POST /v1/programs/{id}/stipend-policy":   access.PayoutPolicyWrite,
	"GET /v1/programs/{id}/clock":             access.ClockRead,
	"POST /v1/programs/{id}/clock/advance":    access.ClockAdvance,
	"POST /v1/people/{id}/payout-destination": access.DestinationWrite,
	"POST /v1/commitments":                    access.CommitmentWrite,
	"GET /v1/commitments":                     access.CommitmentList,
	"POST /v1/commitments/{id}/cancel":        access.CommitmentWrite,
	"GET /v1/stipends":                        access.StipendList,
	"POST /v1/stipends/run":                   access.StipendRun,
	"GET /v1/reports/1099-nec":                access.TaxReportRead,
	"GET /v1/reconciliations":                 access.ReconciliationRead,
	"POST /v1/reconciliations":                access.ReconciliationRun,
	"POST /v1/payouts/run":                    access.PayoutsRun,
	// Money left without an owner (unowned.go): walked in network_test.go too.
	"GET /v1/retracted-awards":                   access.RetractedAwardList,
	"POST /v1/awards/{id}/decision":              access.RetractedAwardDecide,
	"GET /v1/disbursements/{id}/returned":        access.DisbursementRead,
	"POST /v1/disbursements/{id}/repay-returned": access.DisbursementRepayReturned,
	"POST /v1/disbursements/{id}/return-to-fund": access.DisbursementReturnToFund,

	// Jobs (jobs.go): admins retry and cancel, auditors read; walked here.
	"GET /v1/jobs":              access.JobList,
	"POST /v1/jobs/{id}/retry":  access.JobRetry,
	"POST /v1/jobs/{id}/cancel": access.JobCancel,
}

// walkedHere says whether TestEveryRouteEveryRole walks a route's callers itself: the
// ledger's and the audit trail's, whose records are wallets and entries, and the exports'
// and the seal's, which are the whole ledger's.
func walkedHere(path string) bool {
	return strings.HasPrefix(path, "/v1/ledger/") || path == "/v1/audit" || path == "/v1/exports" || strings.HasPrefix(path, "/v1/seal") ||
		strings.HasPrefix(path, "/v1/jobs")
}

// allowedBesidesAdmins says who, other than admins (who may take every action here), may
// take an action: auditors, and participants or coaches on a record they own. An action
// without a row fails TestEveryRouteEveryRole.
type allowedBesidesAdmins struct{ auditor, owner bool }

var policyByAction = map[access.Action]allowedBesidesAdmins{
	access.LedgerAccountCreate: {auditor: false, owner: false},
	access.LedgerAccountList:   {auditor: true, owner: false},
	access.LedgerAccountRead:   {auditor: true, owner: true},
	access.LedgerAccountClose:  {auditor: false, owner: false},
	access.LedgerBalanceRead:   {auditor: true, owner: true},
	access.LedgerStatementRead: {auditor: true, owner: true},
	access.LedgerEntryPost:     {auditor: false, owner: false},
	access.LedgerEntryHold:     {auditor: false, owner: false},
	access.LedgerBatchPost:     {auditor: false, owner: false},
	access.LedgerEntryList:     {auditor: true, owner: false},
	access.LedgerEntryRead:     {auditor: true, owner: false},
	access.LedgerEntryCommit:   {auditor: false, owner: false},
	access.LedgerEntryVoid:     {auditor: false, owner: false},
	access.LedgerEntryReverse:  {auditor: false, owner: false},
	access.LedgerTrialBalance:  {auditor: true, owner: false},
	access.LedgerCheck:         {auditor: true, owner: false},
	access.AuditRead:           {auditor: true, owner: false},
	access.LedgerExport:        {auditor: true, owner: false},
	access.SealRead:            {auditor: true, owner: false},
	access.SealVerify:          {auditor: true, owner: false},
	// Network actions: auditors read; owners as access.Authorize says (walked in network_test.go).
	access.ProgramCreate: {}, access.ProgramList: {auditor: true}, access.ProgramRead: {auditor: true},
	access.ProgramFund: {}, access.ProgramMetrics: {auditor: true}, access.EnrolmentWrite: {},
	access.PersonCreate: {}, access.PersonList: {auditor: true}, access.PersonRead: {auditor: true, owner: true},
	access.PersonUpdate: {}, access.ConnectionCreate: {}, access.ConnectionList: {auditor: true, owner: true},
	access.ConnectionEnd: {}, access.ConnectionRate: {owner: true}, access.ConversationCreate: {owner: true},
	access.ConversationList: {auditor: true, owner: true}, access.ConversationReview: {}, access.ConversationBatch: {}, access.RuleWrite: {},
	access.RuleRead: {auditor: true, owner: true}, access.ProgressRead: {auditor: true, owner: true},
	access.AwardList: {auditor: true, owner: true}, access.DisbursementList: {auditor: true, owner: true},
	// Payout actions: auditors take every read; a person reads their own disbursements,
	// commitments and (a coach) stipends, and sets their own payout destination. Approving
	// is the admins' but for four eyes: a token naming its person, who did not request it.
	// Requesting a manual disbursement is the admins' too; the handler, not the guard, then
	// wants a token naming its person (403 four-eyes: TestEveryNetworkRouteEveryRole).
	access.DisbursementCreate: {}, access.DisbursementRead: {auditor: true, owner: true}, access.DisbursementApprove: {},
	access.DisbursementReject: {}, access.DisbursementRetry: {}, access.DisbursementCancel: {},
	access.PayoutPolicyRead: {auditor: true}, access.PayoutPolicyWrite: {}, access.DestinationWrite: {owner: true},
	access.ClockRead: {auditor: true}, access.ClockAdvance: {},
	access.CommitmentWrite: {}, access.CommitmentList: {auditor: true, owner: true}, access.StipendList: {auditor: true, owner: true},
	access.StipendRun: {}, access.TaxReportRead: {auditor: true}, access.ReconciliationRead: {auditor: true},
	access.ReconciliationRun: {}, access.PayoutsRun: {},
	// Money left without an owner: admins decide, auditors read the list; a person reads
	// their own disbursement's returned money (DisbursementRead).
	access.RetractedAwardList: {auditor: true}, access.RetractedAwardDecide: {},
	access.DisbursementRepayReturned: {}, access.DisbursementReturnToFund: {},
	access.JobList: {auditor: true}, access.JobRetry: {}, access.JobCancel: {},
}

type callerKind int

const (
	asAdmin    callerKind = iota
	asAuditor             // reads everything
	asOwner               // a participant or coach on their own wallet
	asStranger            // a participant or coach on someone else's wallet
	asNobody              // no usable credentials
)

// TestEveryRouteEveryRole walks every authenticated route with every kind of caller.
// Allowed callers send a GET that answers 200, or a POST with a malformed body that the
// handler refuses with 400 (proof that the request got past the guard, without changing
// anything); refused callers get 403, unauthenticated ones 401.
func TestEveryRouteEveryRole(t *testing.T) {
	t.Parallel()
	f := setupAccess(t, api.Config{})
	entryID := f.wallets(t)

	_, auditor := f.mint(t, access.NewToken{Name: "auditor", Role: access.Auditor})
	_, ana := f.mint(t, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	_, cy := f.mint(t, access.NewToken{Name: "cy", Role: access.Coach, PersonID: "cy"})
	revokedTok, revoked := f.mint(t, access.NewToken{Name: "revoked admin", Role: access.Admin})
	_, err := f.access.RevokeToken(context.Background(), access.Principal{Name: "test"}, revokedTok.ID)
	require.NoError(t, err)
	_, expired := f.mint(t, access.NewToken{Name: "expired admin", Role: access.Admin, TTL: time.Millisecond})
	time.Sleep(20 * time.Millisecond)
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	unknown := "tdm_" + base64.RawURLEncoding.EncodeToString(raw)

	const anaWallet = "participant/ana/wallet"
	callers := []struct {
		name, authorization, code string
		kind                      callerKind
	}{
		{"admin", bearer(f.token), anaWallet, asAdmin},
		{"admin, lower-case scheme", "bearer " + f.token, anaWallet, asAdmin},
		{"auditor", bearer(auditor), anaWallet, asAuditor},
		{"coach, own wallet", bearer(cy), "coach/cy/wallet", asOwner},
		{"participant, own wallet", bearer(ana), anaWallet, asOwner},
		{"participant, another's wallet", bearer(ana), "participant/ben/wallet", asStranger},
		{"coach, a participant's wallet", bearer(cy), anaWallet, asStranger},
		{"participant, a program account", bearer(ana), "program/p/fund", asStranger},
		{"no Authorization", "", anaWallet, asNobody},
		{"bare Bearer", "Bearer", anaWallet, asNobody},
		{"Basic", "Basic xyz", anaWallet, asNobody},
		{"token without scheme", f.token, anaWallet, asNobody},
		{"not a Tandem token", "Bearer xyz", anaWallet, asNobody},
		{"unknown token", bearer(unknown), anaWallet, asNobody},
		{"revoked token", bearer(revoked), anaWallet, asNobody},
		{"expired token", bearer(expired), anaWallet, asNobody},
	}

	routes := f.server.Routes()
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		require.False(t, seen[key], "route %s listed twice", key)
		seen[key] = true
		want, ok := routeActions[key]
		require.True(t, ok, "route %s (%s) has no row in routeActions: add it, with its expected action", key, rt.Action)
		require.Equal(t, want, rt.Action, "route %s takes the wrong action", key)
		_, ok = policyByAction[rt.Action]
		require.True(t, ok, "action %s of route %s has no row in policyByAction", rt.Action, key)
		require.Equal(t, rt.Method == http.MethodGet, rt.Action.ReadOnly(),
			"route %s: only GETs may be read-only actions (auditors may take every read-only action)", key)
	}
	for key := range routeActions {
		require.True(t, seen[key], "routeActions lists %s, which the server does not serve", key)
	}

	deniedBefore := f.auditCount(t, `outcome = 'denied'`)
	allBefore := f.auditCount(t, `outcome = 'denied' OR action <> 'ledger.export'`)
	forbidden, unauthenticated := 0, 0
	details401 := map[string]bool{}
	for _, rt := range routes {
		policy := policyByAction[rt.Action]
		for _, c := range callers {
			if !walkedHere(rt.Path) && c.kind != asNobody {
				continue // network routes: authentication only here
			}
			path := strings.ReplaceAll(strings.ReplaceAll(rt.Path, "{code...}", c.code), "{id}", entryID)
			body := ""
			if rt.Method == http.MethodPost {
				body = "{" // malformed: an allowed caller gets 400 and changes nothing
			}
			var want int
			switch c.kind {
			case asNobody:
				want = http.StatusUnauthorized
			case asAdmin:
				want = http.StatusOK
			case asAuditor:
				want = pick(policy.auditor, http.StatusOK, http.StatusForbidden)
			case asOwner:
				want = pick(policy.owner, http.StatusOK, http.StatusForbidden)
			case asStranger:
				want = http.StatusForbidden
			}
			t.Run(rt.Method+" "+rt.Path+"/"+c.name, func(t *testing.T) {
				r := f.call(t, rt.Method, path, body, c.authorization)
				switch want {
				case http.StatusUnauthorized:
					unauthenticated++
					requireProblem(t, r, http.StatusUnauthorized, "unauthenticated")
					require.Equal(t, `Bearer realm="tandem"`, r.header.Get("WWW-Authenticate"))
					details401[r.body["detail"].(string)] = true
				case http.StatusForbidden:
					forbidden++
					requireProblem(t, r, http.StatusForbidden, "forbidden")
					require.Empty(t, r.header.Get("WWW-Authenticate"))
				default: // allowed
					require.NotContains(t, []int{401, 403}, r.status, r.raw)
					if rt.Method == http.MethodGet {
						require.Equal(t, http.StatusOK, r.status, r.raw)
					} else {
						requireProblem(t, r, http.StatusBadRequest, "malformed-request")
					}
				}
			})
		}
	}
	nobodies := 0
	for _, c := range callers {
		if c.kind == asNobody {
			nobodies++
		}
	}
	require.Equal(t, len(routes)*nobodies, unauthenticated, "every unauthenticated caller was refused on every route")

	// Every refusal is in the audit trail, and nothing else was written (401s go to the log)
	// but the line each export leaves (TestExportIsAudited checks those).
	require.Equal(t, forbidden, f.auditCount(t, `outcome = 'denied'`)-deniedBefore)
	require.Equal(t, forbidden, f.auditCount(t, `outcome = 'denied' OR action <> 'ledger.export'`)-allBefore)

	// The client cannot tell an unknown token from a revoked or expired one ...
	require.Len(t, details401, 2, "one detail for a missing or malformed header, one for a bad token: %v", details401)
	// ... but the server log says which it was.
	logs := f.log.String()
	require.Contains(t, logs, "unknown token")
	require.Contains(t, logs, "("+revokedTok.Name+") was revoked")
	require.Contains(t, logs, "(expired admin) expired")
	require.Contains(t, logs, `"msg":"forbidden"`)
}

func pick(cond bool, yes, no int) int {
	if cond {
		return yes
	}
	return no
}

// TestUnauthenticatedOutsideRoutes: /v1 answers 401 before routing (an unknown path does
// not reveal which routes exist), /healthz and the pages need no token.
func TestUnauthenticatedOutsideRoutes(t *testing.T) {
	t.Parallel()
	f := setupAccess(t, api.Config{})
	requireProblem(t, f.call(t, "GET", "/v1/nothing", "", ""), 401, "unauthenticated")
	requireProblem(t, f.call(t, "DELETE", "/v1/ledger/accounts", "", ""), 401, "unauthenticated")
	requireProblem(t, f.call(t, "GET", "/v1/nothing", "", bearer(f.token)), 404, "not-found")
	require.Equal(t, 200, f.call(t, "GET", "/healthz", "", "").status)
	require.Equal(t, 200, f.call(t, "GET", "/sign-in", "", "").status)

	// A path that is not clean is redirected, never served without a token.
	addr := strings.TrimPrefix(f.srv.URL, "http://")
	for _, p := range []string{"//v1/ledger/trial-balance", "/x/../v1/ledger/trial-balance", "/v1/../v1/ledger/trial-balance",
		"/v1/ledger/./trial-balance"} {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", p, addr)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		require.Contains(t, []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusUnauthorized}, resp.StatusCode, "%s: %s", p, b)
		require.NotContains(t, string(b), "totals", p)
	}
}

// TestParticipantCannotReadAnothersBalance changes the id in the URL.
func TestParticipantCannotReadAnothersBalance(t *testing.T) {
	t.Parallel()
	f := setupAccess(t, api.Config{})
	entryID := f.wallets(t)
	_, ana := f.mint(t, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	_, cy := f.mint(t, access.NewToken{Name: "cy", Role: access.Coach, PersonID: "cy"})
	asAna := func(path string) response { return f.call(t, "GET", path, "", bearer(ana)) }

	r := asAna("/v1/ledger/balances/participant/ana/wallet")
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "participant/ana/wallet", r.body["account"])
	require.Equal(t, "40.00", r.body["posted"])
	r = asAna("/v1/ledger/statements/participant/ana/wallet")
	require.Equal(t, 200, r.status, r.raw)
	r = asAna("/v1/ledger/accounts/participant/ana/wallet")
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "participant/ana/wallet", r.body["code"])

	for _, p := range []string{
		"/v1/ledger/balances/participant/ben/wallet",
		"/v1/ledger/balances/participant/ben/wallet?as_of_seq=3",
		"/v1/ledger/statements/participant/ben/wallet",
		"/v1/ledger/accounts/participant/ben/wallet",
		"/v1/ledger/balances/participant%2Fben%2Fwallet",    // encoded slashes
		"/v1/ledger/balances/participant/ana/../ben/wallet", // redirected to ben's, then refused
		"/v1/ledger/balances/participant/zed/wallet",        // no such account: still 403, not 404
		"/v1/ledger/balances/coach/cy/wallet",
		"/v1/ledger/balances/program/p/fund",
		"/v1/ledger/trial-balance",
		"/v1/ledger/accounts?prefix=participant/ben",
		"/v1/ledger/entries",
		"/v1/ledger/entries/" + entryID,
		"/v1/ledger/check",
		"/v1/audit",
	} {
		r := asAna(p)
		requireProblem(t, r, http.StatusForbidden, "forbidden")
		require.NotContains(t, r.raw, "70.00", p)
	}
	// A path that names ana first but resolves to no account of hers reveals nothing: no
	// account is opened with a segment of dots (older ones keep being read by their code),
	// so this one is not found, and ben's balance is not shown.
	r = asAna("/v1/ledger/balances/participant/ana/wallet%2F..%2F..%2Fben%2Fwallet")
	requireProblem(t, r, http.StatusNotFound, "account-not-found")
	require.NotContains(t, r.raw, "70.00")
	// Her own missing account is a plain 404.
	requireProblem(t, asAna("/v1/ledger/balances/participant/ana/savings"), http.StatusNotFound, "account-not-found")

	r = f.call(t, "GET", "/v1/ledger/balances/coach/cy/wallet", "", bearer(cy))
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, "25.00", r.body["posted"])
	for _, p := range []string{"/v1/ledger/balances/participant/ana/wallet", "/v1/ledger/statements/participant/ana/wallet",
		"/v1/ledger/balances/participant/ben/wallet", "/v1/ledger/trial-balance"} {
		r := f.call(t, "GET", p, "", bearer(cy))
		requireProblem(t, r, http.StatusForbidden, "forbidden")
		require.NotContains(t, r.raw, "40.00", p)
	}
}

// auditAfter returns the trail lines after id.
func (f *accessFixture) auditAfter(t *testing.T, id int64) []access.AuditLine {
	t.Helper()
	lines, err := f.access.Audit(context.Background(), access.AuditFilter{AfterID: id, Limit: 1000})
	require.NoError(t, err)
	return lines
}

func (f *accessFixture) lastAuditID(t *testing.T) int64 {
	t.Helper()
	var id int64
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT coalesce(max(id), 0) FROM audit_log`).Scan(&id))
	return id
}

func TestForbiddenIsAudited(t *testing.T) {
	t.Parallel()
	f := setupAccess(t, api.Config{})
	f.wallets(t)
	anaTok, ana := f.mint(t, access.NewToken{Name: "ana's phone", Role: access.Participant, PersonID: "ana"})
	audTok, auditor := f.mint(t, access.NewToken{Name: "the auditor", Role: access.Auditor})

	// A refusal: one line, outcome denied, with who, what, where and the request id.
	last := f.lastAuditID(t)
	requireProblem(t, f.call(t, "GET", "/v1/ledger/trial-balance", "", bearer(ana), "X-Request-Id", "deny-1"), 403, "forbidden")
	lines := f.auditAfter(t, last)
	require.Len(t, lines, 1)
	l := lines[0]
	require.Equal(t, "ana's phone", l.Actor)
	require.Equal(t, anaTok.ID, l.TokenID)
	require.Equal(t, "participant", l.Role)
	require.Equal(t, "ana", l.PersonID)
	require.Equal(t, "ledger.trial_balance.read", l.Action)
	require.Equal(t, "/v1/ledger/trial-balance", l.Record)
	require.Equal(t, "denied", l.Outcome)
	require.Equal(t, "deny-1", l.RequestID)
	require.Contains(t, l.Detail, "not open to the participant role")
	require.Nil(t, l.Before)
	require.Nil(t, l.After)

	last = l.ID
	requireProblem(t, f.call(t, "GET", "/v1/ledger/balances/participant/ben/wallet", "", bearer(ana), "X-Request-Id", "deny-2"), 403, "forbidden")
	lines = f.auditAfter(t, last)
	require.Len(t, lines, 1)
	require.Equal(t, "ledger.balance.read", lines[0].Action)
	require.Equal(t, "account:participant/ben/wallet", lines[0].Record, "a refusal is filed under the record, like a change")
	require.Equal(t, "denied", lines[0].Outcome)
	require.Contains(t, lines[0].Detail, "not your record")

	// An auditor's write is refused, recorded, and writes nothing.
	last = lines[0].ID
	before := f.rowCounts(t)
	requireProblem(t, f.call(t, "POST", "/v1/ledger/entries", entryJSON("aud-x", "org/cash/stripe", "program/p/fund", "1.00"),
		bearer(auditor), "X-Request-Id", "deny-3"), 403, "forbidden")
	require.Equal(t, before, f.rowCounts(t))
	lines = f.auditAfter(t, last)
	require.Len(t, lines, 1)
	require.Equal(t, audTok.ID, lines[0].TokenID)
	require.Equal(t, "auditor", lines[0].Role)
	require.Equal(t, "ledger.entry.post", lines[0].Action)
	require.Equal(t, "denied", lines[0].Outcome)
	require.Equal(t, "deny-3", lines[0].RequestID)

	// A successful post: one line with the actor, the request id and the entry as after.
	last = lines[0].ID
	r := f.do(t, "POST", "/v1/ledger/entries", entryJSON("", "org/cash/stripe", "program/p/fund", "12.34"),
		"Idempotency-Key", "audited-1", "X-Request-Id", "post-1")
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	require.Equal(t, "post-1", r.header.Get("X-Request-Id"))
	entryID := r.body["id"].(string)
	lines = f.auditAfter(t, last)
	require.Len(t, lines, 1)
	l = lines[0]
	require.Equal(t, "root admin", l.Actor)
	require.Equal(t, f.adminID, l.TokenID)
	require.Equal(t, "admin", l.Role)
	require.Equal(t, "", l.PersonID)
	require.Equal(t, "ledger.entry.post", l.Action)
	require.Equal(t, "entry:"+entryID, l.Record)
	require.Equal(t, "ok", l.Outcome)
	require.Equal(t, "post-1", l.RequestID)
	require.Nil(t, l.Before)
	require.JSONEq(t, r.raw, string(l.After), "after is the entry as posted")
	require.WithinDuration(t, time.Now(), l.At, time.Minute)
	postLine := l

	// A replay changes nothing and records nothing.
	r = f.do(t, "POST", "/v1/ledger/entries", entryJSON("", "org/cash/stripe", "program/p/fund", "12.34"),
		"Idempotency-Key", "audited-1", "X-Request-Id", "post-2")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, true, r.body["replayed"])
	require.Empty(t, f.auditAfter(t, postLine.ID))
	require.Equal(t, 1, f.auditCount(t, `action = 'ledger.entry.post' AND outcome = 'ok' AND record = 'entry:`+entryID+`'`))

	// GET /v1/audit: auditors and admins read it, participants do not.
	r = f.call(t, "GET", fmt.Sprintf("/v1/audit?record=entry:%s", entryID), "", bearer(auditor))
	require.Equal(t, 200, r.status, r.raw)
	got := r.body["lines"].([]any)
	require.Len(t, got, 1)
	line := got[0].(map[string]any)
	require.Equal(t, float64(postLine.ID), line["id"])
	require.Equal(t, "ledger.entry.post", line["action"])
	require.Equal(t, f.adminID, line["token_id"])
	require.Equal(t, "post-1", line["request_id"])
	require.Equal(t, "ok", line["outcome"])
	require.Equal(t, entryID, line["after"].(map[string]any)["id"])
	require.Equal(t, float64(postLine.ID), r.body["next_after_id"])

	r = f.call(t, "GET", fmt.Sprintf("/v1/audit?after_id=%d&limit=1", postLine.ID-1), "", bearer(f.token))
	require.Equal(t, 200, r.status, r.raw)
	require.Len(t, r.body["lines"], 1)
	require.Equal(t, float64(postLine.ID), r.body["lines"].([]any)[0].(map[string]any)["id"])
	r = f.call(t, "GET", fmt.Sprintf("/v1/audit?after_id=%d", postLine.ID), "", bearer(f.token))
	require.Equal(t, 200, r.status, r.raw)
	require.Equal(t, []any{}, r.body["lines"], "reading the trail is not itself a line")
	requireProblem(t, f.call(t, "GET", "/v1/audit?after_id=x", "", bearer(auditor)), 422, "validation-failed")

	last = f.lastAuditID(t)
	requireProblem(t, f.call(t, "GET", "/v1/audit", "", bearer(ana), "X-Request-Id", "deny-4"), 403, "forbidden")
	lines = f.auditAfter(t, last)
	require.Len(t, lines, 1)
	require.Equal(t, "audit.read", lines[0].Action)
	require.Equal(t, "denied", lines[0].Outcome)
	require.Equal(t, "deny-4", lines[0].RequestID)

	// 401s are logged, not written to the trail (there is no principal to record).
	last = f.lastAuditID(t)
	requireProblem(t, f.call(t, "GET", "/v1/audit", "", "Bearer tdm_nope"), 401, "unauthenticated")
	require.Empty(t, f.auditAfter(t, last))
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	// One write every 5 s, burst 2: slow enough that a loaded machine running the suite
	// does not refill the bucket between the requests below.
	f := setupAccess(t, api.Config{WriteRate: 0.2, WriteBurst: 2})
	account := func(code string) string {
		return fmt.Sprintf(`{"code":%q,"type":"asset","currency":"USD"}`, code)
	}
	require.Equal(t, 201, f.do(t, "POST", "/v1/ledger/accounts", account("rl/a1")).status)
	require.Equal(t, 201, f.do(t, "POST", "/v1/ledger/accounts", account("rl/a2")).status)
	r := f.do(t, "POST", "/v1/ledger/accounts", account("rl/a3"))
	requireProblem(t, r, http.StatusTooManyRequests, "rate-limited")
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err)
	require.True(t, retry >= 4 && retry <= 5, "Retry-After %d", retry)
	requireProblem(t, f.do(t, "GET", "/v1/ledger/accounts/rl/a3", ""), 404, "account-not-found")

	// Reads do not spend the write budget.
	for i := 0; i < 10; i++ {
		require.Equal(t, 200, f.do(t, "GET", "/v1/ledger/accounts/rl/a1", "").status)
	}
	requireProblem(t, f.do(t, "POST", "/v1/ledger/accounts", account("rl/a3")), 429, "rate-limited")

	// Another token has its own budget.
	_, other := f.mint(t, access.NewToken{Name: "second admin", Role: access.Admin})
	require.Equal(t, 201, f.call(t, "POST", "/v1/ledger/accounts", account("rl/b1"), bearer(other)).status)
	require.Equal(t, 201, f.call(t, "POST", "/v1/ledger/accounts", account("rl/b2"), bearer(other)).status)
	requireProblem(t, f.call(t, "POST", "/v1/ledger/accounts", account("rl/b3"), bearer(other)), 429, "rate-limited")

	// Refusals spend the refused token's write budget, like the writes they refuse; they
	// touch no one else's budget. Each is recorded, repeats counted on one line.
	_, auditor := f.mint(t, access.NewToken{Name: "auditor", Role: access.Auditor})
	last := f.lastAuditID(t)
	for i := 0; i < 2; i++ {
		requireProblem(t, f.call(t, "POST", "/v1/ledger/accounts", account("rl/c"), bearer(auditor)), 403, "forbidden")
	}
	requireProblem(t, f.call(t, "POST", "/v1/ledger/accounts", account("rl/c"), bearer(auditor)), 429, "rate-limited")
	require.Equal(t, 2, repeats(f.auditAfter(t, last)), "the refusals within the budget are recorded")

	// The budget refills at the configured rate.
	time.Sleep(5100 * time.Millisecond)
	require.Equal(t, 201, f.do(t, "POST", "/v1/ledger/accounts", account("rl/a3")).status)
	requireProblem(t, f.do(t, "POST", "/v1/ledger/accounts", account("rl/a4")), 429, "rate-limited")
}

// page is a page response.
type page struct {
	status   int
	location string
	body     string
	header   http.Header
	cookies  map[string]*http.Cookie
}

func pageClient(withJar bool) *http.Client {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if withJar {
		jar, _ := cookiejar.New(nil)
		c.Jar = jar
	}
	return c
}

func doPage(t *testing.T, c *http.Client, req *http.Request) page {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	p := page{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(b), header: resp.Header,
		cookies: map[string]*http.Cookie{}}
	for _, ck := range resp.Cookies() {
		p.cookies[ck.Name] = ck
	}
	return p
}

func getPage(t *testing.T, c *http.Client, u string) page {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	require.NoError(t, err)
	return doPage(t, c, req)
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) page {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return doPage(t, c, req)
}

var csrfInput = regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]+)">`)

func csrfOf(t *testing.T, p page) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(p.body)
	require.NotNil(t, m, "no csrf input in %s", p.body)
	return m[1]
}

func requireStrictCookie(t *testing.T, c *http.Cookie, secure bool) {
	t.Helper()
	require.NotNil(t, c)
	require.True(t, c.HttpOnly, "%s HttpOnly", c.Name)
	require.Equal(t, http.SameSiteStrictMode, c.SameSite, "%s SameSite", c.Name)
	require.Equal(t, secure, c.Secure, "%s Secure", c.Name)
	require.Equal(t, "/", c.Path)
}

// signIn fetches the form and signs in with secret; it returns the session cookie value.
func signIn(t *testing.T, c *http.Client, base, secret string) string {
	t.Helper()
	form := getPage(t, c, base+"/sign-in")
	require.Equal(t, 200, form.status, form.body)
	p := postForm(t, c, base+"/sign-in", url.Values{"token": {secret}, "csrf": {csrfOf(t, form)}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Contains(t, []string{"/admin/approvals", "/audit", "/coach", "/me"}, p.location, "signing in lands on the role's page")
	require.NotNil(t, p.cookies["tandem_session"])
	return p.cookies["tandem_session"].Value
}

func TestSignInFlow(t *testing.T) {
	t.Parallel()
	f := setupAccess(t, api.Config{})
	base := f.srv.URL
	const name = `Ana <b>Lopez</b> & co`
	anaTok, ana := f.mint(t, access.NewToken{Name: name, Role: access.Participant, PersonID: "ana"})
	c := pageClient(true)

	// The form sets the double-submit cookie and carries the same value.
	form := getPage(t, c, base+"/sign-in")
	require.Equal(t, 200, form.status)
	require.Equal(t, "text/html; charset=utf-8", form.header.Get("Content-Type"))
	require.Equal(t, "no-store", form.header.Get("Cache-Control"))
	require.Equal(t, "DENY", form.header.Get("X-Frame-Options"))
	signinCookie := form.cookies["tandem_signin"]
	requireStrictCookie(t, signinCookie, false)
	require.NotEmpty(t, signinCookie.Value)
	require.Equal(t, signinCookie.Value, csrfOf(t, form))
	require.Contains(t, form.body, `<form method="post" action="/sign-in">`)
	require.Contains(t, form.body, `name="token" type="password"`)

	// Signing in: 303 to /, a strict session cookie (not Secure over plain HTTP), the
	// double-submit cookie cleared.
	last := f.lastAuditID(t)
	p := postForm(t, c, base+"/sign-in", url.Values{"token": {ana}, "csrf": {signinCookie.Value}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/me", p.location)
	sessCookie := p.cookies["tandem_session"]
	requireStrictCookie(t, sessCookie, false)
	require.NotEmpty(t, sessCookie.Value)
	require.WithinDuration(t, time.Now().Add(access.SessionTTL), sessCookie.Expires, time.Minute)
	require.NotNil(t, p.cookies["tandem_signin"])
	require.Empty(t, p.cookies["tandem_signin"].Value)
	require.True(t, p.cookies["tandem_signin"].Expires.Before(time.Now()), "the sign-in cookie is cleared")
	// Only the hash of the session id is stored.
	h := sha256.Sum256([]byte(sessCookie.Value))
	var stored int
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM access_sessions WHERE hash = $1`, h[:]).Scan(&stored))
	require.Equal(t, 1, stored)
	var rows string
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT string_agg(s::text, ',') FROM access_sessions s`).Scan(&rows))
	require.NotContains(t, rows, sessCookie.Value)
	lines := f.auditAfter(t, last)
	require.Len(t, lines, 1)
	require.Equal(t, "session.sign_in", lines[0].Action)
	require.Equal(t, anaTok.ID, lines[0].TokenID)

	// The home page shows who is signed in (escaped) and a sign-out form with the session's CSRF.
	home := getPage(t, c, base+"/")
	require.Equal(t, 200, home.status, home.body)
	require.Contains(t, home.body, "Signed in as <strong>"+html.EscapeString(name)+"</strong> (participant, person ana)")
	require.NotContains(t, home.body, "<b>Lopez</b>")
	sessCSRF := csrfOf(t, home)
	require.NotEqual(t, signinCookie.Value, sessCSRF)
	// Signed in, /sign-in goes home.
	p = getPage(t, c, base+"/sign-in")
	require.Equal(t, http.StatusSeeOther, p.status)
	require.Equal(t, "/me", p.location)

	// Another browser's session and CSRF token.
	_, ben := f.mint(t, access.NewToken{Name: "ben", Role: access.Participant, PersonID: "ben"})
	c2 := pageClient(true)
	signIn(t, c2, base, ben)
	benCSRF := csrfOf(t, getPage(t, c2, base+"/"))

	// Sign-out without the CSRF token, with a wrong one or with another session's: 403, and
	// the session still works.
	for _, csrf := range []string{"", "wrong", benCSRF} {
		form := url.Values{}
		if csrf != "" {
			form.Set("csrf", csrf)
		}
		p = postForm(t, c, base+"/sign-out", form)
		require.Equal(t, http.StatusForbidden, p.status, "csrf %q: %s", csrf, p.body)
		require.Contains(t, p.body, "did not come from Tandem")
		require.Nil(t, p.cookies["tandem_session"], "the session cookie is left alone")
		require.Equal(t, 200, getPage(t, c, base+"/").status)
	}

	// With the CSRF token: signed out, server-side too.
	last = f.lastAuditID(t)
	p = postForm(t, c, base+"/sign-out", url.Values{"csrf": {sessCSRF}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/sign-in", p.location)
	p = getPage(t, c, base+"/")
	require.Equal(t, http.StatusSeeOther, p.status)
	require.Equal(t, "/sign-in", p.location)
	req, err := http.NewRequest("GET", base+"/", nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: "tandem_session", Value: sessCookie.Value})
	p = doPage(t, pageClient(false), req)
	require.Equal(t, http.StatusSeeOther, p.status, "the old cookie no longer opens a session")
	require.Equal(t, "/sign-in", p.location)
	lines = f.auditAfter(t, last)
	require.Len(t, lines, 1)
	require.Equal(t, "session.sign_out", lines[0].Action)
	// ben is still signed in.
	require.Equal(t, 200, getPage(t, c2, base+"/").status)

	// Sign-in without the double-submit cookie, or with a wrong value: 403, no session.
	bare := pageClient(false)
	p = postForm(t, bare, base+"/sign-in", url.Values{"token": {ana}, "csrf": {"anything"}})
	require.Equal(t, http.StatusForbidden, p.status, p.body)
	require.Nil(t, p.cookies["tandem_session"])
	p = postForm(t, bare, base+"/sign-in", url.Values{"token": {ana}})
	require.Equal(t, http.StatusForbidden, p.status, p.body)
	require.Nil(t, p.cookies["tandem_session"])
	c3 := pageClient(true)
	require.Equal(t, 200, getPage(t, c3, base+"/sign-in").status)
	for _, csrf := range []string{"wrong", ""} {
		p = postForm(t, c3, base+"/sign-in", url.Values{"token": {ana}, "csrf": {csrf}})
		require.Equal(t, http.StatusForbidden, p.status, p.body)
		require.Nil(t, p.cookies["tandem_session"])
	}
	require.Equal(t, http.StatusSeeOther, getPage(t, c3, base+"/").status, "still signed out")

	// A revoked token: 401, no session.
	revTok, revoked := f.mint(t, access.NewToken{Name: "gone", Role: access.Participant, PersonID: "gone"})
	_, err = f.access.RevokeToken(context.Background(), access.Principal{Name: "test"}, revTok.ID)
	require.NoError(t, err)
	form = getPage(t, c3, base+"/sign-in")
	p = postForm(t, c3, base+"/sign-in", url.Values{"token": {revoked}, "csrf": {csrfOf(t, form)}})
	require.Equal(t, http.StatusUnauthorized, p.status, p.body)
	require.Contains(t, p.body, "unknown, revoked or expired")
	require.Nil(t, p.cookies["tandem_session"])
	form = getPage(t, c3, base+"/sign-in")
	p = postForm(t, c3, base+"/sign-in", url.Values{"token": {"tdm_unknown"}, "csrf": {csrfOf(t, form)}})
	require.Equal(t, http.StatusUnauthorized, p.status, p.body)

	// Revoking a token ends its sessions.
	tok, secret := f.mint(t, access.NewToken{Name: "to revoke", Role: access.Coach, PersonID: "cy"})
	c4 := pageClient(true)
	signIn(t, c4, base, secret)
	require.Equal(t, 200, getPage(t, c4, base+"/").status)
	_, err = f.access.RevokeToken(context.Background(), access.Principal{Name: "test"}, tok.ID)
	require.NoError(t, err)
	p = getPage(t, c4, base+"/")
	require.Equal(t, http.StatusSeeOther, p.status)
	require.Equal(t, "/sign-in", p.location)
	var open int
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM access_sessions WHERE token_id = $1 AND ended_at IS NULL`, tok.ID).Scan(&open))
	require.Equal(t, 0, open)

	// A session cookie does not authenticate the JSON API: it takes bearer tokens only.
	req, err = http.NewRequest("GET", base+"/v1/ledger/trial-balance", nil)
	require.NoError(t, err)
	p = doPage(t, c2, req)
	require.Equal(t, http.StatusUnauthorized, p.status, p.body)
}

// TestSignInCookiesSecureOverTLS: served over TLS, both cookies are Secure.
func TestSignInCookiesSecureOverTLS(t *testing.T) {
	t.Parallel()
	f := setupAccess(t, api.Config{})
	srv := httptest.NewTLSServer(f.server)
	t.Cleanup(srv.Close)
	_, ana := f.mint(t, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	c := srv.Client()
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	form := getPage(t, c, srv.URL+"/sign-in")
	requireStrictCookie(t, form.cookies["tandem_signin"], true)
	p := postForm(t, c, srv.URL+"/sign-in", url.Values{"token": {ana}, "csrf": {csrfOf(t, form)}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	requireStrictCookie(t, p.cookies["tandem_session"], true)
	require.Equal(t, 200, getPage(t, c, srv.URL+"/").status)
}

// Behind a TLS proxy the requests arrive in plain HTTP, and the cookies are Secure all the same.
func TestSignInCookiesSecureBehindTLSProxy(t *testing.T) {
	t.Parallel()
	f := setupAccess(t, api.Config{BehindTLSProxy: true})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c.Jar, _ = cookiejar.New(nil)
	form := getPage(t, c, f.srv.URL+"/sign-in")
	requireStrictCookie(t, form.cookies["tandem_signin"], true)
}

// TestTokenSecretNeverEchoed: nothing the API sends back contains a token's secret.
func TestTokenSecretNeverEchoed(t *testing.T) {
	t.Parallel()
	f := setupAccess(t, api.Config{})
	r := f.do(t, "GET", "/v1/audit?limit=1000", "")
	require.Equal(t, 200, r.status, r.raw)
	require.NotEmpty(t, r.body["lines"])
	require.NotContains(t, r.raw, f.token)
	require.NotContains(t, r.raw, strings.TrimPrefix(f.token, "tdm_"))
	var all string
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT string_agg(a::text, ',') FROM audit_log a`).Scan(&all))
	require.NotContains(t, all, strings.TrimPrefix(f.token, "tdm_"))
	require.NotContains(t, f.log.String(), strings.TrimPrefix(f.token, "tdm_"))
}

// repeats counts the requests lines stand for: a refusal's line counts its repeats.
func repeats(lines []access.AuditLine) int {
	n := 0
	for _, l := range lines {
		n += l.Repeats
	}
	return n
}

// TestEveryRefusalIsAudited: every refused request leaves its line, whatever it carries
// (an X-Request-Id that is not short printable ASCII is replaced by one the server makes),
// and a burst of refusals is counted in full, folded onto one line.
func TestEveryRefusalIsAudited(t *testing.T) {
	t.Parallel()
	// Writes: one a second, burst 2; reads ten times as much.
	f := setupAccess(t, api.Config{WriteRate: 1, WriteBurst: 2})
	anaTok, ana := f.mint(t, access.NewToken{Name: "ana", Role: access.Participant, PersonID: "ana"})
	serverMade := regexp.MustCompile(`^[0-9a-f]{16}$`)

	for i, id := range []string{"\xff\xfe", "caf\xc3\xa9", "a b", "tab\there", strings.Repeat("x", 65), "\x80"} {
		last := f.lastAuditID(t)
		// Another record each time: repeats on one record fold onto its first line.
		r := f.call(t, "GET", fmt.Sprintf("/v1/ledger/balances/participant/ben%d/wallet", i), "", bearer(ana), "X-Request-Id", id)
		requireProblem(t, r, http.StatusForbidden, "forbidden")
		got := r.header.Get("X-Request-Id")
		require.Regexp(t, serverMade, got, "%q replaced", id)
		require.Equal(t, got, r.body["request_id"])
		lines := f.auditAfter(t, last)
		require.Len(t, lines, 1, "%q: the refusal has its line", id)
		require.Equal(t, got, lines[0].RequestID)
		require.Equal(t, anaTok.ID, lines[0].TokenID)

		// An audited write with the same header succeeds, with its line (a token each: the
		// write budget is small here).
		_, admin := f.mint(t, access.NewToken{Name: fmt.Sprintf("admin %d", last), Role: access.Admin})
		r = f.call(t, "POST", "/v1/ledger/accounts", fmt.Sprintf(`{"code":"rid/%d","type":"asset","currency":"USD"}`, last),
			bearer(admin), "X-Request-Id", id)
		require.Equal(t, http.StatusCreated, r.status, "%q: %s", id, r.raw)
		require.Regexp(t, serverMade, r.header.Get("X-Request-Id"))
		require.Equal(t, 1, f.auditCount(t, fmt.Sprintf(`record = 'account:rid/%d' AND request_id = '%s'`, last, r.header.Get("X-Request-Id"))))
	}
	// A short printable id is the client's own.
	r := f.call(t, "GET", "/v1/ledger/balances/participant/ben/wallet", "", bearer(ana), "X-Request-Id", "ok-id_1.2:3")
	require.Equal(t, "ok-id_1.2:3", r.header.Get("X-Request-Id"))

	// A burst of refused reads, past the write budget: every one is counted.
	_, ana2 := f.mint(t, access.NewToken{Name: "ana's laptop", Role: access.Participant, PersonID: "ana"})
	last := f.lastAuditID(t)
	const burst = 15
	for range burst {
		requireProblem(t, f.call(t, "GET", "/v1/ledger/statements/participant/ben/wallet", "", bearer(ana2)), http.StatusForbidden, "forbidden")
	}
	lines := f.auditAfter(t, last)
	require.Equal(t, burst, repeats(lines), "every refusal is counted")
	require.LessOrEqual(t, len(lines), 2, "repeats fold (two lines if a minute turned)")
	for _, l := range lines {
		require.Equal(t, "ledger.statement.read", l.Action)
		require.Equal(t, "account:participant/ben/wallet", l.Record)
		require.Equal(t, "denied", l.Outcome)
	}
	r = f.call(t, "GET", fmt.Sprintf("/v1/audit?after_id=%d", last), "", bearer(f.token))
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, float64(lines[0].Repeats), r.body["lines"].([]any)[0].(map[string]any)["repeats"])
}

// TestReconciliationIsAudited: running a reconciliation, by JSON or by the page's form,
// leaves a trail line naming the run and what it found.
func TestReconciliationIsAudited(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	line := func(id any) access.AuditLine {
		t.Helper()
		lines, err := f.access.Audit(context.Background(), access.AuditFilter{Record: fmt.Sprintf("reconciliation:%v", id)})
		require.NoError(t, err)
		require.Len(t, lines, 1)
		return lines[0]
	}

	r := f.do(t, "POST", "/v1/reconciliations", `{"days":3}`, "X-Request-Id", "recon-1")
	requireStatus(t, r, http.StatusCreated)
	l := line(int64(r.body["id"].(float64)))
	require.Equal(t, string(access.ReconciliationRun), l.Action)
	require.Equal(t, "ok", l.Outcome)
	require.Equal(t, "recon-1", l.RequestID)
	require.Equal(t, "admin", l.Actor)
	require.Contains(t, l.Detail, "0 differences")
	require.JSONEq(t, `0`, string(mustField(t, l.After, "differences")))

	admin := f.session(t, f.adm2)
	p := admin.post("/admin/reconciliation", url.Values{"days": {"7"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	var id int64
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT max(id) FROM payouts_reconciliations`).Scan(&id))
	l = line(id)
	require.Equal(t, string(access.ReconciliationRun), l.Action)
	require.Equal(t, "admin adm2", l.Actor)
}

// mustField is one field of a JSON object.
func mustField(t *testing.T, raw []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m))
	require.Contains(t, m, name)
	return m[name]
}

// TestPagesRefuseNUL: the pages read their path like the JSON routes: NUL or bytes that are
// not UTF-8 in an id is 422, not 500.
func TestPagesRefuseNUL(t *testing.T) {
	t.Parallel()
	f := setupAdmin(t, false)
	admin := f.session(t, f.adm2)
	for _, path := range []string{"/admin/disbursements/%00", "/admin/disbursements/a%ff", "/admin/programs/p%00"} {
		p := admin.get(path)
		require.Equal(t, http.StatusUnprocessableEntity, p.status, "%s: %s", path, p.body)
	}
	p := admin.post("/admin/disbursements/%00/approve", url.Values{"reason": {"ok"}})
	require.Equal(t, http.StatusUnprocessableEntity, p.status, p.body)
	// A form's fields too, named.
	dis := f.awaiting(t, "120.00", "nul-form")
	before := f.networkRows(t)
	for _, form := range []url.Values{{"reason": {"fine\x00"}}, {"return_to": {"/admin/\xff"}}} {
		p = admin.post("/admin/disbursements/"+dis+"/reject", form)
		require.Equal(t, http.StatusUnprocessableEntity, p.status, p.body)
		require.Contains(t, p.body, "(in the form)")
	}
	require.Equal(t, before, f.networkRows(t))
}
