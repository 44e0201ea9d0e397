package parse

import (
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/corpus"
)

// TestDifferentialCorpus checks every field of 50,000 generated events
// against the oracle, with one parser reused across all of them.
func TestDifferentialCorpus(t *testing.T) {
	n := 50000
	if testing.Short() {
		n = 5000
	}
	g := corpus.New(corpus.Options{Seed: 3, Start: time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600))})
	var p Parser
	var line []byte
	for i := 0; i < n; i++ {
		line = g.Next(line[:0])
		e, err := p.Parse(line)
		if err != nil {
			t.Fatalf("event %d: %v\n%s", i, err, line)
		}
		if msg := compare(line, e, err); msg != "" {
			t.Fatalf("event %d: %s\n%s", i, msg, line)
		}
	}
}

// TestZeroAllocs: once its buffers have grown, a parser allocates nothing
// for valid lines.
func TestZeroAllocs(t *testing.T) {
	g := corpus.New(corpus.Options{Seed: 5})
	lines := make([][]byte, 2000)
	for i := range lines {
		lines[i] = g.Next(nil)
	}
	var p Parser
	for _, l := range lines {
		if _, err := p.Parse(l); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(3, func() {
		for _, l := range lines {
			if _, err := p.Parse(l); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per %d lines, want 0", allocs, len(lines))
	}
}
