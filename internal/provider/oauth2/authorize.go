package oauth2

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	xoauth2 "golang.org/x/oauth2"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// Ops of the *provider.Error values AuthorizeURL and Exchange return.
const (
	OpAuthorize = "authorize"
	OpExchange  = "exchange"
)

// Parameters of the authorization request (RFC 6749 §4.1.1, RFC 7636
// §4.3) that the client sets itself.
const (
	paramChallenge       = "code_challenge"
	paramChallengeMethod = "code_challenge_method"
	methodS256           = "S256"
)

var _ provider.Authorizer = (*Client)(nil)

// reservedAuthParams cannot be set through Config.AuthParams.
var reservedAuthParams = []string{
	"response_type", "client_id", "redirect_uri", "scope", "state", paramChallenge, paramChallengeMethod,
}

var (
	errNoCode      = errors.New("authorization code missing")
	errNoVerifier  = errors.New("code verifier missing")
	errNoState     = errors.New("state missing")
	errNoChallenge = errors.New("code challenge missing")
)

// notConfigured is ErrNotConfigured naming the configuration key.
type notConfigured string

func (n notConfigured) Error() string        { return string(n) + " not configured" }
func (n notConfigured) Is(target error) bool { return target == ErrNotConfigured }

// authParamOptions checks Config.AuthParams and turns them into options,
// in key order.
func authParamOptions(params map[string]string) ([]xoauth2.AuthCodeOption, error) {
	keys := make([]string, 0, len(params))
	for k := range params {
		if k == "" {
			return nil, errors.New("oauth2: AuthParams: empty parameter name")
		}
		if slices.Contains(reservedAuthParams, k) {
			return nil, fmt.Errorf("oauth2: AuthParams[%q]: set by the client itself", k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	opts := make([]xoauth2.AuthCodeOption, 0, len(keys))
	for _, k := range keys {
		opts = append(opts, xoauth2.SetAuthURLParam(k, params[k]))
	}
	return opts, nil
}

// AuthorizeURL returns the link that sends the user to the consent screen
// (RFC 6749 §4.1.1): Config.AuthURL with response_type=code, client_id,
// redirect_uri (req.RedirectURI), scope (Config.Scopes, when set), state
// (req.State), code_challenge (req.CodeChallenge) with
// code_challenge_method=S256 (RFC 7636 §4.3), and Config.AuthParams. It
// makes no call. It implements provider.Authorizer.
//
// Failures are *provider.Error with Op OpAuthorize, all Permanent: Err is
// ErrNotConfigured (naming auth_url) without Config.AuthURL, else it says
// which field of req is missing or malformed.
func (c *Client) AuthorizeURL(_ context.Context, req provider.AuthRequest) (string, error) {
	fail := func(err error) (string, error) {
		return "", &provider.Error{Op: OpAuthorize, Permanent: true, Err: err}
	}
	if c.oauth.Endpoint.AuthURL == "" {
		return fail(notConfigured("auth_url"))
	}
	if err := checkURL(req.RedirectURI); err != nil {
		return fail(fmt.Errorf("redirect uri: %w", err))
	}
	if req.State == "" {
		return fail(errNoState)
	}
	if req.CodeChallenge == "" {
		return fail(errNoChallenge)
	}
	opts := make([]xoauth2.AuthCodeOption, 0, len(c.authParams)+3)
	opts = append(opts, c.authParams...)
	opts = append(opts,
		// An option, not RedirectURL: c.oauth is shared and never copied.
		xoauth2.SetAuthURLParam("redirect_uri", req.RedirectURI),
		xoauth2.SetAuthURLParam(paramChallenge, req.CodeChallenge),
		xoauth2.SetAuthURLParam(paramChallengeMethod, methodS256),
	)
	u := c.oauth.AuthCodeURL(req.State, opts...)
	c.log.Debug().Str(fieldUser, req.User).Msg("authorization link built")
	return u, nil
}

// Exchange trades an authorization code for the user's token (RFC 6749
// §4.1.3): grant_type=authorization_code with the code, redirect_uri
// (req.RedirectURI) and code_verifier (req.Verifier, RFC 7636 §4.5),
// authenticated as Config.AuthStyle says, through Config.HTTPClient. No
// scope is sent. It implements provider.Authorizer.
//
// The token's UserID is req.User; its fields and expiries follow the
// same rules as Refresh (AccessExpiry from expires_in, RefreshExpiry from
// refresh_token_expires_in, both counted from when the request was sent
// and zero when absent). A response without a refresh token gives a token
// without one.
//
// Failures are *provider.Error with Op OpExchange, Status, Code (the RFC
// 6749 error code, e.g. invalid_grant; CodeTimeout; CodeInvalidResponse
// for a 2xx without a usable token) and RetryAfter. Permanent means the
// endpoint refused the request: a 4xx other than 408 and 429, or a 2xx
// carrying an error code other than server_error and
// temporarily_unavailable; the code cannot be tried again and the user
// must start over. Network errors, timeouts, 408, 429 and 5xx are not
// Permanent. A req without code, verifier or a valid redirect URI fails
// Permanent without a call. The error never holds the code, the
// verifier, a token, the client secret or the response body.
func (c *Client) Exchange(ctx context.Context, req provider.ExchangeRequest) (tokens.Token, error) {
	fail := func(err error) (tokens.Token, error) {
		return tokens.Token{}, &provider.Error{Op: OpExchange, Permanent: true, Err: err}
	}
	switch {
	case req.Code == "":
		return fail(errNoCode)
	case req.Verifier == "":
		return fail(errNoVerifier)
	}
	if err := checkURL(req.RedirectURI); err != nil {
		return fail(fmt.Errorf("redirect uri: %w", err))
	}
	start := c.clock.Now()
	// c.http, not c.tokenHTTP: the code grant has no scope parameter.
	hctx := context.WithValue(ctx, xoauth2.HTTPClient, c.http)
	xt, err := c.oauth.Exchange(hctx, req.Code,
		xoauth2.SetAuthURLParam("redirect_uri", req.RedirectURI),
		xoauth2.VerifierOption(req.Verifier))
	if err != nil {
		perr := c.exchangeError(ctx, err)
		c.log.Debug().Str(fieldUser, req.User).Int(fieldStatus, perr.Status).Str(fieldCode, perr.Code).
			Bool(fieldPermanent, perr.Permanent).Msg("code exchange failed")
		return tokens.Token{}, perr
	}
	t, ok := newToken(req.User, xt, start)
	if !ok {
		return tokens.Token{}, &provider.Error{Op: OpExchange, Code: CodeInvalidResponse, Err: errInvalidResponse}
	}
	c.log.Debug().Str(fieldUser, req.User).Bool(fieldHasRefresh, t.RefreshToken != "").
		Time(fieldExpiry, t.AccessExpiry).Msg("code exchanged")
	return t, nil
}

// exchangeError classifies a failed code exchange.
func (c *Client) exchangeError(ctx context.Context, err error) *provider.Error {
	f := c.classify(ctx, err)
	return &provider.Error{
		Op:         OpExchange,
		Status:     f.status,
		Code:       f.code,
		RetryAfter: f.retryAfter,
		Permanent:  refused(f.status, f.code),
		Err:        f.err,
	}
}

// refused reports whether a token endpoint answer refused the request
// itself, so that sending it again cannot succeed.
func refused(status int, code string) bool {
	switch {
	case status >= 400 && status < 500:
		return status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
	case status >= 200 && status < 300:
		// x/oauth2 fails a 2xx only for an error parameter (or no token,
		// which has status 0 here).
		return code != "" && code != "server_error" && code != "temporarily_unavailable"
	}
	return false
}
