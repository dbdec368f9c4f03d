package redisstore

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/scheduler"
)

// TestFenceDiffersFromTheClaimTakenOver: a claim that takes an entry over
// from a claimer whose lease ran out never gets that claimer's fence, even
// when it draws it, so the claimer cannot pass for it; a score carries its
// fence through renewals.
func TestFenceDiffersFromTheClaimTakenOver(t *testing.T) {
	srv := redistest.Start(t)
	s := New(srv.Client(t), Options{Prefix: srv.Prefix, Shards: 1})
	ctx := context.Background()
	t0 := time.UnixMilli(1_800_000_000_000)
	if err := s.ScheduleDue(ctx, "x", []scheduler.Entry{{Member: "a", At: t0}}); err != nil {
		t.Fatal(err)
	}
	keys := []string{s.dueKey("x", 0), s.claimsKey("x", 0)}
	claim := func(now time.Time, fence int64) []string {
		t.Helper()
		res, err := s.runFenced(ctx, claimScript, keys, ms(now), ms(now.Add(time.Minute)), 10, fence).StringSlice()
		if err != nil || len(res) != 3 || res[1] != "a" {
			t.Fatalf("claim: %v %v", res, err)
		}
		return res
	}
	for _, fence := range []int64{1, 777, fences} {
		first := claim(t0, fence)
		if first[0] != strconv.FormatInt(fence, 10) {
			t.Fatalf("fresh claim with fence %d got %s", fence, first[0])
		}
		if held, err := s.RenewDue(ctx, "x", t0.Add(90*time.Second), []scheduler.Due{{Member: "a", Fence: fence}}); err != nil || !held[0] {
			t.Fatalf("renew under fence %d: %v %v", fence, held, err)
		}
		later := t0.Add(2 * time.Minute)
		second := claim(later, fence) // draws the dead claimer's fence
		if second[0] == first[0] {
			t.Fatalf("took the entry over under the dead claimer's fence %s", first[0])
		}
		if second[2] != strconv.FormatInt(ms(t0), 10) {
			t.Fatalf("taken over due %s, want the original %d", second[2], ms(t0))
		}
		next, _ := strconv.ParseInt(second[0], 10, 64)
		if held, err := s.FinishDue(ctx, "x", []scheduler.Done[struct{}]{{Member: "a", Fence: fence, Next: t0}, {Member: "a", Fence: next, Next: t0}}); err != nil || held[0] || !held[1] {
			t.Fatalf("finish: %v %v, want the dead claimer refused, the new one held", held, err)
		}
	}
}
