package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/syncd/syncd/internal/scheduler"
)

// Changing redis.shards on a live database leaves every due-set member in
// the shard the old count gave it. Claims walk only the shards of the new
// count, and a claimer finishes an entry in the shard the new count gives
// its member: an entry elsewhere is either never claimed (a shard beyond
// the new count) or claimed every lease and never finished. MigrateShards
// moves such entries to their shard.
//
// Replicas say which count they run with (AnnounceShards, at start and
// every housekeeping interval; WithdrawShards when they stop), in one
// hash:
//
//	Pshards  hash  layout     the count the due sets were last swept to
//	               r:OWNER    "COUNT:unix ms": replica OWNER runs with COUNT, said at
//	               dirty:N    bumped whenever a replica runs with N shards and N
//	                          is not the layout: its writes may be misplaced
//
// A sweep runs when the layout is not this store's count or a dirty mark
// of another count exists, and never while a live replica (one that
// announced within the live window) runs with another count: with two
// counts no layout suits both, and two sweeps would undo each other.

var (
	moveInScript         = script("move_in")
	moveOutScript        = script("move_out")
	shardsAnnounceScript = script("shards_announce")
	shardsSettleScript   = script("shards_settle")
)

// ShardMigration is what MigrateShards did.
type ShardMigration struct {
	// From is the shard count the due sets were laid out for (0: not
	// recorded yet); To is this store's.
	From, To int
	// Swept is true when the due sets were walked.
	Swept bool
	// Settled is true when the sweep left every entry in its shard and
	// the layout was recorded; otherwise the next call sweeps again.
	Settled bool
	// Moved members went to their shard with their score; Dropped ones
	// were already in their shard too (that entry is kept); Left ones
	// changed while being moved and wait for the next sweep.
	Moved, Dropped, Left int
	// Waiting lists the other shard counts live replicas run with:
	// nothing is moved while replicas disagree.
	Waiting []int
}

// AnnounceShards records that replica owner runs with this store's shard
// count, at now.
func (s *Store) AnnounceShards(ctx context.Context, owner string, now time.Time) error {
	if err := shardsAnnounceScript.Run(ctx, s.rdb, []string{s.shardsKey()}, owner, s.shards, ms(now)).Err(); err != nil {
		return fmt.Errorf("announce shards: %w", err)
	}
	return nil
}

// WithdrawShards removes owner's announcement: a replica that stops no
// longer holds a migration back.
func (s *Store) WithdrawShards(ctx context.Context, owner string) error {
	if err := s.rdb.HDel(ctx, s.shardsKey(), "r:"+owner).Err(); err != nil {
		return fmt.Errorf("withdraw shards: %w", err)
	}
	return nil
}

// MigrateShards lays every due set out for this store's shard count when
// it is not (see above): each member found outside its shard, in any due
// set and any shard number up to the largest ever used, is moved to its
// shard with its score, atomically and only if the score did not change
// since it was read, so a claim in flight keeps its fence. live is how
// long an announcement counts as a running replica (a few housekeeping
// intervals). Concurrent calls are safe: a member moves once.
func (s *Store) MigrateShards(ctx context.Context, now time.Time, live time.Duration) (ShardMigration, error) {
	res := ShardMigration{To: s.shards}
	h, err := s.rdb.HGetAll(ctx, s.shardsKey()).Result()
	if err != nil {
		return res, fmt.Errorf("migrate shards: %w", err)
	}
	res.From, _ = strconv.Atoi(h["layout"])
	var dirty []any
	mine := strconv.Itoa(s.shards)
	for f, v := range h {
		switch {
		case strings.HasPrefix(f, "dirty:") && f != "dirty:"+mine:
			dirty = append(dirty, f, v)
		case strings.HasPrefix(f, "r:"):
			n, at, ok := parseAnnouncement(v)
			if ok && n != s.shards && !fromMS(at).Before(now.Add(-live)) && !slices.Contains(res.Waiting, n) {
				res.Waiting = append(res.Waiting, n)
			}
		}
	}
	slices.Sort(res.Waiting)
	if len(res.Waiting) > 0 || (res.From == s.shards && len(dirty) == 0) {
		return res, nil
	}
	res.Swept = true
	if err := s.sweepDue(ctx, &res); err != nil {
		return res, fmt.Errorf("migrate shards: %w", err)
	}
	if res.Left > 0 {
		return res, nil
	}
	args := append([]any{s.shards, ms(now.Add(-live))}, dirty...)
	ok, err := shardsSettleScript.Run(ctx, s.rdb, []string{s.shardsKey()}, args...).Int()
	if err != nil {
		return res, fmt.Errorf("migrate shards: %w", err)
	}
	res.Settled = ok == 1
	return res, nil
}

func parseAnnouncement(v string) (shards int, at int64, ok bool) {
	a, b, found := strings.Cut(v, ":")
	n, err1 := strconv.Atoi(a)
	t, err2 := strconv.ParseInt(b, 10, 64)
	return n, t, found && err1 == nil && err2 == nil
}

// sweepDue walks every due-set shard key in Redis (SCAN, on every master
// of a cluster: shards beyond the current count, and due sets of jobs no
// longer configured, too) and moves misplaced members.
func (s *Store) sweepDue(ctx context.Context, res *ShardMigration) error {
	return s.scanAll(ctx, s.duePattern(), "zset", 1000, func(keys []string) error {
		for _, k := range keys {
			set, shard, ok := s.parseDueKey(k)
			if !ok {
				continue
			}
			if err := s.sweepShard(ctx, set, shard, res); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	})
}

// sweepShard moves the misplaced members of one shard key. Members whose
// score changed between the read and the move (claimed, finished,
// renewed) are read again, a few passes at most; what is still left is
// counted for the next sweep.
func (s *Store) sweepShard(ctx context.Context, set string, shard int, res *ShardMigration) error {
	key := s.dueKey(set, shard)
	// copies: members copied to their shard whose old entry changed
	// before it could be removed -> the copy's score.
	copies := make(map[string]string)
	for pass := 0; ; pass++ {
		changed := 0
		var cursor uint64
		for {
			vals, next, err := s.rdb.ZScan(ctx, key, cursor, "", 1000).Result()
			if err != nil {
				return err
			}
			byShard := make(map[int][]string)
			for i := 0; i+1 < len(vals); i += 2 {
				if to := scheduler.Shard(vals[i], s.shards); to != shard {
					byShard[to] = append(byShard[to], vals[i], vals[i+1])
				}
			}
			for to, pairs := range byShard {
				for len(pairs) > 0 {
					n := min(len(pairs), 2*zaddMax)
					c, err := s.move(ctx, set, shard, to, pairs[:n], copies, res)
					if err != nil {
						return err
					}
					changed += c
					pairs = pairs[n:]
				}
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		if changed == 0 {
			return nil
		}
		if pass == 2 {
			res.Left += changed
			return nil
		}
	}
}

// move moves members (pairs of member and score read) from shard from to
// shard to of set, in two steps that each touch one shard and its claims
// hash, one cluster slot (the due sets' shards spread over a cluster's
// masters):
//
//  1. move_in copies each member into shard to with its score and claim
//     record, unless it is there already;
//  2. move_out removes each from shard from if its score is still the one
//     read.
//
// A member is in at least one shard at every step, so no run is lost. A
// member whose old entry changed between the read and step 2 (claimed in
// its old shard, a shard below the new count) is in both until the next
// pass copies its new score over the copy (copies: only if nobody touched
// the copy since) and removes the old entry; one still in both after the
// passes, or after a failure between the steps, is left to the next
// sweep, which keeps the entry in its own shard and drops the other.
// While in both, a due entry could be claimed in each shard and run
// twice: the window is a round trip, and an entry claimed in its old
// shard already ran again after its lease (its claimer finishes in the
// new shard, where that claim does not hold). Neither step is retried by
// go-redis (runFenced): a repeated move_in would not report its own
// copy. It returns how many members changed.
func (s *Store) move(ctx context.Context, set string, from, to int, pairs []string, copies map[string]string, res *ShardMigration) (int, error) {
	members := make([]string, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		members = append(members, pairs[i])
	}
	claims, err := s.rdb.HMGet(ctx, s.claimsKey(set, from), members...).Result()
	if err != nil {
		return 0, err
	}
	in := make([]any, 0, 4*len(members))
	out := make([]any, 0, len(pairs))
	for i, m := range members {
		rec, _ := claims[i].(string)
		in = append(in, m, pairs[2*i+1], rec, copies[m])
		out = append(out, m, pairs[2*i+1])
	}
	added, err := s.runFenced(ctx, moveInScript, []string{s.dueKey(set, to), s.claimsKey(set, to)}, in...).Int64Slice()
	if err != nil {
		return 0, err
	}
	removed, err := s.runFenced(ctx, moveOutScript, []string{s.dueKey(set, from), s.claimsKey(set, from)}, out...).Int64Slice()
	if err != nil {
		return 0, err
	}
	changed := 0
	for i, m := range members {
		switch {
		case removed[i] == 1 && added[i] == 1:
			res.Moved++
		case removed[i] == 1:
			res.Dropped++
		case removed[i] == 0:
			changed++
		}
		switch {
		case removed[i] == 0 && added[i] == 1:
			copies[m] = pairs[2*i+1]
		case removed[i] != 0:
			delete(copies, m)
		}
	}
	return changed, nil
}
