// Package browsertest drives a real headless Chromium from Go tests (chromedp), for the
// pages' end-to-end tests: the pages must work in a browser, not only in an HTTP client.
//
// Every Browser has its own profile, so cookies and sessions never leak between tests.
// When a test fails, the page it was on is saved as a screenshot and as HTML under
// .tandem/screenshots/<test name>/ at the repository root (git-ignored), so a failure in CI
// can be looked at afterwards. The folder is emptied when the test starts its first browser,
// so it only ever holds files of the latest run.
package browsertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds each step (a navigation, a click and the page it loads, a query).
const Timeout = 30 * time.Second

// Browser is one headless Chromium with one tab.
type Browser struct {
	t   testing.TB
	ctx context.Context // the tab's context: ends when the test ends
	n   int             // screenshots taken, for file names
	id  int             // which of the test's browsers, for file names
}

// browsers counts the browsers of each test (each run of it: -count, subtests), so two in
// one test keep apart their files and only the first empties the test's folder.
var browsers sync.Map // testing.TB → *atomic.Int64

// ExecPath finds Chromium: $TANDEM_CHROMIUM, else chromium, chromium-browser or
// google-chrome on PATH. It returns "" when there is none.
func ExecPath() string {
	if p := os.Getenv("TANDEM_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// New starts Chromium for t and stops it when t ends. Without Chromium the test is skipped,
// unless TANDEM_REQUIRE_BROWSER=1 (set by make test), when it fails: a browser test that
// silently skips in CI proves nothing.
func New(t testing.TB) *Browser {
	t.Helper()
	path := ExecPath()
	if path == "" {
		if os.Getenv("TANDEM_REQUIRE_BROWSER") == "1" {
			t.Fatal("browsertest: Chromium not found (install Debian's chromium, or set TANDEM_CHROMIUM); TANDEM_REQUIRE_BROWSER=1")
		}
		t.Skip("browsertest: Chromium not found; install Debian's chromium (make test does) or set TANDEM_CHROMIUM")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// The machine may have no network beyond loopback: keep Chromium from calling home.
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	if os.Geteuid() == 0 { // Chromium refuses to run as root with its sandbox on
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first run starts the browser; it must not carry a timeout (it would stop the browser).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browsertest: start %s: %v", path, err)
	}
	c, loaded := browsers.LoadOrStore(t, new(atomic.Int64))
	if !loaded {
		t.Cleanup(func() { browsers.Delete(t) })
	}
	b := &Browser{t: t, ctx: ctx, id: int(c.(*atomic.Int64).Add(1))}
	if b.id == 1 {
		// The first browser of this run: the files of an earlier run of the test go.
		if dir, err := screenshotDir(t); err == nil {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatalf("browsertest: clear %s: %v", dir, err)
			}
		}
	}
	// Registered after the browser's own cleanup, so it runs first, while the tab lives.
	t.Cleanup(func() {
		if t.Failed() {
			b.saveFailure()
		}
	})
	return b
}

// Context is the tab's context, for chromedp calls the helpers do not cover.
func (b *Browser) Context() context.Context { return b.ctx }

// step runs fn with a bounded context and fails the test with what it was doing.
func (b *Browser) step(what string, fn func(ctx context.Context) error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, Timeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		b.t.Fatalf("browsertest: %s: %v", what, err)
	}
}

// Do runs chromedp actions in the tab.
func (b *Browser) Do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.step("run actions", func(ctx context.Context) error { return chromedp.Do(ctx, steps...) })
}

// navigate runs steps that load a page and returns the page's HTTP status.
func (b *Browser) navigate(what string, steps ...chromedp.Action[chromedp.Void]) int {
	b.t.Helper()
	var status int
	b.step(what, func(ctx context.Context) error {
		resp, err := chromedp.RunResponse(ctx, steps...)
		if err != nil {
			return err
		}
		status = int(resp.Status)
		return nil
	})
	return status
}

// Visit loads url and returns its HTTP status (after redirects).
func (b *Browser) Visit(url string) int {
	b.t.Helper()
	return b.navigate("visit "+url, chromedp.Navigate(url))
}

// Fill sets the value of the form field matched by the CSS selector.
func (b *Browser) Fill(sel, value string) {
	b.t.Helper()
	b.step("fill "+sel, func(ctx context.Context) error {
		return chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.SetValue(chromedp.CSS(sel), value))
	})
}

// Check ticks the checkbox or radio button matched by the CSS selector as a person does: by
// clicking it, or its label when the box itself is not visible (a styled control). One
// already ticked is left alone; one the click did not tick (covered, disabled) fails the test.
func (b *Browser) Check(sel string) {
	b.t.Helper()
	b.step("check "+sel, func(ctx context.Context) error {
		state := func() (checked, visible bool, err error) {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[[]bool](fmt.Sprintf(`(() => {
				const e = document.querySelector(%q);
				if (!e) throw new Error("no element");
				const r = e.getBoundingClientRect();
				return [e.checked, r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== "hidden"];
			})()`, sel)))
			if err != nil {
				return false, false, err
			}
			return v[0], v[1], nil
		}
		checked, visible, err := state()
		if err != nil || checked {
			return err
		}
		target := chromedp.Click(chromedp.CSS(sel))
		if !visible {
			labelled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q).labels?.length > 0`, sel)))
			if err != nil || !labelled {
				return cmp.Or(err, errors.New("it is not visible and has no label to click"))
			}
			target = chromedp.Click(chromedp.JSPath(fmt.Sprintf(`document.querySelector(%q).labels[0]`, sel)))
		}
		if err := chromedp.Do(ctx, target); err != nil {
			return err
		}
		if checked, _, err = state(); err == nil && !checked {
			err = errors.New("clicking it did not tick it (is it covered or disabled?)")
		}
		return err
	})
}

// Click clicks the element matched by the CSS selector — a link or a form's button — and
// waits for the page it loads. It returns that page's HTTP status.
func (b *Browser) Click(sel string) int {
	b.t.Helper()
	return b.navigate("click "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// Text is the visible text of the first element matched by the CSS selector.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	var text string
	b.step("read "+sel, func(ctx context.Context) error {
		var err error
		text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		return err
	})
	return text
}

// HTML is the outer HTML of the page.
func (b *Browser) HTML() string {
	b.t.Helper()
	var html string
	b.step("read the page", func(ctx context.Context) error {
		var err error
		html, err = chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		return err
	})
	return html
}

// WaitText loads url until the text of sel contains want (for work done in the background,
// such as a payout settling), or fails the test after timeout with the text last seen.
func (b *Browser) WaitText(url, sel, want string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b.Visit(url)
		var text string
		ctx, cancel := context.WithTimeout(b.ctx, Timeout)
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil && strings.Contains(text, want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browsertest: %s: %q not in %s after %s; last text: %q (err %v)", url, want, sel, timeout, text, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// SignIn signs the browser in at base (the server's root URL) with a token, through the
// sign-in form, and fails the test unless the form accepts it.
func (b *Browser) SignIn(base, token string) {
	b.t.Helper()
	b.Visit(strings.TrimSuffix(base, "/") + "/sign-in")
	b.Fill("#token", token)
	if status := b.Click(`form[action="/sign-in"] button`); status != 200 {
		b.t.Fatalf("browsertest: sign in: status %d", status)
	}
	if strings.Contains(b.Text("main"), "That token is unknown") {
		b.t.Fatal("browsertest: sign in: the token was refused")
	}
}

// Viewport sets the size of the page, e.g. 390×844 for a phone.
func (b *Browser) Viewport(width, height int64) {
	b.t.Helper()
	b.Do(chromedp.EmulateViewport(width, height))
}

// Screenshot saves a PNG of the whole page under the test's screenshot folder and returns
// its path, for pages a test wants to keep (or a person to look at).
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	var png []byte
	b.step("screenshot", func(ctx context.Context) error {
		var err error
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		return err
	})
	path, err := b.save(name+".png", png)
	if err != nil {
		b.t.Fatalf("browsertest: %v", err)
	}
	return path
}

// saveFailure keeps what the browser showed when the test failed.
func (b *Browser) saveFailure() {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		if path, err := b.save("failure.png", png); err == nil {
			b.t.Logf("browsertest: screenshot of the failure: %s", path)
		}
	}
	html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err == nil {
		if path, err := b.save("failure.html", []byte(html)); err == nil {
			b.t.Logf("browsertest: page of the failure: %s", path)
		}
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// screenshotDir is t's folder of screenshots: <repository>/.tandem/screenshots/<test name>.
func screenshotDir(t testing.TB) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return screenshotDirIn(root, t), nil
}

func screenshotDirIn(root string, t testing.TB) string {
	return filepath.Join(root, ".tandem", "screenshots", unsafeName.ReplaceAllString(t.Name(), "_"))
}

// save writes a file under <repository>/.tandem/screenshots/<test name>/.
func (b *Browser) save(name string, data []byte) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	b.n++
	dir := screenshotDirIn(root, b.t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	path := filepath.Join(dir, fmt.Sprintf("browser%d-%02d-%s", b.id, b.n, name))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("save %s: %w", name, err)
	}
	return path, nil
}

// repoRoot is the nearest folder above the working directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("browsertest: no go.mod above the working directory")
		}
		dir = parent
	}
}
