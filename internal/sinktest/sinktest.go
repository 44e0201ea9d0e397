// Package sinktest holds what the tests of every sink type need: a sink
// entry loaded from YAML as the binary loads it, an Env with a registry and
// a log the test can read, and corpus events as the shipper hands them over.
package sinktest

import (
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

// LoadConfig loads a configuration file whose only sink is named name, of
// type typ, with the given keys (YAML lines, without indentation).
func LoadConfig(t testing.TB, name, typ, keys string) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("source:\n  path: " + filepath.Join(dir, "audit.log") + "\n")
	b.WriteString("  positions_file: " + filepath.Join(dir, "positions.json") + "\n")
	b.WriteString("dead_letter:\n  path: " + filepath.Join(dir, "dead-letter.ndjson") + "\n")
	b.WriteString("sinks:\n  - name: " + name + "\n    type: " + typ + "\n")
	for l := range strings.SplitSeq(strings.TrimSpace(keys), "\n") {
		b.WriteString("    " + l + "\n")
	}
	path := filepath.Join(dir, "audit-shipper.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(path)
}

// LoadSink is LoadConfig's sink entry, failing the test on an error.
func LoadSink(t testing.TB, name, typ, keys string) *config.Sink {
	t.Helper()
	c, err := LoadConfig(t, name, typ, keys)
	if err != nil {
		t.Fatalf("loading a %s sink with\n%s\n: %v", typ, keys, err)
	}
	return &c.Sinks[0]
}

// Env is a sinks.Env with its own registry and a log the test can read.
type Env struct {
	sinks.Env
	Reg *prometheus.Registry
	Log *SyncBuffer
}

// NewEnv returns an Env for a sink named name.
func NewEnv(name string) *Env {
	reg := prometheus.NewRegistry()
	log := &SyncBuffer{}
	return &Env{
		Env: sinks.Env{
			Name:       name,
			Logger:     slog.New(slog.NewTextHandler(log, nil)),
			Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"sink": name}, reg),
		},
		Reg: reg,
		Log: log,
	}
}

// Counter reads the series of counter name whose label has value (any
// series when label is empty).
func (e *Env) Counter(t testing.TB, name, label, value string) float64 {
	t.Helper()
	mfs, err := e.Reg.Gather()
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

// Record builds the Record the shipper would hand over for line.
func Record(t testing.TB, p *parse.Parser, line []byte) sinks.Record {
	t.Helper()
	ev, err := p.Parse(line)
	if err != nil {
		t.Fatalf("event does not parse: %v\n%s", err, line)
	}
	c, _, _ := ev.Clone(line, nil, nil)
	return sinks.Record{
		Line:         line,
		AuditID:      c.AuditID,
		Stage:        c.Stage,
		StageTime:    c.StageTime,
		ReceivedTime: c.RequestReceived,
		Event:        &c,
	}
}

// Records returns n corpus events with stageTimestamps from start on.
func Records(t testing.TB, seed int64, n int, start time.Time) []sinks.Record {
	t.Helper()
	g := corpus.New(corpus.Options{Seed: seed, Start: start})
	var p parse.Parser
	recs := make([]sinks.Record, n)
	for i := range recs {
		recs[i] = Record(t, &p, g.Next(nil))
	}
	return recs
}

// SyncBuffer collects a log written from several goroutines.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *SyncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *SyncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
