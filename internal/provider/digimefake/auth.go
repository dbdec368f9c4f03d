package digimefake

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncd/syncd/internal/tokens"
)

const (
	nonceLen = 32

	codeInvalidJWT    = "InvalidJWT"
	codeInvalidClient = "InvalidClient"
	codeInvalidToken  = "InvalidToken"

	msgAccessInvalid  = "The token (access_token) is invalid"
	msgAccessExpired  = "The token (access_token) is expired"
	msgRefreshInvalid = "The token (refresh_token) is invalid"
	msgRefreshExpired = "The token (refresh_token) is expired"

	// noncePruneAt: the nonce set is swept of entries past their window
	// when it grows beyond this.
	noncePruneAt = 4096
)

// requestClaims are the claims of the Bearer JWT on every call.
type requestClaims struct {
	ClientID     string      `json:"client_id"`
	Nonce        string      `json:"nonce"`
	Timestamp    json.Number `json:"timestamp"`
	AccessToken  string      `json:"access_token"`
	GrantType    string      `json:"grant_type"`
	RefreshToken string      `json:"refresh_token"`
	// The consent flow's claims: oauth/authorize, oauth/token/reference
	// and the authorization_code grant.
	Code                string `json:"code"`
	CodeVerifier        string `json:"code_verifier"`
	CodeChallenge       string `json:"code_challenge"`
	CodeChallengeMethod string `json:"code_challenge_method"`
	RedirectURI         string `json:"redirect_uri"`
	ResponseMode        string `json:"response_mode"`
	ResponseType        string `json:"response_type"`
	State               string `json:"state"`
	jwt.RegisteredClaims
}

// jwtError is a rejected JWT: the answer to give and the counter to bump.
type jwtError struct {
	status  int
	code    string
	message string
	counter *int
}

// parseContractJWT verifies a PS512 JWT signed with the contract key into
// claims. Beyond golang-jwt (which accepts any PSS salt length), it
// requires the salt length to equal the hash length, as jsonwebtoken and
// golang-jwt sign.
func (s *Server) parseContractJWT(raw string, claims jwt.Claims) *jwtError {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodPS512.Alg()}),
		jwt.WithTimeFunc(s.opt.Clock.Now),
	)
	tok, err := p.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return s.opt.ContractKey, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return &jwtError{http.StatusUnauthorized, codeInvalidJWT, "the JWT signature does not verify with the contract key (PS512)", &s.stats.BadSignature}
	case err != nil:
		return &jwtError{http.StatusUnauthorized, codeInvalidJWT, "the JWT is invalid: " + err.Error(), &s.stats.BadJWT}
	}
	signed := tok.Raw[:strings.LastIndexByte(tok.Raw, '.')]
	sum := sha512.Sum512([]byte(signed))
	if rsa.VerifyPSS(s.opt.ContractKey, crypto.SHA512, sum[:], tok.Signature,
		&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) != nil {
		return &jwtError{http.StatusUnauthorized, codeInvalidJWT, "the PS512 signature must use a salt as long as the hash (64 bytes)", &s.stats.BadSignature}
	}
	return nil
}

// authenticate checks the request's Bearer JWT: signature, client_id,
// timestamp window, nonce reuse. On failure it answers and returns false.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*requestClaims, bool) {
	var c requestClaims
	jerr := s.checkRequestJWT(r, &c)
	if jerr != nil {
		s.mu.Lock()
		(*jerr.counter)++
		s.mu.Unlock()
		writeError(w, jerr.status, jerr.code, jerr.message)
		return nil, false
	}
	return &c, true
}

func (s *Server) checkRequestJWT(r *http.Request, c *requestClaims) *jwtError {
	auth := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(raw) == "" {
		return &jwtError{http.StatusUnauthorized, codeInvalidJWT, "missing Authorization: Bearer <JWT>", &s.stats.BadJWT}
	}
	if jerr := s.parseContractJWT(strings.TrimSpace(raw), c); jerr != nil {
		return jerr
	}
	if c.ClientID != s.clientID {
		return &jwtError{http.StatusUnauthorized, codeInvalidClient, "unknown client_id", &s.stats.BadClient}
	}
	if len(c.Nonce) != nonceLen {
		return &jwtError{http.StatusUnauthorized, codeInvalidJWT, "nonce must be 32 characters", &s.stats.BadJWT}
	}
	ts, ok := millis(c.Timestamp)
	if !ok {
		return &jwtError{http.StatusUnauthorized, codeInvalidJWT, "timestamp (milliseconds) is missing or not a number", &s.stats.BadJWT}
	}
	now := s.opt.Clock.Now()
	if d := now.Sub(ts); d > s.opt.MaxSkew || d < -s.opt.MaxSkew {
		return &jwtError{http.StatusUnauthorized, codeInvalidJWT, "timestamp outside the allowed window", &s.stats.StaleTimestamp}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, seen := s.nonces[c.Nonce]; seen {
		return &jwtError{http.StatusUnauthorized, codeInvalidJWT, "nonce already used", &s.stats.ReusedNonce}
	}
	if len(s.nonces) >= noncePruneAt {
		// A nonce only needs remembering while its timestamp is in the
		// window; after that the timestamp check rejects a replay.
		for n, until := range s.nonces {
			if now.After(until) {
				delete(s.nonces, n)
			}
		}
	}
	s.nonces[c.Nonce] = ts.Add(s.opt.MaxSkew)
	return nil
}

// millis reads a millisecond epoch timestamp claim.
func millis(n json.Number) (time.Time, bool) {
	if n == "" {
		return time.Time{}, false
	}
	if i, err := n.Int64(); err == nil {
		return time.UnixMilli(i), true
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(f)), true
}

// dataUser authenticates a data call (request JWT, then its access
// token) and returns the token's user; on failure it has answered.
func (s *Server) dataUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	c, ok := s.authenticate(w, r)
	if !ok {
		return "", false
	}
	return s.accessUser(w, c)
}

// accessUser checks c's access_token for a data call (counting the call)
// and returns its user. On failure it answers 401 InvalidToken.
func (s *Server) accessUser(w http.ResponseWriter, c *requestClaims) (string, bool) {
	s.mu.Lock()
	s.stats.DataCalls++
	rec := s.access[c.AccessToken]
	msg := ""
	switch {
	case rec == nil || rec.invalid || rec.fam.revoked:
		msg = msgAccessInvalid
	case !s.opt.Clock.Now().Before(rec.expires):
		msg = msgAccessExpired
	}
	if msg != "" {
		s.stats.Rejected401++
	}
	s.mu.Unlock()
	if msg != "" {
		writeError(w, http.StatusUnauthorized, codeInvalidToken, msg)
		return "", false
	}
	return rec.user, true
}

// handleToken serves POST oauth/token. The grant comes in the JWT claims;
// there is no body.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	c, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	switch c.GrantType {
	case "refresh_token":
	case "authorization_code":
		s.exchange(w, r, c)
		return
	case "":
		writeError(w, http.StatusBadRequest, "InvalidRequest", "grant_type is missing")
		return
	default:
		writeError(w, http.StatusBadRequest, "UnsupportedGrantType", "unsupported grant_type")
		return
	}
	if c.RefreshToken == "" {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "refresh_token is missing")
		return
	}

	s.mu.Lock()
	now := s.opt.Clock.Now()
	rec := s.refresh[c.RefreshToken]
	msg := ""
	switch {
	case rec == nil:
		msg = msgRefreshInvalid
	case rec.rotated:
		// A spent refresh token again: forgiven only as the family's
		// immediately previous token within the grace period
		// (Options.RotationGracePeriod); otherwise reuse, which kills
		// the family.
		if s.refreshableLocked(rec, now) && s.opt.RotationGracePeriod > 0 &&
			c.RefreshToken == rec.fam.prev && now.Before(rec.fam.prevAt.Add(s.opt.RotationGracePeriod)) {
			s.stats.GraceRefreshes++
			break // accepted: a new pair, nothing more rotated
		}
		s.stats.Reused++
		s.reuses[rec.user]++
		if !rec.fam.revoked {
			rec.fam.revoked = true
			s.stats.ReuseRevocations++
		}
		msg = msgRefreshInvalid
	case rec.dead || rec.fam.revoked || s.user(rec.user).revoked:
		msg = msgRefreshInvalid
	case rec.expired || !now.Before(rec.expires):
		msg = msgRefreshExpired
	}
	if msg != "" {
		s.stats.RefreshRejected++
		s.mu.Unlock()
		writeError(w, http.StatusUnauthorized, codeInvalidToken, msg)
		return
	}
	if !rec.rotated {
		// Rotation: the old refresh token is spent.
		rec.rotated = true
		rec.fam.prev, rec.fam.prevAt = c.RefreshToken, now
	}
	t := s.issueLocked(rec.user, rec.fam, now)
	s.stats.Refreshes++
	s.rotated[rec.user]++
	s.mu.Unlock()

	s.writeTokens(w, r, t)
}

// refreshableLocked reports whether rec would be accepted were it not
// rotated: not revoked (by Revoke or reuse) and not expired.
func (s *Server) refreshableLocked(rec *refreshRec, now time.Time) bool {
	return !rec.dead && !rec.fam.revoked && !s.user(rec.user).revoked && !rec.expired && now.Before(rec.expires)
}

// writeTokens answers 200 {token} with t signed as a token response.
func (s *Server) writeTokens(w http.ResponseWriter, r *http.Request, t tokens.Token) {
	signed, err := s.signToken(r, t)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalServerError", "sign token: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": signed})
}

type tokenValue struct {
	Value     string `json:"value"`
	ExpiresOn int64  `json:"expires_on"` // seconds since the epoch
}

type tokenPayload struct {
	AccessToken  tokenValue `json:"access_token"`
	RefreshToken tokenValue `json:"refresh_token"`
	Sub          string     `json:"sub"`
	ConsentID    string     `json:"consentid"`
	TokenType    string     `json:"token_type"`
	Identifier   struct {
		ID string `json:"id"`
	} `json:"identifier"`
}

// GetExpirationTime and the rest make tokenPayload a jwt.Claims; the
// payload carries no registered time claims.
func (tokenPayload) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }
func (tokenPayload) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (tokenPayload) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (tokenPayload) GetIssuer() (string, error)                   { return "", nil }
func (p tokenPayload) GetSubject() (string, error)                { return p.Sub, nil }
func (tokenPayload) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// signToken builds the {token} JWT of a token response, signed PS512 with
// the server key, its header naming kid and the jku of this server's JWKS.
func (s *Server) signToken(r *http.Request, t tokens.Token) (string, error) {
	p := tokenPayload{
		AccessToken:  tokenValue{Value: t.AccessToken, ExpiresOn: t.AccessExpiry.Unix()},
		RefreshToken: tokenValue{Value: t.RefreshToken, ExpiresOn: t.RefreshExpiry.Unix()},
		Sub:          t.UserID,
		ConsentID:    t.ConsentID,
		TokenType:    t.TokenType,
	}
	p.Identifier.ID = t.UserID
	return s.signClaims(r, p)
}

// signClaims signs a response JWT: PS512 with the server key, its header
// naming kid and the jku of this server's JWKS.
func (s *Server) signClaims(r *http.Request, claims jwt.Claims) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodPS512, claims)
	tok.Header["kid"] = s.kid
	tok.Header["jku"] = jwksURL(r)
	return tok.SignedString(s.key)
}

func jwksURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + jwksPath
}

type jwk struct {
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	PEM string `json:"pem"`
}

// handleJWKS serves GET jwks/oauth: the server's signing key, with the
// PKCS#1 PEM the Node SDK verifies with.
func (s *Server) handleJWKS(w http.ResponseWriter, _ *http.Request) {
	pub := &s.key.PublicKey
	block := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})
	writeJSON(w, http.StatusOK, map[string][]jwk{"keys": {{
		Kid: s.kid,
		Kty: "RSA",
		Alg: jwt.SigningMethodPS512.Alg(),
		Use: "sig",
		N:   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E:   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		PEM: string(block),
	}}})
}
