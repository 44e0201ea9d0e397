package elasticsearch

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// loadSink loads a configuration file whose only sink is an elasticsearch
// sink with the given keys (YAML lines, without indentation), as
// `audit-shipper run` would, and returns that entry.
func loadSink(t testing.TB, keys string) *config.Sink {
	t.Helper()
	c, err := loadConfig(t, keys)
	if err != nil {
		t.Fatal(err)
	}
	return &c.Sinks[0]
}

func loadConfig(t testing.TB, keys string) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("source:\n  path: " + filepath.Join(dir, "audit.log") + "\n")
	b.WriteString("  positions_file: " + filepath.Join(dir, "positions.json") + "\n")
	b.WriteString("dead_letter:\n  path: " + filepath.Join(dir, "dead-letter.ndjson") + "\n")
	b.WriteString("sinks:\n  - name: search\n    type: elasticsearch\n")
	for _, l := range strings.Split(strings.TrimSpace(keys), "\n") {
		b.WriteString("    " + l + "\n")
	}
	path := filepath.Join(dir, "audit-shipper.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(path)
}

// testEnv is a sinks.Env with its own registry and a log the test can read.
type testEnv struct {
	sinks.Env
	reg *prometheus.Registry
	log *syncWriter
}

func newEnv() *testEnv {
	reg := prometheus.NewRegistry()
	log := &syncWriter{}
	return &testEnv{
		Env: sinks.Env{
			Name:       "search",
			Logger:     slog.New(slog.NewTextHandler(log, nil)),
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"sink": "search"}, reg),
		},
		reg: reg,
		log: log,
	}
}

// counter reads one series of a counter the sink registered.
func (e *testEnv) counter(t testing.TB, name, label, value string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

// newSink builds a sink from keys, failing the test on a configuration error.
func newSink(t testing.TB, keys string) (*Sink, *testEnv) {
	t.Helper()
	env := newEnv()
	s, err := New(loadSink(t, keys), env.Env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, env
}

// record builds the Record the shipper would hand over for line.
func record(t testing.TB, p *parse.Parser, line []byte) sinks.Record {
	t.Helper()
	ev, err := p.Parse(line)
	if err != nil {
		t.Fatalf("event does not parse: %v\n%s", err, line)
	}
	return sinks.Record{
		Line:         line,
		AuditID:      strings.Clone(ev.AuditID),
		Stage:        strings.Clone(ev.Stage),
		StageTime:    ev.StageTime,
		ReceivedTime: ev.RequestReceived,
	}
}

// records returns n corpus events with stageTimestamps from start on.
func records(t testing.TB, seed int64, n int, start time.Time) []sinks.Record {
	t.Helper()
	g := corpus.New(corpus.Options{Seed: seed, Start: start})
	var p parse.Parser
	recs := make([]sinks.Record, n)
	for i := range recs {
		recs[i] = record(t, &p, g.Next(nil))
	}
	return recs
}

// fileRecords reads testdata events, one per line.
func fileRecords(t testing.TB, name string) []sinks.Record {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var p parse.Parser
	var recs []sinks.Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		recs = append(recs, record(t, &p, bytes.Clone(sc.Bytes())))
	}
	return recs
}

// syncWriter collects a log written from several goroutines.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
