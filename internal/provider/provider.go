package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/syncd/syncd/internal/tokens"
)

// TokenSource gives a provider a user's token for data calls. The
// refresher implements it per user: Token returns a usable token,
// refreshing first if it would expire soon; Rejected is called once when
// the provider answered 401 to a data call made with t, and returns a
// refreshed token (single-flight per user across all callers and replicas;
// if someone else refreshed meanwhile, their token).
type TokenSource interface {
	Token(ctx context.Context) (tokens.Token, error)
	Rejected(ctx context.Context, t tokens.Token) (tokens.Token, error)
}

// Item is one piece of pulled data, decrypted and decompressed.
type Item struct {
	// Name is the provider's name for the item, stable per user.
	Name string
	Data []byte
	// MimeType is the media type when the provider says it.
	MimeType string
	// Metadata is the provider's metadata as JSON (digi.me x-metadata's
	// "metadata"), nil when none.
	Metadata json.RawMessage
	// UpdatedAt is when the provider last changed the item.
	UpdatedAt time.Time
}

// PullResult is the outcome of a pull that ran to the end.
type PullResult struct {
	// Cursor is where the next pull starts: it covers exactly the items
	// the deliver callback accepted.
	Cursor string
	// Delivered counts accepted items.
	Delivered int
	// Status is the provider's final status: "completed" or "partial".
	Status string
	// AccountErrors lists per-account problems of a partial pull.
	AccountErrors []AccountError
}

// AccountError is a problem with one of the user's source accounts (not
// with syncd's token): e.g. digi.me 511 ServiceAuthorizationError with
// Reauth set means the user must reconnect that account.
type AccountError struct {
	Account    string    `json:"account"`
	Code       string    `json:"code"`
	Status     int       `json:"status,omitempty"`
	Message    string    `json:"message,omitempty"`
	Reauth     bool      `json:"reauth,omitempty"`
	RetryAfter time.Time `json:"retry_after,omitzero"`
}

// PushItem is one item to write into the user's library.
type PushItem struct {
	ID       string
	Data     []byte
	MimeType string
	Accounts []string
	Tags     []string
}

// Error is a failed data call (pull, push). Token trouble is not an
// Error: it comes from the TokenSource (tokens.ErrReauthRequired, ...).
type Error struct {
	Op     string // "trigger", "file list", "file", "import", "pull", "push", ...
	Status int    // HTTP status, 0 without a response
	Code   string // provider error code, if any
	// RetryAfter is the provider's Retry-After, 0 when absent.
	RetryAfter time.Duration
	// Permanent: retrying the same request cannot succeed (a 4xx other
	// than 401/408/429); for a push it means the item is poison.
	Permanent bool
	Err       error
}

func (e *Error) Error() string {
	s := e.Op + " failed"
	if e.Status != 0 {
		s += fmt.Sprintf(": http %d", e.Status)
	}
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent4xx reports whether an HTTP status means the request itself is
// wrong (so retrying it cannot help).
func Permanent4xx(status int) bool {
	return status >= 400 && status < 500 && status != 401 && status != 408 && status != 429
}
