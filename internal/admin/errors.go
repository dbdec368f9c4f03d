package admin

import (
	"errors"
	"net/http"

	"github.com/syncd/syncd/internal/authflow"
	"github.com/syncd/syncd/internal/errkind"
)

// A Backend's errors carry an errkind (tokens, jobs, authflow and
// redisstore give theirs one); these wrap an error in the API's wording
// when it has none of its own: fmt.Errorf("%w: %w", ErrBadRequest, err).
var (
	// ErrBadRequest: the request is wrong (bad user id, bad provider...).
	ErrBadRequest = errkind.New(errkind.Invalid, "bad request")
	// ErrNotFound: no such user or job.
	ErrNotFound = errkind.New(errkind.NotFound, "not found")
	// ErrConflict: the request cannot be done in the current state (a
	// restore of a record that still does not read, or over a live one).
	ErrConflict = errkind.New(errkind.Conflict, "conflict")
)

// httpStatus is the HTTP status the API answers err with: the one place
// kinds become statuses. An authflow refusal whose code says more than
// its kind keeps its own status; an error of no kind is a 500.
func httpStatus(err error) int {
	var ae *authflow.Error
	if errors.As(err, &ae) {
		switch ae.Kind {
		case authflow.KindStateExpired:
			return http.StatusGone
		case authflow.KindDenied:
			return http.StatusForbidden
		case authflow.KindUnavailable:
			return http.StatusBadGateway // the provider, not syncd
		}
	}
	switch errkind.Of(err) {
	case errkind.Invalid:
		return http.StatusBadRequest
	case errkind.NotFound:
		return http.StatusNotFound
	case errkind.Conflict:
		return http.StatusConflict
	case errkind.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Messages for errors whose own message is not the caller's business.
const (
	msgInternal    = "internal error; see the daemon's log"
	msgUnavailable = "temporarily unavailable, try again; see the daemon's log"
)

// fail answers a backend error. The caller's errors (invalid, not found,
// conflict) are answered with their message, which never carries a token
// value; an authflow refusal also with its code. An outage or an error of
// no kind is logged and answered with a fixed message: it may name
// addresses or internals.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := httpStatus(err)
	var ae *authflow.Error
	switch {
	case errors.As(err, &ae):
		writeJSON(w, code, map[string]string{"error": ae.Error(), "code": ae.Code()})
	case code == http.StatusServiceUnavailable:
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("admin request failed")
		writeErr(w, code, msgUnavailable)
	case code == http.StatusInternalServerError:
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("admin request failed")
		writeErr(w, code, msgInternal)
	default:
		writeErr(w, code, err.Error())
	}
}
