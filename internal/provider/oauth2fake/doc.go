// Package oauth2fake is a strict OAuth 2 (RFC 6749) authorization server
// plus a small bearer-protected data API, served over HTTP for the tests
// of the oauth2 provider, the authorization handoff (internal/authflow)
// and the CLI.
//
// The authorization endpoint (GET /authorize) checks the client, the
// redirect URI and PKCE S256 (RFC 7636; plain is refused) and consents at
// once: it redirects with a single-use code, valid for CodeLifetime, and
// the state. Knobs in the link's query pick the consenting user
// (KnobUser) or make them refuse (KnobConsent).
//
// The token endpoint (POST /token) accepts grant_type=refresh_token and
// authorization_code, authenticates the client exactly as configured (HTTP
// Basic per RFC 6749 §2.3.1, or client_secret in the form body, never
// both), checks a code's redirect_uri and code_verifier, rotates refresh
// tokens and answers invalid_grant for rotated, unknown and revoked ones.
// Like ORY Hydra, Auth0 and Okta (RFC 6819 §5.2.2.3) it detects refresh
// token reuse: a rotated-away refresh token presented again revokes the
// whole grant (its current refresh token and every access token issued
// from it), unless Options.RotationGracePeriod forgives it; Reuses,
// ReusesOf and ReuseRevocations count what it caught.
// The data API (GET /data/{user}, POST /push/{user}) checks bearer tokens
// per RFC 6750. Knobs inject outages and early access-token invalidation.
//
// It does not own scopes (a scope parameter is recorded by GET /authorize
// and otherwise accepted and ignored), registered redirect URIs (any
// absolute http(s) URI is accepted, then held to the code) or
// refresh-token expiry.
package oauth2fake
