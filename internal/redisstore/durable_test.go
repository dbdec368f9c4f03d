package redisstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/tokens"
)

// TestCommitWaitsForReplicas: a commit acknowledged by the replica
// releases its lease; with the replica frozen it is stored on the master
// but answers ErrUnacked, lease kept; the automatic mode follows the
// master's replicas; 0 sends no WAIT.
func TestCommitWaitsForReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a replica")
	}
	srv := redistest.StartPrivate(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_000).UTC()
	store := func(want int, wait time.Duration) *Store {
		s := New(srv.Client(t), Options{Prefix: srv.Prefix, Shards: 1, MinReplicasAcked: want, WaitTimeout: wait})
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	auto := store(-1, time.Second)
	if got := auto.replicasToWait(ctx, auto.rdb, ""); got != 0 {
		t.Fatalf("single node: waits for %d", got)
	}
	replica := redistest.StartReplica(t, srv)
	one := store(1, 5*time.Second)
	if got := one.replicasToWait(ctx, one.rdb, ""); got != 1 {
		t.Fatalf("configured 1: waits for %d", got)
	}
	if got := store(-1, time.Second).replicasToWait(ctx, one.rdb, ""); got != 1 {
		t.Fatalf("auto with a replica: waits for %d", got)
	}

	rec := tokens.Record{UserID: "u", Provider: "p", KeyID: "k", Ciphertext: []byte("c1"), AccessExpiry: now.Add(time.Hour)}
	if _, _, err := one.Put(ctx, rec, tokens.ReasonStored, now); err != nil {
		t.Fatal(err)
	}
	commit := func(s *Store, lease string, version int64, c string) (bool, error) {
		if _, _, err := one.Acquire(ctx, "u", lease, "", now, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		r := rec
		r.Version, r.Ciphertext = version, []byte(c)
		ok, _, err := s.Commit(ctx, lease, r, tokens.ReasonRefreshed, now)
		return ok, err
	}
	if ok, err := commit(one, "L1", 1, "c2"); !ok || err != nil {
		t.Fatalf("acknowledged commit: %v %v", ok, err)
	}
	if got := rdb.HGet(ctx, one.tokenKey("u"), "lo").Val(); got != "" {
		t.Fatalf("lease %q kept after an acknowledged commit", got)
	}
	if got := replica.Client(t).HGet(ctx, one.tokenKey("u"), "c").Val(); got != "c2" {
		t.Fatalf("replica holds %q", got)
	}

	thaw := replica.Freeze(t)
	ok, err := commit(store(1, 200*time.Millisecond), "L2", 2, "c3")
	if !ok || !errors.Is(err, tokens.ErrUnacked) {
		t.Fatalf("unacknowledged commit: %v %v", ok, err)
	}
	if got := rdb.HGet(ctx, one.tokenKey("u"), "lo").Val(); got != "L2" {
		t.Fatalf("lease %q, want L2 kept", got)
	}
	if got := rdb.HGet(ctx, one.tokenKey("u"), "c").Val(); got != "c3" {
		t.Fatalf("master holds %q", got)
	}
	thaw()

	none := store(0, time.Second)
	before := rdb.Info(ctx, "commandstats").Val()
	r := rec
	r.Version, r.Ciphertext = 3, []byte("c4")
	if ok, _, err := none.Commit(ctx, "L2", r, tokens.ReasonRefreshed, now); !ok || err != nil {
		t.Fatalf("commit without waiting: %v %v", ok, err)
	}
	if after := rdb.Info(ctx, "commandstats").Val(); cmdCalls(after, "wait") != cmdCalls(before, "wait") {
		t.Fatal("a store that does not wait sent WAIT")
	}
}

func cmdCalls(info, cmd string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _, _ := strings.Cut(v, ",")
			return n
		}
	}
	return "0"
}

// BenchmarkCommitWait measures what waiting for a replica adds to a token
// commit on loopback: the commit alone on a single node, then with one
// replica without waiting and with WAIT 1. It reports the mean, p50 and
// p99 of one commit (docs/benchmarks.md).
func BenchmarkCommitWait(b *testing.B) {
	srv := redistest.StartPrivate(b)
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_000).UTC()
	run := func(b *testing.B, want int) {
		s := New(srv.Client(b), Options{Prefix: srv.Prefix, Shards: 1, MinReplicasAcked: want, WaitTimeout: time.Second})
		if err := s.Ping(ctx); err != nil {
			b.Fatal(err)
		}
		rec := tokens.Record{UserID: "bench", Provider: "p", KeyID: "k", Ciphertext: make([]byte, 300), AccessExpiry: now.Add(time.Hour)}
		if _, _, err := s.Put(ctx, rec, tokens.ReasonStored, now); err != nil {
			b.Fatal(err)
		}
		cur, err := s.Load(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		rec.Version = cur.Version
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			ok, _, err := s.Commit(ctx, "L", rec, tokens.ReasonRefreshed, now)
			lat = append(lat, time.Since(start))
			if !ok || err != nil {
				b.Fatalf("commit: %v %v", ok, err)
			}
			rec.Version++
		}
		b.StopTimer()
		slices.Sort(lat)
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		b.ReportMetric(float64(sum.Microseconds())/float64(len(lat)), "mean-µs")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("single-node", func(b *testing.B) { run(b, -1) })
	redistest.StartReplica(b, srv)
	b.Run("replica-nowait", func(b *testing.B) { run(b, 0) })
	b.Run("replica-wait1", func(b *testing.B) { run(b, -1) })
}
