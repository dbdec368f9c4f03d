package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/scheduler"
)

// A record syncd cannot use (not a hash, a required field missing or bad,
// a ciphertext that does not open) is quarantined: renamed aside as it
// is, listed with why and since when, and out of every schedule. The
// refresher quarantines what it claims, housekeeping (Reconcile) what it
// walks past. An operator repairs the cause (the key configuration, the
// field) and restores the user, or stores a new token, which discards
// the quarantined copy.

var (
	// ErrNotQuarantined: the user has no quarantined record.
	ErrNotQuarantined = errkind.New(errkind.NotFound, "user is not quarantined")
	// ErrLiveRecord: the user has a live record; a restore never
	// overwrites it.
	ErrLiveRecord = errkind.New(errkind.Conflict, "a live record exists, and a restore never overwrites it")
)

// Quarantined names where a quarantined user went, in the events stream
// (to on quarantine, from on restore). It is not a state a record holds.
const Quarantined State = "quarantined"

// ReasonRestored is recorded when an operator restores a quarantined
// user.
const ReasonRestored = "restored"

// QuarantineEntry is one quarantined user: who, why, since when. It
// never carries the record's content.
type QuarantineEntry struct {
	UserID string    `json:"user"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
}

// Restore brings a quarantined user back once its record is usable again
// (the operator fixed the field, or the key configuration): the record
// must parse, name a configured provider and open with the configured
// keys, or nothing is moved. The user is then scheduled as a stored
// token is: a refresh check now (which sets the regular schedule from the
// record) and every job of its provider, or the re-auth queue if it was
// waiting for consent. It never overwrites a live record (ErrLiveRecord).
func (r *Refresher) Restore(ctx context.Context, user string) (Record, error) {
	rec, err := r.store.QuarantinedRecord(ctx, user)
	if err != nil {
		return Record{}, err
	}
	if _, ok := r.providers[rec.Provider]; !ok {
		return Record{}, fmt.Errorf("user %q: provider %q: %w", user, rec.Provider, ErrUnknownProvider)
	}
	if err := r.opens(rec); err != nil {
		return Record{}, fmt.Errorf("user %q: the quarantined token does not open with the configured keys: %w", user, err)
	}
	now := r.opt.Clock.Now()
	tr, err := r.store.Restore(ctx, rec, now)
	if err != nil {
		return Record{}, err
	}
	r.logTransition(tr)
	if rec.State.Runnable() {
		if err := r.store.ScheduleDue(ctx, RefreshSet, []scheduler.Entry{{Member: user, At: now}}); err != nil {
			return rec, err
		}
	}
	r.changed(ctx, user, rec.Provider, rec.State)
	r.engine.Notify()
	return rec, nil
}

// opens checks that rec's token opens with the configured keys.
func (r *Refresher) opens(rec Record) error {
	_, err := r.keys.OpenRecord(rec)
	return err
}

// RestoreRefused reports whether err is a restore refused for the
// operator to act on (the record still does not parse or open, a live
// record exists, nothing is quarantined) rather than a storage failure.
func RestoreRefused(err error) bool {
	for _, target := range []error{ErrMalformedRecord, ErrLiveRecord, ErrNotQuarantined, ErrUnknownProvider, ErrUnknownKey, ErrDecrypt} {
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
