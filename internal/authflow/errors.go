package authflow

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/syncd/syncd/internal/provider"
)

// Kind says what went wrong, for callers that map errors to statuses.
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

// Error is a refused request. Its message never holds a token, code or
// verifier.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Code is the machine-readable kind.
func (e *Error) Code() string { return string(e.Kind) }

// HTTPStatus is the status an API answers with.
func (e *Error) HTTPStatus() int {
	switch e.Kind {
	case KindNotFound:
		return http.StatusNotFound
	case KindConflict:
		return http.StatusConflict
	case KindStateExpired:
		return http.StatusGone
	case KindDenied:
		return http.StatusForbidden
	case KindUnavailable:
		return http.StatusBadGateway
	default:
		return http.StatusBadRequest
	}
}

func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
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
		return errorf(KindRejected, "the provider refused: %v", err)
	}
	return errorf(KindUnavailable, "the provider is unavailable, try again: %v", err)
}
