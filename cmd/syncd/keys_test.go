package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/provider/oauth2fake"
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
}
