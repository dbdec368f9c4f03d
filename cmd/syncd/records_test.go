package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/tokens"
)

const damagedValue = "damaged-value-7f3a"

// damage stores u1 (active) and u2 (flagged), then a token key of the
// wrong type for "bad" (also queued for re-auth) and a hash missing its
// required fields for "half".
func (c *cli) damage() {
	c.t.Helper()
	for _, u := range []string{"u1", "u2"} {
		if code, _, errOut := c.run(oauthToken("AT-"+u, "RT-"+u), "token", "put", "--user", u); code != 0 {
			c.t.Fatal(errOut)
		}
	}
	ctx := context.Background()
	s := c.store()
	rec, _, err := s.Acquire(ctx, "u2", "test", time.Now(), time.Now().Add(time.Minute))
	if err != nil {
		c.t.Fatal(err)
	}
	if res, _, err := s.Flag(ctx, "u2", "test", rec.Version, tokens.ReasonInvalidGrant, "reauth:invalid_grant", time.Now()); err != nil || res != tokens.Flagged {
		c.t.Fatalf("flag: %v %v", res, err)
	}
	rdb := c.srv.Client(c.t)
	p := c.srv.Prefix
	if err := rdb.Set(ctx, p+"{u:bad}:tok", damagedValue, 0).Err(); err != nil {
		c.t.Fatal(err)
	}
	if err := rdb.ZAdd(ctx, p+"reauth", redis.Z{Score: float64(time.Now().UnixMilli()), Member: "bad"}).Err(); err != nil {
		c.t.Fatal(err)
	}
	if err := rdb.HSet(ctx, p+"{u:half}:tok", "s", "active", "c", damagedValue).Err(); err != nil {
		c.t.Fatal(err)
	}
}

// TestDamagedRecordsDoNotBreakListings: a token key of the wrong type and
// a hash missing fields are skipped and counted by users list, reauth
// list, keys rotate and the API, which all keep working for everyone
// else.
func TestDamagedRecordsDoNotBreakListings(t *testing.T) {
	c := newCLI(t)
	c.damage()

	code, out, errOut := c.run("", "users", "list", "--json")
	var all []tokens.Status
	if code != 0 || json.Unmarshal([]byte(out), &all) != nil || len(all) != 2 {
		t.Errorf("users list --json: %d %q %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "2 malformed records skipped") {
		t.Errorf("users list --json: stderr %q, want the malformed count", errOut)
	}
	if code, out, errOut := c.run("", "users", "list"); code != 0 || strings.Count(out, "\n") != 3 {
		t.Errorf("users list: %d %q %q", code, out, errOut)
	}
	code, out, errOut = c.run("", "reauth", "list", "--json")
	var q []struct{ User string }
	if code != 0 || json.Unmarshal([]byte(out), &q) != nil || len(q) != 1 || q[0].User != "u2" {
		t.Errorf("reauth list: %d %q %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "1 malformed record skipped") {
		t.Errorf("reauth list: stderr %q, want the malformed count", errOut)
	}

	// Rotation after a key compromise is not blocked by them.
	c.writeConfig("k2", "- {id: k1, secret: "+key1+"}\n    - {id: k2, secret: "+key2+"}")
	code, out, errOut = c.run("", "keys", "rotate", "--json")
	var st tokens.RotateStats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Rekeyed != 2 || st.Malformed != 2 {
		t.Errorf("keys rotate: %d %q %q", code, out, errOut)
	}

	d := &daemon{store: c.store(), log: zerolog.Nop()}
	h := admin.New(admin.Options{Backend: d, Logger: zerolog.Nop()}).Handler()
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
		code, body := get(t, h, tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d %s, want %d containing %s", tc.path, code, body, tc.code, tc.want)
		}
		if strings.Contains(body, damagedValue) {
			t.Errorf("GET %s shows a stored value: %s", tc.path, body)
		}
	}
}

// get serves one request in-process.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	return serveHTTP(t, h, "GET", path, "", "")
}

func serveHTTP(t *testing.T, h http.Handler, method, path, token, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}
