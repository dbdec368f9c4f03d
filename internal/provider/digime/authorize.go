package digime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// defaultSourceType is the sourceType of an authorize link unless
// Config.OnboardParams names one.
const defaultSourceType = "pull"

// codeInvalidToken is digi.me's error code for an unknown, invalid or
// expired token.
const codeInvalidToken = "InvalidToken"

// preauthPayload is the verified payload of an oauth/authorize answer.
type preauthPayload struct {
	PreauthorizationCode string `json:"preauthorization_code"`
	jwt.RegisteredClaims
}

// referencePayload is the verified payload of an oauth/token/reference
// answer (token_type and expires_on are not needed).
type referencePayload struct {
	ReferenceCode string `json:"reference_code"`
	jwt.RegisteredClaims
}

// AuthorizeURL starts consent (implements provider.Authorizer): a signed
// POST oauth/authorize with the PKCE challenge (S256), redirect_uri,
// state, response_mode "query" and response_type "code", and a body of
// the agent block and actions {pull: {}}. The answer's verified JWT holds
// a preauthorization code; the link is OnboardURL + "authorize?code=..."
// with sourceType (default "pull") and OnboardParams, sorted by key. No
// access_token is sent: the user signs in to (or creates) a library in
// the browser. The link carries a single-use code: never log it.
//
// It is tried once (a POST). Failures are *provider.Error with Op
// "authorize", Status, digi.me's error Code and RetryAfter. Permanent
// means digi.me refused the request (a 4xx other than 408 and 429, and a
// 401 too: a wrong client, key or redirect_uri; also a request without
// challenge, redirect URI or state, which is never sent). Not permanent:
// network errors, 408, 429, 5xx, and an answer that cannot be verified
// (Code "jwks_unavailable", "response_signature", "untrusted_jku" or
// "bad_response"; a man in the middle or a key rotation is never the
// user's fault).
func (c *Client) AuthorizeURL(ctx context.Context, req provider.AuthRequest) (string, error) {
	const op = "authorize"
	log := c.log.With().Str(fieldUser, req.User).Str(fieldOp, op).Logger()
	if err := checkAuthRequest(req); err != nil {
		return "", &provider.Error{Op: op, Permanent: true, Err: err}
	}
	claims := consentClaims(req)
	claims["response_mode"] = "query"
	claims["response_type"] = "code"
	var p preauthPayload
	status, err := c.consentPost(ctx, &log, consentCall{
		op: op, rel: "oauth/authorize", claims: claims, body: true,
		secrets: []string{req.CodeChallenge, req.State},
	}, &p)
	if err != nil {
		return "", err
	}
	code := strings.TrimSpace(p.PreauthorizationCode)
	if code == "" {
		return "", &provider.Error{Op: op, Status: status, Code: codeBadResponse,
			Err: errors.New("answer has no preauthorization_code")}
	}
	log.Debug().Msg("authorize link created")
	return c.onboardLink("authorize", code), nil
}

// ReauthorizeURL starts the recovery flow for a user whose refresh token
// died (implements provider.Reauthorizer): a signed POST
// oauth/token/reference with accessToken (expired is fine), the PKCE
// challenge, redirect_uri and state, and the same body as AuthorizeURL.
// The answer's verified JWT holds a reference code; the link is
// OnboardURL + "user-reauth?code=..." with OnboardParams except
// sourceType, sorted by key. Consent there brings back the same library.
// The link carries a single-use code: never log it.
//
// Failures are as AuthorizeURL's, with Op "reauthorize". When digi.me
// answers 401 InvalidToken (it does not know accessToken, or the user's
// consent was withdrawn) the error also wraps provider.ErrAccessTokenInvalid,
// as it does for an empty accessToken (then nothing is sent): the caller
// falls back to AuthorizeURL.
func (c *Client) ReauthorizeURL(ctx context.Context, req provider.AuthRequest, accessToken string) (string, error) {
	const op = "reauthorize"
	log := c.log.With().Str(fieldUser, req.User).Str(fieldOp, op).Logger()
	if err := checkAuthRequest(req); err != nil {
		return "", &provider.Error{Op: op, Permanent: true, Err: err}
	}
	if accessToken == "" {
		return "", &provider.Error{Op: op, Permanent: true,
			Err: fmt.Errorf("%w: the user has no access token", provider.ErrAccessTokenInvalid)}
	}
	var p referencePayload
	status, err := c.consentPost(ctx, &log, consentCall{
		op: op, rel: "oauth/token/reference", access: accessToken, claims: consentClaims(req), body: true,
		secrets: []string{accessToken, req.CodeChallenge, req.State},
	}, &p)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Status == http.StatusUnauthorized && strings.EqualFold(pe.Code, codeInvalidToken) {
		if pe.Err == nil {
			pe.Err = provider.ErrAccessTokenInvalid
		} else {
			pe.Err = fmt.Errorf("%w: %w", provider.ErrAccessTokenInvalid, pe.Err)
		}
	}
	if err != nil {
		return "", err
	}
	code := strings.TrimSpace(p.ReferenceCode)
	if code == "" {
		return "", &provider.Error{Op: op, Status: status, Code: codeBadResponse,
			Err: errors.New("answer has no reference_code")}
	}
	log.Debug().Msg("reauthorize link created")
	return c.onboardLink("user-reauth", code, "sourceType"), nil
}

// Exchange trades an authorization code and its PKCE verifier for the
// user's tokens (implements provider.Authorizer): a signed POST
// oauth/token without a body, claims grant_type "authorization_code",
// code and code_verifier (req.RedirectURI is not sent: digi.me dropped it
// in 2023). As in Refresh, the key set that verifies the answer is
// fetched (or found cached) first: a JWKS outage then fails the call
// before the single-use code is spent. The token's UserID is req.User.
//
// Failures are as AuthorizeURL's, with Op "exchange": a rejected code or
// verifier (400 InvalidGrant and the like) is Permanent, the user must
// start again; an outage or an unverifiable answer is not.
func (c *Client) Exchange(ctx context.Context, req provider.ExchangeRequest) (tokens.Token, error) {
	const op = "exchange"
	log := c.log.With().Str(fieldUser, req.User).Str(fieldOp, op).Logger()
	switch {
	case req.Code == "":
		return tokens.Token{}, &provider.Error{Op: op, Permanent: true, Err: errors.New("the request has no authorization code")}
	case req.Verifier == "":
		return tokens.Token{}, &provider.Error{Op: op, Permanent: true, Err: errors.New("the request has no code verifier")}
	}
	if _, err := c.keySet(ctx, &log, c.jwksURL, false); err != nil {
		log.Warn().Err(err).Msg("jwks unavailable; exchange not attempted")
		return tokens.Token{}, &provider.Error{Op: op, Code: codeJWKS, Err: err}
	}
	var p tokenPayload
	status, err := c.consentPost(ctx, &log, consentCall{
		op: op, rel: "oauth/token",
		claims:  map[string]any{"grant_type": "authorization_code", "code": req.Code, "code_verifier": req.Verifier},
		secrets: []string{req.Code, req.Verifier},
	}, &p)
	if err != nil {
		return tokens.Token{}, err
	}
	t, err := p.token(tokens.Token{UserID: req.User})
	if err != nil {
		return tokens.Token{}, &provider.Error{Op: op, Status: status, Code: codeBadResponse, Err: err}
	}
	log.Debug().Time("access_expiry", t.AccessExpiry).Msg("authorization code exchanged")
	return t, nil
}

// checkAuthRequest rejects a request digi.me would refuse anyway.
func checkAuthRequest(req provider.AuthRequest) error {
	switch {
	case req.CodeChallenge == "":
		return errors.New("the request has no code challenge")
	case req.RedirectURI == "":
		return errors.New("the request has no redirect uri")
	case req.State == "":
		return errors.New("the request has no state")
	}
	return nil
}

// consentClaims are the request JWT claims oauth/authorize and
// oauth/token/reference share (client_id, nonce and timestamp are added
// when signing).
func consentClaims(req provider.AuthRequest) map[string]any {
	return map[string]any{
		"code_challenge":        req.CodeChallenge,
		"code_challenge_method": "S256",
		"redirect_uri":          req.RedirectURI,
		"state":                 req.State,
	}
}

// agent is the agent block the SDKs send with trigger and the consent
// calls: {sdk: {name, version, meta}}.
func (c *Client) agent() map[string]any {
	return map[string]any{"sdk": map[string]any{
		"name": c.agentName, "version": c.agentVersion, "meta": map[string]any{},
	}}
}

// onboardLink is OnboardURL + page with the code and OnboardParams
// (except skip) as a query sorted by key.
func (c *Client) onboardLink(page, code string, skip ...string) string {
	q := make(url.Values, len(c.onboardParams)+1)
	for k, v := range c.onboardParams {
		if !slices.Contains(skip, k) {
			q[k] = v
		}
	}
	q.Set("code", code)
	return c.onboard + page + "?" + q.Encode()
}

// consentCall is one signed POST of the consent flow, answered with
// {token: JWT}.
type consentCall struct {
	op     string
	rel    string // path under BaseURL
	access string // access_token claim; "" for none
	claims map[string]any
	// body sends {agent, actions: {pull: {}}}; without it there is none.
	body bool
	// secrets are kept out of errors built from digi.me's messages.
	secrets []string
}

// consentPost sends cc exactly once and verifies the answer's token into
// out. It returns the HTTP status of the answer; failures are
// *provider.Error (see AuthorizeURL).
func (c *Client) consentPost(ctx context.Context, log *zerolog.Logger, cc consentCall, out jwt.Claims) (int, error) {
	cl := call{
		op: cc.op, method: http.MethodPost, url: c.endpoint(cc.rel),
		sign: true, access: cc.access, claims: cc.claims,
		header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}},
		log:    log,
	}
	if cc.body {
		b, err := json.Marshal(map[string]any{"agent": c.agent(), "actions": map[string]any{"pull": map[string]any{}}})
		if err != nil {
			return 0, &provider.Error{Op: cc.op, Err: err}
		}
		cl.body = b
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return 0, &provider.Error{Op: cc.op, Err: err}
	}
	if !resp.ok() {
		e := httpError(cc.op, resp, cc.secrets...)
		// A 401 here refuses the request (client, key, token): there is
		// no token to refresh and retrying cannot help.
		e.Permanent = e.Permanent || resp.status == http.StatusUnauthorized
		log.Debug().Int(fieldStatus, e.Status).Str(fieldCode, e.Code).Bool("permanent", e.Permanent).
			Msg("consent request rejected")
		return resp.status, e
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(resp.body, &body); err != nil || body.Token == "" {
		return resp.status, &provider.Error{Op: cc.op, Status: resp.status, Code: codeBadResponse,
			Err: errors.New("answer has no token")}
	}
	if err := c.verifyResponse(ctx, log, body.Token, out); err != nil {
		e := &provider.Error{Op: cc.op, Status: resp.status, Err: err}
		switch {
		case errors.Is(err, errUntrustedJKU):
			e.Code = codeUntrustedJKU
			log.Error().Err(err).Msg("consent response names an untrusted key set")
		case errors.Is(err, errJWKSFetch):
			e.Code = codeJWKS
			log.Warn().Err(err).Msg("jwks unavailable to verify the consent response")
		case errors.Is(err, errResponseMalformed):
			e.Code = codeBadResponse
		default:
			e.Code = codeResponseSignature
			log.Error().Err(err).Msg("consent response failed verification")
		}
		return resp.status, e
	}
	return resp.status, nil
}
