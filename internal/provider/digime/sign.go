package digime

import (
	"crypto/rand"
	"errors"
	"maps"

	"github.com/golang-jwt/jwt/v5"
)

const (
	nonceLen      = 32
	nonceAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// nonce returns nonceLen random alphanumeric characters from crypto/rand,
// as the Node SDK's getRandomAlphaNumeric.
func nonce() (string, error) {
	out := make([]byte, 0, nonceLen)
	var buf [64]byte
	// 248 = 4*62: bytes at or above it would bias the modulo, skip them.
	const limit = 256 - 256%len(nonceAlphabet)
	for len(out) < nonceLen {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", errors.New("digime: no randomness for a nonce")
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < nonceLen {
				out = append(out, nonceAlphabet[int(b)%len(nonceAlphabet)])
			}
		}
	}
	return string(out), nil
}

// requestJWT signs the Bearer JWT of one request attempt: PS512 with the
// contract key, header {alg, typ}, no iat/exp, claims client_id, a fresh
// nonce, timestamp in milliseconds, access_token when access is not empty,
// plus extra. It is called on every attempt, so retries never reuse a
// nonce or timestamp.
func (c *Client) requestJWT(access string, extra map[string]any) (string, error) {
	n, err := nonce()
	if err != nil {
		return "", err
	}
	claims := jwt.MapClaims{
		"client_id": c.clientID,
		"nonce":     n,
		"timestamp": c.clock.Now().UnixMilli(),
	}
	maps.Copy(claims, extra)
	if access != "" {
		claims["access_token"] = access
	}
	return c.sign(claims)
}

// sign signs claims PS512 with the contract key. Errors never contain the
// claims.
func (c *Client) sign(claims jwt.MapClaims) (string, error) {
	s, err := jwt.NewWithClaims(jwt.SigningMethodPS512, claims).SignedString(c.key)
	if err != nil {
		return "", errors.New("digime: sign request jwt failed")
	}
	return s, nil
}
