// Package fake is an in-process provider: refresh, pull and push with no
// network. It is what a provider of kind fake runs (the default config's),
// and what the refresher's, the job runner's and the fault tests' users
// talk to. It behaves like the strictest OAuth2 servers (ORY Hydra, Auth0,
// Okta): every refresh rotates the refresh token; presenting a
// rotated-away one again is reuse, answered invalid_grant, and revokes the
// whole grant (its current refresh token and every access token issued
// from it), unless Options.RotationGracePeriod forgives it; revoked users
// are rejected.
//
// Fault knobs add latency, random 5xx and 429 answers (with Retry-After),
// outages (SetOutage), lost answers (LoseResponses: the token rotates, the
// answer never arrives), client errors (SetConfigError) and early
// access-token invalidation (InvalidateAccess); the random ones are
// deterministic under Options.Seed. Tests hand out tokens with Issue and
// read back Stats, Reuses, ReusesOf, ReuseRevocations, Refreshes, Pulls,
// Pushed and Secrets.
//
// It does not speak a wire protocol (digimefake and oauth2fake do), has no
// consent flow (it is not a provider.Authorizer), and keeps nothing beyond
// its process.
package fake
