package redisstore_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/scheduler"
)

type shardBundle struct {
	srv *redistest.Server
	rdb *redis.Client
	t   *testing.T
}

func (b *shardBundle) store(shards int) *redisstore.Store {
	s := redisstore.New(b.srv.Client(b.t), redisstore.Options{Prefix: b.srv.Prefix, Shards: shards})
	if err := s.Ping(context.Background()); err != nil {
		b.t.Fatal(err)
	}
	return s
}

// layout returns every due-set entry in Redis: set -> member -> shard
// number and score; it fails on a member listed twice in one set.
func (b *shardBundle) layout() map[string]map[string][2]int64 {
	b.t.Helper()
	ctx := context.Background()
	out := make(map[string]map[string][2]int64)
	iter := b.rdb.Scan(ctx, 0, b.srv.Prefix+"due:*", 1000).Iterator()
	for iter.Next(ctx) {
		var set string
		var shard int64
		key := iter.Val()[len(b.srv.Prefix+"due:"):]
		i := len(key) - 1
		for key[i] != ':' {
			i--
		}
		set = key[:i]
		fmt.Sscan(key[i+1:], &shard)
		zs, err := b.rdb.ZRangeWithScores(ctx, iter.Val(), 0, -1).Result()
		if err != nil {
			b.t.Fatal(err)
		}
		if out[set] == nil {
			out[set] = make(map[string][2]int64)
		}
		for _, z := range zs {
			m := z.Member.(string)
			if _, dup := out[set][m]; dup {
				b.t.Fatalf("%s: %s is in two shards", set, m)
			}
			out[set][m] = [2]int64{shard, int64(z.Score)}
		}
	}
	if err := iter.Err(); err != nil {
		b.t.Fatal(err)
	}
	return out
}

// checkLayout: every entry of want is in its shard under n shards with
// its score, and there is nothing else.
func (b *shardBundle) checkLayout(n int, want map[string]map[string]int64) {
	b.t.Helper()
	got := b.layout()
	for set, members := range want {
		if len(got[set]) != len(members) {
			b.t.Fatalf("%s holds %d entries, want %d", set, len(got[set]), len(members))
		}
		for m, score := range members {
			g := got[set][m]
			if g[0] != int64(scheduler.Shard(m, n)) || g[1] != score {
				b.t.Fatalf("%s: %s in shard %d at %d, want shard %d at %d", set, m, g[0], g[1], scheduler.Shard(m, n), score)
			}
		}
	}
}

// TestMigrateShards: entries laid out for 4 shards are moved to their
// shard under 16 with their scores (a claim's fence still finishes in the
// new shard), and back to 4 (shards 4-15 emptied); nothing moves while a
// live replica runs with another count; a replica that ran with another
// count since the last migration (a rolling restart) makes the next one
// sweep again.
func TestMigrateShards(t *testing.T) {
	srv := redistest.Start(t)
	b := &shardBundle{srv: srv, rdb: srv.Client(t), t: t}
	ctx := context.Background()
	t0 := time.UnixMilli(1_800_000_000_000)
	live := time.Minute
	s4, s16 := b.store(4), b.store(16)

	want := map[string]map[string]int64{"refresh": {}, "job:pull": {}, "job:gone": {}}
	for set := range want {
		var entries []scheduler.Entry
		for i := range 100 {
			m := fmt.Sprintf("user-%03d", i)
			at := t0.Add(time.Duration(i) * time.Second)
			entries = append(entries, scheduler.Entry{Member: m, At: at})
			want[set][m] = at.UnixMilli()
		}
		if err := s4.ScheduleDue(ctx, set, entries); err != nil {
			t.Fatal(err)
		}
	}
	// A replica with 4 shards claimed part of the refresh set and is
	// running it: those entries carry their lease score, the fence.
	lease := t0.Add(time.Hour)
	var claimed []scheduler.Due
	for sh := range 4 {
		ds, err := s4.ClaimDue(ctx, "refresh", sh, t0.Add(10*time.Second), lease, 100)
		if err != nil {
			t.Fatal(err)
		}
		claimed = append(claimed, ds...)
	}
	if len(claimed) != 11 {
		t.Fatalf("claimed %d", len(claimed))
	}
	for _, d := range claimed {
		// The lease score (the lease end and the claim's tag) is what
		// must move unchanged.
		score, err := b.rdb.ZScore(ctx, b.srv.Prefix+"due:refresh:"+fmt.Sprint(scheduler.Shard(d.Member, 4)), d.Member).Result()
		if err != nil {
			t.Fatal(err)
		}
		want["refresh"][d.Member] = int64(score)
	}
	if err := s4.AnnounceShards(ctx, "four", t0); err != nil {
		t.Fatal(err)
	}

	// A replica starts with 16 shards while the 4-shard one still runs:
	// nothing moves.
	if err := s16.AnnounceShards(ctx, "sixteen", t0); err != nil {
		t.Fatal(err)
	}
	res, err := s16.MigrateShards(ctx, t0, live)
	if err != nil || res.Swept || !reflect.DeepEqual(res.Waiting, []int{4}) {
		t.Fatalf("with a 4-shard replica live: %+v %v", res, err)
	}
	b.checkLayout(4, want)

	// The 4-shard replica stops: everything moves to 16.
	if err := s4.WithdrawShards(ctx, "four"); err != nil {
		t.Fatal(err)
	}
	res, err = s16.MigrateShards(ctx, t0, live)
	if err != nil || !res.Swept || !res.Settled || res.Left != 0 || res.Moved == 0 || res.To != 16 {
		t.Fatalf("4 -> 16: %+v %v", res, err)
	}
	b.checkLayout(16, want)
	// The claimer now runs with 16 shards: its fences hold where its
	// finish looks.
	done := make([]scheduler.Done[struct{}], len(claimed))
	for i, d := range claimed {
		done[i] = scheduler.Done[struct{}]{Member: d.Member, Fence: d.Fence, Next: lease.Add(time.Hour)}
		want["refresh"][d.Member] = lease.Add(time.Hour).UnixMilli()
	}
	held, err := s16.FinishDue(ctx, "refresh", done)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range held {
		if !h {
			t.Fatalf("%s lost its fence in the move", claimed[i].Member)
		}
	}
	b.checkLayout(16, want)
	// Settled: the next call has nothing to do.
	if res, err := s16.MigrateShards(ctx, t0, live); err != nil || res.Swept {
		t.Fatalf("after settling: %+v %v", res, err)
	}

	// Back to 4 (the 16-shard replica announced a minute ago and
	// crashed: its announcement goes stale).
	later := t0.Add(2 * live)
	if err := s4.AnnounceShards(ctx, "four", later); err != nil {
		t.Fatal(err)
	}
	res, err = s4.MigrateShards(ctx, later, live)
	if err != nil || !res.Settled || res.From != 16 || res.To != 4 {
		t.Fatalf("16 -> 4: %+v %v", res, err)
	}
	b.checkLayout(4, want)
	for sh := 4; sh < 16; sh++ {
		if n, _ := b.rdb.Exists(ctx, fmt.Sprintf("%sdue:refresh:%d", srv.Prefix, sh)).Result(); n != 0 {
			t.Fatalf("shard %d of 16 still exists", sh)
		}
	}

	// A rolling restart: a 16-shard replica ran for a while (and wrote
	// entries where 16 shards put them), then stopped. Its run marked the
	// layout dirty: the next migration sweeps although the layout says 4.
	if err := s16.AnnounceShards(ctx, "sixteen-2", later); err != nil {
		t.Fatal(err)
	}
	if err := s16.ScheduleDue(ctx, "job:pull", []scheduler.Entry{{Member: "newcomer", At: later}}); err != nil {
		t.Fatal(err)
	}
	want["job:pull"]["newcomer"] = later.UnixMilli()
	if err := s16.WithdrawShards(ctx, "sixteen-2"); err != nil {
		t.Fatal(err)
	}
	res, err = s4.MigrateShards(ctx, later, live)
	if err != nil || !res.Swept || !res.Settled {
		t.Fatalf("after a 16-shard replica ran: %+v %v", res, err)
	}
	b.checkLayout(4, want)

	// A member in two shards (written by both counts): the entry in its
	// own shard is kept.
	m := "user-007"
	wrong := (scheduler.Shard(m, 4) + 1) % 4
	if err := b.rdb.ZAdd(ctx, fmt.Sprintf("%sdue:refresh:%d", srv.Prefix, wrong), redis.Z{Score: 1, Member: m}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s16.AnnounceShards(ctx, "sixteen-3", later); err != nil { // marks it dirty
		t.Fatal(err)
	}
	if err := s16.WithdrawShards(ctx, "sixteen-3"); err != nil {
		t.Fatal(err)
	}
	res, err = s4.MigrateShards(ctx, later, live)
	if err != nil || res.Dropped != 1 || res.Moved != 0 {
		t.Fatalf("duplicate: %+v %v", res, err)
	}
	b.checkLayout(4, want)
}
