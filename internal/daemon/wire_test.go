package daemon

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
)

// TestRedisOptionsBoundCalls: the client every command builds, in each
// of Redis' modes, lets a context deadline bound each call, and times
// out reads before the next lease renewal of the engine with the
// shortest lease.
func TestRedisOptionsBoundCalls(t *testing.T) {
	for _, url := range []string{"redis://127.0.0.1:1/0", "redis-sentinel://127.0.0.1:1,127.0.0.1:2?master=m", "redis-cluster://127.0.0.1:1,127.0.0.1:2"} {
		t.Run(url, func(t *testing.T) {
			doc := fmt.Sprintf(`redis: {url: %q}
encryption: {keys: [{id: k1, secret: O0Nsm/A/uTufnXBMX9/72PPt6667YXKFEl0HJFwwdDY=}]}
providers: [{name: fake, kind: fake}]
runner: {lease: 3s}
`, url)
			cfg, err := config.Parse(strings.NewReader(doc), t.TempDir(), func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			rdb := redisClient(cfg)
			t.Cleanup(func() { _ = rdb.Close() })
			var ctxTimeout bool
			var read, write time.Duration
			switch c := rdb.(type) {
			case *redis.Client:
				o := c.Options()
				ctxTimeout, read, write = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
			case *redis.ClusterClient:
				o := c.Options()
				ctxTimeout, read, write = o.ContextTimeoutEnabled, o.ReadTimeout, o.WriteTimeout
			default:
				t.Fatalf("client %T", rdb)
			}
			if !ctxTimeout {
				t.Error("context deadlines do not bound Redis calls")
			}
			if renew := 3 * time.Second / 3; read <= 0 || read >= renew || write <= 0 || write >= renew {
				t.Errorf("read timeout %v, write timeout %v: want both below the renewal period %v", read, write, renew)
			}
		})
	}
}

// TestInsecureRedisTLSWarns: redis.tls.insecure_skip_verify is allowed,
// but the daemon says loudly at start that Redis traffic is unverified;
// a verified connection says nothing.
func TestInsecureRedisTLSWarns(t *testing.T) {
	for _, insecure := range []bool{true, false} {
		doc := fmt.Sprintf(`redis: {url: "rediss://127.0.0.1:1/0", tls: {insecure_skip_verify: %t}}
encryption: {keys: [{id: k1, secret: O0Nsm/A/uTufnXBMX9/72PPt6667YXKFEl0HJFwwdDY=}]}
admin: {listen: ""}
`, insecure)
		cfg, err := config.Parse(strings.NewReader(doc), t.TempDir(), func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		d, err := New(cfg, Options{Logger: zerolog.New(&logs)})
		if err != nil {
			t.Fatal(err)
		}
		_ = d.rdb.Close()
		warned := strings.Contains(logs.String(), `"level":"warn"`) && strings.Contains(logs.String(), "insecure_skip_verify")
		if warned != insecure {
			t.Errorf("insecure %t: logs %s", insecure, logs.String())
		}
	}
}
