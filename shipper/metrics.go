package shipper

import (
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// deadLetterReasons are every reason a line can be dead-lettered for; each
// sink's counters start at 0 for all of them, so alerts see them at once.
var deadLetterReasons = func() []string {
	r := []string{reasonTooLong, reasonSinkRejected}
	for _, p := range parse.Reasons {
		r = append(r, string(p))
	}
	return r
}()

const (
	reasonTooLong      = "too_long"
	reasonSinkRejected = "sink_rejected"
)

// metrics are the shipper's own, on the registry it is given.
type metrics struct {
	linesRead    *prometheus.CounterVec
	bytesRead    *prometheus.CounterVec
	shipped      *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	rotations    *prometheus.CounterVec
	lostBytes    *prometheus.CounterVec
	lostFiles    *prometheus.CounterVec
	truncations  *prometheus.CounterVec
	lagBytes     *prometheus.GaugeVec
	inflight     *prometheus.GaugeVec
	filesOpen    *prometheus.GaugeVec
	sendAttempts *prometheus.CounterVec
	retries      *prometheus.CounterVec
	lastSuccess  *prometheus.GaugeVec
	lastEvent    *prometheus.GaugeVec
	batches      *prometheus.GaugeVec
	positionSave *prometheus.CounterVec
	filtered     *prometheus.CounterVec
	redacted     *prometheus.CounterVec
	lowered      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	sink := []string{"sink"}
	m := &metrics{
		linesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_lines_read_total", Help: "Lines read from the audit log by each sink's cursor."}, sink),
		bytesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_bytes_read_total", Help: "Bytes of audit log read by each sink's cursor, newlines included."}, sink),
		shipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_events_shipped_total", Help: "Events the sink acknowledged."}, sink),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_dead_letters_total", Help: "Lines written to the dead-letter file instead of the sink, by reason."}, []string{"sink", "reason"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_rotations_total", Help: "Moves of a sink's cursor from a finished generation of the audit log to the next."}, sink),
		lostBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_lost_bytes_total", Help: "Bytes of generations deleted (by the apiserver's retention) before the sink read them; a floor."}, sink),
		lostFiles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_lost_files_total", Help: "Generations deleted before the sink finished reading them."}, sink),
		truncations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_truncations_total", Help: "Times the live file was truncated in place (copytruncate) under a sink's cursor."}, sink),
		lagBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "audit_shipper_position_lag_bytes", Help: "Bytes on disk not yet acknowledged by the sink: the open generation past the acknowledged offset plus the newer generations."}, sink),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "audit_shipper_inflight_bytes", Help: "Bytes read for the sink and not yet acknowledged; bounded by max_inflight_bytes."}, sink),
		filesOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "audit_shipper_files_open", Help: "Audit log generations the sink's cursor holds open."}, sink),
		sendAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_send_attempts_total", Help: "Batches handed to the sink, by outcome."}, []string{"sink", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_send_retries_total", Help: "Batches (or parts of batches) sent again after a recoverable error."}, sink),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "audit_shipper_last_send_success_timestamp_seconds", Help: "When the sink last acknowledged a batch (Unix time)."}, sink),
		lastEvent: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "audit_shipper_last_shipped_event_timestamp_seconds", Help: "stageTimestamp of the newest event the sink acknowledged (Unix time); time() minus it is the sink's lag in seconds."}, sink),
		batches: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "audit_shipper_inflight_batches", Help: "Batches handed to the sink's senders and not yet acknowledged."}, sink),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_events_filtered_total", Help: "Events the shipper's rules kept from the sink, by reason (policy_none: the policy's level None; omit_stage: a stage the policy omits)."}, []string{"sink", "reason"}),
		redacted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_events_redacted_total", Help: "Events whose credential bodies (secrets, token reviews, token requests...) were removed before the sink saw them."}, sink),
		lowered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_events_lowered_total", Help: "Events whose level the shipper's policy lowered (bodies or managedFields removed)."}, sink),
		positionSave: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "audit_shipper_position_saves_total", Help: "Writes of the positions file, by result."}, []string{"result"}),
	}
	reg.MustRegister(m.linesRead, m.bytesRead, m.shipped, m.deadLetters, m.rotations, m.lostBytes, m.lostFiles,
		m.truncations, m.lagBytes, m.inflight, m.filesOpen, m.sendAttempts, m.retries, m.lastSuccess, m.lastEvent, m.batches, m.positionSave, m.filtered, m.redacted, m.lowered)
	m.positionSave.WithLabelValues("ok")
	m.positionSave.WithLabelValues("error")
	return m
}

// Send outcomes, the values of the outcome label.
var sendOutcomes = []string{"ok", "retryable", "permanent", "partial"}

// sinkMetrics are the children of the metrics for one sink, looked up once.
type sinkMetrics struct {
	linesRead, bytesRead, shipped, rotations, lostBytes, lostFiles, truncations, retries prometheus.Counter
	redacted, lowered                                                                    prometheus.Counter
	lagBytes, inflight, filesOpen, lastSuccess, lastEvent, batches                       prometheus.Gauge
	deadLetters, filtered, outcomes                                                      map[string]prometheus.Counter
}

func (m *metrics) forSink(name string) *sinkMetrics {
	s := &sinkMetrics{
		linesRead:   m.linesRead.WithLabelValues(name),
		bytesRead:   m.bytesRead.WithLabelValues(name),
		shipped:     m.shipped.WithLabelValues(name),
		rotations:   m.rotations.WithLabelValues(name),
		lostBytes:   m.lostBytes.WithLabelValues(name),
		lostFiles:   m.lostFiles.WithLabelValues(name),
		truncations: m.truncations.WithLabelValues(name),
		retries:     m.retries.WithLabelValues(name),
		lagBytes:    m.lagBytes.WithLabelValues(name),
		inflight:    m.inflight.WithLabelValues(name),
		filesOpen:   m.filesOpen.WithLabelValues(name),
		lastSuccess: m.lastSuccess.WithLabelValues(name),
		lastEvent:   m.lastEvent.WithLabelValues(name),
		batches:     m.batches.WithLabelValues(name),
		redacted:    m.redacted.WithLabelValues(name),
		lowered:     m.lowered.WithLabelValues(name),
		deadLetters: map[string]prometheus.Counter{},
		filtered:    map[string]prometheus.Counter{},
		outcomes:    map[string]prometheus.Counter{},
	}
	for _, r := range rules.DropReasons {
		s.filtered[r] = m.filtered.WithLabelValues(name, r)
	}
	for _, r := range deadLetterReasons {
		s.deadLetters[r] = m.deadLetters.WithLabelValues(name, r)
	}
	for _, o := range sendOutcomes {
		s.outcomes[o] = m.sendAttempts.WithLabelValues(name, o)
	}
	return s
}
