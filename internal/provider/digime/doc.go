// Package digime is syncd's client for the digi.me API (v1.7). It speaks
// what the public digi.me SDKs speak (see shared/digime-protocol.md):
// PS512 request JWTs signed with the contract key, token refresh at
// oauth/token with the response verified against a pinned JWKS, pulls
// through permission-access/trigger and the file-list/file endpoints with
// RSA-OAEP + AES-256-CBC decryption, pushes through
// permission-access/import, and the consent flow (provider.Reauthorizer):
// links to digi.me's onboarding UI from oauth/authorize (AuthorizeURL)
// and oauth/token/reference (ReauthorizeURL, the recovery flow after the
// refresh token died), and the authorization_code grant (Exchange).
//
// It owns the wire protocol only. It does not store tokens, schedule
// refreshes or decide when a user must re-authorize: Refresh returns a
// classified *tokens.RefreshError and data calls get their tokens from a
// provider.TokenSource (the refresher), calling Rejected once when
// digi.me answers 401, as the SDKs do.
//
// Retries follow the Node SDK (got 11): idempotent GETs are retried on
// 408/413/429/5xx and network errors with 1s, 2s backoff and Retry-After;
// POSTs (trigger, import, oauth/token, oauth/authorize,
// oauth/token/reference) never are. Every attempt is signed afresh (new
// nonce and timestamp).
//
// Secrets never reach logs or errors: token values, authorization and
// preauthorization codes, PKCE verifiers, consent links, JWTs and the
// private key are kept out of every message, and server messages are
// scrubbed of anything that looks like a JWT before they are wrapped.
package digime
