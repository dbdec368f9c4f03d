package oauth2

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider/oauth2fake"
)

const (
	testClientID = "syncd-app"
	testSecret   = "client-s3cret-value"
)

var testStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// bundle is a Client wired to an oauth2fake server.
type bundle struct {
	client *Client
	fake   *oauth2fake.Server
	url    string
	clock  *clock.Fake
	logs   *syncBuffer
	timer  *instantTimer
}

// setup starts a fake (basic auth unless style says otherwise) and a
// client for it; mod adjusts the client config before New.
func setup(t *testing.T, style string, mod func(*Config)) bundle {
	t.Helper()
	clk := clock.NewFake(testStart)
	fake := oauth2fake.New(oauth2fake.Options{
		ClientID: testClientID, ClientSecret: testSecret, AuthStyle: style, Clock: clk, Seed: 42,
	})
	hs := httptest.NewServer(fake.Handler())
	t.Cleanup(hs.Close)
	b := bundle{fake: fake, url: hs.URL, clock: clk, logs: &syncBuffer{}, timer: &instantTimer{}}
	cfg := Config{
		TokenURL:     hs.URL + "/token",
		ClientID:     testClientID,
		ClientSecret: testSecret,
		AuthStyle:    style,
		PullURL:      hs.URL + "/data/{{.User}}?since={{.Cursor}}",
		PushURL:      hs.URL + "/push/{{.User}}",
		Clock:        clk,
		Logger:       zerolog.New(b.logs).Level(zerolog.DebugLevel),
	}
	if mod != nil {
		mod(&cfg)
	}
	b.client = newTestClient(t, cfg, b.timer)
	return b
}

// newTestClient builds a client whose backoff waits are recorded, not
// slept.
func newTestClient(t *testing.T, cfg Config, timer *instantTimer) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.newTimer = func() backoff.Timer { return timer }
	return c
}

// serve starts a server with handler h.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs.URL
}

// syncBuffer collects log output from any goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// instantTimer is a backoff.Timer that fires at once and records the
// waits it was asked for. onStart, if set, runs at each Start instead of
// firing (to cancel a context mid-wait).
type instantTimer struct {
	mu      sync.Mutex
	waits   []time.Duration
	c       chan time.Time
	onStart func()
}

func (it *instantTimer) Start(d time.Duration) {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.waits = append(it.waits, d)
	if it.c == nil {
		it.c = make(chan time.Time, 1)
	}
	if it.onStart != nil {
		it.onStart()
		return
	}
	it.c <- time.Time{}
}

func (it *instantTimer) Stop() {}

func (it *instantTimer) C() <-chan time.Time {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.c == nil {
		it.c = make(chan time.Time, 1)
	}
	return it.c
}

func (it *instantTimer) Waits() []time.Duration {
	it.mu.Lock()
	defer it.mu.Unlock()
	return append([]time.Duration(nil), it.waits...)
}

func TestNew(t *testing.T) {
	valid := func() Config {
		return Config{
			TokenURL: "https://auth.example.com/token",
			ClientID: "app",
			PullURL:  "https://api.example.com/v1/{{.User}}/export?since={{.Cursor}}",
			PushURL:  "https://api.example.com/v1/{{.User}}/import",
		}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; "" for success
	}{
		{name: "valid", mod: func(*Config) {}},
		{name: "pull and push optional", mod: func(c *Config) { c.PullURL, c.PushURL = "", "" }},
		{name: "post", mod: func(c *Config) { c.AuthStyle = AuthPost }},
		{name: "token url missing", mod: func(c *Config) { c.TokenURL = "" }, want: `oauth2: TokenURL "": required`},
		{name: "token url relative", mod: func(c *Config) { c.TokenURL = "/token" }, want: `oauth2: TokenURL "/token": must be an absolute http or https URL`},
		{name: "token url scheme", mod: func(c *Config) { c.TokenURL = "ftp://x/token" }, want: `TokenURL "ftp://x/token": must be an absolute`},
		{name: "token url malformed", mod: func(c *Config) { c.TokenURL = "http://[::1" }, want: `TokenURL "http://[::1": not a valid URL`},
		{name: "client id", mod: func(c *Config) { c.ClientID = "" }, want: "oauth2: ClientID: required"},
		{name: "auth style", mod: func(c *Config) { c.AuthStyle = "jwt" }, want: `oauth2: AuthStyle "jwt": want basic or post`},
		{name: "scope with space", mod: func(c *Config) { c.Scopes = []string{"read write"} }, want: `oauth2: Scopes[0] "read write"`},
		{name: "pull template syntax", mod: func(c *Config) { c.PullURL = "https://x/{{.User" }, want: `oauth2: PullURL "https://x/{{.User": template: PullURL:1: unclosed action`},
		{name: "pull template field", mod: func(c *Config) { c.PullURL = "https://x/{{.Since}}" }, want: `oauth2: PullURL "https://x/{{.Since}}": template: PullURL:1:12: executing "PullURL" at <.Since>: can't evaluate field Since`},
		{name: "pull template relative", mod: func(c *Config) { c.PullURL = "/v1/{{.User}}" }, want: `oauth2: PullURL "/v1/{{.User}}": rendered URL: must be an absolute http or https URL`},
		{name: "auth url", mod: func(c *Config) {
			c.AuthURL = "https://auth.example.com/authorize?tenant=1"
			c.AuthParams = map[string]string{"prompt": "consent", "access_type": "offline"}
		}},
		{name: "auth url relative", mod: func(c *Config) { c.AuthURL = "/authorize" }, want: `oauth2: AuthURL "/authorize": must be an absolute http or https URL`},
		{name: "auth param reserved", mod: func(c *Config) { c.AuthParams = map[string]string{"prompt": "consent", "state": "x"} }, want: `oauth2: AuthParams["state"]: set by the client itself`},
		{name: "auth param empty name", mod: func(c *Config) { c.AuthParams = map[string]string{"": "x"} }, want: `oauth2: AuthParams: empty parameter name`},
		{name: "push has no cursor", mod: func(c *Config) { c.PushURL = "https://x/{{.User}}?c={{.Cursor}}" }, want: `oauth2: PushURL "https://x/{{.User}}?c={{.Cursor}}": template: PushURL:1:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mod(&cfg)
			c, err := New(cfg)
			if tt.want == "" {
				if err != nil || c == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(Config{TokenURL: "https://auth.example.com/token", ClientID: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if c.cursorHeader != DefaultCursorHeader || c.retries != DefaultGetRetries || c.http.Timeout != DefaultTimeout ||
		c.clock == nil || c.tokenHTTP != c.http || c.pullURL != nil || c.pushURL != nil {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = New(Config{TokenURL: "https://a/token", ClientID: "app", GetRetries: -1, Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.retries != 0 || c.tokenHTTP == c.http {
		t.Fatalf("retries %d, scoped token client %v", c.retries, c.tokenHTTP != c.http)
	}
}
