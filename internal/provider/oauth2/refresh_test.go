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

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider/oauth2fake"
	"github.com/syncd/syncd/internal/tokens"
)

func refreshErr(t *testing.T, err error) *tokens.RefreshError {
	t.Helper()
	re, ok := errors.AsType[*tokens.RefreshError](err)
	if !ok {
		t.Fatalf("error %v is not a *tokens.RefreshError", err)
	}
	return re
}

func TestRefreshAuthStyles(t *testing.T) {
	for _, style := range []string{AuthBasic, AuthPost} {
		t.Run(style, func(t *testing.T) {
			b := setup(t, style, nil)
			tok := b.fake.Issue("u1")
			tok.ConsentID = "consent-1"
			b.clock.Advance(10 * time.Minute)

			got, err := b.client.Refresh(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if got.UserID != "u1" || got.ConsentID != "consent-1" || got.TokenType != "Bearer" {
				t.Errorf("kept fields: %v consent %q type %q", got, got.ConsentID, got.TokenType)
			}
			if got.AccessToken == "" || got.AccessToken == tok.AccessToken {
				t.Error("access token not renewed")
			}
			if got.RefreshToken == "" || got.RefreshToken == tok.RefreshToken {
				t.Error("refresh token not rotated")
			}
			if want := b.clock.Now().Add(time.Hour); !got.AccessExpiry.Equal(want) {
				t.Errorf("access expiry: got %v, want %v (from the injected clock)", got.AccessExpiry, want)
			}
			if !got.RefreshExpiry.IsZero() {
				t.Errorf("refresh expiry: got %v, want zero", got.RefreshExpiry)
			}
			if st := b.fake.Stats(); st.Refreshes != 1 || st.Rejected != 0 {
				t.Fatalf("fake stats: %+v", st)
			}
		})
	}
}

func TestRefreshWrongStyleIsConfig(t *testing.T) {
	b := setup(t, AuthPost, func(c *Config) { c.AuthStyle = AuthBasic })
	_, err := b.client.Refresh(context.Background(), b.fake.Issue("u1"))
	if re := refreshErr(t, err); re.Class != tokens.Config || re.Code != "invalid_client" || re.Status != 401 {
		t.Fatalf("got %v", err)
	}
}

func TestRefreshKeepsRefreshToken(t *testing.T) {
	clk := clock.NewFake(testStart)
	fake := oauth2fake.New(oauth2fake.Options{ClientID: testClientID, ClientSecret: testSecret, KeepRefreshToken: true, Clock: clk})
	u := serve(t, fake.Handler().ServeHTTP)
	c := newTestClient(t, Config{TokenURL: u + "/token", ClientID: testClientID, ClientSecret: testSecret, Clock: clk}, &instantTimer{})

	tok := fake.Issue("u1")
	tok.RefreshExpiry = testStart.Add(90 * 24 * time.Hour)
	got, err := c.Refresh(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.RefreshToken != tok.RefreshToken {
		t.Fatal("old refresh token not kept")
	}
	if !got.RefreshExpiry.Equal(tok.RefreshExpiry) {
		t.Fatalf("refresh expiry: got %v, want the old %v", got.RefreshExpiry, tok.RefreshExpiry)
	}
	if got.AccessToken == tok.AccessToken {
		t.Fatal("access token not renewed")
	}
}

// tokenServer answers the token endpoint with a fixed response.
func tokenServer(t *testing.T, status int, contentType, body string, header map[string]string) string {
	t.Helper()
	return serve(t, func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

func TestRefreshResponseFields(t *testing.T) {
	tests := []struct {
		name          string
		contentType   string
		body          string
		wantAccess    time.Duration // 0: zero expiry
		wantRefresh   time.Duration // 0: zero expiry
		wantRefreshTo string
	}{
		{name: "json with refresh expiry", contentType: "application/json",
			body:       `{"access_token":"a1","token_type":"Bearer","expires_in":600,"refresh_token":"r2","refresh_token_expires_in":86400}`,
			wantAccess: 10 * time.Minute, wantRefresh: 24 * time.Hour, wantRefreshTo: "r2"},
		{name: "json string lifetimes", contentType: "application/json",
			body:       `{"access_token":"a1","expires_in":"600","refresh_token_expires_in":"3600"}`,
			wantAccess: 10 * time.Minute, wantRefresh: time.Hour, wantRefreshTo: "r-old"},
		{name: "json without expiry", contentType: "application/json",
			body: `{"access_token":"a1","refresh_token":"r2"}`, wantRefreshTo: "r2"},
		{name: "form encoded", contentType: "application/x-www-form-urlencoded",
			body:       "access_token=a1&expires_in=600&refresh_token=r2&refresh_token_expires_in=7200",
			wantAccess: 10 * time.Minute, wantRefresh: 2 * time.Hour, wantRefreshTo: "r2"},
		{name: "negative lifetime ignored", contentType: "application/json",
			body: `{"access_token":"a1","expires_in":-5,"refresh_token_expires_in":-1}`, wantRefreshTo: "r-old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tokenServer(t, 200, tt.contentType, tt.body, nil)
			clk := clock.NewFake(testStart)
			c := newTestClient(t, Config{TokenURL: u, ClientID: "app", ClientSecret: "s", Clock: clk}, &instantTimer{})
			got, err := c.Refresh(context.Background(), tokens.Token{UserID: "u1", AccessToken: "a0", RefreshToken: "r-old"})
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessToken != "a1" || got.RefreshToken != tt.wantRefreshTo {
				t.Errorf("tokens: access ok %v, refresh ok %v", got.AccessToken == "a1", got.RefreshToken == tt.wantRefreshTo)
			}
			check := func(name string, got time.Time, want time.Duration) {
				t.Helper()
				if want == 0 && !got.IsZero() || want != 0 && !got.Equal(testStart.Add(want)) {
					t.Errorf("%s: got %v, want start+%v", name, got, want)
				}
			}
			check("access expiry", got.AccessExpiry, tt.wantAccess)
			check("refresh expiry", got.RefreshExpiry, tt.wantRefresh)
		})
	}
}

func TestRefreshClassification(t *testing.T) {
	const canary = "body-canary-do-not-leak"
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		retryAfter  string
		wantClass   tokens.Class
		wantCode    string
		wantStatus  int
		wantRA      time.Duration
	}{
		{name: "invalid_grant", status: 400, body: `{"error":"invalid_grant","error_description":"` + canary + `"}`,
			wantClass: tokens.Reauth, wantCode: "invalid_grant", wantStatus: 400},
		{name: "invalid_client", status: 401, body: `{"error":"invalid_client"}`,
			wantClass: tokens.Config, wantCode: "invalid_client", wantStatus: 401},
		{name: "unauthorized_client", status: 400, body: `{"error":"unauthorized_client"}`,
			wantClass: tokens.Config, wantCode: "unauthorized_client", wantStatus: 400},
		{name: "unsupported_grant_type", status: 400, body: `{"error":"unsupported_grant_type"}`,
			wantClass: tokens.Config, wantCode: "unsupported_grant_type", wantStatus: 400},
		{name: "invalid_request is transient", status: 400, body: `{"error":"invalid_request"}`,
			wantClass: tokens.Transient, wantCode: "invalid_request", wantStatus: 400},
		{name: "form encoded error", status: 400, contentType: "application/x-www-form-urlencoded", body: "error=invalid_grant",
			wantClass: tokens.Reauth, wantCode: "invalid_grant", wantStatus: 400},
		{name: "4xx without code", status: 403, contentType: "text/html", body: "<html>" + canary + "</html>",
			wantClass: tokens.Transient, wantCode: "http_403", wantStatus: 403},
		{name: "503 retry-after seconds", status: 503, body: `{"error":"temporarily_unavailable"}`, retryAfter: "120",
			wantClass: tokens.Transient, wantCode: "temporarily_unavailable", wantStatus: 503, wantRA: 2 * time.Minute},
		{name: "429 retry-after date", status: 429, body: "", retryAfter: testStart.Add(90 * time.Second).Format(http.TimeFormat),
			wantClass: tokens.Transient, wantCode: "http_429", wantStatus: 429, wantRA: 90 * time.Second},
		{name: "429 retry-after in the past", status: 429, retryAfter: testStart.Add(-time.Minute).Format(http.TimeFormat),
			wantClass: tokens.Transient, wantCode: "http_429", wantStatus: 429},
		{name: "429 retry-after garbage", status: 429, retryAfter: "soon",
			wantClass: tokens.Transient, wantCode: "http_429", wantStatus: 429},
		{name: "500 html", status: 500, contentType: "text/html", body: canary,
			wantClass: tokens.Transient, wantCode: "http_500", wantStatus: 500},
		{name: "error in a 200", status: 200, body: `{"error":"invalid_grant"}`,
			wantClass: tokens.Reauth, wantCode: "invalid_grant", wantStatus: 200},
		{name: "code with odd characters dropped", status: 400, body: `{"error":"` + canary + ` <script>"}`,
			wantClass: tokens.Transient, wantCode: "http_400", wantStatus: 400},
		{name: "200 without access token", status: 200, body: `{"token_type":"Bearer","refresh_token":"` + canary + `"}`,
			wantClass: tokens.Transient, wantCode: CodeInvalidResponse},
		{name: "200 not json", status: 200, body: "<html>" + canary,
			wantClass: tokens.Transient, wantCode: CodeInvalidResponse},
		{name: "200 control character in token", status: 200, body: `{"access_token":"a\r\nX-Evil: 1"}`,
			wantClass: tokens.Transient, wantCode: CodeInvalidResponse},
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
			_, err := c.Refresh(context.Background(), tokens.Token{UserID: "u1", AccessToken: "a0", RefreshToken: "r0"})
			re := refreshErr(t, err)
			if re.Class != tt.wantClass || re.Code != tt.wantCode || re.Status != tt.wantStatus || re.RetryAfter != tt.wantRA {
				t.Fatalf("got class %v code %q status %d retry-after %v; want %v %q %d %v",
					re.Class, re.Code, re.Status, re.RetryAfter, tt.wantClass, tt.wantCode, tt.wantStatus, tt.wantRA)
			}
			if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "script") {
				t.Fatalf("error quotes the response body: %v", err)
			}
		})
	}
}

func TestRefreshNetworkErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		hs := httptest.NewServer(http.NotFoundHandler())
		u := hs.URL
		hs.Close() // the port now refuses connections
		c := newTestClient(t, Config{TokenURL: u, ClientID: "app"}, &instantTimer{})
		_, err := c.Refresh(context.Background(), tokens.Token{RefreshToken: "r0"})
		re := refreshErr(t, err)
		if re.Class != tokens.Transient || re.Code != "network" || re.Status != 0 {
			t.Fatalf("got %v", err)
		}
		if strings.Contains(err.Error(), u) {
			t.Errorf("error quotes the URL: %v", err)
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
		_, err := c.Refresh(context.Background(), tokens.Token{RefreshToken: "r0"})
		if re := refreshErr(t, err); re.Class != tokens.Transient || re.Code != CodeTimeout {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("context canceled", func(t *testing.T) {
		u := serve(t, func(http.ResponseWriter, *http.Request) {})
		c := newTestClient(t, Config{TokenURL: u, ClientID: "app"}, &instantTimer{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Refresh(ctx, tokens.Token{RefreshToken: "r0"})
		if re := refreshErr(t, err); re.Class != tokens.Transient || !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no refresh token", func(t *testing.T) {
		c := newTestClient(t, Config{TokenURL: "http://127.0.0.1:1/token", ClientID: "app"}, &instantTimer{})
		_, err := c.Refresh(context.Background(), tokens.Token{UserID: "u1", AccessToken: "a"})
		if re := refreshErr(t, err); re.Class != tokens.Reauth || re.Code != CodeNoRefreshToken {
			t.Fatalf("got %v", err)
		}
	})
}

func TestRefreshScopes(t *testing.T) {
	for _, tt := range []struct {
		name   string
		scopes []string
		want   []string // nil: no scope parameter
	}{
		{name: "unset", scopes: nil, want: nil},
		{name: "set", scopes: []string{"read", "write"}, want: []string{"read write"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(testStart)
			fake := oauth2fake.New(oauth2fake.Options{ClientID: testClientID, ClientSecret: testSecret, AuthStyle: AuthPost, Clock: clk})
			var mu sync.Mutex
			var forms []url.Values
			u := serve(t, func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				form, _ := url.ParseQuery(string(body))
				mu.Lock()
				forms = append(forms, form)
				mu.Unlock()
				r.Body = io.NopCloser(strings.NewReader(string(body)))
				fake.Handler().ServeHTTP(w, r)
			})
			c := newTestClient(t, Config{TokenURL: u + "/token", ClientID: testClientID, ClientSecret: testSecret,
				AuthStyle: AuthPost, Scopes: tt.scopes, Clock: clk}, &instantTimer{})
			if _, err := c.Refresh(context.Background(), fake.Issue("u1")); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(forms) != 1 {
				t.Fatalf("%d token requests", len(forms))
			}
			if got := forms[0]["scope"]; strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("scope: got %q, want %q", got, tt.want)
			}
			if forms[0].Get("grant_type") != "refresh_token" || forms[0].Get("client_id") != testClientID {
				t.Fatalf("form lost parameters: grant_type %q", forms[0].Get("grant_type"))
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	tests := []struct {
		in     any
		want   time.Duration
		wantOK bool
	}{
		{nil, 0, false},
		{float64(3600), time.Hour, true},
		{int64(60), time.Minute, true},
		{"90", 90 * time.Second, true},
		{"x", 0, false},
		{float64(0), 0, false},
		{float64(-1), 0, false},
		{float64(1e12), 0, false},
		{true, 0, false},
	}
	for _, tt := range tests {
		got, ok := lifetime(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("lifetime(%v): got %v %v, want %v %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
