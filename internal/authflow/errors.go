package authflow

import (
	"errors"
	"fmt"

	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/provider"
)

// Kind says what went wrong: the machine-readable code of an Error. Each
// Kind has an errkind.Kind (see errkind), which the API and the CLI map.
type Kind string

// Kinds of Error.
const (
	KindBadRequest   Kind = "bad_request"
	KindNotFound     Kind = "not_found"
	KindConflict     Kind = "conflict"
	KindStateUnknown Kind = "state_unknown"
	KindStateExpired Kind = "state_expired"
	KindDenied       Kind = "access_denied"
	KindRejected     Kind = "code_rejected"
	KindUnavailable  Kind = "provider_unavailable"
)

// kind is k's errkind: every refusal is the caller's to fix except a
// provider that did not answer.
func (k Kind) kind() errkind.Kind {
	switch k {
	case KindNotFound:
		return errkind.NotFound
	case KindConflict:
		return errkind.Conflict
	case KindUnavailable:
		return errkind.Unavailable
	default:
		return errkind.Invalid
	}
}

// Error is a refused request. Its message never holds a token, code or
// verifier.
type Error struct {
	Kind Kind
	Msg  string
	// Err is the cause (a provider's error, a user id check), or nil; Msg
	// already says it.
	Err error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap gives the Error's errkind, then its cause.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind.kind()}
	}
	return []error{e.Kind.kind(), e.Err}
}

// Code is the machine-readable kind.
func (e *Error) Code() string { return string(e.Kind) }

// errorf returns an Error of kind k; a cause wrapped with %w stays in its
// chain.
func errorf(k Kind, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: k, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// providerError turns a provider failure into an Error: refused
// (permanent) or unavailable.
func providerError(err error) error {
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Permanent {
		return errorf(KindRejected, "the provider refused: %w", err)
	}
	return errorf(KindUnavailable, "the provider is unavailable, try again: %w", err)
}
