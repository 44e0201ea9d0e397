package faults

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// hostileLine is one line of the hostile audit log and what must become
// of it: delivered to every sink (reason ""), or dead-lettered by every
// sink for reason.
type hostileLine struct {
	name   string
	line   []byte
	reason string
	// id is the auditID the sinks store a delivered line under (for a
	// duplicate auditID, the last, as Kubernetes' decoder reads it);
	// first is the line's first auditID, which the file sink's output
	// is counted by.
	id, first string
	offset    int64
}

// hugeLine is the size of the longest line: 25 times max_line_bytes.
const hugeLine = 100 << 20

// hostileLines makes the corpus: every kind of line a damaged disk, a
// buggy or future apiserver, or an attacker who can write to the audit
// directory could leave, each with how it must be classified.
func hostileLines(src *corpus.Generator) []hostileLine {
	event := func() []byte { return src.Next(nil) }
	id := func(line []byte) string { s, _ := shipperproc.AuditID(line); return s }
	// insert puts s right after the event's auditID member.
	insert := func(line []byte, s string) []byte {
		i := bytes.Index(line, []byte(`","stage":`))
		return append(append(append([]byte{}, line[:i+2]...), s...), line[i+2:]...)
	}
	replace := func(line []byte, old, new string) []byte {
		if !bytes.Contains(line, []byte(old)) {
			panic("harness: the corpus event has no " + old)
		}
		return bytes.Replace(line, []byte(old), []byte(new), 1)
	}
	nested := func(depth int) []byte {
		// The event itself is the first level.
		line := event()
		body := strings.Repeat(`{"a":`, depth-1) + "1" + strings.Repeat("}", depth-1)
		line = append(line[:len(line)-1], `,"requestObject":`+body+`}`...)
		if json.Valid(line) != (depth <= 10_000) {
			panic(fmt.Sprintf("harness: encoding/json's depth limit is not 10,000: valid at depth %d: %v", depth, json.Valid(line)))
		}
		return line
	}
	var out []hostileLine
	add := func(name, reason string, line []byte) {
		out = append(out, hostileLine{name: name, line: line, reason: reason, id: id(line), first: id(line)})
	}

	truncated := event()
	cut := len(truncated) * 3 / 5
	for truncated[cut-1] >= 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	add("truncated", "truncated", truncated[:cut])
	add("malformed", "invalid_json", []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":}}}{{`))
	add("top-level array", "invalid_json", append(append([]byte("["), event()...), ']'))
	add("null", "invalid_json", []byte("null"))
	add("byte order mark", "invalid_json", append([]byte("\xef\xbb\xbf"), event()...))
	add("nested 10,000 levels", "", nested(10_000)) // encoding/json's limit, and the apiserver's
	add("nested 10,001 levels", "invalid_json", nested(10_001))
	huge := event()
	huge = append(huge[:len(huge)-1], `,"requestObject":{"kind":"ConfigMap","data":{"blob":"`...)
	huge = append(huge, bytes.Repeat([]byte("0123456789abcdef"), hugeLine/16)...)
	add("huge (100 MiB)", "too_long", append(huge, `"}}}`...))
	add("invalid UTF-8", "invalid_utf8", replace(event(), `"requestURI":"`, "\"requestURI\":\"\xff\xfe\xc0\xaf"))
	add("NUL byte raw in a string", "invalid_json", replace(event(), `"requestURI":"`, "\"requestURI\":\"\x00"))
	add("NUL byte raw between members", "invalid_json", replace(event(), `,"stage":`, ",\x00\"stage\":"))
	add("NUL escaped in a string", "", replace(event(), `"requestURI":"`, `"requestURI":"\u0000`))
	add("only whitespace", "empty", []byte(" \t "))
	add("CRLF line end", "", append(event(), '\r'))
	add("duplicate keys (stage, verb)", "", insert(event(), `"stage":"RequestReceived","verb":"deletecollection",`))
	dup := event()
	last := "dup-" + id(dup)
	dupID := hostileLine{name: "duplicate auditID", line: replace(dup, `,"stage":`, `,"auditID":"`+last+`","stage":`), id: last, first: id(dup)}
	out = append(out, dupID)
	add(`wrong type ("stage": 5)`, "not_audit_event", replace(event(), `"stage":"`, `"stage":5,"x":"`))
	add(`wrong type ("responseStatus": {"code": "200"})`, "not_audit_event", insert(event(), `"responseStatus":{"code":"200"},`))
	add("unknown future fields", "", insert(event(), `"futureField":{"nested":[1,2,{"x":null}]},"schemaHint":"v2",`))
	add("future apiVersion (audit.k8s.io/v2)", "not_audit_event", replace(event(), `"apiVersion":"audit.k8s.io/v1"`, `"apiVersion":"audit.k8s.io/v2"`))
	add("not an audit event (core Event)", "not_audit_event", []byte(`{"kind":"Event","apiVersion":"v1","reason":"Scheduled","message":"a core Event, not an audit one"}`))
	return out
}

// TestHostileInput writes a corpus of hostile lines, each between valid
// events, into audit.log while the shipper runs with a file, a loki and an
// elasticsearch sink. No panic, no stall (every valid event after the
// hostile ones arrives), bounded memory (the 100 MiB line is streamed to
// the dead-letter file, never held), and each line classified: delivered
// to every sink, or dead-lettered by every sink with its reason.
func TestHostileInput(t *testing.T) {
	lokiVL, esVL := vlogs.Start(t), vlogs.Start(t, "-insert.maxLineSizeBytes=4MiB")
	s := newShipper(t, options{}, fileSink("out"),
		lokiSink("loki", hostPort(lokiVL)).countedBy(lokiVL, t), esSink("es", hostPort(esVL)).countedBy(esVL, t))
	src := corpus.New(corpus.Options{Seed: 13, Start: time.Now().Add(-time.Hour)})
	hostile := hostileLines(src)

	// Valid events around every hostile line.
	var lines []hostileLine
	valid := func(n int) {
		for range n {
			l := src.Next(nil)
			id, _ := shipperproc.AuditID(l)
			lines = append(lines, hostileLine{name: "valid", line: l, id: id, first: id})
		}
	}
	valid(20)
	for _, h := range hostile {
		lines = append(lines, h)
		valid(2)
	}
	valid(20)

	begin := time.Now()
	s.Start()
	s.WaitUp()
	f, err := os.OpenFile(s.opts.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var offset int64
	for i := range lines {
		lines[i].offset = offset
		w.Write(lines[i].line)
		w.WriteByte('\n')
		offset += int64(len(lines[i].line)) + 1
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	s.waitFor("every sink to read the whole file", 2*time.Minute, func(m shipperproc.Metrics) bool {
		for _, k := range s.sinks {
			if n, _ := m.Value("audit_shipper_bytes_read_total", "sink", k.name); n != float64(offset) {
				return false
			}
		}
		return true
	})
	s.waitCaughtUp(2 * time.Minute)
	caughtUp := time.Since(written)
	elapsed := time.Since(begin)
	m := s.MustScrape()
	s.Stop()
	s.logSummary()

	var deliver, firsts []string
	wantReasons := map[string]int{}
	for _, l := range lines {
		if l.reason != "" {
			wantReasons[l.reason]++
			continue
		}
		deliver, firsts = append(deliver, l.id), append(firsts, l.first)
	}
	heldFile, torn := fileHeld(t, s.out("out"))
	tallies := map[string]tally{
		// The file sink writes each line as it is: counted by its first
		// auditID.
		"out":  count(heldFile, firsts, torn),
		"loki": vlTally(t, lokiVL, deliver, 30*time.Second),
	}
	// The document of the duplicate auditID holds both members, as the
	// line does; VictoriaLogs keeps the last (Elasticsearch itself would
	// refuse it: see docs/reliability.md).
	tallies["es"] = vlTally(t, esVL, deliver, 30*time.Second)

	heap, _ := s.samples.peak()
	for _, name := range []string{"out", "loki", "es"} {
		tl := tallies[name]
		var byReason []string
		for reason, n := range wantReasons {
			got, _ := m.Value("audit_shipper_dead_letters_total", "sink", name, "reason", reason)
			byReason = append(byReason, fmt.Sprintf("%s:%v", reason, got))
			if got != float64(n) {
				t.Errorf("sink %s: audit_shipper_dead_letters_total{reason=%q} = %v, want %d", name, reason, got, n)
			}
		}
		slices.Sort(byReason)
		report(t, figuresOf(s, "hostile input", name, tl, -1, elapsed,
			fmt.Sprintf("hostile_lines=%d caught_up_after_write=%s dead_letters=%s", len(hostile), caughtUp.Round(time.Millisecond), strings.Join(byReason, ","))))
		tl.check(t, name, -1)
	}
	if heap > 64*mib {
		t.Errorf("the shipper's heap reached %s with a %d MiB line in the log: a long line is held in memory", mibs(heap), hugeLine>>20)
	}
	checkHostileDeadLetters(t, s, lines)
	s.NoLossReported()
}

// deadLetterHead is the part of a dead-letter record the test checks; the
// line itself (up to 256 MiB) is skipped.
type deadLetterHead struct {
	Sink      string `json:"sink"`
	Offset    int64  `json:"offset"`
	Length    int64  `json:"length"`
	Reason    string `json:"reason"`
	Error     string `json:"error"`
	Truncated bool   `json:"truncated"`
}

// checkHostileDeadLetters requires one dead letter per sink for each line
// to be dead-lettered, at its offset, with its reason and length, and
// none for the lines to be delivered.
func checkHostileDeadLetters(t *testing.T, s *shipper, lines []hostileLine) {
	t.Helper()
	f, err := os.Open(s.deadLetter())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byOffset := make(map[int64]hostileLine)
	for _, l := range lines {
		byOffset[l.offset] = l
	}
	got := make(map[string]int) // sink/offset
	r := bufio.NewReaderSize(f, 1<<20)
	for n := 1; ; n++ {
		rec, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) && len(rec) == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		var d deadLetterHead
		if err := json.Unmarshal(rec, &d); err != nil {
			t.Errorf("dead letter %d is not JSON: %v: %.200s", n, err, rec)
			continue
		}
		l, ok := byOffset[d.Offset]
		switch {
		case !ok:
			t.Errorf("dead letter %d (sink %s, reason %s) at offset %d, where no line starts", n, d.Sink, d.Reason, d.Offset)
			continue
		case l.reason == "":
			t.Errorf("sink %s dead-lettered the %s line (%s), which is an audit event to deliver", d.Sink, l.name, d.Error)
		case d.Reason != l.reason:
			t.Errorf("sink %s dead-lettered the %s line for %q, want %q (%s)", d.Sink, l.name, d.Reason, l.reason, d.Error)
		case d.Length != int64(len(l.line)) && d.Length != int64(len(l.line))+1:
			t.Errorf("sink %s: the dead letter of the %s line says %d bytes, the line has %d", d.Sink, l.name, d.Length, len(l.line))
		}
		got[d.Sink+"/"+fmt.Sprint(d.Offset)]++
	}
	for _, l := range lines {
		if l.reason == "" {
			continue
		}
		for _, k := range s.sinks {
			if n := got[k.name+"/"+fmt.Sprint(l.offset)]; n != 1 {
				t.Errorf("sink %s has %d dead letters for the %s line, want 1", k.name, n, l.name)
			}
		}
	}
}
