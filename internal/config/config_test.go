package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // hermetic time zones for the timezone tests

	"github.com/robfig/cron/v3"
)

// Test keys: base64 of 32 and 16 bytes.
const (
	testKey   = "O0Nsm/A/uTufnXBMX9/72PPt6667YXKFEl0HJFwwdDY="
	testKey2  = "1f4Xvg7KvOlLpB0T7IMGoAjIcqWebprC+IILoyd5nmw="
	shortKey  = "AAECAwQFBgcICQoLDA0ODw=="
	keyConfig = "encryption:\n  keys:\n    - id: k1\n      secret: " + testKey + "\n"
)

// env is a fake getenv backed by a map.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func parseString(t *testing.T, doc string, getenv func(string) string) (*Config, error) {
	t.Helper()
	return Parse(strings.NewReader(doc), t.TempDir(), getenv)
}

func mustParse(t *testing.T, doc string, getenv func(string) string) *Config {
	t.Helper()
	cfg, err := parseString(t, doc, getenv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func mustDecodeKey(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseEmptyFile(t *testing.T) {
	// An empty file decodes to the defaults; the only thing missing is a
	// key, which has no safe default.
	for _, doc := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		_, err := parseString(t, doc, env())
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("%q: got %v, want a *ValidationError", doc, err)
		}
		if got, want := err.Error(), "config: encryption.keys: at least one key is required"; got != want {
			t.Errorf("%q: got %q, want %q", doc, got, want)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	got := mustParse(t, keyConfig, env())
	want := DefaultConfig()

	if got.Redis.URL != want.Redis.URL || got.Redis.Prefix != want.Redis.Prefix ||
		got.Redis.Shards != want.Redis.Shards || got.Redis.DialTimeout != want.Redis.DialTimeout ||
		got.Redis.MinReplicasAcked != -1 || got.Redis.WaitTimeout != time.Second {
		t.Errorf("redis: got %+v, want %+v", got.Redis, want.Redis)
	}
	if got.Log != want.Log {
		t.Errorf("log: got %+v, want %+v", got.Log, want.Log)
	}
	if got.Events != want.Events {
		t.Errorf("events: got %+v, want %+v", got.Events, want.Events)
	}
	if got.Refresher != want.Refresher {
		t.Errorf("refresher: got %+v, want %+v", got.Refresher, want.Refresher)
	}
	if !reflect.DeepEqual(got.Providers, want.Providers) {
		t.Errorf("providers: got %+v, want %+v", got.Providers, want.Providers)
	}
	if p := got.Providers[0]; p.Name != "default" || p.Kind != ProviderFake || p.Lead != 10*time.Minute || p.Jitter != 2*time.Minute {
		t.Errorf("default provider: got %+v", p)
	}
	if len(got.Jobs) != 0 {
		t.Errorf("jobs: got %d, want none", len(got.Jobs))
	}
	id, key := got.Encryption.Primary()
	if id != "k1" || !bytes.Equal(key, mustDecodeKey(t, testKey)) {
		t.Errorf("primary: got %q %x", id, key)
	}
	o := got.Redis.Options()
	if o == nil || o.Addr != "127.0.0.1:6379" || o.DB != 0 || o.DialTimeout != 5*time.Second || o.TLSConfig != nil {
		t.Errorf("redis options: got %+v", o)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("second Validate: %v", err)
	}
}

func TestDefaultConfigNeedsOnlyAKey(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Encryption.Keys = []KeyConfig{{ID: "k1", Secret: testKey}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSampleConfig(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "syncd.yaml")
	cfg, err := Load(path, env("SYNCD_ENCRYPTION_KEY", testKey))
	if err != nil {
		t.Fatal(err)
	}
	// The sample lists the defaults; it must not drift from DefaultConfig.
	want := DefaultConfig()
	if cfg.Redis.URL != want.Redis.URL || cfg.Redis.Prefix != want.Redis.Prefix ||
		cfg.Redis.Shards != want.Redis.Shards || cfg.Redis.DialTimeout != want.Redis.DialTimeout ||
		cfg.Redis.MinReplicasAcked != want.Redis.MinReplicasAcked || cfg.Redis.WaitTimeout != want.Redis.WaitTimeout ||
		cfg.Log != want.Log || cfg.Events != want.Events || cfg.Refresher != want.Refresher ||
		!reflect.DeepEqual(cfg.Providers, want.Providers) || len(cfg.Jobs) != 0 {
		t.Errorf("sample differs from DefaultConfig:\ngot  %+v\nwant %+v", cfg, want)
	}
	if got := cfg.Encryption.Key("k1"); !bytes.Equal(got, mustDecodeKey(t, testKey)) {
		t.Errorf("key k1: got %x", got)
	}

	_, err = Load(path, env())
	if err == nil || err.Error() != "config "+path+": ${SYNCD_ENCRYPTION_KEY} is not set" {
		t.Errorf("without the key: got %v", err)
	}
}

func TestSampleJobExample(t *testing.T) {
	// The commented job example in the sample must be valid when
	// uncommented.
	raw, err := os.ReadFile(filepath.Join("..", "..", "configs", "syncd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(raw), "jobs: []", "jobs:", 1)
	doc = strings.ReplaceAll(doc, "\n#  ", "\n  ")
	doc = strings.ReplaceAll(doc, "\n#    ", "\n    ")
	cfg := mustParse(t, doc, env("SYNCD_ENCRYPTION_KEY", testKey))
	if len(cfg.Jobs) != 1 {
		t.Fatalf("got %d jobs, want 1", len(cfg.Jobs))
	}
	j := cfg.Jobs[0]
	d := DefaultJob()
	if j.Timeout != d.Timeout || j.Missed != d.Missed || j.Retry != d.Retry || j.Spread != d.Spread || j.Paused {
		t.Errorf("example job differs from DefaultJob: %+v", j)
	}
}

func TestValidationErrors(t *testing.T) {
	job := func(name, extra string) string {
		return "  - {name: " + name + ", kind: pull, schedule: \"0 3 * * *\"" + extra + "}\n"
	}
	tests := []struct {
		name string
		doc  string // appended to keyConfig
		want string
	}{
		// The examples of the brief, verbatim.
		{"bad cron", "jobs:\n" + job("a", "") + "  - {name: b, kind: pull, schedule: \"*/61 * * * *\"}\n",
			`jobs[1].schedule: invalid cron spec "*/61 * * * *": step 61 exceeds the minute range 0-59`},
		{"bad cron robfig", "jobs:\n" + job("a", "") + "  - {name: b, kind: pull, schedule: \"61 * * * *\"}\n",
			`jobs[1].schedule: invalid cron spec "61 * * * *": end of range (61) above maximum (59): 61`},
		{"bad step seconds", "jobs: [{name: a, kind: pull, schedule: \"*/90 * * * * *\"}]", `jobs[0].schedule: invalid cron spec "*/90 * * * * *": step 90 exceeds the second range 0-59`},
		{"bad step tz", "jobs: [{name: a, kind: pull, schedule: \"TZ=UTC 0 */25 * * *\"}]", `jobs[0].schedule: invalid cron spec "TZ=UTC 0 */25 * * *": step 25 exceeds the hour range 0-23`},
		{"provider kind", "providers: [{name: p, kind: foo}]",
			`providers[0].kind: unknown kind "foo" (want digime, oauth2 or fake)`},
		{"time zone", "jobs:\n" + job("a", ", timezone: Mars/Base"),
			`jobs[0].timezone: unknown time zone "Mars/Base": `},
		{"duplicate job", "jobs:\n" + job("pull-daily", "") + job("b", "") + job("pull-daily", ""),
			`jobs[2].name: duplicate name "pull-daily"`},
		{"spread", "jobs:\n  - {name: a, kind: pull, schedule: \"0 * * * *\", spread: 2h}",
			`jobs[0].spread: 2h exceeds the schedule's shortest interval 1h`},
		{"short key", "encryption: {keys: [{id: k1, secret: " + shortKey + "}]}",
			`encryption.keys[0].secret: must be base64 of 32 bytes, got 16 bytes`},

		{"timeout vs lease", "refresher: {lease: 20s}\nproviders: [{name: p, kind: fake, timeout: 30s}]",
			`providers[0].timeout: 30s must be shorter than refresher.lease 20s`},

		// redis
		{"redis url empty", "redis: {url: \"\"}", `redis.url: required`},
		{"redis scheme", "redis: {url: \"http://x\"}", `redis.url: invalid URL "http://x": redis: invalid URL scheme: http`},
		{"redis db", "redis: {url: \"redis://h:6379/x\"}", `redis.url: invalid URL "redis://h:6379/x": redis: invalid database number: "x"`},
		{"prefix empty", "redis: {prefix: \"\"}", `redis.prefix: required`},
		{"redis skip_verify", "redis: {url: \"rediss://h:6380/0?skip_verify=true\"}", `redis.url: skip_verify=true turns off TLS certificate verification: set redis.tls.insecure_skip_verify: true if that is meant`},
		{"redis tls without rediss", "redis: {url: \"redis://h:6379/0\", tls: {ca_file: /nope}}", `redis.tls: needs a rediss:// URL`},
		{"redis insecure without rediss", "redis: {tls: {insecure_skip_verify: true}}", `redis.tls: needs a rediss:// URL`},
		{"redis ca missing", "redis: {url: \"rediss://h:6380/0\", tls: {ca_file: /nonexistent/ca.pem}}", `redis.tls.ca_file: `},
		{"redis cert without key", "redis: {url: \"rediss://h:6380/0\", tls: {cert_file: /nonexistent/c.pem}}", `redis.tls.key_file: required with redis.tls.cert_file`},
		{"redis key without cert", "redis: {url: \"rediss://h:6380/0\", tls: {key_file: /nonexistent/k.pem}}", `redis.tls.cert_file: required with redis.tls.key_file`},
		{"prefix space", "redis: {prefix: \"a b\"}", `redis.prefix: invalid prefix "a b": must not contain whitespace, '{' or '}'`},
		{"prefix brace", "redis: {prefix: \"{a}\"}", `redis.prefix: invalid prefix "{a}"`},
		{"shards 0", "redis: {shards: 0}", `redis.shards: must be between 1 and 1024, got 0`},
		{"shards big", "redis: {shards: 1025}", `redis.shards: must be between 1 and 1024, got 1025`},
		{"dial timeout", "redis: {dial_timeout: 0s}", `redis.dial_timeout: must be positive, got 0s`},
		{"min replicas acked", "redis: {min_replicas_acked: -2}", `redis.min_replicas_acked: must be -1 (automatic) or more, got -2`},
		{"wait timeout", "redis: {wait_timeout: 0s}", `redis.wait_timeout: must be positive, got 0s`},

		// log
		{"log level", "log: {level: verbose}", `log.level: unknown level "verbose" (want trace, debug, info, warn or error)`},
		{"log format", "log: {format: xml}", `log.format: unknown format "xml" (want json, console or auto)`},

		// encryption
		{"no keys", "encryption: {keys: []}", `encryption.keys: at least one key is required`},
		{"key id", "encryption: {keys: [{id: \"a b\", secret: " + testKey + "}]}", `encryption.keys[0].id: invalid id "a b" (want 1-32 of A-Z a-z 0-9 _ -)`},
		{"key id missing", "encryption: {keys: [{secret: " + testKey + "}]}", `encryption.keys[0].id: required`},
		{"key id dup", "encryption: {keys: [{id: k1, secret: " + testKey + "}, {id: k1, secret: " + testKey2 + "}]}", `encryption.keys[1].id: duplicate id "k1"`},
		{"key no secret", "encryption: {keys: [{id: k1}]}", `encryption.keys[0].secret: required (or secret_file)`},
		{"key not base64", "encryption: {keys: [{id: k1, secret: \"not base64!\"}]}", `encryption.keys[0].secret: must be base64 of 32 bytes, got invalid base64`},
		{"primary unknown", "encryption: {primary_key: k9, keys: [{id: k1, secret: " + testKey + "}]}", `encryption.primary_key: unknown key id "k9"`},

		// events, refresher
		{"max_len", "events: {max_len: 99}", `events.max_len: must be at least 100, got 99`},
		{"workers", "refresher: {workers: 0}", `refresher.workers: must be between 1 and 4096, got 0`},
		{"workers big", "refresher: {workers: 4097}", `refresher.workers: must be between 1 and 4096, got 4097`},
		{"lease", "refresher: {lease: 500ms}", `refresher.lease: must be at least 1s, got 500ms`},
		{"batch", "refresher: {batch: 10001}", `refresher.batch: must be between 1 and 10000, got 10001`},
		{"poll", "refresher: {poll_interval: 0s}", `refresher.poll_interval: must be positive, got 0s`},

		// providers
		{"no providers", "providers: []", `providers: at least one provider is required`},
		{"null providers", "providers:", `providers: at least one provider is required`},
		{"provider name", "providers: [{name: Digi_Me, kind: fake}]", `providers[0].name: invalid name "Digi_Me" (want 1-64 of a-z 0-9 -)`},
		{"provider name missing", "providers: [{kind: fake}]", `providers[0].name: required`},
		{"provider dup", "providers: [{name: a, kind: fake}, {name: a, kind: fake}]", `providers[1].name: duplicate name "a"`},
		{"provider kind missing", "providers: [{name: a}]", `providers[0].kind: required (want digime, oauth2 or fake)`},
		{"lead", "providers: [{name: a, kind: fake, lead: 0s}]", `providers[0].lead: must be positive, got 0s`},
		{"jitter negative", "providers: [{name: a, kind: fake, jitter: -1s}]", `providers[0].jitter: must not be negative, got -1s`},
		{"jitter >= lead", "providers: [{name: a, kind: fake, lead: 5m, jitter: 5m}]", `providers[0].jitter: 5m must be less than lead 5m`},
		{"lifetime <= lead", "providers: [{name: a, kind: fake, lead: 1h, default_lifetime: 1h}]", `providers[0].default_lifetime: 1h must be greater than lead 1h`},
		{"provider timeout", "providers: [{name: a, kind: fake, timeout: 0s}]", `providers[0].timeout: must be positive, got 0s`},
		{"retry_initial", "providers: [{name: a, kind: fake, retry_initial: -1s}]", `providers[0].retry_initial: must be positive, got -1s`},
		{"retry_max", "providers: [{name: a, kind: fake, retry_initial: 1m, retry_max: 30s}]", `providers[0].retry_max: 30s must be at least retry_initial 1m`},
		{"retry_after_cap", "providers: [{name: a, kind: fake, retry_after_cap: 0s}]", `providers[0].retry_after_cap: must be positive, got 0s`},
		{"degraded_after", "providers: [{name: a, kind: fake, degraded_after: 0}]", `providers[0].degraded_after: must be at least 1, got 0`},
		{"circuit_failures", "providers: [{name: a, kind: fake, circuit_failures: 0}]", `providers[0].circuit_failures: must be at least 1, got 0`},
		{"circuit_cooldown", "providers: [{name: a, kind: fake, circuit_cooldown: 0s}]", `providers[0].circuit_cooldown: must be positive, got 0s`},

		// jobs
		{"job name", "jobs:\n" + job("Pull", ""), `jobs[0].name: invalid name "Pull" (want 1-64 of a-z 0-9 -)`},
		{"job kind", "jobs: [{name: a, kind: fetch, schedule: \"@daily\"}]", `jobs[0].kind: unknown kind "fetch" (want pull or push)`},
		{"job kind missing", "jobs: [{name: a, schedule: \"@daily\"}]", `jobs[0].kind: required (want pull or push)`},
		{"job provider unknown", "jobs:\n" + job("a", ", provider: nope"), `jobs[0].provider: unknown provider "nope"`},
		{"job provider ambiguous", "providers: [{name: a, kind: fake}, {name: b, kind: fake}]\njobs:\n" + job("j", ""),
			`jobs[0].provider: required when 2 providers are configured`},
		{"schedule missing", "jobs: [{name: a, kind: pull}]", `jobs[0].schedule: required`},
		{"schedule garbage", "jobs:\n  - {name: a, kind: pull, schedule: \"x\"}", `jobs[0].schedule: invalid cron spec "x": `},
		{"schedule 7 fields", "jobs:\n  - {name: a, kind: pull, schedule: \"0 0 0 1 1 * 2030\"}", `jobs[0].schedule: invalid cron spec "0 0 0 1 1 * 2030": `},
		{"never fires", "jobs:\n  - {name: a, kind: pull, schedule: \"0 0 30 2 *\"}", `jobs[0].schedule: cron spec "0 0 30 2 *" never fires`},
		{"every too short", "jobs:\n  - {name: a, kind: pull, schedule: \"@every 500ms\"}", `jobs[0].schedule: invalid cron spec "@every 500ms": @every interval must be at least 1s`},
		{"every negative", "jobs:\n  - {name: a, kind: pull, schedule: \"@every -5m\"}", `jobs[0].schedule: invalid cron spec "@every -5m": @every interval must be at least 1s`},
		{"tz prefix alone", "jobs:\n  - {name: a, kind: pull, schedule: \"CRON_TZ=UTC\"}", `jobs[0].schedule: invalid cron spec "CRON_TZ=UTC": time zone prefix without a schedule`},
		{"tz prefix bad zone", "jobs:\n  - {name: a, kind: pull, schedule: \"TZ=Mars/Base 0 3 * * *\"}", `jobs[0].schedule: invalid cron spec "TZ=Mars/Base 0 3 * * *": unknown time zone "Mars/Base": `},
		{"tz conflict", "jobs:\n" + "  - {name: a, kind: pull, schedule: \"CRON_TZ=Europe/Berlin 0 3 * * *\", timezone: UTC}",
			`jobs[0].timezone: "UTC" conflicts with the schedule's time zone "Europe/Berlin"`},
		{"local zone", "jobs:\n" + job("a", ", timezone: Local"), `jobs[0].timezone: unknown time zone "Local": want an IANA name`},
		{"spread negative", "jobs:\n" + job("a", ", spread: -1s"), `jobs[0].spread: must not be negative, got -1s`},
		{"spread 6 fields", "jobs:\n  - {name: a, kind: pull, schedule: \"*/10 * * * * *\", spread: 11s}", `jobs[0].spread: 11s exceeds the schedule's shortest interval 10s`},
		{"spread every", "jobs:\n  - {name: a, kind: pull, schedule: \"@every 15m\", spread: 16m}", `jobs[0].spread: 16m exceeds the schedule's shortest interval 15m`},
		{"spread hourly", "jobs:\n  - {name: a, kind: pull, schedule: \"@hourly\", spread: 61m}", `jobs[0].spread: 1h1m exceeds the schedule's shortest interval 1h`},
		{"spread irregular", "jobs:\n  - {name: a, kind: pull, schedule: \"0 9,17 * * *\", spread: 9h}", `jobs[0].spread: 9h exceeds the schedule's shortest interval 8h`},
		{"job timeout", "jobs:\n" + job("a", ", timeout: 0s"), `jobs[0].timeout: must be positive, got 0s`},
		{"missed", "jobs:\n" + job("a", ", missed: all"), `jobs[0].missed: unknown policy "all" (want skip or once)`},
		{"retry attempts", "jobs:\n" + job("a", ", retry: {attempts: -1}"), `jobs[0].retry.attempts: must not be negative, got -1`},
		{"retry initial", "jobs:\n" + job("a", ", retry: {initial: 0s}"), `jobs[0].retry.initial: must be positive, got 0s`},
		{"retry max", "jobs:\n" + job("a", ", retry: {initial: 1h, max: 1m}"), `jobs[0].retry.max: 1m must be at least retry.initial 1h`},

		// authorize
		{"links without redirect", "alerts: {links: true}", `alerts.links: needs authorize.redirect_uri`},
		{"redirect relative", "authorize: {redirect_uri: /cb}", `authorize.redirect_uri: must be an absolute URI without a fragment, got "/cb"`},
		{"state_ttl", "authorize: {state_ttl: 0s}", `authorize.state_ttl: must be positive, got 0s`},
		{"callback path", "authorize: {callback_path: /v1/cb}", `authorize.callback_path: "/v1/cb" is under /v1, an admin route`},
		{"public listen alone", "authorize: {public_listen: \"127.0.0.1:9\"}", `authorize.public_listen: needs authorize.callback_path`},
		{"done url", "authorize: {done_url: ftp://x, done_url_secret: " + doneSecret + "}", `authorize.done_url: must be an http(s) URL, got "ftp://x"`},
		{"done url unsigned", "authorize: {done_url: \"https://app.example/done\"}", `authorize.done_url_secret: required with authorize.done_url`},
		{"done url secret short", "authorize: {done_url: \"https://app.example/done\", done_url_secret: short-secret}", `authorize.done_url_secret: must be at least 32 characters, got 12`},
		{"done url secret both", "authorize: {done_url: \"https://app.example/done\", done_url_secret: " + doneSecret + ", done_url_secret_file: f}", `authorize.done_url_secret: give done_url_secret or done_url_secret_file, not both`},
		{"allowed redirect relative", "authorize: {allowed_redirect_uris: [\"https://app.example/cb\", /cb]}", `authorize.allowed_redirect_uris[1]: must be an absolute URI without a fragment, got "/cb"`},
		{"allowed redirect fragment", "authorize: {allowed_redirect_uris: [\"https://app.example/cb#x\"]}", `authorize.allowed_redirect_uris[0]: must be an absolute URI without a fragment`},
		{"auth_url", "providers: [{name: a, kind: oauth2, oauth2: {token_url: \"https://t\", client_id: c, auth_url: nope}}]", `providers[0].oauth2.auth_url: must be an http(s) URL, got "nope"`},

		// decoding
		{"unknown top key", "foo: 1", `foo: unknown key "foo" (line 5; want one of redis, log, encryption, events, refresher, runner, providers, jobs, admin, shutdown_grace, stats_interval, alerts, authorize)`},
		{"unknown nested key", "redis:\n  dial_timout: 5s", `redis.dial_timout: unknown key "dial_timout" (line 6; want one of url, cluster_addrs, sentinel_username, sentinel_password, sentinel_password_file, prefix, shards, dial_timeout, tls, min_replicas_acked, wait_timeout)`},
		{"unknown provider key", "providers:\n  - name: a\n    kind: fake\n    leed: 1m", `providers[0].leed: unknown key "leed" (line 8; `},
		{"unknown job key", "jobs:\n" + job("a", ", retry: {tries: 3}"), `jobs[0].retry.tries: unknown key "tries" (line 6; want one of attempts, initial, max)`},
		{"unknown odd key", "redis: {\"a b\": 1}", `redis: unknown key "a b" (line 5; `},
		{"duplicate key", "log:\n  level: info\n  level: debug", `log.level: duplicate key "level" (lines 6 and 7)`},
		{"bad duration", "redis:\n  dial_timeout: 10x", `redis.dial_timeout: invalid duration "10x" (line 6): want a Go duration with a unit`},
		{"bare number duration", "refresher: {lease: 60}", `refresher.lease: invalid duration "60" (line 5): want a Go duration with a unit`},
		{"bad int", "refresher: {workers: many}", `refresher.workers: must be an integer, got "many" (line 5)`},
		{"float int", "refresher: {workers: 1.5}", `refresher.workers: must be an integer, got "1.5" (line 5)`},
		{"bad bool", "jobs:\n" + job("a", ", paused: maybe"), `jobs[0].paused: must be true or false, got "maybe" (line 6)`},
		{"string is list", "log: {level: [a]}", `log.level: must be a string, got a list (line 5)`},
		{"section is scalar", "redis: x", `redis: must be a mapping, got !!str (line 5)`},
		{"list is mapping", "jobs: {name: a}", `jobs: must be a list, got a mapping (line 5)`},
		{"null entry", "providers:\n  - ~", `providers[0]: must be a mapping, got !!null (line 6)`},
		{"scalar entry", "jobs: [a]", `jobs[0]: must be a mapping, got !!str (line 5)`},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.doc + "\n"
			if !strings.HasPrefix(doc, "encryption:") {
				doc = keyConfig + doc
			}
			_, err := parseString(t, doc, env())
			if err == nil {
				t.Fatalf("got nil error, want %q", tt.want)
			}
			got := err.Error()
			if !strings.Contains(got, tt.want) {
				t.Errorf("got  %q\nwant it to contain %q", got, tt.want)
			}
			if strings.Contains(got, "\n") {
				t.Errorf("error spans lines: %q", got)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("errors.As(*FieldError) failed for %q", got)
			}
		})
	}
}

func TestValidateCollectsAll(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Redis.Shards = 0
	cfg.Log.Level = "loud"
	cfg.Refresher.Workers = 0
	err := cfg.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want *ValidationError", err)
	}
	want := "redis.shards: must be between 1 and 1024, got 0; " +
		`log.level: unknown level "loud" (want trace, debug, info, warn or error); ` +
		"encryption.keys: at least one key is required; " +
		"refresher.workers: must be between 1 and 4096, got 0"
	if got := err.Error(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "redis.shards" {
		t.Errorf("errors.As: got %+v", fe)
	}
}

func TestExpand(t *testing.T) {
	getenv := env("A", "1", "B", "two", "NESTED", "x${A}y", "DOLLAR", "p$ss", "ML", "l1\nl2")
	tests := []struct {
		in, want string
	}{
		{"a: ${A}", "a: 1"},
		{"${A}${B}", "1two"},
		{"$${A}", "${A}"},
		{"$$${A}", "$${A}"},
		{"pa$word $A $ {A} $$ $", "pa$word $A $ {A} $$ $"},
		{"${NESTED}", "x${A}y"}, // values are not expanded again
		{"${DOLLAR}", "p$ss"},
		{"trailing $", "trailing $"},
		{"trailing $$", "trailing $$"},
		{"x: ${_A9}", ""}, // unset: error, checked below
	}
	for _, tt := range tests[:len(tests)-1] {
		x, err := expand([]byte(tt.in), getenv)
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if got := string(x.text); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.in, got, tt.want)
		}
	}

	x, err := expand([]byte("a\nb: ${ML}\nc: ${A}\nd\n"), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]bool{2: true, 3: true, 4: true}; !reflect.DeepEqual(x.lines, want) {
		t.Errorf("lines: got %v, want %v", x.lines, want)
	}
	if want := []string{"l1\nl2", "1"}; !reflect.DeepEqual(x.values, want) {
		t.Errorf("values: got %q, want %q", x.values, want)
	}

	errTests := []struct {
		in, want string
	}{
		{"x: ${NOPE}", "${NOPE} is not set"},
		{"${NOPE} ${NOPE} ${ALSO}", "${NOPE} is not set; ${ALSO} is not set"},
		{"a\nx: ${1A}", "line 2: malformed ${...} reference"},
		{"x: ${A", "line 1: malformed ${...} reference"},
		{"x: ${A\n}", "line 1: malformed ${...} reference"},
		{"x: ${}", "line 1: malformed ${...} reference"},
	}
	for _, tt := range errTests {
		_, err := expand([]byte(tt.in), getenv)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestParseExpansion(t *testing.T) {
	t.Run("values", func(t *testing.T) {
		doc := "redis:\n  url: \"${URL}\"\n  prefix: \"${PFX}\"\nencryption:\n  keys:\n    - {id: k1, secret: \"${KEY}\"}\n"
		cfg := mustParse(t, doc, env("URL", "redis://:pa$$w$rd@db:6380/2", "PFX", "app:", "KEY", testKey))
		if got, want := cfg.Redis.URL, "redis://:pa$$w$rd@db:6380/2"; got != want {
			t.Errorf("url: got %q, want %q", got, want)
		}
		if got := cfg.Redis.Options(); got.Password != "pa$$w$rd" || got.DB != 2 {
			t.Errorf("options: got %+v", got)
		}
		if cfg.Redis.Prefix != "app:" {
			t.Errorf("prefix: got %q", cfg.Redis.Prefix)
		}
	})
	t.Run("bare dollar in an inline secret", func(t *testing.T) {
		doc := keyConfig + "redis:\n  url: redis://:s$cr$t@db:6379/0\n  prefix: \"a$${b\"\n"
		_, err := parseString(t, doc, env())
		// '{' is not allowed in a prefix: the escape produced it.
		if err == nil || !strings.Contains(err.Error(), `redis.prefix: invalid prefix "a${b"`) {
			t.Fatalf("got %v", err)
		}
		cfg := mustParse(t, keyConfig+"redis:\n  url: redis://:s$cr$t@db:6379/0\n", env())
		if got := cfg.Redis.Options().Password; got != "s$cr$t" {
			t.Errorf("password: got %q", got)
		}
	})
	t.Run("unset", func(t *testing.T) {
		_, err := parseString(t, keyConfig+"redis: {url: \"${REDIS}\"}\n", env())
		if err == nil || err.Error() != "config: ${REDIS} is not set" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("values never in decode errors", func(t *testing.T) {
		doc := keyConfig + "refresher:\n  workers: ${W}\n  lease: ${W}\n"
		_, err := parseString(t, doc, env("W", "hunter2"))
		if err == nil {
			t.Fatal("got nil error")
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the value: %q", err)
		}
		if !strings.Contains(err.Error(), "refresher.workers: must be an integer, got (value from the environment, not shown) (line 6)") {
			t.Errorf("got %q", err)
		}
	})
	t.Run("values never in validation errors", func(t *testing.T) {
		doc := keyConfig + "log: {level: \"${V}\", format: \"${SHORT}\"}\n" +
			"jobs: [{name: a, kind: pull, schedule: \"CRON_TZ=${V} 0 3 * * *\", timezone: UTC}]\n" +
			"${V}x: 1\n"
		_, err := parseString(t, doc, env("V", "hunter2hunter2", "SHORT", "abc"))
		if err == nil {
			t.Fatal("got nil error")
		}
		msg := err.Error()
		for _, v := range []string{"hunter2", `"abc"`} {
			if strings.Contains(msg, v) {
				t.Errorf("error shows %s: %q", v, msg)
			}
		}
		// A decode error stops parsing before validation.
		if !strings.Contains(msg, `config: unknown key (value from the environment, not shown) (line 7; `) {
			t.Errorf("got %q", msg)
		}
		doc = doc[:strings.LastIndex(doc, "${V}x")]
		_, err = parseString(t, doc, env("V", "hunter2hunter2", "SHORT", "abc"))
		want := `config: log.level: unknown level (value from the environment, not shown) (want trace, debug, info, warn or error); ` +
			`log.format: unknown format (value from the environment, not shown) (want json, console or auto); ` +
			`jobs[0].timezone: "UTC" conflicts with the schedule's time zone (value from the environment, not shown)`
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("got  %v\nwant %s", err, want)
		}
	})
	t.Run("secret misplaced", func(t *testing.T) {
		doc := "encryption:\n  keys: ${KEY}\n"
		_, err := parseString(t, doc, env("KEY", testKey))
		if err == nil || strings.Contains(err.Error(), testKey[:7]) {
			t.Errorf("got %v", err)
		}
	})
}

func TestSecrets(t *testing.T) {
	setup := func(t *testing.T, content string) (dir string) {
		t.Helper()
		dir = t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "key"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	fileDoc := func(path string) string {
		return "encryption:\n  keys:\n    - id: k1\n      secret_file: " + path + "\n"
	}

	t.Run("relative file, trimmed", func(t *testing.T) {
		dir := setup(t, "\n  "+testKey+"  \n")
		cfg, err := Parse(strings.NewReader(fileDoc("key")), dir, env())
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Encryption.Key("k1"); !bytes.Equal(got, mustDecodeKey(t, testKey)) {
			t.Errorf("got %x", got)
		}
		if got, want := cfg.Encryption.Keys[0].SecretFile, filepath.Join(dir, "key"); got != want {
			t.Errorf("secret_file: got %q, want %q", got, want)
		}
	})
	t.Run("absolute file via Load", func(t *testing.T) {
		dir := setup(t, testKey)
		cfgPath := filepath.Join(t.TempDir(), "syncd.yaml")
		if err := os.WriteFile(cfgPath, []byte(fileDoc(filepath.Join(dir, "key"))), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(cfgPath, env())
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Encryption.Key("k1") == nil {
			t.Error("no key")
		}
	})
	t.Run("relative to the config file via Load", func(t *testing.T) {
		dir := setup(t, testKey)
		cfgPath := filepath.Join(dir, "syncd.yaml")
		if err := os.WriteFile(cfgPath, []byte(fileDoc("key")), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(cfgPath, env()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("url alphabet, unpadded", func(t *testing.T) {
		raw := mustDecodeKey(t, testKey)
		for _, s := range []string{base64.RawStdEncoding.EncodeToString(raw), base64.URLEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)} {
			cfg := mustParse(t, "encryption: {keys: [{id: k1, secret: \""+s+"\"}]}", env())
			if !bytes.Equal(cfg.Encryption.Key("k1"), raw) {
				t.Errorf("%s: wrong key", s)
			}
		}
	})
	t.Run("both given", func(t *testing.T) {
		dir := setup(t, testKey)
		doc := "encryption:\n  keys:\n    - id: k1\n      secret: " + testKey + "\n      secret_file: key\n"
		_, err := Parse(strings.NewReader(doc), dir, env())
		if err == nil || !strings.Contains(err.Error(), "encryption.keys[0].secret_file: cannot be used together with secret") {
			t.Errorf("got %v", err)
		}
		if err != nil && strings.Contains(err.Error(), testKey) {
			t.Errorf("error shows the secret: %v", err)
		}
	})
	t.Run("wrong length in file", func(t *testing.T) {
		dir := setup(t, shortKey)
		_, err := Parse(strings.NewReader(fileDoc("key")), dir, env())
		if err == nil || !strings.Contains(err.Error(), "encryption.keys[0].secret_file: must be base64 of 32 bytes, got 16 bytes") {
			t.Errorf("got %v", err)
		}
		if err != nil && strings.Contains(err.Error(), shortKey) {
			t.Errorf("error shows the secret: %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Parse(strings.NewReader(fileDoc("nope")), t.TempDir(), env())
		if err == nil || !strings.Contains(err.Error(), "encryption.keys[0].secret_file: stat ") || !strings.Contains(err.Error(), "no such file") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("not a regular file", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Parse(strings.NewReader(fileDoc(".")), dir, env())
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("inline secret never in errors", func(t *testing.T) {
		secret := "c2hvcnQ$" // not base64 at all
		_, err := parseString(t, "encryption: {keys: [{id: k1, secret: \""+secret+"\"}]}", env())
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("got %v", err)
		}
	})
}

func TestRedisURL(t *testing.T) {
	t.Run("env override", func(t *testing.T) {
		cfg := mustParse(t, keyConfig+"redis: {url: \"redis://file:6379/0\"}\n", env(EnvRedisURL, "rediss://u:p@env:6380/3"))
		if got, want := cfg.Redis.URL, "rediss://u:p@env:6380/3"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		o := cfg.Redis.Options()
		if o.Addr != "env:6380" || o.DB != 3 || o.Username != "u" || o.Password != "p" || o.TLSConfig == nil {
			t.Errorf("options: got %+v", o)
		}
	})
	t.Run("env override validated", func(t *testing.T) {
		_, err := parseString(t, keyConfig, env(EnvRedisURL, "mysql://x"))
		if err == nil || !strings.Contains(err.Error(), `redis.url: invalid URL "mysql://x"`) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("rediss accepted", func(t *testing.T) {
		cfg := mustParse(t, keyConfig+"redis: {url: \"rediss://cache.example.com:6380/1\"}\n", env())
		if o := cfg.Redis.Options(); o.TLSConfig == nil || o.TLSConfig.ServerName != "cache.example.com" {
			t.Errorf("options: got %+v", o)
		}
	})
	t.Run("options are copies", func(t *testing.T) {
		cfg := mustParse(t, keyConfig+"redis: {url: \"rediss://h:6380/1\"}\n", env())
		cfg.Redis.Options().TLSConfig.ServerName = "changed"
		cfg.Redis.Options().DB = 9
		if o := cfg.Redis.Options(); o.TLSConfig.ServerName != "h" || o.DB != 1 {
			t.Errorf("options were shared: %+v", o)
		}
	})
	const pw = "s3cr3tpw"
	for _, u := range []string{
		"redis://user:" + pw + "@h:6379/notadb",
		"redis://user:" + pw + "@h:6379/1/2",
		"redis://user:" + pw + "@h o:6379/0",
		"redis://user:s3c/" + pw + "@h:port/0",
		"redis://:" + pw + "@h:6379/0?dial_timeout=x",
		"redis://user:" + pw + "@h:99999999999999999999/0\x7f",
	} {
		t.Run("redacted "+strings.ReplaceAll(u, "/", "_"), func(t *testing.T) {
			_, err := parseString(t, keyConfig, env(EnvRedisURL, u))
			if err == nil {
				t.Fatal("got nil error")
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "s3c") {
				t.Errorf("password in error: %q", err)
			}
			if !strings.Contains(err.Error(), "redis.url: invalid URL ") || !strings.Contains(err.Error(), "xxxxx") {
				t.Errorf("got %q", err)
			}
		})
	}
}

// doneSecret is a done_url secret of the minimum length.
const doneSecret = "0123456789abcdef0123456789abcdef"

// TestCallbackPath: a callback path that would make the admin server
// panic at start (a ServeMux conflict or an unclean pattern), or shadow
// an admin route, is refused by config check with one line. The admin
// package's TestCallbackPathConfigChecked builds the server with every
// path accepted here.
func TestCallbackPath(t *testing.T) {
	for _, p := range []string{
		"/", "/a/../v1/users", "/a/..", "/a//b", "/a/./b", "/cb/", "cb", "",
		"/v1", "/v1/users", "/V1/users", "/healthz", "/healthz/x", "/readyz", "/metrics", "/metrics/x",
		"/cb?x=1", "/cb#x", "/cb/{id}", "/cb/{$}", "/a b", "/a\tb", "/a%2Fb", "/é", "/cb\x00",
	} {
		if p == "" {
			continue // empty disables the callback
		}
		cfg := DefaultConfig()
		cfg.Encryption.Keys = []KeyConfig{{ID: "k1", Secret: testKey}}
		cfg.Authorize.CallbackPath = p
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "authorize.callback_path: ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v", p, err)
		}
	}
	for _, p := range []string{"/authorize/callback", "/cb", "/oauth/callback", "/v1x", "/healthzz", "/a-b_c.d~e/f"} {
		cfg := DefaultConfig()
		cfg.Encryption.Keys = []KeyConfig{{ID: "k1", Secret: testKey}}
		cfg.Authorize.CallbackPath = p
		if err := cfg.Validate(); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
}

func TestAuthorizeSecrets(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "done"), []byte(doneSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(strings.NewReader(keyConfig+`authorize:
  done_url: https://app.example/done
  done_url_secret_file: done
  redirect_uri: https://app.example/cb
  allowed_redirect_uris: [https://app.example/other]
`), dir, env())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Authorize.DoneURLSecret != doneSecret || len(cfg.Authorize.AllowedRedirectURIs) != 1 {
		t.Fatalf("authorize %+v", cfg.Authorize)
	}
	_, err = Parse(strings.NewReader(keyConfig+"authorize: {done_url: \"https://app.example/done\", done_url_secret: tooshort-secret-value}\n"), dir, env())
	if err == nil || strings.Contains(err.Error(), "tooshort-secret-value") {
		t.Fatalf("the secret is in the error: %v", err)
	}
}

func TestPath(t *testing.T) {
	tests := []struct {
		flag string
		env  func(string) string
		want string
	}{
		{"flag.yaml", env(EnvConfig, "env.yaml"), "flag.yaml"},
		{"", env(EnvConfig, "env.yaml"), "env.yaml"},
		{"", env(), DefaultPath},
		{"", nil, DefaultPath},
	}
	for _, tt := range tests {
		if got := Path(tt.flag, tt.env); got != tt.want {
			t.Errorf("Path(%q): got %q, want %q", tt.flag, got, tt.want)
		}
	}
	if DefaultPath != "configs/syncd.yaml" {
		t.Errorf("DefaultPath: got %q", DefaultPath)
	}
}

func TestEntryDefaults(t *testing.T) {
	doc := keyConfig + `
providers:
  - name: digime
    kind: fake
    jitter: 0s
  - name: other
    kind: fake
    lead: 20m
jobs:
  - name: pull-daily
    kind: pull
    provider: digime
    schedule: "0 3 * * *"
    retry: {attempts: 0}
`
	cfg := mustParse(t, doc, env())
	d := DefaultProvider()

	p, ok := cfg.Provider("digime")
	if !ok {
		t.Fatal("no provider digime")
	}
	if p.Jitter != 0 {
		t.Errorf("explicit jitter 0s: got %v", p.Jitter)
	}
	want := d
	want.Name, want.Kind, want.Jitter = "digime", ProviderFake, 0
	if !reflect.DeepEqual(*p, want) {
		t.Errorf("digime: got %+v, want %+v", *p, want)
	}
	o, _ := cfg.Provider("other")
	if o.Lead != 20*time.Minute || o.Jitter != d.Jitter || o.Timeout != d.Timeout {
		t.Errorf("other: got %+v", *o)
	}
	if _, ok := cfg.Provider("nope"); ok {
		t.Error("found provider nope")
	}

	j := cfg.Jobs[0]
	if j.Retry.Attempts != 0 || j.Retry.Initial != 30*time.Second || j.Retry.Max != 30*time.Minute {
		t.Errorf("retry: got %+v", j.Retry)
	}
	if j.Timeout != 5*time.Minute || j.Missed != MissedOnce || j.Spread != 0 || j.Paused {
		t.Errorf("job: got %+v", j)
	}
	if j.Timezone != "UTC" || j.Location != time.UTC {
		t.Errorf("zone: got %q %v", j.Timezone, j.Location)
	}
}

func TestJobProviderDefault(t *testing.T) {
	cfg := mustParse(t, keyConfig+"providers: [{name: only, kind: fake}]\njobs: [{name: a, kind: push, schedule: \"@daily\"}]\n", env())
	if got := cfg.Jobs[0].Provider; got != "only" {
		t.Errorf("got %q, want only", got)
	}
}

func TestSchedules(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, spec, tz string
		spread         string
		wantZone       string
		wantNext       time.Time
	}{
		{"5 fields", "0 3 * * *", "", "", "UTC", time.Date(2025, 6, 2, 3, 0, 0, 0, time.UTC)},
		{"6 fields", "30 */10 * * * *", "", "10m", "UTC", time.Date(2025, 6, 1, 12, 0, 30, 0, time.UTC)},
		{"every", "@every 15m", "", "15m", "UTC", from.Add(15 * time.Minute)},
		{"hourly", "@hourly", "", "1h", "UTC", time.Date(2025, 6, 1, 13, 0, 0, 0, time.UTC)},
		{"timezone", "0 3 * * *", "Europe/Berlin", "", "Europe/Berlin", time.Date(2025, 6, 2, 3, 0, 0, 0, berlin)},
		{"cron_tz", "CRON_TZ=Europe/Berlin 0 3 * * *", "", "", "Europe/Berlin", time.Date(2025, 6, 2, 3, 0, 0, 0, berlin)},
		{"tz same", "TZ=Europe/Berlin 0 3 * * *", "Europe/Berlin", "", "Europe/Berlin", time.Date(2025, 6, 2, 3, 0, 0, 0, berlin)},
		{"daily spread", "@daily", "Europe/Berlin", "23h", "Europe/Berlin", time.Date(2025, 6, 2, 0, 0, 0, 0, berlin)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := keyConfig + "jobs:\n  - name: a\n    kind: pull\n    schedule: \"" + tt.spec + "\"\n"
			if tt.tz != "" {
				doc += "    timezone: " + tt.tz + "\n"
			}
			if tt.spread != "" {
				doc += "    spread: " + tt.spread + "\n"
			}
			cfg := mustParse(t, doc, env())
			j := cfg.Jobs[0]
			if j.Timezone != tt.wantZone || j.Location == nil || j.Location.String() != tt.wantZone {
				t.Errorf("zone: got %q %v, want %q", j.Timezone, j.Location, tt.wantZone)
			}
			if got := j.Schedule.Next(from); !got.Equal(tt.wantNext) {
				t.Errorf("next: got %v, want %v", got, tt.wantNext)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("second Validate: %v", err)
			}
		})
	}
}

func TestShortestInterval(t *testing.T) {
	tests := []struct {
		spec, zone string
		want       time.Duration
	}{
		{"* * * * *", "UTC", time.Minute},
		{"*/5 * * * * *", "UTC", 5 * time.Second},
		{"0 9,17 * * *", "UTC", 8 * time.Hour},
		{"0 3 * * *", "UTC", 24 * time.Hour},
		{"0 3 * * *", "Europe/Berlin", 23 * time.Hour}, // spring forward
		{"@weekly", "UTC", 7 * 24 * time.Hour},
		{"@yearly", "UTC", 365 * 24 * time.Hour},
		{"0 0 29 2 *", "UTC", (4*365 + 1) * 24 * time.Hour}, // 2028-02-29 to 2032-02-29
		{"@every 90s", "UTC", 90 * time.Second},
	}
	for _, tt := range tests {
		loc, err := time.LoadLocation(tt.zone)
		if err != nil {
			t.Fatal(err)
		}
		s, err := parseSpec(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		if ss, ok := s.(*cron.SpecSchedule); ok {
			ss.Location = loc
		}
		got, ok := shortestInterval(s, loc)
		if !ok || got != tt.want {
			t.Errorf("%s in %s: got %v %v, want %v", tt.spec, tt.zone, got, ok, tt.want)
		}
	}
}

func TestDecodeOddities(t *testing.T) {
	t.Run("anchors and merge keys", func(t *testing.T) {
		doc := keyConfig + `
providers:
  - &base
    name: a
    kind: fake
    lead: 20m
  - <<: *base
    name: b
`
		cfg := mustParse(t, doc, env())
		if b, _ := cfg.Provider("b"); b.Lead != 20*time.Minute || b.Kind != ProviderFake {
			t.Errorf("merged: got %+v", *b)
		}
	})
	t.Run("unknown key inside merge", func(t *testing.T) {
		doc := keyConfig + "x: &x {leed: 1m}\n"
		_, err := parseString(t, doc, env())
		if err == nil || !strings.Contains(err.Error(), `x: unknown key "x"`) {
			t.Errorf("got %v", err)
		}
		doc = keyConfig + "providers:\n  - <<: {leed: 1m}\n    name: a\n    kind: fake\n"
		_, err = parseString(t, doc, env())
		if err == nil || !strings.Contains(err.Error(), `providers[0].leed: unknown key "leed"`) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("syntax error on one line", func(t *testing.T) {
		_, err := parseString(t, keyConfig+"redis: [\n", env())
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "config: yaml: ") {
			t.Errorf("got %q", err)
		}
	})
	t.Run("document not a mapping", func(t *testing.T) {
		_, err := parseString(t, "- a\n", env())
		if err == nil || err.Error() != "config: document must be a mapping, got a list (line 1)" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("trailing empty documents", func(t *testing.T) {
		for _, tail := range []string{"---\n", "...\n", "---\n...\n", "--- ~\n---\n"} {
			if _, err := parseString(t, keyConfig+tail, env()); err != nil {
				t.Errorf("%q: %v", tail, err)
			}
		}
	})
	t.Run("two documents", func(t *testing.T) {
		_, err := parseString(t, keyConfig+"---\nlog: {level: debug}\n", env())
		if err == nil || err.Error() != "config: more than one YAML document" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("billion laughs", func(t *testing.T) {
		doc := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
		prev := "a"
		for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
			doc += n + ": &" + n + " [" + strings.Repeat("*"+prev+", ", 9) + "*" + prev + "]\n"
			prev = n
		}
		_, err := parseString(t, doc, env())
		if err == nil {
			t.Fatal("got nil error")
		}
	})
}

func TestLoadErrors(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := Load(path, env())
		if err == nil || !errors.Is(err, fs.ErrNotExist) || err.Error() != "config "+path+": open: no such file or directory" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("validation error names the file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "syncd.yaml")
		if err := os.WriteFile(path, []byte(keyConfig+"log: {level: loud}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path, env())
		want := "config " + path + `: log.level: unknown level "loud" (want trace, debug, info, warn or error)`
		if err == nil || err.Error() != want {
			t.Errorf("got  %v\nwant %s", err, want)
		}
	})
}

func TestProviderBlocks(t *testing.T) {
	dir := t.TempDir()
	pem := filepath.Join(dir, "contract.pem")
	if err := os.WriteFile(pem, []byte("not checked here"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secret, []byte("s3cr3t-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := keyConfig + `providers:
  - name: dm
    kind: digime
    digime: {app_id: app, contract_id: con, private_key_file: contract.pem, poll_interval: 1s}
  - name: gh
    kind: oauth2
    oauth2: {token_url: "https://example.com/token", client_id: cid, client_secret_file: client-secret, auth_style: post, scopes: [a, b], pull_url: "https://example.com/{{.User}}"}
`
	cfg, err := Parse(strings.NewReader(ok), dir, env())
	if err != nil {
		t.Fatal(err)
	}
	dm, _ := cfg.Provider("dm")
	if dm.Digime.PrivateKeyFile != pem || dm.Digime.PollInterval != time.Second || dm.Digime.MaxPolls != 100 || dm.Digime.BaseURL != "https://api.digi.me/v1.7/" {
		t.Fatalf("digime block: %+v", dm.Digime)
	}
	gh, _ := cfg.Provider("gh")
	if gh.OAuth2.ClientSecret != "s3cr3t-from-file" || gh.OAuth2.AuthStyle != "post" || len(gh.OAuth2.Scopes) != 2 || gh.OAuth2.CursorHeader != "X-Next-Cursor" {
		t.Fatalf("oauth2 block: %+v", gh.OAuth2)
	}

	for _, tc := range []struct{ doc, want string }{
		{"providers: [{name: dm, kind: digime, digime: {contract_id: c, private_key_file: contract.pem}}]", "providers[0].digime.app_id: required for kind digime"},
		{"providers: [{name: dm, kind: digime, digime: {app_id: a, contract_id: c, private_key_file: missing.pem}}]", "providers[0].digime.private_key_file: "},
		{"providers: [{name: dm, kind: digime, digime: {app_id: a, contract_id: c, private_key_file: contract.pem, base_url: \"ftp://x\"}}]", `providers[0].digime.base_url: must be an http(s) URL, got "ftp://x"`},
		{"providers: [{name: f, kind: fake, digime: {app_id: a}}]", `providers[0].digime: only for kind digime, this provider is kind "fake"`},
		{"providers: [{name: o, kind: oauth2, oauth2: {client_id: c}}]", "providers[0].oauth2.token_url: required for kind oauth2"},
		{"providers: [{name: o, kind: oauth2, oauth2: {token_url: \"https://x/t\", client_id: c, client_secret: s, client_secret_file: client-secret}}]", "providers[0].oauth2.client_secret: give client_secret or client_secret_file, not both"},
		{"providers: [{name: o, kind: oauth2, oauth2: {token_url: \"https://x/t\", client_id: c, auth_style: jwt}}]", `providers[0].oauth2.auth_style: unknown style "jwt" (want basic or post)`},
		{"providers: [{name: o, kind: oauth2, oauth2: {token_url: \"https://x/t\", client_id: c, bogus: 1}}]", `providers[0].oauth2.bogus: unknown key "bogus"`},
	} {
		_, err := Parse(strings.NewReader(keyConfig+tc.doc), dir, env())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestJobSinks(t *testing.T) {
	dir := t.TempDir()
	doc := keyConfig + `jobs:
  - {name: a, kind: pull, schedule: "@every 1m"}
  - {name: b, kind: pull, schedule: "@every 1m", sink: {kind: dir, path: out}}
  - {name: c, kind: pull, schedule: "@every 1m", sink: {kind: webhook, url: "https://app.example.com/hook", secret: ` + hookSecret + `}}
  - {name: d, kind: push, schedule: "@every 1m", batch: 10}
`
	cfg, err := Parse(strings.NewReader(doc), dir, env())
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Jobs[0].Sink; s.Kind != "redis" || s.Stream != "pulled" || s.MaxLen != 100000 {
		t.Fatalf("default sink %+v", s)
	}
	if s := cfg.Jobs[1].Sink; s.Path != filepath.Join(dir, "out") {
		t.Fatalf("dir sink %+v", s)
	}
	if cfg.Jobs[3].Batch != 10 || cfg.Runner.Workers != 64 {
		t.Fatalf("batch %d runner %+v", cfg.Jobs[3].Batch, cfg.Runner)
	}
	for _, tc := range []struct{ doc, want string }{
		{`jobs: [{name: a, kind: pull, schedule: "@every 1m", sink: {kind: s3}}]`, `jobs[0].sink.kind: unknown kind "s3" (want dir, webhook or redis)`},
		{`jobs: [{name: a, kind: pull, schedule: "@every 1m", sink: {kind: dir}}]`, `jobs[0].sink.path: required for a dir sink`},
		{`jobs: [{name: a, kind: pull, schedule: "@every 1m", sink: {kind: webhook, url: "https://x/h"}}]`, `jobs[0].sink.secret: required for a webhook sink`},
		{`jobs: [{name: a, kind: push, schedule: "@every 1m", sink: {kind: dir, path: x}}]`, `jobs[0].sink: only for pull jobs`},
		{`runner: {workers: 0}`, `runner.workers: must be between 1 and 4096, got 0`},
		{`providers: [{name: p, kind: fake, max_concurrency: 0}]`, `providers[0].max_concurrency: must be at least 1, got 0`},
	} {
		_, err := Parse(strings.NewReader(keyConfig+tc.doc), dir, env())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// hookSecret is a webhook secret of the minimum length, 32 bytes.
const hookSecret = "hook-secret-0123456789abcdefghij"

// TestWebhookSecrets: the sink's and the alerts' secrets are at least 32
// bytes, inline or from a file, and a previous secret may be added while
// receivers switch to a new one (Secrets lists both, the current first).
func TestWebhookSecrets(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"new": hookSecret, "old": "old-" + hookSecret, "short": "tooshort\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sink := func(s string) string {
		return `jobs: [{name: a, kind: pull, schedule: "@every 1m", sink: {kind: webhook, url: "https://x/h", ` + s + `}}]` + "\n"
	}
	alerts := func(s string) string { return `alerts: {webhook_url: "https://x/alerts", ` + s + `}` + "\n" }

	cfg, err := Parse(strings.NewReader(keyConfig+sink("secret_file: new, previous_secret: old-"+hookSecret)+alerts("secret: "+hookSecret+", previous_secret_file: old")), dir, env())
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte(hookSecret), []byte("old-" + hookSecret)}
	if got := cfg.Jobs[0].Sink.Secrets(); !reflect.DeepEqual(got, want) {
		t.Errorf("sink secrets %q, want %q", got, want)
	}
	if got := cfg.Alerts.Secrets(); !reflect.DeepEqual(got, want) {
		t.Errorf("alerts secrets %q, want %q", got, want)
	}
	cfg, err = Parse(strings.NewReader(keyConfig+sink("secret: "+hookSecret)), dir, env())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Jobs[0].Sink.Secrets(); !reflect.DeepEqual(got, want[:1]) {
		t.Errorf("sink secrets %q, want the current one only", got)
	}

	for _, tc := range []struct{ doc, want string }{
		{sink("secret: s"), "jobs[0].sink.secret: must be at least 32 bytes, got 1"},
		{sink("secret_file: short"), "jobs[0].sink.secret_file: must be at least 32 bytes, got 8"},
		{sink("secret: " + hookSecret + ", previous_secret: old"), "jobs[0].sink.previous_secret: must be at least 32 bytes, got 3"},
		{sink("secret: " + hookSecret + ", previous_secret_file: short"), "jobs[0].sink.previous_secret_file: must be at least 32 bytes, got 8"},
		{sink("secret: " + hookSecret + ", previous_secret: " + hookSecret + ", previous_secret_file: old"), "jobs[0].sink.previous_secret: give previous_secret or previous_secret_file, not both"},
		{sink("previous_secret: " + hookSecret), "jobs[0].sink.secret: required for a webhook sink"},
		{alerts("secret: s"), "alerts.secret: must be at least 32 bytes, got 1"},
		{alerts("secret_file: short"), "alerts.secret_file: must be at least 32 bytes, got 8"},
		{alerts("secret: " + hookSecret + ", previous_secret: old"), "alerts.previous_secret: must be at least 32 bytes, got 3"},
		{alerts("secret: " + hookSecret + ", previous_secret_file: missing"), "alerts.previous_secret_file: "},
	} {
		_, err := Parse(strings.NewReader(keyConfig+tc.doc), dir, env())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.doc, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "tooshort") {
			t.Errorf("%s: the error shows the secret: %v", tc.doc, err)
		}
	}
}

func TestDaemonSettings(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte("0123456789abcdef-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(strings.NewReader(keyConfig+"admin: {listen: \"0.0.0.0:9464\", token_file: admin-token}\nshutdown_grace: 10s\n"), dir, env())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.WriteToken != "0123456789abcdef-token" || cfg.ShutdownGrace != 10*time.Second || cfg.StatsInterval != time.Minute {
		t.Fatalf("admin %+v grace %v", cfg.Admin, cfg.ShutdownGrace)
	}
	for _, tc := range []struct{ doc, want string }{
		{"admin: {listen: nonsense}", `admin.listen: invalid address "nonsense"`},
		{"admin: {token_file: missing}", "admin.token_file: "},
		{"alerts: {webhook_url: \"https://x/alerts\"}", "alerts.secret: required with alerts.webhook_url"},
		{"shutdown_grace: 0s", "shutdown_grace: "},
	} {
		_, err := Parse(strings.NewReader(keyConfig+tc.doc), dir, env())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.doc, err, tc.want)
		}
	}
}
