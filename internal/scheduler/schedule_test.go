package scheduler_test

import (
	"fmt"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	"github.com/syncd/syncd/internal/scheduler"
)

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func timing(t *testing.T, spec, zone string, spread time.Duration, missed string) scheduler.Timing {
	t.Helper()
	s, err := parser.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	if ss, ok := s.(*cron.SpecSchedule); ok && zone != "" {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		ss.Location = loc
	}
	return scheduler.Timing{Schedule: s, Spread: spread, Missed: missed, Salt: "job"}
}

// runs lists the run times in [from, to).
func runs(tm scheduler.Timing, member string, from, to time.Time) []time.Time {
	var out []time.Time
	for t := tm.Next(member, from.Add(-time.Nanosecond)); t.Before(to); t = tm.Next(member, t) {
		out = append(out, t)
	}
	return out
}

func TestDaylightSavingTime(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	tests := []struct {
		name, spec string
		day        time.Time
		want       []string // local wall times with offset
	}{
		// 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
		{"spring forward 02:30", "30 2 * * *", time.Date(2026, 3, 8, 0, 0, 0, 0, ny), []string{"03:30 EDT"}},
		// 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
		{"fall back 02:30", "30 2 * * *", time.Date(2026, 11, 1, 0, 0, 0, 0, ny), []string{"02:30 EST"}},
		{"fall back 01:30", "30 1 * * *", time.Date(2026, 11, 1, 0, 0, 0, 0, ny), []string{"01:30 EDT"}},
		{"ordinary day", "30 2 * * *", time.Date(2026, 3, 9, 0, 0, 0, 0, ny), []string{"02:30 EDT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tm := timing(t, tc.spec, "America/New_York", 0, scheduler.MissedOnce)
			got := runs(tm, "u", tc.day, tc.day.AddDate(0, 0, 1))
			var s []string
			for _, r := range got {
				s = append(s, r.In(ny).Format("15:04 MST"))
			}
			if fmt.Sprint(s) != fmt.Sprint(tc.want) {
				t.Fatalf("runs %v, want %v", s, tc.want)
			}
		})
	}
	// Europe/London moves at 01:00: a 01:30 job runs once on both days.
	ldn, _ := time.LoadLocation("Europe/London")
	lt := timing(t, "30 1 * * *", "Europe/London", 0, scheduler.MissedOnce)
	for day, want := range map[time.Time]string{
		time.Date(2026, 3, 29, 0, 0, 0, 0, ldn):  "02:30 BST",
		time.Date(2026, 10, 25, 0, 0, 0, 0, ldn): "01:30 BST",
	} {
		got := runs(lt, "u", day, day.AddDate(0, 0, 1))
		if len(got) != 1 || got[0].In(ldn).Format("15:04 MST") != want {
			t.Fatalf("London %s: runs %v, want one at %s", day.Format("2006-01-02"), got, want)
		}
	}
	// Hourly across the fall-back night: 25 real hours, 24 wall-clock
	// slots each once... plus the repeated 01:00 hour runs once.
	tm := timing(t, "0 * * * *", "America/New_York", 0, scheduler.MissedOnce)
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, ny)
	if got := runs(tm, "u", day, day.AddDate(0, 0, 1)); len(got) != 24 {
		t.Fatalf("hourly on the fall-back day: %d runs, want 24", len(got))
	}
	day = time.Date(2026, 3, 8, 0, 0, 0, 0, ny)
	if got := runs(tm, "u", day, day.AddDate(0, 0, 1)); len(got) != 23 {
		t.Fatalf("hourly on the spring-forward day: %d runs, want 23 (02:00 maps onto 03:00)", len(got))
	}
}

func TestEveryAndSixFields(t *testing.T) {
	from := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	tm := timing(t, "@every 15m", "", 0, scheduler.MissedOnce)
	if got := tm.Next("u", from); !got.Equal(from.Add(15 * time.Minute)) {
		t.Fatalf("@every 15m: %v", got)
	}
	tm = timing(t, "*/20 * * * * *", "", 0, scheduler.MissedOnce)
	if got := runs(tm, "u", from, from.Add(time.Minute)); len(got) != 3 || got[1].Sub(got[0]) != 20*time.Second {
		t.Fatalf("6-field every 20s: %v", got)
	}
	tm = timing(t, "@hourly", "Europe/London", 0, scheduler.MissedOnce)
	if got := tm.Next("u", from); !got.Equal(from.Add(time.Hour)) {
		t.Fatalf("@hourly: %v", got)
	}
}

func TestSpread(t *testing.T) {
	tm := timing(t, "0 * * * *", "", 10*time.Minute, scheduler.MissedOnce)
	from := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	buckets := make([]int, 10)
	for i := range 5000 {
		u := fmt.Sprintf("user-%d", i)
		n := tm.Next(u, from)
		off := n.Sub(from)
		if off < 0 || off >= 10*time.Minute {
			t.Fatalf("%s runs at %v, outside the spread window", u, n)
		}
		if off%time.Millisecond != 0 {
			t.Fatalf("%s: offset %v is not whole milliseconds: it would not survive a due set", u, off)
		}
		if again := tm.Next(u, from); !again.Equal(n) {
			t.Fatal("offset not stable")
		}
		// The next run is one interval later, same offset.
		if n2 := tm.Next(u, n); n2.Sub(n) != time.Hour {
			t.Fatalf("%s: next after %v is %v", u, n, n2)
		}
		buckets[off/time.Minute]++
	}
	for i, c := range buckets {
		if c < 400 || c > 600 {
			t.Fatalf("minute %d of the spread has %d of 5000 users", i, c)
		}
	}
	// A member whose offset has not passed yet in this slot runs in it.
	u := "user-1"
	off := tm.Offset(u)
	if got := tm.Next(u, from.Add(off-time.Second)); !got.Equal(from.Add(off)) {
		t.Fatalf("next %v, want %v", got, from.Add(off))
	}
}

func TestMissedPolicy(t *testing.T) {
	due := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	once := timing(t, "0 * * * *", "", 0, scheduler.MissedOnce)
	skip := timing(t, "0 * * * *", "", 0, scheduler.MissedSkip)
	tests := []struct {
		tm          scheduler.Timing
		now         time.Time
		run         bool
		missed      int
		nextFromNow time.Time
	}{
		{once, due.Add(5 * time.Minute), true, 0, due.Add(time.Hour)}, // lag, not missed
		{skip, due.Add(5 * time.Minute), true, 0, due.Add(time.Hour)},
		{once, due.Add(3*time.Hour + time.Minute), true, 3, due.Add(4 * time.Hour)}, // down 3h: one catch-up
		{skip, due.Add(3*time.Hour + time.Minute), false, 4, due.Add(4 * time.Hour)},
	}
	for i, tc := range tests {
		run, missed := tc.tm.Due("u", due, tc.now)
		// The same slot read back a fraction of a millisecond early (a due
		// set keeps milliseconds) is the same slot.
		if r, m := tc.tm.Due("u", due.Add(-300*time.Microsecond), tc.now); r != run || m != missed {
			t.Errorf("%d: due 0.3ms early: run %v missed %d, want %v %d", i, r, m, run, missed)
		}
		if run != tc.run || missed != tc.missed {
			t.Errorf("%d: run %v missed %d, want %v %d", i, run, missed, tc.run, tc.missed)
		}
		if n := tc.tm.Next("u", tc.now); !n.Equal(tc.nextFromNow) {
			t.Errorf("%d: realigned to %v, want %v", i, n, tc.nextFromNow)
		}
	}
}

func TestEverySpreadsOnAFixedGrid(t *testing.T) {
	tm := timing(t, "@every 10s", "", 10*time.Second, scheduler.MissedOnce)
	from := time.Date(2026, 5, 1, 10, 0, 3, 0, time.UTC)
	seen := map[time.Time]bool{}
	for i := range 200 {
		n := tm.Next(fmt.Sprintf("u%d", i), from)
		if !n.After(from) || n.Sub(from) > 20*time.Second {
			t.Fatalf("next %v", n)
		}
		seen[n.Truncate(time.Second)] = true
	}
	if len(seen) < 8 {
		t.Fatalf("200 users landed on %d distinct seconds, want them spread over the 10s window", len(seen))
	}
}

func BenchmarkTimingNextWithSpread(b *testing.B) {
	tm := scheduler.Timing{Spread: 10 * time.Minute, Salt: "pull"}
	s, _ := parser.Parse("0 * * * *")
	tm.Schedule = s
	from := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = tm.Next("user-12345", from)
	}
}

func BenchmarkTimingNextInZone(b *testing.B) {
	loc, _ := time.LoadLocation("Europe/London")
	s, _ := parser.Parse("30 2 * * *")
	s.(*cron.SpecSchedule).Location = loc
	tm := scheduler.Timing{Schedule: s, Spread: 30 * time.Minute, Salt: "pull"}
	from := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	for b.Loop() {
		_ = tm.Next("user-12345", from)
	}
}

// TestPassedCountsOverlappedSlots: a run that starts on its slot and ends
// after the next ones overlapped them (they are missed, not run later).
func TestPassedCountsOverlappedSlots(t *testing.T) {
	tm := timing(t, "*/5 * * * *", "UTC", 0, scheduler.MissedOnce)
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		took time.Duration
		want int
	}{{time.Minute, 0}, {5 * time.Minute, 1}, {11 * time.Minute, 2}} {
		if got := tm.Passed("u", start, start.Add(tc.took)); got != tc.want {
			t.Errorf("a run of %s from a slot: %d slots passed, want %d", tc.took, got, tc.want)
		}
	}
}
