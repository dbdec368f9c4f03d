package errkind_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/syncd/syncd/internal/errkind"
)

var errCause = errors.New("cause")

func TestOf(t *testing.T) {
	sentinel := errkind.New(errkind.NotFound, "no token stored for user")
	for _, tc := range []struct {
		name string
		err  error
		want errkind.Kind
		msg  string
	}{
		{"nil", nil, 0, ""},
		{"no kind", errCause, 0, "cause"},
		{"sentinel", sentinel, errkind.NotFound, "no token stored for user"},
		{"wrapped sentinel", fmt.Errorf("user %q: %w", "u", sentinel), errkind.NotFound, `user "u": no token stored for user`},
		{"errorf", errkind.Errorf(errkind.Invalid, "bad flag: %w", errCause), errkind.Invalid, "bad flag: cause"},
		{"mark", errkind.Mark(errkind.Unavailable, errCause), errkind.Unavailable, "cause"},
		{"outer kind first", errkind.Mark(errkind.Conflict, fmt.Errorf("restore: %w", sentinel)), errkind.Conflict, "restore: no token stored for user"},
		{"first of two causes", fmt.Errorf("%w: %w", errkind.New(errkind.Invalid, "bad request"), sentinel), errkind.Invalid, "bad request: no token stored for user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errkind.Of(tc.err); got != tc.want {
				t.Errorf("Of = %v, want %v", got, tc.want)
			}
			if tc.err != nil && tc.err.Error() != tc.msg {
				t.Errorf("message %q, want %q", tc.err.Error(), tc.msg)
			}
		})
	}
}

// TestChainsKeepCauses: a kind never hides the causes it wraps.
func TestChainsKeepCauses(t *testing.T) {
	sentinel := errkind.New(errkind.NotFound, "gone")
	err := fmt.Errorf("op: %w", errkind.Mark(errkind.Conflict, fmt.Errorf("%w: %w", sentinel, errCause)))
	for _, target := range []error{sentinel, errCause, errkind.Conflict, errkind.NotFound} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%q, %q) = false", err, target)
		}
	}
	if errors.Is(err, errkind.Invalid) {
		t.Errorf("errors.Is(%q, Invalid) = true", err)
	}
	if errkind.Mark(errkind.Invalid, nil) != nil {
		t.Error("Mark(nil) is not nil")
	}
}
