package digime

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestNew(t *testing.T) {
	testKeys(t)
	t.Run("defaults", func(t *testing.T) {
		c, err := New(Config{AppID: "a", ContractID: "c", PrivateKey: contractKey})
		if err != nil {
			t.Fatal(err)
		}
		if c.base.String() != DefaultBaseURL || c.jwksURL != DefaultBaseURL+"jwks/oauth" || c.clientID != "a_c" ||
			c.pollInterval != 3*time.Second || c.maxPolls != 100 || c.maxDuration != 5*time.Minute ||
			c.getRetries != 2 || c.retryBackoff != time.Second || c.retryAfterCap != 30*time.Second ||
			c.agentName != "syncd" || c.agentVersion == "" || c.hc.Timeout != 30*time.Second {
			t.Fatalf("defaults: %+v", c)
		}
	})
	t.Run("trailing slash and negative retries", func(t *testing.T) {
		c, err := New(Config{BaseURL: "http://localhost:8080/v1.7", AppID: "a", ContractID: "c", PrivateKey: contractKey, GetRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		if c.endpoint("oauth/token") != "http://localhost:8080/v1.7/oauth/token" || c.getRetries != 0 {
			t.Fatalf("endpoint %s retries %d", c.endpoint("oauth/token"), c.getRetries)
		}
	})
	for name, cfg := range map[string]Config{
		"no app":       {ContractID: "c", PrivateKey: contractKey},
		"no contract":  {AppID: "a", PrivateKey: contractKey},
		"no key":       {AppID: "a", ContractID: "c"},
		"relative url": {BaseURL: "api.digi.me/v1.7", AppID: "a", ContractID: "c", PrivateKey: contractKey},
		"ftp url":      {BaseURL: "ftp://api.digi.me/", AppID: "a", ContractID: "c", PrivateKey: contractKey},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(cfg); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestNonce(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n, err := nonce()
		if err != nil {
			t.Fatal(err)
		}
		if !nonceRE.MatchString(n) || seen[n] {
			t.Fatalf("nonce %q bad or repeated", n)
		}
		seen[n] = true
	}
}

// TestRequestClaims pins the exact claim sets: the refresh JWT has no
// access_token, data-call JWTs have no refresh_token.
func TestRequestClaims(t *testing.T) {
	a := newAPI(t)
	var got [][]string
	a.tokenFunc = func(w http.ResponseWriter, claims jwt.MapClaims) {
		got = append(got, slices.Sorted(maps.Keys(claims)))
		a.writeToken(w, serverKey, "k1", "", a.payload(1))
	}
	c := a.client()
	if _, err := c.Refresh(waitCtx(t), userToken("acc", "ref")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"client_id", "grant_type", "nonce", "refresh_token", "timestamp"}; !slices.Equal(got[0], want) {
		t.Fatalf("refresh claims %v, want %v", got[0], want)
	}
	// Data-call claims are checked by the api's handler; here the names.
	jwtStr, err := c.requestJWT("acc", nil)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := checkPS512(jwtStr, &contractKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if keys, want := slices.Sorted(maps.Keys(claims)), []string{"access_token", "client_id", "nonce", "timestamp"}; !slices.Equal(keys, want) {
		t.Fatalf("data claims %v, want %v", keys, want)
	}
	if strings.Count(jwtStr, ".") != 2 {
		t.Fatal("not a compact JWS")
	}
}
