package faulttest

import (
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
)

// Real-time scenarios run on durations scaled down about 20 times from
// production, so that one test second stands for about 20 production
// seconds:
//
//	lease 3s             production 1m (refresher.lease, runner.lease)
//	heartbeat 1s         production 20s (lease/3)
//	provider timeout 1s  production 30s (providers[].timeout; 20s scaled)
//	read timeout 250ms   production 3s (go-redis' default read and write
//	                     timeout; 5s scaled, the least a busy 2-core test
//	                     machine answers within reliably)
//	provider latency     150ms, production about 3s per refresh
//	job every 2s         production 40s, spread over the whole period,
//	                     job timeout 1s (production 20s)
//	lead 2s, jitter 0.5s production 10m and 2m; only when the tokens come
//	                     due matters here: 1s after they are stored.
//
// Stored tokens are due 1s after the replicas start and expire 2s later;
// refreshed ones live an hour, so every user is refreshed exactly once.
func realTime(users int, aof bool) params {
	return params{users: users, replicas: 3, clk: clock.Real{},
		lease: 3 * time.Second, timeout: time.Second, readTimeout: 250 * time.Millisecond,
		lead: 2 * time.Second, jitter: 500 * time.Millisecond, latency: 150 * time.Millisecond,
		jobs: `jobs: [{name: pull, kind: pull, schedule: "@every 2s", spread: 2s, timeout: 1s, missed: once}]`,
		aof:  aof}
}

// startFleet stores every user's token, due in 1s, and starts the
// replicas. It returns when every user was scheduled: the job's slots
// after it are every user's.
func (h *harness) startFleet() time.Time {
	h.t.Helper()
	rs := make([]*replica, h.p.replicas)
	for i := range rs {
		rs[i] = h.replica([]string{"r0", "r1", "r2", "r3", "r4"}[i])
	}
	h.put(rs[0], time.Second)
	scheduled := h.now()
	for _, r := range rs {
		r.start()
	}
	return scheduled
}

// TestRedisStallUnderLoad: Redis stops answering everyone (CLIENT PAUSE
// ALL) in the middle of the refresh wave, with job runs going on; then it
// answers again. The stall is longer than the heartbeat (1s) and the read
// timeout (250ms), and either shorter than the lease (2s, about 40
// production seconds) or longer (4s, about 80 production seconds: a
// failover, a fork on a huge dataset, a stuck disk).
func TestRedisStallUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall time.Duration
	}{
		{name: "shorter than the lease", stall: 2 * time.Second},
		{name: "longer than the lease", stall: 4 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, realTime(200, false))
			from := h.startFleet()
			h.mustWait(20*time.Second, "the refresh wave to start", func() bool { return h.refreshed() >= len(h.users)/4 })
			t.Logf("pausing Redis for %v with %d of %d users refreshed", tc.stall, h.refreshed(), len(h.users))
			<-h.srv.Pause(t, tc.stall)
			resumed := h.now()
			// Settle: everyone refreshed (or flagged) and two full job
			// periods run after the stall.
			h.waitFor(30*time.Second, func() bool { return h.refreshed() == len(h.users) })
			to := resumed.Add(4 * time.Second)
			h.waitFor(30*time.Second, func() bool { return h.now().After(to) && h.coveredThrough(to) })
			h.check("redis stall "+tc.name, h.tally(from, to, 1))
		})
	}
}
