package admin_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
)

// FuzzHandler sends random requests (method, target, Host, one more
// header, body, and no, a wrong, the read or the write token) to the
// admin handler with a fake backend. Properties: it never panics; /v1
// never answers 2xx without a credential, nor a write 2xx with the read
// one; no response (status line, headers, body) or log line holds a
// configured token the request did not carry elsewhere.
func FuzzHandler(f *testing.F) {
	for _, s := range []struct {
		method, target, host, header, body string
		auth                               byte
	}{
		{"GET", "/v1/users", "127.0.0.1:9464", "", "", 0},
		{"GET", "/v1/users?state=active&limit=3&cursor=9", "localhost", "", "", 1},
		{"PUT", "/v1/users/carol/token", "127.0.0.1:9464", "Content-Type: application/json", `{"access_token":"x"}`, 2},
		{"PUT", "/v1/users/carol/token", "127.0.0.1:9464", "", `{"access_token":"x"}`, 1},
		{"POST", "/v1/jobs/pull/trigger?user=alice", "syncd", "", "", 2},
		{"POST", "/v1/users/bob/authorize", "[::1]:9464", "", `{"redirect_uri":"https://a/cb","state":"s1"}`, 2},
		{"POST", "/v1/authorize/callback", "127.0.0.1:9464", "Content-Type: application/x-www-form-urlencoded", "state=s1&code=c", 2},
		{"GET", "/v1/../v1/jobs", "127.0.0.1:9464", "", "", 0},
		{"GET", "//v1/jobs", "127.0.0.1:9464", "", "", 3},
		{"GET", "/v1/users/%2e%2e", "127.0.0.1:9464", "", "", 1},
		{"HEAD", "/v1/jobs", "evil.example", "", "", 2},
		{"GET", "/cb?state=s1&code=c", "app.example", "", "", 0},
		{"GET", "/metrics", "10.0.0.1:9464", "", "", 0},
		{"OPTIONS", "*", "127.0.0.1:9464", "", "", 0},
		{"GET", "/v1/jobs", "127.0.0.1:9464", "Authorization: Basic eDp5", "", 4},
	} {
		f.Add(s.method, s.target, s.host, s.header, s.body, s.auth)
	}
	f.Fuzz(func(t *testing.T, method, target, host, header, body string, auth byte) {
		var raw bytes.Buffer
		raw.WriteString(method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n")
		if header != "" {
			raw.WriteString(header + "\r\n")
		}
		var tok string
		switch auth % 5 {
		case 1:
			tok = readToken
		case 2:
			tok = writeToken
		case 3:
			tok = "wrong-token-0123456789"
		}
		if tok != "" {
			raw.WriteString("Authorization: Bearer " + tok + "\r\n")
		}
		raw.WriteString("\r\n")
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			t.Skip() // the server would have refused it before any handler
		}
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		req.RemoteAddr = "192.0.2.1:1234"
		authz := req.Header.Values("Authorization")
		scope := admin.Scope(0)
		if len(authz) == 1 && tok != "" {
			scope = map[string]admin.Scope{readToken: admin.Read, writeToken: admin.Write}[tok]
		}

		var logs bytes.Buffer
		h := admin.New(admin.Options{Listen: "127.0.0.1:9464", AllowedHosts: []string{"syncd"}, Credentials: creds(),
			Backend: &backend{paused: map[string]bool{}}, Gatherer: prometheus.NewRegistry(),
			Logger: zerolog.New(&logs), CallbackPath: "/cb"}).Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		ok := rec.Code >= 200 && rec.Code < 300
		clean := path.Clean("/" + req.URL.Path)
		v1 := strings.HasPrefix(clean, "/v1/") || clean == "/v1"
		if ok && v1 && scope == 0 {
			t.Fatalf("%s %s answered %d without a credential", method, target, rec.Code)
		}
		if ok && v1 && scope == admin.Read && method != "GET" && method != "HEAD" {
			t.Fatalf("%s %s answered %d to the read credential", method, target, rec.Code)
		}
		var out bytes.Buffer
		_ = rec.Result().Header.Write(&out)
		out.Write(rec.Body.Bytes())
		out.Write(logs.Bytes())
		input := method + target + host + header + body
		for _, secret := range []string{readToken, writeToken} {
			if strings.Contains(out.String(), secret) && !strings.Contains(input, secret) {
				t.Fatalf("%s %s: the response or log holds a token:\n%s", method, target, out.String())
			}
		}
	})
}
