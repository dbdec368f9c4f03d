package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
)

// daemonProc is one `syncd run` process.
type daemonProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	logs *os.File
	done chan error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "syncd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startDaemon(t *testing.T, bin, config, logDir string, i int) *daemonProc {
	t.Helper()
	logs, err := os.Create(filepath.Join(logDir, fmt.Sprintf("syncd-%d.log", i)))
	if err != nil {
		t.Fatal(err)
	}
	p := &daemonProc{t: t, logs: logs, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "run", "--config", config)
	p.cmd.Stdout, p.cmd.Stderr = logs, logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		logs.Close()
	})
	return p
}

// get polls url until ok accepts the body or the deadline passes: the
// daemon is another process, there is no channel to wait on.
func poll(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond) // polling another process, not synchronising goroutines
	}
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

func metric(body, name string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` ([0-9.e+-]+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestDaemonEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two daemons")
	}
	bin := buildBinary(t)
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
	admins := []string{freeAddr(t), freeAddr(t)}
	writeCfg := func(i int, pullSchedule string) string {
		doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 4}
log: {level: info, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: %q, token_file: admin-token}
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
`, srv.URL, srv.Prefix, key1, admins[i], hs.URL+digimefake.PathPrefix, pullSchedule)
		path := filepath.Join(dir, fmt.Sprintf("syncd-%d.yaml", i))
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfgs := []string{writeCfg(0, "@every 1s"), writeCfg(1, "@every 1s")}
	procs := []*daemonProc{startDaemon(t, bin, cfgs[0], dir, 0), startDaemon(t, bin, cfgs[1], dir, 1)}
	for _, a := range admins {
		poll(t, "readyz on "+a, 30*time.Second, func() bool { c, _ := httpGet("http://" + a + "/readyz"); return c == 200 })
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
	// Without the token, writes are refused.
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
	poll(t, "pulls, pushes and refreshes", 40*time.Second, func() bool {
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
	poll(t, "cat in the re-auth queue", 20*time.Second, func() bool {
		_, body := httpGet("http://" + admins[1] + "/v1/reauth")
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
	poll(t, "shared gauges", 10*time.Second, func() bool {
		_, m0 := httpGet("http://" + admins[0] + "/metrics")
		_, m1 := httpGet("http://" + admins[1] + "/metrics")
		return metric(m0, "syncd_reauth_queue_size") == 1 && metric(m1, "syncd_reauth_queue_size") == 1 &&
			metric(m0, `syncd_users{state="active"}`) == 3 && metric(m1, `syncd_users{state="reauth_required"}`) == 1
	})
	code, body := httpGet("http://" + admins[0] + "/v1/users/ann")
	var view struct {
		State string
		Jobs  []struct{ Job, LastError string }
	}
	if code != 200 || json.Unmarshal([]byte(body), &view) != nil || view.State != "active" || len(view.Jobs) != 2 {
		t.Fatalf("GET user: %d %s", code, body)
	}

	// SIGHUP with a changed schedule: applied.
	writeCfg(0, "@every 1h")
	_ = procs[0].cmd.Process.Signal(syscall.SIGHUP)
	poll(t, "schedule reload", 15*time.Second, func() bool {
		_, b := httpGet("http://" + admins[0] + "/v1/jobs")
		_, m := httpGet("http://" + admins[0] + "/metrics")
		return strings.Contains(b, `"schedule":"@every 1h"`) && metric(m, `syncd_config_reload_total{result="ok"}`) >= 1
	})
	// SIGHUP with a broken config: rejected, the running one stays.
	if err := os.WriteFile(cfgs[0], []byte("jobs: [{name: x, kind: pull, schedule: \"*/61 * * * *\"}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = procs[0].cmd.Process.Signal(syscall.SIGHUP)
	poll(t, "rejected reload", 15*time.Second, func() bool {
		_, m := httpGet("http://" + admins[0] + "/metrics")
		return metric(m, `syncd_config_reload_total{result="error"}`) >= 1
	})
	if _, b := httpGet("http://" + admins[0] + "/v1/jobs"); !strings.Contains(b, `"schedule":"@every 1h"`) {
		t.Fatalf("after a broken reload the jobs are %s", b)
	}
	if c, _ := httpGet("http://" + admins[0] + "/readyz"); c != 200 {
		t.Fatal("not ready after a rejected reload")
	}

	// SIGTERM: exit 0 within the grace, claims handed back.
	for i, p := range procs {
		start := time.Now()
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			p.done <- err
			if err != nil {
				t.Fatalf("daemon %d exited with %v", i, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("daemon %d did not stop within the grace period", i)
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
	for i := range procs {
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

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Redis down at start: the daemon stays up, /healthz answers, /readyz
// fails; when Redis comes it becomes ready. Then Redis dies again: no
// crash, not ready; back again: ready.
func TestDaemonSurvivesRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	redisAddr, adminAddr := freeAddr(t), freeAddr(t)
	_, port, _ := net.SplitHostPort(redisAddr)
	cfg := filepath.Join(dir, "syncd.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf(`redis: {url: "redis://%s/0", dial_timeout: 500ms}
encryption: {keys: [{id: k1, secret: %q}]}
admin: {listen: %q}
log: {level: warn, format: json}
jobs: [{name: pull, kind: pull, schedule: "@every 1s"}]
`, redisAddr, key1, adminAddr)), 0o600)
	p := startDaemon(t, bin, cfg, dir, 0)
	poll(t, "healthz", 20*time.Second, func() bool { c, _ := httpGet("http://" + adminAddr + "/healthz"); return c == 200 })
	if c, _ := httpGet("http://" + adminAddr + "/readyz"); c != 503 {
		t.Fatalf("readyz %d without Redis, want 503", c)
	}
	startRedis := func() *exec.Cmd {
		cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	r := startRedis()
	poll(t, "ready once Redis is up", 30*time.Second, func() bool { c, _ := httpGet("http://" + adminAddr + "/readyz"); return c == 200 })
	_ = r.Process.Kill()
	_ = r.Wait()
	poll(t, "not ready while Redis is down", 10*time.Second, func() bool { c, _ := httpGet("http://" + adminAddr + "/readyz"); return c == 503 })
	select {
	case err := <-p.done:
		t.Fatalf("daemon exited while Redis was down: %v", err)
	default:
	}
	startRedis()
	poll(t, "ready again", 30*time.Second, func() bool { c, _ := httpGet("http://" + adminAddr + "/readyz"); return c == 200 })
}
