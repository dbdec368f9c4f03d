package authflow_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/provider/oauth2"
	"github.com/syncd/syncd/internal/provider/oauth2fake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

const redirect = "https://app.example/callback"

type bundle struct {
	flow  *authflow.Flow
	rdb   *redis.Client
	store *redisstore.Store
	keys  *tokens.Keyring
	ref   *refresher.Refresher
	fake  *oauth2fake.Server
	srv   *httptest.Server
	clk   *clock.Fake
	logs  *bytes.Buffer
	puts  int
}

// setup builds a flow against the OAuth2 fake; opts adjust the flow's
// options before it is made.
func setup(t *testing.T, opts ...func(*authflow.Options)) *bundle {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	fake := oauth2fake.New(oauth2fake.Options{ClientID: "syncd", ClientSecret: "s3cret-client", Clock: clk})
	srv := httptest.NewServer(fake.Handler())
	t.Cleanup(srv.Close)
	client, err := oauth2.New(oauth2.Config{TokenURL: srv.URL + "/token", AuthURL: srv.URL + "/authorize",
		ClientID: "syncd", ClientSecret: "s3cret-client", Scopes: []string{"read", "write"},
		AuthParams: map[string]string{"access_type": "offline"}, PullURL: srv.URL + "/data/{{.User}}", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.Start(t).Client(t)
	store := redisstore.New(rdb, redisstore.Options{Prefix: "t:"})
	keys, err := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := zerolog.New(logs)
	ref, err := refresher.New(store, keys, map[string]refresher.ProviderEntry{"ex": {Provider: client, Policy: refresher.Policy{
		Lead: time.Minute, DefaultLifetime: time.Hour, Timeout: 5 * time.Second, RetryInitial: time.Second, RetryMax: time.Minute,
		RetryAfterCap: time.Minute, DegradedAfter: 3}}}, refresher.Options{Clock: clk, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{rdb: rdb, store: store, keys: keys, ref: ref, fake: fake, srv: srv, clk: clk, logs: logs}
	o := authflow.Options{
		Store: store, Keys: keys, Clock: clk, Logger: log, RedirectURI: redirect,
		Providers: map[string]authflow.Provider{"ex": {Authorizer: client, DefaultLifetime: time.Hour}},
		Put: func(ctx context.Context, prov string, tok tokens.Token, reason string) (tokens.State, error) {
			b.puts++
			st, _, err := ref.PutWithReason(ctx, prov, tok, reason)
			return st, err
		},
	}
	for _, f := range opts {
		f(&o)
	}
	b.flow = authflow.New(o)
	return b
}

// consent plays the user's browser: it opens the link with the fake's
// simulation knobs and returns the query the provider redirected with.
func consent(t *testing.T, link string, knobs url.Values) url.Values {
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
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("consent: status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), redirect) {
		t.Fatalf("consent redirected to %q", resp.Header.Get("Location"))
	}
	return loc.Query()
}

func TestAuthorizeWalk(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	link, err := b.flow.Authorize(ctx, authflow.Request{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if link.Flow != authflow.FlowAuthorize || link.Provider != "ex" || len(link.State) < 32 || !link.ExpiresAt.Equal(b.clk.Now().Add(authflow.DefaultStateTTL)) {
		t.Fatalf("link %+v", link)
	}
	lu, _ := url.Parse(link.URL)
	lq := lu.Query()
	if lq.Get("code_challenge_method") != "S256" || lq.Get("code_challenge") == "" || lq.Get("state") != link.State ||
		lq.Get("redirect_uri") != redirect || lq.Get("scope") != "read write" || lq.Get("access_type") != "offline" {
		t.Fatalf("link query %v", lq)
	}
	// At rest the pending authorization is sealed: no verifier, no
	// redirect URI, no user id in the clear, and it expires.
	raw, err := b.rdb.Get(ctx, "t:authstate:"+link.State).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"verifier", "redirect", "alice"} {
		if bytes.Contains(raw, []byte(plain)) {
			t.Fatalf("the stored state holds %q in the clear", plain)
		}
	}
	if ttl := b.rdb.PTTL(ctx, "t:authstate:"+link.State).Val(); ttl <= authflow.DefaultStateTTL || ttl > authflow.DefaultStateTTL+2*time.Hour {
		t.Fatalf("state ttl %v", ttl)
	}
	cb := consent(t, link.URL, url.Values{"user": {"alice"}})
	res, err := b.flow.Finish(ctx, authflow.ParseCallback(cb))
	if err != nil {
		t.Fatal(err)
	}
	if res.User != "alice" || res.State != tokens.Active || res.Provider != "ex" {
		t.Fatalf("result %+v", res)
	}
	rec, err := b.store.Load(ctx, "alice")
	if err != nil || rec.State != tokens.Active || rec.Provider != "ex" {
		t.Fatalf("record %+v %v", rec, err)
	}
	tok, err := b.keys.OpenRecord(rec)
	if err != nil || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("stored token: %v", err)
	}
	// The stored token works: a forced refresh succeeds against the fake.
	if _, err := b.ref.Rejected(ctx, "alice", tok); err != nil {
		t.Fatalf("refresh with the exchanged token: %v", err)
	}

	// Replaying the callback fails and changes nothing.
	before, _ := b.store.Load(ctx, "alice")
	_, err = b.flow.Finish(ctx, authflow.ParseCallback(cb))
	if !authflow.IsKind(err, authflow.KindStateUnknown) {
		t.Fatalf("replay: %v", err)
	}
	after, _ := b.store.Load(ctx, "alice")
	if after.Version != before.Version || b.puts != 1 {
		t.Fatalf("replay changed the record: version %d -> %d, puts %d", before.Version, after.Version, b.puts)
	}
	// No secret in the logs: not the verifier, the code, nor a token.
	for _, s := range append(b.fake.Secrets(), cb.Get("code")) {
		if s != "" && strings.Contains(b.logs.String(), s) {
			t.Fatal("a secret reached the log")
		}
	}

	// A disabled user's new consent stores the token and reports the
	// state as stored: still disabled.
	if _, err := b.ref.Disable(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	link, err = b.flow.Authorize(ctx, authflow.Request{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	res, err = b.flow.Finish(ctx, authflow.ParseCallback(consent(t, link.URL, url.Values{"user": {"alice"}})))
	if err != nil || res.State != tokens.Disabled {
		t.Fatalf("disabled user's consent: %+v %v", res, err)
	}
}

func TestRefusals(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	nothingStored := func(t *testing.T, user string) {
		t.Helper()
		if _, err := b.store.Load(ctx, user); !errors.Is(err, tokens.ErrNotFound) {
			t.Fatalf("%s: a record was stored: %v", user, err)
		}
	}

	t.Run("denied", func(t *testing.T) {
		link, err := b.flow.Authorize(ctx, authflow.Request{User: "dora"})
		if err != nil {
			t.Fatal(err)
		}
		cb := consent(t, link.URL, url.Values{"consent": {"deny"}})
		_, err = b.flow.Finish(ctx, authflow.ParseCallback(cb))
		if !authflow.IsKind(err, authflow.KindDenied) || !strings.Contains(err.Error(), "access_denied") {
			t.Fatalf("deny: %v", err)
		}
		nothingStored(t, "dora")
		evs, _ := b.store.Events(ctx, 10)
		if len(evs) == 0 || evs[len(evs)-1].User != "dora" || evs[len(evs)-1].Reason != "authorization_failed: access_denied" {
			t.Fatalf("events %+v", evs)
		}
	})

	t.Run("expired", func(t *testing.T) {
		link, err := b.flow.Authorize(ctx, authflow.Request{User: "ed"})
		if err != nil {
			t.Fatal(err)
		}
		cb := consent(t, link.URL, nil)
		b.clk.Advance(authflow.DefaultStateTTL + time.Second)
		_, err = b.flow.Finish(ctx, authflow.ParseCallback(cb))
		if !authflow.IsKind(err, authflow.KindStateExpired) {
			t.Fatalf("expired: %v", err)
		}
		nothingStored(t, "ed")
	})

	t.Run("wrong verifier", func(t *testing.T) {
		// The code of one link presented with the state of another: the
		// verifier syncd sends does not match the code's challenge.
		a, err := b.flow.Authorize(ctx, authflow.Request{User: "fay"})
		if err != nil {
			t.Fatal(err)
		}
		other, err := b.flow.Authorize(ctx, authflow.Request{User: "fay"})
		if err != nil {
			t.Fatal(err)
		}
		cb := consent(t, a.URL, nil)
		cb.Set("state", other.State)
		_, err = b.flow.Finish(ctx, authflow.ParseCallback(cb))
		if !authflow.IsKind(err, authflow.KindRejected) || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("wrong verifier: %v", err)
		}
		nothingStored(t, "fay")
		if strings.Contains(err.Error(), cb.Get("code")) {
			t.Fatal("the code is in the error")
		}
	})

	t.Run("unknown state", func(t *testing.T) {
		_, err := b.flow.Finish(ctx, authflow.Callback{State: "never-issued", Code: "x"})
		if !authflow.IsKind(err, authflow.KindStateUnknown) {
			t.Fatalf("unknown: %v", err)
		}
	})

	t.Run("provider unavailable keeps the state", func(t *testing.T) {
		link, err := b.flow.Authorize(ctx, authflow.Request{User: "gus"})
		if err != nil {
			t.Fatal(err)
		}
		cb := consent(t, link.URL, nil)
		b.fake.SetOutage(http.StatusServiceUnavailable, 0)
		_, err = b.flow.Finish(ctx, authflow.ParseCallback(cb))
		if !authflow.IsKind(err, authflow.KindUnavailable) {
			t.Fatalf("outage: %v", err)
		}
		nothingStored(t, "gus")
		b.fake.SetOutage(0, 0)
		if _, err := b.flow.Finish(ctx, authflow.ParseCallback(cb)); err != nil {
			t.Fatalf("retry after the outage: %v", err)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, tc := range []struct {
			req  authflow.Request
			kind authflow.Kind
			want string
		}{
			{authflow.Request{User: ""}, authflow.KindBadRequest, "user: user id is empty"},
			{authflow.Request{User: "u", RedirectURI: "/relative"}, authflow.KindBadRequest, `redirect_uri: "/relative"`},
			{authflow.Request{User: "u", State: "has space"}, authflow.KindBadRequest, "state: 9 characters"},
			{authflow.Request{User: "u", Provider: "nope"}, authflow.KindBadRequest, `provider: "nope" is not configured`},
		} {
			_, err := b.flow.Authorize(ctx, tc.req)
			if !authflow.IsKind(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: %v, want %s %q", tc.req, err, tc.kind, tc.want)
			}
		}
		if _, err := b.flow.Authorize(ctx, authflow.Request{User: "u", State: mine}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.flow.Authorize(ctx, authflow.Request{User: "v", State: mine}); !authflow.IsKind(err, authflow.KindConflict) {
			t.Fatalf("state reuse: %v", err)
		}
		if _, err := b.flow.Finish(ctx, authflow.Callback{State: mine}); !authflow.IsKind(err, authflow.KindBadRequest) {
			t.Fatalf("no code: %v", err)
		}
		if _, err := b.flow.Reauthorize(ctx, authflow.Request{User: "nobody"}); !authflow.IsKind(err, authflow.KindNotFound) {
			t.Fatalf("reauthorize unknown user: %v", err)
		}
		if _, err := b.flow.Reauthorize(ctx, authflow.Request{User: "alice-not-here"}); !authflow.IsKind(err, authflow.KindNotFound) {
			t.Fatalf("reauthorize: %v", err)
		}
	})
}

// mine is a caller-chosen state that follows the rules: 32 or more
// characters of [A-Za-z0-9_-].
const mine = "app-session-7Qx2_kP9mZ4rT8vW1yB6nD3f"

// TestCallerState: a caller-chosen state is the only secret of a pending
// consent until the callback, so a short or low-entropy one (guessable:
// anyone could burn or race the consent) is refused before anything is
// asked of the provider or stored.
func TestCallerState(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	for _, s := range []string{
		"a",                                 // guessable
		"mine-1",                            // the old minimum was 1
		strings.Repeat("x", 31),             // one short
		strings.Repeat("a", 40),             // long but one character
		strings.Repeat("ab", 20),            // long but two characters
		"has.dot~and.tilde.but.32.chars.ok", // outside [A-Za-z0-9_-]
		"has space has space has space has space",
		strings.Repeat("Ab1_", 65), // 260 > 256
	} {
		_, err := b.flow.Authorize(ctx, authflow.Request{User: "u", State: s})
		if !authflow.IsKind(err, authflow.KindBadRequest) || !errors.Is(err, errkind.Invalid) || !strings.HasPrefix(err.Error(), "state: ") {
			t.Errorf("state %q: %v, want a bad_request naming state", s, err)
		}
	}
	if keys := b.rdb.Keys(ctx, "t:authstate:*").Val(); len(keys) != 0 {
		t.Fatalf("a refused state was stored: %v", keys)
	}
	l, err := b.flow.Authorize(ctx, authflow.Request{User: "u", State: mine})
	if err != nil || l.State != mine {
		t.Fatalf("a good state: %+v %v", l, err)
	}
}

// TestAllowedRedirectURIs: with an allow-list, a caller's redirect_uri
// outside it is refused (compared after normalising scheme, host and
// default port), the configured default is used as before.
func TestAllowedRedirectURIs(t *testing.T) {
	b := setup(t, func(o *authflow.Options) {
		o.AllowedRedirectURIs = []string{redirect, "https://other.example:443/cb?x=1"}
	})
	ctx := context.Background()
	for _, u := range []string{"", redirect, "HTTPS://App.Example/callback", "https://app.example:443/callback", "https://other.example/cb?x=1"} {
		if _, err := b.flow.Authorize(ctx, authflow.Request{User: "u", RedirectURI: u}); err != nil {
			t.Errorf("%q: %v", u, err)
		}
	}
	for _, u := range []string{"https://evil.example/callback", "https://app.example/callback/", "https://app.example/Callback",
		"http://app.example/callback", "https://app.example:8443/callback", "https://other.example/cb", "https://app.example/callback?x=1"} {
		_, err := b.flow.Authorize(ctx, authflow.Request{User: "u", RedirectURI: u})
		if !authflow.IsKind(err, authflow.KindBadRequest) || !strings.Contains(err.Error(), "authorize.allowed_redirect_uris") {
			t.Errorf("%q: %v, want refused", u, err)
		}
	}
	// Without a list any absolute URI goes (the provider checks its own).
	if _, err := setup(t).flow.Authorize(ctx, authflow.Request{User: "u", RedirectURI: "https://evil.example/callback"}); err != nil {
		t.Fatal(err)
	}
}

// TestReauthorize: a flagged user gets a fresh link (OAuth2 has no
// recovery flow, so it is a full authorization); consent brings the same
// user back to active. An active user is refused.
func TestReauthorize(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	link, _ := b.flow.Authorize(ctx, authflow.Request{User: "hal"})
	if _, err := b.flow.Finish(ctx, authflow.ParseCallback(consent(t, link.URL, url.Values{"user": {"hal"}}))); err != nil {
		t.Fatal(err)
	}
	if _, err := b.flow.Reauthorize(ctx, authflow.Request{User: "hal"}); !authflow.IsKind(err, authflow.KindConflict) {
		t.Fatalf("reauthorize an active user: %v", err)
	}
	// The provider revokes hal; a refresh flags him.
	b.fake.Revoke("hal")
	rec, _ := b.store.Load(ctx, "hal")
	tok, err := b.keys.OpenRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ref.Rejected(ctx, "hal", tok); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("refresh after revoke: %v", err)
	}
	rl, err := b.flow.Reauthorize(ctx, authflow.Request{User: "hal"})
	if err != nil {
		t.Fatal(err)
	}
	if rl.Flow != authflow.FlowReauthorize || rl.User != "hal" {
		t.Fatalf("link %+v", rl)
	}
	// A refused consent leaves hal where he was.
	_, err = b.flow.Finish(ctx, authflow.ParseCallback(consent(t, rl.URL, url.Values{"consent": {"deny"}})))
	if !authflow.IsKind(err, authflow.KindDenied) {
		t.Fatalf("deny: %v", err)
	}
	if rec, _ := b.store.Load(ctx, "hal"); rec.State != tokens.ReauthRequired {
		t.Fatalf("after a refused consent hal is %s", rec.State)
	}
	rl, _ = b.flow.Reauthorize(ctx, authflow.Request{User: "hal"})
	res, err := b.flow.Finish(ctx, authflow.ParseCallback(consent(t, rl.URL, url.Values{"user": {"hal"}})))
	if err != nil || res.State != tokens.Active {
		t.Fatalf("reauthorized: %+v %v", res, err)
	}
	q, _ := b.store.ReauthQueue(ctx)
	if len(q) != 0 {
		t.Fatalf("re-auth queue %+v", q)
	}
	evs, _ := b.store.Events(ctx, 1)
	if len(evs) != 1 || evs[0].User != "hal" || evs[0].From != "reauth_required" || evs[0].To != "active" || evs[0].Reason != tokens.ReasonReauthorized {
		t.Fatalf("last event %+v", evs)
	}
}
