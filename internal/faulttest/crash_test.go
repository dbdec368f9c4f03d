package faulttest

import (
	"testing"
	"time"
)

// TestRedisCrashAndStall: while the fleet refreshes and runs jobs, Redis
// is killed with SIGKILL and restarted from its append-only file
// (appendfsync always: every acknowledged write survives), and later
// stalled for 500ms. On the real-time scale (see realTime) that stall is
// about 10 production seconds: longer than the read timeout, shorter than
// the heartbeat and the lease.
//
// Redis stays down either only as long as redis-server takes to start
// again and load the file (100 to 300ms here: a crash under a supervisor
// that restarts it at once), or 1s more (20 production seconds: longer
// than the read timeout and the heartbeat period, a third of the lease).
// An outage longer than the lease is TestRedisStallUnderLoad's.
func TestRedisCrashAndStall(t *testing.T) {
	for _, tc := range []struct {
		name string
		down time.Duration // how long Redis stays down before it restarts
	}{
		{name: "restart at once"},
		{name: "down for 1s", down: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, realTime(200, true))
			from := h.startFleet()
			h.mustWait(20*time.Second, "the refresh wave to start", func() bool { return h.refreshed() >= len(h.users)/4 })
			before := h.refreshed()
			down := time.Now()
			h.srv.Kill(t)
			if tc.down > 0 {
				// The length of the outage, the fault's one parameter;
				// nothing waits for anything here.
				outage := time.NewTimer(tc.down)
				<-outage.C
			}
			h.srv.Restart(t)
			t.Logf("Redis killed with %d of %d users refreshed, back after %v", before, len(h.users), time.Since(down).Round(time.Millisecond))
			h.mustWait(20*time.Second, "the refresh wave to go on", func() bool { return h.refreshed() >= len(h.users)*3/5 })
			t.Logf("pausing Redis with %d of %d users refreshed", h.refreshed(), len(h.users))
			<-h.srv.Pause(t, 500*time.Millisecond)
			resumed := h.now()
			h.waitFor(30*time.Second, func() bool { return h.refreshed() == len(h.users) })
			to := resumed.Add(4 * time.Second)
			h.waitFor(30*time.Second, func() bool { return h.now().After(to) && h.coveredThrough(to) })
			h.check("redis crash and stall, "+tc.name, h.tally(from, to, 1))
		})
	}
}
