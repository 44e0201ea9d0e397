package loki

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/audit-shipper/audit-shipper/internal/sinktest"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// decodePush decodes a push request body the way Loki does, by its
// Content-Type: snappy-compressed protobuf, or JSON.
func decodePush(contentType string, body []byte) ([]push.Stream, error) {
	if contentType == "application/json" {
		return decodeJSON(body)
	}
	if contentType != "application/x-protobuf" {
		return nil, fmt.Errorf("unexpected Content-Type %q", contentType)
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("protobuf: %w", err)
	}
	return req.Streams, nil
}

func decodeJSON(body []byte) ([]push.Stream, error) {
	var req struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values [][]json.RawMessage
		} `json:"streams"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	var out []push.Stream
	for _, s := range req.Streams {
		var ls []string
		for k, v := range s.Stream {
			ls = append(ls, k+"="+strconv.Quote(v))
		}
		slices.Sort(ls)
		st := push.Stream{Labels: "{" + strings.Join(ls, ", ") + "}"}
		for _, v := range s.Values {
			var ts, line string
			if len(v) < 2 || len(v) > 3 || json.Unmarshal(v[0], &ts) != nil || json.Unmarshal(v[1], &line) != nil {
				return nil, fmt.Errorf("json: bad value %s", v)
			}
			ns, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("json: timestamp %q: %w", ts, err)
			}
			e := push.Entry{Timestamp: time.Unix(0, ns).UTC(), Line: line}
			if len(v) == 3 {
				// Keep the order in which the sink wrote the metadata.
				d := json.NewDecoder(bytes.NewReader(v[2]))
				if _, err := d.Token(); err != nil {
					return nil, err
				}
				for d.More() {
					tok, err := d.Token()
					if err != nil {
						return nil, err
					}
					k, _ := tok.(string)
					var val string
					if err := d.Decode(&val); err != nil {
						return nil, err
					}
					e.StructuredMetadata = append(e.StructuredMetadata, push.LabelAdapter{Name: k, Value: val})
				}
			}
			st.Entries = append(st.Entries, e)
		}
		out = append(out, st)
	}
	return out, nil
}

// render writes decoded streams as text for golden files and diffs.
func render(streams []push.Stream) string {
	var b strings.Builder
	for _, s := range streams {
		fmt.Fprintf(&b, "stream %s\n", s.Labels)
		for _, e := range s.Entries {
			fmt.Fprintf(&b, "  %s", e.Timestamp.UTC().Format(time.RFC3339Nano))
			for _, m := range e.StructuredMetadata {
				fmt.Fprintf(&b, " %s=%q", m.Name, m.Value)
			}
			fmt.Fprintf(&b, "\n    %s\n", e.Line)
		}
	}
	return b.String()
}

// goldenRecords are hand-written events: two streams, one of them out of
// time order, JSON escapes in a value, an event without objectRef, and one
// whose stageTimestamp is missing.
func goldenRecords(t *testing.T) []sinks.Record {
	lines := []string{
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods/web-0","verb":"get","user":{"username":"system:node:cp-1","groups":["system:nodes"]},"sourceIPs":["10.0.0.5","10.0.0.1"],"userAgent":"kubelet/v1.30.2","objectRef":{"resource":"pods","namespace":"default","name":"web-0","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-06-01T00:00:00.000100Z","stageTimestamp":"2024-06-01T00:00:00.000300Z"}`,
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"a-2","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/shop/deployments/cart","verb":"patch","user":{"username":"jane@example.com"},"sourceIPs":["192.0.2.7"],"objectRef":{"resource":"deployments","namespace":"shop","name":"cart \"v2\"\u003c","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":422},"requestObject":{"spec":{"replicas":3}},"requestReceivedTimestamp":"2024-06-01T00:00:00.000050Z","stageTimestamp":"2024-06-01T00:00:00.000400Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`,
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-3","stage":"ResponseComplete","requestURI":"/version","verb":"get","user":{"username":"system:anonymous"},"sourceIPs":["10.0.0.9"],"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-06-01T00:00:00.000150Z","stageTimestamp":"2024-06-01T00:00:00.000200Z"}`,
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-4","stage":"RequestReceived","requestURI":"/api/v1/namespaces/default/configmaps","verb":"create","user":{"username":"admin"},"sourceIPs":["10.0.0.2"],"objectRef":{"resource":"configmaps","namespace":"default","apiVersion":"v1"},"requestReceivedTimestamp":"2024-06-01T00:00:00.000500Z"}`,
	}
	var p parse.Parser
	recs := make([]sinks.Record, len(lines))
	for i, l := range lines {
		recs[i] = sinktest.Record(t, &p, []byte(l))
	}
	return recs
}

// captured is one request as a fake Loki received it.
type captured struct {
	header http.Header
	body   []byte
}

// captureServer answers 204 to every request and keeps it.
func captureServer(t *testing.T) (*httptest.Server, func() []captured) {
	var mu sync.Mutex
	var got []captured
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the request: %v", err)
		}
		mu.Lock()
		got = append(got, captured{r.Header.Clone(), body})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []captured {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// TestGoldenRequest checks that a request body decodes to exactly the
// entries sent: same lines byte for byte, labels, structured metadata, and
// each stream in time order; in both encodings, against one golden file.
func TestGoldenRequest(t *testing.T) {
	for _, enc := range []string{"protobuf", "json"} {
		t.Run(enc, func(t *testing.T) {
			srv, got := captureServer(t)
			s, _ := newSink(t, fmt.Sprintf("url: %s/loki/api/v1/push\nencoding: %s\ncluster: test\nnode: cp-1\nstructured_metadata: [auditID, user, verb, resource, namespace, name, apiGroup, code, sourceIP, decision]", srv.URL, enc))
			recs := goldenRecords(t)
			if err := s.Send(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			reqs := got()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			streams, err := decodePush(reqs[0].header.Get("Content-Type"), reqs[0].body)
			if err != nil {
				t.Fatal(err)
			}
			text := render(streams)
			const golden = "testdata/push.golden"
			if *update && enc == "protobuf" {
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if text != string(want) {
				t.Errorf("decoded request differs from %s:\n--- got\n%s--- want\n%s", golden, text, want)
			}
			// Every line arrives byte for byte, once.
			var lines []string
			for _, st := range streams {
				for _, e := range st.Entries {
					lines = append(lines, e.Line)
				}
			}
			for _, r := range recs {
				if n := slices.Index(lines, string(r.Line)); n < 0 {
					t.Errorf("line of %s not sent byte for byte", r.Line[:60])
				}
			}
			if len(lines) != len(recs) {
				t.Errorf("%d entries sent, want %d", len(lines), len(recs))
			}
		})
	}
}

// TestTimestampReceived checks timestamp: received and the per-stream sort
// it needs (requestReceivedTimestamp does not follow file order).
func TestTimestampReceived(t *testing.T) {
	srv, got := captureServer(t)
	s, _ := newSink(t, "url: "+srv.URL+"/loki/api/v1/push\ntimestamp: received\nlabel_fields: []\nstructured_metadata: [auditID]")
	if err := s.Send(context.Background(), goldenRecords(t)); err != nil {
		t.Fatal(err)
	}
	streams, err := decodePush("application/x-protobuf", got()[0].body)
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != 1 {
		t.Fatalf("%d streams, want 1 without label fields", len(streams))
	}
	var ids []string
	for _, e := range streams[0].Entries {
		ids = append(ids, e.StructuredMetadata[0].Value+"@"+e.Timestamp.Format("05.000000"))
	}
	want := "a-2@00.000050 a-1@00.000100 a-3@00.000150 a-4@00.000500"
	if strings.Join(ids, " ") != want {
		t.Errorf("entries %s, want %s", strings.Join(ids, " "), want)
	}
}

func TestAppendJSONString(t *testing.T) {
	f := func(in string) {
		t.Helper()
		b := appendJSONString(nil, in)
		var out string
		if err := json.Unmarshal(b, &out); err != nil || out != in {
			t.Errorf("appendJSONString(%q) = %s, which decodes to %q (%v)", in, b, out, err)
		}
	}
	f("")
	f(`{"a":"b\"c\\d\u003c"}`)
	f("tab\tnl\ncr\rnul\x00esc\x1bdel\x7f")
	f("ünïcödé ✓ 𝄞 <>&")
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add(`{"kind":"Event","x":"\u0000"}`)
	f.Add("\x01\x1f\"\\")
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1<<16 || !jsonValidUTF8(in) {
			return
		}
		var out string
		if err := json.Unmarshal(appendJSONString(nil, in), &out); err != nil || out != in {
			t.Fatalf("%q round-trips to %q (%v)", in, out, err)
		}
	})
}

// jsonValidUTF8: the parser refuses invalid UTF-8, so the sink never sees it.
func jsonValidUTF8(s string) bool { return strings.ToValidUTF8(s, "") == s }

// TestConcurrentSend runs Send from several goroutines, as the shipper does
// with max_requests_in_flight > 1 (run it with -race), and checks that
// every entry arrives once, with its own line.
func TestConcurrentSend(t *testing.T) {
	srv, got := captureServer(t)
	s, _ := newSink(t, "url: "+srv.URL+"/loki/api/v1/push\nmax_line_size: 0") // every line whole
	recs := records(t, 3, 400, time.Time{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for b := g * 100; b < (g+1)*100; b += 25 {
				if err := s.Send(context.Background(), recs[b:b+25]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	want := map[string]bool{}
	for _, r := range recs {
		want[string(r.Line)] = true
	}
	n := 0
	for _, req := range got() {
		streams, err := decodePush(req.header.Get("Content-Type"), req.body)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range streams {
			for _, e := range st.Entries {
				if !want[e.Line] {
					t.Fatalf("an entry's line is not one that was sent: %.100s", e.Line)
				}
				delete(want, e.Line)
				n++
			}
		}
	}
	if n != len(recs) || len(want) != 0 {
		t.Errorf("%d entries arrived, %d lines missing; want %d", n, len(want), len(recs))
	}
}
