package oauth2fake

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	testRedirect = "https://app.example/cb?tenant=t1"
	testVerifier = "verifier-0123456789-0123456789-0123456789-abcdef"
	testState    = "state-1"
)

func challengeOf(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authQuery is a valid authorization request for client "app"; mod
// changes it (Del a key to leave it out).
func authQuery(mod func(url.Values)) url.Values {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {"app"},
		"redirect_uri":          {testRedirect},
		"state":                 {testState},
		"code_challenge":        {challengeOf(testVerifier)},
		"code_challenge_method": {"S256"},
	}
	if mod != nil {
		mod(q)
	}
	return q
}

// visit GETs the authorization endpoint without following the redirect.
func visit(t *testing.T, base string, q url.Values) (status int, loc *url.URL, body string, contentType string) {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(base + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if l := resp.Header.Get("Location"); l != "" {
		if loc, err = url.Parse(l); err != nil {
			t.Fatalf("Location %q: %v", l, err)
		}
	}
	return resp.StatusCode, loc, string(raw), resp.Header.Get("Content-Type")
}

// authorize runs a consent that must succeed and returns the code.
func authorize(t *testing.T, b bundle, mod func(url.Values)) string {
	t.Helper()
	status, loc, body, _ := visit(t, b.url, authQuery(mod))
	if status != http.StatusFound || loc == nil {
		t.Fatalf("authorize: %d %q", status, body)
	}
	code := loc.Query().Get("code")
	if !strings.HasPrefix(code, "o2-ac-") {
		t.Fatalf("redirect %s...: no code", loc.Redacted()[:20])
	}
	return code
}

func codeForm(code, redirect, verifier string) url.Values {
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}}
	if verifier != "" {
		f.Set("code_verifier", verifier)
	}
	return f
}

// exchangeOK exchanges code with the test verifier and returns the
// access and refresh tokens.
func exchangeOK(t *testing.T, b bundle, code string) (string, string) {
	t.Helper()
	a := do(t, tokenReq(t, b.url, codeForm(code, testRedirect, testVerifier), "app", "s3cret"))
	if a.status != http.StatusOK {
		t.Fatalf("exchange: %d %s", a.status, a.raw)
	}
	at, _ := a.body["access_token"].(string)
	rt, _ := a.body["refresh_token"].(string)
	return at, rt
}

func dataStatus(t *testing.T, b bundle, user, access string) int {
	t.Helper()
	return do(t, dataReq(t, http.MethodGet, b.url+"/data/"+user, access, nil)).status
}

func TestAuthorize(t *testing.T) {
	t.Run("grants", func(t *testing.T) {
		b := setup(t, Options{})
		status, loc, _, _ := visit(t, b.url, authQuery(func(q url.Values) {
			q.Set("scope", "read write")
			q.Set("access_type", "offline")
		}))
		if status != http.StatusFound {
			t.Fatalf("status %d", status)
		}
		if loc.Scheme != "https" || loc.Host != "app.example" || loc.Path != "/cb" {
			t.Fatalf("redirected to %s://%s%s", loc.Scheme, loc.Host, loc.Path)
		}
		q := loc.Query()
		if q.Get("tenant") != "t1" || q.Get("state") != testState || !strings.HasPrefix(q.Get("code"), "o2-ac-") || len(q) != 3 {
			t.Fatalf("redirect query keys %v, tenant %q state %q", slices.Sorted(maps.Keys(q)), q.Get("tenant"), q.Get("state"))
		}
		last := b.srv.LastAuthorize()
		if last.Get("scope") != "read write" || last.Get("access_type") != "offline" || last.Get("client_id") != "app" {
			t.Fatalf("LastAuthorize: %v", last)
		}
		if !slices.Contains(b.srv.Secrets(), q.Get("code")) {
			t.Error("Secrets lacks the code")
		}
		if st := b.srv.Stats(); st.Authorizations != 1 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("no state", func(t *testing.T) {
		b := setup(t, Options{})
		_, loc, _, _ := visit(t, b.url, authQuery(func(q url.Values) { q.Del("state") }))
		if _, ok := loc.Query()["state"]; ok || loc.Query().Get("code") == "" {
			t.Fatalf("redirect query keys %v", slices.Sorted(maps.Keys(loc.Query())))
		}
	})
	t.Run("users", func(t *testing.T) {
		b := setup(t, Options{})
		b.srv.SetData("user-1", []byte("one"), "c1")
		b.srv.SetData("alice", []byte("a"), "c1")
		at1, _ := exchangeOK(t, b, authorize(t, b, nil))
		at2, _ := exchangeOK(t, b, authorize(t, b, nil))
		atA, _ := exchangeOK(t, b, authorize(t, b, func(q url.Values) { q.Set(KnobUser, "alice") }))
		if s := dataStatus(t, b, "user-1", at1); s != 200 {
			t.Fatalf("default user: %d", s)
		}
		if s := dataStatus(t, b, "user-1", at2); s != 403 {
			t.Fatalf("second default user reads user-1: %d", s)
		}
		if s := dataStatus(t, b, "user-2", at2); s != 204 {
			t.Fatalf("second default user: %d", s)
		}
		if s := dataStatus(t, b, "alice", atA); s != 200 {
			t.Fatalf("alice: %d", s)
		}
	})
	t.Run("bad client or redirect is not redirected", func(t *testing.T) {
		b := setup(t, Options{})
		for name, mod := range map[string]func(url.Values){
			"unknown client":    func(q url.Values) { q.Set("client_id", "other") },
			"no client":         func(q url.Values) { q.Del("client_id") },
			"two clients":       func(q url.Values) { q.Add("client_id", "app") },
			"no redirect":       func(q url.Values) { q.Del("redirect_uri") },
			"relative redirect": func(q url.Values) { q.Set("redirect_uri", "/cb") },
			"custom scheme":     func(q url.Values) { q.Set("redirect_uri", "app://cb") },
			"redirect fragment": func(q url.Values) { q.Set("redirect_uri", "https://app.example/cb#x") },
			"two redirects":     func(q url.Values) { q.Add("redirect_uri", testRedirect) },
			"bad consent knob":  func(q url.Values) { q.Set(KnobConsent, "maybe") },
		} {
			status, loc, _, ct := visit(t, b.url, authQuery(mod))
			if status != http.StatusBadRequest || loc != nil || !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("%s: %d %v %q", name, status, loc, ct)
			}
		}
		if st := b.srv.Stats(); st.Authorizations != 0 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("errors are redirected", func(t *testing.T) {
		tests := []struct {
			name string
			opt  Options
			mod  func(url.Values)
			want string
		}{
			{name: "no response_type", mod: func(q url.Values) { q.Del("response_type") }, want: "invalid_request"},
			{name: "implicit", mod: func(q url.Values) { q.Set("response_type", "token") }, want: "unsupported_response_type"},
			{name: "no challenge", mod: func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, want: "invalid_request"},
			{name: "plain", mod: func(q url.Values) { q.Set("code_challenge_method", "plain") }, want: "invalid_request"},
			{name: "plain with AllowNoPKCE", opt: Options{AllowNoPKCE: true}, mod: func(q url.Values) { q.Set("code_challenge_method", "plain") }, want: "invalid_request"},
			{name: "no method means plain", mod: func(q url.Values) { q.Del("code_challenge_method") }, want: "invalid_request"},
			{name: "method without challenge", opt: Options{AllowNoPKCE: true}, mod: func(q url.Values) { q.Del("code_challenge") }, want: "invalid_request"},
			{name: "short challenge", mod: func(q url.Values) { q.Set("code_challenge", "abc") }, want: "invalid_request"},
			{name: "repeated scope", mod: func(q url.Values) { q.Add("scope", "a"); q.Add("scope", "b") }, want: "invalid_request"},
			{name: "deny", mod: func(q url.Values) { q.Set(KnobConsent, ConsentDeny) }, want: "access_denied"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := setup(t, tt.opt)
				status, loc, _, _ := visit(t, b.url, authQuery(tt.mod))
				if status != http.StatusFound || loc == nil {
					t.Fatalf("status %d, location %v", status, loc)
				}
				q := loc.Query()
				if q.Get("error") != tt.want || q.Get("state") != testState || q.Get("code") != "" || q.Get("tenant") != "t1" {
					t.Fatalf("redirect error %q state %q code %v tenant %q; want %s", q.Get("error"), q.Get("state"),
						q.Get("code") != "", q.Get("tenant"), tt.want)
				}
				if loc.Host != "app.example" || loc.Path != "/cb" {
					t.Fatalf("redirected to %s%s", loc.Host, loc.Path)
				}
				if st := b.srv.Stats(); st.Authorizations != 0 {
					t.Fatalf("stats: %+v", st)
				}
			})
		}
	})
	t.Run("AllowNoPKCE", func(t *testing.T) {
		b := setup(t, Options{AllowNoPKCE: true})
		noPKCE := func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }
		code := authorize(t, b, noPKCE)
		if a := do(t, tokenReq(t, b.url, codeForm(code, testRedirect, ""), "app", "s3cret")); a.status != 200 {
			t.Fatalf("exchange without verifier: %d %s", a.status, a.raw)
		}
		code = authorize(t, b, noPKCE)
		wantError(t, do(t, tokenReq(t, b.url, codeForm(code, testRedirect, testVerifier), "app", "s3cret")), 400, "invalid_grant")
		// PKCE still works, and is still checked, when sent.
		exchangeOK(t, b, authorize(t, b, nil))
		code = authorize(t, b, nil)
		wantError(t, do(t, tokenReq(t, b.url, codeForm(code, testRedirect, ""), "app", "s3cret")), 400, "invalid_grant")
	})
	t.Run("POST", func(t *testing.T) {
		b := setup(t, Options{})
		resp, err := http.PostForm(b.url+"/authorize", authQuery(nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
}

func TestExchange(t *testing.T) {
	t.Run("issues working tokens", func(t *testing.T) {
		for _, style := range []string{AuthBasic, AuthPost} {
			t.Run(style, func(t *testing.T) {
				b := setup(t, Options{AuthStyle: style, AccessLifetime: 30 * time.Minute})
				code := authorize(t, b, func(q url.Values) { q.Set(KnobUser, "u1") })
				form := codeForm(code, testRedirect, testVerifier)
				id, secret := "app", "s3cret"
				if style == AuthPost {
					form.Set("client_id", id)
					form.Set("client_secret", secret)
					id, secret = "", ""
				}
				a := do(t, tokenReq(t, b.url, form, id, secret))
				if a.status != 200 || a.header.Get("Cache-Control") != "no-store" {
					t.Fatalf("status %d %s", a.status, a.raw)
				}
				at, _ := a.body["access_token"].(string)
				rt, _ := a.body["refresh_token"].(string)
				if !strings.HasPrefix(at, "o2-at-") || !strings.HasPrefix(rt, "o2-rt-") ||
					a.body["token_type"] != "Bearer" || a.body["expires_in"] != float64(1800) {
					t.Fatalf("response: type %v expires_in %v", a.body["token_type"], a.body["expires_in"])
				}
				b.srv.SetData("u1", []byte("x"), "c1")
				if s := dataStatus(t, b, "u1", at); s != 200 {
					t.Fatalf("pull: %d", s)
				}
				form = refreshForm(rt)
				if style == AuthPost {
					form.Set("client_id", "app")
					form.Set("client_secret", "s3cret")
				}
				if r := do(t, tokenReq(t, b.url, form, id, secret)); r.status != 200 {
					t.Fatalf("refresh: %d %s", r.status, r.raw)
				}
				if st := b.srv.Stats(); st.Authorizations != 1 || st.Exchanges != 1 || st.Refreshes != 1 || st.Rejected != 0 || st.ExchangeRejected != 0 {
					t.Fatalf("stats: %+v", st)
				}
			})
		}
	})
	t.Run("single use", func(t *testing.T) {
		b := setup(t, Options{})
		code := authorize(t, b, func(q url.Values) { q.Set(KnobUser, "u1") })
		at, rt := exchangeOK(t, b, code)
		wantError(t, do(t, tokenReq(t, b.url, codeForm(code, testRedirect, testVerifier), "app", "s3cret")), 400, "invalid_grant")
		// RFC 6749 §4.1.2: the reuse revokes what the code gave.
		if s := dataStatus(t, b, "u1", at); s != 401 {
			t.Fatalf("access token after code reuse: %d", s)
		}
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(rt), "app", "s3cret")), 400, "invalid_grant")
		if st := b.srv.Stats(); st.Exchanges != 1 || st.ExchangeRejected != 1 || st.Rejected != 2 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("reuse revokes rotated descendants only", func(t *testing.T) {
		b := setup(t, Options{})
		code := authorize(t, b, func(q url.Values) { q.Set(KnobUser, "u1") })
		_, rt := exchangeOK(t, b, code)
		r := do(t, tokenReq(t, b.url, refreshForm(rt), "app", "s3cret"))
		rt2 := r.body["refresh_token"].(string)
		other := b.srv.Issue("u2")
		do(t, tokenReq(t, b.url, codeForm(code, testRedirect, testVerifier), "app", "s3cret"))
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(rt2), "app", "s3cret")), 400, "invalid_grant")
		if r := do(t, tokenReq(t, b.url, refreshForm(other.RefreshToken), "app", "s3cret")); r.status != 200 {
			t.Fatalf("another user's token: %d", r.status)
		}
	})
	t.Run("expiry", func(t *testing.T) {
		b := setup(t, Options{})
		code := authorize(t, b, nil)
		b.clock.Advance(CodeLifetime - time.Second)
		exchangeOK(t, b, code)
		code = authorize(t, b, nil)
		b.clock.Advance(CodeLifetime)
		wantError(t, do(t, tokenReq(t, b.url, codeForm(code, testRedirect, testVerifier), "app", "s3cret")), 400, "invalid_grant")
	})
	t.Run("rejections", func(t *testing.T) {
		other := "verifier-other-0123456789-0123456789-0123456789"
		tests := []struct {
			name       string
			form       func(code string) url.Values
			wantStatus int
			wantCode   string
		}{
			{name: "verifier mismatch", form: func(c string) url.Values { return codeForm(c, testRedirect, other) }, wantStatus: 400, wantCode: "invalid_grant"},
			{name: "verifier is the challenge", form: func(c string) url.Values { return codeForm(c, testRedirect, challengeOf(testVerifier)) }, wantStatus: 400, wantCode: "invalid_grant"},
			{name: "verifier missing", form: func(c string) url.Values { return codeForm(c, testRedirect, "") }, wantStatus: 400, wantCode: "invalid_grant"},
			{name: "verifier malformed", form: func(c string) url.Values { return codeForm(c, testRedirect, "short") }, wantStatus: 400, wantCode: "invalid_grant"},
			{name: "redirect mismatch", form: func(c string) url.Values { return codeForm(c, "https://app.example/cb", testVerifier) }, wantStatus: 400, wantCode: "invalid_grant"},
			{name: "redirect missing", form: func(c string) url.Values {
				f := codeForm(c, testRedirect, testVerifier)
				f.Del("redirect_uri")
				return f
			}, wantStatus: 400, wantCode: "invalid_request"},
			{name: "unknown code", form: func(string) url.Values { return codeForm("o2-ac-nope", testRedirect, testVerifier) }, wantStatus: 400, wantCode: "invalid_grant"},
			{name: "code missing", form: func(string) url.Values { f := codeForm("", testRedirect, testVerifier); f.Del("code"); return f }, wantStatus: 400, wantCode: "invalid_request"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				b := setup(t, Options{})
				code := authorize(t, b, nil)
				wantError(t, do(t, tokenReq(t, b.url, tt.form(code), "app", "s3cret")), tt.wantStatus, tt.wantCode)
				// The failed attempt spent the code (unless it never named it).
				a := do(t, tokenReq(t, b.url, codeForm(code, testRedirect, testVerifier), "app", "s3cret"))
				spent := tt.name != "unknown code" && tt.name != "code missing"
				if spent && a.status != 400 || !spent && a.status != 200 {
					t.Fatalf("exchange after the failure: %d %s", a.status, a.raw)
				}
				if st := b.srv.Stats(); st.ExchangeRejected < 1 || st.Exchanges > 1 {
					t.Fatalf("stats: %+v", st)
				}
			})
		}
	})
	t.Run("bad client does not spend the code", func(t *testing.T) {
		b := setup(t, Options{})
		code := authorize(t, b, nil)
		wantError(t, do(t, tokenReq(t, b.url, codeForm(code, testRedirect, testVerifier), "app", "nope")), 401, "invalid_client")
		exchangeOK(t, b, code)
		if st := b.srv.Stats(); st.ExchangeRejected != 1 || st.Exchanges != 1 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("outage", func(t *testing.T) {
		b := setup(t, Options{})
		code := authorize(t, b, nil)
		b.srv.SetOutage(503, 0)
		wantError(t, do(t, tokenReq(t, b.url, codeForm(code, testRedirect, testVerifier), "app", "s3cret")), 503, "temporarily_unavailable")
		b.srv.SetOutage(0, 0)
		exchangeOK(t, b, code)
	})
	t.Run("like Issue", func(t *testing.T) {
		b := setup(t, Options{})
		old := b.srv.Issue("u1")
		b.srv.Revoke("u1")
		pending := authorize(t, b, func(q url.Values) { q.Set(KnobUser, "u1") })
		b.srv.Revoke("u1")
		// Revoke forgets codes not yet exchanged.
		wantError(t, do(t, tokenReq(t, b.url, codeForm(pending, testRedirect, testVerifier), "app", "s3cret")), 400, "invalid_grant")
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(old.RefreshToken), "app", "s3cret")), 400, "invalid_grant")

		// A new authorization brings the user back.
		at, rt := exchangeOK(t, b, authorize(t, b, func(q url.Values) { q.Set(KnobUser, "u1") }))
		if s := dataStatus(t, b, "u1", at); s != 204 {
			t.Fatalf("pull after reauthorization: %d", s)
		}
		// It supersedes the user's earlier refresh tokens, as Issue does.
		issued := b.srv.Issue("u1")
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(rt), "app", "s3cret")), 400, "invalid_grant")
		_, rt2 := exchangeOK(t, b, authorize(t, b, func(q url.Values) { q.Set(KnobUser, "u1") }))
		wantError(t, do(t, tokenReq(t, b.url, refreshForm(issued.RefreshToken), "app", "s3cret")), 400, "invalid_grant")
		if r := do(t, tokenReq(t, b.url, refreshForm(rt2), "app", "s3cret")); r.status != 200 {
			t.Fatalf("latest: %d", r.status)
		}
	})
}
