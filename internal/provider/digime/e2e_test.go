package digime

import (
	"bytes"
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/provider/digimefake"
	"github.com/syncd/syncd/internal/provider/providertest"
	"github.com/syncd/syncd/internal/tokens"
)

// e2e starts a digimefake server and returns it with its base URL; mods
// change its options.
func e2e(t *testing.T, mods ...func(*digimefake.Options)) (*digimefake.Server, string) {
	t.Helper()
	testKeys(t)
	opt := digimefake.Options{
		AppID: testAppID, ContractID: testContractID, ContractKey: &contractKey.PublicKey,
		SigningKey: serverKey, Seed: 1,
	}
	for _, m := range mods {
		m(&opt)
	}
	fake, err := digimefake.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(fake.Handler())
	t.Cleanup(hs.Close)
	return fake, hs.URL + digimefake.PathPrefix
}

func e2eClient(t *testing.T, base string, mods ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		BaseURL: base, AppID: testAppID, ContractID: testContractID, PrivateKey: contractKey,
		PollInterval: time.Millisecond, RetryBackoff: time.Millisecond,
	}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestContract(t *testing.T) {
	fake, base := e2e(t)
	providertest.Run(t, providertest.Harness{
		Client:           e2eClient(t, base),
		BadClient:        e2eClient(t, base, func(c *Config) { c.PrivateKey = otherKey }),
		Issue:            func(_ *testing.T, user string) tokens.Token { return fake.Issue(user) },
		Revoke:           fake.Revoke,
		Outage:           fake.SetOutage,
		InvalidateAccess: fake.InvalidateAccess,
		SeedData: func(user string) {
			fake.AddFile(user, digimefake.File{Name: "seed.json", Data: []byte(`{"seed":1}`), MimeType: "application/json"})
		},
		Pushed: func(user string) [][]byte {
			var out [][]byte
			for _, im := range fake.Imports(user) {
				out = append(out, im.Data)
			}
			return out
		},
		Reuses: fake.ReusesOf,
		WithGrace: func(t *testing.T, grace time.Duration) providertest.GraceHarness {
			// One clock for both: the server checks the request JWTs'
			// timestamps against its own.
			clk := clock.NewFake(time.Now())
			gf, gbase := e2e(t, func(o *digimefake.Options) { o.RotationGracePeriod, o.Clock = grace, clk })
			return providertest.GraceHarness{
				Client:  e2eClient(t, gbase, func(c *Config) { c.Clock = clk }),
				Issue:   func(_ *testing.T, user string) tokens.Token { return gf.Issue(user) },
				Advance: clk.Advance,
				Reuses:  gf.ReusesOf,
			}
		},
	})
}

func TestE2E(t *testing.T) {
	fake, base := e2e(t)
	var logs lockedBuffer
	c := e2eClient(t, base, func(cfg *Config) { cfg.Logger = zerolog.New(&logs).Level(zerolog.TraceLevel) })
	ctx := context.Background()
	user := "e2e-user"
	src := &refreshingSource{c: c, tok: fake.Issue(user)}
	now := time.Now()
	big := bytes.Repeat([]byte(`{"row":"some data"},`), 2000)
	fake.AddFile(user, digimefake.File{Name: "b.json", Data: big, Compression: "brotli", Updated: now.Add(-time.Minute),
		Metadata: []byte(`{"mimetype":"application/json","accounts":[{"accountid":"acct-1"}]}`)})
	fake.AddFile(user, digimefake.File{Name: "a.json", Data: []byte(`{"a":1}`), Compression: "gzip", Updated: now.Add(-2 * time.Minute),
		MimeType: "application/json"})
	fake.AddFile(user, digimefake.File{Name: "c.txt", Data: []byte("plain"), Updated: now.Add(-time.Minute), MimeType: "text/plain"})
	fake.SetPartial(user, "acct-9", true)

	var mu sync.Mutex
	var got []provider.Item
	deliver := func(it provider.Item) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, it)
		return nil
	}
	res, err := c.Pull(ctx, user, src, "", deliver)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, it := range got {
		names = append(names, it.Name)
	}
	if !slices.Equal(names, []string{"a.json", "b.json", "c.txt"}) {
		t.Fatalf("delivered %v", names)
	}
	if !bytes.Equal(got[1].Data, big) || got[1].MimeType != "application/json" || string(got[0].Data) != `{"a":1}` || got[2].MimeType != "text/plain" {
		t.Fatalf("items %q %q", got[0].Data, got[2].Data)
	}
	if res.Status != statePartial || len(res.AccountErrors) != 1 || res.AccountErrors[0].Account != "acct-9" ||
		!res.AccountErrors[0].Reauth || res.AccountErrors[0].Status != 511 {
		t.Fatalf("result %+v", res)
	}

	// Nothing new from the cursor; an updated file comes again.
	fake.ClearPartial(user)
	got = nil
	res2, err := c.Pull(ctx, user, src, res.Cursor, deliver)
	if err != nil || len(got) != 0 || res2.Cursor != res.Cursor || res2.Status != stateCompleted {
		t.Fatalf("second pull: %+v %v, %d items", res2, err, len(got))
	}
	fake.AddFile(user, digimefake.File{Name: "a.json", Data: []byte(`{"a":2}`), MimeType: "application/json", Updated: now})
	fake.InvalidateAccess(user)
	res3, err := c.Pull(ctx, user, src, res.Cursor, deliver)
	if err != nil || len(got) != 1 || string(got[0].Data) != `{"a":2}` || res3.Delivered != 1 {
		t.Fatalf("third pull: %+v %v, %d items", res3, err, len(got))
	}

	// Push.
	item := provider.PushItem{ID: "p1", Data: []byte(`{"bp":120}`), MimeType: "application/json", Accounts: []string{"acct-1"}, Tags: []string{"syncd"}}
	if err := c.Push(ctx, user, src, item); err != nil {
		t.Fatal(err)
	}
	imps := fake.Imports(user)
	if len(imps) != 1 || !bytes.Equal(imps[0].Data, item.Data) || imps[0].MimeType != item.MimeType ||
		!slices.Equal(imps[0].Accounts, item.Accounts) || !slices.Equal(imps[0].Tags, item.Tags) {
		t.Fatalf("imports %+v", imps)
	}

	st := fake.Stats()
	if st.BadSignature != 0 || st.BadJWT != 0 || st.ReusedNonce != 0 || st.StaleTimestamp != 0 || st.BadClient != 0 {
		t.Fatalf("the fake rejected requests: %+v", st)
	}
	text := logs.String()
	for _, s := range fake.Secrets() {
		if strings.Contains(text, s) {
			t.Fatalf("a token leaked into the logs")
		}
	}
	if strings.Contains(text, "eyJ") {
		t.Fatal("a JWT leaked into the logs")
	}
}
