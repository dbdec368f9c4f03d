package config

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/redistest"
)

// TestRedisTLS: against a real redis-server on TLS that requires a client
// certificate, redis.tls.ca_file and cert_file/key_file are what make the
// connection work; verification stays on unless insecure_skip_verify is
// set, and the URL's skip_verify=true alone is refused.
func TestRedisTLS(t *testing.T) {
	srv := redistest.StartPrivate(t, redistest.TLS())
	ping := func(t *testing.T, cfg *Config) error {
		t.Helper()
		o := cfg.Redis.Options()
		o.MaxRetries = -1
		c := redis.NewClient(o)
		defer c.Close()
		return c.Ping(context.Background()).Err()
	}
	doc := func(url, tls string) string {
		return keyConfig + "redis:\n  url: \"" + url + "\"\n  tls: " + tls + "\n"
	}
	files := "{ca_file: " + srv.CAFile + ", cert_file: " + srv.CertFile + ", key_file: " + srv.KeyFile + "}"

	t.Run("ca and client certificate", func(t *testing.T) {
		cfg := mustParse(t, doc(srv.URL, files), env())
		if o := cfg.Redis.Options(); o.TLSConfig.InsecureSkipVerify || o.TLSConfig.RootCAs == nil || len(o.TLSConfig.Certificates) != 1 {
			t.Fatalf("tls config %+v", o.TLSConfig)
		}
		if err := ping(t, cfg); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("verification stays on", func(t *testing.T) {
		cfg := mustParse(t, doc(srv.URL, "{cert_file: "+srv.CertFile+", key_file: "+srv.KeyFile+"}"), env())
		if err := ping(t, cfg); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("without the CA: %v", err)
		}
	})
	t.Run("skip_verify in the URL is refused", func(t *testing.T) {
		_, err := parseString(t, doc(srv.URL+"?skip_verify=true", "{cert_file: "+srv.CertFile+", key_file: "+srv.KeyFile+"}"), env())
		if err == nil || !strings.Contains(err.Error(), "redis.url: skip_verify=true turns off TLS certificate verification") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("insecure_skip_verify is explicit", func(t *testing.T) {
		for _, u := range []string{srv.URL, srv.URL + "?skip_verify=true"} {
			cfg := mustParse(t, doc(u, "{insecure_skip_verify: true, cert_file: "+srv.CertFile+", key_file: "+srv.KeyFile+"}"), env())
			if !cfg.Redis.Options().TLSConfig.InsecureSkipVerify {
				t.Fatal("insecure_skip_verify not applied")
			}
			if err := ping(t, cfg); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("client certificate needed", func(t *testing.T) {
		cfg := mustParse(t, doc(srv.URL, "{ca_file: "+srv.CAFile+"}"), env())
		if err := ping(t, cfg); err == nil {
			t.Fatal("the server took a client without a certificate")
		}
	})
	t.Run("sentinel and cluster", func(t *testing.T) {
		// Every node is checked against the host it is dialled at: no
		// ServerName pinned to the first host.
		for _, u := range []string{"rediss-sentinel://s1:26379,s2:26379?master=m", "rediss-cluster://n1:7000,n2:7000"} {
			o := mustParse(t, doc(u, files), env()).Redis.ClientOptions()
			var tc *tls.Config
			if o.Failover != nil {
				tc = o.Failover.TLSConfig
			} else {
				tc = o.Cluster.TLSConfig
			}
			if tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.InsecureSkipVerify || tc.ServerName != "" {
				t.Errorf("%s: tls config %+v", u, tc)
			}
		}
	})
	t.Run("file errors name the field", func(t *testing.T) {
		dir := t.TempDir()
		junk := filepath.Join(dir, "junk.pem")
		if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
			t.Fatal(err)
		}
		for tls, want := range map[string]string{
			"{ca_file: " + junk + "}":                                        "redis.tls.ca_file: no PEM certificate in " + junk,
			"{ca_file: " + srv.KeyFile + "}":                                 "redis.tls.ca_file: no PEM certificate in ",
			"{cert_file: " + junk + ", key_file: " + srv.KeyFile + "}":       "redis.tls.cert_file: ",
			"{cert_file: " + srv.CertFile + ", key_file: " + junk + "}":      "redis.tls.key_file: ",
			"{cert_file: " + srv.CAFile + ", key_file: " + srv.KeyFile + "}": "redis.tls.key_file: ",
			"{cert_file: rel.pem, key_file: " + srv.KeyFile + "}":            "redis.tls.cert_file: ",
		} {
			_, err := parseString(t, doc(srv.URL, tls), env())
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("%s: got %v, want %q", tls, err, want)
			}
		}
	})
}
