package loki

import (
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/audit-shipper/audit-shipper/sinks"
)

const benchEvents = 1000

// BenchmarkEncode measures building one push request body from a batch of
// 1000 corpus events: reading each event's fields, grouping streams,
// sorting, marshalling, and (protobuf) snappy. Bytes are the lines' bytes.
func BenchmarkEncode(b *testing.B) {
	for _, enc := range []string{"protobuf", "json"} {
		b.Run(enc, func(b *testing.B) {
			s, _ := newSink(b, "url: http://127.0.0.1:3100/loki/api/v1/push\nnode: cp-1\nencoding: "+enc)
			recs := records(b, 1, benchEvents, time.Time{})
			e := newEncoder(s.set)
			b.SetBytes(lineBytes(recs))
			b.ReportAllocs()
			var out int
			for b.Loop() {
				enc := e.encode(recs)
				if enc.entries != benchEvents {
					b.Fatalf("encoded %d entries", enc.entries)
				}
				out = len(enc.body)
			}
			reportPerEvent(b, out, recs)
		})
	}
}

// BenchmarkSnappyFloor is the floor BenchmarkEncode/protobuf is measured
// against: snappy-compressing the same lines, concatenated, and nothing
// else, with the fastest snappy encoder there is (the sink's own).
func BenchmarkSnappyFloor(b *testing.B) {
	recs := records(b, 1, benchEvents, time.Time{})
	var all []byte
	for _, r := range recs {
		all = append(all, r.Line...)
	}
	dst := make([]byte, s2.MaxEncodedLen(len(all)))
	b.SetBytes(int64(len(all)))
	b.ReportAllocs()
	var out int
	for b.Loop() {
		out = len(s2.EncodeSnappy(dst, all))
	}
	reportPerEvent(b, out, recs)
}

func lineBytes(recs []sinks.Record) int64 {
	var n int64
	for _, r := range recs {
		n += int64(len(r.Line))
	}
	return n
}

func reportPerEvent(b *testing.B, out int, recs []sinks.Record) {
	b.ReportMetric(float64(benchEvents)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(out)/float64(lineBytes(recs)), "out/in")
}
