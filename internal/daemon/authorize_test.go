package daemon

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/alerts"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/provider/oauth2fake"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/refresher"
)

const (
	appRedirect = "https://app.example/callback"
	e2eToken    = "authorize-admin-token-0123456789"
)

// liveDaemon is a daemon running in this process, with its job runs
// and refresh passes on channels.
type liveDaemon struct {
	t     *testing.T
	admin string
	runs  chan jobs.Run
	// refreshes sees the refresher's passes.
	refreshes chan refresher.Result
	daemon    *Daemon
}

// liveConfig is the common head of a live daemon's config (admin on a
// free port) followed by body.
func liveConfig(t *testing.T, srv *redistest.Server, dir, keys, body string) *config.Config {
	t.Helper()
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 2}
log: {level: info, format: json}
encryption: {primary_key: k1, keys: [%s]}
admin: {listen: "127.0.0.1:0", token_file: admin-token}
shutdown_grace: 2s
refresher: {poll_interval: 50ms, lease: 10s}
runner: {poll_interval: 50ms, lease: 10s}
`, srv.URL, srv.Prefix, keys) + body
	cfg, err := config.Parse(strings.NewReader(doc), dir, func(string) string { return "" })
	if err != nil {
		t.Fatalf("config: %v\n%s", err, doc)
	}
	return cfg
}

// startLive runs a daemon for the config doc (providers, jobs, extra
// sections appended to a common head) until the test ends; its log is
// dir/syncd.log.
func startLive(t *testing.T, srv *redistest.Server, dir, body string) *liveDaemon {
	t.Helper()
	_ = os.WriteFile(filepath.Join(dir, "admin-token"), []byte(e2eToken), 0o600)
	cfg := liveConfig(t, srv, dir, fmt.Sprintf("{id: k1, secret: %q}", key1), body)
	logs, err := os.Create(filepath.Join(dir, "syncd.log"))
	if err != nil {
		t.Fatal(err)
	}
	ld := &liveDaemon{t: t, runs: make(chan jobs.Run, 10000), refreshes: make(chan refresher.Result, 10000)}
	d, err := New(cfg, Options{Logger: zerolog.New(logs).With().Timestamp().Logger(),
		ObserveRun: func(r jobs.Run) {
			select {
			case ld.runs <- r:
			default:
			}
		},
		ObserveRefresh: func(r refresher.Result) {
			select {
			case ld.refreshes <- r:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
		logs.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	ld.daemon, ld.admin = d, d.Addr()
	return ld
}

// api calls the admin API with the bearer token.
func (d *liveDaemon) api(method, path, body string) (int, map[string]any) {
	d.t.Helper()
	req, _ := http.NewRequest(method, "http://"+d.admin+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// waitRun waits for a run of job for user with the given result.
func (d *liveDaemon) waitRun(job, user string, result jobs.Result) jobs.Run {
	d.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case r := <-d.runs:
			if r.Job == job && r.User == user && r.Result == result {
				return r
			}
		case <-deadline:
			d.t.Fatalf("no %s run of %s for %s", result, job, user)
		}
	}
}

// visit plays the user's browser on a consent link: it adds the fake's
// simulation knobs (user=, consent=deny), opens the link and returns
// where the provider redirected, without following.
func visit(t *testing.T, link string, knobs url.Values) *url.URL {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range knobs {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("consent page answered %d", resp.StatusCode)
	}
	return loc
}

// webhook collects re-auth webhook batches.
type webhook struct{ flags chan alerts.Flag }

func (w *webhook) ServeHTTP(_ http.ResponseWriter, r *http.Request) {
	var body struct{ Users []alerts.Flag }
	_ = json.NewDecoder(r.Body).Decode(&body)
	for _, f := range body.Users {
		w.flags <- f
	}
}

// TestAuthorizeDigime walks the handoff against the fake digi.me: the app
// asks for a link, the user consents, the app forwards the callback,
// syncd exchanges the code and the user's jobs run. Then the refresh
// token expires: the user is flagged, the webhook carries a recovery link
// (oauth/token/reference), the provider redirects the browser to syncd's
// public callback, and the user is back with the old cursor kept. A user
// whose access token digi.me revoked gets a full authorization link.
func TestAuthorizeDigime(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	_ = os.WriteFile(filepath.Join(dir, "contract.pem"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	fake, err := digimefake.New(digimefake.Options{AppID: "app", ContractID: "con", ContractKey: &key.PublicKey,
		AccessLifetime: 4 * time.Second, PendingPolls: -1, RunningPolls: -1})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(fake.Handler())
	defer hs.Close()
	hook := &webhook{flags: make(chan alerts.Flag, 100)}
	hooks := httptest.NewServer(hook)
	defer hooks.Close()
	d := startLive(t, srv, dir, fmt.Sprintf(`providers:
  - name: digime
    kind: digime
    lead: 3s
    jitter: 500ms
    default_lifetime: 1m
    timeout: 5s
    retry_initial: 1s
    retry_max: 2s
    digime: {base_url: %q, onboard_url: %q, app_id: app, contract_id: con, private_key_file: contract.pem, poll_interval: 20ms}
jobs:
  - {name: pull, kind: pull, schedule: "@every 1s"}
authorize: {redirect_uri: %q, callback_path: /authorize/callback}
alerts: {webhook_url: %q, secret: webhook-secret-0123456789abcdefghij, links: true}
`, hs.URL+digimefake.PathPrefix, hs.URL+digimefake.OnboardPrefix, appRedirect, hooks.URL))

	// 1. The app asks for a link; the user consents; the app forwards the
	// callback's query.
	fake.AddFile("ann", digimefake.File{Name: "ann-1.json", Data: []byte(`{"n":1}`), MimeType: "application/json"})
	code, link := d.api("POST", "/v1/users/ann/authorize", `{}`)
	if code != 200 || !strings.HasPrefix(link["url"].(string), hs.URL+digimefake.OnboardPrefix+"authorize?") || link["flow"] != "authorize" {
		t.Fatalf("authorize: %d %v", code, link)
	}
	if _, ok := link["verifier"]; ok {
		t.Fatal("the verifier left syncd")
	}
	cb := visit(t, link["url"].(string), url.Values{"user": {"ann"}})
	if !strings.HasPrefix(cb.String(), appRedirect) || cb.Query().Get("success") != "true" {
		t.Fatalf("redirect %s", cb)
	}
	code, res := d.api("POST", "/v1/authorize/callback?"+cb.RawQuery, "")
	if code != 200 || res["user"] != "ann" || res["state"] != "active" {
		t.Fatalf("callback: %d %v", code, res)
	}
	// Replayed: refused, nothing changes.
	if code, res := d.api("POST", "/v1/authorize/callback?"+cb.RawQuery, ""); code != 400 || res["code"] != "state_unknown" {
		t.Fatalf("replay: %d %v", code, res)
	}
	d.waitRun("pull", "ann", "ok")
	pulledBy := func(user string) int {
		msgs, _ := srv.Client(t).XRange(context.Background(), srv.Prefix+"pulled", "-", "+").Result()
		n := 0
		for _, m := range msgs {
			if m.Values["user"] == user {
				n++
			}
		}
		return n
	}
	pulled := func() int { return pulledBy("ann") }
	if n := pulled(); n != 1 {
		t.Fatalf("ann's pull delivered %d items, want 1", n)
	}

	// 2. A denied consent changes nothing.
	// The app chose the state (32+ characters of A-Z a-z 0-9 _ -).
	const zoeState = "zoe-state-1-Kq7vX2mP9sL4tR8wY3nB"
	code, link = d.api("POST", "/v1/users/zoe/authorize", `{"state":"`+zoeState+`"}`)
	if code != 200 || link["state"] != zoeState {
		t.Fatalf("authorize zoe: %d %v", code, link)
	}
	deny := visit(t, link["url"].(string), url.Values{"consent": {"deny"}})
	if code, res := d.api("POST", "/v1/authorize/callback?"+deny.RawQuery, ""); code != 403 || res["code"] != "access_denied" {
		t.Fatalf("denied: %d %v", code, res)
	}
	if code, _ := d.api("GET", "/v1/users/zoe", ""); code != 404 {
		t.Fatalf("zoe exists after a denied consent: %d", code)
	}

	// 3. Ann's refresh token expires; the refresher flags her and the
	// webhook brings a recovery link.
	fake.ExpireRefresh("ann")
	var flag alerts.Flag
	select {
	case flag = <-hook.flags:
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook")
	}
	if flag.User != "ann" || !strings.HasPrefix(flag.Link, hs.URL+digimefake.OnboardPrefix+"user-reauth?") || flag.LinkExpiresAt.IsZero() {
		t.Fatalf("webhook flag %+v", flag)
	}
	if code, u := d.api("GET", "/v1/users/ann", ""); code != 200 || u["state"] != "reauth_required" {
		t.Fatalf("ann: %d %v", code, u["state"])
	}
	// The app may also ask for a link itself.
	code, res = d.api("POST", "/v1/users/ann/reauthorize", "")
	if code != 200 || res["flow"] != "reauthorize" {
		t.Fatalf("reauthorize: %d %v", code, res)
	}
	// The provider sends the browser to syncd's public callback.
	fake.AddFile("ann", digimefake.File{Name: "ann-2.json", Data: []byte(`{"n":2}`), MimeType: "application/json"})
	cb = visit(t, flag.Link, nil)
	resp, err := http.Get("http://" + d.admin + "/authorize/callback?" + cb.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Authorization complete") {
		t.Fatalf("public callback: %d %s", resp.StatusCode, page)
	}
	if code, u := d.api("GET", "/v1/users/ann", ""); code != 200 || u["state"] != "active" {
		t.Fatalf("ann after re-authorization: %d %v", code, u["state"])
	}
	// Her jobs run again and the cursor was kept: only the new file.
	for pulled() < 2 {
		d.waitRun("pull", "ann", "ok")
	}
	d.waitRun("pull", "ann", "ok")
	if n := pulled(); n != 2 {
		t.Fatalf("ann's pulls delivered %d items in all, want 2 (cursor kept)", n)
	}

	// 4. Ben's consent is revoked: digi.me refuses his old access token,
	// so the re-authorization link is a full authorization; his cursor
	// is kept all the same.
	fake.AddFile("ben", digimefake.File{Name: "ben-1.json", Data: []byte(`{"n":1}`), MimeType: "application/json"})
	code, link = d.api("POST", "/v1/users/ben/authorize", "")
	if code != 200 {
		t.Fatalf("authorize ben: %d %v", code, link)
	}
	if code, res := d.api("POST", "/v1/authorize/callback?"+visit(t, link["url"].(string), url.Values{"user": {"ben"}}).RawQuery, ""); code != 200 {
		t.Fatalf("callback ben: %d %v", code, res)
	}
	for pulledBy("ben") < 1 {
		d.waitRun("pull", "ben", "ok")
	}
	fake.Revoke("ben")
	select {
	case flag = <-hook.flags:
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook for ben")
	}
	if flag.User != "ben" || !strings.HasPrefix(flag.Link, hs.URL+digimefake.OnboardPrefix+"authorize?") {
		t.Fatalf("ben's flag %+v", flag)
	}
	code, res = d.api("POST", "/v1/users/ben/reauthorize", "")
	if code != 200 || res["flow"] != "authorize" {
		t.Fatalf("reauthorize ben: %d %v", code, res)
	}
	cb = visit(t, res["url"].(string), url.Values{"user": {"ben"}})
	if code, res := d.api("POST", "/v1/authorize/callback?"+cb.RawQuery, ""); code != 200 || res["state"] != "active" {
		t.Fatalf("ben back: %d %v", code, res)
	}
	fake.AddFile("ben", digimefake.File{Name: "ben-2.json", Data: []byte(`{"n":2}`), MimeType: "application/json"})
	for pulledBy("ben") < 2 {
		d.waitRun("pull", "ben", "ok")
	}
	d.waitRun("pull", "ben", "ok")
	if n := pulledBy("ben"); n != 2 {
		t.Fatalf("ben's pulls delivered %d items in all, want 2 (cursor kept)", n)
	}

	_, m := httpGet("http://" + d.admin + "/metrics")
	if metric(m, `syncd_authorize_callbacks_total{result="ok"}`) != 4 || metric(m, `syncd_authorize_callbacks_total{result="access_denied"}`) != 1 ||
		metric(m, `syncd_authorize_callbacks_total{result="state_unknown"}`) != 1 {
		t.Fatalf("callback metrics:\n%s", grepLines(m, "syncd_authorize"))
	}

	// No secret in the log.
	logs, _ := os.ReadFile(filepath.Join(dir, "syncd.log"))
	for _, s := range fake.Secrets() {
		if strings.Contains(string(logs), s) {
			t.Fatal("a token or code reached the log")
		}
	}
}

// TestAuthorizeOAuth2 is the same walk against an OAuth2 server with PKCE:
// link, consent, callback, the user's pull job runs; and a refused code.
func TestAuthorizeOAuth2(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	fake := oauth2fake.New(oauth2fake.Options{ClientID: "syncd", ClientSecret: "client-secret-1"})
	hs := httptest.NewServer(fake.Handler())
	defer hs.Close()
	public := freeAddr(t)
	d := startLive(t, srv, dir, fmt.Sprintf(`authorize: {callback_path: /oauth/callback, public_listen: %q}
providers:
  - name: ex
    kind: oauth2
    timeout: 5s
    oauth2:
      token_url: %q
      auth_url: %q
      client_id: syncd
      client_secret: client-secret-1
      scopes: [read]
      auth_params: {access_type: offline, prompt: consent}
      pull_url: %q
jobs:
  - {name: pull, kind: pull, schedule: "@every 1s"}
`, public, hs.URL+"/token", hs.URL+"/authorize", hs.URL+"/data/{{.User}}?since={{.Cursor}}"))

	// The public listener serves the callback path and nothing else.
	if code, _ := httpGet("http://" + public + "/v1/jobs"); code != 404 {
		t.Fatalf("admin API on the public listener: %d", code)
	}
	if code, _ := httpGet("http://" + public + "/metrics"); code != 404 {
		t.Fatalf("metrics on the public listener: %d", code)
	}
	if code, body := httpGet("http://" + public + "/oauth/callback?state=never-issued&code=x"); code != 400 || !strings.Contains(body, "Authorization failed") {
		t.Fatalf("public callback: %d %s", code, body)
	}

	fake.SetData("amy", []byte(`{"items":[1]}`), "c1")
	code, link := d.api("POST", "/v1/users/amy/authorize", `{"redirect_uri":"`+appRedirect+`"}`)
	if code != 200 {
		t.Fatalf("authorize: %d %v", code, link)
	}
	cb := visit(t, link["url"].(string), url.Values{"user": {"amy"}})
	if aq := fake.LastAuthorize(); aq.Get("code_challenge_method") != "S256" || aq.Get("access_type") != "offline" || aq.Get("prompt") != "consent" || aq.Get("scope") != "read" {
		t.Fatalf("authorization request %v", aq)
	}
	code, res := d.api("POST", "/v1/authorize/callback?"+cb.RawQuery, "")
	if code != 200 || res["state"] != "active" {
		t.Fatalf("callback: %d %v", code, res)
	}
	d.waitRun("pull", "amy", "ok")

	// A code the provider rejects (spent at the provider, state fresh):
	// refused, nothing stored for the user.
	code, link = d.api("POST", "/v1/users/bob/authorize", `{"redirect_uri":"`+appRedirect+`"}`)
	if code != 200 {
		t.Fatal(code)
	}
	bad := visit(t, link["url"].(string), nil).Query()
	bad.Set("code", cb.Query().Get("code"))
	if code, res := d.api("POST", "/v1/authorize/callback?"+bad.Encode(), ""); code != 400 || res["code"] != "code_rejected" {
		t.Fatalf("rejected code: %d %v", code, res)
	}
	if code, _ := d.api("GET", "/v1/users/bob", ""); code != 404 {
		t.Fatalf("bob stored after a rejected code: %d", code)
	}
	// No redirect_uri and no authorize.redirect_uri: a clear error.
	if code, res := d.api("POST", "/v1/users/bob/authorize", ""); code != 400 || !strings.Contains(fmt.Sprint(res["error"]), "redirect_uri") {
		t.Fatalf("no redirect: %d %v", code, res)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
