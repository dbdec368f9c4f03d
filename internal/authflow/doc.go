// Package authflow is the authorization handoff: syncd starts a user's
// consent (a link with PKCE and a state), finishes it (the callback's code
// exchanged for a token, stored as `token put` would), and makes
// re-authorization links for users whose refresh failed for good. Tokens
// never pass through the app.
//
// A pending authorization is kept in Redis under its state, sealed with
// the token keyring (the state is the associated data), for StateTTL; it
// holds the PKCE verifier, which never leaves syncd. The callback takes it
// out atomically, so a state works once. A state the caller chooses must
// be unguessable (32 to 256 characters of A-Z a-z 0-9 _ -), and with an
// allow-list (Options.AllowedRedirectURIs) a link names only those
// redirect URIs.
//
// It does not own the providers' wire formats (internal/provider/digime,
// internal/provider/oauth2 implement provider.Authorizer), the HTTP
// surface (internal/admin) or how a token is stored (the refresher's put,
// through Options.Put).
package authflow
