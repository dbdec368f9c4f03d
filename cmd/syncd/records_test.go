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
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/scheduler"
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
	rec, _, err := s.Acquire(ctx, "u2", "test", "", time.Now(), time.Now().Add(time.Minute))
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

// TestQuarantineListAndRestore: quarantined users are listed (CLI and
// API) with reason and since, never content; a restore is refused with
// one line and exit 2 while the record still does not read or a live
// record exists, and once the operator repaired the field it brings the
// user back to the refresh and job schedules.
func TestQuarantineListAndRestore(t *testing.T) {
	c := newCLI(t)
	c.jobs = "jobs: [{name: pull, kind: pull, schedule: \"@every 5m\"}]\n"
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	c.damage()
	ctx := context.Background()
	s := c.store()
	rdb := c.srv.Client(t)
	p := c.srv.Prefix
	// u1's record loses a field; the refresher (here: housekeeping's
	// check) quarantines it, and "bad" with it.
	if err := rdb.HSet(ctx, p+"{u:u1}:tok", "ae", "soon").Err(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"u1", "bad"} {
		if moved, err := s.QuarantineMalformed(ctx, u, time.Now()); err != nil || !moved {
			t.Fatalf("quarantine %s: %v %v", u, moved, err)
		}
	}
	if at, _ := s.DueAt(ctx, "job:pull", "u1"); at.IsZero() {
		t.Fatal("u1 was never scheduled for the job")
	}
	if err := s.ScheduleDue(ctx, "job:pull", []scheduler.Entry{{Member: "u1"}}); err != nil {
		t.Fatal(err) // as the runner does when it finds no record
	}
	if err := s.ScheduleDue(ctx, tokens.RefreshSet, []scheduler.Entry{{Member: "u1"}}); err != nil {
		t.Fatal(err) // as the refresher does when it quarantines
	}

	code, out, errOut := c.run("", "quarantine", "list", "--json")
	var list []struct{ User, Reason, Since string }
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 {
		t.Fatalf("quarantine list --json: %d %q %q", code, out, errOut)
	}
	got := map[string]string{list[0].User: list[0].Reason, list[1].User: list[1].Reason}
	if got["u1"] != "malformed_record" || got["bad"] != "wrong_type" || list[0].Since == "" {
		t.Fatalf("quarantine list: %+v", list)
	}
	code, out, _ = c.run("", "quarantine", "list")
	if code != 0 || !strings.HasPrefix(out, "USER") || strings.Count(out, "\n") != 3 || !strings.Contains(out, "wrong_type") {
		t.Fatalf("quarantine list: %d %q", code, out)
	}

	refused := func(user, want string) {
		t.Helper()
		code, out, errOut := c.run("", "quarantine", "restore", "--user", user)
		if code != 2 || out != "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, want) {
			t.Fatalf("restore %s: %d %q %q, want exit 2 and one line containing %q", user, code, out, errOut, want)
		}
		if strings.Contains(errOut, damagedValue) {
			t.Fatalf("restore %s shows a stored value: %q", user, errOut)
		}
	}
	refused("u1", `field "ae"`)
	refused("bad", "not a hash")
	refused("u2", "not quarantined")
	if code, _, errOut := c.run("", "quarantine", "restore"); code != 2 || !strings.Contains(errOut, "--user is required") {
		t.Fatalf("restore without --user: %d %q", code, errOut)
	}

	// The operator repairs the field.
	if err := rdb.HSet(ctx, p+"{u:u1}:quarantine", "ae", time.Now().Add(time.Hour).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := c.run("", "quarantine", "restore", "--user", "u1"); code != 0 || out != "user u1 restored: active (provider digime)\n" {
		t.Fatalf("restore u1: %d %q %q", code, out, errOut)
	}
	if at, _ := s.DueAt(ctx, tokens.RefreshSet, "u1"); at.IsZero() || time.Until(at) > time.Second {
		t.Fatalf("u1's refresh is due at %v, want now", at)
	}
	if at, _ := s.DueAt(ctx, "job:pull", "u1"); at.IsZero() {
		t.Fatal("u1 is not back in its job")
	}
	refused("u1", "not quarantined")

	// A live record is never overwritten.
	if err := rdb.Copy(ctx, p+"{u:u2}:tok", p+"{u:u2}:quarantine", 0, false).Err(); err != nil {
		t.Fatal(err)
	}
	refused("u2", "a live record exists")

	// The API: listing is open, restoring needs the bearer token.
	keys, err := keyring(mustConfig(t, c))
	if err != nil {
		t.Fatal(err)
	}
	dp := &deps{cfg: mustConfig(t, c), store: s, keys: keys, log: zerolog.Nop()}
	ref, err := dp.refresher(nil, refresher.Options{})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := dp.runner(nil, nil, jobs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{store: s, log: zerolog.Nop(), cfg: dp.cfg, ref: ref, runner: runner}
	const token = "restore-token-0123456789"
	h := admin.New(admin.Options{Token: token, Backend: d, Logger: zerolog.Nop()}).Handler()
	if code, body := get(t, h, "/v1/quarantine"); code != 200 || !strings.Contains(body, `"size":1`) || !strings.Contains(body, `"user":"bad","reason":"wrong_type"`) {
		t.Fatalf("GET /v1/quarantine: %d %s", code, body)
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/users/bad/restore", "", ""); code != 401 {
		t.Fatalf("restore without the token: %d %s", code, body)
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/users/bad/restore", token, ""); code != 409 || !strings.Contains(body, "not a hash") || strings.Contains(body, damagedValue) {
		t.Fatalf("restore bad: %d %s", code, body)
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/users/u1/restore", token, ""); code != 404 || !strings.Contains(body, "not quarantined") {
		t.Fatalf("restore u1 again: %d %s", code, body)
	}
	// A record copied over from another user parses but does not open as
	// this user's (tokens are sealed under the user id): refused.
	if err := rdb.Copy(ctx, p+"{u:u2}:tok", p+"{u:bad}:quarantine", 0, true).Err(); err != nil {
		t.Fatal(err)
	}
	if code, body := serveHTTP(t, h, "POST", "/v1/users/bad/restore", token, ""); code != 409 || !strings.Contains(body, "does not open") {
		t.Fatalf("restore a record sealed for another user: %d %s", code, body)
	}
}

func mustConfig(t *testing.T, c *cli) *config.Config {
	t.Helper()
	cfg, err := config.Load(c.config, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
