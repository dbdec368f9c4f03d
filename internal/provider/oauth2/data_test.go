package oauth2

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/provider/providertest"
	"github.com/syncd/syncd/internal/tokens"
)

// collect is a deliver callback that keeps the items.
type collect struct{ items []provider.Item }

func (c *collect) deliver(it provider.Item) error {
	c.items = append(c.items, it)
	return nil
}

func providerErr(t *testing.T, err error) *provider.Error {
	t.Helper()
	pe, ok := errors.AsType[*provider.Error](err)
	if !ok {
		t.Fatalf("error %v is not a *provider.Error", err)
	}
	return pe
}

// dataServer counts requests and answers each with the next of answers
// (the last one repeats).
type dataServer struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter, r *http.Request)
	reqs    []*http.Request
	bodies  [][]byte
}

func (d *dataServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d.mu.Lock()
	n := len(d.reqs)
	d.reqs = append(d.reqs, r)
	d.bodies = append(d.bodies, body)
	a := d.answers[min(n, len(d.answers)-1)]
	d.mu.Unlock()
	a(w, r)
}

func (d *dataServer) calls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.reqs)
}

func status(code int, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
	}
}

func ok(body string, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, body)
	}
}

// dataSetup is a client against a scripted data server; the token
// endpoint is never called.
func dataSetup(t *testing.T, mod func(*Config), answers ...func(http.ResponseWriter, *http.Request)) (*Client, *dataServer, *instantTimer) {
	t.Helper()
	ds := &dataServer{answers: answers}
	u := serve(t, ds.ServeHTTP)
	cfg := Config{
		TokenURL: u + "/token",
		ClientID: "app",
		PullURL:  u + "/data/{{.User}}?since={{.Cursor}}",
		PushURL:  u + "/push/{{.User}}",
		Clock:    clock.NewFake(testStart),
	}
	if mod != nil {
		mod(&cfg)
	}
	timer := &instantTimer{}
	return newTestClient(t, cfg, timer), ds, timer
}

// staticSource hands out one token and fails Rejected with err.
type staticSource struct {
	tok     tokens.Token
	err     error
	rejects int
}

func (s *staticSource) Token(context.Context) (tokens.Token, error) { return s.tok, nil }
func (s *staticSource) Rejected(context.Context, tokens.Token) (tokens.Token, error) {
	s.rejects++
	return tokens.Token{}, s.err
}

func TestPullCursor(t *testing.T) {
	ctx := context.Background()
	b := setup(t, AuthBasic, nil)
	src := &providertest.Source{Client: b.client, Tok: b.fake.Issue("u1")}
	b.fake.SetData("u1", []byte(`{"n":1}`), "c1")

	var got collect
	res, err := b.client.Pull(ctx, "u1", src, "", got.deliver)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cursor != "c1" || res.Delivered != 1 || res.Status != StatusCompleted || len(got.items) != 1 {
		t.Fatalf("first pull: %+v, %d items", res, len(got.items))
	}
	it := got.items[0]
	if string(it.Data) != `{"n":1}` || it.MimeType != "application/json" || !strings.HasPrefix(it.Name, "initial-") ||
		!it.UpdatedAt.Equal(testStart) {
		t.Fatalf("item: name %q mime %q data %q updated %v", it.Name, it.MimeType, it.Data, it.UpdatedAt)
	}

	res, err = b.client.Pull(ctx, "u1", src, "c1", got.deliver)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cursor != "c1" || res.Delivered != 0 || res.Status != StatusCompleted || len(got.items) != 1 {
		t.Fatalf("204 pull: %+v, %d items", res, len(got.items))
	}

	b.fake.SetData("u1", []byte(`{"n":2}`), "c2")
	res, err = b.client.Pull(ctx, "u1", src, "c1", got.deliver)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cursor != "c2" || len(got.items) != 2 || !strings.HasPrefix(got.items[1].Name, "c1-") {
		t.Fatalf("third pull: %+v, items %d", res, len(got.items))
	}
	// Same request, same data: same name.
	res2, err := b.client.Pull(ctx, "u1", src, "c1", got.deliver)
	if err != nil || res2.Cursor != "c2" || got.items[2].Name != got.items[1].Name {
		t.Fatalf("repeat: %v %+v names %q %q", err, res2, got.items[2].Name, got.items[1].Name)
	}
}

func TestPullCursorFallbacks(t *testing.T) {
	ctx := context.Background()
	t.Run("last modified", func(t *testing.T) {
		b := setup(t, AuthBasic, nil)
		src := &providertest.Source{Client: b.client, Tok: b.fake.Issue("u1")}
		b.fake.SetData("u1", []byte("hello"), "")
		b.clock.Advance(time.Hour)
		var got collect
		res, err := b.client.Pull(ctx, "u1", src, "", got.deliver)
		if err != nil {
			t.Fatal(err)
		}
		if want := testStart.Format(time.RFC3339); res.Cursor != want || !got.items[0].UpdatedAt.Equal(testStart) {
			t.Fatalf("cursor %q, updated %v; want %q", res.Cursor, got.items[0].UpdatedAt, want)
		}
		res, err = b.client.Pull(ctx, "u1", src, res.Cursor, got.deliver)
		if err != nil || res.Delivered != 0 {
			t.Fatalf("second pull: %v %+v", err, res)
		}
	})
	t.Run("request time", func(t *testing.T) {
		c, _, _ := dataSetup(t, nil, ok("x"))
		var got collect
		res, err := c.Pull(ctx, "u1", &staticSource{tok: tokens.Token{AccessToken: "a"}}, "", got.deliver)
		if err != nil {
			t.Fatal(err)
		}
		if want := testStart.Format(time.RFC3339); res.Cursor != want {
			t.Fatalf("cursor %q, want %q", res.Cursor, want)
		}
	})
	t.Run("custom header", func(t *testing.T) {
		c, _, _ := dataSetup(t, func(c *Config) { c.CursorHeader = "X-Page" }, ok("x", "X-Page", "p2", "X-Next-Cursor", "no"))
		var got collect
		res, err := c.Pull(ctx, "u1", &staticSource{tok: tokens.Token{AccessToken: "a"}}, "", got.deliver)
		if err != nil || res.Cursor != "p2" {
			t.Fatalf("got %v %+v", err, res)
		}
	})
}

func TestPullRendersURL(t *testing.T) {
	c, ds, _ := dataSetup(t, nil, status(http.StatusNoContent))
	const user, cursor = "a/b+c@d", "2026-01-01T00:00:00+01:00&x=1"
	src := &staticSource{tok: tokens.Token{AccessToken: "at-1"}}
	if _, err := c.Pull(context.Background(), user, src, cursor, (&collect{}).deliver); err != nil {
		t.Fatal(err)
	}
	r := ds.reqs[0]
	if got, want := r.URL.EscapedPath(), "/data/"+url.QueryEscape(user); got != want {
		t.Errorf("path: got %q, want %q", got, want)
	}
	if got := r.URL.Query(); got.Get("since") != cursor || len(got) != 1 {
		t.Errorf("query: got %v", got)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer at-1" {
		t.Errorf("Authorization: got %q", got)
	}
}

func TestPull401RefreshesOnce(t *testing.T) {
	t.Run("against the fake", func(t *testing.T) {
		b := setup(t, AuthBasic, nil)
		src := &providertest.Source{Client: b.client, Tok: b.fake.Issue("u1")}
		b.fake.SetData("u1", []byte("d"), "c1")
		b.fake.InvalidateAccess("u1")
		var got collect
		res, err := b.client.Pull(context.Background(), "u1", src, "", got.deliver)
		if err != nil {
			t.Fatal(err)
		}
		if src.Rejects != 1 || src.Refreshs != 1 || res.Delivered != 1 {
			t.Fatalf("rejects %d refreshes %d result %+v", src.Rejects, src.Refreshs, res)
		}
		if st := b.fake.Stats(); st.DataCalls != 2 || st.Unauthorized != 1 || st.Refreshes != 1 {
			t.Fatalf("fake stats: %+v", st)
		}
	})
	t.Run("second 401 is an error", func(t *testing.T) {
		b := setup(t, AuthBasic, nil)
		src := &providertest.Source{Client: b.client, Tok: b.fake.Issue("u1")}
		ds := &dataServer{answers: []func(http.ResponseWriter, *http.Request){
			status(401, "WWW-Authenticate", `Bearer realm="x", error="invalid_token", error_description="expired"`),
		}}
		u := serve(t, ds.ServeHTTP)
		c := newTestClient(t, Config{TokenURL: b.url + "/token", ClientID: testClientID, ClientSecret: testSecret,
			PullURL: u + "/{{.User}}", Clock: b.clock}, b.timer)
		src.Client = c
		_, err := c.Pull(context.Background(), "u1", src, "", (&collect{}).deliver)
		pe := providerErr(t, err)
		if pe.Op != OpPull || pe.Status != 401 || pe.Code != "invalid_token" || pe.Permanent {
			t.Fatalf("got %+v", pe)
		}
		if src.Rejects != 1 || ds.calls() != 2 {
			t.Fatalf("rejects %d, calls %d; want 1 and 2", src.Rejects, ds.calls())
		}
	})
	t.Run("rejected error is returned as is", func(t *testing.T) {
		c, ds, _ := dataSetup(t, nil, status(401))
		src := &staticSource{tok: tokens.Token{AccessToken: "a"}, err: tokens.ErrReauthRequired}
		_, err := c.Pull(context.Background(), "u1", src, "", (&collect{}).deliver)
		if !errors.Is(err, tokens.ErrReauthRequired) {
			t.Fatalf("got %v", err)
		}
		if _, ok := errors.AsType[*provider.Error](err); ok {
			t.Fatal("token trouble wrapped in a *provider.Error")
		}
		if ds.calls() != 1 {
			t.Fatalf("calls %d", ds.calls())
		}
	})
}

func TestPullRetries(t *testing.T) {
	src := func() *staticSource { return &staticSource{tok: tokens.Token{AccessToken: "a"}} }
	t.Run("recovers", func(t *testing.T) {
		c, ds, timer := dataSetup(t, nil, status(503, "Retry-After", "3"), status(429), ok("x"))
		res, err := c.Pull(context.Background(), "u1", src(), "", (&collect{}).deliver)
		if err != nil || res.Delivered != 1 {
			t.Fatalf("got %v %+v", err, res)
		}
		waits := timer.Waits()
		if ds.calls() != 3 || len(waits) != 2 || waits[0] < 3*time.Second || waits[1] >= 3*time.Second {
			t.Fatalf("calls %d, waits %v", ds.calls(), waits)
		}
	})
	t.Run("gives up", func(t *testing.T) {
		c, ds, _ := dataSetup(t, nil, status(502, "Content-Type", "application/json"))
		_, err := c.Pull(context.Background(), "u1", src(), "", (&collect{}).deliver)
		pe := providerErr(t, err)
		if pe.Status != 502 || pe.Permanent || ds.calls() != 1+DefaultGetRetries {
			t.Fatalf("got %+v after %d calls", pe, ds.calls())
		}
	})
	t.Run("configured retries", func(t *testing.T) {
		c, ds, _ := dataSetup(t, func(c *Config) { c.GetRetries = 4 }, status(500))
		_, _ = c.Pull(context.Background(), "u1", src(), "", (&collect{}).deliver)
		if ds.calls() != 5 {
			t.Fatalf("calls %d, want 5", ds.calls())
		}
	})
	t.Run("disabled", func(t *testing.T) {
		c, ds, _ := dataSetup(t, func(c *Config) { c.GetRetries = -1 }, status(500))
		_, _ = c.Pull(context.Background(), "u1", src(), "", (&collect{}).deliver)
		if ds.calls() != 1 {
			t.Fatalf("calls %d, want 1", ds.calls())
		}
	})
	t.Run("long retry-after is not waited for", func(t *testing.T) {
		c, ds, timer := dataSetup(t, nil, status(429, "Retry-After", "120"))
		_, err := c.Pull(context.Background(), "u1", src(), "", (&collect{}).deliver)
		pe := providerErr(t, err)
		if pe.Status != 429 || pe.RetryAfter != 2*time.Minute || pe.Permanent || ds.calls() != 1 || len(timer.Waits()) != 0 {
			t.Fatalf("got %+v after %d calls", pe, ds.calls())
		}
	})
	t.Run("4xx is permanent and not retried", func(t *testing.T) {
		c, ds, _ := dataSetup(t, nil, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			_, _ = io.WriteString(w, `{"error":"not_found","message":"secret-ish body"}`)
		})
		_, err := c.Pull(context.Background(), "u1", src(), "", (&collect{}).deliver)
		pe := providerErr(t, err)
		if pe.Status != 404 || pe.Code != "not_found" || !pe.Permanent || ds.calls() != 1 {
			t.Fatalf("got %+v after %d calls", pe, ds.calls())
		}
		if strings.Contains(err.Error(), "secret-ish") {
			t.Fatalf("error quotes the body: %v", err)
		}
	})
	t.Run("network error", func(t *testing.T) {
		c, ds, _ := dataSetup(t, nil, func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		})
		_, err := c.Pull(context.Background(), "u1", src(), "", (&collect{}).deliver)
		pe := providerErr(t, err)
		if pe.Status != 0 || pe.Permanent || pe.Err == nil || ds.calls() != 1+DefaultGetRetries {
			t.Fatalf("got %+v after %d calls", pe, ds.calls())
		}
		if strings.Contains(err.Error(), "http://") {
			t.Fatalf("error quotes the URL: %v", err)
		}
	})
	t.Run("context canceled during a wait", func(t *testing.T) {
		c, ds, timer := dataSetup(t, nil, status(503))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		timer.onStart = cancel
		_, err := c.Pull(ctx, "u1", src(), "", (&collect{}).deliver)
		pe := providerErr(t, err)
		if !errors.Is(err, context.Canceled) || ds.calls() != 1 {
			t.Fatalf("got %+v after %d calls", pe, ds.calls())
		}
	})
}

func TestPullFailures(t *testing.T) {
	src := &staticSource{tok: tokens.Token{AccessToken: "a"}}
	t.Run("too large", func(t *testing.T) {
		c, ds, _ := dataSetup(t, nil, ok("0123456789A"))
		c.maxItem = 10
		_, err := c.Pull(context.Background(), "u1", src, "", (&collect{}).deliver)
		pe := providerErr(t, err)
		if pe.Code != CodeTooLarge || !pe.Permanent || ds.calls() != 1 {
			t.Fatalf("got %+v after %d calls", pe, ds.calls())
		}
	})
	t.Run("deliver error", func(t *testing.T) {
		c, _, _ := dataSetup(t, nil, ok("x", "X-Next-Cursor", "c9"))
		boom := errors.New("disk full")
		res, err := c.Pull(context.Background(), "u1", src, "c0", func(provider.Item) error { return boom })
		if !errors.Is(err, boom) || res.Cursor != "" || res.Delivered != 0 {
			t.Fatalf("got %v %+v", err, res)
		}
	})
	t.Run("unexpected 2xx", func(t *testing.T) {
		c, _, _ := dataSetup(t, nil, status(http.StatusAccepted))
		_, err := c.Pull(context.Background(), "u1", src, "", (&collect{}).deliver)
		if pe := providerErr(t, err); pe.Status != 202 || pe.Permanent {
			t.Fatalf("got %+v", pe)
		}
	})
	t.Run("not configured", func(t *testing.T) {
		c, _, _ := dataSetup(t, func(c *Config) { c.PullURL, c.PushURL = "", "" })
		_, err := c.Pull(context.Background(), "u1", src, "", (&collect{}).deliver)
		if pe := providerErr(t, err); !errors.Is(err, ErrNotConfigured) || !pe.Permanent {
			t.Fatalf("pull: %v", err)
		}
		err = c.Push(context.Background(), "u1", src, provider.PushItem{ID: "i"})
		if pe := providerErr(t, err); !errors.Is(err, ErrNotConfigured) || !pe.Permanent {
			t.Fatalf("push: %v", err)
		}
	})
}

func TestPush(t *testing.T) {
	ctx := context.Background()
	t.Run("headers and body", func(t *testing.T) {
		b := setup(t, AuthBasic, nil)
		src := &providertest.Source{Client: b.client, Tok: b.fake.Issue("u1")}
		item := provider.PushItem{ID: "item-1", Data: []byte("payload"), MimeType: "text/csv; charset=utf-8",
			Tags: []string{"t1", "t2"}, Accounts: []string{"acc-1"}}
		if err := b.client.Push(ctx, "u1", src, item); err != nil {
			t.Fatal(err)
		}
		if err := b.client.Push(ctx, "u1", src, provider.PushItem{ID: "item-2", Data: []byte{0, 1}}); err != nil {
			t.Fatal(err)
		}
		got := b.fake.Pushes("u1")
		if len(got) != 2 {
			t.Fatalf("%d pushes", len(got))
		}
		p := got[0]
		if p.ID != "item-1" || string(p.Data) != "payload" || p.MimeType != "text/csv; charset=utf-8" ||
			!slices.Equal(p.Tags, item.Tags) || !slices.Equal(p.Accounts, item.Accounts) {
			t.Fatalf("push: %+v", p)
		}
		if p := got[1]; p.MimeType != "application/octet-stream" || p.Tags != nil || p.Accounts != nil || string(p.Data) != "\x00\x01" {
			t.Fatalf("default push: %+v", p)
		}
	})
	t.Run("401 refreshes once", func(t *testing.T) {
		b := setup(t, AuthBasic, nil)
		src := &providertest.Source{Client: b.client, Tok: b.fake.Issue("u1")}
		b.fake.InvalidateAccess("u1")
		if err := b.client.Push(ctx, "u1", src, provider.PushItem{ID: "i1", Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if src.Rejects != 1 || src.Refreshs != 1 || len(b.fake.Pushes("u1")) != 1 {
			t.Fatalf("rejects %d refreshes %d pushes %d", src.Rejects, src.Refreshs, len(b.fake.Pushes("u1")))
		}
	})
	t.Run("failures are not retried", func(t *testing.T) {
		for _, tt := range []struct {
			status    int
			permanent bool
		}{{503, false}, {429, false}, {408, false}, {400, true}, {413, true}, {409, true}} {
			c, ds, _ := dataSetup(t, nil, status(tt.status, "Retry-After", "5"))
			err := c.Push(ctx, "u1", &staticSource{tok: tokens.Token{AccessToken: "a"}}, provider.PushItem{ID: "i", Data: []byte("x")})
			pe := providerErr(t, err)
			if pe.Op != OpPush || pe.Status != tt.status || pe.Permanent != tt.permanent || pe.RetryAfter != 5*time.Second || ds.calls() != 1 {
				t.Errorf("%d: got %+v after %d calls", tt.status, pe, ds.calls())
			}
		}
	})
	t.Run("sends body on the retry after 401", func(t *testing.T) {
		c, ds, _ := dataSetup(t, nil, status(401), status(201))
		src := &providertest.Source{Tok: tokens.Token{AccessToken: "a"}}
		src.Client = refreshFunc(func(context.Context, tokens.Token) (tokens.Token, error) {
			return tokens.Token{AccessToken: "b"}, nil
		})
		if err := c.Push(ctx, "u1", src, provider.PushItem{ID: "i", Data: []byte("body")}); err != nil {
			t.Fatal(err)
		}
		if ds.calls() != 2 || string(ds.bodies[1]) != "body" || ds.reqs[1].Header.Get("Authorization") != "Bearer b" {
			t.Fatalf("calls %d, second body %q", ds.calls(), ds.bodies[1])
		}
	})
	t.Run("poison items", func(t *testing.T) {
		for _, item := range []provider.PushItem{
			{ID: "i", Tags: []string{"a,b"}},
			{ID: "i", Tags: []string{""}},
			{ID: "i", Accounts: []string{"x\ny"}},
			{ID: "i\r\nX-Evil: 1"},
			{ID: "i", MimeType: "not a type"},
		} {
			c, ds, _ := dataSetup(t, nil, status(204))
			err := c.Push(ctx, "u1", &staticSource{tok: tokens.Token{AccessToken: "a"}}, item)
			pe := providerErr(t, err)
			if pe.Code != CodeBadItem || !pe.Permanent || ds.calls() != 0 {
				t.Errorf("%q: got %+v after %d calls", item.ID, pe, ds.calls())
			}
		}
	})
}

type refreshFunc func(context.Context, tokens.Token) (tokens.Token, error)

func (f refreshFunc) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	return f(ctx, t)
}

func TestChallengeError(t *testing.T) {
	tests := map[string]string{
		``:                             "",
		`Bearer realm="x"`:             "",
		`Bearer error="invalid_token"`: "invalid_token",
		`Bearer realm="x", error="invalid_token"`: "invalid_token",
		`Bearer realm="x",error=invalid_token`:    "invalid_token",
		`Bearer realm="x-error=1", error="a_b"`:   "a_b",
		`Bearer error_description="e", error="z"`: "z",
		`Bearer error="bad value"`:                "",
		`Bearer error="unterminated`:              "",
	}
	for in, want := range tests {
		if got := challengeError(in); got != want {
			t.Errorf("challengeError(%q): got %q, want %q", in, got, want)
		}
	}
}
