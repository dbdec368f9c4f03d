package tokens

import (
	"context"
	"time"

	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/scheduler"
)

// RefreshSet is the due set of token refreshes: every runnable user has
// an entry, scored by when its token is next due for a refresh.
const RefreshSet = "refresh"

// Sentinels for conditions callers branch on.
var (
	// ErrNotFound: no token is stored for the user.
	ErrNotFound = errkind.New(errkind.NotFound, "no token stored for user")
	// ErrMalformedRecord: a stored record cannot be parsed. The refresher
	// quarantines it and reports it; it never crashes.
	ErrMalformedRecord = errkind.New(errkind.Conflict, "malformed token record")
	// ErrUnacked: a committed token reached the Redis master but not the
	// replicas it must reach in time (redis.min_replicas_acked): a
	// failover now could bring the previous token back. The caller keeps
	// the token and retries (Store.Commit).
	ErrUnacked = errkind.New(errkind.Unavailable, "token commit not acknowledged by enough replicas")
)

// AcquireStatus is the outcome of taking a user's refresh lease.
type AcquireStatus int

const (
	// AcquireMissing: there is no record.
	AcquireMissing AcquireStatus = iota
	// Acquired: the caller holds the lease until it commits, fails,
	// flags or releases, or until the lease time passes.
	Acquired
	// AcquireBusy: another owner holds an unexpired lease.
	AcquireBusy
	// AcquireNotRunnable: the user is reauth_required or disabled.
	AcquireNotRunnable
)

// Lease is one result of AcquireMany: the lease ID asked for, and the
// record as the acquisition found it.
type Lease struct {
	ID     string
	Record Record
	Status AcquireStatus
	Err    error
}

// FlagOutcome is the outcome of flagging a user for re-authorization.
type FlagOutcome int

const (
	// Flagged: the user is now reauth_required and in the queue.
	Flagged FlagOutcome = iota + 1
	// FlagStale: the record changed since it was read (a newer token was
	// stored): nothing was flagged; re-read and adopt it.
	FlagStale
	// AlreadyFlagged: the user was already reauth_required.
	AlreadyFlagged
)

// UserRef is what scheduling needs of a user: id, state, provider.
type UserRef struct {
	UserID   string
	State    State
	Provider string
}

// ReauthEntry is one user in the re-auth queue.
type ReauthEntry struct {
	UserID   string    `json:"user"`
	Provider string    `json:"provider"`
	Since    time.Time `json:"since"`
	Reason   string    `json:"reason"`
}

// Store is what the token lifecycle needs from storage
// (internal/redisstore). Methods that change a user's state also keep the
// re-auth queue and the events stream in step with it.
type Store interface {
	// Put stores a new token for a user: the user becomes active (unless
	// disabled), leaves the re-auth queue, and any refresh in flight is
	// fenced out. It returns the user's state after the put.
	Put(ctx context.Context, rec Record, reason string, now time.Time) (st State, tr *Transition, err error)
	// Load returns a user's record.
	Load(ctx context.Context, user string) (Record, error)
	// Acquire takes the user's refresh lease under the id lease (one id
	// per acquisition) until until, and returns the record as it is now.
	// renew, if not empty, is a lease the caller holds and replaces. The
	// lease of another is busy until one lease length (until - now) after
	// it ended: its holder may still be storing a rotated token.
	Acquire(ctx context.Context, user, lease, renew string, now, until time.Time) (Record, AcquireStatus, error)
	// AcquireMany is Acquire for many users in one round trip, leases[i]
	// for users[i].
	AcquireMany(ctx context.Context, users, leases []string, now, until time.Time) ([]Lease, error)
	// Commit persists a refreshed token if the version still holds (the
	// lease is released if it is still lease); ok is false when fenced out.
	// A store that waits for replicas returns ok with an error wrapping
	// ErrUnacked when they did not acknowledge the write in time: the
	// token is stored on the master, the lease is kept (nobody else may
	// present the token before it is durable), and the caller commits it
	// again, under a renewal of that lease, until it is acknowledged.
	Commit(ctx context.Context, lease string, rec Record, reason string, now time.Time) (ok bool, tr *Transition, err error)
	// Fail records a transient failure and releases the lease; the user
	// becomes degraded after degradeAfter consecutive failures.
	Fail(ctx context.Context, user, lease string, version int64, lastErr string, degradeAfter int, reason string, now time.Time) (ok bool, failures int, tr *Transition, err error)
	// Flag marks the user reauth_required if version and lease still hold.
	Flag(ctx context.Context, user, lease string, version int64, reason, lastErr string, now time.Time) (FlagOutcome, *Transition, error)
	// SetState lets an operator disable a user, or enable a disabled one.
	// It returns nil when nothing changed.
	SetState(ctx context.Context, user string, to State, reason string, now time.Time) (*Transition, error)
	// Release gives up the lease if it is still lease.
	Release(ctx context.Context, user, lease string) error
	// Rekey replaces the ciphertext if the version is unchanged.
	Rekey(ctx context.Context, user string, version int64, kid string, ciphertext []byte) (bool, error)
	// Quarantine moves an unreadable record aside and reports it.
	Quarantine(ctx context.Context, user, reason string, now time.Time) error
	// QuarantineMalformed quarantines user's record if it is still
	// malformed and unchanged when re-read; moved reports whether it did.
	QuarantineMalformed(ctx context.Context, user string, now time.Time) (moved bool, err error)
	// QuarantinedRecord reads the quarantined copy of user's record
	// (ErrNotQuarantined, or ErrMalformedRecord while it does not parse).
	QuarantinedRecord(ctx context.Context, user string) (Record, error)
	// Restore makes the quarantined copy, unchanged since rec was read,
	// the user's record again; ErrLiveRecord if the user has one.
	Restore(ctx context.Context, rec Record, now time.Time) (*Transition, error)
	// Scan walks every record in batches; malformed lists records that
	// could not be parsed. next is 0 when the walk is complete.
	Scan(ctx context.Context, cursor uint64, count int64) (recs []Record, malformed []string, next uint64, err error)
	// EachUser walks every user's id, state and provider in batches,
	// reading only those fields, and calls fn with each batch and the
	// users of the batch whose record is malformed (not a hash, or a
	// required field missing or bad).
	EachUser(ctx context.Context, fn func(refs []UserRef, malformed []string) error) error
	// MissingDue returns the members that have no entry in the due set.
	MissingDue(ctx context.Context, set string, members []string) ([]string, error)
	// ReauthQueue lists the re-auth queue, oldest first, dropping entries
	// whose record is no longer reauth_required.
	ReauthQueue(ctx context.Context) ([]ReauthEntry, error)
	// ScheduleDue sets members' due times in a due set.
	ScheduleDue(ctx context.Context, set string, entries []scheduler.Entry) error
	// DueAt returns a member's score in a due set (zero if absent).
	DueAt(ctx context.Context, set, member string) (time.Time, error)
}
