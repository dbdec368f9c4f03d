package tokens

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParseToken(f *testing.F) {
	// Every accepted shape, and some broken ones.
	for _, seed := range []string{
		sdkDoc(unix(inHour), unix(inMonth)),
		sdkDoc(unixMs(inHour), unixMs(inMonth)),
		sdkDoc("0", "null"),
		backendDoc(unix(inHour), unix(inMonth)),
		backendDoc(unixMs(inHour), `"`+unix(inMonth)+`"`),
		rfcDoc(`"expires_in":3600`),
		rfcDoc(`"expires_in":"3600","refresh_token_expires_in":86400`),
		rfcDoc(`"expiry":"2026-01-02T16:04:05.5+01:00","scope":"a b"`),
		rfcDoc(`"expiry":"0001-01-01T00:00:00Z"`),
		rfcDoc(""),
		`{"access_token":"a","refresh_token":"r","expires_in":1e400}`,
		`{"accessToken":{"value":"a","expiry":-1},"refreshToken":{"value":"r"}}`,
		`{"accessToken":{"value":"a"},"access_token":"b","refreshToken":{"value":"r"}}`,
		`{"access_token":{"value":"a"},"refresh_token":"r"}`,
		`{"access_token":"a"}`,
		`{"accessToken":{"value":"a"},"refreshToken":{"value":"r"},"user":{"id":"other"}}`,
		`{"access_token":"a\u0000","refresh_token":"r"}`,
		`{"access_token":"a","refresh_token":"r"`,
		`{"access_token":"a","refresh_token":"r","access_token":"b"}`,
		`{"access_token":"a\ud800","refresh_token":"r"}`,
		`{"access_token":"a\ufffd\uFFFD","refresh_token":"r","x":[{"k":1,"k":2}]}`,
		"{\"access_token\":\"a\xff\",\"refresh_token\":\"r\"}",
		`[]`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	opts := testOpts()
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseToken(data, opts)
		if err != nil {
			msg := err.Error()
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("error %q does not wrap ErrBadToken", msg)
			}
			if !strings.HasPrefix(msg, "token: ") || strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error %q is not one line starting with \"token: \"", msg)
			}
			if tok != (Token{}) {
				t.Fatalf("token not zero on error")
			}
			return
		}
		if !utf8.Valid(data) {
			t.Fatal("accepted invalid UTF-8")
		}
		if tok.AccessExpiry.IsZero() {
			t.Fatal("AccessExpiry is zero")
		}
		if tok.AccessToken == "" || tok.RefreshToken == "" {
			t.Fatal("empty access or refresh token")
		}
		if tok.UserID != opts.UserID {
			t.Fatalf("UserID = %q, want %q", tok.UserID, opts.UserID)
		}
		if !tok.RefreshExpiry.IsZero() && !tok.RefreshExpiry.After(opts.Now) {
			t.Fatal("accepted an expired refresh token")
		}
	})
}

// FuzzSealToken checks that any token with valid UTF-8 fields survives
// SealToken and OpenRecord, whichever decoder path the plaintext takes.
func FuzzSealToken(f *testing.F) {
	f.Add(testAccess, testRefresh, "Bearer", testConsent)
	f.Add("", "", "", "")
	f.Add(`a"b`, `\`, "\x00", `","r":"x`)
	f.Add("é\u2028", "}", "{", ":")
	k, err := NewKeyring("k1", map[string][]byte{"k1": testKey(1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, access, refresh, tokenType, consent string) {
		tok := Token{UserID: testUser, AccessToken: access, RefreshToken: refresh, TokenType: tokenType, ConsentID: consent}
		kid, ct, err := k.SealToken(tok, testProvider)
		if err != nil {
			for _, s := range []string{access, refresh, tokenType, consent} {
				if !utf8.ValidString(s) {
					return // rejected as it should be
				}
			}
			t.Fatalf("SealToken: %v", err)
		}
		into, err := k.OpenRecord(Record{UserID: testUser, Provider: testProvider, KeyID: kid, Ciphertext: ct})
		if err != nil {
			t.Fatalf("OpenRecord: %v", err)
		}
		if !secretsEqual(into, tok) {
			t.Fatalf("round trip\ngot  %s\nwant %s", dump(into), dump(tok))
		}
	})
}
