package browsertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// TestFormRoundTrip drives a form through a real Chromium: fill, tick, submit, read the
// page the server answered, and keep a screenshot.
func TestFormRoundTrip(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>form</title><main><form method="post" action="/echo">
<label for="name">Name</label><input id="name" name="name"><input type="checkbox" id="ok" name="ok" value="yes">
<label><input type="checkbox" id="hidden" name="styled" value="yes" style="opacity:0;position:absolute;width:0;height:0"> Styled box</label>
<button>Send</button></form></main>`)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		// The handler runs on the server's goroutine: it reports, it does not stop the test.
		if err := r.ParseForm(); err != nil {
			t.Errorf("parse form: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.PostFormValue("name") == "" {
			http.Error(w, "name required", http.StatusUnprocessableEntity)
			return
		}
		fmt.Fprintf(w, `<!doctype html><title>echo</title><main><p id="out">hello %s, ok=%s, styled=%s</p></main>`,
			r.PostFormValue("name"), r.PostFormValue("ok"), r.PostFormValue("styled"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := New(t)
	require.Equal(t, 200, b.Visit(srv.URL+"/"))
	require.Equal(t, 422, b.Click("form button"), "an empty form is refused and the status is seen")
	require.Contains(t, b.Text("body"), "name required")

	b.Visit(srv.URL + "/")
	b.Fill("#name", "Ana")
	b.Check("#ok")
	b.Check("#ok") // ticked already: left ticked
	b.Check("#hidden")
	require.Equal(t, 200, b.Click("form button"))
	require.Equal(t, "hello Ana, ok=yes, styled=yes", b.Text("#out"))
	b.Viewport(390, 844)
	path := b.Screenshot("echo")
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Greater(t, info.Size(), int64(100))
	require.NoError(t, os.RemoveAll(path))
}

// TestCheckClicksLikeAPerson: Check ticks a box by clicking it, so a box a person could not
// click (covered by another element) is not ticked behind their back: the step fails.
func TestCheckClicksLikeAPerson(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>covered</title><main style="position:relative">
<input type="checkbox" id="covered" name="covered" style="position:absolute;left:0;top:0;margin:0">
<div style="position:absolute;left:0;top:0;width:200px;height:200px;background:#fff"></div></main>`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ft := &fakeT{TB: t}
	b := New(t)
	b.t = ft
	require.Equal(t, 200, b.Visit(srv.URL+"/"))
	func() {
		defer func() { _ = recover() }() // fakeT.Fatalf stops the step as FailNow would
		b.Check("#covered")
	}()
	require.NotEmpty(t, ft.fatal, "a covered box must not be ticked")
	require.Contains(t, ft.fatal, "did not tick it")
	b.t = t
	checked, err := chromedp.Run(b.Context(), chromedp.Evaluate[bool](`document.querySelector("#covered").checked`))
	require.NoError(t, err)
	require.False(t, checked)
}

// TestNewClearsTheTestsScreenshots: the first browser of a test empties the test's folder
// (what an earlier run left); a second browser of the same test keeps what the first saved.
func TestNewClearsTheTestsScreenshots(t *testing.T) {
	t.Parallel()
	if ExecPath() == "" && os.Getenv("TANDEM_REQUIRE_BROWSER") != "1" {
		t.Skip("browsertest: Chromium not found")
	}
	dir, err := screenshotDir(t)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	stale := filepath.Join(dir, "browser1-01-stale.png")
	require.NoError(t, os.WriteFile(stale, []byte("an earlier run"), 0o644))

	first := New(t)
	require.NoFileExists(t, stale, "the first browser clears the folder")
	kept, err := first.save("kept.txt", []byte("this run"))
	require.NoError(t, err)
	New(t)
	require.FileExists(t, kept, "a second browser of the same test keeps the first one's files")
	require.NoError(t, os.RemoveAll(dir))
}

// fakeT records a fatal failure instead of ending the test, for tests of failing steps.
type fakeT struct {
	testing.TB
	fatal string
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	panic("fatal")
}

func (f *fakeT) Helper() {}
