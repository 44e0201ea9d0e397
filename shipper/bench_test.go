package shipper_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/shipper"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// benchCorpus is a plain audit log of about 128 MiB, written once per
// process.
var benchCorpus = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "audit-shipper-bench-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "audit.log")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	g := corpus.New(corpus.Options{Seed: 11})
	var line []byte
	for written := 0; written < 128<<20; {
		line = append(g.Next(line[:0]), '\n')
		w.Write(line)
		written += len(line)
	}
	return path, w.Flush()
})

func corpusFile(b *testing.B) (path string, size int64, events int64) {
	path, err := benchCorpus()
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		events++
		size += int64(len(sc.Bytes())) + 1
	}
	return path, size, events
}

// BenchmarkReadParse is the floor of BenchmarkShip: reading the same file
// line by line and parsing each line, nothing else.
func BenchmarkReadParse(b *testing.B) {
	path, size, _ := corpusFile(b)
	b.SetBytes(size)
	b.ReportAllocs()
	var p parse.Parser
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			if _, err := p.Parse(sc.Bytes()); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

// BenchmarkShip ships the whole file through one pipeline (cursor, parse,
// batching, acknowledgement, positions) into a sink that only counts.
func BenchmarkShip(b *testing.B) {
	path, size, events := corpusFile(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		dir := b.TempDir()
		cfg := config.Default()
		cfg.Source.Path = path
		cfg.Source.PositionsFile = filepath.Join(dir, "positions.json")
		cfg.DeadLetter.Path = filepath.Join(dir, "dead.ndjson")
		sc := cfg.Sinks[0]
		sc.Name = "bench"
		// The last, partial batch would wait max_wait for more lines: a
		// cost of the live file, not of the throughput measured here.
		sc.Batch.MaxWait = config.Duration(5 * time.Millisecond)
		sink := &nopSink{}
		s, err := shipper.New(cfg, []shipper.Sink{{Config: sc, Sink: sink}}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for sink.n.Load() < events {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// nopSink takes every batch and counts its records, nothing more.
type nopSink struct{ n atomic.Int64 }

func (s *nopSink) Send(_ context.Context, recs []sinks.Record) error {
	s.n.Add(int64(len(recs)))
	return nil
}
func (s *nopSink) Close() error { return nil }
