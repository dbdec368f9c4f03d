package faulttest

import (
	"context"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/tokens"
)

// TestKilledReplicaLeasesExpire: a replica is killed (kill -9) while it
// holds a full batch of refresh claims, with their refresh leases
// prefetched, and a full batch of job claims; its workers are at the
// provider and the rest of each batch is queued. The other replicas take
// its users over once the leases end: every user refreshed exactly once,
// every slot run exactly once.
//
// The kill is simulated in process: from one instant the replica's Redis
// client fails every command before sending it and its provider calls
// never leave (replica.kill). That is what Redis and the provider see of a
// process killed with SIGKILL: no release, no hand-back, no heartbeat, no
// finish. Cancelling its context instead would not do: Stop hands queued
// claims back and the refresher releases its leases, which is a graceful
// shutdown, not a crash. Its calls at the provider are held until the
// kill, so none of its refresh requests reached the provider; a process
// killed after the provider rotated a token loses that rotation, which
// syncd documents (refresh result "lost") and this test does not cover.
//
// On a fake clock with production-like durations (lead 10m, jitter 2m,
// lease 30s, provider timeout 5s). The job's timeout is 1m, less than the
// 5 minutes the tokens have left, so runs do not refresh: the kill's
// effect on refreshes and on runs is seen separately (the job path's
// refreshes are TestFleetRestartAfterGap's and
// TestJobRefreshWhileRefresherHoldsClaim's).
func TestKilledReplicaLeasesExpire(t *testing.T) {
	clk := clock.NewFake(t0)
	lease := 30 * time.Second
	h := newHarness(t, params{users: 300, replicas: 3, clk: clk,
		lease: lease, timeout: 5 * time.Second, lead: 10 * time.Minute, jitter: 2 * time.Minute,
		jobs: `jobs: [{name: pull, kind: pull, schedule: "*/5 * * * *", missed: once, timeout: 1m}]`})
	ctx := context.Background()
	victim := h.replica("victim")
	h.put(victim, 50*time.Minute) // access expires 13:00, due 12:48 to 12:50
	g := victim.holdCalls(nil)
	// 12:55: every token is due and so is every user's job.
	h.advance(55 * time.Minute)
	victim.start()
	// The victim claims as much as it can hold: its workers at the
	// provider, a batch queued behind them, in each due set.
	capacity := h.p.workers + h.p.batch
	refreshClaimed := func() []string { return h.claimed(tokens.RefreshSet) }
	jobClaimed := func() []string { return h.claimed(jobs.SetName("pull")) }
	h.mustWait(20*time.Second, "the victim's claims", func() bool {
		return g.held.Load() == int64(2*h.p.workers) && len(refreshClaimed()) == capacity && len(jobClaimed()) == capacity
	})
	victim.kill()
	heldRefresh, heldJobs := refreshClaimed(), jobClaimed()
	for _, u := range heldRefresh {
		rec, err := h.obs.Load(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if tokens.LeaseHolder(rec.LeaseID) != "victim" {
			t.Fatalf("%s: claimed by the victim but its refresh lease is held by %q", u, rec.LeaseID)
		}
	}

	others := []*replica{h.replica("r1"), h.replica("r2")}
	for _, r := range others {
		r.start()
	}
	notHeld := func(held []string) map[string]bool {
		m := make(map[string]bool, len(held))
		for _, u := range held {
			m[u] = true
		}
		return m
	}
	byVictimR, byVictimJ := notHeld(heldRefresh), notHeld(heldJobs)
	byVictim := make(map[string]bool)
	for u := range byVictimR {
		byVictim[u] = true
	}
	for u := range byVictimJ {
		byVictim[u] = true
	}
	h.mustWait(30*time.Second, "the others to finish every user the victim does not hold", func() bool {
		for _, u := range h.users {
			if !byVictimR[u] && h.prov.Refreshes(u) == 0 || !byVictimJ[u] && len(h.prov.Pulls(u)) == 0 {
				return false
			}
		}
		return h.settled(byVictim)
	})
	for _, u := range heldRefresh {
		if n := h.prov.Refreshes(u); n != 0 {
			t.Fatalf("%s refreshed %d times while the dead victim's lease held", u, n)
		}
	}
	for _, u := range heldJobs {
		if n := len(h.prov.Pulls(u)); n != 0 {
			t.Fatalf("%s pulled %d times while the dead victim's claim held", u, n)
		}
	}

	// The leases and their grace end (a holder alive behind a stall could
	// still store a rotated token during the grace): the others take the
	// victim's users over.
	h.advance(2*lease + time.Second)
	h.mustWait(30*time.Second, "the victim's users taken over", func() bool {
		return h.refreshed() == len(h.users) && h.coveredThrough(clk.Now()) && h.settled(nil)
	})
	// And the next slot runs as usual.
	h.advance(5*time.Minute - 2*lease - time.Second)
	h.waitFor(30*time.Second, func() bool { return h.coveredThrough(clk.Now()) })
	t.Logf("the victim held %d refresh claims and %d job claims", len(heldRefresh), len(heldJobs))
	h.check("killed replica", h.tally(t0.Add(50*time.Minute), clk.Now(), 1))
}
