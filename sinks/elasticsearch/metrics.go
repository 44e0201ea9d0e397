package elasticsearch

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one sink's; the Registerer it is built on adds sink=<name>.
type metrics struct {
	requests  *prometheus.CounterVec // by code: the HTTP status, or "error" when no answer came
	duration  prometheus.Histogram
	items     *prometheus.CounterVec // by result
	rejected  *prometheus.CounterVec // by reason
	bodyBytes prometheus.Counter     // NDJSON before compression
	sentBytes prometheus.Counter     // request bodies as sent
}

const codeError = "error"

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_elasticsearch_bulk_requests_total",
			Help: "Bulk requests sent, by HTTP status code of the answer (\"error\": no answer: network error or timeout).",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "audit_shipper_elasticsearch_bulk_request_duration_seconds",
			Help:    "Time from sending a bulk request to reading its whole answer.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5ms to 41s
		}),
		items: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_elasticsearch_items_total",
			Help: "Documents answered in bulk responses, by result: created, duplicate (409: stored by an earlier attempt), retryable (429, 5xx, 401/403/404 for the item), rejected (dead-lettered).",
		}, []string{"result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_elasticsearch_items_rejected_total",
			Help: "Documents Elasticsearch will never accept as they are, by reason: mapping, illegal_argument, rejected_<status>.",
		}, []string{"reason"}),
		bodyBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "audit_shipper_elasticsearch_body_bytes_total",
			Help: "Bytes of NDJSON bulk bodies before compression.",
		}),
		sentBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "audit_shipper_elasticsearch_sent_bytes_total",
			Help: "Bytes of bulk request bodies as sent (gzip-compressed unless compress is false).",
		}),
	}
	// Start the series alerts look at from zero.
	for _, c := range []string{"200", "400", "401", "403", "413", "429", "500", "502", "503", codeError} {
		m.requests.WithLabelValues(c)
	}
	for _, r := range itemResults {
		m.items.WithLabelValues(r)
	}
	for _, r := range []string{reasonMapping, reasonIllegalArgument} {
		m.rejected.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.items, m.rejected, m.bodyBytes, m.sentBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func code(status int) string { return strconv.Itoa(status) }
