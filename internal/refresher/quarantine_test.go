package refresher_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/tokens"
)

// TestWrongTypeRecordQuarantined: a token key that is not a hash (a
// string where the record belongs) is quarantined by the refresher like
// any malformed record, and the other users keep refreshing.
func TestWrongTypeRecordQuarantined(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 21}, testPolicy())
	r := b.refresher(t, true)
	users := b.putUsers(t, r, 3)
	ctx := context.Background()
	key := b.srv.Prefix + "{u:" + users[1] + "}:tok"
	if err := b.rdb.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.Set(ctx, key, "not a record", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b.clk.Advance(time.Hour)
	var bad *refresher.Result
	for _, res := range b.wait(t, "ok", 2) {
		if res.User == users[1] {
			bad = &res
		}
	}
	timeout := time.After(30 * time.Second)
	for bad == nil {
		select {
		case res := <-b.results:
			if res.User == users[1] {
				bad = &res
			}
		case <-timeout:
			t.Fatal("the wrong-type user was never claimed")
		}
	}
	if !errors.Is(bad.Err, tokens.ErrMalformedRecord) || !bad.Next.IsZero() {
		t.Fatalf("the wrong-type user: %+v, want a malformed record that leaves the due set", bad)
	}
	if typ, _ := b.rdb.Type(ctx, key).Result(); typ != "none" {
		t.Fatalf("the wrong-type key is still in place (%s)", typ)
	}
	q, err := b.store.Quarantined(ctx)
	if err != nil || len(q) != 1 || q[0] != users[1] {
		t.Fatalf("quarantined %v %v", q, err)
	}
	if got := testutil.ToFloat64(b.metrics.Quarantined); got != 1 {
		t.Fatalf("quarantine metric %v", got)
	}
}

// TestReconcileQuarantinesMalformed: housekeeping's walk quarantines
// damaged records the refresher may never claim (a key of the wrong type
// written by hand, a user in no due set), counts everyone else, and does
// not stop at them.
func TestReconcileQuarantinesMalformed(t *testing.T) {
	b := setup(t, fake.Options{}, testPolicy())
	r := b.refresher(t, false)
	ctx := context.Background()
	users := b.putUsers(t, r, 3)
	if err := b.rdb.Set(ctx, b.srv.Prefix+"{u:ghost}:tok", "not a record", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.HSet(ctx, b.srv.Prefix+"{u:"+users[2]+"}:tok", "v", "x").Err(); err != nil {
		t.Fatal(err)
	}
	counts, _, err := r.Reconcile(ctx)
	if err != nil || counts["active"] != 2 {
		t.Fatalf("reconcile: %v %v", counts, err)
	}
	list, err := b.store.QuarantineList(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("quarantined %+v %v", list, err)
	}
	reasons := map[string]string{list[0].UserID: list[0].Reason, list[1].UserID: list[1].Reason}
	if reasons["ghost"] != "wrong_type" || reasons[users[2]] != "malformed_record" {
		t.Fatalf("quarantined %+v", list)
	}
	if got := testutil.ToFloat64(b.metrics.Quarantined); got != 2 {
		t.Fatalf("quarantine metric %v", got)
	}
	if _, _, err := r.Reconcile(ctx); err != nil || testutil.ToFloat64(b.metrics.Quarantined) != 2 {
		t.Fatalf("second walk: %v", err)
	}
	if _, err := b.store.Load(ctx, users[0]); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreAfterRepair: records with a damaged field are quarantined
// when claimed; restoring them is refused while they are still damaged,
// and once the operator repairs them the users are back: scheduled for refresh at once (and refreshed)
// and handed to OnChange for their jobs.
func TestRestoreAfterRepair(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 22}, testPolicy())
	ctx := context.Background()
	users := b.putUsers(t, b.refresher(t, false), 2)
	type change struct {
		user, provider string
		st             tokens.State
	}
	changes := make(chan change, 10)
	newRefresher := func(keys *tokens.Keyring) *refresher.Refresher {
		r, err := refresher.New(b.newStore(t), keys, map[string]refresher.ProviderEntry{"fake": {Provider: b.prov, Policy: b.policy}},
			refresher.Options{Workers: 4, PollInterval: 5 * time.Millisecond, Lease: time.Minute, Clock: b.clk, Logger: zerolog.New(b.logs),
				Metrics: b.metrics, Observe: func(res refresher.Result) { b.results <- res },
				OnChange: func(_ context.Context, user, provider string, st tokens.State) error {
					changes <- change{user, provider, st}
					return nil
				}})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Stop(context.Background()) })
		return r
	}
	// A damaged field: the refresher that claims the users quarantines
	// them. (A wrong key no longer does: see TestWrongKeyValueDoesNotQuarantine.)
	tokKey := func(u string) string { return b.srv.Prefix + "{u:" + u + "}:tok" }
	qKey := func(u string) string { return b.srv.Prefix + "{u:" + u + "}:quarantine" }
	saved := map[string]string{}
	for _, u := range users {
		saved[u] = b.rdb.HGet(ctx, tokKey(u), "ae").Val()
		if err := b.rdb.HSet(ctx, tokKey(u), "ae", "not-a-time").Err(); err != nil {
			t.Fatal(err)
		}
	}
	bad := newRefresher(b.keys)
	b.clk.Advance(time.Hour)
	b.wait(t, "error", 2)
	if err := bad.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := b.store.QuarantineList(ctx)
	if err != nil || len(list) != 2 || list[0].Reason != "malformed_record" {
		t.Fatalf("quarantined %+v %v", list, err)
	}
	if _, err := bad.Restore(ctx, users[0]); !errors.Is(err, tokens.ErrMalformedRecord) || !refresher.RestoreRefused(err) {
		t.Fatalf("restore of a record still damaged: %v", err)
	}
	// The operator repairs the quarantined copies.
	for _, u := range users {
		if err := b.rdb.HSet(ctx, qKey(u), "ae", saved[u]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	good := newRefresher(b.keys)
	for _, u := range users {
		rec, err := good.Restore(ctx, u)
		if err != nil || rec.State != tokens.Active {
			t.Fatalf("restore %s: %+v %v", u, rec, err)
		}
		if c := <-changes; c != (change{u, "fake", tokens.Active}) {
			t.Fatalf("on change %+v", c)
		}
	}
	b.wait(t, "ok", 2)
	if _, err := good.Restore(ctx, users[0]); !errors.Is(err, tokens.ErrNotQuarantined) && !errors.Is(err, tokens.ErrLiveRecord) {
		t.Fatalf("second restore: %v", err)
	}
	if list, _ := b.store.QuarantineList(ctx); len(list) != 0 {
		t.Fatalf("still quarantined: %+v", list)
	}
	b.assertNoLeak(t)
}
