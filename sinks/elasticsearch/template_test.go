package elasticsearch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/audit-shipper/audit-shipper/sinks"
)

// deployDir holds the templates for users who install them by hand.
var deployDir = filepath.Join("..", "..", "deploy", "elasticsearch")

// TestDeployTemplates keeps deploy/elasticsearch equal to what the sink
// installs for the default targets (go test -run TestDeployTemplates
// -update rewrites them).
func TestDeployTemplates(t *testing.T) {
	ds, err := parseTarget(DefaultDataStream, "")
	if err != nil {
		t.Fatal(err)
	}
	daily, err := parseTarget("", "k8s-audit-%Y.%m.%d")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"component-template.json": componentTemplate}
	for name, tg := range map[string]*target{"index-template-data-stream.json": ds, "index-template-daily.json": daily} {
		b, err := indexTemplateFor(tg, componentName(BodyString))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = append(b, '\n')
	}
	for name, want := range files {
		path := filepath.Join(deployDir, name)
		if *update {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v; run go test ./sinks/elasticsearch -run TestDeployTemplates -update", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the sink installs; edit sinks/elasticsearch/component-template.json (or template.go) and rerun with -update", path)
		}
		if !json.Valid(got) {
			t.Errorf("%s is not valid JSON", path)
		}
	}
}

// TestComponentForObject: the object encoding changes only the bodies'
// mappings, to disabled objects.
func TestComponentForObject(t *testing.T) {
	obj, err := componentFor(BodyObject)
	if err != nil {
		t.Fatal(err)
	}
	str, _ := templateFields(t, componentTemplate)
	got, _ := templateFields(t, obj)
	for path, typ := range str {
		want := typ
		if path == "requestObject" || path == "responseObject" {
			want = "disabled"
		}
		if got[path] != want {
			t.Errorf("%s: %q under the object encoding, want %q", path, got[path], want)
		}
	}
	if len(got) != len(str) {
		t.Errorf("%d fields under the object encoding, %d under string", len(got), len(str))
	}
}

// templateServer records the templates PUT to it and answers status.
type templateServer struct {
	mu     sync.Mutex
	bodies map[string][]byte
	status int
}

func (ts *templateServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if r.Method != http.MethodPut || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "want PUT with JSON", http.StatusMethodNotAllowed)
		return
	}
	ts.bodies[r.URL.Path] = b
	w.WriteHeader(ts.status)
	if ts.status == http.StatusOK {
		_, _ = io.WriteString(w, `{"acknowledged":true}`)
	} else {
		_, _ = io.WriteString(w, `{"error":{"type":"x","reason":"refused"},"status":`+strconv.Itoa(ts.status)+`}`)
	}
}

func TestStartInstallsTemplates(t *testing.T) {
	for _, c := range []struct {
		keys, indexPath string
		want            map[string]any
	}{
		{"", "/_index_template/audit-shipper-logs-kubernetes.audit-default", map[string]any{
			"index_patterns": []any{DefaultDataStream}, "data_stream": map[string]any{},
			"composed_of": []any{"audit-shipper-mappings"}, "priority": 200.0, "_meta": map[string]any{"managed_by": "audit-shipper"},
		}},
		{"target: {index: k8s-audit-%Y.%m.%d}\nbody_encoding: object", "/_index_template/audit-shipper-k8s-audit", map[string]any{
			"index_patterns": []any{"k8s-audit-*"},
			"composed_of":    []any{"audit-shipper-mappings-object"}, "priority": 200.0, "_meta": map[string]any{"managed_by": "audit-shipper"},
		}},
	} {
		ts := &templateServer{bodies: map[string][]byte{}, status: http.StatusOK}
		srv := httptest.NewServer(ts)
		defer srv.Close()
		s, _ := newSink(t, "addresses: ["+srv.URL+"]\ninstall_template: true\n"+c.keys)
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(ts.bodies) != 2 {
			t.Fatalf("%d templates installed, want 2: %v", len(ts.bodies), ts.bodies)
		}
		var got map[string]any
		if err := json.Unmarshal(ts.bodies[c.indexPath], &got); err != nil {
			t.Fatalf("%s: %v", c.indexPath, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %v\nwant %v", c.indexPath, got, c.want)
		}
		comp := c.want["composed_of"].([]any)[0].(string)
		wantComp, _ := componentFor(s.set.BodyEncoding)
		if !bytes.Equal(ts.bodies["/_component_template/"+comp], wantComp) {
			t.Errorf("component template %s not installed as built", comp)
		}
	}
}

func TestStartErrors(t *testing.T) {
	f := func(status int, permanent bool, text string) {
		t.Helper()
		ts := &templateServer{bodies: map[string][]byte{}, status: status}
		srv := httptest.NewServer(ts)
		defer srv.Close()
		s, _ := newSink(t, "addresses: ["+srv.URL+"]\ninstall_template: true")
		err := s.Start(context.Background())
		if err == nil || sinks.IsPermanent(err) != permanent || !strings.Contains(err.Error(), text) {
			t.Errorf("%d: got %v, want permanent=%v containing %q", status, err, permanent, text)
		}
	}
	f(http.StatusForbidden, false, "manage_index_templates")
	f(http.StatusServiceUnavailable, false, "503")
	f(http.StatusBadRequest, true, "adapt deploy/elasticsearch by hand")

	// Without install_template, Start sends nothing.
	ts := &templateServer{bodies: map[string][]byte{}, status: http.StatusOK}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	s, _ := newSink(t, "addresses: ["+srv.URL+"]")
	if err := s.Start(context.Background()); err != nil || len(ts.bodies) != 0 {
		t.Errorf("Start without install_template: %v, %d requests", err, len(ts.bodies))
	}
}
