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
	require.Contains(t, home.body, "<strong>40.00 USD</strong> — Grant: grant page-grant (Pilot): the payout to fail:closed failed: closed.")
	require.Contains(t, home.body, "What to do: Update your payout destination below")

	// A new destination sends it again, and it is paid.
	p = postForm(t, ana, base+"/me/destination", url.Values{"csrf": {csrfOf(t, home)}, "account": {"ana-bank-2"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	require.Equal(t, "/me?flash=retried", p.location)
	f.waitDisbursement(t, d["id"].(string), "paid")
	home = getPage(t, ana, base+"/me")
	require.Contains(t, home.body, "<strong>40.00 USD</strong> — paid to ana-bank-2 on")
	require.NotContains(t, home.body, "Needs your action")

	// The form sets the signed-in person's destination only: her coach's sets his own.
	cy := f.signedIn(t, f.cy)
	coachHome := getPage(t, cy, base+"/me")
	p = postForm(t, cy, base+"/me/destination", url.Values{"csrf": {csrfOf(t, coachHome)}, "account": {"cy-account"}})
	require.Equal(t, http.StatusSeeOther, p.status, p.body)
	var account string
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`SELECT account FROM payouts_destinations WHERE person_id = 'ana' ORDER BY id DESC LIMIT 1`).Scan(&account))
	require.Equal(t, "ana-bank-2", account)
}

func TestCoachPage(t *testing.T) {
	t.Parallel()
	f := setupPeople(t)
	base := f.srv.URL
	ctx := context.Background()

	// Cy coaches ana on a near-peer connection; a session last month, verified by an admin
	// (Cy is on it), earns a stipend, held without a W-9.
	requireStatus(t, f.do(t, "POST", "/v1/programs/p1/stipend-policy", `{"rate":"15.00"}`), http.StatusOK)
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
		"You were in this conversation: another coach or an admin verifies it.",
		`<label for="reason-` + mo + `">Why retract Ana&#39;s conversation with Mo on`,
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
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE outcome = 'denied' AND record = $1`, "conversation:"+withCy).Scan(&denied))
	require.Equal(t, 1, denied)

	// The coach's own home has the coach wallet line when stipends were paid; none yet.
	home := getPage(t, cy, base+"/me")
	require.Equal(t, http.StatusOK, home.status, home.body)
	require.Contains(t, home.body, "Hello, Cy.")
	require.Contains(t, home.body, `<a href="/coach">your coach page</a>`)
}
