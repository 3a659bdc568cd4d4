package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

func (s *Server) networkRoutes() {
	s.handle("POST /v1/programs", access.ProgramCreate, noResource, write(s, http.StatusCreated, s.createProgram))
	s.handle("GET /v1/programs", access.ProgramList, noResource, s.listPrograms)
	s.handle("GET /v1/programs/{id}", access.ProgramRead, noResource, s.getProgram)
	s.handle("POST /v1/programs/{id}/fund", access.ProgramFund, noResource, s.fundProgram)
	s.handle("GET /v1/programs/{id}/metrics", access.ProgramMetrics, noResource, s.programMetrics)
	s.handle("POST /v1/programs/{id}/enrolments", access.EnrolmentWrite, noResource, write(s, http.StatusCreated, s.enrol))
	s.handle("POST /v1/programs/{id}/enrolments/{person}/coach", access.EnrolmentWrite, noResource, write(s, http.StatusOK, s.assignCoach))

	s.handle("POST /v1/people", access.PersonCreate, noResource, write(s, http.StatusCreated, s.addPerson))
	s.handle("GET /v1/people", access.PersonList, noResource, s.listPeople)
	s.handle("GET /v1/people/{id}", access.PersonRead, s.personInPath, s.getPerson)
	s.handle("POST /v1/people/{id}/consent", access.PersonUpdate, noResource, write(s, http.StatusOK, s.recordConsent))
	s.handle("POST /v1/people/{id}/band", access.PersonUpdate, noResource, write(s, http.StatusOK, s.setBand))
	s.handle("POST /v1/people/{id}/roles", access.PersonUpdate, noResource, write(s, http.StatusOK, s.addRole))
	s.handle("POST /v1/people/{id}/tax-form", access.PersonUpdate, noResource, write(s, http.StatusOK, s.recordTaxForm))

	s.handle("POST /v1/connections", access.ConnectionCreate, s.connectionParticipantInBody, write(s, http.StatusCreated, s.connect))
	s.handle("GET /v1/connections", access.ConnectionList, s.participantInQuery, s.listConnections)
	s.handle("POST /v1/connections/{id}/end", access.ConnectionEnd, s.connectionInPath, write(s, http.StatusOK, s.endConnection))
	s.handle("POST /v1/connections/{id}/ratings", access.ConnectionRate, s.connectionInPath, write(s, http.StatusCreated, s.rate))

	s.handle("POST /v1/conversations", access.ConversationCreate, s.connectionInBody, s.logConversation)
	s.handle("POST /v1/conversations/batch", access.ConversationBatch, noResource, s.logConversations)
	s.handle("GET /v1/conversations", access.ConversationList, s.participantInQuery, s.listConversations)
	for _, action := range []string{network.ReviewVerify, network.ReviewUnverify, network.ReviewRetract} {
		s.handle("POST /v1/conversations/{id}/"+action, access.ConversationReview, s.conversationInPath,
			writeOptional(s, http.StatusOK, s.review(action)))
	}

	s.handle("POST /v1/rules", access.RuleWrite, noResource, s.saveRule)
	s.handle("GET /v1/rules", access.RuleRead, noResource, s.listRules)
	s.handle("GET /v1/rules/{program}/{rule}", access.RuleRead, noResource, s.ruleVersions)
	s.handle("POST /v1/rules/{program}/{rule}/retire", access.RuleWrite, noResource, write(s, http.StatusOK, s.retireRule))

	s.handle("GET /v1/participants/{id}/progress", access.ProgressRead, s.personInPath, s.progress)
	s.handle("GET /v1/awards", access.AwardList, s.participantInQuery, s.listAwards)
	s.handle("GET /v1/disbursements", access.DisbursementList, s.personInQuery, s.listDisbursements)
}

// by is the network's author of this request's changes.
func by(r *http.Request) network.By {
	p, _ := principalFrom(r.Context())
	return network.By{Principal: p, RequestID: requestID(r.Context())}
}

// write wraps a handler that decodes a body of type T and returns what to answer.
func write[T any](s *Server, status int, fn func(r *http.Request, body T) (any, error)) http.HandlerFunc {
	return writeWith(s, status, decode, fn)
}

// writeOptional is write for a body whose fields are all optional: no body is {}.
func writeOptional[T any](s *Server, status int, fn func(r *http.Request, body T) (any, error)) http.HandlerFunc {
	return writeWith(s, status, decodeOptional, fn)
}

func writeWith[T any](s *Server, status int, decodeFunc func(*http.Request, any) error, fn func(r *http.Request, body T) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body T
		if err := decodeFunc(r, &body); err != nil {
			s.writeProblem(w, r, err)
			return
		}
		out, err := fn(r, body)
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		writeJSON(w, status, out)
	}
}

// reply answers a read.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// sensitive reports whether the caller may see bands (DESIGN.md §5: admins and auditors).
func sensitive(r *http.Request) bool {
	p, _ := principalFrom(r.Context())
	return p.Role == access.Admin || p.Role == access.Auditor
}

// The resources of network routes: whose participant record a request touches, with their
// coaches, for access.Authorize.

func (s *Server) participantResource(r *http.Request, person string) access.Resource {
	if person == "" {
		return access.Resource{}
	}
	coaches, err := s.network.Coaches(r.Context(), person)
	if err != nil {
		s.logger.ErrorContext(r.Context(), "look up coaches", "person", person, "error", err)
	}
	return access.Resource{Owner: person, OwnerRole: access.Participant, Coaches: coaches}
}

func (s *Server) personInPath(r *http.Request) access.Resource {
	res := s.participantResource(r, r.PathValue("id"))
	res.OwnerRole = "" // a person's own record, whatever their role
	return res
}

func (s *Server) personInQuery(r *http.Request) access.Resource {
	res := s.participantResource(r, r.URL.Query().Get("person"))
	res.OwnerRole = ""
	return res
}

// participantInQuery is a list's participant (?participant=), or a coach's own list
// (?coach=<their id>).
func (s *Server) participantInQuery(r *http.Request) access.Resource {
	q := r.URL.Query()
	if q.Get("participant") == "" && q.Get("coach") != "" {
		return access.Resource{Owner: q.Get("coach"), OwnerRole: access.Coach}
	}
	return s.participantResource(r, q.Get("participant"))
}

func (s *Server) connectionInPath(r *http.Request) access.Resource {
	// An unknown connection is no one's: the handler answers 404 to admins; others are refused.
	return s.connectionResource(r, r.PathValue("id"))
}

func (s *Server) conversationInPath(r *http.Request) access.Resource {
	c, err := s.network.Conversation(r.Context(), r.PathValue("id"))
	if err != nil {
		return access.Resource{}
	}
	return s.participantResource(r, c.ParticipantID)
}

// peekBody reads the body and puts it back for the handler, with the error that ended the
// read (a body over MaxBodyBytes): the handler's decode answers it.
func peekBody(r *http.Request) []byte {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// The body's owner is read by decoding the body into the very type the handler decodes, so
// that both see the same value: encoding/json matches keys case-insensitively and the last
// match wins, which a map lookup would not (a body naming two participants in two spellings).

func (s *Server) connectionParticipantInBody(r *http.Request) access.Resource {
	var nc network.NewConnection
	_ = json.Unmarshal(peekBody(r), &nc)
	return s.participantResource(r, nc.ParticipantID)
}

func (s *Server) connectionInBody(r *http.Request) access.Resource {
	var nc network.NewConversation
	_ = json.Unmarshal(peekBody(r), &nc)
	return s.connectionResource(r, nc.ConnectionID)
}

// connectionResource is the resource of a connection: its participant, with their coaches,
// and its other side.
func (s *Server) connectionResource(r *http.Request, id string) access.Resource {
	c, err := s.network.Connection(r.Context(), id)
	if err != nil {
		return access.Resource{}
	}
	res := s.participantResource(r, c.ParticipantID)
	res.Other = c.OtherID
	return res
}

func (s *Server) createProgram(r *http.Request, np network.NewProgram) (any, error) {
	return s.network.CreateProgram(r.Context(), by(r), np)
}

func (s *Server) listPrograms(w http.ResponseWriter, r *http.Request) {
	ps, err := s.network.Programs(r.Context())
	if ps == nil {
		ps = []network.Program{}
	}
	s.reply(w, r, map[string]any{"programs": ps}, err)
}

func (s *Server) getProgram(w http.ResponseWriter, r *http.Request) {
	p, err := s.network.Program(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	acct, err := s.ledger.Account(r.Context(), p.FundAccount)
	s.reply(w, r, map[string]any{"program": p, "fund": acct.Balance}, err)
}

func (s *Server) fundProgram(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Amount         string `json:"amount"`
		IdempotencyKey string `json:"idempotency_key"`
	}
	if err := decode(r, &body); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	key, err := idempotencyKey(r, body.IdempotencyKey)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	e, err := s.network.Fund(r.Context(), by(r), r.PathValue("id"), body.Amount, key)
	s.writeEntry(w, r, e, err)
}

func (s *Server) programMetrics(w http.ResponseWriter, r *http.Request) {
	m, err := s.network.ProgramMetrics(r.Context(), r.PathValue("id"))
	s.reply(w, r, m, err)
}

type enrolBody struct {
	PersonID string `json:"person_id"`
	CoachID  string `json:"coach_id"`
}

func (s *Server) enrol(r *http.Request, b enrolBody) (any, error) {
	return s.network.Enrol(r.Context(), by(r), r.PathValue("id"), b.PersonID, b.CoachID)
}

func (s *Server) assignCoach(r *http.Request, b enrolBody) (any, error) {
	return s.network.AssignCoach(r.Context(), by(r), r.PathValue("id"), r.PathValue("person"), b.CoachID)
}

func (s *Server) addPerson(r *http.Request, np network.NewPerson) (any, error) {
	return s.network.AddPerson(r.Context(), by(r), np)
}

// redact removes what only admins and auditors may see.
func redact(r *http.Request, p network.Person) network.Person {
	if !sensitive(r) {
		p.Band = ""
	}
	return p
}

func (s *Server) listPeople(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	ps, err := s.network.People(r.Context(), network.PeopleFilter{Role: q.Get("role"), Program: q.Get("program"),
		Coach: q.Get("coach"), After: q.Get("after"), Limit: int(limit)})
	for i := range ps {
		ps[i] = redact(r, ps[i])
	}
	if ps == nil {
		ps = []network.Person{}
	}
	out := map[string]any{"people": ps}
	if len(ps) > 0 {
		out["next_after"] = ps[len(ps)-1].ID
	}
	s.reply(w, r, out, err)
}

func (s *Server) getPerson(w http.ResponseWriter, r *http.Request) {
	p, err := s.network.Person(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	enrolments, err := s.network.Enrolments(r.Context(), p.ID)
	if enrolments == nil {
		enrolments = []network.Enrolment{}
	}
	s.reply(w, r, map[string]any{"person": redact(r, p), "enrolments": enrolments}, err)
}

// consentBody is network.NewConsent as sent: given must be there (true records consent,
// false its withdrawal: a missing value is not taken for either); signed_on defaults to
// today, as on the command line.
type consentBody struct {
	Given    *bool  `json:"given"`
	SignedBy string `json:"signed_by"`
	Guardian bool   `json:"guardian"`
	SignedOn string `json:"signed_on"`
	Scope    string `json:"scope"`
}

func (s *Server) recordConsent(r *http.Request, b consentBody) (any, error) {
	if b.Given == nil {
		return nil, fmt.Errorf("%w: given: required: true records consent, false its withdrawal", network.ErrInvalid)
	}
	if b.SignedOn == "" {
		b.SignedOn = today()
	}
	return s.network.RecordConsent(r.Context(), by(r), r.PathValue("id"), network.NewConsent{Given: *b.Given,
		SignedBy: b.SignedBy, Guardian: b.Guardian, SignedOn: b.SignedOn, Scope: b.Scope})
}

// today is the default date of a consent or a connection, as on the command line.
func today() string { return time.Now().UTC().Format(time.DateOnly) }

type bandBody struct {
	Band   string `json:"band"`
	Reason string `json:"reason"`
}

func (s *Server) setBand(r *http.Request, b bandBody) (any, error) {
	return s.network.SetBand(r.Context(), by(r), r.PathValue("id"), b.Band, b.Reason)
}

type roleBody struct {
	Role string `json:"role"`
}

func (s *Server) addRole(r *http.Request, b roleBody) (any, error) {
	return s.network.AddRole(r.Context(), by(r), r.PathValue("id"), b.Role)
}

type taxFormBody struct {
	OnFile bool `json:"on_file"`
}

func (s *Server) recordTaxForm(r *http.Request, b taxFormBody) (any, error) {
	if !b.OnFile {
		return nil, fmt.Errorf("%w: on_file: send true; a form on file is not taken back", network.ErrInvalid)
	}
	return s.network.RecordTaxForm(r.Context(), by(r), r.PathValue("id"))
}

// connect records a connection; origin defaults to matched and started_on to today, as on
// the command line.
func (s *Server) connect(r *http.Request, nc network.NewConnection) (any, error) {
	if nc.Origin == "" {
		nc.Origin = "matched"
	}
	if nc.StartedOn == "" {
		nc.StartedOn = today()
	}
	c, err := s.network.Connect(r.Context(), by(r), nc)
	return redactConnection(r, c), err
}

func redactConnection(r *http.Request, c network.Connection) network.Connection {
	if !sensitive(r) {
		c.CrossClass = nil
	}
	return c
}

func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	q := r.URL.Query()
	cs, err := s.network.Connections(r.Context(), network.ConnectionFilter{Participant: q.Get("participant"), Coach: q.Get("coach"),
		After: q.Get("after"), Limit: int(limit)})
	for i := range cs {
		cs[i] = redactConnection(r, cs[i])
	}
	if cs == nil {
		cs = []network.Connection{}
	}
	out := map[string]any{"connections": cs}
	if len(cs) > 0 {
		out["next_after"] = cs[len(cs)-1].ID
	}
	s.reply(w, r, out, err)
}

func (s *Server) endConnection(r *http.Request, ec network.EndConnection) (any, error) {
	c, err := s.network.End(r.Context(), by(r), r.PathValue("id"), ec)
	return redactConnection(r, c), err
}

func (s *Server) rate(r *http.Request, nr network.NewRating) (any, error) {
	p, _ := principalFrom(r.Context())
	if p.Role != access.Admin && nr.RaterID != p.PersonID {
		err := fmt.Errorf("%w: you may rate a connection only as yourself (rater_id %q)", access.ErrForbidden, p.PersonID)
		s.deny(r, p, access.ConnectionRate, err)
		return nil, err
	}
	if err := s.network.Rate(r.Context(), by(r), r.PathValue("id"), nr); err != nil {
		return nil, err
	}
	return map[string]any{"connection_id": r.PathValue("id"), "rating": nr}, nil
}

// logConversation logs a conversation. Participants' reports are unverified; a coach of
// the participant or an admin may log it verified.
func (s *Server) logConversation(w http.ResponseWriter, r *http.Request) {
	var nc network.NewConversation
	if err := decode(r, &nc); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	key, err := idempotencyKey(r, nc.IdempotencyKey)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	nc.IdempotencyKey = key
	if nc.Verified {
		p, _ := principalFrom(r.Context())
		if err := access.Authorize(p, access.ConversationReview, s.connectionResource(r, nc.ConnectionID)); err != nil {
			s.deny(r, p, access.ConversationReview, err)
			s.writeProblem(w, r, fmt.Errorf("%w (a self-reported conversation is logged unverified: leave out verified)", err))
			return
		}
	}
	c, err := s.network.LogConversation(r.Context(), by(r), nc)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	status := http.StatusCreated
	if c.Replayed {
		status = http.StatusOK
	}
	writeJSON(w, status, c)
}

// logConversations imports a batch of conversations in one transaction.
func (s *Server) logConversations(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Conversations []network.NewConversation `json:"conversations"`
	}
	if err := decode(r, &body); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	cs, err := s.network.LogConversations(r.Context(), by(r), body.Conversations)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"conversations": cs})
}

func (s *Server) listConversations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	cs, err := s.network.Conversations(r.Context(), network.ConversationFilter{Participant: q.Get("participant"),
		Coach: q.Get("coach"), Status: q.Get("status"), After: q.Get("after"), Limit: int(limit)})
	if cs == nil {
		cs = []network.Conversation{}
	}
	out := map[string]any{"conversations": cs}
	if len(cs) > 0 {
		out["next_after"] = cs[len(cs)-1].ID
	}
	s.reply(w, r, out, err)
}

type reasonBody struct {
	Reason string `json:"reason"`
}

func (s *Server) review(action string) func(r *http.Request, b reasonBody) (any, error) {
	return func(r *http.Request, b reasonBody) (any, error) {
		return s.network.Review(r.Context(), by(r), r.PathValue("id"), action, b.Reason)
	}
}

func (s *Server) saveRule(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ProgramID string          `json:"program_id"`
		Rule      json.RawMessage `json:"rule"`
	}
	if err := decode(r, &body); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	rv, created, err := s.network.SaveRule(r.Context(), by(r), body.ProgramID, body.Rule)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, rv)
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	program := r.URL.Query().Get("program")
	if program == "" {
		s.writeProblem(w, r, fmt.Errorf("%w: program: required (?program=<id>)", network.ErrInvalid))
		return
	}
	rules, err := s.network.Rules(r.Context(), program, r.URL.Query().Get("retired") == "true")
	if rules == nil {
		rules = []network.RuleVersion{}
	}
	s.reply(w, r, map[string]any{"rules": rules}, err)
}

func (s *Server) ruleVersions(w http.ResponseWriter, r *http.Request) {
	vs, err := s.network.RuleVersions(r.Context(), r.PathValue("program"), r.PathValue("rule"))
	s.reply(w, r, map[string]any{"versions": vs}, err)
}

func (s *Server) retireRule(r *http.Request, b reasonBody) (any, error) {
	return s.network.RetireRule(r.Context(), by(r), r.PathValue("program"), r.PathValue("rule"), b.Reason)
}

func (s *Server) progress(w http.ResponseWriter, r *http.Request) {
	p, err := s.network.Progress(r.Context(), r.PathValue("id"))
	if err == nil && !sensitive(r) {
		var banded map[string]map[string]bool
		if banded, err = s.network.BandRules(r.Context(), r.PathValue("id")); err == nil {
			p = redactProgress(p, banded)
		}
	}
	s.reply(w, r, p, err)
}

// Progress of a rule that reveals bands, as participants and coaches see it.
const notYetReached = "not yet reached"

// redactProgress removes what would reveal other people's bands (DESIGN.md §5: admins and
// auditors only) from a participant's or coach's view: with one banded connection, economic
// connectedness is 0 or 2 and names that person's band, and a rule that counts by band
// ("other_band", "cross_class", economic connectedness) moves when only someone else's band
// changes. banded names those rules by program and rule id (network.Store.BandRules). Such a
// rule shows no count, target or due awards: it is met once an award was made under it,
// else "not yet reached"; and its awards carry no evidence (which connections counted).
func redactProgress(p network.ParticipantProgress, banded map[string]map[string]bool) network.ParticipantProgress {
	for i := range p.Programs {
		pp := &p.Programs[i]
		pp.Metrics.EconomicConnectedness = nil
		pp.Metrics.CrossClassShare = nil
		pp.Metrics.Redacted = true
		hidden := func(rule string) bool { return banded[pp.Program.ID][rule] }
		awarded := map[string]bool{}
		for j := range pp.Awards {
			a := &pp.Awards[j]
			awarded[a.RuleID] = true
			if hidden(a.RuleID) || strings.HasPrefix(string(a.Evidence), `["ec=`) {
				a.Evidence = json.RawMessage(`[]`)
			}
		}
		for j := range pp.Rules {
			if pr := &pp.Rules[j]; hidden(pr.RuleID) || pr.Kind == network.CountEconomicConnectedess {
				pr.Count, pr.Target, pr.Due = decimal.Zero, decimal.Zero, nil
				pr.Met, pr.Missing = awarded[pr.RuleID], ""
				if !pr.Met {
					pr.Missing = notYetReached
				}
			}
		}
	}
	return p
}

func (s *Server) listAwards(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	as, err := s.network.Awards(r.Context(), network.AwardFilter{Participant: q.Get("participant"), Coach: q.Get("coach"), Program: q.Get("program"),
		Status: q.Get("status"), Limit: int(limit)})
	if as == nil {
		as = []network.Award{}
	}
	s.reply(w, r, map[string]any{"awards": as}, err)
}

func (s *Server) listDisbursements(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := queryInt(r, "limit")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	ds, err := s.payouts.List(r.Context(), payouts.Filter{State: q.Get("state"), Program: q.Get("program"),
		Person: q.Get("person"), Limit: int(limit)})
	if ds == nil {
		ds = []payouts.Disbursement{}
	}
	s.reply(w, r, map[string]any{"disbursements": ds}, err)
}
