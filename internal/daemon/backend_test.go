package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/redistest"
)

// TestAPIRedisDown: while Redis is down the API answers 503 (try again),
// never 400 (the request was fine) or 500, and the body names nothing of
// the failure (no address); the caller's own mistakes are still told as
// such.
func TestAPIRedisDown(t *testing.T) {
	srv := redistest.StartPrivate(t)
	dir := t.TempDir()
	const token = "trigger-token-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(strings.NewReader(fmt.Sprintf(`redis: {url: %q, dial_timeout: 500ms}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: "127.0.0.1:0", token_file: admin-token}
providers: [{name: fake, kind: fake}]
jobs: [{name: pull, kind: pull, schedule: "@every 5m"}]
`, srv.URL, key1)), dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req := must(http.NewRequest(method, "http://"+d.Addr()+path, strings.NewReader(body)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call("PUT", "/v1/users/u1/token", `{"access_token":"AT-u1","refresh_token":"RT-u1","token_type":"Bearer","expires_in":3600}`); code != 200 {
		t.Fatalf("put token: %d %s", code, body)
	}
	if code, body := call("POST", "/v1/jobs/pull/trigger?user=u1", ""); code != 200 {
		t.Fatalf("trigger with Redis up: %d %s", code, body)
	}
	// Ids outside the grammar never get a token: ".." would be a path
	// in the dir sink, a fullwidth "a" a look-alike of "a".
	for _, id := range []string{"%2e%2e", "%2E", "%EF%BD%81"} {
		if code, body := call("PUT", "/v1/users/"+id+"/token", `{"access_token":"AT-x","refresh_token":"RT-x"}`); code != 400 {
			t.Errorf("put token for %s: %d %s, want 400", id, code, body)
		}
	}

	srv.Kill(t)
	for _, tc := range []struct{ method, path string }{
		{"POST", "/v1/jobs/pull/trigger"},
		{"POST", "/v1/jobs/pull/trigger?user=u1"},
		{"GET", "/v1/users/u1"},
		{"GET", "/v1/jobs"},
	} {
		code, body := call(tc.method, tc.path, "")
		if code != 503 || !strings.Contains(body, `"error"`) || strings.Contains(body, "127.0.0.1") {
			t.Errorf("%s %s with Redis down: %d %s, want 503 naming no address", tc.method, tc.path, code, body)
		}
	}
	if code, body := call("POST", "/v1/jobs/nope/trigger", ""); code != 404 || !strings.Contains(body, "unknown job") {
		t.Errorf("trigger an unknown job with Redis down: %d %s, want 404", code, body)
	}
	if code, body := call("GET", "/v1/users/bad%20id", ""); code != 400 {
		t.Errorf("a bad user id with Redis down: %d %s, want 400", code, body)
	}
}
