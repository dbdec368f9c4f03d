// Package errkind names the few kinds of failure that callers outside a
// package branch on: Invalid, NotFound, Conflict and Unavailable.
//
// The packages that raise errors give them a kind (tokens and jobs their
// sentinels, authflow its refusals, redisstore every Redis outage), and
// errors.Is(err, errkind.NotFound) or Of(err) finds it through any chain
// of %w wraps. The edges map kinds to answers once: internal/admin to HTTP
// statuses, cmd/syncd to exit codes.
//
// It owns the kinds and how an error carries one. It holds no domain error
// values and no mapping to statuses or exit codes.
package errkind
