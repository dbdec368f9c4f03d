package redisstore

import (
	"time"

	"github.com/redis/go-redis/v9"
)

// TuneClient sets the client options syncd runs with, for workers
// concurrent workers in all whose engines hold claims for lease (the
// shortest lease of them; 0 leaves the timeouts as they are):
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
func TuneClient(o *redis.Options, workers int, lease time.Duration) {
	o.Protocol = 2
	o.PoolSize = max(o.PoolSize, workers+16)
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = 8 << 10
	}
	if o.WriteBufferSize == 0 {
		o.WriteBufferSize = 8 << 10
	}
	o.ContextTimeoutEnabled = true
	if lease > 0 {
		o.ReadTimeout = capTimeout(o.ReadTimeout, 3*time.Second, lease/4)
		o.WriteTimeout = capTimeout(o.WriteTimeout, o.ReadTimeout, lease/4)
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
