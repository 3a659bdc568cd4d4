package app_test

// Payouts through Stripe: the provider's requests as stripe-mock receives them, an App paying
// through Stripe end to end, and Stripe's webhooks (signed, replayed, out of order, reversals).
//
// stripe-mock keeps no state: it answers every POST /v1/transfers with a new transfer echoing
// the request, and GET and list with fixtures. Idempotency is therefore proven by what Tandem
// sends (the Idempotency-Key of every request, recorded on the way) and by Tandem's own
// records (attempts, ledger entries, events), never by the mock.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/tandemledger/tandem/api"
	"github.com/tandemledger/tandem/internal/app"
	"github.com/tandemledger/tandem/internal/dbtest"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

const testWebhookSecret = "whsec_test"

// stripeMockURL is stripe-mock's address (STRIPE_MOCK_URL, set by bin/stripemock). Without it
// the test is skipped, or fails when TANDEM_REQUIRE_STRIPE_MOCK=1 (make test).
func stripeMockURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("STRIPE_MOCK_URL")
	if u == "" {
		if os.Getenv("TANDEM_REQUIRE_STRIPE_MOCK") == "1" {
			t.Fatal("STRIPE_MOCK_URL is not set and TANDEM_REQUIRE_STRIPE_MOCK=1: run under bin/stripemock (make test does)")
		}
		t.Skip("STRIPE_MOCK_URL is not set: run under `bin/stripemock --version v0.203.0 -- go test ...` (make test does)")
	}
	return strings.TrimRight(u, "/")
}

// stripeCall is one request to Stripe and its answer.
type stripeCall struct {
	Method, Path string
	Header       http.Header
	Query        url.Values
	Form         url.Values
	Status       int
	RespHeader   http.Header
	Body         []byte
}

// transferID is the id of the transfer the call's answer carries.
func (c stripeCall) transferID(t *testing.T) string {
	t.Helper()
	var tr struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(c.Body, &tr), string(c.Body))
	require.True(t, strings.HasPrefix(tr.ID, "tr_"), "transfer id %q", tr.ID)
	return tr.ID
}

// stripeRecorder is an http.RoundTripper that records every request and its answer.
type stripeRecorder struct {
	next  http.RoundTripper
	mu    sync.Mutex
	calls []stripeCall
}

func newStripeRecorder() *stripeRecorder { return &stripeRecorder{next: http.DefaultTransport} }

func (r *stripeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	c := stripeCall{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone(), Query: req.URL.Query()}
	out := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		out.Body = io.NopCloser(bytes.NewReader(b))
		if c.Form, err = url.ParseQuery(string(b)); err != nil {
			return nil, err
		}
	}
	resp, err := r.next.RoundTrip(out)
	if err == nil {
		b, rerr := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if rerr != nil {
			return nil, rerr
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		c.Status, c.RespHeader, c.Body = resp.StatusCode, resp.Header.Clone(), b
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	return resp, err
}

func (r *stripeRecorder) all() []stripeCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stripeCall(nil), r.calls...)
}

// transfers are the POST /v1/transfers for disbursement ("" for all).
func (r *stripeRecorder) transfers(disbursement string) []stripeCall {
	var out []stripeCall
	for _, c := range r.all() {
		if c.Method == http.MethodPost && c.Path == "/v1/transfers" && (disbursement == "" || c.Form.Get("metadata[disbursement_id]") == disbursement) {
			out = append(out, c)
		}
	}
	return out
}

// stripeProxy is a reverse proxy to stripe-mock that records what goes through: an App's
// StripeBaseURL, since the App builds its Stripe client itself.
func stripeProxy(t *testing.T, mock string) (string, *stripeRecorder) {
	t.Helper()
	target, err := url.Parse(mock)
	require.NoError(t, err)
	rec := newStripeRecorder()
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = rec
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return srv.URL, rec
}

// stripeTransfer is a transfer object as Stripe sends it in a webhook, for attempt of d.
func stripeTransfer(id string, d payouts.Disbursement, attempt int, reversedMinor int64, reversed bool) map[string]any {
	exp, _ := ledger.Exponent(d.Currency)
	return map[string]any{"id": id, "object": "transfer", "amount": d.Amount.Shift(exp).IntPart(), "currency": strings.ToLower(d.Currency),
		"amount_reversed": reversedMinor, "reversed": reversed, "destination": "acct_123", "created": time.Now().Unix(),
		"livemode": false, "transfer_group": d.ID,
		"metadata": map[string]string{"disbursement_id": d.ID, "attempt": strconv.Itoa(attempt)}}
}

// stripeEvent is a webhook payload.
func stripeEvent(id, typ, apiVersion string, object map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"id": id, "object": "event", "api_version": apiVersion, "type": typ,
		"created": time.Now().Unix(), "livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": object}})
	if err != nil {
		panic(err)
	}
	return b
}

// signStripe is the Stripe-Signature header Stripe would send with payload.
func signStripe(payload []byte, secret string) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: secret}).Header
}

// TestStripeProviderSend: the Stripe provider's requests as stripe-mock receives them. A
// payout of 12.34 USD is POST /v1/transfers with amount=1234, currency=usd, the destination,
// the disbursement in metadata and the attempt's key as Idempotency-Key; a retried Send
// carries the same key; minor units follow the currency (JPY has none, KWD three); a payout
// Stripe cannot take is refused without any request. Status and List ask what they should.
func TestStripeProviderSend(t *testing.T) {
	t.Parallel()
	mock := stripeMockURL(t)
	ctx := context.Background()
	rec := newStripeRecorder()
	s, err := payouts.NewStripe(payouts.StripeConfig{SecretKey: "sk_test_123", BaseURL: mock, HTTPClient: &http.Client{Transport: rec}})
	require.NoError(t, err)
	require.Equal(t, "stripe", s.Name())
	id := uuid.NewString()
	p := payouts.Payout{Disbursement: id, Attempt: 1, IdempotencyKey: id, Person: "ana", Destination: "acct_123",
		Amount: decimal.RequireFromString("12.34"), Currency: "USD", Description: "Tandem p1 disbursement " + id}

	r, err := s.Send(ctx, p)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(r.Ref, "tr_"), r.Ref)
	require.Equal(t, payouts.OutcomePaid, r.Outcome)
	require.True(t, r.Returned.IsZero())
	calls := rec.all()
	require.Len(t, calls, 1)
	c := calls[0]
	require.Equal(t, http.MethodPost, c.Method)
	require.Equal(t, "/v1/transfers", c.Path)
	require.Equal(t, http.StatusOK, c.Status)
	require.Equal(t, "1234", c.Form.Get("amount"))
	require.Equal(t, "usd", c.Form.Get("currency"))
	require.Equal(t, "acct_123", c.Form.Get("destination"))
	require.Equal(t, id, c.Form.Get("metadata[disbursement_id]"))
	require.Equal(t, "1", c.Form.Get("metadata[attempt]"))
	require.Equal(t, id, c.Form.Get("transfer_group"))
	require.Equal(t, p.Description, c.Form.Get("description"))
	require.Equal(t, []string{id}, c.Header.Values("Idempotency-Key"), "the attempt's key, never empty or random")
	require.Equal(t, id, c.RespHeader.Get("Idempotency-Key"), "stripe-mock echoes the key it got")
	require.Equal(t, stripe.APIVersion, c.Header.Get("Stripe-Version"))
	require.Equal(t, "Bearer sk_test_123", c.Header.Get("Authorization"))
	require.Equal(t, r.Ref, c.transferID(t))

	// A retried Send (the job retried after a timeout) carries the same key.
	_, err = s.Send(ctx, p)
	require.NoError(t, err)
	calls = rec.all()
	require.Len(t, calls, 2)
	require.Equal(t, []string{id}, calls[1].Header.Values("Idempotency-Key"))
	require.Equal(t, c.Form, calls[1].Form, "the same request")
	// A second attempt has a key of its own.
	p2 := p
	p2.Attempt, p2.IdempotencyKey = 2, id+":2"
	_, err = s.Send(ctx, p2)
	require.NoError(t, err)
	calls = rec.all()
	require.Len(t, calls, 3)
	require.Equal(t, []string{id + ":2"}, calls[2].Header.Values("Idempotency-Key"))
	require.Equal(t, "2", calls[2].Form.Get("metadata[attempt]"))

	t.Run("minor units", func(t *testing.T) {
		for _, c := range []struct{ currency, amount, minor string }{
			{"JPY", "1234", "1234"}, {"KWD", "12.345", "12345"}, {"USD", "0.01", "1"}, {"USD", "999999.99", "99999999"},
		} {
			q := p
			q.Currency, q.Amount, q.IdempotencyKey = c.currency, decimal.RequireFromString(c.amount), uuid.NewString()
			n := len(rec.all())
			_, err := s.Send(ctx, q)
			require.NoError(t, err, c.currency)
			calls := rec.all()
			require.Len(t, calls, n+1)
			require.Equal(t, c.minor, calls[n].Form.Get("amount"), "%s %s", c.amount, c.currency)
			require.Equal(t, strings.ToLower(c.currency), calls[n].Form.Get("currency"))
			require.Equal(t, q.IdempotencyKey, calls[n].Header.Get("Idempotency-Key"))
		}
	})

	t.Run("refused without a request", func(t *testing.T) {
		for name, mod := range map[string]func(*payouts.Payout){
			"a sandbox destination":           func(q *payouts.Payout) { q.Destination = "sandbox:ana" },
			"a bank account":                  func(q *payouts.Payout) { q.Destination = "ba_123" },
			"no destination":                  func(q *payouts.Payout) { q.Destination = "" },
			"an unknown currency":             func(q *payouts.Payout) { q.Currency = "XXX" },
			"fractional yen":                  func(q *payouts.Payout) { q.Currency, q.Amount = "JPY", decimal.RequireFromString("12.5") },
			"a thousandth of a dollar":        func(q *payouts.Payout) { q.Amount = decimal.RequireFromString("12.345") },
			"zero":                            func(q *payouts.Payout) { q.Amount = decimal.Zero },
			"a negative amount":               func(q *payouts.Payout) { q.Amount = decimal.RequireFromString("-5") },
			"a destination with acct_ inside": func(q *payouts.Payout) { q.Destination = "x_acct_123" },
			"an upper-case ACCT_ prefix":      func(q *payouts.Payout) { q.Destination = "ACCT_123" },
		} {
			q := p
			mod(&q)
			n := len(rec.all())
			_, err := s.Send(ctx, q)
			var refusal *payouts.Refusal
			require.True(t, errors.As(err, &refusal), "%s: %v", name, err)
			require.Len(t, rec.all(), n, "%s: no request", name)
		}
	})

	t.Run("an empty idempotency key is never sent", func(t *testing.T) {
		// Send must not reach Stripe without the attempt's key: an empty Idempotency-Key
		// makes Stripe's idempotency void, and a retried job would pay twice.
		q := p
		q.IdempotencyKey = ""
		n := len(rec.all())
		_, err := s.Send(ctx, q)
		calls := rec.all()
		if len(calls) > n {
			t.Errorf("Send with an empty key reached Stripe with Idempotency-Key %q (values %q)",
				calls[n].Header.Get("Idempotency-Key"), calls[n].Header.Values("Idempotency-Key"))
		}
		require.Error(t, err, "Send must refuse a payout without an idempotency key")
	})

	t.Run("status and list", func(t *testing.T) {
		st, err := s.Status(ctx, p, r.Ref)
		require.NoError(t, err)
		require.Equal(t, payouts.OutcomePaid, st.Outcome)
		require.Equal(t, r.Ref, st.Ref)
		calls := rec.all()
		last := calls[len(calls)-1]
		require.Equal(t, http.MethodGet, last.Method)
		require.Equal(t, "/v1/transfers/"+r.Ref, last.Path)

		since := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
		var recs []payouts.Record
		require.NoError(t, s.List(ctx, since, func(r payouts.Record) error { recs = append(recs, r); return nil }))
		require.NotEmpty(t, recs, "stripe-mock lists its fixture transfer")
		for _, r := range recs {
			require.True(t, strings.HasPrefix(r.Ref, "tr_"))
			require.Equal(t, "USD", r.Currency)
			require.True(t, r.Amount.IsPositive())
		}
		calls = rec.all()
		last = calls[len(calls)-1]
		require.Equal(t, http.MethodGet, last.Method)
		require.Equal(t, "/v1/transfers", last.Path)
		require.Equal(t, strconv.FormatInt(since.Unix(), 10), last.Query.Get("created[gte]"), "only transfers since: %v", last.Query)
		require.Equal(t, "100", last.Query.Get("limit"))
	})
}

// TestStripeProviderErrors: Stripe's refusals (4xx) fail the payout; 401, 403, 409, 429 and
// 5xx are transient (the job retries with the same key); so are, whatever their status, the
// organisation's own trouble — codes balance_insufficient, platform_* and rate_limit — which
// must not fail the payee's payout. stripe-go never retries by itself.
func TestStripeProviderErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var mu sync.Mutex
	status, code := http.StatusBadRequest, "resource_missing"
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"error": {"type": "invalid_request_error", "code": %q, "message": "No such destination: 'acct_gone'"}}`, code)
	}))
	t.Cleanup(srv.Close)
	answer := func(st int, c string) {
		mu.Lock()
		defer mu.Unlock()
		status, code, keys = st, c, nil
	}
	sent := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), keys...)
	}
	s, err := payouts.NewStripe(payouts.StripeConfig{SecretKey: "sk_test_123", BaseURL: srv.URL})
	require.NoError(t, err)
	id := uuid.NewString()
	p := payouts.Payout{Disbursement: id, Attempt: 1, IdempotencyKey: id, Person: "ana", Destination: "acct_gone",
		Amount: decimal.RequireFromString("5.00"), Currency: "USD"}
	for _, c := range []struct {
		status  int
		code    string
		refused bool
	}{
		{400, "resource_missing", true}, {402, "resource_missing", true}, {404, "resource_missing", true},
		{401, "resource_missing", false}, {403, "resource_missing", false}, {409, "resource_missing", false},
		{429, "resource_missing", false}, {500, "resource_missing", false}, {503, "resource_missing", false},
		// The platform's own trouble: transient at any status.
		{400, "balance_insufficient", false}, {402, "balance_insufficient", false},
		{400, "platform_api_key_expired", false}, {403, "platform_account_required", false}, {402, "platform_account_required", false},
		{400, "rate_limit", false}, {429, "rate_limit", false},
		// Only those codes.
		{400, "amount_too_small", true}, {400, "platform", true}, {402, "insufficient_funds", true}, {400, "balance_insufficient_x", true},
	} {
		answer(c.status, c.code)
		_, err := s.Send(ctx, p)
		require.Error(t, err, "HTTP %d %s", c.status, c.code)
		var refusal *payouts.Refusal
		require.Equal(t, c.refused, errors.As(err, &refusal), "HTTP %d %s: %v", c.status, c.code, err)
		if c.refused {
			require.Contains(t, refusal.Reason, "No such destination")
			require.Contains(t, refusal.Reason, c.code)
		} else {
			var se *stripe.Error
			require.ErrorAs(t, err, &se, "HTTP %d %s: Stripe's error is kept for the job's log", c.status, c.code)
			require.Equal(t, c.code, string(se.Code))
		}
		require.Equal(t, []string{id}, sent(), "HTTP %d %s: one request, with the key", c.status, c.code)
	}

	t.Run("a transient error does not fail the payout", func(t *testing.T) {
		pool := dbtest.New(t, dbtest.Options{MaxConns: 4})
		a := buildApp(t, pool, app.Config{Payouts: app.Payouts{StripeSecretKey: "sk_test_123", StripeBaseURL: srv.URL}})
		payoutFixture(t, a, "ana")
		_, err := a.Payouts.SetDestination(ctx, admin, "ana", "acct_gone")
		require.NoError(t, err)
		d := createPayout(t, a.Payouts, "ana", "5.00", "transient", payouts.Approved)
		for _, c := range []string{"balance_insufficient", "platform_api_key_expired", "rate_limit"} {
			answer(http.StatusBadRequest, c)
			err := a.Payouts.Submit(ctx, uuid.MustParse(d.ID))
			require.Error(t, err, c)
			var refusal *payouts.Refusal
			require.False(t, errors.As(err, &refusal), c)
			got, err := a.Payouts.Get(ctx, d.ID)
			require.NoError(t, err)
			require.Equal(t, payouts.Submitted, got.State, "%s: the job retries it", c)
			require.Len(t, got.Attempts, 1, c)
			require.Empty(t, got.Attempts[0].Outcome, c)
			require.Equal(t, []string{d.ID}, sent(), "%s: the same attempt, the same key", c)
			require.Equal(t, map[string]int{"pending": 1}, payoutEntries(t, pool, d.ID), c)
			require.Zero(t, queryInt(t, pool, `SELECT count(*) FROM payouts_transitions WHERE disbursement_id = $1 AND to_state = 'failed'`, d.ID))
		}
		// A refusal, by contrast, fails it at once.
		answer(http.StatusBadRequest, "resource_missing")
		require.NoError(t, a.Payouts.Submit(ctx, uuid.MustParse(d.ID)))
		got, err := a.Payouts.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Failed, got.State)
		require.Len(t, got.Attempts, 1)
		require.Equal(t, "failed", got.Attempts[0].Outcome)
		require.Contains(t, got.Attempts[0].Reason, "resource_missing")
		require.Equal(t, map[string]int{"pending": 1, "void": 1}, payoutEntries(t, pool, d.ID))
		requireAmount(t, "5", posted(t, a, network.WalletAccount("ana")))
	})
}

// TestStripeEndToEnd: an App paying through Stripe (stripe-mock behind a recording proxy).
// A disbursement to a person with a connected account is sent once with its id as
// Idempotency-Key, in minor units (USD and JPY), its transfer recorded, paid and settled;
// one without an account fails without a request and is paid once the account is set;
// Settle asks Stripe and changes nothing; reconciliation records the fixture transfer
// stripe-mock lists (Tandem never made it) and Tandem's transfers the mock does not list.
func TestStripeEndToEnd(t *testing.T) {
	t.Parallel()
	mock := stripeMockURL(t)
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	base, rec := stripeProxy(t, mock)
	a := buildApp(t, pool, app.Config{Payouts: app.Payouts{StripeSecretKey: "sk_test_123", StripeBaseURL: base, WebhookSecret: testWebhookSecret}})
	require.NoError(t, a.Start(ctx))
	require.Equal(t, "stripe", a.Payouts.Provider().Name())
	payoutFixture(t, a, "ana", "bo")
	_, err := a.Payouts.SetDestination(ctx, admin, "ana", "sandbox:ana")
	require.ErrorIs(t, err, payouts.ErrInvalid, "Stripe pays connected accounts only")
	_, err = a.Payouts.SetDestination(ctx, admin, "ana", "acct_123")
	require.NoError(t, err)
	since := time.Now().Add(-time.Hour)

	d := createPayout(t, a.Payouts, "ana", "12.34", "e2e-usd", payouts.Approved)
	got := waitState(t, a.Payouts, d.ID, payouts.Paid)
	require.Len(t, got.Attempts, 1)
	at := got.Attempts[0]
	require.Equal(t, "stripe", at.Provider)
	require.Equal(t, "acct_123", at.Destination)
	require.Equal(t, d.ID, at.IdempotencyKey)
	require.True(t, strings.HasPrefix(at.ProviderRef, "tr_"), at.ProviderRef)
	require.Equal(t, "paid", at.Outcome)
	require.NotNil(t, at.SentAt)
	calls := rec.transfers(d.ID)
	require.Len(t, calls, 1)
	require.Equal(t, []string{d.ID}, calls[0].Header.Values("Idempotency-Key"))
	require.Equal(t, "1234", calls[0].Form.Get("amount"))
	require.Equal(t, "usd", calls[0].Form.Get("currency"))
	require.Equal(t, "acct_123", calls[0].Form.Get("destination"))
	require.Equal(t, "1", calls[0].Form.Get("metadata[attempt]"))
	require.Equal(t, at.ProviderRef, calls[0].transferID(t))

	outcome, err := a.Payouts.Settle(ctx, uuid.MustParse(d.ID), 1)
	require.NoError(t, err)
	require.Equal(t, payouts.OutcomePaid, outcome)
	var asked bool
	for _, c := range rec.all() {
		asked = asked || (c.Method == http.MethodGet && c.Path == "/v1/transfers/"+at.ProviderRef)
	}
	require.True(t, asked, "Settle asked Stripe about the transfer")
	require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, pool, d.ID))
	_, err = a.Payouts.Settle(ctx, uuid.MustParse(d.ID), 2)
	require.ErrorIs(t, err, payouts.ErrNotFound)

	// Yen have no minor unit.
	_, err = a.Network.CreateProgram(ctx, admin, network.NewProgram{ID: "pj", Name: "Yen", Currency: "JPY",
		StartsOn: "2026-01-01", EndsOn: "2026-12-31", AutoApproveLimit: "10000"})
	require.NoError(t, err)
	_, err = a.Network.Fund(ctx, admin, "pj", "1000000", "pj-fund")
	require.NoError(t, err)
	// The default dual-control threshold is 500 in the program's currency, but above the
	// auto-approve limit: ¥10001 here (the limit and one yen), so ¥1234 is approved at once.
	pol, err := a.Payouts.Policy(ctx, "pj")
	require.NoError(t, err)
	require.True(t, pol.Default)
	requireAmount(t, "10001", pol.DualControlThreshold)
	addParticipant(t, a.Network, "pj", "jo", "mo") // a wallet holds one currency
	require.False(t, t.Failed())
	_, err = a.Payouts.SetDestination(ctx, admin, "jo", "acct_789")
	require.NoError(t, err)
	dj, err := a.Payouts.Create(ctx, admin, payouts.NewDisbursement{Program: "pj", Person: "jo", Amount: "1234", Reason: "yen", IdempotencyKey: "e2e-jpy"})
	require.NoError(t, err)
	require.Equal(t, payouts.Approved, dj.State)
	require.Equal(t, 0, dj.ApprovalsNeeded)
	gotj := waitState(t, a.Payouts, dj.ID, payouts.Paid)
	calls = rec.transfers(dj.ID)
	require.Len(t, calls, 1)
	require.Equal(t, "1234", calls[0].Form.Get("amount"))
	require.Equal(t, "jpy", calls[0].Form.Get("currency"))
	require.Equal(t, "acct_789", calls[0].Form.Get("destination"))
	require.Equal(t, []string{dj.ID}, calls[0].Header.Values("Idempotency-Key"))

	// No connected account: failed without a request; paid once one is set.
	db := createPayout(t, a.Payouts, "bo", "20.00", "e2e-nodest", payouts.Approved)
	gotb := waitState(t, a.Payouts, db.ID, payouts.Failed)
	require.Empty(t, gotb.Attempts)
	require.Contains(t, gotb.Transitions[len(gotb.Transitions)-1].Reason, "no payout destination")
	require.Empty(t, rec.transfers(db.ID))
	requireAmount(t, "20", posted(t, a, network.WalletAccount("bo")))
	dest, err := a.Payouts.SetDestination(ctx, admin, "bo", "acct_456")
	require.NoError(t, err)
	require.Equal(t, []string{db.ID}, dest.Retried)
	gotb = waitState(t, a.Payouts, db.ID, payouts.Paid)
	require.Len(t, gotb.Attempts, 1)
	calls = rec.transfers(db.ID)
	require.Len(t, calls, 1)
	require.Equal(t, "acct_456", calls[0].Form.Get("destination"))
	require.Equal(t, []string{db.ID}, calls[0].Header.Values("Idempotency-Key"))

	requireLedgerClean(t, a, pool, "USD", decimal.RequireFromString("32.34"))
	requireLedgerClean(t, a, pool, "JPY", decimal.RequireFromString("1234"))
	requireAmount(t, "0", posted(t, a, network.WalletAccount("ana")))

	// Reconciliation against stripe-mock: its fixture transfer is not Tandem's, and Tandem's
	// transfers are not in its list.
	run, err := a.Payouts.Reconcile(ctx, since)
	require.NoError(t, err)
	ours := map[string]string{at.ProviderRef: d.ID, gotj.Attempts[0].ProviderRef: dj.ID, gotb.Attempts[0].ProviderRef: db.ID}
	var strangers []payouts.Difference
	missing := map[string]string{}
	for _, x := range run.Differences {
		switch x.Kind {
		case payouts.MissingInLedger:
			strangers = append(strangers, x)
		case payouts.MissingAtProvider:
			missing[x.ProviderRef] = x.Disbursement
		default:
			t.Errorf("unexpected difference %+v", x)
		}
	}
	require.Len(t, strangers, 1, "stripe-mock's fixture transfer: %+v", run.Differences)
	require.True(t, strings.HasPrefix(strangers[0].ProviderRef, "tr_"))
	require.NotContains(t, ours, strangers[0].ProviderRef)
	require.Empty(t, strangers[0].Disbursement)
	require.True(t, decimal.RequireFromString(strangers[0].ProviderAmount).IsPositive())
	require.Equal(t, ours, missing)
	require.Equal(t, 3, run.LedgerRecords)
	require.Equal(t, 1, run.ProviderRecords)
	runs, err := a.Payouts.Reconciliations(ctx, 5)
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, run.ID, runs[0].ID)
	require.Equal(t, "stripe", runs[0].Provider)
	require.Len(t, runs[0].Differences, 4)
	var listed bool
	for _, c := range rec.all() {
		listed = listed || (c.Method == http.MethodGet && c.Path == "/v1/transfers" && c.Query.Get("created[gte]") == strconv.FormatInt(since.Unix(), 10))
	}
	require.True(t, listed, "reconciliation listed the transfers created since")
}

// TestStripeWebhooks records and processes Stripe events (RecordStripeEvent, then
// ProcessEvent as the event job would), with the App's Stripe provider on stripe-mock and no
// River client running, so that each step happens when the test says.
func TestStripeWebhooks(t *testing.T) {
	t.Parallel()
	mock := stripeMockURL(t)
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	plan := newFaultPlan()
	a := buildApp(t, pool, app.Config{Payouts: app.Payouts{StripeSecretKey: "sk_test_123", StripeBaseURL: mock,
		WebhookSecret: testWebhookSecret, Fault: plan.Fault}})
	people := []string{"wa", "wb", "wc", "wd", "we", "wf"}
	payoutFixture(t, a, people...)
	for _, person := range people {
		_, err := a.Payouts.SetDestination(ctx, admin, person, "acct_"+person)
		require.NoError(t, err)
	}
	p := a.Payouts
	v := payouts.WebhookAPIVersion
	require.Equal(t, stripe.APIVersion, v)
	paidTotal := decimal.Zero

	// submitted: sent to Stripe, and the submit job died before recording the answer.
	submitted := func(t *testing.T, person, amount string) payouts.Disbursement {
		t.Helper()
		d := createPayout(t, p, person, amount, "wh-"+person, payouts.Approved)
		plan.failNext("submit:after-send", 1)
		require.ErrorIs(t, p.Submit(ctx, uuid.MustParse(d.ID)), errCrash)
		got, err := p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Submitted, got.State)
		require.Len(t, got.Attempts, 1)
		require.Empty(t, got.Attempts[0].ProviderRef)
		return got
	}
	paid := func(t *testing.T, person, amount string) payouts.Disbursement {
		t.Helper()
		d := createPayout(t, p, person, amount, "wh-"+person, payouts.Approved)
		require.NoError(t, p.Submit(ctx, uuid.MustParse(d.ID)))
		got, err := p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Paid, got.State)
		require.True(t, strings.HasPrefix(got.Attempts[0].ProviderRef, "tr_"))
		paidTotal = paidTotal.Add(got.Amount)
		return got
	}
	record := func(t *testing.T, payload []byte) payouts.Event {
		t.Helper()
		ev, err := p.RecordStripeEvent(ctx, payload, signStripe(payload, testWebhookSecret))
		require.NoError(t, err)
		return ev
	}
	deliver := func(t *testing.T, payload []byte) payouts.Event {
		t.Helper()
		ev := record(t, payload)
		require.False(t, ev.Duplicate)
		require.NoError(t, p.ProcessEvent(ctx, "stripe", ev.ID))
		return ev
	}
	eventRow := func(t *testing.T, id string) (n int, processed bool, outcome string) {
		t.Helper()
		n = queryInt(t, pool, `SELECT count(*) FROM payouts_events WHERE provider = 'stripe' AND event_id = $1`, id)
		if n == 1 {
			require.NoError(t, pool.QueryRow(ctx, `SELECT processed_at IS NOT NULL, coalesce(outcome, '') FROM payouts_events WHERE event_id = $1`, id).
				Scan(&processed, &outcome))
		}
		return n, processed, outcome
	}
	eventJobs := func(t *testing.T, id string) int {
		t.Helper()
		return queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'process_payout_event' AND args->>'event_id' = $1`, id)
	}
	entries := func(t *testing.T) int {
		t.Helper()
		return queryInt(t, pool, `SELECT count(*) FROM ledger_entries`)
	}

	t.Run("a signed transfer.created pays a submitted attempt, once", func(t *testing.T) {
		d := submitted(t, "wa", "40.00")
		payload := stripeEvent("evt_created_wa", "transfer.created", v, stripeTransfer("tr_wa", d, 1, 0, false))
		ev := record(t, payload)
		require.Equal(t, payouts.Event{Provider: "stripe", ID: "evt_created_wa", Type: "transfer.created"}, ev)
		n, processed, _ := eventRow(t, ev.ID)
		require.Equal(t, 1, n)
		require.False(t, processed)
		require.Equal(t, 1, eventJobs(t, ev.ID), "recorded with its job")

		require.NoError(t, p.ProcessEvent(ctx, "stripe", ev.ID))
		got, err := p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Paid, got.State)
		paidTotal = paidTotal.Add(got.Amount)
		require.Equal(t, "tr_wa", got.Attempts[0].ProviderRef)
		require.Equal(t, "paid", got.Attempts[0].Outcome)
		last := got.Transitions[len(got.Transitions)-1]
		require.Equal(t, "stripe:evt_created_wa", last.Actor)
		require.Contains(t, last.Reason, "evt_created_wa")
		require.Equal(t, map[string]int{"pending": 1, "commit": 1}, payoutEntries(t, pool, d.ID))
		_, processed, outcome := eventRow(t, ev.ID)
		require.True(t, processed)
		require.Equal(t, fmt.Sprintf("applied to disbursement %s attempt 1", d.ID), outcome)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("wa")))

		// Stripe delivers it again (a retry, or a replay): recorded once, one job, no effect.
		before, transitions := entries(t), len(got.Transitions)
		again := record(t, payload)
		require.True(t, again.Duplicate)
		n, _, _ = eventRow(t, ev.ID)
		require.Equal(t, 1, n)
		require.Equal(t, 1, eventJobs(t, ev.ID), "no second job")
		require.NoError(t, p.ProcessEvent(ctx, "stripe", ev.ID))
		// The same transfer in another event (transfer.updated) changes nothing either.
		deliver(t, stripeEvent("evt_updated_wa", "transfer.updated", v, stripeTransfer("tr_wa", d, 1, 0, false)))
		require.Equal(t, before, entries(t))
		got, err = p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Paid, got.State)
		require.Len(t, got.Transitions, transitions)
	})

	t.Run("a bad signature is refused and records nothing", func(t *testing.T) {
		payload := stripeEvent("evt_bad", "transfer.created", v, map[string]any{"id": "tr_bad", "object": "transfer", "amount": 100, "currency": "usd"})
		_, err := p.RecordStripeEvent(ctx, payload, signStripe(payload, "whsec_wrong"))
		require.ErrorIs(t, err, payouts.ErrBadSignature, "another secret")
		tampered := bytes.Replace(payload, []byte(`"amount":100`), []byte(`"amount":900`), 1)
		require.NotEqual(t, payload, tampered)
		_, err = p.RecordStripeEvent(ctx, tampered, signStripe(payload, testWebhookSecret))
		require.ErrorIs(t, err, payouts.ErrBadSignature, "a body that is not the one signed")
		_, err = p.RecordStripeEvent(ctx, payload, "")
		require.ErrorIs(t, err, payouts.ErrBadSignature, "no signature")
		old := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: testWebhookSecret,
			Timestamp: time.Now().Add(-time.Hour)}).Header
		_, err = p.RecordStripeEvent(ctx, payload, old)
		require.ErrorIs(t, err, payouts.ErrBadSignature, "a signature an hour old (a replay)")
		n, _, _ := eventRow(t, "evt_bad")
		require.Zero(t, n, "nothing in payouts_events")
		require.Zero(t, eventJobs(t, "evt_bad"))
	})

	t.Run("a signature from the future is refused and records nothing", func(t *testing.T) {
		payload := stripeEvent("evt_future", "transfer.created", v, map[string]any{"id": "tr_future", "object": "transfer", "amount": 100, "currency": "usd"})
		future := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: testWebhookSecret,
			Timestamp: time.Now().Add(time.Hour)}).Header
		_, err := p.RecordStripeEvent(ctx, payload, future)
		require.ErrorIs(t, err, payouts.ErrBadSignature, "signed an hour ahead")
		require.ErrorContains(t, err, "ahead of this server's clock")
		n, _, _ := eventRow(t, "evt_future")
		require.Zero(t, n, "nothing in payouts_events")
		require.Zero(t, eventJobs(t, "evt_future"))
		// Within the tolerance (clocks a little apart) it is taken.
		soon := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: testWebhookSecret,
			Timestamp: time.Now().Add(time.Minute)}).Header
		_, err = p.RecordStripeEvent(ctx, payload, soon)
		require.NoError(t, err)
	})

	t.Run("a transfer event that does not fit its payout is refused with the reason", func(t *testing.T) {
		d := paid(t, "we", "20.00")
		ref := d.Attempts[0].ProviderRef
		unpaid := submitted(t, "wf", "15.00")
		before, transitions := entries(t), len(d.Transitions)
		euro := stripeTransfer(ref, d, 1, 2000, true)
		euro["currency"] = "eur"
		larger := stripeTransfer(ref, d, 1, 2000, true)
		larger["amount"] = 9000
		overReversed := stripeTransfer(ref, d, 1, 2500, true)
		otherAmount := stripeTransfer("tr_wf", unpaid, 1, 0, false)
		otherAmount["amount"] = 1400
		for _, c := range []struct {
			id, typ string
			object  map[string]any
			outcome string
		}{
			{"evt_reversed_eur", "transfer.reversed", euro, `currency "EUR", but the disbursement is in USD`},
			{"evt_reversed_larger", "transfer.reversed", larger, "amount 90.00 USD, but the disbursement is 20.00 USD"},
			{"evt_reversed_over", "transfer.reversed", overReversed, "reversed 25.00 USD of a transfer of 20.00 USD"},
			{"evt_created_other_amount", "transfer.created", otherAmount, "amount 14.00 USD, but the disbursement is 15.00 USD"},
		} {
			ev := deliver(t, stripeEvent(c.id, c.typ, v, c.object))
			n, processed, outcome := eventRow(t, ev.ID)
			require.Equal(t, 1, n, c.id)
			require.True(t, processed, c.id)
			require.True(t, strings.HasPrefix(outcome, "refused: transfer "), "%s: %q", c.id, outcome)
			require.Contains(t, outcome, c.outcome, c.id)
		}
		require.Equal(t, before, entries(t), "no ledger effect")
		got, err := p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Paid, got.State)
		require.Len(t, got.Transitions, transitions)
		require.Empty(t, got.Returns)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("we")))
		got, err = p.Get(ctx, unpaid.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Submitted, got.State, "the submitted payout waits for a true answer")
		require.Empty(t, got.Attempts[0].ProviderRef)
		// The true event still applies.
		deliver(t, stripeEvent("evt_created_wf", "transfer.created", v, stripeTransfer("tr_wf", unpaid, 1, 0, false)))
		got, err = p.Get(ctx, unpaid.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Paid, got.State)
		paidTotal = paidTotal.Add(got.Amount)
	})

	t.Run("another API version is refused and records nothing", func(t *testing.T) {
		payload := stripeEvent("evt_old_version", "transfer.created", "2020-08-27", map[string]any{"id": "tr_old", "object": "transfer"})
		_, err := p.RecordStripeEvent(ctx, payload, signStripe(payload, testWebhookSecret))
		require.ErrorIs(t, err, payouts.ErrAPIVersion)
		require.NotErrorIs(t, err, payouts.ErrBadSignature)
		n, _, _ := eventRow(t, "evt_old_version")
		require.Zero(t, n)
		require.Zero(t, eventJobs(t, "evt_old_version"))
	})

	t.Run("a full reversal before the creation fails it; the late creation changes nothing", func(t *testing.T) {
		d := submitted(t, "wb", "30.00")
		requireAmount(t, "-30", pendingOf(t, a, network.WalletAccount("wb")))
		deliver(t, stripeEvent("evt_reversed_wb", "transfer.reversed", v, stripeTransfer("tr_wb", d, 1, 3000, true)))
		got, err := p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Failed, got.State)
		require.Equal(t, "failed", got.Attempts[0].Outcome)
		require.Equal(t, "tr_wb", got.Attempts[0].ProviderRef)
		require.Contains(t, got.Transitions[len(got.Transitions)-1].Reason, "returned in full before it settled")
		require.Equal(t, map[string]int{"pending": 1, "void": 1}, payoutEntries(t, pool, d.ID), "the pending entry voided")
		require.Empty(t, got.Returns)
		requireAmount(t, "30", posted(t, a, network.WalletAccount("wb")), "the money is back in the wallet")
		requireAmount(t, "0", pendingOf(t, a, network.WalletAccount("wb")))

		before, transitions := entries(t), len(got.Transitions)
		ev := deliver(t, stripeEvent("evt_created_wb", "transfer.created", v, stripeTransfer("tr_wb", d, 1, 0, false)))
		_, processed, _ := eventRow(t, ev.ID)
		require.True(t, processed)
		got, err = p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Failed, got.State)
		require.Len(t, got.Transitions, transitions)
		require.Equal(t, before, entries(t))
		require.Equal(t, "failed", got.Attempts[0].Outcome)
	})

	t.Run("a reversal after paid returns the money, once", func(t *testing.T) {
		d := paid(t, "wc", "25.00")
		ref := d.Attempts[0].ProviderRef
		before := entries(t)
		payload := stripeEvent("evt_reversed_wc", "transfer.reversed", v, stripeTransfer(ref, d, 1, 2500, true))
		deliver(t, payload)
		got, err := p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Returned, got.State)
		last := got.Transitions[len(got.Transitions)-1]
		require.Equal(t, "paid→returned", last.From+"→"+last.To)
		require.Contains(t, last.Reason, "the provider returned the payout (")
		require.Contains(t, last.Reason, "evt_reversed_wc")
		require.Contains(t, last.Reason, "it is back in the wallet: retry it (e.g. after a new destination) or cancel it")
		require.Len(t, got.Returns, 1)
		require.Equal(t, 1, got.Returns[0].Attempt)
		require.Equal(t, "25.00", got.Returns[0].Amount)
		require.Contains(t, got.Returns[0].Event, "evt_reversed_wc")
		require.Equal(t, "25.00", got.Attempts[0].Returned)
		require.Equal(t, before+1, entries(t))
		e, err := a.Ledger.Entry(ctx, uuid.MustParse(got.Returns[0].EntryID))
		require.NoError(t, err)
		lines := map[string]string{}
		for _, l := range e.Lines {
			lines[string(l.Side)+" "+l.Account] = l.Amount.StringFixed(2)
		}
		require.Equal(t, map[string]string{"debit " + network.CashAccount("USD"): "25.00", "credit " + network.WalletAccount("wc"): "25.00"}, lines)
		requireAmount(t, "25", posted(t, a, network.WalletAccount("wc")))

		// Replayed, and reported again by a transfer.updated: no second return.
		require.True(t, record(t, payload).Duplicate)
		require.NoError(t, p.ProcessEvent(ctx, "stripe", "evt_reversed_wc"))
		deliver(t, stripeEvent("evt_updated_wc", "transfer.updated", v, stripeTransfer(ref, d, 1, 2500, true)))
		got, err = p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Len(t, got.Returns, 1)
		require.Equal(t, 1, payoutEntries(t, pool, d.ID)["return"])
		require.Equal(t, before+1, entries(t))
		requireAmount(t, "25", posted(t, a, network.WalletAccount("wc")))
		require.Equal(t, payouts.Returned, got.State)

		// Returned in full, it is paid again: a second attempt with a key of its own.
		got, err = p.Retry(ctx, admin, d.ID, "paid again")
		require.NoError(t, err)
		require.Equal(t, payouts.Approved, got.State)
		require.NoError(t, p.Submit(ctx, uuid.MustParse(d.ID)))
		got, err = p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Paid, got.State)
		require.Len(t, got.Attempts, 2)
		require.Equal(t, d.ID+":2", got.Attempts[1].IdempotencyKey)
		require.Equal(t, "paid", got.Attempts[1].Outcome)
		require.True(t, strings.HasPrefix(got.Attempts[1].ProviderRef, "tr_"))
		require.NotEqual(t, ref, got.Attempts[1].ProviderRef)
		paidTotal = paidTotal.Add(got.Amount)
		requireAmount(t, "0", posted(t, a, network.WalletAccount("wc")))
		// A late event about the first transfer changes nothing now.
		transitions := len(got.Transitions)
		deliver(t, stripeEvent("evt_updated_wc_late", "transfer.updated", v, stripeTransfer(ref, d, 1, 2500, true)))
		got, err = p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Paid, got.State)
		require.Len(t, got.Transitions, transitions)
		require.Equal(t, 1, payoutEntries(t, pool, d.ID)["return"])
	})

	t.Run("a partial then a full reversal: two returns summing to the amount", func(t *testing.T) {
		d := paid(t, "wd", "50.00")
		ref := d.Attempts[0].ProviderRef
		deliver(t, stripeEvent("evt_partial_wd", "transfer.reversed", v, stripeTransfer(ref, d, 1, 2000, false)))
		got, err := p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Paid, got.State, "a partial return stays paid")
		require.Len(t, got.Transitions, len(d.Transitions))
		require.Len(t, got.Returns, 1)
		require.Equal(t, "20.00", got.Returns[0].Amount)
		require.Contains(t, got.Returns[0].Event, "evt_partial_wd")
		require.Equal(t, "20.00", got.Attempts[0].Returned)
		require.Equal(t, 1, payoutEntries(t, pool, d.ID)["return"])
		requireAmount(t, "20", posted(t, a, network.WalletAccount("wd")))
		_, err = p.Retry(ctx, admin, d.ID, "")
		require.ErrorIs(t, err, payouts.ErrState, "only a payout returned in full is paid again")
		_, err = p.Cancel(ctx, admin, d.ID, "no")
		require.ErrorIs(t, err, payouts.ErrState, "nor canceled")

		deliver(t, stripeEvent("evt_full_wd", "transfer.reversed", v, stripeTransfer(ref, d, 1, 5000, true)))
		got, err = p.Get(ctx, d.ID)
		require.NoError(t, err)
		require.Equal(t, payouts.Returned, got.State)
		last := got.Transitions[len(got.Transitions)-1]
		require.Equal(t, "paid→returned", last.From+"→"+last.To)
		require.Contains(t, last.Reason, "evt_full_wd")
		require.Len(t, got.Returns, 2)
		require.Equal(t, []string{"20.00", "30.00"}, []string{got.Returns[0].Amount, got.Returns[1].Amount})
		require.Equal(t, "50.00", got.Attempts[0].Returned)
		require.Equal(t, 2, payoutEntries(t, pool, d.ID)["return"])
		requireAmount(t, "50", queryDecimal(t, pool, `SELECT sum(p.amount)::text FROM ledger_postings p JOIN ledger_entries e ON e.id = p.entry_id
			JOIN ledger_accounts a ON a.id = p.account_id WHERE e.idempotency_key LIKE 'payout-return:' || $1 || ':%'
			AND a.code = $2 AND p.side = 'credit' AND p.phase = 'posted'`, d.ID, network.WalletAccount("wd")))
		requireAmount(t, "50", posted(t, a, network.WalletAccount("wd")))

		// The partial one again, late: nothing.
		deliver(t, stripeEvent("evt_partial_wd_late", "transfer.updated", v, stripeTransfer(ref, d, 1, 2000, false)))
		require.Equal(t, 2, payoutEntries(t, pool, d.ID)["return"])
	})

	t.Run("events Tandem has no use for are ignored", func(t *testing.T) {
		before := entries(t)
		for _, c := range []struct {
			id, typ string
			object  map[string]any
			outcome string
		}{
			{"evt_stranger", "transfer.created", map[string]any{"id": "tr_stranger", "object": "transfer", "amount": 999, "currency": "usd", "metadata": map[string]string{}}, "is not Tandem's"},
			{"evt_no_attempt", "transfer.created", map[string]any{"id": "tr_no_attempt", "object": "transfer", "amount": 999, "currency": "usd",
				"metadata": map[string]string{"disbursement_id": uuid.NewString(), "attempt": "1"}}, "names no attempt"},
			{"evt_payout", "payout.paid", map[string]any{"id": "po_1", "object": "payout"}, "does not use payout.paid"},
			{"evt_customer", "customer.created", map[string]any{"id": "cus_1", "object": "customer"}, "does not use customer.created"},
		} {
			ev := deliver(t, stripeEvent(c.id, c.typ, v, c.object))
			n, processed, outcome := eventRow(t, ev.ID)
			require.Equal(t, 1, n, c.id)
			require.True(t, processed, c.id)
			require.True(t, strings.HasPrefix(outcome, "ignored"), "%s: %q", c.id, outcome)
			require.Contains(t, outcome, c.outcome, c.id)
		}
		require.Equal(t, before, entries(t), "no ledger effect")
	})

	requireLedgerClean(t, a, pool, "USD", paidTotal)
}

// TestStripeWebhookOverHTTP delivers a webhook as Stripe does: POST /v1/webhooks/stripe
// with the event as body and its Stripe-Signature, and no bearer token (Stripe has none).
// It is recorded once (200, X-Tandem-Duplicate false, then true); a forged one is 401
// bad-signature and records nothing. Needs no stripe-mock.
func TestStripeWebhookOverHTTP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t, dbtest.Options{MaxConns: 12})
	a := buildApp(t, pool, app.Config{Payouts: app.Payouts{WebhookSecret: testWebhookSecret}})
	srv := httptest.NewServer(api.New(api.Config{Pool: pool, Ledger: a.Ledger, Access: a.Access, Network: a.Network, Payouts: a.Payouts}))
	t.Cleanup(srv.Close)
	post := func(payload []byte, signature string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/webhooks/stripe", bytes.NewReader(payload))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Stripe-Signature", signature)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header, string(body)
	}
	payload := stripeEvent("evt_http_1", "customer.created", payouts.WebhookAPIVersion, map[string]any{"id": "cus_1", "object": "customer"})

	status, header, body := post(payload, signStripe(payload, testWebhookSecret))
	require.Equal(t, http.StatusOK, status, "Stripe's delivery must be accepted on its signature alone: %s", body)
	require.Equal(t, "false", header.Get("X-Tandem-Duplicate"))
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM payouts_events WHERE event_id = 'evt_http_1'`))
	status, header, body = post(payload, signStripe(payload, testWebhookSecret))
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, "true", header.Get("X-Tandem-Duplicate"))
	require.Equal(t, 1, queryInt(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'process_payout_event' AND args->>'event_id' = 'evt_http_1'`))

	forged := stripeEvent("evt_http_forged", "customer.created", payouts.WebhookAPIVersion, map[string]any{"id": "cus_2", "object": "customer"})
	status, _, body = post(forged, signStripe(forged, "whsec_wrong"))
	require.Equal(t, http.StatusUnauthorized, status, body)
	require.Contains(t, body, api.ProblemTypePrefix+"bad-signature")
	require.Zero(t, queryInt(t, pool, `SELECT count(*) FROM payouts_events WHERE event_id = 'evt_http_forged'`))
}
