package tokens

import (
	"fmt"
	"strings"
	"time"
)

// Class says what a failed refresh means for the user and the operator.
type Class int

const (
	// Transient failures (429, 5xx, timeouts, network errors, 4xx without
	// an OAuth error code) are retried with backoff; the user may become
	// degraded but is never flagged for re-authorization.
	Transient Class = iota
	// Reauth failures (invalid_grant, digi.me InvalidToken on refresh, an
	// expired refresh token) mean the user must consent again.
	Reauth
	// Config failures (invalid_client, unauthorized_client, a rejected
	// signature) are the operator's to fix: alert, never flag users.
	Config
)

// String returns the class as used in metric labels and records.
func (c Class) String() string {
	switch c {
	case Reauth:
		return "reauth"
	case Config:
		return "config"
	default:
		return "transient"
	}
}

// RefreshError is what a refresher.Provider returns when a refresh fails.
// Providers build it with NewRefreshError (Classify) so every provider
// sorts failures the same way.
type RefreshError struct {
	Class Class
	// Code is the provider's error code (RFC 6749 "invalid_grant", digi.me
	// "InvalidToken"), or a short syncd code ("http_503", "network").
	Code string
	// Status is the HTTP status, 0 when there was no response.
	Status int
	// RetryAfter is the provider's Retry-After, 0 when absent.
	RetryAfter time.Duration
	// Err is the underlying error, if any. It must not carry token values.
	Err error
}

func (e *RefreshError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "refresh failed (%s", e.Class)
	if e.Code != "" {
		fmt.Fprintf(&b, ", %s", e.Code)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ", http %d", e.Status)
	}
	b.WriteString(")")
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *RefreshError) Unwrap() error { return e.Err }

// Classify sorts a refresh failure by its error code (RFC 6749 §5.2 codes,
// or digi.me's error.code). Everything else (429, 5xx, timeouts, network
// errors, a 4xx with no or an unknown code) is Transient: a provider outage
// must never push users to re-authorization.
func Classify(code string) Class {
	switch strings.ToLower(code) {
	case "invalid_grant", "invalidtoken", "invalidgrant", "invalidtokentype", "invalidrefreshtoken":
		return Reauth
	case "invalid_client", "unauthorized_client", "unsupported_grant_type", "invalidclient",
		"invalidjwt", "sdkinvalid", "sdkversioninvalid", "invalid_signature":
		return Config
	}
	return Transient
}

// NewRefreshError builds a classified RefreshError from a provider response.
func NewRefreshError(status int, code string, retryAfter time.Duration, err error) *RefreshError {
	if code == "" && status != 0 {
		code = fmt.Sprintf("http_%d", status)
	}
	if code == "" {
		code = "network"
	}
	return &RefreshError{Class: Classify(code), Code: code, Status: status, RetryAfter: retryAfter, Err: err}
}
