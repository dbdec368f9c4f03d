package digimefake

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OnboardPrefix is where the onboarding pages (digi.me's browser UI)
// live on the same server as the API: a client's onboard URL is the
// server's URL plus OnboardPrefix, as its base URL is the server's URL
// plus PathPrefix.
//
// The consent flow works as digi.me's (shared/digime-protocol.md §1–§3):
//
//   - POST oauth/authorize (request JWT with code_challenge, method S256,
//     an absolute http(s) redirect_uri, response_type "code", state; an
//     optional access_token links the library of that user) answers
//     {token: JWT{preauthorization_code}, session}.
//   - POST oauth/token/reference (request JWT with access_token,
//     code_challenge, method S256, redirect_uri, state) answers
//     {token: JWT{reference_code, token_type, expires_on}, session}.
//   - A test "visits" GET OnboardPrefix + "authorize?code=<preauthorization
//     code>" or OnboardPrefix + "user-reauth?code=<reference code>" in
//     place of the user's browser: the page answers 302 to redirect_uri
//     with success=true, state, code (an authorization code) and, on the
//     authorize page, accountReference.
//   - POST oauth/token with grant_type "authorization_code", code and a
//     code_verifier whose S256 is the challenge issues tokens for the
//     consenting library user exactly as Issue does.
//
// Preauthorization, reference and authorization codes are single use
// (a visit or an exchange spends the code whatever its outcome) and
// expire 10 minutes after they were issued, by Options.Clock.
//
// Knobs, as query parameters a test adds to the link before visiting it:
//
//   - user=<name> picks the library user who consents. Default: on
//     user-reauth, and on authorize when oauth/authorize carried an
//     access_token, that token's user; otherwise a fresh "library-<n>".
//   - consent=deny makes the user refuse: the redirect is
//     success=false&errorCode=access_denied, without state or code (the
//     SDK docs list only success and errorCode on failure; digi.me's real
//     error codes are unconfirmed). consent=allow is the default.
//
// An unknown, used or expired code, or an unknown knob value, is answered
// 400 with a plain-text body. The pages are exempt from SetOutage and
// FailRate (they are not the API); Latency applies. The session in the
// consent answers is a random key for the SDKs' benefit; it is not a pull
// session of the fake.
const OnboardPrefix = "/apps/saas/"

const (
	pageAuthorize = "authorize"
	pageReauth    = "user-reauth"

	// codeLifetime: how long preauthorization, reference and authorization
	// codes stay usable.
	codeLifetime = 10 * time.Minute

	preauthPrefix   = "dm-pa-"
	referencePrefix = "dm-rc-"
	authCodePrefix  = "dm-ac-"

	// codesPruneAt: the pending consents and authorization codes are swept
	// of expired entries when either map grows beyond this.
	codesPruneAt = 4096

	codeInvalidRequest     = "InvalidRequest"
	codeInvalidRedirectURI = "InvalidRedirectUri"
	// codeInvalidGrant answers a bad authorization_code grant. It is the
	// code Node SDK v4 knew for OAuth grant failures; what digi.me v1.7
	// answers for a wrong code or verifier is unconfirmed.
	codeInvalidGrant = "InvalidGrant"

	// denyErrorCode is the redirect's errorCode when the user refuses.
	// Unconfirmed: the SDK docs do not list the codes.
	denyErrorCode = "access_denied"
)

// consentReq is a pending consent: a preauthorization code (page
// authorize) or a reference code (page user-reauth) waiting for the
// user's visit.
type consentReq struct {
	page        string
	user        string // the library linked by an access token; "" lets the visit pick
	challenge   string
	redirectURI string
	state       string
	expires     time.Time
}

// authCode is an authorization code waiting for its exchange.
type authCode struct {
	user      string
	challenge string
	expires   time.Time
}

// handleAuthorize serves POST oauth/authorize: a preauthorization code
// for the onboarding page "authorize". An access_token claim, when
// present, must be one the server issued (expired, invalidated or revoked
// is fine: consent happens again in the browser) and links its user's
// library; an unknown one is answered 401 InvalidToken.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	c, ok := s.authenticate(w, r)
	if !ok || !checkConsentRequest(w, r, c) {
		return
	}
	switch {
	case c.ResponseType != "code":
		writeError(w, http.StatusBadRequest, codeInvalidRequest, `response_type must be "code"`)
		return
	case c.ResponseMode != "" && c.ResponseMode != "query":
		writeError(w, http.StatusBadRequest, codeInvalidRequest, `response_mode must be "query"`)
		return
	}
	s.mu.Lock()
	user := ""
	if c.AccessToken != "" {
		rec := s.access[c.AccessToken]
		if rec == nil {
			s.mu.Unlock()
			writeError(w, http.StatusUnauthorized, codeInvalidToken, msgAccessInvalid)
			return
		}
		user = rec.user
	}
	code, _ := s.addConsentLocked(preauthPrefix, pageAuthorize, user, c)
	s.stats.Authorizations++
	s.mu.Unlock()
	s.writeConsent(w, r, jwt.MapClaims{"preauthorization_code": code})
}

// handleReference serves POST oauth/token/reference: a reference code for
// the onboarding page "user-reauth". The access_token claim must be one
// the server issued; expired is fine, but one stopped by InvalidateAccess,
// issued before a Revoke of its user or belonging to a token family
// revoked for refresh token reuse is answered 401 InvalidToken "The
// token (access_token) is invalid", as is an unknown one.
func (s *Server) handleReference(w http.ResponseWriter, r *http.Request) {
	c, ok := s.authenticate(w, r)
	if !ok || !checkConsentRequest(w, r, c) {
		return
	}
	s.mu.Lock()
	rec := s.access[c.AccessToken]
	if c.AccessToken == "" || rec == nil || rec.invalid || rec.revoked || rec.fam.revoked {
		s.mu.Unlock()
		writeError(w, http.StatusUnauthorized, codeInvalidToken, msgAccessInvalid)
		return
	}
	code, expires := s.addConsentLocked(referencePrefix, pageReauth, rec.user, c)
	s.stats.References++
	s.mu.Unlock()
	s.writeConsent(w, r, jwt.MapClaims{
		"reference_code": code,
		"token_type":     "Bearer", // unconfirmed: the iOS SDK reads it, nothing says what it holds
		"expires_on":     expires.Unix(),
	})
}

// checkConsentRequest checks what oauth/authorize and
// oauth/token/reference share: the agent body, the S256 challenge, an
// absolute http(s) redirect_uri and a state. On failure it answers 400 and
// returns false.
func checkConsentRequest(w http.ResponseWriter, r *http.Request, c *requestClaims) bool {
	if !checkAgent(w, r) {
		return false
	}
	if c.CodeChallengeMethod != "S256" {
		writeError(w, http.StatusBadRequest, codeInvalidRequest, `code_challenge_method must be "S256"`)
		return false
	}
	if b, err := base64.RawURLEncoding.DecodeString(c.CodeChallenge); err != nil || len(b) != sha256.Size {
		writeError(w, http.StatusBadRequest, codeInvalidRequest, "code_challenge must be base64url(SHA-256(code_verifier)) without padding")
		return false
	}
	if u, err := url.Parse(c.RedirectURI); err != nil || (u.Scheme != "http" && u.Scheme != "https") ||
		u.Host == "" || u.Fragment != "" {
		writeError(w, http.StatusBadRequest, codeInvalidRedirectURI, "The redirect_uri ("+c.RedirectURI+") is invalid")
		return false
	}
	if c.State == "" {
		writeError(w, http.StatusBadRequest, codeInvalidRequest, "state is missing")
		return false
	}
	return true
}

// addConsentLocked records a pending consent for page and returns its
// code and expiry.
func (s *Server) addConsentLocked(prefix, page, user string, c *requestClaims) (string, time.Time) {
	now := s.opt.Clock.Now()
	if len(s.consents) >= codesPruneAt {
		for k, cr := range s.consents {
			if !now.Before(cr.expires) {
				delete(s.consents, k)
			}
		}
	}
	code := prefix + rand.Text()
	expires := now.Add(codeLifetime)
	s.consents[code] = &consentReq{
		page: page, user: user, challenge: c.CodeChallenge,
		redirectURI: c.RedirectURI, state: c.State, expires: expires,
	}
	s.secrets = append(s.secrets, code)
	return code, expires
}

// writeConsent answers 200 {token, session} with claims signed like a
// token response.
func (s *Server) writeConsent(w http.ResponseWriter, r *http.Request, claims jwt.MapClaims) {
	signed, err := s.signClaims(r, claims)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalServerError", "sign token: "+err.Error())
		return
	}
	expiry := s.opt.Clock.Now().Add(sessionLifetime).UnixMilli()
	writeJSON(w, http.StatusOK, map[string]any{
		"token":   signed,
		"session": sessionInfo{Key: rand.Text(), Expiry: expiry},
	})
}

// handleOnboard serves an onboarding page (see OnboardPrefix): it spends
// the code, simulates the user's answer and redirects to the consent's
// redirect_uri.
func (s *Server) handleOnboard(page string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		consent := q.Get("consent")
		if consent != "" && consent != "allow" && consent != "deny" {
			http.Error(w, `digimefake: consent must be "allow" or "deny"`, http.StatusBadRequest)
			return
		}
		if st := q.Get("sourceType"); page == pageAuthorize && st != "" && st != "pull" && st != "push" {
			http.Error(w, `digimefake: sourceType must be "pull" or "push"`, http.StatusBadRequest)
			return
		}
		code := q.Get("code")
		s.mu.Lock()
		now := s.opt.Clock.Now()
		cr := s.consents[code]
		if cr == nil || cr.page != page {
			s.mu.Unlock()
			http.Error(w, "digimefake: unknown or used code", http.StatusBadRequest)
			return
		}
		delete(s.consents, code) // single use
		if !now.Before(cr.expires) {
			s.mu.Unlock()
			http.Error(w, "digimefake: the code has expired", http.StatusBadRequest)
			return
		}
		if consent == "deny" {
			s.stats.Denials++
			s.mu.Unlock()
			http.Redirect(w, r, withQuery(cr.redirectURI, url.Values{
				"success": {"false"}, "errorCode": {denyErrorCode},
			}), http.StatusFound)
			return
		}
		user := q.Get("user")
		if user == "" {
			user = cr.user
		}
		if user == "" {
			user = s.freshLibraryLocked()
		}
		s.user(user) // the library exists from now on
		ac := s.addAuthCodeLocked(user, cr.challenge, now)
		s.stats.Consents++
		s.mu.Unlock()
		params := url.Values{"success": {"true"}, "state": {cr.state}, "code": {ac}}
		if page == pageAuthorize {
			params.Set("accountReference", "fake-account-"+strings.ToLower(rand.Text()[:12]))
		}
		http.Redirect(w, r, withQuery(cr.redirectURI, params), http.StatusFound)
	}
}

// freshLibraryLocked names a library user nobody has: "library-<n>".
func (s *Server) freshLibraryLocked() string {
	for {
		s.libraries++
		name := fmt.Sprintf("library-%d", s.libraries)
		if _, taken := s.users[name]; !taken {
			return name
		}
	}
}

// addAuthCodeLocked issues an authorization code for user.
func (s *Server) addAuthCodeLocked(user, challenge string, now time.Time) string {
	if len(s.authCodes) >= codesPruneAt {
		for k, ac := range s.authCodes {
			if !now.Before(ac.expires) {
				delete(s.authCodes, k)
			}
		}
	}
	code := authCodePrefix + rand.Text()
	s.authCodes[code] = &authCode{user: user, challenge: challenge, expires: now.Add(codeLifetime)}
	s.secrets = append(s.secrets, code)
	return code
}

// withQuery adds params to the query of a redirect URI (validated when
// the consent was requested).
func withQuery(redirectURI string, params url.Values) string {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return redirectURI
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// exchange serves the authorization_code grant of POST oauth/token: the
// code must be live (it is spent by this attempt, whatever its outcome)
// and S256(code_verifier) its challenge, with the verifier 43 to 128
// unreserved characters (RFC 7636). Then it issues tokens for the
// consenting user as Issue does, so the user's files and a Revoke's end
// are as after Issue. A missing code or verifier is answered 400
// InvalidRequest; anything else wrong 400 InvalidGrant.
func (s *Server) exchange(w http.ResponseWriter, r *http.Request, c *requestClaims) {
	if c.Code == "" || c.CodeVerifier == "" {
		s.mu.Lock()
		s.stats.ExchangeRejected++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, codeInvalidRequest, "code and code_verifier are required")
		return
	}
	s.mu.Lock()
	now := s.opt.Clock.Now()
	ac := s.authCodes[c.Code]
	delete(s.authCodes, c.Code)
	msg := ""
	switch {
	case ac == nil:
		msg = "The authorization code is invalid or was used"
	case !now.Before(ac.expires):
		msg = "The authorization code is expired"
	case !validVerifier(c.CodeVerifier) || s256(c.CodeVerifier) != ac.challenge:
		msg = "The code_verifier does not match the code_challenge"
	}
	if msg != "" {
		s.stats.ExchangeRejected++
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, codeInvalidGrant, msg)
		return
	}
	t := s.grantLocked(ac.user, now)
	s.stats.Exchanges++
	s.mu.Unlock()
	s.writeTokens(w, r, t)
}

// s256 is the PKCE S256 challenge of a verifier.
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validVerifier: 43 to 128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, r := range v {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("-._~", r):
		default:
			return false
		}
	}
	return true
}
