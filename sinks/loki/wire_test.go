package loki

import (
	"bytes"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// TestWireMatchesPushPackage: the hand-written encoding is byte for byte
// what the push package's generated marshaller writes for the same
// request, over corpus batches and the edges of proto3 (empty strings
// left out, zero and pre-1970 timestamps, entries without metadata).
func TestWireMatchesPushPackage(t *testing.T) {
	s, _ := newSink(t, "url: http://127.0.0.1:3100/loki/api/v1/push\nnode: cp-1\nstructured_metadata: [auditID, verb, user, sourceIP, code]")
	e := newEncoder(s.set)
	corpusBatch := func() []stream {
		recs := records(t, 3, 500, time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC))
		for i := range recs {
			e.add(&recs[i])
		}
		defer e.reset()
		return cloneStreams(e.streams)
	}
	cases := map[string][]stream{
		"corpus": corpusBatch(),
		"edges": {
			{labels: "", entries: []entry{{}}},
			{labels: `{job="a"}`, entries: []entry{
				{ts: time.Unix(0, 0), line: "x"},
				{ts: time.Unix(-5, 7), line: "", meta: []label{{name: "", value: "v"}, {name: "n", value: ""}}},
				{ts: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), line: string(bytes.Repeat([]byte("é"), 300))},
			}},
			{labels: `{job="b"}`},
		},
		"none": nil,
	}
	for name, streams := range cases {
		t.Run(name, func(t *testing.T) {
			total, sizes := pushSizes(streams, nil)
			got := appendPushRequest(nil, streams, sizes, nil)
			if len(got) != total {
				t.Errorf("pushSizes gives %d bytes, the encoding is %d", total, len(got))
			}
			want, err := toPush(streams).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encodings differ at byte %d of %d/%d", firstDiff(got, want), len(got), len(want))
			}
		})
	}
}

func toPush(streams []stream) *push.PushRequest {
	req := &push.PushRequest{}
	for _, s := range streams {
		ps := push.Stream{Labels: s.labels}
		for _, e := range s.entries {
			pe := push.Entry{Timestamp: e.ts, Line: e.line}
			for _, m := range e.meta {
				pe.StructuredMetadata = append(pe.StructuredMetadata, push.LabelAdapter{Name: m.name, Value: m.value})
			}
			ps.Entries = append(ps.Entries, pe)
		}
		req.Streams = append(req.Streams, ps)
	}
	return req
}

func cloneStreams(in []stream) []stream {
	out := make([]stream, len(in))
	for i, s := range in {
		out[i] = stream{labels: s.labels}
		for _, e := range s.entries {
			c := entry{ts: e.ts, line: string([]byte(e.line))}
			for _, m := range e.meta {
				c.meta = append(c.meta, label{name: m.name, value: string([]byte(m.value))})
			}
			out[i].entries = append(out[i].entries, c)
		}
	}
	return out
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestSnappyInPieces: the body compressed piece by piece as the request is
// written decodes, with Loki's snappy decoder, to the request written
// whole, for batches below, at and well past one piece.
func TestSnappyInPieces(t *testing.T) {
	s, _ := newSink(t, "url: http://127.0.0.1:3100/loki/api/v1/push\nnode: cp-1")
	e := newEncoder(s.set)
	for _, n := range []int{1, 10, 100, 1000} {
		recs := records(t, 3, n, time.Time{})
		for i := range recs {
			e.add(&recs[i])
		}
		_, sizes := pushSizes(e.streams, nil)
		want := appendPushRequest(nil, e.streams, sizes, nil)
		body := e.protobuf()
		e.reset()
		got, err := snappy.Decode(nil, body)
		if err != nil {
			t.Fatalf("%d events: the body does not decode: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d events (%d bytes of protobuf, pieces of %d): decoded body differs at byte %d", n, len(want), snappyPiece, firstDiff(got, want))
		}
		if n == 1000 && len(want) < 3*snappyPiece {
			t.Fatalf("1000 events make %d bytes of protobuf: not several pieces", len(want))
		}
	}
}
