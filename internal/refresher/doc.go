// Package refresher owns the refresh service: the Refresher that keeps
// every user's token alive.
//
// It serves the tokens.RefreshSet due set with a scheduler.Engine,
// refreshes a token ahead of its expiry (Policy: lead, jitter, retries,
// the per-provider circuit breaker), and refreshes on demand for jobs
// (Token, Rejected, Source). One refresh per user at a time across all
// replicas: an in-process single-flight in front of a per-user lease in
// the record, with writes fenced by the record's version. It flags users
// for re-authorization, quarantines records it cannot use and restores
// them (Restore), repairs the due set (Reconcile), and reports Metrics.
//
// It does not own the token model (Token, Record, State, sealing,
// failure classes: internal/tokens), the providers it calls
// (internal/provider/..., behind Provider), or storage: the leases and
// fenced writes are Lua scripts in internal/redisstore behind
// tokens.Store.
package refresher
