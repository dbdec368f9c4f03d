package oauth2

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	xoauth2 "golang.org/x/oauth2"

	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// Codes for refresh failures that have no OAuth error code.
const (
	// CodeInvalidResponse: the token endpoint answered 2xx with something
	// that is not a usable token response. Transient: it is usually a
	// proxy or an endpoint having a bad moment, and never the user's fault.
	CodeInvalidResponse = "invalid_response"
	// CodeNoRefreshToken: the token has no refresh token (Reauth).
	CodeNoRefreshToken = "no_refresh_token"
	// CodeTimeout: the call timed out (Transient).
	CodeTimeout = "timeout"
)

// maxLifetime bounds expires_in and refresh_token_expires_in (100 years).
const maxLifetime = 100 * 365 * 24 * time.Hour

var (
	errNoRefreshToken  = errors.New("token has no refresh token")
	errInvalidResponse = errors.New("token endpoint answered 2xx without a usable token")
)

// Refresh exchanges t's refresh token for a new token (RFC 6749 §6). It
// implements refresher.Provider.
//
// The new token keeps t's UserID and ConsentID. When the response omits
// refresh_token, the old refresh token (and its expiry) is kept.
// AccessExpiry comes from expires_in, zero when the response has none;
// RefreshExpiry from refresh_token_expires_in. Both count from when the
// request was sent.
//
// Failures are *tokens.RefreshError built with tokens.NewRefreshError: the
// RFC 6749 error code decides the class (invalid_grant: Reauth;
// invalid_client, unauthorized_client, unsupported_grant_type: Config;
// anything else, no code, network errors and timeouts: Transient), and
// Retry-After (seconds or an HTTP date) is carried over. The error holds
// the status and the code only, never the response body.
func (c *Client) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	if t.RefreshToken == "" {
		return tokens.Token{}, &tokens.RefreshError{Class: tokens.Reauth, Code: CodeNoRefreshToken, Err: errNoRefreshToken}
	}
	start := c.clock.Now()
	hctx := context.WithValue(ctx, xoauth2.HTTPClient, c.tokenHTTP)
	// An empty access token is never valid, so Token always refreshes.
	xt, err := c.oauth.TokenSource(hctx, &xoauth2.Token{RefreshToken: t.RefreshToken, Expiry: start.Add(-time.Hour)}).Token()
	if err != nil {
		return tokens.Token{}, c.refreshError(ctx, err)
	}
	nt, ok := newToken(t.UserID, xt, start)
	if !ok {
		return tokens.Token{}, tokens.NewRefreshError(0, CodeInvalidResponse, 0, errInvalidResponse)
	}
	nt.ConsentID = t.ConsentID
	rotated := nt.RefreshToken != "" && nt.RefreshToken != t.RefreshToken
	if !rotated {
		// x/oauth2 already fills in the old value; say it here too.
		nt.RefreshToken = t.RefreshToken
		if nt.RefreshExpiry.IsZero() {
			nt.RefreshExpiry = t.RefreshExpiry
		}
	}
	c.log.Debug().Str(fieldUser, t.UserID).Bool(fieldRotated, rotated).Time(fieldExpiry, nt.AccessExpiry).Msg("token refreshed")
	return nt, nil
}

// newToken maps a token response to user's tokens.Token: the access and
// refresh token and the token type as sent, AccessExpiry from expires_in
// and RefreshExpiry from refresh_token_expires_in, both counted from
// start (when the request was sent) and zero when absent. ok is false
// when a token value cannot go into an Authorization header.
func newToken(user string, xt *xoauth2.Token, start time.Time) (tokens.Token, bool) {
	if !tokenChars(xt.AccessToken) || !tokenChars(xt.RefreshToken) {
		return tokens.Token{}, false
	}
	t := tokens.Token{
		UserID:       user,
		AccessToken:  xt.AccessToken,
		RefreshToken: xt.RefreshToken,
		TokenType:    xt.TokenType,
	}
	if d, ok := lifetime(xt.Extra("expires_in")); ok {
		t.AccessExpiry = start.Add(d)
	}
	if d, ok := lifetime(xt.Extra("refresh_token_expires_in")); ok {
		t.RefreshExpiry = start.Add(d)
	}
	return t, true
}

// endpointFailure is a failed token endpoint call reduced to what may be
// shown.
type endpointFailure struct {
	status     int    // 0 without an answer
	code       string // the sanitized RFC 6749 error code, CodeTimeout, CodeInvalidResponse or ""
	retryAfter time.Duration
	err        error // the cause of a failure without an OAuth error answer, else nil
}

// classify reads a failed token endpoint call without ever using
// RetrieveError.Error, which quotes the response body, or the url.Error's
// URL.
func (c *Client) classify(ctx context.Context, err error) endpointFailure {
	if re, ok := errors.AsType[*xoauth2.RetrieveError](err); ok {
		f := endpointFailure{code: errorCode(re.ErrorCode)}
		if re.Response != nil {
			f.status = re.Response.StatusCode
			f.retryAfter, _ = provider.ParseRetryAfter(re.Response.Header.Get("Retry-After"), c.clock.Now())
		}
		return f
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		// Drop the URL and keep the cause (dial, TLS, timeout, context).
		f := endpointFailure{err: ue.Err}
		if ue.Timeout() {
			f.code = CodeTimeout
		}
		return f
	}
	if cerr := ctx.Err(); cerr != nil {
		return endpointFailure{err: cerr}
	}
	// x/oauth2's parse errors can quote bits of the body: replace them.
	return endpointFailure{code: CodeInvalidResponse, err: errInvalidResponse}
}

// refreshError classifies a failed refresh.
func (c *Client) refreshError(ctx context.Context, err error) error {
	f := c.classify(ctx, err)
	return tokens.NewRefreshError(f.status, f.code, f.retryAfter, f.err)
}

// lifetime reads a seconds value from a token response as x/oauth2 hands
// it over (float64 from JSON, int64 or string from a form body). Absent,
// zero, negative, or out of range: ok is false.
func lifetime(v any) (time.Duration, bool) {
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case int64:
		f = float64(v)
	case json.Number:
		var err error
		if f, err = v.Float64(); err != nil {
			return 0, false
		}
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	if math.IsNaN(f) || f <= 0 || f > maxLifetime.Seconds() {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// errorCode keeps a provider error code only if it looks like one (RFC
// 6749 §5.2 codes are short ASCII words), so nothing else a server put
// there reaches errors, logs or metric labels.
func errorCode(code string) string {
	if code == "" || len(code) > 64 {
		return ""
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return ""
		}
	}
	return code
}

// tokenChars reports whether s can go into an Authorization header: RFC
// 6749 token values are printable ASCII.
func tokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// scopeTransport adds scope to refresh requests: x/oauth2 sends it only
// with the authorization-code and password grants.
type scopeTransport struct {
	base  http.RoundTripper // nil: http.DefaultTransport
	scope string
}

func (t *scopeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.base
	if base == nil {
		base = http.DefaultTransport
	}
	if req.Body == nil {
		return base.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, errors.New("read token request body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errors.New("token request body is not a form")
	}
	form.Set("scope", t.scope)
	enc := form.Encode()
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(strings.NewReader(enc))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(enc)), nil }
	r.ContentLength = int64(len(enc))
	return base.RoundTrip(r)
}
