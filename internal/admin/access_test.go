package admin_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
)

const (
	readToken  = "read-token-0123456789"
	writeToken = "write-token-0123456789"
)

func creds() []admin.Credential {
	return []admin.Credential{
		{Name: "read", Token: readToken, Scope: admin.Read},
		{Name: "write", Token: writeToken, Scope: admin.Write},
	}
}

// routes is every /v1 route, with whether it writes.
var routes = []struct {
	method, path string
	write        bool
}{
	{"GET", "/v1/users", false},
	{"GET", "/v1/users/alice", false},
	{"GET", "/v1/reauth", false},
	{"GET", "/v1/quarantine", false},
	{"GET", "/v1/jobs", false},
	{"GET", "/v1/nothing", false},
	{"HEAD", "/v1/jobs", false},
	{"PUT", "/v1/users/carol/token", true},
	{"POST", "/v1/users/dan/restore", true},
	{"POST", "/v1/jobs/pull/trigger", true},
	{"POST", "/v1/jobs/pull/pause", true},
	{"POST", "/v1/jobs/pull/resume", true},
	{"POST", "/v1/users/bob/authorize", true},
	{"POST", "/v1/users/bob/reauthorize", true},
	{"POST", "/v1/authorize/callback?state=s1&code=c", true},
	{"DELETE", "/v1/users/alice", false}, // no such route: 404 behind the read credential
}

// TestClosedByDefault: with no credential configured every /v1 route
// answers 401, reads included; health, readiness and metrics stay open.
func TestClosedByDefault(t *testing.T) {
	be := &backend{paused: map[string]bool{}}
	h := admin.New(admin.Options{Backend: be, Gatherer: prometheus.NewRegistry(), Logger: zerolog.Nop()}).Handler()
	for _, r := range routes {
		for _, tok := range []string{"", writeToken} {
			if code, body := do(t, h, r.method, r.path, tok, `{"access_token":"x"}`); code != 401 {
				t.Errorf("%s %s (token %v): %d %s, want 401", r.method, r.path, tok != "", code, body)
			}
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := do(t, h, "GET", p, "", ""); code != 200 {
			t.Errorf("GET %s: %d, want 200", p, code)
		}
	}
	if len(be.puts) != 0 || len(be.paused) != 0 {
		t.Fatalf("a write went through: %v %v", be.puts, be.paused)
	}
}

// TestScopes: without a credential (or with a wrong one) 401; with the
// read credential reads answer and writes 403; the write credential does
// both. SetCredentials swaps them without a restart.
func TestScopes(t *testing.T) {
	be := &backend{paused: map[string]bool{}}
	srv := admin.New(admin.Options{Credentials: creds(), Backend: be, Logger: zerolog.Nop()})
	h := srv.Handler()
	for _, r := range routes {
		body := `{"access_token":"x"}`
		if code, _ := do(t, h, r.method, r.path, "", body); code != 401 {
			t.Errorf("%s %s without a token: %d, want 401", r.method, r.path, code)
		}
		if code, _ := do(t, h, r.method, r.path, "read-token-012345678X", body); code != 401 {
			t.Errorf("%s %s with a wrong token: %d, want 401", r.method, r.path, code)
		}
		code, _ := do(t, h, r.method, r.path, readToken, body)
		if r.write && code != 403 || !r.write && code == 401 {
			t.Errorf("%s %s with the read token: %d", r.method, r.path, code)
		}
		if code, _ := do(t, h, r.method, r.path, writeToken, body); code == 401 || code == 403 {
			t.Errorf("%s %s with the write token: %d", r.method, r.path, code)
		}
	}
	// A lower-case scheme is still a bearer token (RFC 7235).
	req := httptest.NewRequest("GET", "/v1/jobs", nil)
	req.Host = "127.0.0.1:9464"
	req.Header.Set("Authorization", "bearer "+readToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("bearer in lower case: %d", rec.Code)
	}

	const next = "rotated-write-token-0123456789"
	srv.SetCredentials([]admin.Credential{{Name: "write", Token: next, Scope: admin.Write}})
	if code, _ := do(t, h, "GET", "/v1/jobs", writeToken, ""); code != 401 {
		t.Errorf("old token after SetCredentials: %d, want 401", code)
	}
	if code, _ := do(t, h, "GET", "/v1/jobs", readToken, ""); code != 401 {
		t.Errorf("dropped read token after SetCredentials: %d, want 401", code)
	}
	if code, _ := do(t, h, "POST", "/v1/jobs/pull/pause", next, ""); code != 200 {
		t.Errorf("new token after SetCredentials: %d, want 200", code)
	}
	srv.SetCredentials(nil)
	if code, _ := do(t, h, "GET", "/v1/jobs", next, ""); code != 401 {
		t.Errorf("no credentials after SetCredentials(nil): %d, want 401", code)
	}
}

// TestWriteAudit: every write is logged with its route, method, path
// and the credential's name; a refused request too; never a token.
func TestWriteAudit(t *testing.T) {
	be := &backend{paused: map[string]bool{}}
	var logs bytes.Buffer
	h := admin.New(admin.Options{Credentials: creds(), Backend: be, Logger: zerolog.New(&logs)}).Handler()
	do(t, h, "POST", "/v1/jobs/pull/trigger?user=alice", writeToken, "")
	do(t, h, "GET", "/v1/jobs", readToken, "")
	do(t, h, "POST", "/v1/jobs/pull/pause", readToken, "")
	do(t, h, "POST", "/v1/jobs/pull/pause", "wrong-token-0123456789", "")
	out := logs.String()
	for _, want := range []string{
		`"route":"POST /v1/jobs/{name}/trigger","method":"POST","path":"/v1/jobs/pull/trigger","credential":"write","status":200,"remote":"192.0.2.1:1234","message":"admin write"`,
		`"route":"POST /v1/jobs/{name}/pause","method":"POST","path":"/v1/jobs/pull/pause","credential":"read","status":403,"remote":"192.0.2.1:1234","message":"admin request refused"`,
		`"route":"POST /v1/jobs/{name}/pause","method":"POST","path":"/v1/jobs/pull/pause","status":401,"remote":"192.0.2.1:1234","message":"admin request refused"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Count(out, "\n") != 3 {
		t.Errorf("want 3 lines (reads are not logged):\n%s", out)
	}
	for _, tok := range []string{readToken, writeToken, "wrong-token", "user=alice"} {
		if strings.Contains(out, tok) {
			t.Errorf("log holds %q:\n%s", tok, out)
		}
	}
}

// TestHostCheck: DNS rebinding. A request whose Host is not the listen
// address, a loopback name or address, or a name of allowed_hosts is
// refused with 421; listening on every interface, IP literals with the
// listen port pass (the kubelet's probes and Prometheus use pod IPs).
func TestHostCheck(t *testing.T) {
	be := &backend{paused: map[string]bool{}}
	allowed := []string{"syncd", "syncd.ops.svc"}
	for _, tc := range []struct {
		listen, host string
		ok           bool
	}{
		{"127.0.0.1:9464", "127.0.0.1:9464", true},
		{"127.0.0.1:9464", "localhost:9464", true},
		{"127.0.0.1:9464", "LOCALHOST.:9464", true},
		{"127.0.0.1:9464", "localhost:8080", true}, // kubectl port-forward 8080:9464
		{"127.0.0.1:9464", "[::1]:9464", true},
		{"127.0.0.1:9464", "127.0.0.1", true},
		{"127.0.0.1:9464", "syncd:9464", true},
		{"127.0.0.1:9464", "rebind.attacker.example:9464", false},
		{"127.0.0.1:9464", "127.0.0.1.nip.io:9464", false},
		{"127.0.0.1:9464", "foo.localhost:9464", false},
		{"127.0.0.1:9464", "10.0.0.5:9464", false},
		{"127.0.0.1:9464", "", false},
		{"0.0.0.0:9464", "10.1.2.3:9464", true},
		{"0.0.0.0:9464", "[fd00::7]:9464", true},
		{"0.0.0.0:9464", "10.1.2.3:80", false},
		{"0.0.0.0:9464", "10.1.2.3", false},
		{"0.0.0.0:9464", "syncd:9464", true},
		{"0.0.0.0:9464", "SYNCD.ops.svc", true},
		{"0.0.0.0:9464", "syncd.other.svc:9464", false},
		{"0.0.0.0:9464", "rebind.attacker.example:9464", false},
		{":9464", "10.1.2.3:9464", true},
		{"[::]:9464", "10.1.2.3:9464", true},
		{":9464", "attacker.example:9464", false},
		{"10.0.0.5:9464", "10.0.0.5:9464", true},
		{"10.0.0.5:9464", "10.0.0.6:9464", false},
		{"syncd.internal:9464", "syncd.internal:9464", true},
		{"syncd.internal:9464", "syncd.internal:9000", false},
	} {
		h := admin.New(admin.Options{Listen: tc.listen, AllowedHosts: allowed, Credentials: creds(), Backend: be,
			Gatherer: prometheus.NewRegistry(), Logger: zerolog.Nop(), CallbackPath: "/cb"}).Handler()
		for _, p := range []string{"/v1/jobs", "/healthz", "/readyz", "/metrics"} {
			req := httptest.NewRequest("GET", p, nil)
			req.Host = tc.host
			req.Header.Set("Authorization", "Bearer "+readToken)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if tc.ok && rec.Code != 200 || !tc.ok && (rec.Code != http.StatusMisdirectedRequest || !strings.Contains(string(body), `"error"`)) {
				t.Errorf("listen %s, Host %q, GET %s: %d %s", tc.listen, tc.host, p, rec.Code, body)
			}
		}
		// The public callback is for any host: the provider redirects the
		// browser to the app's public name.
		req := httptest.NewRequest("GET", "/cb?state=s1&code=c", nil)
		req.Host = "app.example.com"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Errorf("listen %s: public callback on Host app.example.com: %d", tc.listen, rec.Code)
		}
	}
}

// TestNosniff: every response of both servers says nosniff, errors and
// the mux's own answers included.
func TestNosniff(t *testing.T) {
	be := &backend{paused: map[string]bool{}}
	srv := admin.New(admin.Options{Listen: "127.0.0.1:9464", Credentials: creds(), Backend: be, Gatherer: prometheus.NewRegistry(),
		Logger: zerolog.Nop(), CallbackPath: "/cb"})
	for _, tc := range []struct {
		h                  http.Handler
		method, path, host string
		token              string
	}{
		{srv.Handler(), "GET", "/healthz", "127.0.0.1:9464", ""},
		{srv.Handler(), "GET", "/readyz", "127.0.0.1:9464", ""},
		{srv.Handler(), "GET", "/metrics", "127.0.0.1:9464", ""},
		{srv.Handler(), "GET", "/v1/jobs", "127.0.0.1:9464", readToken},
		{srv.Handler(), "GET", "/v1/jobs", "127.0.0.1:9464", ""},
		{srv.Handler(), "POST", "/v1/jobs/pull/pause", "127.0.0.1:9464", readToken},
		{srv.Handler(), "GET", "/v1/nothing", "127.0.0.1:9464", readToken},
		{srv.Handler(), "GET", "/v1/jobs", "attacker.example", readToken},
		{srv.Handler(), "GET", "/nothing", "127.0.0.1:9464", ""},
		{srv.Handler(), "POST", "/healthz", "127.0.0.1:9464", ""},
		{srv.Handler(), "GET", "/cb?state=s1&code=c", "app.example", ""},
		{srv.PublicHandler(), "GET", "/cb?state=s1&code=c", "app.example", ""},
		{srv.PublicHandler(), "GET", "/cb?state=nope", "app.example", ""},
		{srv.PublicHandler(), "GET", "/v1/jobs", "app.example", readToken},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		req.Host = tc.host
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, req)
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s %s (Host %s): %d, X-Content-Type-Options %q", tc.method, tc.path, tc.host, rec.Code, got)
		}
	}
}
