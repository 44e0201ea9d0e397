package elasticsearch

import (
	"bytes"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/audit-shipper/audit-shipper/sinks"
)

// benchRecords is one default-size batch of corpus events and the bytes
// of their lines.
func benchRecords(b *testing.B) ([]sinks.Record, int64) {
	recs := records(b, 42, 1000, time.Time{})
	var n int64
	for _, r := range recs {
		n += int64(len(r.Line))
	}
	return recs, n
}

// BenchmarkEncode builds the bulk body of 1000 corpus events: parse,
// _id, action line, document with the bodies as strings. SetBytes is the
// events' line bytes, so MB/s is input consumed.
func BenchmarkEncode(b *testing.B) {
	for _, bodies := range []string{BodyString, BodyObject} {
		b.Run(bodies, func(b *testing.B) {
			recs, n := benchRecords(b)
			enc := testEncoder(b, bodies)
			st := &encodeState{}
			b.SetBytes(n)
			b.ReportAllocs()
			for b.Loop() {
				enc.encode(st, recs, nil)
			}
			b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
			b.ReportMetric(float64(len(st.body))/float64(n), "body/input")
		})
	}
}

// BenchmarkGzip compresses the same bulk body, the floor below which
// shipping cannot go when compress is on; SetBytes is the body's size.
func BenchmarkGzip(b *testing.B) {
	recs, _ := benchRecords(b)
	enc := testEncoder(b, BodyString)
	st := &encodeState{}
	enc.encode(st, recs, nil)
	body := st.body
	for _, c := range []struct {
		name  string
		level int
	}{{"level1", gzip.BestSpeed}, {"default", gzip.DefaultCompression}} {
		b.Run(c.name, func(b *testing.B) {
			var buf bytes.Buffer
			w, err := gzip.NewWriterLevel(&buf, c.level)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				w.Reset(&buf)
				_, _ = w.Write(body)
				_ = w.Close()
			}
			b.ReportMetric(float64(len(body))/float64(buf.Len()), "ratio")
		})
	}
}
