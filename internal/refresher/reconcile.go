package refresher

import (
	"context"

	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// Reconcile walks every record once: it counts users by state (as
// tokens.CountStates) and repairs the refresh due set, the index every other
// schedule hangs off. A runnable user whose refresh entry is missing (a
// crash between storing the record and scheduling it) is scheduled for a
// refresh check now and handed to OnChange, so its jobs are added too.
// A malformed record (one the refresher may never claim: a key written
// by hand, a user in no due set) is quarantined if it still is when
// re-read; a failure to do so is logged and the walk goes on.
// It returns the counts and how many users it repaired.
func (r *Refresher) Reconcile(ctx context.Context) (map[string]int64, int, error) {
	repaired := 0
	counts := make(map[string]int64, len(tokens.States))
	for _, st := range tokens.States {
		counts[string(st)] = 0
	}
	err := r.store.EachUser(ctx, func(refs []tokens.UserRef, malformed []string) error {
		for _, u := range refs {
			counts[string(u.State)]++
		}
		r.quarantineMalformed(ctx, malformed)
		var runnable []string
		byUser := make(map[string]tokens.UserRef, len(refs))
		for _, u := range refs {
			if u.State.Runnable() {
				runnable = append(runnable, u.UserID)
				byUser[u.UserID] = u
			}
		}
		if len(runnable) == 0 {
			return nil
		}
		missing, err := r.store.MissingDue(ctx, tokens.RefreshSet, runnable)
		if err != nil || len(missing) == 0 {
			return err
		}
		now := r.opt.Clock.Now()
		entries := make([]scheduler.Entry, len(missing))
		for i, u := range missing {
			entries[i] = scheduler.Entry{Member: u, At: now}
		}
		if err := r.store.ScheduleDue(ctx, tokens.RefreshSet, entries); err != nil {
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
	if err != nil {
		return nil, repaired, err
	}
	return counts, repaired, nil
}
