package loki

import (
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The push request's protobuf encoding, written by hand from push.proto of
// Grafana Loki (github.com/grafana/loki/pkg/push):
//
//	PushRequest { repeated Stream streams = 1; }
//	Stream      { string labels = 1; repeated Entry entries = 2; }
//	Entry       { Timestamp timestamp = 1; string line = 2; repeated LabelPair structuredMetadata = 3; }
//	LabelPair   { string name = 1; string value = 2; }
//	Timestamp   { int64 seconds = 1; int32 nanos = 2; }
//
// The push package's generated types would do the same, but they bring
// gRPC and gogo/protobuf into the binary: a third of its size and 4 MiB of
// its resident memory, for four messages. Its tests decode what this
// writes with the push package itself, byte for byte the same as the
// generated marshaller writes.

// label is a name and a value: a stream label or a structured metadata pair.
type label struct{ name, value string }

// entry is one log line of a stream.
type entry struct {
	ts   time.Time
	line string
	meta []label
}

// stream is the entries of one label set.
type stream struct {
	labels  string // {job="kubernetes-audit", node="n1"}
	entries []entry
}

// pushSizes returns the length of the PushRequest of streams, and, in
// sizes (scratch space, returned for the next call), each stream's length
// followed by its entries' lengths: appendPushRequest writes them, so
// each is computed once.
func pushSizes(streams []stream, sizes []int) (int, []int) {
	sizes = sizes[:0]
	total := 0
	for i := range streams {
		s := &streams[i]
		at := len(sizes)
		sizes = append(sizes, 0)
		n := stringSize(s.labels)
		for j := range s.entries {
			m := entrySize(&s.entries[j])
			sizes = append(sizes, m)
			n += nested(m)
		}
		sizes[at] = n
		total += nested(n)
	}
	return total, sizes
}

// appendPushRequest appends the PushRequest of streams to b, with the
// lengths pushSizes gave for them. After each entry, drain (when not nil)
// takes b and returns the buffer to go on with: the snappy encoder
// compresses and drops what is there, so the whole request is never held.
func appendPushRequest(b []byte, streams []stream, sizes []int, drain func([]byte) []byte) []byte {
	k := 0
	for i := range streams {
		s := &streams[i]
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizes[k]))
		k++
		b = appendString(b, 1, s.labels)
		for j := range s.entries {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizes[k]))
			k++
			b = appendEntry(b, &s.entries[j])
			if drain != nil {
				b = drain(b)
			}
		}
	}
	return b
}

func appendEntry(b []byte, e *entry) []byte {
	sec, nsec := e.ts.Unix(), e.ts.Nanosecond()
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(timestampSize(sec, nsec)))
	if sec != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(sec))
	}
	if nsec != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(nsec))
	}
	if e.line != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, e.line)
	}
	for _, m := range e.meta {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(labelSize(m)))
		b = appendString(b, 1, m.name)
		b = appendString(b, 2, m.value)
	}
	return b
}

func entrySize(e *entry) int {
	n := nested(timestampSize(e.ts.Unix(), e.ts.Nanosecond())) + stringSize(e.line)
	for _, m := range e.meta {
		n += nested(labelSize(m))
	}
	return n
}

func timestampSize(sec int64, nsec int) int {
	n := 0
	if sec != 0 {
		n += 1 + protowire.SizeVarint(uint64(sec))
	}
	if nsec != 0 {
		n += 1 + protowire.SizeVarint(uint64(nsec))
	}
	return n
}

func labelSize(m label) int { return stringSize(m.name) + stringSize(m.value) }

// nested is the size of a length-delimited field of n bytes; every field
// number here takes one byte of tag.
func nested(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// stringSize is the size of a string field, which proto3 leaves out when
// empty.
func stringSize(s string) int {
	if s == "" {
		return 0
	}
	return nested(len(s))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}
