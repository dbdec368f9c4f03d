package digime

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"
)

// jwksTTL is how long a fetched key set is used before it is fetched
// again, as the iOS SDK.
const jwksTTL = 15 * time.Minute

// responseLeeway is the clock skew allowed when a response JWT carries
// exp, nbf or iat.
const responseLeeway = 5 * time.Minute

// Errors of response verification, told apart for classification.
var (
	// errUntrustedJKU: the response names a key set outside BaseURL. It
	// is never fetched.
	errUntrustedJKU = errors.New("response jku is outside the base url")
	// errJWKSFetch: the key set could not be fetched or parsed.
	errJWKSFetch = errors.New("jwks unavailable")
	// errUnknownKey: the response's kid is not in the key set, even after
	// a refetch.
	errUnknownKey = errors.New("response key id not in jwks")
)

// keySet is one fetched JWKS.
type keySet struct {
	keys    map[string]*rsa.PublicKey // by kid
	fetched time.Time
	gen     int // bumped on every fetch
}

// keyCache caches key sets by URL. Fetches are serialised (a fetch in
// progress is waited for, honouring ctx) so a burst of refreshes fetches
// once.
type keyCache struct {
	mu   sync.Mutex
	sets map[string]*keySet
	sem  chan struct{}
}

func newKeyCache() *keyCache {
	return &keyCache{sets: make(map[string]*keySet), sem: make(chan struct{}, 1)}
}

func (kc *keyCache) get(u string) (keySet, bool) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	s, ok := kc.sets[u]
	if !ok {
		return keySet{}, false
	}
	return *s, true
}

// keySet returns the key set at u: the cached one while it is younger
// than jwksTTL (and force is false), else a fresh one. A forced fetch
// (unknown kid) is skipped when another fetch completed meanwhile. When a
// non-forced fetch fails, a stale cached set is used.
func (c *Client) keySet(ctx context.Context, log *zerolog.Logger, u string, force bool) (keySet, error) {
	kc := c.keys
	cached, have := kc.get(u)
	if have && !force && c.clock.Now().Sub(cached.fetched) < jwksTTL {
		return cached, nil
	}
	select {
	case kc.sem <- struct{}{}:
	case <-ctx.Done():
		return keySet{}, fmt.Errorf("%w: %w", errJWKSFetch, context.Cause(ctx))
	}
	defer func() { <-kc.sem }()
	now, nowHave := kc.get(u)
	if nowHave && (!have || now.gen != cached.gen) &&
		(force || c.clock.Now().Sub(now.fetched) < jwksTTL) {
		// Someone fetched while we waited.
		return now, nil
	}
	keys, err := c.fetchJWKS(ctx, log, u)
	if err != nil {
		if nowHave && !force {
			log.Warn().Err(err).Msg("jwks refetch failed; using the cached key set")
			return now, nil
		}
		return keySet{}, err
	}
	s := &keySet{keys: keys, fetched: c.clock.Now(), gen: now.gen + 1}
	kc.mu.Lock()
	kc.sets[u] = s
	kc.mu.Unlock()
	return *s, nil
}

// jwk is one key of a digi.me JWKS: e, kid, kty, n and pem (PKCS#1).
type jwk struct {
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	N   string `json:"n"`
	E   string `json:"e"`
	PEM string `json:"pem"`
}

// fetchJWKS GETs a key set (retried like every GET; unsigned).
func (c *Client) fetchJWKS(ctx context.Context, log *zerolog.Logger, u string) (map[string]*rsa.PublicKey, error) {
	resp, err := c.do(ctx, call{
		op: "jwks", method: http.MethodGet, url: u,
		header: http.Header{"Accept": {"application/json"}},
		log:    log,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errJWKSFetch, err)
	}
	if !resp.ok() {
		return nil, fmt.Errorf("%w: http %d", errJWKSFetch, resp.status)
	}
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		return nil, fmt.Errorf("%w: malformed key set", errJWKSFetch)
	}
	keys := make(map[string]*rsa.PublicKey, len(doc.Keys))
	for _, k := range doc.Keys {
		pub, err := k.publicKey()
		if err != nil {
			log.Warn().Str("kid", k.Kid).Err(err).Msg("jwks key skipped")
			continue
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no usable RSA key", errJWKSFetch)
	}
	return keys, nil
}

// publicKey reads the key from pem (what the Node SDK uses), else from n
// and e.
func (k jwk) publicKey() (*rsa.PublicKey, error) {
	if k.Kty != "" && k.Kty != "RSA" {
		return nil, fmt.Errorf("key type %q is not RSA", k.Kty)
	}
	if k.PEM != "" {
		block, _ := pem.Decode([]byte(k.PEM))
		if block == nil {
			return nil, errors.New("pem: no PEM block")
		}
		switch block.Type {
		case "RSA PUBLIC KEY":
			return x509.ParsePKCS1PublicKey(block.Bytes)
		case "PUBLIC KEY":
			pk, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			rk, ok := pk.(*rsa.PublicKey)
			if !ok {
				return nil, fmt.Errorf("pem: %T is not an RSA key", pk)
			}
			return rk, nil
		default:
			return nil, fmt.Errorf("pem: unexpected block %q", block.Type)
		}
	}
	n, err1 := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.N, "="))
	e, err2 := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.E, "="))
	if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
		return nil, errors.New("malformed n or e")
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if pub.E < 3 || pub.N.BitLen() < 1024 {
		return nil, errors.New("weak or malformed RSA key")
	}
	return pub, nil
}

// trustedJWKS returns the key set URL to use for a response's jku: the
// pinned BaseURL + "jwks/oauth" when jku is empty, jku itself when it lies
// under BaseURL (same scheme and host, a path below the base path, no
// dot segments, encoded characters, user info, query or fragment), else
// errUntrustedJKU.
func (c *Client) trustedJWKS(jku string) (string, error) {
	if jku == "" || jku == c.jwksURL {
		return c.jwksURL, nil
	}
	u, err := url.Parse(jku)
	if err != nil || u.Scheme != c.base.Scheme || !strings.EqualFold(u.Host, c.base.Host) ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.RawPath != "" || u.Opaque != "" ||
		strings.Contains(u.Path, "..") || path.Clean(u.Path) != u.Path ||
		!strings.HasPrefix(u.Path, c.base.Path) {
		return "", errUntrustedJKU
	}
	return u.String(), nil
}

// verifyResponse verifies a token-bearing response JWT (PS512 only)
// against the trusted key set and decodes its claims into claims.
func (c *Client) verifyResponse(ctx context.Context, log *zerolog.Logger, tok string, claims jwt.Claims) error {
	var keyErr error
	keyfunc := func(t *jwt.Token) (any, error) {
		jku, _ := t.Header["jku"].(string)
		kid, _ := t.Header["kid"].(string)
		u, err := c.trustedJWKS(jku)
		if err != nil {
			keyErr = err
			return nil, err
		}
		set, err := c.keySet(ctx, log, u, false)
		if err != nil {
			keyErr = err
			return nil, err
		}
		if kid == "" {
			// No kid: any key of the trusted set may have signed it.
			var vs jwt.VerificationKeySet
			for _, k := range set.keys {
				vs.Keys = append(vs.Keys, k)
			}
			return vs, nil
		}
		if k, ok := set.keys[kid]; ok {
			return k, nil
		}
		// Unknown kid: the keys may have rotated; refetch once.
		set, err = c.keySet(ctx, log, u, true)
		if err != nil {
			keyErr = err
			return nil, err
		}
		if k, ok := set.keys[kid]; ok {
			return k, nil
		}
		keyErr = errUnknownKey
		return nil, keyErr
	}
	_, err := jwt.ParseWithClaims(tok, claims, keyfunc,
		jwt.WithValidMethods([]string{jwt.SigningMethodPS512.Alg()}),
		jwt.WithTimeFunc(c.clock.Now),
		jwt.WithLeeway(responseLeeway))
	if keyErr != nil {
		return keyErr
	}
	if err != nil {
		// jwt's messages hold no token text; keep only its category.
		switch {
		case errors.Is(err, jwt.ErrTokenMalformed):
			return errResponseMalformed
		case errors.Is(err, jwt.ErrTokenInvalidClaims):
			return errResponseClaims
		default:
			return errResponseSignature
		}
	}
	return nil
}

var (
	errResponseMalformed = errors.New("response token is malformed")
	errResponseClaims    = errors.New("response token claims are invalid (expired or not yet valid)")
	errResponseSignature = errors.New("response token signature does not verify")
)
