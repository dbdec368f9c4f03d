package authflow

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
	xoauth2 "golang.org/x/oauth2"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// Flows a link starts.
const (
	FlowAuthorize   = "authorize"
	FlowReauthorize = "reauthorize"
)

// Event reasons written for refused callbacks; the detail follows a colon.
const (
	ReasonAuthorizeFailed = "authorization_failed"
)

// DefaultStateTTL is how long a link can be used.
const DefaultStateTTL = 15 * time.Minute

// expiredGrace is how long an expired state is kept after its TTL, so a
// late callback is told "expired" rather than "unknown".
const expiredGrace = time.Hour

// maxStateLen bounds a caller's state.
const maxStateLen = 256

// Store is what the flow keeps in Redis (implemented by redisstore).
type Store interface {
	// PutAuthState stores blob under state for ttl unless the state is
	// taken (false).
	PutAuthState(ctx context.Context, state string, blob []byte, ttl time.Duration) (bool, error)
	// TakeAuthState reads and deletes state's blob (nil when none) and
	// says how long it had left.
	TakeAuthState(ctx context.Context, state string) ([]byte, time.Duration, error)
	Load(ctx context.Context, user string) (tokens.Record, error)
	// Note appends a non-transition event for user.
	Note(ctx context.Context, user, reason string, now time.Time) error
}

// Provider is one configured provider as the flow sees it.
type Provider struct {
	// Authorizer is nil for a provider without a consent flow (fake).
	Authorizer provider.Authorizer
	// DefaultLifetime applies when the exchanged token has no expiry.
	DefaultLifetime time.Duration
}

// Options configure a Flow.
type Options struct {
	Store     Store
	Keys      *tokens.Keyring
	Providers map[string]Provider
	// Put stores an exchanged token as `token put` does: the user becomes
	// active, leaves the re-auth queue and is scheduled for every job.
	// reason (tokens.ReasonAuthorized or ReasonReauthorized) goes to the
	// events stream. It returns the user's state as stored.
	Put func(ctx context.Context, provider string, tok tokens.Token, reason string) (tokens.State, error)
	// StateTTL is how long a link stays usable; default DefaultStateTTL.
	StateTTL time.Duration
	// RedirectURI is used when a request names none (links syncd makes on
	// its own: `reauth list --links`, the re-auth webhook).
	RedirectURI string
	// AllowedRedirectURIs, when not empty, are the only redirect URIs a
	// request may name besides RedirectURI, compared after
	// NormalizeRedirectURI. Empty allows any absolute URI (the provider
	// still checks its own registration).
	AllowedRedirectURIs []string
	Clock               clock.Clock
	Logger              zerolog.Logger
	Metrics             *Metrics
}

// Flow starts and finishes authorizations. Safe for concurrent use.
type Flow struct {
	opt Options
	log zerolog.Logger
	// allowed is the normalised allow-list (RedirectURI included); nil
	// allows any redirect URI.
	allowed map[string]bool
}

// New returns a Flow.
func New(opt Options) *Flow {
	if opt.StateTTL <= 0 {
		opt.StateTTL = DefaultStateTTL
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	f := &Flow{opt: opt, log: opt.Logger.With().Str("component", "authflow").Logger()}
	if len(opt.AllowedRedirectURIs) > 0 {
		f.allowed = map[string]bool{}
		for _, u := range append([]string{opt.RedirectURI}, opt.AllowedRedirectURIs...) {
			if n, err := NormalizeRedirectURI(u); err == nil {
				f.allowed[n] = true
			}
		}
	}
	return f
}

// Request asks for a link.
type Request struct {
	User string `json:"-"`
	// Provider names the provider; "" when only one is configured (for
	// Reauthorize, the user's own provider is used).
	Provider    string `json:"provider,omitempty"`
	RedirectURI string `json:"redirect_uri,omitempty"`
	// State is the caller's state; "" lets syncd choose a random one.
	State string `json:"state,omitempty"`
}

// Link is a consent link to send the user to.
type Link struct {
	User      string    `json:"user"`
	Provider  string    `json:"provider"`
	Flow      string    `json:"flow"`
	URL       string    `json:"url"`
	State     string    `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Callback is what the provider sent to the redirect URI.
type Callback struct {
	State string
	Code  string
	// Error is the provider's refusal (OAuth2 error, digi.me errorCode, or
	// "access_denied" for digi.me success=false without a code).
	Error            string
	ErrorDescription string
}

// ParseCallback reads a redirect's query: OAuth2 (code, state, error,
// error_description) and digi.me (success, errorCode).
func ParseCallback(q url.Values) Callback {
	c := Callback{State: q.Get("state"), Code: q.Get("code"), Error: q.Get("error"), ErrorDescription: q.Get("error_description")}
	if c.Error == "" {
		c.Error = q.Get("errorCode")
	}
	if c.Error == "" && q.Get("success") == "false" {
		c.Error = "access_denied"
	}
	return c
}

// Result is a finished authorization.
type Result struct {
	User     string       `json:"user"`
	Provider string       `json:"provider"`
	Flow     string       `json:"flow"`
	State    tokens.State `json:"state"`
}

// pending is what a state holds, sealed.
type pending struct {
	User        string `json:"user"`
	Provider    string `json:"provider"`
	Flow        string `json:"flow"`
	Verifier    string `json:"verifier"`
	RedirectURI string `json:"redirect_uri"`
	ExpiresAt   int64  `json:"expires_at"` // unix ms
}

type sealed struct {
	KeyID string `json:"kid"`
	Data  []byte `json:"data"`
}

// aad binds a sealed pending authorization to its state.
func aad(state string) string { return "authstate:" + state }

// Authorize returns a link that starts consent for req.User.
func (f *Flow) Authorize(ctx context.Context, req Request) (Link, error) {
	if err := tokens.ValidateUserID(req.User); err != nil { // consent may create the user
		return Link{}, errorf(KindBadRequest, "user: %w", err)
	}
	name, p, err := f.check(&req)
	if err != nil {
		return Link{}, err
	}
	return f.start(ctx, req, name, p, FlowAuthorize, "")
}

// Reauthorize returns a recovery link for a user in reauth_required: the
// provider's recovery flow when it has one (digi.me), falling back to a
// full authorization when the provider refuses the old access token.
func (f *Flow) Reauthorize(ctx context.Context, req Request) (Link, error) {
	if err := tokens.ValidateExistingUserID(req.User); err != nil {
		return Link{}, errorf(KindBadRequest, "user: %w", err)
	}
	rec, err := f.opt.Store.Load(ctx, req.User)
	if errors.Is(err, tokens.ErrNotFound) {
		return Link{}, errorf(KindNotFound, "user %q has no token: use authorize", req.User)
	}
	if err != nil {
		return Link{}, err
	}
	if rec.State != tokens.ReauthRequired {
		return Link{}, errorf(KindConflict, "user %q is %s, not reauth_required: use authorize for a new consent", req.User, rec.State)
	}
	req.Provider = rec.Provider
	name, p, err := f.check(&req)
	if err != nil {
		return Link{}, err
	}
	var access string
	if _, ok := p.Authorizer.(provider.Reauthorizer); ok && len(rec.Ciphertext) > 0 {
		if tok, err := f.opt.Keys.OpenRecord(rec); err != nil {
			f.log.Warn().Err(err).Str("user", req.User).Msg("cannot open the stored token; making a full authorization link")
		} else {
			access = tok.AccessToken
		}
	}
	return f.start(ctx, req, name, p, FlowReauthorize, access)
}

// check validates a request and picks its provider.
func (f *Flow) check(req *Request) (string, Provider, error) {
	if err := tokens.ValidateExistingUserID(req.User); err != nil {
		return "", Provider{}, errorf(KindBadRequest, "user: %w", err)
	}
	if req.RedirectURI == "" {
		req.RedirectURI = f.opt.RedirectURI
	}
	if req.RedirectURI == "" {
		return "", Provider{}, errorf(KindBadRequest, "redirect_uri: required (or set authorize.redirect_uri)")
	}
	n, err := NormalizeRedirectURI(req.RedirectURI)
	if err != nil {
		return "", Provider{}, errorf(KindBadRequest, "redirect_uri: %q is not an absolute URI without a fragment", req.RedirectURI)
	}
	if f.allowed != nil && !f.allowed[n] {
		return "", Provider{}, errorf(KindBadRequest, "redirect_uri: %q is not in authorize.allowed_redirect_uris", req.RedirectURI)
	}
	if req.State != "" {
		if err := checkState(req.State); err != nil {
			return "", Provider{}, err
		}
	}
	name := req.Provider
	if name == "" {
		if len(f.opt.Providers) != 1 {
			return "", Provider{}, errorf(KindBadRequest, "provider: required, %d providers are configured", len(f.opt.Providers))
		}
		for n := range f.opt.Providers {
			name = n
		}
	}
	p, ok := f.opt.Providers[name]
	if !ok {
		return "", Provider{}, errorf(KindBadRequest, "provider: %q is not configured", name)
	}
	if p.Authorizer == nil {
		return "", Provider{}, errorf(KindBadRequest, "provider: %q has no consent flow (kind fake)", name)
	}
	return name, p, nil
}

// NormalizeRedirectURI returns raw in the form allow-list entries are
// compared in: scheme and host lower-cased, the scheme's default port
// (http 80, https 443) dropped; path and query are kept exactly (they are
// case-sensitive, and a provider compares them exactly). raw must be an
// absolute URI without a fragment.
func NormalizeRedirectURI(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(raw, "#") || (u.Host == "" && u.Opaque == "" && u.Path == "") {
		return "", errors.New("not an absolute URI without a fragment")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
		u.Host = strings.TrimSuffix(u.Host, ":"+p)
	}
	return u.String(), nil
}

// Caller-chosen states: the state is the only secret of a pending
// consent until its callback, so it must be unguessable.
const (
	minStateLen      = 32
	minStateDistinct = 8
)

// checkState refuses a caller's state that is short, outside the
// base64url alphabet or plainly low-entropy (a few characters repeated).
// It never echoes the state.
func checkState(s string) error {
	if len(s) < minStateLen || len(s) > maxStateLen {
		return errorf(KindBadRequest, "state: %d characters, want %d to %d of A-Z a-z 0-9 _ - (or none: syncd picks a random one)", len(s), minStateLen, maxStateLen)
	}
	var seen [128]bool
	distinct := 0
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return errorf(KindBadRequest, "state: want only A-Z a-z 0-9 _ - (or none: syncd picks a random one)")
		}
		if !seen[c] {
			seen[c], distinct = true, distinct+1
		}
	}
	if distinct < minStateDistinct {
		return errorf(KindBadRequest, "state: %d distinct characters, want at least %d: use a random state (or none: syncd picks one)", distinct, minStateDistinct)
	}
	return nil
}

func randomState() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// start asks the provider for the link, then keeps the verifier under
// the state (only after the provider answered: a failed call leaves
// nothing behind).
func (f *Flow) start(ctx context.Context, req Request, name string, p Provider, flow, access string) (Link, error) {
	if req.State == "" {
		req.State = randomState()
	}
	verifier := xoauth2.GenerateVerifier()
	ar := provider.AuthRequest{User: req.User, RedirectURI: req.RedirectURI, State: req.State,
		CodeChallenge: xoauth2.S256ChallengeFromVerifier(verifier)}
	var link string
	var err error
	if access != "" {
		link, err = p.Authorizer.(provider.Reauthorizer).ReauthorizeURL(ctx, ar, access)
		if errors.Is(err, provider.ErrAccessTokenInvalid) {
			f.log.Info().Str("user", req.User).Msg("provider refused the old access token; making a full authorization link")
			flow = FlowAuthorize
			link, err = p.Authorizer.AuthorizeURL(ctx, ar)
		}
	} else {
		link, err = p.Authorizer.AuthorizeURL(ctx, ar)
	}
	if err != nil {
		return Link{}, providerError(err)
	}
	now := f.opt.Clock.Now()
	exp := now.Add(f.opt.StateTTL)
	pt, err := json.Marshal(pending{User: req.User, Provider: name, Flow: flow, Verifier: verifier,
		RedirectURI: req.RedirectURI, ExpiresAt: exp.UnixMilli()})
	if err != nil {
		return Link{}, err
	}
	kid, ct, err := f.opt.Keys.Seal(aad(req.State), pt)
	if err != nil {
		return Link{}, err
	}
	blob, err := json.Marshal(sealed{KeyID: kid, Data: ct})
	if err != nil {
		return Link{}, err
	}
	ok, err := f.opt.Store.PutAuthState(ctx, req.State, blob, f.opt.StateTTL+expiredGrace)
	if err != nil {
		return Link{}, err
	}
	if !ok {
		return Link{}, errorf(KindConflict, "state: %q is already in use", req.State)
	}
	f.opt.Metrics.link(name, flow)
	f.log.Info().Str("user", req.User).Str("provider", name).Str("flow", flow).Msg("authorization link issued")
	return Link{User: req.User, Provider: name, Flow: flow, URL: link, State: req.State, ExpiresAt: exp.UTC()}, nil
}

// Finish exchanges a callback's code for the user's token and stores it.
// A refused consent, an unknown, used or expired state and a code the
// provider rejects change nothing but the events stream. When the provider
// is unavailable the state is put back, so the callback can be retried.
func (f *Flow) Finish(ctx context.Context, cb Callback) (Result, error) {
	res, err := f.finish(ctx, cb)
	f.opt.Metrics.callback(err)
	return res, err
}

func (f *Flow) finish(ctx context.Context, cb Callback) (Result, error) {
	if cb.State == "" && cb.Error != "" {
		// digi.me's failure redirect carries no state: nothing to match.
		return Result{}, errorf(KindDenied, "consent refused by the provider: %s", safeCode(cb.Error))
	}
	if cb.State == "" {
		return Result{}, errorf(KindBadRequest, "state: missing from the callback")
	}
	if cb.Error == "" && cb.Code == "" {
		return Result{}, errorf(KindBadRequest, "code: missing from the callback (and no error given)")
	}
	if len(cb.State) > maxStateLen {
		return Result{}, errorf(KindStateUnknown, "state: unknown, expired or already used")
	}
	blob, left, err := f.opt.Store.TakeAuthState(ctx, cb.State)
	if err != nil {
		return Result{}, err
	}
	if blob == nil {
		return Result{}, errorf(KindStateUnknown, "state: unknown, expired or already used")
	}
	var p pending
	if err := f.open(cb.State, blob, &p); err != nil {
		f.log.Error().Err(err).Msg("a stored authorization state cannot be opened; it is dropped")
		return Result{}, errorf(KindStateUnknown, "state: unreadable (was the encryption key removed?); start again")
	}
	now := f.opt.Clock.Now()
	res := Result{User: p.User, Provider: p.Provider, Flow: p.Flow}
	if now.UnixMilli() >= p.ExpiresAt {
		f.note(ctx, p.User, "state_expired", now)
		return res, errorf(KindStateExpired, "state: expired at %s; start the authorization again", time.UnixMilli(p.ExpiresAt).UTC().Format(time.RFC3339))
	}
	if cb.Error != "" {
		code := safeCode(cb.Error)
		f.note(ctx, p.User, code, now)
		return res, errorf(KindDenied, "consent refused by the provider: %s", code)
	}
	prov, ok := f.opt.Providers[p.Provider]
	if !ok || prov.Authorizer == nil {
		return res, errorf(KindBadRequest, "provider: %q is no longer configured", p.Provider)
	}
	tok, err := prov.Authorizer.Exchange(ctx, provider.ExchangeRequest{User: p.User, Code: cb.Code, Verifier: p.Verifier, RedirectURI: p.RedirectURI})
	if err != nil {
		var pe *provider.Error
		if errors.As(err, &pe) && pe.Permanent {
			f.note(ctx, p.User, "code_rejected", now)
			return res, errorf(KindRejected, "the provider rejected the code: %w", err)
		}
		// The provider did not answer: put the state back for a retry.
		if left > 0 {
			if _, perr := f.opt.Store.PutAuthState(ctx, cb.State, blob, left); perr != nil {
				f.log.Warn().Err(perr).Msg("could not put the authorization state back")
			}
		}
		return res, providerError(err)
	}
	tok.UserID = p.User
	if tok.AccessExpiry.IsZero() {
		tok.AccessExpiry = now.Add(prov.DefaultLifetime)
	}
	reason := tokens.ReasonAuthorized
	if p.Flow == FlowReauthorize {
		reason = tokens.ReasonReauthorized
	}
	st, err := f.opt.Put(ctx, p.Provider, tok, reason)
	if err != nil {
		return res, fmt.Errorf("store the exchanged token: %w", err)
	}
	res.State = st
	f.log.Info().Str("user", p.User).Str("provider", p.Provider).Str("flow", p.Flow).Msg("authorization finished; token stored")
	return res, nil
}

func (f *Flow) open(state string, blob []byte, into *pending) error {
	var s sealed
	if err := json.Unmarshal(blob, &s); err != nil {
		return errors.New("malformed sealed state")
	}
	pt, err := f.opt.Keys.Open(aad(state), s.KeyID, s.Data)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(pt, into); err != nil {
		return errors.New("malformed state payload")
	}
	return nil
}

func (f *Flow) note(ctx context.Context, user, detail string, now time.Time) {
	if err := f.opt.Store.Note(ctx, user, ReasonAuthorizeFailed+": "+detail, now); err != nil {
		f.log.Warn().Err(err).Msg("could not record the event")
	}
	f.log.Warn().Str("user", user).Str("reason", detail).Msg("authorization refused")
}

// safeCode keeps an error code the provider sent printable and short: it
// comes from a URL anyone can craft.
func safeCode(s string) string {
	b := make([]byte, 0, min(len(s), 64))
	for _, c := range []byte(s) {
		if len(b) == 64 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "unknown_error"
	}
	return string(b)
}
