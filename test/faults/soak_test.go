package faults

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// TestSoak compresses an hour of a busy control plane into 90 seconds:
// kube-apiserver writes 800 events a second (2 MB/s, about twenty times
// a busy cluster's rate, so 90 s carry more than an hour of it), rotating
// every megabyte, while the Elasticsearch sink's server restarts every 20
// seconds (its link cut for 4 s: connections reset, then refused) and the
// Loki sink's connections are reset in between. The shipper's heap and
// goroutines are sampled all along; they must be flat: the last third of
// the run no higher than the first. Every event arrives.
func TestSoak(t *testing.T) {
	const (
		rate     = 800
		duration = 90 * time.Second
		warmUp   = 10 * time.Second
	)
	lokiVL, esVL := vlogs.Start(t), vlogs.Start(t, "-insert.maxLineSizeBytes=4MiB")
	lokiLink, esLink := startProxy(t, hostPort(lokiVL)), startProxy(t, hostPort(esVL))
	s := newShipper(t, options{}, lokiSink("loki", lokiLink.Addr()).countedBy(lokiVL, t), esSink("es", esLink.Addr()).countedBy(esVL, t))
	alog := newAuditLog(s.opts.logPath, 14)

	begin := time.Now()
	s.Start()
	s.WaitUp()
	w := inBackground(func() error { return alog.WriteAt(context.Background(), rate, duration) })
	tl := newTimeline(t, s)
	restarts := 0
	for at := 15 * time.Second; at+4*time.Second < duration; at += 20 * time.Second {
		tl.at(at, "the es sink's server restarts", func() { esLink.Cut(); restarts++ })
		tl.at(at+4*time.Second, "the es sink's server is back", func() { restore(t, esLink) })
		tl.at(at+10*time.Second, "reset the loki sink's connections", func() { lokiLink.Reset() })
	}
	var firstThird, lastThird []sample
	tl.at(duration, "the writer stops", func() {
		end := time.Now()
		third := (end.Sub(begin) - warmUp) / 3
		firstThird = s.samples.between(begin.Add(warmUp), begin.Add(warmUp+third))
		lastThird = s.samples.between(end.Add(-third), end)
	})
	tl.run()
	w.wait(t)
	alog.Close(t)
	s.waitCaughtUp(3 * time.Minute)
	elapsed := time.Since(begin)
	s.Stop()
	s.logSummary()

	t.Logf("heap in use/goroutines every 10s: %s", series(s.samples.between(begin, begin.Add(duration)), 10*time.Second))
	heapFirst, heapLast := peakHeap(firstThird), peakHeap(lastThird)
	floorFirst, floorLast := floorHeap(firstThird), floorHeap(lastThird)
	gFirst, gLast := peakGoroutines(firstThird), peakGoroutines(lastThird)
	flat := fmt.Sprintf("heap_peak_thirds=%s,%s heap_floor_thirds=%s,%s goroutines_thirds=%d,%d mb=%d rotations=%d es_restarts=%d",
		mibs(heapFirst), mibs(heapLast), mibs(floorFirst), mibs(floorLast), gFirst, gLast, alog.Bytes()/mib, alog.Rotations(), restarts)
	for _, k := range []struct {
		name        string
		vl          *vlogs.Server
		interrupted int
	}{{"loki", lokiVL, lokiLink.Stats().Resets}, {"es", esVL, restarts * requestsInFlight}} {
		tally := vlTally(t, k.vl, alog.IDs(), time.Minute)
		bound := s.dupBound(k.name, k.interrupted)
		report(t, figuresOf(s, "soak 90s at 800 events/s", k.name, tally, bound, elapsed, flat))
		tally.check(t, k.name, bound)
	}
	if len(firstThird) == 0 || len(lastThird) == 0 {
		t.Fatalf("harness: no samples in the first or the last third (%d, %d)", len(firstThird), len(lastThird))
	}
	// The peak says how high garbage piles up between collections; the
	// floor (the 10th percentile), what survives them.
	if heapLast > heapFirst*1.3+8*mib {
		t.Errorf("heap in use peaked at %s in the first third of the soak, at %s in the last: it grows", mibs(heapFirst), mibs(heapLast))
	}
	if floorLast > floorFirst*1.3+4*mib {
		t.Errorf("heap in use after collections (10th percentile) was %s in the first third of the soak, %s in the last: it grows", mibs(floorFirst), mibs(floorLast))
	}
	if gLast > gFirst+8 {
		t.Errorf("goroutines peaked at %d in the first third of the soak, at %d in the last: they leak", gFirst, gLast)
	}
	s.NoLossReported()
}

// floorHeap returns the 10th percentile of the heap sampled.
func floorHeap(smps []sample) float64 {
	if len(smps) == 0 {
		return 0
	}
	heaps := make([]float64, len(smps))
	for i, smp := range smps {
		heaps[i] = smp.heap
	}
	slices.Sort(heaps)
	return heaps[len(heaps)/10]
}

func peakGoroutines(smps []sample) int {
	var peak float64
	for _, smp := range smps {
		peak = max(peak, smp.goroutines)
	}
	return int(peak)
}
