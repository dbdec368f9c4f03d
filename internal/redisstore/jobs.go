package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// OutboxKey is the stream an app appends push items to for user.
func (s *Store) OutboxKey(user string) string { return s.outboxKey(user) }

// DeadKey is user's dead-letter stream.
func (s *Store) DeadKey(user string) string { return s.deadKey(user) }

// AddDue implements jobs.Store.
func (s *Store) AddDue(ctx context.Context, set string, entries []scheduler.Entry) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.zaddByShard(ctx, p, set, entries, redis.ZAddArgs{NX: true})
		return nil
	})
	if err != nil {
		return fmt.Errorf("add due %s: %w", set, err)
	}
	return nil
}

// RescoreDue implements jobs.Store: every batch of members is moved to
// next(member) with one ZADD XX.
func (s *Store) RescoreDue(ctx context.Context, set string, next func(string) time.Time) (int, error) {
	var n atomic.Int64
	err := s.walkDue(ctx, set, func(key string, members []string) error {
		zs := make([]redis.Z, len(members))
		for i, m := range members {
			zs[i] = redis.Z{Score: float64(ms(next(m))), Member: m}
		}
		n.Add(int64(len(members)))
		return s.rdb.ZAddArgs(ctx, key, redis.ZAddArgs{XX: true, Members: zs}).Err()
	})
	if err != nil {
		return int(n.Load()), fmt.Errorf("rescore %s: %w", set, err)
	}
	return int(n.Load()), nil
}

// EachDue implements jobs.Store: fn gets the members of set in batches,
// from several goroutines at once.
func (s *Store) EachDue(ctx context.Context, set string, fn func(members []string) error) error {
	err := s.walkDue(ctx, set, func(_ string, members []string) error { return fn(members) })
	if err != nil {
		return fmt.Errorf("walk %s: %w", set, err)
	}
	return nil
}

// walkDue ZSCANs every shard of a due set, four shards at a time (each
// walk waits on its round trips, so they overlap well), and calls fn per
// batch of members. A member moved while the walk runs is still seen
// once: ZSCAN walks the member hash, not the scores.
func (s *Store) walkDue(ctx context.Context, set string, fn func(key string, members []string) error) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 4)
	)
	for sh := range s.shards {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.walkShard(ctx, s.dueKey(set, sh), fn); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func (s *Store) walkShard(ctx context.Context, key string, fn func(key string, members []string) error) error {
	var cursor uint64
	for {
		vals, nc, err := s.rdb.ZScan(ctx, key, cursor, "", 1000).Result()
		if err != nil {
			return err
		}
		if len(vals) > 0 {
			members := make([]string, 0, len(vals)/2)
			for i := 0; i+1 < len(vals); i += 2 {
				members = append(members, vals[i])
			}
			if err := fn(key, members); err != nil {
				return err
			}
		}
		if cursor = nc; cursor == 0 {
			return nil
		}
	}
}

// DropDue implements jobs.Store: each shard and its claims.
func (s *Store) DropDue(ctx context.Context, set string) error {
	for sh := range s.shards {
		if err := s.rdb.Unlink(ctx, s.dueKey(set, sh), s.claimsKey(set, sh)).Err(); err != nil {
			return fmt.Errorf("drop %s: %w", set, err)
		}
	}
	return nil
}

// OldestDue implements jobs.Store.
func (s *Store) OldestDue(ctx context.Context, set string) (time.Time, error) {
	cmds := make([]*redis.ZSliceCmd, s.shards)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.ZRangeWithScores(ctx, s.dueKey(set, i), 0, 0)
		}
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("oldest due %s: %w", set, err)
	}
	var oldest int64
	for _, c := range cmds {
		for _, z := range c.Val() {
			if v := int64(z.Score); oldest == 0 || v < oldest {
				oldest = v
			}
		}
	}
	return fromMS(oldest), nil
}

// JobState implements jobs.Store.
func (s *Store) JobState(ctx context.Context, user, job string) (jobs.State, error) {
	v, err := s.rdb.HMGet(ctx, s.jobsKey(user), job+":lr", job+":ls", job+":cf", job+":le", job+":cur").Result()
	if err != nil {
		return jobs.State{}, fmt.Errorf("job state: %w", err)
	}
	return parseJobState(v), nil
}

// AddJobStats implements jobs.Store: one round trip for every job's
// counts of the minute.
func (s *Store) AddJobStats(ctx context.Context, counts map[string][2]int64, now time.Time) error {
	minute := now.Unix() / 60
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for job, c := range counts {
			key := s.jobStatKey(job, minute)
			if c[0] > 0 {
				p.HIncrBy(ctx, key, "ok", c[0])
			}
			if c[1] > 0 {
				p.HIncrBy(ctx, key, "failed", c[1])
			}
			p.Expire(ctx, key, 2*time.Hour)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("job stats: %w", err)
	}
	return nil
}

// EachUser implements tokens.Store: ids from SCAN (on every master of a
// cluster, one after the other), state and provider by pipelined HMGET
// (not the whole records). On one server the HMGETs of one batch ride in
// the same round trip as the SCAN for the next. A record of the wrong
// type, or missing a required field, is handed to fn as malformed.
func (s *Store) EachUser(ctx context.Context, fn func(refs []tokens.UserRef, malformed []string) error) error {
	nodes, err := s.scanNodes(ctx)
	if err != nil {
		return fmt.Errorf("scan users: %w", err)
	}
	for _, n := range nodes {
		if err := s.eachUserOn(ctx, n, fn); err != nil {
			return err
		}
	}
	return nil
}

// eachUserOn is EachUser's walk of one server's keys.
func (s *Store) eachUserOn(ctx context.Context, node redis.Cmdable, fn func(refs []tokens.UserRef, malformed []string) error) error {
	const count = 2000
	pattern := s.tokenPattern()
	// On a cluster the SCAN goes to node and the HMGETs through the
	// cluster client, which routes each (and follows redirects).
	together := node == redis.Cmdable(s.rdb)
	keys, cursor, err := node.Scan(ctx, 0, pattern, count).Result()
	if err != nil {
		return fmt.Errorf("scan users: %w", nodeErr(err))
	}
	for {
		var scan *redis.ScanCmd
		cmds := make([]*redis.SliceCmd, len(keys))
		if len(keys) > 0 || (together && cursor != 0) {
			_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				if together && cursor != 0 {
					scan = p.Scan(ctx, cursor, pattern, count)
				}
				for i, k := range keys {
					cmds[i] = p.HMGet(ctx, k, refFields...)
				}
				return nil
			})
			if err != nil && (otherErr(cmds) != nil || (scan != nil && scan.Err() != nil)) {
				return fmt.Errorf("scan users: %w", err)
			}
		}
		if !together && cursor != 0 {
			if scan = node.Scan(ctx, cursor, pattern, count); scan.Err() != nil {
				return fmt.Errorf("scan users: %w", nodeErr(scan.Err()))
			}
		}
		refs := make([]tokens.UserRef, 0, len(keys))
		var malformed []string
		for i, k := range keys {
			user, ok := s.userOfTokenKey(k)
			if !ok {
				continue
			}
			if wrongType(cmds[i].Err()) {
				malformed = append(malformed, user)
				continue
			}
			switch ref, gone, bad := refOf(user, cmds[i].Val()); {
			case bad:
				malformed = append(malformed, user)
			case !gone:
				refs = append(refs, ref)
			}
		}
		if len(refs) > 0 || len(malformed) > 0 {
			if err := fn(refs, malformed); err != nil {
				return err
			}
		}
		if scan == nil {
			return nil
		}
		keys, cursor = scan.Val()
	}
}

// MissingDue implements tokens.Store: one ZMSCORE per shard and 500
// members, in one round trip.
func (s *Store) MissingDue(ctx context.Context, set string, members []string) ([]string, error) {
	byShard := make(map[int][]string)
	for _, m := range members {
		sh := scheduler.Shard(m, s.shards)
		byShard[sh] = append(byShard[sh], m)
	}
	type call struct {
		members []string
		cmd     *redis.FloatSliceCmd
	}
	var calls []call
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for sh, ms := range byShard {
			for len(ms) > 0 {
				n := min(len(ms), 500)
				calls = append(calls, call{ms[:n], p.ZMScore(ctx, s.dueKey(set, sh), ms[:n]...)})
				ms = ms[n:]
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("missing due %s: %w", set, err)
	}
	var missing []string
	for _, c := range calls {
		for i, score := range c.cmd.Val() {
			if score == 0 { // go-redis reads a missing member as 0; a due time is never 0
				missing = append(missing, c.members[i])
			}
		}
	}
	return missing, nil
}

// UserRefs implements jobs.Store: the state and provider of each user
// that has a readable record, by one pipelined HMGET each. Users without
// a record, or with a malformed one (the refresher quarantines it), are
// left out.
func (s *Store) UserRefs(ctx context.Context, users []string) ([]tokens.UserRef, error) {
	cmds := make([]*redis.SliceCmd, len(users))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range users {
			cmds[i] = p.HMGet(ctx, s.tokenKey(u), refFields...)
		}
		return nil
	})
	if err != nil && otherErr(cmds) != nil {
		return nil, fmt.Errorf("user refs: %w", err)
	}
	refs := make([]tokens.UserRef, 0, len(users))
	for i, u := range users {
		if cmds[i].Err() != nil {
			continue // wrong type
		}
		if ref, gone, bad := refOf(u, cmds[i].Val()); !gone && !bad {
			refs = append(refs, ref)
		}
	}
	return refs, nil
}

// SaveCursor implements jobs.Store.
func (s *Store) SaveCursor(ctx context.Context, user, job, cursor string) error {
	if err := s.rdb.HSet(ctx, s.jobsKey(user), job+":cur", cursor).Err(); err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	return nil
}

// JobStats implements jobs.Store.
func (s *Store) JobStats(ctx context.Context, job string, since, now time.Time) (int64, int64, error) {
	var cmds []*redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for m := since.Unix() / 60; m <= now.Unix()/60; m++ {
			cmds = append(cmds, p.HMGet(ctx, s.jobStatKey(job, m), "ok", "failed"))
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("job stats: %w", err)
	}
	var ok, failed int64
	for _, c := range cmds {
		v := c.Val()
		a, _ := v[0].(string)
		b, _ := v[1].(string)
		x, _ := strconv.ParseInt(a, 10, 64)
		y, _ := strconv.ParseInt(b, 10, 64)
		ok, failed = ok+x, failed+y
	}
	return ok, failed, nil
}

// Outbox implements jobs.Store.
func (s *Store) Outbox(ctx context.Context, user string, n int) ([]jobs.OutboxItem, error) {
	msgs, err := s.rdb.XRangeN(ctx, s.outboxKey(user), "-", "+", int64(n)).Result()
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	out := make([]jobs.OutboxItem, len(msgs))
	for i, m := range msgs {
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		out[i] = jobs.OutboxItem{StreamID: m.ID, ID: str("id"), Data: []byte(str("data")), MimeType: str("mime_type"),
			Accounts: splitList(str("accounts")), Tags: splitList(str("tags"))}
	}
	return out, nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Attempt implements jobs.Store.
func (s *Store) Attempt(ctx context.Context, user, job, streamID string) (int, error) {
	n, err := s.rdb.HIncrBy(ctx, s.jobsKey(user), job+":a:"+streamID, 1).Result()
	if err != nil {
		return 0, fmt.Errorf("outbox attempt: %w", err)
	}
	return int(n), nil
}

// Delivered implements jobs.Store.
func (s *Store) Delivered(ctx context.Context, user, job, streamID string) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.XDel(ctx, s.outboxKey(user), streamID)
		p.HDel(ctx, s.jobsKey(user), job+":a:"+streamID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("outbox delivered: %w", err)
	}
	return nil
}

// DeadLetter implements jobs.Store. Dead letter first, then removal: a
// crash between the two leaves the item in both, never in neither.
func (s *Store) DeadLetter(ctx context.Context, user, job string, it jobs.OutboxItem, lastErr string, now time.Time) error {
	err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.deadKey(user), MaxLen: 10000, Approx: true, Values: []any{
		"id", it.ID, "data", it.Data, "mime_type", it.MimeType, "accounts", strings.Join(it.Accounts, ","),
		"tags", strings.Join(it.Tags, ","), "outbox_id", it.StreamID, "job", job, "error", lastErr, "at", now.UTC().Format(time.RFC3339Nano),
	}}).Err()
	if err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	return s.Delivered(ctx, user, job, it.StreamID)
}

// SinkAdd implements jobs.Store.
func (s *Store) SinkAdd(ctx context.Context, stream string, maxLen int64, values map[string]any) error {
	err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.sinkKey(stream), MaxLen: maxLen, Approx: true, Values: values}).Err()
	if err != nil {
		return fmt.Errorf("sink %s: %w", stream, err)
	}
	return nil
}

// JobDefs implements jobs.Store.
func (s *Store) JobDefs(ctx context.Context) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.jobDefsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("job defs: %w", err)
	}
	return m, nil
}

// SetJobDef implements jobs.Store.
func (s *Store) SetJobDef(ctx context.Context, name, fp string) error {
	return s.rdb.HSet(ctx, s.jobDefsKey(), name, fp).Err()
}

// DelJobDef implements jobs.Store.
func (s *Store) DelJobDef(ctx context.Context, name string) error {
	return s.rdb.HDel(ctx, s.jobDefsKey(), name).Err()
}

// PausedJobs implements jobs.Store.
func (s *Store) PausedJobs(ctx context.Context) (map[string]bool, error) {
	m, err := s.rdb.HGetAll(ctx, s.jobPausedKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("paused jobs: %w", err)
	}
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out, nil
}

// SetPaused implements jobs.Store.
func (s *Store) SetPaused(ctx context.Context, name string, paused bool) error {
	var err error
	if paused {
		err = s.rdb.HSet(ctx, s.jobPausedKey(), name, "1").Err()
	} else {
		err = s.rdb.HDel(ctx, s.jobPausedKey(), name).Err()
	}
	if err != nil {
		return fmt.Errorf("pause %s: %w", name, err)
	}
	return nil
}

// TryLock implements jobs.Store.
func (s *Store) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.lockKey(name), owner, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", name, err)
	}
	return ok, nil
}

// Unlock implements jobs.Store.
func (s *Store) Unlock(ctx context.Context, name, owner string) error {
	if err := unlockScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, owner).Err(); err != nil {
		return fmt.Errorf("unlock %s: %w", name, err)
	}
	return nil
}

// StateCounts implements admin.Gauges.
func (s *Store) StateCounts(ctx context.Context) (map[string]int64, error) {
	m, err := s.rdb.HGetAll(ctx, s.userStatsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("state counts: %w", err)
	}
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k], _ = strconv.ParseInt(v, 10, 64)
	}
	return out, nil
}

// SetStateCounts replaces the stored count of users by state.
func (s *Store) SetStateCounts(ctx context.Context, counts map[string]int64) error {
	vals := make([]any, 0, 2*len(counts))
	for k, v := range counts {
		vals = append(vals, k, v)
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.userStatsKey())
		if len(vals) > 0 {
			p.HSet(ctx, s.userStatsKey(), vals...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set state counts: %w", err)
	}
	return nil
}

// ReauthStats implements admin.Gauges.
func (s *Store) ReauthStats(ctx context.Context) (int64, time.Time, error) {
	var card *redis.IntCmd
	var first *redis.ZSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		card = p.ZCard(ctx, s.reauthKey())
		first = p.ZRangeWithScores(ctx, s.reauthKey(), 0, 0)
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("reauth stats: %w", err)
	}
	var oldest time.Time
	if z := first.Val(); len(z) > 0 {
		oldest = fromMS(int64(z[0].Score))
	}
	return card.Val(), oldest, nil
}

// AppendOutbox appends a push item to user's outbox, as an app does.
func (s *Store) AppendOutbox(ctx context.Context, user string, values map[string]any) error {
	if err := s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: s.outboxKey(user), Values: values}).Err(); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// LoadForRun implements jobs.Store: the user's record and the job's state
// in one round trip.
func (s *Store) LoadForRun(ctx context.Context, user, job string) (tokens.Record, jobs.State, error) {
	var rec *redis.MapStringStringCmd
	var st *redis.SliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGetAll(ctx, s.tokenKey(user))
		st = p.HMGet(ctx, s.jobsKey(user), job+":lr", job+":ls", job+":cf", job+":le", job+":cur")
		return nil
	})
	if err != nil && (st.Err() != nil || !wrongType(rec.Err())) {
		return tokens.Record{}, jobs.State{}, fmt.Errorf("load for run: %w", err)
	}
	if rec.Err() != nil {
		return tokens.Record{}, jobs.State{}, recordErr(user, rec.Err())
	}
	if len(rec.Val()) == 0 {
		return tokens.Record{}, jobs.State{}, tokens.ErrNotFound
	}
	r, err := parseRecord(user, rec.Val())
	if err != nil {
		return tokens.Record{}, jobs.State{}, err
	}
	return r, parseJobState(st.Val()), nil
}

// LoadManyForRun implements jobs.Store.
func (s *Store) LoadManyForRun(ctx context.Context, users []string, job string) ([]jobs.Loaded, error) {
	recs := make([]*redis.MapStringStringCmd, len(users))
	sts := make([]*redis.SliceCmd, len(users))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range users {
			recs[i] = p.HGetAll(ctx, s.tokenKey(u))
			sts[i] = p.HMGet(ctx, s.jobsKey(u), job+":lr", job+":ls", job+":cf", job+":le", job+":cur")
		}
		return nil
	})
	if err != nil && (otherErr(recs) != nil || otherErr(sts) != nil) {
		return nil, fmt.Errorf("load for run: %w", err)
	}
	out := make([]jobs.Loaded, len(users))
	for i, u := range users {
		switch {
		case recs[i].Err() != nil:
			out[i].Err = recordErr(u, recs[i].Err())
		case sts[i].Err() != nil:
			out[i].Err = fmt.Errorf("load for run: %w", sts[i].Err())
		case len(recs[i].Val()) == 0:
			out[i].Err = tokens.ErrNotFound
		default:
			out[i].Record, out[i].Err = parseRecord(u, recs[i].Val())
			out[i].State = parseJobState(sts[i].Val())
		}
	}
	return out, nil
}

func parseJobState(v []any) jobs.State {
	str := func(i int) string { x, _ := v[i].(string); return x }
	num := func(i int) int64 { n, _ := strconv.ParseInt(str(i), 10, 64); return n }
	return jobs.State{LastRun: fromMS(num(0)), LastSuccess: fromMS(num(1)), Failures: int(num(2)), LastError: str(3), Cursor: str(4)}
}
