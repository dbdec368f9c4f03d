// Package daemon is syncd running: it builds, once per applied config,
// the providers, the token refresher, the job runner and the
// authorization flow, wired to each other; starts and stops them with the
// admin server; reloads the config (SIGHUP, a changed file); runs
// housekeeping (state gauges, re-auth queue repair, quarantine, due-set
// shard migration); and implements admin.Backend.
//
// Offline gives commands the same user view, list and token put the
// admin API serves, without running engines.
//
// It does not own signals, flags, output or exit codes (cmd/syncd), the
// refresh and job logic (internal/tokens, internal/jobs), the HTTP API
// (internal/admin) or Redis keys (internal/redisstore). It never exits
// the process: errors are returned, and errkind.Invalid marks the
// operator's config.
package daemon
