// Package daemon is syncd running: it builds, once per applied config,
// the providers, the token refresher, the job runner and the
// authorization flow, wired to each other (wire.go, providers.go);
// starts and stops them with the admin server; reloads the config
// (SIGHUP, a changed file: reload.go) and the admin token files (with the
// config, or alone when one changes: the admin server's credentials are
// swapped without a restart); runs housekeeping (state gauges,
// re-auth queue repair, quarantine, due-set shard migration); sends the
// re-auth webhook (alerts), flushed at Stop within what is left of the
// one shutdown grace; and implements admin.Backend (backend.go). It
// checks at compile time that *redisstore.Store serves every consumer.
//
// Open gives commands an Offline (offline.go): the store, the verified
// keyring, and the same user view, list and token put the admin API
// serves, with engines that are never started.
//
// It does not own signals, flags, output or exit codes (cmd/syncd), the
// refresh and job logic (internal/refresher, internal/jobs) or the token
// model (internal/tokens), the HTTP API (internal/admin) or Redis keys
// (internal/redisstore). It never exits the process: errors are returned,
// and errkind.Invalid marks the operator's config.
package daemon
