package acceptance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/audit-shipper/audit-shipper/corpus"
)

// badLine is one line of the bad-input file: a valid event (reason "") or
// a line the shipper must dead-letter for reason.
type badLine struct {
	line   []byte
	reason string
	offset int64
}

// badInput makes one round of the file: valid events around each kind of
// bad line.
func badInput(src *corpus.Generator) []badLine {
	ev := func() []byte { return src.Next(nil) }
	valid := func() badLine { return badLine{line: ev()} }
	// A 20 MiB event: a read (no bodies) given a ConfigMap request body.
	huge := ev()
	for bytes.Contains(huge, []byte(`"requestObject"`)) {
		huge = ev()
	}
	huge = append(huge[:len(huge)-1], `,"requestObject":{"kind":"ConfigMap","apiVersion":"v1","data":{"blob":"`...)
	huge = append(huge, bytes.Repeat([]byte("0123456789abcdef"), 20*megabyte/16)...)
	huge = append(huge, `"}}}`...)
	// Every event has a requestURI; an overlong encoding of '/' and two
	// bytes that never occur in UTF-8 go in front of it.
	notUTF8 := bytes.Replace(ev(), []byte(`"requestURI":"`), []byte("\"requestURI\":\"\xff\xfe\xc0\xaf"), 1)
	return []badLine{
		valid(), valid(),
		{line: ev()[:150], reason: "truncated"},
		valid(),
		{line: []byte("this is not JSON: kube-apiserver never writes it"), reason: "invalid_json"},
		valid(),
		{line: notUTF8, reason: "invalid_utf8"},
		{line: nil, reason: "empty"},
		valid(),
		{line: huge, reason: "too_long"},
		valid(),
		{line: []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}`), reason: "not_audit_event"},
		{line: []byte(`{"kind":"Event","apiVersion":"v1","reason":"Scheduled","message":"a core Event, not an audit one"}`), reason: "not_audit_event"},
		{line: nil, reason: "empty"},
		{line: nil, reason: "empty"},
		valid(), valid(),
	}
}

// TestBadInput: bad lines are counted by reason and kept in the dead-letter
// file at their offsets; every valid line around them is delivered, in
// order. Half the file is on disk at the start, half appended while the
// shipper runs.
func TestBadInput(t *testing.T) {
	s := newShipper(t, defaults)
	path := filepath.Join(s.logDir(), "audit.log")
	src := newEvents(5)
	var all []badLine
	var offset int64
	appendRound := func() {
		t.Helper()
		round := badInput(src)
		var buf bytes.Buffer
		for i := range round {
			round[i].offset = offset
			offset += int64(len(round[i].line)) + 1
			buf.Write(round[i].line)
			buf.WriteByte('\n')
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		all = append(all, round...)
	}

	begin := time.Now()
	appendRound()
	out := newOutput(s.outPath())
	s.Start()
	s.WaitUp()
	appendRound()

	var validIDs []string
	wantReasons := map[string]int{"empty": 0, "invalid_utf8": 0, "truncated": 0, "invalid_json": 0, "not_audit_event": 0, "too_long": 0}
	badCount := 0
	for _, l := range all {
		if !isBad(l) {
			t.Fatalf("harness: the line made for %q is not one: %.80q", l.reason, l.line)
		}
		if l.reason == "" {
			id, err := eventKey(l.line)
			if err != nil {
				t.Fatal(err)
			}
			validIDs = append(validIDs, id)
			continue
		}
		wantReasons[l.reason]++
		badCount++
	}
	out.waitDelivered(t, s, validIDs, time.Minute)
	s.waitMetric("audit_shipper_dead_letters_total", 10*time.Second, func(v float64) bool { return v == float64(badCount) }, fmt.Sprint(badCount))
	m := s.MustScrape()
	for reason, want := range wantReasons {
		if got := sinkValue(t, m, "audit_shipper_dead_letters_total", "reason", reason); got != float64(want) {
			t.Errorf("audit_shipper_dead_letters_total{reason=%q} = %v, want %d", reason, got, want)
		}
	}
	if got := sinkValue(t, m, "audit_shipper_lines_read_total"); got != float64(len(all)) {
		t.Errorf("audit_shipper_lines_read_total = %v, want %d", got, len(all))
	}
	if got := sinkValue(t, m, "audit_shipper_bytes_read_total"); got != float64(offset) {
		t.Errorf("audit_shipper_bytes_read_total = %v, want %d", got, offset)
	}
	elapsed := time.Since(begin)
	s.Stop()
	out.poll(t)
	tl := out.tally(validIDs)
	dls := readDeadLetters(t, s.deadLetter())
	checkDeadLetters(t, all, dls, path)

	summary(t, s, tl, len(dls), elapsed, fmt.Sprintf("bad_lines=%d by_reason=%v", badCount, sortedCounts(wantReasons)))
	if tl.lost != 0 || tl.duplicates != 0 || tl.unexpected != 0 || tl.torn != 0 {
		t.Errorf("valid events: lost %d (first %v), duplicates %d, unexpected %d, torn %d %v", tl.lost, tl.missing, tl.duplicates, tl.unexpected, tl.torn, out.tornSample)
	}
	if tl.firstMisorder >= 0 {
		t.Errorf("valid events arrived out of file order: %s", tl.misorder)
	}
}

// isBad reports whether l is what its reason says.
func isBad(l badLine) bool {
	switch l.reason {
	case "":
		_, err := eventKey(l.line)
		return err == nil
	case "empty":
		return len(l.line) == 0
	case "invalid_utf8":
		return !utf8.Valid(l.line)
	case "truncated", "invalid_json":
		return utf8.Valid(l.line) && !json.Valid(l.line)
	case "not_audit_event":
		_, err := eventKey(l.line)
		return json.Valid(l.line) && err != nil
	case "too_long":
		return len(l.line) > 4*megabyte
	}
	return false
}

// checkDeadLetters matches the dead-letter records with the bad lines by
// offset: each non-empty bad line has exactly one record; empty lines may
// have one.
func checkDeadLetters(t *testing.T, lines []badLine, dls []deadLetter, path string) {
	t.Helper()
	byOffset := make(map[int64]badLine)
	for _, l := range lines {
		if l.reason != "" {
			byOffset[l.offset] = l
		}
	}
	found := make(map[int64]int)
	for _, d := range dls {
		if d.Offset == nil || d.Length == nil {
			t.Errorf("dead letter without offset or length: reason %q file %q", d.Reason, d.File)
			continue
		}
		l, ok := byOffset[*d.Offset]
		if !ok {
			t.Errorf("dead letter at offset %d (reason %q) matches no bad line", *d.Offset, d.Reason)
			continue
		}
		found[*d.Offset]++
		where := fmt.Sprintf("dead letter at offset %d (%s)", *d.Offset, l.reason)
		if d.Reason != l.reason {
			t.Errorf("%s: reason %q", where, d.Reason)
		}
		if d.Sink != sinkName {
			t.Errorf("%s: sink %q, want %q", where, d.Sink, sinkName)
		}
		if d.File != path && filepath.Base(d.File) != filepath.Base(path) {
			t.Errorf("%s: file %q, want %q", where, d.File, path)
		}
		if n := int64(len(l.line)); *d.Length != n && *d.Length != n+1 {
			t.Errorf("%s: length %d, want %d (or %d with the newline)", where, *d.Length, n, n+1)
		}
		if d.Time == "" || (d.Error == "" && l.reason != "empty") {
			t.Errorf("%s: time %q, error %q: both must be set", where, d.Time, d.Error)
		}
		var kept []byte
		switch {
		case d.Line != nil && d.LineBase64 != nil:
			t.Errorf("%s: has both line and line_base64", where)
		case d.Line != nil:
			kept = []byte(*d.Line)
			if l.reason == "invalid_utf8" {
				t.Errorf("%s: the line is not valid UTF-8, so it belongs in line_base64, not line", where)
			}
			if d.Truncated {
				t.Errorf("%s: a kept-in-part line belongs in line_base64, not line", where)
			}
		default:
			kept = d.LineBase64
			if !d.Truncated && utf8.Valid(l.line) {
				t.Errorf("%s: the whole line is valid UTF-8, so it belongs in line, not line_base64", where)
			}
		}
		switch {
		case d.Truncated && (len(kept) >= len(l.line) || !bytes.HasPrefix(l.line, kept)):
			t.Errorf("%s: truncated, but what it kept (%d bytes) is not a shorter prefix of the line (%d bytes)", where, len(kept), len(l.line))
		case !d.Truncated && !bytes.Equal(kept, l.line):
			t.Errorf("%s: keeps %d bytes (%.60q...), want the whole line of %d bytes (%.60q...)", where, len(kept), kept, len(l.line), l.line)
		}
	}
	for off, l := range byOffset {
		if n := found[off]; n > 1 || (n == 0 && l.reason != "empty") {
			t.Errorf("the bad line at offset %d (%s, %.60q) has %d dead letters, want 1", off, l.reason, l.line, n)
		}
	}
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	return b.String()
}
