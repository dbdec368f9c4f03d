package faulttest

import (
	"testing"
	"time"
)

// TestRedisStallUnderLoad: Redis stops answering everyone (CLIENT PAUSE
// ALL) in the middle of the refresh wave, with job runs going on; then it
// answers again. The stall is longer than the heartbeat (1s) and the read
// timeout (250ms), and either shorter than the lease (2s, about 40
// production seconds) or longer (4s, about 80 production seconds: a
// failover, a fork on a huge dataset, a stuck disk).
//
// Refreshes answered by the provider during the stall hold the only copy
// of a rotated token. Nothing forces its loss, even when the stall
// outlasts the lease: while Redis answers nobody, nobody can take the
// lease over either, so the holder can still store the token once Redis
// is back, provided nobody presents the spent one first. The scenario
// asserts that no user is flagged either way.
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
