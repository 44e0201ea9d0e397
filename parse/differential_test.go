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
