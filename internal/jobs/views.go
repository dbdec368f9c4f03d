package jobs

import (
	"context"
	"time"

	"github.com/syncd/syncd/internal/config"
)

// JobView is what operators see of a job (CLI jobs list, GET /v1/jobs).
type JobView struct {
	Name       string    `json:"name"`
	Kind       string    `json:"kind"`
	Provider   string    `json:"provider"`
	Schedule   string    `json:"schedule"`
	Timezone   string    `json:"timezone"`
	Paused     bool      `json:"paused"`
	NextSlot   time.Time `json:"next_slot"`
	DueNow     int64     `json:"users_due_now"`
	LagSeconds float64   `json:"lag_seconds"`
	RunsHour   int64     `json:"runs_last_hour"`
	FailedHour int64     `json:"failures_last_hour"`
}

// Overview describes every job as of now, read from Redis so every
// replica answers the same.
func (r *Runner) Overview(ctx context.Context, now time.Time) ([]JobView, error) {
	paused, err := r.store.PausedJobs(ctx)
	if err != nil {
		return nil, err
	}
	views := make([]JobView, 0, len(r.order))
	for _, name := range r.order {
		j := r.jobs[name]
		due, err := r.store.DueCount(ctx, j.set, now)
		if err != nil {
			return nil, err
		}
		oldest, err := r.store.OldestDue(ctx, j.set)
		if err != nil {
			return nil, err
		}
		ok, failed, err := r.store.JobStats(ctx, name, now.Add(-time.Hour), now)
		if err != nil {
			return nil, err
		}
		slot := j.timing
		slot.Spread = 0
		v := JobView{Name: name, Kind: string(j.cfg.Kind), Provider: j.cfg.Provider, Schedule: j.cfg.Spec,
			Timezone: j.cfg.Location.String(), Paused: j.cfg.Paused || paused[name], NextSlot: slot.Next("", now).In(j.cfg.Location),
			DueNow: due, RunsHour: ok + failed, FailedHour: failed}
		if !oldest.IsZero() && oldest.Before(now) {
			v.LagSeconds = now.Sub(oldest).Round(time.Second).Seconds()
		}
		views = append(views, v)
	}
	return views, nil
}

// UserJob is one job's schedule and last outcome for a user.
type UserJob struct {
	Job         string     `json:"job"`
	NextRun     *time.Time `json:"next_run,omitempty"`
	LastRun     *time.Time `json:"last_run,omitempty"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
	Failures    int        `json:"failures"`
	LastError   string     `json:"last_error,omitempty"`
}

// UserJobs lists the jobs of provider among defs for user: next run and
// last outcome. It reads Redis only, so no Runner is needed.
func UserJobs(ctx context.Context, store Store, defs []config.JobConfig, user, provider string) ([]UserJob, error) {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	var out []UserJob
	for _, c := range defs {
		if c.Provider != provider {
			continue
		}
		due, err := store.DueAt(ctx, SetName(c.Name), user)
		if err != nil {
			return nil, err
		}
		st, err := store.JobState(ctx, user, c.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, UserJob{Job: c.Name, NextRun: opt(due), LastRun: opt(st.LastRun), LastSuccess: opt(st.LastSuccess),
			Failures: st.Failures, LastError: st.LastError})
	}
	return out, nil
}
