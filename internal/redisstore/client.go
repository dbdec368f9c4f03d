package redisstore

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/errkind"
)

// TuneClient sets the client options syncd runs with, for workers
// concurrent workers in all whose engines hold claims for lease (the
// shortest lease of them; 0 leaves the timeouts as they are). It tunes
// a single node's, a Sentinel failover client's and a cluster client's
// options alike (a cluster's pool is per node):
//   - RESP2: syncd uses no RESP3 feature, and go-redis then skips a
//     push-notification check per command (about 20% more job runs per
//     second in the benchmark);
//   - a pool with a connection for every worker;
//   - 8 KiB buffers for single commands, whose requests and replies are a
//     few hundred bytes (go-redis' 32 KiB each made the pool's buffers most
//     of the live heap); pipelines keep their own 128 KiB buffers;
//   - context deadlines bound every call: go-redis applies them to socket
//     reads and writes only with ContextTimeoutEnabled, and without it a
//     call to a Redis that does not answer waits out the read timeout
//     (and its retries) whatever its context says;
//   - read and write timeouts of at most lease/4, below the period of an
//     engine's lease renewals (lease/3): one unanswered call cannot make
//     the finisher, which sends the renewals, miss the next one.
func TuneClient[O *redis.Options | *redis.FailoverOptions | *redis.ClusterOptions](o O, workers int, lease time.Duration) {
	var k knobs
	switch o := any(o).(type) {
	case *redis.Options:
		k = knobs{&o.Protocol, &o.PoolSize, &o.ReadBufferSize, &o.WriteBufferSize, &o.ContextTimeoutEnabled, &o.ReadTimeout, &o.WriteTimeout}
	case *redis.FailoverOptions:
		k = knobs{&o.Protocol, &o.PoolSize, &o.ReadBufferSize, &o.WriteBufferSize, &o.ContextTimeoutEnabled, &o.ReadTimeout, &o.WriteTimeout}
	case *redis.ClusterOptions:
		k = knobs{&o.Protocol, &o.PoolSize, &o.ReadBufferSize, &o.WriteBufferSize, &o.ContextTimeoutEnabled, &o.ReadTimeout, &o.WriteTimeout}
	}
	*k.protocol = 2
	*k.poolSize = max(*k.poolSize, workers+16)
	if *k.readBuf == 0 {
		*k.readBuf = 8 << 10
	}
	if *k.writeBuf == 0 {
		*k.writeBuf = 8 << 10
	}
	*k.ctxTimeout = true
	if lease > 0 {
		*k.read = capTimeout(*k.read, 3*time.Second, lease/4)
		*k.write = capTimeout(*k.write, *k.read, lease/4)
	}
}

// knobs are the fields TuneClient sets, in whichever options hold them.
type knobs struct {
	protocol, poolSize, readBuf, writeBuf *int
	ctxTimeout                            *bool
	read, write                           *time.Duration
}

// NewClient builds the client for o, a single node's, a Sentinel
// failover's or a cluster's options, tuned by TuneClient for workers and
// lease: every client syncd runs with is built here.
func NewClient(o config.RedisClientOptions, workers int, lease time.Duration) redis.UniversalClient {
	switch {
	case o.Failover != nil:
		TuneClient(o.Failover, workers, lease)
		return redis.NewFailoverClient(o.Failover)
	case o.Cluster != nil:
		TuneClient(o.Cluster, workers, lease)
		return redis.NewClusterClient(o.Cluster)
	default:
		TuneClient(o.Single, workers, lease)
		return redis.NewClient(o.Single)
	}
}

// capTimeout returns go-redis timeout t (0: def; negative: none) capped
// at limit.
func capTimeout(t, def, limit time.Duration) time.Duration {
	if t == 0 {
		t = def
	}
	if t < 0 || t > limit {
		return limit
	}
	return t
}

// outageHook gives errkind.Unavailable to the failures of a command that
// mean Redis could not be reached or cannot serve for now (see outage):
// callers then answer "try again later", not "bad request" or "internal
// error". Messages and chains are unchanged; redis.Nil and every other
// answer of Redis are left alone.
type outageHook struct{}

func (outageHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (outageHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if outage(err) {
			err = errkind.Mark(errkind.Unavailable, err)
			cmd.SetErr(err)
		}
		return err
	}
}

func (outageHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if outage(c.Err()) {
				c.SetErr(errkind.Mark(errkind.Unavailable, c.Err()))
			}
		}
		if outage(err) {
			err = errkind.Mark(errkind.Unavailable, err)
		}
		return err
	}
}

// outageReplies start the answers of a Redis that cannot serve for now:
// loading its data, without a reachable master, read-only, out of client
// slots (go-redis retries the same ones).
var outageReplies = []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY", "max number of clients"}

// outage reports whether err, of a command, means Redis is unavailable
// rather than that it refused the command: a network error (refused or
// broken connection, timeout), the caller's deadline, an exhausted pool,
// a closed client, or an answer in outageReplies. An error that already
// has a kind is left as it is.
func outage(err error) bool {
	if err == nil || errkind.Of(err) != 0 {
		return false
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted), errors.Is(err, redis.ErrClosed):
		return true
	}
	for _, p := range outageReplies {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}
