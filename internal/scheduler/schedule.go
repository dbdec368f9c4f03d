package scheduler

import (
	"hash/fnv"
	"time"

	"github.com/robfig/cron/v3"
)

// Missed-run policies (config: jobs[].missed).
const (
	// MissedSkip: a slot that passed while syncd was down or behind is not
	// run; the member moves to the next slot.
	MissedSkip = "skip"
	// MissedOnce: one catch-up run at once, then back on the schedule.
	// Never a burst of backfill.
	MissedOnce = "once"
)

// Timing is when a job runs for a member: a cron schedule in a time zone,
// a stable per-member offset inside Spread, and a missed-run policy.
type Timing struct {
	// Schedule is robfig's parsed spec; a *cron.SpecSchedule carries its
	// zone in Location (config sets it from jobs[].timezone).
	Schedule cron.Schedule
	// Spread spreads members over [0, Spread) after each slot.
	Spread time.Duration
	// Missed is MissedSkip or MissedOnce.
	Missed string
	// Salt makes offsets differ between jobs (the job name).
	Salt string
}

// Offset is member's stable offset inside the spread window, in whole
// milliseconds: due sets keep milliseconds, and a slot must come back from
// one exactly as it went in (cron slots are whole seconds).
func (t Timing) Offset(member string) time.Duration {
	if t.Spread < time.Millisecond {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(t.Salt))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(member))
	return time.Duration(h.Sum64()%uint64(t.Spread/time.Millisecond)) * time.Millisecond
}

// Next is member's first run strictly after after.
func (t Timing) Next(member string, after time.Time) time.Time {
	off := t.Offset(member)
	return next(t.Schedule, after.Add(-off)).Add(off)
}

// Due decides what to do with an entry that came due at due and was
// claimed at now: run it or not, and how many slots were missed (passed
// without a run). A slot is missed when the following slot has also come.
// due is read at the due sets' resolution: a slot less than a millisecond
// after it is the slot it stands for, not one that passed.
func (t Timing) Due(member string, due, now time.Time) (run bool, missed int) {
	for s := t.Next(member, due.Add(time.Millisecond-1)); !s.After(now) && missed < 1000; s = t.Next(member, s) {
		missed++
	}
	if missed == 0 {
		return true, 0
	}
	if t.Missed == MissedSkip {
		return false, missed + 1
	}
	return true, missed
}

// Passed counts member's slots in (from, to]: the slots that came while
// a run started at from was still running at to, which it overlapped and
// which get no run of their own (a run is never started twice at once).
func (t Timing) Passed(member string, from, to time.Time) int {
	n := 0
	for s := t.Next(member, from); !s.After(to) && n < 1000; s = t.Next(member, s) {
		n++
	}
	return n
}

// next is the schedule's next time after t, in wall-clock terms for a
// spec in a zone with daylight saving time: robfig steps in absolute time,
// so a 02:30 job never runs on a spring-forward day (02:30 does not exist)
// and a 01:30 job runs twice on a fall-back day. Stepping on the wall
// clock instead runs each wall-clock slot exactly once: a slot inside the
// gap runs at the same offset after the transition (02:30 → 03:30), an
// ambiguous one at its first occurrence.
func next(s cron.Schedule, t time.Time) time.Time {
	if cd, ok := s.(cron.ConstantDelaySchedule); ok {
		// robfig's @every counts from the time it is given, so every
		// member asked at the same moment gets the same slot and spread
		// has no effect. Slots on a fixed grid (multiples of the delay
		// since the Unix epoch) are the same on every replica and let the
		// per-member offset spread the load.
		d := cd.Delay
		if d <= 0 {
			return s.Next(t)
		}
		n := t.UnixNano() / int64(d)
		return time.Unix(0, (n+1)*int64(d)).In(t.Location())
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok || spec.Location == nil || spec.Location == time.UTC {
		return s.Next(t)
	}
	loc := spec.Location
	wall := *spec
	wall.Location = time.UTC
	lt := t.In(loc)
	w := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC)
	for range 1000 {
		w = wall.Next(w)
		if w.IsZero() {
			return w
		}
		r := inZone(w, loc)
		if r.After(t) {
			return r
		}
	}
	return time.Time{}
}

// inZone maps a wall-clock time (carried in UTC) to an instant in loc: the
// first occurrence of an ambiguous time; for a time in a gap, the instant
// that far after the gap's start (02:30 in a 02:00→03:00 gap is 03:30).
func inZone(w time.Time, loc *time.Location) time.Time {
	r := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
	_, offA := r.Add(-12 * time.Hour).Zone()
	_, offB := r.Add(12 * time.Hour).Zone()
	a := w.Add(-time.Duration(offA) * time.Second) // the wall time under the earlier offset
	b := w.Add(-time.Duration(offB) * time.Second) // under the later offset
	okA, okB := sameWall(a.In(loc), w), sameWall(b.In(loc), w)
	switch {
	case okA && okB:
		if b.Before(a) {
			return b
		}
		return a
	case okA:
		return a
	case okB:
		return b
	}
	// A gap: the earlier offset reads the wall time as if no jump
	// happened, which lands the same distance past the jump.
	if a.After(b) {
		return a
	}
	return b
}

func sameWall(t, w time.Time) bool {
	return t.Year() == w.Year() && t.YearDay() == w.YearDay() && t.Hour() == w.Hour() && t.Minute() == w.Minute() && t.Second() == w.Second()
}
