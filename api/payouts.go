package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

func (s *Server) payoutRoutes() {
	s.handle("POST /v1/disbursements", access.DisbursementCreate, noResource, keyed(s,
		func(n *payouts.NewDisbursement) *string { return &n.IdempotencyKey },
		func(r *http.Request, n payouts.NewDisbursement) (any, error) {
			return s.payouts.Create(r.Context(), by(r), n)
		}))
	s.handle("GET /v1/disbursements/{id}", access.DisbursementRead, s.disbursementInPath, s.getDisbursement)
	s.handle("POST /v1/disbursements/{id}/approve", access.DisbursementApprove, s.disbursementInPath,
		write(s, http.StatusOK, s.approve))
	s.handle("POST /v1/disbursements/{id}/reject", access.DisbursementReject, s.disbursementInPath,
		write(s, http.StatusOK, s.decide((*payouts.Store).Reject)))
	s.handle("POST /v1/disbursements/{id}/retry", access.DisbursementRetry, s.disbursementInPath,
		write(s, http.StatusOK, s.decide((*payouts.Store).Retry)))
	s.handle("POST /v1/disbursements/{id}/cancel", access.DisbursementCancel, s.disbursementInPath,
		write(s, http.StatusOK, s.decide((*payouts.Store).Cancel)))

	s.unownedRoutes()

	s.handle("GET /v1/programs/{id}/payout-policy", access.PayoutPolicyRead, noResource, s.getPayoutPolicy)
	s.handle("POST /v1/programs/{id}/payout-policy", access.PayoutPolicyWrite, noResource, write(s, http.StatusOK, s.setPayoutPolicy))
	s.handle("POST /v1/programs/{id}/stipend-policy", access.PayoutPolicyWrite, noResource, write(s, http.StatusOK, s.setStipendPolicy))
	s.handle("POST /v1/people/{id}/payout-destination", access.DestinationWrite, s.personInPath, write(s, http.StatusOK, s.setDestination))

	s.handle("POST /v1/commitments", access.CommitmentWrite, noResource, keyed(s,
		func(n *payouts.NewCommitment) *string { return &n.IdempotencyKey },
		func(r *http.Request, n payouts.NewCommitment) (any, error) {
			return s.payouts.CreateCommitment(r.Context(), by(r), n)
		}))
	s.handle("GET /v1/commitments", access.CommitmentList, s.personInQuery, s.listCommitments)
	s.handle("POST /v1/commitments/{id}/cancel", access.CommitmentWrite, noResource, write(s, http.StatusOK, s.cancelCommitment))

	s.handle("GET /v1/stipends", access.StipendList, s.coachInQuery, s.listStipends)
	s.handle("POST /v1/stipends/run", access.StipendRun, noResource, write(s, http.StatusOK, s.runStipends))
	s.handle("GET /v1/reports/1099-nec", access.TaxReportRead, noResource, s.necReport)
	s.handle("GET /v1/reconciliations", access.ReconciliationRead, noResource, s.listReconciliations)
	s.handle("POST /v1/reconciliations", access.ReconciliationRun, noResource, write(s, http.StatusCreated, s.reconcile))
	s.handle("POST /v1/payouts/run", access.PayoutsRun, noResource, write(s, http.StatusOK, s.runPayouts))

	// Stripe signs its webhooks; it has no bearer token. The signature is the authentication.
	s.mux.HandleFunc("POST /v1/webhooks/stripe", s.stripeWebhook)
}

// disbursementInPath: the disbursement's person, and who requested it (four eyes).
func (s *Server) disbursementInPath(r *http.Request) access.Resource {
	d, err := s.payouts.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		// No such disbursement: let the handler answer 404 rather than four eyes refuse it.
		return access.Resource{RequestedBy: "(none)"}
	}
	res := s.participantResource(r, d.PersonID)
	res.OwnerRole = ""
	res.RequestedBy = d.RequestedBy
	return res
}

func (s *Server) coachInQuery(r *http.Request) access.Resource {
	coach := r.URL.Query().Get("coach")
	if coach == "" {
		return access.Resource{}
	}
	return access.Resource{Owner: coach, OwnerRole: access.Coach}
}

// keyed answers 201 with what fn creates from a body of type T whose idempotency key (key)
// may also come in the Idempotency-Key header.
func keyed[T any](s *Server, key func(*T) *string, fn func(*http.Request, T) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body T
		if err := decode(r, &body); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		k, err := idempotencyKey(r, *key(&body))
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		*key(&body) = k
		out, err := fn(r, body)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, out)
	}
}

func (s *Server) getDisbursement(w http.ResponseWriter, r *http.Request) {
	d, err := s.payouts.Get(r.Context(), r.PathValue("id"))
	s.reply(w, r, d, err)
}

// reason is the body of reject, retry and cancel.
type reason struct {
	Reason string `json:"reason"`
}

// approval is the body of approve: destination is the payout destination the approver was
// shown (GET /admin/disbursements/{id}, tandem payouts show), required when the person has
// one; Approve refuses it (409) when the person set another since.
type approval struct {
	Reason      string `json:"reason"`
	Destination string `json:"destination"`
}

func (s *Server) approve(r *http.Request, body approval) (any, error) {
	return s.payouts.Approve(r.Context(), by(r), r.PathValue("id"), body.Reason, body.Destination)
}

func (s *Server) decide(fn func(*payouts.Store, context.Context, network.By, string, string) (payouts.Disbursement, error)) func(*http.Request, reason) (any, error) {
	return func(r *http.Request, body reason) (any, error) {
		return fn(s.payouts, r.Context(), by(r), r.PathValue("id"), body.Reason)
	}
}

func (s *Server) getPayoutPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := s.payouts.Policy(r.Context(), r.PathValue("id"))
	s.reply(w, r, p, err)
}

func (s *Server) setPayoutPolicy(r *http.Request, n payouts.NewPolicy) (any, error) {
	return s.payouts.SetPolicy(r.Context(), by(r), r.PathValue("id"), n)
}

type stipendPolicy struct {
	Rate string `json:"rate"`
}

func (s *Server) setStipendPolicy(r *http.Request, body stipendPolicy) (any, error) {
	return s.payouts.SetStipendPolicy(r.Context(), by(r), r.PathValue("id"), body.Rate)
}

type destination struct {
	Account string `json:"account"`
}

func (s *Server) setDestination(r *http.Request, body destination) (any, error) {
	return s.payouts.SetDestination(r.Context(), by(r), r.PathValue("id"), body.Account)
}

func (s *Server) listCommitments(w http.ResponseWriter, r *http.Request) {
	cs, err := s.payouts.Commitments(r.Context(), r.URL.Query().Get("program"), r.URL.Query().Get("person"))
	if cs == nil {
		cs = []payouts.Commitment{}
	}
	s.reply(w, r, map[string]any{"commitments": cs}, err)
}

func (s *Server) cancelCommitment(r *http.Request, body reason) (any, error) {
	return s.payouts.CancelCommitment(r.Context(), by(r), r.PathValue("id"), body.Reason)
}

func (s *Server) listStipends(w http.ResponseWriter, r *http.Request) {
	st, err := s.payouts.Stipends(r.Context(), r.URL.Query().Get("program"), r.URL.Query().Get("coach"))
	if st == nil {
		st = []payouts.Stipend{}
	}
	s.reply(w, r, map[string]any{"stipends": st}, err)
}

type stipendRun struct {
	Month string `json:"month"` // 2026-10
}

func (s *Server) runStipends(r *http.Request, body stipendRun) (any, error) {
	m, err := time.Parse("2006-01", body.Month)
	if err != nil {
		return nil, fmt.Errorf("%w: month: %q is not a month like 2026-10", payouts.ErrInvalid, body.Month)
	}
	st, err := s.payouts.PayStipends(r.Context(), m)
	if st == nil {
		st = []payouts.Stipend{}
	}
	return map[string]any{"stipends": st}, err
}

func (s *Server) necReport(w http.ResponseWriter, r *http.Request) {
	year, err := queryInt(r, "year")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	if year == 0 {
		year = int64(time.Now().Year())
	}
	threshold := decimal.Zero
	if v := r.URL.Query().Get("threshold"); v != "" {
		if threshold, err = ledger.ParseAmount(v, "USD"); err != nil || !threshold.IsPositive() {
			s.writeProblem(w, r, fmt.Errorf("%w: threshold: %q is not a positive USD amount", payouts.ErrInvalid, v))
			return
		}
	}
	lines, used, err := s.payouts.NECReport(r.Context(), int(year), threshold)
	if lines == nil {
		lines = []payouts.NECLine{}
	}
	s.reply(w, r, map[string]any{"year": year, "threshold": ledger.FormatAmount(used, "USD"), "currency": "USD", "payees": lines}, err)
}

func (s *Server) listReconciliations(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	runs, err := s.payouts.Reconciliations(r.Context(), int(limit))
	if runs == nil {
		runs = []payouts.Reconciliation{}
	}
	s.reply(w, r, map[string]any{"reconciliations": runs}, err)
}

type reconcileRequest struct {
	Days int `json:"days"`
}

func (s *Server) reconcile(r *http.Request, body reconcileRequest) (any, error) {
	if body.Days < 0 || body.Days > 400 {
		return nil, fmt.Errorf("%w: days: %d, from 1 to 400 (default 7)", payouts.ErrInvalid, body.Days)
	}
	days := body.Days
	if days == 0 {
		days = 7
	}
	// The run and every change it applies are recorded with their trail lines in the
	// asker's name, each in the transaction that makes it.
	p, _ := principalFrom(r.Context())
	run, err := s.payouts.ReconcileBy(r.Context(), network.By{Principal: p, RequestID: requestID(r.Context())}, time.Now().AddDate(0, 0, -days))
	if err != nil {
		return nil, err
	}
	return run, nil
}

type runRequest struct{}

// runPayouts runs the periodic payouts work now: the sweep and the commitments due.
func (s *Server) runPayouts(r *http.Request, _ runRequest) (any, error) {
	return s.payouts.RunDue(r.Context())
}

// stripeWebhook records a Stripe event once (its processing is a job enqueued in the same
// transaction) and acknowledges it; a bad signature is 401 and records nothing.
func (s *Server) stripeWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	ev, err := s.payouts.RecordStripeEvent(r.Context(), body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		if errors.Is(err, payouts.ErrBadSignature) {
			w.Header().Set("WWW-Authenticate", `Stripe-Signature`)
		}
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("X-Tandem-Duplicate", strconv.FormatBool(ev.Duplicate))
	writeJSON(w, http.StatusOK, map[string]any{"received": true, "event": ev})
}
