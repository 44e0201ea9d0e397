package elasticsearch

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"

	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// Body encodings: how requestObject and responseObject are written.
const (
	// BodyString writes each body that is an object or an array as one
	// JSON string holding the body's JSON text byte for byte. A document
	// then has the same field names whatever the objects contain, so no
	// server's field limit or type mapping can be hit by a body.
	BodyString = "string"
	// BodyObject writes the bodies as the apiserver wrote them. Only safe
	// with a template that maps them as not indexed (enabled: false).
	BodyObject = "object"
)

// encoder turns records into a bulk request body. It is immutable after
// New and shared by every Send; the per-call state lives in encodeState.
type encoder struct {
	target   *target
	bodies   string // BodyString or BodyObject
	received bool   // @timestamp from requestReceivedTimestamp instead of stageTimestamp
	// fields is `"cluster":"…","node":"…",` already JSON-encoded, written
	// after @timestamp in every document.
	fields []byte
}

// encodeState is one goroutine's scratch space, reused through a pool.
type encodeState struct {
	body []byte // the NDJSON bulk body
	// index caches the last expanded index name, keyed by the time bucket
	// it was expanded for.
	index    string
	indexKey int64
	scratch  []byte // the bytes hashed into a document id
}

// encode writes the bulk body for recs to st.body: one action and one
// document per record, in order. After each document, drain (when not
// nil) takes st.body and returns the buffer to go on with: the gzip
// writer compresses and drops what is there, so the whole body is never
// held.
func (e *encoder) encode(st *encodeState, recs []sinks.Record, drain func([]byte) []byte) {
	st.body = st.body[:0]
	for i := range recs {
		r := &recs[i]
		ts := r.StageTime
		if e.received {
			ts = r.ReceivedTime
		}
		st.body = e.appendAction(st, st.body, r, ts)
		st.body = e.appendDoc(st.body, r.Event, ts)
		st.body = append(st.body, '\n')
		if drain != nil {
			st.body = drain(st.body)
		}
	}
}

// appendAction writes `{"create":{"_index":"…","_id":"…"}}` and a newline.
// create (never index) makes a replayed document a 409 conflict instead of
// a second copy or an overwrite.
func (e *encoder) appendAction(st *encodeState, dst []byte, r *sinks.Record, ts time.Time) []byte {
	dst = append(dst, `{"create":{"_index":"`...)
	dst = append(dst, e.target.name(st, ts)...)
	dst = append(dst, `","_id":"`...)
	dst = appendID(dst, st, r)
	return append(dst, "\"}}\n"...)
}

// appendID writes the document id: the first 128 bits of SHA-256 over the
// auditID, the stage and both timestamps, in unpadded base64url (22 bytes).
//
// The auditID alone is not enough: kube-apiserver takes it from the
// client's Audit-ID header when one is sent, so a client could reuse the id
// of an earlier request, and its own event would then be taken for a
// replay (409) and never stored. The timestamps, at microsecond
// precision, tell such events apart; a replay of the same line repeats
// them exactly. Hashing also bounds the id's length whatever the header
// held (Elasticsearch refuses ids over 512 bytes).
func appendID(dst []byte, st *encodeState, r *sinks.Record) []byte {
	b := st.scratch[:0]
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.AuditID)))
	b = append(b, r.AuditID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(r.Stage)))
	b = append(b, r.Stage...)
	for _, t := range [2]time.Time{r.StageTime, r.ReceivedTime} {
		b = binary.BigEndian.AppendUint64(b, uint64(t.Unix()))
		b = binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
	}
	st.scratch = b
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.AppendEncode(dst, sum[:16])
}

// appendDoc writes the document: @timestamp, the configured fields, then
// the event's own members as they are in the line, with the bodies
// rewritten as strings under BodyString.
func (e *encoder) appendDoc(dst []byte, ev *parse.Event, ts time.Time) []byte {
	line := ev.Raw
	dst = append(dst, `{"@timestamp":"`...)
	dst = ts.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `",`...)
	dst = append(dst, e.fields...)
	// The parser accepted the line, so it is one object, maybe with
	// whitespace around it and its members. It holds no newline: the
	// shipper cut it at one, and JSON strings cannot hold a raw one.
	start := skipSpace(line) + 1
	start += skipSpace(line[start:])
	if line[start] == '}' {
		// Drop the comma the prefix ended with.
		dst = dst[:len(dst)-1]
	}
	if e.bodies == BodyObject {
		return append(dst, line[start:]...)
	}
	a, b := ev.RequestObject, ev.ResponseObject
	if b.ValueStart < a.ValueStart {
		a, b = b, a
	}
	at := start
	for _, r := range [2]parse.Range{a, b} {
		if !r.Present() || !isContainer(line[r.ValueStart]) {
			continue
		}
		dst = append(dst, line[at:r.ValueStart]...)
		dst = appendQuoted(dst, line[r.ValueStart:r.ValueEnd])
		at = r.ValueEnd
	}
	return append(dst, line[at:]...)
}

func isContainer(c byte) bool { return c == '{' || c == '[' }

func skipSpace(b []byte) int {
	for i, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return i
		}
	}
	return len(b)
}

// escapes maps each byte to the escape it needs inside a JSON string: 0
// for none.
var escapes = func() (t [256]byte) {
	for c := range 0x20 {
		t[c] = 'u'
	}
	t['"'], t['\\'] = '"', '\\'
	t['\n'], t['\r'], t['\t'] = 'n', 'r', 't'
	return t
}()

// appendQuoted writes s as a JSON string. s is valid JSON text, hence
// valid UTF-8, so only quotes, backslashes and control characters (which
// JSON allows only as whitespace between tokens) need escaping.
func appendQuoted(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i, c := range s {
		esc := escapes[c]
		if esc == 0 {
			continue
		}
		dst = append(dst, s[start:i]...)
		if esc == 'u' {
			const hex = "0123456789abcdef"
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		} else {
			dst = append(dst, '\\', esc)
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
