package tokens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/syncd/syncd/internal/provider/fake"
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
	var bad *tokens.Result
	for _, res := range b.wait(t, "ok", 2) {
		if res.User == users[1] {
			bad = &res
		}
	}
	for bad == nil {
		res := <-b.results
		if res.User == users[1] {
			bad = &res
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
