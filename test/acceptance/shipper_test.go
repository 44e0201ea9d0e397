package acceptance

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

// sinkName is the name of the file sink every test configures.
const sinkName = "out"

// settings are the parts of the shipper's config that tests vary.
type settings struct {
	maxLineBytes     string
	maxInflightBytes string
	syncInterval     time.Duration
	batchEvents      int
}

var defaults = settings{maxLineBytes: "4MiB", maxInflightBytes: "32MiB", syncInterval: time.Second, batchEvents: 1000}

// shipper runs the binary under test, once or many times, over one
// configuration: the audit log in logs/, everything it writes in state/.
type shipper struct {
	*shipperproc.Proc
	t *testing.T
}

func newShipper(t *testing.T, set settings) *shipper {
	t.Helper()
	s := &shipper{Proc: shipperproc.New(t, binary, shipperproc.Options{UpTimeout: 15 * time.Second}), t: t}
	s.WriteConfig(fmt.Appendf(nil, `source:
  path: %[1]s/logs/audit.log
  positions_file: %[1]s/state/positions.json
  start_at: beginning
  max_line_bytes: %[2]s
  poll_interval: 250ms
  sync_interval: %[3]s
dead_letter:
  path: %[1]s/state/dead-letter.ndjson
buffer:
  max_inflight_bytes: %[4]s
sinks:
  - name: %[5]s
    type: file
    path: %[1]s/state/out.ndjson
    batch: {max_events: %[7]d, max_bytes: 1MiB, max_wait: 200ms}
metrics:
  listen: %[6]s
log: {level: info, format: json}
shutdown: {timeout: 20s}
`, s.Dir(), set.maxLineBytes, set.syncInterval, set.maxInflightBytes, sinkName, s.Listen(), set.batchEvents))
	return s
}

func (s *shipper) logDir() string     { return filepath.Join(s.Dir(), "logs") }
func (s *shipper) outPath() string    { return filepath.Join(s.Dir(), "state", "out.ndjson") }
func (s *shipper) deadLetter() string { return filepath.Join(s.Dir(), "state", "dead-letter.ndjson") }
func (s *shipper) positions() string  { return filepath.Join(s.Dir(), "state", "positions.json") }

// sinkValue is m.Value for the test's sink, failing the test when the
// metric is missing.
func sinkValue(t *testing.T, m shipperproc.Metrics, name string, labels ...string) float64 {
	t.Helper()
	v, ok := m.Value(name, append([]string{"sink", sinkName}, labels...)...)
	if !ok {
		t.Errorf("/metrics has no %s{sink=%q %v}", name, sinkName, labels)
	}
	return v
}

// waitMetric polls until cond holds for the named sink metric, or fails
// after timeout with the last value seen.
func (s *shipper) waitMetric(name string, timeout time.Duration, cond func(float64) bool, want string) float64 {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last float64
	var lastErr error
	for {
		s.Alive()
		m, err := s.Scrape()
		if err == nil {
			v, ok := m.Value(name, "sink", sinkName)
			if ok && cond(v) {
				return v
			}
			last, lastErr = v, nil
			if !ok {
				lastErr = errors.New("metric missing")
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			s.t.Errorf("%s{sink=%q} is %v (%v) after %s, want %s", name, sinkName, last, lastErr, timeout, want)
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
}
