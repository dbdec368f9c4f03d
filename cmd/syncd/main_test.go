package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/provider/digime"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/tokens"
)

var (
	key1 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	key2 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
)

type cli struct {
	t      *testing.T
	srv    *redistest.Server
	dir    string
	config string
	jobs   string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	c := &cli{t: t, srv: redistest.Start(t), dir: t.TempDir()}
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	return c
}

func (c *cli) writeConfig(primary, keys string) {
	c.t.Helper()
	c.config = filepath.Join(c.dir, "syncd.yaml")
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 4}
log: {level: warn, format: json}
encryption:
  primary_key: %s
  keys:
    %s
providers: [{name: digime, kind: fake}]
%s`, c.srv.URL, c.srv.Prefix, primary, keys, c.jobs)
	if err := os.WriteFile(c.config, []byte(doc), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// run runs a command in-process and returns its exit code and outputs.
func (c *cli) run(stdin string, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "SYNCD_CONFIG" {
			return c.config
		}
		return ""
	}
	code := run(context.Background(), args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: getenv})
	return code, out.String(), errb.String()
}

func (c *cli) store() *redisstore.Store {
	return redisstore.New(c.srv.Client(c.t), redisstore.Options{Prefix: c.srv.Prefix, Shards: 4})
}

func oauthToken(access, refresh string) string {
	return fmt.Sprintf(`{"access_token":%q,"refresh_token":%q,"token_type":"Bearer","expires_in":3600}`, access, refresh)
}

func digimeToken(access, refresh string, exp time.Time) string {
	return fmt.Sprintf(`{"accessToken":{"value":%q,"expiry":%d},"refreshToken":{"value":%q,"expiry":%d},"user":{"id":"lib-1"},"consentid":"c-1"}`,
		access, exp.Unix(), refresh, exp.Add(30*24*time.Hour).Unix())
}

func TestTokenPutAndShow(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run(oauthToken("AT-secret-1", "RT-secret-1"), "token", "put", "--user", "alice")
	if code != 0 || !strings.Contains(out, "stored token for user alice") || !strings.Contains(out, "state active") {
		t.Fatalf("put: %d %q %q", code, out, errOut)
	}
	file := filepath.Join(c.dir, "tok.json")
	if err := os.WriteFile(file, []byte(digimeToken("AT-secret-2", "RT-secret-2", time.Now().Add(time.Hour))), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := c.run("", "token", "put", "--user", "bob", "--file", file); code != 0 {
		t.Fatalf("put --file: %d %q %q", code, out, errOut)
	}

	code, out, _ = c.run("", "token", "show", "--user", "alice", "--json")
	var st tokens.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("show: %d %q", code, out)
	}
	if st.User != "alice" || st.State != tokens.Active || st.Provider != "digime" || st.NextRefresh == nil || st.KeyID != "k1" {
		t.Fatalf("show: %+v", st)
	}
	if d := time.Until(st.AccessExpiry); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("access expiry in %v, want about 1h", d)
	}
	code, text, _ := c.run("", "token", "show", "--user", "bob")
	if code != 0 || !strings.Contains(text, "refresh expires") {
		t.Fatalf("show text: %d %q", code, text)
	}
	for _, s := range []string{out, text} {
		for _, secret := range []string{"AT-secret", "RT-secret"} {
			if strings.Contains(s, secret) {
				t.Fatalf("token show printed a token value: %q", s)
			}
		}
	}
	if code, _, errOut := c.run("", "token", "show", "--user", "nobody"); code != 2 || !strings.Contains(errOut, `no token stored for user "nobody"`) {
		t.Fatalf("show unknown: %d %q", code, errOut)
	}
}

func TestTokenPutRejectsBadInput(t *testing.T) {
	c := newCLI(t)
	past := time.Now().Add(-48 * time.Hour)
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"malformed json", `{"access_token":`, nil, "token: malformed JSON"},
		{"unknown format", `{"foo":"bar"}`, nil, "token: unknown format"},
		{"missing refresh", `{"access_token":"AT-x","expires_in":60}`, nil, "refresh_token is missing"},
		{"refresh expired", fmt.Sprintf(`{"accessToken":{"value":"AT-x","expiry":%d},"refreshToken":{"value":"RT-x","expiry":%d}}`, past.Unix(), past.Unix()), nil, "refresh token expired at"},
		{"empty user", oauthToken("AT-x", "RT-x"), []string{"--user", ""}, "--user is required"},
		{"bad user", oauthToken("AT-x", "RT-x"), []string{"--user", "a b"}, `user id "a b": contains whitespace`},
		{"empty stdin", "", nil, "no token given"},
		{"unknown provider", oauthToken("AT-x", "RT-x"), []string{"--provider", "nope"}, `unknown provider "nope"`},
		{"bad flag", oauthToken("AT-x", "RT-x"), []string{"--bogus"}, "flag provided but not defined"},
		{"missing file", "", []string{"--file", "/nonexistent/tok.json"}, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"token", "put", "--user", "carol"}
			if tc.args != nil && tc.args[0] == "--user" {
				args = args[:2]
			}
			code, out, errOut := c.run(tc.stdin, append(args, tc.args...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (stdout %q stderr %q)", code, out, errOut)
			}
			if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines != 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q, want one line containing %q", errOut, tc.want)
			}
			if strings.Contains(errOut, "AT-x") || strings.Contains(errOut, "RT-x") {
				t.Fatalf("error leaks a token value: %q", errOut)
			}
		})
	}
	if _, err := c.store().Load(context.Background(), "carol"); err != tokens.ErrNotFound {
		t.Fatalf("bad input wrote a record: %v", err)
	}
}

func TestConfigAndUsageErrors(t *testing.T) {
	c := newCLI(t)
	if code, _, errOut := c.run("", "nonsense"); code != 2 || !strings.Contains(errOut, `unknown command "nonsense"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	if err := os.WriteFile(c.config, []byte("redis: {shards: 0}\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := c.run("", "users", "list")
	if code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "bogus") {
		t.Fatalf("bad config: %d %q", code, errOut)
	}
	// Redis not answering is a runtime error, exit 1.
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	doc, _ := os.ReadFile(c.config)
	doc = bytes.Replace(doc, []byte(c.srv.URL), []byte("redis://127.0.0.1:1/0"), 1)
	_ = os.WriteFile(c.config, doc, 0o600)
	if code, _, errOut := c.run("", "users", "list"); code != 1 || !strings.Contains(errOut, "redis") {
		t.Fatalf("redis down: %d %q", code, errOut)
	}
}

func TestUsersAndReauthList(t *testing.T) {
	c := newCLI(t)
	for _, u := range []string{"u1", "u2", "u3"} {
		if code, _, errOut := c.run(oauthToken("AT-"+u, "RT-"+u), "token", "put", "--user", u); code != 0 {
			t.Fatal(errOut)
		}
	}
	// Flag u2 the way the refresher does.
	ctx := context.Background()
	s := c.store()
	rec, _, err := s.Acquire(ctx, "u2", "test", "", time.Now(), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res, _, err := s.Flag(ctx, "u2", "test", rec.Version, tokens.ReasonInvalidGrant, "reauth:invalid_grant", time.Now()); err != nil || res != tokens.Flagged {
		t.Fatalf("flag: %v %v", res, err)
	}

	code, out, _ := c.run("", "users", "list", "--json")
	var all []tokens.Status
	if code != 0 || json.Unmarshal([]byte(out), &all) != nil || len(all) != 3 {
		t.Fatalf("users list: %d %q", code, out)
	}
	code, out, _ = c.run("", "users", "list", "--state", "reauth_required", "--json")
	var flagged []tokens.Status
	if code != 0 || json.Unmarshal([]byte(out), &flagged) != nil || len(flagged) != 1 || flagged[0].User != "u2" {
		t.Fatalf("users list --state: %d %q", code, out)
	}
	if code, out, _ := c.run("", "users", "list"); code != 0 || strings.Count(out, "\n") != 4 {
		t.Fatalf("users list table: %d %q", code, out)
	}
	if code, _, errOut := c.run("", "users", "list", "--state", "sleepy"); code != 2 || !strings.Contains(errOut, `unknown state "sleepy"`) {
		t.Fatalf("bad state: %d %q", code, errOut)
	}
	code, out, _ = c.run("", "reauth", "list", "--json")
	var q []struct{ User, Reason string }
	if code != 0 || json.Unmarshal([]byte(out), &q) != nil || len(q) != 1 || q[0].User != "u2" || q[0].Reason != "invalid_grant" {
		t.Fatalf("reauth list: %d %q", code, out)
	}
	// A new token clears the flag.
	if code, out, _ := c.run(oauthToken("AT-new", "RT-new"), "token", "put", "--user", "u2"); code != 0 || !strings.Contains(out, "state active") {
		t.Fatalf("put: %q", out)
	}
	if code, out, _ := c.run("", "reauth", "list", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("reauth list after put: %d %q", code, out)
	}
}

func TestKeysRotate(t *testing.T) {
	c := newCLI(t)
	for _, u := range []string{"r1", "r2"} {
		if code, _, errOut := c.run(oauthToken("AT-"+u, "RT-"+u), "token", "put", "--user", u); code != 0 {
			t.Fatal(errOut)
		}
	}
	c.writeConfig("k2", "- {id: k1, secret: "+key1+"}\n    - {id: k2, secret: "+key2+"}")
	code, out, errOut := c.run("", "keys", "rotate", "--json")
	var st tokens.RotateStats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Rekeyed != 2 || st.Scanned != 2 {
		t.Fatalf("rotate: %d %q %q", code, out, errOut)
	}
	// Old key gone: everything still reads, under k2.
	c.writeConfig("k2", "- {id: k2, secret: "+key2+"}")
	code, out, _ = c.run("", "token", "show", "--user", "r1", "--json")
	var s tokens.Status
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || s.KeyID != "k2" {
		t.Fatalf("show after rotate: %d %q", code, out)
	}
	keys, _ := tokens.NewKeyring("k2", map[string][]byte{"k2": bytes.Repeat([]byte{2}, 32)})
	rec, err := c.store().Load(context.Background(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := keys.OpenRecord(rec)
	if err != nil || tok.AccessToken != "AT-r1" || tok.RefreshToken != "RT-r1" {
		t.Fatalf("open after rotate: %v", err)
	}
	if code, out, _ := c.run("", "keys", "rotate"); code != 0 || !strings.Contains(out, "0 re-encrypted, 2 already current") {
		t.Fatalf("second rotate: %d %q", code, out)
	}
}

func TestDemoRuns(t *testing.T) {
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := run(ctx, []string{"demo", "--users", "5", "--revoked", "1", "--lifetime", "4s", "--every", "1s", "--duration", "7s", "--admin", "127.0.0.1:0"},
		env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }})
	if code != 0 {
		t.Fatalf("demo exit %d: %s %s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "1 users in the re-auth queue") || !strings.Contains(out.String(), "demo-user-01") ||
		!strings.Contains(out.String(), "/apps/saas/authorize?code=") ||
		!regexp.MustCompile(`[1-9]\d* refreshes .* [1-9]\d* pulls delivering [1-9]\d* files, [1-9]\d* pushes`).MatchString(out.String()) {
		t.Fatalf("demo summary: %s", out.String())
	}
}

func TestUsersDisableEnable(t *testing.T) {
	c := newCLI(t)
	if code, _, errOut := c.run(oauthToken("AT-d", "RT-d"), "token", "put", "--user", "dora"); code != 0 {
		t.Fatal(errOut)
	}
	if code, out, _ := c.run("", "users", "disable", "--user", "dora"); code != 0 || out != "user dora: active -> disabled\n" {
		t.Fatalf("disable: %d %q", code, out)
	}
	// A disabled user is not refreshed and a new token keeps it disabled.
	if due, _ := c.store().DueAt(context.Background(), tokens.RefreshSet, "dora"); !due.IsZero() {
		t.Fatalf("disabled user still due at %v", due)
	}
	if code, out, _ := c.run(oauthToken("AT-d2", "RT-d2"), "token", "put", "--user", "dora"); code != 0 || !strings.Contains(out, "state disabled") {
		t.Fatalf("put while disabled: %d %q", code, out)
	}
	if code, out, _ := c.run("", "users", "enable", "--user", "dora"); code != 0 || out != "user dora: disabled -> active\n" {
		t.Fatalf("enable: %d %q", code, out)
	}
	if due, _ := c.store().DueAt(context.Background(), tokens.RefreshSet, "dora"); due.IsZero() {
		t.Fatal("enabled user not scheduled")
	}
	if code, out, _ := c.run("", "users", "enable", "--user", "dora"); code != 0 || out != "user dora: unchanged: active\n" && out != "user dora unchanged: active\n" {
		t.Fatalf("enable twice: %d %q", code, out)
	}
	if code, _, errOut := c.run("", "users", "disable", "--user", "ghost"); code != 2 || !strings.Contains(errOut, `no token stored for user "ghost"`) {
		t.Fatalf("disable unknown: %d %q", code, errOut)
	}
	events, err := c.store().Events(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, e := range events {
		if e.User == "dora" {
			seen = append(seen, e.From+">"+e.To+":"+e.Reason)
		}
	}
	if got, want := strings.Join(seen, " "), ">active:token_stored active>disabled:operator disabled>active:operator"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestJobCommands(t *testing.T) {
	c := newCLI(t)
	c.jobs = `jobs:
  - {name: pull-daily, kind: pull, schedule: "30 2 * * *", timezone: America/New_York, spread: 30m}
  - {name: push-often, kind: push, schedule: "@every 5m"}
`
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	code, out, errOut := c.run("", "config", "check")
	if code != 0 || !strings.Contains(out, "2 jobs") || strings.Count(out, "02:30:00 E") != 3 {
		t.Fatalf("config check: %d %q %q", code, out, errOut)
	}
	for _, u := range []string{"gus", "hal"} {
		if code, _, errOut := c.run(oauthToken("AT-"+u, "RT-"+u), "token", "put", "--user", u); code != 0 {
			t.Fatal(errOut)
		}
	}
	// token put scheduled both users for both jobs.
	code, out, _ = c.run("", "users", "show", "gus", "--json")
	var show struct {
		User string
		Jobs []struct {
			Job     string
			NextRun *time.Time `json:"next_run"`
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &show) != nil || len(show.Jobs) != 2 || show.Jobs[0].NextRun == nil || show.Jobs[1].NextRun == nil {
		t.Fatalf("users show: %d %q", code, out)
	}
	if code, out, _ := c.run("", "jobs", "trigger", "push-often", "--user", "hal"); code != 0 || out != "job push-often: 1 users due now\n" {
		t.Fatalf("trigger: %d %q", code, out)
	}
	if code, out, _ := c.run("", "jobs", "pause", "pull-daily"); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: %d %q", code, out)
	}
	code, out, _ = c.run("", "jobs", "list", "--json")
	var list []struct {
		Name   string
		Paused bool
		DueNow int64 `json:"users_due_now"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || !list[0].Paused || list[1].DueNow != 1 {
		t.Fatalf("jobs list: %d %q", code, out)
	}
	if code, _, _ := c.run("", "jobs", "resume", "pull-daily"); code != 0 {
		t.Fatal("resume failed")
	}
	if code, _, errOut := c.run("", "jobs", "trigger", "nope"); code != 2 || !strings.Contains(errOut, `unknown job "nope"`) {
		t.Fatalf("trigger unknown: %d %q", code, errOut)
	}
	if code, _, errOut := c.run("", "users", "show", "nobody"); code != 2 || !strings.Contains(errOut, "no token stored") {
		t.Fatalf("show unknown: %d %q", code, errOut)
	}
	c.jobs = "jobs: [{name: bad, kind: pull, schedule: \"*/61 * * * *\"}]\n"
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	if code, _, errOut := c.run("", "config", "check"); code != 2 || !strings.Contains(errOut, `jobs[0].schedule: invalid cron spec "*/61 * * * *"`) {
		t.Fatalf("bad config check: %d %q", code, errOut)
	}
	c.jobs = "jobs: [{name: hook, kind: pull, schedule: \"@hourly\", sink: {kind: webhook, url: \"https://app.example.com/h\", secret: sh0rt}}]\n"
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	if code, _, errOut := c.run("", "config", "check"); code != 2 || !strings.Contains(errOut, "jobs[0].sink.secret: must be at least 32 bytes, got 5") || strings.Contains(errOut, "sh0rt") {
		t.Fatalf("short webhook secret: %d %q", code, errOut)
	}
}

// The README's digi.me walk-through: the fake digi.me server onboards a
// user, token put stores the token, and the real digi.me client refreshes
// it against the fake.
func TestFakeDigimeWithTokenPut(t *testing.T) {
	c := newCLI(t)
	keyFile := filepath.Join(c.dir, "contract.pem")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuf
	out.init()
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"fake-digime", "--listen", "127.0.0.1:0", "--contract-key", keyFile, "--issue", "zoe", "--tokens-dir", c.dir},
			env{stdin: strings.NewReader(""), stdout: &out, stderr: io.Discard, getenv: func(string) string { return "" }})
	}()
	base := ""
	for base == "" {
		select {
		case code := <-done:
			t.Fatalf("fake-digime exited %d: %s", code, out.String())
		case <-out.wrote:
			if s := out.String(); strings.Contains(s, "base_url ") {
				base = strings.Fields(strings.SplitN(s, "base_url ", 2)[1])[0]
				base = strings.TrimSuffix(base, ",")
			}
		}
	}
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	doc, _ := os.ReadFile(c.config)
	doc = bytes.Replace(doc, []byte("providers: [{name: digime, kind: fake}]"), []byte(fmt.Sprintf(
		"providers: [{name: digime, kind: digime, digime: {base_url: %q, app_id: fake-app, contract_id: fake-contract, private_key_file: %q}}]", base, keyFile)), 1)
	if err := os.WriteFile(c.config, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := c.run("", "token", "put", "--user", "zoe", "--file", filepath.Join(c.dir, "zoe.json")); code != 0 {
		t.Fatalf("token put: %d %q %q", code, out, errOut)
	}
	key, err := digime.LoadPrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	client, err := digime.New(digime.Config{BaseURL: base, AppID: "fake-app", ContractID: "fake-contract", PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(c.dir, "zoe.json"))
	tok, err := tokens.ParseToken(raw, tokens.ParseOptions{UserID: "zoe", Now: time.Now(), DefaultLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Refresh(context.Background(), tok); err != nil {
		t.Fatalf("refresh against the fake: %v", err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("fake-digime exit %d", code)
	}
}

// syncBuf is a buffer safe for one writer and one reader, signalling
// each write.
type syncBuf struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
	once  sync.Once
}

func (s *syncBuf) init() { s.once.Do(func() { s.wrote = make(chan struct{}, 1) }) }

func (s *syncBuf) Write(p []byte) (int, error) {
	s.init()
	s.mu.Lock()
	n, err := s.b.Write(p)
	s.mu.Unlock()
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lineWriter hands what is written to a channel too.
type lineWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	c   chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.c <- w.buf.String():
	default:
	}
	return len(p), nil
}

// TestDemoAdminToken: the demo's /v1 is closed like syncd run's, and the
// curl commands it prints (with this run's read token) work.
func TestDemoAdminToken(t *testing.T) {
	out := &lineWriter{c: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--users", "2", "--revoked", "0", "--duration", "60s", "--admin", "127.0.0.1:0"},
			env{stdin: strings.NewReader(""), stdout: out, stderr: io.Discard, getenv: func(string) string { return "" }})
	}()
	curl := regexp.MustCompile(`curl -H 'Authorization: Bearer (\S+)' http://(\S+)/v1/jobs\n`)
	var m []string
	deadline := time.After(30 * time.Second)
	for m == nil {
		select {
		case s := <-out.c:
			m = curl.FindStringSubmatch(s)
		case code := <-done:
			t.Fatalf("demo exited %d before printing a curl command with a token", code)
		case <-deadline:
			t.Fatal("the demo printed no curl command with a token")
		}
	}
	token, addr := m[1], m[2]
	get := func(path, token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/v1/jobs", ""); code != 401 {
		t.Errorf("GET /v1/jobs without the token: %d, want 401", code)
	}
	for _, p := range []string{"/v1/jobs", "/v1/reauth"} {
		if code := get(p, token); code != 200 {
			t.Errorf("GET %s with the printed token: %d, want 200", p, code)
		}
	}
	if code := get("/metrics", ""); code != 200 {
		t.Errorf("GET /metrics: %d, want 200", code)
	}
	cancel()
	<-done
}

// TestUserIDGrammar: new users need the id grammar (tokens.ValidateUserID);
// a user stored under an id an earlier syncd accepted stays reachable.
func TestUserIDGrammar(t *testing.T) {
	c := newCLI(t)
	for _, id := range []string{"..", ".", "../x", "\uff41lice", "a/b"} {
		code, _, errOut := c.run(oauthToken("AT-x", "RT-x"), "token", "put", "--user", id)
		if code != 2 || !strings.Contains(errOut, "user id") {
			t.Errorf("token put --user %q: exit %d, stderr %q", id, code, errOut)
		}
	}
	// A legacy user: stored, then renamed the way an older syncd could
	// have stored it.
	if code, _, errOut := c.run(oauthToken("AT-l", "RT-l"), "token", "put", "--user", "legacy"); code != 0 {
		t.Fatal(errOut)
	}
	rdb := c.srv.Client(t)
	p := c.srv.Prefix
	const old = "Ünïcødé/1"
	if err := rdb.Rename(context.Background(), p+"{u:legacy}:tok", p+"{u:"+old+"}:tok").Err(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"token", "show", "--user", old},
		{"users", "disable", "--user", old},
		{"users", "enable", "--user", old},
	} {
		if code, out, errOut := c.run("", args...); code != 0 {
			t.Errorf("%v: exit %d, stdout %q stderr %q", args, code, out, errOut)
		}
	}
}

// TestFakeDigimeIssueChecksUserIDs: --issue ids follow the user id
// grammar, so no id writes outside --tokens-dir; nothing is written and
// nothing served when one is bad.
func TestFakeDigimeIssueChecksUserIDs(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "tokens")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, issue := range []string{"ok,../x", "..", "a/b", "\uff41"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var errOut bytes.Buffer
		code := run(ctx, []string{"fake-digime", "--listen", "127.0.0.1:0", "--contract-key", filepath.Join(parent, "contract.pem"),
			"--issue", issue, "--tokens-dir", dir},
			env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errOut, getenv: func(string) string { return "" }})
		cancel()
		if code != 2 || !strings.Contains(errOut.String(), "--issue") || !strings.Contains(errOut.String(), "user id") {
			t.Errorf("--issue %q: exit %d, stderr %q; want 2 naming the bad id", issue, code, errOut.String())
		}
		for _, d := range []string{parent, dir} {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".json") {
					t.Errorf("--issue %q wrote %s", issue, filepath.Join(d, e.Name()))
				}
			}
		}
	}
}
