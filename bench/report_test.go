package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestReportCompare: with -compare-size, the report sets each path's
// figures on the large backlog against those on the small one.
func TestReportCompare(t *testing.T) {
	run := func(path string, bytes int64, cpu time.Duration, rss, heap int64) result {
		return result{path: path, events: bytes / 2500, bytes: bytes, wall: time.Second, cpu: cpu,
			peakRSS: rss << 20, peakHeap: heap << 20, complete: true}
	}
	r := &report{
		opts:           &options{rotate: 100 << 20, sampleAll: 250 * time.Millisecond},
		subject:        subject{name: "audit-shipper", bin: "x"},
		backlog:        &auditLog{events: 4_000_000, bytes: 10e9},
		compareBacklog: &auditLog{events: 400_000, bytes: 1e9},
		floors:         map[string]floorResult{floorCat: {wall: time.Second, cpu: time.Second}, floorSnappy: {wall: time.Second, cpu: time.Second}},
		backlogRuns:    []result{run("file", 10e9, 10*time.Second, 27, 12), run("loki", 10e9, 30*time.Second, 36, 22)},
		compareRuns:    []result{run("loki", 1e9, 3*time.Second, 33, 20), run("file", 1e9, time.Second, 24, 12)},
	}
	var out bytes.Buffer
	r.write(&out)
	got := out.String()
	for _, want := range []string{
		"The same backlog runs on 400000 events, 1000 MB",
		"| file | 1.00 | 1.00 | 1.00 | 27.0 | 24.0 | 1.12 | 12.0 | 12.0 | 1.00 |",
		"| loki | 3.00 | 3.00 | 1.00 | 36.0 | 33.0 | 1.09 | 22.0 | 20.0 | 1.10 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the report lacks %q:\n%s", want, got)
		}
	}
	r.compareRuns = nil
	out.Reset()
	r.write(&out)
	if strings.Contains(out.String(), "The same backlog runs on") {
		t.Error("a report without -compare-size has a comparison table")
	}
}

func TestCompareSizeNeedsBacklog(t *testing.T) {
	if _, err := parseFlags([]string{"-size", "0", "-compare-size", "1GB"}); err == nil {
		t.Error("-compare-size without backlog runs was accepted")
	}
	o, err := parseFlags([]string{"-size", "10GB", "-compare-size", "1GB"})
	if err != nil || o.compareSize != 1e9 {
		t.Fatalf("-size 10GB -compare-size 1GB: %v, compare size %d", err, o.compareSize)
	}
}
