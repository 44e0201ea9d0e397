package loki

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Status classes of a push request: the label values of requests_total.
// 429 has a class of its own because it is Loki's rate limit, the one
// answer a healthy shipper meets routinely.
const (
	class2xx   = "2xx"
	class3xx   = "3xx"
	class429   = "429"
	class4xx   = "4xx"
	class5xx   = "5xx"
	classError = "error" // no answer: connection refused or reset, timeout
)

type metrics struct {
	duration prometheus.Histogram
	requests *prometheus.CounterVec
	entries  prometheus.Counter
	bytes    prometheus.Counter
	// truncated counts entries shrunk to fit max_line_size.
	truncated prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "audit_shipper_loki_request_duration_seconds",
			Help: "Time from sending a push request to Loki to its answer (or failure).",
			// Up to past the default 10s timeout.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_loki_requests_total",
			Help: "Push requests by the class of their answer: 2xx, 3xx, 429, 4xx, 5xx, or error when none came.",
		}, []string{"code"}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "audit_shipper_loki_sent_entries_total",
			Help: "Entries in push requests Loki accepted.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "audit_shipper_loki_sent_bytes_total",
			Help: "Bytes of request bodies (after compression) Loki accepted.",
		}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "audit_shipper_loki_truncated_entries_total",
			Help: "Entries Loki accepted after members were removed to fit max_line_size (see the truncated structured metadata).",
		}),
	}
	// Every class starts at 0, so that rate() and alerts see it from the
	// first scrape.
	for _, c := range []string{class2xx, class3xx, class429, class4xx, class5xx, classError} {
		m.requests.WithLabelValues(c)
	}
	for _, c := range []prometheus.Collector{m.duration, m.requests, m.entries, m.bytes, m.truncated} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering the loki sink's metrics: %w; is another sink of the same name configured?", err)
		}
	}
	return m, nil
}
