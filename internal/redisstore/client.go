package redisstore

import "github.com/redis/go-redis/v9"

// TuneClient sets the client options syncd runs with, for workers
// concurrent workers in all:
//   - RESP2: syncd uses no RESP3 feature, and go-redis then skips a
//     push-notification check per command (about 20% more job runs per
//     second in the benchmark);
//   - a pool with a connection for every worker;
//   - 8 KiB buffers for single commands, whose requests and replies are a
//     few hundred bytes (go-redis' 32 KiB each made the pool's buffers most
//     of the live heap); pipelines keep their own 128 KiB buffers.
func TuneClient(o *redis.Options, workers int) {
	o.Protocol = 2
	o.PoolSize = max(o.PoolSize, workers+16)
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = 8 << 10
	}
	if o.WriteBufferSize == 0 {
		o.WriteBufferSize = 8 << 10
	}
}
