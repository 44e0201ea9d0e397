package acceptance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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

// workDir makes a directory for one test that outlives it when it fails,
// so that its logs, positions and output can be read afterwards.
func workDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "audit-shipper-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept the test's files in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// shipper runs the binary under test, once or many times, over one
// configuration: the audit log in logs/, everything it writes in state/.
type shipper struct {
	t        *testing.T
	dir      string
	config   string
	listen   string
	runs     int
	logFiles []string

	cmd  *exec.Cmd
	done chan struct{}
	// started is when the running process was started.
	started time.Time
}

func newShipper(t *testing.T, set settings) *shipper {
	t.Helper()
	dir := workDir(t)
	for _, d := range []string{"logs", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &shipper{t: t, dir: dir, config: filepath.Join(dir, "config.yaml"), listen: freeAddr(t)}
	cfg := fmt.Sprintf(`source:
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
`, dir, set.maxLineBytes, set.syncInterval, set.maxInflightBytes, sinkName, s.listen, set.batchEvents)
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cleanup)
	return s
}

func (s *shipper) logDir() string     { return filepath.Join(s.dir, "logs") }
func (s *shipper) outPath() string    { return filepath.Join(s.dir, "state", "out.ndjson") }
func (s *shipper) deadLetter() string { return filepath.Join(s.dir, "state", "dead-letter.ndjson") }
func (s *shipper) positions() string  { return filepath.Join(s.dir, "state", "positions.json") }

// freeAddr returns a loopback address nobody listens on at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs `audit-shipper run` and returns without waiting for it to be
// up: callers that need it up call waitUp.
func (s *shipper) start() {
	s.t.Helper()
	if s.running() {
		s.t.Fatal("harness: start while the shipper runs")
	}
	s.runs++
	logPath := filepath.Join(s.dir, fmt.Sprintf("shipper-%02d.log", s.runs))
	logFile, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	s.logFiles = append(s.logFiles, logPath)
	cmd := exec.Command(binary, "run", "--config", s.config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		s.t.Fatalf("starting %s: %v", binary, err)
	}
	logFile.Close()
	s.cmd, s.done, s.started = cmd, make(chan struct{}), time.Now()
	go func(done chan struct{}) {
		cmd.Wait()
		close(done)
	}(s.done)
}

func (s *shipper) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// waitUp waits until /healthz answers 200.
func (s *shipper) waitUp() {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if !s.running() {
			s.t.Fatalf("the shipper exited at start (%v); its log:\n%s", s.cmd.ProcessState, s.logTail(20))
		}
		resp, err := http.Get("http://" + s.listen + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("/healthz on %s did not answer 200 within 15s (last error %v); the shipper's log:\n%s", s.listen, err, s.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and requires exit 0 within the shutdown timeout plus
// a margin.
func (s *shipper) stop() {
	s.t.Helper()
	if !s.running() {
		s.t.Fatalf("harness: the shipper is not running to be stopped (it exited: %v); its log:\n%s", s.cmd.ProcessState, s.logTail(20))
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Fatalf("the shipper did not exit within 30s of SIGTERM (shutdown.timeout is 20s); its log:\n%s", s.logTail(20))
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Fatalf("the shipper exited with %v after SIGTERM, want exit 0; its log:\n%s", s.cmd.ProcessState, s.logTail(20))
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *shipper) kill() {
	s.t.Helper()
	if !s.running() {
		s.t.Fatalf("the shipper died before it was killed (%v); its log:\n%s", s.cmd.ProcessState, s.logTail(20))
	}
	s.cmd.Process.Kill()
	<-s.done
}

func (s *shipper) cleanup() {
	if s.running() {
		s.cmd.Process.Kill()
		<-s.done
	}
	if s.t.Failed() && len(s.logFiles) > 0 {
		s.t.Logf("the last shipper log (%s) ends with:\n%s", s.logFiles[len(s.logFiles)-1], s.logTail(30))
	}
}

// logTail returns the last n lines of the latest run's log or, when the
// process panicked or died of a fatal error, n lines from there.
func (s *shipper) logTail(n int) string {
	if len(s.logFiles) == 0 {
		return "(no log)"
	}
	b, err := os.ReadFile(s.logFiles[len(s.logFiles)-1])
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			return strings.Join(lines[i:min(len(lines), i+n)], "\n")
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// alive fails the test when the shipper exited without being told to.
func (s *shipper) alive() {
	s.t.Helper()
	if s.cmd != nil && !s.running() {
		s.t.Fatalf("the shipper exited by itself (%v); its log:\n%s", s.cmd.ProcessState, s.logTail(30))
	}
}

// logRecords returns every JSON log record of every run whose msg is msg.
func (s *shipper) logRecords(msg string) []map[string]any {
	s.t.Helper()
	var recs []map[string]any
	for _, path := range s.logFiles {
		f, err := os.Open(path)
		if err != nil {
			s.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16*megabyte)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(msg)) {
				continue
			}
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				s.t.Errorf("%s: a log line is not JSON (log.format is json): %v: %s", path, err, sc.Bytes())
				continue
			}
			if rec["msg"] == msg {
				recs = append(recs, rec)
			}
		}
		f.Close()
	}
	return recs
}

// noLossReported fails the test when the shipper reported a generation
// deleted before it was shipped: in tests where lumberjack keeps every
// backup, that is a false alarm.
func (s *shipper) noLossReported() {
	s.t.Helper()
	recs := s.logRecords(lostMsg)
	if len(recs) > 0 {
		s.t.Errorf("the shipper logged %d times %q, though no generation was deleted; the first: %v", len(recs), lostMsg, recs[0])
	}
}

// levelMsgs counts the log records at level (ERROR, WARN) over every run,
// by message.
func (s *shipper) levelMsgs(level string) map[string]int {
	msgs := make(map[string]int)
	for _, path := range s.logFiles {
		b, _ := os.ReadFile(path)
		for _, line := range bytes.Split(b, []byte("\n")) {
			if !bytes.Contains(line, []byte(`"level":"`+level+`"`)) {
				continue
			}
			var rec struct{ Msg string }
			json.Unmarshal(line, &rec)
			msgs[rec.Msg]++
		}
	}
	return msgs
}

// metrics are one scrape of /metrics.
type metrics map[string]*dto.MetricFamily

func (s *shipper) scrape() (metrics, error) {
	resp, err := http.Get("http://" + s.listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	return fams, nil
}

func (s *shipper) mustScrape() metrics {
	s.t.Helper()
	m, err := s.scrape()
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// value sums the samples of name whose labels include every pair of
// labels (name, value, name, value...); ok is false when the metric is
// missing or no sample matches.
func (m metrics) value(name string, labels ...string) (sum float64, ok bool) {
	fam := m[name]
	if fam == nil {
		return 0, false
	}
	for _, mt := range fam.Metric {
		if !hasLabels(mt, labels) {
			continue
		}
		ok = true
		switch {
		case mt.Counter != nil:
			sum += mt.Counter.GetValue()
		case mt.Gauge != nil:
			sum += mt.Gauge.GetValue()
		case mt.Untyped != nil:
			sum += mt.Untyped.GetValue()
		}
	}
	return sum, ok
}

func hasLabels(mt *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range mt.Label {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// sinkValue is value for the test's sink, failing the test when the metric
// is missing.
func (m metrics) sinkValue(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := m.value(name, append([]string{"sink", sinkName}, labels...)...)
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
		s.alive()
		m, err := s.scrape()
		if err == nil {
			v, ok := m.value(name, "sink", sinkName)
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
