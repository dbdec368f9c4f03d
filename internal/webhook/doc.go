// Package webhook owns how syncd calls a receiver's HTTP endpoint: the
// X-Syncd-Signature scheme (Sign) and a signed POST that is retried with
// exponential backoff on 429, 5xx and network errors (Client.Post).
//
// It does not own what is sent, where, or for how long: the job sink
// (internal/jobs) and the re-auth alerts (internal/alerts) build the body
// and headers, pick the backoff, and bound the attempts with their ctx.
package webhook
