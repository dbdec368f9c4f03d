package refresher_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// waitUsers waits for the refresher's first pass over each of users.
func (b *bundle) waitUsers(t *testing.T, users ...string) map[string]refresher.Result {
	t.Helper()
	got := make(map[string]refresher.Result, len(users))
	timeout := time.After(30 * time.Second)
	for len(got) < len(users) {
		select {
		case r := <-b.results:
			for _, u := range users {
				if _, seen := got[u]; r.User == u && !seen {
					got[u] = r
				}
			}
		case <-timeout:
			t.Fatalf("passes over %d of %v", len(got), users)
		}
	}
	return got
}

// A record whose clear provider field was rewritten must never make
// syncd send the user's refresh token to that other provider.
func TestProviderRewriteNeverReachesOtherProvider(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 21}, testPolicy())
	ctx := context.Background()
	other := fake.New(fake.Options{Clock: b.clk, Seed: 22})
	store := b.newStore(t)
	if err := store.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := refresher.New(store, b.keys, map[string]refresher.ProviderEntry{
		"fake": {Provider: b.prov, Policy: b.policy}, "other": {Provider: other, Policy: b.policy},
	}, refresher.Options{Workers: 2, Batch: 8, PollInterval: 5 * time.Millisecond, Lease: time.Minute, Clock: b.clk,
		Logger: zerolog.New(b.logs), Metrics: b.metrics, Observe: func(res refresher.Result) { b.results <- res }})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.keys.Verify(ctx, store); err != nil { // as every command does
		t.Fatal(err)
	}
	users := b.putUsers(t, r, 2)
	if err := b.rdb.HSet(ctx, b.srv.Prefix+"{u:"+users[0]+"}:tok", "p", "other").Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(sctx)
	})
	b.clk.Advance(time.Hour)
	b.waitUsers(t, users[0])
	// On-use refreshes (jobs) must not reach it either.
	if _, err := r.Token(ctx, users[0], time.Minute); err == nil {
		t.Fatal("Token succeeded for a record whose provider was rewritten")
	}
	if got := other.Stats().Calls; got != 0 {
		t.Fatalf("the other provider received %d refresh calls for a record rewritten to it", got)
	}
	if got := b.prov.Refreshes(users[0]); got != 0 {
		t.Fatalf("the original provider refreshed the rewritten record %d times", got)
	}
	// Under a verified key it is a tampered record: set aside, reported.
	if q, err := b.store.Quarantined(ctx); err != nil || len(q) != 1 || q[0] != users[0] {
		t.Fatalf("quarantined %v %v", q, err)
	}
	if got := testutil.ToFloat64(b.metrics.OpenFailures.WithLabelValues("tampered")); got != 1 {
		t.Fatalf("open failures (tampered) %v, want 1", got)
	}
	if got := testutil.ToFloat64(b.metrics.Quarantined); got != 1 {
		t.Fatalf("quarantined metric %v, want 1", got)
	}
	if rec := b.record(t, users[1]); rec.State != tokens.Active {
		t.Fatalf("the other user is %s", rec.State)
	}
	b.assertNoLeak(t)
}

// A replica whose key id holds another value than the one the records
// were sealed with must not quarantine them: that is the operator's
// configuration error, and the records are intact.
func TestWrongKeyValueDoesNotQuarantine(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 23}, testPolicy())
	ctx := context.Background()
	users := b.putUsers(t, b.refresher(t, false), 3)
	before := b.record(t, users[0])
	// And one record under a key id no longer configured.
	if err := b.rdb.HSet(ctx, b.srv.Prefix+"{u:"+users[2]+"}:tok", "k", "k0").Err(); err != nil {
		t.Fatal(err)
	}

	wrong, err := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{9}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	b.keys = wrong
	m := refresher.NewMetrics(prometheus.NewRegistry())
	b.metrics = m
	b.refresher(t, true)
	b.clk.Advance(time.Hour)
	for u, res := range b.waitUsers(t, users...) {
		if res.Outcome == "ok" {
			t.Fatalf("refreshed %s with the wrong key", u)
		}
	}
	for _, u := range users {
		if _, err := b.store.Load(ctx, u); err != nil {
			t.Fatalf("record of %s after a pass with the wrong key: %v", u, err)
		}
	}
	if after := b.record(t, users[0]); !bytes.Equal(after.Ciphertext, before.Ciphertext) || after.State != before.State {
		t.Fatalf("record changed: state %s -> %s", before.State, after.State)
	}
	if q, err := b.store.Quarantined(ctx); err != nil || len(q) != 0 {
		t.Fatalf("quarantined %v %v", q, err)
	}
	if b.prov.Stats().Calls != 0 {
		t.Fatal("the provider was called")
	}
	for reason, want := range map[string]float64{"unverified_key": 2, "unknown_key": 1, "tampered": 0} {
		if got := testutil.ToFloat64(m.OpenFailures.WithLabelValues(reason)); got != want {
			t.Errorf("open failures (%s) %v, want %v", reason, got, want)
		}
	}
	if !strings.Contains(b.logs.String(), `"reason":"unverified_key"`) {
		t.Error("no error logged for the wrong key")
	}
}

// A token record in the format before provider binding is upgraded by
// its next refresh.
func TestRefreshUpgradesLegacyRecord(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 24}, testPolicy())
	ctx := context.Background()
	tok := b.prov.Issue("legacy-1")
	kid, ct, err := b.keys.Seal(tok.UserID, []byte(`{"a":"`+tok.AccessToken+`","r":"`+tok.RefreshToken+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	rec := tokens.Record{UserID: tok.UserID, Provider: "fake", KeyID: kid, Ciphertext: ct, AccessExpiry: tok.AccessExpiry}
	if _, _, err := b.store.Put(ctx, rec, tokens.ReasonStored, b.clk.Now()); err != nil {
		t.Fatal(err)
	}
	r := b.refresher(t, false)
	got, err := r.Token(ctx, tok.UserID, 2*time.Hour) // forces a refresh
	if err != nil {
		t.Fatalf("legacy record: %v", err)
	}
	if got.AccessToken == tok.AccessToken {
		t.Fatal("not refreshed")
	}
	if v := b.record(t, tok.UserID).Ciphertext[0]; v != 0x02 {
		t.Fatalf("record format after refresh %#x, want 0x02 (bound to the provider)", v)
	}
}
