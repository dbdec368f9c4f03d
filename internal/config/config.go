package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

const (
	// DefaultPath is the config file used when neither the -config flag nor
	// EnvConfig names one. It is relative to the working directory.
	DefaultPath = "configs/syncd.yaml"

	// EnvConfig names the environment variable that picks the config file
	// when the -config flag is empty.
	EnvConfig = "SYNCD_CONFIG"

	// EnvRedisURL names the environment variable that, when non-empty,
	// overrides redis.url. It exists so a deployment can inject the Redis
	// password without writing it into the file.
	EnvRedisURL = "SYNCD_REDIS_URL"

	// maxFileSize bounds how much of a config file is read; a larger file
	// is certainly a mistake (a wrong path) and not worth buffering.
	maxFileSize = 4 << 20
)

// Config is the whole syncd configuration. Obtain one from Load or Parse,
// or from DefaultConfig and then Validate; derived values (decoded keys,
// cron schedules, time zones) are only set after Validate returns nil.
type Config struct {
	// Redis is where all state lives.
	Redis RedisConfig `yaml:"redis"`
	// Log configures the root logger.
	Log LogConfig `yaml:"log"`
	// Encryption holds the keys tokens are encrypted with at rest.
	Encryption EncryptionConfig `yaml:"encryption"`
	// Events configures the capped stream of user-visible events.
	Events EventsConfig `yaml:"events"`
	// Refresher configures the token refresh loop.
	Refresher RefresherConfig `yaml:"refresher"`
	// Runner configures the loop that claims due job runs; same fields
	// and defaults as Refresher, with 64 workers.
	Runner RefresherConfig `yaml:"runner"`
	// Providers are the token issuers syncd refreshes against; at least one
	// is required. When the key is absent the default is a single
	// {name: default, kind: fake} provider, so a bare config runs.
	Providers []ProviderConfig `yaml:"providers"`
	// Jobs are the cron jobs run for every user of their provider; empty
	// (the default) means syncd only refreshes tokens.
	Jobs []JobConfig `yaml:"jobs"`
	// Admin is the HTTP surface: health, readiness, metrics, JSON API.
	Admin AdminConfig `yaml:"admin"`
	// ShutdownGrace is how long SIGTERM waits for running work before
	// handing the rest back to other replicas; default 25s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// StatsInterval is how often one replica walks every record: it counts
	// users by state for the syncd_users gauge and repairs missing refresh
	// entries; default 1m.
	StatsInterval time.Duration `yaml:"stats_interval"`
	// Alerts configures the optional re-auth webhook.
	Alerts AlertsConfig `yaml:"alerts"`
	// Authorize configures the authorization handoff: consent links,
	// the callback, re-authorization links.
	Authorize AuthorizeConfig `yaml:"authorize"`
}

// AuthorizeConfig is the authorization handoff (see README "Onboarding
// and re-authorization").
type AuthorizeConfig struct {
	// RedirectURI is the redirect for links syncd makes on its own
	// (`reauth list --links`, alerts.links) and for API requests that name
	// none. It must be registered with the provider.
	RedirectURI string `yaml:"redirect_uri"`
	// StateTTL is how long a link can be used; default 15m.
	StateTTL time.Duration `yaml:"state_ttl"`
	// CallbackPath, if set, serves GET <path> on the admin listener (and
	// on PublicListen) without the bearer token: a provider can redirect
	// the user's browser straight to syncd. Example: /authorize/callback.
	CallbackPath string `yaml:"callback_path"`
	// PublicListen is an optional second listener (host:port) that serves
	// only CallbackPath, so the admin API can stay private.
	PublicListen string `yaml:"public_listen"`
	// DoneURL is where the public callback sends the browser afterwards,
	// with result=ok|error, user and error added to its query; empty
	// shows a short page instead.
	DoneURL string `yaml:"done_url"`
}

// AdminConfig is the admin HTTP server.
type AdminConfig struct {
	// Listen is host:port; default 127.0.0.1:9464 (loopback only). Empty
	// disables the server.
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token every /v1 write must carry. Empty
	// (the default) disables /v1 writes.
	TokenFile string `yaml:"token_file"`
	// Token is TokenFile's content, read by Validate.
	Token string `yaml:"-"`
}

// AlertsConfig is the re-auth webhook: a signed POST (X-Syncd-Signature,
// as the webhook sink) listing users flagged for re-authorization.
type AlertsConfig struct {
	// WebhookURL; empty (the default) disables the webhook.
	WebhookURL string `yaml:"webhook_url"`
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Links adds a fresh re-authorization link per user to the webhook
	// (needs authorize.redirect_uri). A link lives authorize.state_ttl.
	Links bool `yaml:"links"`
}

// RedisConfig says how to reach Redis and how syncd lays out its keys.
type RedisConfig struct {
	// URL is a go-redis URL: redis://[user:password@]host:port/db, rediss://
	// for TLS, or unix:///path/to.sock. Default redis://127.0.0.1:6379/0.
	// EnvRedisURL overrides it.
	URL string `yaml:"url"`
	// Prefix starts every key syncd writes, so several deployments can share
	// one database. It must be non-empty and hold no whitespace, '{' or '}'
	// (braces would change Redis Cluster hash slots). Default "syncd:".
	Prefix string `yaml:"prefix"`
	// Shards is how many due-sets the refresh schedule is split across, so
	// workers contend less; 1..1024, default 16. It may be changed on a
	// live database: syncd run migrates the due sets on restart
	// (redisstore.MigrateShards).
	Shards int `yaml:"shards"`
	// DialTimeout bounds connecting to Redis; default 5s. It overrides a
	// dial_timeout parameter in URL.
	DialTimeout time.Duration `yaml:"dial_timeout"`

	opts *redis.Options // parsed URL, set by Validate
}

// Options returns go-redis options for URL with DialTimeout applied, or nil
// before a successful Validate. Each call returns a fresh copy the caller
// may modify.
func (r *RedisConfig) Options() *redis.Options {
	if r.opts == nil {
		return nil
	}
	o := *r.opts
	if o.TLSConfig != nil {
		o.TLSConfig = o.TLSConfig.Clone()
	}
	o.DialTimeout = r.DialTimeout
	return &o
}

// LogConfig configures the root logger.
type LogConfig struct {
	// Level is the minimum level logged: trace, debug, info, warn or error.
	// Default info.
	Level string `yaml:"level"`
	// Format is json, console, or auto (console when stderr is a terminal,
	// json otherwise). Default auto.
	Format string `yaml:"format"`
}

// EncryptionConfig holds the keys tokens are encrypted with. Several keys
// may be listed so old data stays readable while PrimaryKey rotates.
type EncryptionConfig struct {
	// PrimaryKey is the id of the key new data is encrypted with. Empty (the
	// default) means the first key; Validate fills it in.
	PrimaryKey string `yaml:"primary_key"`
	// Keys are all keys data may be encrypted with; at least one is
	// required and ids are unique.
	Keys []KeyConfig `yaml:"keys"`

	decoded map[string][]byte // id -> 32-byte key, set by Validate
}

// Key returns the decoded 32-byte key with the given id, or nil if there is
// no such key or Validate has not succeeded. The slice is a copy.
func (e *EncryptionConfig) Key(id string) []byte {
	k, ok := e.decoded[id]
	if !ok {
		return nil
	}
	return bytes.Clone(k)
}

// Primary returns the id and decoded key new data is encrypted with; the key
// is nil before a successful Validate.
func (e *EncryptionConfig) Primary() (id string, key []byte) {
	return e.PrimaryKey, e.Key(e.PrimaryKey)
}

// KeyConfig is one encryption key. The secret is given inline or, better,
// as a file (a mounted secret); exactly one of Secret and SecretFile is set.
type KeyConfig struct {
	// ID names the key in stored ciphertext, so it must never be reused for
	// a different secret: 1-32 of A-Z a-z 0-9 _ -.
	ID string `yaml:"id"`
	// Secret is base64 (standard or URL alphabet, padded or not) of exactly
	// 32 bytes. Empty means SecretFile is used.
	Secret string `yaml:"secret"`
	// SecretFile is a regular file holding what Secret would; surrounding
	// whitespace is trimmed. Parse resolves a relative path against the
	// config file's directory. Empty means Secret is used.
	SecretFile string `yaml:"secret_file"`
}

// EventsConfig configures the events stream.
type EventsConfig struct {
	// MaxLen caps the stream's length (trimming may be approximate) so it
	// cannot grow without bound; at least 100, default 100000.
	MaxLen int64 `yaml:"max_len"`
}

// RefresherConfig configures the loop that claims due users and refreshes
// their tokens.
type RefresherConfig struct {
	// Workers is how many refreshes run at once; 1..4096, default 32.
	Workers int `yaml:"workers"`
	// Lease is how long a claimed user stays owned by this process before
	// another may take it over (a crashed worker's users are retried after
	// this); at least 1s, default 1m.
	Lease time.Duration `yaml:"lease"`
	// Batch is how many due users are claimed per poll; 1..10000, default
	// 256.
	Batch int `yaml:"batch"`
	// PollInterval is how often the due-sets are polled when idle; > 0,
	// default 1s.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// ProviderKind selects a provider implementation.
type ProviderKind string

// Provider kinds.
const (
	// ProviderDigime talks to digi.me.
	ProviderDigime ProviderKind = "digime"
	// ProviderOAuth2 is a generic OAuth 2 refresh_token grant.
	ProviderOAuth2 ProviderKind = "oauth2"
	// ProviderFake is an in-process provider for tests and dry runs.
	ProviderFake ProviderKind = "fake"
)

// ProviderConfig is one token issuer and how hard syncd works at keeping
// its tokens fresh. Fields omitted in YAML keep DefaultProvider's values.
type ProviderConfig struct {
	// Name identifies the provider in storage, jobs and logs; 1-64 of
	// a-z 0-9 -, unique. Required.
	Name string `yaml:"name"`
	// Kind selects the implementation: digime, oauth2 or fake. Required.
	Kind ProviderKind `yaml:"kind"`
	// Lead is how long before the access token expires it is refreshed;
	// > 0, default 10m.
	Lead time.Duration `yaml:"lead"`
	// Jitter adds a random extra lead in [0, Jitter) so tokens issued
	// together are not refreshed together; 0 disables, must be < Lead,
	// default 2m.
	Jitter time.Duration `yaml:"jitter"`
	// DefaultLifetime is the access-token lifetime assumed when the provider
	// returns no expiry; > Lead, default 1h.
	DefaultLifetime time.Duration `yaml:"default_lifetime"`
	// Timeout bounds one refresh call; > 0, default 30s.
	Timeout time.Duration `yaml:"timeout"`
	// RetryInitial is the first envelope of the exponential backoff after a
	// transient failure; > 0, default 30s.
	RetryInitial time.Duration `yaml:"retry_initial"`
	// RetryMax caps the backoff envelope; >= RetryInitial, default 30m.
	RetryMax time.Duration `yaml:"retry_max"`
	// RetryAfterCap is the longest Retry-After from the provider that is
	// honoured, so a bogus header cannot park users for days; > 0, default
	// 1h.
	RetryAfterCap time.Duration `yaml:"retry_after_cap"`
	// DegradedAfter is how many consecutive transient failures mark a user
	// degraded; >= 1, default 3.
	DegradedAfter int `yaml:"degraded_after"`
	// CircuitFailures is how many consecutive transient failures, across
	// all users, open the provider's circuit; >= 1, default 20.
	CircuitFailures int `yaml:"circuit_failures"`
	// CircuitCooldown is how long an open circuit waits before one probe
	// call; > 0, default 30s.
	CircuitCooldown time.Duration `yaml:"circuit_cooldown"`

	// RateLimit caps calls to the provider from one process, per second;
	// 0 (the default) is unlimited. Burst is the bucket size (default 10).
	RateLimit float64 `yaml:"rate_limit"`
	Burst     int     `yaml:"burst"`
	// MaxConcurrency caps job runs in flight against the provider in one
	// process; default 16.
	MaxConcurrency int `yaml:"max_concurrency"`

	// Digime configures a provider of kind digime (and only that kind).
	Digime DigimeConfig `yaml:"digime"`
	// OAuth2 configures a provider of kind oauth2 (and only that kind).
	OAuth2 OAuth2Config `yaml:"oauth2"`
}

// DigimeConfig is how syncd talks to digi.me (see digime-protocol.md).
type DigimeConfig struct {
	// BaseURL of the API; default https://api.digi.me/v1.7/. The JWKS that
	// verifies token responses is fetched from BaseURL + "jwks/oauth" only.
	BaseURL string `yaml:"base_url"`
	// AppID and ContractID form the client_id "<app>_<contract>". Required.
	AppID      string `yaml:"app_id"`
	ContractID string `yaml:"contract_id"`
	// PrivateKeyFile is the contract's RSA private key, PEM (PKCS#1 or
	// PKCS#8). Required. Relative paths resolve against the config file.
	PrivateKeyFile string `yaml:"private_key_file"`
	// PollInterval between file-list polls during a pull; default 3s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxPolls and MaxDuration bound one pull; defaults 100 and 5m.
	MaxPolls    int           `yaml:"max_polls"`
	MaxDuration time.Duration `yaml:"max_duration"`
	// AgentName and AgentVersion are sent as the SDK agent block. Whether
	// digi.me accepts an unknown agent is unconfirmed: set them to an
	// identity digi.me gave you if it rejects the default ("syncd").
	AgentName    string `yaml:"agent_name"`
	AgentVersion string `yaml:"agent_version"`
	// OnboardURL is digi.me's browser UI, where consent links point;
	// default https://api.digi.me/apps/saas/.
	OnboardURL string `yaml:"onboard_url"`
	// OnboardParams are added to consent links, e.g. service, lng,
	// sourceType (default pull).
	OnboardParams map[string]string `yaml:"onboard_params"`
}

// OAuth2Config is how syncd talks to an RFC 6749 API.
type OAuth2Config struct {
	// TokenURL is the token endpoint. Required.
	TokenURL string `yaml:"token_url"`
	// ClientID is required; the secret is inline or a file, not both.
	ClientID         string `yaml:"client_id"`
	ClientSecret     string `yaml:"client_secret"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// AuthStyle is how the client authenticates: basic (default) or post.
	AuthStyle string `yaml:"auth_style"`
	// Scopes sent on refresh; empty sends none.
	Scopes []string `yaml:"scopes"`
	// PullURL and PushURL are templates: {{.User}}, and {{.Cursor}} for
	// PullURL. Empty disables pulls / pushes for this provider.
	PullURL string `yaml:"pull_url"`
	PushURL string `yaml:"push_url"`
	// CursorHeader is the pull response header carrying the next cursor;
	// default X-Next-Cursor.
	CursorHeader string `yaml:"cursor_header"`
	// AuthURL is the authorization endpoint for consent links; empty
	// means syncd cannot start consent for this provider.
	AuthURL string `yaml:"auth_url"`
	// AuthParams are extra authorization request parameters, e.g.
	// access_type: offline, prompt: consent.
	AuthParams map[string]string `yaml:"auth_params"`
}

// JobKind says what a job does for each user.
type JobKind string

// Job kinds.
const (
	// JobPull pulls the user's data from the provider.
	JobPull JobKind = "pull"
	// JobPush pushes data to the provider.
	JobPush JobKind = "push"
)

// MissedPolicy says what happens to runs missed while syncd was down.
type MissedPolicy string

// Missed-run policies.
const (
	// MissedSkip drops missed runs; the job next runs on schedule.
	MissedSkip MissedPolicy = "skip"
	// MissedOnce makes up for any number of missed runs with one run.
	MissedOnce MissedPolicy = "once"
)

// JobConfig is one cron job, run for every user of its provider. Fields
// omitted in YAML keep DefaultJob's values.
type JobConfig struct {
	// Name identifies the job in storage and logs; 1-64 of a-z 0-9 -,
	// unique. Required.
	Name string `yaml:"name"`
	// Kind is pull or push. Required.
	Kind JobKind `yaml:"kind"`
	// Provider names the provider whose users the job runs for. Empty means
	// the only provider when exactly one is configured; Validate fills it
	// in.
	Provider string `yaml:"provider"`
	// Spec is the cron schedule: 5 fields, 6 fields (leading seconds),
	// a descriptor such as @hourly, or "@every 15m" (at least 1s). A
	// CRON_TZ=Zone or TZ=Zone prefix sets the time zone like Timezone does.
	// Required.
	Spec string `yaml:"schedule"`
	// Timezone is the IANA zone Spec is read in. Empty (the default) means
	// UTC, or the spec's CRON_TZ= zone; if both are given they must be
	// equal. Validate fills it in.
	Timezone string `yaml:"timezone"`
	// Spread spreads the users' runs over [0, Spread) after each scheduled
	// time so they do not all start at once; 0 (the default) disables. It
	// must not exceed the schedule's shortest interval, or runs would
	// overlap the next one.
	Spread time.Duration `yaml:"spread"`
	// Timeout bounds one run for one user; > 0, default 5m.
	Timeout time.Duration `yaml:"timeout"`
	// Missed is skip or once; default once.
	Missed MissedPolicy `yaml:"missed"`
	// Retry says how a failed run for a user is retried.
	Retry RetryConfig `yaml:"retry"`
	// Paused keeps the job configured but not running; default false.
	Paused bool `yaml:"paused"`
	// Sink is where a pull job delivers items; default a Redis stream
	// <prefix>pulled capped at 100000 entries. Not for push jobs.
	Sink SinkConfig `yaml:"sink"`
	// Batch is how many outbox items one push run drains at most; default
	// 100.
	Batch int `yaml:"batch"`

	// Schedule is Spec parsed, in Location; set by Validate.
	Schedule cron.Schedule `yaml:"-"`
	// Location is the job's time zone; set by Validate, never nil after it.
	Location *time.Location `yaml:"-"`
}

// SinkConfig is where pulled items go.
type SinkConfig struct {
	// Kind is dir, webhook or redis.
	Kind string `yaml:"kind"`
	// Path (dir): items are written to Path/<user>/<job>/<item>, atomically.
	Path string `yaml:"path"`
	// URL (webhook): each item is POSTed here, signed with Secret
	// (X-Syncd-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">).
	URL        string `yaml:"url"`
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Stream (redis): items are XADDed to <prefix>Stream, capped at MaxLen
	// (default 100000).
	Stream string `yaml:"stream"`
	MaxLen int64  `yaml:"max_len"`
}

// RetryConfig is an exponential retry policy.
type RetryConfig struct {
	// Attempts is how many retries follow a failure; 0 disables retrying.
	// Default 5.
	Attempts int `yaml:"attempts"`
	// Initial is the first backoff; > 0, default 30s.
	Initial time.Duration `yaml:"initial"`
	// Max caps the backoff; >= Initial, default 30m.
	Max time.Duration `yaml:"max"`
}

// DefaultConfig returns the configuration an empty file yields, except that
// it has no encryption key: there is no safe default key, so it does not
// validate until one is added.
func DefaultConfig() *Config {
	p := DefaultProvider()
	p.Name = "default"
	p.Kind = ProviderFake
	return &Config{
		Redis: RedisConfig{
			URL:         "redis://127.0.0.1:6379/0",
			Prefix:      "syncd:",
			Shards:      16,
			DialTimeout: 5 * time.Second,
		},
		Log: LogConfig{
			Level:  "info",
			Format: "auto",
		},
		Events: EventsConfig{
			MaxLen: 100000,
		},
		Refresher: RefresherConfig{
			Workers:      32,
			Lease:        time.Minute,
			Batch:        256,
			PollInterval: time.Second,
		},
		Runner: RefresherConfig{
			Workers:      64,
			Lease:        time.Minute,
			Batch:        256,
			PollInterval: time.Second,
		},
		Providers:     []ProviderConfig{p},
		Jobs:          []JobConfig{},
		Admin:         AdminConfig{Listen: "127.0.0.1:9464"},
		ShutdownGrace: 25 * time.Second,
		StatsInterval: time.Minute,
		Authorize:     AuthorizeConfig{StateTTL: 15 * time.Minute},
	}
}

// DefaultProvider returns the values a providers entry starts from before
// its YAML is applied. Name and Kind are empty: they are required.
func DefaultProvider() ProviderConfig {
	return ProviderConfig{
		Lead:            10 * time.Minute,
		Jitter:          2 * time.Minute,
		DefaultLifetime: time.Hour,
		Timeout:         30 * time.Second,
		RetryInitial:    30 * time.Second,
		RetryMax:        30 * time.Minute,
		RetryAfterCap:   time.Hour,
		DegradedAfter:   3,
		CircuitFailures: 20,
		CircuitCooldown: 30 * time.Second,
		Burst:           10,
		MaxConcurrency:  16,
		Digime: DigimeConfig{
			BaseURL: "https://api.digi.me/v1.7/", PollInterval: 3 * time.Second, MaxPolls: 100,
			MaxDuration: 5 * time.Minute, AgentName: "syncd", AgentVersion: "dev",
		},
		OAuth2: OAuth2Config{AuthStyle: "basic", CursorHeader: "X-Next-Cursor"},
	}
}

// DefaultJob returns the values a jobs entry starts from before its YAML is
// applied. Name, Kind and Spec are empty: they are required.
func DefaultJob() JobConfig {
	return JobConfig{
		Batch:   100,
		Sink:    SinkConfig{Kind: "redis", Stream: "pulled", MaxLen: 100000},
		Timeout: 5 * time.Minute,
		Missed:  MissedOnce,
		Retry: RetryConfig{
			Attempts: 5,
			Initial:  30 * time.Second,
			Max:      30 * time.Minute,
		},
	}
}

// UnmarshalYAML decodes a providers entry over DefaultProvider, so omitted
// fields get their defaults while an explicit zero (jitter: 0s) is kept.
// Unknown keys are rejected by Parse, not here.
func (p *ProviderConfig) UnmarshalYAML(value *yaml.Node) error {
	type plain ProviderConfig // no methods: no recursion
	v := plain(DefaultProvider())
	if err := value.Decode(&v); err != nil {
		return err
	}
	*p = ProviderConfig(v)
	return nil
}

// UnmarshalYAML decodes a jobs entry over DefaultJob, so omitted fields get
// their defaults while an explicit zero (attempts: 0) is kept. Unknown keys
// are rejected by Parse, not here.
func (j *JobConfig) UnmarshalYAML(value *yaml.Node) error {
	type plain JobConfig
	v := plain(DefaultJob())
	if err := value.Decode(&v); err != nil {
		return err
	}
	*j = JobConfig(v)
	return nil
}

// Provider returns the provider with the given name.
func (c *Config) Provider(name string) (*ProviderConfig, bool) {
	for i := range c.Providers {
		if c.Providers[i].Name == name {
			return &c.Providers[i], true
		}
	}
	return nil, false
}

// Path picks the config file: flagValue if non-empty, else
// getenv(EnvConfig) if non-empty, else DefaultPath.
func Path(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if getenv != nil {
		if p := getenv(EnvConfig); p != "" {
			return p
		}
	}
	return DefaultPath
}

// Load reads the config file at path, expands ${VAR} references, applies
// defaults, resolves _file secrets relative to the file's directory, applies
// EnvRedisURL, and validates. getenv is usually os.Getenv; nil means
// os.Getenv. Errors read "config <path>: ..." on one line.
func Load(path string, getenv func(string) string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, unwrapPath(err))
	}
	defer f.Close()
	cfg, err := parse(f, filepath.Dir(path), getenv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse is Load for a config read from r; baseDir resolves relative
// secret_file paths ("" means the working directory). Errors read
// "config: ..." on one line.
func Parse(r io.Reader, baseDir string, getenv func(string) string) (*Config, error) {
	cfg, err := parse(r, baseDir, getenv)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func parse(r io.Reader, baseDir string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", unwrapPath(err))
	}
	if len(raw) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	x, err := expand(raw, getenv)
	if err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	if err := decode(x, cfg); err != nil {
		return nil, x.scrub(err)
	}
	if u := getenv(EnvRedisURL); u != "" {
		cfg.Redis.URL = u
	}
	abs := func(path *string) {
		if *path != "" && !filepath.IsAbs(*path) {
			*path = filepath.Join(baseDir, *path)
		}
	}
	for i := range cfg.Encryption.Keys {
		abs(&cfg.Encryption.Keys[i].SecretFile)
	}
	abs(&cfg.Admin.TokenFile)
	abs(&cfg.Alerts.SecretFile)
	for i := range cfg.Jobs {
		abs(&cfg.Jobs[i].Sink.Path)
		abs(&cfg.Jobs[i].Sink.SecretFile)
	}
	for i := range cfg.Providers {
		abs(&cfg.Providers[i].Digime.PrivateKeyFile)
		abs(&cfg.Providers[i].OAuth2.ClientSecretFile)
	}
	if err := cfg.Validate(); err != nil {
		return nil, x.scrub(err)
	}
	return cfg, nil
}

// unwrapPath drops an *fs.PathError's path, which the caller already
// prints, keeping errors.Is(err, fs.ErrNotExist) working.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// expansion is the result of expand.
type expansion struct {
	text []byte
	// lines are the (1-based) lines of text holding expanded values, so
	// decode errors can avoid quoting them.
	lines map[int]bool
	// values are the expanded values, scrubbed from any error that still
	// contains one.
	values []string
}

// expand replaces ${NAME} in src with getenv(NAME). Only the braced form is
// recognised, so a bare '$' (common in secrets) stays as it is, and "$${" is
// a literal "${". Values are not expanded again. An unset or empty variable
// is an error; values never appear in errors.
func expand(src []byte, getenv func(string) string) (*expansion, error) {
	var (
		buf     bytes.Buffer
		line    = 1
		unset   []string
		seen    = map[string]bool{}
		invalid []string
		x       = &expansion{lines: map[int]bool{}}
	)
	buf.Grow(len(src))
	for i := 0; i < len(src); {
		switch {
		case bytes.HasPrefix(src[i:], []byte("$${")):
			buf.WriteString("${")
			i += 3
		case bytes.HasPrefix(src[i:], []byte("${")):
			rest := src[i+2:]
			end := bytes.IndexAny(rest, "}\n")
			if end < 0 || rest[end] != '}' || !envName.Match(rest[:end]) {
				invalid = append(invalid, fmt.Sprintf("line %d: malformed ${...} reference (want ${NAME}; write $${ for a literal ${)", line))
				buf.WriteString("${")
				i += 2
				continue
			}
			name := string(rest[:end])
			i += 2 + end + 1
			v := getenv(name)
			if v == "" {
				if !seen[name] {
					seen[name] = true
					unset = append(unset, fmt.Sprintf("${%s} is not set", name))
				}
				continue
			}
			x.values = append(x.values, v)
			x.lines[line] = true
			for _, c := range []byte(v) {
				if c == '\n' {
					line++
					x.lines[line] = true
				}
			}
			buf.WriteString(v)
		default:
			if src[i] == '\n' {
				line++
			}
			buf.WriteByte(src[i])
			i++
		}
	}
	if problems := append(invalid, unset...); len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	x.text = buf.Bytes()
	return x, nil
}

// hidden replaces an expanded value in an error message.
const hidden = "(value from the environment, not shown)"

// scrub removes expanded values from err's text, a safety net for values
// that reach a message indirectly (a CRON_TZ zone quoted in a timezone
// error, say). A value is replaced where it appears quoted; one of 8 bytes
// or more, likely a secret, also wherever it appears at all. Shorter values
// are only hidden when quoted so that "5" does not eat line numbers.
func (x *expansion) scrub(err error) error {
	if len(x.values) == 0 {
		return err
	}
	clean := func(s string) string {
		for _, v := range x.values {
			q := strconv.Quote(v)
			s = strings.ReplaceAll(s, q, hidden)
			if len(v) >= 8 {
				s = strings.ReplaceAll(s, v, hidden)
				s = strings.ReplaceAll(s, q[1:len(q)-1], hidden)
			}
		}
		return s
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		for _, p := range ve.Problems {
			p.Field, p.Msg = clean(p.Field), clean(p.Msg)
		}
		return err
	}
	return errors.New(clean(err.Error()))
}

var (
	envName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	simpleKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// decode decodes text over cfg. A first pass walks the YAML tree against
// Config's type and reports unknown keys, bad durations and wrong shapes
// with field paths; only a tree that passes is decoded for real, strictly.
func decode(x *expansion, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(x.text))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: all defaults
		}
		return yamlError(err, len(x.values) > 0)
	}
	for {
		// Only the first document is decoded; a second one would be
		// silently ignored, so it is an error unless it is empty (a
		// trailing "---").
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return yamlError(err, len(x.values) > 0)
		}
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			return errors.New("more than one YAML document")
		}
	}

	c := checker{budget: maxNodes, tainted: x.lines}
	c.check(&root, reflect.TypeFor[Config](), "")
	if len(c.problems) > 0 {
		return &ValidationError{Problems: c.problems}
	}

	strict := yaml.NewDecoder(bytes.NewReader(x.text))
	strict.KnownFields(true)
	if err := strict.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return yamlError(err, len(x.values) > 0)
	}
	return nil
}

// yamlError flattens a yaml.v3 error onto one line. Its messages may quote
// text from the document (`value`, 'anchor'); when variables were expanded
// that text could be a secret, so quotes are emptied. Type errors lose
// their quoted values always: the checker reports those problems first,
// with field paths, so these are a fallback.
func yamlError(err error, expanded bool) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = backquoted.ReplaceAllString(m, "")
		}
		return errors.New("yaml: " + oneLine(strings.Join(msgs, "; ")))
	}
	msg := oneLine(err.Error())
	if expanded {
		msg = backquoted.ReplaceAllString(msg, "")
		msg = singleQuoted.ReplaceAllString(msg, "''")
	}
	return errors.New(msg)
}

var (
	backquoted   = regexp.MustCompile(" ?`[^`]*`")
	singleQuoted = regexp.MustCompile(`'[^']*'`)
)

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ; ")), " ")
}

// maxNodes bounds the checker's walk; aliases can make a small document
// expand enormously ("billion laughs").
const maxNodes = 1 << 20

var durationType = reflect.TypeFor[time.Duration]()

// checker walks a YAML tree alongside a Go type, collecting problems.
type checker struct {
	problems []*FieldError
	budget   int
	tainted  map[int]bool
}

func (c *checker) add(field, format string, args ...any) {
	c.problems = append(c.problems, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// quote renders a scalar for an error message, unless it came (even partly)
// from an environment variable.
func (c *checker) quote(n *yaml.Node) string {
	if c.fromEnv(n) {
		return hidden
	}
	v := n.Value
	if r := []rune(v); len(r) > 64 {
		v = string(r[:64]) + "..."
	}
	return fmt.Sprintf("%q", v)
}

// fromEnv reports whether a node's text may hold expanded text: whether
// any line it spans (a block scalar starts on the line before its text)
// holds some.
func (c *checker) fromEnv(n *yaml.Node) bool {
	last := n.Line + strings.Count(n.Value, "\n") + 1
	for l := n.Line; l <= last; l++ {
		if c.tainted[l] {
			return true
		}
	}
	return false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return n.ShortTag()
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	c.budget--
	if c.budget == 0 {
		c.add("", "document too complex (excessive aliasing)")
	}
	if c.budget <= 0 {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			c.check(n.Content[0], t, path)
		}
		return
	case yaml.AliasNode:
		if n.Alias != nil {
			c.check(n.Alias, t, path)
		}
		return
	}
	if isNull(n) {
		return // null keeps the default, as yaml.v3 does
	}
	at := fmt.Sprintf("(line %d)", n.Line)
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			c.add(path, "must be a duration, got %s %s", kindName(n), at)
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil || n.ShortTag() != "!!str" {
			c.add(path, "invalid duration %s %s: want a Go duration with a unit, such as \"0s\", \"30s\", \"10m\" or \"1h30m\"", c.quote(n), at)
		}
	case t.Kind() == reflect.Struct:
		c.checkStruct(n, t, path, at)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.add(path, "must be a list, got %s %s", kindName(n), at)
			return
		}
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if t.Elem().Kind() == reflect.Struct && (isNull(e) || e.Kind == yaml.ScalarNode) {
				c.add(p, "must be a mapping, got %s (line %d)", kindName(e), e.Line)
				continue
			}
			c.check(e, t.Elem(), p)
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			c.add(path, "must be a string, got %s %s", kindName(n), at)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			c.add(path, "must be true or false, got %s %s", c.describe(n), at)
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		v := reflect.New(t)
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(v.Interface()) != nil {
			c.add(path, "must be an integer, got %s %s", c.describe(n), at)
		}
	}
}

func (c *checker) describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return c.quote(n)
	}
	return kindName(n)
}

func (c *checker) checkStruct(n *yaml.Node, t reflect.Type, path, at string) {
	if n.Kind != yaml.MappingNode {
		what := "must be a mapping"
		if path == "" {
			what = "document must be a mapping"
		}
		c.add(path, "%s, got %s %s", what, kindName(n), at)
		return
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			c.checkMerge(v, t, path)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			c.add(path, "keys must be strings, got %s (line %d)", kindName(k), k.Line)
			continue
		}
		// Keys name fields in errors; a key that is not a known field is
		// shown quoted, and not at all if it came from the environment.
		p := joinPath(path, k.Value)
		shown := path
		if simpleKey.MatchString(k.Value) && !c.fromEnv(k) {
			shown = p
		}
		if first, dup := seen[k.Value]; dup {
			c.add(shown, "duplicate key %s (lines %d and %d)", c.quote(k), first, k.Line)
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields[k.Value]
		if !ok {
			c.add(shown, "unknown key %s (line %d; want one of %s)", c.quote(k), k.Line, strings.Join(names, ", "))
			continue
		}
		c.check(v, ft, p)
	}
}

// checkMerge checks the value of a "<<" merge key: a mapping, an alias of
// one, or a list of those.
func (c *checker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	if v.Kind == yaml.SequenceNode {
		for _, e := range v.Content {
			c.check(e, t, path)
		}
		return
	}
	c.check(v, t, path)
}
