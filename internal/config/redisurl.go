package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Schemes of redis.url beyond go-redis' own (redis, rediss, unix), as
// asynq names them; the rediss- forms add TLS.
const (
	schemeSentinel    = "redis-sentinel"
	schemeSentinelTLS = "rediss-sentinel"
	schemeCluster     = "redis-cluster"
	schemeClusterTLS  = "rediss-cluster"
)

// reservedParams are query parameters of go-redis' failover and cluster
// URLs that syncd's URL forms say another way (hosts, userinfo, master),
// refused so there is one way to say each.
var reservedParams = []string{"addr", "master_name", "username", "password"}

// parseRedis parses redis.url and redis.cluster_addrs into client
// options. Problems name the field and never hold a password.
func (r *RedisConfig) parseRedis(p *problems) (RedisClientOptions, bool) {
	var c RedisClientOptions
	scheme, _, _ := strings.Cut(r.URL, "://")
	multi := scheme == schemeSentinel || scheme == schemeSentinelTLS || scheme == schemeCluster || scheme == schemeClusterTLS
	if !multi && len(r.ClusterAddrs) == 0 {
		o, err := redis.ParseURL(r.URL)
		if err != nil {
			p.add("redis.url", "invalid URL %q: %s", redactURL(r.URL), urlErrorText(r.URL, err))
			return c, false
		}
		c.Single = o
		return c, true
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		p.add("redis.url", "invalid URL %q: %s", redactURL(r.URL), urlErrorText(r.URL, err))
		return c, false
	}
	q := u.Query()
	shown := *u // what errors quote: no password, in userinfo or query
	if q.Has("password") {
		sq := u.Query()
		sq.Set("password", "xxxxx")
		shown.RawQuery = sq.Encode()
	}
	bad := func(format string, args ...any) (RedisClientOptions, bool) {
		p.add("redis.url", "invalid URL %q: %s", shown.Redacted(), fmt.Sprintf(format, args...))
		return c, false
	}
	for _, k := range reservedParams {
		if q.Has(k) {
			return bad("parameter %s is not supported here", k)
		}
	}
	hosts := strings.Split(u.Host, ",")
	if len(r.ClusterAddrs) > 0 {
		switch scheme {
		case "redis", "rediss":
		default:
			p.add("redis.cluster_addrs", "needs a redis:// or rediss:// redis.url (for TLS, user, password), got %q", shown.Redacted())
			return c, false
		}
		hosts = r.ClusterAddrs
		for i, h := range hosts {
			if _, port, err := net.SplitHostPort(h); err != nil || port == "" || strings.Contains(h, ",") {
				p.add(fmt.Sprintf("redis.cluster_addrs[%d]", i), "want host:port, got %q", h)
				return c, false
			}
		}
	} else {
		for _, h := range hosts {
			if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
				return bad("want host:port for every host, got %q", h)
			}
		}
	}
	tlsOn := scheme == "rediss" || strings.HasPrefix(scheme, "rediss-")
	base := "redis"
	if tlsOn {
		base = "rediss"
	}
	// The go-redis URL: the first host, the others as addr parameters.
	g := url.URL{Scheme: base, Host: hosts[0], Path: u.Path}
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	sentinel := scheme == schemeSentinel || scheme == schemeSentinelTLS
	if sentinel {
		master := q.Get("master")
		if master == "" {
			return bad("a Sentinel URL needs ?master=NAME")
		}
		q.Del("master")
		q.Set("master_name", master)
		// go-redis takes the userinfo of a failover URL for the
		// sentinels; syncd's is the master's.
		if u.User != nil {
			q.Set("username", u.User.Username())
			if pw, ok := u.User.Password(); ok {
				q.Set("password", pw)
			}
		}
	} else {
		g.User = u.User
		if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
			return bad("Redis Cluster has only database 0, got %q", db)
		}
		g.Path = ""
	}
	g.RawQuery = q.Encode()
	if sentinel {
		o, err := redis.ParseFailoverURL(g.String())
		if err != nil {
			return bad("%s", scrub(err, u))
		}
		c.Failover = o
		clearServerName(o.TLSConfig)
		return c, true
	}
	o, err := redis.ParseClusterURL(g.String())
	if err != nil {
		return bad("%s", scrub(err, u))
	}
	c.Cluster = o
	clearServerName(o.TLSConfig)
	return c, true
}

// scrub is a go-redis parse error without any part of u's password.
func scrub(err error, u *url.URL) string {
	msg := err.Error()
	if u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" && strings.Contains(msg, pw) {
			return "malformed URL"
		}
	}
	return msg
}

// clearServerName lets each node's certificate be checked against the
// host it is dialled at: sentinels, masters and cluster nodes are many
// hosts, go-redis would check them all against the first.
func clearServerName(tc *tls.Config) {
	if tc != nil {
		tc.ServerName = ""
	}
}

// sentinelCredentials resolves redis.sentinel_username and
// redis.sentinel_password(_file) onto o, which is nil unless redis.url
// is a Sentinel URL.
func (r *RedisConfig) sentinelCredentials(p *problems, o *redis.FailoverOptions) {
	pw := r.SentinelPassword
	switch {
	case pw != "" && r.SentinelPasswordFile != "":
		p.add("redis.sentinel_password", "give sentinel_password or sentinel_password_file, not both")
		return
	case r.SentinelPasswordFile != "":
		v, err := readSecretFile(r.SentinelPasswordFile)
		if err != nil {
			p.add("redis.sentinel_password_file", "%v", err)
			return
		}
		pw = v
	}
	if o == nil {
		if pw != "" || r.SentinelUsername != "" {
			p.add("redis.sentinel_password", "only for a redis-sentinel:// redis.url, got %q", redactURL(r.URL))
		}
		return
	}
	o.SentinelUsername, o.SentinelPassword = r.SentinelUsername, pw
}
