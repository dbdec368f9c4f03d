package tokens_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/tokens"
)

// waitUsers waits for the refresher's first pass over each of users.
func (b *bundle) waitUsers(t *testing.T, users ...string) map[string]tokens.Result {
	t.Helper()
	got := make(map[string]tokens.Result, len(users))
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
	r, err := tokens.NewRefresher(store, b.keys, map[string]tokens.ProviderEntry{
		"fake": {Provider: b.prov, Policy: b.policy}, "other": {Provider: other, Policy: b.policy},
	}, tokens.Options{Workers: 2, Batch: 8, PollInterval: 5 * time.Millisecond, Lease: time.Minute, Clock: b.clk,
		Logger: zerolog.New(b.logs), Metrics: b.metrics, Observe: func(res tokens.Result) { b.results <- res }})
	if err != nil {
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
	b.assertNoLeak(t)
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
