package browsertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

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
<button>Send</button></form></main>`)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		if r.PostFormValue("name") == "" {
			http.Error(w, "name required", http.StatusUnprocessableEntity)
			return
		}
		fmt.Fprintf(w, `<!doctype html><title>echo</title><main><p id="out">hello %s, ok=%s</p></main>`,
			r.PostFormValue("name"), r.PostFormValue("ok"))
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
	require.Equal(t, 200, b.Click("form button"))
	require.Equal(t, "hello Ana, ok=yes", b.Text("#out"))
	b.Viewport(390, 844)
	path := b.Screenshot("echo")
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Greater(t, info.Size(), int64(100))
	require.NoError(t, os.RemoveAll(path))
}
