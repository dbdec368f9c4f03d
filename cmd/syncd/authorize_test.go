package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/provider/oauth2fake"
	"github.com/syncd/syncd/internal/tokens"
)

const appRedirect = "https://app.example/callback"

// visit plays the user's browser on a consent link (followConsent),
// failing the test if the provider does not redirect.
func visit(t *testing.T, link string, knobs url.Values) *url.URL {
	t.Helper()
	loc, err := followConsent(context.Background(), link, knobs)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestAuthorizeCLI: authorize start prints a link, authorize exchange
// finishes it, a replay exits 2, and reauth list --links gives each
// flagged user a fresh link.
func TestAuthorizeCLI(t *testing.T) {
	c := newCLI(t)
	fake := oauth2fake.New(oauth2fake.Options{ClientID: "syncd", ClientSecret: "client-secret-1"})
	hs := httptest.NewServer(fake.Handler())
	defer hs.Close()
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 4}
log: {level: warn, format: json}
encryption: {keys: [{id: k1, secret: %q}]}
providers:
  - name: ex
    kind: oauth2
    oauth2: {token_url: %q, auth_url: %q, client_id: syncd, client_secret: client-secret-1}
authorize: {redirect_uri: %q}
`, c.srv.URL, c.srv.Prefix, key1, hs.URL+"/token", hs.URL+"/authorize", appRedirect)
	if err := os.WriteFile(c.config, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := c.run("", "authorize", "start"); code != 2 || !strings.Contains(errOut, "--user is required") {
		t.Fatalf("no user: %d %q", code, errOut)
	}
	code, out, errOut := c.run("", "authorize", "start", "--user", "cli-u")
	if code != 0 {
		t.Fatalf("start: %d %q", code, errOut)
	}
	cb := visit(t, strings.SplitN(out, "\n", 2)[0], url.Values{"user": {"cli-u"}}).Query()
	code, out, errOut = c.run("", "authorize", "exchange", "--state", cb.Get("state"), "--code", cb.Get("code"))
	if code != 0 || !strings.Contains(out, "user cli-u: active") {
		t.Fatalf("exchange: %d %q %q", code, out, errOut)
	}
	code, _, errOut = c.run("", "authorize", "exchange", "--state", cb.Get("state"), "--code", cb.Get("code"))
	if code != 2 || !strings.Contains(errOut, "state: unknown, expired or already used") || strings.Contains(errOut, cb.Get("code")) {
		t.Fatalf("replay: %d %q", code, errOut)
	}

	// Flag the user the way the refresher does; the list carries a link.
	ctx := context.Background()
	s := c.store()
	rec, _, err := s.Acquire(ctx, "cli-u", "test", "", time.Now(), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Flag(ctx, "cli-u", "test", rec.Version, tokens.ReasonInvalidGrant, "reauth:invalid_grant", time.Now()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = c.run("", "reauth", "list", "--links", "--json")
	var list []reauthLink
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || !strings.HasPrefix(list[0].Link, hs.URL+"/authorize?") {
		t.Fatalf("reauth list --links: %d %q %q", code, out, errOut)
	}
	// The link works: consent and exchange bring the user back.
	cb = visit(t, list[0].Link, url.Values{"user": {"cli-u"}}).Query()
	if code, out, errOut := c.run("", "authorize", "exchange", "--state", cb.Get("state"), "--code", cb.Get("code")); code != 0 || !strings.Contains(out, "active") {
		t.Fatalf("exchange after reauth: %d %q %q", code, out, errOut)
	}
}

// TestConfigCheckRefusesPanickingCallbackPaths: callback paths that made
// syncd run panic at start (a ServeMux conflict with the admin routes, an
// unclean pattern) and a skip_verify Redis URL fail config check with one
// line, exit 2.
func TestConfigCheckRefusesPanickingCallbackPaths(t *testing.T) {
	c := newCLI(t)
	for extra, want := range map[string]string{
		"authorize: {callback_path: /}\n":               `authorize.callback_path: want a clean absolute path other than "/"`,
		"authorize: {callback_path: /a/../v1/users}\n":  `authorize.callback_path: want a clean absolute path`,
		"authorize: {callback_path: /v1/users}\n":       `authorize.callback_path: "/v1/users" is under /v1, an admin route`,
		"authorize: {done_url: \"https://app/done\"}\n": `authorize.done_url_secret: required with authorize.done_url`,
	} {
		c.jobs = extra
		c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
		code, out, errOut := c.run("", "config", "check")
		if code != 2 || !strings.Contains(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || strings.Contains(errOut, "goroutine") {
			t.Errorf("%s: %d %q %q", extra, code, out, errOut)
		}
	}
	doc, _ := os.ReadFile(c.config)
	doc = []byte(strings.Replace(string(doc), "redis: {url: \""+c.srv.URL+"\"", "redis: {url: \"rediss://127.0.0.1:1/0?skip_verify=true\"", 1))
	if err := os.WriteFile(c.config, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := c.run("", "config", "check"); code != 2 || !strings.Contains(errOut, "redis.url: skip_verify=true turns off TLS certificate verification") {
		t.Errorf("skip_verify: %d %q", code, errOut)
	}
}
