package faulttest

import (
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// TestFleetRestartAfterGap: every replica is stopped, the fleet stays
// down for longer than the refresh lead, and comes back one replica first,
// then the others while the first is busy. Every token is then due, and
// every user's job slot with it (missed: once): the refreshers and the
// jobs' own refreshes (a job wants a token valid for its timeout) race for
// the same users on every replica.
//
// On a fake clock, so durations are production-like: lead 10m, jitter 2m,
// lease 30s, provider timeout 5s, job timeout 5m (the default). The gap
// is 51 minutes; when the fleet returns, each token has 2 minutes left,
// less than the job timeout, so a job run refreshes unless the refresher
// got there first. A provider latency of 20ms (real) keeps refreshes in
// flight while the other replicas join.
func TestFleetRestartAfterGap(t *testing.T) {
	clk := clock.NewFake(t0)
	h := newHarness(t, params{users: 300, replicas: 3, clk: clk,
		lease: 30 * time.Second, timeout: 5 * time.Second, lead: 10 * time.Minute, jitter: 2 * time.Minute,
		latency: 20 * time.Millisecond,
		jobs:    `jobs: [{name: pull, kind: pull, schedule: "*/5 * * * *", missed: once}]`})
	first := h.replica("r0")
	// Tokens expire at 13:00: due for refresh from 12:48 to 12:50.
	h.put(first, 50*time.Minute)
	rs := []*replica{first, h.replica("r1"), h.replica("r2")}
	for _, r := range rs {
		r.start()
	}
	// Normal operation first: the 12:05 slot runs, nobody is refreshed.
	h.advance(5 * time.Minute)
	h.mustWait(30*time.Second, "the 12:05 slot", func() bool { return h.coveredThrough(clk.Now()) && h.settled(nil) })
	if n := h.prov.Stats().Refreshes; n != 0 {
		t.Fatalf("%d refreshes before any token was due", n)
	}

	// The whole fleet goes down at 12:07 ...
	h.advance(2 * time.Minute)
	for _, r := range rs {
		r.stop(10 * time.Second)
	}
	// ... and comes back at 12:58, 51 minutes later: every token is due
	// (2 minutes left), every job slot from 12:10 to 12:55 passed.
	h.advance(51 * time.Minute)
	back := []*replica{h.replica("r0-new"), h.replica("r1-new"), h.replica("r2-new")}
	back[0].start()
	h.mustWait(30*time.Second, "the first replica back to refresh someone", func() bool { return h.refreshed() >= 30 })
	back[1].start()
	back[2].start()
	h.mustWait(60*time.Second, "every user refreshed", func() bool { return h.refreshed() == len(h.users) })
	h.waitFor(60*time.Second, func() bool { return h.coveredThrough(clk.Now()) && h.settled(nil) })

	// The next slot runs as usual, without another refresh.
	h.advance(2 * time.Minute)
	h.waitFor(30*time.Second, func() bool { return h.coveredThrough(clk.Now()) })
	h.check("fleet restart after gap", h.tally(t0, clk.Now(), 1))
}
