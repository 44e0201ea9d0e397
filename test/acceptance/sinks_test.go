package acceptance

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
	"github.com/audit-shipper/audit-shipper/internal/vlogs"
	"github.com/audit-shipper/audit-shipper/parse"
)

// The sink names of these tests' configs.
const (
	lokiSink = "loki"
	esSink   = "es"
)

// lokiMaxLine is the loki sink's default max_line_size: longer events are
// shrunk before they are sent.
const lokiMaxLine = 256_000

// esVlogsArgs lets VictoriaLogs take audit lines as long as the shipper's
// max_line_bytes (4MiB) on its Elasticsearch endpoint; with its default
// (256KiB) it skips longer documents with only a warning. The loki sink
// shrinks its lines under 256,000 bytes, so its server keeps the default.
var esVlogsArgs = []string{"-insert.maxLineSizeBytes=4MiB"}

// lokiSinkYAML is a loki sink entry pushing protobuf+snappy to
// VictoriaLogs' Loki endpoint. disable_message_parsing keeps each line
// whole in _msg instead of flattening the event into fields (which, for
// audit bodies, passes VictoriaLogs' 2,000 field names per block and
// drops rows).
func lokiSinkYAML(vl *vlogs.Server) string {
	return fmt.Sprintf(`  - name: %s
    type: loki
    url: %s/insert/loki/api/v1/push?disable_message_parsing=1
    encoding: protobuf
    cluster: acceptance
    node: cp-0
    labels: {team: audit}
    batch: {max_events: 1000, max_bytes: 1MiB, max_wait: 200ms}
`, lokiSink, vl.URL())
}

// esSinkYAML is an elasticsearch sink entry on VictoriaLogs' bulk
// endpoint, with the default target (the data stream
// logs-kubernetes.audit-default; VictoriaLogs takes the create actions
// and ignores their _index and _id). The headers tell VictoriaLogs which
// field is the time (@timestamp, which the sink takes from
// stageTimestamp), which is the message, and which fields make a stream.
func esSinkYAML(vl *vlogs.Server) string {
	return fmt.Sprintf(`  - name: %s
    type: elasticsearch
    addresses: [%s/insert/elasticsearch]
    headers: {VL-Time-Field: "@timestamp", VL-Msg-Field: requestURI, VL-Stream-Fields: "cluster,node"}
    cluster: acceptance
    node: cp-0
    batch: {max_events: 1000, max_bytes: 4MiB, max_wait: 200ms}
`, esSink, vl.URL())
}

// fileSinkYAML is the file sink every other acceptance test uses.
func fileSinkYAML(s *shipper) string {
	return fmt.Sprintf(`  - name: %s
    type: file
    path: %s
    batch: {max_events: 1000, max_bytes: 1MiB, max_wait: 200ms}
`, sinkName, s.outPath())
}

// newSinksShipper is newShipper with the given sink entries instead of
// the file sink.
func newSinksShipper(t *testing.T, sinkEntries ...string) *shipper {
	t.Helper()
	s := newShipper(t, defaults)
	s.setSinks(sinkEntries...)
	return s
}

// setSinks rewrites s's config with the given sink entries. Secrets are
// not redacted, so that a stored line can be compared byte for byte with
// the line written (redaction has tests of its own).
func (s *shipper) setSinks(sinkEntries ...string) {
	s.t.Helper()
	s.WriteConfig(fmt.Appendf(nil, `source:
  path: %[1]s/logs/audit.log
  positions_file: %[1]s/state/positions.json
  start_at: beginning
  poll_interval: 250ms
dead_letter:
  path: %[1]s/state/dead-letter.ndjson
rules:
  redact_secrets: false
sinks:
%[2]smetrics:
  listen: %[3]s
log: {level: info, format: json}
shutdown: {timeout: 20s}
`, s.Dir(), strings.Join(sinkEntries, ""), s.Listen()))
}

// shipCorpus writes n events through lumberjack (1 MB files, every backup
// kept) while s runs, and waits until every sink in names has
// acknowledged all of them. It returns the log and the time from the
// first write to the last acknowledgement.
func shipCorpus(t *testing.T, s *shipper, n int, seed int64, names ...string) (*shipperproc.AuditLog, time.Duration) {
	t.Helper()
	alog := newAuditLog(s.logDir(), 100_000, false, seed)
	s.Start()
	s.WaitUp()
	begin := time.Now()
	writeErr := make(chan error, 1)
	go func() { writeErr <- alog.WriteN(n) }()
	for writing := true; writing; {
		select {
		case err := <-writeErr:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		case <-time.After(500 * time.Millisecond):
			s.Alive()
		}
	}
	wrote := time.Since(begin)
	alog.Close(t)
	t.Logf("wrote %d events, %d MB, %d rotations in %s", n, alog.Bytes()/megabyte, alog.Rotations(), wrote.Round(time.Millisecond))
	for _, name := range names {
		waitShipped(t, s, name, n, 3*time.Minute)
	}
	return alog, time.Since(begin)
}

// waitShipped polls /metrics until the sink has acknowledged n events and
// its saved position has caught up with the files, or fails the test when
// the deadline passes or nothing moves for a minute.
func waitShipped(t *testing.T, s *shipper, sink string, n int, timeout time.Duration) {
	t.Helper()
	const stallTimeout = time.Minute
	deadline := time.Now().Add(timeout)
	last, progress := -1.0, time.Now()
	for {
		s.Alive()
		m, err := s.Scrape()
		if err == nil {
			shipped, _ := m.Value("audit_shipper_events_shipped_total", "sink", sink)
			lag, ok := m.Value("audit_shipper_position_lag_bytes", "sink", sink)
			if shipped >= float64(n) && ok && lag == 0 {
				return
			}
			if shipped != last {
				last, progress = shipped, time.Now()
			}
		}
		stalled := time.Since(progress) > stallTimeout
		if stalled || time.Now().After(deadline) {
			retries, _ := m.Value("audit_shipper_send_retries_total", "sink", sink)
			t.Fatalf("sink %s acknowledged %v of %d events (stalled: %v, deadline %s; last scrape error %v; %v retries); the shipper's log:\n%s",
				sink, last, n, stalled, timeout, err, retries, s.LogTail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stageKey names one event: kube-apiserver writes one line per stage of a
// request, all with the request's auditID.
type stageKey struct{ auditID, stage string }

func (k stageKey) String() string { return k.auditID + "/" + k.stage }

// corpusEvent is what a stored event is compared with.
type corpusEvent struct {
	level     string
	stageTime time.Time
	// line is kept for the sample only.
	line []byte
}

// corpusIndex is every event of the audit log on disk.
type corpusIndex struct {
	events map[stageKey]corpusEvent
	// order is the events' keys in the order of the files.
	order []stageKey
	// byStageLevel counts the events by "stage/level".
	byStageLevel map[string]int
	// sample are events whose lines are kept: one event in every 10,000
	// and the first ten longer than the loki sink's max_line_size.
	sample []stageKey
	// long is how many lines are longer than the loki sink's max_line_size.
	long int
}

// indexCorpus reads every generation of the audit log alog wrote, one
// line at a time (the corpus is hundreds of MB), checks that they hold
// the auditIDs alog wrote in its order, and indexes the events.
func indexCorpus(t *testing.T, alog *shipperproc.AuditLog) *corpusIndex {
	t.Helper()
	dir := filepath.Dir(alog.Path())
	names, err := filepath.Glob(filepath.Join(dir, "audit*.log"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names) // backups by time, then audit.log (see readGenerations)
	idx := &corpusIndex{events: make(map[stageKey]corpusEvent), byStageLevel: make(map[string]int)}
	var p parse.Parser
	longSampled := 0
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 8*megabyte)
		for sc.Scan() {
			ev, err := p.Parse(sc.Bytes())
			if err != nil {
				t.Fatalf("%s: a line of the corpus does not parse: %v", name, err)
			}
			i := len(idx.order)
			if i >= len(alog.IDs()) || ev.AuditID != alog.IDs()[i] {
				t.Fatalf("%s: line %d of the corpus has auditID %s, but the writer wrote %d lines, that one with another auditID", name, i+1, ev.AuditID, len(alog.IDs()))
			}
			// The event's strings are views into the scanner's buffer.
			k := stageKey{alog.IDs()[i], strings.Clone(ev.Stage)}
			if _, dup := idx.events[k]; dup {
				t.Fatalf("%s: the corpus holds %s twice", name, k)
			}
			ce := corpusEvent{level: strings.Clone(ev.Level), stageTime: ev.StageTime}
			long := len(sc.Bytes()) > lokiMaxLine
			if long {
				idx.long++
			}
			if i%10_000 == 0 || (long && longSampled < 10) {
				ce.line = bytes.Clone(sc.Bytes())
				idx.sample = append(idx.sample, k)
				if long {
					longSampled++
				}
			}
			idx.events[k] = ce
			idx.order = append(idx.order, k)
			idx.byStageLevel[k.stage+"/"+ce.level]++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatalf("reading %s: %v", name, err)
		}
	}
	if len(idx.order) != len(alog.IDs()) {
		t.Fatalf("the corpus on disk holds %d lines, the writer wrote %d", len(idx.order), len(alog.IDs()))
	}
	return idx
}

// stored is what the server holds, queried back with LogsQL.
type stored struct {
	// total and uniq are the server's own count of rows and of distinct
	// (auditID, stage) pairs.
	total, uniq int
	tally       tally
	// wrongTime counts rows whose _time is not the event's stageTimestamp;
	// the first few are described in examples.
	wrongTime int
	examples  []string
}

// queryStored counts what vl holds against the events of idx: every
// (auditID, stage) must be there once, with _time equal to its
// stageTimestamp. It pulls only those three fields of each row (a few
// MB), not the lines.
func queryStored(t *testing.T, vl *vlogs.Server, idx *corpusIndex) stored {
	t.Helper()
	var st stored
	rows := vl.Query(t, `* | stats count() total, count_uniq(auditID, stage) uniq`)
	if len(rows) != 1 {
		t.Fatalf("stats answered %d rows, want 1: %v", len(rows), rows)
	}
	st.total, _ = strconv.Atoi(rows[0]["total"])
	st.uniq, _ = strconv.Atoi(rows[0]["uniq"])

	count := make(map[stageKey]int, len(idx.order))
	for _, r := range vl.Query(t, `* | fields auditID, stage, _time`) {
		k := stageKey{r["auditID"], r["stage"]}
		count[k]++
		ev, ok := idx.events[k]
		if !ok {
			continue
		}
		if ts, err := time.Parse(time.RFC3339Nano, r["_time"]); err != nil || !ts.Equal(ev.stageTime) {
			st.wrongTime++
			st.example("%s: _time %s, want the stageTimestamp %s", k, r["_time"], ev.stageTime.Format(time.RFC3339Nano))
		}
	}
	st.tally = tally{written: len(idx.order), firstMisorder: -1}
	for _, k := range idx.order {
		switch n := count[k]; n {
		case 0:
			st.tally.lost++
			if len(st.tally.missing) < 5 {
				st.tally.missing = append(st.tally.missing, k.String())
			}
		default:
			st.tally.delivered++
			st.tally.duplicates += n - 1
		}
	}
	for k, n := range count {
		if _, ok := idx.events[k]; !ok {
			st.tally.unexpected += n
			st.example("%s: stored, but no such event was written", k)
		}
	}
	return st
}

func (st *stored) example(format string, args ...any) {
	if len(st.examples) < 5 {
		st.examples = append(st.examples, fmt.Sprintf(format, args...))
	}
}

// check fails the test unless the server holds each written event exactly
// once, with its stage and its stageTimestamp as _time.
func (st stored) check(t *testing.T, server string) {
	t.Helper()
	tl := st.tally
	if tl.lost != 0 || tl.duplicates != 0 || tl.unexpected != 0 {
		t.Errorf("%s: each event must be stored once: lost %d (first %v), duplicates %d, unexpected %d",
			server, tl.lost, tl.missing, tl.duplicates, tl.unexpected)
	}
	if st.total != tl.written || st.uniq != tl.written {
		t.Errorf("%s counts %d rows and %d distinct (auditID, stage), want %d of each", server, st.total, st.uniq, tl.written)
	}
	if st.wrongTime != 0 || tl.unexpected != 0 {
		t.Errorf("%s: %d rows with _time other than stageTimestamp, %d of events never written; the first: %v",
			server, st.wrongTime, tl.unexpected, st.examples)
	}
}

// checkStageLevels compares the server's count of rows by stage and level
// (labels for the loki sink, document fields for elasticsearch) with the
// corpus'.
func checkStageLevels(t *testing.T, vl *vlogs.Server, idx *corpusIndex) {
	t.Helper()
	got := map[string]int{}
	for _, r := range vl.Query(t, `* | stats by (stage, level) count() n`) {
		got[r["stage"]+"/"+r["level"]], _ = strconv.Atoi(r["n"])
	}
	for k, n := range idx.byStageLevel {
		if got[k] != n {
			t.Errorf("stage/level %s: %d rows, want %d (all by stage/level: %v)", k, got[k], n, got)
		}
	}
	for k := range got {
		if _, ok := idx.byStageLevel[k]; !ok {
			t.Errorf("stage/level %s: %d rows, and no such event was written", k, got[k])
		}
	}
}

// checkGroups requires that the server's rows form exactly one group by
// the fields in want, with want's values, holding all n rows.
func checkGroups(t *testing.T, vl *vlogs.Server, want map[string]string, n int) {
	t.Helper()
	var by []string
	for k := range want {
		by = append(by, fmt.Sprintf("%q", k))
	}
	slices.Sort(by)
	q := fmt.Sprintf(`* | stats by (%s) count() n`, strings.Join(by, ", "))
	rows := vl.Query(t, q)
	if len(rows) != 1 {
		t.Errorf("%s: %d groups, want 1 (every row with %v): %v", q, len(rows), want, rows)
		return
	}
	for k, v := range want {
		if rows[0][k] != v {
			t.Errorf("%s: %s=%q, want %q", q, k, rows[0][k], v)
		}
	}
	if rows[0]["n"] != strconv.Itoa(n) {
		t.Errorf("%s: %s rows carry %v, want all %d", q, rows[0]["n"], want, n)
	}
}

// sampleRows queries the rows of the sampled events with fields. A
// sampled event with no row, or more than one, fails the test.
func sampleRows(t *testing.T, vl *vlogs.Server, idx *corpusIndex, fields ...string) map[stageKey]map[string]string {
	t.Helper()
	quoted := make([]string, len(idx.sample))
	for i, k := range idx.sample {
		quoted[i] = strconv.Quote(k.auditID)
	}
	q := fmt.Sprintf(`auditID:in(%s) | fields auditID, stage, %s`, strings.Join(quoted, ", "), strings.Join(fields, ", "))
	out := make(map[stageKey]map[string]string, len(idx.sample))
	for _, r := range vl.Query(t, q) {
		k := stageKey{r["auditID"], r["stage"]}
		if _, dup := out[k]; dup {
			t.Errorf("%s is stored twice", k)
		}
		out[k] = r
	}
	for _, k := range idx.sample {
		if _, ok := out[k]; !ok {
			t.Errorf("sampled event %s is missing", k)
		}
	}
	return out
}

// serverProblems returns the server's warnings and errors: VictoriaLogs
// answers success and then drops rows it cannot store (too many field
// names, lines too long) with only a warning in its log.
func serverProblems(vl *vlogs.Server) []string {
	var out []string
	for l := range strings.SplitSeq(vl.Log(), "\n") {
		if strings.Contains(l, "\twarn\t") || strings.Contains(l, "\terror\t") ||
			strings.Contains(l, "ignoring") || strings.Contains(l, "skipping") || strings.Contains(l, "dropping") {
			out = append(out, l)
		}
	}
	return out
}

func checkServerLog(t *testing.T, server string, vl *vlogs.Server) {
	t.Helper()
	if p := serverProblems(vl); len(p) > 0 {
		t.Errorf("%s logged %d warnings or errors (it drops rows it cannot store after answering success); the first:\n%s",
			server, len(p), strings.Join(p[:min(5, len(p))], "\n"))
	}
}

// checkLokiSample compares the sampled events' rows with their lines:
// the line byte for byte (or, over max_line_size, shrunk and marked), the
// labels and the structured metadata.
func checkLokiSample(t *testing.T, vl *vlogs.Server, idx *corpusIndex) {
	t.Helper()
	rows := sampleRows(t, vl, idx, "_msg", "truncated", "job", "cluster", "node", "team", "stage", "level",
		"user", "verb", "resource", "subresource", "namespace", "name", "apiGroup", "code", "sourceIP", "userAgent", "decision")
	var p, q parse.Parser
	shrunk := 0
	for _, id := range idx.sample {
		row, ok := rows[id]
		if !ok {
			continue
		}
		line := idx.events[id].line
		if len(line) <= lokiMaxLine {
			if row["_msg"] != string(line) || row["truncated"] != "" {
				t.Errorf("%s: the line is not stored byte for byte (truncated=%q):\n got %.200s\nwant %.200s", id, row["truncated"], row["_msg"], line)
			}
		} else {
			shrunk++
			got, err := q.Parse([]byte(row["_msg"]))
			if err != nil || got.AuditID != id.auditID || len(row["_msg"]) > lokiMaxLine || !strings.HasPrefix(row["truncated"], "managedFields") {
				t.Errorf("%s: a line of %d bytes is stored as %d bytes with truncated=%q (parse error %v); want it shrunk under %d bytes, managedFields first",
					id, len(line), len(row["_msg"]), row["truncated"], err, lokiMaxLine)
			}
		}
		ev, err := p.Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"job": "kubernetes-audit", "cluster": "acceptance", "node": "cp-0", "team": "audit",
			"stage": ev.Stage, "level": ev.Level, "user": ev.Username, "verb": ev.Verb,
			"resource": ev.ObjectRef.Resource, "subresource": ev.ObjectRef.Subresource,
			"namespace": ev.ObjectRef.Namespace, "name": ev.ObjectRef.Name, "apiGroup": ev.ObjectRef.APIGroup,
			"sourceIP": strings.Join(ev.SourceIPs, ","), "userAgent": ev.UserAgent, "decision": ev.Decision, "code": "",
		}
		if ev.Code != 0 {
			want["code"] = strconv.Itoa(ev.Code)
		}
		for k, v := range want {
			if row[k] != v {
				t.Errorf("%s: field %s = %q, want %q", id, k, row[k], v)
			}
		}
	}
	if shrunk == 0 && !testing.Short() {
		t.Errorf("no sampled line is longer than %d bytes (%d in the corpus): the shrinking went untested", lokiMaxLine, idx.long)
	}
}

// checkESSample compares the sampled events' documents with their lines:
// the fields the sink adds, fields of the event, and the request body
// byte for byte (bodies are JSON strings by default).
func checkESSample(t *testing.T, vl *vlogs.Server, idx *corpusIndex) {
	t.Helper()
	rows := sampleRows(t, vl, idx, "cluster", "node", "stage", "level", "verb", "user.username",
		"objectRef.resource", "objectRef.namespace", "objectRef.name", "responseStatus.code", "requestObject")
	var p parse.Parser
	bodies := 0
	for _, id := range idx.sample {
		row, ok := rows[id]
		if !ok {
			continue
		}
		line := idx.events[id].line
		ev, err := p.Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"cluster": "acceptance", "node": "cp-0", "stage": ev.Stage, "level": ev.Level, "verb": ev.Verb,
			"user.username": ev.Username, "objectRef.resource": ev.ObjectRef.Resource,
			"objectRef.namespace": ev.ObjectRef.Namespace, "objectRef.name": ev.ObjectRef.Name,
			"responseStatus.code": "", "requestObject": "",
		}
		if ev.Code != 0 {
			want["responseStatus.code"] = strconv.Itoa(ev.Code)
		}
		if r := ev.RequestObject; r.Present() && line[r.ValueStart] == '{' {
			want["requestObject"] = string(line[r.ValueStart:r.ValueEnd])
			bodies++
		}
		for k, v := range want {
			if row[k] != v {
				t.Errorf("%s: field %s = %.200q, want %.200q", id, k, row[k], v)
			}
		}
	}
	if bodies == 0 && !testing.Short() {
		t.Error("no sampled event has a request body: the body encoding went untested")
	}
}

// mbPerSecond is the corpus' rate through the shipper, in MiB/s.
func mbPerSecond(alog *shipperproc.AuditLog, elapsed time.Duration) string {
	return fmt.Sprintf("mb=%d mb_per_s=%.1f", alog.Bytes()/megabyte, float64(alog.Bytes())/megabyte/elapsed.Seconds())
}

// TestLokiSinkEndToEnd ships a lumberjack-rotated corpus of 100,000 events
// through the binary's loki sink (protobuf + snappy) to VictoriaLogs'
// Loki push endpoint, and queries it back: every auditID once with its
// stage, _time equal to stageTimestamp, the labels on every row, a sample
// of lines byte for byte with their structured metadata, and nothing
// dropped in the server's log.
func TestLokiSinkEndToEnd(t *testing.T) {
	vl := vlogs.Start(t)
	s := newSinksShipper(t, lokiSinkYAML(vl))
	n := scaled(100_000)
	alog, elapsed := shipCorpus(t, s, n, 41, lokiSink)
	m := s.MustScrape()
	s.Stop()
	vl.Flush(t)

	idx := indexCorpus(t, alog)
	st := queryStored(t, vl, idx)
	dls := readDeadLetters(t, s.deadLetter())
	truncated, _ := m.Value("audit_shipper_loki_truncated_entries_total", "sink", lokiSink)
	retries, _ := m.Value("audit_shipper_send_retries_total", "sink", lokiSink)
	summary(t, s, st.tally, len(dls), elapsed, fmt.Sprintf("%s rotations=%d rows=%d truncated=%v retries=%v",
		mbPerSecond(alog, elapsed), alog.Rotations(), st.total, truncated, retries))

	st.check(t, "VictoriaLogs")
	checkStageLevels(t, vl, idx)
	checkGroups(t, vl, map[string]string{"job": "kubernetes-audit", "cluster": "acceptance", "node": "cp-0", "team": "audit"}, n)
	checkLokiSample(t, vl, idx)
	if int(truncated) != idx.long {
		t.Errorf("audit_shipper_loki_truncated_entries_total = %v, want %d (the lines over %d bytes)", truncated, idx.long, lokiMaxLine)
	}
	checkServerLog(t, "VictoriaLogs", vl)
	s.NoLossReported()
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}

// TestElasticsearchSinkEndToEnd ships a lumberjack-rotated corpus of
// 100,000 events through the binary's elasticsearch sink to VictoriaLogs'
// bulk endpoint, with the default target (the data stream
// logs-kubernetes.audit-default, create actions) and gzip, and queries it
// back: every auditID and stage exactly once, @timestamp (VictoriaLogs'
// _time) equal to stageTimestamp, cluster and node on every document, a
// sample compared field by field with the request body byte for byte, and
// nothing dropped in the server's log.
func TestElasticsearchSinkEndToEnd(t *testing.T) {
	vl := vlogs.Start(t, esVlogsArgs...)
	s := newSinksShipper(t, esSinkYAML(vl))
	n := scaled(100_000)
	alog, elapsed := shipCorpus(t, s, n, 42, esSink)
	m := s.MustScrape()
	s.Stop()
	vl.Flush(t)

	idx := indexCorpus(t, alog)
	st := queryStored(t, vl, idx)
	dls := readDeadLetters(t, s.deadLetter())
	sent, _ := m.Value("audit_shipper_elasticsearch_sent_bytes_total", "sink", esSink)
	retries, _ := m.Value("audit_shipper_send_retries_total", "sink", esSink)
	summary(t, s, st.tally, len(dls), elapsed, fmt.Sprintf("%s rotations=%d rows=%d gzipped_mb=%.0f retries=%v",
		mbPerSecond(alog, elapsed), alog.Rotations(), st.total, sent/megabyte, retries))

	st.check(t, "VictoriaLogs")
	checkStageLevels(t, vl, idx)
	checkGroups(t, vl, map[string]string{"cluster": "acceptance", "node": "cp-0"}, n)
	checkESSample(t, vl, idx)
	checkServerLog(t, "VictoriaLogs", vl)
	s.NoLossReported()
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}

// TestAllSinksAtOnce runs a file, a loki and an elasticsearch sink in one
// shipper over one corpus of 100,000 events, each remote sink with a
// VictoriaLogs of its own so that counts cannot mix: each sink gets every
// event once.
func TestAllSinksAtOnce(t *testing.T) {
	lokiVL := vlogs.Start(t)
	esVL := vlogs.Start(t, esVlogsArgs...)
	s := newShipper(t, defaults)
	s.setSinks(fileSinkYAML(s), lokiSinkYAML(lokiVL), esSinkYAML(esVL))
	n := scaled(100_000)
	alog, elapsed := shipCorpus(t, s, n, 43, sinkName, lokiSink, esSink)
	s.Stop()
	lokiVL.Flush(t)
	esVL.Flush(t)

	out := newOutput(s.outPath())
	out.poll(t)
	fileTally := out.tally(alog.IDs())
	idx := indexCorpus(t, alog)
	lokiStored := queryStored(t, lokiVL, idx)
	esStored := queryStored(t, esVL, idx)
	dls := readDeadLetters(t, s.deadLetter())
	for _, r := range []struct {
		sink string
		tl   tally
	}{{sinkName, fileTally}, {lokiSink, lokiStored.tally}, {esSink, esStored.tally}} {
		t.Logf("sink %s: written=%d delivered=%d duplicates=%d lost=%d", r.sink, r.tl.written, r.tl.delivered, r.tl.duplicates, r.tl.lost)
	}
	worst := fileTally
	for _, tl := range []tally{lokiStored.tally, esStored.tally} {
		if tl.lost+tl.duplicates > worst.lost+worst.duplicates {
			worst = tl
		}
	}
	summary(t, s, worst, len(dls), elapsed, fmt.Sprintf("%s rotations=%d sinks=3 (figures of the worst sink)", mbPerSecond(alog, elapsed), alog.Rotations()))

	if fileTally.lost != 0 || fileTally.duplicates != 0 || fileTally.torn != 0 || fileTally.unexpected != 0 {
		t.Errorf("file sink: lost %d (first %v), duplicates %d, torn %d, unexpected %d",
			fileTally.lost, fileTally.missing, fileTally.duplicates, fileTally.torn, fileTally.unexpected)
	}
	if fileTally.firstMisorder >= 0 {
		t.Errorf("file sink: events arrived out of file order: %s", fileTally.misorder)
	}
	lokiStored.check(t, "the loki sink's VictoriaLogs")
	esStored.check(t, "the elasticsearch sink's VictoriaLogs")
	checkServerLog(t, "the loki sink's VictoriaLogs", lokiVL)
	checkServerLog(t, "the elasticsearch sink's VictoriaLogs", esVL)
	s.NoLossReported()
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}

// exampleConfig is the example config name under configs/ with each old
// string of replace (pairs of old, new) replaced: the URLs, paths and
// addresses that differ on a test machine. Each old string must occur in
// the example, so that the test follows the file when it changes.
func exampleConfig(t *testing.T, name string, replace ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(cfg, replace[i]) {
			t.Fatalf("configs/%s no longer holds %q, which this test rewrites to %q; update the test", name, replace[i], replace[i+1])
		}
		cfg = strings.ReplaceAll(cfg, replace[i], replace[i+1])
	}
	return []byte(cfg)
}

// check runs `audit-shipper check --config path` and requires exit 0.
func checkConfig(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command(binary, "check", "--config", path).CombinedOutput()
	if err != nil {
		t.Errorf("audit-shipper check --config %s: %v, want exit 0:\n%s", path, err, out)
	}
}

// esExampleFiles writes the files configs/elasticsearch.yaml reads from
// /etc/audit-shipper into dir: the password and the CA certificate.
func esExampleFiles(t *testing.T, dir, password string, ca []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "elasticsearch-password"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "elasticsearch-ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExampleConfigsCheck runs `audit-shipper check` on the example
// configs: configs/loki.yaml as written, configs/elasticsearch.yaml with
// its two files (password, CA) in a temporary directory instead of
// /etc/audit-shipper, since check reads them.
func TestExampleConfigsCheck(t *testing.T) {
	checkConfig(t, filepath.Join("..", "..", "configs", "loki.yaml"))

	dir := t.TempDir()
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	srv.Close()
	esExampleFiles(t, dir, "changeme", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	path := filepath.Join(dir, "elasticsearch.yaml")
	if err := os.WriteFile(path, exampleConfig(t, "elasticsearch.yaml", "/etc/audit-shipper/", dir+"/"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkConfig(t, path)
}

// TestLokiExampleConfig runs the binary with configs/loki.yaml, changed
// only in its URL (VictoriaLogs' Loki endpoint instead of Loki's), its
// paths and its metrics address, over a rotated corpus, and finds every
// event in VictoriaLogs under the labels the example sets.
func TestLokiExampleConfig(t *testing.T) {
	vl := vlogs.Start(t)
	s := newShipper(t, defaults)
	cfg := exampleConfig(t, "loki.yaml",
		"http://localhost:3100/loki/api/v1/push", vl.URL()+"/insert/loki/api/v1/push?disable_message_parsing=1",
		"/var/log/kubernetes/audit/", s.logDir()+"/",
		"/var/lib/audit-shipper/", filepath.Dir(s.positions())+"/",
		"127.0.0.1:9464", s.Listen())
	s.WriteConfig(cfg)
	n := scaled(20_000)
	alog, elapsed := shipCorpus(t, s, n, 44, lokiSink)
	s.Stop()
	vl.Flush(t)

	idx := indexCorpus(t, alog)
	st := queryStored(t, vl, idx)
	dls := readDeadLetters(t, s.deadLetter())
	summary(t, s, st.tally, len(dls), elapsed, fmt.Sprintf("%s rotations=%d rows=%d", mbPerSecond(alog, elapsed), alog.Rotations(), st.total))
	st.check(t, "VictoriaLogs")
	checkStageLevels(t, vl, idx)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	checkGroups(t, vl, map[string]string{"job": "kubernetes-audit", "cluster": "local", "node": host}, n)
	checkServerLog(t, "VictoriaLogs", vl)
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}

// esFront stands in for a local Elasticsearch 8 in front of VictoriaLogs:
// HTTPS with its own certificate, basic authentication, the template APIs,
// and the bulk API, which it hands on to VictoriaLogs' bulk endpoint with
// the headers VictoriaLogs needs (so the example config needs none).
type esFront struct {
	user, password string
	bulk           *httputil.ReverseProxy

	mu         sync.Mutex
	templates  []string // PUT paths, in order
	badBodies  []string
	unauth     int
	unexpected []string
}

func newESFront(vl *vlogs.Server, user, password string) *esFront {
	target, _ := url.Parse(vl.URL())
	f := &esFront{user: user, password: password}
	f.bulk = &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.URL.Path = "/insert/elasticsearch/_bulk"
		r.Out.Header.Del("Authorization")
		r.Out.Header.Set("VL-Time-Field", "@timestamp")
		r.Out.Header.Set("VL-Msg-Field", "requestURI")
		r.Out.Header.Set("VL-Stream-Fields", "cluster,node")
	}}
	return f
}

func (f *esFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.password {
		f.mu.Lock()
		f.unauth++
		f.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Basic realm="security"`)
		http.Error(w, `{"error":{"type":"security_exception"},"status":401}`, http.StatusUnauthorized)
		return
	}
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/_bulk":
		f.bulk.ServeHTTP(w, r)
	case r.Method == http.MethodPut && (strings.HasPrefix(r.URL.Path, "/_component_template/") || strings.HasPrefix(r.URL.Path, "/_index_template/")):
		body, err := io.ReadAll(r.Body)
		f.mu.Lock()
		f.templates = append(f.templates, r.URL.Path)
		if err != nil || !json.Valid(body) {
			f.badBodies = append(f.badBodies, fmt.Sprintf("%s: %v %.100q", r.URL.Path, err, body))
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"acknowledged":true}`)
	default:
		f.mu.Lock()
		f.unexpected = append(f.unexpected, r.Method+" "+r.URL.Path)
		f.mu.Unlock()
		http.Error(w, `{"error":"not handled by the test's front"}`, http.StatusNotFound)
	}
}

// TestElasticsearchExampleConfig runs the binary with
// configs/elasticsearch.yaml, changed only in its address (a TLS front
// with basic authentication instead of https://localhost:9200) and its
// paths, over a rotated corpus: the example's TLS (CA file), password file,
// template installation and data stream target work, and every event
// reaches the VictoriaLogs behind the front.
func TestElasticsearchExampleConfig(t *testing.T) {
	vl := vlogs.Start(t, esVlogsArgs...)
	const password = "example-password"
	front := newESFront(vl, "elastic", password)
	srv := httptest.NewUnstartedServer(front)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	s := newShipper(t, defaults)
	etc := filepath.Join(s.Dir(), "etc")
	if err := os.Mkdir(etc, 0o700); err != nil {
		t.Fatal(err)
	}
	esExampleFiles(t, etc, password, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	cfg := exampleConfig(t, "elasticsearch.yaml",
		"https://localhost:9200", srv.URL,
		"/etc/audit-shipper/", etc+"/",
		"/var/log/kubernetes/audit/", s.logDir()+"/",
		"/var/lib/audit-shipper/", filepath.Dir(s.positions())+"/",
		"127.0.0.1:9464", s.Listen())
	s.WriteConfig(cfg)
	n := scaled(20_000)
	alog, elapsed := shipCorpus(t, s, n, 45, "elasticsearch")
	s.Stop()
	vl.Flush(t)

	idx := indexCorpus(t, alog)
	st := queryStored(t, vl, idx)
	dls := readDeadLetters(t, s.deadLetter())
	summary(t, s, st.tally, len(dls), elapsed, fmt.Sprintf("%s rotations=%d rows=%d", mbPerSecond(alog, elapsed), alog.Rotations(), st.total))
	st.check(t, "VictoriaLogs")
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	checkGroups(t, vl, map[string]string{"cluster": "local", "node": host}, n)
	checkServerLog(t, "VictoriaLogs", vl)
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}

	front.mu.Lock()
	defer front.mu.Unlock()
	want := []string{"/_component_template/audit-shipper-mappings", "/_index_template/audit-shipper-logs-kubernetes.audit-default"}
	if !slices.Equal(front.templates, want) {
		t.Errorf("install_template: true made the requests PUT %v, want PUT %v", front.templates, want)
	}
	if len(front.badBodies) > 0 {
		t.Errorf("templates that are not JSON: %v", front.badBodies)
	}
	if front.unauth > 0 {
		t.Errorf("%d requests without the password of the password file", front.unauth)
	}
	if len(front.unexpected) > 0 {
		t.Errorf("requests the example should not make: %v", front.unexpected)
	}
}
