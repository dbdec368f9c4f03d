package jobs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the job runner's Prometheus metrics; nil records nothing.
type Metrics struct {
	Runs     *prometheus.CounterVec
	Duration *prometheus.HistogramVec
	Lag      *prometheus.GaugeVec
	Missed   *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (if non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncd_job_runs_total",
			Help: "Job runs by job and result (ok, failed)."}, []string{"job", "result"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "syncd_job_duration_seconds",
			Help: "Duration of job runs.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)}, []string{"job"}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "syncd_job_lag_seconds",
			Help: "Delay between a run's due time and its start, last seen in this process."}, []string{"job"}),
		Missed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncd_job_missed_total",
			Help: "Scheduled slots that passed without a run (daemon down or behind)."}, []string{"job"}),
	}
	if reg != nil {
		reg.MustRegister(m.Runs, m.Duration, m.Lag, m.Missed)
	}
	return m
}

func (m *Metrics) ran(job string, ok bool, d time.Duration) {
	if m == nil {
		return
	}
	result := "failed"
	if ok {
		result = "ok"
	}
	m.Runs.WithLabelValues(job, result).Inc()
	m.Duration.WithLabelValues(job).Observe(d.Seconds())
}

func (m *Metrics) lag(job string, d time.Duration) {
	if m != nil {
		m.Lag.WithLabelValues(job).Set(max(d, 0).Seconds())
	}
}

func (m *Metrics) missed(job string, n int) {
	if m != nil {
		m.Missed.WithLabelValues(job).Add(float64(n))
	}
}
