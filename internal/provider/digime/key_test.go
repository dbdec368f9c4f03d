package digime

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadPrivateKey(t *testing.T) {
	testKeys(t)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(contractKey)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not really a certificate")})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(contractKey)})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"pkcs1", pkcs1PEM},
		{"pkcs8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})},
		{"after a certificate", append(cert, pkcs1PEM...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadPrivateKey(write(tc.name+".pem", tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if !k.Equal(contractKey) {
				t.Fatal("loaded a different key")
			}
		})
	}

	// A PKCS#1 block with its middle damaged: the error must not quote it.
	der := x509.MarshalPKCS1PrivateKey(contractKey)
	damaged := append([]byte{}, der...)
	for i := 200; i < 260; i++ {
		damaged[i] = 0xff
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "no PEM private key block", nil},
		{"not pem", "no PEM private key block", []byte("hello")},
		{"only a certificate", "no PEM private key block", cert},
		{"ec key", "want an RSA key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})},
		{"damaged pkcs1", "malformed PKCS#1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: damaged})},
		{"damaged pkcs8", "malformed PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: damaged})},
		{"encrypted", "encrypted", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: der})},
		{"encrypted pkcs8", "encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadPrivateKey(write(tc.name+".pem", tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			msg := err.Error()
			b64 := base64.StdEncoding.EncodeToString(der)
			for i := 0; i+16 <= len(b64); i += 16 {
				if strings.Contains(msg, b64[i:i+16]) {
					t.Fatalf("error quotes key material: %s", msg)
				}
			}
			if strings.Contains(msg, contractKey.D.String()[:16]) {
				t.Fatalf("error quotes the private exponent: %s", msg)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		if _, err := LoadPrivateKey(filepath.Join(dir, "nope.pem")); err == nil {
			t.Fatal("no error")
		}
	})
}
