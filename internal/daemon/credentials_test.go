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

// TestAdminCredentials: a running daemon's /v1 needs the read or write
// token, reads included; a token file changed under an unchanged config
// takes effect without a restart, through the file watcher and through
// SIGHUP (ReloadFile); a changed file that is refused keeps the running
// tokens; a Host not the admin server's is refused.
func TestAdminCredentials(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile := func(name, v string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("read-token", "first-read-token-0123456789")
	writeFile("write-token", "first-write-token-0123456789")
	path := filepath.Join(dir, "syncd.yaml")
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q}
log: {level: info, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: "127.0.0.1:0", read_token_file: secrets/read-token, write_token_file: secrets/write-token}
providers: [{name: fake, kind: fake}]
jobs: [{name: pull, kind: pull, schedule: "@every 1h"}]
`, srv.URL, srv.Prefix, key1)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logs := &lines{c: make(chan string, 64)}
	d, err := New(cfg, Options{Logger: zerolog.New(logs), ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	call := func(method, p, token, host string) int {
		t.Helper()
		req := must(http.NewRequest(method, "http://"+d.Addr()+p, nil))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	check := func(what, method, p, token string, want int) {
		t.Helper()
		if got := call(method, p, token, ""); got != want {
			t.Errorf("%s: %s %s: %d, want %d", what, method, p, got, want)
		}
	}
	check("no token", "GET", "/v1/jobs", "", 401)
	check("no token", "GET", "/v1/users", "", 401)
	check("read", "GET", "/v1/jobs", "first-read-token-0123456789", 200)
	check("read", "POST", "/v1/jobs/pull/pause", "first-read-token-0123456789", 403)
	check("write", "POST", "/v1/jobs/pull/resume", "first-write-token-0123456789", 200)
	check("open", "GET", "/metrics", "", 200)
	if got := call("GET", "/healthz", "", "rebind.attacker.example"); got != http.StatusMisdirectedRequest {
		t.Errorf("Host rebind.attacker.example: %d, want 421", got)
	}

	// The write token file changes, the config does not: the watcher
	// applies it.
	writeFile("write-token", "second-write-token-0123456789")
	logs.waitLine(t, "admin credentials reloaded")
	check("old write token", "GET", "/v1/jobs", "first-write-token-0123456789", 401)
	check("new write token", "POST", "/v1/jobs/pull/resume", "second-write-token-0123456789", 200)

	// A token file changed to something refused keeps the running tokens.
	writeFile("write-token", "short")
	logs.waitLine(t, "admin token files rejected")
	check("write token kept", "POST", "/v1/jobs/pull/resume", "second-write-token-0123456789", 200)

	// SIGHUP with the config unchanged reads the token files again.
	writeFile("write-token", "third-write-token-0123456789")
	writeFile("read-token", "second-read-token-0123456789")
	if err := d.ReloadFile(); err != nil {
		t.Fatal(err)
	}
	check("read token after SIGHUP", "GET", "/v1/jobs", "second-read-token-0123456789", 200)
	check("old read token after SIGHUP", "GET", "/v1/jobs", "first-read-token-0123456789", 401)
	check("write token after SIGHUP", "POST", "/v1/jobs/pull/resume", "third-write-token-0123456789", 200)

	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, tok := range []string{"first-", "second-", "third-"} {
		if strings.Contains(logs.buf.String(), tok) {
			t.Errorf("the log holds a token (%s...)", tok)
		}
	}
	if !strings.Contains(logs.buf.String(), `"credential":"write"`) {
		t.Error("no write was logged with its credential")
	}
}
