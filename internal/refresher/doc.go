// Package refresher owns the refresh service: the Refresher that keeps
// every user's token alive.
//
// It serves the tokens.RefreshSet due set with a
// scheduler.Engine[tokens.Lease, struct{}]: each claimed batch's refresh
// leases are taken in one round trip (the engine's Prefetch), and a
// token is refreshed ahead of its expiry (Policy: lead, jitter, retries,
// the per-provider circuit breaker). It refreshes on demand for jobs
// (Token, Rejected, Source, SourceFrom), taking a lease the engine still
// holds for a queued claim (TakePrefetched). One refresh per user at a
// time across all replicas: an in-process single-flight in front of a
// per-user lease in the record, with writes fenced by the record's
// version. It stores tokens (Put), switches users off and on (Disable,
// Enable), flags users for re-authorization, quarantines records it
// cannot use and restores them (Restore), repairs the due set
// (Reconcile), reports every stored token and state change (OnChange)
// and its Metrics.
//
// It does not own the token model (Token, Record, State, sealing,
// RefreshError and failure classes: internal/tokens), the providers it
// calls (internal/provider/..., behind Provider), the engine
// (internal/scheduler), or storage: it declares Store (tokens.Store plus
// the refresh set's scheduler.Store[struct{}]), and the leases and fenced
// writes are Lua scripts in internal/redisstore behind it.
package refresher
