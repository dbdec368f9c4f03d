package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/tokens"
)

// Durable token commits.
//
// Redis replicates asynchronously: a master that fails right after a
// commit can leave a promoted replica holding the refresh token the
// provider has just rotated away, and presenting it again makes a strict
// provider revoke the grant. So a commit of a refreshed token waits
// (WAIT) for Options.MinReplicasAcked replicas to acknowledge it, on the
// connection that wrote it (WAIT counts the writes of its own
// connection): the script and the WAIT go in one pipeline, to the
// user's master. Until they acknowledge, the commit keeps the lease
// (commit.lua's hold), so nobody presents the new token either, and
// Commit answers tokens.ErrUnacked. Nothing else waits: a lost job or
// due-set write repeats a run, and a token stored by Put was never
// presented, so a failover that loses it does not revoke anything (the
// user's previous token comes back; the next durable commit of the
// user covers the put too, as WAIT covers every earlier write).

// DefaultWaitTimeout is Options.WaitTimeout's default.
const DefaultWaitTimeout = time.Second

// replicaRecheck is how often the automatic mode asks a master how many
// replicas it has.
const replicaRecheck = 10 * time.Second

// durability is how many replicas a token commit waits for, and for how
// long.
type durability struct {
	want    int // Options.MinReplicasAcked: negative: auto
	timeout time.Duration

	mu     sync.Mutex
	nodes  map[string]*replicaCount // auto: by master address, "" for a client of one master
	warned bool                     // INFO failed and was logged
}

type replicaCount struct {
	n  int       // connected replicas at the last look
	at time.Time // when last asked; zero: never
}

// master returns the client that reaches key's master: the store's own
// client, or on Redis Cluster the master's node client (WAIT has no key:
// the cluster client would send it anywhere), and that master's address
// for the replica counts.
func (s *Store) master(ctx context.Context, key string) (redis.Cmdable, string, error) {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, "", err
		}
		return node, node.Options().Addr, nil
	}
	return s.rdb, "", nil
}

// replicasToWait is how many replicas a commit on master c (at addr)
// waits for: the configured number, or in the automatic mode 1 while c
// reports a connected replica, re-read every replicaRecheck.
func (s *Store) replicasToWait(ctx context.Context, c redis.Cmdable, addr string) int {
	d := &s.dur
	if d.want >= 0 {
		return d.want
	}
	now := time.Now()
	d.mu.Lock()
	rc := d.nodes[addr]
	if rc == nil {
		rc = &replicaCount{}
		d.nodes[addr] = rc
	}
	n, stale := rc.n, now.Sub(rc.at) >= replicaRecheck
	if stale {
		rc.at = now // one caller asks; the others go on with n
	}
	d.mu.Unlock()
	if stale {
		got, err := connectedReplicas(ctx, c)
		d.mu.Lock()
		switch {
		case err != nil && !d.warned:
			d.warned = true
			s.log.Warn().Err(err).Msg("cannot read the master's replica count (INFO replication); token commits wait for none: set redis.min_replicas_acked")
		case err == nil:
			rc.n = got
			if got != n {
				s.log.Info().Str("master", addr).Int("replicas", got).Msg("token commits wait for replicas that connected replicas can acknowledge")
			}
			n = got
		}
		d.mu.Unlock()
	}
	return min(n, 1)
}

// connectedReplicas reads connected_slaves from a master's INFO
// replication.
func connectedReplicas(ctx context.Context, c redis.Cmdable) (int, error) {
	txt, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(txt, "\r\n") {
		if v, ok := strings.CutPrefix(line, "connected_slaves:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO replication has no connected_slaves")
}

// waitTimeout is the WAIT timeout of a commit on c under ctx: the
// configured one, shortened so that the answer arrives before c's read
// timeout and ctx's deadline (a WAIT cut short answers how many replicas
// acknowledged so far; a read that times out answers nothing).
func (s *Store) waitTimeout(ctx context.Context, c redis.Cmdable) time.Duration {
	t := s.dur.timeout
	if cl, ok := c.(*redis.Client); ok {
		if rt := cl.Options().ReadTimeout; rt > 0 {
			t = min(t, rt*3/4)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		t = min(t, time.Until(dl)/2)
	}
	return max(t, time.Millisecond)
}

// commitWaiting runs the commit script (holding the lease) and WAIT in one
// pipeline on c, and returns the script's answer and how many replicas
// acknowledged. A WAIT that failed after the script answered is a commit
// of unknown durability: acked 0 and the WAIT's error.
func (s *Store) commitWaiting(ctx context.Context, c redis.Cmdable, key string, want int, wt time.Duration, args []any) (vals []any, acked int64, waitErr, err error) {
	var script *redis.Cmd
	var wait *redis.IntCmd
	run := func() ([]redis.Cmder, error) {
		return c.Pipelined(ctx, func(p redis.Pipeliner) error {
			script = evalFenced(ctx, p, commitScript, []string{key}, args...)
			wait = redis.NewIntCmd(ctx, "wait", want, wt.Milliseconds())
			_ = p.Process(ctx, wait)
			return nil
		})
	}
	cmds, _ := run()
	if hasNoScript(cmds) {
		if err := s.loadScripts(ctx); err != nil {
			return nil, 0, nil, err
		}
		_, _ = run()
	}
	if vals, err = script.Slice(); err != nil {
		if outage(err) { // a node client of a cluster has no outageHook
			err = errkind.Mark(errkind.Unavailable, err)
		}
		return nil, 0, nil, err
	}
	if acked, waitErr = wait.Result(); waitErr != nil {
		return vals, 0, waitErr, nil
	}
	return vals, acked, nil, nil
}

// unacked is Commit's error for a commit stored on the master but
// acknowledged by fewer replicas than want within wt.
func unacked(acked int64, want int, wt time.Duration, waitErr error) error {
	if waitErr != nil {
		return fmt.Errorf("commit token: waiting for %d replicas: %w: %w", want, tokens.ErrUnacked, waitErr)
	}
	return fmt.Errorf("commit token: %d of %d replicas acknowledged it within %s: %w", acked, want, wt, tokens.ErrUnacked)
}
