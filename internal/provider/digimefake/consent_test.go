package digimefake_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncd/syncd/internal/provider/digimefake"
)

// callback is the app's redirect_uri; its own query must survive.
const callback = "https://app.example/callback?app=1"

var consentBody = []byte(`{"agent":{"sdk":{"name":"go","version":"1.0.0","meta":{}}},"actions":{"pull":{}}}`)

// pkce is a verifier and its S256 challenge, made as the Node SDK makes
// them: base64url of 32 random alphanumerics.
type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := base64.RawURLEncoding.EncodeToString([]byte(randomAlnum(32)))
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// consentClaims are the claims of oauth/authorize (page authorize) or
// oauth/token/reference, changed by extra: a nil value drops the claim.
func consentClaims(p pkce, state string, authorize bool, extra jwt.MapClaims) jwt.MapClaims {
	claims := jwt.MapClaims{
		"code_challenge": p.challenge, "code_challenge_method": "S256",
		"redirect_uri": callback, "state": state,
	}
	if authorize {
		claims["response_mode"] = "query"
		claims["response_type"] = "code"
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	return claims
}

func (c *client) authorize(p pkce, state string, extra jwt.MapClaims) response {
	c.t.Helper()
	return c.do(http.MethodPost, "oauth/authorize", c.sign(consentClaims(p, state, true, extra)), consentBody,
		map[string]string{"Content-Type": "application/json"})
}

func (c *client) reference(access string, p pkce, state string) response {
	c.t.Helper()
	return c.do(http.MethodPost, "oauth/token/reference",
		c.sign(consentClaims(p, state, false, jwt.MapClaims{"access_token": access})), consentBody,
		map[string]string{"Content-Type": "application/json"})
}

func (c *client) exchange(code, verifier string) response {
	c.t.Helper()
	return c.do(http.MethodPost, "oauth/token",
		c.sign(jwt.MapClaims{"grant_type": "authorization_code", "code": code, "code_verifier": verifier}),
		nil, map[string]string{"Content-Type": "application/json"})
}

// visit plays the user's browser on an onboarding page, without following
// the redirect.
func (c *client) visit(page, code string, knobs url.Values) response {
	c.t.Helper()
	q := url.Values{"code": {code}}
	for k, v := range knobs {
		q[k] = v
	}
	u := strings.TrimSuffix(c.base, digimefake.PathPrefix) + digimefake.OnboardPrefix + page + "?" + q.Encode()
	hc := *c.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(u)
	if err != nil {
		c.t.Fatalf("visit %s: %v", page, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("visit %s: read body: %v", page, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// redirected checks a 302 to the callback (its own query kept) and
// returns the added query.
func redirected(t *testing.T, r response) url.Values {
	t.Helper()
	if r.status != http.StatusFound {
		t.Fatalf("visit: status %d %s, want 302", r.status, r.body)
	}
	u, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme+"://"+u.Host+u.Path != "https://app.example/callback" || q.Get("app") != "1" {
		t.Fatalf("redirect to %s%s (app=%q), want the callback with its query", u.Host, u.Path, q.Get("app"))
	}
	return q
}

// refused checks a plain-text 400 from an onboarding page.
func refused(t *testing.T, r response, what string) {
	t.Helper()
	if r.status != http.StatusBadRequest || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("%s: status %d content type %q, want 400 text/plain", what, r.status, r.header.Get("Content-Type"))
	}
}

type consentAnswer struct {
	PreauthorizationCode string `json:"preauthorization_code"`
	ReferenceCode        string `json:"reference_code"`
	TokenType            string `json:"token_type"`
	ExpiresOn            int64  `json:"expires_on"`
	jwt.RegisteredClaims
}

// consentCode verifies an oauth/authorize or oauth/token/reference answer
// and returns its payload.
func consentCode(t *testing.T, c *client, r response) consentAnswer {
	t.Helper()
	var p consentAnswer
	verifyInto(t, c, r, &p)
	var body struct {
		Session struct {
			Key    string `json:"key"`
			Expiry int64  `json:"expiry"`
		} `json:"session"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Session.Key == "" {
		t.Fatalf("answer %s has no session: %v", r.body, err)
	}
	if want := c.clock.Now().Add(time.Hour).UnixMilli(); body.Session.Expiry != want {
		t.Errorf("session expiry %d, want %d (ms)", body.Session.Expiry, want)
	}
	return p
}

// preauth asks oauth/authorize for a code.
func preauth(t *testing.T, c *client, p pkce, extra jwt.MapClaims) string {
	t.Helper()
	a := consentCode(t, c, c.authorize(p, "st-1", extra))
	if !strings.HasPrefix(a.PreauthorizationCode, "dm-pa-") {
		t.Fatalf("preauthorization code %q", a.PreauthorizationCode)
	}
	return a.PreauthorizationCode
}

// authorizeFlow runs authorize, a consent visit with knobs and the
// exchange, and returns the tokens' payload.
func authorizeFlow(t *testing.T, b bundle, knobs url.Values) tokenPayload {
	t.Helper()
	p := newPKCE()
	q := redirected(t, b.c.visit("authorize", preauth(t, b.c, p, nil), knobs))
	return verifyToken(t, b.c, b.c.exchange(q.Get("code"), p.verifier))
}

// listFiles pulls the file list of the access token's user to the end.
func listFiles(t *testing.T, c *client, access string) []string {
	t.Helper()
	sess := c.startSession(access)
	for range 5 {
		fl, r := c.list(access, sess)
		if r.status != http.StatusOK {
			t.Fatalf("file list: %d %s", r.status, r.body)
		}
		if fl.Status.State == "completed" {
			var names []string
			for _, f := range fl.FileList {
				names = append(names, f.Name)
			}
			return names
		}
	}
	t.Fatal("file list never completed")
	return nil
}

func TestAuthorize(t *testing.T) {
	t.Run("consent and exchange", func(t *testing.T) {
		b := setup(t, nil)
		b.srv.AddFile("alice", digimefake.File{Name: "old.json", Data: []byte(`{}`)})
		p := newPKCE()
		code := preauth(t, b.c, p, nil)
		q := redirected(t, b.c.visit("authorize", code, url.Values{"user": {"alice"}, "sourceType": {"pull"}, "lng": {"nl"}}))
		if q.Get("success") != "true" || q.Get("state") != "st-1" || !strings.HasPrefix(q.Get("code"), "dm-ac-") ||
			q.Get("accountReference") == "" || q.Has("errorCode") {
			t.Fatalf("redirect query %v", q)
		}
		tok := verifyToken(t, b.c, b.c.exchange(q.Get("code"), p.verifier))
		now := b.clock.Now()
		if tok.Sub != "alice" || tok.ConsentID != "consent-alice" || tok.TokenType != "Bearer" ||
			tok.AccessToken.ExpiresOn != now.Add(time.Hour).Unix() || tok.RefreshToken.ExpiresOn != now.Add(30*24*time.Hour).Unix() {
			t.Errorf("payload %+v", tok)
		}
		if got := listFiles(t, b.c, tok.AccessToken.Value); !slices.Equal(got, []string{"old.json"}) {
			t.Errorf("files %v, want the library's", got)
		}
		verifyToken(t, b.c, b.c.refresh(tok.RefreshToken.Value))
		st := b.srv.Stats()
		if st.Authorizations != 1 || st.Consents != 1 || st.Exchanges != 1 || st.ExchangeRejected != 0 || st.Denials != 0 {
			t.Errorf("stats %+v", st)
		}
		secrets := b.srv.Secrets()
		for _, s := range []string{code, q.Get("code"), tok.AccessToken.Value, tok.RefreshToken.Value} {
			if !slices.Contains(secrets, s) {
				t.Errorf("Secrets lacks an issued code or token")
			}
		}
	})

	t.Run("fresh libraries", func(t *testing.T) {
		b := setup(t, nil)
		b.srv.Issue("library-1")
		if got := authorizeFlow(t, b, nil).Sub; got != "library-2" {
			t.Errorf("first fresh library %q, want library-2 (library-1 is taken)", got)
		}
		if got := authorizeFlow(t, b, nil).Sub; got != "library-3" {
			t.Errorf("second fresh library %q", got)
		}
	})

	t.Run("access_token links the library, expired or not", func(t *testing.T) {
		b := setup(t, nil)
		old := b.srv.Issue("alice")
		b.clock.Advance(2 * time.Hour)
		p := newPKCE()
		q := redirected(t, b.c.visit("authorize", preauth(t, b.c, p, jwt.MapClaims{"access_token": old.AccessToken}), nil))
		if got := verifyToken(t, b.c, b.c.exchange(q.Get("code"), p.verifier)).Sub; got != "alice" {
			t.Errorf("user %q, want alice", got)
		}
		r := b.c.authorize(p, "st", jwt.MapClaims{"access_token": "dm-at-unknown"})
		if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" || msg != "The token (access_token) is invalid" {
			t.Errorf("unknown access_token: %d %s %q", r.status, code, msg)
		}
	})

	t.Run("a revoked user comes back", func(t *testing.T) {
		b := setup(t, nil)
		old := b.srv.Issue("alice")
		b.srv.Revoke("alice")
		tok := authorizeFlow(t, b, url.Values{"user": {"alice"}})
		verifyToken(t, b.c, b.c.refresh(tok.RefreshToken.Value))
		if r := b.c.refresh(old.RefreshToken); r.status != http.StatusUnauthorized {
			t.Errorf("pre-revoke refresh token: %d, want 401", r.status)
		}
	})

	t.Run("codes are single use", func(t *testing.T) {
		b := setup(t, nil)
		p := newPKCE()
		code := preauth(t, b.c, p, nil)
		q := redirected(t, b.c.visit("authorize", code, nil))
		refused(t, b.c.visit("authorize", code, nil), "second visit")
		verifyToken(t, b.c, b.c.exchange(q.Get("code"), p.verifier))
		r := b.c.exchange(q.Get("code"), p.verifier)
		if code, _ := r.errCode(t); r.status != http.StatusBadRequest || code != "InvalidGrant" {
			t.Errorf("second exchange: %d %s", r.status, code)
		}
		if st := b.srv.Stats(); st.Exchanges != 1 || st.ExchangeRejected != 1 || st.Consents != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("codes expire after 10 minutes", func(t *testing.T) {
		b := setup(t, nil)
		p := newPKCE()
		code := preauth(t, b.c, p, nil)
		b.clock.Advance(10 * time.Minute)
		refused(t, b.c.visit("authorize", code, nil), "expired preauthorization code")

		code = preauth(t, b.c, p, nil)
		b.clock.Advance(10*time.Minute - time.Millisecond)
		q := redirected(t, b.c.visit("authorize", code, nil))
		b.clock.Advance(10 * time.Minute)
		r := b.c.exchange(q.Get("code"), p.verifier)
		if code, msg := r.errCode(t); r.status != http.StatusBadRequest || code != "InvalidGrant" || !strings.Contains(msg, "expired") {
			t.Errorf("expired authorization code: %d %s %q", r.status, code, msg)
		}
	})

	t.Run("wrong verifier spends the code", func(t *testing.T) {
		b := setup(t, nil)
		p := newPKCE()
		q := redirected(t, b.c.visit("authorize", preauth(t, b.c, p, nil), nil))
		for _, v := range []string{newPKCE().verifier, "short", p.verifier} {
			r := b.c.exchange(q.Get("code"), v)
			if code, _ := r.errCode(t); r.status != http.StatusBadRequest || code != "InvalidGrant" {
				t.Errorf("verifier %q: %d %s", v, r.status, code)
			}
		}
		r := b.c.exchange(q.Get("code"), "")
		if code, _ := r.errCode(t); r.status != http.StatusBadRequest || code != "InvalidRequest" {
			t.Errorf("no verifier: %d %s", r.status, code)
		}
		if st := b.srv.Stats(); st.Exchanges != 0 || st.ExchangeRejected != 4 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("deny", func(t *testing.T) {
		b := setup(t, nil)
		code := preauth(t, b.c, newPKCE(), nil)
		q := redirected(t, b.c.visit("authorize", code, url.Values{"consent": {"deny"}, "user": {"alice"}}))
		if q.Get("success") != "false" || q.Get("errorCode") != "access_denied" || q.Has("code") || q.Has("state") {
			t.Errorf("deny redirect query %v", q)
		}
		refused(t, b.c.visit("authorize", code, nil), "visit after deny")
		if st := b.srv.Stats(); st.Denials != 1 || st.Consents != 0 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("pages refuse what they do not know", func(t *testing.T) {
		b := setup(t, nil)
		code := preauth(t, b.c, newPKCE(), nil)
		refused(t, b.c.visit("user-reauth", code, nil), "preauthorization code on user-reauth")
		refused(t, b.c.visit("authorize", "dm-pa-nope", nil), "unknown code")
		refused(t, b.c.visit("authorize", code, url.Values{"consent": {"maybe"}}), "unknown consent knob")
		refused(t, b.c.visit("authorize", code, url.Values{"sourceType": {"both"}}), "unknown sourceType")
		redirected(t, b.c.visit("authorize", code, nil)) // not spent by the refusals above
	})

	t.Run("request checks", func(t *testing.T) {
		b := setup(t, nil)
		p := newPKCE()
		for _, tc := range []struct {
			name   string
			extra  jwt.MapClaims
			status int
			code   string
		}{
			{"plain method", jwt.MapClaims{"code_challenge_method": "plain"}, 400, "InvalidRequest"},
			{"no method", jwt.MapClaims{"code_challenge_method": nil}, 400, "InvalidRequest"},
			{"challenge too short", jwt.MapClaims{"code_challenge": "abc"}, 400, "InvalidRequest"},
			{"challenge padded", jwt.MapClaims{"code_challenge": p.challenge + "="}, 400, "InvalidRequest"},
			{"no challenge", jwt.MapClaims{"code_challenge": nil}, 400, "InvalidRequest"},
			{"relative redirect", jwt.MapClaims{"redirect_uri": "/callback"}, 400, "InvalidRedirectUri"},
			{"ftp redirect", jwt.MapClaims{"redirect_uri": "ftp://app.example/cb"}, 400, "InvalidRedirectUri"},
			{"no redirect", jwt.MapClaims{"redirect_uri": nil}, 400, "InvalidRedirectUri"},
			{"response type token", jwt.MapClaims{"response_type": "token"}, 400, "InvalidRequest"},
			{"response mode fragment", jwt.MapClaims{"response_mode": "fragment"}, 400, "InvalidRequest"},
			{"no state", jwt.MapClaims{"state": nil}, 400, "InvalidRequest"},
		} {
			r := b.c.authorize(p, "st", tc.extra)
			if code, _ := r.errCode(t); r.status != tc.status || code != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, code, tc.status, tc.code)
			}
		}
		r := b.c.do(http.MethodPost, "oauth/authorize", b.c.sign(consentClaims(p, "st", true, nil)), []byte(`{}`), nil)
		if code, _ := r.errCode(t); r.status != http.StatusBadRequest || code != "SDKInvalid" {
			t.Errorf("no agent: %d %s", r.status, code)
		}
		r = b.c.do(http.MethodPost, "oauth/authorize", b.c.signWith(otherKey(), consentClaims(p, "st", true, jwt.MapClaims{
			"client_id": appID + "_" + contractID, "nonce": randomAlnum(32), "timestamp": b.clock.Now().UnixMilli(),
		})), consentBody, nil)
		if code, _ := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidJWT" {
			t.Errorf("foreign key: %d %s", r.status, code)
		}
		if st := b.srv.Stats(); st.Authorizations != 0 || st.BadSignature != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("an outage spares the pages", func(t *testing.T) {
		b := setup(t, nil)
		p := newPKCE()
		code := preauth(t, b.c, p, nil)
		b.srv.SetOutage(http.StatusServiceUnavailable, 0)
		if r := b.c.authorize(p, "st", nil); r.status != http.StatusServiceUnavailable {
			t.Errorf("authorize during an outage: %d", r.status)
		}
		q := redirected(t, b.c.visit("authorize", code, nil))
		if r := b.c.exchange(q.Get("code"), p.verifier); r.status != http.StatusServiceUnavailable {
			t.Errorf("exchange during an outage: %d", r.status)
		}
		b.srv.SetOutage(0, 0)
		verifyToken(t, b.c, b.c.exchange(q.Get("code"), p.verifier)) // the outage did not spend it
	})
}

func TestReference(t *testing.T) {
	t.Run("recovery after ExpireRefresh", func(t *testing.T) {
		b := setup(t, nil)
		old := b.srv.Issue("alice")
		b.srv.AddFile("alice", digimefake.File{Name: "kept.json", Data: []byte(`{}`)})
		b.srv.ExpireRefresh("alice")
		r := b.c.refresh(old.RefreshToken)
		if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" || msg != "The token (refresh_token) is expired" {
			t.Fatalf("refresh after ExpireRefresh: %d %s %q", r.status, code, msg)
		}
		b.clock.Advance(2 * time.Hour) // the access token has expired too
		p := newPKCE()
		a := consentCode(t, b.c, b.c.reference(old.AccessToken, p, "st-2"))
		if !strings.HasPrefix(a.ReferenceCode, "dm-rc-") || a.TokenType == "" ||
			a.ExpiresOn != b.clock.Now().Add(10*time.Minute).Unix() {
			t.Errorf("reference payload %+v", a)
		}
		refused(t, b.c.visit("authorize", a.ReferenceCode, nil), "reference code on authorize")
		q := redirected(t, b.c.visit("user-reauth", a.ReferenceCode, url.Values{"lng": {"nl"}}))
		if q.Get("success") != "true" || q.Get("state") != "st-2" || q.Get("code") == "" {
			t.Fatalf("redirect query %v", q)
		}
		refused(t, b.c.visit("user-reauth", a.ReferenceCode, nil), "second visit")
		tok := verifyToken(t, b.c, b.c.exchange(q.Get("code"), p.verifier))
		if tok.Sub != "alice" {
			t.Errorf("user %q, want alice", tok.Sub)
		}
		verifyToken(t, b.c, b.c.refresh(tok.RefreshToken.Value))
		if got := listFiles(t, b.c, tok.AccessToken.Value); !slices.Equal(got, []string{"kept.json"}) {
			t.Errorf("files %v, want the library's", got)
		}
		if st := b.srv.Stats(); st.References != 1 || st.Consents != 1 || st.Exchanges != 1 || st.RefreshRejected != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("after Revoke only a full authorization helps", func(t *testing.T) {
		b := setup(t, nil)
		old := b.srv.Issue("alice")
		b.srv.Revoke("alice")
		check := func(r response, what string) {
			t.Helper()
			if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" || msg != "The token (access_token) is invalid" {
				t.Errorf("%s: %d %s %q", what, r.status, code, msg)
			}
		}
		check(b.c.reference(old.AccessToken, newPKCE(), "st"), "pre-revoke access token")
		tok := authorizeFlow(t, b, url.Values{"user": {"alice"}})
		check(b.c.reference(old.AccessToken, newPKCE(), "st"), "pre-revoke access token after a new grant")
		consentCode(t, b.c, b.c.reference(tok.AccessToken.Value, newPKCE(), "st"))
		if st := b.srv.Stats(); st.References != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("unknown and invalidated access tokens", func(t *testing.T) {
		b := setup(t, nil)
		tok := b.srv.Issue("alice")
		b.srv.InvalidateAccess("alice")
		for name, access := range map[string]string{"unknown": "dm-at-nope", "invalidated": tok.AccessToken, "none": ""} {
			r := b.c.reference(access, newPKCE(), "st")
			if code, _ := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" {
				t.Errorf("%s: %d %s", name, r.status, code)
			}
		}
	})

	t.Run("user knob and expiry", func(t *testing.T) {
		b := setup(t, nil)
		tok := b.srv.Issue("alice")
		p := newPKCE()
		code := consentCode(t, b.c, b.c.reference(tok.AccessToken, p, "st")).ReferenceCode
		q := redirected(t, b.c.visit("user-reauth", code, url.Values{"user": {"bob"}}))
		if got := verifyToken(t, b.c, b.c.exchange(q.Get("code"), p.verifier)).Sub; got != "bob" {
			t.Errorf("user %q, want bob", got)
		}
		code = consentCode(t, b.c, b.c.reference(tok.AccessToken, p, "st")).ReferenceCode
		b.clock.Advance(10 * time.Minute)
		refused(t, b.c.visit("user-reauth", code, nil), "expired reference code")
	})
}
