package jobs

import (
	"context"
	"time"

	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// State is the recorded outcome of a job for one user.
type State struct {
	LastRun     time.Time
	LastSuccess time.Time
	// Failures counts consecutive failed runs; 0 after a success.
	Failures int
	// LastError is the class and a short description of the last failure,
	// never a token or a response body.
	LastError string
	// Cursor is where the next pull starts (provider-specific).
	Cursor string
}

// SavedRun is a run's outcome for one user's job state. The runner hands
// it to the due-set engine as the Outcome's Write; the store's FinishRuns
// writes it in the batch that re-schedules the entry.
type SavedRun struct {
	User, Job string
	State     State
}

// OutboxItem is one entry of a user's outbox stream, as the app wrote it:
// fields data, mime_type, accounts (comma-separated), tags
// (comma-separated), id (the app's own id, optional).
type OutboxItem struct {
	StreamID string
	ID       string
	Data     []byte
	MimeType string
	Accounts []string
	Tags     []string
}

// Loaded is one user's record and job state, or why it could not be read.
type Loaded struct {
	Record tokens.Record
	State  State
	Err    error
}

// Store is what jobs need from storage (internal/redisstore).
type Store interface {
	scheduler.Claims
	// FinishRuns is scheduler.Store's FinishDue for a job's due set: each
	// run's SavedRun (nil: none) is written with the re-score.
	FinishRuns(ctx context.Context, set string, done []scheduler.Done[*SavedRun]) ([]bool, error)
	ScheduleDue(ctx context.Context, set string, entries []scheduler.Entry) error
	// AddDue schedules members that are not in the set yet (ZADD NX).
	AddDue(ctx context.Context, set string, entries []scheduler.Entry) error
	// RescoreDue walks every member of a set in batches and moves it to
	// next(member); it returns how many it moved.
	RescoreDue(ctx context.Context, set string, next func(member string) time.Time) (int, error)
	// DropDue deletes a whole due set.
	DropDue(ctx context.Context, set string) error
	DueAt(ctx context.Context, set, member string) (time.Time, error)
	DueCount(ctx context.Context, set string, t time.Time) (int64, error)
	// OldestDue is the lowest score in the set (zero when empty).
	OldestDue(ctx context.Context, set string) (time.Time, error)

	Load(ctx context.Context, user string) (tokens.Record, error)
	Scan(ctx context.Context, cursor uint64, count int64) ([]tokens.Record, []string, uint64, error)
	// EachDue calls fn with the members of a due set in batches, from
	// several goroutines at once.
	EachDue(ctx context.Context, set string, fn func(members []string) error) error
	// UserRefs reads the state and provider of users (those without a
	// record are left out).
	UserRefs(ctx context.Context, users []string) ([]tokens.UserRef, error)

	JobState(ctx context.Context, user, job string) (State, error)
	// LoadForRun is Load and JobState in one round trip.
	LoadForRun(ctx context.Context, user, job string) (tokens.Record, State, error)
	// LoadManyForRun is LoadForRun for many users in one round trip.
	LoadManyForRun(ctx context.Context, users []string, job string) ([]Loaded, error)
	// AddJobStats adds run counts to the jobs' per-minute statistics.
	AddJobStats(ctx context.Context, counts map[string][2]int64, now time.Time) error
	// SaveCursor records a pull's cursor (after the sink accepted items).
	SaveCursor(ctx context.Context, user, job, cursor string) error

	Outbox(ctx context.Context, user string, n int) ([]OutboxItem, error)
	// Attempt counts one failed delivery of an outbox item and returns
	// the total.
	Attempt(ctx context.Context, user, job, streamID string) (int, error)
	// Delivered removes an item from the outbox.
	Delivered(ctx context.Context, user, job, streamID string) error
	// DeadLetter moves an item from the outbox to the user's dead-letter
	// stream with the last error.
	DeadLetter(ctx context.Context, user, job string, item OutboxItem, lastErr string, now time.Time) error

	// SinkAdd appends a pulled item to a capped stream.
	SinkAdd(ctx context.Context, stream string, maxLen int64, values map[string]any) error

	JobDefs(ctx context.Context) (map[string]string, error)
	SetJobDef(ctx context.Context, name, fingerprint string) error
	DelJobDef(ctx context.Context, name string) error
	PausedJobs(ctx context.Context) (map[string]bool, error)
	SetPaused(ctx context.Context, name string, paused bool) error
	// TryLock takes a named lock for ttl; false if someone holds it.
	TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	Unlock(ctx context.Context, name, owner string) error
	// JobStats sums the job's successful and failed runs since t.
	JobStats(ctx context.Context, job string, since, now time.Time) (ok, failed int64, err error)
}
