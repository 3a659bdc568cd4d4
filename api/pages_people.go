package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/textfmt"
	"github.com/tandemledger/tandem/ledger"
	"github.com/tandemledger/tandem/network"
	"github.com/tandemledger/tandem/payouts"
)

// The people's pages (DESIGN.md §1, §9): a participant's home — and a coach's own — with the
// wallet, the money on its way, each milestone with its progress, recent conversations and a
// form to log one; and a coach's page with the participants assigned to them, the
// conversations waiting for their verification and their stipends.
//
// Each route authorises like its /v1 twin (the same action on the same resource), and the
// forms change things through the same store calls the JSON handlers use, so the rules are
// the domain packages' alone.
func (s *Server) peoplePages() {
	s.page("GET /me", access.ProgressRead, s.selfResource, s.meHome)
	s.page("POST /me/conversations", access.ConversationCreate, s.connectionInForm, s.meLogConversation)
	s.page("POST /me/destination", access.DestinationWrite, s.selfResource, s.meDestination)
	s.page("GET /coach", access.ConversationList, s.selfAsCoach, s.coachHome)
	for _, action := range []string{network.ReviewVerify, network.ReviewRetract} {
		s.page("POST /coach/conversations/{id}/"+action, access.ConversationReview, s.conversationInPath, s.coachReview(action))
	}
}

// Page resources: the page framework puts the signed-in principal in the request's context.

// selfResource is the signed-in person's own records (/v1/people/{id}: any role they hold).
// A token without a person owns nothing: only admins and auditors get past the policy, and
// the page tells them it has nothing to show.
func (s *Server) selfResource(r *http.Request) access.Resource {
	p, ok := principalFrom(r.Context())
	if !ok || p.PersonID == "" {
		return access.Resource{}
	}
	return access.Resource{Owner: p.PersonID}
}

// selfAsCoach is the signed-in person's records as a coach (/v1/conversations?coach=).
func (s *Server) selfAsCoach(r *http.Request) access.Resource {
	res := s.selfResource(r)
	if res.Owner != "" {
		res.OwnerRole = access.Coach
	}
	return res
}

// connectionInForm is the participant of the form's connection, as connectionInBody is for
// POST /v1/conversations.
func (s *Server) connectionInForm(r *http.Request) access.Resource {
	return s.connectionResource(r, r.PostFormValue("connection_id"))
}

// flashes are the messages a page shows after the change a form made (?flash=…): fixed
// texts, so a link cannot put words on a page.
var flashes = map[string]string{
	"logged":      "Conversation logged. It shows as awaiting verification until your coach verifies it.",
	"replayed":    "That conversation was logged already; it was not counted twice.",
	"destination": "Payout destination updated.",
	"retried":     "Payout destination updated; your failed payouts are being sent there again.",
	"reapproval":  "Payout destination updated; your failed payouts that needed an admin's approval wait for an admin to approve them again for the new account.",
	"verified":    "Conversation verified.",
	"retracted":   "Conversation retracted.",
}

// pageBy is the author of a page's change.
func pageBy(r *http.Request, sess access.Session) network.By {
	return network.By{Principal: sess.Principal, RequestID: requestID(r.Context())}
}

// problemStatus is the status err's problem kind has in the JSON API (500 if none).
func problemStatus(err error) int {
	for _, k := range problemKinds {
		if errors.Is(err, k.err) {
			return k.status
		}
	}
	return http.StatusInternalServerError
}

// known reports whether err is a domain error a page may show in words; others are logged
// and shown by request id only.
func known(err error) bool { return problemStatus(err) != http.StatusInternalServerError }

// Words for the network's vocabularies.
var (
	channelWords  = map[string]string{"in_person": "In person", "video": "Video call", "phone": "Phone call", "message": "Messages"}
	resourceWords = map[string]string{"information": "Information", "advice": "Advice", "introduction": "An introduction",
		"referral": "A referral", "job_offer": "A job offer", "internship": "An internship", "scholarship_lead": "A scholarship lead"}
	roleWords = map[string]string{"mentor": "mentor", "near_peer_coach": "near-peer coach", "peer": "peer", "professional": "professional"}
)

func wordFor(words map[string]string, v string) string {
	if w, ok := words[v]; ok {
		return w
	}
	return strings.ReplaceAll(v, "_", " ")
}

// inCurrency writes an amount with its currency's places and code: "40.00 USD".
func inCurrency(d decimal.Decimal, currency string) string {
	return ledger.Money{Amount: d, Currency: currency}.String()
}

// ---------------------------------------------------------------------------------------
// GET /me

// homeData is what the home page shows.
type homeData struct {
	Name          string
	PersonID      string
	Coach         bool
	Wallets       []walletView
	EmptyWallet   string // "0.00 USD": the figure of a wallet nothing was paid into yet
	Pending       []payView
	OnItsWay      []payView
	NeedsAction   []payView
	History       []payView
	Programs      []programView
	Conversations []conversationView
	Connections   []connectionView
	Form          logForm
	Channels      []choice
	Destination   string
	Provider      string
	DestError     string
	DestAccount   string
}

type choice struct{ Value, Label string }

// walletView is a wallet's card: its balance, and which part of it is not the person's yet.
type walletView struct {
	Label, Balance string
	// Awaiting is the part credited for disbursements no admin approved yet; Room the part
	// waiting for room under the program's caps ("" when none).
	Awaiting, Room string
	// Note says what the rest is: held for the person, some of it being paid out now.
	Note string
}

// payView is a disbursement in words. Next says when it is tried again; Fix links to the
// payout destination form (the person can fix it there).
type payView struct {
	Amount, What, Words, Next, Todo, Detail, When string
	Fix                                           bool
}

type programView struct {
	ID, Name string
	Consent  bool
	Rules    []ruleView
}

type ruleView struct {
	Anchor, Title string
	// Value and Max fill the <progress> element; Max "" leaves it out.
	Value, Max string
	Words      string
	Reached    []string
	Met        bool
}

type conversationView struct {
	When, With, Channel, Resources, Status string
	Minutes                                int
	Verified                               bool
}

type connectionView struct {
	ID, Name, Role, Since, Ended string
	Active                       bool
}

// logForm is the log-a-conversation form with what was typed, and its error.
type logForm struct {
	Key, Connection, When, Channel, Minutes, Note string
	Resources                                     []resourceBox
	Error, Field                                  string
}

type resourceBox struct {
	Value, Label string
	Checked      bool
}

func newLogForm(now time.Time) logForm {
	f := logForm{Key: newFormKey(), When: now.UTC().Format("2006-01-02T15:04"), Channel: "in_person", Minutes: "30"}
	for _, k := range network.ResourceKinds {
		f.Resources = append(f.Resources, resourceBox{Value: k, Label: wordFor(resourceWords, k)})
	}
	return f
}

// newFormKey is the idempotency key a form carries, so that sending it twice (a double click,
// the back button) logs one conversation.
func newFormKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "page:" + hex.EncodeToString(b)
}

func (s *Server) meHome(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	return s.renderHome(w, r, sess, http.StatusOK, newLogForm(time.Now()), flashes[r.URL.Query().Get("flash")], "", "")
}

// noPerson answers a signed-in token that names no person.
func (s *Server) noPerson(w http.ResponseWriter, r *http.Request, sess access.Session, title string) {
	msg := fmt.Sprintf("Your token (%s, role %s) does not name a person, so there is no personal page to show. "+
		"Participants and coaches sign in with a token made for them (tandem token create --person).", sess.Principal.Name, sess.Principal.Role)
	s.renderPage(w, r, http.StatusOK, noPersonContent, pageData{Title: title, Error: msg, CSRF: sess.CSRF,
		Principal: &sess.Principal, Data: homeFor(sess.Principal)})
}

var noPersonContent = newPage(`<p><a href="{{.Data}}">Go to the pages of your role</a></p>`)

// renderHome draws the home page of the signed-in person, with the log form as given and
// the errors of a form that was refused.
func (s *Server) renderHome(w http.ResponseWriter, r *http.Request, sess access.Session, status int, form logForm, flash, destErr, destAccount string) error {
	p := sess.Principal
	if p.PersonID == "" {
		s.noPerson(w, r, sess, "Your home")
		return nil
	}
	ctx := r.Context()
	progress, err := s.network.Progress(ctx, p.PersonID)
	if errors.Is(err, network.ErrNotFound) {
		return fmt.Errorf("%w: your token names person %q, who has no record in Tandem yet; ask an admin to add you", network.ErrNotFound, p.PersonID)
	}
	if err != nil {
		return err
	}
	banded, err := s.network.BandRules(ctx, p.PersonID)
	if err != nil {
		return err
	}
	progress = redactProgress(progress, banded)
	rules, err := s.network.RulesInForce(ctx, p.PersonID)
	if err != nil {
		return err
	}
	pay, err := s.payouts.OfPerson(ctx, p.PersonID, 20)
	if err != nil {
		return err
	}
	convs, err := s.network.RecentConversations(ctx, p.PersonID, 10)
	if err != nil {
		return err
	}
	conns, err := s.network.Connections(ctx, network.ConnectionFilter{Participant: p.PersonID, Limit: 100})
	if err != nil {
		return err
	}
	ids := []string{p.PersonID}
	for _, c := range conns {
		ids = append(ids, c.OtherID)
	}
	for _, c := range convs {
		ids = append(ids, c.OtherID, strings.TrimPrefix(c.ReviewedBy, "person:"))
	}
	names, err := s.network.Names(ctx, ids)
	if err != nil {
		return err
	}
	d := homeData{Name: names[p.PersonID], PersonID: p.PersonID, Coach: p.Role == access.Coach, Form: form,
		Destination: pay.Destination, Provider: pay.Provider, DestError: destErr, DestAccount: destAccount}
	if d.Name == "" {
		d.Name = p.PersonID
	}
	for _, c := range network.Channels {
		d.Channels = append(d.Channels, choice{c, wordFor(channelWords, c)})
	}

	// Wallets: the participant wallet, and a coach's stipend wallet. One not opened yet
	// (nothing was ever paid into it) is left out.
	codes := []struct{ code, label string }{{network.WalletAccount(p.PersonID), "Your wallet"}}
	if p.Role == access.Coach {
		codes = append(codes, struct{ code, label string }{network.CoachWalletAccount(p.PersonID), "Your coach wallet (stipends)"})
	}
	for _, c := range codes {
		a, err := s.ledger.Account(ctx, c.code)
		if errors.Is(err, ledger.ErrAccountNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		d.Wallets = append(d.Wallets, walletOf(c.label, a, pay.AwaitingApproval[c.code], pay.AwaitingRoom[c.code]))
	}

	programs, err := s.network.Programs(ctx)
	if err != nil {
		return err
	}
	programNames := map[string]string{}
	for _, pr := range programs {
		programNames[pr.ID] = pr.Name
	}
	d.EmptyWallet = inCurrency(decimal.Zero, walletCurrency(progress, programs))
	ruleTitles := map[string]string{} // award id → the rule's title
	for _, pp := range progress.Programs {
		pv := programView{ID: pp.Program.ID, Name: pp.Program.Name, Consent: pp.Consent}
		titles := map[string]string{}
		for _, pr := range pp.Rules {
			titles[pr.RuleID] = pr.Title
			pv.Rules = append(pv.Rules, ruleOf(pp, pr, rules[pp.Program.ID][pr.RuleID], banded[pp.Program.ID][pr.RuleID]))
		}
		for _, a := range pp.Awards {
			ruleTitles[a.ID] = titles[a.RuleID]
		}
		d.Programs = append(d.Programs, pv)
	}
	for _, l := range pay.Lines {
		v, group := payOf(l, programNames, ruleTitles, pay.Destination, time.Now())
		switch group {
		case "pending":
			d.Pending = append(d.Pending, v)
		case "on its way":
			d.OnItsWay = append(d.OnItsWay, v)
		case "action":
			d.NeedsAction = append(d.NeedsAction, v)
		default:
			if len(d.History) < 10 {
				d.History = append(d.History, v)
			}
		}
	}
	for _, c := range convs {
		d.Conversations = append(d.Conversations, conversationOf(c, names))
	}
	for _, c := range conns {
		cv := connectionView{ID: c.ID, Name: nameOr(names, c.OtherID), Role: wordFor(roleWords, c.Role),
			Since: c.StartedOn.Format("2 Jan 2006"), Active: c.EndedOn == nil && !c.Retracted}
		switch {
		case c.Retracted:
			cv.Ended = "retracted"
		case c.EndedOn != nil:
			cv.Ended = "ended " + c.EndedOn.Format("2 Jan 2006")
		}
		d.Connections = append(d.Connections, cv)
	}
	if d.Form.Connection == "" {
		for _, c := range d.Connections {
			if c.Active {
				d.Form.Connection = c.ID
				break
			}
		}
	}
	s.renderPage(w, r, status, homeContent, pageData{Title: "Your home", Flash: flash, CSRF: sess.CSRF, Principal: &sess.Principal,
		Nav: navFor(&sess.Principal, "/me"), Data: d})
	return nil
}

// programNames are the names of the programs, by id: a person may be paid by a program they
// are not enrolled in (a coach's stipend).
func (s *Server) programNames(r *http.Request) (map[string]string, error) {
	ps, err := s.network.Programs(r.Context())
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ps))
	for _, p := range ps {
		out[p.ID] = p.Name
	}
	return out, nil
}

// walletOf is a wallet's card. The balance counts money credited for disbursements that still
// await an admin's approval (taken back if rejected): the card says how much, so that only
// the rest reads as the person's.
func walletOf(label string, a ledger.Account, awaiting, room decimal.Decimal) walletView {
	wv := walletView{Label: label, Balance: inCurrency(a.Balance.Posted, a.Currency)}
	if awaiting.IsPositive() {
		wv.Awaiting = inCurrency(awaiting, a.Currency)
	}
	if room.IsPositive() {
		wv.Room = inCurrency(room, a.Currency)
	}
	switch yours := a.Balance.Posted.Sub(awaiting).Sub(room); {
	case yours.IsPositive():
		wv.Note = inCurrency(yours, a.Currency) + " is held for you until it is paid out"
		if held := a.Balance.Posted.Sub(a.Balance.Available); held.IsPositive() {
			wv.Note += "; " + inCurrency(held, a.Currency) + " of it is being paid out now"
		}
		wv.Note += "."
	case a.Balance.Posted.IsZero():
		wv.Note = "Nothing is in it right now."
	}
	return wv
}

// walletCurrency is the currency of a wallet nothing was paid into yet: that of the programs
// the person is enrolled in, else (a coach) of the programs there are, else USD.
func walletCurrency(p network.ParticipantProgress, programs []network.Program) string {
	for _, pp := range p.Programs {
		if pp.Program.Currency != "" {
			return pp.Program.Currency
		}
	}
	for _, pr := range programs {
		if pr.Currency != "" {
			return pr.Currency
		}
	}
	return "USD"
}

func nameOr(names map[string]string, id string) string {
	if n := names[id]; n != "" {
		return n
	}
	return id
}

// ruleOf puts a rule's progress in words: "2 of 4 verified mentor conversations within 60
// days", and for each award made "Reached on 12 Oct 2026 — 50.00 USD". A rule that counts by
// band (hidden: see redactProgress) shows its awards only, or "Not yet reached.": no count,
// no progress bar, nothing that moves with someone else's band.
func ruleOf(pp network.ProgramProgress, pr network.Progress, rule network.Rule, hidden bool) ruleView {
	v := ruleView{Anchor: "rule-" + pp.Program.ID + "-" + pr.RuleID, Title: pr.Title, Met: pr.Met}
	noun := network.Noun(rule)
	window := ""
	if rule.WithinDays > 0 {
		window = " within " + textfmt.Days(rule.WithinDays)
	}
	count, target := pr.Count, pr.Target
	switch {
	case hidden || pr.Kind == network.CountEconomicConnectedess:
		// Redacted for participants and coaches: the awards below, if any, and nothing else.
		if !slices.ContainsFunc(pp.Awards, func(a network.Award) bool { return a.RuleID == pr.RuleID }) {
			v.Words = "Not yet reached."
		}
		count, target = decimal.Zero, decimal.Zero
	case rule.Repeat == network.RepeatMonthly:
		v.Value, v.Max = count.String(), target.String()
		v.Words = fmt.Sprintf("%s of %s %s in %s", count, target, noun, time.Now().UTC().Format("January 2006"))
		if strings.HasPrefix(pr.Missing, "cap reached") {
			v.Words += " — " + pr.Missing
		} else if left := target.Sub(count); left.IsPositive() {
			v.Words += fmt.Sprintf(" — %s more to go this month", left)
		}
		v.Words += "."
	case rule.Repeat == network.RepeatEach:
		v.Words = fmt.Sprintf("%s %s so far; one award for every %s%s", count, noun, target, window)
		if pr.Missing != "" {
			v.Words += " — " + pr.Missing
		}
		v.Words += "."
	default:
		if pr.Met {
			count = target
		}
		v.Value, v.Max = count.String(), target.String()
		v.Words = fmt.Sprintf("%s of %s %s%s", count, target, noun, window)
		if left := target.Sub(count); left.IsPositive() {
			v.Words += fmt.Sprintf(" — %s more to go", left)
		}
		v.Words += "."
	}
	if count.GreaterThan(target) {
		v.Value = target.String()
	}
	for _, a := range pp.Awards {
		if a.RuleID != pr.RuleID {
			continue
		}
		line := fmt.Sprintf("Reached on %s — %s", a.ReachedAt.UTC().Format("2 Jan 2006"), inCurrency(a.Amount, a.Currency))
		if a.Status == network.AwardInsufficientFunds {
			line += ", waiting for the program to be funded"
		}
		v.Reached = append(v.Reached, line)
	}
	if pr.Met && len(v.Reached) == 0 {
		v.Reached = append(v.Reached, "Reached — the award is being made.")
	}
	return v
}

// payOf puts a disbursement in words, and says which list it belongs to: pending (not
// approved yet, or waiting for funds), on its way, needing the person's action, or history.
// Participants read it: no provider codes or machine times as the main text, and no
// administrator's internal reason.
func payOf(l payouts.Line, programs, rules map[string]string, dest string, now time.Time) (payView, string) {
	v := payView{Amount: inCurrency(l.Amount, l.Currency), When: l.UpdatedAt.UTC().Format("2 Jan 2006")}
	switch l.Source {
	case "award":
		v.What = "Milestone award"
		if t := rules[l.AwardID]; t != "" {
			v.What += ": " + t
		}
	case "stipend":
		v.What = "Coach stipend"
	case "commitment":
		v.What = "Scheduled payment"
	default:
		v.What = "Grant"
		if l.Reason != "" {
			v.What += ": " + l.Reason
		}
	}
	if name := programs[l.ProgramID]; name != "" {
		v.What += " (" + name + ")"
	}
	to := l.SentTo
	if to == "" {
		to = dest
	}
	switch l.State {
	case payouts.AwaitingApproval:
		switch {
		case l.ApprovalsNeeded > 1:
			v.Words = "waiting for the approval of two admins"
		case l.ApprovalsNeeded == 1:
			v.Words = "waiting for an admin's approval"
		default:
			v.Words = "waiting until the program's monthly or yearly limit per person has room for it"
		}
		return v, "pending"
	case payouts.InsufficientFunds:
		v.Words = "waiting for the program to be funded"
		return v, "pending"
	case payouts.Approved:
		v.Words = "approved, being sent to " + to
		if to == "" {
			v.Words = "approved; it is sent once you set a payout destination"
		}
		return v, "on its way"
	case payouts.Submitted:
		v.Words = "sent to " + to + ", waiting for the payment provider to confirm"
		return v, "on its way"
	case payouts.Failed:
		failedOf(&v, l, to, now)
		return v, "action"
	case payouts.Returned:
		v.Words = "the payment provider sent it back; the money is back in your wallet"
		v.Todo = "Check your payout destination below, then ask your program to send it again."
		v.Fix = true
		return v, "action"
	case payouts.Paid:
		v.Words = "paid to " + to + " on " + v.When
	case payouts.Rejected:
		v.Words = "not paid. An administrator declined this payment; ask your program for the reason"
	case payouts.Canceled:
		v.Words = "not paid. An administrator canceled this payment; ask your program for the reason"
	case payouts.Forfeited:
		v.Words = "not paid: the failed payout was not fixed in time and went back to the program's fund"
	default:
		v.Words = strings.ReplaceAll(l.State, "_", " ")
	}
	return v, "history"
}

// humanTime writes a moment for people: "3 May 2026 at 14:30 UTC".
func humanTime(t time.Time) string { return t.UTC().Format("2 Jan 2006 at 15:04") + " UTC" }

// failedOf says what happened to a failed payout, whose side it is on, when it is tried
// again, what the person can do and when the money goes back to the fund.
func failedOf(v *payView, l payouts.Line, to string, now time.Time) {
	switch l.Cause {
	case payouts.CauseNoDestination:
		v.Words = "it could not be sent: you have no payout account on file"
		v.Todo = "Add your payout account below: the payment is sent there at once."
		v.Fix = true
	case payouts.CauseDestination:
		v.Words = "the payment to " + to + " did not go through: the receiving account did not accept it"
		v.Todo = "If your payout account has changed or was closed, update it below: the payment is sent there again at once."
		v.Fix = true
		if l.Failure != "" {
			v.Detail = "the payment provider gave this reason: “" + l.Failure + "”."
		}
	default:
		v.Words = "it could not be sent because of a problem on the program's side, not with your payout account"
		v.Todo = "There is nothing for you to fix; ask your program if it is not paid soon."
	}
	switch {
	case l.NextRetryAt != nil && l.NextRetryAt.After(now):
		v.Next = "We will try again automatically on " + humanTime(*l.NextRetryAt) + "."
	case l.NextRetryAt != nil:
		v.Next = "We are trying again automatically now."
	default:
		v.Next = "No more automatic tries are left."
	}
	if l.ForfeitAt != nil {
		if l.NextRetryAt != nil {
			v.Todo += " The money stays yours at least until " + humanTime(*l.ForfeitAt) + "; left unpaid, it then goes back to the program's fund."
		} else {
			v.Todo += " If it is not paid by " + humanTime(*l.ForfeitAt) + ", the money goes back to the program's fund."
		}
	}
}

func conversationOf(c network.Conversation, names map[string]string) conversationView {
	v := conversationView{When: c.OccurredAt.UTC().Format("2 Jan 2006, 15:04"),
		With:    nameOr(names, c.OtherID) + " (" + wordFor(roleWords, c.Role) + ")",
		Channel: wordFor(channelWords, c.Channel), Minutes: c.Minutes, Resources: "nothing noted"}
	if len(c.Resources) > 0 {
		rs := make([]string, len(c.Resources))
		for i, k := range c.Resources {
			rs[i] = wordFor(resourceWords, k)
		}
		v.Resources = strings.Join(rs, ", ")
	}
	switch c.Status {
	case "verified":
		v.Verified = true
		v.Status = "Verified"
		if who := strings.TrimPrefix(c.ReviewedBy, "person:"); who != c.ReviewedBy {
			v.Status += " by " + nameOr(names, who)
		}
		if c.ReviewedAt != nil {
			v.Status += " on " + c.ReviewedAt.UTC().Format("2 Jan 2006")
		}
	case "retracted":
		v.Status = "Retracted"
	default:
		v.Status = "Awaiting verification"
	}
	return v
}

// ---------------------------------------------------------------------------------------
// POST /me/conversations

// fieldWords name the conversation's fields as the form labels them.
var fieldWords = map[string]string{"connection_id": "Who", "occurred_at": "When", "channel": "How", "minutes": "Minutes",
	"resources": "What it brought you", "note": "Note", "idempotency_key": "The form"}

// meLogConversation logs a conversation from the home page's form through the same store
// call as POST /v1/conversations: self-reported, so unverified.
func (s *Server) meLogConversation(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	f := r.PostForm
	form := logForm{Key: f.Get("key"), Connection: f.Get("connection_id"), When: f.Get("occurred_at"), Channel: f.Get("channel"),
		Minutes: f.Get("minutes"), Note: f.Get("note")}
	for _, k := range network.ResourceKinds {
		form.Resources = append(form.Resources, resourceBox{Value: k, Label: wordFor(resourceWords, k), Checked: slices.Contains(f["resources"], k)})
	}
	if form.Key == "" {
		form.Key = newFormKey()
	}
	refuse := func(status int, field, msg string) error {
		form.Field, form.Error = field, msg
		return s.renderHome(w, r, sess, status, form, "", "", "")
	}
	nc := network.NewConversation{ConnectionID: form.Connection, Channel: form.Channel, Resources: f["resources"],
		Note: strings.TrimSpace(form.Note), IdempotencyKey: form.Key}
	var err error
	if nc.OccurredAt, err = parseFormTime(form.When); err != nil {
		return refuse(http.StatusUnprocessableEntity, "occurred_at", "When: give the date and time it happened (UTC), e.g. 2026-05-10 14:30.")
	}
	if nc.Minutes, err = strconv.Atoi(strings.TrimSpace(form.Minutes)); err != nil {
		return refuse(http.StatusUnprocessableEntity, "minutes", "Minutes: give a whole number of minutes, from 1 to 1440.")
	}
	c, err := s.network.LogConversation(r.Context(), pageBy(r, sess), nc)
	if err != nil {
		if !known(err) {
			return err
		}
		field, msg := formError(err)
		return refuse(problemStatus(err), field, msg)
	}
	flash := "logged"
	if c.Replayed {
		flash = "replayed"
	}
	http.Redirect(w, r, "/me?flash="+flash, http.StatusSeeOther)
	return nil
}

// parseFormTime reads a datetime-local value ("2026-05-10T14:30"), as UTC.
func parseFormTime(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not a date and time")
}

// formError says a refusal in the form's words: "Minutes: 0: from 1 to 1440", with the field
// it is about.
func formError(err error) (field, msg string) {
	detail := err.Error()
	switch {
	case errors.Is(err, network.ErrInvalid):
		detail = strings.TrimPrefix(detail, network.ErrInvalid.Error()+": ")
		if f, rest, ok := strings.Cut(detail, ": "); ok {
			if label, ok := fieldWords[f]; ok {
				if f == "occurred_at" && strings.Contains(rest, "in the future") {
					rest = "that is in the future (times are UTC; it is now " + time.Now().UTC().Format("15:04") + " UTC)"
				}
				return f, label + ": " + rest + "."
			}
		}
	case errors.Is(err, network.ErrNotFound):
		return "connection_id", "Who: pick one of your connections."
	case errors.Is(err, network.ErrRetracted):
		return "connection_id", "Who: that connection was retracted; pick another."
	case errors.Is(err, network.ErrNoConsent):
		return "", "No consent is on file for you, so no conversation can be recorded yet; ask your program to record it."
	case errors.Is(err, network.ErrIdempotencyConflict):
		return "", "This form was sent before with other values. Reload the page to log another conversation."
	}
	return "", detail
}

// ---------------------------------------------------------------------------------------
// POST /me/destination

// meDestination sets where the signed-in person is paid, as POST
// /v1/people/{id}/payout-destination does; their failed payouts are sent there again.
func (s *Server) meDestination(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	account := strings.TrimSpace(r.PostFormValue("account"))
	if sess.Principal.PersonID == "" {
		s.noPerson(w, r, sess, "Your home")
		return nil
	}
	dest, err := s.payouts.SetDestination(r.Context(), pageBy(r, sess), sess.Principal.PersonID, account)
	if err != nil {
		if !known(err) {
			return err
		}
		msg := err.Error()
		switch {
		case errors.Is(err, payouts.ErrInvalid) && strings.Contains(msg, "payouts_destinations_account"):
			msg = "Payout account: use letters, digits and _ : . - only, at most 200 characters."
		case errors.Is(err, payouts.ErrInvalid):
			msg = "Payout account: " + strings.TrimPrefix(strings.TrimPrefix(msg, payouts.ErrInvalid.Error()+": "), "account: ") + "."
		}
		return s.renderHome(w, r, sess, problemStatus(err), newLogForm(time.Now()), "", msg, account)
	}
	flash := "destination"
	switch {
	case len(dest.Reapproval) > 0:
		flash = "reapproval"
	case len(dest.Retried) > 0:
		flash = "retried"
	}
	http.Redirect(w, r, "/me?flash="+flash, http.StatusSeeOther)
	return nil
}

var homeContent = newPage(`{{with .Data}}<p>Hello, {{.Name}}.{{if .Coach}} Your participants are on <a href="/coach">your coach page</a>.{{end}}</p>

<section aria-labelledby="money"><h2 id="money">Your money</h2>
<div class="cards">
{{range .Wallets}}<div class="card"><div>{{.Label}}</div><div class="figure">{{.Balance}}</div>
{{- if .Awaiting}}<div><strong>{{.Awaiting}} of it awaits an admin's approval</strong>: it is yours once approved, and goes back to the program if declined.</div>{{end}}
{{- if .Room}}<div><strong>{{.Room}} of it waits for room under the program's monthly or yearly limit per person</strong>.</div>{{end}}
{{- if .Note}}<div class="muted">{{.Note}}</div>{{end}}</div>
{{else}}<div class="card"><div>Your wallet</div><div class="figure">{{.EmptyWallet}}</div><div class="muted">Nothing has been paid into it yet.</div></div>{{end}}
</div>
{{if .NeedsAction}}<h3>Needs your action</h3>
<ul>{{range .NeedsAction}}<li><p class="error"><strong>{{.Amount}}</strong> — {{.What}}: {{.Words}}.</p>
{{if .Next}}<p>{{.Next}}</p>{{end}}<p>What to do: {{.Todo}}{{if .Fix}} <a href="#destination">Go to your payout destination</a>.{{end}}</p>{{if .Detail}}<p class="muted">Details: {{.Detail}}</p>{{end}}</li>{{end}}</ul>{{end}}
{{if .Pending}}<h3>Pending</h3>
<p class="muted">Not approved or not funded yet: not on its way until it is.</p>
<ul>{{range .Pending}}<li><strong>{{.Amount}}</strong> — {{.Words}}. <span class="muted">{{.What}}</span></li>{{end}}</ul>{{end}}
<h3>On its way to you</h3>
{{if .OnItsWay}}<ul>{{range .OnItsWay}}<li><strong>{{.Amount}}</strong> — {{.Words}}. <span class="muted">{{.What}}</span></li>{{end}}</ul>
{{else}}<p>Nothing is on its way right now.</p>{{end}}
<h3>Paid and closed</h3>
{{if .History}}<ul>{{range .History}}<li><strong>{{.Amount}}</strong> — {{.Words}}. <span class="muted">{{.What}}</span></li>{{end}}</ul>
{{else}}<p>No payouts yet.</p>{{end}}
</section>

<section aria-labelledby="milestones"><h2 id="milestones">Your milestones</h2>
{{range .Programs}}<h3>{{.Name}}</h3>
{{if not .Consent}}<p class="error">No consent is on file for you in Tandem, so no award can be paid yet.</p>{{end}}
{{range .Rules}}<div class="card">
<h4 id="{{.Anchor}}">{{.Title}}</h4>
{{if .Max}}<progress value="{{.Value}}" max="{{.Max}}" aria-labelledby="{{.Anchor}}" aria-describedby="{{.Anchor}}-words">{{.Value}} of {{.Max}}</progress>{{end}}
{{if .Words}}<p id="{{.Anchor}}-words">{{.Words}}</p>{{end}}
{{range .Reached}}<p><strong>{{.}}</strong></p>{{end}}
</div>
{{else}}<p>This program has no milestones yet.</p>{{end}}
{{else}}<p>You are not enrolled in a program yet.</p>{{end}}
</section>

<section aria-labelledby="log"><h2 id="log">Log a conversation</h2>
{{$active := false}}{{range .Connections}}{{if .Active}}{{$active = true}}{{end}}{{end}}
{{if $active}}{{with .Form}}
<p class="muted">What you log is self-reported: it counts toward your milestones once your coach verifies it.</p>
{{if .Error}}<p class="error" role="alert" id="log-error">{{.Error}}</p>{{end}}
<form method="post" action="/me/conversations" id="log-form">
<input type="hidden" name="csrf" value="{{$.CSRF}}">
<input type="hidden" name="key" value="{{.Key}}">
<label for="connection_id">Who did you talk with?</label>
<select id="connection_id" name="connection_id" required{{if eq .Field "connection_id"}} aria-invalid="true" aria-describedby="log-error"{{end}}>
{{$sel := .Connection}}{{range $.Data.Connections}}{{if .Active}}<option value="{{.ID}}"{{if eq .ID $sel}} selected{{end}}>{{.Name}} ({{.Role}})</option>{{end}}{{end}}
</select>
<label for="occurred_at">When (UTC)</label>
<input id="occurred_at" name="occurred_at" type="datetime-local" required value="{{.When}}"{{if eq .Field "occurred_at"}} aria-invalid="true" aria-describedby="log-error"{{end}}>
<label for="channel">How</label>
<select id="channel" name="channel"{{if eq .Field "channel"}} aria-invalid="true" aria-describedby="log-error"{{end}}>
{{$ch := .Channel}}{{range $.Data.Channels}}<option value="{{.Value}}"{{if eq .Value $ch}} selected{{end}}>{{.Label}}</option>{{end}}
</select>
<label for="minutes">Minutes</label>
<input id="minutes" name="minutes" type="number" min="1" max="1440" inputmode="numeric" required value="{{.Minutes}}"{{if eq .Field "minutes"}} aria-invalid="true" aria-describedby="log-error"{{end}}>
<fieldset{{if eq .Field "resources"}} aria-invalid="true" aria-describedby="log-error"{{end}}><legend>What did it bring you? (optional)</legend>
{{range .Resources}}<label><input type="checkbox" name="resources" value="{{.Value}}"{{if .Checked}} checked{{end}}> {{.Label}}</label>
{{end}}</fieldset>
<label for="note">Note (optional)</label>
<textarea id="note" name="note" rows="3" maxlength="2000"{{if eq .Field "note"}} aria-invalid="true" aria-describedby="log-error"{{end}}>{{.Note}}</textarea>
<button>Log conversation</button>
</form>{{end}}
{{else}}<p>You have no active connections yet; your coach records them with you.</p>{{end}}
</section>

<section aria-labelledby="conversations"><h2 id="conversations">Your recent conversations</h2>
{{if .Conversations}}<ul id="conversation-list">{{range .Conversations}}<li><strong>{{.Status}}</strong> — {{.When}} UTC with {{.With}}; {{.Channel}}, {{.Minutes}} min; brought: {{.Resources}}.</li>
{{end}}</ul>{{else}}<p>No conversations logged yet.</p>{{end}}
</section>

<section aria-labelledby="connections"><h2 id="connections">Your connections</h2>
{{if .Connections}}<div class="table-wrap"><table>
<thead><tr><th scope="col">Who</th><th scope="col">Role</th><th scope="col">Since</th><th scope="col">Status</th></tr></thead>
<tbody>{{range .Connections}}<tr><th scope="row">{{.Name}}</th><td>{{.Role}}</td><td>{{.Since}}</td><td>{{if .Active}}active{{else}}{{.Ended}}{{end}}</td></tr>{{end}}</tbody>
</table></div>{{else}}<p>No connections yet.</p>{{end}}
</section>

<section aria-labelledby="destination"><h2 id="destination">Where your money is paid</h2>
{{if .Destination}}<p>Payouts go to <strong>{{.Destination}}</strong> ({{.Provider}}).</p>{{else}}<p>You have no payout account with {{.Provider}} on file yet: payouts wait until you add one.</p>{{end}}
{{if .DestError}}<p class="error" role="alert" id="dest-error">{{.DestError}}</p>{{end}}
<form method="post" action="/me/destination">
<input type="hidden" name="csrf" value="{{$.CSRF}}">
<label for="account">New payout account</label>
<input id="account" name="account" type="text" required maxlength="200" autocomplete="off" value="{{.DestAccount}}" aria-describedby="account-help{{if .DestError}} dest-error{{end}}"{{if .DestError}} aria-invalid="true"{{end}}>
<p class="muted" id="account-help">{{if eq .Provider "stripe"}}Your Stripe connected account id, starting with acct_.{{else}}The account to pay (sandbox).{{end}} Failed payouts are sent to the new account again.</p>
<button>Update payout destination</button>
</form>
</section>{{end}}`)

// ---------------------------------------------------------------------------------------
// GET /coach

type coachData struct {
	Roster    []rosterView
	Queue     []queueView // conversations the coach may verify
	QueueFull bool
	// Party are the conversations the coach took part in: another coach or an admin
	// verifies them (four eyes).
	Party     []queueView
	PartyFull bool
	Stipends  []stipendView
}

type rosterView struct {
	Name, Program, Milestones, Conversations, Last string
}

type queueView struct {
	ID, Participant, With, When, Channel, Resources, ReportedBy, Label string
	Minutes                                                            int
	CSRF                                                               string // for its forms
}

type stipendView struct {
	Program, Month, Rate, Amount, Status string
	Sessions                             int
	Held                                 bool
}

// queueLimit bounds the conversations listed for verification on one page.
const queueLimit = 100

func (s *Server) coachHome(w http.ResponseWriter, r *http.Request, sess access.Session) error {
	return s.renderCoach(w, r, sess, http.StatusOK, flashes[r.URL.Query().Get("flash")], "")
}

func (s *Server) renderCoach(w http.ResponseWriter, r *http.Request, sess access.Session, status int, flash, errMsg string) error {
	p := sess.Principal
	if p.PersonID == "" {
		s.noPerson(w, r, sess, "Your participants")
		return nil
	}
	ctx := r.Context()
	roster, err := s.network.Roster(ctx, p.PersonID)
	if err != nil {
		return err
	}
	queue, party, err := s.network.CoachQueue(ctx, p.PersonID, queueLimit)
	if err != nil {
		return err
	}
	stipends, err := s.payouts.Stipends(ctx, "", p.PersonID)
	if err != nil {
		return err
	}
	programs, err := s.programNames(r)
	if err != nil {
		return err
	}
	var ids []string
	for _, c := range slices.Concat(queue, party) {
		ids = append(ids, c.ParticipantID, c.OtherID, strings.TrimPrefix(c.ReportedBy, "person:"))
	}
	names, err := s.network.Names(ctx, ids)
	if err != nil {
		return err
	}
	d := coachData{QueueFull: len(queue) == queueLimit, PartyFull: len(party) == queueLimit}
	for _, l := range roster {
		rv := rosterView{Name: l.ParticipantName, Program: l.ProgramName,
			Milestones:    fmt.Sprintf("%d of %d", l.Reached, l.Rules),
			Conversations: fmt.Sprintf("%d verified, %d awaiting verification", l.Verified, l.Awaiting), Last: "none yet"}
		if l.Last != nil {
			status := l.Last.Status
			if status == "unverified" {
				status = "awaiting verification"
			}
			rv.Last = fmt.Sprintf("%s with %s (%s), %s", l.Last.OccurredAt.UTC().Format("2 Jan 2006"), l.Last.OtherName,
				wordFor(roleWords, l.Last.Role), status)
		}
		d.Roster = append(d.Roster, rv)
	}
	for _, c := range queue {
		d.Queue = append(d.Queue, queueOf(c, names, sess.CSRF))
	}
	for _, c := range party {
		d.Party = append(d.Party, queueOf(c, names, sess.CSRF))
	}
	for _, st := range stipends {
		sv := stipendView{Program: nameOr(programs, st.Program), Month: st.Month, Sessions: st.Sessions, Rate: st.Rate + " " + st.Currency,
			Amount: st.Amount + " " + st.Currency, Held: st.Status != "paid"}
		if m, err := time.Parse("2006-01", st.Month); err == nil {
			sv.Month = m.Format("January 2006")
		}
		switch {
		case st.Status == "paid" && st.PaidAt != nil:
			sv.Status = "Paid into your coach wallet on " + st.PaidAt.UTC().Format("2 Jan 2006")
		case st.Status == "paid":
			sv.Status = "Paid into your coach wallet"
		default:
			reason := strings.TrimPrefix(st.Reason, "held: ")
			sv.Status = "Held: " + reason
		}
		d.Stipends = append(d.Stipends, sv)
	}
	s.renderPage(w, r, status, coachContent, pageData{Title: "Your participants", Flash: flash, Error: errMsg, CSRF: sess.CSRF,
		Principal: &sess.Principal, Nav: navFor(&sess.Principal, "/coach"), Data: d})
	return nil
}

// queueOf is a conversation on the coach's queue.
func queueOf(c network.Conversation, names map[string]string, csrf string) queueView {
	cv := conversationOf(c, names)
	q := queueView{ID: c.ID, Participant: nameOr(names, c.ParticipantID), With: cv.With, When: cv.When, Channel: cv.Channel,
		Resources: cv.Resources, Minutes: c.Minutes, ReportedBy: reporterOf(c.ReportedBy, names), CSRF: csrf}
	q.Label = fmt.Sprintf("%s's conversation with %s on %s", q.Participant, nameOr(names, c.OtherID), c.OccurredAt.UTC().Format("2 Jan 2006"))
	return q
}

// reporterOf names who reported a conversation: a person by name; a token without a person
// (only admins write with one) or the command line as an administrator; a job as an
// automatic import. Token and job ids mean nothing to a coach.
func reporterOf(by string, names map[string]string) string {
	if who, ok := strings.CutPrefix(by, "person:"); ok {
		return nameOr(names, who)
	}
	if strings.HasPrefix(by, "job:") {
		return "an automatic import"
	}
	return "an administrator"
}

// coachReview verifies or retracts a conversation from the coach's page, through the same
// store call as POST /v1/conversations/{id}/{action}.
func (s *Server) coachReview(action string) pageFunc {
	return func(w http.ResponseWriter, r *http.Request, sess access.Session) error {
		_, err := s.network.Review(r.Context(), pageBy(r, sess), r.PathValue("id"), action, r.PostFormValue("reason"))
		if err != nil {
			if !known(err) {
				return err
			}
			msg := err.Error()
			if errors.Is(err, network.ErrInvalid) && strings.Contains(msg, "reason") {
				msg = "Give a reason to retract a conversation."
			}
			return s.renderCoach(w, r, sess, problemStatus(err), "", msg)
		}
		flash := "verified"
		if action == network.ReviewRetract {
			flash = "retracted"
		}
		http.Redirect(w, r, "/coach?flash="+flash, http.StatusSeeOther)
		return nil
	}
}

var coachContent = newPage(`{{define "queued"}}<p><strong>{{.Participant}}</strong> with {{.With}}<br>{{.When}} UTC · {{.Channel}}, {{.Minutes}} min<br>Brought: {{.Resources}}<br><span class="muted">Reported by {{.ReportedBy}}</span></p>{{end}}
{{- define "retract"}}<details><summary aria-label="Retract {{.Label}}…">Retract…</summary><form method="post" action="/coach/conversations/{{.ID}}/retract">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="reason-{{.ID}}">Why retract {{.Label}}?</label>
<input id="reason-{{.ID}}" name="reason" type="text" required maxlength="500">
<button class="secondary">Retract</button></form></details>{{end}}
{{- with .Data}}
<section aria-labelledby="queue"><h2 id="queue">Conversations awaiting your verification</h2>
{{if .Queue}}<p class="muted">Verify a conversation once you know it happened; retract one reported in error.{{if .QueueFull}} The oldest {{len .Queue}} are shown; verify them to see more.{{end}}</p>
<ul class="cards" id="queue-list" style="list-style:none;padding:0">{{range .Queue}}<li class="card">
{{template "queued" .}}
<form method="post" action="/coach/conversations/{{.ID}}/verify">
<input type="hidden" name="csrf" value="{{$.CSRF}}"><button aria-label="Verify {{.Label}}">Verify</button></form>
{{template "retract" .}}</li>{{end}}</ul>
{{else}}<p>No conversations are waiting for your verification.</p>{{end}}
{{if .Party}}<h3 id="party">Conversations you took part in</h3>
<p class="muted">You were in these conversations: another coach or an admin verifies them.{{if .PartyFull}} The oldest {{len .Party}} are shown.{{end}}</p>
<ul class="cards" id="party-list" style="list-style:none;padding:0">{{range .Party}}<li class="card">
{{template "queued" .}}
{{template "retract" .}}</li>{{end}}</ul>{{end}}
</section>

<section aria-labelledby="roster"><h2 id="roster">Participants assigned to you</h2>
{{if .Roster}}<div class="table-wrap"><table>
<thead><tr><th scope="col">Participant</th><th scope="col">Program</th><th scope="col">Milestones reached</th><th scope="col">Conversations</th><th scope="col">Last conversation</th></tr></thead>
<tbody>{{range .Roster}}<tr><th scope="row">{{.Name}}</th><td>{{.Program}}</td><td>{{.Milestones}}</td><td>{{.Conversations}}</td><td>{{.Last}}</td></tr>{{end}}</tbody>
</table></div>{{else}}<p>No participants are assigned to you yet.</p>{{end}}
</section>

<section aria-labelledby="stipends"><h2 id="stipends">Your stipends</h2>
{{if .Stipends}}<div class="table-wrap"><table>
<thead><tr><th scope="col">Month</th><th scope="col">Program</th><th scope="col">Verified sessions</th><th scope="col">Rate</th><th scope="col">Amount</th><th scope="col">Status</th></tr></thead>
<tbody>{{range .Stipends}}<tr><th scope="row">{{.Month}}</th><td>{{.Program}}</td><td class="amount">{{.Sessions}}</td><td class="amount">{{.Rate}}</td><td class="amount">{{.Amount}}</td><td>{{if .Held}}<strong>{{.Status}}</strong>{{else}}{{.Status}}{{end}}</td></tr>{{end}}</tbody>
</table></div>
<p class="muted">Stipends are computed after each month from the coaching sessions verified on your near-peer coach connections; your wallet and payouts are on <a href="/me">your home page</a>.</p>
{{else}}<p>No stipends yet: they are computed after each month from your verified coaching sessions.</p>{{end}}
</section>{{end}}`)
