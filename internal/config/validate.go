package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/robfig/cron/v3"
)

// FieldError is one problem with one field. Field is the path as written in
// YAML ("jobs[1].schedule"); Msg names the bad value, never a secret.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns "field: msg", or just msg when the problem is with the
// document as a whole (Field is empty).
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// ValidationError holds every problem found in a config, so one run shows
// them all. Its message is one line; errors.As finds each *FieldError.
type ValidationError struct {
	Problems []*FieldError
}

// Error joins the problems with "; ".
func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

type problems []*FieldError

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

var (
	keyID    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	itemName = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
)

// cronParser accepts 5 fields, 6 fields with leading seconds, and
// descriptors such as @hourly and @every 15m.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate checks every field, fills in values whose default depends on
// others (encryption.primary_key, jobs[].provider, jobs[].timezone) and sets
// the derived values: decoded keys, Redis options, cron schedules and
// locations. It reads secret_file files; a relative path is relative to the
// working directory here (Parse has already made them absolute). It returns
// nil or a *ValidationError listing every problem.
func (c *Config) Validate() error {
	var p problems
	c.Redis.validate(&p)
	c.Log.validate(&p)
	c.Encryption.validate(&p)
	if c.Events.MaxLen < 100 {
		p.add("events.max_len", "must be at least 100, got %d", c.Events.MaxLen)
	}
	c.validateDaemon(&p)
	c.Refresher.validate(&p, "refresher")
	c.Runner.validate(&p, "runner")
	c.validateProviders(&p)
	c.validateJobs(&p)
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func (r *RedisConfig) validate(p *problems) {
	r.opts = RedisClientOptions{}
	if r.URL == "" {
		p.add("redis.url", "required")
	} else if opts, ok := r.parseRedis(p); ok {
		r.opts = opts
		switch {
		case opts.Failover != nil:
			r.TLS.apply(p, opts.Failover.TLSConfig, r.URL)
		case opts.Cluster != nil:
			r.TLS.apply(p, opts.Cluster.TLSConfig, r.URL)
		default:
			r.TLS.apply(p, opts.Single.TLSConfig, r.URL)
		}
		r.sentinelCredentials(p, opts.Failover)
	}
	switch {
	case r.Prefix == "":
		p.add("redis.prefix", "required")
	case strings.IndexFunc(r.Prefix, func(c rune) bool { return unicode.IsSpace(c) || c == '{' || c == '}' }) >= 0:
		p.add("redis.prefix", "invalid prefix %q: must not contain whitespace, '{' or '}'", r.Prefix)
	}
	if r.Shards < 1 || r.Shards > 1024 {
		p.add("redis.shards", "must be between 1 and 1024, got %d", r.Shards)
	}
	positive(p, "redis.dial_timeout", r.DialTimeout)
	if r.MinReplicasAcked < -1 {
		p.add("redis.min_replicas_acked", "must be -1 (automatic) or more, got %d", r.MinReplicasAcked)
	}
	positive(p, "redis.wait_timeout", r.WaitTimeout)
}

// maxPEMFile bounds a CA bundle, certificate or key file.
const maxPEMFile = 1 << 20

// apply checks the TLS settings against the parsed URL and sets them on
// its TLS config tc (nil without TLS): a rediss:// URL's server certificate is verified unless
// InsecureSkipVerify says otherwise (the URL's skip_verify=true alone is
// refused), with CAFile's CAs and CertFile/KeyFile's client certificate.
func (t *RedisTLSConfig) apply(p *problems, tc *tls.Config, raw string) {
	if tc == nil {
		if t.InsecureSkipVerify || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" {
			p.add("redis.tls", "needs a rediss:// URL (or rediss-sentinel://, rediss-cluster://), got %q", redactURL(raw))
		}
		return
	}
	if tc.InsecureSkipVerify && !t.InsecureSkipVerify {
		p.add("redis.url", "skip_verify=true turns off TLS certificate verification: set redis.tls.insecure_skip_verify: true if that is meant")
	}
	tc.InsecureSkipVerify = t.InsecureSkipVerify
	if t.CAFile != "" {
		if b, err := readPEMFile(t.CAFile); err != nil {
			p.add("redis.tls.ca_file", "%v", err)
		} else if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(b) {
			p.add("redis.tls.ca_file", "no PEM certificate in %s", t.CAFile)
		} else {
			tc.RootCAs = pool
		}
	}
	switch {
	case t.CertFile == "" && t.KeyFile == "":
	case t.KeyFile == "":
		p.add("redis.tls.key_file", "required with redis.tls.cert_file")
	case t.CertFile == "":
		p.add("redis.tls.cert_file", "required with redis.tls.key_file")
	default:
		cert, cerr := readPEMFile(t.CertFile)
		if cerr != nil {
			p.add("redis.tls.cert_file", "%v", cerr)
		}
		key, kerr := readPEMFile(t.KeyFile)
		if kerr != nil {
			p.add("redis.tls.key_file", "%v", kerr)
		}
		if cerr != nil || kerr != nil {
			return
		}
		pair, err := tls.X509KeyPair(cert, key)
		switch {
		case err == nil:
			tc.Certificates = []tls.Certificate{pair}
		case strings.Contains(err.Error(), "key"):
			// tls names the key input, or a key that does not match.
			p.add("redis.tls.key_file", "%s with redis.tls.cert_file %s: %v", t.KeyFile, t.CertFile, err)
		default:
			p.add("redis.tls.cert_file", "%s: %v", t.CertFile, err)
		}
	}
}

// readPEMFile reads a certificate or key file, bounded like a secret.
func readPEMFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxPEMFile)
	}
	return b, nil
}

// redactURL hides the password of a Redis URL, even one url.Parse rejects.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "", raw
	} else {
		scheme += "://"
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return raw
	}
	return scheme + user + ":xxxxx" + rest[at:]
}

// urlErrorText explains a redis.ParseURL error without repeating the URL
// (url.Error quotes it whole, password included).
func urlErrorText(raw string, err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	if redactURL(raw) != raw {
		// The detail may quote part of a malformed authority, which could
		// be part of the password.
		return "malformed URL"
	}
	return ue.Err.Error()
}

var (
	logLevels  = []string{"trace", "debug", "info", "warn", "error"}
	logFormats = []string{"json", "console", "auto"}
)

func (l *LogConfig) validate(p *problems) {
	if !slices.Contains(logLevels, l.Level) {
		p.add("log.level", "unknown level %q (want %s)", l.Level, orList(logLevels))
	}
	if !slices.Contains(logFormats, l.Format) {
		p.add("log.format", "unknown format %q (want %s)", l.Format, orList(logFormats))
	}
}

// maxSecretFile bounds a secret file; a 32-byte key is 44 base64 bytes.
const maxSecretFile = 4096

func (e *EncryptionConfig) validate(p *problems) {
	e.decoded = nil
	if len(e.Keys) == 0 {
		p.add("encryption.keys", "at least one key is required")
		if e.PrimaryKey != "" {
			p.add("encryption.primary_key", "unknown key id %q", e.PrimaryKey)
		}
		return
	}
	decoded := make(map[string][]byte, len(e.Keys))
	ids := map[string]bool{}
	ok := true
	for i, k := range e.Keys {
		f := fmt.Sprintf("encryption.keys[%d]", i)
		switch {
		case k.ID == "":
			p.add(f+".id", "required")
			ok = false
		case !keyID.MatchString(k.ID):
			p.add(f+".id", "invalid id %q (want 1-32 of A-Z a-z 0-9 _ -)", k.ID)
			ok = false
		case ids[k.ID]:
			p.add(f+".id", "duplicate id %q", k.ID)
			ok = false
		}
		ids[k.ID] = true
		var (
			secret string
			field  string
		)
		switch {
		case k.Secret != "" && k.SecretFile != "":
			p.add(f+".secret_file", "cannot be used together with secret")
			ok = false
			continue
		case k.Secret != "":
			secret, field = k.Secret, f+".secret"
		case k.SecretFile != "":
			field = f + ".secret_file"
			s, err := readSecretFile(k.SecretFile)
			if err != nil {
				p.add(field, "%v", err)
				ok = false
				continue
			}
			secret = s
		default:
			p.add(f+".secret", "required (or secret_file)")
			ok = false
			continue
		}
		key, msg := decodeKey(secret)
		if msg != "" {
			p.add(field, "must be base64 of 32 bytes, %s", msg)
			ok = false
			continue
		}
		if keyID.MatchString(k.ID) && decoded[k.ID] == nil {
			decoded[k.ID] = key
		}
	}
	if e.PrimaryKey == "" {
		if keyID.MatchString(e.Keys[0].ID) {
			e.PrimaryKey = e.Keys[0].ID
		}
	} else if !containsKeyID(e.Keys, e.PrimaryKey) {
		p.add("encryption.primary_key", "unknown key id %q", e.PrimaryKey)
		ok = false
	}
	if ok {
		e.decoded = decoded
	}
}

func containsKeyID(keys []KeyConfig, id string) bool {
	for _, k := range keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

// readSecretFile reads a secret from a regular file. Anything else (a FIFO,
// a device) could block or never end, so it is refused. The error never
// holds the content.
func readSecretFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxSecretFile)
	}
	return strings.TrimSpace(string(b)), nil
}

var keyEncodings = []*base64.Encoding{
	base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding,
}

// decodeKey decodes a base64 key of 32 bytes, accepting the standard and URL
// alphabets, padded or not. On failure it returns why, never the input.
func decodeKey(s string) (key []byte, problem string) {
	s = strings.TrimSpace(s)
	for _, enc := range keyEncodings {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) != 32 {
			return nil, fmt.Sprintf("got %d bytes", len(b))
		}
		return b, ""
	}
	return nil, "got invalid base64"
}

func (r *RefresherConfig) validate(p *problems, f string) {
	if r.Workers < 1 || r.Workers > 4096 {
		p.add(f+".workers", "must be between 1 and 4096, got %d", r.Workers)
	}
	if r.Lease < time.Second {
		p.add(f+".lease", "must be at least 1s, got %s", fmtDuration(r.Lease))
	}
	if r.Batch < 1 || r.Batch > 10000 {
		p.add(f+".batch", "must be between 1 and 10000, got %d", r.Batch)
	}
	positive(p, f+".poll_interval", r.PollInterval)
}

var providerKinds = []string{string(ProviderDigime), string(ProviderOAuth2), string(ProviderFake)}

func (c *Config) validateProviders(p *problems) {
	if len(c.Providers) == 0 {
		p.add("providers", "at least one provider is required")
		return
	}
	seen := map[string]bool{}
	for i := range c.Providers {
		pc := &c.Providers[i]
		f := fmt.Sprintf("providers[%d]", i)
		checkName(p, f+".name", pc.Name, seen)
		switch {
		case pc.Kind == "":
			p.add(f+".kind", "required (want %s)", orList(providerKinds))
		case !slices.Contains(providerKinds, string(pc.Kind)):
			p.add(f+".kind", "unknown kind %q (want %s)", pc.Kind, orList(providerKinds))
		}
		positive(p, f+".lead", pc.Lead)
		switch {
		case pc.Jitter < 0:
			p.add(f+".jitter", "must not be negative, got %s", fmtDuration(pc.Jitter))
		case pc.Lead > 0 && pc.Jitter >= pc.Lead:
			p.add(f+".jitter", "%s must be less than lead %s", fmtDuration(pc.Jitter), fmtDuration(pc.Lead))
		}
		if pc.DefaultLifetime <= pc.Lead {
			p.add(f+".default_lifetime", "%s must be greater than lead %s", fmtDuration(pc.DefaultLifetime), fmtDuration(pc.Lead))
		}
		positive(p, f+".timeout", pc.Timeout)
		if pc.Timeout >= c.Refresher.Lease && c.Refresher.Lease >= time.Second {
			// The refresh lease must outlive the call it protects, or a
			// second replica would refresh with the same refresh token.
			p.add(f+".timeout", "%s must be shorter than refresher.lease %s", fmtDuration(pc.Timeout), fmtDuration(c.Refresher.Lease))
		}
		positive(p, f+".retry_initial", pc.RetryInitial)
		if pc.RetryInitial > 0 && pc.RetryMax < pc.RetryInitial {
			p.add(f+".retry_max", "%s must be at least retry_initial %s", fmtDuration(pc.RetryMax), fmtDuration(pc.RetryInitial))
		}
		positive(p, f+".retry_after_cap", pc.RetryAfterCap)
		if pc.DegradedAfter < 1 {
			p.add(f+".degraded_after", "must be at least 1, got %d", pc.DegradedAfter)
		}
		if pc.CircuitFailures < 1 {
			p.add(f+".circuit_failures", "must be at least 1, got %d", pc.CircuitFailures)
		}
		positive(p, f+".circuit_cooldown", pc.CircuitCooldown)
		if pc.RateLimit < 0 {
			p.add(f+".rate_limit", "must not be negative, got %v", pc.RateLimit)
		}
		if pc.Burst < 1 {
			p.add(f+".burst", "must be at least 1, got %d", pc.Burst)
		}
		if pc.MaxConcurrency < 1 {
			p.add(f+".max_concurrency", "must be at least 1, got %d", pc.MaxConcurrency)
		}
		pc.validateDigime(p, f+".digime")
		pc.validateOAuth2(p, f+".oauth2")
	}
}

func (pc *ProviderConfig) validateDigime(p *problems, f string) {
	d := &pc.Digime
	if pc.Kind != ProviderDigime {
		if d.AppID != "" || d.ContractID != "" || d.PrivateKeyFile != "" {
			p.add(f, "only for kind digime, this provider is kind %q", pc.Kind)
		}
		return
	}
	checkURL(p, f+".base_url", d.BaseURL)
	for _, r := range []struct{ field, v string }{{"app_id", d.AppID}, {"contract_id", d.ContractID}, {"private_key_file", d.PrivateKeyFile}} {
		if r.v == "" {
			p.add(f+"."+r.field, "required for kind digime")
		}
	}
	if d.PrivateKeyFile != "" {
		if st, err := os.Stat(d.PrivateKeyFile); err != nil {
			p.add(f+".private_key_file", "%v", unwrapPath(err))
		} else if !st.Mode().IsRegular() {
			p.add(f+".private_key_file", "%q is not a regular file", d.PrivateKeyFile)
		}
	}
	positive(p, f+".poll_interval", d.PollInterval)
	if d.MaxPolls < 1 {
		p.add(f+".max_polls", "must be at least 1, got %d", d.MaxPolls)
	}
	positive(p, f+".max_duration", d.MaxDuration)
	if d.AgentName == "" {
		p.add(f+".agent_name", "required")
	}
	if d.OnboardURL != "" {
		checkURL(p, f+".onboard_url", d.OnboardURL)
	}
}

func (pc *ProviderConfig) validateOAuth2(p *problems, f string) {
	o := &pc.OAuth2
	if pc.Kind != ProviderOAuth2 {
		if o.TokenURL != "" || o.ClientID != "" || o.ClientSecret != "" || o.ClientSecretFile != "" {
			p.add(f, "only for kind oauth2, this provider is kind %q", pc.Kind)
		}
		return
	}
	if o.TokenURL == "" {
		p.add(f+".token_url", "required for kind oauth2")
	} else {
		checkURL(p, f+".token_url", o.TokenURL)
	}
	if o.ClientID == "" {
		p.add(f+".client_id", "required for kind oauth2")
	}
	switch {
	case o.ClientSecret != "" && o.ClientSecretFile != "":
		p.add(f+".client_secret", "give client_secret or client_secret_file, not both")
	case o.ClientSecretFile != "":
		s, err := readSecretFile(o.ClientSecretFile)
		if err != nil {
			p.add(f+".client_secret_file", "%v", err)
		} else {
			o.ClientSecret = s
		}
	}
	if o.AuthStyle != "basic" && o.AuthStyle != "post" {
		p.add(f+".auth_style", "unknown style %q (want basic or post)", o.AuthStyle)
	}
	for _, r := range []struct{ field, v string }{{"pull_url", o.PullURL}, {"push_url", o.PushURL}} {
		if r.v != "" && !strings.HasPrefix(r.v, "http://") && !strings.HasPrefix(r.v, "https://") {
			p.add(f+"."+r.field, "must be an http(s) URL template, got %q", r.v)
		}
	}
	if o.AuthURL != "" {
		checkURL(p, f+".auth_url", o.AuthURL)
	}
}

func checkURL(p *problems, field, v string) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add(field, "must be an http(s) URL, got %q", v)
	}
}

var (
	jobKinds       = []string{string(JobPull), string(JobPush)}
	missedPolicies = []string{string(MissedSkip), string(MissedOnce)}
)

func (c *Config) validateJobs(p *problems) {
	seen := map[string]bool{}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		f := fmt.Sprintf("jobs[%d]", i)
		checkName(p, f+".name", j.Name, seen)
		switch {
		case j.Kind == "":
			p.add(f+".kind", "required (want %s)", orList(jobKinds))
		case !slices.Contains(jobKinds, string(j.Kind)):
			p.add(f+".kind", "unknown kind %q (want %s)", j.Kind, orList(jobKinds))
		}
		switch {
		case j.Provider == "" && len(c.Providers) == 1:
			j.Provider = c.Providers[0].Name
		case j.Provider == "":
			p.add(f+".provider", "required when %d providers are configured", len(c.Providers))
		default:
			if _, ok := c.Provider(j.Provider); !ok {
				p.add(f+".provider", "unknown provider %q", j.Provider)
			}
		}
		j.validateSchedule(p, f)
		positive(p, f+".timeout", j.Timeout)
		if !slices.Contains(missedPolicies, string(j.Missed)) {
			p.add(f+".missed", "unknown policy %q (want %s)", j.Missed, orList(missedPolicies))
		}
		if j.Retry.Attempts < 0 {
			p.add(f+".retry.attempts", "must not be negative, got %d", j.Retry.Attempts)
		}
		positive(p, f+".retry.initial", j.Retry.Initial)
		if j.Retry.Initial > 0 && j.Retry.Max < j.Retry.Initial {
			p.add(f+".retry.max", "%s must be at least retry.initial %s", fmtDuration(j.Retry.Max), fmtDuration(j.Retry.Initial))
		}
		if j.Batch < 1 || j.Batch > 10000 {
			p.add(f+".batch", "must be between 1 and 10000, got %d", j.Batch)
		}
		j.validateSink(p, f+".sink")
	}
}

var sinkKinds = []string{"dir", "webhook", "redis"}

// minWebhookSecret is the shortest webhook signing secret accepted: as
// long as the HMAC-SHA256 key it becomes, so it cannot be guessed.
const minWebhookSecret = 32

// webhookSecret resolves the webhook signing secret field f (its file
// is f+"_file"): inline or the file's content, not both, into *secret,
// at least minWebhookSecret bytes. An absent secret adds missing, unless
// missing is "" (optional).
func webhookSecret(p *problems, f string, secret *string, file, missing string) {
	name := f
	switch {
	case *secret != "" && file != "":
		short := f[strings.LastIndex(f, ".")+1:]
		p.add(f, "give %s or %s_file, not both", short, short)
		return
	case file != "":
		name = f + "_file"
		v, err := readSecretFile(file)
		if err != nil {
			p.add(name, "%v", err)
			return
		}
		*secret = v
	case *secret == "":
		if missing != "" {
			p.add(f, "%s", missing)
		}
		return
	}
	if len(*secret) < minWebhookSecret {
		p.add(name, "must be at least %d bytes, got %d", minWebhookSecret, len(*secret))
	}
}

func (j *JobConfig) validateSink(p *problems, f string) {
	s := &j.Sink
	if j.Kind == JobPush {
		if *s != DefaultJob().Sink {
			p.add(f, "only for pull jobs: a push job drains the users' outboxes")
		}
		return
	}
	if j.Kind != JobPull {
		return
	}
	switch s.Kind {
	case "":
		p.add(f+".kind", "required for a pull job (want %s)", orList(sinkKinds))
		return
	case "dir":
		if s.Path == "" {
			p.add(f+".path", "required for a dir sink")
		}
	case "webhook":
		checkURL(p, f+".url", s.URL)
		webhookSecret(p, f+".secret", &s.Secret, s.SecretFile, "required for a webhook sink (the receiver checks the signature with it)")
		webhookSecret(p, f+".previous_secret", &s.PreviousSecret, s.PreviousSecretFile, "")
	case "redis":
		if s.Stream == "" {
			p.add(f+".stream", "required for a redis sink")
		}
		if s.MaxLen < 1 {
			p.add(f+".max_len", "must be at least 1, got %d", s.MaxLen)
		}
	default:
		p.add(f+".kind", "unknown kind %q (want %s)", s.Kind, orList(sinkKinds))
	}
}

// validateSchedule checks schedule, timezone and spread together and sets
// Schedule, Location and Timezone.
func (j *JobConfig) validateSchedule(p *problems, f string) {
	j.Schedule, j.Location = nil, nil
	if j.Spread < 0 {
		p.add(f+".spread", "must not be negative, got %s", fmtDuration(j.Spread))
	}

	// The zone: a CRON_TZ=/TZ= prefix of the spec, else timezone, else UTC.
	prefixZone, hasPrefix, err := specZone(j.Spec)
	if err != nil {
		p.add(f+".schedule", "invalid cron spec %q: %v", j.Spec, err)
		return
	}
	zone := j.Timezone
	if hasPrefix {
		if j.Timezone != "" && j.Timezone != prefixZone {
			p.add(f+".timezone", "%q conflicts with the schedule's time zone %q", j.Timezone, prefixZone)
		}
		zone = prefixZone
	}
	if zone == "" {
		zone = "UTC"
	}
	loc, err := loadLocation(zone)
	if err != nil {
		if hasPrefix {
			p.add(f+".schedule", "invalid cron spec %q: unknown time zone %q: %v", j.Spec, zone, err)
			return // robfig would report the same zone again
		}
		p.add(f+".timezone", "unknown time zone %q: %v", zone, err)
	}

	if strings.TrimSpace(j.Spec) == "" {
		p.add(f+".schedule", "required")
		return
	}
	sched, err := parseSpec(j.Spec)
	if err != nil {
		p.add(f+".schedule", "invalid cron spec %q: %v", j.Spec, err)
		return
	}
	if loc == nil {
		return
	}
	if s, ok := sched.(*cron.SpecSchedule); ok {
		// Without a prefix robfig uses time.Local, which means "the zone of
		// the time passed to Next"; pin the job's zone instead.
		s.Location = loc
	}
	interval, ok := shortestInterval(sched, loc)
	if !ok {
		p.add(f+".schedule", "cron spec %q never fires", j.Spec)
		return
	}
	if j.Spread > interval {
		p.add(f+".spread", "%s exceeds the schedule's shortest interval %s", fmtDuration(j.Spread), fmtDuration(interval))
		return
	}
	if j.Timezone == "" {
		j.Timezone = zone
	}
	j.Location, j.Schedule = loc, sched
}

// specZone extracts the zone of a "CRON_TZ=Zone spec" or "TZ=Zone spec".
// It matches robfig's own prefix handling, which panics on a prefix with no
// space after it; that case is an error here.
func specZone(spec string) (zone string, ok bool, err error) {
	if !strings.HasPrefix(spec, "TZ=") && !strings.HasPrefix(spec, "CRON_TZ=") {
		return "", false, nil
	}
	sp := strings.Index(spec, " ")
	if sp < 0 || strings.TrimSpace(spec[sp:]) == "" {
		return "", false, errors.New("time zone prefix without a schedule")
	}
	zone = spec[strings.Index(spec, "=")+1 : sp]
	if zone == "" {
		return "", false, errors.New("empty time zone prefix")
	}
	return zone, true, nil
}

// loadLocation is time.LoadLocation without "Local": the host's zone is not
// configuration, and robfig reads time.Local as "the caller's zone".
func loadLocation(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, errors.New("want an IANA name such as \"Europe/Berlin\"")
	}
	return time.LoadLocation(name)
}

// parseSpec parses a cron spec, turning a parser panic into an error.
func parseSpec(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("unparsable: %v", r)
		}
	}()
	s, err = cronParser.Parse(spec)
	if err != nil {
		return nil, err
	}
	if err := checkSteps(spec); err != nil {
		return nil, err
	}
	if _, ok := s.(cron.ConstantDelaySchedule); ok {
		// robfig silently rounds sub-second and negative intervals up to 1s.
		_, rest, _ := strings.Cut(spec, "@every ")
		if d, err := time.ParseDuration(strings.TrimSpace(rest)); err != nil || d < time.Second {
			return nil, errors.New("@every interval must be at least 1s")
		}
	}
	return s, nil
}

// cronFields are the bounds of a 6-field spec, seconds first.
var cronFields = []struct {
	name     string
	min, max int
}{{"second", 0, 59}, {"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 6}}

// checkSteps rejects "*/N" where N exceeds the field's range, such as
// "*/61" for minutes. robfig accepts it and fires at the field's minimum
// only, which is never what was meant.
func checkSteps(spec string) error {
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		_, spec, _ = strings.Cut(spec, " ")
	}
	fields := strings.Fields(spec)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "@") {
		return nil
	}
	if len(fields) == 5 {
		fields = append([]string{"0"}, fields...)
	}
	if len(fields) != len(cronFields) {
		return nil // robfig has already said no
	}
	for i, f := range fields {
		b := cronFields[i]
		for _, part := range strings.Split(f, ",") {
			rng, step, ok := strings.Cut(part, "/")
			if !ok || (rng != "*" && rng != "?") {
				continue
			}
			if n, err := strconv.Atoi(step); err == nil && n > b.max-b.min+1 {
				return fmt.Errorf("step %d exceeds the %s range %d-%d", n, b.name, b.min, b.max)
			}
		}
	}
	return nil
}

// intervalRef is the fixed start of the sample shortestInterval takes, so
// validation does not depend on when it runs.
var intervalRef = time.Date(2025, time.January, 1, 0, 0, 0, 0, time.UTC)

// shortestInterval is the smallest gap between consecutive runs of s,
// sampled over a year (at most 2000 runs) from intervalRef in loc. A
// schedule that fires less than twice a year is sampled until its second
// run. ok is false if s never fires.
func shortestInterval(s cron.Schedule, loc *time.Location) (d time.Duration, ok bool) {
	if c, isConst := s.(cron.ConstantDelaySchedule); isConst {
		return c.Delay, true
	}
	start := time.Date(intervalRef.Year(), intervalRef.Month(), intervalRef.Day(), 0, 0, 0, 0, loc)
	end := start.AddDate(1, 0, 0)
	prev := s.Next(start)
	if prev.IsZero() {
		return 0, false
	}
	for range 2000 {
		next := s.Next(prev)
		if next.IsZero() {
			break
		}
		if gap := next.Sub(prev); d == 0 || gap < d {
			d = gap
		}
		if next.After(end) {
			break
		}
		prev = next
	}
	return d, d > 0
}

func checkName(p *problems, field, name string, seen map[string]bool) {
	switch {
	case name == "":
		p.add(field, "required")
	case !itemName.MatchString(name):
		p.add(field, "invalid name %q (want 1-64 of a-z 0-9 -)", name)
	case seen[name]:
		p.add(field, "duplicate name %q", name)
	default:
		seen[name] = true
	}
}

func positive(p *problems, field string, d time.Duration) {
	if d <= 0 {
		p.add(field, "must be positive, got %s", fmtDuration(d))
	}
}

// fmtDuration prints a duration as it would be written in the file: "2h",
// "1h30m", "10m", not time.Duration's "2h0m0s".
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// orList renders ["a", "b", "c"] as "a, b or c".
func orList(list []string) string {
	if len(list) == 1 {
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}

func (c *Config) validateDaemon(p *problems) {
	c.Admin.validate(p)
	positive(p, "shutdown_grace", c.ShutdownGrace)
	positive(p, "stats_interval", c.StatsInterval)
	a := &c.Alerts
	if a.WebhookURL != "" {
		checkURL(p, "alerts.webhook_url", a.WebhookURL)
		webhookSecret(p, "alerts.secret", &a.Secret, a.SecretFile, "required with alerts.webhook_url (the receiver checks the signature with it)")
		webhookSecret(p, "alerts.previous_secret", &a.PreviousSecret, a.PreviousSecretFile, "")
	}
	au := &c.Authorize
	if a.Links && au.RedirectURI == "" {
		p.add("alerts.links", "needs authorize.redirect_uri (where the links send the user back)")
	}
	if au.RedirectURI != "" {
		if u, err := url.Parse(au.RedirectURI); err != nil || !u.IsAbs() || u.Fragment != "" {
			p.add("authorize.redirect_uri", "must be an absolute URI without a fragment, got %q", au.RedirectURI)
		}
	}
	positive(p, "authorize.state_ttl", au.StateTTL)
	for i, u := range au.AllowedRedirectURIs {
		if pu, err := url.Parse(u); err != nil || !pu.IsAbs() || strings.Contains(u, "#") {
			p.add(fmt.Sprintf("authorize.allowed_redirect_uris[%d]", i), "must be an absolute URI without a fragment, got %q", u)
		}
	}
	if au.CallbackPath != "" {
		if msg := checkCallbackPath(au.CallbackPath); msg != "" {
			p.add("authorize.callback_path", "%s", msg)
		}
	}
	if au.PublicListen != "" {
		if au.CallbackPath == "" {
			p.add("authorize.public_listen", "needs authorize.callback_path (the only path it serves)")
		}
		if _, _, err := net.SplitHostPort(au.PublicListen); err != nil {
			p.add("authorize.public_listen", "invalid address %q: want host:port", au.PublicListen)
		} else if au.PublicListen == c.Admin.Listen {
			p.add("authorize.public_listen", "must differ from admin.listen %q", c.Admin.Listen)
		}
	}
	switch {
	case au.DoneURLSecret != "" && au.DoneURLSecretFile != "":
		p.add("authorize.done_url_secret", "give done_url_secret or done_url_secret_file, not both")
	case au.DoneURLSecretFile != "":
		v, err := readSecretFile(au.DoneURLSecretFile)
		if err != nil {
			p.add("authorize.done_url_secret_file", "%v", err)
		}
		au.DoneURLSecret = v
	}
	if au.DoneURL != "" {
		checkURL(p, "authorize.done_url", au.DoneURL)
		if au.DoneURLSecret == "" && au.DoneURLSecretFile == "" {
			p.add("authorize.done_url_secret", "required with authorize.done_url (the app checks the signed result with it)")
		}
	}
	if n := len(au.DoneURLSecret); n > 0 && n < minDoneURLSecret {
		p.add("authorize.done_url_secret", "must be at least %d characters, got %d", minDoneURLSecret, n)
	}
}

// minDoneURLSecret is the shortest done_url secret: 32 characters.
const minDoneURLSecret = 32

// adminRoutes are the paths the admin server owns, each with everything
// under it (internal/admin New registers them). A callback path among
// them would conflict with a route (http.ServeMux panics at start) or
// shadow one. admin's TestCallbackPathConfigChecked builds the server
// with the paths accepted here.
var adminRoutes = []string{"/healthz", "/readyz", "/metrics", "/v1"}

// checkCallbackPath says what is wrong with a callback path, or "": it is
// served as the ServeMux pattern "GET <path>", so it must be a clean
// absolute path of plain characters (no wildcard, escape or space) other
// than "/" and outside the admin routes.
func checkCallbackPath(cp string) string {
	if !strings.HasPrefix(cp, "/") || path.Clean(cp) != cp || cp == "/" {
		return fmt.Sprintf("want a clean absolute path other than \"/\" (no trailing slash, \"//\", \".\" or \"..\"), got %q", cp)
	}
	for _, c := range []byte(cp) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/-._~", c) >= 0) {
			return fmt.Sprintf("%q: want only A-Z a-z 0-9 and /-._~", cp)
		}
	}
	for _, r := range adminRoutes {
		if lc := strings.ToLower(cp); lc == r || strings.HasPrefix(lc, r+"/") {
			return fmt.Sprintf("%q is under %s, an admin route", cp, r)
		}
	}
	return ""
}
