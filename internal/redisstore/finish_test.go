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

// TestFinishDueWrites: a job run's outcome rides with the batch that
// re-schedules its entry; a damaged job-state key is logged and does not
// hold back the rest of the batch.
func TestFinishDueWrites(t *testing.T) {
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
	var done []scheduler.Done
	for _, d := range claimed {
		done = append(done, scheduler.Done{Member: d.Member, Fence: d.Fence, Next: next, Write: jobs.SavedRun{User: d.Member, Job: "pull", State: st}})
	}
	held, err := s.FinishDue(ctx, "job:pull", done)
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
	// A write of a type the store does not know is a programming error.
	if _, err := s.FinishDue(ctx, "job:pull", []scheduler.Done{{Member: "ann", Fence: 1, Next: next, Write: 42}}); err == nil {
		t.Fatal("unknown write accepted")
	}
}

// TestFinishDueFencing: the bulk finish script keeps the one-at-a-time
// semantics: a lost fence is refused, a removal of a gone member holds,
// and a member listed twice is judged against what the first left.
func TestFinishDueFencing(t *testing.T) {
	srv := redistest.Start(t)
	s := redisstore.New(srv.Client(t), redisstore.Options{Prefix: srv.Prefix, Shards: 1})
	ctx := context.Background()
	t0 := time.UnixMilli(1_800_000_000_000)
	if err := s.ScheduleDue(ctx, "x", []scheduler.Entry{{Member: "a", At: t0}, {Member: "b", At: t0}, {Member: "c", At: t0}}); err != nil {
		t.Fatal(err)
	}
	fence := t0.UnixMilli()
	next := t0.Add(time.Hour)
	held, err := s.FinishDue(ctx, "x", []scheduler.Done{
		{Member: "a", Fence: fence, Next: next},          // holds
		{Member: "a", Fence: fence, Next: next},          // the first moved it: lost
		{Member: "b", Fence: fence + 1, Next: next},      // wrong fence: lost
		{Member: "c", Fence: fence},                      // removal: holds
		{Member: "c", Fence: fence},                      // already gone: holds
		{Member: "d", Fence: fence, Next: next},          // never there: lost
		{Member: "a", Fence: next.UnixMilli(), Next: t0}, // against the new score: holds
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, false, true, true, false, true}
	for i := range want {
		if held[i] != want[i] {
			t.Fatalf("held %v, want %v", held, want)
		}
	}
	for m, at := range map[string]time.Time{"a": t0, "b": t0, "c": {}, "d": {}} {
		if got, _ := s.DueAt(ctx, "x", m); !got.Equal(at) {
			t.Errorf("%s due %v, want %v", m, got, at)
		}
	}
}
