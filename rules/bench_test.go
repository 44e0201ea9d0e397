package rules

import (
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
)

// benchCorpus is parse's benchmark corpus: 10,000 events of seed 1, laid
// out contiguously as a file read into memory.
var benchCorpus = sync.OnceValues(func() ([][]byte, int) {
	var buf []byte
	g := corpus.New(corpus.Options{Seed: 1})
	ends := make([]int, 10000)
	for i := range ends {
		buf = g.Next(buf)
		ends[i] = len(buf)
	}
	lines := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		lines[i] = buf[start:end:end]
		start = end
	}
	return lines, len(buf)
})

// BenchmarkRules measures parse alone and parse followed by Apply under
// several rule sets, in the same run: the cost of the rules is the
// difference. One operation handles the whole corpus.
//
//	go test ./rules/ -run '^$' -bench Rules -benchtime 3s -cpu 1
func BenchmarkRules(b *testing.B) {
	lines, size := benchCorpus()
	policy := func(path string) string {
		p, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		return string(p)
	}
	var p parse.Parser
	b.Run("parse", func(b *testing.B) {
		benchLines(b, lines, size, func(l []byte) (bool, bool) {
			_, err := p.Parse(l)
			return err == nil, false
		})
	})
	for _, c := range []struct {
		name   string
		c      Config
		policy string
	}{
		{"parse+redact", Config{RedactSecrets: true}, ""},
		{"parse+redact+production.yaml", Config{RedactSecrets: true}, policy("../configs/policies/production.yaml")},
		{"parse+redact+request-response.yaml", Config{RedactSecrets: true, RedactResources: []string{"configmaps"}}, policy("../configs/policies/request-response.yaml")},
	} {
		r := newRules(b, c.c, c.policy)
		dst := make([]byte, 0, 1<<20)
		b.Run(c.name, func(b *testing.B) {
			benchLines(b, lines, size, func(l []byte) (bool, bool) {
				ev, err := p.Parse(l)
				if err != nil {
					return false, false
				}
				out, v := r.Apply(dst, ev)
				return true, len(out) > 0 && &out[0] != &l[0] || v.Drop
			})
		})
	}
}

// benchLines runs handle over every line per operation and reports events/s,
// allocations per event and the share of events the rules changed or
// dropped.
func benchLines(b *testing.B, lines [][]byte, size int, handle func([]byte) (ok, changed bool)) {
	changed := 0
	for _, l := range lines { // warm up the reused buffers
		ok, c := handle(l)
		if !ok {
			b.Fatalf("not an event: %q", l)
		}
		if c {
			changed++
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, l := range lines {
			handle(l)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	events := float64(b.N) * float64(len(lines))
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
	b.ReportMetric(100*float64(changed)/float64(len(lines)), "%changed")
}
