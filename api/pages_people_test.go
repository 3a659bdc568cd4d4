package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
)

// peopleFixture is the network fixture with ana's mentor rule ("mentor-4": 4 verified mentor
// conversations within 60 days, 50.00 USD) and two of ana's conversations with Mo, verified
// by her coach Cy.
type peopleFixture struct {
	*netFixture
	logged []string // ana's conversations, oldest first
}

func setupPeople(t *testing.T) *peopleFixture {
	t.Helper()
	f := &peopleFixture{netFixture: setupNetwork(t, true)}
	f.seed(t)
	requireStatus(t, f.do(t, "POST", "/v1/rules", ruleBody("p1", mentorRule)), http.StatusCreated)
	for i, days := range []int{10, 5} {
		id := f.logConversation(t, days, fmt.Sprintf("seed-%d", i))
		requireStatus(t, f.as(t, f.cy, "POST", "/v1/conversations/"+id+"/verify", `{}`), http.StatusOK)
		f.logged = append(f.logged, id)
	}
	return f
}

// signedIn is a browser-like client signed in with secret.
func (f *peopleFixture) signedIn(t *testing.T, secret string) *http.Client {
	t.Helper()
	c := pageClient(true)
	signIn(t, c, f.srv.URL, secret)
	return c
}

// conversationCount counts the conversations in the database.
func (f *peopleFixture) conversationCount(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM network_conversations`).Scan(&n))
	return n
}

// logForm is the home page's form to log a conversation, filled in from the page.
func logFormOf(t *testing.T, p page) url.Values {
	t.Helper()
	key := regexp.MustCompile(`name="key" value="([^"]+)"`).FindStringSubmatch(p.body)
	require.NotNil(t, key, p.body)
	conn := regexp.MustCompile(`<option value="([0-9a-f-]{36})" selected>`).FindStringSubmatch(p.body)
	require.NotNil(t, conn, "a connection is selected: %s", p.body)
	return url.Values{"csrf": {csrfOf(t, p)}, "key": {key[1]}, "connection_id": {conn[1]},
		"occurred_at": {time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04")}, "channel": {"phone"},
		"minutes": {"45"}, "resources": {"advice", "referral"}, "note": {"Talked about nursing school <applications>"}}
}

func TestParticipantHomePage(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	ana := f.signedIn(t, f.ana)

	home := getPage(t, ana, base+"/me")
	require.Equal(t, http.StatusOK, home.status, home.body)
	require.Equal(t, "text/html; charset=utf-8", home.header.Get("Content-Type"))
	for _, want := range []string{
		"<h1>Your home</h1>", "Hello, Ana.", `<a href="/me" aria-current="page">My home</a>`,
		// The milestone, as a progress bar and in words.
		"Met your mentor 4 times within 60 days", `<progress value="2" max="4"`,
		"2 of 4 verified mentor conversations within 60 days — 2 more to go.",
		// The wallet, nothing on its way yet.
		"Your wallet", "Nothing is on its way right now.", "Payouts go to <strong>sandbox:ana</strong>",
		// Recent conversations, verified by the coach, in words.
		"Mo (mentor)", "Video call", "Advice", "Verified by Cy on",
		// Connections, and the form with its labels.
		`<th scope="row">Mo</th><td>mentor</td>`, `<form method="post" action="/me/conversations"`,
		`<label for="connection_id">`, `<label for="occurred_at">When (UTC)</label>`, `<label for="minutes">Minutes</label>`,
		"<legend>What did it bring you? (optional)</legend>", `<div class="table-wrap"><table>`, `<th scope="col">Who</th>`,
	} {
		require.Contains(t, home.body, want)
	}
	require.NotContains(t, home.body, "Ben")

	// Logging a conversation: 303 back home with the flash; it is listed awaiting
	// verification and does not count yet.
	form := logFormOf(t, home)
	before := f.conversationCount(t)
	p := postForm(t, ana, base+"/me/conversations", form)
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/me?flash=logged", p.location)
	require.Equal(t, before+1, f.conversationCount(t))
	home = getPage(t, ana, base+p.location)
	require.Contains(t, home.body, `<p class="flash" role="status">Conversation logged.`)
	require.Contains(t, home.body, "Phone call")
	require.Contains(t, home.body, "Advice, A referral")
	require.Contains(t, home.body, "Awaiting verification")
	require.Contains(t, home.body, "2 of 4 verified mentor conversations")
	var note, reporter string
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`SELECT note, reported_by FROM network_conversations ORDER BY recorded_at DESC LIMIT 1`).Scan(&note, &reporter))
	require.Equal(t, "Talked about nursing school <applications>", note)
	require.Equal(t, "person:ana", reporter)

	// The same form sent again (the back button) logs nothing more.
	p = postForm(t, ana, base+"/me/conversations", form)
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/me?flash=replayed", p.location)
	require.Equal(t, before+1, f.conversationCount(t))

	// The coach verifies it from the coach page; ana's progress moves to 3 of 4.
	cy := f.signedIn(t, f.cy)
	coach := getPage(t, cy, base+"/coach")
	require.Equal(t, http.StatusOK, coach.status, coach.body)
	action := regexp.MustCompile(`action="(/coach/conversations/[0-9a-f-]{36}/verify)"`).FindStringSubmatch(coach.body)
	require.NotNil(t, action, coach.body)
	require.Contains(t, coach.body, `aria-label="Verify Ana&#39;s conversation with Mo on`)
	p = postForm(t, cy, base+action[1], url.Values{"csrf": {csrfOf(t, coach)}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/coach?flash=verified", p.location)
	coach = getPage(t, cy, base+p.location)
	require.Contains(t, coach.body, "Conversation verified.")
	require.Contains(t, coach.body, "No conversations are waiting for your verification.")
	home = getPage(t, ana, base+"/me")
	require.Contains(t, home.body, `<progress value="3" max="4"`)
	require.Contains(t, home.body, "3 of 4 verified mentor conversations within 60 days")

	// A fourth verified conversation reaches the milestone: the award, then its payout
	// through the sandbox, show on the page.
	id := f.logConversation(t, 1, "fourth")
	requireStatus(t, f.as(t, f.cy, "POST", "/v1/conversations/"+id+"/verify", `{}`), http.StatusOK)
	waitFor(t, "the award and its payout on the page", func() bool {
		home = getPage(t, ana, base+"/me")
		return strings.Contains(home.body, "paid to sandbox:ana on")
	})
	require.Contains(t, home.body, `<progress value="4" max="4"`)
	// Reached when the latest of the four happened: the one logged with the form.
	reached, err := time.Parse("2006-01-02T15:04", form.Get("occurred_at"))
	require.NoError(t, err)
	require.Contains(t, home.body, "Reached on "+reached.Format("2 Jan 2006")+" — 50.00 USD")
	require.Contains(t, home.body, "<strong>50.00 USD</strong> — paid to sandbox:ana on")
	require.Contains(t, home.body, "Milestone award: Met your mentor 4 times within 60 days (Pilot)")
}

func TestLogConversationFormErrors(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	ana := f.signedIn(t, f.ana)
	home := getPage(t, ana, base+"/me")
	before := f.conversationCount(t)

	for _, tc := range []struct {
		name   string
		change url.Values
		status int
		field  string
		msg    string
	}{
		{"minutes zero", url.Values{"minutes": {"0"}}, http.StatusUnprocessableEntity, "minutes", "Minutes: 0: from 1 to 1440."},
		{"minutes not a number", url.Values{"minutes": {"half an hour"}}, http.StatusUnprocessableEntity, "minutes",
			"Minutes: give a whole number of minutes, from 1 to 1440."},
		{"no time", url.Values{"occurred_at": {""}}, http.StatusUnprocessableEntity, "occurred_at", "When: give the date and time"},
		{"future", url.Values{"occurred_at": {time.Now().UTC().Add(48 * time.Hour).Format("2006-01-02T15:04")}},
			http.StatusUnprocessableEntity, "occurred_at", "When: "},
		{"unknown channel", url.Values{"channel": {"carrier pigeon"}}, http.StatusUnprocessableEntity, "channel", "How: &#34;carrier pigeon&#34;: one of"},
		{"unknown resource", url.Values{"resources": {"advice", "gold"}}, http.StatusUnprocessableEntity, "resources", "What it brought you: &#34;gold&#34;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := logFormOf(t, home)
			for k, v := range tc.change {
				form[k] = v
			}
			p := postForm(t, ana, base+"/me/conversations", form)
			require.Equal(t, tc.status, p.status, p.body)
			require.Contains(t, p.body, `<p class="error" role="alert" id="log-error">`+tc.msg)
			require.Regexp(t, `id="`+tc.field+`"[^>]*aria-invalid="true"|<fieldset aria-invalid="true"`, p.body)
			// What was typed is kept.
			require.Contains(t, p.body, "Talked about nursing school &lt;applications&gt;</textarea>")
			require.Contains(t, p.body, `value="advice" checked`)
			require.Contains(t, p.body, `name="key" value="`+form.Get("key")+`"`)
			require.Equal(t, before, f.conversationCount(t), "nothing is logged")
		})
	}

	// Another participant's connection, or one that does not exist, is refused by the policy
	// like POST /v1/conversations, and recorded as a refusal.
	form := logFormOf(t, home)
	form.Set("connection_id", "0190d2a8-0000-7000-8000-000000000000")
	p := postForm(t, ana, base+"/me/conversations", form)
	require.Equal(t, http.StatusForbidden, p.status, p.body)
	require.Contains(t, p.body, "not your record")
	require.Equal(t, before, f.conversationCount(t))

	// Without the session's CSRF token nothing happens.
	form = logFormOf(t, home)
	form.Set("csrf", "forged")
	p = postForm(t, ana, base+"/me/conversations", form)
	require.Equal(t, http.StatusForbidden, p.status, p.body)
	require.Contains(t, p.body, "This form expired")
	require.Equal(t, before, f.conversationCount(t))

	// Ben, another participant, may not log on ana's connection.
	ben := f.signedIn(t, f.ben)
	benHome := getPage(t, ben, base+"/me")
	require.Equal(t, http.StatusOK, benHome.status, benHome.body)
	form = logFormOf(t, home)
	form.Set("csrf", csrfOf(t, benHome))
	p = postForm(t, ben, base+"/me/conversations", form)
	require.Equal(t, http.StatusForbidden, p.status, p.body)
	require.Equal(t, before, f.conversationCount(t))
}

func TestHomePageShowsOnlyOwnData(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL

	// Ben sees his own home: enrolled in the pilot, no connections, nothing of ana's.
	ben := f.signedIn(t, f.ben)
	p := getPage(t, ben, base+"/me")
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.Contains(t, p.body, "Hello, Ben.")
	require.Contains(t, p.body, "0 of 4 verified mentor conversations")
	require.Contains(t, p.body, "No consent is on file for you")
	require.Contains(t, p.body, "You have no active connections yet")
	// Nothing was ever paid to him: his wallet is empty, in the program's currency.
	require.Contains(t, p.body, `<div class="figure">0.00 USD</div>`)
	require.Contains(t, p.body, "Nothing is in it right now.")
	for _, other := range []string{"Ana", "Mo (mentor)", "Cy"} {
		require.NotContains(t, p.body, other)
	}
	// A participant has no coach page.
	p = getPage(t, ben, base+"/coach")
	require.Equal(t, http.StatusForbidden, p.status, p.body)

	// A token without a person is told why there is nothing to show.
	adm := f.signedIn(t, f.token)
	p = getPage(t, adm, base+"/me")
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.Contains(t, p.body, "does not name a person")
	p = getPage(t, f.signedIn(t, f.auditor), base+"/coach")
	require.Equal(t, http.StatusOK, p.status, p.body)
	require.Contains(t, p.body, "does not name a person")

	// A person's token for someone not in the network.
	ghost := f.signedIn(t, f.newToken(t, "participant", "ghost"))
	p = getPage(t, ghost, base+"/me")
	require.Equal(t, http.StatusNotFound, p.status, p.body)
	require.Contains(t, p.body, "has no record in Tandem yet")

	// Signed out: to the sign-in page.
	p = getPage(t, pageClient(true), base+"/me")
	require.Equal(t, http.StatusSeeOther, p.status)
	require.Equal(t, "/sign-in", p.location)
}

func TestFailedPayoutAndDestinationPage(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	ana := f.signedIn(t, f.ana)
	home := getPage(t, ana, base+"/me")

	// A bad account is refused in words, with what was typed kept.
	p := postForm(t, ana, base+"/me/destination", url.Values{"csrf": {csrfOf(t, home)}, "account": {"my bank!"}})
	require.Equal(t, http.StatusUnprocessableEntity, p.status, p.body)
	require.Contains(t, p.body, "Payout account: use letters, digits and _ : . - only")
	require.Contains(t, p.body, `value="my bank!"`)

	// A destination that refuses transfers (the sandbox's fail:…), then a grant: it fails and
	// the page says why and what to do.
	p = postForm(t, ana, base+"/me/destination", url.Values{"csrf": {csrfOf(t, home)}, "account": {"fail:closed"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/me?flash=destination", p.location)
	d := f.grant(t, f.requesterToken(t), "ana", "40.00", "page-grant")
	f.waitDisbursement(t, d["id"].(string), "failed")
	home = getPage(t, ana, base+"/me")
	require.Contains(t, home.body, "<h3>Needs your action</h3>")
	require.Contains(t, home.body, "<strong>40.00 USD</strong> — Grant: grant page-grant (Pilot): the payment to fail:closed did not go through")
	require.Contains(t, home.body, "What to do: If your payout account has changed or was closed, update it below")

	// A new destination sends it again, and it is paid.
	p = postForm(t, ana, base+"/me/destination", url.Values{"csrf": {csrfOf(t, home)}, "account": {"ana-bank-2"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/me?flash=retried", p.location)
	f.waitDisbursement(t, d["id"].(string), "paid")
	home = getPage(t, ana, base+"/me")
	require.Contains(t, home.body, "<strong>40.00 USD</strong> — paid to ana-bank-2 on")
	require.NotContains(t, home.body, "Needs your action")

	// One that needed an admin's approval is not sent to the new account before an admin
	// approves it again for that account.
	p = postForm(t, ana, base+"/me/destination", url.Values{"csrf": {csrfOf(t, home)}, "account": {"fail:closed-too"}})
	require.Equal(t, "/me?flash=destination", p.location)
	big := f.grant(t, f.requesterToken(t), "ana", "150.00", "page-big")
	adm2 := f.newToken(t, access.Admin, "adm2")
	requireStatus(t, f.as(t, adm2, "POST", "/v1/disbursements/"+big["id"].(string)+"/approve", `{"destination":"fail:closed-too"}`), http.StatusOK)
	f.waitDisbursement(t, big["id"].(string), "failed")
	home = getPage(t, ana, base+"/me")
	p = postForm(t, ana, base+"/me/destination", url.Values{"csrf": {csrfOf(t, home)}, "account": {"ana-bank-3"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/me?flash=reapproval", p.location)
	require.Equal(t, "awaiting_approval", f.disbursement(t, big["id"].(string))["state"])
	home = getPage(t, ana, base+"/me?flash=reapproval")
	require.Contains(t, home.body, "wait for an admin to approve them again for the new account")

	// The form sets the signed-in person's destination only: her coach's sets his own.
	cy := f.signedIn(t, f.cy)
	coachHome := getPage(t, cy, base+"/me")
	p = postForm(t, cy, base+"/me/destination", url.Values{"csrf": {csrfOf(t, coachHome)}, "account": {"cy-account"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	var account string
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`SELECT account FROM payouts_destinations WHERE person_id = 'ana' ORDER BY id DESC LIMIT 1`).Scan(&account))
	require.Equal(t, "ana-bank-3", account)
}

func TestCoachPage(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	ctx := context.Background()

	// Cy coaches ana on a near-peer connection; a session last month, verified by an admin
	// (Cy is on it), earns a stipend, held without a W-9.
	requireStatus(t, f.as(t, f.requesterToken(t), "POST", "/v1/programs/p1/stipend-policy", `{"rate":"15.00"}`), http.StatusOK)
	r := f.do(t, "POST", "/v1/connections", fmt.Sprintf(`{"participant_id":"ana","other_id":"cy","role":"near_peer_coach",
		"origin":"matched","started_on":%q}`, f.day(-80)))
	requireStatus(t, r, http.StatusCreated)
	coachConn := r.body["id"].(string)
	month := time.Date(f.now.Year(), f.now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	r = f.as(t, f.ana, "POST", "/v1/conversations", fmt.Sprintf(`{"connection_id":%q,"occurred_at":%q,"channel":"in_person","minutes":60,"resources":["information"]}`,
		coachConn, month.AddDate(0, 0, 1).Add(12*time.Hour).Format(time.RFC3339)))
	requireStatus(t, r, http.StatusCreated)
	requireStatus(t, f.do(t, "POST", "/v1/conversations/"+r.body["id"].(string)+"/verify", `{}`), http.StatusOK)
	requireStatus(t, f.do(t, "POST", "/v1/stipends/run", fmt.Sprintf(`{"month":%q}`, month.Format("2006-01"))), http.StatusOK)

	// Two unverified conversations of ana's: one with Mo, one with Cy himself.
	mo := f.logConversation(t, 2, "to-verify")
	r = f.as(t, f.ana, "POST", "/v1/conversations", fmt.Sprintf(`{"connection_id":%q,"occurred_at":%q,"channel":"video","minutes":20}`,
		coachConn, f.now.Add(-3*time.Hour).Format(time.RFC3339)))
	requireStatus(t, r, http.StatusCreated)
	withCy := r.body["id"].(string)

	cy := f.signedIn(t, f.cy)
	p := getPage(t, cy, base+"/coach")
	require.Equal(t, http.StatusOK, p.status, p.body)
	for _, want := range []string{
		"<h1>Your participants</h1>", `<a href="/coach" aria-current="page">My participants</a>`,
		// The roster: ana in the pilot, with her milestones and conversations summed up.
		`<th scope="row">Ana</th><td>Pilot</td><td>0 of 1</td><td>3 verified, 2 awaiting verification</td>`,
		"with Cy (near-peer coach), awaiting verification",
		// The queue: Mo's can be verified, Cy's own may not be by him.
		`action="/coach/conversations/` + mo + `/verify"`, `action="/coach/conversations/` + withCy + `/retract"`,
		`<h3 id="party">Conversations you took part in</h3>`,
		"You were in these conversations: another coach or an admin verifies them.",
		`<label for="reason-` + mo + `">Why retract Ana&#39;s conversation with Mo on`,
		// Each retract toggle says which conversation it retracts.
		`<summary aria-label="Retract Ana&#39;s conversation with Mo on`, `<summary aria-label="Retract Ana&#39;s conversation with Cy on`,
		// The stipend, held for the W-9.
		"<th scope=\"row\">" + month.Format("January 2006") + "</th><td>Pilot</td><td class=\"amount\">1</td><td class=\"amount\">15.00 USD</td>",
		"<strong>Held: no W-9 on file; paid once it is</strong>",
	} {
		require.Contains(t, p.body, want)
	}
	require.NotContains(t, p.body, `action="/coach/conversations/`+withCy+`/verify"`)
	require.NotContains(t, p.body, "Ben", "ben is not assigned to Cy")

	// Verifying his own conversation by hand is refused (four eyes), in words on the page.
	csrf := csrfOf(t, p)
	q := postForm(t, cy, base+"/coach/conversations/"+withCy+"/verify", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusForbidden, q.status, q.body)
	require.Contains(t, q.body, "may not verify its conversations")
	// Retracting needs a reason; with one it is retracted.
	q = postForm(t, cy, base+"/coach/conversations/"+mo+"/retract", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusUnprocessableEntity, q.status, q.body)
	require.Contains(t, q.body, "Give a reason to retract a conversation.")
	q = postForm(t, cy, base+"/coach/conversations/"+mo+"/retract", url.Values{"csrf": {csrf}, "reason": {"ana says it was a mix-up"}})
	require.Equal(t, http.StatusSeeOther, q.status, q.body)
	require.Equal(t, "/coach?flash=retracted", q.location)
	var status string
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT action FROM network_reviews WHERE conversation_id = $1 ORDER BY id DESC LIMIT 1`, mo).Scan(&status))
	require.Equal(t, "retract", status)

	// Another coach, not assigned to ana, may not verify hers; the refusal is filed under the
	// conversation.
	requireStatus(t, f.do(t, "POST", "/v1/people", `{"id":"dee","name":"Dee","roles":["coach"]}`), http.StatusCreated)
	dee := f.signedIn(t, f.newToken(t, "coach", "dee"))
	dp := getPage(t, dee, base+"/coach")
	require.Equal(t, http.StatusOK, dp.status, dp.body)
	require.Contains(t, dp.body, "No participants are assigned to you yet.")
	require.NotContains(t, dp.body, "Ana")
	q = postForm(t, dee, base+"/coach/conversations/"+withCy+"/verify", url.Values{"csrf": {csrfOf(t, dp)}})
	require.Equal(t, http.StatusForbidden, q.status, q.body)
	var denied int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT coalesce(sum(repeats), 0) FROM audit_log WHERE outcome = 'denied' AND record = $1`, "conversation:"+withCy).Scan(&denied))
	require.Equal(t, 1, denied)

	// The coach's own home has the coach wallet line when stipends were paid; none yet.
	home := getPage(t, cy, base+"/me")
	require.Equal(t, http.StatusOK, home.status, home.body)
	require.Contains(t, home.body, "Hello, Cy.")
	// Nothing was paid to him yet, and he has no wallet: the empty one shows its currency.
	require.Contains(t, home.body, `<div class="card"><div>Your wallet</div><div class="figure">0.00 USD</div>`)
	require.Contains(t, home.body, `<a href="/coach">your coach page</a>`)
}

// ruleSection is what /me shows of one rule: its title, progress bar and words.
func ruleSection(t *testing.T, body, anchor string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<h4 id="` + anchor + `">.*?</div>`).FindString(body)
	require.NotEmpty(t, m, "rule %s on the page: %s", anchor, body)
	return m
}

// section is the part of a page from the element matching start to the first end after it.
func section(t *testing.T, body, start, end string) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)` + regexp.QuoteMeta(start) + `.*?` + regexp.QuoteMeta(end)).FindString(body)
	require.NotEmpty(t, m, "%s on the page: %s", start, body)
	return m
}

// humanUTC is how the pages write a moment for people.
func humanUTC(at time.Time) string { return at.UTC().Format("2 Jan 2006 at 15:04") + " UTC" }

// TestHomeHidesCountsThatRevealOthersBands: a band is sensitive, for admins and auditors
// only (DESIGN.md §5). A rule that counts by the other person's band ("other_band") or by
// class lines ("cross_class") would change ana's page, and her /v1 progress, when only her
// mentor's band changes: she would learn Mo's band. Such rules show no count and no
// progress bar to her or her coach, only "Not yet reached." (or the awards made); admins
// still see the count.
func TestHomeHidesCountsThatRevealOthersBands(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	for _, rule := range []string{
		`{"id":"bridge-2","title":"Two new connections you talked with","count":"connections",
			"where":{"other_band":"high","with_conversation":true},"at_least":2,"award":{"amount":"40.00","kind":"microgrant"},"repeat":"once"}`,
		`{"id":"cross-3","title":"Three conversations across class lines","count":"conversations",
			"where":{"cross_class":true},"at_least":3,"award":{"amount":"30.00","kind":"microgrant"},"repeat":"once"}`,
	} {
		requireStatus(t, f.do(t, "POST", "/v1/rules", ruleBody("p1", rule)), http.StatusCreated)
	}
	requireStatus(t, f.do(t, "POST", "/v1/people/ana/band", `{"band":"low","reason":"intake form"}`), http.StatusOK)
	ana := f.signedIn(t, f.ana)

	// progressRule is a rule's progress in /v1/participants/ana/progress as secret reads it.
	progressRule := func(secret, rule string) map[string]any {
		t.Helper()
		r := f.as(t, secret, "GET", "/v1/participants/ana/progress", "")
		requireStatus(t, r, http.StatusOK)
		for _, pp := range r.body["programs"].([]any) {
			for _, x := range pp.(map[string]any)["rules"].([]any) {
				if m := x.(map[string]any); m["rule_id"] == rule {
					return m
				}
			}
		}
		t.Fatalf("rule %s not in %s", rule, r.raw)
		return nil
	}
	seen := map[string]map[string]any{}
	for _, band := range []string{"high", "low"} {
		requireStatus(t, f.do(t, "POST", "/v1/people/mo/band", fmt.Sprintf(`{"band":%q,"reason":"intake form"}`, band)), http.StatusOK)
		home := getPage(t, ana, base+"/me")
		require.Equal(t, http.StatusOK, home.status, home.body)
		for _, rule := range []string{"bridge-2", "cross-3"} {
			sec := ruleSection(t, home.body, "rule-p1-"+rule)
			require.NotContains(t, sec, "<progress", "no progress bar for %s", rule)
			require.Contains(t, sec, "Not yet reached.")
			for _, who := range []string{"ana", "cy"} {
				secret := map[string]string{"ana": f.ana, "cy": f.cy}[who]
				pr := progressRule(secret, rule)
				require.Equal(t, "0", pr["count"], "%s reads %s's count", who, rule)
				require.Equal(t, "0", pr["target"])
				require.Equal(t, false, pr["met"])
				require.Equal(t, "not yet reached", pr["missing"])
				require.Nil(t, pr["due"])
				seen[band+"/"+who+"/"+rule] = pr
			}
			seen[band+"/page/"+rule] = map[string]any{"section": sec}
		}
		if band == "high" {
			// The rules do count by Mo's band: an admin sees it.
			require.Equal(t, "1", progressRule(f.token, "bridge-2")["count"])
			require.Equal(t, "2", progressRule(f.token, "cross-3")["count"])
		}
	}
	for key, v := range seen {
		if rest, ok := strings.CutPrefix(key, "high/"); ok {
			require.Equal(t, v, seen["low/"+rest], "%s must not depend on Mo's band", rest)
		}
	}
	// The mentor rule, which does not count by band, keeps its count and bar.
	home := getPage(t, ana, base+"/me")
	require.Contains(t, ruleSection(t, home.body, "rule-p1-mentor-4"), `<progress value="2" max="4"`)

	// Reached: its award shows, and nothing more; the award's evidence (which connections
	// counted, so which people are high-band) stays with admins.
	requireStatus(t, f.do(t, "POST", "/v1/people/mo/band", `{"band":"high","reason":"intake form"}`), http.StatusOK)
	requireStatus(t, f.do(t, "POST", "/v1/rules", ruleBody("p1", `{"id":"bridge-1","title":"A new connection you talked with",
		"count":"connections","where":{"other_band":"high","with_conversation":true},"at_least":1,
		"award":{"amount":"15.00","kind":"microgrant"},"repeat":"once"}`)), http.StatusCreated)
	waitFor(t, "the bridge-1 award", func() bool {
		return strings.Contains(f.do(t, "GET", "/v1/awards?participant=ana", "").raw, `"bridge-1"`)
	})
	home = getPage(t, ana, base+"/me")
	sec := ruleSection(t, home.body, "rule-p1-bridge-1")
	require.Regexp(t, `<p><strong>Reached on \d+ \w+ \d{4} — 15.00 USD</strong></p>`, sec)
	require.NotContains(t, sec, "<progress")
	require.NotContains(t, sec, "of 1")
	pr := progressRule(f.ana, "bridge-1")
	require.Equal(t, true, pr["met"])
	require.Equal(t, "0", pr["count"])
	awardEvidence := func(secret string) string {
		t.Helper()
		r := f.as(t, secret, "GET", "/v1/participants/ana/progress", "")
		requireStatus(t, r, http.StatusOK)
		for _, a := range r.body["programs"].([]any)[0].(map[string]any)["awards"].([]any) {
			if a := a.(map[string]any); a["rule_id"] == "bridge-1" {
				return fmt.Sprint(a["evidence"])
			}
		}
		t.Fatalf("no bridge-1 award in %s", r.raw)
		return ""
	}
	require.Equal(t, "[]", awardEvidence(f.ana))
	require.Equal(t, "[]", awardEvidence(f.cy))
	require.Contains(t, awardEvidence(f.token), f.conn, "an admin sees which connection counted")
}

// TestWalletSeparatesMoneyAwaitingApproval: a grant above the auto-approve limit is
// credited to the wallet while it waits for an admin (and taken back if rejected). The card
// says which part of the balance awaits approval instead of "held for you"; the grant is
// listed as pending, not as on its way. Declined, it says so in fixed words: the admin's
// reason is internal.
func TestWalletSeparatesMoneyAwaitingApproval(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	ana := f.signedIn(t, f.ana)
	d := f.grant(t, f.requesterToken(t), "ana", "150.00", "review-unapproved")

	home := getPage(t, ana, base+"/me")
	require.Equal(t, http.StatusOK, home.status, home.body)
	card := section(t, home.body, `<div class="card"><div>Your wallet</div>`, `</div></div>`)
	require.Contains(t, card, `<div class="figure">150.00 USD</div>`)
	require.Contains(t, card, "150.00 USD of it awaits an admin's approval")
	require.NotContains(t, card, "held for you", "no part of it is approved")
	pending := section(t, home.body, "<h3>Pending</h3>", "</ul>")
	require.Contains(t, pending, "<strong>150.00 USD</strong> — waiting for an admin&#39;s approval.")
	require.Contains(t, section(t, home.body, "<h3>On its way to you</h3>", "</p>"), "Nothing is on its way right now.")

	// Rejected with an internal reason: the page says an administrator declined it.
	internal := "duplicate of paper cheque 4411, flagged by finance"
	requireStatus(t, f.do(t, "POST", "/v1/disbursements/"+d["id"].(string)+"/reject", fmt.Sprintf(`{"reason":%q}`, internal)), http.StatusOK)
	// Canceled after approval, likewise.
	d2 := f.grant(t, f.requesterToken(t), "ana", "20.00", "review-cancel")
	f.waitDisbursement(t, d2["id"].(string), "paid")
	d3 := f.grant(t, f.requesterToken(t), "ana", "120.00", "review-cancel-2")
	requireStatus(t, f.do(t, "POST", "/v1/disbursements/"+d3["id"].(string)+"/cancel", `{"reason":"internal: program paused for audit"}`), http.StatusOK)

	home = getPage(t, ana, base+"/me")
	history := section(t, home.body, "<h3>Paid and closed</h3>", "</ul>")
	require.Contains(t, history, "<strong>150.00 USD</strong> — not paid. An administrator declined this payment; ask your program for the reason.")
	require.Contains(t, history, "<strong>120.00 USD</strong> — not paid. An administrator canceled this payment; ask your program for the reason.")
	require.NotContains(t, home.body, "cheque")
	require.NotContains(t, home.body, "audit")
	require.NotContains(t, home.body, "<h3>Pending</h3>")
	card = section(t, home.body, `<div class="card"><div>Your wallet</div>`, `</div></div>`)
	require.Contains(t, card, `<div class="figure">0.00 USD</div>`)
	require.Contains(t, card, "Nothing is in it right now.")
}

// TestFailedPayoutSaysWhenItIsTriedAgain: a failed payout says in words when it is tried
// again automatically and until when the money stays the person's (the program's
// remediation window), not the transition's machine text ("automatic retry 1 of 2 at
// 2026-…T…Z"); the provider's reason is a secondary detail.
func TestFailedPayoutSaysWhenItIsTriedAgain(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	ctx := context.Background()
	ana := f.signedIn(t, f.ana)
	requireStatus(t, f.as(t, f.ana, "POST", "/v1/people/ana/payout-destination", `{"account":"fail:closed"}`), http.StatusOK)
	failedAt := func(id string) time.Time {
		t.Helper()
		var at time.Time
		require.NoError(t, f.pool.QueryRow(ctx, `SELECT max(at) FROM payouts_transitions WHERE disbursement_id = $1 AND to_state = 'failed'`, id).Scan(&at))
		return at
	}
	rfc3339 := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d`)

	// The default policy: two automatic retries, the first an hour later; 30 days to fix it.
	a := f.grant(t, f.requesterToken(t), "ana", "40.00", "retry-a")["id"].(string)
	f.waitDisbursement(t, a, "failed")
	at := failedAt(a)
	home := getPage(t, ana, base+"/me")
	action := section(t, home.body, "<h3>Needs your action</h3>", "</ul>")
	require.Contains(t, action, "the payment to fail:closed did not go through")
	require.Contains(t, action, "<p>We will try again automatically on "+humanUTC(at.Add(time.Hour))+".</p>")
	require.Contains(t, action, "The money stays yours at least until "+humanUTC(at.AddDate(0, 0, 30)))
	require.Contains(t, action, `Details: the payment provider gave this reason: “closed”.`)
	require.NotRegexp(t, rfc3339, action)
	require.NotContains(t, action, "attempt 1")

	// No automatic retry left, a 10-day window: the date it goes back to the fund.
	requireStatus(t, f.do(t, "POST", "/v1/programs/p1/payout-policy", `{"auto_retries":0,"remediation_days":10}`), http.StatusOK)
	b := f.grant(t, f.requesterToken(t), "ana", "30.00", "retry-b")["id"].(string)
	f.waitDisbursement(t, b, "failed")
	home = getPage(t, ana, base+"/me")
	line := section(t, home.body, "<li><p class=\"error\"><strong>30.00 USD</strong>", "</li>")
	require.Contains(t, line, "<p>No more automatic tries are left.</p>")
	require.Contains(t, line, "If it is not paid by "+humanUTC(failedAt(b).AddDate(0, 0, 10))+", the money goes back to the program&#39;s fund.")
	require.NotRegexp(t, rfc3339, line)
}

// TestCoachQueueListsWhatTheCoachMayVerify: the queue of conversations to verify is bounded
// (100); conversations the coach took part in, which they may not verify, must not fill it
// and hide those they can. They are listed apart. Reporters read as people do: no token or
// job ids.
func TestCoachQueueListsWhatTheCoachMayVerify(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	r := f.do(t, "POST", "/v1/connections", fmt.Sprintf(`{"participant_id":"ana","other_id":"cy","role":"near_peer_coach",
		"origin":"matched","started_on":%q}`, f.day(-80)))
	requireStatus(t, r, http.StatusCreated)
	coachConn := r.body["id"].(string)
	// 100 sessions with Cy, imported first (the oldest), then two conversations with Mo: one
	// logged by an admin, one by an import job.
	var batch []string
	for i := range 100 {
		batch = append(batch, fmt.Sprintf(`{"connection_id":%q,"occurred_at":%q,"channel":"video","minutes":30,"idempotency_key":"cy-%d"}`,
			coachConn, f.now.Add(-time.Duration(i+1)*time.Hour).Format(time.RFC3339), i))
	}
	requireStatus(t, f.do(t, "POST", "/v1/conversations/batch", `{"conversations":[`+strings.Join(batch, ",")+`]}`), http.StatusCreated)
	r = f.do(t, "POST", "/v1/conversations", f.conversationBody(f.conn, 1, "by-admin", ""))
	requireStatus(t, r, http.StatusCreated)
	byAdmin := r.body["id"].(string)
	var byJob string
	require.NoError(t, f.pool.QueryRow(context.Background(), `INSERT INTO network_conversations (id, connection_id, occurred_at, channel, minutes, reported_by)
		VALUES (gen_random_uuid(), $1, now() - interval '2 days', 'message', 15, 'job:import-messages') RETURNING id::text`, f.conn).Scan(&byJob))

	cy := f.signedIn(t, f.cy)
	p := getPage(t, cy, base+"/coach")
	require.Equal(t, http.StatusOK, p.status, p.body)
	queue := section(t, p.body, `<ul class="cards" id="queue-list"`, "</ul>")
	require.Contains(t, queue, `action="/coach/conversations/`+byAdmin+`/verify"`)
	require.Contains(t, queue, `action="/coach/conversations/`+byJob+`/verify"`)
	require.Equal(t, 2, strings.Count(queue, `<li class="card">`), queue)
	require.Contains(t, queue, "Reported by an administrator")
	require.Contains(t, queue, "Reported by an automatic import")
	require.NotContains(t, p.body, "Reported by token:")
	require.NotContains(t, p.body, "Reported by job:")
	party := section(t, p.body, `<h3 id="party">`, "</ul>")
	require.Contains(t, party, "another coach or an admin verifies them. The oldest 100 are shown.")
	require.Equal(t, 100, strings.Count(party, `<li class="card">`))
	require.NotContains(t, party, "/verify")
}

// TestRosterCountsOnlyRulesInForce: a coach's roster says "milestones reached of rules in
// force"; an award under a rule turned off since must not count ("1 of 0", "2 of 1").
func TestRosterCountsOnlyRulesInForce(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	requireStatus(t, f.do(t, "POST", "/v1/rules", ruleBody("p1", `{"id":"first-1","title":"Your first mentor conversation",
		"count":"conversations","where":{"role":"mentor"},"at_least":1,"award":{"amount":"5.00","kind":"microgrant"},"repeat":"once"}`)), http.StatusCreated)
	id := f.logConversation(t, 1, "first")
	requireStatus(t, f.as(t, f.cy, "POST", "/v1/conversations/"+id+"/verify", `{}`), http.StatusOK)
	waitFor(t, "the first-1 award", func() bool {
		r := f.do(t, "GET", "/v1/awards?participant=ana", "")
		return strings.Contains(r.raw, `"first-1"`)
	})
	cy := f.signedIn(t, f.cy)
	p := getPage(t, cy, base+"/coach")
	require.Contains(t, p.body, `<th scope="row">Ana</th><td>Pilot</td><td>1 of 2</td>`)

	requireStatus(t, f.do(t, "POST", "/v1/rules/p1/first-1/retire", `{"reason":"the pilot's first month is over"}`), http.StatusOK)
	p = getPage(t, cy, base+"/coach")
	require.Contains(t, p.body, `<th scope="row">Ana</th><td>Pilot</td><td>0 of 1</td>`)
}
