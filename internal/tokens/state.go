package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is where a user stands with syncd. Jobs run only for Active and
// Degraded users; the refresher keeps Active and Degraded tokens alive.
type State string

// The user states; see DESIGN.md "Per-user state".
const (
	// Active: the token refreshes normally.
	Active State = "active"
	// Degraded: refreshes keep failing transiently (provider outage,
	// throttling). The user keeps running; no human action is needed.
	Degraded State = "degraded"
	// ReauthRequired: a refresh failed for good; the user must consent
	// again. Jobs pause; the user is in the re-auth queue.
	ReauthRequired State = "reauth_required"
	// Disabled: an operator switched the user off.
	Disabled State = "disabled"
)

// States lists every state, in display order.
var States = []State{Active, Degraded, ReauthRequired, Disabled}

// ParseState returns the state named s.
func ParseState(s string) (State, error) {
	for _, st := range States {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown state %q (want active, degraded, reauth_required or disabled)", s)
}

// Runnable reports whether jobs and refreshes run for a user in this state.
func (s State) Runnable() bool { return s == Active || s == Degraded }

// Errors returned to callers that want a usable token of a user who is
// not runnable.
var (
	// ErrReauthRequired: the user must consent again.
	ErrReauthRequired = errors.New("user must re-authorize")
	// ErrDisabled: an operator disabled the user.
	ErrDisabled = errors.New("user is disabled")
)

// Reasons recorded with transitions and used as the label of the re-auth
// counter. They are stable identifiers, never free text from a provider.
const (
	ReasonStored              = "token_stored"
	ReasonAuthorized          = "authorized"   // consent finished through syncd (authflow)
	ReasonReauthorized        = "reauthorized" // a re-authorization link was used
	ReasonRefreshed           = "refreshed"
	ReasonTransientFailures   = "transient_failures"
	ReasonInvalidGrant        = "invalid_grant"
	ReasonRefreshTokenExpired = "refresh_token_expired"
	ReasonOperator            = "operator"
)

// Transition is one change of a user's state, as appended to the events
// stream.
type Transition struct {
	UserID string
	From   State // empty for a user seen for the first time
	To     State
	Reason string
	At     time.Time
}

// Record is a user's stored token record: metadata in clear, the secret
// parts sealed (see Keyring.SealToken). The record is the truth; due-set
// entries and the re-auth queue are hints derived from it.
type Record struct {
	UserID     string
	Version    int64 // bumped by every write of the token; fences CAS writes
	Provider   string
	KeyID      string
	Ciphertext []byte

	AccessExpiry  time.Time
	RefreshExpiry time.Time // zero: no known expiry

	State       State
	StateReason string
	StateAt     time.Time

	CreatedAt   time.Time
	LastRefresh time.Time // zero: never refreshed by syncd
	Failures    int       // consecutive failed refresh attempts
	LastError   string    // class and code of the last failure, never a message

	// LeaseID names the acquisition refreshing the token now (the
	// refresher's owner id, "/", a counter); empty when nobody is.
	LeaseID    string
	LeaseUntil time.Time
	// LeaseExpired: the last lease ended without a commit, failure or
	// release (its holder died or stalled, perhaps after the provider had
	// rotated the token). Cleared by the next commit, failure or flag.
	LeaseExpired bool
}

// LeaseHolder returns the refresher (its refresher.Options.Owner) that
// took a lease, from the lease id (Record.LeaseID).
func LeaseHolder(leaseID string) string {
	if i := strings.LastIndexByte(leaseID, '/'); i >= 0 {
		return leaseID[:i]
	}
	return leaseID
}

// CountStates counts every user by state, streaming records in batches.
// Malformed records are not counted.
func CountStates(ctx context.Context, store Store) (map[string]int64, error) {
	counts := make(map[string]int64, len(States))
	for _, st := range States {
		counts[string(st)] = 0
	}
	err := store.EachUser(ctx, func(refs []UserRef, _ []string) error {
		for _, r := range refs {
			counts[string(r.State)]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}
