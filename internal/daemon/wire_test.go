package daemon

import (
	"strings"
	"testing"
	"time"

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
