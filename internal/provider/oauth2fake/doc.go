// Package oauth2fake is a strict OAuth 2 (RFC 6749) authorization server
// plus a small bearer-protected data API, served over HTTP for the oauth2
// provider's tests and `syncd demo`.
//
// The token endpoint (POST /token) accepts only grant_type=refresh_token,
// authenticates the client exactly as configured (HTTP Basic per RFC 6749
// §2.3.1, or client_secret in the form body, never both), rotates refresh
// tokens and answers invalid_grant for rotated, unknown and revoked ones.
// The data API (GET /data/{user}, POST /push/{user}) checks bearer tokens
// per RFC 6750. Knobs inject outages and early access-token invalidation.
//
// It does not own the authorization-code flow (it answers
// unsupported_grant_type), scopes (a scope parameter is accepted and
// ignored) or refresh-token expiry.
package oauth2fake
