package parse

import (
	"encoding/json"
	"flag"
	"runtime"
	"sync"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/bytedance/sonic"
	gojson "github.com/goccy/go-json"
	k8sjson "sigs.k8s.io/json"
)

// benchEvent has the same fields as Event, for the general decoders: the
// oracle's struct.
type benchEvent = oracleEvent

// benchEvents is the corpus size: the default (about 26 MB) is larger than
// the CPU caches, as a shipper's input is; -events=200 measures cache-hot.
var benchEvents = flag.Int("events", 10000, "corpus events per benchmark operation")

var benchCorpus = sync.OnceValues(func() ([][]byte, int) {
	// One contiguous buffer, as a shipper reads a file: lines are sub-slices.
	var buf []byte
	g := corpus.New(corpus.Options{Seed: 1})
	ends := make([]int, *benchEvents)
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

// benchDecoder runs decode over the whole corpus per operation and reports
// throughput, events/s and allocations per event.
func benchDecoder(b *testing.B, decode func([]byte) error) {
	lines, size := benchCorpus()
	benchLines(b, lines, size, decode)
}

func benchLines(b *testing.B, lines [][]byte, size int, decode func([]byte) error) {
	for _, l := range lines { // grow reused buffers to the longest line: steady state
		if err := decode(l); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, l := range lines {
			if err := decode(l); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	cpu = processCPU() - cpu
	runtime.ReadMemStats(&after)
	events := float64(b.N) * float64(len(lines))
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	if cpu > 0 {
		// Throughput per second of the process's CPU time (garbage
		// collection included): what one core does, even on a shared machine.
		b.ReportMetric(float64(size)*float64(b.N)/cpu.Seconds()/1e6, "MB/cpu-s")
	}
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/events, "B/event")
}

func BenchmarkDecode(b *testing.B) {
	b.Run("parse", func(b *testing.B) {
		var p Parser
		benchDecoder(b, func(l []byte) error { _, err := p.Parse(l); return err })
	})
	b.Run("encoding-json", func(b *testing.B) {
		benchDecoder(b, func(l []byte) error { var e benchEvent; return json.Unmarshal(l, &e) })
	})
	b.Run("sigs.k8s.io-json", func(b *testing.B) {
		benchDecoder(b, func(l []byte) error { var e benchEvent; return k8sjson.UnmarshalCaseSensitivePreserveInts(l, &e) })
	})
	b.Run("goccy-go-json", func(b *testing.B) {
		benchDecoder(b, func(l []byte) error { var e benchEvent; return gojson.Unmarshal(l, &e) })
	})
	b.Run("sonic", func(b *testing.B) {
		benchDecoder(b, func(l []byte) error { var e benchEvent; return sonic.Unmarshal(l, &e) })
	})
}

// BenchmarkParseBySize splits the corpus into Metadata-sized lines (under
// 1.5 KB, mostly header) and the rest (bodies, mostly skipped).
func BenchmarkParseBySize(b *testing.B) {
	lines, _ := benchCorpus()
	var small, large [][]byte
	var ns, nl int
	for _, l := range lines {
		if len(l) < 1500 {
			small, ns = append(small, l), ns+len(l)
		} else {
			large, nl = append(large, l), nl+len(l)
		}
	}
	var p Parser
	decode := func(l []byte) error { _, err := p.Parse(l); return err }
	b.Run("under-1.5KB", func(b *testing.B) { benchLines(b, small, ns, decode) })
	b.Run("over-1.5KB", func(b *testing.B) { benchLines(b, large, nl, decode) })
}
