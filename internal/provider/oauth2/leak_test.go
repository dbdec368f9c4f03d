package oauth2

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	xoauth2 "golang.org/x/oauth2"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/provider/providertest"
)

// TestNoSecretsInLogsOrErrors runs refreshes, code exchanges, pulls and
// pushes through every path (success, rotation and code reuse, revocation,
// wrong verifier, bad client, outage, 401 and refresh, retries, hostile
// servers echoing credentials) with debug logging, then checks that no
// token value, authorization code, code verifier or client secret appears
// in the logs or in any error text.
func TestNoSecretsInLogsOrErrors(t *testing.T) {
	ctx := context.Background()
	b := setup(t, AuthBasic, withAuthURL)
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	logger := zerolog.New(b.logs).Level(zerolog.DebugLevel)
	bad := newTestClient(t, Config{TokenURL: b.url + "/token", ClientID: testClientID, ClientSecret: testSecret + "-wrong",
		Clock: b.clock, Logger: logger}, b.timer)

	// Refresh paths.
	tok := b.fake.Issue("u1")
	t1, err := b.client.Refresh(ctx, tok)
	note(err)
	_, err = b.client.Refresh(ctx, tok) // reuse
	note(err)
	_, err = bad.Refresh(ctx, t1)
	note(err)
	b.fake.SetOutage(503, 0)
	_, err = b.client.Refresh(ctx, t1)
	note(err)
	b.fake.SetOutage(0, 0)
	revoked := b.fake.Issue("u2")
	b.fake.Revoke("u2")
	_, err = b.client.Refresh(ctx, revoked)
	note(err)

	// Code exchange paths.
	var verifiers []string
	consented := func(user string) flow {
		f := authorizeUser(t, b.client, user)
		verifiers = append(verifiers, f.verifier)
		return f
	}
	f := consented("u5")
	_, err = b.client.Exchange(ctx, f.request("u5"))
	note(err)
	_, err = b.client.Exchange(ctx, f.request("u5")) // reuse
	note(err)
	f = consented("u6")
	wrong := f
	wrong.verifier = xoauth2.GenerateVerifier()
	verifiers = append(verifiers, wrong.verifier)
	_, err = b.client.Exchange(ctx, wrong.request("u6"))
	note(err)
	_, err = b.client.Exchange(ctx, f.request("u6")) // spent by the failure
	note(err)
	f = consented("u7")
	_, err = bad.Exchange(ctx, f.request("u7"))
	note(err)
	mismatch := f.request("u7")
	mismatch.RedirectURI += "?x=1"
	_, err = b.client.Exchange(ctx, mismatch)
	note(err)
	f = consented("u8")
	b.fake.SetOutage(503, 0)
	_, err = b.client.Exchange(ctx, f.request("u8"))
	note(err)
	b.fake.SetOutage(0, 0)

	// Data paths against the fake.
	src := &providertest.Source{Client: b.client, Tok: b.fake.Issue("u3")}
	b.fake.SetData("u3", []byte("data"), "c1")
	b.fake.InvalidateAccess("u3")
	_, err = b.client.Pull(ctx, "u3", src, "", func(provider.Item) error { return nil })
	note(err)
	b.fake.InvalidateAccess("u3")
	note(b.client.Push(ctx, "u3", src, provider.PushItem{ID: "i1", Data: []byte("x"), Tags: []string{"t"}}))
	_, err = b.client.Pull(ctx, "u3", &providertest.Source{Client: bad, Tok: revoked}, "", func(provider.Item) error { return nil })
	note(err) // 401, refresh with the bad client fails

	// Hostile servers that echo what they received into bodies and headers.
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":"server_error","error_description":"`+url.QueryEscape(string(body))+
			r.Header.Get("Authorization")+`"}`)
	}
	hostile := serve(t, echo)
	hc := newTestClient(t, Config{TokenURL: hostile + "/token", ClientID: testClientID, ClientSecret: testSecret, AuthStyle: AuthPost,
		PullURL: hostile + "/data/{{.User}}", PushURL: hostile + "/push/{{.User}}", Clock: b.clock, Logger: logger}, b.timer)
	hostileTok := b.fake.Issue("u4")
	_, err = hc.Refresh(ctx, hostileTok)
	note(err)
	hsrc := &staticSource{tok: hostileTok}
	_, err = hc.Pull(ctx, "u4", hsrc, "", func(provider.Item) error { return nil })
	note(err)
	note(hc.Push(ctx, "u4", hsrc, provider.PushItem{ID: "i"}))
	f = consented("u9")
	_, err = hc.Exchange(ctx, f.request("u9"))
	note(err)

	if len(errs) < 14 {
		t.Fatalf("only %d errors: the run did not reach the failure paths", len(errs))
	}
	logs := b.logs.String()
	for _, want := range []string{`"user":"u3"`, "token refreshed", "access token rejected, refreshing", "pull request failed, retrying", "push done",
		"authorization link built", "code exchanged", "code exchange failed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q; the run did not log what it should", want)
		}
	}
	secrets := append(b.fake.Secrets(), verifiers...)
	if len(secrets) < 20 {
		t.Fatalf("only %d secrets", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) || strings.Contains(logs, url.QueryEscape(s)) {
			t.Errorf("a secret (%s...) appears in the logs", s[:6])
		}
		for _, err := range errs {
			if strings.Contains(err.Error(), s) || strings.Contains(err.Error(), url.QueryEscape(s)) {
				t.Errorf("a secret (%s...) appears in error %q", s[:6], redactAll(err.Error(), secrets))
			}
		}
	}
	// The tokens package's errors must classify, not leak.
	for _, err := range errs {
		if strings.Contains(err.Error(), "error_description") {
			t.Errorf("error quotes a body: %q", err)
		}
	}
}

// redactAll hides every secret in s so a failure message leaks nothing.
func redactAll(s string, secrets []string) string {
	for _, v := range secrets {
		s = strings.ReplaceAll(s, v, "<secret>")
		s = strings.ReplaceAll(s, url.QueryEscape(v), "<secret>")
	}
	return s
}
