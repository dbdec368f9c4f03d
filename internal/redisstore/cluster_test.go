package redisstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// clusterBundle is a Redis Cluster shared by the subtests of
// TestStoreOnCluster, each under a prefix of its own.
type clusterBundle struct {
	c   *redistest.Cluster
	rdb *redis.ClusterClient
}

func (b *clusterBundle) store(t *testing.T, prefix string, shards int) *redisstore.Store {
	t.Helper()
	s := redisstore.New(b.c.Client(t), redisstore.Options{Prefix: b.c.Prefix + prefix, Shards: shards})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// perMaster counts, on each master, the keys matching pattern and the
// members of those that are sorted sets.
func (b *clusterBundle) perMaster(t *testing.T, pattern string) (keys, members map[string]int64) {
	t.Helper()
	ctx := context.Background()
	keys, members = make(map[string]int64), make(map[string]int64)
	for _, addr := range b.c.Masters(t) {
		n := redis.NewClient(&redis.Options{Addr: addr})
		iter := n.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			keys[addr]++
			if typ, _ := n.Type(ctx, iter.Val()).Result(); typ == "zset" {
				c, _ := n.ZCard(ctx, iter.Val()).Result()
				members[addr] += c
			}
		}
		err := iter.Err()
		_ = n.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return keys, members
}

// TestStoreOnCluster runs every script, walk and batched pipeline of the
// store once on a 3-master Redis Cluster: nothing is cross-slot
// (CROSSSLOT would fail the call), walks see the keys of every master,
// pipelines with scripts spanning masters survive a master that lost its
// scripts, and fenced calls follow the redirects of a failover.
func TestStoreOnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	b := &clusterBundle{c: redistest.StartCluster(t)}
	b.rdb = b.c.Client(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	users := make([]string, 1000)
	recs := make([]tokens.Record, len(users))
	for i := range users {
		users[i] = fmt.Sprintf("u%04d", i)
		recs[i] = tokens.Record{UserID: users[i], Provider: "fake", KeyID: "k1", Ciphertext: []byte("sealed"), AccessExpiry: now.Add(time.Hour)}
	}

	t.Run("tokens and walks", func(t *testing.T) {
		s := b.store(t, "tok:", 16)
		if err := s.PutMany(ctx, recs, now); err != nil {
			t.Fatal(err)
		}
		entries := make([]scheduler.Entry, len(users))
		for i, u := range users {
			entries[i] = scheduler.Entry{Member: u, At: now}
		}
		if err := s.ScheduleDue(ctx, "refresh", entries); err != nil {
			t.Fatal(err)
		}
		// How the keys spread (README, "Redis Cluster").
		tok, _ := b.perMaster(t, b.c.Prefix+"tok:{u:*}:tok")
		due, members := b.perMaster(t, b.c.Prefix+"tok:due:*")
		for _, m := range b.c.Masters(t) {
			t.Logf("master %s: %d token records, %d due shards holding %d entries", m, tok[m], due[m], members[m])
			if tok[m] == 0 || due[m] == 0 {
				t.Fatalf("master %s holds no records or no shards", m)
			}
		}

		// Scan: a cursor over every master, each user once.
		seen := make(map[string]int)
		var cursor uint64
		for {
			page, bad, next, err := s.Scan(ctx, cursor, 100)
			if err != nil || len(bad) > 0 {
				t.Fatalf("scan: %v %v", bad, err)
			}
			for _, r := range page {
				seen[r.UserID]++
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		// EachUser: the same.
		each := make(map[string]int)
		err := s.EachUser(ctx, func(refs []tokens.UserRef, malformed []string) error {
			for _, r := range refs {
				each[r.UserID]++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if seen[u] != 1 || each[u] != 1 {
				t.Fatalf("%s: scanned %d times, walked %d times", u, seen[u], each[u])
			}
		}
		if missing, err := s.MissingDue(ctx, "refresh", users); err != nil || len(missing) != 0 {
			t.Fatalf("missing due: %v %v", missing, err)
		}

		// The per-user scripts, one user each (each in its own slot).
		leases, err := s.AcquireMany(ctx, users[:100], slices.Repeat([]string{"L0"}, 100), now, now.Add(time.Minute))
		if err != nil || len(leases) != 100 {
			t.Fatalf("acquire many: %d %v", len(leases), err)
		}
		for _, u := range users[:100] {
			if err := s.Release(ctx, u, "L0"); err != nil {
				t.Fatal(err)
			}
		}
		u := users[1]
		rec, st, err := s.Acquire(ctx, u, "L1", "", now, now.Add(time.Minute))
		if err != nil || st != tokens.Acquired {
			t.Fatalf("acquire: %v %v", st, err)
		}
		rec.Ciphertext = []byte("sealed-2")
		if ok, _, err := s.Commit(ctx, "L1", rec, tokens.ReasonRefreshed, now); err != nil || !ok {
			t.Fatalf("commit: %v %v", ok, err)
		}
		rec, _, err = s.Acquire(ctx, u, "L2", "", now, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if ok, _, _, err := s.Fail(ctx, u, "L2", rec.Version, "transient:http_503", 3, tokens.ReasonTransientFailures, now); err != nil || !ok {
			t.Fatalf("fail: %v %v", ok, err)
		}
		rec, _, err = s.Acquire(ctx, u, "L3", "", now, now.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if res, _, err := s.Flag(ctx, u, "L3", rec.Version, tokens.ReasonInvalidGrant, "reauth:invalid_grant", now); err != nil || res != tokens.Flagged {
			t.Fatalf("flag: %v %v", res, err)
		}
		if q, err := s.ReauthQueue(ctx); err != nil || len(q) != 1 || q[0].UserID != u {
			t.Fatalf("reauth queue: %+v %v", q, err)
		}
		if _, err := s.SetState(ctx, u, tokens.Active, tokens.ReasonOperator, now); err != nil {
			t.Fatal(err)
		}
		rec, err = s.Load(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Rekey(ctx, u, rec.Version, "k2", []byte("sealed-3")); err != nil || !ok {
			t.Fatalf("rekey: %v %v", ok, err)
		}
		// Quarantine renames the record within the user's slot.
		if err := s.Quarantine(ctx, u, "malformed_record", now); err != nil {
			t.Fatal(err)
		}
		q, err := s.QuarantinedRecord(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Restore(ctx, q, now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, u); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.TryLock(ctx, "stats", "me", time.Minute); err != nil || !ok {
			t.Fatalf("lock: %v %v", ok, err)
		}
		if err := s.Unlock(ctx, "stats", "me"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("claims", func(t *testing.T) {
		s := b.store(t, "due:", 16)
		t0 := time.UnixMilli(1_800_000_000_000)
		entries := make([]scheduler.Entry, len(users))
		for i, u := range users {
			entries[i] = scheduler.Entry{Member: u, At: t0}
		}
		if err := s.ScheduleDue(ctx, "x", entries); err != nil {
			t.Fatal(err)
		}
		var claimed []scheduler.Due
		for sh := range 16 {
			ds, err := s.ClaimDue(ctx, "x", sh, t0, t0.Add(time.Minute), 1000)
			if err != nil {
				t.Fatal(err)
			}
			claimed = append(claimed, ds...)
		}
		if len(claimed) != len(users) {
			t.Fatalf("claimed %d of %d", len(claimed), len(users))
		}
		held, err := s.RenewDue(ctx, "x", t0.Add(2*time.Minute), claimed)
		if err != nil || slices.Contains(held, false) {
			t.Fatalf("renew: %v", err)
		}
		// One master loses its scripts (a restart, a promoted replica):
		// the finishes sent to it are run again, the others are not.
		masters := b.c.Masters(t)
		n := redis.NewClient(&redis.Options{Addr: masters[0]})
		defer n.Close()
		if err := n.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		next := t0.Add(time.Hour)
		done := make([]scheduler.Done[struct{}], len(claimed))
		for i, d := range claimed {
			done[i] = scheduler.Done[struct{}]{Member: d.Member, Fence: d.Fence, Next: next}
		}
		held, err = s.FinishDue(ctx, "x", done)
		if err != nil {
			t.Fatal(err)
		}
		if i := slices.Index(held, false); i >= 0 {
			t.Fatalf("finish of %s lost its claim", claimed[i].Member)
		}
		if c, err := s.DueCount(ctx, "x", next); err != nil || c != int64(len(users)) {
			t.Fatalf("due at next: %d %v", c, err)
		}
		if at, err := s.OldestDue(ctx, "x"); err != nil || !at.Equal(next) {
			t.Fatalf("oldest due %v %v", at, err)
		}
		if err := s.DropDue(ctx, "x"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("shard migration", func(t *testing.T) {
		s4, s16 := b.store(t, "mig:", 4), b.store(t, "mig:", 16)
		t0 := time.UnixMilli(1_800_000_000_000)
		entries := make([]scheduler.Entry, 500)
		for i := range entries {
			entries[i] = scheduler.Entry{Member: users[i], At: t0.Add(time.Duration(i) * time.Second)}
		}
		if err := s4.ScheduleDue(ctx, "refresh", entries); err != nil {
			t.Fatal(err)
		}
		var claimed []scheduler.Due
		for sh := range 4 {
			ds, err := s4.ClaimDue(ctx, "refresh", sh, t0.Add(20*time.Second), t0.Add(time.Hour), 100)
			if err != nil {
				t.Fatal(err)
			}
			claimed = append(claimed, ds...)
		}
		if err := s16.AnnounceShards(ctx, "sixteen", t0); err != nil {
			t.Fatal(err)
		}
		res, err := s16.MigrateShards(ctx, t0, time.Minute)
		if err != nil || !res.Settled || res.Moved == 0 || res.Left != 0 {
			t.Fatalf("migrate: %+v %v", res, err)
		}
		_, members := b.perMaster(t, b.c.Prefix+"mig:due:*")
		var total int64
		for _, m := range members {
			total += m
		}
		if total != 500 {
			t.Fatalf("%d entries after the migration, want 500", total)
		}
		for _, e := range entries[len(claimed):] {
			if at, err := s16.DueAt(ctx, "refresh", e.Member); err != nil || !at.Equal(e.At) {
				t.Fatalf("%s due %v (%v), want %v", e.Member, at, err, e.At)
			}
		}
		done := make([]scheduler.Done[struct{}], len(claimed))
		for i, d := range claimed {
			done[i] = scheduler.Done[struct{}]{Member: d.Member, Fence: d.Fence, Next: t0.Add(2 * time.Hour)}
		}
		held, err := s16.FinishDue(ctx, "refresh", done)
		if err != nil || slices.Contains(held, false) {
			t.Fatalf("a claim lost its fence in the move: %v", err)
		}
	})

	// The cursor names the master it walks, in turn (none holds a key of
	// this prefix), and a cursor past the masters is refused.
	t.Run("scan cursor", func(t *testing.T) {
		s := b.store(t, "cur:", 16)
		var cursor uint64
		var walked []uint64
		for {
			page, _, next, err := s.Scan(ctx, cursor, 1000)
			if err != nil || len(page) > 0 {
				t.Fatalf("scan: %d records, %v", len(page), err)
			}
			if i := next >> 54; next != 0 && !slices.Contains(walked, i) {
				walked = append(walked, i)
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		if !slices.Equal(walked, []uint64{0, 1, 2}) && !slices.Equal(walked, []uint64{1, 2}) {
			t.Fatalf("the cursor walked masters %v", walked)
		}
		if _, _, _, err := s.Scan(ctx, 7<<54, 10); err == nil || !strings.Contains(err.Error(), "no master 7 of 3") {
			t.Fatalf("a cursor past the masters: %v", err)
		}
	})

	// Last: it changes the cluster under the others.
	t.Run("failover", func(t *testing.T) {
		s := b.store(t, "fo:", 16)
		if err := s.PutMany(ctx, recs[:200], now); err != nil {
			t.Fatal(err)
		}
		t0 := time.UnixMilli(1_800_000_000_000)
		entries := make([]scheduler.Entry, 200)
		for i := range entries {
			entries[i] = scheduler.Entry{Member: users[i], At: t0}
		}
		if err := s.ScheduleDue(ctx, "x", entries); err != nil {
			t.Fatal(err)
		}
		// The promoted replica has none of the scripts (Redis does not
		// replicate SCRIPT LOAD) and the store's client still routes its
		// slots to the old master, which now answers MOVED.
		b.c.Failover(t, b.c.Masters(t)[0])
		var claimed []scheduler.Due
		for sh := range 16 {
			ds, err := s.ClaimDue(ctx, "x", sh, t0, t0.Add(time.Minute), 1000)
			if err != nil {
				t.Fatalf("claim after failover: %v", err)
			}
			claimed = append(claimed, ds...)
		}
		if len(claimed) != 200 {
			t.Fatalf("claimed %d of 200", len(claimed))
		}
		for _, u := range users[:200] {
			if _, st, err := s.Acquire(ctx, u, "L1", "", now, now.Add(time.Minute)); err != nil || st != tokens.Acquired {
				t.Fatalf("acquire %s after failover: %v %v", u, st, err)
			}
		}
		n := 0
		err := s.EachUser(ctx, func(refs []tokens.UserRef, _ []string) error {
			n += len(refs)
			return nil
		})
		if err != nil || n != 200 {
			t.Fatalf("walked %d users after failover: %v", n, err)
		}
	})
}
