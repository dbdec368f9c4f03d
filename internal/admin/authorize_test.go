package admin_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// doneSecret is a done_url secret of the minimum length.
const doneSecret = "0123456789abcdef0123456789abcdef"

// finisher is the fake backend with its own FinishAuthorization.
type finisher struct {
	*backend
	finish func(authflow.Callback) (authflow.Result, error)
}

func (f *finisher) FinishAuthorization(_ context.Context, cb authflow.Callback) (authflow.Result, error) {
	return f.finish(cb)
}

// get sends a GET to h and returns the recorder.
func get(h http.Handler, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	return rec
}

// verifyDone is the app's check of a done_url redirect, verbatim from
// the README (TestREADMEVerifyDone keeps them equal): recompute the HMAC
// over "<t>.<result>.<error>.<user>", compare in constant time, refuse
// an old t.
func verifyDone(q url.Values, secret []byte, now time.Time) bool {
	t, err := strconv.ParseInt(q.Get("t"), 10, 64)
	if err != nil || now.Sub(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(q.Get("t") + "." + q.Get("result") + "." + q.Get("error") + "." + q.Get("user")))
	sig, err := hex.DecodeString(q.Get("sig"))
	return err == nil && hmac.Equal(sig, mac.Sum(nil))
}

// TestREADMEVerifyDone: the README's verification recipe is the
// verifyDone these tests check signed results with.
func TestREADMEVerifyDone(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(readme), "### Authorization callback")
	_, block, ok := strings.Cut(sec, "```go\n")
	block, _, _ = strings.Cut(block, "```")
	src, err := os.ReadFile("authorize_test.go")
	if !ok || err != nil {
		t.Fatalf("no go block in the README's Authorization callback section: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(block, " \n"), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "  "))
	}
	if recipe := strings.Join(lines, "\n"); !strings.Contains(string(src), recipe) {
		t.Fatalf("the README's recipe is not verifyDone:\n%s", recipe)
	}
}

// TestPublicCallbackFailureHidesUser: a failed or expired link sends the
// browser on without the user id (anyone holding an old link would learn
// whose it was); the page shows the error code, never the message (it
// may carry the provider's text), which goes to the log instead.
func TestPublicCallbackFailureHidesUser(t *testing.T) {
	fails := map[string]error{
		"state_expired": &authflow.Error{Kind: authflow.KindStateExpired, Msg: "state: expired at 2026-11-25T12:15:00Z"},
		"access_denied": &authflow.Error{Kind: authflow.KindDenied, Msg: "consent refused by the provider: access_denied"},
		"code_rejected": &authflow.Error{Kind: authflow.KindRejected, Msg: "the provider rejected the code: token failed: http 400: invalid_grant: PROVIDER-TEXT about carol"},
		"bad_request":   &authflow.Error{Kind: authflow.KindBadRequest, Msg: `provider: "carol-corp" is no longer configured`},
		"internal":      errors.New("redis: PROVIDER-TEXT connection refused"),
	}
	for code, ferr := range fails {
		t.Run(code, func(t *testing.T) {
			var logs bytes.Buffer
			be := &finisher{backend: &backend{}, finish: func(authflow.Callback) (authflow.Result, error) {
				return authflow.Result{User: "carol", Provider: "carol-corp", Flow: authflow.FlowAuthorize}, ferr
			}}
			opt := admin.Options{Backend: be, CallbackPath: "/cb", Logger: zerolog.New(&logs)}
			rec := get(admin.New(opt).Handler(), "/cb?state=s&code=c")
			body := rec.Body.String()
			if rec.Code < 400 || !strings.Contains(body, "Authorization failed") || !strings.Contains(body, code) {
				t.Fatalf("page: %d %s", rec.Code, body)
			}
			for _, secret := range []string{"carol", "PROVIDER-TEXT", "2026-11-25"} {
				if strings.Contains(body, secret) {
					t.Fatalf("the public page shows %q: %s", secret, body)
				}
			}
			if !strings.Contains(logs.String(), "PROVIDER-TEXT") && code != "state_expired" && code != "access_denied" && code != "bad_request" {
				t.Fatalf("the error is not logged: %s", logs.String())
			}
			for _, secret := range []string{"", doneSecret} {
				opt.DoneURL, opt.DoneURLSecret = "https://app.example/done?x=1", secret
				rec = get(admin.New(opt).Handler(), "/cb?state=s&code=c")
				loc, err := url.Parse(rec.Header().Get("Location"))
				if rec.Code != http.StatusSeeOther || err != nil {
					t.Fatalf("redirect: %d %q", rec.Code, rec.Header().Get("Location"))
				}
				q := loc.Query()
				if q.Has("user") || strings.Contains(loc.String(), "carol") || q.Get("result") != "error" || q.Get("error") != code || q.Get("x") != "1" {
					t.Fatalf("redirect of a failure: %s", loc)
				}
			}
		})
	}
}

// TestPublicCallbackSignsDone: with a secret, every result sent to
// done_url carries t and sig, an HMAC-SHA256 over result, error, user and
// t, so the app can trust result=ok&user=...; a forged or altered result
// does not verify.
func TestPublicCallbackSignsDone(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	be := &backend{paused: map[string]bool{}}
	h := admin.New(admin.Options{Backend: be, CallbackPath: "/cb", DoneURL: "https://app.example/done?x=1",
		DoneURLSecret: doneSecret, Clock: clk}).Handler()
	rec := get(h, "/cb?state=s1&code=c")
	loc, _ := url.Parse(rec.Header().Get("Location"))
	q := loc.Query()
	if rec.Code != http.StatusSeeOther || q.Get("result") != "ok" || q.Get("user") != "carol" || q.Get("t") != strconv.FormatInt(clk.Now().Unix(), 10) || len(q.Get("sig")) != 64 {
		t.Fatalf("ok redirect: %d %s", rec.Code, loc)
	}
	if !verifyDone(q, []byte(doneSecret), clk.Now()) {
		t.Fatalf("the ok result does not verify: %s", loc)
	}
	for name, change := range map[string]func(url.Values){
		"other user":   func(q url.Values) { q.Set("user", "mallory") },
		"error as ok":  func(q url.Values) { q.Set("result", "error") },
		"later t":      func(q url.Values) { q.Set("t", strconv.FormatInt(clk.Now().Unix()+1, 10)) },
		"no sig":       func(q url.Values) { q.Del("sig") },
		"other secret": func(q url.Values) { q.Set("sig", sign("another-secret-of-32-characters!!", q)) },
	} {
		c := url.Values{}
		for k, v := range q {
			c[k] = append([]string(nil), v...)
		}
		change(c)
		if verifyDone(c, []byte(doneSecret), clk.Now()) {
			t.Errorf("%s: verifies", name)
		}
	}
	if verifyDone(q, []byte(doneSecret), clk.Now().Add(6*time.Minute)) {
		t.Error("an old result verifies")
	}

	rec = get(h, "/cb?state=never&code=c")
	loc, _ = url.Parse(rec.Header().Get("Location"))
	if q := loc.Query(); q.Get("result") != "error" || q.Get("error") != "state_unknown" || !verifyDone(q, []byte(doneSecret), clk.Now()) {
		t.Fatalf("error redirect: %s", loc)
	}
}

func sign(secret string, q url.Values) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(q.Get("t") + "." + q.Get("result") + "." + q.Get("error") + "." + q.Get("user")))
	return hex.EncodeToString(mac.Sum(nil))
}

// flowBackend finishes callbacks with a real authflow.Flow over an
// in-memory store and a scripted provider.
type flowBackend struct {
	*backend
	flow *authflow.Flow
}

func (f *flowBackend) FinishAuthorization(ctx context.Context, cb authflow.Callback) (authflow.Result, error) {
	return f.flow.Finish(ctx, cb)
}

// memStore is authflow.Store in memory.
type memStore struct{ states map[string][]byte }

func (m *memStore) PutAuthState(_ context.Context, state string, blob []byte, _ time.Duration) (bool, error) {
	if _, ok := m.states[state]; ok {
		return false, nil
	}
	m.states[state] = blob
	return true, nil
}
func (m *memStore) TakeAuthState(_ context.Context, state string) ([]byte, time.Duration, error) {
	b, ok := m.states[state]
	delete(m.states, state)
	if !ok {
		return nil, 0, nil
	}
	return b, time.Minute, nil
}
func (m *memStore) Load(context.Context, string) (tokens.Record, error) {
	return tokens.Record{}, tokens.ErrNotFound
}
func (m *memStore) Note(context.Context, string, string, time.Time) error { return nil }

// scripted is a provider whose Exchange answers by the code: "bad..."
// is refused for good, "down..." is an outage, anything else is a token.
// Its errors carry PROVIDER-TEXT, which must never reach the public page.
type scripted struct{}

func (scripted) AuthorizeURL(_ context.Context, req provider.AuthRequest) (string, error) {
	return "https://consent.example/?state=" + req.State, nil
}
func (scripted) Exchange(_ context.Context, req provider.ExchangeRequest) (tokens.Token, error) {
	switch {
	case strings.HasPrefix(req.Code, "bad"):
		return tokens.Token{}, &provider.Error{Op: "token", Status: 400, Code: "invalid_grant", Permanent: true, Err: errors.New("PROVIDER-TEXT " + req.Code)}
	case strings.HasPrefix(req.Code, "down"):
		return tokens.Token{}, &provider.Error{Op: "token", Status: 503, Err: errors.New("PROVIDER-TEXT unavailable")}
	}
	return tokens.Token{AccessToken: "at", RefreshToken: "rt"}, nil
}

// FuzzPublicCallback drives the public callback handler (query parsing,
// authflow.Finish, the page or the signed done_url redirect) with any
// query. A pending consent for victim-user exists; "STATE" in the query
// is replaced by its state so the fuzzer reaches the exchange. Whatever
// the query: no panic; a failure shows neither the user id nor the
// provider's text, on the page or in the redirect; every redirect
// verifies.
func FuzzPublicCallback(f *testing.F) {
	for _, s := range []string{
		"state=STATE&code=ok", "state=STATE&code=bad-1", "state=STATE&code=down", "state=STATE&error=access_denied&error_description=PROVIDER-TEXT",
		"success=false&errorCode=%3Cscript%3E", "state=STATE", "code=x", "", "state=never&code=x", "state=STATE&code=ok&state=other",
		"state=" + strings.Repeat("A", 300) + "&code=x", "state=%zz&code=%", "success=true&state=STATE&code=ok",
		"state=STATE&error=" + strings.Repeat("e", 100),
	} {
		f.Add(s, uint8(0), false)
		f.Add(s, uint8(20), true)
	}
	keys, err := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query string, minutes uint8, done bool) {
		clk := clock.NewFake(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
		flow := authflow.New(authflow.Options{Store: &memStore{states: map[string][]byte{}}, Keys: keys, Clock: clk,
			RedirectURI: "https://app.example/cb", Logger: zerolog.Nop(),
			Providers: map[string]authflow.Provider{"ex": {Authorizer: scripted{}, DefaultLifetime: time.Hour}},
			Put:       func(context.Context, string, tokens.Token, string) (tokens.State, error) { return tokens.Active, nil }})
		link, err := flow.Authorize(context.Background(), authflow.Request{User: "victim-user"})
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Duration(minutes) * time.Minute)
		opt := admin.Options{Backend: &flowBackend{backend: &backend{}, flow: flow}, CallbackPath: "/cb", Clock: clk, Logger: zerolog.Nop()}
		if done {
			opt.DoneURL, opt.DoneURLSecret = "https://app.example/done", doneSecret
		}
		h := admin.New(opt).Handler()
		req, err := http.NewRequest("GET", "/cb", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.RawQuery = strings.ReplaceAll(query, "STATE", link.State)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		loc := rec.Header().Get("Location")
		ok := rec.Code == http.StatusOK
		if done {
			u, err := url.Parse(loc)
			if rec.Code != http.StatusSeeOther || err != nil || !verifyDone(u.Query(), []byte(doneSecret), clk.Now()) {
				t.Fatalf("redirect %d %q does not verify", rec.Code, loc)
			}
			ok = u.Query().Get("result") == "ok"
		}
		if ok {
			return
		}
		out := rec.Body.String() + loc
		for _, secret := range []string{"victim-user", "PROVIDER-TEXT"} {
			if strings.Contains(out, secret) {
				t.Fatalf("a failure shows %q: %d %q", secret, rec.Code, out)
			}
		}
	})
}

// callbackPathOK says whether config accepts p as authorize.callback_path.
func callbackPathOK(p string) bool {
	cfg := config.DefaultConfig()
	cfg.Encryption.Keys = []config.KeyConfig{{ID: "k1", Secret: "O0Nsm/A/uTufnXBMX9/72PPt6667YXKFEl0HJFwwdDY="}}
	cfg.Authorize.CallbackPath = p
	err := cfg.Validate()
	var fe *config.FieldError
	for _, e := range unwrapAll(err) {
		if errors.As(e, &fe) && fe.Field == "authorize.callback_path" {
			return false
		}
	}
	return true
}

func unwrapAll(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		return u.Unwrap()
	}
	return nil
}

// newServer builds the admin server with callback path p, turning a
// panic (a ServeMux pattern conflict) into an error.
func newServer(p string) (h http.Handler, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return admin.New(admin.Options{Backend: &backend{}, CallbackPath: p, Gatherer: prometheus.NewRegistry(),
		AllowedHosts: []string{"example.com"}}).Handler(), nil // httptest.NewRequest's Host
}

// TestCallbackPathConfigChecked: the callback paths that made the admin
// server panic at start are refused by config; every path config accepts
// builds a server whose own routes still answer.
func TestCallbackPathConfigChecked(t *testing.T) {
	for _, p := range []string{"/", "/a/../v1/users", "/v1/users", "/healthz"} {
		if _, err := newServer(p); err == nil && p != "/healthz" {
			t.Errorf("%q: the server built; this test's premise is gone", p)
		}
		if callbackPathOK(p) {
			t.Errorf("%q: config accepts it", p)
		}
	}
	for _, p := range []string{"/authorize/callback", "/cb", "/v1x", "/healthzz", "/a-b_c.d~e/f"} {
		checkCallbackPath(t, p)
	}
}

// checkCallbackPath: if config accepts p, the server builds and its
// health route and callback answer as themselves.
func checkCallbackPath(t *testing.T, p string) {
	t.Helper()
	if !callbackPathOK(p) {
		return
	}
	h, err := newServer(p)
	if err != nil {
		t.Fatalf("%q: config accepts it, the server does not: %v", p, err)
	}
	if rec := get(h, "/healthz"); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"ok"`) {
		t.Fatalf("%q: /healthz answers %d %s", p, rec.Code, rec.Body)
	}
	if rec := get(h, p+"?state=s1&code=c"); rec.Code != 200 || !strings.Contains(rec.Body.String(), "Authorization complete") {
		t.Fatalf("%q: the callback answers %d %s", p, rec.Code, rec.Body)
	}
}

// FuzzCallbackPath: whatever callback path config accepts, the admin
// server builds (no ServeMux panic) and keeps its own routes.
func FuzzCallbackPath(f *testing.F) {
	for _, s := range []string{"/", "/cb", "/a/../v1/users", "/v1", "/healthz/", "/{x}", "/a b", "/%41", "/metrics", "//", "/cb/."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if p == "" {
			return
		}
		checkCallbackPath(t, p)
	})
}
