package refresher

import (
	"context"
	"errors"
	"fmt"

	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// Restore brings a quarantined user back once its record is usable again
// (the operator fixed the field, or the key configuration): the record
// must parse, name a configured provider and open with the configured
// keys, or nothing is moved. The user is then scheduled as a stored
// token is: a refresh check now (which sets the regular schedule from the
// record) and every job of its provider, or the re-auth queue if it was
// waiting for consent. It never overwrites a live record (ErrLiveRecord).
func (r *Refresher) Restore(ctx context.Context, user string) (tokens.Record, error) {
	rec, err := r.store.QuarantinedRecord(ctx, user)
	if err != nil {
		return tokens.Record{}, err
	}
	if _, ok := r.providers[rec.Provider]; !ok {
		return tokens.Record{}, fmt.Errorf("user %q: provider %q: %w", user, rec.Provider, ErrUnknownProvider)
	}
	if err := r.opens(rec); err != nil {
		return tokens.Record{}, fmt.Errorf("user %q: the quarantined token does not open with the configured keys: %w", user, err)
	}
	now := r.opt.Clock.Now()
	tr, err := r.store.Restore(ctx, rec, now)
	if err != nil {
		return tokens.Record{}, err
	}
	r.logTransition(tr)
	if rec.State.Runnable() {
		if err := r.store.ScheduleDue(ctx, tokens.RefreshSet, []scheduler.Entry{{Member: user, At: now}}); err != nil {
			return rec, err
		}
	}
	r.changed(ctx, user, rec.Provider, rec.State)
	r.engine.Notify()
	return rec, nil
}

// opens checks that rec's token opens with the configured keys.
func (r *Refresher) opens(rec tokens.Record) error {
	_, err := r.keys.OpenRecord(rec)
	return err
}

// RestoreRefused reports whether err is a restore refused for the
// operator to act on (the record still does not parse or open, a live
// record exists, nothing is quarantined) rather than a storage failure.
func RestoreRefused(err error) bool {
	for _, target := range []error{tokens.ErrMalformedRecord, tokens.ErrLiveRecord, tokens.ErrNotQuarantined, ErrUnknownProvider, tokens.ErrUnknownKey, tokens.ErrDecrypt} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// quarantineMalformed quarantines the records a walk found malformed,
// each only if it still is when re-read.
func (r *Refresher) quarantineMalformed(ctx context.Context, users []string) {
	for _, u := range users {
		moved, err := r.store.QuarantineMalformed(ctx, u, r.opt.Clock.Now())
		switch {
		case err != nil:
			r.log.Error().Err(err).Str("user", u).Msg("quarantining a malformed record failed; the next walk retries")
		case moved:
			r.opt.Metrics.quarantined()
			r.log.Error().Str("user", u).Msg("malformed record quarantined")
		}
	}
}
