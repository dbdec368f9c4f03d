package daemon

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	srv := redistest.Start(t)
	dir := t.TempDir()
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
	o := offline(t, srv, "providers:\n"+providers)

	// Stored for ex-a, due now; then the clear provider field says ex-b.
	tok := fakes["ex-a"].Issue("pat")
	ctx := context.Background()
	if _, err := o.Put(ctx, "ex-a", tokens.Token{UserID: "pat", AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken,
		AccessExpiry: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	rdb := srv.Client(t)
	if err := rdb.HSet(ctx, srv.Prefix+"{u:pat}:tok", "p", "ex-b").Err(); err != nil {
		t.Fatal(err)
	}

	d := startLive(t, srv, dir, "providers:\n"+providers)
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
	q, err := o.Store.Quarantined(ctx)
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
	logs, err := os.ReadFile(filepath.Join(dir, "syncd.log"))
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

// A config reload whose keyring does not match the database is rejected
// like an invalid config; the running keyring and refresher stay.
func TestReloadRejectsWrongKey(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	const providers = "providers: [{name: digime, kind: fake, timeout: 5s}]\n"
	d := startLive(t, srv, dir, providers)
	reload := func(keys string) error {
		t.Helper()
		return d.daemon.Reload(liveConfig(t, srv, dir, keys, providers))
	}
	current := func() (*tokens.Keyring, *refresher.Refresher) {
		d.daemon.mu.RLock()
		defer d.daemon.mu.RUnlock()
		return d.daemon.keys, d.daemon.ref
	}
	reloads := func(result string) float64 { return testutil.ToFloat64(d.daemon.reloads.WithLabelValues(result)) }
	keys, ref := current()
	wrong := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	rdb := srv.Client(t)
	checks, err := rdb.HGetAll(context.Background(), srv.Prefix+"keycheck").Result()
	if err != nil || len(checks) != 1 || checks["k1"] == "" {
		t.Fatalf("check values after start: %v %v", checks, err)
	}

	if err := reload(fmt.Sprintf("{id: k1, secret: %q}", wrong)); err == nil || reloads("error") != 1 {
		t.Fatalf("reload with a wrong key: %v, %v errors counted, want 1", err, reloads("error"))
	}
	if k, f := current(); k != keys || f != ref {
		t.Fatal("a reload with a wrong key replaced the running keyring")
	}
	if after, _ := rdb.HGetAll(context.Background(), srv.Prefix+"keycheck").Result(); !maps.Equal(after, checks) {
		t.Fatalf("check values changed: %v", after)
	}

	if err := reload(fmt.Sprintf("{id: k1, secret: %q}, {id: k2, secret: %q}", key1, key2)); err != nil || reloads("ok") != 1 {
		t.Fatalf("reload with the right key and a new one: %v, %v ok, want 1", err, reloads("ok"))
	}
	if k, _ := current(); k == keys || !k.Verified() {
		t.Fatal("the reloaded keyring is not in use or not verified")
	}
	if after, _ := rdb.HGetAll(context.Background(), srv.Prefix+"keycheck").Result(); len(after) != 2 || after["k1"] != checks["k1"] {
		t.Fatalf("check values after adding k2: %v", after)
	}
}
