package authflow

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count links and callbacks; nil records nothing.
type Metrics struct {
	Links     *prometheus.CounterVec
	Callbacks *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (if non-nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Links: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncd_authorize_links_total",
			Help: "Consent links issued, by provider and flow (authorize, reauthorize)."}, []string{"provider", "flow"}),
		Callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncd_authorize_callbacks_total",
			Help: "Authorization callbacks by result (ok, access_denied, state_unknown, state_expired, code_rejected, provider_unavailable, bad_request, error)."},
			[]string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.Links, m.Callbacks)
	}
	return m
}

func (m *Metrics) link(provider, flow string) {
	if m != nil {
		m.Links.WithLabelValues(provider, flow).Inc()
	}
}

func (m *Metrics) callback(err error) {
	if m == nil {
		return
	}
	result := "ok"
	var e *Error
	switch {
	case errors.As(err, &e):
		result = string(e.Kind)
	case err != nil:
		result = "error"
	}
	m.Callbacks.WithLabelValues(result).Inc()
}
