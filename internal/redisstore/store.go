package redisstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

//go:embed lua/*.lua lua/lib/*.lua
var luaFS embed.FS

// script loads lua/NAME.lua, after the lua/lib/ files it names: Redis
// scripts cannot load code of their own, so shared functions are
// prepended.
func script(name string, libs ...string) *redis.Script {
	var src []byte
	for _, f := range append(libs, name) {
		b, err := luaFS.ReadFile("lua/" + f + ".lua")
		if err != nil {
			panic(err)
		}
		src = append(src, b...)
	}
	return redis.NewScript(string(src))
}

var (
	claimScript    = script("claim", "lib/tag")
	finishScript   = script("finish", "lib/tag")
	renewScript    = script("renew", "lib/tag")
	putScript      = script("put")
	acquireScript  = script("acquire")
	commitScript   = script("commit")
	failScript     = script("fail")
	flagScript     = script("flag")
	releaseScript  = script("release")
	rekeyScript    = script("rekey")
	setStateScript = script("setstate")
	unlockScript   = script("unlock")
	allScripts     = []*redis.Script{claimScript, finishScript, renewScript, putScript, acquireScript, commitScript, failScript, flagScript, releaseScript, rekeyScript, setStateScript, unlockScript, moveInScript, moveOutScript}
)

// Options configure a Store.
type Options struct {
	// Prefix starts every key, e.g. "syncd:".
	Prefix string
	// Shards is the number of shards of each due set (default 16).
	Shards int
	// EventsMaxLen caps the events stream (approximately; default 100000).
	EventsMaxLen int64
	// Logger receives what the store reports without failing a call.
	Logger zerolog.Logger
	// MinReplicasAcked is how many replicas must acknowledge the commit
	// of a refreshed token (WAIT) before Commit reports it durable (see
	// durable.go). 0, the default, does not wait; a negative value waits
	// for 1 while the user's master reports a connected replica and for
	// none on a single node.
	MinReplicasAcked int
	// WaitTimeout bounds that wait; default DefaultWaitTimeout. A commit
	// not acknowledged within it answers tokens.ErrUnacked.
	WaitTimeout time.Duration
}

// Store is syncd's Redis storage.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	shards int
	maxEv  int64
	log    zerolog.Logger
	dur    durability
}

// New returns a Store over rdb. The caller owns rdb and closes it. New
// hooks rdb so that its failures that are outages (a connection, a
// timeout, a Redis still loading) are of kind errkind.Unavailable.
func New(rdb redis.UniversalClient, opt Options) *Store {
	if rdb != nil { // nil: a Store that only builds keys (tests)
		rdb.AddHook(outageHook{})
	}
	if opt.Shards <= 0 {
		opt.Shards = 16
	}
	if opt.EventsMaxLen <= 0 {
		opt.EventsMaxLen = 100000
	}
	if opt.WaitTimeout <= 0 {
		opt.WaitTimeout = DefaultWaitTimeout
	}
	return &Store{rdb: rdb, prefix: opt.Prefix, shards: opt.Shards, maxEv: opt.EventsMaxLen, log: opt.Logger.With().Str("component", "redisstore").Logger(),
		dur: durability{want: opt.MinReplicasAcked, timeout: opt.WaitTimeout, nodes: make(map[string]*replicaCount)}}
}

// Ping checks that Redis answers and loads the scripts. In the automatic
// durability mode it also reads how many replicas the master has (on
// Redis Cluster, each master is asked at its first commit).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	if _, cluster := s.rdb.(*redis.ClusterClient); s.dur.want < 0 && !cluster {
		s.replicasToWait(ctx, s.rdb, "")
	}
	return s.loadScripts(ctx)
}

func (s *Store) loadScripts(ctx context.Context) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("redis script load: %w", err)
		}
	}
	return nil
}

// pipelined runs fn's commands in one round trip. Scripts in a pipeline go
// by EVALSHA; if Redis lost them (restart, SCRIPT FLUSH, a replica
// promoted on a cluster) they are loaded and the commands that found no
// script run once more: those executed nothing. Only those: on a cluster
// the pipeline is split by node, and the commands sent to the other
// nodes did run (a finish repeated would report its claim lost).
func (s *Store) pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error) {
	cmds, err := s.rdb.Pipelined(ctx, fn)
	if err == nil || !hasNoScript(cmds) {
		return cmds, err
	}
	if lerr := s.loadScripts(ctx); lerr != nil {
		return nil, lerr
	}
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range cmds {
			if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				c.SetErr(nil)
				_ = p.Process(ctx, c)
			}
		}
		return nil
	})
	for _, c := range cmds {
		if c.Err() != nil {
			return cmds, c.Err()
		}
	}
	return cmds, nil
}

func hasNoScript(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// Shards is the number of shards of each due set.
func (s *Store) Shards() int { return s.shards }

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// ---- due sets (scheduler.Store, jobs.Store) ----

// ClaimDue implements scheduler.Claims. The claim's fence is drawn here,
// one per call, and the script may move it off the fences of the entries
// it takes over (see claims.go). The lease ends up to two seconds after
// leaseUntil: the score rounds it up to a second and carries the fence.
func (s *Store) ClaimDue(ctx context.Context, set string, shard int, now, leaseUntil time.Time, limit int) ([]scheduler.Due, error) {
	res, err := s.runFenced(ctx, claimScript, []string{s.dueKey(set, shard), s.claimsKey(set, shard)},
		ms(now), ms(leaseUntil), limit, newFence()).StringSlice()
	if err != nil {
		return nil, dueErr("claim", set+"/"+strconv.Itoa(shard), err)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("claim %s/%d: empty reply", set, shard)
	}
	fence, err := strconv.ParseInt(res[0], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("claim %s/%d: fence %q: %w", set, shard, res[0], err)
	}
	out := make([]scheduler.Due, 0, len(res)/2)
	for i := 1; i+1 < len(res); i += 2 {
		due, _ := strconv.ParseFloat(res[i+1], 64)
		out = append(out, scheduler.Due{Member: res[i], Due: fromMS(int64(due)), Fence: fence})
	}
	return out, nil
}

// RenewDue implements scheduler.Claims: one script call per shard, in one
// round trip.
func (s *Store) RenewDue(ctx context.Context, set string, until time.Time, claims []scheduler.Due) ([]bool, error) {
	byShard := make(map[int][]int)
	for i, c := range claims {
		sh := scheduler.Shard(c.Member, s.shards)
		byShard[sh] = append(byShard[sh], i)
	}
	type call struct {
		idx []int
		cmd *redis.Cmd
	}
	calls := make([]call, 0, len(byShard))
	_, err := s.pipelined(ctx, func(p redis.Pipeliner) error {
		calls = calls[:0]
		for sh, idx := range byShard {
			args := make([]any, 0, 1+2*len(idx))
			args = append(args, ms(until))
			for _, i := range idx {
				args = append(args, claims[i].Member, claims[i].Fence)
			}
			calls = append(calls, call{idx: idx, cmd: evalFenced(ctx, p, renewScript, []string{s.dueKey(set, sh)}, args...)})
		}
		return nil
	})
	if err != nil {
		return nil, dueErr("renew", set, err)
	}
	held := make([]bool, len(claims))
	for _, c := range calls {
		vals, err := c.cmd.Int64Slice()
		if err != nil {
			return nil, dueErr("renew", set, err)
		}
		for j, i := range c.idx {
			held[i] = j < len(vals) && vals[j] == 1
		}
	}
	return held, nil
}

// FinishDue implements scheduler.Store for claims whose finish writes
// nothing else (the refresher's): one script call per shard, all in one
// round trip.
func (s *Store) FinishDue(ctx context.Context, set string, done []scheduler.Done[struct{}]) ([]bool, error) {
	return finishDue(ctx, s, set, done, nil)
}

// FinishRuns implements jobs.Store: FinishDue for job runs, whose
// outcomes (a SavedRun, or nil) are written to the user's job state in
// the same round trip.
func (s *Store) FinishRuns(ctx context.Context, set string, done []scheduler.Done[*jobs.SavedRun]) ([]bool, error) {
	return finishDue(ctx, s, set, done, func(p redis.Pipeliner, w *jobs.SavedRun) *redis.IntCmd {
		if w == nil {
			return nil
		}
		st := w.State
		return p.HSet(ctx, s.jobsKey(w.User), w.Job+":lr", ms(st.LastRun), w.Job+":ls", ms(st.LastSuccess),
			w.Job+":cf", st.Failures, w.Job+":le", st.LastError)
	})
}

// finishDue applies done: the handlers' writes (write queues one, or
// none), then one script call per shard, all in one round trip. The
// writes go first and unfenced, as they would from the handler itself:
// if the batch fails the entries keep their lease and run again.
func finishDue[W any](ctx context.Context, s *Store, set string, done []scheduler.Done[W], write func(p redis.Pipeliner, w W) *redis.IntCmd) ([]bool, error) {
	byShard := make(map[int][]int)
	for i, d := range done {
		sh := scheduler.Shard(d.Member, s.shards)
		byShard[sh] = append(byShard[sh], i)
	}
	type call struct {
		idx []int
		cmd *redis.Cmd
	}
	calls := make([]call, 0, len(byShard))
	var writes []*redis.IntCmd
	_, err := s.pipelined(ctx, func(p redis.Pipeliner) error {
		calls, writes = calls[:0], writes[:0]
		for i := 0; write != nil && i < len(done); i++ {
			if cmd := write(p, done[i].Write); cmd != nil {
				writes = append(writes, cmd)
			}
		}
		for sh, idx := range byShard {
			args := make([]any, 0, 3*len(idx))
			for _, i := range idx {
				next := ""
				if !done[i].Next.IsZero() {
					next = strconv.FormatInt(ms(done[i].Next), 10)
				}
				args = append(args, done[i].Member, done[i].Fence, next)
			}
			calls = append(calls, call{idx: idx, cmd: evalFenced(ctx, p, finishScript, []string{s.dueKey(set, sh), s.claimsKey(set, sh)}, args...)})
		}
		return nil
	})
	// The re-scores decide; a write that failed on its own (a damaged
	// key) must not hold back the batch: it is logged, and the re-scores
	// stand. (A failed connection fails every command, scripts included.)
	if err != nil {
		scriptErr := err
		if len(calls) > 0 {
			scriptErr = nil
			for _, c := range calls {
				if c.cmd.Err() != nil {
					scriptErr = c.cmd.Err()
					break
				}
			}
		}
		if scriptErr != nil {
			return nil, dueErr("finish", set, scriptErr)
		}
		for _, w := range writes {
			if w.Err() != nil {
				s.log.Error().Err(w.Err()).Str("key", fmt.Sprint(w.Args()[1])).Msg("recording a job run failed")
			}
		}
	}
	held := make([]bool, len(done))
	for _, c := range calls {
		vals, err := c.cmd.Int64Slice()
		if err != nil {
			return nil, dueErr("finish", set, err)
		}
		for j, i := range c.idx {
			held[i] = j < len(vals) && vals[j] == 1
		}
	}
	return held, nil
}

// ScheduleDue sets (or, for a zero At, removes) members' due times.
func (s *Store) ScheduleDue(ctx context.Context, set string, entries []scheduler.Entry) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.zaddByShard(ctx, p, set, entries, redis.ZAddArgs{})
		return nil
	})
	if err != nil {
		return fmt.Errorf("schedule %s: %w", set, err)
	}
	return nil
}

// zaddMax bounds the members of one ZADD (and ZREM).
const zaddMax = 512

// zaddByShard queues entries as one multi-member ZADD (with args' NX/XX)
// per shard and zaddMax members, and zero-time entries as ZREMs: Redis
// spends a few microseconds per command whatever its size, so a million
// single-member ZADDs cost twice the Redis time of the same members in
// bulk.
func (s *Store) zaddByShard(ctx context.Context, p redis.Pipeliner, set string, entries []scheduler.Entry, args redis.ZAddArgs) {
	adds := make(map[int][]redis.Z)
	rems := make(map[int][]any)
	for _, e := range entries {
		sh := scheduler.Shard(e.Member, s.shards)
		if e.At.IsZero() {
			rems[sh] = append(rems[sh], e.Member)
		} else {
			adds[sh] = append(adds[sh], redis.Z{Score: float64(ms(e.At)), Member: e.Member})
		}
	}
	for sh, zs := range adds {
		for len(zs) > 0 {
			n := min(len(zs), zaddMax)
			a := args
			a.Members = zs[:n]
			p.ZAddArgs(ctx, s.dueKey(set, sh), a)
			zs = zs[n:]
		}
	}
	for sh, ms := range rems {
		for len(ms) > 0 {
			n := min(len(ms), zaddMax)
			p.ZRem(ctx, s.dueKey(set, sh), ms[:n]...)
			ms = ms[n:]
		}
	}
}

// DueAt returns a member's due time in a set, zero when absent.
func (s *Store) DueAt(ctx context.Context, set, member string) (time.Time, error) {
	v, err := s.rdb.ZScore(ctx, s.dueKey(set, scheduler.Shard(member, s.shards)), member).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("due %s: %w", set, err)
	}
	return fromMS(int64(v)), nil
}

// DueCount returns how many members of a set are due at or before t.
func (s *Store) DueCount(ctx context.Context, set string, t time.Time) (int64, error) {
	cmds := make([]*redis.IntCmd, s.shards)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range cmds {
			cmds[i] = p.ZCount(ctx, s.dueKey(set, i), "-inf", strconv.FormatInt(ms(t), 10))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("due count %s: %w", set, err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}

// ---- token records (tokens.Store) ----

// Put implements tokens.Store.
func (s *Store) Put(ctx context.Context, rec tokens.Record, reason string, now time.Time) (tokens.State, *tokens.Transition, error) {
	vals, err := putScript.Run(ctx, s.rdb, []string{s.tokenKey(rec.UserID)},
		rec.Provider, rec.KeyID, rec.Ciphertext, ms(rec.AccessExpiry), ms(rec.RefreshExpiry), ms(now), reason).Slice()
	if wrongType(err) {
		// A key of the wrong type holds the record's place: set it aside,
		// then store the token (which supersedes the quarantined copy).
		if _, qerr := s.QuarantineMalformed(ctx, rec.UserID, now); qerr == nil {
			vals, err = putScript.Run(ctx, s.rdb, []string{s.tokenKey(rec.UserID)},
				rec.Provider, rec.KeyID, rec.Ciphertext, ms(rec.AccessExpiry), ms(rec.RefreshExpiry), ms(now), reason).Slice()
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("put token: %w", err)
	}
	from, _ := vals[1].(string)
	to, _ := vals[2].(string)
	var tr *tokens.Transition
	if from != to {
		tr = &tokens.Transition{UserID: rec.UserID, From: tokens.State(from), To: tokens.State(to), Reason: reason, At: now}
	}
	// The record no longer needs re-authorization: drop the queue hint
	// (after the truth changed; a crash here leaves a stale hint that
	// ReauthQueue repairs). A copy quarantined earlier is superseded.
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, s.reauthKey(), rec.UserID)
		s.forgetQuarantine(ctx, p, rec.UserID)
		s.addEvent(ctx, p, tr)
		return nil
	})
	if err != nil {
		return tokens.State(to), tr, fmt.Errorf("put token: %w", err)
	}
	return tokens.State(to), tr, nil
}

func (s *Store) addEvent(ctx context.Context, p redis.Pipeliner, tr *tokens.Transition) {
	if tr == nil {
		return
	}
	p.XAdd(ctx, &redis.XAddArgs{
		Stream: s.eventsKey(),
		MaxLen: s.maxEv,
		Approx: true,
		Values: []any{"user", tr.UserID, "from", string(tr.From), "to", string(tr.To), "reason", tr.Reason, "at", tr.At.UTC().Format(time.RFC3339Nano)},
	})
}

// Load implements tokens.Store.
func (s *Store) Load(ctx context.Context, user string) (tokens.Record, error) {
	m, err := s.rdb.HGetAll(ctx, s.tokenKey(user)).Result()
	if err != nil {
		return tokens.Record{}, fmt.Errorf("load token: %w", recordErr(user, err))
	}
	if len(m) == 0 {
		return tokens.Record{}, tokens.ErrNotFound
	}
	return parseRecord(user, m)
}

// Acquire implements tokens.Store.
func (s *Store) Acquire(ctx context.Context, user, lease, renew string, now, until time.Time) (tokens.Record, tokens.AcquireStatus, error) {
	vals, err := s.runFenced(ctx, acquireScript, []string{s.tokenKey(user)}, lease, ms(now), ms(until), renew, ms(until)-ms(now)).Slice()
	if err != nil {
		return tokens.Record{}, 0, fmt.Errorf("acquire lease: %w", recordErr(user, err))
	}
	return s.acquired(ctx, user, lease, vals)
}

// AcquireMany implements tokens.Store.
func (s *Store) AcquireMany(ctx context.Context, users, leases []string, now, until time.Time) ([]tokens.Lease, error) {
	cmds := make([]*redis.Cmd, len(users))
	_, err := s.pipelined(ctx, func(p redis.Pipeliner) error {
		for i, u := range users {
			cmds[i] = acquireScript.EvalSha(ctx, p, []string{s.tokenKey(u)}, leases[i], ms(now), ms(until), "", ms(until)-ms(now))
		}
		return nil
	})
	if err != nil && otherErr(cmds) != nil {
		return nil, fmt.Errorf("acquire leases: %w", err)
	}
	out := make([]tokens.Lease, len(users))
	for i, u := range users {
		vals, err := cmds[i].Slice()
		if err != nil {
			out[i].Err = fmt.Errorf("acquire lease: %w", recordErr(u, err))
			continue
		}
		out[i].ID = leases[i]
		out[i].Record, out[i].Status, out[i].Err = s.acquired(ctx, u, leases[i], vals)
	}
	return out, nil
}

// acquired decodes the acquire script's answer.
func (s *Store) acquired(ctx context.Context, user, lease string, vals []any) (tokens.Record, tokens.AcquireStatus, error) {
	st, _ := vals[0].(int64)
	if st == 0 {
		return tokens.Record{}, tokens.AcquireMissing, nil
	}
	m := make(map[string]string, len(vals)/2)
	for i := 1; i+1 < len(vals); i += 2 {
		k, _ := vals[i].(string)
		v, _ := vals[i+1].(string)
		m[k] = v
	}
	rec, err := parseRecord(user, m)
	if err != nil {
		// Do not keep a lease on a record nobody can use.
		_ = releaseScript.Run(ctx, s.rdb, []string{s.tokenKey(user)}, lease).Err()
		return tokens.Record{}, 0, err
	}
	switch st {
	case 1:
		return rec, tokens.Acquired, nil
	case 2:
		return rec, tokens.AcquireBusy, nil
	default:
		return rec, tokens.AcquireNotRunnable, nil
	}
}

// Commit implements tokens.Store. The token-record scripts (acquire,
// commit, fail, flag) run without go-redis retries, like the due-set
// scripts: the refresher decides what to repeat (a commit is fenced by
// the version, a lease is renewed by its id). A commit that waits for
// replicas (Options.MinReplicasAcked) keeps the lease until they
// acknowledge it, then releases it; if they do not in time it answers ok
// with an error wrapping tokens.ErrUnacked and the lease still held.
func (s *Store) Commit(ctx context.Context, lease string, rec tokens.Record, reason string, now time.Time) (bool, *tokens.Transition, error) {
	key := s.tokenKey(rec.UserID)
	args := []any{lease, rec.Version, rec.KeyID, rec.Ciphertext, ms(rec.AccessExpiry), ms(rec.RefreshExpiry), ms(now), reason}
	var c redis.Cmdable
	want := 0
	if s.dur.want != 0 {
		var addr string
		var err error
		if c, addr, err = s.master(ctx, key); err != nil {
			return false, nil, fmt.Errorf("commit token: %w", err)
		}
		want = s.replicasToWait(ctx, c, addr)
	}
	var vals []any
	var acked int64
	var wt time.Duration
	var waitErr, err error
	if want == 0 {
		vals, err = s.runFenced(ctx, commitScript, []string{key}, args...).Slice()
	} else {
		wt = s.waitTimeout(ctx, c)
		vals, acked, waitErr, err = s.commitWaiting(ctx, c, key, want, wt, append(args, "1"))
	}
	if err != nil {
		return false, nil, fmt.Errorf("commit token: %w", err)
	}
	if ok, _ := vals[0].(int64); ok != 1 {
		return false, nil, nil
	}
	var tr *tokens.Transition
	var evErr error
	if from, _ := vals[2].(string); from != "" {
		tr = &tokens.Transition{UserID: rec.UserID, From: tokens.State(from), To: tokens.Active, Reason: reason, At: now}
		evErr = s.event(ctx, tr)
	}
	if want > 0 {
		if acked < int64(want) {
			return true, tr, errors.Join(unacked(acked, want, wt, waitErr), evErr)
		}
		if err := releaseScript.Run(ctx, s.rdb, []string{key}, lease).Err(); err != nil {
			s.log.Warn().Err(err).Str("user", rec.UserID).Msg("lease release after a durable commit failed; it expires by itself")
		}
	}
	return true, tr, evErr
}

func (s *Store) event(ctx context.Context, tr *tokens.Transition) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.addEvent(ctx, p, tr)
		return nil
	})
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// Fail implements tokens.Store.
func (s *Store) Fail(ctx context.Context, user, lease string, version int64, lastErr string, degradeAfter int, reason string, now time.Time) (bool, int, *tokens.Transition, error) {
	vals, err := s.runFenced(ctx, failScript, []string{s.tokenKey(user)}, lease, version, lastErr, degradeAfter, ms(now), reason).Slice()
	if err != nil {
		return false, 0, nil, fmt.Errorf("record failure: %w", err)
	}
	if ok, _ := vals[0].(int64); ok != 1 {
		return false, 0, nil, nil
	}
	f, _ := vals[1].(int64)
	from, _ := vals[2].(string)
	if from == "" {
		return true, int(f), nil, nil
	}
	tr := &tokens.Transition{UserID: user, From: tokens.State(from), To: tokens.Degraded, Reason: reason, At: now}
	return true, int(f), tr, s.event(ctx, tr)
}

// Flag implements tokens.Store. The queue entry is written first: a crash
// after it leaves a hint that ReauthQueue drops, never a flagged user
// missing from the queue.
func (s *Store) Flag(ctx context.Context, user, lease string, version int64, reason, lastErr string, now time.Time) (tokens.FlagOutcome, *tokens.Transition, error) {
	if err := s.rdb.ZAddNX(ctx, s.reauthKey(), redis.Z{Score: float64(ms(now)), Member: user}).Err(); err != nil {
		return 0, nil, fmt.Errorf("flag: %w", err)
	}
	vals, err := s.runFenced(ctx, flagScript, []string{s.tokenKey(user)}, lease, version, reason, ms(now), lastErr).Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("flag: %w", err)
	}
	st, _ := vals[0].(int64)
	state, _ := vals[1].(string)
	switch st {
	case 1:
		tr := &tokens.Transition{UserID: user, From: tokens.State(state), To: tokens.ReauthRequired, Reason: reason, At: now}
		return tokens.Flagged, tr, s.event(ctx, tr)
	case 3:
		return tokens.AlreadyFlagged, nil, nil
	default:
		if tokens.State(state) != tokens.ReauthRequired {
			if err := s.rdb.ZRem(ctx, s.reauthKey(), user).Err(); err != nil {
				return tokens.FlagStale, nil, fmt.Errorf("flag: %w", err)
			}
		}
		return tokens.FlagStale, nil, nil
	}
}

// Release implements tokens.Store.
func (s *Store) Release(ctx context.Context, user, lease string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.tokenKey(user)}, lease).Err(); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// Rekey implements tokens.Store.
func (s *Store) Rekey(ctx context.Context, user string, version int64, kid string, ciphertext []byte) (bool, error) {
	n, err := rekeyScript.Run(ctx, s.rdb, []string{s.tokenKey(user)}, version, kid, ciphertext).Int64()
	if err != nil {
		return false, fmt.Errorf("rekey: %w", err)
	}
	return n == 1, nil
}

// SetState implements tokens.Store: an operator disables or enables a
// user. A disabled user leaves the re-auth queue (it is not waiting for
// consent, it is switched off).
func (s *Store) SetState(ctx context.Context, user string, to tokens.State, reason string, now time.Time) (*tokens.Transition, error) {
	from, err := setStateScript.Run(ctx, s.rdb, []string{s.tokenKey(user)}, string(to), reason, ms(now)).Text()
	if err != nil {
		return nil, fmt.Errorf("set state: %w", err)
	}
	if from == "" {
		return nil, tokens.ErrNotFound
	}
	if tokens.State(from) == to || (to == tokens.Active && tokens.State(from) != tokens.Disabled) {
		return nil, nil
	}
	tr := &tokens.Transition{UserID: user, From: tokens.State(from), To: to, Reason: reason, At: now}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if to == tokens.Disabled {
			p.ZRem(ctx, s.reauthKey(), user)
		}
		s.addEvent(ctx, p, tr)
		return nil
	})
	if err != nil {
		return tr, fmt.Errorf("set state: %w", err)
	}
	return tr, nil
}

// Scan implements tokens.Store. On a cluster the cursor walks every
// master in turn (scanStep); a page may be empty while next is not 0.
func (s *Store) Scan(ctx context.Context, cursor uint64, count int64) ([]tokens.Record, []string, uint64, error) {
	keys, next, err := s.scanStep(ctx, cursor, s.tokenPattern(), count)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("scan users: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HGetAll(ctx, k)
		}
		return nil
	})
	if err != nil && otherErr(cmds) != nil {
		return nil, nil, 0, fmt.Errorf("scan users: %w", err)
	}
	var recs []tokens.Record
	var bad []string
	for i, k := range keys {
		user, ok := s.userOfTokenKey(k)
		switch {
		case !ok:
			continue
		case wrongType(cmds[i].Err()):
			bad = append(bad, user)
			continue
		case len(cmds[i].Val()) == 0:
			continue // deleted between SCAN and HGETALL
		}
		rec, err := parseRecord(user, cmds[i].Val())
		if err != nil {
			bad = append(bad, user)
			continue
		}
		recs = append(recs, rec)
	}
	return recs, bad, next, nil
}

// ReauthQueue implements tokens.Store.
func (s *Store) ReauthQueue(ctx context.Context) ([]tokens.ReauthEntry, error) {
	q, _, err := s.ReauthQueueChecked(ctx)
	return q, err
}

// ReauthQueueChecked is ReauthQueue that also returns the queued users
// whose record could not be read (a token key of the wrong type): they
// are left out of the list and keep their queue entry until the record is
// repaired or quarantined.
func (s *Store) ReauthQueueChecked(ctx context.Context) ([]tokens.ReauthEntry, []string, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, s.reauthKey(), 0, -1).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("reauth queue: %w", err)
	}
	cmds := make([]*redis.SliceCmd, len(zs))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, z := range zs {
			cmds[i] = p.HMGet(ctx, s.tokenKey(z.Member.(string)), "s", "sr", "sa", "p")
		}
		return nil
	})
	if err != nil && otherErr(cmds) != nil {
		return nil, nil, fmt.Errorf("reauth queue: %w", err)
	}
	out := make([]tokens.ReauthEntry, 0, len(zs))
	var stale []any
	var malformed []string
	for i, z := range zs {
		user := z.Member.(string)
		if wrongType(cmds[i].Err()) {
			malformed = append(malformed, user)
			continue
		}
		v := cmds[i].Val()
		if st, _ := v[0].(string); st != string(tokens.ReauthRequired) {
			stale = append(stale, user)
			continue
		}
		reason, _ := v[1].(string)
		at, _ := v[2].(string)
		prov, _ := v[3].(string)
		atMS, _ := strconv.ParseInt(at, 10, 64)
		out = append(out, tokens.ReauthEntry{UserID: user, Since: fromMS(atMS), Reason: reason, Provider: prov})
	}
	if len(stale) > 0 {
		// Repair hints left by a crash between steps. A user flagged again
		// since ZRANGE is re-added by its own Flag.
		if err := s.rdb.ZRem(ctx, s.reauthKey(), stale...).Err(); err != nil {
			return out, malformed, fmt.Errorf("reauth queue repair: %w", err)
		}
	}
	return out, malformed, nil
}

// Event is one entry of the events stream.
type Event struct {
	ID                     string
	User, From, To, Reason string
	At                     time.Time
}

// Events returns the last n events, oldest first.
func (s *Store) Events(ctx context.Context, n int64) ([]Event, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.eventsKey(), "+", "-", n).Result()
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	out := make([]Event, len(msgs))
	for i, m := range msgs {
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		at, _ := time.Parse(time.RFC3339Nano, str("at"))
		out[len(msgs)-1-i] = Event{ID: m.ID, User: str("user"), From: str("from"), To: str("to"), Reason: str("reason"), At: at}
	}
	return out, nil
}

// MaxRecordBytes caps a token record read from Redis: its field names and
// values together, in bytes. The largest record syncd writes holds a
// token of tokens.MaxTokenInput bytes sealed (its size plus a few dozen
// bytes) and about 200 bytes of metadata; twice the token cap leaves room
// and still stops a record that grew by a bug or by hand from being
// decoded, held and copied on every read. A record over it is malformed
// (tokens.ErrMalformedRecord), so it is quarantined like any other.
const MaxRecordBytes = 2 * tokens.MaxTokenInput

// recordSize is the bytes of a record's field names and values.
func recordSize(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

// parseRecord turns a record hash into a Record. Errors name the field,
// never a value (the ciphertext is not a value to print either).
func parseRecord(user string, m map[string]string) (tokens.Record, error) {
	bad := func(field string) (tokens.Record, error) {
		return tokens.Record{}, fmt.Errorf("user %q: field %q: %w", user, field, tokens.ErrMalformedRecord)
	}
	if n := recordSize(m); n > MaxRecordBytes {
		return tokens.Record{}, fmt.Errorf("user %q: record is %d bytes, limit is %d: %w", user, n, MaxRecordBytes, tokens.ErrMalformedRecord)
	}
	num := func(field string, required bool) (int64, bool) {
		v, ok := m[field]
		if !ok || v == "" {
			return 0, !required
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil && n >= 0
	}
	r := tokens.Record{UserID: user, Provider: m["p"], KeyID: m["k"], Ciphertext: []byte(m["c"]),
		StateReason: m["sr"], LastError: m["le"], LeaseID: m["lo"], LeaseExpired: m["xl"] == "1"}
	var ok bool
	var n int64
	if r.Version, ok = num("v", true); !ok || r.Version < 1 {
		return bad("v")
	}
	if r.KeyID == "" {
		return bad("k")
	}
	if len(r.Ciphertext) == 0 {
		return bad("c")
	}
	st, err := tokens.ParseState(m["s"])
	if err != nil {
		return bad("s")
	}
	r.State = st
	fields := []struct {
		name     string
		required bool
		into     *time.Time
	}{{"ae", true, &r.AccessExpiry}, {"re", false, &r.RefreshExpiry}, {"sa", false, &r.StateAt},
		{"ca", false, &r.CreatedAt}, {"lr", false, &r.LastRefresh}, {"lu", false, &r.LeaseUntil}}
	for _, f := range fields {
		if n, ok = num(f.name, f.required); !ok {
			return bad(f.name)
		}
		*f.into = fromMS(n)
	}
	if n, ok = num("f", false); !ok {
		return bad("f")
	}
	r.Failures = int(n)
	return r, nil
}

// PutMany stores many new tokens in one round trip per call (bulk
// onboarding, benchmarks). It writes records only: callers schedule the
// users (ScheduleDue, AddDue) themselves. Transitions are not evented.
func (s *Store) PutMany(ctx context.Context, recs []tokens.Record, now time.Time) error {
	_, err := s.pipelined(ctx, func(p redis.Pipeliner) error {
		for _, rec := range recs {
			putScript.EvalSha(ctx, p, []string{s.tokenKey(rec.UserID)},
				rec.Provider, rec.KeyID, rec.Ciphertext, ms(rec.AccessExpiry), ms(rec.RefreshExpiry), ms(now), tokens.ReasonStored)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put tokens: %w", err)
	}
	return nil
}

// Info returns a section of INFO as key/value pairs.
func (s *Store) Info(ctx context.Context, section string) (map[string]string, error) {
	txt, err := s.rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]string)
	for _, line := range strings.Split(txt, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, "#") {
			out[k] = v
		}
	}
	return out, nil
}

// ListpackValueLimit returns Redis' hash-max-listpack-value, or 0 when
// CONFIG GET is not allowed (managed Redis).
func (s *Store) ListpackValueLimit(ctx context.Context) int {
	m, err := s.rdb.ConfigGet(ctx, "hash-max-listpack-value").Result()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(m["hash-max-listpack-value"])
	return n
}
