package digimefake_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/golang-jwt/jwt/v5"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider/digimefake"
)

const (
	appID      = "app"
	contractID = "contract"
)

var (
	contractKey = sync.OnceValue(func() *rsa.PrivateKey { return genKey() })
	serverKey   = sync.OnceValue(func() *rsa.PrivateKey { return genKey() })
	otherKey    = sync.OnceValue(func() *rsa.PrivateKey { return genKey() })
)

func genKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// client is a tiny digi.me SDK: it signs request JWTs like the Node SDK.
type client struct {
	t     *testing.T
	base  string // ends in /v1.7/
	key   *rsa.PrivateKey
	clock *clock.Fake
	http  *http.Client
}

type bundle struct {
	srv   *digimefake.Server
	c     *client
	clock *clock.Fake
}

func setup(t *testing.T, mod func(*digimefake.Options)) bundle {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	opt := digimefake.Options{
		AppID:       appID,
		ContractID:  contractID,
		ContractKey: &contractKey().PublicKey,
		SigningKey:  serverKey(),
		Clock:       clk,
	}
	if mod != nil {
		mod(&opt)
	}
	srv, err := digimefake.New(opt)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return bundle{
		srv:   srv,
		clock: clk,
		c:     &client{t: t, base: hs.URL + digimefake.PathPrefix, key: contractKey(), clock: clk, http: hs.Client()},
	}
}

func randomAlnum(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[mrand.IntN(len(chars))]
	}
	return string(b)
}

// sign builds a request JWT: client_id, a fresh nonce and the timestamp
// in ms, overridden or extended by claims.
func (c *client) sign(claims jwt.MapClaims) string {
	c.t.Helper()
	all := jwt.MapClaims{
		"client_id": appID + "_" + contractID,
		"nonce":     randomAlnum(32),
		"timestamp": c.clock.Now().UnixMilli(),
	}
	for k, v := range claims {
		all[k] = v
	}
	return c.signWith(c.key, all)
}

func (c *client) signWith(key *rsa.PrivateKey, claims jwt.MapClaims) string {
	c.t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodPS512, claims).SignedString(key)
	if err != nil {
		c.t.Fatalf("sign: %v", err)
	}
	return s
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody is the digi.me error shape.
type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Reference string `json:"reference"`
	} `json:"error"`
}

func (r response) errCode(t *testing.T) (code, message string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if e.Error.Reference == "" {
		t.Errorf("error body %s has no reference", r.body)
	}
	return e.Error.Code, e.Error.Message
}

func (c *client) do(method, path, jwtStr string, body []byte, header map[string]string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if jwtStr != "" {
		req.Header.Set("Authorization", "Bearer "+jwtStr)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c *client) refresh(refreshToken string) response {
	c.t.Helper()
	return c.do(http.MethodPost, "oauth/token",
		c.sign(jwt.MapClaims{"grant_type": "refresh_token", "refresh_token": refreshToken}),
		nil, map[string]string{"Content-Type": "application/json"})
}

var agentBody = []byte(`{"agent":{"sdk":{"name":"go","version":"1.0.0","meta":{}}},"sourceFetch":true}`)

func (c *client) trigger(access string) response {
	c.t.Helper()
	return c.do(http.MethodPost, "permission-access/trigger",
		c.sign(jwt.MapClaims{"access_token": access}), agentBody,
		map[string]string{"Content-Type": "application/json"})
}

func (c *client) startSession(access string) string {
	c.t.Helper()
	r := c.trigger(access)
	if r.status != http.StatusAccepted {
		c.t.Fatalf("trigger: status %d %s", r.status, r.body)
	}
	var got struct {
		Session struct {
			Key    string `json:"key"`
			Expiry int64  `json:"expiry"`
		} `json:"session"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		c.t.Fatal(err)
	}
	if got.Session.Key == "" {
		c.t.Fatalf("trigger: no session key in %s", r.body)
	}
	if want := c.clock.Now().Add(time.Hour).UnixMilli(); got.Session.Expiry != want {
		c.t.Errorf("session expiry = %d, want %d (ms)", got.Session.Expiry, want)
	}
	return got.Session.Key
}

type fileList struct {
	Status struct {
		State   string `json:"state"`
		Details map[string]struct {
			State string `json:"state"`
			Error *struct {
				Code       string `json:"code"`
				StatusCode int    `json:"statusCode"`
				Message    string `json:"message"`
				Reauth     bool   `json:"reauth"`
			} `json:"error"`
		} `json:"details"`
	} `json:"status"`
	FileList []struct {
		Name        string `json:"name"`
		UpdatedDate int64  `json:"updatedDate"`
		ObjectType  string `json:"objectType"`
		ServiceName string `json:"serviceName"`
	} `json:"fileList"`
}

func (c *client) list(access, session string) (fileList, response) {
	c.t.Helper()
	r := c.do(http.MethodGet, "permission-access/query/"+session, c.sign(jwt.MapClaims{"access_token": access}), nil, nil)
	var fl fileList
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &fl); err != nil {
			c.t.Fatalf("file list %s: %v", r.body, err)
		}
	}
	return fl, r
}

// decrypt undoes the digi.me file layout with the contract key.
func decrypt(t *testing.T, key *rsa.PrivateKey, body []byte, compression string) []byte {
	t.Helper()
	if len(body) < 288 || len(body)%16 != 0 {
		t.Fatalf("encrypted body is %d bytes", len(body))
	}
	dsk, err := rsa.DecryptOAEP(sha1.New(), nil, key, body[:256], nil)
	if err != nil {
		t.Fatalf("unwrap key: %v", err)
	}
	if len(dsk) != 32 {
		t.Fatalf("key is %d bytes, want 32", len(dsk))
	}
	block, err := aes.NewCipher(dsk)
	if err != nil {
		t.Fatal(err)
	}
	plain := make([]byte, len(body)-272)
	cipher.NewCBCDecrypter(block, body[256:272]).CryptBlocks(plain, body[272:])
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > 16 {
		t.Fatalf("bad padding %d", pad)
	}
	for _, b := range plain[len(plain)-pad:] {
		if int(b) != pad {
			t.Fatalf("bad padding bytes")
		}
	}
	plain = plain[:len(plain)-pad]
	var r io.Reader
	switch compression {
	case "":
		return plain
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(plain))
		if err != nil {
			t.Fatalf("gunzip: %v", err)
		}
		r = zr
	case "brotli":
		r = brotli.NewReader(bytes.NewReader(plain))
	default:
		t.Fatalf("unknown compression %q", compression)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decompress %s: %v", compression, err)
	}
	return out
}

type tokenPayload struct {
	AccessToken struct {
		Value     string `json:"value"`
		ExpiresOn int64  `json:"expires_on"`
	} `json:"access_token"`
	RefreshToken struct {
		Value     string `json:"value"`
		ExpiresOn int64  `json:"expires_on"`
	} `json:"refresh_token"`
	Sub        string `json:"sub"`
	ConsentID  string `json:"consentid"`
	TokenType  string `json:"token_type"`
	Identifier struct {
		ID string `json:"id"`
	} `json:"identifier"`
	jwt.RegisteredClaims
}

// verifyToken checks a {token} response the way the Node SDK does: jku
// and kid in the header, the kid's pem from the JWKS, PS512 only.
func verifyToken(t *testing.T, c *client, r response) tokenPayload {
	t.Helper()
	var p tokenPayload
	verifyInto(t, c, r, &p)
	return p
}

// verifyInto verifies a {token} response as verifyToken does and decodes
// its payload into p.
func verifyInto(t *testing.T, c *client, r response, p jwt.Claims) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("token response: status %d %s", r.status, r.body)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Token == "" {
		t.Fatalf("token response body %s: %v", r.body, err)
	}
	_, err := jwt.ParseWithClaims(body.Token, p, func(tok *jwt.Token) (any, error) {
		jku, _ := tok.Header["jku"].(string)
		kid, _ := tok.Header["kid"].(string)
		if want := c.base + "jwks/oauth"; jku != want {
			t.Errorf("jku = %q, want %q", jku, want)
		}
		if kid == "" {
			t.Error("no kid in the token header")
		}
		jr := c.do(http.MethodGet, strings.TrimPrefix(jku, c.base), "", nil, nil)
		var set struct {
			Keys []struct {
				Kid, Kty, N, E, PEM string
			} `json:"keys"`
		}
		if err := json.Unmarshal(jr.body, &set); err != nil {
			return nil, err
		}
		for _, k := range set.Keys {
			if k.Kid != kid {
				continue
			}
			if k.Kty != "RSA" || k.E != "AQAB" || k.N == "" {
				t.Errorf("jwk kty=%q e=%q n empty=%v", k.Kty, k.E, k.N == "")
			}
			block, _ := pem.Decode([]byte(k.PEM))
			if block == nil || block.Type != "RSA PUBLIC KEY" {
				t.Fatalf("jwk pem is not a PKCS#1 public key: %q", k.PEM)
			}
			return x509.ParsePKCS1PublicKey(block.Bytes)
		}
		return nil, errors.New("kid not in jwks")
	}, jwt.WithValidMethods([]string{"PS512"}))
	if err != nil {
		t.Fatalf("verify token: %v", err)
	}
}

func TestRefresh(t *testing.T) {
	t.Run("round trip with its own signing key", func(t *testing.T) {
		b := setup(t, func(o *digimefake.Options) { o.SigningKey = nil })
		first := b.srv.Issue("alice")
		if !strings.HasPrefix(first.AccessToken, "dm-at-") || !strings.HasPrefix(first.RefreshToken, "dm-rt-") {
			t.Fatalf("token values lack their prefixes")
		}
		now := b.clock.Now()
		if got, want := first.AccessExpiry, now.Add(time.Hour); !got.Equal(want) {
			t.Errorf("access expiry = %v, want %v", got, want)
		}
		if got, want := first.RefreshExpiry, now.Add(30*24*time.Hour); !got.Equal(want) {
			t.Errorf("refresh expiry = %v, want %v", got, want)
		}

		b.clock.Advance(10 * time.Minute)
		p := verifyToken(t, b.c, b.c.refresh(first.RefreshToken))
		now = b.clock.Now()
		if p.AccessToken.Value == first.AccessToken || p.RefreshToken.Value == first.RefreshToken {
			t.Error("refresh returned the old token values")
		}
		if got, want := p.AccessToken.ExpiresOn, now.Add(time.Hour).Unix(); got != want {
			t.Errorf("access expires_on = %d, want %d (seconds)", got, want)
		}
		if got, want := p.RefreshToken.ExpiresOn, now.Add(30*24*time.Hour).Unix(); got != want {
			t.Errorf("refresh expires_on = %d, want %d", got, want)
		}
		if p.Sub != "alice" || p.Identifier.ID != "alice" || p.ConsentID != "consent-alice" || p.TokenType != "Bearer" {
			t.Errorf("payload sub=%q identifier=%q consentid=%q token_type=%q", p.Sub, p.Identifier.ID, p.ConsentID, p.TokenType)
		}
		secrets := b.srv.Secrets()
		for _, v := range []string{first.AccessToken, first.RefreshToken, p.AccessToken.Value, p.RefreshToken.Value} {
			if !slices.Contains(secrets, v) {
				t.Errorf("Secrets lacks an issued value")
			}
		}
		if got := b.srv.Stats().Refreshes; got != 1 {
			t.Errorf("Refreshes = %d, want 1", got)
		}
	})

	t.Run("rotation rejects reuse and revokes the family", func(t *testing.T) {
		b := setup(t, nil)
		first := b.srv.Issue("alice")
		other := b.srv.Issue("alice") // a second consent: another family
		p := verifyToken(t, b.c, b.c.refresh(first.RefreshToken))
		if r := b.c.trigger(p.AccessToken.Value); r.status != http.StatusAccepted {
			t.Fatalf("trigger with the refreshed access token: %d %s", r.status, r.body)
		}

		r := b.c.refresh(first.RefreshToken)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("reuse: status %d, want 401", r.status)
		}
		if code, msg := r.errCode(t); code != "InvalidToken" || msg != "The token (refresh_token) is invalid" {
			t.Errorf("reuse: %s %q", code, msg)
		}
		r = b.c.refresh(p.RefreshToken.Value)
		if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" || msg != "The token (refresh_token) is invalid" {
			t.Errorf("the family's current refresh token after reuse: %d %s %q", r.status, code, msg)
		}
		for name, at := range map[string]string{"issued": first.AccessToken, "refreshed": p.AccessToken.Value} {
			r := b.c.trigger(at)
			if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" || msg != "The token (access_token) is invalid" {
				t.Errorf("trigger with the %s access token after reuse: %d %s %q", name, r.status, code, msg)
			}
			if r := b.c.reference(at, newPKCE(), "st"); r.status != http.StatusUnauthorized {
				t.Errorf("oauth/token/reference with the %s access token after reuse: %d", name, r.status)
			}
		}
		// The other consent's family is untouched.
		verifyToken(t, b.c, b.c.refresh(other.RefreshToken))
		// Another dead token is detected again but revokes nothing more.
		if r := b.c.refresh(first.RefreshToken); r.status != http.StatusUnauthorized {
			t.Fatalf("second reuse: %d", r.status)
		}
		st := b.srv.Stats()
		if st.Refreshes != 2 || st.RefreshRejected != 3 || st.Reused != 2 || st.ReuseRevocations != 1 || st.GraceRefreshes != 0 {
			t.Errorf("stats = %+v", st)
		}
		if b.srv.Reuses() != 2 || b.srv.ReusesOf("alice") != 2 || b.srv.ReusesOf("bob") != 0 || b.srv.ReuseRevocations() != 1 {
			t.Errorf("Reuses %d, ReusesOf alice %d, ReuseRevocations %d", b.srv.Reuses(), b.srv.ReusesOf("alice"), b.srv.ReuseRevocations())
		}
	})

	t.Run("grace period forgives the immediately previous token", func(t *testing.T) {
		b := setup(t, func(o *digimefake.Options) { o.RotationGracePeriod = time.Minute })
		first := b.srv.Issue("alice")
		p1 := verifyToken(t, b.c, b.c.refresh(first.RefreshToken))
		b.clock.Advance(59 * time.Second)
		p2 := verifyToken(t, b.c, b.c.refresh(first.RefreshToken))
		if p2.RefreshToken.Value == p1.RefreshToken.Value || p2.AccessToken.Value == p1.AccessToken.Value {
			t.Fatal("a grace refresh did not return a new pair")
		}
		// Both pairs work, as in Hydra.
		for _, at := range []string{p1.AccessToken.Value, p2.AccessToken.Value} {
			if r := b.c.trigger(at); r.status != http.StatusAccepted {
				t.Fatalf("trigger after a grace refresh: %d %s", r.status, r.body)
			}
		}
		p3 := verifyToken(t, b.c, b.c.refresh(p1.RefreshToken.Value))
		if st := b.srv.Stats(); st.Reused != 0 || st.ReuseRevocations != 0 || st.GraceRefreshes != 1 || st.Refreshes != 3 {
			t.Fatalf("stats %+v", st)
		}
		// p1's token is now the immediately previous one; first's is two
		// back: reuse even within its grace.
		if r := b.c.refresh(first.RefreshToken); r.status != http.StatusUnauthorized {
			t.Fatalf("two back within the grace: %d", r.status)
		}
		if r := b.c.refresh(p3.RefreshToken.Value); r.status != http.StatusUnauthorized {
			t.Fatalf("current token after reuse: %d", r.status)
		}
		if b.srv.Reuses() != 1 || b.srv.ReuseRevocations() != 1 {
			t.Fatalf("reuses %d, revocations %d; want 1 and 1", b.srv.Reuses(), b.srv.ReuseRevocations())
		}
	})

	t.Run("grace period ends", func(t *testing.T) {
		b := setup(t, func(o *digimefake.Options) { o.RotationGracePeriod = time.Minute })
		first := b.srv.Issue("alice")
		p := verifyToken(t, b.c, b.c.refresh(first.RefreshToken))
		b.clock.Advance(time.Minute)
		if r := b.c.refresh(first.RefreshToken); r.status != http.StatusUnauthorized {
			t.Fatalf("after the grace: %d", r.status)
		}
		if r := b.c.refresh(p.RefreshToken.Value); r.status != http.StatusUnauthorized {
			t.Fatalf("current token after reuse: %d", r.status)
		}
		if b.srv.Reuses() != 1 || b.srv.ReuseRevocations() != 1 {
			t.Fatalf("reuses %d, revocations %d; want 1 and 1", b.srv.Reuses(), b.srv.ReuseRevocations())
		}
	})

	t.Run("grace period does not revive a revoked consent", func(t *testing.T) {
		b := setup(t, func(o *digimefake.Options) { o.RotationGracePeriod = time.Minute })
		first := b.srv.Issue("alice")
		verifyToken(t, b.c, b.c.refresh(first.RefreshToken))
		b.srv.Revoke("alice")
		if r := b.c.refresh(first.RefreshToken); r.status != http.StatusUnauthorized {
			t.Fatalf("status %d", r.status)
		}
	})

	t.Run("concurrent refreshes of one token: one wins", func(t *testing.T) {
		b := setup(t, nil)
		first := b.srv.Issue("alice")
		const n = 8
		statuses := make(chan int, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() { statuses <- b.c.refresh(first.RefreshToken).status })
		}
		wg.Wait()
		close(statuses)
		ok := 0
		for s := range statuses {
			if s == http.StatusOK {
				ok++
			}
		}
		if ok != 1 {
			t.Errorf("%d refreshes succeeded, want 1", ok)
		}
	})

	t.Run("revoked", func(t *testing.T) {
		b := setup(t, nil)
		tok := b.srv.Issue("alice")
		b.srv.Revoke("alice")
		r := b.c.refresh(tok.RefreshToken)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", r.status)
		}
		if code, msg := r.errCode(t); code != "InvalidToken" || msg != "The token (refresh_token) is invalid" {
			t.Errorf("got %s %q", code, msg)
		}
		again := b.srv.Issue("alice")
		verifyToken(t, b.c, b.c.refresh(again.RefreshToken))
		if r := b.c.refresh(tok.RefreshToken); r.status != http.StatusUnauthorized {
			t.Errorf("pre-revoke token after Issue: status %d, want 401", r.status)
		}
	})

	t.Run("expired", func(t *testing.T) {
		b := setup(t, func(o *digimefake.Options) { o.RefreshLifetime = time.Hour })
		tok := b.srv.Issue("alice")
		b.clock.Advance(time.Hour)
		r := b.c.refresh(tok.RefreshToken)
		if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" || msg != "The token (refresh_token) is expired" {
			t.Errorf("got %d %s %q", r.status, code, msg)
		}
	})

	t.Run("unsupported grant type", func(t *testing.T) {
		b := setup(t, nil)
		r := b.c.do(http.MethodPost, "oauth/token", b.c.sign(jwt.MapClaims{"grant_type": "password", "code": "x"}), nil, nil)
		if code, _ := r.errCode(t); r.status != http.StatusBadRequest || code != "UnsupportedGrantType" {
			t.Errorf("got %d %s", r.status, code)
		}
	})
}

func TestRequestJWT(t *testing.T) {
	type tc struct {
		name  string
		jwt   func(c *client) string
		code  string
		msg   string
		count func(digimefake.Stats) int
	}
	refreshClaims := func(extra jwt.MapClaims) jwt.MapClaims {
		m := jwt.MapClaims{"grant_type": "refresh_token", "refresh_token": "dm-rt-x"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []tc{
		{
			name: "bad signature",
			jwt: func(c *client) string {
				return c.signWith(otherKey(), jwt.MapClaims{"client_id": appID + "_" + contractID, "nonce": randomAlnum(32), "timestamp": c.clock.Now().UnixMilli()})
			},
			code:  "InvalidJWT",
			count: func(s digimefake.Stats) int { return s.BadSignature },
		},
		{
			name:  "wrong client id",
			jwt:   func(c *client) string { return c.sign(refreshClaims(jwt.MapClaims{"client_id": "app_other"})) },
			code:  "InvalidClient",
			count: func(s digimefake.Stats) int { return s.BadClient },
		},
		{
			name: "stale timestamp",
			jwt: func(c *client) string {
				return c.sign(refreshClaims(jwt.MapClaims{"timestamp": c.clock.Now().Add(-6 * time.Minute).UnixMilli()}))
			},
			code:  "InvalidJWT",
			msg:   "timestamp outside the allowed window",
			count: func(s digimefake.Stats) int { return s.StaleTimestamp },
		},
		{
			name: "timestamp in seconds",
			jwt: func(c *client) string {
				return c.sign(refreshClaims(jwt.MapClaims{"timestamp": c.clock.Now().Unix()}))
			},
			code:  "InvalidJWT",
			msg:   "timestamp outside the allowed window",
			count: func(s digimefake.Stats) int { return s.StaleTimestamp },
		},
		{
			name:  "short nonce",
			jwt:   func(c *client) string { return c.sign(refreshClaims(jwt.MapClaims{"nonce": "abc"})) },
			code:  "InvalidJWT",
			count: func(s digimefake.Stats) int { return s.BadJWT },
		},
		{
			name:  "no bearer",
			jwt:   func(*client) string { return "" },
			code:  "InvalidJWT",
			count: func(s digimefake.Stats) int { return s.BadJWT },
		},
		{
			name: "RS512 instead of PS512",
			jwt: func(c *client) string {
				s, err := jwt.NewWithClaims(jwt.SigningMethodRS512, refreshClaims(jwt.MapClaims{
					"client_id": appID + "_" + contractID, "nonce": randomAlnum(32), "timestamp": c.clock.Now().UnixMilli(),
				})).SignedString(c.key)
				if err != nil {
					c.t.Fatal(err)
				}
				return s
			},
			code:  "InvalidJWT",
			count: func(s digimefake.Stats) int { return s.BadSignature },
		},
		{
			name: "PS512 with a maximal salt",
			jwt: func(c *client) string {
				method := &jwt.SigningMethodRSAPSS{
					SigningMethodRSA: jwt.SigningMethodPS512.SigningMethodRSA,
					Options:          &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto},
				}
				s, err := jwt.NewWithClaims(method, refreshClaims(jwt.MapClaims{
					"client_id": appID + "_" + contractID, "nonce": randomAlnum(32), "timestamp": c.clock.Now().UnixMilli(),
				})).SignedString(c.key)
				if err != nil {
					c.t.Fatal(err)
				}
				return s
			},
			code:  "InvalidJWT",
			count: func(s digimefake.Stats) int { return s.BadSignature },
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, nil)
			r := b.c.do(http.MethodPost, "oauth/token", tt.jwt(b.c), nil, nil)
			if r.status != http.StatusUnauthorized {
				t.Fatalf("status %d %s, want 401", r.status, r.body)
			}
			code, msg := r.errCode(t)
			if code != tt.code || (tt.msg != "" && msg != tt.msg) {
				t.Errorf("got %s %q, want %s %q", code, msg, tt.code, tt.msg)
			}
			if got := tt.count(b.srv.Stats()); got != 1 {
				t.Errorf("counter = %d, want 1", got)
			}
		})
	}

	t.Run("reused nonce", func(t *testing.T) {
		b := setup(t, nil)
		tok := b.srv.Issue("alice")
		signed := b.c.sign(jwt.MapClaims{"access_token": tok.AccessToken})
		head := func() response {
			return b.c.do(http.MethodGet, "permission-access/query/nosuch", signed, nil, nil)
		}
		if r := head(); r.status != http.StatusNotFound {
			t.Fatalf("first use: status %d %s, want 404 (unknown session)", r.status, r.body)
		}
		r := head()
		if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidJWT" || msg != "nonce already used" {
			t.Errorf("replay: %d %s %q", r.status, code, msg)
		}
		if got := b.srv.Stats().ReusedNonce; got != 1 {
			t.Errorf("ReusedNonce = %d, want 1", got)
		}
	})

	t.Run("jwks needs no JWT", func(t *testing.T) {
		b := setup(t, nil)
		if r := b.c.do(http.MethodGet, "jwks/oauth", "", nil, nil); r.status != http.StatusOK {
			t.Errorf("jwks: status %d", r.status)
		}
	})
}

func TestPull(t *testing.T) {
	t.Run("pending running completed and downloads", func(t *testing.T) {
		b := setup(t, func(o *digimefake.Options) { o.PendingPolls, o.RunningPolls = 2, 1 })
		tok := b.srv.Issue("alice")
		updated := time.Date(2025, 12, 24, 8, 30, 0, 0, time.UTC)
		files := []digimefake.File{
			{Name: "plain.json", Data: []byte(`{"a":1}`), Metadata: json.RawMessage(`{"objectType":"post","serviceName":"twitter"}`), Updated: updated},
			{Name: "zipped.json", Data: bytes.Repeat([]byte("gzip me "), 500), MimeType: "application/json", Compression: "gzip"},
			{Name: "brot.bin", Data: bytes.Repeat([]byte{0, 1, 2, 3, 250}, 777), Compression: "brotli"},
			{Name: "empty", Data: nil},
		}
		for _, f := range files {
			b.srv.AddFile("alice", f)
		}
		b.srv.AddFile("bob", digimefake.File{Name: "bobs", Data: []byte("x")})

		sess := b.c.startSession(tok.AccessToken)
		var states []string
		for range 4 {
			fl, r := b.c.list(tok.AccessToken, sess)
			if r.status != http.StatusOK {
				t.Fatalf("list: status %d %s", r.status, r.body)
			}
			states = append(states, fl.Status.State)
			if fl.Status.State == "pending" {
				if bytes.Contains(r.body, []byte("fileList")) {
					t.Errorf("pending answer has a fileList: %s", r.body)
				}
				continue
			}
			if len(fl.FileList) != len(files) {
				t.Fatalf("fileList has %d files, want %d: %s", len(fl.FileList), len(files), r.body)
			}
			first := fl.FileList[0]
			if first.Name != "plain.json" || first.UpdatedDate != updated.UnixMilli() || first.ObjectType != "post" || first.ServiceName != "twitter" {
				t.Errorf("first entry = %+v", first)
			}
		}
		if want := []string{"pending", "pending", "running", "completed"}; !slices.Equal(states, want) {
			t.Errorf("states = %v, want %v", states, want)
		}

		for _, f := range files {
			r := b.c.do(http.MethodGet, "permission-access/query/"+sess+"/"+f.Name,
				b.c.sign(jwt.MapClaims{"access_token": tok.AccessToken}), nil,
				map[string]string{"Accept": "application/octet-stream"})
			if r.status != http.StatusOK {
				t.Fatalf("%s: status %d %s", f.Name, r.status, r.body)
			}
			xm := decodeXMetadata(t, r.header.Get("x-metadata"))
			if xm.Compression != f.Compression {
				t.Errorf("%s: compression %q, want %q", f.Name, xm.Compression, f.Compression)
			}
			if got := decrypt(t, contractKey(), r.body, xm.Compression); !bytes.Equal(got, f.Data) {
				t.Errorf("%s: decrypted %d bytes, differ from the %d added", f.Name, len(got), len(f.Data))
			}
			if r.header.Get("Last-Modified") == "" {
				t.Errorf("%s: no last-modified", f.Name)
			}
			wantMeta := map[string]string{
				"plain.json":  `{"objectType":"post","serviceName":"twitter"}`,
				"zipped.json": `{"mimetype":"application/json"}`,
				"brot.bin":    `{}`,
				"empty":       `{}`,
			}[f.Name]
			if string(xm.Metadata) != wantMeta {
				t.Errorf("%s: metadata %s, want %s", f.Name, xm.Metadata, wantMeta)
			}
		}
		if got := b.c.do(http.MethodGet, "permission-access/query/"+sess+"/plain.json",
			b.c.sign(jwt.MapClaims{"access_token": tok.AccessToken}), nil, nil).header.Get("Last-Modified"); got != updated.Format(http.TimeFormat) {
			t.Errorf("last-modified = %q", got)
		}

		head := b.c.do(http.MethodHead, "permission-access/query/"+sess+"/zipped.json",
			b.c.sign(jwt.MapClaims{"access_token": tok.AccessToken}), nil, map[string]string{"Accept": "application/json"})
		if head.status != http.StatusOK || len(head.body) != 0 || decodeXMetadata(t, head.header.Get("x-metadata")).Compression != "gzip" {
			t.Errorf("HEAD: status %d, %d body bytes, x-metadata %q", head.status, len(head.body), head.header.Get("x-metadata"))
		}

		missing := b.c.do(http.MethodGet, "permission-access/query/"+sess+"/bobs",
			b.c.sign(jwt.MapClaims{"access_token": tok.AccessToken}), nil, nil)
		if code, _ := missing.errCode(t); missing.status != http.StatusNotFound || code != "FileNotFound" {
			t.Errorf("other user's file: %d %s", missing.status, code)
		}

		st := b.srv.Stats()
		if st.Triggers != 1 || st.FilesServed != len(files)+1 || st.DataCalls != 1+4+len(files)+1+1+1 {
			t.Errorf("stats = %+v", st)
		}
	})

	t.Run("partial with 511", func(t *testing.T) {
		b := setup(t, nil)
		tok := b.srv.Issue("alice")
		b.srv.AddFile("alice", digimefake.File{Name: "f", Data: []byte("x")})
		b.srv.SetPartial("alice", "acc-1", true)
		sess := b.c.startSession(tok.AccessToken)
		var fl fileList
		for range 3 {
			fl, _ = b.c.list(tok.AccessToken, sess)
		}
		if fl.Status.State != "partial" {
			t.Fatalf("state = %q, want partial", fl.Status.State)
		}
		d, ok := fl.Status.Details["acc-1"]
		if !ok || d.State != "partial" || d.Error == nil {
			t.Fatalf("details = %+v", fl.Status.Details)
		}
		if d.Error.Code != "ServiceAuthorizationError" || d.Error.StatusCode != 511 || !d.Error.Reauth || d.Error.Message == "" {
			t.Errorf("account error = %+v", *d.Error)
		}
		if len(fl.FileList) != 1 {
			t.Errorf("partial fileList has %d files, want 1", len(fl.FileList))
		}
	})

	t.Run("trigger needs the agent", func(t *testing.T) {
		b := setup(t, nil)
		tok := b.srv.Issue("alice")
		for _, body := range []string{"", `{}`, `{"agent":{"sdk":{"name":""}}}`} {
			r := b.c.do(http.MethodPost, "permission-access/trigger", b.c.sign(jwt.MapClaims{"access_token": tok.AccessToken}), []byte(body), nil)
			if code, _ := r.errCode(t); r.status != http.StatusBadRequest || code != "SDKInvalid" {
				t.Errorf("body %q: %d %s", body, r.status, code)
			}
		}
	})
}

type xMetadata struct {
	Metadata    json.RawMessage `json:"metadata"`
	Compression string          `json:"compression"`
}

func decodeXMetadata(t *testing.T, h string) xMetadata {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("x-metadata %q: %v", h, err)
	}
	var xm xMetadata
	if err := json.Unmarshal(raw, &xm); err != nil {
		t.Fatalf("x-metadata %s: %v", raw, err)
	}
	return xm
}

func TestInvalidateAccess(t *testing.T) {
	b := setup(t, nil)
	tok := b.srv.Issue("alice")
	sess := b.c.startSession(tok.AccessToken)
	b.srv.InvalidateAccess("alice")

	check := func(r response, what string) {
		t.Helper()
		if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" || msg != "The token (access_token) is invalid" {
			t.Errorf("%s: %d %s %q", what, r.status, code, msg)
		}
	}
	check(b.c.trigger(tok.AccessToken), "trigger")
	_, r := b.c.list(tok.AccessToken, sess)
	check(r, "file list")
	check(b.c.do(http.MethodGet, "permission-access/query/"+sess+"/f", b.c.sign(jwt.MapClaims{"access_token": tok.AccessToken}), nil, nil), "file")
	if got := b.srv.Stats().Rejected401; got != 3 {
		t.Errorf("Rejected401 = %d, want 3", got)
	}

	// A refresh gives a working access token; the session is still the
	// user's.
	p := verifyToken(t, b.c, b.c.refresh(tok.RefreshToken))
	if _, r := b.c.list(p.AccessToken.Value, sess); r.status != http.StatusOK {
		t.Errorf("after refresh: status %d %s", r.status, r.body)
	}

	// An expired access token is rejected too.
	b.clock.Advance(time.Hour)
	r = b.c.trigger(p.AccessToken.Value)
	if code, msg := r.errCode(t); r.status != http.StatusUnauthorized || code != "InvalidToken" || msg != "The token (access_token) is expired" {
		t.Errorf("expired: %d %s %q", r.status, code, msg)
	}
}

// descriptor signs a FileDescriptor JWT the way the Node SDK does.
func descriptor(c *client, key *rsa.PrivateKey, mimeType string, accounts, tags []string) string {
	acc := make([]map[string]string, 0, len(accounts))
	for _, a := range accounts {
		acc = append(acc, map[string]string{"accountId": a})
	}
	return c.signWith(key, jwt.MapClaims{"metadata": map[string]any{"mimeType": mimeType, "accounts": acc, "tags": tags}})
}

func TestImport(t *testing.T) {
	b := setup(t, nil)
	tok := b.srv.Issue("alice")
	push := func(data []byte, fd string) response {
		return b.c.do(http.MethodPost, "permission-access/import", b.c.sign(jwt.MapClaims{"access_token": tok.AccessToken}), data,
			map[string]string{"Content-Type": "application/octet-stream", "FileDescriptor": fd})
	}
	first := []byte(`{"hello":"world"}`)
	r := push(first, descriptor(b.c, contractKey(), "application/json", []string{"acc-1"}, []string{"a", "b"}))
	if r.status != http.StatusOK || string(r.body) != "{}" {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	second := []byte{0, 1, 2}
	if r := push(second, descriptor(b.c, contractKey(), "application/octet-stream", nil, nil)); r.status != http.StatusOK {
		t.Fatalf("second import: %d %s", r.status, r.body)
	}

	r = push([]byte("x"), descriptor(b.c, otherKey(), "text/plain", nil, nil))
	if code, _ := r.errCode(t); r.status != http.StatusBadRequest || code != "ValidationErrors" {
		t.Errorf("bad descriptor signature: %d %s", r.status, code)
	}

	got := b.srv.Imports("alice")
	if len(got) != 2 {
		t.Fatalf("Imports = %d items, want 2", len(got))
	}
	if !bytes.Equal(got[0].Data, first) || got[0].MimeType != "application/json" ||
		!slices.Equal(got[0].Accounts, []string{"acc-1"}) || !slices.Equal(got[0].Tags, []string{"a", "b"}) {
		t.Errorf("first import = %+v", got[0])
	}
	if !bytes.Equal(got[1].Data, second) || got[1].MimeType != "application/octet-stream" {
		t.Errorf("second import = %+v", got[1])
	}
	if st := b.srv.Stats(); st.Imports != 2 || st.BadSignature != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestFaults(t *testing.T) {
	t.Run("outage 429 with Retry-After", func(t *testing.T) {
		b := setup(t, nil)
		tok := b.srv.Issue("alice")
		b.srv.SetOutage(http.StatusTooManyRequests, 2500*time.Millisecond)
		r := b.c.refresh(tok.RefreshToken)
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "3" {
			t.Fatalf("outage: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
		}
		if code, _ := r.errCode(t); code != "TooManyRequests" {
			t.Errorf("outage code %q", code)
		}
		if r := b.c.do(http.MethodGet, "jwks/oauth", "", nil, nil); r.status != http.StatusOK {
			t.Errorf("jwks during outage: %d", r.status)
		}
		b.srv.SetOutage(http.StatusServiceUnavailable, 0)
		r = b.c.refresh(tok.RefreshToken)
		if code, _ := r.errCode(t); r.status != 503 || code != "ServiceUnavailable" || r.header.Get("Retry-After") != "" {
			t.Errorf("503 outage: %d %s Retry-After %q", r.status, code, r.header.Get("Retry-After"))
		}
		b.srv.SetOutage(0, 0)
		verifyToken(t, b.c, b.c.refresh(tok.RefreshToken))
		if st := b.srv.Stats(); st.Faults != 2 || st.Refreshes != 1 {
			t.Errorf("stats = %+v", st)
		}
	})

	t.Run("fail rate is deterministic under seed", func(t *testing.T) {
		run := func() []int {
			b := setup(t, func(o *digimefake.Options) { o.FailRate, o.Seed = 0.5, 42 })
			var statuses []int
			for range 30 {
				statuses = append(statuses, b.c.do(http.MethodPost, "oauth/token", b.c.sign(jwt.MapClaims{"grant_type": "refresh_token", "refresh_token": "dm-rt-none"}), nil, nil).status)
			}
			return statuses
		}
		a, c := run(), run()
		if !slices.Equal(a, c) {
			t.Errorf("runs differ:\n%v\n%v", a, c)
		}
		if !slices.Contains(a, 500) || !slices.Contains(a, 401) {
			t.Errorf("want a mix of 500 and 401, got %v", a)
		}
	})

	t.Run("latency honours the request context", func(t *testing.T) {
		b := setup(t, func(o *digimefake.Options) { o.Latency = time.Hour })
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.c.base+"jwks/oauth", nil)
		if _, err := b.c.http.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		// t.Cleanup closes the httptest server, which waits for the handler:
		// it returns only if the handler left its one-hour wait.
	})
}

func TestNewValidates(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	base := digimefake.Options{AppID: "a", ContractID: "c", ContractKey: &contractKey().PublicKey, SigningKey: serverKey()}
	cases := map[string]func(*digimefake.Options){
		"no app id":       func(o *digimefake.Options) { o.AppID = "" },
		"no contract key": func(o *digimefake.Options) { o.ContractKey = nil },
		"1024-bit key":    func(o *digimefake.Options) { o.ContractKey = &small.PublicKey },
		"fail rate > 1":   func(o *digimefake.Options) { o.FailRate = 1.5 },
		"negative life":   func(o *digimefake.Options) { o.RefreshLifetime = -time.Second },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			o := base
			mod(&o)
			if _, err := digimefake.New(o); err == nil {
				t.Error("New accepted bad options")
			}
		})
	}
}

// signalWriter reports its first write on ready.
type signalWriter struct {
	once  sync.Once
	ready chan struct{}
	mu    sync.Mutex
	buf   bytes.Buffer
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.once.Do(func() { close(w.ready) })
	return w.buf.Write(p)
}

func TestServe(t *testing.T) {
	srv, err := digimefake.New(digimefake.Options{AppID: appID, ContractID: contractID, ContractKey: &contractKey().PublicKey, SigningKey: serverKey()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := &signalWriter{ready: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, log) }()

	select {
	case <-log.ready:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve wrote nothing")
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/v1.7/jwks/oauth")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("jwks: %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	log.mu.Lock()
	out := log.buf.String()
	log.mu.Unlock()
	if !strings.Contains(out, "/v1.7/") || !strings.Contains(out, "GET /v1.7/jwks/oauth 200") {
		t.Errorf("log = %q", out)
	}
}

func TestListenAndServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	log := &signalWriter{ready: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- digimefake.ListenAndServe(ctx, "127.0.0.1:0",
			digimefake.Options{AppID: appID, ContractID: contractID, ContractKey: &contractKey().PublicKey, SigningKey: serverKey()}, log)
	}()
	select {
	case <-log.ready:
	case err := <-done:
		t.Fatalf("ListenAndServe returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe wrote nothing")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenAndServe did not return after cancel")
	}
}
