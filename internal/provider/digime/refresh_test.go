package digime

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncd/syncd/internal/tokens"
)

func TestRefresh(t *testing.T) {
	t.Run("success verifies and caches the jwks", func(t *testing.T) {
		a := newAPI(t)
		c := a.client()
		in := userToken("access-0", "refresh-0")
		in.ConsentID = "old-consent"
		got, err := c.Refresh(waitCtx(t), in)
		if err != nil {
			t.Fatal(err)
		}
		want := tokens.Token{
			UserID: "u1", AccessToken: "access-1", RefreshToken: "refresh-1", TokenType: "Bearer", ConsentID: "consent-1",
			AccessExpiry:  time.Unix(testEpoch.Add(time.Hour).Unix(), 0).UTC(),
			RefreshExpiry: time.Unix(testEpoch.Add(30*24*time.Hour).Unix(), 0).UTC(),
		}
		if got != want {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
		got2, err := c.Refresh(waitCtx(t), got)
		if err != nil {
			t.Fatal(err)
		}
		if got2.AccessToken != "access-2" {
			t.Fatalf("second refresh access %q", got2.AccessToken)
		}
		if a.jwksCount() != 1 {
			t.Fatalf("jwks fetched %d times for two refreshes, want 1", a.jwksCount())
		}
		toks := a.recorded("token")
		if len(toks) != 2 || toks[0].nonce == toks[1].nonce {
			t.Fatalf("token requests %+v: want two with distinct nonces", toks)
		}
	})

	t.Run("jwks expires after 15 minutes", func(t *testing.T) {
		a := newAPI(t)
		c := a.client()
		if _, err := c.Refresh(waitCtx(t), userToken("a", "r")); err != nil {
			t.Fatal(err)
		}
		a.clk.Advance(16 * time.Minute)
		if _, err := c.Refresh(waitCtx(t), userToken("a", "r")); err != nil {
			t.Fatal(err)
		}
		if a.jwksCount() != 2 {
			t.Fatalf("jwks hits %d, want 2", a.jwksCount())
		}
	})

	t.Run("jwks from n and e without pem", func(t *testing.T) {
		a := newAPI(t)
		a.jwksPEM = false
		if _, err := a.client().Refresh(waitCtx(t), userToken("a", "r")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("expires_on in milliseconds", func(t *testing.T) {
		a := newAPI(t)
		exp := testEpoch.Add(2 * time.Hour)
		a.tokenFunc = func(w http.ResponseWriter, _ jwt.MapClaims) {
			p := a.payload(1)
			p["access_token"] = map[string]any{"value": "acc", "expires_on": exp.UnixMilli()}
			p["refresh_token"] = map[string]any{"value": "ref"}
			delete(p, "consentid")
			a.writeToken(w, serverKey, "k1", a.srv.URL+"/jwks/oauth", p)
		}
		in := userToken("a", "r")
		in.ConsentID = "keep"
		got, err := a.client().Refresh(waitCtx(t), in)
		if err != nil {
			t.Fatal(err)
		}
		if !got.AccessExpiry.Equal(exp) || !got.RefreshExpiry.IsZero() || got.ConsentID != "keep" {
			t.Fatalf("got access expiry %v refresh expiry %v consent %q", got.AccessExpiry, got.RefreshExpiry, got.ConsentID)
		}
	})

	t.Run("jku outside the base url is not fetched", func(t *testing.T) {
		a := newAPI(t)
		var evilHits atomic.Int32
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			evilHits.Add(1)
			w.Write(jwksJSON(map[string]*rsaPub{"evil": &otherKey.PublicKey}, true))
		}))
		t.Cleanup(evil.Close)
		a.tokenFunc = func(w http.ResponseWriter, _ jwt.MapClaims) {
			a.writeToken(w, otherKey, "evil", evil.URL+"/jwks/oauth", a.payload(1))
		}
		_, err := a.client().Refresh(waitCtx(t), userToken("a", "r"))
		re := refreshErr(t, err)
		if re.Class != tokens.Config || re.Code != codeUntrustedJKU {
			t.Fatalf("got %v, want config %s", err, codeUntrustedJKU)
		}
		if evilHits.Load() != 0 {
			t.Fatalf("untrusted jku fetched %d times", evilHits.Load())
		}
	})

	t.Run("jku tricks are rejected", func(t *testing.T) {
		a := newAPI(t)
		c := a.client()
		for _, jku := range []string{
			a.srv.URL + "/../jwks/oauth",
			a.srv.URL + "/x/%2e%2e/jwks",
			strings.Replace(a.srv.URL, "127.0.0.1", "localhost", 1) + "/jwks/oauth",
			strings.Replace(a.srv.URL, "http://", "http://user@", 1) + "/jwks/oauth",
			a.srv.URL + "/jwks/oauth?x=1",
			"https://example.com/jwks/oauth",
		} {
			if _, err := c.trustedJWKS(jku); !errors.Is(err, errUntrustedJKU) {
				t.Errorf("jku %q trusted", jku)
			}
		}
		if u, err := c.trustedJWKS(a.srv.URL + "/jwks/other"); err != nil || u != a.srv.URL+"/jwks/other" {
			t.Errorf("jku under the base: %q, %v", u, err)
		}
	})

	t.Run("unknown kid refetches once", func(t *testing.T) {
		a := newAPI(t)
		a.jwksLater = map[string]*rsaPub{"k1": &serverKey.PublicKey, "k2": &otherKey.PublicKey}
		a.tokenFunc = func(w http.ResponseWriter, _ jwt.MapClaims) {
			a.writeToken(w, otherKey, "k2", a.srv.URL+"/jwks/oauth", a.payload(1))
		}
		if _, err := a.client().Refresh(waitCtx(t), userToken("a", "r")); err != nil {
			t.Fatal(err)
		}
		if a.jwksCount() != 2 {
			t.Fatalf("jwks hits %d, want 2 (prefetch, refetch)", a.jwksCount())
		}
	})

	t.Run("kid still unknown after refetch", func(t *testing.T) {
		a := newAPI(t)
		a.tokenFunc = func(w http.ResponseWriter, _ jwt.MapClaims) {
			a.writeToken(w, otherKey, "k9", a.srv.URL+"/jwks/oauth", a.payload(1))
		}
		_, err := a.client().Refresh(waitCtx(t), userToken("a", "r"))
		re := refreshErr(t, err)
		if re.Class != tokens.Transient || re.Code != codeResponseSignature {
			t.Fatalf("got %v, want transient %s", err, codeResponseSignature)
		}
		if a.jwksCount() != 2 {
			t.Fatalf("jwks hits %d, want 2", a.jwksCount())
		}
	})

	t.Run("bad response signature is transient", func(t *testing.T) {
		a := newAPI(t)
		a.tokenFunc = func(w http.ResponseWriter, _ jwt.MapClaims) {
			a.writeToken(w, otherKey, "k1", a.srv.URL+"/jwks/oauth", a.payload(1))
		}
		_, err := a.client().Refresh(waitCtx(t), userToken("a", "r"))
		re := refreshErr(t, err)
		if re.Class != tokens.Transient || re.Code != codeResponseSignature {
			t.Fatalf("got %v, want transient %s", err, codeResponseSignature)
		}
	})

	t.Run("response signed with another algorithm", func(t *testing.T) {
		a := newAPI(t)
		a.tokenFunc = func(w http.ResponseWriter, _ jwt.MapClaims) {
			tk := jwt.NewWithClaims(jwt.SigningMethodRS512, a.payload(1))
			tk.Header["kid"] = "k1"
			s, _ := tk.SignedString(serverKey)
			w.Write([]byte(`{"token":"` + s + `"}`))
		}
		_, err := a.client().Refresh(waitCtx(t), userToken("a", "r"))
		if re := refreshErr(t, err); re.Class != tokens.Transient || re.Code != codeResponseSignature {
			t.Fatalf("got %v, want transient %s", err, codeResponseSignature)
		}
	})

	t.Run("expired response token", func(t *testing.T) {
		a := newAPI(t)
		a.tokenFunc = func(w http.ResponseWriter, _ jwt.MapClaims) {
			p := a.payload(1)
			p["exp"] = testEpoch.Add(-time.Hour).Unix()
			a.writeToken(w, serverKey, "k1", "", p)
		}
		_, err := a.client().Refresh(waitCtx(t), userToken("a", "r"))
		if re := refreshErr(t, err); re.Class != tokens.Transient {
			t.Fatalf("got %v, want transient", err)
		}
	})

	t.Run("no token in the answer", func(t *testing.T) {
		a := newAPI(t)
		a.tokenFunc = func(w http.ResponseWriter, _ jwt.MapClaims) { w.Write([]byte(`<html>`)) }
		_, err := a.client().Refresh(waitCtx(t), userToken("a", "r"))
		if re := refreshErr(t, err); re.Class != tokens.Transient || re.Code != codeBadResponse {
			t.Fatalf("got %v, want transient %s", err, codeBadResponse)
		}
	})

	for _, tc := range []struct {
		name   string
		f      fault
		class  tokens.Class
		code   string
		status int
		ra     time.Duration
	}{
		{"401 InvalidToken is reauth", fault{status: 401, body: `{"error":{"code":"InvalidToken","message":"The token (refresh_token) is expired"}}`},
			tokens.Reauth, "InvalidToken", 401, 0},
		{"401 without a body is transient", fault{status: 401}, tokens.Transient, "http_401", 401, 0},
		{"InvalidClient is config", fault{status: 401, body: `{"error":{"code":"InvalidClient","message":"bad client"}}`},
			tokens.Config, "InvalidClient", 401, 0},
		{"SDKInvalid is config", fault{status: 400, body: `{"error":{"code":"SDKInvalid","message":"The SDK is invalid: test"}}`},
			tokens.Config, "SDKInvalid", 400, 0},
		{"InvalidJWT is config", fault{status: 403, body: `{"error":"InvalidJWT","message":"storage shape"}`},
			tokens.Config, "InvalidJWT", 403, 0},
		{"503 with Retry-After is transient", fault{status: 503, header: map[string]string{"Retry-After": "7"}},
			tokens.Transient, "http_503", 503, 7 * time.Second},
		{"429 with an HTTP date", fault{status: 429, header: map[string]string{"Retry-After": testEpoch.Add(90 * time.Second).Format(http.TimeFormat)}},
			tokens.Transient, "http_429", 429, 90 * time.Second},
		{"5xx with a reauth code stays transient", fault{status: 500, body: `{"error":{"code":"InvalidToken"}}`},
			tokens.Transient, "InvalidToken", 500, 0},
		{"network error is transient", fault{drop: true}, tokens.Transient, codeNetwork, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAPI(t)
			a.fault("token", tc.f)
			_, err := a.client().Refresh(waitCtx(t), userToken("a", "r"))
			re := refreshErr(t, err)
			if re.Class != tc.class || re.Code != tc.code || re.Status != tc.status || re.RetryAfter != tc.ra {
				t.Fatalf("got %+v (%v), want class %v code %s status %d retry after %v", re, err, tc.class, tc.code, tc.status, tc.ra)
			}
			if a.tokenCount() != 1 {
				t.Fatalf("oauth/token called %d times, want exactly 1 (never retried)", a.tokenCount())
			}
		})
	}

	t.Run("jwks outage fails before the refresh token is spent", func(t *testing.T) {
		a := newAPI(t)
		a.fault("jwks", fault{status: 503}, fault{status: 503}, fault{status: 503})
		_, err := a.client().Refresh(waitCtx(t), userToken("a", "r"))
		if re := refreshErr(t, err); re.Class != tokens.Transient || re.Code != codeJWKS {
			t.Fatalf("got %v, want transient %s", err, codeJWKS)
		}
		if a.tokenCount() != 0 {
			t.Fatalf("oauth/token called %d times during a jwks outage", a.tokenCount())
		}
		if a.jwksCount() != 3 {
			t.Fatalf("jwks hits %d, want 3 (a GET is retried twice)", a.jwksCount())
		}
	})

	t.Run("server down is transient", func(t *testing.T) {
		a := newAPI(t)
		c := a.client()
		a.srv.Close()
		_, err := c.Refresh(waitCtx(t), userToken("a", "r"))
		if re := refreshErr(t, err); re.Class != tokens.Transient {
			t.Fatalf("got %v, want transient", err)
		}
	})

	t.Run("no refresh token is reauth without a request", func(t *testing.T) {
		a := newAPI(t)
		_, err := a.client().Refresh(waitCtx(t), userToken("a", ""))
		if re := refreshErr(t, err); re.Class != tokens.Reauth {
			t.Fatalf("got %v, want reauth", err)
		}
		if a.tokenCount() != 0 || a.jwksCount() != 0 {
			t.Fatal("requests were made")
		}
	})
}
