package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/refresher"
)

var (
	key1 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	key2 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// httpGetAuth is httpGet with a bearer token (every /v1 route needs one).
func httpGetAuth(url, token string) (int, string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func metric(body, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// events signals each job run and refresh pass of the daemons it is
// given to, so a test re-checks a condition when something happened.
type events chan struct{}

func (ev events) options(o Options) Options {
	o.ObserveRun = func(jobs.Run) { ev.signal() }
	o.ObserveRefresh = func(refresher.Result) { ev.signal() }
	return o
}

func (ev events) signal() {
	select {
	case ev <- struct{}{}:
	default:
	}
}

// waitFor re-checks ok after every event until it holds or timeout.
func (ev events) waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	for !ok() {
		select {
		case <-ev:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// lines is a log writer that hands each line to a channel too.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
	c   chan string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	select {
	case l.c <- string(p):
	default:
	}
	return len(p), nil
}

// waitLine waits for a log line containing s.
func (l *lines) waitLine(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line := <-l.c:
			if strings.Contains(line, s) {
				return
			}
		case <-deadline:
			t.Fatalf("no log line %q", s)
		}
	}
}

// TestDaemonEndToEnd: two replicas on one Redis store tokens through the
// admin API, pull into the sink, push to the provider, refresh, flag a
// revoked user once, share gauges, reload (applied, and a broken config
// rejected) and stop within the grace with every claim handed back.
func TestDaemonEndToEnd(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	keyFile := filepath.Join(dir, "contract.pem")
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	fake, err := digimefake.New(digimefake.Options{AppID: "app", ContractID: "con", ContractKey: &key.PublicKey,
		AccessLifetime: 20 * time.Second, PendingPolls: -1, RunningPolls: -1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(fake.Handler())
	defer hs.Close()
	adminToken := "e2e-admin-token-0123456789"
	_ = os.WriteFile(filepath.Join(dir, "admin-token"), []byte(adminToken), 0o600)
	writeCfg := func(i int, pullSchedule string) string {
		doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 4}
log: {level: info, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: "127.0.0.1:0", token_file: admin-token}
shutdown_grace: 5s
stats_interval: 1s
refresher: {poll_interval: 100ms, lease: 10s}
runner: {poll_interval: 100ms, lease: 10s}
providers:
  - name: digime
    kind: digime
    lead: 15s
    jitter: 1s
    default_lifetime: 1m
    timeout: 5s
    retry_initial: 1s
    retry_max: 5s
    digime: {base_url: %q, app_id: app, contract_id: con, private_key_file: contract.pem, poll_interval: 50ms}
jobs:
  - {name: pull, kind: pull, schedule: %q}
  - {name: push, kind: push, schedule: "@every 1s"}
`, srv.URL, srv.Prefix, key1, hs.URL+digimefake.PathPrefix, pullSchedule)
		path := filepath.Join(dir, fmt.Sprintf("syncd-%d.yaml", i))
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ev := make(events, 1)
	var ds []*Daemon
	var admins []string
	for i := range 2 {
		path := writeCfg(i, "@every 1s")
		cfg, err := config.Load(path, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		logs, err := os.Create(filepath.Join(dir, fmt.Sprintf("syncd-%d.log", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logs.Close() })
		d, err := New(cfg, ev.options(Options{Logger: zerolog.New(logs), ConfigPath: path}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Stop(context.Background()) })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = d.Start(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := httpGet("http://" + d.Addr() + "/readyz"); c != 200 {
			t.Fatalf("readyz %d after Start", c)
		}
		ds, admins = append(ds, d), append(admins, d.Addr())
	}

	// The app stores tokens through the admin API (digi.me SDK format).
	users := []string{"ann", "ben", "cat", "dan"}
	put := func(u string) {
		tok := fake.Issue(u)
		body := fmt.Sprintf(`{"accessToken":{"value":%q,"expiry":%d},"refreshToken":{"value":%q,"expiry":%d},"user":{"id":%q}}`,
			tok.AccessToken, tok.AccessExpiry.Unix(), tok.RefreshToken, tok.RefreshExpiry.Unix(), u)
		req, _ := http.NewRequest(http.MethodPut, "http://"+admins[0]+"/v1/users/"+u+"/token", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PUT token %s: %v %v", u, err, resp)
		}
		resp.Body.Close()
	}
	// Without the token, reads and writes are refused.
	if code, _ := httpGet("http://" + admins[0] + "/v1/users"); code != 401 {
		t.Fatalf("unauthenticated read: %d", code)
	}
	if resp, err := http.DefaultClient.Do(must(http.NewRequest(http.MethodPut, "http://"+admins[0]+"/v1/users/x/token", strings.NewReader("{}")))); err != nil || resp.StatusCode != 401 {
		t.Fatalf("unauthenticated write: %v %v", err, resp)
	}
	rdb := srv.Client(t)
	store := redisstore.New(rdb, redisstore.Options{Prefix: srv.Prefix, Shards: 4})
	for _, u := range users {
		fake.AddFile(u, digimefake.File{Name: u + "-1.json", Data: []byte(`{"n":1}`), MimeType: "application/json"})
		fake.AddFile(u, digimefake.File{Name: u + "-2.json", Data: []byte(`{"n":2}`), MimeType: "application/json", Compression: "gzip"})
		put(u)
		_ = rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: store.OutboxKey(u), Values: []any{"data", "hello " + u, "mime_type", "text/plain"}}).Err()
	}
	// Pulls land in the sink, pushes in the fake, and tokens refresh
	// (20s lifetime, 15s lead).
	ev.waitFor(t, "pulls, pushes and refreshes", 40*time.Second, func() bool {
		n, _ := rdb.XLen(context.Background(), srv.Prefix+"pulled").Result()
		pushed := 0
		for _, u := range users {
			pushed += len(fake.Imports(u))
		}
		return n >= 8 && pushed == 4 && fake.Stats().Refreshes >= 4
	})
	if n, _ := rdb.XLen(context.Background(), srv.Prefix+"pulled").Result(); n != 8 {
		t.Fatalf("sink holds %d items, want each of 8 files once (cursor)", n)
	}
	// Revoke one user's consent and kill her access token: the next pull
	// refreshes, digi.me answers InvalidToken, she is flagged.
	fake.Revoke("cat")
	fake.InvalidateAccess("cat")
	ev.waitFor(t, "cat in the re-auth queue", 45*time.Second, func() bool {
		_, body := httpGetAuth("http://"+admins[1]+"/v1/reauth", adminToken)
		return strings.Contains(body, `"user":"cat"`) && strings.Contains(body, `"reason":"invalid_grant"`)
	})
	flagged := 0.0
	for _, a := range admins {
		_, m := httpGet("http://" + a + "/metrics")
		flagged += metric(m, `syncd_reauth_flagged_total{reason="invalid_grant"}`)
	}
	if flagged != 1 {
		t.Fatalf("syncd_reauth_flagged_total across replicas = %v, want 1", flagged)
	}
	ev.waitFor(t, "shared gauges", 10*time.Second, func() bool {
		_, m0 := httpGet("http://" + admins[0] + "/metrics")
		_, m1 := httpGet("http://" + admins[1] + "/metrics")
		return metric(m0, "syncd_reauth_queue_size") == 1 && metric(m1, "syncd_reauth_queue_size") == 1 &&
			metric(m0, `syncd_users{state="active"}`) == 3 && metric(m1, `syncd_users{state="reauth_required"}`) == 1
	})
	code, body := httpGetAuth("http://"+admins[0]+"/v1/users/ann", adminToken)
	var view struct {
		State string
		Jobs  []struct{ Job, LastError string }
	}
	if code != 200 || json.Unmarshal([]byte(body), &view) != nil || view.State != "active" || len(view.Jobs) != 2 {
		t.Fatalf("GET user: %d %s", code, body)
	}

	// A reload (SIGHUP) with a changed schedule: applied.
	writeCfg(0, "@every 1h")
	if err := ds[0].ReloadFile(); err != nil {
		t.Fatal(err)
	}
	_, b := httpGetAuth("http://"+admins[0]+"/v1/jobs", adminToken)
	_, m := httpGet("http://" + admins[0] + "/metrics")
	if !strings.Contains(b, `"schedule":"@every 1h"`) || metric(m, `syncd_config_reload_total{result="ok"}`) < 1 {
		t.Fatalf("after the reload the jobs are %s", b)
	}
	// A broken config: rejected, the running one stays.
	if err := os.WriteFile(filepath.Join(dir, "syncd-0.yaml"), []byte("jobs: [{name: x, kind: pull, schedule: \"*/61 * * * *\"}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ds[0].ReloadFile(); err == nil {
		t.Fatal("a broken config was applied")
	}
	if _, m := httpGet("http://" + admins[0] + "/metrics"); metric(m, `syncd_config_reload_total{result="error"}`) < 1 {
		t.Fatal("the rejected reload was not counted")
	}
	if _, b := httpGetAuth("http://"+admins[0]+"/v1/jobs", adminToken); !strings.Contains(b, `"schedule":"@every 1h"`) {
		t.Fatalf("after a broken reload the jobs are %s", b)
	}
	if c, _ := httpGet("http://" + admins[0] + "/readyz"); c != 200 {
		t.Fatal("not ready after a rejected reload")
	}

	// Stop: within the grace, claims handed back.
	for i, d := range ds {
		start := time.Now()
		if err := d.Stop(context.Background()); err != nil {
			t.Fatalf("daemon %d stopped with %v", i, err)
		}
		if d := time.Since(start); d > 7*time.Second {
			t.Fatalf("daemon %d took %v to stop", i, d)
		}
	}
	// With both stopped, no push entry is parked under a lease (now+10s):
	// each was handed back or rescheduled to its next 1s slot.
	limit := time.Now().Add(3 * time.Second)
	for _, u := range []string{"ann", "ben", "dan"} {
		due, err := store.DueAt(context.Background(), "job:push", u)
		if err != nil || due.IsZero() || due.After(limit) {
			t.Fatalf("push entry of %s due %v (%v): a claim was not handed back", u, due, err)
		}
	}
	// No token value in any log line.
	for i := range ds {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("syncd-%d.log", i)))
		for _, s := range fake.Secrets() {
			if strings.Contains(string(b), s) {
				t.Fatalf("daemon %d logged a token value", i)
			}
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if strings.Contains(sc.Text(), "eyJ") {
				t.Fatalf("daemon %d logged a JWT: %.80s", i, sc.Text())
			}
		}
	}
}

// Redis down at start: the daemon stays up, /healthz answers, /readyz
// fails; when Redis comes it becomes ready. Then Redis dies again: no
// crash, not ready; back again: ready.
func TestDaemonSurvivesRedisOutage(t *testing.T) {
	srv := redistest.StartPrivate(t)
	srv.Kill(t)
	adminAddr := freeAddr(t)
	cfg, err := config.Parse(strings.NewReader(fmt.Sprintf(`redis: {url: %q, dial_timeout: 500ms}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: %q}
log: {level: info, format: json}
jobs: [{name: pull, kind: pull, schedule: "@every 1s"}]
`, srv.URL, key1, adminAddr)), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	logs := &lines{c: make(chan string, 100)}
	d, err := New(cfg, Options{Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	started := make(chan error, 1)
	go func() { started <- d.Start(context.Background()) }()
	logs.waitLine(t, "admin server listening")
	if c, _ := httpGet("http://" + adminAddr + "/healthz"); c != 200 {
		t.Fatalf("healthz %d without Redis, want 200", c)
	}
	if c, _ := httpGet("http://" + adminAddr + "/readyz"); c != 503 {
		t.Fatalf("readyz %d without Redis, want 503", c)
	}
	srv.Restart(t)
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("not started once Redis is up")
	}
	if c, _ := httpGet("http://" + adminAddr + "/readyz"); c != 200 {
		t.Fatalf("readyz %d once Redis is up", c)
	}
	srv.Kill(t)
	if c, _ := httpGet("http://" + adminAddr + "/readyz"); c != 503 {
		t.Fatalf("readyz %d while Redis is down", c)
	}
	select {
	case err := <-d.Failed():
		t.Fatalf("daemon failed while Redis was down: %v", err)
	default:
	}
	srv.Restart(t)
	if c, _ := httpGet("http://" + adminAddr + "/readyz"); c != 200 {
		t.Fatalf("readyz %d once Redis is back", c)
	}
}

// Stop is idempotent, safe before Start and bounded while Start still
// waits for Redis.
func TestStopBeforeAndDuringStart(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader(fmt.Sprintf(`redis: {url: "redis://127.0.0.1:1/0", dial_timeout: 100ms}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: "127.0.0.1:0"}
`, key1)), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err == nil {
		t.Fatal("a stopped daemon started")
	}

	logs := &lines{c: make(chan string, 100)}
	d, err = New(cfg, Options{Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- d.Start(context.Background()) }()
	logs.waitLine(t, "redis unavailable; retrying")
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err == nil {
		t.Fatal("Start succeeded without Redis")
	}
}
