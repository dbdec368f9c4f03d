package tokens

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// testKey returns a distinct, deterministic 32-byte key.
func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

// testProvider is the provider tokens are sealed for in these tests.
const testProvider = "digime"

// openInto opens a token sealed for testProvider as OpenRecord opens the
// stored record, into into; into's expiries stand for the record's, and
// into is left alone on failure.
func openInto(k *Keyring, user, kid string, ct []byte, into *Token) error {
	tok, err := k.OpenRecord(Record{UserID: user, Provider: testProvider, KeyID: kid, Ciphertext: ct,
		AccessExpiry: into.AccessExpiry, RefreshExpiry: into.RefreshExpiry})
	if err != nil {
		return err
	}
	*into = tok
	return nil
}

func newTestKeyring(t testing.TB, primary string, keys map[string][]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(primary, keys)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func testToken() Token {
	return Token{
		UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh,
		TokenType: "Bearer", ConsentID: testConsent, AccessExpiry: inHour, RefreshExpiry: inMonth,
	}
}

func secretsEqual(a, b Token) bool {
	return a.UserID == b.UserID && a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken &&
		a.TokenType == b.TokenType && a.ConsentID == b.ConsentID
}

func TestSealTokenRoundTrip(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})

	tests := map[string]Token{
		"full":         testToken(),
		"only tokens":  {UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh},
		"all empty":    {UserID: testUser},
		"only consent": {UserID: testUser, ConsentID: testConsent},
		"json specials": {UserID: testUser, AccessToken: `a"b\c` + "\x00\x1f\n", RefreshToken: `{"a":"x"}`,
			TokenType: "\u2028é", ConsentID: "\\"},
		"unicode user":   {UserID: "Ünïcødé-名前", AccessToken: "a", RefreshToken: "r"},
		"long jwt-sized": {UserID: testUser, AccessToken: strings.Repeat("A", 2000), RefreshToken: strings.Repeat("R", 2000)},
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kid, ct, err := k.SealToken(tok, testProvider)
			if err != nil {
				t.Fatalf("SealToken: %v", err)
			}
			if kid != "k1" || ct[0] != tokenVersion {
				t.Errorf("kid = %q, version %#x, want k1 and %#x", kid, ct[0], tokenVersion)
			}
			// Expiries are not sealed: OpenRecord takes the record's.
			rec := Record{UserID: tok.UserID, Provider: testProvider, KeyID: kid, Ciphertext: ct, AccessExpiry: hourAgo}
			got, err := k.OpenRecord(rec)
			if err != nil {
				t.Fatalf("OpenRecord: %v", err)
			}
			if !secretsEqual(got, tok) {
				t.Errorf("got  %s\nwant %s", dump(got), dump(tok))
			}
			if !got.AccessExpiry.Equal(hourAgo) || !got.RefreshExpiry.IsZero() {
				t.Errorf("OpenRecord did not take the record's expiries: %s", dump(got))
			}
		})
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	for _, pt := range [][]byte{nil, {}, []byte("x"), []byte(testRefresh), bytes.Repeat([]byte{0}, 10000)} {
		kid, ct, err := k.Seal(testUser, pt)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if len(ct) != len(pt)+sealOverhead || ct[0] != 0x01 {
			t.Errorf("sealed %d bytes into %d bytes with version %#x", len(pt), len(ct), ct[0])
		}
		got, err := k.Open(testUser, kid, ct)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, pt) {
			t.Errorf("Open = %q, want %q", got, pt)
		}
	}
}

func TestSealOpenOtherUserFails(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	kid, ct, err := k.SealToken(testToken(), testProvider)
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"user-2", "user-", "user-1 ", "USER-1"} {
		var into Token
		err := openInto(k, other, kid, ct, &into)
		if !errors.Is(err, ErrDecrypt) {
			t.Errorf("OpenRecord as %q: err = %v, want ErrDecrypt", other, err)
		}
		if into != (Token{}) {
			t.Errorf("OpenRecord as %q filled the token on failure", other)
		}
		if _, err := k.Open(other, kid, ct); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open as %q: err = %v, want ErrDecrypt", other, err)
		}
	}
}

func TestSealTamperedFails(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	kid, ct, err := k.SealToken(testToken(), testProvider)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		var into Token
		if err := openInto(k, testUser, kid, bad, &into); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("flipped byte %d: err = %v, want ErrDecrypt", i, err)
		}
	}
	for _, n := range []int{0, 1, headerSize, sealOverhead - 1, len(ct) - 1} {
		if _, err := k.Open(testUser, kid, ct[:n]); !errors.Is(err, ErrDecrypt) {
			t.Errorf("truncated to %d: err = %v, want ErrDecrypt", n, err)
		}
	}
	if _, err := k.Open(testUser, kid, append(bytes.Clone(ct), 0)); !errors.Is(err, ErrDecrypt) {
		t.Errorf("extended: err = %v, want ErrDecrypt", err)
	}

	bad := bytes.Clone(ct)
	bad[0] = 0x02
	_, err = k.Open(testUser, kid, bad)
	if want := `keyring: key "k1": cannot decrypt: unknown format version 0x02`; err == nil || err.Error() != want {
		t.Errorf("version 2: err = %v, want %s", err, want)
	}
	_, err = k.Open(testUser, kid, ct[:5])
	if want := `keyring: key "k1": cannot decrypt: ciphertext is 5 bytes, too short`; err == nil || err.Error() != want {
		t.Errorf("short: err = %v, want %s", err, want)
	}
}

func TestSealTokenBindsProvider(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	tok := testToken()
	kid, ct, err := k.SealToken(tok, testProvider)
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{UserID: testUser, Provider: testProvider, KeyID: kid, Ciphertext: ct}
	if _, err := k.OpenRecord(rec); err != nil {
		t.Fatalf("own provider: %v", err)
	}
	// Someone rewrote the clear provider field: the record must not open,
	// so its refresh token never reaches that provider.
	for _, other := range []string{"oauth", "", "digime ", "DIGIME", "digim", testProvider + "\x00"} {
		rec.Provider = other
		got, err := k.OpenRecord(rec)
		if !errors.Is(err, ErrDecrypt) {
			t.Errorf("provider %q: err = %v, want ErrDecrypt", other, err)
		}
		if got != (Token{}) {
			t.Errorf("provider %q: a token came back with the error", other)
		}
	}
	// The user id's length is in the associated data: no user id and
	// provider pair reads as another.
	if bytes.Equal(appendTokenAD(nil, "ab", "c"), appendTokenAD(nil, "a", "bc")) {
		t.Error(`("ab","c") and ("a","bc") have the same associated data`)
	}
	if _, _, err := k.SealToken(tok, ""); err == nil || err.Error() != "keyring: provider is empty" {
		t.Errorf("SealToken without provider: err = %v", err)
	}
}

// legacyRecord seals tok the way SealToken did before provider binding:
// format 0x01, the user id alone as associated data.
func legacyRecord(t testing.TB, k *Keyring, tok Token, provider string) Record {
	t.Helper()
	kid, ct, err := k.Seal(tok.UserID, appendSecrets(nil, tok))
	if err != nil {
		t.Fatal(err)
	}
	return Record{UserID: tok.UserID, Provider: provider, KeyID: kid, Ciphertext: ct, AccessExpiry: tok.AccessExpiry}
}

func TestOpenRecordLegacy(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	tok := testToken()
	rec := legacyRecord(t, k, tok, testProvider)
	if rec.Ciphertext[0] != sealVersion {
		t.Fatalf("legacy version %#x", rec.Ciphertext[0])
	}
	got, err := k.OpenRecord(rec)
	if err != nil {
		t.Fatalf("legacy record: %v", err)
	}
	if !secretsEqual(got, tok) || !got.AccessExpiry.Equal(tok.AccessExpiry) {
		t.Errorf("got %s", dump(got))
	}
	if !k.NeedsReseal(rec) {
		t.Error("a legacy record under the primary key does not need re-sealing")
	}
	// Still bound to its user.
	other := rec
	other.UserID = "user-2"
	if _, err := k.OpenRecord(other); !errors.Is(err, ErrDecrypt) {
		t.Errorf("legacy record as another user: err = %v, want ErrDecrypt", err)
	}
	// Re-sealed, it is bound to the provider and current.
	kid, ct, err := k.SealToken(got, rec.Provider)
	if err != nil {
		t.Fatal(err)
	}
	resealed := Record{UserID: rec.UserID, Provider: rec.Provider, KeyID: kid, Ciphertext: ct}
	if k.NeedsReseal(resealed) {
		t.Error("a re-sealed record still needs re-sealing")
	}
	if rotated := newTestKeyring(t, "k2", map[string][]byte{"k1": testKey(1), "k2": testKey(2)}); !rotated.NeedsReseal(resealed) {
		t.Error("a record under an old key does not need re-sealing")
	}
}

// The version byte decides the associated data: a record in the new
// format never opens as legacy (which would drop the provider binding),
// and a legacy record never opens as the new format.
func TestOpenRecordVersionNoFallback(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	kid, ct, err := k.SealToken(testToken(), testProvider)
	if err != nil {
		t.Fatal(err)
	}
	downgraded := bytes.Clone(ct)
	downgraded[0] = sealVersion
	for _, prov := range []string{testProvider, "oauth"} {
		rec := Record{UserID: testUser, Provider: prov, KeyID: kid, Ciphertext: downgraded}
		if _, err := k.OpenRecord(rec); !errors.Is(err, ErrDecrypt) {
			t.Errorf("new format relabelled legacy, provider %q: err = %v, want ErrDecrypt", prov, err)
		}
	}
	legacy := legacyRecord(t, k, testToken(), testProvider)
	legacy.Ciphertext[0] = tokenVersion
	if _, err := k.OpenRecord(legacy); !errors.Is(err, ErrDecrypt) {
		t.Errorf("legacy relabelled new: err = %v, want ErrDecrypt", err)
	}
	unknown := bytes.Clone(ct)
	unknown[0] = 0x03
	_, err = k.OpenRecord(Record{UserID: testUser, Provider: testProvider, KeyID: kid, Ciphertext: unknown})
	if want := `keyring: key "k1": cannot decrypt: unknown format version 0x03`; err == nil || err.Error() != want {
		t.Errorf("version 3: err = %v, want %s", err, want)
	}
	// Seal's generic records stay 0x01; Open refuses the token format.
	if _, err := k.Open(testUser, kid, ct); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open on a token record: err = %v, want ErrDecrypt", err)
	}
}

func TestKeyCheckValues(t *testing.T) {
	t.Parallel()
	a := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1), "k2": testKey(2)})
	b := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1), "k2": testKey(9)})
	if a.checks["k1"] != b.checks["k1"] {
		t.Error("the same key has two check values")
	}
	if a.checks["k2"] == b.checks["k2"] || a.checks["k1"] == a.checks["k2"] {
		t.Error("different keys share a check value")
	}
	for id, v := range a.checks {
		if len(v) != 64 {
			t.Errorf("check value of %s is %d characters, want 64 (hex SHA-256)", id, len(v))
		}
		for _, key := range [][]byte{testKey(1), testKey(2)} {
			if strings.Contains(v, fmt.Sprintf("%x", key[:8])) || strings.Contains(v, string(key)) {
				t.Errorf("check value of %s contains the key", id)
			}
		}
	}
}

func TestKeyringUnknownKey(t *testing.T) {
	t.Parallel()
	k1 := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	k2 := newTestKeyring(t, "k2", map[string][]byte{"k2": testKey(2)})
	kid, ct, err := k1.SealToken(testToken(), testProvider)
	if err != nil {
		t.Fatal(err)
	}
	var into Token
	err = openInto(k2, testUser, kid, ct, &into)
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("err = %v, want ErrUnknownKey", err)
	}
	if want := `keyring: unknown key id "k1"`; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if _, err := k2.Open(testUser, "", ct); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("empty kid: err = %v, want ErrUnknownKey", err)
	}
	// The same key id with different key material is a decrypt failure.
	other := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(9)})
	if err := openInto(other, testUser, kid, ct, &into); !errors.Is(err, ErrDecrypt) {
		t.Errorf("wrong key: err = %v, want ErrDecrypt", err)
	}
}

func TestKeyringRotation(t *testing.T) {
	t.Parallel()
	old := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	kid, ct, err := old.SealToken(testToken(), testProvider)
	if err != nil {
		t.Fatal(err)
	}

	rotated := newTestKeyring(t, "k2", map[string][]byte{"k1": testKey(1), "k2": testKey(2)})
	if got := rotated.Primary(); got != "k2" {
		t.Errorf("Primary() = %q, want k2", got)
	}
	var into Token
	if err := openInto(rotated, testUser, kid, ct, &into); err != nil {
		t.Fatalf("open a k1 record after rotation: %v", err)
	}
	if !secretsEqual(into, testToken()) {
		t.Errorf("got %s", dump(into))
	}

	newKid, newCt, err := rotated.SealToken(into, testProvider)
	if err != nil {
		t.Fatal(err)
	}
	if newKid != "k2" {
		t.Errorf("new seal kid = %q, want k2", newKid)
	}
	if err := openInto(old, testUser, newKid, newCt, &into); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old keyring on a k2 record: err = %v, want ErrUnknownKey", err)
	}
	if err := openInto(rotated, testUser, newKid, newCt, &into); err != nil {
		t.Errorf("open the re-sealed record: %v", err)
	}
}

func TestNewKeyringErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		primary string
		keys    map[string][]byte
		want    string
	}{
		{"no keys", "k1", nil, "keyring: no keys"},
		{"empty primary", "", map[string][]byte{"k1": testKey(1)}, "keyring: primary key id is empty"},
		{"primary missing", "k2", map[string][]byte{"k1": testKey(1)}, `keyring: primary key "k2" is not in the keyring`},
		{"short key", "k1", map[string][]byte{"k1": testKey(1)[:31]}, `keyring: key "k1" is 31 bytes, want 32`},
		{"long key", "k1", map[string][]byte{"k1": append(testKey(1), 1)}, `keyring: key "k1" is 33 bytes, want 32`},
		{"AES-128 key", "k1", map[string][]byte{"k1": testKey(1)[:16]}, `keyring: key "k1" is 16 bytes, want 32`},
		{"nil key", "k1", map[string][]byte{"k1": testKey(1), "k0": nil}, `keyring: key "k0" is 0 bytes, want 32`},
		{"empty id", "k1", map[string][]byte{"k1": testKey(1), "": testKey(2)}, "keyring: key id is empty"},
		{"id with space", "k 1", map[string][]byte{"k 1": testKey(1)}, `keyring: key id "k 1": want printable ASCII without spaces`},
		{"long id", strings.Repeat("k", 65), map[string][]byte{strings.Repeat("k", 65): testKey(1)},
			fmt.Sprintf("keyring: key id %q is 65 bytes, limit is 64", strings.Repeat("k", 64)+"…")},
	}
	for _, tt := range tests {
		k, err := NewKeyring(tt.primary, tt.keys)
		if err == nil {
			t.Errorf("%s: NewKeyring succeeded", tt.name)
			continue
		}
		if k != nil {
			t.Errorf("%s: keyring not nil on error", tt.name)
		}
		if err.Error() != tt.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tt.name, err, tt.want)
		}
	}
}

func TestNewKeyringKeepsNoReference(t *testing.T) {
	t.Parallel()
	key := testKey(7)
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": key})
	kid, ct, err := k.SealToken(testToken(), testProvider)
	if err != nil {
		t.Fatal(err)
	}
	clear(key) // the caller wipes its copy
	var into Token
	if err := openInto(k, testUser, kid, ct, &into); err != nil {
		t.Fatalf("OpenRecord after the caller wiped the key: %v", err)
	}
}

func TestSealedHidesPlaintext(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	tok := testToken()
	_, ct1, err := k.SealToken(tok, testProvider)
	if err != nil {
		t.Fatal(err)
	}
	_, ct2, err := k.SealToken(tok, testProvider)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{testAccess, testRefresh, testConsent, "SECRET", "Bearer", `"a":`} {
		if bytes.Contains(ct1, []byte(secret)) {
			t.Errorf("ciphertext contains %q", secret)
		}
	}
	if bytes.Equal(ct1, ct2) || bytes.Equal(ct1[1:headerSize], ct2[1:headerSize]) {
		t.Error("two seals of the same token share a nonce")
	}
}

func TestSealErrors(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})

	if _, _, err := k.Seal("", []byte("x")); err == nil || err.Error() != "keyring: user id is empty" {
		t.Errorf("Seal without user: err = %v", err)
	}
	if _, _, err := k.SealToken(Token{AccessToken: testAccess}, testProvider); err == nil || err.Error() != "keyring: user id is empty" {
		t.Errorf("SealToken without user: err = %v", err)
	}
	if _, err := k.Open("", "k1", make([]byte, 100)); err == nil || errors.Is(err, ErrDecrypt) {
		t.Errorf("Open without user: err = %v, want a non-ErrDecrypt error", err)
	}
	bad := testToken()
	bad.RefreshToken = "r\xff"
	if _, _, err := k.SealToken(bad, testProvider); err == nil || err.Error() != "keyring: refresh token is not valid UTF-8" {
		t.Errorf("SealToken with invalid UTF-8: err = %v", err)
	}

	var zero Keyring
	if _, _, err := zero.SealToken(testToken(), testProvider); err == nil {
		t.Error("zero Keyring sealed")
	}
	if err := openInto(&zero, testUser, "k1", make([]byte, 100), &Token{}); err == nil {
		t.Error("zero Keyring opened")
	}
	var nilKeyring *Keyring
	if _, _, err := nilKeyring.Seal(testUser, nil); err == nil {
		t.Error("nil Keyring sealed")
	}
}

func TestOpenRecordPlaintextForms(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k1", map[string][]byte{"k1": testKey(1)})
	tests := []struct {
		name string
		pt   string
		want Token // "" fields; UserID is testUser
		ok   bool
	}{
		{"fast path", `{"a":"x","r":"y","t":"Bearer","c":"z"}`, Token{AccessToken: "x", RefreshToken: "y", TokenType: "Bearer", ConsentID: "z"}, true},
		{"any order, unknown key", `{"c":"z","q":"?","r":"y","a":"x"}`, Token{AccessToken: "x", RefreshToken: "y", ConsentID: "z"}, true},
		{"escapes use encoding/json", `{"a":"x\"1","r":"\u0079"}`, Token{AccessToken: `x"1`, RefreshToken: "y"}, true},
		{"whitespace uses encoding/json", `{ "a" : "x" , "r":"y" }`, Token{AccessToken: "x", RefreshToken: "y"}, true},
		{"long key uses encoding/json", `{"access":"x","a":"y"}`, Token{AccessToken: "y"}, true},
		{"empty object", `{}`, Token{}, true},
		{"not json", `not json`, Token{}, false},
		{"unterminated", `{"a":"x`, Token{}, false},
		{"array", `["x"]`, Token{}, false},
		{"number value", `{"a":1}`, Token{}, false},
	}
	for _, tt := range tests {
		kid, ct, err := k.Seal(testUser, []byte(tt.pt))
		if err != nil {
			t.Fatal(err)
		}
		into := Token{AccessToken: "stale", RefreshToken: "stale", TokenType: "stale", ConsentID: "stale"}
		err = openInto(k, testUser, kid, ct, &into)
		if !tt.ok {
			if !errors.Is(err, ErrDecrypt) {
				t.Errorf("%s: err = %v, want ErrDecrypt", tt.name, err)
			} else if strings.Contains(err.Error(), tt.pt) {
				t.Errorf("%s: error %q contains the plaintext", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		tt.want.UserID = testUser
		if !secretsEqual(into, tt.want) {
			t.Errorf("%s:\ngot  %s\nwant %s", tt.name, dump(into), dump(tt.want))
		}
	}
}

func TestSealSecretsLen(t *testing.T) {
	t.Parallel()
	for _, tok := range []Token{{}, {AccessToken: "a"}, testToken(), {ConsentID: "\x00\"\\", TokenType: "é"}} {
		if got, want := secretsLen(tok), len(appendSecrets(nil, tok)); got != want {
			t.Errorf("secretsLen(%s) = %d, appendSecrets wrote %d", dump(tok), got, want)
		}
	}
}

func TestKeyringConcurrent(t *testing.T) {
	t.Parallel()
	k := newTestKeyring(t, "k2", map[string][]byte{"k1": testKey(1), "k2": testKey(2)})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			tok := testToken()
			tok.UserID = fmt.Sprintf("user-%d", g)
			for i := range 200 {
				tok.AccessToken = fmt.Sprintf("access-%d-%d", g, i)
				kid, ct, err := k.SealToken(tok, testProvider)
				if err != nil {
					errs <- err
					return
				}
				var into Token
				if err := openInto(k, tok.UserID, kid, ct, &into); err != nil {
					errs <- err
					return
				}
				if !secretsEqual(into, tok) {
					errs <- fmt.Errorf("goroutine %d: got %s, want %s", g, dump(into), dump(tok))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// benchToken is shaped like a digi.me token: two JWT-sized values.
func benchToken() Token {
	return Token{
		UserID: "user-0123456789", AccessToken: strings.Repeat("a", 900), RefreshToken: strings.Repeat("r", 900),
		TokenType: "Bearer", ConsentID: "consent-0123456789", AccessExpiry: time.Unix(1767366245, 0),
	}
}

func BenchmarkSealToken(b *testing.B) {
	k := newTestKeyring(b, "k1", map[string][]byte{"k1": testKey(1)})
	tok := benchToken()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := k.SealToken(tok, testProvider); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenRecord(b *testing.B) {
	k := newTestKeyring(b, "k1", map[string][]byte{"k1": testKey(1)})
	tok := benchToken()
	kid, ct, err := k.SealToken(tok, testProvider)
	if err != nil {
		b.Fatal(err)
	}
	var into Token
	b.ReportAllocs()
	for b.Loop() {
		if err := openInto(k, tok.UserID, kid, ct, &into); err != nil {
			b.Fatal(err)
		}
	}
}
