package elasticsearch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/vlogs"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// vlogsArgs lets VictoriaLogs take audit lines as long as the shipper's
// default max_line_bytes (4MiB); its own default (256KiB) skips longer
// ones with only a warning.
var vlogsArgs = []string{"-insert.maxLineSizeBytes=4MiB"}

// vlogsKeys points the sink at VictoriaLogs' bulk endpoint and tells it,
// with headers, which fields hold the time and the message.
func vlogsKeys(vl *vlogs.Server, cluster, extra string) string {
	return "addresses: [" + vl.URL() + "/insert/elasticsearch]\n" +
		"headers: {VL-Time-Field: \"@timestamp\", VL-Msg-Field: requestURI, VL-Stream-Fields: \"cluster,node\"}\n" +
		"cluster: " + cluster + "\nnode: server-0\n" + extra
}

// sendAll sends recs in batches of 1000 from two goroutines, as the
// shipper does with max_requests_in_flight: 2, and fails on any error.
func sendAll(t *testing.T, s *Sink, recs []sinks.Record) {
	t.Helper()
	const batch = 1000
	var wg sync.WaitGroup
	errs := make(chan error, len(recs)/batch+1)
	work := make(chan []sinks.Record)
	for range 2 {
		wg.Go(func() {
			for b := range work {
				if err := s.Send(context.Background(), b); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := 0; i < len(recs); i += batch {
		work <- recs[i:min(i+batch, len(recs))]
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// serverDropped returns the warnings with which VictoriaLogs drops rows
// after answering the bulk request with success.
func serverDropped(vl *vlogs.Server) []string {
	var out []string
	for l := range strings.SplitSeq(vl.Log(), "\n") {
		for _, w := range []string{"ignoring", "skipping it", "dropping log line"} {
			if strings.Contains(l, w) {
				out = append(out, l)
			}
		}
	}
	return out
}

// TestVictoriaLogs ships 100,000 corpus events through Send to a real
// VictoriaLogs, queries every one back, and checks that each auditID and
// stage is stored exactly once with @timestamp as its time, that no row
// was dropped, and that bodies arrive byte for byte.
func TestVictoriaLogs(t *testing.T) {
	vl := vlogs.Start(t, vlogsArgs...)
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	recs := records(t, 21, n, time.Time{})
	s, env := newSink(t, vlogsKeys(vl, "test", ""))
	start := time.Now()
	sendAll(t, s, recs)
	took := time.Since(start)
	vl.Flush(t)

	if d := serverDropped(vl); len(d) > 0 {
		t.Fatalf("VictoriaLogs dropped rows (%d warnings), the first: %s", len(d), d[0])
	}
	rows := vl.Query(t, `cluster:=test | fields auditID, stage, _time`)
	type key struct{ id, stage string }
	seen := make(map[key]string, len(rows))
	for _, r := range rows {
		k := key{r["auditID"], r["stage"]}
		if _, dup := seen[k]; dup {
			t.Errorf("%s/%s is stored twice", k.id, k.stage)
		}
		seen[k] = r["_time"]
	}
	missing := 0
	for _, r := range recs {
		got, ok := seen[key{r.AuditID, r.Stage}]
		if !ok {
			if missing++; missing <= 5 {
				t.Errorf("%s/%s is missing", r.AuditID, r.Stage)
			}
			continue
		}
		if want := r.StageTime.Format(time.RFC3339Nano); got != want {
			t.Errorf("%s/%s: _time %s, want the stageTimestamp %s", r.AuditID, r.Stage, got, want)
		}
	}
	if missing > 0 || len(rows) != len(recs) {
		t.Fatalf("%d rows for %d events, %d missing", len(rows), len(recs), missing)
	}

	// Bodies: the largest ones and a sample, compared with the line.
	var p parse.Parser
	checked := 0
	for i, r := range recs {
		ev, err := p.Parse(r.Line)
		if err != nil {
			t.Fatal(err)
		}
		if !ev.RequestObject.Present() || (i%500 != 0 && ev.RequestObject.ValueEnd-ev.RequestObject.ValueStart < 100<<10) {
			continue
		}
		want := string(r.Line[ev.RequestObject.ValueStart:ev.RequestObject.ValueEnd])
		got := vl.Query(t, fmt.Sprintf(`auditID:=%q stage:=%q | fields requestObject`, r.AuditID, r.Stage))
		if len(got) != 1 || got[0]["requestObject"] != want {
			t.Fatalf("%s/%s: requestObject of %d bytes did not come back byte for byte", r.AuditID, r.Stage, len(want))
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no body was checked")
	}
	t.Logf("%d events (%.1f MB of NDJSON, %.1f MB gzipped) in %v: %.0f events/s; %d bodies compared byte for byte",
		len(recs), env.Counter(t, "audit_shipper_elasticsearch_body_bytes_total", "", "")/1e6,
		env.Counter(t, "audit_shipper_elasticsearch_sent_bytes_total", "", "")/1e6, took.Round(time.Millisecond),
		float64(len(recs))/took.Seconds(), checked)

	// A replay: VictoriaLogs ignores _id, so it stores the batch again.
	// Elasticsearch answers 409 instead (TestSendDeduplicates).
	sendAll(t, s, recs[:1000])
	vl.Flush(t)
	if got := vl.Count(t, `cluster:=test`); got != len(recs)+1000 {
		t.Errorf("after resending 1000 events: %d rows, want %d (VictoriaLogs keeps both copies)", got, len(recs)+1000)
	} else {
		t.Logf("resending 1000 events: %d rows, VictoriaLogs does not de-duplicate by _id", got)
	}
}

// diverseRecords are n ConfigMap updates at RequestResponse level, each
// for another application, whose data keys are its own file names: what
// a cluster with many teams writes, and what the corpus, which draws
// keys from small pools, does not.
func diverseRecords(t *testing.T, n int) []sinks.Record {
	var p parse.Parser
	start := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	recs := make([]sinks.Record, n)
	for i := range recs {
		app := fmt.Sprintf("app-%d", i)
		body := fmt.Sprintf(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"%s-config","namespace":"team-%d","labels":{"app.kubernetes.io/name":"%s"}},"data":{"%s.yaml":"replicas: 2\n","%s.env":"LOG_LEVEL=info\n","%s-logging.properties":"level=INFO\n"}}`,
			app, i%50, app, app, app, app)
		ts := start.Add(time.Duration(i) * time.Millisecond)
		line := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"d1ce0000-0000-4000-8000-%012d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/team-%d/configmaps/%s-config","verb":"update","user":{"username":"system:serviceaccount:argocd:argocd-application-controller","groups":["system:serviceaccounts","system:authenticated"]},"sourceIPs":["10.42.0.17"],"userAgent":"argocd-application-controller/v2.11.3","objectRef":{"resource":"configmaps","namespace":"team-%d","name":"%s-config","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":%s,"responseObject":%s,"requestReceivedTimestamp":"%s","stageTimestamp":"%s","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`,
			i, i%50, app, i%50, app, body, body, ts.Add(-2*time.Millisecond).Format(time.RFC3339Nano), ts.Format(time.RFC3339Nano))
		recs[i] = record(t, &p, []byte(line))
	}
	return recs
}

// TestVictoriaLogsObjectBodies measures why bodies are strings by
// default. Sent as objects, every ConfigMap key, label and CRD field
// becomes a field name; VictoriaLogs drops whole blocks of rows holding
// more than 2,000 distinct names, after answering the bulk request with
// success. The string encoding of the same events loses none.
func TestVictoriaLogsObjectBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement, not needed for -short")
	}
	for _, c := range []struct {
		name string
		recs []sinks.Record
	}{
		{"corpus", records(t, 21, 20_000, time.Time{})},
		{"diverse", diverseRecords(t, 2_000)},
	} {
		for _, bodies := range []string{BodyObject, BodyString} {
			// A server of its own: a drop warning is logged for the whole
			// server, and one about the object encoding's rows can come
			// after the next case has begun.
			vl := vlogs.Start(t, vlogsArgs...)
			cluster := c.name + "-" + bodies
			s, _ := newSink(t, vlogsKeys(vl, cluster, "body_encoding: "+bodies))
			sendAll(t, s, c.recs)
			vl.Flush(t)
			got := vl.Count(t, "cluster:="+cluster)
			dropped := len(serverDropped(vl))
			t.Logf("%s events, body_encoding %s: %d of %d stored (%.1f%% lost), %d drop warnings in the server log",
				c.name, bodies, got, len(c.recs), 100*float64(len(c.recs)-got)/float64(len(c.recs)), dropped)
			switch {
			case bodies == BodyString && (got != len(c.recs) || dropped > 0):
				t.Errorf("%s: the string encoding lost rows", c.name)
			case bodies == BodyObject && c.name == "diverse" && got == len(c.recs):
				t.Errorf("objects as bodies lost no rows: the reason for the string default, in docs/sinks/elasticsearch.md, no longer holds")
			}
		}
	}
}
