package loki

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/internal/sinktest"
	"github.com/audit-shipper/audit-shipper/parse"
)

func TestRemoveMember(t *testing.T) {
	f := func(in, key, want string) {
		t.Helper()
		var p parse.Parser
		ev, err := p.Parse([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		r := map[string]parse.Range{"requestObject": ev.RequestObject, "responseObject": ev.ResponseObject, "managedFields": ev.RequestManagedFields}[key]
		got := string(removeMember([]byte(in), r))
		if got != want {
			t.Errorf("removing %s from\n  %s\ngot  %s\nwant %s", key, in, got, want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("not valid JSON: %s", got)
		}
	}
	const head = `"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"ResponseComplete"`
	f(`{`+head+`,"requestObject":{"a":1},"x":2}`, "requestObject", `{`+head+`,"x":2}`)
	f(`{`+head+`,"requestObject":{"a":1}}`, "requestObject", `{`+head+`}`)
	f(`{"requestObject":{"a":1},`+head+`}`, "requestObject", `{`+head+`}`)
	f(`{ "requestObject" : [1, 2] , `+head+`}`, "requestObject", `{  `+head+`}`)
	f(`{`+head+` ,  "responseObject":null }`, "responseObject", `{`+head+`  }`)
	f(`{`+head+`,"requestObject":{"metadata":{"managedFields":[{"m":1}],"name":"n"}}}`, "managedFields",
		`{`+head+`,"requestObject":{"metadata":{"name":"n"}}}`)
	f(`{`+head+`,"requestObject":{"metadata":{"name":"n","managedFields":[]}}}`, "managedFields",
		`{`+head+`,"requestObject":{"metadata":{"name":"n"}}}`)
	f(`{`+head+`,"requestObject":{"metadata":{"managedFields":[]}}}`, "managedFields",
		`{`+head+`,"requestObject":{"metadata":{}}}`)
}

// bigEvent is an event whose managedFields, responseObject and
// requestObject are each about 100 KB.
func bigEvent() []byte {
	pad := strings.Repeat("x", 100_000)
	return []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"big-1","stage":"ResponseComplete","verb":"update",` +
		`"requestObject":{"kind":"ConfigMap","metadata":{"name":"c","managedFields":[{"manager":"` + pad + `"}]},"data":{"k":"` + pad + `"}},` +
		`"responseObject":{"kind":"ConfigMap","metadata":{"name":"c","managedFields":[{"manager":"` + pad + `"}]},"data":{"k":"` + pad + `"}},` +
		`"stageTimestamp":"2024-06-01T00:00:00.000001Z"}`)
}

func TestShrink(t *testing.T) {
	line := bigEvent()
	f := func(max int, removed string) {
		t.Helper()
		e := newEncoder(&settings{})
		orig := string(line)
		got, steps := e.shrink(line, max)
		if string(line) != orig {
			t.Fatal("shrink modified the record's line")
		}
		if steps != removed {
			t.Errorf("max %d: removed %q, want %q", max, steps, removed)
		}
		var p parse.Parser
		ev, err := p.Parse(got)
		if err != nil || ev.AuditID != "big-1" || ev.Verb != "update" {
			t.Fatalf("max %d: the shrunk line is no longer the event (%v): %.300s", max, err, got)
		}
		if !strings.HasSuffix(removed, "requestObject") && len(got) > max { // short of the last step, it fits
			t.Errorf("max %d: %d bytes left", max, len(got))
		}
		if strings.Contains(removed, "managedFields") && (ev.RequestManagedFields.Present() || ev.ResponseManagedFields.Present()) {
			t.Errorf("managedFields left in %.300s", got)
		}
		// The same line always shrinks to the same bytes.
		again, _ := newEncoder(&settings{}).shrink(line, max)
		if string(again) != string(got) {
			t.Error("shrinking is not deterministic")
		}
	}
	f(300_000, "managedFields")
	f(200_000, "managedFields,responseObject")
	f(1_000, "managedFields,responseObject,requestObject")
}

// FuzzShrink checks that shrinking any event, to any size, yields an event
// with the same identity, never longer than before.
func FuzzShrink(f *testing.F) {
	g := corpus.New(corpus.Options{Seed: 7})
	for range 20 {
		f.Add(g.Next(nil), 500)
	}
	f.Add(bigEvent(), 250_000)
	f.Fuzz(func(t *testing.T, line []byte, max int) {
		if len(line) > 1<<20 || max < 0 {
			return
		}
		var p parse.Parser
		ev, err := p.Parse(line)
		if err != nil {
			return
		}
		id, stage := strings.Clone(ev.AuditID), strings.Clone(ev.Stage)
		got, _ := newEncoder(&settings{}).shrink(line, max)
		if len(got) > len(line) {
			t.Fatalf("grew from %d to %d bytes", len(line), len(got))
		}
		ev, err = p.Parse(got)
		if err != nil {
			t.Fatalf("the shrunk line does not parse: %v\n%s", err, got)
		}
		if ev.AuditID != id || ev.Stage != stage {
			t.Fatalf("identity changed: %s/%s to %s/%s", id, stage, ev.AuditID, ev.Stage)
		}
		if !json.Valid(got) {
			t.Fatalf("not valid JSON: %s", got)
		}
	})
}

// TestSendTruncated checks an over-long event end to end: shrunk, marked in
// structured metadata, counted once Loki accepted it and not before.
func TestSendTruncated(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		streams, err := decodePush(r.Header.Get("Content-Type"), body)
		if err != nil {
			t.Error(err)
		}
		for _, st := range streams {
			for _, e := range st.Entries {
				var tr string
				for _, m := range e.StructuredMetadata {
					if m.Name == "truncated" {
						tr = m.Value
					}
				}
				big := strings.Contains(e.Line, `"big-1"`)
				if big != (tr == "managedFields") || (big && len(e.Line) > 250_000) {
					t.Errorf("entry of %d bytes with truncated=%q", len(e.Line), tr)
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, _ := newSink(t, "url: "+srv.URL+"/loki/api/v1/push\nmax_line_size: 250KB")
	var p parse.Parser
	recs := append(goldenRecords(t), sinktest.Record(t, &p, bigEvent()))
	if err := s.Send(context.Background(), recs); err == nil {
		t.Fatal("Send succeeded against a 503")
	}
	if got := testutil.ToFloat64(s.metrics.truncated); got != 0 {
		t.Errorf("truncated_entries_total = %v after a failed push, want 0", got)
	}
	fail.Store(false)
	if err := s.Send(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(s.metrics.truncated); got != 1 {
		t.Errorf("truncated_entries_total = %v, want 1", got)
	}
}
