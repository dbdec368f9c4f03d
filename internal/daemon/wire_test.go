package daemon

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/config"
)

// TestRedisOptionsBoundCalls: the client every command builds lets a
// context deadline bound each call, and times out reads before the next
// lease renewal of the engine with the shortest lease.
func TestRedisOptionsBoundCalls(t *testing.T) {
	doc := `redis: {url: "redis://127.0.0.1:1/0"}
encryption: {keys: [{id: k1, secret: O0Nsm/A/uTufnXBMX9/72PPt6667YXKFEl0HJFwwdDY=}]}
providers: [{name: fake, kind: fake}]
runner: {lease: 3s}
`
	cfg, err := config.Parse(strings.NewReader(doc), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	o := redisOptions(cfg)
	if !o.ContextTimeoutEnabled {
		t.Error("context deadlines do not bound Redis calls")
	}
	if renew := 3 * time.Second / 3; o.ReadTimeout <= 0 || o.ReadTimeout >= renew || o.WriteTimeout <= 0 || o.WriteTimeout >= renew {
		t.Errorf("read timeout %v, write timeout %v: want both below the renewal period %v", o.ReadTimeout, o.WriteTimeout, renew)
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
