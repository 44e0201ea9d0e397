package faults

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/faultproxy"
	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
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
	*shipperproc.Proc
	t     *testing.T
	opts  options
	sinks []sink

	samples *sampler
	// ends is how each run ended, for the duplicate bound; heldAtStart
	// is what each sink with a count held when the running process
	// started.
	ends        []runEnd
	heldAtStart map[string]int
	kills       int
}

func newShipper(t *testing.T, opts options, sinks ...sink) *shipper {
	t.Helper()
	s := &shipper{Proc: shipperproc.New(t, binary, shipperproc.Options{Credential: opts.user}), t: t, sinks: sinks}
	dir := s.Dir()
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
	s.opts = opts
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
	t.Cleanup(s.samples.stop)
	return s
}

func (s *shipper) writeConfig() {
	var entries strings.Builder
	for _, k := range s.sinks {
		entries.WriteString(strings.ReplaceAll(k.yaml, stateDirVar, s.stateDir()))
	}
	s.WriteConfig(fmt.Appendf(nil, `source:
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
`, s.opts.logPath, s.opts.positions, s.opts.maxLine, s.opts.syncInterval, s.deadLetter(), s.opts.maxInflight, entries.String(), s.Listen()))
}

func (s *shipper) logDir() string     { return filepath.Dir(s.opts.logPath) }
func (s *shipper) stateDir() string   { return filepath.Join(s.Dir(), "state") }
func (s *shipper) deadLetter() string { return filepath.Join(s.Dir(), "state", "dead-letter.ndjson") }

// out is the output of the file sink name.
func (s *shipper) out(name string) string { return filepath.Join(s.stateDir(), name+".ndjson") }

// Start records what each sink with a count holds, for the duplicate
// bound, and starts the shipper.
func (s *shipper) Start() {
	s.t.Helper()
	s.heldAtStart = make(map[string]int)
	for _, k := range s.sinks {
		if k.held != nil {
			s.heldAtStart[k.name] = k.held()
		}
	}
	s.Proc.Start()
}

// Stop stops the shipper with SIGTERM, keeping how its run ended.
func (s *shipper) Stop() {
	s.t.Helper()
	end := s.ending(false)
	s.Proc.Stop()
	s.ends = append(s.ends, end)
}

// Kill kills the shipper with SIGKILL, keeping how its run ended and what
// it delivered for the duplicate bound.
func (s *shipper) Kill() {
	s.t.Helper()
	end := s.ending(true)
	s.Proc.Kill()
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
	s.t.Logf("SIGKILL %d after %s of run %d", s.kills, time.Since(s.Started()).Round(time.Millisecond), end.run)
}

// restart kills the shipper and starts it again at once.
func (s *shipper) restart() {
	s.t.Helper()
	s.Kill()
	s.Start()
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// logSummary logs how often the shipper logged each error and warning.
func (s *shipper) logSummary() {
	s.t.Helper()
	for _, level := range []string{"ERROR", "WARN"} {
		for msg, n := range s.LevelMsgs(level) {
			s.t.Logf("the shipper logged %d times at %s: %s", n, level, msg)
		}
	}
}

// waitFor polls the shipper's metrics until cond holds, or fails the test
// after timeout saying what was awaited.
func (s *shipper) waitFor(what string, timeout time.Duration, cond func(shipperproc.Metrics) bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.Alive()
		m, err := s.Scrape()
		if err == nil && cond(m) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waited %s for %s (last scrape error %v); the shipper's log:\n%s", timeout, what, err, s.LogTail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// caughtUp reports whether every sink of s has the live file open and
// nothing on disk left to acknowledge.
func (s *shipper) caughtUp(m shipperproc.Metrics) bool {
	for _, k := range s.sinks {
		lag, ok1 := m.Value("audit_shipper_position_lag_bytes", "sink", k.name)
		inflight, ok2 := m.Value("audit_shipper_inflight_bytes", "sink", k.name)
		open, ok3 := m.Value("audit_shipper_files_open", "sink", k.name)
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
	s.waitFor("every sink to acknowledge everything on disk for a second (the live file open, position lag and in-flight bytes 0)", timeout, func(m shipperproc.Metrics) bool {
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
	resp, err := http.Get("http://" + s.Listen() + "/readyz")
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
		run, running := sp.s.Current()
		if !running {
			continue
		}
		m, err := sp.s.Scrape()
		if err != nil {
			continue
		}
		sp.add(sp.s.sample(m, run))
	}
}

func (s *shipper) sample(m shipperproc.Metrics, run int) sample {
	smp := sample{at: time.Now(), run: run, shipped: map[string]float64{}, lag: map[string]float64{}, retry: map[string]float64{}, noAnswer: map[string]float64{}}
	smp.heap, _ = m.Value("go_memstats_heap_inuse_bytes")
	smp.rss, _ = m.Value("process_resident_memory_bytes")
	smp.goroutines, _ = m.Value("go_goroutines")
	for _, k := range s.sinks {
		smp.shipped[k.name], _ = m.Value("audit_shipper_events_shipped_total", "sink", k.name)
		smp.lag[k.name], _ = m.Value("audit_shipper_position_lag_bytes", "sink", k.name)
		smp.retry[k.name], _ = m.Value("audit_shipper_send_retries_total", "sink", k.name)
		loki, _ := m.Value("audit_shipper_loki_requests_total", "sink", k.name, "code", "error")
		es, _ := m.Value("audit_shipper_elasticsearch_bulk_requests_total", "sink", k.name, "code", "error")
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
	run, _ := s.Current()
	m, err := s.Scrape()
	var last sample
	if err == nil {
		last = s.sample(m, run)
		s.samples.add(last)
	} else if smps := s.samples.between(s.Started(), time.Now()); len(smps) > 0 {
		last = smps[len(smps)-1]
	}
	return runEnd{run: run, killed: killed, last: last}
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
