package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLS runs the server with TLS only (no plain port): a throwaway CA signs
// a server certificate for 127.0.0.1 and a client certificate, and the
// server requires the client's (--tls-auth-clients yes). The Server's URL
// is then rediss://, and CAFile, CertFile and KeyFile name the CA and the
// client's pair. redis-server must be built with TLS (Debian's is).
func TLS() Option { return func(c *config) { c.tls = true } }

// tlsFiles writes a CA, a server pair and a client pair into dir and
// returns the client's TLS config (trusting the CA).
func tlsFiles(t testing.TB, dir string) (files map[string]string, client *tls.Config) {
	t.Helper()
	now := time.Now()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatalf("redistest: key: %v", err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatalf("redistest: write %s: %v", name, err)
		}
		return path
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("redistest: CA: %v", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	files = map[string]string{"ca": write("ca.pem", "CERTIFICATE", caDER)}
	for i, who := range []string{"server", "client"} {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: "redistest " + who},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatalf("redistest: %s certificate: %v", who, err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatalf("redistest: %s key: %v", who, err)
		}
		files[who+"-cert"] = write(who+".pem", "CERTIFICATE", der)
		files[who+"-key"] = write(who+"-key.pem", "PRIVATE KEY", kder)
	}
	pair, err := tls.LoadX509KeyPair(files["client-cert"], files["client-key"])
	if err != nil {
		t.Fatalf("redistest: client pair: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return files, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}
