package loki

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/audit-shipper/audit-shipper/internal/vlogs"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// TestVictoriaLogs ships a corpus through Send to a real server speaking
// Loki's push API, in both encodings, and queries every event back: each
// auditID and stage once, the line byte for byte, the time equal to
// stageTimestamp, labels and structured metadata as fields.
func TestVictoriaLogs(t *testing.T) {
	vl := vlogs.Start(t)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i, enc := range []string{"protobuf", "json"} {
		t.Run(enc, func(t *testing.T) {
			cluster := "c-" + enc
			// disable_message_parsing keeps the line whole in _msg instead
			// of flattening its JSON into fields.
			s, _ := newSink(t, fmt.Sprintf("url: %s/insert/loki/api/v1/push?disable_message_parsing=1\nencoding: %s\ncluster: %s\nnode: cp-1\nlabels: {team: audit}",
				vl.URL(), enc, cluster))
			recs := records(t, int64(i+1), n, time.Time{})
			const batch = 500
			for start := 0; start < len(recs); start += batch {
				if err := s.Send(context.Background(), recs[start:min(start+batch, len(recs))]); err != nil {
					t.Fatalf("Send of records %d..: %v", start, err)
				}
			}
			vl.Flush(t)

			sel := fmt.Sprintf(`{cluster=%q}`, cluster)
			if got := vl.Count(t, sel); got != n {
				t.Fatalf("%d entries in VictoriaLogs, want %d; server log:\n%s", got, n, vl.Log())
			}
			byID := map[string]sinks.Record{}
			for _, r := range recs {
				byID[r.AuditID+"/"+r.Stage] = r
			}
			var p parse.Parser
			rows := vl.Query(t, sel+` | fields _msg, _time, auditID, job, team, cluster, node, stage, level, verb, user, resource, namespace, name, code, sourceIP, truncated`)
			seen := map[string]bool{}
			truncated := 0
			for _, row := range rows {
				id := row["auditID"] + "/" + row["stage"]
				r, ok := byID[id]
				if !ok {
					t.Fatalf("row with unknown auditID/stage %q: %v", id, row)
				}
				if seen[id] {
					t.Fatalf("%s stored twice", id)
				}
				seen[id] = true
				if len(r.Line) <= s.set.maxLineSize {
					if row["_msg"] != string(r.Line) || row["truncated"] != "" {
						t.Fatalf("%s: line not stored byte for byte:\n got %.200s\nwant %.200s", id, row["_msg"], r.Line)
					}
				} else {
					// Over Loki's max_line_size: shrunk, marked, still the event.
					truncated++
					msg, err := p.Parse([]byte(row["_msg"]))
					if err != nil || msg.AuditID != r.AuditID || len(row["_msg"]) > s.set.maxLineSize || !strings.HasPrefix(row["truncated"], "managedFields") {
						t.Fatalf("%s: a line of %d bytes stored as %d bytes, truncated=%q, parse error %v", id, len(r.Line), len(row["_msg"]), row["truncated"], err)
					}
				}
				if ts, err := time.Parse(time.RFC3339Nano, row["_time"]); err != nil || !ts.Equal(r.StageTime) {
					t.Fatalf("%s: _time %s, want stageTimestamp %s", id, row["_time"], r.StageTime.Format(time.RFC3339Nano))
				}
				ev, err := p.Parse(r.Line)
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]string{
					"job": "kubernetes-audit", "team": "audit", "cluster": cluster, "node": "cp-1",
					"level": ev.Level, "verb": ev.Verb, "user": ev.Username,
					"resource": ev.ObjectRef.Resource, "namespace": ev.ObjectRef.Namespace, "name": ev.ObjectRef.Name,
					"sourceIP": strings.Join(ev.SourceIPs, ","),
				}
				if ev.Code != 0 {
					want["code"] = fmt.Sprint(ev.Code)
				}
				for k, v := range want {
					if row[k] != v {
						t.Fatalf("%s: field %s = %q, want %q", id, k, row[k], v)
					}
				}
			}
			if len(seen) != n {
				t.Errorf("%d distinct events queried back, want %d", len(seen), n)
			}
			if got := testutil.ToFloat64(s.metrics.entries); got != float64(n) {
				t.Errorf("sent_entries_total = %v, want %d", got, n)
			}
			if got := testutil.ToFloat64(s.metrics.truncated); got != float64(truncated) || (truncated == 0 && !testing.Short()) {
				t.Errorf("truncated_entries_total = %v, want %d (and more than 0: the corpus has lines over 256KB)", got, truncated)
			}
			t.Logf("%d events, %d of them shrunk to fit max_line_size", n, truncated)
			if strings.Contains(vl.Log(), "ignoring") {
				t.Errorf("the server dropped rows:\n%s", vl.Log())
			}
		})
	}
}
