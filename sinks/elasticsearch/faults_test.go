package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/audit-shipper/audit-shipper/sinks"
)

// fakeItem is one action and document of a bulk request, as the fake
// read it.
type fakeItem struct {
	Index, ID string
	Doc       map[string]any
}

// fakeES is an Elasticsearch bulk endpoint for fault injection. It
// parses every request as Elasticsearch would (gzip, NDJSON pairs of a
// create action and a JSON document) and fails the test on anything
// else. By default it stores documents by _id and answers 201, or 409 for
// an _id it holds: Elasticsearch's create semantics. answer, when set,
// replaces that for a request.
type fakeES struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	docs     map[string]map[string]any // by _id
	requests int
	headers  []http.Header
	answer   func(n int, items []fakeItem, w http.ResponseWriter, r *http.Request) bool
}

func newFakeES(t *testing.T) *fakeES {
	f := &fakeES{t: t, docs: map[string]map[string]any{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeES) serve(w http.ResponseWriter, r *http.Request) {
	// No X-Elastic-Product header, as OpenSearch and other compatible
	// servers: the sink must not care.
	w.Header().Set("Content-Type", "application/json")
	f.mu.Lock()
	f.requests++
	n := f.requests
	f.headers = append(f.headers, r.Header.Clone())
	answer := f.answer
	f.mu.Unlock()

	if r.Method != http.MethodPost || r.URL.Path != "/_bulk" {
		f.t.Errorf("fake: unexpected %s %s", r.Method, r.URL.Path)
		http.Error(w, "no handler", http.StatusNotFound)
		return
	}
	items, err := readBulk(r)
	if err != nil {
		f.t.Errorf("fake: bad bulk request: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if answer != nil && answer(n, items, w, r) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out bytes.Buffer
	out.WriteString(`{"took":1,"errors":false,"items":[`)
	for i, it := range items {
		if i > 0 {
			out.WriteByte(',')
		}
		if _, dup := f.docs[it.ID]; dup {
			fmt.Fprintf(&out, `{"create":{"_index":%q,"_id":%q,"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[%s]: version conflict, document already exists (current version [1])"}}}`, it.Index, it.ID, it.ID)
			continue
		}
		f.docs[it.ID] = it.Doc
		fmt.Fprintf(&out, `{"create":{"_index":%q,"_id":%q,"_version":1,"result":"created","status":201}}`, it.Index, it.ID)
	}
	out.WriteString(`]}`)
	_, _ = w.Write(out.Bytes())
}

// readBulk parses a bulk request body strictly.
func readBulk(r *http.Request) ([]fakeItem, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		return nil, fmt.Errorf("Content-Type %q", ct)
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, err
		}
		body = zr
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, errors.New("the body does not end with a newline")
	}
	lines := bytes.Split(data[:len(data)-1], []byte("\n"))
	if len(lines)%2 != 0 {
		return nil, fmt.Errorf("%d lines do not pair up", len(lines))
	}
	var items []fakeItem
	for i := 0; i < len(lines); i += 2 {
		var a map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(lines[i], &a); err != nil {
			return nil, fmt.Errorf("action line %d: %v", i, err)
		}
		c, ok := a["create"]
		if len(a) != 1 || !ok || c.Index == "" || c.ID == "" {
			return nil, fmt.Errorf("action line %d is not a create with _index and _id: %s", i, lines[i])
		}
		var doc map[string]any
		if err := json.Unmarshal(lines[i+1], &doc); err != nil {
			return nil, fmt.Errorf("document line %d: %v", i+1, err)
		}
		items = append(items, fakeItem{Index: c.Index, ID: c.ID, Doc: doc})
	}
	return items, nil
}

func (f *fakeES) stored() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.docs)
}

func (f *fakeES) setAnswer(a func(n int, items []fakeItem, w http.ResponseWriter, r *http.Request) bool) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

// TestSendDeduplicates is the proof that replays do not duplicate on a
// server that honours _id: the same batch sent three times (and once
// more, shuffled into other batches) is stored once, and every later
// answer (409) counts as delivered.
func TestSendDeduplicates(t *testing.T) {
	es := newFakeES(t)
	s, env := newSink(t, "addresses: ["+es.srv.URL+"]")
	recs := records(t, 1, 500, time.Now())
	ctx := context.Background()
	for range 3 {
		if err := s.Send(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Send(ctx, append(recs[250:300:300], records(t, 2, 10, time.Now())...)); err != nil {
		t.Fatal(err)
	}
	if got := es.stored(); got != 510 {
		t.Errorf("the server holds %d documents, want 510", got)
	}
	if got := env.Counter(t, "audit_shipper_elasticsearch_items_total", "result", "duplicate"); got != 1050 {
		t.Errorf("duplicates counted: %v, want 1050", got)
	}
	if got := env.Counter(t, "audit_shipper_elasticsearch_items_total", "result", "created"); got != 510 {
		t.Errorf("created counted: %v, want 510", got)
	}
}

// TestSendMixedItems answers a real bulk response with every item
// outcome and checks which records come back, and as what.
func TestSendMixedItems(t *testing.T) {
	es := newFakeES(t)
	mixed := readTestdata(t, "bulk-mixed.json")
	es.setAnswer(func(_ int, items []fakeItem, w http.ResponseWriter, _ *http.Request) bool {
		if len(items) != 10 {
			t.Errorf("fake: %d documents, want 10", len(items))
		}
		_, _ = w.Write(mixed)
		return true
	})
	s, env := newSink(t, "addresses: ["+es.srv.URL+"]")
	err := s.Send(context.Background(), records(t, 1, 10, time.Now()))
	checkFates(t, err, mixedFates)
	for result, want := range map[string]float64{"created": 2, "duplicate": 1, "retryable": 3, "rejected": 4} {
		if got := env.Counter(t, "audit_shipper_elasticsearch_items_total", "result", result); got != want {
			t.Errorf("items_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	for reason, want := range map[string]float64{"mapping": 2, "illegal_argument": 1, "rejected_422": 1} {
		if got := env.Counter(t, "audit_shipper_elasticsearch_items_rejected_total", "reason", reason); got != want {
			t.Errorf("items_rejected_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// TestSendRetriesOnlyFailedItems plays the shipper: after a mixed answer
// it resends only the retryable records, and the server ends up with
// every record once.
func TestSendRetriesOnlyFailedItems(t *testing.T) {
	es := newFakeES(t)
	es.setAnswer(func(n int, items []fakeItem, w http.ResponseWriter, _ *http.Request) bool {
		if n != 1 {
			return false // store from the second request on
		}
		// The first request: store items 0 and 1, answer 429 and 503 for
		// the others.
		es.mu.Lock()
		defer es.mu.Unlock()
		var out bytes.Buffer
		out.WriteString(`{"errors":true,"items":[`)
		for i, it := range items {
			if i > 0 {
				out.WriteByte(',')
			}
			switch {
			case i < 2:
				es.docs[it.ID] = it.Doc
				fmt.Fprintf(&out, `{"create":{"_id":%q,"status":201}}`, it.ID)
			case i%2 == 0:
				fmt.Fprintf(&out, `{"create":{"_id":%q,"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}`, it.ID)
			default:
				fmt.Fprintf(&out, `{"create":{"_id":%q,"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}`, it.ID)
			}
		}
		out.WriteString(`]}`)
		_, _ = w.Write(out.Bytes())
		return true
	})
	s, _ := newSink(t, "addresses: ["+es.srv.URL+"]")
	recs := records(t, 4, 20, time.Now())
	err := s.Send(context.Background(), recs)
	var items sinks.ItemErrors
	if !errors.As(err, &items) || len(items) != 18 {
		t.Fatalf("want 18 retryable items, got %v", err)
	}
	var retry []sinks.Record
	for _, it := range items {
		if sinks.IsPermanent(it.Err) {
			t.Errorf("record %d: %v should be retryable", it.Index, it.Err)
		}
		retry = append(retry, recs[it.Index])
	}
	if err := s.Send(context.Background(), retry); err != nil {
		t.Fatal(err)
	}
	if got := es.stored(); got != 20 {
		t.Errorf("the server holds %d documents, want 20", got)
	}
}

// TestSendWholeRequestFaults: answers to the whole request, a reset
// connection and a server too slow for the timeout.
func TestSendWholeRequestFaults(t *testing.T) {
	type want struct {
		permanent bool
		reason    string
		after     time.Duration
		text      string
		code      string // the bulk_requests_total series counted
	}
	for _, c := range []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		want   want
	}{
		{"429 with Retry-After", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "12")
			w.WriteHeader(429)
			_, _ = io.WriteString(w, `{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}],"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"},"status":429}`)
		}, want{after: 12 * time.Second, text: "es_rejected_execution_exception", code: "429"}},
		{"503", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(503)
			_, _ = io.WriteString(w, `{"error":{"type":"cluster_block_exception","reason":"blocked by: [SERVICE_UNAVAILABLE/1/state not recovered /initialized];"},"status":503}`)
		}, want{text: "state not recovered", code: "503"}},
		{"401", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"error":{"type":"security_exception","reason":"unable to authenticate with provided credentials and anonymous access is not allowed for this request"},"status":401}`)
		}, want{text: "check the sink's credentials", code: "401"}},
		{"413", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(413)
		}, want{permanent: true, reason: "too_large", text: "batch.max_bytes", code: "413"}},
		{"400", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"error":{"type":"illegal_argument_exception","reason":"Malformed action/metadata line [1]"},"status":400}`)
		}, want{permanent: true, reason: "rejected_400", text: "Malformed action/metadata line", code: "400"}},
		{"connection reset", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			_ = conn.(*net.TCPConn).SetLinger(0) // RST, not FIN
			conn.Close()
		}, want{text: "bulk request of 5 documents failed", code: "error"}},
		{"no answer within the timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, want{text: "no answer within timeout 300ms", code: "error"}},
		{"answer cut short", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "1000")
			_, _ = io.WriteString(w, `{"took":1,"errors":false,"items":[{"create":`)
		}, want{text: "unexpected EOF", code: "error"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			es := newFakeES(t)
			es.setAnswer(func(_ int, _ []fakeItem, w http.ResponseWriter, r *http.Request) bool {
				c.answer(w, r)
				return true
			})
			s, env := newSink(t, "addresses: ["+es.srv.URL+"]\ntimeout: 300ms")
			start := time.Now()
			err := s.Send(context.Background(), records(t, 1, 5, time.Now()))
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("Send took %v", took)
			}
			var items sinks.ItemErrors
			if err == nil || errors.As(err, &items) {
				t.Fatalf("want an error for the whole request, got %v", err)
			}
			if got := sinks.IsPermanent(err); got != c.want.permanent {
				t.Errorf("permanent=%v, want %v: %v", got, c.want.permanent, err)
			}
			if got := sinks.PermanentReason(err); got != c.want.reason {
				t.Errorf("reason %q, want %q", got, c.want.reason)
			}
			if got := sinks.RetryAfter(err); got != c.want.after {
				t.Errorf("RetryAfter %v, want %v", got, c.want.after)
			}
			if !strings.Contains(err.Error(), c.want.text) {
				t.Errorf("error %q does not contain %q", err, c.want.text)
			}
			if got := env.Counter(t, "audit_shipper_elasticsearch_bulk_requests_total", "code", c.want.code); got != 1 {
				t.Errorf("bulk_requests_total{code=%q} = %v, want 1", c.want.code, got)
			}
		})
	}
}

// TestSendCancelled: when the shipper cancels, Send returns ctx.Err()
// promptly, not a retryable error.
func TestSendCancelled(t *testing.T) {
	es := newFakeES(t)
	es.setAnswer(func(_ int, _ []fakeItem, _ http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done()
		return true
	})
	s, _ := newSink(t, "addresses: ["+es.srv.URL+"]")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err := s.Send(ctx, records(t, 1, 5, time.Now()))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	var r *sinks.RetryableError
	if errors.As(err, &r) {
		t.Error("a cancelled Send must not look retryable")
	}
}

// TestSendFailover: with one dead node among the addresses, the shipper's
// next attempt goes to a live one.
func TestSendFailover(t *testing.T) {
	es := newFakeES(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	s, _ := newSink(t, "addresses: ["+dead+", "+es.srv.URL+"]")
	recs := records(t, 1, 50, time.Now())
	failures := 0
	for attempt := 0; ; attempt++ {
		err := s.Send(context.Background(), recs)
		if err == nil {
			break
		}
		var r *sinks.RetryableError
		if !errors.As(err, &r) {
			t.Fatalf("attempt %d: want retryable, got %v", attempt, err)
		}
		if failures++; failures > 1 {
			t.Fatalf("attempt %d failed again: %v", attempt, err)
		}
	}
	for range 5 { // later sends avoid the dead node
		if err := s.Send(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	if got := es.stored(); got != 50 {
		t.Errorf("the server holds %d documents, want 50", got)
	}
}

// TestSendHeadersAndCompression checks what goes on the wire: gzip by
// default (and the byte counters), plain with compress: false, the
// configured headers and each kind of authentication.
func TestSendHeadersAndCompression(t *testing.T) {
	dir := t.TempDir()
	secret := func(name, value string) string {
		p := dir + "/" + name
		writeFile(t, p, value+"\n")
		return p
	}
	for _, c := range []struct {
		keys     string
		auth     string
		compress bool
	}{
		{"username: shipper\npassword_file: " + secret("pw", "s3cret"), "Basic c2hpcHBlcjpzM2NyZXQ=", true},
		{"api_key_file: " + secret("key", "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="), "APIKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==", true},
		{"bearer_token: tok-123\ncompress: false", "Bearer tok-123", false},
	} {
		es := newFakeES(t)
		s, env := newSink(t, "addresses: ["+es.srv.URL+"]\nheaders: {VL-Time-Field: \"@timestamp\"}\n"+c.keys)
		if err := s.Send(context.Background(), records(t, 1, 100, time.Now())); err != nil {
			t.Fatal(err)
		}
		h := es.headers[0]
		if got := h.Get("Authorization"); got != c.auth {
			t.Errorf("%s: Authorization %q, want %q", c.keys, got, c.auth)
		}
		if got := h.Get("VL-Time-Field"); got != "@timestamp" {
			t.Errorf("%s: the configured header is missing: %q", c.keys, got)
		}
		if got := h.Get("Content-Encoding") == "gzip"; got != c.compress {
			t.Errorf("%s: gzip=%v, want %v", c.keys, got, c.compress)
		}
		body := env.Counter(t, "audit_shipper_elasticsearch_body_bytes_total", "", "")
		sent := env.Counter(t, "audit_shipper_elasticsearch_sent_bytes_total", "", "")
		if c.compress && !(sent > 0 && sent < body/3) {
			t.Errorf("%s: %v bytes sent for a body of %v: not compressed?", c.keys, sent, body)
		}
		if !c.compress && sent != body {
			t.Errorf("%s: %v bytes sent for a body of %v without compression", c.keys, sent, body)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSendLarge: a batch of the default maximum size (1000 events) goes
// through whole, and its bodies arrive as JSON text.
func TestSendLarge(t *testing.T) {
	es := newFakeES(t)
	s, _ := newSink(t, "addresses: ["+es.srv.URL+"]")
	recs := records(t, 5, 1000, time.Now())
	if err := s.Send(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if got := es.stored(); got != len(recs) {
		t.Errorf("stored %d of %d", got, len(recs))
	}
	// The fake decoded every document; spot-check a body string.
	es.mu.Lock()
	defer es.mu.Unlock()
	n := 0
	for _, d := range es.docs {
		if s, ok := d["requestObject"].(string); ok {
			if !json.Valid([]byte(s)) {
				t.Fatalf("requestObject is not JSON text: %.200s", s)
			}
			n++
		}
	}
	if n == 0 {
		t.Error("no document carried a requestObject string")
	}
}
