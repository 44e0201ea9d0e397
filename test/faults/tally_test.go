package faults

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// tally compares what a sink holds with the auditIDs written.
type tally struct {
	written, delivered, duplicates, lost int
	// unexpected counts stored events that were never written; torn, lines
	// of the file sink's output that are not whole events (a kill in the
	// middle of a write).
	unexpected, torn int
	// missing are the first auditIDs written and not delivered.
	missing []string
}

// count compares the number of times each auditID is held with written.
func count(held map[string]int, written []string, torn int) tally {
	tl := tally{written: len(written), torn: torn}
	want := make(map[string]bool, len(written))
	for _, id := range written {
		want[id] = true
		switch n := held[id]; n {
		case 0:
			tl.lost++
			if len(tl.missing) < 5 {
				tl.missing = append(tl.missing, id)
			}
		default:
			tl.delivered++
			tl.duplicates += n - 1
		}
	}
	for id, n := range held {
		if !want[id] {
			tl.unexpected += n
		}
	}
	return tl
}

// vlHeld counts VictoriaLogs' rows by auditID.
func vlHeld(t *testing.T, vl *vlogs.Server) map[string]int {
	t.Helper()
	held := make(map[string]int)
	for _, r := range vl.Query(t, `* | fields auditID`) {
		held[r["auditID"]]++
	}
	return held
}

// vlTally waits (up to timeout) until VictoriaLogs holds every auditID of
// written, then counts. Rows the shipper has acknowledged can take a
// moment to be searchable.
func vlTally(t *testing.T, vl *vlogs.Server, written []string, timeout time.Duration) tally {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		vl.Flush(t)
		tl := count(vlHeld(t, vl), written, 0)
		if tl.lost == 0 || time.Now().After(deadline) {
			return tl
		}
		time.Sleep(time.Second)
	}
}

// fileHeld counts the file sink's output lines by auditID; lines that are
// not whole events are torn.
func fileHeld(t *testing.T, path string) (held map[string]int, torn int) {
	t.Helper()
	held = make(map[string]int)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return held, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64*mib)
	for sc.Scan() {
		id, ok := shipperproc.AuditID(sc.Bytes())
		if !ok || !json.Valid(sc.Bytes()) {
			torn++
			continue
		}
		held[id]++
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return held, torn
}

// check fails the test when tl lost or invented events, or holds more
// duplicates than bound allows (a negative bound allows none).
func (tl tally) check(t *testing.T, sink string, bound int) {
	t.Helper()
	if tl.lost != 0 || tl.unexpected != 0 {
		t.Errorf("sink %s: lost %d of %d events (first %v), %d never written", sink, tl.lost, tl.written, tl.missing, tl.unexpected)
	}
	if tl.duplicates > max(bound, 0) {
		t.Errorf("sink %s: %d duplicates, more than the %d that the kills and retries can explain", sink, tl.duplicates, max(bound, 0))
	}
}

// figuresOf fills the event counts and the shipper's peaks into figures.
func figuresOf(s *shipper, scenario, sink string, tl tally, bound int, elapsed time.Duration, extra string) figures {
	heap, rss := s.samples.peak()
	return figures{
		scenario: scenario, sink: sink, written: tl.written, delivered: tl.delivered, duplicates: tl.duplicates,
		dupBound: bound, lost: tl.lost, kills: s.kills, peakHeap: heap, peakRSS: rss, elapsed: elapsed, extra: extra,
	}
}

func mibs(b float64) string { return fmt.Sprintf("%.1fMiB", b/mib) }
