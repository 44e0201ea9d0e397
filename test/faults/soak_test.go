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
	heapOf := func(smp sample) float64 { return smp.heap }
	heapFirst, heapLast := peakHeap(firstThird), peakHeap(lastThird)
	highFirst, highLast := percentile(firstThird, heapOf, 0.9), percentile(lastThird, heapOf, 0.9)
	goroutinesOf := func(smp sample) float64 { return smp.goroutines }
	floorFirst, floorLast := percentile(firstThird, heapOf, 0.1), percentile(lastThird, heapOf, 0.1)
	gFirst, gLast := percentile(firstThird, goroutinesOf, 0.5), percentile(lastThird, goroutinesOf, 0.5)
	gPeakFirst, gPeakLast := percentile(firstThird, goroutinesOf, 1), percentile(lastThird, goroutinesOf, 1)
	flat := fmt.Sprintf("heap_peak_thirds=%s,%s heap_p90_thirds=%s,%s heap_floor_thirds=%s,%s goroutines_median_thirds=%.0f,%.0f goroutines_peak_thirds=%.0f,%.0f mb=%d rotations=%d es_restarts=%d",
		mibs(heapFirst), mibs(heapLast), mibs(highFirst), mibs(highLast), mibs(floorFirst), mibs(floorLast), gFirst, gLast, gPeakFirst, gPeakLast, alog.Bytes()/mib, alog.Rotations(), restarts)
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
	// The 90th percentile says how high garbage piles up between
	// collections; the floor (the 10th percentile), what survives them.
	// Not the single highest sample: that is where one collection fell
	// against one burst of catching up after an outage, and moved from 26
	// to 50 MiB between runs of the same code.
	if highLast > highFirst*1.3+8*mib {
		t.Errorf("heap in use (90th percentile) was %s in the first third of the soak, %s in the last: it grows", mibs(highFirst), mibs(highLast))
	}
	if floorLast > floorFirst*1.3+4*mib {
		t.Errorf("heap in use after collections (10th percentile) was %s in the first third of the soak, %s in the last: it grows", mibs(floorFirst), mibs(floorLast))
	}
	// Goroutines by their median: each connection the proxies reset or
	// the restarts refuse comes with a few goroutines for a moment, so the
	// peaks follow when the faults fell; what leaks stays, and moves the
	// median.
	if gLast > gFirst+8 {
		t.Errorf("goroutines were %.0f (median) in the first third of the soak, %.0f in the last: they leak", gFirst, gLast)
	}
	s.NoLossReported()
}

// percentile returns the p-quantile (0 to 1) of one measure of smps.
func percentile(smps []sample, of func(sample) float64, p float64) float64 {
	if len(smps) == 0 {
		return 0
	}
	v := make([]float64, len(smps))
	for i, smp := range smps {
		v[i] = of(smp)
	}
	slices.Sort(v)
	return v[min(int(p*float64(len(v))), len(v)-1)]
}
