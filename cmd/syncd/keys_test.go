package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/syncd/syncd/internal/provider/oauth2fake"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// The tester's report: someone who can write the clear provider field of
// a record must not make syncd send the user's refresh token to another
// configured provider. The record is set aside and reported instead.
func TestProviderRewriteRefused(t *testing.T) {
	c := newCLI(t)
	fakes := map[string]*oauth2fake.Server{}
	providers := ""
	for _, name := range []string{"ex-a", "ex-b"} {
		f := oauth2fake.New(oauth2fake.Options{ClientID: "syncd", ClientSecret: "secret-" + name})
		hs := httptest.NewServer(f.Handler())
		t.Cleanup(hs.Close)
		fakes[name] = f
		providers += fmt.Sprintf("  - {name: %s, kind: oauth2, timeout: 5s, oauth2: {token_url: %q, client_id: syncd, client_secret: secret-%s}}\n",
			name, hs.URL+"/token", name)
	}
	// The daemon below (startLive) uses 2 due-set shards: so does the CLI.
	doc, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	doc = bytes.Replace(doc, []byte("providers: [{name: digime, kind: fake}]\n"), []byte("providers:\n"+providers), 1)
	doc = bytes.Replace(doc, []byte("shards: 4"), []byte("shards: 2"), 1)
	if err := os.WriteFile(c.config, doc, 0o600); err != nil {
		t.Fatal(err)
	}

	// Stored for ex-a, due now; then the clear provider field says ex-b.
	tok := fakes["ex-a"].Issue("pat")
	body := fmt.Sprintf(`{"access_token":%q,"refresh_token":%q,"token_type":"Bearer","expires_in":60}`, tok.AccessToken, tok.RefreshToken)
	if code, _, errOut := c.run(body, "token", "put", "--user", "pat", "--provider", "ex-a"); code != 0 {
		t.Fatal(errOut)
	}
	ctx := context.Background()
	rdb := c.srv.Client(t)
	if err := rdb.HSet(ctx, c.srv.Prefix+"{u:pat}:tok", "p", "ex-b").Err(); err != nil {
		t.Fatal(err)
	}

	d := startLive(t, c.srv, c.dir, "providers:\n"+providers)
	deadline := time.After(30 * time.Second)
	for seen := false; !seen; {
		select {
		case r := <-d.refreshes:
			seen = r.User == "pat"
		case <-deadline:
			t.Fatal("no refresh pass over pat")
		}
	}
	for name, f := range fakes {
		if st := f.Stats(); st.Calls != 0 {
			t.Fatalf("%s received %d token requests for the rewritten record", name, st.Calls)
		}
	}
	q, err := c.store().Quarantined(ctx)
	if err != nil || len(q) != 1 || q[0] != "pat" {
		t.Fatalf("quarantined %v %v", q, err)
	}
	_, m := httpGet("http://" + d.admin + "/metrics")
	if got := metric(m, "syncd_records_quarantined_total"); got != 1 {
		t.Fatalf("syncd_records_quarantined_total %v", got)
	}
	if got := metric(m, `syncd_token_open_failures_total{reason="tampered"}`); got != 1 {
		t.Fatalf(`syncd_token_open_failures_total{reason="tampered"} %v`, got)
	}
	logs, err := os.ReadFile(filepath.Join(c.dir, "syncd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if l := grepLines(string(logs), "undecryptable record quarantined"); !strings.Contains(l, `"level":"error"`) || !strings.Contains(l, `"user":"pat"`) {
		t.Fatalf("no error logged for the quarantined record: %q", l)
	}
	for _, f := range fakes {
		for _, secret := range f.Secrets() {
			if strings.Contains(string(logs), secret) {
				t.Fatal("a token value is in the logs")
			}
		}
	}
}

// runCtx is run with a context of the caller's (a daemon that must end).
func (c *cli) runCtx(ctx context.Context, stdin string, args ...string) (int, string, string) {
	c.t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "SYNCD_CONFIG" {
			return c.config
		}
		return ""
	}
	code := run(ctx, args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: getenv})
	return code, out.String(), errb.String()
}

// snapshot returns every key of the test with its value: hashes by
// HGETALL, sorted sets by ZRANGE, others by DUMP.
func (c *cli) snapshot() map[string]string {
	c.t.Helper()
	ctx := context.Background()
	rdb := c.srv.Client(c.t)
	out := make(map[string]string)
	iter := rdb.Scan(ctx, 0, c.srv.Prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			c.t.Fatal(err)
		}
		var v any
		switch typ {
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		default:
			v, err = rdb.Dump(ctx, k).Result()
		}
		if err != nil {
			c.t.Fatal(err)
		}
		out[k] = fmt.Sprintf("%s %v", typ, v)
	}
	if err := iter.Err(); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func diffSnapshots(before, after map[string]string) string {
	var d []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			d = append(d, "deleted "+k)
		} else if w != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return strings.Join(d, ", ")
}

// The tester's report: a replica or an operator with the wrong secret
// under a key id the database already uses must not start, must name the
// key id (never the key), and must change nothing.
func TestWrongKeyRefused(t *testing.T) {
	c := newCLI(t)
	c.jobs = "admin: {listen: \"\"}\n" // `syncd run` below: no admin listener
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}")
	for _, u := range []string{"w1", "w2"} {
		// Due at once: a daemon that started would refresh them now.
		tok := `{"access_token":"AT-` + u + `","refresh_token":"RT-` + u + `","token_type":"Bearer","expires_in":60}`
		if code, _, errOut := c.run(tok, "token", "put", "--user", u); code != 0 {
			t.Fatal(errOut)
		}
	}
	// k2 joins with its right value (a replica started with it), then
	// an operator mistypes it.
	c.writeConfig("k1", "- {id: k1, secret: "+key1+"}\n    - {id: k2, secret: "+key2+"}")
	if code, _, errOut := c.run("", "users", "list"); code != 0 {
		t.Fatal(errOut)
	}
	wrong := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	before := c.snapshot()

	check := func(t *testing.T, kid string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		code, out, errOut := c.runCtx(ctx, oauthToken("AT-w3", "RT-w3"), args...)
		if code != 2 {
			t.Fatalf("%v: exit %d, want 2 (stdout %q stderr %q)", args, code, out, errOut)
		}
		want := fmt.Sprintf(`keys: key %q does not match the key this database was sealed with`, kid)
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, want) {
			t.Fatalf("%v: stderr %q, want one line containing %q", args, errOut, want)
		}
		for _, secret := range []string{wrong, key1, key2} {
			if strings.Contains(errOut+out, secret) {
				t.Fatalf("%v: output holds a key: %q", args, errOut)
			}
		}
		if d := diffSnapshots(before, c.snapshot()); d != "" {
			t.Fatalf("%v changed the database: %s", args, d)
		}
	}
	commands := [][]string{
		{"run"},
		{"keys", "rotate"},
		{"token", "show", "--user", "w1"},
		{"users", "show", "w1"},
		{"users", "list"},
		{"token", "put", "--user", "w3"},
		{"users", "disable", "--user", "w1"},
		{"reauth", "list"},
		{"jobs", "list"},
		{"authorize", "exchange", "--state", "s", "--code", "c"},
	}
	t.Run("wrong value under the primary id", func(t *testing.T) {
		c.writeConfig("k1", "- {id: k1, secret: "+wrong+"}\n    - {id: k2, secret: "+key2+"}")
		for _, args := range commands {
			check(t, "k1", args...)
		}
	})
	t.Run("wrong value under a new primary id", func(t *testing.T) {
		// The rotation that re-sealed every token with a mistyped key.
		c.writeConfig("k2", "- {id: k1, secret: "+key1+"}\n    - {id: k2, secret: "+wrong+"}")
		for _, args := range commands {
			check(t, "k2", args...)
		}
	})
	t.Run("right keys", func(t *testing.T) {
		c.writeConfig("k2", "- {id: k1, secret: "+key1+"}\n    - {id: k2, secret: "+key2+"}")
		code, out, errOut := c.run("", "keys", "rotate", "--json")
		var st tokens.RotateStats
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Rekeyed != 2 {
			t.Fatalf("rotate: %d %q %q", code, out, errOut)
		}
		c.writeConfig("k2", "- {id: k2, secret: "+key2+"}")
		if code, out, errOut := c.run("", "token", "show", "--user", "w2", "--json"); code != 0 || !strings.Contains(out, `"key_id": "k2"`) {
			t.Fatalf("show: %d %q %q", code, out, errOut)
		}
	})
}

// A config reload whose keyring does not match the database is rejected
// like an invalid config; the running keyring and refresher stay.
func TestReloadRejectsWrongKey(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	d := startLive(t, srv, dir, "providers: [{name: digime, kind: fake, timeout: 5s}]\n")
	path := filepath.Join(dir, "syncd.yaml")
	reload := func(keys string) *prometheus.CounterVec {
		t.Helper()
		doc := fmt.Sprintf(`redis: {url: %q, prefix: %q, shards: 2}
log: {level: info, format: json}
encryption: {primary_key: k1, keys: [%s]}
admin: {listen: %q, token_file: admin-token}
shutdown_grace: 2s
refresher: {poll_interval: 50ms, lease: 10s}
runner: {poll_interval: 50ms, lease: 10s}
providers: [{name: digime, kind: fake, timeout: 5s}]
`, srv.URL, srv.Prefix, keys, d.admin)
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reloads"}, []string{"result"})
		d.daemon.reload(context.Background(), path, env{getenv: func(string) string { return "" }}, reloads, true)
		return reloads
	}
	current := func() (*tokens.Keyring, *refresher.Refresher) {
		d.daemon.mu.RLock()
		defer d.daemon.mu.RUnlock()
		return d.daemon.keys, d.daemon.ref
	}
	keys, ref := current()
	wrong := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	rdb := srv.Client(t)
	checks, err := rdb.HGetAll(context.Background(), srv.Prefix+"keycheck").Result()
	if err != nil || len(checks) != 1 || checks["k1"] == "" {
		t.Fatalf("check values after start: %v %v", checks, err)
	}

	r := reload(fmt.Sprintf("{id: k1, secret: %q}", wrong))
	if got := testutil.ToFloat64(r.WithLabelValues("error")); got != 1 {
		t.Fatalf("reload with a wrong key: %v errors, want 1", got)
	}
	if k, f := current(); k != keys || f != ref {
		t.Fatal("a reload with a wrong key replaced the running keyring")
	}
	if after, _ := rdb.HGetAll(context.Background(), srv.Prefix+"keycheck").Result(); !maps.Equal(after, checks) {
		t.Fatalf("check values changed: %v", after)
	}

	r = reload(fmt.Sprintf("{id: k1, secret: %q}, {id: k2, secret: %q}", key1, key2))
	if got := testutil.ToFloat64(r.WithLabelValues("ok")); got != 1 {
		t.Fatalf("reload with the right key and a new one: %v ok, want 1", got)
	}
	if k, _ := current(); k == keys || !k.Verified() {
		t.Fatal("the reloaded keyring is not in use or not verified")
	}
	if after, _ := rdb.HGetAll(context.Background(), srv.Prefix+"keycheck").Result(); len(after) != 2 || after["k1"] != checks["k1"] {
		t.Fatalf("check values after adding k2: %v", after)
	}
}

// A token record in the format before provider binding (the user id was
// the only associated data) is re-sealed by keys rotate even when it is
// under the primary key already.
func TestKeysRotateUpgradesLegacyRecords(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	keys, err := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	kid, ct, err := keys.Seal("old", []byte(`{"a":"AT-old","r":"RT-old"}`))
	if err != nil {
		t.Fatal(err)
	}
	rec := tokens.Record{UserID: "old", Provider: "digime", KeyID: kid, Ciphertext: ct, AccessExpiry: time.Now().Add(time.Hour)}
	if _, _, err := c.store().Put(ctx, rec, tokens.ReasonStored, time.Now()); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := c.run("", "keys", "rotate", "--json")
	var st tokens.RotateStats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Rekeyed != 1 || st.Upgraded != 1 || st.Current != 0 {
		t.Fatalf("rotate: %d %q %q", code, out, errOut)
	}
	got, err := c.store().Load(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if got.Ciphertext[0] != 0x02 || got.Version != 1 {
		t.Fatalf("after rotate: format %#x, version %d", got.Ciphertext[0], got.Version)
	}
	// Bound to its provider now: a rewritten provider field no longer opens.
	if tok, err := keys.OpenRecord(got); err != nil || tok.AccessToken != "AT-old" || tok.RefreshToken != "RT-old" {
		t.Fatalf("open after rotate: %v", err)
	}
	got.Provider = "other"
	if _, err := keys.OpenRecord(got); !errors.Is(err, tokens.ErrDecrypt) {
		t.Fatalf("rewritten provider after rotate: %v", err)
	}
	if code, out, _ := c.run("", "keys", "rotate"); code != 0 || !strings.Contains(out, "0 re-encrypted, 1 already current") {
		t.Fatalf("second rotate: %d %q", code, out)
	}
}
