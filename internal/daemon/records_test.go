package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/tokens"
)

const damagedValue = "damaged-value-7f3a"

// fakeProvider is a config's providers section with one fake provider.
const fakeProvider = "providers: [{name: digime, kind: fake}]\n"

// offline opens the test's Redis as a command does, with 2 due-set
// shards as startLive's daemons, for a config of body (providers, jobs).
func offline(t *testing.T, srv *redistest.Server, body string) *Offline {
	t.Helper()
	doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 2}
encryption: {keys: [{id: k1, secret: %q}]}
%s`, srv.URL, srv.Prefix, key1, body)
	cfg, err := config.Parse(strings.NewReader(doc), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	o, err := Open(context.Background(), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return o
}

// damage stores u1 (active) and u2 (flagged), then a token key of the
// wrong type for "bad" (also queued for re-auth) and a hash missing its
// required fields for "half".
func damage(t *testing.T, srv *redistest.Server, o *Offline) {
	t.Helper()
	ctx := context.Background()
	for _, u := range []string{"u1", "u2"} {
		tok := tokens.Token{UserID: u, AccessToken: "AT-" + u, RefreshToken: "RT-" + u, AccessExpiry: time.Now().Add(time.Hour)}
		if _, err := o.Put(ctx, "digime", tok); err != nil {
			t.Fatal(err)
		}
	}
	s := o.Store
	rec, _, err := s.Acquire(ctx, "u2", "test", "", time.Now(), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res, _, err := s.Flag(ctx, "u2", "test", rec.Version, tokens.ReasonInvalidGrant, "reauth:invalid_grant", time.Now()); err != nil || res != tokens.Flagged {
		t.Fatalf("flag: %v %v", res, err)
	}
	rdb := srv.Client(t)
	p := srv.Prefix
	if err := rdb.Set(ctx, p+"{u:bad}:tok", damagedValue, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ZAdd(ctx, p+"reauth", redis.Z{Score: float64(time.Now().UnixMilli()), Member: "bad"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, p+"{u:half}:tok", "s", "active", "c", damagedValue).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedRecordsAPI: a token key of the wrong type and a hash
// missing fields are skipped and counted by the API, which keeps working
// for everyone else.
func TestDamagedRecordsAPI(t *testing.T) {
	srv := redistest.Start(t)
	o := offline(t, srv, fakeProvider)
	damage(t, srv, o)
	d := &Daemon{store: o.Store, log: zerolog.Nop(), cfg: o.Config}
	const token = "read-token-0123456789"
	h := admin.New(admin.Options{Credentials: []admin.Credential{{Name: "read", Token: token, Scope: admin.Read}}, Backend: d, Logger: zerolog.Nop()}).Handler()
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/v1/users", 200, `"malformed":2`},
		{"/v1/users?state=reauth_required", 200, `"user":"u2"`},
		{"/v1/reauth", 200, `"malformed":1`},
		{"/v1/users/bad", 409, "not a hash"},
		{"/v1/users/half", 409, `field \"v\"`},
	} {
		code, body := serveHTTP(t, h, "GET", tc.path, token, "")
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %s, want %d containing %s", tc.path, code, body, tc.code, tc.want)
		}
		if strings.Contains(body, damagedValue) {
			t.Errorf("GET %s shows a stored value: %s", tc.path, body)
		}
	}
}

func serveHTTP(t *testing.T, h http.Handler, method, path, token, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Host = "localhost"
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestQuarantineAPI: listing needs a credential, restoring the write one;
// a restore is refused while the record does not read or opens only as
// another user's, and a user not quarantined is not found.
func TestQuarantineAPI(t *testing.T) {
	srv := redistest.Start(t)
	o := offline(t, srv, fakeProvider+"jobs: [{name: pull, kind: pull, schedule: \"@every 5m\"}]\n")
	damage(t, srv, o)
	ctx := context.Background()
	if moved, err := o.Store.QuarantineMalformed(ctx, "bad", time.Now()); err != nil || !moved {
		t.Fatalf("quarantine bad: %v %v", moved, err)
	}
	e, err := o.engines(false)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{store: o.Store, log: zerolog.Nop(), cfg: o.Config, ref: e.ref, runner: e.runner}
	const token = "restore-token-0123456789"
	h := admin.New(admin.Options{Credentials: []admin.Credential{{Name: "write", Token: token, Scope: admin.Write}}, Backend: d, Logger: zerolog.Nop()}).Handler()
	if code, body := serveHTTP(t, h, "GET", "/v1/quarantine", "", ""); code != 401 {
		t.Fatalf("GET /v1/quarantine without the token: %d %s", code, body)
	}
	if code, body := serveHTTP(t, h, "GET", "/v1/quarantine", token, ""); code != 200 || !strings.Contains(body, `"size":1`) || !strings.Contains(body, `"user":"bad","reason":"wrong_type"`) {
		t.Fatalf("GET /v1/quarantine: %d %s", code, body)
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/users/bad/restore", "", ""); code != 401 {
		t.Fatalf("restore without the token: %d %s", code, body)
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/users/bad/restore", token, ""); code != 409 || !strings.Contains(body, "not a hash") || strings.Contains(body, damagedValue) {
		t.Fatalf("restore bad: %d %s", code, body)
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/users/u1/restore", token, ""); code != 404 || !strings.Contains(body, "not quarantined") {
		t.Fatalf("restore u1: %d %s", code, body)
	}
	// A record copied over from another user parses but does not open as
	// this user's (tokens are sealed under the user id): refused.
	rdb := srv.Client(t)
	p := srv.Prefix
	if err := rdb.Copy(ctx, p+"{u:u2}:tok", p+"{u:bad}:quarantine", 0, true).Err(); err != nil {
		t.Fatal(err)
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/users/bad/restore", token, ""); code != 409 || !strings.Contains(body, "does not open") {
		t.Fatalf("restore a record sealed for another user: %d %s", code, body)
	}
}
