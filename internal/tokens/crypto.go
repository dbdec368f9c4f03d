package tokens

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/syncd/syncd/internal/clip"
)

// Sealed layout: version (1 byte) | nonce (12) | AES-256-GCM ciphertext | tag (16).
//
// The version byte says what the associated data binds, so a record is
// opened one way only, never by trial:
//   - sealVersion (0x01): the user id alone (adPrefix + user). Seal makes
//     it; token records sealed before provider binding have it too
//     ("legacy"), and they are re-sealed as tokenVersion by their next
//     refresh and by `keys rotate`.
//   - tokenVersion (0x02): the user id and the provider (tokenADPrefix +
//     uvarint(len(user)) + user + provider). SealToken makes it.
//
// The two prefixes differ, so a tokenVersion record whose version byte is
// changed to 0x01 does not authenticate under the legacy data either.
const (
	sealVersion  byte = 0x01
	tokenVersion byte = 0x02
	nonceSize         = 12
	tagSize           = 16
	headerSize        = 1 + nonceSize
	sealOverhead      = headerSize + tagSize

	// KeySize is the length of every key in a Keyring: AES-256.
	KeySize = 32

	// maxKeyIDLen bounds key ids, which are stored beside every record.
	maxKeyIDLen = 64

	// adPrefix starts the associated data of sealVersion; the user id
	// follows, so a record sealed for one user does not open as another's.
	adPrefix = "syncd/token/v1\x00"
	// tokenADPrefix starts the associated data of tokenVersion; the user id
	// (length first) and the provider follow, so a record whose clear
	// provider field was changed does not open, and its refresh token is
	// never sent to that other provider.
	tokenADPrefix = "syncd/token/v2\x00"

	// checkConstant is what a key's check value authenticates (see
	// Keyring.Verify).
	checkConstant = "syncd/keycheck/v1"
)

var (
	// ErrUnknownKey means a record names a key id the keyring does not
	// hold: the key was removed from the configuration too early.
	ErrUnknownKey = errors.New("unknown key id")
	// ErrDecrypt means a record did not open: wrong key, wrong user or
	// provider, tampered or truncated ciphertext, or an unknown layout
	// version.
	ErrDecrypt = errors.New("cannot decrypt")
)

// Keyring holds the AES-256-GCM keys that encrypt tokens at rest: the
// primary key seals, every key opens, so keys can be rotated by adding a
// new primary and keeping the old key until all records are re-sealed.
// A Keyring is safe for concurrent use. Its keys never change; Verify
// marks it, once, as matching the database (see Verified).
type Keyring struct {
	primary string
	seal    cipher.AEAD // the primary key's
	aeads   map[string]cipher.AEAD
	// checks holds each key id's check value: HMAC-SHA256 of
	// checkConstant under the key, hex. It identifies the key without
	// revealing it.
	checks   map[string]string
	verified atomic.Bool
}

// NewKeyring builds a Keyring from key id → key. Every key must be exactly
// KeySize bytes; ids must be 1..64 printable ASCII characters without
// spaces (they are stored beside every record and logged); primary must be
// one of the ids. The keyring does not keep the caller's slices, so the
// caller may zero them afterwards.
func NewKeyring(primary string, keys map[string][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring: no keys")
	}
	if primary == "" {
		return nil, errors.New("keyring: primary key id is empty")
	}
	if _, ok := keys[primary]; !ok {
		return nil, fmt.Errorf("keyring: primary key %q is not in the keyring", primary)
	}
	k := &Keyring{primary: primary, aeads: make(map[string]cipher.AEAD, len(keys)), checks: make(map[string]string, len(keys))}
	for _, id := range slices.Sorted(maps.Keys(keys)) { // sorted: the same bad key is reported every time
		key := keys[id]
		if err := validateKeyID(id); err != nil {
			return nil, err
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("keyring: key %q is %d bytes, want %d", id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %q: %w", id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %q: %w", id, err)
		}
		k.aeads[id] = aead
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(checkConstant))
		k.checks[id] = hex.EncodeToString(mac.Sum(nil))
	}
	k.seal = k.aeads[primary]
	return k, nil
}

func validateKeyID(id string) error {
	if id == "" {
		return errors.New("keyring: key id is empty")
	}
	if len(id) > maxKeyIDLen {
		return fmt.Errorf("keyring: key id %q is %d bytes, limit is %d", clip.String(id, maxKeyIDLen), len(id), maxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("keyring: key id %q: want printable ASCII without spaces", id)
		}
	}
	return nil
}

// Primary returns the id of the key Seal uses. A record whose key id differs
// is due for re-sealing.
func (k *Keyring) Primary() string { return k.primary }

// Seal encrypts plaintext for userID with the primary key and returns that
// key's id and the sealed bytes (version, random nonce, ciphertext, tag).
func (k *Keyring) Seal(userID string, plaintext []byte) (kid string, ciphertext []byte, err error) {
	if err := k.checkSeal(userID); err != nil {
		return "", nil, err
	}
	s := scratchPool.Get().(*scratch)
	defer s.put()
	s.ad = appendAD(s.ad[:0], userID)
	out := make([]byte, headerSize, sealOverhead+len(plaintext))
	out, err = k.sealTo(out, sealVersion, s.ad, plaintext)
	if err != nil {
		return "", nil, err
	}
	return k.primary, out, nil
}

// Open decrypts a record sealed for userID with key kid. It fails with
// ErrUnknownKey when the keyring lacks kid and with ErrDecrypt when the
// record does not authenticate (including one sealed for another user).
func (k *Keyring) Open(userID, kid string, ciphertext []byte) ([]byte, error) {
	aead, err := k.checkOpen(userID, kid, ciphertext)
	if err != nil {
		return nil, err
	}
	if v := ciphertext[0]; v != sealVersion {
		return nil, unknownVersion(kid, v)
	}
	s := scratchPool.Get().(*scratch)
	defer s.put()
	s.ad = appendAD(s.ad[:0], userID)
	out := make([]byte, 0, len(ciphertext)-sealOverhead)
	return openTo(out, aead, s.ad, kid, ciphertext)
}

// SealToken seals the secret parts of t (AccessToken, RefreshToken,
// TokenType, ConsentID) for t.UserID and provider as compact JSON with
// short keys. The user id, provider and expiries are not in the
// ciphertext: they are stored in clear beside it, and the user id and
// provider are bound in as associated data, so the record opens only for
// that user and that provider (OpenRecord). The four fields must be valid
// UTF-8; provider must not be empty.
func (k *Keyring) SealToken(t Token, provider string) (kid string, ciphertext []byte, err error) {
	if err := k.checkSeal(t.UserID); err != nil {
		return "", nil, err
	}
	if provider == "" {
		return "", nil, errors.New("keyring: provider is empty")
	}
	fields := [...]struct {
		name, val string
	}{{"access token", t.AccessToken}, {"refresh token", t.RefreshToken}, {"token type", t.TokenType}, {"consent id", t.ConsentID}}
	for _, f := range fields {
		if !utf8.ValidString(f.val) {
			return "", nil, fmt.Errorf("keyring: %s is not valid UTF-8", f.name)
		}
	}
	// One allocation: the plaintext is written where the ciphertext goes
	// and encrypted in place.
	buf := make([]byte, headerSize, sealOverhead+secretsLen(t))
	buf = appendSecrets(buf, t)
	s := scratchPool.Get().(*scratch)
	defer s.put()
	s.ad = appendTokenAD(s.ad[:0], t.UserID, provider)
	sealed, err := k.sealTo(buf[:headerSize], tokenVersion, s.ad, buf[headerSize:])
	if err != nil {
		clear(buf) // the plaintext is still in it
		return "", nil, err
	}
	buf = sealed
	return k.primary, buf, nil
}

// OpenRecord opens the token sealed in rec for rec.UserID and
// rec.Provider: the user id, the four secret fields and the expiries from
// rec. It is the one way to read a stored token. It fails with
// ErrUnknownKey when the keyring lacks rec.KeyID, and with ErrDecrypt when
// the record does not authenticate: another key under that id, a record
// sealed for another user or (tokenVersion) another provider, a tampered
// or truncated ciphertext, or an unknown format. A legacy record
// (sealVersion) is bound to its user only and opens whatever rec.Provider
// says; NeedsReseal reports it.
func (k *Keyring) OpenRecord(rec Record) (Token, error) {
	tok := Token{AccessExpiry: rec.AccessExpiry, RefreshExpiry: rec.RefreshExpiry}
	if err := k.openToken(rec.UserID, rec.Provider, rec.KeyID, rec.Ciphertext, &tok); err != nil {
		return Token{}, err
	}
	return tok, nil
}

// NeedsReseal reports whether rec should be sealed again: it is under a
// key other than the primary, or in the legacy format that does not bind
// the provider. `keys rotate` re-seals such records; a refresh does too.
func (k *Keyring) NeedsReseal(rec Record) bool {
	return rec.KeyID != k.primary || len(rec.Ciphertext) == 0 || rec.Ciphertext[0] != tokenVersion
}

// openToken opens a token record and sets into's UserID and four secret
// fields; the expiries are left as they are. A record that opens but does
// not decode also wraps ErrDecrypt.
func (k *Keyring) openToken(userID, provider, kid string, ciphertext []byte, into *Token) error {
	aead, err := k.checkOpen(userID, kid, ciphertext)
	if err != nil {
		return err
	}
	s := scratchPool.Get().(*scratch)
	defer s.put()
	switch v := ciphertext[0]; v {
	case tokenVersion:
		s.ad = appendTokenAD(s.ad[:0], userID, provider)
	case sealVersion:
		s.ad = appendAD(s.ad[:0], userID)
	default:
		return unknownVersion(kid, v)
	}
	pt, err := openTo(s.pt[:0], aead, s.ad, kid, ciphertext)
	if err != nil {
		return err
	}
	s.pt = pt // keep a grown buffer for the pool; put wipes it
	var sec secrets
	if !sec.decodeFast(pt) {
		if err := sec.decodeJSON(pt); err != nil {
			return fmt.Errorf("keyring: key %q: %w: sealed token is malformed", kid, ErrDecrypt)
		}
	}
	into.UserID = userID
	into.AccessToken = sec.access
	into.RefreshToken = sec.refresh
	into.TokenType = sec.tokenType
	into.ConsentID = sec.consentID
	return nil
}

func (k *Keyring) checkSeal(userID string) error {
	if k == nil || k.seal == nil {
		return errors.New("keyring: not initialized; use NewKeyring")
	}
	if userID == "" {
		return errors.New("keyring: user id is empty")
	}
	return nil
}

func (k *Keyring) checkOpen(userID, kid string, ciphertext []byte) (cipher.AEAD, error) {
	if k == nil || k.seal == nil {
		return nil, errors.New("keyring: not initialized; use NewKeyring")
	}
	if userID == "" {
		return nil, errors.New("keyring: user id is empty")
	}
	aead, ok := k.aeads[kid]
	if !ok {
		return nil, fmt.Errorf("keyring: %w %q", ErrUnknownKey, clip.String(kid, maxKeyIDLen))
	}
	if len(ciphertext) < sealOverhead {
		return nil, fmt.Errorf("keyring: key %q: %w: ciphertext is %d bytes, too short", kid, ErrDecrypt, len(ciphertext))
	}
	return aead, nil
}

func unknownVersion(kid string, v byte) error {
	return fmt.Errorf("keyring: key %q: %w: unknown format version 0x%02x", kid, ErrDecrypt, v)
}

// sealTo fills in the header in hdr (len headerSize; best with capacity for
// the whole record) with version, seals plaintext after it with the
// primary key and associated data ad, and returns the record. plaintext
// may be exactly the bytes after the header (sealing in place) or must not
// overlap hdr's capacity at all.
func (k *Keyring) sealTo(hdr []byte, version byte, ad, plaintext []byte) ([]byte, error) {
	hdr[0] = version
	nonce := hdr[1:headerSize]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("keyring: read nonce: %w", err)
	}
	sealed := k.seal.Seal(hdr[headerSize:headerSize], nonce, plaintext, ad)
	return hdr[:headerSize+len(sealed)], nil
}

// openTo authenticates and decrypts a record checked by checkOpen against
// associated data ad, appending the plaintext to dst.
func openTo(dst []byte, aead cipher.AEAD, ad []byte, kid string, ciphertext []byte) ([]byte, error) {
	pt, err := aead.Open(dst, ciphertext[1:headerSize], ciphertext[headerSize:], ad)
	if err != nil {
		// crypto/cipher's error says only "message authentication failed".
		return nil, fmt.Errorf("keyring: key %q: %w: message authentication failed", kid, ErrDecrypt)
	}
	return pt, nil
}

func appendAD(dst []byte, userID string) []byte {
	dst = append(dst, adPrefix...)
	return append(dst, userID...)
}

// appendTokenAD is tokenVersion's associated data. The user id's length
// comes first, so no user id and provider pair reads as another.
func appendTokenAD(dst []byte, userID, provider string) []byte {
	dst = append(dst, tokenADPrefix...)
	dst = binary.AppendUvarint(dst, uint64(len(userID)))
	dst = append(dst, userID...)
	return append(dst, provider...)
}

// scratch holds per-call buffers, pooled because sealing and opening are on
// the refresh hot path and the AEAD interface makes its arguments escape.
type scratch struct {
	ad []byte // associated data
	pt []byte // openToken's plaintext; wiped before reuse
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

const maxPooled = 4 << 10

func (s *scratch) put() {
	clear(s.pt)
	if cap(s.ad) > maxPooled || cap(s.pt) > maxPooled {
		return
	}
	s.pt = s.pt[:0]
	scratchPool.Put(s)
}

// secrets is the sealed part of a Token. Its JSON form is
// {"a":access,"r":refresh,"t":type,"c":consent}, empty fields left out.
type secrets struct {
	access, refresh, tokenType, consentID string
}

// secretsLen is the length appendSecrets will write.
func secretsLen(t Token) int {
	n, fields := 2, 0 // {}
	for _, f := range [...]string{t.AccessToken, t.RefreshToken, t.TokenType, t.ConsentID} {
		if f != "" {
			n += len(`"a":`) + jsonStringLen(f)
			fields++
		}
	}
	if fields > 1 {
		n += fields - 1 // commas
	}
	return n
}

func appendSecrets(dst []byte, t Token) []byte {
	start := len(dst)
	dst = append(dst, '{')
	for _, f := range [...]struct {
		key byte
		val string
	}{{'a', t.AccessToken}, {'r', t.RefreshToken}, {'t', t.TokenType}, {'c', t.ConsentID}} {
		if f.val == "" {
			continue
		}
		if len(dst) > start+1 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"', f.key, '"', ':')
		dst = appendJSONString(dst, f.val)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// escapeExtra[c] is how many bytes escaping c in a JSON string adds:
// 5 for a control character (\u00XX), 1 for '"' and '\\', else 0.
var escapeExtra = func() (t [256]uint8) {
	for c := range 0x20 {
		t[c] = 5
	}
	t['"'], t['\\'] = 1, 1
	return t
}()

func needsEscape(c byte) bool { return escapeExtra[c] != 0 }

func jsonStringLen(s string) int {
	n := 2 + len(s)
	for i := 0; i < len(s); i++ {
		n += int(escapeExtra[s[i]])
	}
	return n
}

// appendJSONString appends s, which must be valid UTF-8, as a JSON string.
// Runs of bytes that need no escape are copied whole.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !needsEscape(c) {
			continue
		}
		dst = append(dst, s[start:i]...)
		if c < 0x20 {
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		} else {
			dst = append(dst, '\\', c)
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// decodeFast decodes what appendSecrets writes when no value needs an
// escape, with one allocation: the fields are substrings of one string.
// It reports false for anything else, and decodeJSON takes over.
func (s *secrets) decodeFast(pt []byte) bool {
	if len(pt) < 2 || pt[0] != '{' || pt[len(pt)-1] != '}' {
		return false
	}
	str := string(pt)
	i := 1
	for i < len(str)-1 {
		// "k":"value"
		if i+4 >= len(str) || str[i] != '"' || str[i+2] != '"' || str[i+3] != ':' || str[i+4] != '"' {
			return false
		}
		key := str[i+1]
		start := i + 5
		n := strings.IndexByte(str[start:], '"')
		if n < 0 {
			return false
		}
		end := start + n
		val := str[start:end]
		if end >= len(str)-1 || strings.IndexByte(val, '\\') >= 0 {
			return false
		}
		switch key {
		case 'a':
			s.access = val
		case 'r':
			s.refresh = val
		case 't':
			s.tokenType = val
		case 'c':
			s.consentID = val
		}
		i = end + 1
		if str[i] == ',' {
			i++
		} else if i != len(str)-1 {
			return false
		}
	}
	return true
}

func (s *secrets) decodeJSON(pt []byte) error {
	var v struct {
		A string `json:"a"`
		R string `json:"r"`
		T string `json:"t"`
		C string `json:"c"`
	}
	if err := json.Unmarshal(pt, &v); err != nil {
		return err
	}
	*s = secrets{access: v.A, refresh: v.R, tokenType: v.T, consentID: v.C}
	return nil
}
