package elasticsearch

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

var update = flag.Bool("update", false, "rewrite golden files and deploy/elasticsearch from the code")

func testEncoder(t testing.TB, bodies string) *encoder {
	t.Helper()
	tg, err := parseTarget(DefaultDataStream, "")
	if err != nil {
		t.Fatal(err)
	}
	return &encoder{target: tg, bodies: bodies, fields: docFields("prod", "server-0")}
}

// pairs splits a bulk body into its action and document lines.
func pairs(t testing.TB, body []byte) (actions, docs [][]byte) {
	t.Helper()
	if len(body) == 0 || body[len(body)-1] != '\n' {
		t.Fatalf("a bulk body must end with a newline: %q", excerpt(body))
	}
	lines := bytes.Split(body[:len(body)-1], []byte("\n"))
	if len(lines)%2 != 0 {
		t.Fatalf("%d lines: actions and documents do not pair up", len(lines))
	}
	for i := 0; i < len(lines); i += 2 {
		actions = append(actions, lines[i])
		docs = append(docs, lines[i+1])
	}
	return actions, docs
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, b)
	}
	return m
}

// TestDocumentRoundTrip checks, over corpus and hand-written events, that
// each document is the event plus @timestamp, cluster and node, with
// every object or array body turned into a string holding its exact
// bytes; and that each action is a create with the event's id.
func TestDocumentRoundTrip(t *testing.T) {
	recs := append(fileRecords(t, "conflict.ndjson"), records(t, 7, 3000, time.Date(2025, 3, 1, 23, 59, 0, 0, time.UTC))...)
	for _, bodies := range []string{BodyString, BodyObject} {
		t.Run(bodies, func(t *testing.T) {
			enc := testEncoder(t, bodies)
			st := &encodeState{}
			enc.encode(st, recs, nil)
			actions, docs := pairs(t, st.body)
			if len(docs) != len(recs) {
				t.Fatalf("%d documents for %d records", len(docs), len(recs))
			}
			var p parse.Parser
			ids := map[string]int{}
			for i, r := range recs {
				var a struct {
					Create struct {
						Index string `json:"_index"`
						ID    string `json:"_id"`
					} `json:"create"`
				}
				if err := json.Unmarshal(actions[i], &a); err != nil {
					t.Fatalf("action %d: %v: %s", i, err, actions[i])
				}
				if a.Create.Index != DefaultDataStream {
					t.Errorf("action %d: _index %q, want %q", i, a.Create.Index, DefaultDataStream)
				}
				if want := string(appendID(nil, &encodeState{}, &r)); a.Create.ID != want {
					t.Errorf("action %d: _id %q, want %q", i, a.Create.ID, want)
				}
				if prev, dup := ids[a.Create.ID]; dup {
					t.Errorf("records %d and %d have the same _id %s", prev, i, a.Create.ID)
				}
				ids[a.Create.ID] = i

				doc := decode(t, docs[i])
				if got, want := doc["@timestamp"], r.StageTime.Format(time.RFC3339Nano); got != want {
					t.Errorf("record %d: @timestamp %v, want %s", i, got, want)
				}
				if doc["cluster"] != "prod" || doc["node"] != "server-0" {
					t.Errorf("record %d: cluster %v node %v, want prod and server-0", i, doc["cluster"], doc["node"])
				}
				delete(doc, "@timestamp")
				delete(doc, "cluster")
				delete(doc, "node")
				ev, err := p.Parse(r.Line)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range []struct {
					key string
					r   parse.Range
				}{{"requestObject", ev.RequestObject}, {"responseObject", ev.ResponseObject}} {
					if !b.r.Present() {
						continue
					}
					raw := r.Line[b.r.ValueStart:b.r.ValueEnd]
					if bodies == BodyObject || !isContainer(raw[0]) {
						continue
					}
					s, ok := doc[b.key].(string)
					if !ok {
						t.Fatalf("record %d: %s is %T in the document, want a string", i, b.key, doc[b.key])
					}
					if s != string(raw) {
						t.Fatalf("record %d: %s string differs from the body's bytes", i, b.key)
					}
					doc[b.key] = decodeAny(t, raw)
				}
				if want := decode(t, r.Line); !reflect.DeepEqual(doc, want) {
					t.Fatalf("record %d: the document, bodies decoded, is not the event\ngot  %v\nwant %v", i, doc, want)
				}
			}
		})
	}
}

func decodeAny(t testing.TB, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBulkGolden pins the exact bytes of a bulk body for the hand-written
// events (go test -run TestBulkGolden -update rewrites it).
func TestBulkGolden(t *testing.T) {
	enc := testEncoder(t, BodyString)
	st := &encodeState{}
	enc.encode(st, fileRecords(t, "conflict.ndjson"), nil)
	golden(t, filepath.Join("testdata", "conflict.bulk.golden"), st.body)
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run go test ./sinks/elasticsearch -run %s -update to create it", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code writes; if the change is intended, rerun with -update and review the diff\ngot:\n%s", path, got)
	}
}

func TestID(t *testing.T) {
	base := sinks.Record{
		AuditID:      "0b4c6f1e-1b7a-4f51-9d7e-7c1f7a000001",
		Stage:        "ResponseComplete",
		StageTime:    time.Date(2024, 6, 1, 10, 0, 0, 4200000, time.UTC),
		ReceivedTime: time.Date(2024, 6, 1, 10, 0, 0, 100000, time.UTC),
		Line:         []byte(`{"x":1}`),
	}
	id := func(r sinks.Record) string { return string(appendID(nil, &encodeState{}, &r)) }
	want := id(base)
	if len(want) != 22 {
		t.Errorf("id %q is %d bytes, want 22", want, len(want))
	}
	same := base
	same.Line = []byte(`{"x":2}`) // rules changed between runs: still the same event
	same.StageTime = base.StageTime.In(time.FixedZone("CEST", 7200))
	if got := id(same); got != want {
		t.Errorf("the same event got another id: %s, want %s", got, want)
	}
	for name, r := range map[string]sinks.Record{
		"other stage":            {AuditID: base.AuditID, Stage: "RequestReceived", StageTime: base.StageTime, ReceivedTime: base.ReceivedTime},
		"reused Audit-ID header": {AuditID: base.AuditID, Stage: base.Stage, StageTime: base.StageTime.Add(time.Second), ReceivedTime: base.ReceivedTime.Add(time.Second)},
		"one microsecond later":  {AuditID: base.AuditID, Stage: base.Stage, StageTime: base.StageTime, ReceivedTime: base.ReceivedTime.Add(time.Microsecond)},
		"ids run into stages":    {AuditID: base.AuditID + "Response", Stage: "Complete", StageTime: base.StageTime, ReceivedTime: base.ReceivedTime},
		"very long Audit-ID":     {AuditID: strings.Repeat("x", 4096), Stage: base.Stage, StageTime: base.StageTime, ReceivedTime: base.ReceivedTime},
	} {
		got := id(r)
		if got == want {
			t.Errorf("%s: same id as the base event", name)
		}
		if len(got) != 22 {
			t.Errorf("%s: id %q is %d bytes, want 22", name, got, len(got))
		}
	}
}

func TestTarget(t *testing.T) {
	at := time.Date(2024, 2, 9, 7, 30, 0, 0, time.FixedZone("X", -9*3600)) // 16:30 UTC
	f := func(ds, index, wantName, wantPattern string) {
		t.Helper()
		tg, err := parseTarget(ds, index)
		if err != nil {
			t.Fatalf("%q %q: %v", ds, index, err)
		}
		if got := tg.name(&encodeState{}, at); got != wantName {
			t.Errorf("%q %q: name %q, want %q", ds, index, got, wantName)
		}
		if got := tg.pattern(); got != wantPattern {
			t.Errorf("%q %q: pattern %q, want %q", ds, index, got, wantPattern)
		}
	}
	f(DefaultDataStream, "", DefaultDataStream, DefaultDataStream)
	f("", "k8s-audit-%Y.%m.%d", "k8s-audit-2024.02.09", "k8s-audit-*")
	f("", "audit-%Y%m%d-%H", "audit-20240209-16", "audit-*")
	f("", "audit", "audit", "audit")
}

// TestTargetCache checks that an index name is expanded again when the
// event's day changes, and reused within it.
func TestTargetCache(t *testing.T) {
	tg, err := parseTarget("", "a-%Y.%m.%d")
	if err != nil {
		t.Fatal(err)
	}
	st := &encodeState{}
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2024, 12, 31, 23, 59, 59, 999999000, time.UTC), "a-2024.12.31"},
		{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), "a-2025.01.01"},
		{time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC), "a-2025.01.01"},
		{time.Date(2024, 12, 31, 1, 0, 0, 0, time.UTC), "a-2024.12.31"}, // replays go back in time
		{time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC), "a-1969.12.31"},
		{time.Date(1970, 1, 1, 1, 0, 0, 0, time.UTC), "a-1970.01.01"},
	} {
		if got := tg.name(st, c.at); got != c.want {
			t.Errorf("%v: %q, want %q", c.at, got, c.want)
		}
	}
}

func TestTargetErrors(t *testing.T) {
	f := func(ds, index, wantErr string) {
		t.Helper()
		_, err := parseTarget(ds, index)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q %q: error %v, want one containing %q", ds, index, err, wantErr)
		}
	}
	f("logs-%Y", "", "takes no date")
	f("Logs-k8s", "", "upper-case")
	f("_audit", "", "cannot start with")
	f("audit*", "", "does not allow")
	f("", "k8s-audit-%Y.%m.%", "lone %")
	f("", "k8s-audit-%y", "unknown date verb %y")
	f("", "k8s audit-%Y", "does not allow")
	f("", strings.Repeat("a", 250)+"-%Y.%m.%d", "255")
}

// TestAppendQuoted checks the string escaper against encoding/json on
// every byte value that can occur in JSON text.
func TestAppendQuoted(t *testing.T) {
	var in []byte
	for c := range 256 {
		if c < 0x80 {
			in = append(in, byte(c))
		}
	}
	in = append(in, "é€𝄞\u2028"...)
	got := appendQuoted(nil, in)
	var back string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if back != string(in) {
		t.Errorf("round trip changed the string: %q", back)
	}
}

// FuzzDocument: for any line the parser accepts, the document is one
// valid JSON object whose members, bodies decoded, are the event's.
func FuzzDocument(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "conflict.ndjson"))
	if err != nil {
		f.Fatal(err)
	}
	for l := range bytes.SplitSeq(bytes.TrimSpace(data), []byte("\n")) {
		f.Add(l)
	}
	g := corpus.New(corpus.Options{Seed: 3})
	for range 20 {
		// Large seeds slow the fuzz engine's mutator to a crawl.
		if l := g.Next(nil); len(l) < 8<<10 {
			f.Add(l)
		}
	}
	f.Add([]byte(` { "kind":"Event" ,"apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"s", "requestObject" : [ 1 ,{}],"responseObject":"x"} `))
	enc := testEncoder(f, BodyString)
	f.Fuzz(func(t *testing.T, line []byte) {
		if len(line) > 64<<10 || bytes.IndexByte(line, '\n') >= 0 {
			return // the shipper cuts lines at newlines and bounds them
		}
		var p parse.Parser
		if _, err := p.Parse(line); err != nil {
			return
		}
		r := record(t, &p, line)
		st := &encodeState{}
		enc.encode(st, []sinks.Record{r}, nil)
		_, docs := pairs(t, st.body)
		doc := decode(t, docs[0])
		for _, k := range []string{"@timestamp", "cluster", "node"} {
			delete(doc, k)
		}
		want := decode(t, line)
		for _, k := range []string{"requestObject", "responseObject"} {
			if s, ok := doc[k].(string); ok {
				if _, isString := want[k].(string); !isString {
					doc[k] = decodeAny(t, []byte(s))
				}
			}
		}
		if !reflect.DeepEqual(doc, want) {
			t.Fatalf("document differs from the event\ngot  %v\nwant %v", doc, want)
		}
	})
}

// fieldKinds walks a decoded document and records, for every field path,
// whether it held an object or a scalar (arrays are looked through, as
// Elasticsearch does).
func fieldKinds(prefix string, v any, out map[string]map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		if prefix != "" {
			mark(out, prefix, "object")
		}
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			fieldKinds(p, e, out)
		}
	case []any:
		for _, e := range x {
			fieldKinds(prefix, e, out)
		}
	case nil:
		// null maps to nothing
	default:
		mark(out, prefix, "scalar")
	}
}

func mark(out map[string]map[string]bool, path, kind string) {
	if out[path] == nil {
		out[path] = map[string]bool{}
	}
	out[path][kind] = true
}

// templateFields flattens the properties of a mapping into path -> type
// ("object" for sub-objects), and lists the paths below which fields are
// mapped dynamically.
func templateFields(t testing.TB, component []byte) (fields map[string]string, dynamic []string) {
	t.Helper()
	var tmpl struct {
		Template struct {
			Mappings struct {
				Dynamic          bool                         `json:"dynamic"`
				DynamicTemplates []map[string]json.RawMessage `json:"dynamic_templates"`
				Properties       map[string]json.RawMessage   `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(component, &tmpl); err != nil {
		t.Fatalf("the component template is not valid JSON: %v", err)
	}
	m := tmpl.Template.Mappings
	if m.Dynamic {
		t.Fatal("the mapping must not be dynamic at the top: unknown fields would grow it")
	}
	for _, dt := range m.DynamicTemplates {
		for _, raw := range dt {
			var d struct {
				PathMatch string `json:"path_match"`
				Mapping   struct {
					Type string `json:"type"`
				} `json:"mapping"`
			}
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			if d.Mapping.Type != "keyword" || !strings.HasSuffix(d.PathMatch, ".*") {
				t.Fatalf("dynamic template %s: want a path_match \"x.*\" mapped to keyword", raw)
			}
			dynamic = append(dynamic, strings.TrimSuffix(d.PathMatch, "*"))
		}
	}
	fields = map[string]string{}
	var walk func(prefix string, props map[string]json.RawMessage)
	walk = func(prefix string, props map[string]json.RawMessage) {
		for name, raw := range props {
			var f struct {
				Type       string                     `json:"type"`
				Enabled    *bool                      `json:"enabled"`
				Dynamic    any                        `json:"dynamic"`
				Properties map[string]json.RawMessage `json:"properties"`
			}
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			path := prefix + name
			switch {
			case f.Type == "" || f.Type == "object":
				fields[path] = "object"
				if f.Enabled != nil && !*f.Enabled {
					fields[path] = "disabled"
				}
				if f.Dynamic == true && !slices.Contains(dynamic, path+".") {
					t.Errorf("%s is dynamic but no dynamic template maps its fields to keyword", path)
				}
				walk(path+".", f.Properties)
			default:
				fields[path] = f.Type
			}
		}
	}
	walk("", m.Properties)
	return fields, dynamic
}

// TestTemplateCoversDocuments is the mapping-safety proof: over corpus
// events and hand-written events whose bodies disagree on types (a field
// that is a string in one event and an object in another, a JSON patch
// array), every field a document holds is named by the template, or lies
// below a dynamic keyword map or a disabled object, and gets the shape
// (object or scalar) the template gives it. So no document can add a
// field beyond the template's, or conflict with it.
func TestTemplateCoversDocuments(t *testing.T) {
	recs := append(fileRecords(t, "conflict.ndjson"), records(t, 11, 20000, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))...)
	for _, bodies := range []string{BodyString, BodyObject} {
		t.Run(bodies, func(t *testing.T) {
			comp, err := componentFor(bodies)
			if err != nil {
				t.Fatal(err)
			}
			fields, dynamic := templateFields(t, comp)
			enc := testEncoder(t, bodies)
			st := &encodeState{}
			enc.encode(st, recs, nil)
			_, docs := pairs(t, st.body)
			kinds := map[string]map[string]bool{}
			for _, d := range docs {
				fieldKinds("", decode(t, d), kinds)
			}
			static, dyn, unindexed, conflicts := 0, 0, 0, 0
			for _, k := range kinds {
				if k["object"] && k["scalar"] {
					conflicts++
				}
			}
		paths:
			for path, k := range kinds {
				for _, d := range dynamic {
					if strings.HasPrefix(path, d) {
						dyn++
						if k["object"] && k["scalar"] {
							t.Errorf("%s is both an object and a value below dynamic %s*", path, d)
						}
						continue paths
					}
				}
				for p := path; ; {
					if fields[p] == "disabled" {
						unindexed++
						continue paths
					}
					i := strings.LastIndexByte(p, '.')
					if i < 0 {
						break
					}
					p = p[:i]
				}
				typ, ok := fields[path]
				switch {
				case !ok:
					t.Errorf("documents hold field %s, which the template does not map", path)
				case typ == "object" && k["scalar"]:
					t.Errorf("%s is an object in the template but a value in some documents", path)
				case typ != "object" && k["object"]:
					t.Errorf("%s is a %s in the template but an object in some documents", path, typ)
				}
				static++
			}
			t.Logf("%d events, body encoding %s: %d distinct field paths; %d mapped by the template, %d below dynamic keyword maps, %d below disabled objects; %d paths are an object in one event and a value in another",
				len(docs), bodies, len(kinds), static, dyn, unindexed, conflicts)
			if bodies == BodyString && unindexed != 0 {
				t.Errorf("string encoding left %d fields below a disabled object", unindexed)
			}
		})
	}
}

func ExampleSink_documents() {
	line := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"5e0b1d3c-0000-4000-8000-000000000001","stage":"ResponseComplete","verb":"create","requestObject":{"kind":"ConfigMap","data":{"a":"b"}},"requestReceivedTimestamp":"2024-06-01T10:00:00.000100Z","stageTimestamp":"2024-06-01T10:00:00.004200Z"}`)
	var p parse.Parser
	ev, _ := p.Parse(line)
	enc := &encoder{target: &target{dataStream: true, raw: DefaultDataStream}, bodies: BodyString, fields: docFields("prod", "server-0")}
	st := &encodeState{}
	enc.encode(st, []sinks.Record{{Line: line, AuditID: ev.AuditID, Stage: ev.Stage, StageTime: ev.StageTime, ReceivedTime: ev.RequestReceived, Event: ev}}, nil)
	fmt.Print(string(st.body))
	// Output:
	// {"create":{"_index":"logs-kubernetes.audit-default","_id":"n_cAjZ2NgNTMjQxxkGKncQ"}}
	// {"@timestamp":"2024-06-01T10:00:00.0042Z","cluster":"prod","node":"server-0","kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"5e0b1d3c-0000-4000-8000-000000000001","stage":"ResponseComplete","verb":"create","requestObject":"{\"kind\":\"ConfigMap\",\"data\":{\"a\":\"b\"}}","requestReceivedTimestamp":"2024-06-01T10:00:00.000100Z","stageTimestamp":"2024-06-01T10:00:00.004200Z"}
}

// TestGzipInPieces: the bulk body gzipped piece by piece as it is encoded
// decompresses to the body encoded whole, for batches below, at and well
// past one piece, with the state reused from batch to batch as Send
// reuses it.
func TestGzipInPieces(t *testing.T) {
	enc := testEncoder(t, BodyString)
	var whole encodeState
	var rq request
	for _, n := range []int{1, 10, 100, 1000, 3} {
		recs := records(t, 7, n, time.Time{})
		enc.encode(&whole, recs, nil)
		rq.gz.start()
		enc.encode(&rq.enc, recs, rq.gz.drain)
		gz, err := rq.gz.finish(rq.enc.body)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatalf("%d events: %v", n, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%d events: the gzip stream does not decompress: %v", n, err)
		}
		if !bytes.Equal(got, whole.body) {
			t.Fatalf("%d events: %d bytes decompressed, want the %d of the body encoded whole", n, len(got), len(whole.body))
		}
		if rq.gz.n != len(whole.body) {
			t.Errorf("%d events: counted %d NDJSON bytes, want %d", n, rq.gz.n, len(whole.body))
		}
		if n == 1000 && (len(whole.body) < 4*gzipPiece || cap(rq.enc.body) > len(whole.body)/2) {
			t.Errorf("1000 events: a body of %d bytes (pieces of %d) left an encoding buffer of %d", len(whole.body), gzipPiece, cap(rq.enc.body))
		}
	}
}
