package digime

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
)

// Defaults for the zero values of Config.
const (
	// DefaultBaseURL is the digi.me API the SDKs use.
	DefaultBaseURL = "https://api.digi.me/v1.7/"
	// DefaultOnboardURL is digi.me's browser onboarding UI, where
	// AuthorizeURL and ReauthorizeURL links point.
	DefaultOnboardURL    = "https://api.digi.me/apps/saas/"
	DefaultHTTPTimeout   = 30 * time.Second
	DefaultPollInterval  = 3 * time.Second
	DefaultMaxPolls      = 100
	DefaultMaxDuration   = 5 * time.Minute
	DefaultGetRetries    = 2
	DefaultRetryAfterCap = 30 * time.Second
	DefaultRetryBackoff  = time.Second
	// DefaultAgentName is sent as agent.sdk.name when Config.AgentName is
	// empty.
	DefaultAgentName = "syncd"
)

// Log field names.
const (
	fieldComponent = "component"
	fieldUser      = "user"
	fieldOp        = "op"
	fieldStatus    = "status"
	fieldCode      = "code"
	fieldAttempt   = "attempt"
	fieldDelay     = "delay"
	fieldFile      = "file"
	fieldState     = "state"
	fieldPolls     = "polls"
	fieldDelivered = "delivered"
)

// Config configures a Client. Zero values take the defaults noted.
type Config struct {
	// BaseURL is the API root, default DefaultBaseURL. A trailing slash is
	// added. The JWKS is always fetched from BaseURL + "jwks/oauth" (or a
	// response's jku when it lies under BaseURL), never from elsewhere.
	BaseURL string
	// OnboardURL is the root of digi.me's browser onboarding UI, default
	// DefaultOnboardURL. A trailing slash is added. Consent links are
	// OnboardURL + "authorize?..." and OnboardURL + "user-reauth?...".
	OnboardURL string
	// OnboardParams are extra query parameters of consent links, e.g.
	// "service" (a source id to onboard), "lng" (locale), "sourceType"
	// ("pull" when not given; "push" lists push-to-provider sources).
	// AuthorizeURL adds them all; ReauthorizeURL all but sourceType. The
	// key "code" is reserved.
	OnboardParams map[string]string
	// AppID and ContractID identify the contract; client_id is
	// AppID + "_" + ContractID. Both are required.
	AppID, ContractID string
	// PrivateKey is the contract's RSA key: it signs every request and
	// unwraps the data keys of pulled files. Required. See LoadPrivateKey.
	PrivateKey *rsa.PrivateKey
	// HTTPClient, default a client with a DefaultHTTPTimeout timeout.
	HTTPClient *http.Client
	// PollInterval between file-list polls of a pull, default 3s.
	PollInterval time.Duration
	// MaxPolls bounds the file-list polls of one pull, default 100.
	MaxPolls int
	// MaxDuration bounds one pull, downloads included, default 5m.
	MaxDuration time.Duration
	// GetRetries is how often an idempotent request (GET, HEAD) is retried
	// on 408, 413 with Retry-After, 429, 500, 502, 503, 504, 521, 522, 524
	// and network errors; default 2, negative disables. POSTs are never
	// retried.
	GetRetries int
	// RetryBackoff is the delay before the first retry; it doubles with
	// each retry and gets up to a tenth of itself as jitter. Default 1s
	// (so 1s, 2s plus up to 100ms, as the Node SDK). A Retry-After replaces
	// it.
	RetryBackoff time.Duration
	// RetryAfterCap is the longest Retry-After waited out inside a call,
	// default 30s; a longer one ends the call with the error (and its
	// RetryAfter) instead.
	RetryAfterCap time.Duration
	// AgentName and AgentVersion are sent as agent.sdk {name, version} when
	// triggering a pull and asking for a consent link (oauth/authorize,
	// oauth/token/reference). Default "syncd" and the syncd module version
	// ("dev" in a development build). Whether digi.me accepts an agent
	// name other than its SDKs' ("nodejs", "ios") is unconfirmed: if it
	// answers SDKInvalid, set these to an SDK identity digi.me accepts.
	AgentName, AgentVersion string
	// Clock reads the time for request timestamps, JWKS caching and
	// MaxDuration; default the system clock.
	Clock clock.Clock
	// Logger receives the client's logs, with a "component" field added.
	// The zero Logger discards them.
	Logger zerolog.Logger
}

// Client talks to digi.me for one contract. It is safe for concurrent use
// by many users.
type Client struct {
	base          *url.URL // ends in "/"
	onboard       string   // OnboardURL, ends in "/"
	onboardParams url.Values
	jwksURL       string
	clientID      string
	key           *rsa.PrivateKey
	hc            *http.Client
	pollInterval  time.Duration
	maxPolls      int
	maxDuration   time.Duration
	getRetries    int
	retryBackoff  time.Duration
	retryAfterCap time.Duration
	agentName     string
	agentVersion  string
	clock         clock.Clock
	log           zerolog.Logger
	keys          *keyCache
	jitter        func(max time.Duration) time.Duration
}

// New checks cfg, fills in the defaults and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if !strings.HasSuffix(cfg.BaseURL, "/") {
		cfg.BaseURL += "/"
	}
	base, err := parseRoot(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("digime: base url %q: want an absolute http(s) url without query", cfg.BaseURL)
	}
	if cfg.OnboardURL == "" {
		cfg.OnboardURL = DefaultOnboardURL
	}
	if !strings.HasSuffix(cfg.OnboardURL, "/") {
		cfg.OnboardURL += "/"
	}
	onboard, err := parseRoot(cfg.OnboardURL)
	if err != nil {
		return nil, fmt.Errorf("digime: onboard url %q: want an absolute http(s) url without query", cfg.OnboardURL)
	}
	onboardParams := url.Values{"sourceType": {defaultSourceType}}
	for k, v := range cfg.OnboardParams {
		if k == "" || k == "code" {
			return nil, fmt.Errorf("digime: onboard params: key %q is reserved or empty", k)
		}
		onboardParams.Set(k, v)
	}
	switch {
	case cfg.AppID == "":
		return nil, errors.New("digime: app id is empty")
	case cfg.ContractID == "":
		return nil, errors.New("digime: contract id is empty")
	case cfg.PrivateKey == nil:
		return nil, errors.New("digime: private key is missing")
	}
	if err := cfg.PrivateKey.Validate(); err != nil {
		return nil, errors.New("digime: private key is not a valid RSA key")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxPolls <= 0 {
		cfg.MaxPolls = DefaultMaxPolls
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	switch {
	case cfg.GetRetries == 0:
		cfg.GetRetries = DefaultGetRetries
	case cfg.GetRetries < 0:
		cfg.GetRetries = 0
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	if cfg.RetryAfterCap <= 0 {
		cfg.RetryAfterCap = DefaultRetryAfterCap
	}
	if cfg.AgentName == "" {
		cfg.AgentName = DefaultAgentName
	}
	if cfg.AgentVersion == "" {
		cfg.AgentVersion = moduleVersion()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	c := &Client{
		base:          base,
		onboard:       onboard.String(),
		onboardParams: onboardParams,
		jwksURL:       base.String() + "jwks/oauth",
		clientID:      cfg.AppID + "_" + cfg.ContractID,
		key:           cfg.PrivateKey,
		hc:            cfg.HTTPClient,
		pollInterval:  cfg.PollInterval,
		maxPolls:      cfg.MaxPolls,
		maxDuration:   cfg.MaxDuration,
		getRetries:    cfg.GetRetries,
		retryBackoff:  cfg.RetryBackoff,
		retryAfterCap: cfg.RetryAfterCap,
		agentName:     cfg.AgentName,
		agentVersion:  cfg.AgentVersion,
		clock:         cfg.Clock,
		log:           cfg.Logger.With().Str(fieldComponent, "digime").Logger(),
		keys:          newKeyCache(),
		jitter: func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return rand.N(max)
		},
	}
	return c, nil
}

// parseRoot parses an API or UI root: an absolute http(s) URL without
// user info, query or fragment.
func parseRoot(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("not an absolute http(s) url without query")
	}
	return u, nil
}

// moduleVersion is the main module's version, "dev" when unknown.
func moduleVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
	}
	return "dev"
}

// endpoint returns the absolute URL of a path relative to the base URL.
func (c *Client) endpoint(rel string) string {
	return c.base.String() + rel
}
