package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRedisSentinelURL: a redis-sentinel:// URL names the sentinels, the
// master, the database and the master's user and password; the
// sentinels' credentials come from redis.sentinel_*; SYNCD_REDIS_URL
// takes the same form.
func TestRedisSentinelURL(t *testing.T) {
	const u = "redis-sentinel://app:pw@s1:26379,s2:26380/2?master=main&read_timeout=2s"
	check := func(t *testing.T, cfg *Config, sentinelPW string) {
		t.Helper()
		c := cfg.Redis.ClientOptions()
		o := c.Failover
		if o == nil || c.Single != nil || c.Cluster != nil {
			t.Fatalf("options %+v", c)
		}
		if !slices.Equal(o.SentinelAddrs, []string{"s1:26379", "s2:26380"}) || o.MasterName != "main" || o.DB != 2 ||
			o.Username != "app" || o.Password != "pw" || o.SentinelUsername != "" || o.SentinelPassword != sentinelPW ||
			o.TLSConfig != nil || o.DialTimeout != cfg.Redis.DialTimeout || o.ReadTimeout.Seconds() != 2 {
			t.Errorf("options %+v", o)
		}
		if cfg.Redis.Options() != nil {
			t.Error("single-node options in Sentinel mode")
		}
	}
	t.Run("file", func(t *testing.T) {
		check(t, mustParse(t, keyConfig+"redis: {url: \""+u+"\", sentinel_password: spw}\n", env()), "spw")
	})
	t.Run("env override", func(t *testing.T) {
		check(t, mustParse(t, keyConfig, env(EnvRedisURL, u)), "")
	})
	t.Run("password file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(f, []byte("fpw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		check(t, mustParse(t, keyConfig+"redis: {url: \""+u+"\", sentinel_password_file: "+f+"}\n", env()), "fpw")
	})
}

// TestRedisClusterURL: a redis-cluster:// URL and redis.cluster_addrs
// (with a redis:// URL for the credentials) build the same options.
func TestRedisClusterURL(t *testing.T) {
	for name, doc := range map[string]string{
		"url":           "redis: {url: \"redis-cluster://app:pw@n1:7000,n2:7001\"}\n",
		"url with db 0": "redis: {url: \"redis-cluster://app:pw@n1:7000,n2:7001/0\"}\n",
		"cluster_addrs": "redis: {url: \"redis://app:pw@ignored:1\", cluster_addrs: [\"n1:7000\", \"n2:7001\"]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			c := mustParse(t, keyConfig+doc, env()).Redis.ClientOptions()
			o := c.Cluster
			if o == nil || c.Single != nil || c.Failover != nil {
				t.Fatalf("options %+v", c)
			}
			if !slices.Equal(o.Addrs, []string{"n1:7000", "n2:7001"}) || o.Username != "app" || o.Password != "pw" || o.TLSConfig != nil {
				t.Errorf("options %+v", o)
			}
		})
	}
	t.Run("cluster_addrs with the default url", func(t *testing.T) {
		o := mustParse(t, keyConfig+"redis: {cluster_addrs: [\"n1:7000\"]}\n", env()).Redis.ClientOptions().Cluster
		if o == nil || !slices.Equal(o.Addrs, []string{"n1:7000"}) {
			t.Errorf("options %+v", o)
		}
	})
	t.Run("options are copies", func(t *testing.T) {
		cfg := mustParse(t, keyConfig+"redis: {url: \"rediss-cluster://n1:7000,n2:7001\"}\n", env())
		cfg.Redis.ClientOptions().Cluster.Addrs[0] = "changed"
		cfg.Redis.ClientOptions().Cluster.TLSConfig.ServerName = "changed"
		if o := cfg.Redis.ClientOptions().Cluster; o.Addrs[0] != "n1:7000" || o.TLSConfig.ServerName != "" {
			t.Errorf("options were shared: %+v", o)
		}
	})
}

// TestRedisModeErrors: a bad Sentinel or Cluster setting names its
// field and value, never a password.
func TestRedisModeErrors(t *testing.T) {
	const pw = "s3cr3tpw"
	for _, tc := range []struct{ name, redis, want string }{
		{"no master", `{url: "redis-sentinel://:` + pw + `@s1:26379"}`, `redis.url: invalid URL "redis-sentinel://:xxxxx@s1:26379": a Sentinel URL needs ?master=NAME`},
		{"no port", `{url: "redis-sentinel://s1,s2:1?master=m"}`, `want host:port for every host, got "s1"`},
		{"cluster db", `{url: "redis-cluster://u:` + pw + `@n1:7000/3"}`, `redis.url: invalid URL "redis-cluster://u:xxxxx@n1:7000/3": Redis Cluster has only database 0, got "3"`},
		{"reserved param", `{url: "redis-sentinel://s1:1?master=m&password=` + pw + `"}`, `parameter password is not supported here`},
		{"bad option", `{url: "redis-cluster://:` + pw + `@n1:7000?dial_timeout=x"}`, `redis.url: invalid URL "redis-cluster://:xxxxx@n1:7000?dial_timeout=x": `},
		{"cluster_addrs with sentinel", `{url: "redis-sentinel://s1:1?master=m", cluster_addrs: ["n1:7000"]}`, `redis.cluster_addrs: needs a redis:// or rediss:// redis.url`},
		{"cluster_addrs bad addr", `{cluster_addrs: ["n1:7000", "n2"]}`, `redis.cluster_addrs[1]: want host:port, got "n2"`},
		{"sentinel password without sentinel", `{sentinel_password: ` + pw + `}`, `redis.sentinel_password: only for a redis-sentinel:// redis.url, got "redis://127.0.0.1:6379/0"`},
		{"sentinel password twice", `{url: "redis-sentinel://s1:1?master=m", sentinel_password: ` + pw + `, sentinel_password_file: /nope}`, `redis.sentinel_password: give sentinel_password or sentinel_password_file, not both`},
		{"sentinel password file", `{url: "redis-sentinel://s1:1?master=m", sentinel_password_file: /nope}`, `redis.sentinel_password_file: stat /nope`},
		{"tls without rediss", `{url: "redis-cluster://n1:7000", tls: {insecure_skip_verify: true}}`, `redis.tls: needs a rediss:// URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseString(t, keyConfig+"redis: "+tc.redis+"\n", env())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("password in error: %v", err)
			}
		})
	}
}
