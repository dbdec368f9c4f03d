package tokens

import (
	"time"

	"github.com/syncd/syncd/internal/errkind"
)

// A record syncd cannot use (not a hash, a required field missing or bad,
// larger than the store's cap, a ciphertext that does not open) is
// quarantined: renamed aside as it is, listed with why and since when,
// and out of every schedule. The refresher quarantines what it claims,
// housekeeping (Reconcile) what it walks past. An operator repairs the
// cause (the key configuration, the field) and restores the user, or
// stores a new token, which discards the quarantined copy.

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
