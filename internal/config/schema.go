package config

import (
	"bytes"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
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
	// with result=ok&user=ID or result=error&error=CODE (never the user)
	// added to its query, signed (t, sig) with DoneURLSecret; empty shows
	// a short page instead.
	DoneURL string `yaml:"done_url"`
	// DoneURLSecret signs the results sent to DoneURL (HMAC-SHA256, see
	// README "Authorization callback"); inline or a file, not both, at
	// least 32 characters. Required with DoneURL: an unsigned result=ok
	// could be forged by anyone.
	DoneURLSecret     string `yaml:"done_url_secret"`
	DoneURLSecretFile string `yaml:"done_url_secret_file"`
	// AllowedRedirectURIs, if not empty, are the only redirect URIs an
	// API request may name besides RedirectURI (compared with scheme and
	// host lower-cased and the default port dropped; path and query
	// exactly). Empty allows any absolute URI.
	AllowedRedirectURIs []string `yaml:"allowed_redirect_uris"`
}

// AdminConfig is the admin HTTP server. Every /v1 request needs a bearer
// token: the read token for reads, the write token for everything; with
// neither, /v1 answers 401 (README "Security").
type AdminConfig struct {
	// Listen is host:port; default 127.0.0.1:9464 (loopback only). Empty
	// disables the server.
	Listen string `yaml:"listen"`
	// AllowedHosts are more host names (or IP addresses), without a port,
	// that requests may carry in their Host header besides the listen
	// address and loopback names: the DNS rebinding check (README
	// "Security"). Example: [syncd, syncd.ops.svc].
	AllowedHosts []string `yaml:"allowed_hosts"`
	// ReadTokenFile holds the bearer token for /v1 reads (GET) only.
	ReadTokenFile string `yaml:"read_token_file"`
	// WriteTokenFile holds the bearer token for every /v1 request, reads
	// and writes.
	WriteTokenFile string `yaml:"write_token_file"`
	// TokenFile is WriteTokenFile's older name, still read; set one, not
	// both.
	TokenFile string `yaml:"token_file"`
	// ReadToken and WriteToken are the files' contents, read by Validate
	// and again by ReadTokens.
	ReadToken  string `yaml:"-"`
	WriteToken string `yaml:"-"`
}

// AlertsConfig is the re-auth webhook: a signed POST (X-Syncd-Signature,
// as the webhook sink) listing users flagged for re-authorization.
type AlertsConfig struct {
	// WebhookURL; empty (the default) disables the webhook.
	WebhookURL string `yaml:"webhook_url"`
	// Secret signs the webhook, as the webhook sink's: at least 32 bytes,
	// inline or a file; PreviousSecret, optional, during a rotation.
	Secret             string `yaml:"secret"`
	SecretFile         string `yaml:"secret_file"`
	PreviousSecret     string `yaml:"previous_secret"`
	PreviousSecretFile string `yaml:"previous_secret_file"`
	// Links adds a fresh re-authorization link per user to the webhook
	// (needs authorize.redirect_uri). A link lives authorize.state_ttl.
	Links bool `yaml:"links"`
}

// RedisConfig says how to reach Redis and how syncd lays out its keys.
type RedisConfig struct {
	// URL names the Redis deployment and its credentials; EnvRedisURL
	// overrides it. Default redis://127.0.0.1:6379/0. One node:
	// redis://[user:password@]host:port/db (a go-redis URL with its
	// options), rediss:// for TLS, or unix:///path/to.sock. Sentinel:
	// redis-sentinel://[user:password@]host1:port1,host2:port2[/db]?master=NAME
	// (rediss-sentinel:// for TLS): the hosts are sentinels, the user and
	// password the master's (see SentinelPassword). Cluster:
	// redis-cluster://[user:password@]host1:port1,host2:port2 (seed nodes;
	// rediss-cluster:// for TLS), or ClusterAddrs.
	URL string `yaml:"url"`
	// ClusterAddrs are Redis Cluster seed nodes (host:port). When set,
	// syncd talks to a cluster and URL, a redis:// or rediss:// URL, gives
	// only TLS, the user, the password and options: its host is not used.
	ClusterAddrs []string `yaml:"cluster_addrs"`
	// SentinelUsername and SentinelPassword authenticate syncd to the
	// sentinels of a redis-sentinel:// URL (the URL's user and password
	// are the master's); empty: sentinels without a password.
	// SentinelPasswordFile reads the password from a file; not both.
	SentinelUsername     string `yaml:"sentinel_username"`
	SentinelPassword     string `yaml:"sentinel_password"`
	SentinelPasswordFile string `yaml:"sentinel_password_file"`
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
	// TLS configures a rediss://, rediss-sentinel:// or rediss-cluster://
	// connection (to the sentinels too).
	TLS RedisTLSConfig `yaml:"tls"`
	// MinReplicasAcked is how many replicas must acknowledge the commit of
	// a refreshed (rotated) token before syncd uses it (WAIT; README
	// "Durable token commits"): -1, the default, waits for 1 while the
	// master has a connected replica and for none on a single node; 0
	// never waits.
	MinReplicasAcked int `yaml:"min_replicas_acked"`
	// WaitTimeout bounds that wait; default 1s. A commit not acknowledged
	// within it is kept in memory and committed again.
	WaitTimeout time.Duration `yaml:"wait_timeout"`

	opts RedisClientOptions // parsed URL, set by Validate
}

// RedisClientOptions are go-redis options for the deployment RedisConfig
// names: exactly one field is set (none before a successful Validate).
type RedisClientOptions struct {
	// Single is one node (redis://, rediss://, unix://).
	Single *redis.Options
	// Failover is a master found through Sentinel (redis-sentinel://).
	Failover *redis.FailoverOptions
	// Cluster is Redis Cluster (redis-cluster://, ClusterAddrs).
	Cluster *redis.ClusterOptions
}

// RedisTLSConfig configures TLS to Redis (a rediss:// URL only). The
// server's certificate is always verified unless InsecureSkipVerify.
type RedisTLSConfig struct {
	// InsecureSkipVerify turns off the server certificate check (anyone
	// on the path can read the traffic, passwords and tokens included);
	// syncd run logs a warning. The URL's skip_verify=true is refused
	// without it.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CAFile is a PEM bundle of the CAs that sign the server's
	// certificate; empty uses the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// a server that requires one (tls-auth-clients); both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Options returns the go-redis options of a single node with DialTimeout
// applied; nil in Sentinel or Cluster mode or before a successful
// Validate. Each call returns a fresh copy the caller may modify.
func (r *RedisConfig) Options() *redis.Options {
	return r.ClientOptions().Single
}

// ClientOptions returns go-redis options for the deployment URL and
// ClusterAddrs name, with DialTimeout applied; zero before a successful
// Validate. Each call returns a fresh copy the caller may modify.
func (r *RedisConfig) ClientOptions() RedisClientOptions {
	var c RedisClientOptions
	switch o := r.opts; {
	case o.Single != nil:
		s := *o.Single
		s.TLSConfig = s.TLSConfig.Clone()
		s.DialTimeout = r.DialTimeout
		c.Single = &s
	case o.Failover != nil:
		f := *o.Failover
		f.TLSConfig = f.TLSConfig.Clone()
		f.SentinelAddrs = slices.Clone(f.SentinelAddrs)
		f.DialTimeout = r.DialTimeout
		c.Failover = &f
	case o.Cluster != nil:
		cl := *o.Cluster
		cl.TLSConfig = cl.TLSConfig.Clone()
		cl.Addrs = slices.Clone(cl.Addrs)
		cl.DialTimeout = r.DialTimeout
		c.Cluster = &cl
	}
	return c
}

// Validate checks the Redis settings alone, as Config.Validate does, for
// a command that needs only Redis (syncd bench). It returns nil or a
// *ValidationError.
func (r *RedisConfig) Validate() error {
	var p problems
	r.validate(&p)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
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
	// URL (webhook): each item is POSTed here, signed with Secret (see
	// README "Webhook signatures"). Secret is at least 32 bytes, inline or
	// a file (not both). PreviousSecret, optional, is the secret being
	// rotated out: deliveries are signed with both until it is removed.
	URL                string `yaml:"url"`
	Secret             string `yaml:"secret"`
	SecretFile         string `yaml:"secret_file"`
	PreviousSecret     string `yaml:"previous_secret"`
	PreviousSecretFile string `yaml:"previous_secret_file"`
	// Stream (redis): items are XADDed to <prefix>Stream, capped at MaxLen
	// (default 100000).
	Stream string `yaml:"stream"`
	MaxLen int64  `yaml:"max_len"`
}

// Secrets are the webhook sink's signing secrets, the current one first;
// set by Validate (secret_file read).
func (s SinkConfig) Secrets() [][]byte { return webhookSecrets(s.Secret, s.PreviousSecret) }

// Secrets are the re-auth webhook's signing secrets, the current one
// first; set by Validate (secret_file read).
func (a AlertsConfig) Secrets() [][]byte { return webhookSecrets(a.Secret, a.PreviousSecret) }

func webhookSecrets(current, previous string) [][]byte {
	var out [][]byte
	for _, s := range []string{current, previous} {
		if s != "" {
			out = append(out, []byte(s))
		}
	}
	return out
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

// Provider returns the provider with the given name.
func (c *Config) Provider(name string) (*ProviderConfig, bool) {
	for i := range c.Providers {
		if c.Providers[i].Name == name {
			return &c.Providers[i], true
		}
	}
	return nil, false
}
