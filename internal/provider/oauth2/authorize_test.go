package oauth2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	xoauth2 "golang.org/x/oauth2"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/provider/oauth2fake"
	"github.com/syncd/syncd/internal/provider/providertest"
	"github.com/syncd/syncd/internal/tokens"
)

const testRedirect = "https://syncd.example/oauth2/callback"

// withAuthURL points the client at the fake's authorization endpoint.
func withAuthURL(c *Config) {
	c.AuthURL = strings.TrimSuffix(c.TokenURL, "/token") + "/authorize"
}

// consent follows an authorization link the way a browser would, without
// following the redirect back to syncd, and returns the redirect's query.
func consent(t *testing.T, link string) url.Values {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %d %q", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Fatalf("redirected to %s", got)
	}
	return loc.Query()
}

// flow is one consent: the verifier syncd keeps and the code the
// redirect brought.
type flow struct {
	verifier, code string
}

// authorizeUser runs AuthorizeURL and the consent for the fake's user
// (syncd's user has the same name).
func authorizeUser(t *testing.T, c *Client, user string) flow {
	t.Helper()
	verifier := xoauth2.GenerateVerifier()
	link, err := c.AuthorizeURL(context.Background(), provider.AuthRequest{
		User: user, RedirectURI: testRedirect, State: "state-" + user, CodeChallenge: xoauth2.S256ChallengeFromVerifier(verifier),
	})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(oauth2fake.KnobUser, user)
	u.RawQuery = q.Encode()
	back := consent(t, u.String())
	if back.Get("state") != "state-"+user || back.Get("code") == "" {
		t.Fatalf("redirect: state %q, code present %v, error %q", back.Get("state"), back.Get("code") != "", back.Get("error"))
	}
	return flow{verifier: verifier, code: back.Get("code")}
}

func (f flow) request(user string) provider.ExchangeRequest {
	return provider.ExchangeRequest{User: user, Code: f.code, Verifier: f.verifier, RedirectURI: testRedirect}
}

func TestAuthorizeURL(t *testing.T) {
	c := newTestClient(t, Config{
		TokenURL: "https://auth.example.com/token", ClientID: "app id", AuthURL: "https://auth.example.com/oauth/authorize?tenant=t1",
		Scopes: []string{"read", "write"}, AuthParams: map[string]string{"prompt": "consent", "access_type": "offline"},
	}, &instantTimer{})
	req := provider.AuthRequest{User: "u1", RedirectURI: "https://syncd.example/cb?x=1", State: "st/1", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}
	link, err := c.AuthorizeURL(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := "https://auth.example.com/oauth/authorize?tenant=t1&access_type=offline&client_id=app+id" +
		"&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&prompt=consent" +
		"&redirect_uri=https%3A%2F%2Fsyncd.example%2Fcb%3Fx%3D1&response_type=code&scope=read+write&state=st%2F1"
	if link != want {
		t.Fatalf("link:\n got %s\nwant %s", link, want)
	}
	for range 5 {
		if again, _ := c.AuthorizeURL(context.Background(), req); again != link {
			t.Fatalf("not deterministic: %s", again)
		}
	}

	// Without Scopes and AuthParams there is no scope and nothing extra.
	c = newTestClient(t, Config{TokenURL: "https://a/token", ClientID: "app", AuthURL: "https://a/authorize"}, &instantTimer{})
	link, err = c.AuthorizeURL(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(link)
	if q := u.Query(); len(q) != 6 || q.Get("scope") != "" || q.Get("code_challenge_method") != "S256" {
		t.Fatalf("query: %v", q)
	}
}

func TestAuthorizeURLErrors(t *testing.T) {
	ok := provider.AuthRequest{User: "u1", RedirectURI: testRedirect, State: "s", CodeChallenge: "c"}
	t.Run("not configured", func(t *testing.T) {
		c := newTestClient(t, Config{TokenURL: "https://a/token", ClientID: "app"}, &instantTimer{})
		_, err := c.AuthorizeURL(context.Background(), ok)
		pe := providerErr(t, err)
		if pe.Op != OpAuthorize || !pe.Permanent || !errors.Is(err, ErrNotConfigured) || !strings.Contains(err.Error(), "auth_url not configured") {
			t.Fatalf("got %v (%+v)", err, pe)
		}
	})
	c := newTestClient(t, Config{TokenURL: "https://a/token", ClientID: "app", AuthURL: "https://a/authorize"}, &instantTimer{})
	for name, mod := range map[string]func(*provider.AuthRequest){
		"no redirect":       func(r *provider.AuthRequest) { r.RedirectURI = "" },
		"relative redirect": func(r *provider.AuthRequest) { r.RedirectURI = "/cb" },
		"no state":          func(r *provider.AuthRequest) { r.State = "" },
		"no challenge":      func(r *provider.AuthRequest) { r.CodeChallenge = "" },
	} {
		req := ok
		mod(&req)
		_, err := c.AuthorizeURL(context.Background(), req)
		if pe := providerErr(t, err); pe.Op != OpAuthorize || !pe.Permanent {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestAuthorizationFlow(t *testing.T) {
	for _, style := range []string{AuthBasic, AuthPost} {
		t.Run(style, func(t *testing.T) {
			b := setup(t, style, func(c *Config) {
				withAuthURL(c)
				c.Scopes = []string{"read", "write"}
				c.AuthParams = map[string]string{"access_type": "offline", "prompt": "consent"}
			})
			f := authorizeUser(t, b.client, "u1")
			last := b.fake.LastAuthorize()
			if last.Get("scope") != "read write" || last.Get("access_type") != "offline" || last.Get("prompt") != "consent" ||
				last.Get("client_id") != testClientID || last.Get("redirect_uri") != testRedirect ||
				last.Get("code_challenge") != xoauth2.S256ChallengeFromVerifier(f.verifier) {
				t.Fatalf("authorization request: %v", last)
			}
			b.clock.Advance(time.Minute)

			tok, err := b.client.Exchange(context.Background(), f.request("u1"))
			if err != nil {
				t.Fatal(err)
			}
			if tok.UserID != "u1" || tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.RefreshToken == "" || tok.ConsentID != "" {
				t.Fatalf("token: %v type %q", tok, tok.TokenType)
			}
			if want := b.clock.Now().Add(time.Hour); !tok.AccessExpiry.Equal(want) {
				t.Errorf("access expiry: got %v, want %v", tok.AccessExpiry, want)
			}
			if !tok.RefreshExpiry.IsZero() {
				t.Errorf("refresh expiry: %v", tok.RefreshExpiry)
			}

			// The token works for data calls and refreshes.
			b.fake.SetData("u1", []byte(`{"n":1}`), "c1")
			var got collect
			res, err := b.client.Pull(context.Background(), "u1", &providertest.Source{Client: b.client, Tok: tok}, "", got.deliver)
			if err != nil || res.Delivered != 1 || string(got.items[0].Data) != `{"n":1}` {
				t.Fatalf("pull: %+v, %v", res, err)
			}
			if _, err := b.client.Refresh(context.Background(), tok); err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if st := b.fake.Stats(); st.Authorizations != 1 || st.Exchanges != 1 || st.Refreshes != 1 || st.Rejected != 0 || st.Unauthorized != 0 {
				t.Fatalf("fake stats: %+v", st)
			}
		})
	}
}

func TestExchangeBringsBackRevokedUser(t *testing.T) {
	b := setup(t, AuthBasic, withAuthURL)
	old := b.fake.Issue("u1")
	b.fake.Revoke("u1")
	if _, err := b.client.Refresh(context.Background(), old); refreshErr(t, err).Class != tokens.Reauth {
		t.Fatalf("revoked refresh: %v", err)
	}
	tok, err := b.client.Exchange(context.Background(), authorizeUser(t, b.client, "u1").request("u1"))
	if err != nil {
		t.Fatal(err)
	}
	b.fake.SetData("u1", []byte("x"), "c1")
	if _, err := b.client.Pull(context.Background(), "u1", &staticSource{tok: tok}, "", func(provider.Item) error { return nil }); err != nil {
		t.Fatalf("pull after reauthorization: %v", err)
	}
}

func exchangeErr(t *testing.T, err error) *provider.Error {
	t.Helper()
	pe := providerErr(t, err)
	if pe.Op != OpExchange {
		t.Fatalf("op %q: %v", pe.Op, err)
	}
	return pe
}

func TestExchangeRejected(t *testing.T) {
	tests := []struct {
		name       string
		style      string
		mod        func(*Config)
		prepare    func(t *testing.T, b bundle, f flow) provider.ExchangeRequest
		wantStatus int
		wantCode   string
	}{
		{name: "wrong verifier", prepare: func(_ *testing.T, _ bundle, f flow) provider.ExchangeRequest {
			f.verifier = xoauth2.GenerateVerifier()
			return f.request("u1")
		}, wantStatus: 400, wantCode: "invalid_grant"},
		{name: "reused code", prepare: func(t *testing.T, b bundle, f flow) provider.ExchangeRequest {
			if _, err := b.client.Exchange(context.Background(), f.request("u1")); err != nil {
				t.Fatal(err)
			}
			return f.request("u1")
		}, wantStatus: 400, wantCode: "invalid_grant"},
		{name: "redirect mismatch", prepare: func(_ *testing.T, _ bundle, f flow) provider.ExchangeRequest {
			r := f.request("u1")
			r.RedirectURI = testRedirect + "?x=1"
			return r
		}, wantStatus: 400, wantCode: "invalid_grant"},
		{name: "expired code", prepare: func(t *testing.T, b bundle, f flow) provider.ExchangeRequest {
			b.clock.Advance(oauth2fake.CodeLifetime)
			return f.request("u1")
		}, wantStatus: 400, wantCode: "invalid_grant"},
		{name: "unknown code", prepare: func(_ *testing.T, _ bundle, f flow) provider.ExchangeRequest {
			f.code = "o2-ac-unknown"
			return f.request("u1")
		}, wantStatus: 400, wantCode: "invalid_grant"},
		{name: "wrong client secret", mod: func(c *Config) { c.ClientSecret += "-wrong" },
			prepare: func(_ *testing.T, _ bundle, f flow) provider.ExchangeRequest { return f.request("u1") }, wantStatus: 401, wantCode: "invalid_client"},
		{name: "wrong auth style", style: AuthPost, mod: func(c *Config) { c.AuthStyle = AuthBasic },
			prepare: func(_ *testing.T, _ bundle, f flow) provider.ExchangeRequest { return f.request("u1") }, wantStatus: 401, wantCode: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			style := tt.style
			if style == "" {
				style = AuthBasic
			}
			b := setup(t, style, func(c *Config) {
				withAuthURL(c)
				if tt.mod != nil {
					tt.mod(c)
				}
			})
			f := authorizeUser(t, b.client, "u1")
			req := tt.prepare(t, b, f)
			tok, err := b.client.Exchange(context.Background(), req)
			pe := exchangeErr(t, err)
			if !pe.Permanent || pe.Status != tt.wantStatus || pe.Code != tt.wantCode || tok != (tokens.Token{}) {
				t.Fatalf("got %v (permanent %v)", err, pe.Permanent)
			}
			if strings.Contains(err.Error(), req.Code) || strings.Contains(err.Error(), req.Verifier) {
				t.Fatal("error quotes the code or the verifier")
			}
		})
	}
}

func TestExchangeOutage(t *testing.T) {
	for _, tt := range []struct {
		status   int
		wantCode string
	}{{503, "temporarily_unavailable"}, {429, ""}, {500, ""}} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			b := setup(t, AuthBasic, withAuthURL)
			f := authorizeUser(t, b.client, "u1")
			b.fake.SetOutage(tt.status, 2*time.Minute)
			_, err := b.client.Exchange(context.Background(), f.request("u1"))
			pe := exchangeErr(t, err)
			if pe.Permanent || pe.Status != tt.status || pe.Code != tt.wantCode || pe.RetryAfter != 2*time.Minute {
				t.Fatalf("got %v (permanent %v, retry-after %v)", err, pe.Permanent, pe.RetryAfter)
			}
			// The outage did not spend the code.
			b.fake.SetOutage(0, 0)
			if _, err := b.client.Exchange(context.Background(), f.request("u1")); err != nil {
				t.Fatalf("after the outage: %v", err)
			}
		})
	}
}

func TestExchangeClassification(t *testing.T) {
	const canary = "body-canary-do-not-leak"
	tests := []struct {
		name          string
		status        int
		contentType   string
		body          string
		retryAfter    string
		wantCode      string
		wantPermanent bool
		wantRA        time.Duration
	}{
		{name: "invalid_grant", status: 400, body: `{"error":"invalid_grant","error_description":"` + canary + `"}`,
			wantCode: "invalid_grant", wantPermanent: true},
		{name: "invalid_request", status: 400, body: `{"error":"invalid_request"}`, wantCode: "invalid_request", wantPermanent: true},
		{name: "invalid_client", status: 401, body: `{"error":"invalid_client"}`, wantCode: "invalid_client", wantPermanent: true},
		{name: "403 html", status: 403, contentType: "text/html", body: canary, wantPermanent: true},
		{name: "form encoded", status: 400, contentType: "application/x-www-form-urlencoded", body: "error=invalid_grant",
			wantCode: "invalid_grant", wantPermanent: true},
		{name: "408", status: 408},
		{name: "429 retry-after", status: 429, retryAfter: "30", wantRA: 30 * time.Second},
		{name: "500", status: 500, contentType: "text/html", body: canary},
		{name: "503", status: 503, body: `{"error":"temporarily_unavailable"}`, retryAfter: testStart.Add(time.Minute).Format(http.TimeFormat),
			wantCode: "temporarily_unavailable", wantRA: time.Minute},
		{name: "error in a 200", status: 200, body: `{"error":"invalid_grant"}`, wantCode: "invalid_grant", wantPermanent: true},
		{name: "server_error in a 200", status: 200, body: `{"error":"server_error"}`, wantCode: "server_error"},
		{name: "200 without access token", status: 200, body: `{"refresh_token":"` + canary + `"}`, wantCode: CodeInvalidResponse},
		{name: "200 not json", status: 200, body: "<html>" + canary, wantCode: CodeInvalidResponse},
		{name: "200 control character", status: 200, body: `{"access_token":"a\r\nX-Evil: 1"}`, wantCode: CodeInvalidResponse},
		{name: "odd code dropped", status: 400, body: `{"error":"` + canary + ` <script>"}`, wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			hdr := map[string]string{}
			if tt.retryAfter != "" {
				hdr["Retry-After"] = tt.retryAfter
			}
			u := tokenServer(t, tt.status, ct, tt.body, hdr)
			c := newTestClient(t, Config{TokenURL: u, ClientID: "app", ClientSecret: "s", Clock: clock.NewFake(testStart)}, &instantTimer{})
			_, err := c.Exchange(context.Background(), provider.ExchangeRequest{User: "u1", Code: "c0", Verifier: "v0", RedirectURI: testRedirect})
			pe := exchangeErr(t, err)
			wantStatus := tt.status
			if tt.wantCode == CodeInvalidResponse {
				wantStatus = 0
			}
			if pe.Permanent != tt.wantPermanent || pe.Code != tt.wantCode || pe.Status != wantStatus || pe.RetryAfter != tt.wantRA {
				t.Fatalf("got permanent %v code %q status %d retry-after %v; want %v %q %d %v",
					pe.Permanent, pe.Code, pe.Status, pe.RetryAfter, tt.wantPermanent, tt.wantCode, wantStatus, tt.wantRA)
			}
			if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "script") {
				t.Fatalf("error quotes the response body: %v", err)
			}
		})
	}
}

func TestExchangeResponseFields(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		wantAccess  time.Duration
		wantRefresh time.Duration
		wantRT      string
	}{
		{name: "refresh expiry", contentType: "application/json",
			body:       `{"access_token":"a1","token_type":"Bearer","expires_in":600,"refresh_token":"r1","refresh_token_expires_in":86400}`,
			wantAccess: 10 * time.Minute, wantRefresh: 24 * time.Hour, wantRT: "r1"},
		{name: "form encoded", contentType: "application/x-www-form-urlencoded",
			body: "access_token=a1&expires_in=60&refresh_token=r1", wantAccess: time.Minute, wantRT: "r1"},
		{name: "no expiry, no refresh token", contentType: "application/json", body: `{"access_token":"a1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tokenServer(t, 200, tt.contentType, tt.body, nil)
			c := newTestClient(t, Config{TokenURL: u, ClientID: "app", Clock: clock.NewFake(testStart)}, &instantTimer{})
			got, err := c.Exchange(context.Background(), provider.ExchangeRequest{User: "u9", Code: "c", Verifier: "v", RedirectURI: testRedirect})
			if err != nil {
				t.Fatal(err)
			}
			if got.UserID != "u9" || got.AccessToken != "a1" || got.RefreshToken != tt.wantRT {
				t.Fatalf("token: %v", got)
			}
			for _, e := range []struct {
				name string
				got  time.Time
				want time.Duration
			}{{"access", got.AccessExpiry, tt.wantAccess}, {"refresh", got.RefreshExpiry, tt.wantRefresh}} {
				if e.want == 0 && !e.got.IsZero() || e.want != 0 && !e.got.Equal(testStart.Add(e.want)) {
					t.Errorf("%s expiry: got %v, want start+%v", e.name, e.got, e.want)
				}
			}
		})
	}
}

func TestExchangeRequestForm(t *testing.T) {
	for _, style := range []string{AuthBasic, AuthPost} {
		t.Run(style, func(t *testing.T) {
			var mu sync.Mutex
			var form url.Values
			var authz string
			u := serve(t, func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				form, _ = url.ParseQuery(string(body))
				authz = r.Header.Get("Authorization")
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"access_token":"a1","token_type":"Bearer"}`)
			})
			c := newTestClient(t, Config{TokenURL: u, ClientID: "app", ClientSecret: "sec", AuthStyle: style,
				Scopes: []string{"read"}}, &instantTimer{})
			if _, err := c.Exchange(context.Background(), provider.ExchangeRequest{User: "u1", Code: "the-code", Verifier: "the-verifier", RedirectURI: testRedirect}); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			want := url.Values{"grant_type": {"authorization_code"}, "code": {"the-code"}, "code_verifier": {"the-verifier"}, "redirect_uri": {testRedirect}}
			if style == AuthPost {
				want.Set("client_id", "app")
				want.Set("client_secret", "sec")
			}
			if form.Encode() != want.Encode() {
				t.Fatalf("form: got %v, want %v", form, want)
			}
			if style == AuthBasic != strings.HasPrefix(authz, "Basic ") {
				t.Fatalf("authorization header present: %v", authz != "")
			}
		})
	}
}

func TestExchangeLocalErrors(t *testing.T) {
	u := serve(t, func(http.ResponseWriter, *http.Request) { t.Error("the token endpoint was called") })
	c := newTestClient(t, Config{TokenURL: u, ClientID: "app"}, &instantTimer{})
	ok := provider.ExchangeRequest{User: "u1", Code: "c", Verifier: "v", RedirectURI: testRedirect}
	for name, mod := range map[string]func(*provider.ExchangeRequest){
		"no code":           func(r *provider.ExchangeRequest) { r.Code = "" },
		"no verifier":       func(r *provider.ExchangeRequest) { r.Verifier = "" },
		"relative redirect": func(r *provider.ExchangeRequest) { r.RedirectURI = "/cb" },
	} {
		req := ok
		mod(&req)
		_, err := c.Exchange(context.Background(), req)
		if pe := exchangeErr(t, err); !pe.Permanent || pe.Status != 0 {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestExchangeNetworkErrors(t *testing.T) {
	req := provider.ExchangeRequest{User: "u1", Code: "c", Verifier: "v", RedirectURI: testRedirect}
	t.Run("connection refused", func(t *testing.T) {
		hs := httptest.NewServer(http.NotFoundHandler())
		u := hs.URL
		hs.Close()
		c := newTestClient(t, Config{TokenURL: u, ClientID: "app"}, &instantTimer{})
		_, err := c.Exchange(context.Background(), req)
		if pe := exchangeErr(t, err); pe.Permanent || pe.Status != 0 || pe.Err == nil || strings.Contains(err.Error(), u) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		u := serve(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		t.Cleanup(func() { close(release) })
		c := newTestClient(t, Config{TokenURL: u, ClientID: "app", HTTPClient: &http.Client{Timeout: 20 * time.Millisecond}}, &instantTimer{})
		_, err := c.Exchange(context.Background(), req)
		if pe := exchangeErr(t, err); pe.Permanent || pe.Code != CodeTimeout {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("context canceled", func(t *testing.T) {
		u := serve(t, func(http.ResponseWriter, *http.Request) {})
		c := newTestClient(t, Config{TokenURL: u, ClientID: "app"}, &instantTimer{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Exchange(ctx, req)
		if pe := exchangeErr(t, err); pe.Permanent || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
}
