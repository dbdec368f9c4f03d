package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/errkind"
)

// ErrBadToken is wrapped by every error ParseToken returns for input the
// caller supplied (the token document or the user id), so a caller can tell
// "reject this request" apart from a programming error. Those errors never
// contain a token value or the raw input.
var ErrBadToken = errkind.New(errkind.Invalid, "bad token")

const (
	// MaxTokenInput is the largest token document ParseToken accepts. Real
	// token responses are a few KiB; the cap keeps a hostile caller from
	// making the daemon decode megabytes.
	MaxTokenInput = 64 << 10

	// MaxUserIDLen is the longest user id ValidateUserID accepts, in bytes.
	MaxUserIDLen = 200

	// msThreshold: an epoch expiry above it is taken as milliseconds, not
	// seconds. 1e11 seconds is the year 5138; 1e11 milliseconds is 1973.
	msThreshold = 1e11

	// maxEpochSeconds is 9999-12-31T23:59:59Z, the last time RFC 3339 can
	// write; later expiries are rejected as out of range.
	maxEpochSeconds = 253402300799

	// maxLifetime bounds expires_in and refresh_token_expires_in (100 years),
	// well inside time.Duration's range.
	maxLifetime = 100 * 365 * 24 * 3600

	redacted = "REDACTED"

	// Log field names used by MarshalZerologObject and LogValue.
	fieldUserID        = "user_id"
	fieldAccessExpiry  = "access_expiry"
	fieldRefreshExpiry = "refresh_expiry"
	fieldAccess        = "access"
	fieldRefresh       = "refresh"
)

// Token is one user's delegated credential, decrypted.
//
// Token keeps its secrets out of output by accident: String, GoString and
// Format (so every fmt verb, including %v, %+v and %#v), zerolog and slog
// all print the user id and expiries with the token values REDACTED, and
// MarshalJSON fails. To store a Token use Keyring.SealToken. Two gaps
// remain, because fmt skips all methods there and the fields are plain
// strings: a Token held in an unexported struct field of a value that gets
// printed, and the %p verb applied to a Token value (not a pointer). Do not
// keep a Token in an unexported field of a printed type, and never use %p
// on a Token (go vet does not catch it).
type Token struct {
	UserID        string
	AccessToken   string
	RefreshToken  string
	TokenType     string    // "Bearer" etc, may be empty
	ConsentID     string    // digi.me consentid, may be empty
	AccessExpiry  time.Time // never zero after ParseToken
	RefreshExpiry time.Time // zero: the refresh token has no known expiry
}

// String describes the token without its secrets, e.g.
// `Token{user="u1" access_expiry=2026-01-02T15:04:05Z refresh_expiry=none access=REDACTED refresh=REDACTED}`.
func (t Token) String() string {
	return fmt.Sprintf("Token{user=%q access_expiry=%s refresh_expiry=%s access=%s refresh=%s}",
		t.UserID, fmtExpiry(t.AccessExpiry), fmtExpiry(t.RefreshExpiry),
		redact(t.AccessToken), redact(t.RefreshToken))
}

// GoString is used by %#v; like String it leaves out the secrets.
func (t Token) GoString() string {
	return fmt.Sprintf("tokens.Token{UserID:%q, AccessExpiry:%q, RefreshExpiry:%q, AccessToken:%s, RefreshToken:%s}",
		t.UserID, fmtExpiry(t.AccessExpiry), fmtExpiry(t.RefreshExpiry),
		redact(t.AccessToken), redact(t.RefreshToken))
}

// Format makes every fmt verb print String (or GoString for %#v), so no
// verb can reach the fields.
func (t Token) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, t.GoString())
		return
	}
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), t.String())
}

// MarshalZerologObject logs the user id and expiries; the token values are
// REDACTED. It is used by zerolog's Object, EmbedObject and Interface.
func (t Token) MarshalZerologObject(e *zerolog.Event) {
	e.Str(fieldUserID, t.UserID)
	if !t.AccessExpiry.IsZero() {
		e.Time(fieldAccessExpiry, t.AccessExpiry)
	}
	if !t.RefreshExpiry.IsZero() {
		e.Time(fieldRefreshExpiry, t.RefreshExpiry)
	}
	e.Str(fieldAccess, redact(t.AccessToken))
	e.Str(fieldRefresh, redact(t.RefreshToken))
}

// LogValue does for log/slog what MarshalZerologObject does for zerolog.
func (t Token) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs, slog.String(fieldUserID, t.UserID))
	if !t.AccessExpiry.IsZero() {
		attrs = append(attrs, slog.Time(fieldAccessExpiry, t.AccessExpiry))
	}
	if !t.RefreshExpiry.IsZero() {
		attrs = append(attrs, slog.Time(fieldRefreshExpiry, t.RefreshExpiry))
	}
	attrs = append(attrs,
		slog.String(fieldAccess, redact(t.AccessToken)),
		slog.String(fieldRefresh, redact(t.RefreshToken)))
	return slog.GroupValue(attrs...)
}

// MarshalJSON always fails, so a Token is never written out in clear by
// accident (an API response, a debug dump, a Redis value). The stored form
// comes from Keyring.SealToken.
func (t Token) MarshalJSON() ([]byte, error) {
	return nil, errors.New("tokens: Token must not be JSON-encoded; use Keyring.SealToken")
}

func redact(s string) string {
	if s == "" {
		return "empty"
	}
	return redacted
}

func fmtExpiry(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

// ParseOptions are the inputs to ParseToken that do not come from the
// token document.
type ParseOptions struct {
	// UserID is the syncd user the token belongs to. Required; it must pass
	// ValidateUserID. If the document names a user (user.id or sub), the two
	// must be equal.
	UserID string
	// Now is the current time from the caller's clock. Required. Relative
	// lifetimes (expires_in) count from it, and the refresh expiry is
	// checked against it.
	Now time.Time
	// DefaultLifetime is the access token lifetime assumed when the document
	// gives none; the token is then refreshed when it runs out. Must be > 0.
	DefaultLifetime time.Duration
}

// ParseToken reads a token document as a user hands it over and returns the
// Token syncd keeps alive. The format is detected by its keys:
//
//  1. digi.me SDK UserAccessToken:
//     {"accessToken":{"value":..,"expiry":..},"refreshToken":{"value":..,"expiry":..},"user":{"id":..},"consentid":..}
//  2. digi.me backend payload (the verified oauth/token JWT payload):
//     {"access_token":{"value":..,"expires_on":..},"refresh_token":{"value":..,"expires_on":..},"sub":..,"consentid":..,"token_type":..}
//  3. RFC 6749 token response or golang.org/x/oauth2 Token JSON:
//     {"access_token":..,"refresh_token":..,"token_type":..,"expires_in":3600|"3600","expiry":"<RFC 3339>","refresh_token_expires_in":..}
//
// digi.me expiries are seconds since the epoch; as the unit is unconfirmed
// upstream, a number above 1e11 is taken as milliseconds. A missing, null or
// zero expiry means unknown. In format 3, "expiry" (absolute, as x/oauth2
// stores it) wins over "expires_in" (relative to opts.Now), and the zero
// time x/oauth2 writes for "no expiry" means unknown. An unknown access
// expiry becomes opts.Now + opts.DefaultLifetime; an unknown refresh expiry
// stays zero. Unknown extra keys are ignored; string values are trimmed.
//
// An access expiry in the past is accepted: the token is then due for an
// immediate refresh. A refresh expiry at or before opts.Now is an error,
// since such a token can no longer be kept alive.
//
// Errors about the document or the user id wrap ErrBadToken, are one line,
// and never contain a token value or the raw input. Invalid options (zero
// Now, DefaultLifetime <= 0) are programming errors and do not wrap
// ErrBadToken.
func ParseToken(data []byte, opts ParseOptions) (Token, error) {
	if opts.Now.IsZero() {
		return Token{}, errors.New("token: parse options: now is zero")
	}
	if opts.DefaultLifetime <= 0 {
		return Token{}, fmt.Errorf("token: parse options: default lifetime %v must be > 0", opts.DefaultLifetime)
	}
	if err := ValidateUserID(opts.UserID); err != nil {
		return Token{}, badToken("token: %w", err)
	}
	if len(data) > MaxTokenInput {
		return Token{}, badToken("token: input is %d bytes, limit is %d", len(data), MaxTokenInput)
	}
	top, err := decodeDocument(data)
	if err != nil {
		return Token{}, err
	}

	now := opts.Now.UTC()
	_, sdkAccess := top["accessToken"]
	_, sdkRefresh := top["refreshToken"]
	_, oauthAccess := top["access_token"]
	_, oauthRefresh := top["refresh_token"]
	isSDK := sdkAccess || sdkRefresh
	isOAuth := oauthAccess || oauthRefresh

	var p parsed
	switch {
	case isSDK && isOAuth:
		return Token{}, badToken("token: ambiguous format: both digi.me (accessToken, refreshToken) and OAuth2 (access_token, refresh_token) keys are present")
	case isSDK:
		p, err = parseNested(top, sdkFormat)
	case isOAuth && (jsonKind(top["access_token"]) == '{' || jsonKind(top["refresh_token"]) == '{'):
		p, err = parseNested(top, backendFormat)
	case isOAuth:
		p, err = parseRFC(top, now)
	default:
		return Token{}, badToken("token: unknown format: want a digi.me UserAccessToken (accessToken, refreshToken) or an OAuth2 token (access_token, refresh_token)")
	}
	if err != nil {
		return Token{}, err
	}

	// p.userID (digi.me's user.id / sub) names the user in digi.me's
	// world; syncd's user id is the app's. They legitimately differ, so
	// the embedded id is only type-checked, never compared.
	if p.accessExpiry.IsZero() {
		p.accessExpiry = now.Add(opts.DefaultLifetime)
	}
	if !p.refreshExpiry.IsZero() && !p.refreshExpiry.After(now) {
		return Token{}, badToken("token: refresh token expired at %s", p.refreshExpiry.Format(time.RFC3339))
	}
	return Token{
		UserID:        opts.UserID,
		AccessToken:   p.access,
		RefreshToken:  p.refresh,
		TokenType:     p.tokenType,
		ConsentID:     p.consentID,
		AccessExpiry:  p.accessExpiry,
		RefreshExpiry: p.refreshExpiry,
	}, nil
}

// ValidateUserID reports whether id may name a new user: the user id
// grammar, checked wherever a user is created (token put, PUT
// /v1/users/{id}/token, authorize start, fake-digime --issue):
//
//	id = (ALPHA / DIGIT) *(ALPHA / DIGIT / "." / "_" / "@" / "+" / "=" / ":" / "-")
//
// 1 to MaxUserIDLen bytes of printable ASCII. A user id is a Redis key
// part (inside a {u:ID} hash tag and SCAN patterns), a file name (the dir
// sink), an HTTP header value (webhook sink) and a URL path segment (the
// admin API), so it holds only characters that mean nothing in any of
// them: no '/' or '\', no '.' or '..' (the first character is a letter or
// a digit, which also keeps ids from looking like a flag or a hidden
// file), no hash-tag braces or glob characters, no whitespace or control
// characters. Non-ASCII is refused rather than NFKC-normalised:
// normalisation still lets confusables from different scripts through
// (Cyrillic "а" is not Latin "a" under NFKC) and it would change ids
// silently. E-mail addresses, "digime:<id>" and "demo-user-02" fit.
// The error names the id, quoted, and the problem.
func ValidateUserID(id string) error {
	if err := checkUserIDLen(id); err != nil {
		return err
	}
	if !isAlnum(id[0]) && id[0] < utf8.RuneSelf && id[0] > ' ' && id[0] != 0x7f {
		return fmt.Errorf("user id %+q: must start with a letter or a digit", id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		var problem string
		switch {
		case isAlnum(c) || (i > 0 && strings.IndexByte(userIDPunct, c) >= 0):
			continue
		case c == ' ' || c == '\t':
			problem = "contains whitespace"
		case c < ' ' || c == 0x7f:
			problem = "contains a control character"
		case c >= utf8.RuneSelf:
			problem = "contains a non-ASCII character"
		default:
			problem = fmt.Sprintf("contains %q (allowed: A-Z a-z 0-9 %s)", c, userIDPunctList)
		}
		// %+q: a confusable shows as its escape, not as its look-alike.
		return fmt.Errorf("user id %+q: %s", id, problem)
	}
	return nil
}

const (
	// userIDPunct are the characters a user id may hold after its first.
	userIDPunct     = "._@+=:-"
	userIDPunctList = ". _ @ + = : -"
)

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func checkUserIDLen(id string) error {
	switch {
	case id == "":
		return errors.New("user id is empty")
	case len(id) > MaxUserIDLen:
		return fmt.Errorf("user id is %d bytes, limit is %d", len(id), MaxUserIDLen)
	}
	return nil
}

// ValidateExistingUserID reports whether id may name a user that may
// already be stored: the rule of syncd before the ValidateUserID grammar
// (1 to MaxUserIDLen bytes of valid UTF-8, without whitespace, control or
// invisible formatting characters, hash-tag braces or glob characters).
// Commands and routes that address an existing user (show, disable,
// enable, restore, re-authorize, jobs trigger, GET /v1/users/{id}) use it,
// so a user stored under an id the grammar now refuses is not lost; every
// write that creates or replaces a token uses ValidateUserID. Every id
// ValidateUserID accepts passes.
func ValidateExistingUserID(id string) error {
	if err := checkUserIDLen(id); err != nil {
		return err
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("user id %q: is not valid UTF-8", id)
	}
	for _, r := range id {
		var problem string
		switch {
		case unicode.IsSpace(r):
			problem = "contains whitespace"
		case unicode.IsControl(r):
			problem = "contains a control character"
		case unicode.Is(unicode.Cf, r):
			problem = "contains an invisible formatting character"
		case r == '{' || r == '}':
			problem = fmt.Sprintf("contains %q (reserved for redis hash tags)", r)
		case r == '*' || r == '?' || r == '[' || r == ']' || r == '\\':
			problem = fmt.Sprintf("contains glob character %q", r)
		default:
			continue
		}
		return fmt.Errorf("user id %q: %s", id, problem)
	}
	return nil
}

// badTokenError is an error about caller input: its message is the whole
// text and it wraps ErrBadToken, then the cause it names, if any.
type badTokenError struct{ err error }

func (e *badTokenError) Error() string   { return e.err.Error() }
func (e *badTokenError) Unwrap() []error { return []error{ErrBadToken, e.err} }

func badToken(format string, args ...any) error {
	return &badTokenError{err: fmt.Errorf(format, args...)}
}

// parsed is what a format parser found, before the shared checks.
type parsed struct {
	access, refresh, tokenType, consentID string
	userID                                string // from the document; "" if none
	accessExpiry, refreshExpiry           time.Time
}

// jsonObject keeps the raw values of an object so keys match exactly
// (encoding/json matches struct fields case-insensitively).
type jsonObject map[string]json.RawMessage

// decodeDocument decodes the top-level object. Its errors are written here,
// not taken from encoding/json, whose messages can quote input (a number, a
// character of a token).
func decodeDocument(data []byte) (jsonObject, error) {
	switch k := jsonKind(data); k {
	case '{':
	case 0:
		return nil, badToken("token: malformed JSON: input is empty")
	default:
		if !json.Valid(data) {
			return nil, malformedJSON(data)
		}
		return nil, badToken("token: malformed JSON: want an object, got %s", kindName(k))
	}
	if !utf8.Valid(data) {
		return nil, badToken("token: malformed JSON: invalid UTF-8 at byte %d", invalidUTF8At(data)+1)
	}
	var top jsonObject
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, malformedJSON(data)
	}
	if err := checkStrict(data); err != nil {
		return nil, err
	}
	return top, nil
}

// invalidUTF8At returns the index of the first byte of data that does not
// start a valid UTF-8 sequence.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}

// checkStrict refuses what encoding/json would silently repair or pick
// in a document that is otherwise valid JSON: a key given twice in one
// object (encoding/json keeps the last, other parsers the first) and a
// \u escape of a lone UTF-16 surrogate (decoded as U+FFFD). Invalid UTF-8
// is refused before. Errors name the key path when every key on it is a
// plain name (as all keys syncd reads are), else the byte offset; never
// a value.
func checkStrict(data []byte) error {
	type frame struct {
		object    bool
		keys      map[string]struct{}
		wantKey   bool
		path, key string // path to this container; the current key
		nameable  bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	stack := []frame{{path: "", nameable: true}} // a sentinel: the document
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return badToken("token: malformed JSON") // json.Unmarshal accepted it: unreachable
		}
		top := &stack[len(stack)-1]
		// childPath names the value tok starts (or is).
		childPath, childNameable := top.path, top.nameable
		switch {
		case top.object:
			childPath = joinPath(top.path, top.key)
			childNameable = top.nameable && plainKey(top.key)
		case len(stack) > 1:
			childPath += "[]"
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, frame{object: t == '{', keys: map[string]struct{}{}, wantKey: true,
					path: childPath, nameable: childNameable})
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			raw := data[before:dec.InputOffset()]
			start := before + int64(bytes.IndexByte(raw, '"'))
			raw = data[start:dec.InputOffset()]
			if top.object && top.wantKey {
				name := joinPath(top.path, t)
				nameable := top.nameable && plainKey(t)
				if hasLoneSurrogate(t, raw) {
					return badToken("token: malformed JSON: invalid \\u escape (lone surrogate) in a key at byte %d", start+1)
				}
				if _, dup := top.keys[t]; dup {
					if nameable {
						return badToken("token: malformed JSON: duplicate key %s", name)
					}
					return badToken("token: malformed JSON: duplicate key at byte %d", start+1)
				}
				top.keys[t], top.key, top.wantKey = struct{}{}, t, false
				continue
			}
			if hasLoneSurrogate(t, raw) {
				if childNameable {
					return badToken("token: malformed JSON: %s: invalid \\u escape (lone surrogate)", childPath)
				}
				return badToken("token: malformed JSON: invalid \\u escape (lone surrogate) at byte %d", start+1)
			}
		}
		// A value ended: the object around it wants its next key.
		stack[len(stack)-1].wantKey = true
	}
}

// plainKey reports whether a key can be named in an error: a short
// identifier, as every key of the token formats is, never a value.
func plainKey(k string) bool {
	if k == "" || len(k) > 32 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(isAlnum(c) || c == '_') {
			return false
		}
	}
	return true
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// hasLoneSurrogate reports whether decoded, the value of the JSON string
// raw, holds a U+FFFD that raw did not spell (as the character or as
// \ufffd): encoding/json's stand-in for an escaped lone surrogate.
func hasLoneSurrogate(decoded string, raw []byte) bool {
	n := strings.Count(decoded, "\uFFFD")
	if n == 0 {
		return false
	}
	spelled := bytes.Count(raw, []byte("\uFFFD")) + bytes.Count(bytes.ToLower(raw), []byte(`\ufffd`))
	return n > spelled
}

func malformedJSON(data []byte) error {
	var v any
	err := json.Unmarshal(data, &v)
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		if se.Offset >= int64(len(data)) {
			return badToken("token: malformed JSON: unexpected end of input")
		}
		return badToken("token: malformed JSON: syntax error at byte %d", se.Offset)
	}
	return badToken("token: malformed JSON")
}

// jsonKind returns the first byte of a JSON value: '{', '[', '"', 'n', 't',
// 'f', '-' or a digit; 0 for an empty value.
func jsonKind(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func kindName(k byte) string {
	switch k {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// nestedFormat names the keys of the two digi.me formats, which nest each
// token as {value, expiry}.
type nestedFormat struct {
	access, refresh string // top-level keys
	value, expiry   string // keys inside them
	tokenType       string // top-level key; "" if the format has none
	userObject      string // top-level object holding "id"; "" if none
	userKey         string // top-level string key; "" if none
}

var (
	sdkFormat = nestedFormat{
		access: "accessToken", refresh: "refreshToken",
		value: "value", expiry: "expiry",
		userObject: "user",
	}
	backendFormat = nestedFormat{
		access: "access_token", refresh: "refresh_token",
		value: "value", expiry: "expires_on",
		tokenType: "token_type",
		userKey:   "sub",
	}
)

func parseNested(top jsonObject, f nestedFormat) (parsed, error) {
	var p parsed
	var err error

	acc, ok, err := objectField(top, f.access, f.access)
	if err != nil {
		return p, err
	}
	if !ok {
		return p, badToken("token: %s is missing", f.access)
	}
	if p.access, err = tokenValue(acc, f.value, f.access+"."+f.value); err != nil {
		return p, err
	}
	if p.accessExpiry, err = epochField(acc, f.expiry, f.access+"."+f.expiry); err != nil {
		return p, err
	}

	ref, ok, err := objectField(top, f.refresh, f.refresh)
	if err != nil {
		return p, err
	}
	if !ok {
		return p, refreshMissing(f.refresh)
	}
	if p.refresh, err = refreshValue(ref, f.value, f.refresh+"."+f.value); err != nil {
		return p, err
	}
	if p.refreshExpiry, err = epochField(ref, f.expiry, f.refresh+"."+f.expiry); err != nil {
		return p, err
	}

	if f.tokenType != "" {
		if p.tokenType, _, err = stringField(top, f.tokenType, f.tokenType); err != nil {
			return p, err
		}
	}
	if p.consentID, _, err = stringField(top, "consentid", "consentid"); err != nil {
		return p, err
	}
	if f.userKey != "" {
		if p.userID, _, err = stringField(top, f.userKey, f.userKey); err != nil {
			return p, err
		}
	}
	if f.userObject != "" {
		user, ok, err := objectField(top, f.userObject, f.userObject)
		if err != nil {
			return p, err
		}
		if ok {
			if p.userID, _, err = stringField(user, "id", f.userObject+".id"); err != nil {
				return p, err
			}
		}
	}
	return p, nil
}

func parseRFC(top jsonObject, now time.Time) (parsed, error) {
	var p parsed
	var err error

	if p.access, err = tokenValue(top, "access_token", "access_token"); err != nil {
		return p, err
	}
	if p.refresh, err = refreshValue(top, "refresh_token", "refresh_token"); err != nil {
		return p, err
	}
	if p.tokenType, _, err = stringField(top, "token_type", "token_type"); err != nil {
		return p, err
	}

	expiry, ok, err := stringField(top, "expiry", "expiry")
	if err != nil {
		return p, err
	}
	if ok && expiry != "" {
		t, err := time.Parse(time.RFC3339Nano, expiry)
		if err != nil {
			return p, badToken("token: expiry must be an RFC 3339 time")
		}
		if !t.IsZero() { // x/oauth2 writes the zero time for "no expiry"
			p.accessExpiry = t.UTC()
		}
	}
	if p.accessExpiry.IsZero() {
		d, err := lifetimeField(top, "expires_in", "expires_in")
		if err != nil {
			return p, err
		}
		if d > 0 {
			p.accessExpiry = now.Add(d)
		}
	}
	d, err := lifetimeField(top, "refresh_token_expires_in", "refresh_token_expires_in")
	if err != nil {
		return p, err
	}
	if d > 0 {
		p.refreshExpiry = now.Add(d)
	}
	return p, nil
}

func refreshMissing(name string) error {
	return badToken("token: %s is missing: syncd needs a refresh token to keep access alive", name)
}

// tokenValue reads a required access token string.
func tokenValue(obj jsonObject, key, name string) (string, error) {
	s, ok, err := stringField(obj, key, name)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", badToken("token: %s is missing", name)
	case s == "":
		return "", badToken("token: %s is empty", name)
	}
	return s, checkTokenChars(s, name)
}

// refreshValue reads a required refresh token string.
func refreshValue(obj jsonObject, key, name string) (string, error) {
	s, _, err := stringField(obj, key, name)
	switch {
	case err != nil:
		return "", err
	case s == "":
		return "", refreshMissing(name)
	}
	return s, checkTokenChars(s, name)
}

// checkTokenChars rejects values no server issues and that would corrupt a
// header or a log line: RFC 6749 token characters are printable ASCII.
func checkTokenChars(s, name string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return badToken("token: %s contains a control character", name)
		}
	}
	if !utf8.ValidString(s) {
		return badToken("token: %s is not valid UTF-8", name)
	}
	return nil
}

// objectField returns obj[key] as an object; ok is false when the key is
// absent or null.
func objectField(obj jsonObject, key, name string) (jsonObject, bool, error) {
	raw, present := obj[key]
	switch k := jsonKind(raw); {
	case !present || k == 'n':
		return nil, false, nil
	case k != '{':
		return nil, false, badToken("token: %s must be an object", name)
	}
	var o jsonObject
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, false, badToken("token: %s must be an object", name)
	}
	return o, true, nil
}

// stringField returns obj[key] trimmed; ok is false when the key is absent
// or null.
func stringField(obj jsonObject, key, name string) (string, bool, error) {
	raw, present := obj[key]
	switch k := jsonKind(raw); {
	case !present || k == 'n':
		return "", false, nil
	case k != '"':
		return "", false, badToken("token: %s must be a string", name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, badToken("token: %s must be a string", name)
	}
	return strings.TrimSpace(s), true, nil
}

// numberField returns the text of a number given as a JSON number or a
// numeric string; ok is false when the key is absent, null or "".
func numberField(obj jsonObject, key, name string) (string, bool, error) {
	raw, present := obj[key]
	switch k := jsonKind(raw); {
	case !present || k == 'n':
		return "", false, nil
	case k == '-' || (k >= '0' && k <= '9'):
		return string(bytes.TrimSpace(raw)), true, nil
	case k == '"':
		s, _, err := stringField(obj, key, name)
		if err != nil {
			return "", false, err
		}
		if s == "" {
			return "", false, nil
		}
		if (s[0] != '-' && (s[0] < '0' || s[0] > '9')) || !json.Valid([]byte(s)) {
			return "", false, badToken("token: %s must be a number", name)
		}
		return s, true, nil
	default:
		return "", false, badToken("token: %s must be a number", name)
	}
}

// epochField reads an expiry in seconds (or, above 1e11, milliseconds)
// since the epoch. Absent, null and 0 give the zero time (unknown).
func epochField(obj jsonObject, key, name string) (time.Time, error) {
	text, ok, err := numberField(obj, key, name)
	if err != nil || !ok {
		return time.Time{}, err
	}
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		switch {
		case n < 0:
			return time.Time{}, badToken("token: %s is negative", name)
		case n == 0:
			return time.Time{}, nil
		case n > msThreshold:
			if n/1000 > maxEpochSeconds {
				return time.Time{}, badToken("token: %s is out of range", name)
			}
			return time.UnixMilli(n).UTC(), nil
		default:
			return time.Unix(n, 0).UTC(), nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		return time.Time{}, badToken("token: %s is out of range", name)
	case f < 0:
		return time.Time{}, badToken("token: %s is negative", name)
	case f == 0:
		return time.Time{}, nil
	case f > msThreshold:
		f /= 1000
	}
	if f > maxEpochSeconds {
		return time.Time{}, badToken("token: %s is out of range", name)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

// lifetimeField reads a lifetime in seconds. Absent, null and 0 give 0
// (unknown), as in golang.org/x/oauth2.
func lifetimeField(obj jsonObject, key, name string) (time.Duration, error) {
	text, ok, err := numberField(obj, key, name)
	if err != nil || !ok {
		return 0, err
	}
	f, err := strconv.ParseFloat(text, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		return 0, badToken("token: %s is out of range", name)
	case f < 0:
		return 0, badToken("token: %s is negative", name)
	case f > maxLifetime:
		return 0, badToken("token: %s is out of range", name)
	}
	return time.Duration(f * float64(time.Second)), nil
}
