package digime

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/tokens"
)

var _ provider.Reauthorizer = (*Client)(nil)

const testRedirect = "https://syncd.example/callback"

// tap sits in front of the fake digi.me: it records every request's
// verified claims and body by path under PathPrefix ("oauth/token"), and
// can answer instead of the fake (queued faults, a replaced JWKS).
type tap struct {
	t *testing.T
	h http.Handler

	mu     sync.Mutex
	reqs   []tapRecord
	faults map[string][]fault
	jwks   []byte
}

type tapRecord struct {
	path   string
	claims jwt.MapClaims // nil when the JWT does not verify with the contract key
	body   []byte
}

func (tp *tap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rel := strings.TrimPrefix(r.URL.Path, digimefake.PathPrefix)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		tp.t.Errorf("%s: read body: %v", rel, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		claims, _ := checkPS512(raw, &contractKey.PublicKey)
		tp.mu.Lock()
		tp.reqs = append(tp.reqs, tapRecord{path: rel, claims: claims, body: body})
		tp.mu.Unlock()
	}
	tp.mu.Lock()
	var f *fault
	if q := tp.faults[rel]; len(q) > 0 {
		f, tp.faults[rel] = &q[0], q[1:]
	}
	jwks := tp.jwks
	tp.mu.Unlock()
	switch {
	case f != nil:
		serveFault(tp.t, w, *f)
	case rel == "jwks/oauth" && jwks != nil:
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	default:
		tp.h.ServeHTTP(w, r)
	}
}

func (tp *tap) fault(path string, f ...fault) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.faults[path] = append(tp.faults[path], f...)
}

// recorded returns the signed requests to path.
func (tp *tap) recorded(path string) []tapRecord {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []tapRecord
	for _, r := range tp.reqs {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

// consentEnv is a digimefake server behind a tap and a client for it
// whose OnboardURL is the fake's onboarding pages.
type consentEnv struct {
	fake *digimefake.Server
	tap  *tap
	hs   *httptest.Server
	c    *Client
}

func newConsentEnv(t *testing.T, mods ...func(*Config)) *consentEnv {
	t.Helper()
	testKeys(t)
	fake, err := digimefake.New(digimefake.Options{
		AppID: testAppID, ContractID: testContractID, ContractKey: &contractKey.PublicKey,
		SigningKey: serverKey, Seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{t: t, h: fake.Handler(), faults: map[string][]fault{}}
	hs := httptest.NewServer(tp)
	t.Cleanup(hs.Close)
	mods = append([]func(*Config){func(c *Config) {
		c.OnboardURL = hs.URL + digimefake.OnboardPrefix
		c.HTTPClient = hs.Client()
	}}, mods...)
	return &consentEnv{fake: fake, tap: tp, hs: hs, c: e2eClient(t, hs.URL+digimefake.PathPrefix, mods...)}
}

// visit plays the user's browser: it opens link with the fake's knobs
// added and returns the query of the redirect to testRedirect.
func (e *consentEnv) visit(t *testing.T, link string, knobs url.Values) url.Values {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	maps.Copy(q, knobs)
	u.RawQuery = q.Encode()
	hc := *e.hs.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("visit: status %d %s", resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), testRedirect+"?") {
		t.Fatalf("redirect to %q: %v", loc.Redacted(), err)
	}
	return loc.Query()
}

type pkce struct{ verifier, challenge string }

func newPKCE(t *testing.T) pkce {
	t.Helper()
	n, err := nonce()
	if err != nil {
		t.Fatal(err)
	}
	v := base64.RawURLEncoding.EncodeToString([]byte(n))
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

func authReq(p pkce) provider.AuthRequest {
	return provider.AuthRequest{User: "u1", RedirectURI: testRedirect, State: "state-1", CodeChallenge: p.challenge}
}

func claimNames(c jwt.MapClaims) []string { return slices.Sorted(maps.Keys(c)) }

// onePost returns the only signed request to path.
func (tp *tap) onePost(t *testing.T, path string) tapRecord {
	t.Helper()
	recs := tp.recorded(path)
	if len(recs) != 1 || recs[0].claims == nil {
		t.Fatalf("%d requests to %s (want exactly 1, verified)", len(recs), path)
	}
	return recs[0]
}

// checkAgentBody checks the body of a consent call: agent and actions.
func checkAgentBody(t *testing.T, body []byte) {
	t.Helper()
	var b struct {
		Agent struct {
			SDK struct {
				Name    string          `json:"name"`
				Version string          `json:"version"`
				Meta    json.RawMessage `json:"meta"`
			} `json:"sdk"`
		} `json:"agent"`
		Actions map[string]json.RawMessage `json:"actions"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if b.Agent.SDK.Name != DefaultAgentName || b.Agent.SDK.Version == "" || string(b.Agent.SDK.Meta) != "{}" ||
		len(b.Actions) != 1 || string(b.Actions["pull"]) != "{}" {
		t.Errorf("body %s", body)
	}
}

// pullNames pulls with tok and returns the delivered item names.
func pullNames(t *testing.T, c *Client, tok tokens.Token) []string {
	t.Helper()
	col := newCollector()
	if _, err := c.Pull(waitCtx(t), tok.UserID, &testSource{tok: tok}, "", col.deliver); err != nil {
		t.Fatal(err)
	}
	return col.names()
}

func TestConsentFlow(t *testing.T) {
	t.Run("authorize, consent, exchange, pull", func(t *testing.T) {
		e := newConsentEnv(t, func(c *Config) { c.OnboardParams = map[string]string{"lng": "nl", "service": "16"} })
		e.fake.AddFile("alice", digimefake.File{Name: "kept.json", Data: []byte(`{"a":1}`), MimeType: "application/json"})
		ctx := waitCtx(t)
		p := newPKCE(t)
		link, err := e.c.AuthorizeURL(ctx, authReq(p))
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(link)
		q := u.Query()
		if want := e.hs.URL + digimefake.OnboardPrefix + "authorize"; strings.Split(link, "?")[0] != want {
			t.Fatalf("link page %s, want %s", strings.Split(link, "?")[0], want)
		}
		want := url.Values{"code": {q.Get("code")}, "lng": {"nl"}, "service": {"16"}, "sourceType": {"pull"}}
		if q.Get("code") == "" || u.RawQuery != want.Encode() {
			t.Fatalf("link query %q, want %q", u.Query(), want)
		}

		rec := e.tap.onePost(t, "oauth/authorize")
		if got, want := claimNames(rec.claims), []string{"client_id", "code_challenge", "code_challenge_method", "nonce",
			"redirect_uri", "response_mode", "response_type", "state", "timestamp"}; !slices.Equal(got, want) {
			t.Errorf("authorize claims %v, want %v", got, want)
		}
		if c := rec.claims; c["code_challenge"] != p.challenge || c["code_challenge_method"] != "S256" ||
			c["redirect_uri"] != testRedirect || c["response_mode"] != "query" || c["response_type"] != "code" ||
			c["state"] != "state-1" || c["client_id"] != testClientID {
			t.Errorf("authorize claims %v", c)
		}
		checkAgentBody(t, rec.body)

		cb := e.visit(t, link, url.Values{"user": {"alice"}})
		if cb.Get("success") != "true" || cb.Get("state") != "state-1" {
			t.Fatalf("callback %v", cb)
		}
		before := time.Now()
		tok, err := e.c.Exchange(ctx, provider.ExchangeRequest{User: "u1", Code: cb.Get("code"), Verifier: p.verifier, RedirectURI: testRedirect})
		if err != nil {
			t.Fatal(err)
		}
		if tok.UserID != "u1" || !strings.HasPrefix(tok.AccessToken, "dm-at-") || !strings.HasPrefix(tok.RefreshToken, "dm-rt-") ||
			tok.ConsentID != "consent-alice" || tok.TokenType != "Bearer" ||
			tok.AccessExpiry.Before(before.Add(59*time.Minute)) || tok.RefreshExpiry.Before(before.Add(29*24*time.Hour)) {
			t.Fatalf("token %v consent %q type %q", tok, tok.ConsentID, tok.TokenType)
		}
		rec = e.tap.onePost(t, "oauth/token")
		if got, want := claimNames(rec.claims), []string{"client_id", "code", "code_verifier", "grant_type", "nonce", "timestamp"}; !slices.Equal(got, want) {
			t.Errorf("exchange claims %v, want %v", got, want)
		}
		if c := rec.claims; c["grant_type"] != "authorization_code" || c["code"] != cb.Get("code") || c["code_verifier"] != p.verifier {
			t.Errorf("exchange claims %v", c)
		}
		if len(rec.body) != 0 {
			t.Errorf("exchange body %q, want none", rec.body)
		}

		if got := pullNames(t, e.c, tok); !slices.Equal(got, []string{"kept.json"}) {
			t.Errorf("pulled %v, want the library's file", got)
		}
		if _, err := e.c.Refresh(ctx, tok); err != nil {
			t.Fatalf("refresh of the new grant: %v", err)
		}
		if st := e.fake.Stats(); st.Authorizations != 1 || st.Consents != 1 || st.Exchanges != 1 || st.BadJWT != 0 || st.BadSignature != 0 {
			t.Errorf("fake stats %+v", st)
		}
	})

	t.Run("reauthorize after the refresh token expired", func(t *testing.T) {
		e := newConsentEnv(t, func(c *Config) { c.OnboardParams = map[string]string{"lng": "nl", "service": "16"} })
		ctx := waitCtx(t)
		old := e.fake.Issue("alice")
		old.UserID = "u1"
		e.fake.AddFile("alice", digimefake.File{Name: "kept.json", Data: []byte(`{}`), MimeType: "application/json"})
		e.fake.ExpireRefresh("alice")
		_, err := e.c.Refresh(ctx, old)
		if re := refreshErr(t, err); re.Class != tokens.Reauth {
			t.Fatalf("refresh after ExpireRefresh: %v, want reauth", err)
		}

		p := newPKCE(t)
		link, err := e.c.ReauthorizeURL(ctx, authReq(p), old.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(link)
		want := url.Values{"code": {u.Query().Get("code")}, "lng": {"nl"}, "service": {"16"}}
		if u.Path != digimefake.OnboardPrefix+"user-reauth" || u.Query().Get("code") == "" || u.RawQuery != want.Encode() {
			t.Fatalf("link %s?%q, want user-reauth with %q", u.Path, u.Query(), want)
		}
		rec := e.tap.onePost(t, "oauth/token/reference")
		if got, want := claimNames(rec.claims), []string{"access_token", "client_id", "code_challenge", "code_challenge_method",
			"nonce", "redirect_uri", "state", "timestamp"}; !slices.Equal(got, want) {
			t.Errorf("reference claims %v, want %v", got, want)
		}
		if c := rec.claims; c["access_token"] != old.AccessToken || c["code_challenge"] != p.challenge ||
			c["code_challenge_method"] != "S256" || c["redirect_uri"] != testRedirect || c["state"] != "state-1" {
			t.Errorf("reference claims %v", c)
		}
		checkAgentBody(t, rec.body)

		cb := e.visit(t, link, nil)
		tok, err := e.c.Exchange(ctx, provider.ExchangeRequest{User: "u1", Code: cb.Get("code"), Verifier: p.verifier})
		if err != nil {
			t.Fatal(err)
		}
		if tok.ConsentID != "consent-alice" {
			t.Errorf("consent %q: not alice's library", tok.ConsentID)
		}
		if _, err := e.c.Refresh(ctx, tok); err != nil {
			t.Fatalf("refresh of the new grant: %v", err)
		}
		if got := pullNames(t, e.c, tok); !slices.Equal(got, []string{"kept.json"}) {
			t.Errorf("pulled %v, want the library's file", got)
		}
	})

	t.Run("sourceType from OnboardParams", func(t *testing.T) {
		e := newConsentEnv(t, func(c *Config) { c.OnboardParams = map[string]string{"sourceType": "push"} })
		ctx := waitCtx(t)
		link, err := e.c.AuthorizeURL(ctx, authReq(newPKCE(t)))
		if err != nil {
			t.Fatal(err)
		}
		if u, _ := url.Parse(link); u.Query().Get("sourceType") != "push" {
			t.Errorf("authorize link query %q", u.Query())
		}
		tok := e.fake.Issue("alice")
		link, err = e.c.ReauthorizeURL(ctx, authReq(newPKCE(t)), tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if u, _ := url.Parse(link); u.Query().Has("sourceType") || len(u.Query()) != 1 {
			t.Errorf("reauthorize link query %q, want only code", u.Query())
		}
	})
}

// consentErr checks err is a *provider.Error for op.
func consentErr(t *testing.T, err error, op string) *provider.Error {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *provider.Error", err, err)
	}
	if pe.Op != op {
		t.Fatalf("op %q, want %q (%v)", pe.Op, op, err)
	}
	return pe
}

func TestConsentErrors(t *testing.T) {
	t.Run("reauthorize with a refused access token", func(t *testing.T) {
		e := newConsentEnv(t)
		revoked := e.fake.Issue("alice")
		e.fake.Revoke("alice")
		for name, access := range map[string]string{"revoked": revoked.AccessToken, "unknown": "dm-at-unknown"} {
			_, err := e.c.ReauthorizeURL(waitCtx(t), authReq(newPKCE(t)), access)
			pe := consentErr(t, err, "reauthorize")
			if !errors.Is(err, provider.ErrAccessTokenInvalid) || !pe.Permanent || pe.Status != 401 || pe.Code != "InvalidToken" {
				t.Errorf("%s: %+v (%v)", name, pe, err)
			}
		}
		n := len(e.tap.recorded("oauth/token/reference"))
		_, err := e.c.ReauthorizeURL(waitCtx(t), authReq(newPKCE(t)), "")
		if pe := consentErr(t, err, "reauthorize"); !errors.Is(err, provider.ErrAccessTokenInvalid) || !pe.Permanent {
			t.Errorf("no access token: %+v", pe)
		}
		if len(e.tap.recorded("oauth/token/reference")) != n {
			t.Error("a request was sent without an access token")
		}
	})

	t.Run("exchange with a wrong verifier or a used code is permanent", func(t *testing.T) {
		e := newConsentEnv(t)
		ctx := waitCtx(t)
		p := newPKCE(t)
		link, err := e.c.AuthorizeURL(ctx, authReq(p))
		if err != nil {
			t.Fatal(err)
		}
		code := e.visit(t, link, nil).Get("code")
		_, err = e.c.Exchange(ctx, provider.ExchangeRequest{User: "u1", Code: code, Verifier: newPKCE(t).verifier})
		if pe := consentErr(t, err, "exchange"); !pe.Permanent || pe.Status != 400 || pe.Code != "InvalidGrant" ||
			errors.Is(err, provider.ErrAccessTokenInvalid) {
			t.Errorf("wrong verifier: %+v", pe)
		}
		_, err = e.c.Exchange(ctx, provider.ExchangeRequest{User: "u1", Code: code, Verifier: p.verifier})
		if pe := consentErr(t, err, "exchange"); !pe.Permanent || pe.Code != "InvalidGrant" {
			t.Errorf("used code: %+v", pe)
		}
	})

	t.Run("outages are not permanent and posts are sent once", func(t *testing.T) {
		for _, tc := range []struct {
			status int
			ra     time.Duration
		}{{500, 0}, {503, 0}, {429, 7 * time.Second}} {
			e := newConsentEnv(t)
			ctx := waitCtx(t)
			tok := e.fake.Issue("alice")
			e.fake.SetOutage(tc.status, tc.ra)
			_, err1 := e.c.AuthorizeURL(ctx, authReq(newPKCE(t)))
			_, err2 := e.c.ReauthorizeURL(ctx, authReq(newPKCE(t)), tok.AccessToken)
			_, err3 := e.c.Exchange(ctx, provider.ExchangeRequest{User: "u1", Code: "dm-ac-x", Verifier: newPKCE(t).verifier})
			for i, err := range []error{err1, err2, err3} {
				op := []string{"authorize", "reauthorize", "exchange"}[i]
				pe := consentErr(t, err, op)
				if pe.Permanent || pe.Status != tc.status || pe.RetryAfter != tc.ra || errors.Is(err, provider.ErrAccessTokenInvalid) {
					t.Errorf("%d %s: %+v", tc.status, op, pe)
				}
			}
			for _, path := range []string{"oauth/authorize", "oauth/token/reference", "oauth/token"} {
				if n := len(e.tap.recorded(path)); n != 1 {
					t.Errorf("%d: %s sent %d times, want once", tc.status, path, n)
				}
			}
		}
	})

	t.Run("jwks outage: the code is not spent", func(t *testing.T) {
		e := newConsentEnv(t)
		ctx := waitCtx(t)
		p := newPKCE(t)
		link, err := e.c.AuthorizeURL(ctx, authReq(p))
		if err != nil {
			t.Fatal(err)
		}
		code := e.visit(t, link, nil).Get("code")
		e.c.keys = newKeyCache() // forget the key set AuthorizeURL fetched
		e.tap.fault("jwks/oauth", fault{status: 503}, fault{status: 503}, fault{status: 503})
		req := provider.ExchangeRequest{User: "u1", Code: code, Verifier: p.verifier}
		_, err = e.c.Exchange(ctx, req)
		if pe := consentErr(t, err, "exchange"); pe.Permanent || pe.Code != codeJWKS {
			t.Fatalf("jwks outage: %+v", pe)
		}
		if n := len(e.tap.recorded("oauth/token")); n != 0 {
			t.Fatalf("oauth/token sent %d times during a jwks outage", n)
		}
		if _, err := e.c.Exchange(ctx, req); err != nil {
			t.Fatalf("exchange after the outage: %v", err)
		}
	})

	t.Run("an answer that fails verification is not permanent", func(t *testing.T) {
		e := newConsentEnv(t)
		e.tap.jwks = jwksJSON(map[string]*rsaPub{"fake-1": &otherKey.PublicKey}, true)
		_, err := e.c.AuthorizeURL(waitCtx(t), authReq(newPKCE(t)))
		if pe := consentErr(t, err, "authorize"); pe.Permanent || pe.Code != codeResponseSignature || pe.Status != 200 {
			t.Errorf("bad signature: %+v", pe)
		}
		_, err = e.c.ReauthorizeURL(waitCtx(t), authReq(newPKCE(t)), e.fake.Issue("alice").AccessToken)
		if pe := consentErr(t, err, "reauthorize"); pe.Permanent || pe.Code != codeResponseSignature ||
			errors.Is(err, provider.ErrAccessTokenInvalid) {
			t.Errorf("bad signature: %+v", pe)
		}
	})

	t.Run("no token in the answer", func(t *testing.T) {
		e := newConsentEnv(t)
		e.tap.fault("oauth/authorize", fault{status: 200, body: `{"session":{}}`})
		_, err := e.c.AuthorizeURL(waitCtx(t), authReq(newPKCE(t)))
		if pe := consentErr(t, err, "authorize"); pe.Permanent || pe.Code != codeBadResponse {
			t.Errorf("no token: %+v", pe)
		}
	})

	t.Run("a refused client is permanent", func(t *testing.T) {
		e := newConsentEnv(t, func(c *Config) { c.PrivateKey = otherKey })
		_, err := e.c.AuthorizeURL(waitCtx(t), authReq(newPKCE(t)))
		if pe := consentErr(t, err, "authorize"); !pe.Permanent || pe.Status != 401 || pe.Code != "InvalidJWT" {
			t.Errorf("foreign key: %+v", pe)
		}
		_, err = e.c.ReauthorizeURL(waitCtx(t), authReq(newPKCE(t)), e.fake.Issue("alice").AccessToken)
		if pe := consentErr(t, err, "reauthorize"); !pe.Permanent || errors.Is(err, provider.ErrAccessTokenInvalid) {
			t.Errorf("foreign key: %+v (%v)", pe, err)
		}
	})

	t.Run("network errors are not permanent", func(t *testing.T) {
		e := newConsentEnv(t)
		e.tap.fault("oauth/authorize", fault{drop: true})
		_, err := e.c.AuthorizeURL(waitCtx(t), authReq(newPKCE(t)))
		if pe := consentErr(t, err, "authorize"); pe.Permanent || pe.Status != 0 || pe.Err == nil {
			t.Errorf("dropped connection: %+v", pe)
		}
		e.hs.Close()
		_, err = e.c.Exchange(waitCtx(t), provider.ExchangeRequest{Code: "c", Verifier: "v"})
		if pe := consentErr(t, err, "exchange"); pe.Permanent {
			t.Errorf("server down: %+v", pe)
		}
	})

	t.Run("incomplete requests are refused without a call", func(t *testing.T) {
		e := newConsentEnv(t)
		ctx := waitCtx(t)
		p := newPKCE(t)
		for name, mod := range map[string]func(*provider.AuthRequest){
			"no challenge": func(r *provider.AuthRequest) { r.CodeChallenge = "" },
			"no redirect":  func(r *provider.AuthRequest) { r.RedirectURI = "" },
			"no state":     func(r *provider.AuthRequest) { r.State = "" },
		} {
			req := authReq(p)
			mod(&req)
			_, err := e.c.AuthorizeURL(ctx, req)
			if pe := consentErr(t, err, "authorize"); !pe.Permanent {
				t.Errorf("%s: %+v", name, pe)
			}
			_, err = e.c.ReauthorizeURL(ctx, req, "dm-at-x")
			if pe := consentErr(t, err, "reauthorize"); !pe.Permanent || errors.Is(err, provider.ErrAccessTokenInvalid) {
				t.Errorf("%s: %+v", name, pe)
			}
		}
		for name, req := range map[string]provider.ExchangeRequest{
			"no code": {Verifier: p.verifier}, "no verifier": {Code: "c"},
		} {
			_, err := e.c.Exchange(ctx, req)
			if pe := consentErr(t, err, "exchange"); !pe.Permanent {
				t.Errorf("%s: %+v", name, pe)
			}
		}
		e.tap.mu.Lock()
		n := len(e.tap.reqs)
		e.tap.mu.Unlock()
		if n != 0 {
			t.Errorf("%d requests sent", n)
		}
	})
}

func TestNewOnboard(t *testing.T) {
	testKeys(t)
	base := Config{AppID: "a", ContractID: "c", PrivateKey: contractKey}
	c, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	if c.onboard != DefaultOnboardURL || c.onboardLink("authorize", "x") != DefaultOnboardURL+"authorize?code=x&sourceType=pull" {
		t.Fatalf("default onboard %q, link %q", c.onboard, c.onboardLink("authorize", "x"))
	}
	cfg := base
	cfg.OnboardURL = "http://localhost:8080/apps/saas"
	cfg.OnboardParams = map[string]string{"lng": "en GB", "triggerQuery": "false"}
	if c, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if got, want := c.onboardLink("user-reauth", "a/b", "sourceType"),
		"http://localhost:8080/apps/saas/user-reauth?code=a%2Fb&lng=en+GB&triggerQuery=false"; got != want {
		t.Fatalf("link %q, want %q", got, want)
	}
	for name, mod := range map[string]func(*Config){
		"relative url":   func(c *Config) { c.OnboardURL = "api.digi.me/apps/saas/" },
		"ftp url":        func(c *Config) { c.OnboardURL = "ftp://api.digi.me/apps/saas/" },
		"url with query": func(c *Config) { c.OnboardURL = "https://api.digi.me/apps/saas/?x=1" },
		"reserved code":  func(c *Config) { c.OnboardParams = map[string]string{"code": "x"} },
		"empty key":      func(c *Config) { c.OnboardParams = map[string]string{"": "x"} },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := base
			mod(&cfg)
			if _, err := New(cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestConsentNoSecretsInLogsOrErrors runs the consent calls, with
// failures whose messages echo the secrets, at trace level and checks
// that no token, code, verifier, challenge, state or JWT reaches the log
// or an error.
func TestConsentNoSecretsInLogsOrErrors(t *testing.T) {
	var buf lockedBuffer
	e := newConsentEnv(t, func(c *Config) { c.Logger = zerolog.New(&buf).Level(zerolog.TraceLevel) })
	ctx := waitCtx(t)
	const jwtEcho = "eyJhbGciOiJQUzUxMiJ9.eyJjbGllbnRfaWQiOiJ4In0.c2lnbmF0dXJl"
	var secrets []string
	var errs []error
	newReq := func() (pkce, provider.AuthRequest) {
		p := newPKCE(t)
		req := authReq(p)
		req.State = "STATE-SECRET-" + p.verifier[:8]
		secrets = append(secrets, p.verifier, p.challenge, req.State)
		return p, req
	}

	// Success: authorize, consent, exchange; reauthorize.
	p, req := newReq()
	link, err := e.c.AuthorizeURL(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	code := e.visit(t, link, nil).Get("code")
	tok, err := e.c.Exchange(ctx, provider.ExchangeRequest{User: "u1", Code: code, Verifier: p.verifier})
	if err != nil {
		t.Fatal(err)
	}
	_, req = newReq()
	if _, err := e.c.ReauthorizeURL(ctx, req, tok.AccessToken); err != nil {
		t.Fatal(err)
	}

	// Failures whose messages echo what was sent.
	_, req = newReq()
	e.tap.fault("oauth/authorize", fault{status: 400, body: fmt.Sprintf(
		`{"error":{"code":"InvalidRequest","message":"challenge %s state %s %s"}}`, req.CodeChallenge, req.State, jwtEcho)})
	_, err = e.c.AuthorizeURL(ctx, req)
	errs = append(errs, err)

	_, req = newReq()
	e.tap.fault("oauth/token/reference", fault{status: 401, body: fmt.Sprintf(
		`{"error":{"code":"InvalidToken","message":"The token (access_token) %s is invalid"}}`, tok.AccessToken)})
	_, err = e.c.ReauthorizeURL(ctx, req, tok.AccessToken)
	errs = append(errs, err)

	p, req = newReq()
	link, err = e.c.AuthorizeURL(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	code = e.visit(t, link, nil).Get("code")
	e.tap.fault("oauth/token", fault{status: 400, body: fmt.Sprintf(
		`{"error":{"code":"InvalidGrant","message":"code %s verifier %s"}}`, code, p.verifier)})
	_, err = e.c.Exchange(ctx, provider.ExchangeRequest{User: "u1", Code: code, Verifier: p.verifier})
	errs = append(errs, err)
	_, err = e.c.Exchange(ctx, provider.ExchangeRequest{User: "u1", Code: code, Verifier: newPKCE(t).verifier})
	errs = append(errs, err)

	// A response that fails verification (logged at error level).
	e.tap.jwks = jwksJSON(map[string]*rsaPub{"fake-1": &otherKey.PublicKey}, true)
	e.c.keys = newKeyCache()
	_, req = newReq()
	_, err = e.c.AuthorizeURL(ctx, req)
	errs = append(errs, err)

	logs := buf.String()
	if !strings.Contains(logs, `"op":"exchange"`) || !strings.Contains(logs, `"op":"reauthorize"`) {
		t.Fatalf("logs lack the consent calls:\n%s", logs)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.Contains(line, `"user":"u1"`) {
			t.Errorf("log line without user: %s", line)
		}
	}
	texts := []string{logs}
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected an error")
		}
		texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
	}
	secrets = append(secrets, e.fake.Secrets()...)
	for _, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("secret %s leaked into: %s", s, text)
			}
		}
		if strings.Contains(text, "eyJ") {
			t.Errorf("a JWT leaked into: %s", text)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("logs:\n%s", logs)
	}
}
