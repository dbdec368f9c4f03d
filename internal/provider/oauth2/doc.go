// Package oauth2 is syncd's provider for any RFC 6749 OAuth 2 API: it
// refreshes tokens with the refresh_token grant (through
// golang.org/x/oauth2, client_secret_basic or client_secret_post) and
// classifies failures for the refresher, it runs the authorization-code
// flow with PKCE S256 (RFC 6749 §4.1, RFC 7636: the consent link and the
// code exchange), and it runs pull and push jobs against a
// bearer-protected HTTP API whose URLs come from templates.
//
// A pull is one GET returning one item (the export since a cursor); a
// push is one POST of one item. A 401 on a data call asks the token
// source for a refreshed token once and retries once.
//
// It does not own when tokens are refreshed, where they are stored or
// single-flighting (the refresher does), nor scheduling jobs, nor the
// PKCE verifier, the state or the redirect endpoint of the consent flow
// (its caller does). It never puts a token value, an authorization code, a
// code verifier, the client secret or a response body into an error or a
// log line.
package oauth2
