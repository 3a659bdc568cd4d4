package api_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/tandemledger/tandem/internal/browsertest"
)

// evaluate runs a JavaScript expression in the browser's page and returns its value.
func evaluate[T any](t *testing.T, b *browsertest.Browser, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), browsertest.Timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	require.NoError(t, err, js)
	return v
}

// unlabelled lists the form fields of the page a person cannot tell apart by a label.
const unlabelled = `[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
	.filter(e => !e.labels || e.labels.length === 0).map(e => e.name || e.id)`

// overflows says whether the page is wider than the window (a phone would scroll sideways).
const overflows = `document.documentElement.scrollWidth > window.innerWidth`

// focusOutline is the outline colour, as [r, g, b], of the page's style rule for the focus
// of elements matching sel (e.g. "input:focus"), as the browser parsed it. (A headless tab
// has no window focus, so :focus never matches there: the rule is read instead.)
func focusOutline(t *testing.T, b *browsertest.Browser, sel string) []float64 {
	t.Helper()
	return evaluate[[]float64](t, b, fmt.Sprintf(`(() => {
		for (const sheet of document.styleSheets) for (const r of sheet.cssRules)
			if (r.selectorText && r.selectorText.split(",").map(s => s.trim()).includes(%q) && r.style.outlineColor) {
				const probe = document.createElement("div");
				probe.style.color = r.style.outlineColor; document.body.append(probe);
				const rgb = getComputedStyle(probe).color.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
				probe.remove(); return rgb;
			}
		throw new Error("no outline colour for %s");
	})()`, sel, sel))
}

// contrastOnWhite is the WCAG contrast ratio of an sRGB colour against white.
func contrastOnWhite(rgb []float64) float64 {
	lum := 0.0
	for i, w := range []float64{0.2126, 0.7152, 0.0722} {
		c := rgb[i] / 255
		if c <= 0.03928 {
			c /= 12.92
		} else {
			c = math.Pow((c+0.055)/1.055, 2.4)
		}
		lum += w * c
	}
	return 1.05 / (lum + 0.05)
}

// TestParticipantLogsConversationInBrowser is the participant's story in a real Chromium:
// ana has a mentor rule of 4 verified conversations and 2 of them; she signs in, sees "2 of
// 4", logs a third with the form and sees it awaiting verification. Progress counts verified
// conversations only, so her coach Cy, signed in in a second browser, verifies it from his
// page; ana's page then says "3 of 4". Both pages are checked at a phone's width too: no
// sideways scrolling, every field labelled. TANDEM_SCREENSHOTS=1 keeps screenshots of them.
func TestParticipantLogsConversationInBrowser(t *testing.T) {
	t.Parallel()
	ana := browsertest.New(t) // skips without Chromium unless TANDEM_REQUIRE_BROWSER=1
	f := setupPeople(t)
	base := f.srv.URL
	keep := os.Getenv("TANDEM_SCREENSHOTS") == "1"

	ana.SignIn(base, f.ana)
	require.Equal(t, 200, ana.Visit(base+"/me"))
	require.Contains(t, ana.Text("#rule-p1-mentor-4-words"), "2 of 4 verified mentor conversations within 60 days")
	require.Empty(t, evaluate[[]string](t, ana, unlabelled))
	// The focus outline stands out from the white page (WCAG 1.4.11: at least 3:1).
	for _, sel := range []string{"a:focus", "button:focus", "input:focus", "select:focus", "textarea:focus"} {
		rgb := focusOutline(t, ana, sel)
		require.GreaterOrEqual(t, contrastOnWhite(rgb), 3.0, "focus outline of %s: rgb%v", sel, rgb)
	}
	if keep {
		ana.Screenshot("home-desktop")
	}

	// The form: Mo is the only connection and is selected; how, minutes, what it brought.
	require.Contains(t, ana.Text("#connection_id"), "Mo (mentor)")
	ana.Fill("#channel", "phone")
	ana.Fill("#minutes", "45")
	ana.Check(`input[name="resources"][value="advice"]`)
	ana.Check(`input[name="resources"][value="introduction"]`)
	ana.Fill("#note", "Practised for the clinic interview")
	require.Equal(t, 200, ana.Click("#log-form button"))
	require.Contains(t, ana.Text(".flash"), "Conversation logged.")
	rows := ana.Text("#conversation-list")
	require.Contains(t, rows, "Phone call")
	require.Contains(t, rows, "Advice, An introduction")
	require.Contains(t, rows, "Awaiting verification")
	require.Contains(t, ana.Text("#rule-p1-mentor-4-words"), "2 of 4", "an unverified conversation does not count yet")

	// Cy verifies it from the coach page, in his own browser.
	cy := browsertest.New(t)
	cy.SignIn(base, f.cy)
	require.Equal(t, 200, cy.Visit(base+"/coach"))
	require.Contains(t, cy.Text("#queue-list"), "Phone call")
	require.Empty(t, evaluate[[]string](t, cy, unlabelled))
	// Each retract toggle names its conversation: a screen reader's list of controls does
	// not read "Retract…, Retract…".
	require.Equal(t, []string{"Retract Ana's conversation with Mo on " + time.Now().UTC().Format("2 Jan 2006") + "…"},
		evaluate[[]string](t, cy, `[...document.querySelectorAll('summary')].map(s => s.getAttribute('aria-label') || s.textContent)`))
	if keep {
		cy.Screenshot("coach-desktop")
		cy.Viewport(390, 844)
		cy.Screenshot("coach-phone")
		cy.Viewport(1280, 900)
	}
	require.Equal(t, 200, cy.Click(`form[action$="/verify"] button`))
	require.Contains(t, cy.Text(".flash"), "Conversation verified.")
	require.Contains(t, cy.Text(`section[aria-labelledby="queue"]`), "No conversations are waiting for your verification.")

	// Ana's progress moved.
	require.Equal(t, 200, ana.Visit(base+"/me"))
	require.Contains(t, ana.Text("#rule-p1-mentor-4-words"), "3 of 4 verified mentor conversations within 60 days")
	require.Equal(t, "3", evaluate[string](t, ana, `document.querySelector('progress').getAttribute('value')`))
	require.Contains(t, ana.Text("#conversation-list"), "Verified by Cy")

	// At a phone's width nothing scrolls sideways: wide tables scroll inside their wrapper.
	for _, b := range []*browsertest.Browser{ana, cy} {
		b.Viewport(390, 844)
	}
	require.Equal(t, 200, ana.Visit(base+"/me"))
	require.False(t, evaluate[bool](t, ana, overflows), "the home page scrolls sideways at 390px")
	require.Equal(t, 200, cy.Visit(base+"/coach"))
	require.False(t, evaluate[bool](t, cy, overflows), "the coach page scrolls sideways at 390px")
	if keep {
		ana.Screenshot("home-phone")
	}
}
