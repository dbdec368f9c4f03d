package tokens

import (
	"context"

	"github.com/syncd/syncd/internal/scheduler"
)

// CountStates counts every user by state, streaming records in batches.
// Malformed records are not counted.
func CountStates(ctx context.Context, store Store) (map[string]int64, error) {
	return eachCounted(ctx, store, func([]UserRef, []string) error { return nil })
}

// eachCounted walks every user (EachUser), counting them by state, and
// hands each batch and its malformed records on to fn.
func eachCounted(ctx context.Context, store Store, fn func(refs []UserRef, malformed []string) error) (map[string]int64, error) {
	counts := make(map[string]int64, len(States))
	for _, st := range States {
		counts[string(st)] = 0
	}
	err := store.EachUser(ctx, func(refs []UserRef, malformed []string) error {
		for _, r := range refs {
			counts[string(r.State)]++
		}
		return fn(refs, malformed)
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

// Reconcile walks every record once: it counts users by state (as
// CountStates) and repairs the refresh due set, the index every other
// schedule hangs off. A runnable user whose refresh entry is missing (a
// crash between storing the record and scheduling it) is scheduled for a
// refresh check now and handed to OnChange, so its jobs are added too.
// A malformed record (one the refresher may never claim: a key written
// by hand, a user in no due set) is quarantined if it still is when
// re-read; a failure to do so is logged and the walk goes on.
// It returns the counts and how many users it repaired.
func (r *Refresher) Reconcile(ctx context.Context) (map[string]int64, int, error) {
	repaired := 0
	counts, err := eachCounted(ctx, r.store, func(refs []UserRef, malformed []string) error {
		r.quarantineMalformed(ctx, malformed)
		var runnable []string
		byUser := make(map[string]UserRef, len(refs))
		for _, u := range refs {
			if u.State.Runnable() {
				runnable = append(runnable, u.UserID)
				byUser[u.UserID] = u
			}
		}
		if len(runnable) == 0 {
			return nil
		}
		missing, err := r.store.MissingDue(ctx, RefreshSet, runnable)
		if err != nil || len(missing) == 0 {
			return err
		}
		now := r.opt.Clock.Now()
		entries := make([]scheduler.Entry, len(missing))
		for i, u := range missing {
			entries[i] = scheduler.Entry{Member: u, At: now}
		}
		if err := r.store.ScheduleDue(ctx, RefreshSet, entries); err != nil {
			return err
		}
		for _, u := range missing {
			r.log.Warn().Str("user", u).Msg("runnable user had no refresh entry (a crash while storing?); rescheduled")
			r.changed(ctx, u, byUser[u].Provider, byUser[u].State)
		}
		repaired += len(missing)
		r.engine.Notify()
		return nil
	})
	return counts, repaired, err
}
