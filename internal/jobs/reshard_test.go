package jobs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// replica starts a refresher and a job runner on a store with the given
// shard count, the way syncd run starts: announce the shard count,
// migrate the due sets, then start the engines. stop stops it the way a
// SIGTERM does.
func (b *bundle) replica(shards int, owner string, refreshes chan<- refresher.Result) (ref *refresher.Refresher, stop func()) {
	b.t.Helper()
	ctx := context.Background()
	store := redisstore.New(b.srv.Client(b.t), redisstore.Options{Prefix: b.srv.Prefix, Shards: shards})
	if err := store.Ping(ctx); err != nil {
		b.t.Fatal(err)
	}
	if err := store.AnnounceShards(ctx, owner, b.clk.Now()); err != nil {
		b.t.Fatal(err)
	}
	if _, err := store.MigrateShards(ctx, b.clk.Now(), time.Minute); err != nil {
		b.t.Fatal(err)
	}
	runner, err := jobs.NewRunner(store, func(rec tokens.Record, d time.Duration) provider.TokenSource { return ref.SourceFrom(rec, d) },
		map[string]jobs.ProviderEntry{"fake": {Provider: b.prov, Burst: 1, MaxConcurrency: 16}}, b.jobs,
		jobs.Options{Owner: owner, Workers: 16, Batch: 128, Lease: 30 * time.Second, PollInterval: 5 * time.Millisecond, Clock: b.clk,
			Logger: zerolog.New(b), Metrics: b.metrics, Observe: func(r jobs.Run) { b.runs <- r }})
	if err != nil {
		b.t.Fatal(err)
	}
	ref, err = refresher.New(store, b.keys, map[string]refresher.ProviderEntry{"fake": {Provider: b.prov, Policy: refresher.Policy{
		Lead: 10 * time.Minute, Jitter: time.Minute, DefaultLifetime: time.Hour, Timeout: 5 * time.Second,
		RetryInitial: time.Second, RetryMax: time.Minute, RetryAfterCap: time.Minute, DegradedAfter: 3}}},
		refresher.Options{Owner: owner, Workers: 16, PollInterval: 5 * time.Millisecond, Clock: b.clk, Logger: zerolog.New(b), Lease: 30 * time.Second,
			OnChange: runner.UserChanged, Observe: func(r refresher.Result) { refreshes <- r }})
	if err != nil {
		b.t.Fatal(err)
	}
	if err := runner.Start(ctx); err != nil {
		b.t.Fatal(err)
	}
	if err := ref.Start(ctx); err != nil {
		b.t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = runner.Stop(sctx)
		_ = ref.Stop(sctx)
		if err := store.WithdrawShards(ctx, owner); err != nil {
			b.t.Error(err)
		}
	}
	b.t.Cleanup(stop)
	return ref, stop
}

// waitRefreshed waits until every user was refreshed once.
func waitRefreshed(t *testing.T, refreshes <-chan refresher.Result, users []string) {
	t.Helper()
	left := make(map[string]bool, len(users))
	for _, u := range users {
		left[u] = true
	}
	timeout := time.After(60 * time.Second)
	for len(left) > 0 {
		select {
		case r := <-refreshes:
			if r.Outcome == "ok" {
				delete(left, r.User)
			}
		case <-timeout:
			t.Fatalf("timed out waiting for refreshes: %d users left", len(left))
		}
	}
}

// TestShardCountChangedOnLiveDatabase: users and jobs scheduled with 4
// shards keep running after a restart with 16 shards and again after one
// back to 4: every user is refreshed, every job slot runs once for every
// user, and no entry is left in a shard where its claim can never finish.
func TestShardCountChangedOnLiveDatabase(t *testing.T) {
	b := setup(t, `jobs: [{name: pull, kind: pull, schedule: "@every 2s"}]`)
	const n = 200
	users := userIDs(n)
	refreshes := make(chan refresher.Result, 100000)
	slots := 0
	slot := func() {
		t.Helper()
		b.clk.Advance(2 * time.Second)
		b.wait("ok", map[string]int{"pull": n})
		slots++
	}
	// Tokens are due for refresh 49-50 minutes after they were stored or
	// refreshed, with more than a pull's timeout of life left.
	refreshAll := func() {
		t.Helper()
		b.clk.Advance(51 * time.Minute)
		waitRefreshed(t, refreshes, users)
		b.wait("ok", map[string]int{"pull": n}) // the slot missed meanwhile, once
		slots++
	}

	ref, stop := b.replica(4, "four", refreshes)
	b.put(&instance{ref: ref}, users...)
	slot()
	slot()
	stop()

	_, stop = b.replica(16, "sixteen", refreshes)
	for range 3 {
		slot()
	}
	refreshAll()
	slot()
	stop()

	_, stop = b.replica(4, "four-again", refreshes)
	slot()
	refreshAll()
	slot()
	stop()

	for _, u := range users {
		pulls := b.prov.Pulls(u)
		if len(pulls) != slots {
			t.Fatalf("%s pulled %d times in %d slots", u, len(pulls), slots)
		}
		for i := 1; i < len(pulls); i++ {
			if !pulls[i].After(pulls[i-1]) {
				t.Fatalf("%s pulled twice in one slot: %v", u, pulls)
			}
		}
	}
	// Every entry sits in its shard under 4 shards, nowhere else.
	ctx := context.Background()
	for _, set := range []string{tokens.RefreshSet, jobs.SetName("pull")} {
		for sh := range 16 {
			members, err := b.rdb.ZRange(ctx, fmt.Sprintf("%sdue:%s:%d", b.srv.Prefix, set, sh), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range members {
				if want := scheduler.Shard(m, 4); want != sh {
					t.Fatalf("%s: %s in shard %d, want %d", set, m, sh, want)
				}
			}
			if sh < 4 {
				continue
			}
			if len(members) > 0 {
				t.Fatalf("%s: shard %d of 16 still holds %d entries", set, sh, len(members))
			}
		}
		total := 0
		for sh := range 4 {
			c, _ := b.rdb.ZCard(ctx, fmt.Sprintf("%sdue:%s:%d", b.srv.Prefix, set, sh)).Result()
			total += int(c)
		}
		if total != n {
			t.Fatalf("%s holds %d entries, want %d", set, total, n)
		}
	}
}
