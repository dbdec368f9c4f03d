package admin

import (
	"context"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/tokens"
)

// Gauges reads shared state from Redis, so every replica reports the
// same values.
type Gauges interface {
	// StateCounts is the latest count of users by state (refreshed every
	// stats_interval by one replica).
	StateCounts(ctx context.Context) (map[string]int64, error)
	// ReauthStats is the re-auth queue's size and its oldest entry.
	ReauthStats(ctx context.Context) (size int64, oldest time.Time, err error)
	// DueCount counts members of a due set due at or before t.
	DueCount(ctx context.Context, set string, t time.Time) (int64, error)
	// QuarantineCount is how many users are quarantined.
	QuarantineCount(ctx context.Context) (int64, error)
}

var (
	usersDesc   = prometheus.NewDesc("syncd_users", "Users by state (shared state, same on every replica).", []string{"state"}, nil)
	queueDesc   = prometheus.NewDesc("syncd_reauth_queue_size", "Users waiting for re-authorization.", nil, nil)
	oldestDesc  = prometheus.NewDesc("syncd_reauth_oldest_seconds", "Age of the oldest entry of the re-auth queue (0 when empty).", nil, nil)
	backlogDesc = prometheus.NewDesc("syncd_token_refresh_backlog", "Tokens due for refresh and not yet refreshed.", nil, nil)
	quarDesc    = prometheus.NewDesc("syncd_records_quarantined", "Users whose token record could not be read and was set aside (shared state, same on every replica).", nil, nil)
)

type collector struct {
	g     Gauges
	clock clock.Clock
	log   zerolog.Logger
}

// NewCollector returns the collector of the shared-state gauges.
func NewCollector(g Gauges, clk clock.Clock, log zerolog.Logger) prometheus.Collector {
	if clk == nil {
		clk = clock.Real{}
	}
	return &collector{g: g, clock: clk, log: log}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- usersDesc
	ch <- queueDesc
	ch <- oldestDesc
	ch <- backlogDesc
	ch <- quarDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	now := c.clock.Now()
	if counts, err := c.g.StateCounts(ctx); err == nil {
		for _, st := range tokens.States {
			ch <- prometheus.MustNewConstMetric(usersDesc, prometheus.GaugeValue, float64(counts[string(st)]), string(st))
		}
	} else {
		c.log.Warn().Err(err).Msg("metrics: user counts unavailable")
	}
	if size, oldest, err := c.g.ReauthStats(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(size))
		age := 0.0
		if !oldest.IsZero() {
			age = max(now.Sub(oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
	}
	if n, err := c.g.DueCount(ctx, tokens.RefreshSet, now); err == nil {
		ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(n))
	}
	if n, err := c.g.QuarantineCount(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(quarDesc, prometheus.GaugeValue, float64(n))
	}
}

// BuildInfo is syncd_build_info{version,goversion} = 1.
func BuildInfo(version string) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "syncd_build_info", Help: "Build information; always 1."}, []string{"version", "goversion"})
	g.WithLabelValues(version, runtime.Version()).Set(1)
	return g
}
