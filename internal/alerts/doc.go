// Package alerts sends the optional re-auth webhook: when users are
// flagged for re-authorization, a signed POST
// {"event": "reauth_required", "users": [...]} lists them, so the app can
// ask each user to consent again. Flags are batched (Options.Batch and
// Options.Wait: a provider incident that flags thousands of users makes a
// few requests, not thousands), may carry a fresh re-authorization link
// each (Options.Enrich), and are retried with backoff on 5xx, 429 and
// network errors. The queue is bounded (Options.MaxQueue) and Notify never
// blocks: overflow is logged. Close(ctx) sends what is queued, waiting no
// longer than ctx (the daemon gives it what is left of the shutdown
// grace); flags it gives up on are logged as dropped.
//
// It does not own who is flagged or the re-auth queue (the refresher and
// Redis do: a flag this package drops is still in the queue and in the
// metrics), the links (the daemon's Enrich asks internal/authflow), or the
// signature and the signed POST (internal/webhook).
package alerts
