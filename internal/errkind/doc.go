// Package errkind names the few kinds of failure that callers outside a
// package branch on: Invalid, NotFound, Conflict and Unavailable.
//
// The packages that raise errors give them a kind (tokens and jobs their
// sentinels, authflow its refusals, redisstore every Redis outage, the
// daemon a config it cannot apply), and errors.Is(err, errkind.NotFound)
// or Of(err) finds it through any chain of %w wraps. The edges map kinds
// to answers once: internal/admin (errors.go) to HTTP statuses,
// cmd/syncd (exitCode) to exit codes.
//
// It owns the kinds and how an error carries one (New, Errorf, Mark, Of).
// It holds no domain error values and no mapping to statuses or exit
// codes.
package errkind
