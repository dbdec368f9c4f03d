package redisstore_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/scheduler"
)

// TestFinishRunsWrites: a job run's outcome rides with the batch that
// re-schedules its entry; a damaged job-state key is logged and does not
// hold back the rest of the batch.
func TestFinishRunsWrites(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	var logs bytes.Buffer
	s := redisstore.New(rdb, redisstore.Options{Prefix: srv.Prefix, Shards: 2, Logger: zerolog.New(&logs)})
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	if err := s.ScheduleDue(ctx, "job:pull", []scheduler.Entry{{Member: "ann", At: now}, {Member: "bob", At: now}}); err != nil {
		t.Fatal(err)
	}
	var claimed []scheduler.Due
	for sh := range s.Shards() {
		d, err := s.ClaimDue(ctx, "job:pull", sh, now, now.Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		claimed = append(claimed, d...)
	}
	if len(claimed) != 2 {
		t.Fatalf("claimed %v", claimed)
	}
	// bob's job-state key is damaged: not a hash.
	if err := rdb.Set(ctx, srv.Prefix+"{u:bob}:jobs", "garbage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	next := now.Add(time.Hour)
	st := jobs.State{LastRun: now, LastSuccess: now, Failures: 0}
	var done []scheduler.Done[*jobs.SavedRun]
	for _, d := range claimed {
		done = append(done, scheduler.Done[*jobs.SavedRun]{Member: d.Member, Fence: d.Fence, Next: next, Write: &jobs.SavedRun{User: d.Member, Job: "pull", State: st}})
	}
	held, err := s.FinishRuns(ctx, "job:pull", done)
	if err != nil || !held[0] || !held[1] {
		t.Fatalf("finish: %v %v", held, err)
	}
	got, err := s.JobState(ctx, "ann", "pull")
	if err != nil || !got.LastRun.Equal(now) || !got.LastSuccess.Equal(now) {
		t.Fatalf("ann's job state %+v %v", got, err)
	}
	for _, u := range []string{"ann", "bob"} {
		if at, _ := s.DueAt(ctx, "job:pull", u); !at.Equal(next) {
			t.Fatalf("%s due at %v, want %v", u, at, next)
		}
	}
	if !strings.Contains(logs.String(), "recording a job run failed") || !strings.Contains(logs.String(), "{u:bob}:jobs") {
		t.Fatalf("damaged key not reported: %s", logs.String())
	}
}

// TestFinishDueFencing: the bulk finish script keeps the one-at-a-time
// semantics: a finish holds only under its claim, a claim ends with its
// finish, a removal of a member already gone holds, and a member listed
// twice is judged against what the first left.
func TestFinishDueFencing(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(srv.Client(t), redisstore.Options{Prefix: srv.Prefix, Shards: 1})
	ctx := context.Background()
	t0 := time.UnixMilli(1_800_000_000_000)
	if err := s.ScheduleDue(ctx, "x", []scheduler.Entry{{Member: "a", At: t0}, {Member: "b", At: t0}, {Member: "c", At: t0}, {Member: "e", At: t0}}); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDue(ctx, "x", 0, t0, t0.Add(time.Minute), 10)
	if err != nil || len(claimed) != 4 {
		t.Fatalf("claimed %v, %v", claimed, err)
	}
	fence := claimed[0].Fence
	next := t0.Add(time.Hour)
	// e is re-scored by someone else (a schedule change) while claimed.
	if err := s.ScheduleDue(ctx, "x", []scheduler.Entry{{Member: "e", At: t0.Add(2 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	held, err := s.FinishDue(ctx, "x", []scheduler.Done[struct{}]{
		{Member: "a", Fence: fence, Next: next},     // holds
		{Member: "a", Fence: fence, Next: next},     // the first ended the claim: lost
		{Member: "b", Fence: fence + 1, Next: next}, // another claim's fence: lost
		{Member: "c", Fence: fence},                 // removal: holds
		{Member: "c", Fence: fence},                 // already gone: holds
		{Member: "d", Fence: fence, Next: next},     // never there: lost
		{Member: "e", Fence: fence, Next: next},     // re-scored by someone else: lost, their schedule stands
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, false, true, true, false, false}
	for i := range want {
		if held[i] != want[i] {
			t.Fatalf("held %v, want %v", held, want)
		}
	}
	for m, at := range map[string]time.Time{"a": next, "c": {}, "d": {}, "e": t0.Add(2 * time.Hour)} {
		if got, _ := s.DueAt(ctx, "x", m); !got.Equal(at) {
			t.Errorf("%s due %v, want %v", m, got, at)
		}
	}
	if got, _ := s.DueAt(ctx, "x", "b"); !leasedUntil(got, t0.Add(time.Minute)) {
		t.Errorf("b due %v, want still leased until %v", got, t0.Add(time.Minute))
	}
}

// leasedUntil: a lease score ends within two seconds after the lease
// asked for (rounded up to a second, plus the fence's milliseconds).
func leasedUntil(got, until time.Time) bool {
	return !got.Before(until) && got.Before(until.Add(2*time.Second))
}

// TestClaimsSurviveRenewals: a claim is known by its fence, which lease
// renewals leave alone; a renewal repeated, or whose answer was lost,
// costs the claimer nothing, and one of a lost claim is refused.
func TestClaimsSurviveRenewals(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(srv.Client(t), redisstore.Options{Prefix: srv.Prefix, Shards: 1})
	ctx := context.Background()
	t0 := time.UnixMilli(1_800_000_000_000)
	if err := s.ScheduleDue(ctx, "x", []scheduler.Entry{{Member: "a", At: t0}, {Member: "b", At: t0}}); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDue(ctx, "x", 0, t0, t0.Add(time.Minute), 10)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimed %v, %v", claimed, err)
	}
	for _, until := range []time.Time{t0.Add(2 * time.Minute), t0.Add(3 * time.Minute), t0.Add(3 * time.Minute)} {
		held, err := s.RenewDue(ctx, "x", until, claimed)
		if err != nil || !held[0] || !held[1] {
			t.Fatalf("renew to %v: %v %v", until, held, err)
		}
		if got, _ := s.DueAt(ctx, "x", "a"); !leasedUntil(got, until) {
			t.Fatalf("a's lease %v, want until %v", got, until)
		}
	}
	// b's lease runs out and another claimer takes it: the first
	// claimer's renewal and finish are refused.
	if held, err := s.RenewDue(ctx, "x", t0.Add(4*time.Minute), []scheduler.Due{{Member: "b", Fence: claimed[0].Fence + 1}}); err != nil || held[0] {
		t.Fatalf("renewal under a wrong fence: %v %v", held, err)
	}
	now := t0.Add(3*time.Minute + 2*time.Second)
	again, err := s.ClaimDue(ctx, "x", 0, now, now.Add(time.Minute), 10)
	if err != nil || len(again) != 2 || again[0].Fence == claimed[0].Fence {
		t.Fatalf("re-claim: %v %v", again, err)
	}
	if held, err := s.RenewDue(ctx, "x", now.Add(time.Minute), claimed); err != nil || held[0] || held[1] {
		t.Fatalf("the old claim renewed: %v %v", held, err)
	}
	done := []scheduler.Done[struct{}]{{Member: "a", Fence: claimed[0].Fence, Next: t0}, {Member: "b", Fence: again[0].Fence, Next: t0.Add(time.Hour)}}
	if held, err := s.FinishDue(ctx, "x", done); err != nil || held[0] || !held[1] {
		t.Fatalf("finish: %v %v, want the old claim refused and the new one held", held, err)
	}
}

// TestReclaimReportsTheOriginalDue: an entry whose claimer died is claimed
// again after the lease with the time it was due, not the dead lease; an
// entry someone re-scored meanwhile is due at the new score.
func TestReclaimReportsTheOriginalDue(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(srv.Client(t), redisstore.Options{Prefix: srv.Prefix, Shards: 1})
	ctx := context.Background()
	t0 := time.UnixMilli(1_800_000_000_000)
	if err := s.ScheduleDue(ctx, "x", []scheduler.Entry{{Member: "dead", At: t0}, {Member: "moved", At: t0}}); err != nil {
		t.Fatal(err)
	}
	first, err := s.ClaimDue(ctx, "x", 0, t0.Add(time.Second), t0.Add(time.Minute), 10)
	if err != nil || len(first) != 2 {
		t.Fatalf("claim: %v %v", first, err)
	}
	// The claimer renews once, then dies.
	if _, err := s.RenewDue(ctx, "x", t0.Add(2*time.Minute), first); err != nil {
		t.Fatal(err)
	}
	moved := t0.Add(90 * time.Second)
	if err := s.ScheduleDue(ctx, "x", []scheduler.Entry{{Member: "moved", At: moved}}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(3 * time.Minute)
	again, err := s.ClaimDue(ctx, "x", 0, now, now.Add(time.Minute), 10)
	if err != nil || len(again) != 2 {
		t.Fatalf("re-claim: %v %v", again, err)
	}
	for _, d := range again {
		want := map[string]time.Time{"dead": t0, "moved": moved}[d.Member]
		if !d.Due.Equal(want) {
			t.Errorf("%s re-claimed due %v, want %v", d.Member, d.Due, want)
		}
	}
	// And once more, should the second claimer die too.
	now = now.Add(2 * time.Minute)
	third, err := s.ClaimDue(ctx, "x", 0, now, now.Add(time.Minute), 10)
	if err != nil || len(third) != 2 {
		t.Fatalf("third claim: %v %v", third, err)
	}
	for _, d := range third {
		if want := map[string]time.Time{"dead": t0, "moved": moved}[d.Member]; !d.Due.Equal(want) {
			t.Errorf("%s claimed a third time due %v, want %v", d.Member, d.Due, want)
		}
	}
}
