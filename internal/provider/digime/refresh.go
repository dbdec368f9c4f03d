package digime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncd/syncd/internal/tokens"
)

// Refresh codes syncd sets itself (the others are digi.me's or http_NNN).
const (
	codeNetwork           = "network"
	codeTimeout           = "timeout"
	codeNoRefreshToken    = "no_refresh_token"
	codeJWKS              = "jwks_unavailable"
	codeBadResponse       = "bad_response"
	codeResponseSignature = "response_signature"
	codeUntrustedJKU      = "untrusted_jku"
)

// tokenPayload is the verified payload of an oauth/token response.
type tokenPayload struct {
	AccessToken  tokenField `json:"access_token"`
	RefreshToken tokenField `json:"refresh_token"`
	ConsentID    string     `json:"consentid"`
	TokenType    string     `json:"token_type"`
	jwt.RegisteredClaims
}

type tokenField struct {
	Value     string      `json:"value"`
	ExpiresOn json.Number `json:"expires_on"`
}

// Refresh exchanges t's refresh token for new tokens at oauth/token
// (implements refresher.Provider). It is tried exactly once: the refresher
// owns retries. digi.me rotates the refresh token on every refresh, so
// the key set that verifies the answer is fetched (or found cached) first:
// a JWKS outage then fails the call before the refresh token is spent.
//
// Failures are *tokens.RefreshError: 401 InvalidToken (and InvalidGrant,
// InvalidTokenType, InvalidRefreshToken) is Reauth; InvalidClient,
// InvalidJWT, SDKInvalid, SDKVersionInvalid and a response jku outside
// BaseURL are Config; 429, 5xx, network errors, timeouts, an unavailable
// JWKS, an unparseable answer and a response that fails verification
// (code "response_signature": a man in the middle or a key rotation must
// never flag users) are Transient. RetryAfter carries Retry-After.
//
// The returned token has t's UserID, and t's ConsentID when the answer
// names none; expiries are zero when digi.me gives none (expires_on is in
// seconds, or milliseconds when above 1e11).
func (c *Client) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	log := c.log.With().Str(fieldUser, t.UserID).Str(fieldOp, "refresh").Logger()
	secrets := []string{t.AccessToken, t.RefreshToken}
	if t.RefreshToken == "" {
		re := tokens.NewRefreshError(0, codeNoRefreshToken, 0, errors.New("the token has no refresh token"))
		re.Class = tokens.Reauth
		return tokens.Token{}, re
	}
	if _, err := c.keySet(ctx, &log, c.jwksURL, false); err != nil {
		log.Warn().Err(err).Msg("jwks unavailable; refresh not attempted")
		return tokens.Token{}, tokens.NewRefreshError(0, codeJWKS, 0, err)
	}
	resp, err := c.do(ctx, call{
		op:     "refresh",
		method: http.MethodPost,
		url:    c.endpoint("oauth/token"),
		sign:   true,
		claims: map[string]any{"grant_type": "refresh_token", "refresh_token": t.RefreshToken},
		header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}},
		log:    &log,
	})
	if err != nil {
		return tokens.Token{}, tokens.NewRefreshError(0, transportCode(err), 0, err)
	}
	if !resp.ok() {
		code, msg, _ := parseErrorBody(resp.body)
		var cause error
		if msg != "" {
			cause = errors.New(scrub(msg, secrets...))
		}
		re := tokens.NewRefreshError(resp.status, scrub(code, secrets...), resp.retryAfter, cause)
		if resp.status == http.StatusTooManyRequests || resp.status >= 500 {
			re.Class = tokens.Transient // an outage never flags users, whatever the code
		}
		log.Debug().Int(fieldStatus, resp.status).Str(fieldCode, re.Code).Stringer("class", re.Class).Msg("refresh rejected")
		return tokens.Token{}, re
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(resp.body, &body); err != nil || body.Token == "" {
		return tokens.Token{}, tokens.NewRefreshError(resp.status, codeBadResponse, 0,
			errors.New("oauth/token answer has no token"))
	}
	var p tokenPayload
	if err := c.verifyResponse(ctx, &log, body.Token, &p); err != nil {
		switch {
		case errors.Is(err, errUntrustedJKU):
			log.Error().Err(err).Msg("refresh response names an untrusted key set")
			re := tokens.NewRefreshError(resp.status, codeUntrustedJKU, 0, err)
			re.Class = tokens.Config
			return tokens.Token{}, re
		case errors.Is(err, errJWKSFetch):
			log.Warn().Err(err).Msg("jwks unavailable to verify the refresh response")
			return tokens.Token{}, tokens.NewRefreshError(resp.status, codeJWKS, 0, err)
		case errors.Is(err, errResponseMalformed):
			return tokens.Token{}, tokens.NewRefreshError(resp.status, codeBadResponse, 0, err)
		default:
			log.Error().Err(err).Msg("refresh response failed verification")
			return tokens.Token{}, tokens.NewRefreshError(resp.status, codeResponseSignature, 0, err)
		}
	}
	nt, err := p.token(t)
	if err != nil {
		return tokens.Token{}, tokens.NewRefreshError(resp.status, codeBadResponse, 0, err)
	}
	log.Debug().Time("access_expiry", nt.AccessExpiry).Msg("token refreshed")
	return nt, nil
}

// token maps the payload onto a tokens.Token for old's user.
func (p *tokenPayload) token(old tokens.Token) (tokens.Token, error) {
	if strings.TrimSpace(p.AccessToken.Value) == "" {
		return tokens.Token{}, errors.New("answer has no access_token.value")
	}
	ae, err := epoch(p.AccessToken.ExpiresOn)
	if err != nil {
		return tokens.Token{}, fmt.Errorf("access_token.expires_on: %w", err)
	}
	re, err := epoch(p.RefreshToken.ExpiresOn)
	if err != nil {
		return tokens.Token{}, fmt.Errorf("refresh_token.expires_on: %w", err)
	}
	nt := tokens.Token{
		UserID:        old.UserID,
		AccessToken:   strings.TrimSpace(p.AccessToken.Value),
		RefreshToken:  strings.TrimSpace(p.RefreshToken.Value),
		TokenType:     p.TokenType,
		ConsentID:     p.ConsentID,
		AccessExpiry:  ae,
		RefreshExpiry: re,
	}
	if nt.ConsentID == "" {
		nt.ConsentID = old.ConsentID
	}
	return nt, nil
}

// epoch reads a digi.me expiry: seconds since the epoch, milliseconds when
// above 1e11 (the unit is unconfirmed upstream). Empty and 0 are unknown
// (the zero time).
func epoch(n json.Number) (time.Time, error) {
	if n == "" {
		return time.Time{}, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		return time.Time{}, errors.New("not a number")
	case f < 0:
		return time.Time{}, errors.New("negative")
	case f == 0:
		return time.Time{}, nil
	case f > 1e11:
		f /= 1000
	}
	if f > 253402300799 { // 9999-12-31
		return time.Time{}, errors.New("out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

// transportCode names a transport failure: "timeout" or "network".
func transportCode(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return codeTimeout
	}
	return codeNetwork
}
