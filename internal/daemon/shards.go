package daemon

import (
	"context"
	"time"

	"github.com/syncd/syncd/internal/redisstore"
)

// shardsLive is how long a replica's shard-count announcement counts as
// a running replica: a few housekeeping intervals, each of which renews
// it.
func shardsLive(statsInterval time.Duration) time.Duration { return 3 * statsInterval }

// announceShards tells the other replicas which redis.shards this one
// runs with (at start and every housekeeping interval).
func (d *Daemon) announceShards(ctx context.Context) {
	if err := d.store.AnnounceShards(ctx, d.owner, time.Now()); err != nil && ctx.Err() == nil {
		d.log.Warn().Err(err).Msg("announcing the due-set shard count failed")
	}
}

// migrateShards lays the due sets out for redis.shards if they are not
// (a changed shard count, or a replica that ran with another one): at
// start, before any claim, and from housekeeping. It waits while live
// replicas run with another count.
func (d *Daemon) migrateShards(ctx context.Context) {
	d.mu.RLock()
	live := shardsLive(d.cfg.StatsInterval)
	d.mu.RUnlock()
	start := time.Now()
	res, err := d.store.MigrateShards(ctx, start, live)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			d.log.Error().Err(err).Msg("due-set shard migration failed; housekeeping retries")
		}
	case len(res.Waiting) > 0:
		d.log.Warn().Int("shards", res.To).Ints("other_replicas_shards", res.Waiting).
			Msg("replicas run with different redis.shards; due sets are migrated once they agree")
	case res.Swept:
		d.log.Info().Int("from", res.From).Int("to", res.To).Int("moved", res.Moved).Int("dropped", res.Dropped).
			Int("left", res.Left).Bool("settled", res.Settled).Dur("took", time.Since(start)).Msg("due sets migrated to the shard count")
	}
}

// withdrawShards removes this replica's announcement as it stops, so a
// migration need not wait for it to go stale.
func (d *Daemon) withdrawShards() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.store.WithdrawShards(ctx, d.owner)
}

// markShards records, for a command that may write due sets, which shard
// count it wrote with: if it is not the daemons', their next housekeeping
// sweeps what it wrote into their layout.
func markShards(ctx context.Context, store *redisstore.Store, owner string) {
	if err := store.AnnounceShards(ctx, owner, time.Now()); err == nil {
		_ = store.WithdrawShards(ctx, owner)
	}
}
