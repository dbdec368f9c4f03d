package redisstore

import (
	"context"
	"reflect"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/redistest"
)

// TestMoveOnlyUnchanged: a member whose score changed since it was read
// (claimed, renewed or finished meanwhile) is not moved: its claimer's
// fence stays where it is.
func TestMoveOnlyUnchanged(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := New(rdb, Options{Prefix: srv.Prefix, Shards: 2})
	ctx := context.Background()
	src, dst := s.dueKey("x", 0), s.dueKey("x", 1)
	if err := rdb.ZAdd(ctx, src, redis.Z{Score: 1_800_000_000_123, Member: "m"}).Err(); err != nil {
		t.Fatal(err)
	}
	move := func(score string) []int64 {
		t.Helper()
		r, err := moveScript.Run(ctx, rdb, []string{src, dst, src + ":claims", dst + ":claims"}, "m", score, "gone", "7").Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if got := move("1800000000000"); !reflect.DeepEqual(got, []int64{0, 0, 1}) {
		t.Fatalf("stale score: %v", got)
	}
	if n, _ := rdb.ZCard(ctx, dst).Result(); n != 0 {
		t.Fatal("moved on a stale score")
	}
	if got := move("1800000000123"); !reflect.DeepEqual(got, []int64{1, 0, 0}) {
		t.Fatalf("current score: %v", got)
	}
	if sc, _ := rdb.ZScore(ctx, dst, "m").Result(); sc != 1_800_000_000_123 {
		t.Fatalf("moved with score %v", sc)
	}
	if n, _ := rdb.Exists(ctx, src).Result(); n != 0 {
		t.Fatal("left in the old shard")
	}
}
