package tokens

import "time"

// Status is what syncd tells about a user: metadata only, never a token
// value. The CLI and the admin API both print it.
type Status struct {
	User          string     `json:"user"`
	Provider      string     `json:"provider"`
	State         State      `json:"state"`
	StateReason   string     `json:"state_reason,omitempty"`
	StateSince    *time.Time `json:"state_since,omitempty"`
	AccessExpiry  time.Time  `json:"access_expiry"`
	RefreshExpiry *time.Time `json:"refresh_expiry,omitempty"`
	NextRefresh   *time.Time `json:"next_refresh,omitempty"`
	LastRefresh   *time.Time `json:"last_refresh,omitempty"`
	Failures      int        `json:"failures"`
	LastError     string     `json:"last_error,omitempty"`
	KeyID         string     `json:"key_id"`
	Version       int64      `json:"version"`
	CreatedAt     *time.Time `json:"created_at,omitempty"`
	RefreshingBy  string     `json:"refreshing_by,omitempty"`
}

// StatusOf builds a Status from a record and its next refresh time (zero
// when it is not scheduled). now decides whether a lease is still held.
func StatusOf(rec Record, nextRefresh, now time.Time) Status {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		u := t.UTC()
		return &u
	}
	s := Status{
		User: rec.UserID, Provider: rec.Provider, State: rec.State, StateReason: rec.StateReason,
		StateSince: opt(rec.StateAt), AccessExpiry: rec.AccessExpiry.UTC(), RefreshExpiry: opt(rec.RefreshExpiry),
		NextRefresh: opt(nextRefresh), LastRefresh: opt(rec.LastRefresh), Failures: rec.Failures,
		LastError: rec.LastError, KeyID: rec.KeyID, Version: rec.Version, CreatedAt: opt(rec.CreatedAt),
	}
	if rec.LeaseID != "" && rec.LeaseUntil.After(now) {
		s.RefreshingBy = LeaseHolder(rec.LeaseID)
	}
	return s
}
