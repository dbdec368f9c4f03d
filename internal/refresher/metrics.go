package refresher

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the refresher's Prometheus metrics. A nil *Metrics records
// nothing. Names are part of syncd's interface (README "Metrics").
type Metrics struct {
	RefreshTotal    *prometheus.CounterVec
	RefreshDuration *prometheus.HistogramVec
	ReauthFlagged   *prometheus.CounterVec
	CircuitOpen     *prometheus.GaugeVec
	Quarantined     prometheus.Counter
	// OpenFailures counts token records that did not open, by reason
	// (unknown_key, unverified_key, tampered, error; see openFailure).
	// Any increase is a configuration error or tampering to look at.
	OpenFailures *prometheus.CounterVec
	// CommitUnacked counts refreshed tokens whose commit reached the
	// master but not redis.min_replicas_acked replicas in time: each is
	// kept in memory and committed again (tokens.ErrUnacked).
	CommitUnacked *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (if non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		RefreshTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncd_token_refresh_total", Help: "Token refresh attempts by provider and result: ok, transient, reauth, config; reuse (refused because the token had been rotated already: spent twice), superseded (refused, a stored token replaced it), lost (refused right after a refresh that ended without storing its answer: a rotation lost to a crash or timeout).",
		}, []string{"provider", "result"}),
		RefreshDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "syncd_token_refresh_duration_seconds", Help: "Duration of token refresh calls.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"provider"}),
		ReauthFlagged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncd_reauth_flagged_total", Help: "Users flagged for re-authorization, by reason.",
		}, []string{"reason"}),
		CircuitOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "syncd_provider_circuit_open", Help: "1 while the provider's circuit breaker is open in this process.",
		}, []string{"provider"}),
		Quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "syncd_records_quarantined_total", Help: "Unreadable token records moved aside.",
		}),
		OpenFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncd_token_open_failures_total", Help: "Token records that did not open, by reason (unknown_key, unverified_key: kept and retried; tampered: quarantined).",
		}, []string{"reason"}),
		CommitUnacked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "syncd_token_commit_unacked_total", Help: "Refreshed-token commits not acknowledged by redis.min_replicas_acked replicas within redis.wait_timeout, by provider: kept in memory and committed again, never used before they are.",
		}, []string{"provider"}),
	}
	for _, r := range []string{openUnknownKey, openUnverifiedKey, openTampered, openError} {
		m.OpenFailures.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.RefreshTotal, m.RefreshDuration, m.ReauthFlagged, m.CircuitOpen, m.Quarantined, m.OpenFailures, m.CommitUnacked)
	}
	return m
}

// refreshed counts a refresh attempt's result and, unless d is 0, the
// call's duration.
func (m *Metrics) refreshed(provider, result string, d time.Duration) {
	if m == nil {
		return
	}
	m.RefreshTotal.WithLabelValues(provider, result).Inc()
	if d > 0 {
		m.RefreshDuration.WithLabelValues(provider).Observe(d.Seconds())
	}
}

// observe records a refresh call's duration whose result is counted
// later (refreshed with d = 0).
func (m *Metrics) observe(provider string, d time.Duration) {
	if m != nil {
		m.RefreshDuration.WithLabelValues(provider).Observe(d.Seconds())
	}
}

func (m *Metrics) flagged(reason string) {
	if m != nil {
		m.ReauthFlagged.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) circuit(provider string, open bool) {
	if m == nil {
		return
	}
	v := 0.0
	if open {
		v = 1
	}
	m.CircuitOpen.WithLabelValues(provider).Set(v)
}

func (m *Metrics) openFailed(reason string) {
	if m != nil {
		m.OpenFailures.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) quarantined() {
	if m != nil {
		m.Quarantined.Inc()
	}
}

func (m *Metrics) unacked(provider string) {
	if m != nil {
		m.CommitUnacked.WithLabelValues(provider).Inc()
	}
}
