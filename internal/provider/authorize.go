package provider

import (
	"context"
	"errors"

	"github.com/syncd/syncd/internal/tokens"
)

// AuthRequest asks a provider for a link that sends a user to its consent
// screen. syncd keeps the PKCE verifier; the provider sees only the S256
// challenge.
type AuthRequest struct {
	// User is syncd's user id, for logs only: it is never sent.
	User string
	// RedirectURI is where the provider sends the user back, with the
	// authorization code and State in the query.
	RedirectURI string
	// State is echoed back on the redirect; syncd finds the verifier by it.
	State string
	// CodeChallenge is base64url(SHA-256(verifier)), method S256.
	CodeChallenge string
}

// ExchangeRequest turns an authorization code into a token.
type ExchangeRequest struct {
	// User is syncd's user id: the returned token's UserID.
	User string
	// Code is the authorization code from the redirect.
	Code string
	// Verifier is the PKCE code verifier of the link's challenge.
	Verifier string
	// RedirectURI is the link's redirect URI (OAuth2 sends it again).
	RedirectURI string
}

// Authorizer starts and finishes a provider's consent flow. Failures are
// *Error with Op "authorize" or "exchange"; Permanent means the provider
// refused the request itself (a rejected code or verifier: the user must
// start again), otherwise it was unavailable (retrying may help).
type Authorizer interface {
	// AuthorizeURL returns the link that starts consent.
	AuthorizeURL(ctx context.Context, req AuthRequest) (string, error)
	// Exchange trades the code (and verifier) for the user's token.
	Exchange(ctx context.Context, req ExchangeRequest) (tokens.Token, error)
}

// Reauthorizer is an Authorizer with a recovery flow for a user whose
// refresh token died: the user's last access token proves who they are,
// and consent brings back the same library (digi.me's
// oauth/token/reference and user-reauth).
type Reauthorizer interface {
	Authorizer
	// ReauthorizeURL returns the recovery link. ErrAccessTokenInvalid
	// means the provider refused accessToken: the caller falls back to a
	// full AuthorizeURL.
	ReauthorizeURL(ctx context.Context, req AuthRequest, accessToken string) (string, error)
}

// ErrAccessTokenInvalid: the provider does not know the access token a
// recovery flow presented (digi.me: 401 InvalidToken "The token
// (access_token) is invalid").
var ErrAccessTokenInvalid = errors.New("provider refused the access token")
