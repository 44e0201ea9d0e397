package shipper_test

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/shipper"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// tally sums what a sink received in constant memory: a count and an
// order-independent hash of auditID and stage, so that a test holding
// hundreds of thousands of events does not weigh on the heap it measures.
type tally struct {
	n   atomic.Int64
	sum atomic.Uint64
}

func (t *tally) add(auditID, stage string) {
	h := fnv.New64a()
	io.WriteString(h, auditID)
	io.WriteString(h, stage)
	t.sum.Add(h.Sum64())
	t.n.Add(1)
}

// countingSink accepts everything and tallies it.
type countingSink struct{ got tally }

func (s *countingSink) Send(_ context.Context, recs []sinks.Record) error {
	for _, r := range recs {
		s.got.add(r.AuditID, r.Stage)
	}
	return nil
}
func (s *countingSink) Close() error { return nil }

// gatedSink refuses batches until its gate opens; then it accepts and
// tallies. With onlyFirst it refuses just the first batch it is given (a
// request that keeps timing out while the ones after it go through), so
// that the batches after it are delivered but cannot be acknowledged.
type gatedSink struct {
	onlyFirst bool
	open      atomic.Bool
	refusals  atomic.Int64
	first     atomic.Pointer[string]
	got       tally
}

func (s *gatedSink) Send(_ context.Context, recs []sinks.Record) error {
	id := recs[0].AuditID + recs[0].Stage
	s.first.CompareAndSwap(nil, &id)
	if !s.open.Load() && (!s.onlyFirst || *s.first.Load() == id) {
		s.refusals.Add(1)
		return sinks.Retryable(errors.New("sink is down"), 0)
	}
	for _, r := range recs {
		s.got.add(r.AuditID, r.Stage)
	}
	return nil
}
func (s *gatedSink) Close() error { return nil }

// liveHeap samples the live heap (as of the last GC) until stopped and
// keeps the peak.
func liveHeap(stop <-chan struct{}) (peak func() uint64) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var mu sync.Mutex
	var max uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			mu.Lock()
			max = maxU(max, sample[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return max
	}
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// TestBackpressureAndIsolation: with a backlog of over 1 GB on disk, a sink
// that accepts nothing must not lift the heap above the in-flight bounds
// plus a constant, nor slow the sink that works; when it comes back, it
// receives everything too.
func TestBackpressureAndIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 1 GB backlog")
	}
	dir := t.TempDir()
	live := filepath.Join(dir, "audit", "audit.log")

	// The backlog, rotated as kube-apiserver rotates it.
	const backlog = 1 << 30
	var want tally
	var written int64
	w := &lumberjack.Logger{Filename: live, MaxSize: 100, MaxBackups: 1000}
	g := corpus.New(corpus.Options{Seed: 7, Start: time.Now().Add(-time.Hour)})
	var line []byte
	var p parse.Parser
	for written < backlog {
		line = append(g.Next(line[:0]), '\n')
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
		written += int64(len(line))
		ev, err := p.Parse(line[:len(line)-1])
		if err != nil {
			t.Fatalf("the corpus wrote a line that does not parse: %v", err)
		}
		want.add(ev.AuditID, ev.Stage)
	}
	w.Close()

	for _, onlyFirst := range []bool{false, true} {
		name := "sink down"
		if onlyFirst {
			name = "one batch stuck"
		}
		t.Run(name, func(t *testing.T) { isolate(t, dir, live, written, &want, onlyFirst) })
	}
}

func isolate(t *testing.T, dir, live string, written int64, want *tally, onlyFirst bool) {
	cfg := config.Default()
	cfg.Source.Path = live
	cfg.Source.PositionsFile = filepath.Join(t.TempDir(), "positions.json")
	cfg.DeadLetter.Path = filepath.Join(dir, "dead-letter.ndjson")
	const inflight = 8 << 20
	base := cfg.Sinks[0]
	base.MaxInflightBytes = inflight
	base.Retry = config.Retry{MinBackoff: config.Duration(5 * time.Millisecond), MaxBackoff: config.Duration(50 * time.Millisecond)}
	stuckCfg, workCfg := base, base
	stuckCfg.Name, workCfg.Name = "stuck", "working"
	stuck, working := &gatedSink{onlyFirst: onlyFirst}, &countingSink{}

	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := shipper.New(cfg, []shipper.Sink{{Config: stuckCfg, Sink: stuck}, {Config: workCfg, Sink: working}}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	stopSampling := make(chan struct{})
	peak := liveHeap(stopSampling)
	baseline := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}()

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	start := time.Now()
	go func() { runErr <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-runErr
	}()

	wait := func(what string, done func() bool) time.Duration {
		t.Helper()
		deadline := time.Now().Add(5 * time.Minute)
		for !done() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not done after 5 minutes: working %d/%d, stuck %d/%d", what,
					working.got.n.Load(), want.n.Load(), stuck.got.n.Load(), want.n.Load())
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start)
	}
	workingDone := wait("working sink", func() bool { return working.got.n.Load() >= want.n.Load() })
	stuckInflight := gaugeValue(t, reg, "audit_shipper_inflight_bytes", "stuck")
	close(stopSampling)
	peakHeap := peak()

	if !onlyFirst && stuck.got.n.Load() != 0 {
		t.Fatalf("the stuck sink accepted %d events while down", stuck.got.n.Load())
	}
	if stuckInflight > inflight {
		t.Errorf("stuck sink holds %.0f bytes in flight, over its bound of %d", stuckInflight, inflight)
	}
	// The bound: per sink, its in-flight bytes, its line buffer and two
	// batches of arena slack; then a constant for the runtime, the
	// registry, parsers and pools.
	const constant = 48 << 20
	perSink := uint64(inflight + int64(cfg.Source.MaxLineBytes) + 2*int64(base.Batch.MaxBytes))
	bound := baseline + 2*perSink + constant
	t.Logf("backlog %d MiB in %d events; working sink done in %s (%.0f MiB/s) while the stuck sink refused %d batches",
		written>>20, want.n.Load(), workingDone.Round(time.Millisecond), float64(written)/(1<<20)/workingDone.Seconds(), stuck.refusals.Load())
	t.Logf("live heap: baseline %d MiB, peak %d MiB, bound %d MiB (2 x (in-flight %d MiB + line %d MiB + 2 batches %d MiB) + %d MiB)",
		baseline>>20, peakHeap>>20, bound>>20, inflight>>20, cfg.Source.MaxLineBytes>>20, 2*base.Batch.MaxBytes>>20, constant>>20)
	if peakHeap > bound {
		t.Errorf("peak live heap %d MiB is over the bound %d MiB: memory grows with the backlog", peakHeap>>20, bound>>20)
	}
	if working.got.n.Load() != want.n.Load() || working.got.sum.Load() != want.sum.Load() {
		t.Errorf("working sink got %d events (hash %x), want %d (hash %x)", working.got.n.Load(), working.got.sum.Load(), want.n.Load(), want.sum.Load())
	}

	stuck.open.Store(true)
	stuckDone := wait("stuck sink after it came back", func() bool { return stuck.got.n.Load() >= want.n.Load() })
	if stuck.got.n.Load() != want.n.Load() || stuck.got.sum.Load() != want.sum.Load() {
		t.Errorf("stuck sink got %d events (hash %x), want %d (hash %x)", stuck.got.n.Load(), stuck.got.sum.Load(), want.n.Load(), want.sum.Load())
	}
	t.Logf("stuck sink caught up %s after it came back", (stuckDone - workingDone).Round(time.Millisecond))
}

// gaugeValue reads a gauge of one sink from g.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name, sink string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "sink" && l.GetValue() == sink {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s for sink %q", name, sink)
	return 0
}
