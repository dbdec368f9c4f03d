// Package webhook owns how syncd calls a receiver's HTTP endpoint: the
// X-Syncd-Signature scheme v2, which binds the body to the delivery id,
// user, job, item and update time headers (Sign, and Verify, the
// receiver's side and the README's Go snippet), the delivery id, and a
// signed POST that is retried with exponential backoff on 429, 5xx and
// network errors (Client.Post). Several secrets sign side by side while
// one is rotated.
//
// It does not own what is sent, where, or for how long: the job sink
// (internal/jobs) and the re-auth alerts (internal/alerts) build the body
// and headers, pick the backoff, and bound the attempts with their ctx;
// nor the secrets' minimum length (internal/config).
package webhook
