package oauth2fake

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// CodeLifetime is how long an authorization code can be exchanged (by
// Options.Clock).
const CodeLifetime = 10 * time.Minute

// Knobs: query parameters a test adds to an authorization link before
// "visiting" it. They are not part of OAuth.
const (
	// KnobUser names the user who consents; default a fresh "user-<n>".
	KnobUser = "user"
	// KnobConsent set to ConsentDeny makes the user refuse; "" or
	// ConsentAllow consents.
	KnobConsent = "consent"
	// ConsentAllow and ConsentDeny are the values of KnobConsent.
	ConsentAllow = "allow"
	ConsentDeny  = "deny"
)

const (
	codePrefix = "o2-ac-"
	grantCode  = "authorization_code"
	methodS256 = "S256"
)

// authCode is an issued authorization code.
type authCode struct {
	user      string
	redirect  string
	challenge string // "" when issued without PKCE (AllowNoPKCE)
	expires   time.Time
	spent     bool
}

// LastAuthorize returns the query of the last GET /authorize (whatever
// its outcome, knobs included), nil before the first one.
func (s *Server) LastAuthorize() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneValues(s.lastAuth)
}

// serveAuthorize is the authorization endpoint (RFC 6749 §4.1.1, RFC 7636
// §4.3). Consent is given (or refused, see KnobConsent) at once: the
// answer is a 302 to the redirect URI with code and state, or with error
// and state (§4.1.2.1). A bad client_id or redirect_uri is answered 400
// text/plain without a redirect, as is a bad knob.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	s.lastAuth = cloneValues(q)
	s.mu.Unlock()

	if len(q["client_id"]) != 1 || !equal(q.Get("client_id"), s.opt.ClientID) {
		plainError(w, "unknown client_id")
		return
	}
	redirect, ok := redirectURI(q["redirect_uri"])
	if !ok {
		plainError(w, "redirect_uri must be one absolute http or https URL without a fragment")
		return
	}
	user, consent := q.Get(KnobUser), q.Get(KnobConsent)
	if consent != "" && consent != ConsentAllow && consent != ConsentDeny {
		plainError(w, "knob "+KnobConsent+" must be "+ConsentAllow+" or "+ConsentDeny)
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		redirectTo(w, redirect, url.Values{"error": {code}, "error_description": {desc}}, state)
	}
	for k, v := range q {
		if len(v) > 1 {
			fail("invalid_request", "parameter "+k+" repeated")
			return
		}
	}
	switch q.Get("response_type") {
	case "code":
	case "":
		fail("invalid_request", "response_type is missing")
		return
	default:
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "" && method != "":
		fail("invalid_request", "code_challenge_method without code_challenge")
		return
	case challenge == "":
		if !s.opt.AllowNoPKCE {
			fail("invalid_request", "code_challenge is required")
			return
		}
	case method != methodS256:
		// RFC 7636 §4.3: no method means plain, refused like plain.
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case !pkceValue(challenge):
		fail("invalid_request", "malformed code_challenge")
		return
	}
	if consent == ConsentDeny {
		fail("access_denied", "the user refused consent")
		return
	}

	s.mu.Lock()
	if user == "" {
		s.users++
		user = "user-" + strconv.Itoa(s.users)
	}
	code := s.random(codePrefix)
	s.codes[code] = &authCode{
		user:      user,
		redirect:  redirect,
		challenge: challenge,
		expires:   s.opt.Clock.Now().Add(CodeLifetime),
	}
	s.stats.Authorizations++
	s.mu.Unlock()
	redirectTo(w, redirect, url.Values{"code": {code}}, state)
}

// exchange runs the authorization_code grant (RFC 6749 §4.1.3, RFC 7636
// §4.6) for an authenticated client. Any request that names a known code
// spends it; a spent code presented again also revokes the tokens issued
// from it (RFC 6749 §4.1.2).
func (s *Server) exchange(form url.Values) (tokenResponse, *oauthError) {
	v := form.Get("code")
	if v == "" {
		return tokenResponse{}, badRequest("code is missing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[v]
	switch {
	case !ok:
		return tokenResponse{}, badGrant("unknown authorization code")
	case c.spent:
		s.revokeCodeLocked(v)
		return tokenResponse{}, badGrant("authorization code already used")
	}
	c.spent = true
	verifier, hasVerifier := form["code_verifier"]
	switch {
	case !s.opt.Clock.Now().Before(c.expires):
		return tokenResponse{}, badGrant("authorization code expired")
	case form.Get("redirect_uri") == "":
		return tokenResponse{}, badRequest("redirect_uri is missing")
	case form.Get("redirect_uri") != c.redirect:
		return tokenResponse{}, badGrant("redirect_uri does not match the authorization request")
	case c.challenge == "" && hasVerifier:
		return tokenResponse{}, badGrant("code_verifier without a code_challenge")
	case c.challenge != "" && !hasVerifier:
		return tokenResponse{}, badGrant("code_verifier is missing")
	case c.challenge != "" && !verify(verifier[0], c.challenge):
		return tokenResponse{}, badGrant("code_verifier does not match the code_challenge")
	}
	t := s.issueLocked(c.user, v)
	s.stats.Exchanges++
	return tokenResponse{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		ExpiresIn:    int64(s.opt.AccessLifetime / time.Second),
		RefreshToken: t.RefreshToken,
	}, nil
}

// revokeCodeLocked kills every token that stems from code: it revokes
// the grant the code gave.
func (s *Server) revokeCodeLocked(code string) {
	for _, r := range s.refresh {
		if r.grant.code == code {
			r.grant.revoked = true
		}
	}
}

// verify checks a PKCE S256 verifier against its challenge.
func verify(verifier, challenge string) bool {
	if !pkceValue(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return equal(base64.RawURLEncoding.EncodeToString(sum[:]), challenge)
}

// pkceValue reports whether s has the syntax of a code verifier or
// challenge (RFC 7636 §4.1, §4.2): 43 to 128 unreserved characters.
func pkceValue(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// redirectURI checks the redirect_uri values of an authorization request:
// exactly one absolute http(s) URL without a fragment (RFC 6749 §3.1.2).
func redirectURI(vs []string) (string, bool) {
	if len(vs) != 1 {
		return "", false
	}
	u, err := url.Parse(vs[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || u.RawFragment != "" {
		return "", false
	}
	return vs[0], true
}

// redirectTo answers 302 to redirect (valid per redirectURI) with params
// and state (when not "") added to its query, which is kept (RFC 6749
// §3.1.2).
func redirectTo(w http.ResponseWriter, redirect string, params url.Values, state string) {
	u, _ := url.Parse(redirect)
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Location", u.String())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

func plainError(w http.ResponseWriter, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, msg, http.StatusBadRequest)
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
