package api_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/access"
	"github.com/tandemledger/tandem/internal/browsertest"
)

// TestAdminApprovesInBrowser is the admins' story in a real Chromium, River and the sandbox
// running: adm1 requests 600.00 USD for Ana, at the dual-control threshold. adm2 signs in,
// finds it in the approvals queue ("0 of 2 approvals"), approves it with a note and sees it
// wait for a second admin; adm3, in a browser of their own, gives the second approval; the
// sandbox pays it and its page shows it paid, with its history. The dashboard of the program
// shows the milestone Ana reached and its three charts. The queue and the dashboard are
// checked at a phone's width too: no sideways scrolling, every field labelled.
// TANDEM_SCREENSHOTS=1 keeps screenshots of them (desktop and phone).
func TestAdminApprovesInBrowser(t *testing.T) {
	t.Parallel()
	b2 := browsertest.New(t) // skips without Chromium unless TANDEM_REQUIRE_BROWSER=1
	f := setupAdmin(t, true)
	base := f.srv.URL
	keep := os.Getenv("TANDEM_SCREENSHOTS") == "1"
	adm3 := f.newToken(t, access.Admin, "adm3")

	// Something for the dashboard: bands on both sides of Ana's mentor connection, and the
	// mentor rule reached (an award of 50.00, paid by River and the sandbox).
	requireStatus(t, f.do(t, "POST", "/v1/people/ana/band", `{"band":"low","reason":"intake form"}`), http.StatusOK)
	requireStatus(t, f.do(t, "POST", "/v1/people/mo/band", `{"band":"high","reason":"intake form"}`), http.StatusOK)
	requireStatus(t, f.do(t, "POST", "/v1/rules", ruleBody("p1", mentorRule)), http.StatusCreated)
	for i := range 4 {
		id := f.logConversation(t, 12-3*i, fmt.Sprintf("browser-%d", i))
		requireStatus(t, f.as(t, f.cy, "POST", "/v1/conversations/"+id+"/verify", `{}`), http.StatusOK)
	}
	id := f.awaiting(t, "600.00", "browser-grant")

	// adm2: the queue, the approval, one of two.
	b2.SignIn(base, f.adm2)
	require.Equal(t, 200, b2.Visit(base+"/admin/approvals"))
	card := b2.Text("#d-" + id)
	require.Contains(t, card, "600.00 USD to Ana")
	queue := b2.Text("main")
	require.Contains(t, queue, "0 of 2 approvals — dual control at or above 500.00 USD")
	require.Contains(t, queue, "grant browser-grant")
	require.Contains(t, queue, "by person:adm1")
	require.Empty(t, evaluate[[]string](t, b2, unlabelled))
	if keep {
		b2.Screenshot("approvals-desktop")
	}
	b2.Viewport(390, 844)
	require.False(t, evaluate[bool](t, b2, overflows), "the queue fits a phone's width")
	if keep {
		b2.Screenshot("approvals-phone")
	}
	b2.Viewport(1280, 900)
	approve := fmt.Sprintf(`form[action="/admin/disbursements/%s/approve"]`, id)
	require.Equal(t, "Approve 600.00 USD to Ana", strings.TrimSpace(b2.Text(approve+" button")))
	b2.Fill("#note-"+id, "receipt checked")
	require.Equal(t, 200, b2.Click(approve+" button"))
	require.Contains(t, b2.Text(".flash"), "Your approval of 600.00 USD to Ana is recorded: 1 of 2 approvals")
	require.Contains(t, b2.Text("main"), "You approved it; another admin must give the second approval.")
	require.Equal(t, "awaiting_approval", f.disbursement(t, id)["state"])

	// adm3: the second approval; then paid.
	b3 := browsertest.New(t)
	b3.SignIn(base, adm3)
	require.Equal(t, 200, b3.Visit(base+"/admin/approvals"))
	require.Contains(t, b3.Text("main"), "1 of 2 approvals — dual control at or above 500.00 USD: person:adm2")
	require.Equal(t, 200, b3.Click(approve+" button"))
	require.Contains(t, b3.Text(".flash"), "Approved 600.00 USD to Ana: it is now")
	b3.WaitText(base+"/admin/disbursements/"+id, "#state", "paid", 30*time.Second)
	history := b3.Text("main")
	require.Contains(t, history, "second approval (dual control) by person:adm3")
	require.Contains(t, history, "receipt checked")
	require.Contains(t, history, "sandbox:ana")
	if keep {
		b3.Screenshot("disbursement-paid")
	}

	// The dashboard, with its charts drawn by the server.
	f.waitDisbursement(t, f.awardDisbursement(t), "paid")
	require.Equal(t, 200, b3.Visit(base+"/admin/programs/p1"))
	require.Equal(t, 3, evaluate[int](t, b3, `document.querySelectorAll('figure.chart svg[role="img"]').length`))
	dash := b3.Text("main")
	require.Contains(t, dash, "Economic connectedness")
	require.Contains(t, dash, "Milestones reached per month")
	require.Equal(t, 0, evaluate[int](t, b3, `document.scripts.length`), "no script on the page")
	if keep {
		b3.Screenshot("dashboard-desktop")
	}
	b3.Viewport(390, 844)
	require.False(t, evaluate[bool](t, b3, overflows), "the dashboard fits a phone's width")
	require.LessOrEqual(t, evaluate[float64](t, b3, `document.querySelector('figure.chart svg').getBoundingClientRect().width`), 390.0)
	if keep {
		b3.Screenshot("dashboard-phone")
	}
}

// awardDisbursement is the id of the disbursement of ana's mentor award, once made.
func (f *adminFixture) awardDisbursement(t *testing.T) string {
	t.Helper()
	var id string
	waitFor(t, "the award's disbursement", func() bool {
		return f.pool.QueryRow(t.Context(), `SELECT id::text FROM payouts_disbursements WHERE source = 'award'`).Scan(&id) == nil
	})
	return id
}
