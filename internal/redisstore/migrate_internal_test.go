package redisstore

import (
	"context"
	"reflect"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/redistest"
)

// TestMoveOnlyUnchanged: move_out removes a member only while its score
// is the one read (claimed, renewed or finished meanwhile: it stays, with
// its claimer's fence), and move_in copies a member into its shard only
// if it is not there, or updates the copy of an earlier pass only if
// nobody touched it since.
func TestMoveOnlyUnchanged(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := New(rdb, Options{Prefix: srv.Prefix, Shards: 2})
	ctx := context.Background()
	src, dst := s.dueKey("x", 0), s.dueKey("x", 1)
	srcClaims, dstClaims := s.claimsKey("x", 0), s.claimsKey("x", 1)
	if err := rdb.ZAdd(ctx, src, redis.Z{Score: 1_800_000_000_123, Member: "m"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, srcClaims, "m", "1799").Err(); err != nil {
		t.Fatal(err)
	}
	run := func(sc *redis.Script, keys []string, args ...any) []int64 {
		t.Helper()
		r, err := sc.Run(ctx, rdb, keys, args...).Int64Slice()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	out := func(score string) []int64 {
		return run(moveOutScript, []string{src, srcClaims}, "m", score, "gone", "7")
	}
	if got := out("1800000000000"); !reflect.DeepEqual(got, []int64{0, -1}) {
		t.Fatalf("stale score: %v", got)
	}
	if n, _ := rdb.ZCard(ctx, src).Result(); n != 1 {
		t.Fatal("removed on a stale score")
	}

	in := func(score, rec, was string) []int64 {
		return run(moveInScript, []string{dst, dstClaims}, "m", score, rec, was)
	}
	if got := in("1800000000123", "1799", ""); !reflect.DeepEqual(got, []int64{1}) {
		t.Fatalf("copy: %v", got)
	}
	if got := in("1800000000999", "", ""); !reflect.DeepEqual(got, []int64{0}) {
		t.Fatalf("copy over an entry: %v", got)
	}
	if got := in("1800000000999", "", "1800000000000"); !reflect.DeepEqual(got, []int64{0}) {
		t.Fatalf("update of a copy touched since: %v", got)
	}
	if sc, _ := rdb.ZScore(ctx, dst, "m").Result(); sc != 1_800_000_000_123 {
		t.Fatalf("copied with score %v", sc)
	}
	if rec, _ := rdb.HGet(ctx, dstClaims, "m").Result(); rec != "1799" {
		t.Fatalf("claim record %q", rec)
	}
	if got := in("1800000000456", "", "1800000000123"); !reflect.DeepEqual(got, []int64{1}) {
		t.Fatalf("update of an untouched copy: %v", got)
	}
	if sc, _ := rdb.ZScore(ctx, dst, "m").Result(); sc != 1_800_000_000_456 {
		t.Fatalf("updated to score %v", sc)
	}
	if n, _ := rdb.HExists(ctx, dstClaims, "m").Result(); n {
		t.Fatal("claim record of the old copy kept")
	}

	if got := out("1800000000123"); !reflect.DeepEqual(got, []int64{1, -1}) {
		t.Fatalf("current score: %v", got)
	}
	if n, _ := rdb.Exists(ctx, src).Result(); n != 0 {
		t.Fatal("left in the old shard")
	}
	if n, _ := rdb.HExists(ctx, srcClaims, "m").Result(); n {
		t.Fatal("claim record left in the old shard")
	}
}
