package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Distinctive values: no error message or printed form may contain them.
const (
	testAccess  = "acc-SECRET-a1b2c3d4e5f6g7h8"
	testRefresh = "ref-SECRET-z9y8x7w6v5u4t3s2"
	testConsent = "consent-SECRET-4242"
	testUser    = "user-1"
)

var (
	testNow      = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	testLifetime = 10 * time.Minute
	inHour       = testNow.Add(time.Hour)
	inMonth      = testNow.Add(30 * 24 * time.Hour)
	hourAgo      = testNow.Add(-time.Hour)
)

func testOpts() ParseOptions {
	return ParseOptions{UserID: testUser, Now: testNow, DefaultLifetime: testLifetime}
}

// sdkDoc is a digi.me SDK UserAccessToken with the given raw JSON expiries.
func sdkDoc(accessExpiry, refreshExpiry string) string {
	return fmt.Sprintf(`{"accessToken":{"value":%q,"expiry":%s},"refreshToken":{"value":%q,"expiry":%s},"user":{"id":%q},"consentid":%q}`,
		testAccess, accessExpiry, testRefresh, refreshExpiry, testUser, testConsent)
}

// backendDoc is a digi.me oauth/token JWT payload.
func backendDoc(accessExpiry, refreshExpiry string) string {
	return fmt.Sprintf(`{"access_token":{"value":%q,"expires_on":%s},"refresh_token":{"value":%q,"expires_on":%s},"sub":%q,"consentid":%q,"token_type":"Bearer","identifier":{"id":"x"}}`,
		testAccess, accessExpiry, testRefresh, refreshExpiry, testUser, testConsent)
}

// rfcDoc is an RFC 6749 token response with extra members appended.
func rfcDoc(extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return fmt.Sprintf(`{"access_token":%q,"refresh_token":%q,"token_type":"Bearer"%s}`, testAccess, testRefresh, extra)
}

func unix(t time.Time) string   { return fmt.Sprint(t.Unix()) }
func unixMs(t time.Time) string { return fmt.Sprint(t.UnixMilli()) }

func TestParseToken(t *testing.T) {
	t.Parallel()

	sdkWant := Token{
		UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh,
		ConsentID: testConsent, AccessExpiry: inHour, RefreshExpiry: inMonth,
	}
	backendWant := sdkWant
	backendWant.TokenType = "Bearer"
	rfcWant := Token{
		UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh,
		TokenType: "Bearer", AccessExpiry: inHour,
	}
	with := func(tok Token, f func(*Token)) Token { f(&tok); return tok }

	tests := []struct {
		name string
		in   string
		want Token
	}{
		{"sdk seconds", sdkDoc(unix(inHour), unix(inMonth)), sdkWant},
		{"sdk milliseconds", sdkDoc(unixMs(inHour), unixMs(inMonth)), sdkWant},
		{"sdk milliseconds keep sub-second", sdkDoc(unixMs(inHour.Add(250*time.Millisecond)), unix(inMonth)),
			with(sdkWant, func(t *Token) { t.AccessExpiry = inHour.Add(250 * time.Millisecond) })},
		{"sdk fractional seconds", sdkDoc(unix(inHour)+".5", unix(inMonth)),
			with(sdkWant, func(t *Token) { t.AccessExpiry = inHour.Add(500 * time.Millisecond) })},
		{"sdk numeric string expiry", sdkDoc(`"`+unix(inHour)+`"`, unix(inMonth)), sdkWant},
		{"sdk zero expiries are unknown", sdkDoc("0", "0"),
			with(sdkWant, func(t *Token) { t.AccessExpiry = testNow.Add(testLifetime); t.RefreshExpiry = time.Time{} })},
		{"sdk null expiries are unknown", sdkDoc("null", "null"),
			with(sdkWant, func(t *Token) { t.AccessExpiry = testNow.Add(testLifetime); t.RefreshExpiry = time.Time{} })},
		{"sdk without expiries, user or consent",
			fmt.Sprintf(`{"accessToken":{"value":%q},"refreshToken":{"value":%q}}`, testAccess, testRefresh),
			Token{UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh, AccessExpiry: testNow.Add(testLifetime)}},
		{"sdk null user", fmt.Sprintf(`{"accessToken":{"value":%q},"refreshToken":{"value":%q},"user":null}`, testAccess, testRefresh),
			Token{UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh, AccessExpiry: testNow.Add(testLifetime)}},
		{"sdk access expiry in the past is accepted", sdkDoc(unix(hourAgo), unix(inMonth)),
			with(sdkWant, func(t *Token) { t.AccessExpiry = hourAgo })},
		{"sdk extra fields", strings.Replace(sdkDoc(unix(inHour), unix(inMonth)), `{"accessToken"`, `{"scope":["a"],"n":1,"accessToken"`, 1), sdkWant},
		{"backend seconds", backendDoc(unix(inHour), unix(inMonth)), backendWant},
		{"backend milliseconds", backendDoc(unixMs(inHour), unixMs(inMonth)), backendWant},
		{"backend without sub or expiries",
			fmt.Sprintf(`{"access_token":{"value":%q},"refresh_token":{"value":%q}}`, testAccess, testRefresh),
			Token{UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh, AccessExpiry: testNow.Add(testLifetime)}},
		{"rfc expires_in number", rfcDoc(`"expires_in":3600`), rfcWant},
		{"rfc expires_in string", rfcDoc(`"expires_in":"3600"`), rfcWant},
		{"rfc expires_in zero is unknown", rfcDoc(`"expires_in":0`),
			with(rfcWant, func(t *Token) { t.AccessExpiry = testNow.Add(testLifetime) })},
		{"rfc without expiry", rfcDoc(""),
			with(rfcWant, func(t *Token) { t.AccessExpiry = testNow.Add(testLifetime) })},
		{"x/oauth2 expiry", rfcDoc(`"expiry":"` + inHour.Format(time.RFC3339) + `"`), rfcWant},
		{"x/oauth2 expiry with offset and nanoseconds", rfcDoc(`"expiry":"2026-01-02T17:04:05.000000001+01:00"`),
			with(rfcWant, func(t *Token) { t.AccessExpiry = inHour.Add(time.Nanosecond) })},
		{"x/oauth2 expiry wins over expires_in", rfcDoc(`"expires_in":60,"expiry":"` + inHour.Format(time.RFC3339) + `"`), rfcWant},
		{"x/oauth2 zero expiry is unknown", rfcDoc(`"expiry":"0001-01-01T00:00:00Z","expires_in":3600`), rfcWant},
		{"rfc refresh_token_expires_in", rfcDoc(`"expires_in":3600,"refresh_token_expires_in":2592000`),
			with(rfcWant, func(t *Token) { t.RefreshExpiry = inMonth })},
		{"rfc extra fields", rfcDoc(`"expires_in":3600,"scope":"read write","id_token":"eyJ.x.y","ext":{"a":[1,2]}`), rfcWant},
		{"rfc without token_type",
			fmt.Sprintf(`{"access_token":%q,"refresh_token":%q,"expires_in":3600}`, testAccess, testRefresh),
			with(rfcWant, func(t *Token) { t.TokenType = "" })},
		{"whitespace is trimmed",
			fmt.Sprintf(" \n{\"access_token\":\" %s\\t\",\"refresh_token\":\"\\n%s \",\"token_type\":\" Bearer \",\"expires_in\":\" 3600 \"}\n ", testAccess, testRefresh),
			rfcWant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseToken([]byte(tt.in), testOpts())
			if err != nil {
				t.Fatalf("ParseToken: %v", err)
			}
			if !tokensEqual(got, tt.want) {
				t.Errorf("got  %s\nwant %s", dump(got), dump(tt.want))
			}
			if got.AccessExpiry.Location() != time.UTC || (!got.RefreshExpiry.IsZero() && got.RefreshExpiry.Location() != time.UTC) {
				t.Errorf("expiries not in UTC: %s", dump(got))
			}
		})
	}
}

func tokensEqual(a, b Token) bool {
	return a.UserID == b.UserID && a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken &&
		a.TokenType == b.TokenType && a.ConsentID == b.ConsentID &&
		a.AccessExpiry.Equal(b.AccessExpiry) && a.RefreshExpiry.Equal(b.RefreshExpiry)
}

// dump shows every field, secrets included; for test failures only.
func dump(t Token) string {
	return fmt.Sprintf("{UserID:%q Access:%q Refresh:%q Type:%q Consent:%q AccessExpiry:%s RefreshExpiry:%s}",
		t.UserID, t.AccessToken, t.RefreshToken, t.TokenType, t.ConsentID,
		t.AccessExpiry.Format(time.RFC3339Nano), t.RefreshExpiry.Format(time.RFC3339Nano))
}

type parseErrorCase struct {
	name    string
	in      string
	opts    func(*ParseOptions) // nil: testOpts
	want    string
	notBad  bool // the error must not wrap ErrBadToken (an options error)
	noCheck bool // skip the raw-input leak check (input is tiny)
}

var refreshNeeded = ": syncd needs a refresh token to keep access alive"

func parseErrorCases() []parseErrorCase {
	return []parseErrorCase{
		{name: "not json", in: "access " + testAccess, want: "token: malformed JSON: syntax error at byte 1"},
		{name: "empty input", in: "", want: "token: malformed JSON: input is empty", noCheck: true},
		{name: "blank input", in: " \n\t", want: "token: malformed JSON: input is empty", noCheck: true},
		{name: "truncated", in: `{"access_token":"` + testAccess, want: "token: malformed JSON: unexpected end of input"},
		{name: "syntax error inside a token", in: `{"access_token":"` + testAccess + `"x,"refresh_token":"` + testRefresh + `"}`,
			want: fmt.Sprintf("token: malformed JSON: syntax error at byte %d", len(`{"access_token":"`+testAccess+`"x`))},
		{name: "trailing garbage", in: rfcDoc("") + testAccess, want: fmt.Sprintf("token: malformed JSON: syntax error at byte %d", len(rfcDoc(""))+1)},
		{name: "array", in: `["` + testAccess + `"]`, want: "token: malformed JSON: want an object, got an array"},
		{name: "string", in: `"` + testAccess + `"`, want: "token: malformed JSON: want an object, got a string"},
		{name: "number", in: `12345678901234567890`, want: "token: malformed JSON: want an object, got a number"},
		{name: "null", in: `null`, want: "token: malformed JSON: want an object, got null", noCheck: true},
		{name: "unknown format", in: `{"token":"` + testAccess + `","refresh":"` + testRefresh + `"}`,
			want: "token: unknown format: want a digi.me UserAccessToken (accessToken, refreshToken) or an OAuth2 token (access_token, refresh_token)"},
		{name: "empty object", in: `{}`, noCheck: true,
			want: "token: unknown format: want a digi.me UserAccessToken (accessToken, refreshToken) or an OAuth2 token (access_token, refresh_token)"},
		{name: "keys are case sensitive", in: `{"Access_Token":"` + testAccess + `","REFRESH_TOKEN":"` + testRefresh + `"}`,
			want: "token: unknown format: want a digi.me UserAccessToken (accessToken, refreshToken) or an OAuth2 token (access_token, refresh_token)"},
		{name: "both formats", in: strings.Replace(sdkDoc("0", "0"), `"consentid"`, `"access_token":"`+testAccess+`","consentid"`, 1),
			want: "token: ambiguous format: both digi.me (accessToken, refreshToken) and OAuth2 (access_token, refresh_token) keys are present"},
		{name: "too large", in: rfcDoc(`"pad":"` + strings.Repeat("x", MaxTokenInput) + `"`),
			want: fmt.Sprintf("token: input is %d bytes, limit is %d", len(rfcDoc(`"pad":""`))+MaxTokenInput, MaxTokenInput)},

		// Access token.
		{name: "sdk access missing", in: `{"refreshToken":{"value":"` + testRefresh + `"}}`, want: "token: accessToken is missing"},
		{name: "sdk access null", in: `{"accessToken":null,"refreshToken":{"value":"` + testRefresh + `"}}`, want: "token: accessToken is missing"},
		{name: "sdk access not an object", in: `{"accessToken":"` + testAccess + `","refreshToken":{"value":"` + testRefresh + `"}}`,
			want: "token: accessToken must be an object"},
		{name: "sdk access value missing", in: `{"accessToken":{"expiry":1},"refreshToken":{"value":"` + testRefresh + `"}}`,
			want: "token: accessToken.value is missing"},
		{name: "sdk access value empty", in: `{"accessToken":{"value":"  "},"refreshToken":{"value":"` + testRefresh + `"}}`,
			want: "token: accessToken.value is empty"},
		{name: "sdk access value a number", in: `{"accessToken":{"value":98765432109876},"refreshToken":{"value":"` + testRefresh + `"}}`,
			want: "token: accessToken.value must be a string"},
		{name: "backend access value empty", in: `{"access_token":{"value":""},"refresh_token":{"value":"` + testRefresh + `"}}`,
			want: "token: access_token.value is empty"},
		{name: "backend access a string", in: `{"access_token":"` + testAccess + `","refresh_token":{"value":"` + testRefresh + `"}}`,
			want: "token: access_token must be an object"},
		{name: "rfc access missing", in: `{"refresh_token":"` + testRefresh + `"}`, want: "token: access_token is missing"},
		{name: "rfc access empty", in: `{"access_token":"","refresh_token":"` + testRefresh + `"}`, want: "token: access_token is empty"},
		{name: "rfc access a number", in: `{"access_token":98765432109876,"refresh_token":"` + testRefresh + `"}`,
			want: "token: access_token must be a string"},
		{name: "rfc token control character (after trimming)", in: `{"access_token":"` + testAccess + `\n","refresh_token":"` + testRefresh + `x\u0000"}`,
			want: "token: refresh_token contains a control character"},

		// Refresh token.
		{name: "rfc refresh missing", in: `{"access_token":"` + testAccess + `","expires_in":3600}`, want: "token: refresh_token is missing" + refreshNeeded},
		{name: "rfc refresh null", in: `{"access_token":"` + testAccess + `","refresh_token":null}`, want: "token: refresh_token is missing" + refreshNeeded},
		{name: "rfc refresh empty", in: `{"access_token":"` + testAccess + `","refresh_token":" "}`, want: "token: refresh_token is missing" + refreshNeeded},
		{name: "rfc refresh an object", in: `{"access_token":"` + testAccess + `","refresh_token":["` + testRefresh + `"]}`,
			want: "token: refresh_token must be a string"},
		{name: "sdk refresh missing", in: `{"accessToken":{"value":"` + testAccess + `"}}`, want: "token: refreshToken is missing" + refreshNeeded},
		{name: "sdk refresh value empty", in: `{"accessToken":{"value":"` + testAccess + `"},"refreshToken":{"value":""}}`,
			want: "token: refreshToken.value is missing" + refreshNeeded},
		{name: "backend refresh value missing", in: `{"access_token":{"value":"` + testAccess + `"},"refresh_token":{"expires_on":1}}`,
			want: "token: refresh_token.value is missing" + refreshNeeded},
		{name: "backend refresh a string", in: `{"access_token":{"value":"` + testAccess + `"},"refresh_token":"` + testRefresh + `"}`,
			want: "token: refresh_token must be an object"},

		// Expiries.
		{name: "sdk refresh expired", in: sdkDoc(unix(hourAgo), unix(hourAgo)), want: "token: refresh token expired at 2026-01-02T14:04:05Z"},
		{name: "backend refresh expired in ms", in: backendDoc(unix(inHour), unixMs(hourAgo)), want: "token: refresh token expired at 2026-01-02T14:04:05Z"},
		{name: "refresh expires exactly now", in: sdkDoc(unix(inHour), unix(testNow)), want: "token: refresh token expired at 2026-01-02T15:04:05Z"},
		{name: "sdk negative expiry", in: sdkDoc("-1", unix(inMonth)), want: "token: accessToken.expiry is negative"},
		{name: "sdk negative fractional expiry", in: sdkDoc(unix(inHour), "-0.5"), want: "token: refreshToken.expiry is negative"},
		{name: "sdk expiry out of range", in: sdkDoc("1e20", unix(inMonth)), want: "token: accessToken.expiry is out of range"},
		{name: "sdk expiry out of range int", in: sdkDoc("9223372036854775807", unix(inMonth)), want: "token: accessToken.expiry is out of range"},
		{name: "sdk expiry overflows float", in: sdkDoc("1e400", unix(inMonth)), want: "token: accessToken.expiry is out of range"},
		{name: "sdk expiry a boolean", in: sdkDoc("true", unix(inMonth)), want: "token: accessToken.expiry must be a number"},
		{name: "sdk expiry an object", in: sdkDoc(`{"s":1}`, unix(inMonth)), want: "token: accessToken.expiry must be a number"},
		{name: "backend expiry not numeric", in: backendDoc(`"soon"`, unix(inMonth)), want: "token: access_token.expires_on must be a number"},
		{name: "negative expires_in", in: rfcDoc(`"expires_in":-5`), want: "token: expires_in is negative"},
		{name: "negative expires_in string", in: rfcDoc(`"expires_in":"-5"`), want: "token: expires_in is negative"},
		{name: "expires_in not numeric", in: rfcDoc(`"expires_in":"3600s"`), want: "token: expires_in must be a number"},
		{name: "expires_in NaN", in: rfcDoc(`"expires_in":"NaN"`), want: "token: expires_in must be a number"},
		{name: "expires_in out of range", in: rfcDoc(`"expires_in":1e300`), want: "token: expires_in is out of range"},
		{name: "negative refresh_token_expires_in", in: rfcDoc(`"refresh_token_expires_in":-1`), want: "token: refresh_token_expires_in is negative"},
		{name: "expiry not RFC 3339", in: rfcDoc(`"expiry":"tomorrow ` + testAccess + `"`), want: "token: expiry must be an RFC 3339 time"},
		{name: "expiry a number", in: rfcDoc(`"expiry":1767366245`), want: "token: expiry must be a string"},

		// User id.
		{name: "empty user id", in: rfcDoc(""), opts: func(o *ParseOptions) { o.UserID = "" }, want: "token: user id is empty"},
		{name: "invalid user id", in: rfcDoc(""), opts: func(o *ParseOptions) { o.UserID = "a b" }, want: `token: user id "a b": contains whitespace`},
		{name: "dot-dot user id", in: rfcDoc(""), opts: func(o *ParseOptions) { o.UserID = ".." }, want: `token: user id "..": must start with a letter or a digit`},
		{name: "fullwidth user id", in: rfcDoc(""), opts: func(o *ParseOptions) { o.UserID = "\uff41" }, want: `token: user id "\uff41": contains a non-ASCII character`},

		// Strict JSON: what encoding/json would silently repair or pick.
		{name: "invalid UTF-8 in a string", in: `{"access_token":"` + testAccess + "\xff" + `","refresh_token":"` + testRefresh + `"}`,
			want: fmt.Sprintf("token: malformed JSON: invalid UTF-8 at byte %d", len(`{"access_token":"`+testAccess)+1)},
		{name: "invalid UTF-8 in a key", in: `{"x` + "\xc3" + `":1,"access_token":"` + testAccess + `","refresh_token":"` + testRefresh + `"}`,
			want: "token: malformed JSON: invalid UTF-8 at byte 4"},
		{name: "lone surrogate escape", in: `{"access_token":"` + testAccess + `\ud800","refresh_token":"` + testRefresh + `"}`,
			want: "token: malformed JSON: access_token: invalid \\u escape (lone surrogate)"},
		{name: "duplicate top-level key", in: `{"access_token":"` + testAccess + `","refresh_token":"` + testRefresh + `","access_token":"` + testAccess + `x"}`,
			want: "token: malformed JSON: duplicate key access_token"},
		{name: "duplicate nested key", in: `{"accessToken":{"value":"` + testAccess + `","value":"x"},"refreshToken":{"value":"` + testRefresh + `"}}`,
			want: "token: malformed JSON: duplicate key accessToken.value"},
		{name: "duplicate key in an ignored object", in: rfcDoc(`"extra":[{"a":1,"a":2}]`),
			want: "token: malformed JSON: duplicate key extra[].a"},
		{name: "duplicate unnamable key", in: rfcDoc(`"` + testAccess + `":1,"` + testAccess + `":2`),
			want: fmt.Sprintf("token: malformed JSON: duplicate key at byte %d", strings.LastIndex(rfcDoc(`"`+testAccess+`":1,"`+testAccess+`":2`), `"`+testAccess)+1)},
		{name: "user id not a string", in: strings.Replace(sdkDoc("0", "0"), `"`+testUser+`"`, "42", 1), want: "token: user.id must be a string"},
		{name: "user not an object", in: strings.Replace(sdkDoc("0", "0"), `{"id":"`+testUser+`"}`, `"`+testUser+`"`, 1), want: "token: user must be an object"},
		{name: "consentid not a string", in: strings.Replace(sdkDoc("0", "0"), `"`+testConsent+`"`, "4242", 1), want: "token: consentid must be a string"},

		// Options: programming errors, not ErrBadToken.
		{name: "zero now", in: rfcDoc(""), opts: func(o *ParseOptions) { o.Now = time.Time{} }, want: "token: parse options: now is zero", notBad: true},
		{name: "zero lifetime", in: rfcDoc(""), opts: func(o *ParseOptions) { o.DefaultLifetime = 0 },
			want: "token: parse options: default lifetime 0s must be > 0", notBad: true},
		{name: "negative lifetime", in: rfcDoc(""), opts: func(o *ParseOptions) { o.DefaultLifetime = -time.Second },
			want: "token: parse options: default lifetime -1s must be > 0", notBad: true},
	}
}

func (c parseErrorCase) parse() (Token, error) {
	opts := testOpts()
	if c.opts != nil {
		c.opts(&opts)
	}
	return ParseToken([]byte(c.in), opts)
}

func TestParseTokenErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range parseErrorCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.parse()
			if err == nil {
				t.Fatalf("ParseToken succeeded: %s", dump(got))
			}
			if err.Error() != tt.want {
				t.Errorf("error\ngot  %s\nwant %s", err, tt.want)
			}
			if bad := errors.Is(err, ErrBadToken); bad == tt.notBad {
				t.Errorf("errors.Is(err, ErrBadToken) = %v, want %v", bad, !tt.notBad)
			}
			if got != (Token{}) {
				t.Errorf("token not zero on error: %s", dump(got))
			}
		})
	}
}

// TestParseTokenErrorsDoNotLeak checks every error case: the message is one
// lower-case line and holds no token value and not the raw input.
func TestParseTokenErrorsDoNotLeak(t *testing.T) {
	t.Parallel()
	for _, tt := range parseErrorCases() {
		_, err := tt.parse()
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		msg := err.Error()
		for _, secret := range []string{testAccess, testRefresh, testConsent, "SECRET"} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: error %q contains a token value", tt.name, msg)
			}
		}
		if !tt.noCheck && strings.Contains(msg, tt.in) {
			t.Errorf("%s: error %q contains the input", tt.name, msg)
		}
		if strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "token: ") {
			t.Errorf("%s: error %q is not one line starting with \"token: \"", tt.name, msg)
		}
	}
}

func TestTokenOutputRedacted(t *testing.T) {
	t.Parallel()
	tok := Token{
		UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh,
		TokenType: "Bearer", ConsentID: testConsent, AccessExpiry: inHour, RefreshExpiry: inMonth,
	}

	outputs := map[string]string{
		"String":   tok.String(),
		"GoString": tok.GoString(),
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%T", "%20v", "%-v"} {
		outputs["Sprintf "+verb] = fmt.Sprintf(verb, tok)
		outputs["Sprintf pointer "+verb] = fmt.Sprintf(verb, &tok)
	}
	// %p of a Token value is the documented gap (fmt skips Format there).
	outputs["Sprintf pointer %p"] = fmt.Sprintf("%p", &tok)
	outputs["slice"] = fmt.Sprintf("%+v", []Token{tok})
	outputs["map"] = fmt.Sprintf("%#v", map[string]Token{"k": tok})
	outputs["exported field"] = fmt.Sprintf("%+v", struct{ T Token }{tok})
	outputs["error wrap"] = fmt.Errorf("refresh %v: failed", tok).Error()

	var zbuf bytes.Buffer
	zl := zerolog.New(&zbuf)
	zl.Info().Object("token", tok).Msg("object")
	zl.Info().Interface("token", tok).Msg("interface")
	zl.Info().Interface("token", &tok).Msg("pointer")
	zl.Info().EmbedObject(tok).Msg("embed")
	zl.Info().Any("token", tok).Msg("any")
	outputs["zerolog"] = zbuf.String()

	var sbuf bytes.Buffer
	sl := slog.New(slog.NewJSONHandler(&sbuf, nil))
	sl.Info("token", "token", tok)
	slog.New(slog.NewTextHandler(&sbuf, nil)).Info("token", "token", &tok)
	outputs["slog"] = sbuf.String()

	for name, out := range outputs {
		for _, secret := range []string{testAccess, testRefresh, testConsent, "SECRET"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s output %q contains a token value", name, out)
			}
		}
	}

	if got, want := tok.String(), `Token{user="user-1" access_expiry=2026-01-02T16:04:05Z refresh_expiry=2026-02-01T15:04:05Z access=REDACTED refresh=REDACTED}`; got != want {
		t.Errorf("String()\ngot  %s\nwant %s", got, want)
	}
	if got := (Token{UserID: "u"}).String(); got != `Token{user="u" access_expiry=none refresh_expiry=none access=empty refresh=empty}` {
		t.Errorf("String() of an empty token = %s", got)
	}
	for _, name := range []string{"Sprintf %v", "Sprintf %+v", "Sprintf pointer %v", "Sprintf %s", "GoString", "Sprintf %#v"} {
		if !strings.Contains(outputs[name], "REDACTED") || !strings.Contains(outputs[name], testUser) {
			t.Errorf("%s output %q lacks the user id or REDACTED", name, outputs[name])
		}
	}
	for _, want := range []string{`"user_id":"user-1"`, `"access":"REDACTED"`, `"access_expiry":"2026-01-02T16:04:05Z"`} {
		if strings.Count(outputs["zerolog"], want) != 5 {
			t.Errorf("zerolog output lacks %s in some line:\n%s", want, outputs["zerolog"])
		}
	}
	if !strings.Contains(outputs["slog"], `"token":{"user_id":"user-1"`) {
		t.Errorf("slog output: %s", outputs["slog"])
	}
}

func TestTokenMarshalJSONFails(t *testing.T) {
	t.Parallel()
	tok := Token{UserID: testUser, AccessToken: testAccess, RefreshToken: testRefresh}
	for name, v := range map[string]any{
		"value":   tok,
		"pointer": &tok,
		"field":   struct{ T Token }{tok},
		"slice":   []Token{tok},
	} {
		out, err := json.Marshal(v)
		if err == nil {
			t.Errorf("%s: json.Marshal succeeded: %s", name, out)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("%s: error %q contains a token value", name, err)
		}
	}
}

func TestTokenValidateUserID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want string // "" = valid
	}{
		{"u", ""},
		{"7", ""},
		{"user-1", ""},
		{"demo-user-02", ""},
		{"alice@example.com", ""},
		{"alice+tag@example.com", ""},
		{"digime:9f8e7d6c", ""},
		{"library_1.v2", ""},
		{"b64=", ""},
		{"a..b", ""},
		{strings.Repeat("a", MaxUserIDLen), ""},
		{"", "user id is empty"},
		{strings.Repeat("a", MaxUserIDLen+1), "user id is 201 bytes, limit is 200"},
		{".", `user id ".": must start with a letter or a digit`},
		{"..", `user id "..": must start with a letter or a digit`},
		{".hidden", `user id ".hidden": must start with a letter or a digit`},
		{"-flag", `user id "-flag": must start with a letter or a digit`},
		{"_u", `user id "_u": must start with a letter or a digit`},
		{"a/b", `user id "a/b": contains '/' (allowed: A-Z a-z 0-9 . _ @ + = : -)`},
		{"../x", `user id "../x": must start with a letter or a digit`},
		{`a\b`, `user id "a\\b": contains '\\' (allowed: A-Z a-z 0-9 . _ @ + = : -)`},
		{"a b", `user id "a b": contains whitespace`},
		{"a\tb", `user id "a\tb": contains whitespace`},
		{"a\nb", `user id "a\nb": contains a control character`},
		{"a\x00b", `user id "a\x00b": contains a control character`},
		{"a\x7fb", `user id "a\x7fb": contains a control character`},
		{"a\u00a0b", `user id "a\u00a0b": contains a non-ASCII character`},
		{"a\u200bb", `user id "a\u200bb": contains a non-ASCII character`},
		{"\uff41lice", `user id "\uff41lice": contains a non-ASCII character`}, // fullwidth a
		{"\u0430lice", `user id "\u0430lice": contains a non-ASCII character`}, // Cyrillic a
		{"Ünïcødé-名前", `user id "\u00dcn\u00efc\u00f8d\u00e9-\u540d\u524d": contains a non-ASCII character`},
		{"a\xffb", `user id "a\xffb": contains a non-ASCII character`},
		{"{a}", `user id "{a}": must start with a letter or a digit`},
		{"a}", `user id "a}": contains '}' (allowed: A-Z a-z 0-9 . _ @ + = : -)`},
		{"a*", `user id "a*": contains '*' (allowed: A-Z a-z 0-9 . _ @ + = : -)`},
		{"a%2e", `user id "a%2e": contains '%' (allowed: A-Z a-z 0-9 . _ @ + = : -)`},
	}
	for _, tt := range tests {
		err := ValidateUserID(tt.id)
		var got string
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("ValidateUserID(%q)\ngot  %s\nwant %s", tt.id, got, tt.want)
		}
		// Every new id is also an existing one.
		if tt.want == "" {
			if err := ValidateExistingUserID(tt.id); err != nil {
				t.Errorf("ValidateExistingUserID(%q): %v", tt.id, err)
			}
		}
	}
}

// TestTokenValidateExistingUserID: ids an earlier syncd stored stay
// addressable (show, disable, restore, refresh, jobs), even those the
// grammar now refuses for new users.
func TestTokenValidateExistingUserID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want string // "" = valid
	}{
		{"u", ""},
		{"Ünïcødé-名前", ""},
		{"..", ""},
		{"a/b", ""},
		{strings.Repeat("a", MaxUserIDLen), ""},
		{"", "user id is empty"},
		{strings.Repeat("a", MaxUserIDLen+1), "user id is 201 bytes, limit is 200"},
		{"a b", `user id "a b": contains whitespace`},
		{"a\tb", `user id "a\tb": contains whitespace`},
		{"a\nb", `user id "a\nb": contains whitespace`},
		{"a\u00a0b", `user id "a\u00a0b": contains whitespace`},
		{"a\x00b", `user id "a\x00b": contains a control character`},
		{"a\x7fb", `user id "a\x7fb": contains a control character`},
		{"a\u200bb", `user id "a\u200bb": contains an invisible formatting character`},
		{"a\u202eb", `user id "a\u202eb": contains an invisible formatting character`},
		{"a\xffb", `user id "a\xffb": is not valid UTF-8`},
		{"{a}", `user id "{a}": contains '{' (reserved for redis hash tags)`},
		{"a}", `user id "a}": contains '}' (reserved for redis hash tags)`},
		{"a*", `user id "a*": contains glob character '*'`},
		{"a?", `user id "a?": contains glob character '?'`},
		{"a[1]", `user id "a[1]": contains glob character '['`},
		{"a]", `user id "a]": contains glob character ']'`},
		{`a\b`, `user id "a\\b": contains glob character '\\'`},
	}
	for _, tt := range tests {
		err := ValidateExistingUserID(tt.id)
		var got string
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("ValidateExistingUserID(%q)\ngot  %s\nwant %s", tt.id, got, tt.want)
		}
	}
}

func TestParseTokenIgnoresProviderUserID(t *testing.T) {
	// digi.me's sub / user.id is digi.me's id for the library, not the
	// app's user id that syncd keys on.
	for _, doc := range []string{
		strings.Replace(sdkDoc("0", "0"), testUser, "digime-library-id", 1),
		strings.Replace(backendDoc("0", "0"), testUser, "digime-library-id", 1),
	} {
		tok, err := ParseToken([]byte(doc), ParseOptions{UserID: "app-user", Now: time.Unix(1_700_000_000, 0), DefaultLifetime: time.Hour})
		if err != nil || tok.UserID != "app-user" {
			t.Fatalf("ParseToken: %v, user %q", err, tok.UserID)
		}
	}
}
