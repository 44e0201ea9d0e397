package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/audit-shipper/audit-shipper/internal/faultproxy"
	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

const mib = 1 << 20

// sink is one entry of the shipper's sinks list.
type sink struct {
	name, yaml string
	// maxEvents and requests are the entry's batch.max_events and
	// max_requests_in_flight: what one kill or one retry can duplicate.
	maxEvents, requests int
	// held counts the events the sink's server or file holds now, or is
	// nil; see dupBound.
	held func() int
	file bool
	// remote sinks can be stored to after the shipper died: a request it
	// sent whole can still be on its way (through a proxy's latency) or
	// being stored.
	remote bool
}

// settle is how long a remote sink's server is given, after a kill, to
// store what the killed shipper sent: the proxies' latency (250ms) and
// more.
const settle = time.Second

// countedBy returns k with the count of events its server holds.
func (k sink) countedBy(vl *vlogs.Server, t *testing.T) sink {
	k.held = func() int {
		vl.Flush(t)
		return vl.Count(t, "*")
	}
	k.remote = true
	return k
}

// Every remote sink gets second-scale timeouts and backoffs, so that
// faults of minutes can be compressed into seconds.
const (
	sinkTimeout = "2s"
	sinkRetry   = "retry: {min_backoff: 100ms, max_backoff: 1s}"
	sinkBatch   = "batch: {max_events: 100, max_bytes: 1MiB, max_wait: 200ms}"
	batchEvents = 100
)

// lokiSink pushes protobuf+snappy to the Loki endpoint of the
// VictoriaLogs at addr (host:port, maybe a proxy in front of it), keeping
// each line whole in _msg.
func lokiSink(name, addr string, extra ...string) sink {
	return sink{name: name, maxEvents: batchEvents, requests: 2, yaml: fmt.Sprintf(`  - name: %s
    type: loki
    url: http://%s/insert/loki/api/v1/push?disable_message_parsing=1
    encoding: protobuf
    cluster: faults
    node: cp-0
    timeout: %s
    %s
    %s
%s`, name, addr, sinkTimeout, sinkBatch, sinkRetry, indent(extra))}
}

// esSink sends bulk requests to the Elasticsearch endpoint of the
// VictoriaLogs at addr.
func esSink(name, addr string, extra ...string) sink {
	return sink{name: name, maxEvents: batchEvents, requests: 2, yaml: fmt.Sprintf(`  - name: %s
    type: elasticsearch
    addresses: [http://%s/insert/elasticsearch]
    headers: {VL-Time-Field: "@timestamp", VL-Msg-Field: requestURI, VL-Stream-Fields: "cluster,node"}
    cluster: faults
    node: cp-0
    timeout: %s
    %s
    %s
%s`, name, addr, sinkTimeout, sinkBatch, sinkRetry, indent(extra))}
}

// fileSink writes NDJSON to <state>/<name>.ndjson (shipper.out).
func fileSink(name string) sink {
	return sink{name: name, maxEvents: batchEvents, requests: 1, file: true, yaml: fmt.Sprintf(`  - name: %s
    type: file
    path: %s/%s.ndjson
    %s
`, name, stateDirVar, name, sinkBatch)}
}

// stateDirVar stands for the shipper's state directory in sink entries.
const stateDirVar = "${STATE_DIR}"

func indent(lines []string) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// options are the parts of the shipper's configuration scenarios vary.
type options struct {
	// logPath is source.path; default <dir>/logs/audit.log.
	logPath string
	// positions is source.positions_file; default <dir>/state/positions.json.
	positions    string
	maxLine      string
	maxInflight  string
	syncInterval time.Duration
	// user runs the shipper as this uid and gid instead of the test's.
	user *syscall.Credential
}

// shipper runs the binary under test, once or many times, over one
// configuration, samples its metrics all along, and keeps what a kill can
// duplicate.
type shipper struct {
	t      *testing.T
	dir    string
	opts   options
	sinks  []sink
	config string
	listen string

	runs     int
	logFiles []string
	cmd      *exec.Cmd
	done     chan struct{}
	started  time.Time

	samples *sampler
	// ends is how each run ended, for the duplicate bound; heldAtStart
	// is what each sink with a count held when the running process
	// started.
	ends        []runEnd
	heldAtStart map[string]int
	kills       int
}

// workDir makes a directory for one test that outlives it when it fails,
// so that its logs, positions and output can be read afterwards.
func workDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "audit-shipper-faults-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
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

func newShipper(t *testing.T, opts options, sinks ...sink) *shipper {
	t.Helper()
	dir := workDir(t)
	for _, d := range []string{"logs", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if opts.logPath == "" {
		opts.logPath = filepath.Join(dir, "logs", "audit.log")
	}
	if opts.positions == "" {
		opts.positions = filepath.Join(dir, "state", "positions.json")
	}
	if opts.maxLine == "" {
		opts.maxLine = "4MiB"
	}
	if opts.maxInflight == "" {
		opts.maxInflight = "4MiB"
	}
	if opts.syncInterval == 0 {
		opts.syncInterval = 500 * time.Millisecond
	}
	s := &shipper{t: t, dir: dir, opts: opts, sinks: sinks, config: filepath.Join(dir, "config.yaml"), listen: freeAddr(t)}
	for i, k := range s.sinks {
		if k.file {
			s.sinks[i].held = func() int {
				held, torn := fileHeld(t, s.out(k.name))
				n := torn
				for _, c := range held {
					n += c
				}
				return n
			}
		}
	}
	s.writeConfig()
	s.samples = newSampler(s)
	t.Cleanup(s.cleanup)
	return s
}

func (s *shipper) writeConfig() {
	var entries strings.Builder
	for _, k := range s.sinks {
		entries.WriteString(strings.ReplaceAll(k.yaml, stateDirVar, s.stateDir()))
	}
	cfg := fmt.Sprintf(`source:
  path: %s
  positions_file: %s
  start_at: beginning
  max_line_bytes: %s
  poll_interval: 250ms
  sync_interval: %s
dead_letter:
  path: %s
buffer:
  max_inflight_bytes: %s
rules:
  redact_secrets: false
sinks:
%smetrics:
  listen: %s
log: {level: info, format: json}
shutdown: {timeout: 10s}
`, s.opts.logPath, s.opts.positions, s.opts.maxLine, s.opts.syncInterval, s.deadLetter(), s.opts.maxInflight, entries.String(), s.listen)
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *shipper) logDir() string     { return filepath.Dir(s.opts.logPath) }
func (s *shipper) stateDir() string   { return filepath.Join(s.dir, "state") }
func (s *shipper) deadLetter() string { return filepath.Join(s.dir, "state", "dead-letter.ndjson") }

// out is the output of the file sink name.
func (s *shipper) out(name string) string { return filepath.Join(s.stateDir(), name+".ndjson") }

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
// up.
func (s *shipper) start() {
	s.t.Helper()
	if s.running() {
		s.t.Fatal("harness: start while the shipper runs")
	}
	run := s.runs + 1
	s.heldAtStart = make(map[string]int)
	for _, k := range s.sinks {
		if k.held != nil {
			s.heldAtStart[k.name] = k.held()
		}
	}
	logPath := filepath.Join(s.dir, fmt.Sprintf("shipper-%02d.log", run))
	logFile, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	s.logFiles = append(s.logFiles, logPath)
	cmd := exec.Command(binary, "run", "--config", s.config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if s.opts.user != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.opts.user}
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		s.t.Fatalf("starting %s: %v", binary, err)
	}
	logFile.Close()
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	// The sampler reads which run is up.
	s.samples.mu.Lock()
	s.runs, s.cmd, s.done, s.started = run, cmd, done, time.Now()
	s.samples.mu.Unlock()
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
	deadline := time.Now().Add(30 * time.Second)
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
			s.t.Fatalf("/healthz on %s did not answer 200 within 30s (last error %v); the shipper's log:\n%s", s.listen, err, s.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited waits up to d for the shipper to exit by itself and returns its
// exit code, or fails the test.
func (s *shipper) exited(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		s.t.Fatalf("the shipper still runs %s after its start; its log:\n%s", d, s.logTail(20))
		return -1
	}
}

// stop sends SIGTERM and requires exit 0.
func (s *shipper) stop() {
	s.t.Helper()
	if !s.running() {
		s.t.Fatalf("harness: the shipper is not running to be stopped (it exited: %v); its log:\n%s", s.cmd.ProcessState, s.logTail(20))
	}
	end := s.ending(false)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		s.t.Fatalf("the shipper did not exit within 30s of SIGTERM (shutdown.timeout is 10s); its log:\n%s", s.logTail(20))
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		s.t.Fatalf("the shipper exited with %v after SIGTERM, want exit 0; its log:\n%s", s.cmd.ProcessState, s.logTail(20))
	}
	s.ends = append(s.ends, end)
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *shipper) kill() {
	s.t.Helper()
	if !s.running() {
		s.t.Fatalf("the shipper died before it was killed (%v); its log:\n%s", s.cmd.ProcessState, s.logTail(20))
	}
	end := s.ending(true)
	s.cmd.Process.Kill()
	<-s.done
	end.posSaved = modTime(s.opts.positions)
	for _, k := range s.sinks {
		if k.remote && k.held != nil {
			time.Sleep(settle)
			break
		}
	}
	end.heldByRun = make(map[string]int)
	for _, k := range s.sinks {
		if k.held != nil {
			end.heldByRun[k.name] = k.held() - s.heldAtStart[k.name]
		}
	}
	s.ends = append(s.ends, end)
	s.kills++
	s.t.Logf("SIGKILL %d after %s of run %d", s.kills, time.Since(s.started).Round(time.Millisecond), s.runs)
}

// restart kills the shipper and starts it again at once.
func (s *shipper) restart() {
	s.t.Helper()
	s.kill()
	s.start()
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func (s *shipper) cleanup() {
	if s.running() {
		s.cmd.Process.Kill()
		<-s.done
	}
	s.samples.stop()
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

// logRecords returns every JSON log record of every run whose msg
// contains msg.
func (s *shipper) logRecords(msg string) []map[string]any {
	s.t.Helper()
	var recs []map[string]any
	for _, path := range s.logFiles {
		f, err := os.Open(path)
		if err != nil {
			s.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16*mib)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(msg)) {
				continue
			}
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				continue // not a log record: the line quotes msg
			}
			if m, _ := rec["msg"].(string); strings.Contains(m, msg) {
				recs = append(recs, rec)
			}
		}
		f.Close()
	}
	return recs
}

// levelMsgs counts the log records at level (ERROR, WARN) over every run,
// by message.
func (s *shipper) levelMsgs(level string) map[string]int {
	msgs := make(map[string]int)
	for _, path := range s.logFiles {
		b, _ := os.ReadFile(path)
		for line := range bytes.SplitSeq(b, []byte("\n")) {
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

// logSummary logs how often the shipper logged each error and warning.
func (s *shipper) logSummary() {
	s.t.Helper()
	for _, level := range []string{"ERROR", "WARN"} {
		for msg, n := range s.levelMsgs(level) {
			s.t.Logf("the shipper logged %d times at %s: %s", n, level, msg)
		}
	}
}

// metrics are one scrape of /metrics.
type metrics map[string]*dto.MetricFamily

func scrape(listen string) (metrics, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + listen + "/metrics")
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
	m, err := scrape(s.listen)
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// value sums the samples of name whose labels include every pair of
// labels (name, value, name, value...); ok is false when none matches.
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

// waitFor polls the shipper's metrics until cond holds, or fails the test
// after timeout saying what was awaited.
func (s *shipper) waitFor(what string, timeout time.Duration, cond func(metrics) bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.alive()
		m, err := scrape(s.listen)
		if err == nil && cond(m) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waited %s for %s (last scrape error %v); the shipper's log:\n%s", timeout, what, err, s.logTail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// caughtUp reports whether every sink of s has the live file open and
// nothing on disk left to acknowledge.
func (s *shipper) caughtUp(m metrics) bool {
	for _, k := range s.sinks {
		lag, ok1 := m.value("audit_shipper_position_lag_bytes", "sink", k.name)
		inflight, ok2 := m.value("audit_shipper_inflight_bytes", "sink", k.name)
		open, ok3 := m.value("audit_shipper_files_open", "sink", k.name)
		if !ok1 || !ok2 || !ok3 || lag != 0 || inflight != 0 || open != 1 {
			return false
		}
	}
	return true
}

// waitCaughtUp waits until every sink has acknowledged everything on disk,
// and has for a second: the lag is measured when a reader wakes (a change
// notification, or poll_interval, 250ms), so right after a write it can
// still say 0.
func (s *shipper) waitCaughtUp(timeout time.Duration) {
	s.t.Helper()
	var since time.Time
	s.waitFor("every sink to acknowledge everything on disk for a second (the live file open, position lag and in-flight bytes 0)", timeout, func(m metrics) bool {
		if !s.caughtUp(m) {
			since = time.Time{}
			return false
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) >= time.Second
	})
}

// readyz returns /readyz's status code and body.
func (s *shipper) readyz() (int, string) {
	resp, err := http.Get("http://" + s.listen + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// sample is one scrape of the figures the scenarios follow.
type sample struct {
	at                  time.Time
	run                 int
	heap, rss           float64
	goroutines          float64
	shipped, lag, retry map[string]float64
	// noAnswer counts the sink's requests that got no answer: refused,
	// reset, timed out.
	noAnswer map[string]float64
}

// sampler scrapes the shipper's metrics every 100ms while it runs.
type sampler struct {
	s    *shipper
	quit chan struct{}
	done chan struct{}

	mu  sync.Mutex
	all []sample
}

func newSampler(s *shipper) *sampler {
	sp := &sampler{s: s, quit: make(chan struct{}), done: make(chan struct{})}
	go sp.loop()
	return sp
}

func (sp *sampler) loop() {
	defer close(sp.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-sp.quit:
			return
		case <-tick.C:
		}
		sp.mu.Lock()
		run, done := sp.s.runs, sp.s.done
		sp.mu.Unlock()
		if done == nil {
			continue
		}
		select {
		case <-done:
			continue
		default:
		}
		m, err := scrape(sp.s.listen)
		if err != nil {
			continue
		}
		sp.add(sp.s.sample(m, run))
	}
}

func (s *shipper) sample(m metrics, run int) sample {
	smp := sample{at: time.Now(), run: run, shipped: map[string]float64{}, lag: map[string]float64{}, retry: map[string]float64{}, noAnswer: map[string]float64{}}
	smp.heap, _ = m.value("go_memstats_heap_inuse_bytes")
	smp.rss, _ = m.value("process_resident_memory_bytes")
	smp.goroutines, _ = m.value("go_goroutines")
	for _, k := range s.sinks {
		smp.shipped[k.name], _ = m.value("audit_shipper_events_shipped_total", "sink", k.name)
		smp.lag[k.name], _ = m.value("audit_shipper_position_lag_bytes", "sink", k.name)
		smp.retry[k.name], _ = m.value("audit_shipper_send_retries_total", "sink", k.name)
		loki, _ := m.value("audit_shipper_loki_requests_total", "sink", k.name, "code", "error")
		es, _ := m.value("audit_shipper_elasticsearch_bulk_requests_total", "sink", k.name, "code", "error")
		smp.noAnswer[k.name] = loki + es
	}
	return smp
}

func (sp *sampler) add(smp sample) {
	sp.mu.Lock()
	sp.all = append(sp.all, smp)
	sp.mu.Unlock()
}

func (sp *sampler) stop() {
	select {
	case <-sp.quit:
	default:
		close(sp.quit)
	}
	<-sp.done
}

// between returns the samples taken in [from, to).
func (sp *sampler) between(from, to time.Time) []sample {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var out []sample
	for _, smp := range sp.all {
		if !smp.at.Before(from) && smp.at.Before(to) {
			out = append(out, smp)
		}
	}
	return out
}

// peak returns the largest heap and RSS sampled so far.
func (sp *sampler) peak() (heap, rss float64) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for _, smp := range sp.all {
		heap, rss = max(heap, smp.heap), max(rss, smp.rss)
	}
	return heap, rss
}

// shippedBefore returns what sink had acknowledged in run by the last
// sample at or before t: no more than it had at t.
func (sp *sampler) shippedBefore(run int, sink string, t time.Time) float64 {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var v float64
	for _, smp := range sp.all {
		if smp.run == run && !smp.at.After(t) {
			v = smp.shipped[sink]
		}
	}
	return v
}

// runEnd is how one run of the shipper ended.
type runEnd struct {
	run    int
	killed bool
	last   sample
	// posSaved is when the positions file was last written before a kill.
	posSaved time.Time
	// heldByRun is how many events a killed run added to each sink with a
	// count.
	heldByRun map[string]int
}

// ending scrapes the shipper right before it is stopped or killed.
func (s *shipper) ending(killed bool) runEnd {
	m, err := scrape(s.listen)
	var last sample
	if err == nil {
		last = s.sample(m, s.runs)
		s.samples.add(last)
	} else if smps := s.samples.between(s.started, time.Now()); len(smps) > 0 {
		last = smps[len(smps)-1]
	}
	return runEnd{run: s.runs, killed: killed, last: last}
}

// saveMargin: the positions the shipper saves are taken a moment before
// the file is written (and gets its modification time).
const saveMargin = 250 * time.Millisecond

// dupBound is the most events sink can have received twice over every run
// so far:
//   - each kill replays what lies past the positions saved last before
//     it: at most what the killed run delivered (counted at the sink
//     after the kill when it can be, else the acknowledged count scraped
//     before the kill, plus the batches in flight and one more for what
//     was acknowledged between the scrape and the kill) less what it had
//     acknowledged when those positions were taken;
//   - each of the interrupted requests (the scenario counts those its
//     faults can have cut off after the server took them: a reset, a
//     blackhole or a cut catching a request in flight, a timeout) may
//     have been stored and is sent again.
func (s *shipper) dupBound(sinkName string, interrupted int) int {
	var k sink
	for _, c := range s.sinks {
		if c.name == sinkName {
			k = c
		}
	}
	bound := interrupted * k.maxEvents
	for _, e := range s.ends {
		if !e.killed {
			continue
		}
		saved := 0.0
		if !e.posSaved.IsZero() {
			saved = s.samples.shippedBefore(e.run, sinkName, e.posSaved.Add(-saveMargin))
		}
		delivered, counted := e.heldByRun[sinkName]
		if !counted {
			delivered = int(e.last.shipped[sinkName]) + (k.requests+1)*k.maxEvents
		}
		bound += max(delivered-int(saved), 0)
	}
	return bound
}

// noAnswers is how many of sink's requests got no answer (refused, reset,
// timed out), over every run so far.
func (s *shipper) noAnswers(sinkName string) int {
	n := 0.0
	for _, e := range s.ends {
		n += e.last.noAnswer[sinkName]
	}
	return int(n)
}

// startProxy puts a fault proxy in front of addr for the test's duration.
func startProxy(t *testing.T, addr string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func hostPort(vl *vlogs.Server) string { return strings.TrimPrefix(vl.URL(), "http://") }

// randomIn returns a duration drawn uniformly from [from, to).
func randomIn(rng *rand.Rand, from, to time.Duration) time.Duration {
	return from + time.Duration(rng.Int64N(int64(to-from)))
}

func peakHeap(smps []sample) float64 {
	var peak float64
	for _, smp := range smps {
		peak = max(peak, smp.heap)
	}
	return peak
}

// series describes the heap and goroutines sampled, one sample every
// step: "12s:20.1MiB/31 ...".
func series(smps []sample, step time.Duration) string {
	var b strings.Builder
	var last time.Time
	for _, smp := range smps {
		if smp.at.Sub(last) < step {
			continue
		}
		last = smp.at
		fmt.Fprintf(&b, "%s/%d ", mibs(smp.heap), int(smp.goroutines))
	}
	return strings.TrimSpace(b.String())
}

// noLoss fails the test when the shipper reported a generation deleted
// before it was shipped: every scenario but one keeps every backup.
func noLoss(t *testing.T, s *shipper) {
	t.Helper()
	if recs := s.logRecords(lostMsg); len(recs) > 0 {
		t.Errorf("the shipper logged %d times %q, though no generation was deleted; the first: %v", len(recs), lostMsg, recs[0])
	}
}

const lostMsg = "audit log generation deleted before it was shipped"
