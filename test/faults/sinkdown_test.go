package faults

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// TestSinkDown: the Loki sink's link is cut for 45 seconds (minutes, with
// time compressed: its timeout and backoffs are seconds) while
// kube-apiserver writes on and rotates its log every few seconds, and the
// shipper is SIGKILLed during the outage and after it. The Elasticsearch
// sink, on another server, must not notice; Loki's lag must rise and drain;
// memory must stay flat (the audit log on disk is the buffer); /readyz must
// name the failing sink; and at the end every event is in both servers.
func TestSinkDown(t *testing.T) {
	rng := newRand(t)
	const (
		rate   = 150 // events a second: a rotation every 3 s or so
		before = 5 * time.Second
		outage = 45 * time.Second
		after  = 10 * time.Second
	)
	lokiVL, esVL := vlogs.Start(t), vlogs.Start(t, "-insert.maxLineSizeBytes=4MiB")
	link := startProxy(t, hostPort(lokiVL))
	s := newShipper(t, options{}, lokiSink("loki", link.Addr()).countedBy(lokiVL, t), esSink("es", hostPort(esVL)).countedBy(esVL, t))
	alog := newAuditLog(s.opts.logPath, 1)

	begin := time.Now()
	s.Start()
	s.WaitUp()
	w := inBackground(func() error { return alog.WriteAt(context.Background(), rate, before+outage+after) })

	var cutAt, restoredAt time.Time
	var writtenAtCut, writtenAtRestore int64
	var ready struct {
		code int
		body string
	}
	tl := newTimeline(t, s)
	tl.at(before, "cut the loki sink's link", func() {
		link.Cut()
		cutAt, writtenAtCut = time.Now(), alog.Bytes()
	})
	// Two kills early in the outage, so that the last run has been failing
	// for over 30 s when /readyz is asked.
	for range 2 {
		tl.at(before+randomIn(rng, 2*time.Second, 10*time.Second), "SIGKILL and restart", s.restart)
	}
	tl.at(before+outage-time.Second, "ask /readyz", func() {
		ready.code, ready.body = s.readyz()
	})
	tl.at(before+outage, "restore the link", func() {
		if err := link.Restore(); err != nil {
			t.Fatal(err)
		}
		restoredAt, writtenAtRestore = time.Now(), alog.Bytes()
	})
	tl.at(before+outage+randomIn(rng, time.Second, after), "SIGKILL and restart while Loki catches up", s.restart)
	tl.run()
	w.wait(t)
	alog.Close(t)
	s.WaitUp()
	s.waitCaughtUp(2 * time.Minute)
	drained := time.Since(restoredAt)
	elapsed := time.Since(begin)
	s.Stop()
	s.logSummary()

	// During the outage: Loki's lag rose with what was written, the
	// Elasticsearch sink kept up, memory stayed flat.
	during := s.samples.between(cutAt.Add(3*time.Second), restoredAt)
	var lokiLag, esLag float64
	for _, smp := range during {
		lokiLag, esLag = max(lokiLag, smp.lag["loki"]), max(esLag, smp.lag["es"])
	}
	// Flat: the last run's heap in the second half of the outage, when
	// the backlog is twice as large, is no larger than in the first.
	lastRun, _ := s.Current()
	if smps := s.samples.between(cutAt, restoredAt); len(smps) > 0 {
		lastRun = smps[len(smps)-1].run
	}
	var first, second []sample
	mid := cutAt.Add(outage * 2 / 3)
	for _, smp := range s.samples.between(cutAt, restoredAt) {
		if smp.run != lastRun || smp.at.Before(cutAt.Add(15*time.Second)) {
			continue
		}
		if smp.at.Before(mid) {
			first = append(first, smp)
		} else {
			second = append(second, smp)
		}
	}
	heapFirst, heapSecond := peakHeap(first), peakHeap(second)
	outageBytes := float64(writtenAtRestore - writtenAtCut)
	t.Logf("outage: %s written; loki lag peaked at %s, es lag at %s; heap peaked at %s in its first part, %s in its second; drained %s after the restore",
		mibs(outageBytes), mibs(lokiLag), mibs(esLag), mibs(heapFirst), mibs(heapSecond), drained.Round(time.Second))
	t.Logf("heap and goroutines during the outage: %s", series(s.samples.between(cutAt, restoredAt), 5*time.Second))
	if lokiLag < outageBytes/2 {
		t.Errorf("audit_shipper_position_lag_bytes{sink=loki} peaked at %s during an outage in which %s were written: the lag metric does not show the backlog",
			mibs(lokiLag), mibs(outageBytes))
	}
	if esLag > 8*mib {
		t.Errorf("audit_shipper_position_lag_bytes{sink=es} reached %s while only the loki sink was down: the outage held back the other sink", mibs(esLag))
	}
	if len(first) == 0 || len(second) == 0 {
		t.Errorf("harness: no heap samples of the last run in one part of the outage (%d, %d)", len(first), len(second))
	} else if heapSecond > heapFirst*1.25+4*mib {
		t.Errorf("heap in use rose from %s to %s during the outage (%s written meanwhile): memory grows with the backlog",
			mibs(heapFirst), mibs(heapSecond), mibs(outageBytes))
	}
	if ready.code != http.StatusServiceUnavailable || !strings.Contains(ready.body, `"loki"`) || strings.Contains(ready.body, `"es"`) {
		t.Errorf("/readyz after 30 s of outage: %d %q, want 503 naming the loki sink only", ready.code, ready.body)
	}

	lokiTally := vlTally(t, lokiVL, alog.IDs(), 30*time.Second)
	esTally := vlTally(t, esVL, alog.IDs(), 30*time.Second)
	extra := fmt.Sprintf("rotations=%d outage=%s outage_mib=%.1f loki_lag_peak_mib=%.1f es_lag_peak_mib=%.1f heap_outage_mib=%.1f,%.1f drained_in=%s",
		alog.Rotations(), outage, outageBytes/mib, lokiLag/mib, esLag/mib, heapFirst/mib, heapSecond/mib, drained.Round(time.Second))
	// The cut may catch each of the loki sink's requests in flight.
	lokiBound, esBound := s.dupBound("loki", 2), s.dupBound("es", 0)
	report(t, figuresOf(s, "sink down 45s, rotating", "loki (cut)", lokiTally, lokiBound, elapsed, extra))
	report(t, figuresOf(s, "sink down 45s, rotating", "es (up)", esTally, esBound, elapsed, ""))
	lokiTally.check(t, "loki", lokiBound)
	esTally.check(t, "es", esBound)
	s.NoLossReported()
}
