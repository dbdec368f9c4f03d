package faulttest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// TestJobRefreshWhileRefresherHoldsClaim is the end-to-end form of the
// unit test of the same name in internal/refresher: a job run needs a fresh
// token for a user whose refresh the refresher has claimed, and the
// provider must see exactly one refresh of that user.
//
// Two users of one shard are due for refresh, first before second, so one
// claim takes both and prefetches both refresh leases. The refresher has
// one worker, held at the provider on first. Then the pull job is
// triggered for second; its token has 5 minutes left, the job's timeout,
// so the run refreshes it:
//   - claim queued: the refresher's own pass of second is still queued
//     behind first, holding second's prefetched lease; the job on the same
//     replica starts from that lease;
//   - refresh in flight: the refresher is at the provider with second
//     itself; the job on the same replica joins that refresh;
//   - other replica: as "claim queued", but the job runs on another
//     replica, which must wait for the lease instead of refreshing.
//
// On a fake clock with production-like durations (lead 10m, jitter 2m,
// lease 30s, provider timeout 5s, job timeout 5m).
func TestJobRefreshWhileRefresherHoldsClaim(t *testing.T) {
	for _, tc := range []struct {
		name   string
		held   string // "first" or "second": whose refresh waits at the provider
		jobsOn int    // replica that runs the job
	}{
		{name: "claim queued", held: "first", jobsOn: 0},
		{name: "refresh in flight", held: "second", jobsOn: 0},
		{name: "other replica", held: "first", jobsOn: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			h := newHarness(t, params{users: 0, replicas: 2, clk: clk, workers: 1,
				lease: 30 * time.Second, timeout: 5 * time.Second, lead: 10 * time.Minute, jitter: 2 * time.Minute,
				jobs: `jobs: [{name: pull, kind: pull, schedule: "@daily"}]`})
			for i := 0; len(h.users) < 2; i++ {
				if u := fmt.Sprintf("u%04d", i); scheduler.Shard(u, 8) == 0 {
					h.users = append(h.users, u)
				}
			}
			first, second := h.users[0], h.users[1]
			ctx := context.Background()
			claimer := h.replica("r0")
			other := h.replica("r1")
			h.put(claimer, 50*time.Minute) // access expires 13:00
			h.advance(55 * time.Minute)    // 12:55: due, 5 minutes left
			now := clk.Now()
			if err := h.obs.ScheduleDue(ctx, tokens.RefreshSet, []scheduler.Entry{
				{Member: first, At: now.Add(-2 * time.Minute)}, {Member: second, At: now.Add(-time.Minute)}}); err != nil {
				t.Fatal(err)
			}
			heldUser := first
			if tc.held == "second" {
				heldUser = second
			}
			g := claimer.holdCalls(func(op, user string) bool { return op == "refresh" && user == heldUser })
			// Only the claimer refreshes: the other replica runs jobs.
			if err := claimer.ref.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = claimer.ref.Stop(context.Background()) })
			h.mustWait(10*time.Second, "the refresher at the provider", func() bool { return g.held.Load() == 1 })

			runner := []*replica{claimer, other}[tc.jobsOn].runner
			if err := runner.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = runner.Stop(context.Background()) })
			if _, err := runner.Trigger(ctx, "pull", second); err != nil {
				t.Fatal(err)
			}
			if tc.held == "first" && tc.jobsOn == 0 {
				// The job is not blocked by first's refresh: it finishes
				// while the refresher is still held.
				h.mustWait(10*time.Second, "the job run", func() bool { return len(h.prov.Pulls(second)) == 1 })
			}
			g.open()
			h.mustWait(20*time.Second, "both users refreshed and the job run", func() bool {
				return h.prov.Refreshes(first) >= 1 && h.prov.Refreshes(second) >= 1 && len(h.prov.Pulls(second)) == 1 &&
					h.passes(first) >= 1 && h.passes(second) >= 1
			})
			h.check(tc.name, h.tally(t0, clk.Now(), 1))
		})
	}
}
