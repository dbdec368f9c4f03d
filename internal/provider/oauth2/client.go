package oauth2

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"
	xoauth2 "golang.org/x/oauth2"

	"github.com/syncd/syncd/internal/clock"
)

// Client authentication styles at the token endpoint.
const (
	// AuthBasic is client_secret_basic: HTTP Basic with the form-encoded
	// client id and secret (RFC 6749 §2.3.1).
	AuthBasic = "basic"
	// AuthPost is client_secret_post: client_id and client_secret in the
	// form body.
	AuthPost = "post"
)

// Defaults and limits.
const (
	// DefaultCursorHeader is the response header read for the next cursor.
	DefaultCursorHeader = "X-Next-Cursor"
	// DefaultTimeout bounds one HTTP call when Config.HTTPClient is nil.
	DefaultTimeout = 30 * time.Second
	// DefaultGetRetries is how often a failed pull GET is retried.
	DefaultGetRetries = 2
	// MaxRetryAfter is the longest Retry-After a pull waits for before
	// retrying in process; a longer one ends the pull with an error
	// carrying the Retry-After, so the job is rescheduled instead.
	MaxRetryAfter = 30 * time.Second
	// MaxItemBytes is the largest pull response accepted.
	MaxItemBytes = 64 << 20
)

// Header names sent with a push.
const (
	HeaderItemID   = "X-Syncd-Item-Id"
	HeaderTags     = "X-Syncd-Tags"
	HeaderAccounts = "X-Syncd-Accounts"
)

// ErrNotConfigured is the Err of the *provider.Error returned by Pull or
// Push when Config.PullURL or Config.PushURL is empty.
var ErrNotConfigured = errors.New("url not configured")

// Log field names.
const (
	fieldComponent  = "component"
	fieldUser       = "user"
	fieldStatus     = "status"
	fieldWait       = "wait"
	fieldItem       = "item"
	fieldBytes      = "bytes"
	fieldRotated    = "rotated"
	fieldExpiry     = "access_expiry"
	fieldDelivered  = "delivered"
	fieldCode       = "error_code"
	fieldPermanent  = "permanent"
	fieldHasRefresh = "has_refresh_token"
)

const (
	retryInitial = 500 * time.Millisecond
	retryMax     = 10 * time.Second
)

// Config configures a Client. Zero values take the defaults noted.
type Config struct {
	// TokenURL is the token endpoint, an absolute http(s) URL. Required.
	TokenURL string
	// ClientID identifies syncd at the token endpoint. Required.
	ClientID string
	// ClientSecret authenticates it; "" for a public client.
	ClientSecret string
	// AuthStyle is how the client authenticates: AuthBasic (the default,
	// also for "") or AuthPost.
	AuthStyle string
	// Scopes are sent on refresh (space-joined, as "scope") only if set;
	// nil asks for the originally granted scope (RFC 6749 §6). They are
	// also the scope of AuthorizeURL's links (none when nil).
	Scopes []string
	// AuthURL is the authorization endpoint, an absolute http(s) URL; it
	// may carry a query, which links keep. "" disables AuthorizeURL (it
	// returns ErrNotConfigured).
	AuthURL string
	// AuthParams are extra parameters of AuthorizeURL's links, e.g.
	// access_type=offline and prompt=consent. They cannot replace the
	// parameters the client sets itself (response_type, client_id,
	// redirect_uri, scope, state, code_challenge, code_challenge_method).
	AuthParams map[string]string
	// PullURL is a text/template rendering the pull URL from {{.User}}
	// and {{.Cursor}}, both query-escaped; the cursor is "" on the first
	// pull. Example: "https://api.example.com/v1/export?since={{.Cursor}}".
	// "" disables Pull (it returns ErrNotConfigured).
	PullURL string
	// PushURL is a text/template rendering the push URL from {{.User}}
	// (query-escaped). "" disables Push (it returns ErrNotConfigured).
	PushURL string
	// CursorHeader is the pull response header carrying the next cursor;
	// default DefaultCursorHeader. If a response lacks it, the next cursor
	// is its Last-Modified or, failing that, the time the request was
	// sent, both as RFC 3339 UTC.
	CursorHeader string
	// HTTPClient makes every call; default a client with DefaultTimeout.
	HTTPClient *http.Client
	// GetRetries is how often the pull GET is retried on 408, 429, 5xx
	// and network errors, with exponential backoff and Retry-After
	// honoured up to MaxRetryAfter. 0 means DefaultGetRetries; negative
	// disables retries. Pushes are never retried (a POST may have landed).
	GetRetries int
	// Clock tells the time for expiries, cursors and Retry-After dates;
	// default the system clock.
	Clock clock.Clock
	// Logger gets debug and retry lines, each with the user; the zero
	// value discards them.
	Logger zerolog.Logger
}

// Client is the OAuth 2 provider. It implements refresher.Provider,
// provider.Authorizer and the pull/push calls jobs make. Safe for
// concurrent use.
type Client struct {
	oauth        xoauth2.Config // never copied: x/oauth2 caches in it
	authParams   []xoauth2.AuthCodeOption
	tokenHTTP    *http.Client // HTTPClient, with the scope added when Scopes is set
	http         *http.Client
	pullURL      *template.Template // nil: not configured
	pushURL      *template.Template // nil: not configured
	cursorHeader string
	retries      int
	clock        clock.Clock
	log          zerolog.Logger

	// Seams for tests.
	retryInitial time.Duration
	newTimer     func() backoff.Timer // nil: backoff's real timer
	maxItem      int
}

// pullData and pushData are what the URL templates see.
type pullData struct{ User, Cursor string }
type pushData struct{ User string }

// New validates cfg and returns a Client. Errors name the field.
func New(cfg Config) (*Client, error) {
	if err := checkURL(cfg.TokenURL); err != nil {
		return nil, fmt.Errorf("oauth2: TokenURL %q: %w", cfg.TokenURL, err)
	}
	if cfg.ClientID == "" {
		return nil, errors.New("oauth2: ClientID: required")
	}
	var style xoauth2.AuthStyle
	switch cfg.AuthStyle {
	case "", AuthBasic:
		style = xoauth2.AuthStyleInHeader
	case AuthPost:
		style = xoauth2.AuthStyleInParams
	default:
		return nil, fmt.Errorf("oauth2: AuthStyle %q: want %s or %s", cfg.AuthStyle, AuthBasic, AuthPost)
	}
	for i, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return nil, fmt.Errorf("oauth2: Scopes[%d] %q: must be a non-empty scope token", i, s)
		}
	}
	if cfg.AuthURL != "" {
		if err := checkURL(cfg.AuthURL); err != nil {
			return nil, fmt.Errorf("oauth2: AuthURL %q: %w", cfg.AuthURL, err)
		}
	}
	authParams, err := authParamOptions(cfg.AuthParams)
	if err != nil {
		return nil, err
	}
	c := &Client{
		oauth: xoauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     xoauth2.Endpoint{AuthURL: cfg.AuthURL, TokenURL: cfg.TokenURL, AuthStyle: style},
			Scopes:       slices.Clone(cfg.Scopes), // only AuthCodeURL reads them
		},
		authParams:   authParams,
		cursorHeader: cfg.CursorHeader,
		retries:      cfg.GetRetries,
		clock:        cfg.Clock,
		http:         cfg.HTTPClient,
		log:          cfg.Logger.With().Str(fieldComponent, "oauth2").Logger(),
		retryInitial: retryInitial,
		maxItem:      MaxItemBytes,
	}
	if cfg.PullURL != "" {
		if c.pullURL, err = parseURLTemplate("PullURL", cfg.PullURL, pullData{User: "user", Cursor: "cursor"}); err != nil {
			return nil, err
		}
	}
	if cfg.PushURL != "" {
		if c.pushURL, err = parseURLTemplate("PushURL", cfg.PushURL, pushData{User: "user"}); err != nil {
			return nil, err
		}
	}
	if c.cursorHeader == "" {
		c.cursorHeader = DefaultCursorHeader
	}
	if c.retries == 0 {
		c.retries = DefaultGetRetries
	} else if c.retries < 0 {
		c.retries = 0
	}
	if c.clock == nil {
		c.clock = clock.Real{}
	}
	if c.http == nil {
		c.http = &http.Client{Timeout: DefaultTimeout}
	}
	c.tokenHTTP = c.http
	if len(cfg.Scopes) > 0 {
		hc := *c.http
		hc.Transport = &scopeTransport{base: c.http.Transport, scope: strings.Join(cfg.Scopes, " ")}
		c.tokenHTTP = &hc
	}
	return c, nil
}

// parseURLTemplate parses a URL template and renders it once with sample
// data, so a bad field reference or a template that does not make an
// absolute http(s) URL fails at startup.
func parseURLTemplate(field, text string, sample any) (*template.Template, error) {
	t, err := template.New(field).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("oauth2: %s %q: %w", field, text, err)
	}
	if _, err := render(t, sample); err != nil {
		return nil, fmt.Errorf("oauth2: %s %q: %w", field, text, err)
	}
	return t, nil
}

// render executes a URL template. Its errors never quote the rendered URL.
func render(t *template.Template, data any) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	s := b.String()
	if err := checkURL(s); err != nil {
		return "", fmt.Errorf("rendered URL: %w", err)
	}
	return s, nil
}

func checkURL(s string) error {
	if s == "" {
		return errors.New("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	return nil
}
