package loki

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// loadSink loads a configuration file whose only sink is a loki sink with
// the given keys (YAML lines, without indentation), as `audit-shipper run`
// would, and returns that entry.
func loadSink(t testing.TB, keys string) *config.Sink {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("source:\n  path: " + filepath.Join(dir, "audit.log") + "\n")
	b.WriteString("  positions_file: " + filepath.Join(dir, "positions.json") + "\n")
	b.WriteString("dead_letter:\n  path: " + filepath.Join(dir, "dead-letter.ndjson") + "\n")
	b.WriteString("sinks:\n  - name: loki\n    type: loki\n")
	for _, l := range strings.Split(strings.TrimSpace(keys), "\n") {
		b.WriteString("    " + l + "\n")
	}
	path := filepath.Join(dir, "audit-shipper.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("loading\n%s: %v", b.String(), err)
	}
	return &c.Sinks[0]
}

// testEnv is a sinks.Env with its own registry and a log the test can read.
type testEnv struct {
	sinks.Env
	reg *prometheus.Registry
	log *bytes.Buffer
}

func newEnv() *testEnv {
	reg := prometheus.NewRegistry()
	var log bytes.Buffer
	return &testEnv{
		Env: sinks.Env{
			Name:       "loki",
			Logger:     slog.New(slog.NewTextHandler(&log, nil)),
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"sink": "loki"}, reg),
		},
		reg: reg,
		log: &log,
	}
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

// records returns n corpus events as the shipper hands them to a sink,
// with stageTimestamps from start on.
func records(t testing.TB, seed int64, n int, start time.Time) []sinks.Record {
	t.Helper()
	g := corpus.New(corpus.Options{Seed: seed, Start: start})
	var p parse.Parser
	recs := make([]sinks.Record, n)
	for i := range recs {
		line := g.Next(nil)
		ev, err := p.Parse(line)
		if err != nil {
			t.Fatalf("corpus event %d does not parse: %v\n%s", i, err, line)
		}
		recs[i] = sinks.Record{
			Line:         line,
			AuditID:      strings.Clone(ev.AuditID),
			Stage:        strings.Clone(ev.Stage),
			StageTime:    ev.StageTime,
			ReceivedTime: ev.RequestReceived,
		}
	}
	return recs
}

// discard reads and drops a request body; fakes use it before answering.
func discard(r io.Reader) { _, _ = io.Copy(io.Discard, r) }
