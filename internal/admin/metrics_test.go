package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/admin"
	"github.com/syncd/syncd/internal/clock"
)

// gauges is a hand-written fake of the shared state in Redis.
type gauges struct{ quarantined int64 }

func (g gauges) StateCounts(context.Context) (map[string]int64, error) {
	return map[string]int64{"active": 5}, nil
}
func (g gauges) ReauthStats(context.Context) (int64, time.Time, error) { return 0, time.Time{}, nil }
func (g gauges) DueCount(context.Context, string, time.Time) (int64, error) {
	return 2, nil
}
func (g gauges) QuarantineCount(context.Context) (int64, error) { return g.quarantined, nil }

// TestSharedGauges: the collector reports the shared state, including how
// many users are quarantined (read from Redis, the same on every
// replica).
func TestSharedGauges(t *testing.T) {
	c := admin.NewCollector(gauges{quarantined: 3}, clock.NewFake(time.Unix(1_780_000_000, 0)), zerolog.Nop())
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `# HELP syncd_records_quarantined Users whose token record could not be read and was set aside (shared state, same on every replica).
# TYPE syncd_records_quarantined gauge
syncd_records_quarantined 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "syncd_records_quarantined"); err != nil {
		t.Fatal(err)
	}
}
