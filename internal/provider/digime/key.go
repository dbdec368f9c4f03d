package digime

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// LoadPrivateKey reads a contract key from a PEM file; see ParsePrivateKey.
// Errors name the path but never contain key material.
func LoadPrivateKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("digime: read private key: %w", err)
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePrivateKey parses the first private key in PEM data: PKCS#1
// ("RSA PRIVATE KEY", what digi.me hands out and the SDKs read) or PKCS#8
// ("PRIVATE KEY") holding an RSA key. Other blocks before it (a
// certificate, say) are skipped. Encrypted keys are not supported. Errors
// never contain key material: the parsers' own messages are not passed on.
func ParsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("digime: private key: no PEM private key block found")
		}
		var key *rsa.PrivateKey
		switch block.Type {
		case "RSA PRIVATE KEY":
			if _, enc := block.Headers["Proc-Type"]; enc {
				return nil, errors.New("digime: private key: encrypted PEM keys are not supported")
			}
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("digime: private key: malformed PKCS#1 RSA private key")
			}
			key = k
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("digime: private key: malformed PKCS#8 private key")
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("digime: private key: PKCS#8 key is %T, want an RSA key", k)
			}
			key = rk
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("digime: private key: encrypted PEM keys are not supported")
		default:
			continue
		}
		if err := key.Validate(); err != nil {
			return nil, errors.New("digime: private key: inconsistent RSA key")
		}
		return key, nil
	}
}
