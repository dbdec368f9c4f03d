package oauth2fake

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
)

type bundle struct {
	srv   *Server
	url   string
	clock *clock.Fake
}

func setup(t *testing.T, opt Options) bundle {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if opt.ClientID == "" {
		opt.ClientID = "app"
	}
	if opt.ClientSecret == "" {
		opt.ClientSecret = "s3cret"
	}
	opt.Clock = clk
	s := New(opt)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return bundle{srv: s, url: hs.URL, clock: clk}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("body %q: %v", raw, err)
		}
	}
	return a
}

// tokenReq builds a token request; basic sets HTTP Basic with the
// form-encoded credentials as RFC 6749 §2.3.1 says.
func tokenReq(t *testing.T, base string, form url.Values, basicID, basicSecret string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" || basicSecret != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	return req
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func wantError(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status || a.body["error"] != code {
		t.Fatalf("got %d %v, want %d %s", a.status, a.body, status, code)
	}
}

func dataReq(t *testing.T, method, u, access string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if access != "" {
		req.Header.Set("Authorization", "Bearer "+access)
	}
	return req
}

func TestRefresh(t *testing.T) {
	t.Run("rotates", func(t *testing.T) {
		b := setup(t, Options{AccessLifetime: 30 * time.Minute})
		tok := b.srv.Issue("u1")
		if !strings.HasPrefix(tok.AccessToken, "o2-at-") || !strings.HasPrefix(tok.RefreshToken, "o2-rt-") {
			t.Fatalf("token prefixes: %q %q", tok.AccessToken[:6], tok.RefreshToken[:6])
		}
		if got, want := tok.AccessExpiry, b.clock.Now().Add(30*time.Minute); !got.Equal(want) {
			t.Fatalf("issued expiry: got %v, want %v", got, want)
		}
		a := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret"))
		if a.status != http.StatusOK {
			t.Fatalf("status %d %s", a.status, a.raw)
		}
		if got := a.header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control: got %q", got)
		}
		if a.body["token_type"] != "Bearer" || a.body["expires_in"] != float64(1800) {
			t.Errorf("response: %v", a.body)
		}
		at, _ := a.body["access_token"].(string)
		rt, _ := a.body["refresh_token"].(string)
		if !strings.HasPrefix(at, "o2-at-") || !strings.HasPrefix(rt, "o2-rt-") || rt == tok.RefreshToken || at == tok.AccessToken {
			t.Fatalf("new tokens not fresh")
		}
		if a := do(t, tokenReq(t, b.url, refreshForm(rt), "app", "s3cret")); a.status != 200 {
			t.Fatalf("rotated token: %d %s", a.status, a.raw)
		}
		st := b.srv.Stats()
		if st.Calls != 2 || st.Refreshes != 2 || st.Rejected != 0 || st.Reused != 0 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("keep refresh token", func(t *testing.T) {
		b := setup(t, Options{KeepRefreshToken: true})
		tok := b.srv.Issue("u1")
		for range 2 {
			a := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret"))
			if a.status != 200 {
				t.Fatalf("status %d %s", a.status, a.raw)
			}
			if _, ok := a.body["refresh_token"]; ok {
				t.Fatal("refresh_token in a non-rotating response")
			}
		}
	})
	t.Run("revoke and reissue", func(t *testing.T) {
		b := setup(t, Options{})
		old := b.srv.Issue("u1")
		b.srv.Revoke("u1")
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(old.RefreshToken), "app", "s3cret")), 400, "invalid_grant")
		tok := b.srv.Issue("u1")
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(old.RefreshToken), "app", "s3cret")), 400, "invalid_grant")
		if a := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")); a.status != 200 {
			t.Fatalf("reissued: %d %s", a.status, a.raw)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		b := setup(t, Options{})
		wantError(t, do(t, tokenReq(t, b.url, refreshForm("o2-rt-nope"), "app", "s3cret")), 400, "invalid_grant")
	})
	t.Run("superseded token is not reuse", func(t *testing.T) {
		b := setup(t, Options{})
		old := b.srv.Issue("u1")
		tok := b.srv.Issue("u1")
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(old.RefreshToken), "app", "s3cret")), 400, "invalid_grant")
		if a := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")); a.status != 200 {
			t.Fatalf("the newer consent after the old one was refused: %d %s", a.status, a.raw)
		}
		if got := b.srv.Reuses(); got != 0 {
			t.Fatalf("reuses %d, want 0", got)
		}
	})
}

// refresh refreshes rt and returns the new access and refresh tokens,
// failing unless the server answered 200.
func (b bundle) refresh(t *testing.T, rt string) (access, refresh string) {
	t.Helper()
	a := do(t, tokenReq(t, b.url, refreshForm(rt), "app", "s3cret"))
	if a.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", a.status, a.raw)
	}
	access, _ = a.body["access_token"].(string)
	refresh, _ = a.body["refresh_token"].(string)
	return access, refresh
}

// pull is GET /data/user with access; it returns the status.
func (b bundle) pull(t *testing.T, user, access string) int {
	t.Helper()
	return do(t, dataReq(t, http.MethodGet, b.url+"/data/"+user, access, nil)).status
}

func TestReuse(t *testing.T) {
	t.Run("strict by default: reuse revokes the grant", func(t *testing.T) {
		b := setup(t, Options{})
		tok := b.srv.Issue("u1")
		other := b.srv.Issue("u2")
		b.srv.SetData("u1", []byte(`{"a":1}`), "c1")
		at1, rt1 := b.refresh(t, tok.RefreshToken)
		if b.pull(t, "u1", at1) != 200 {
			t.Fatal("the refreshed access token does not work")
		}

		a := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret"))
		wantError(t, a, 400, "invalid_grant")
		if desc, _ := a.body["error_description"].(string); !strings.Contains(desc, "reused") {
			t.Errorf("error_description %q does not say reuse", desc)
		}
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(rt1), "app", "s3cret")), 400, "invalid_grant")
		for name, at := range map[string]string{"issued": tok.AccessToken, "refreshed": at1} {
			if got := b.pull(t, "u1", at); got != 401 {
				t.Errorf("data call with the %s access token after reuse: %d, want 401", name, got)
			}
		}
		// Another user's grant is untouched.
		if _, rt := b.refresh(t, other.RefreshToken); rt == "" {
			t.Fatal("u2's refresh returned no refresh token")
		}
		// Presenting yet another dead token is detected again but
		// revokes nothing more.
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")), 400, "invalid_grant")
		st := b.srv.Stats()
		if st.Reused != 2 || st.ReuseRevocations != 1 || st.GraceRefreshes != 0 {
			t.Fatalf("stats %+v, want 2 reuses and 1 revocation", st)
		}
		if b.srv.Reuses() != 2 || b.srv.ReusesOf("u1") != 2 || b.srv.ReusesOf("u2") != 0 || b.srv.ReuseRevocations() != 1 {
			t.Fatalf("Reuses %d, ReusesOf u1 %d u2 %d, ReuseRevocations %d", b.srv.Reuses(), b.srv.ReusesOf("u1"),
				b.srv.ReusesOf("u2"), b.srv.ReuseRevocations())
		}
		// A new consent starts a new grant that works.
		again := b.srv.Issue("u1")
		if b.pull(t, "u1", again.AccessToken) != 200 {
			t.Fatal("a new consent's access token does not work")
		}
		b.refresh(t, again.RefreshToken)
	})
	t.Run("grace period forgives the immediately previous token", func(t *testing.T) {
		b := setup(t, Options{RotationGracePeriod: time.Minute})
		tok := b.srv.Issue("u1")
		b.srv.SetData("u1", []byte(`{"a":1}`), "c1")
		at1, rt1 := b.refresh(t, tok.RefreshToken)
		b.clock.Advance(59 * time.Second)
		at2, rt2 := b.refresh(t, tok.RefreshToken)
		if rt2 == "" || rt2 == rt1 || at2 == at1 {
			t.Fatal("a grace refresh did not return a new pair")
		}
		// Both pairs work, as in Hydra.
		for _, at := range []string{at1, at2} {
			if got := b.pull(t, "u1", at); got != 200 {
				t.Fatalf("data call after a grace refresh: %d", got)
			}
		}
		_, rt3 := b.refresh(t, rt1)
		st := b.srv.Stats()
		if st.Reused != 0 || st.ReuseRevocations != 0 || st.GraceRefreshes != 1 || st.Refreshes != 3 {
			t.Fatalf("stats %+v", st)
		}
		// rt1 now is the immediately previous token; tok is two back:
		// reuse even within its grace.
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")), 400, "invalid_grant")
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(rt3), "app", "s3cret")), 400, "invalid_grant")
		if b.srv.Reuses() != 1 || b.srv.ReuseRevocations() != 1 {
			t.Fatalf("reuses %d, revocations %d; want 1 and 1", b.srv.Reuses(), b.srv.ReuseRevocations())
		}
	})
	t.Run("grace period ends", func(t *testing.T) {
		b := setup(t, Options{RotationGracePeriod: time.Minute})
		tok := b.srv.Issue("u1")
		_, rt1 := b.refresh(t, tok.RefreshToken)
		b.clock.Advance(time.Minute)
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")), 400, "invalid_grant")
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(rt1), "app", "s3cret")), 400, "invalid_grant")
		if b.srv.Reuses() != 1 || b.srv.ReuseRevocations() != 1 {
			t.Fatalf("reuses %d, revocations %d; want 1 and 1", b.srv.Reuses(), b.srv.ReuseRevocations())
		}
	})
	t.Run("grace period does not revive a revoked consent", func(t *testing.T) {
		b := setup(t, Options{RotationGracePeriod: time.Minute})
		tok := b.srv.Issue("u1")
		b.refresh(t, tok.RefreshToken)
		b.srv.Revoke("u1")
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")), 400, "invalid_grant")
	})
	t.Run("keep refresh token never detects reuse", func(t *testing.T) {
		b := setup(t, Options{KeepRefreshToken: true})
		tok := b.srv.Issue("u1")
		b.refresh(t, tok.RefreshToken)
		b.refresh(t, tok.RefreshToken)
		if b.srv.Reuses() != 0 {
			t.Fatalf("reuses %d", b.srv.Reuses())
		}
	})
}

func TestClientAuth(t *testing.T) {
	const id, secret = "app:1/x", "s e+c%ret"
	tests := []struct {
		name       string
		style      string
		basicID    string
		basicSec   string
		body       url.Values
		wantStatus int
		wantCode   string
	}{
		{name: "basic ok", style: AuthBasic, basicID: id, basicSec: secret, wantStatus: 200},
		{name: "basic wrong secret", style: AuthBasic, basicID: id, basicSec: "nope", wantStatus: 401, wantCode: "invalid_client"},
		{name: "basic wrong id", style: AuthBasic, basicID: "other", basicSec: secret, wantStatus: 401, wantCode: "invalid_client"},
		{name: "basic missing", style: AuthBasic, wantStatus: 401, wantCode: "invalid_client"},
		{name: "basic server, post client", style: AuthBasic, body: url.Values{"client_id": {id}, "client_secret": {secret}}, wantStatus: 401, wantCode: "invalid_client"},
		{name: "basic with mismatched client_id", style: AuthBasic, basicID: id, basicSec: secret, body: url.Values{"client_id": {"other"}}, wantStatus: 400, wantCode: "invalid_request"},
		{name: "both methods", style: AuthBasic, basicID: id, basicSec: secret, body: url.Values{"client_secret": {secret}}, wantStatus: 400, wantCode: "invalid_request"},
		{name: "post ok", style: AuthPost, body: url.Values{"client_id": {id}, "client_secret": {secret}}, wantStatus: 200},
		{name: "post wrong secret", style: AuthPost, body: url.Values{"client_id": {id}, "client_secret": {"nope"}}, wantStatus: 401, wantCode: "invalid_client"},
		{name: "post missing", style: AuthPost, wantStatus: 401, wantCode: "invalid_client"},
		{name: "post server, basic client", style: AuthPost, basicID: id, basicSec: secret, wantStatus: 401, wantCode: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setup(t, Options{ClientID: id, ClientSecret: secret, AuthStyle: tt.style})
			tok := b.srv.Issue("u1")
			form := refreshForm(tok.RefreshToken)
			for k, v := range tt.body {
				form[k] = v
			}
			a := do(t, tokenReq(t, b.url, form, tt.basicID, tt.basicSec))
			if tt.wantStatus == 200 {
				if a.status != 200 {
					t.Fatalf("got %d %s", a.status, a.raw)
				}
				return
			}
			wantError(t, a, tt.wantStatus, tt.wantCode)
			if a.status == 401 && a.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestTokenRequestStrictness(t *testing.T) {
	b := setup(t, Options{})
	tok := b.srv.Issue("u1")

	t.Run("client_credentials unsupported", func(t *testing.T) {
		form := url.Values{"grant_type": {"client_credentials"}}
		wantError(t, do(t, tokenReq(t, b.url, form, "app", "s3cret")), 400, "unsupported_grant_type")
	})
	t.Run("grant_type missing", func(t *testing.T) {
		form := url.Values{"refresh_token": {tok.RefreshToken}}
		wantError(t, do(t, tokenReq(t, b.url, form, "app", "s3cret")), 400, "invalid_request")
	})
	t.Run("refresh_token missing", func(t *testing.T) {
		form := url.Values{"grant_type": {"refresh_token"}}
		wantError(t, do(t, tokenReq(t, b.url, form, "app", "s3cret")), 400, "invalid_request")
	})
	t.Run("repeated parameter", func(t *testing.T) {
		form := refreshForm(tok.RefreshToken)
		form.Add("refresh_token", tok.RefreshToken)
		wantError(t, do(t, tokenReq(t, b.url, form, "app", "s3cret")), 400, "invalid_request")
	})
	t.Run("parameters in the query", func(t *testing.T) {
		req := tokenReq(t, b.url, url.Values{}, "app", "s3cret")
		req.URL.RawQuery = refreshForm(tok.RefreshToken).Encode()
		wantError(t, do(t, req), 400, "invalid_request")
	})
	t.Run("wrong content type", func(t *testing.T) {
		req := tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")
		req.Header.Set("Content-Type", "application/json")
		wantError(t, do(t, req), 400, "invalid_request")
	})
	t.Run("GET", func(t *testing.T) {
		req := tokenReq(t, b.url, url.Values{}, "app", "s3cret")
		req.Method = http.MethodGet
		if a := do(t, req); a.status != http.StatusMethodNotAllowed {
			t.Fatalf("got %d", a.status)
		}
	})
	// None of the above consumed the refresh token.
	if a := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")); a.status != 200 {
		t.Fatalf("after bad requests: %d %s", a.status, a.raw)
	}
}

func TestOutage(t *testing.T) {
	b := setup(t, Options{})
	tok := b.srv.Issue("u1")

	b.srv.SetOutage(503, 1500*time.Millisecond)
	a := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret"))
	wantError(t, a, 503, "temporarily_unavailable")
	if got := a.header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After: got %q, want 2 (rounded up)", got)
	}

	b.srv.SetOutage(429, 7*time.Second)
	a = do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret"))
	if a.status != 429 || a.header.Get("Retry-After") != "7" || len(a.raw) != 0 {
		t.Fatalf("429: %d %q %q", a.status, a.header.Get("Retry-After"), a.raw)
	}

	b.srv.SetOutage(503, 0)
	a = do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret"))
	if a.status != 503 || a.header.Get("Retry-After") != "" {
		t.Fatalf("503 without Retry-After: %d %q", a.status, a.header.Get("Retry-After"))
	}

	b.srv.SetOutage(0, 0)
	if a := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret")); a.status != 200 {
		t.Fatalf("after the outage: %d %s", a.status, a.raw)
	}
	if st := b.srv.Stats(); st.Calls != 4 || st.Refreshes != 1 || st.Rejected != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestData(t *testing.T) {
	t.Run("bearer checks", func(t *testing.T) {
		b := setup(t, Options{AccessLifetime: time.Hour})
		tok := b.srv.Issue("u1")
		other := b.srv.Issue("u2")
		b.srv.SetData("u1", []byte(`{"a":1}`), "c1")
		u := b.url + "/data/u1"

		a := do(t, dataReq(t, http.MethodGet, u, "", nil))
		if a.status != 401 || a.header.Get("WWW-Authenticate") != `Bearer realm="oauth2fake"` {
			t.Fatalf("no token: %d %q", a.status, a.header.Get("WWW-Authenticate"))
		}
		a = do(t, dataReq(t, http.MethodGet, u, "o2-at-bogus", nil))
		if a.status != 401 || !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("bogus token: %d %q", a.status, a.header.Get("WWW-Authenticate"))
		}
		a = do(t, dataReq(t, http.MethodGet, u, other.AccessToken, nil))
		if a.status != 403 {
			t.Fatalf("other user's token: %d", a.status)
		}
		if a := do(t, dataReq(t, http.MethodGet, u, tok.AccessToken, nil)); a.status != 200 {
			t.Fatalf("valid token: %d", a.status)
		}

		b.srv.InvalidateAccess("u1")
		a = do(t, dataReq(t, http.MethodGet, u, tok.AccessToken, nil))
		if a.status != 401 || !strings.Contains(a.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("invalidated: %d %q", a.status, a.header.Get("WWW-Authenticate"))
		}
		r := do(t, tokenReq(t, b.url, refreshForm(tok.RefreshToken), "app", "s3cret"))
		at := r.body["access_token"].(string)
		if a := do(t, dataReq(t, http.MethodGet, u, at, nil)); a.status != 200 {
			t.Fatalf("token issued after invalidation: %d", a.status)
		}

		b.clock.Advance(time.Hour)
		if a := do(t, dataReq(t, http.MethodGet, u, at, nil)); a.status != 401 {
			t.Fatalf("expired token: %d", a.status)
		}
		if st := b.srv.Stats(); st.DataCalls != 7 || st.Unauthorized != 4 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("revoke rejects access", func(t *testing.T) {
		b := setup(t, Options{})
		tok := b.srv.Issue("u1")
		b.srv.Revoke("u1")
		if a := do(t, dataReq(t, http.MethodGet, b.url+"/data/u1", tok.AccessToken, nil)); a.status != 401 {
			t.Fatalf("revoked: %d", a.status)
		}
	})
	t.Run("cursor", func(t *testing.T) {
		b := setup(t, Options{})
		tok := b.srv.Issue("u1")
		get := func(since string) answer {
			return do(t, dataReq(t, http.MethodGet, b.url+"/data/u1?since="+url.QueryEscape(since), tok.AccessToken, nil))
		}
		if a := get(""); a.status != 204 {
			t.Fatalf("no data: %d", a.status)
		}
		b.srv.SetData("u1", []byte(`{"a":1}`), "c1")
		a := get("")
		if a.status != 200 || string(a.raw) != `{"a":1}` || a.header.Get("X-Next-Cursor") != "c1" ||
			a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("first pull: %d %q %v", a.status, a.raw, a.header)
		}
		if a := get("c1"); a.status != 204 {
			t.Fatalf("caught up: %d", a.status)
		}
		if a := get("c0"); a.status != 200 {
			t.Fatalf("behind: %d", a.status)
		}
	})
	t.Run("last modified", func(t *testing.T) {
		b := setup(t, Options{})
		tok := b.srv.Issue("u1")
		b.srv.SetData("u1", []byte("plain text"), "")
		get := func(since string) answer {
			return do(t, dataReq(t, http.MethodGet, b.url+"/data/u1?since="+url.QueryEscape(since), tok.AccessToken, nil))
		}
		a := get("")
		if a.status != 200 || a.header.Get("X-Next-Cursor") != "" {
			t.Fatalf("pull: %d %v", a.status, a.header)
		}
		lm, err := http.ParseTime(a.header.Get("Last-Modified"))
		if err != nil || !lm.Equal(b.clock.Now()) {
			t.Fatalf("Last-Modified %q: %v", a.header.Get("Last-Modified"), err)
		}
		if !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
			t.Errorf("Content-Type: %q", a.header.Get("Content-Type"))
		}
		if a := get(lm.Format(time.RFC3339)); a.status != 204 {
			t.Fatalf("since Last-Modified: %d", a.status)
		}
		if a := get(lm.Add(-time.Second).Format(time.RFC3339)); a.status != 200 {
			t.Fatalf("since before Last-Modified: %d", a.status)
		}
	})
}

func TestPush(t *testing.T) {
	b := setup(t, Options{})
	tok := b.srv.Issue("u1")
	req := dataReq(t, http.MethodPost, b.url+"/push/u1", tok.AccessToken, strings.NewReader("hello"))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set(HeaderItemID, "i1")
	req.Header.Set(HeaderTags, "a, b")
	req.Header.Set(HeaderAccounts, "acc1")
	if a := do(t, req); a.status != http.StatusNoContent {
		t.Fatalf("push: %d %s", a.status, a.raw)
	}

	req = dataReq(t, http.MethodPost, b.url+"/push/u1", tok.AccessToken, strings.NewReader("x"))
	wantError(t, do(t, req), 400, "invalid_request")

	req = dataReq(t, http.MethodPost, b.url+"/push/u1", "o2-at-bogus", strings.NewReader("x"))
	req.Header.Set(HeaderItemID, "i2")
	if a := do(t, req); a.status != 401 {
		t.Fatalf("bogus token: %d", a.status)
	}

	got := b.srv.Pushes("u1")
	want := Push{ID: "i1", Data: []byte("hello"), MimeType: "text/plain", Tags: []string{"a", "b"}, Accounts: []string{"acc1"}}
	if len(got) != 1 || got[0].ID != want.ID || string(got[0].Data) != string(want.Data) || got[0].MimeType != want.MimeType ||
		!slices.Equal(got[0].Tags, want.Tags) || !slices.Equal(got[0].Accounts, want.Accounts) {
		t.Fatalf("pushes: got %+v, want %+v", got, want)
	}
	if len(b.srv.Pushes("u2")) != 0 {
		t.Fatal("pushes for u2")
	}
}

func TestSecretsAndSeed(t *testing.T) {
	a := setup(t, Options{Seed: 7})
	b := setup(t, Options{Seed: 7})
	ta, tb := a.srv.Issue("u1"), b.srv.Issue("u1")
	if ta.AccessToken != tb.AccessToken || ta.RefreshToken != tb.RefreshToken {
		t.Fatal("same seed, different tokens")
	}
	c := setup(t, Options{Seed: 8})
	if c.srv.Issue("u1").AccessToken == ta.AccessToken {
		t.Fatal("different seed, same token")
	}
	got := a.srv.Secrets()
	for _, want := range []string{"s3cret", ta.AccessToken, ta.RefreshToken} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets lacks a value (%d values)", len(got))
		}
	}
}
