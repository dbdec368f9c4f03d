package errkind

import (
	"errors"
	"fmt"
)

// Kind is a kind of failure. A Kind is an error so that it can sit in an
// error's chain: errors.Is(err, NotFound) asks whether err is of kind
// NotFound anywhere in its chain, Of(err) which kind it has first.
type Kind uint8

// Kinds. The zero Kind is no kind: an error no caller is expected to
// handle (a bug, a corrupt value), answered as an internal error.
const (
	// Invalid: the request or input is wrong; repeating it fails again.
	Invalid Kind = iota + 1
	// NotFound: the user, job or state named does not exist.
	NotFound
	// Conflict: the request cannot be done in the current state (a
	// record that does not read, a live record a restore would
	// overwrite, a user in the wrong state).
	Conflict
	// Unavailable: a dependency (Redis, a provider) did not answer or
	// cannot serve yet; the same request may succeed later.
	Unavailable
)

func (k Kind) Error() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not found"
	case Conflict:
		return "conflict"
	case Unavailable:
		return "unavailable"
	}
	return "no kind"
}

// Of returns the first kind in err's chain (the outermost, so a wrap can
// give an error a new kind), or 0 when err has none.
func Of(err error) Kind {
	var k Kind
	errors.As(err, &k)
	return k
}

// New returns an error of kind k whose message is msg, for sentinels:
//
//	var ErrNotFound = errkind.New(errkind.NotFound, "no token stored for user")
func New(k Kind, msg string) error { return &kindError{kind: k, err: errors.New(msg)} }

// Errorf is fmt.Errorf with kind k; the causes it wraps with %w stay in
// the chain.
func Errorf(k Kind, format string, args ...any) error {
	return &kindError{kind: k, err: fmt.Errorf(format, args...)}
}

// Mark gives err kind k, ahead of any kind it had; its message and chain
// are unchanged. Mark(k, nil) is nil.
func Mark(k Kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: k, err: err}
}

// kindError is an error with a kind; it reads as the error it carries.
type kindError struct {
	kind Kind
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }
