package signals

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/prometheus/client_golang/prometheus"
)

// oracle counts a line the slow way: encoding/json decodes the whole event
// and the rules of the package doc are applied to the result. It returns
// the series the line adds 1 to.
func oracle(t testing.TB, line []byte) []string {
	var e struct {
		Stage, Verb, RequestURI string
		User                    struct{ Username string }
		ImpersonatedUser        *struct{ Username string }
		ObjectRef               *struct{ Resource, Subresource, APIGroup string }
		ResponseStatus          *struct{ Code int }
		RequestObject           json.RawMessage
		ResponseObject          json.RawMessage
		Annotations             map[string]string
	}
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatalf("corpus line does not decode: %v", err)
	}
	if e.Stage != "ResponseComplete" && e.Stage != "Panic" {
		return nil
	}
	code := 0
	if e.ResponseStatus != nil {
		code = e.ResponseStatus.Code
	}
	class := map[string]string{"get": "read", "list": "read", "watch": "watch", "create": "write", "update": "write",
		"patch": "write", "delete": "delete", "deletecollection": "delete"}[e.Verb]
	if class == "" {
		class = "other"
	}
	var out string
	switch {
	case code == 401:
		out = "unauthorized"
	case code == 403 || e.Annotations["authorization.k8s.io/decision"] == "forbid":
		out = "forbidden"
	case code >= 500 || e.Stage == "Panic":
		out = "server_error"
	case code >= 400:
		out = "client_error"
	case code >= 100:
		out = "success"
	default:
		out = "unknown"
	}
	series := []string{fmt.Sprintf("audit_shipper_api_requests_total{outcome=%q,verb_class=%q}", out, class)}
	if out != "success" || e.ObjectRef == nil {
		return series
	}
	r := e.ObjectRef
	dry := strings.Contains(e.RequestURI, "?dryRun=") || strings.Contains(e.RequestURI, "&dryRun=")
	switch {
	case r.APIGroup == "rbac.authorization.k8s.io" && r.Subresource == "" && !dry &&
		strings.Contains(" roles clusterroles rolebindings clusterrolebindings ", " "+r.Resource+" ") &&
		strings.Contains(" create update patch delete deletecollection ", " "+e.Verb+" "):
		series = append(series, fmt.Sprintf("audit_shipper_rbac_changes_total{resource=%q,verb=%q}", r.Resource, e.Verb))
		if strings.HasSuffix(r.Resource, "rolebindings") && strings.Contains(" create update patch ", " "+e.Verb+" ") {
			kind, name := oracleRoleRef(e.RequestObject)
			if name == nil {
				kind, name = oracleRoleRef(e.ResponseObject)
			}
			if name != nil && *name == "cluster-admin" && (kind == nil || *kind == "ClusterRole") {
				series = append(series, fmt.Sprintf("audit_shipper_cluster_admin_bindings_total{resource=%q}", r.Resource))
			}
		}
	case r.APIGroup == "" && r.Resource == "secrets" && r.Subresource == "" && strings.Contains(" get list watch ", " "+e.Verb+" "):
		actor := oracleActor(e.User.Username)
		if e.ImpersonatedUser != nil && oracleActor(e.ImpersonatedUser.Username) != "" {
			actor = oracleActor(e.ImpersonatedUser.Username)
		}
		if actor != "" {
			series = append(series, fmt.Sprintf("audit_shipper_secret_reads_total{actor=%q,verb=%q}", actor, e.Verb))
		}
	case r.APIGroup == "" && r.Resource == "pods" && strings.Contains(" exec attach portforward ", " "+r.Subresource+" "):
		series = append(series, fmt.Sprintf("audit_shipper_pod_connections_total{subresource=%q}", r.Subresource))
	}
	return series
}

func oracleRoleRef(body json.RawMessage) (kind, name *string) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return nil, nil
	}
	var ref map[string]json.RawMessage
	if json.Unmarshal(obj["roleRef"], &ref) != nil {
		return nil, nil
	}
	str := func(v json.RawMessage) *string {
		var s string
		if json.Unmarshal(v, &s) != nil || v == nil || v[0] != '"' {
			return nil
		}
		return &s
	}
	return str(ref["kind"]), str(ref["name"])
}

func oracleActor(u string) string {
	switch {
	case u == "system:anonymous":
		return "anonymous"
	case strings.HasPrefix(u, "system:serviceaccount:"):
		ns := strings.Split(u, ":")[2]
		if ns == "kube-system" || ns == "kube-public" || ns == "kube-node-lease" || strings.HasPrefix(ns, "cattle-") {
			return ""
		}
		return "serviceaccount"
	case strings.HasPrefix(u, "system:"):
		return ""
	}
	return "user"
}

// TestCorpus compares Observe with the oracle over the project's corpus.
func TestCorpus(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 1000
	}
	var buf bytes.Buffer
	if err := corpus.New(corpus.Options{Seed: 1}).Write(&buf, n); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := New(reg)
	var p parse.Parser
	want := map[string]float64{}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		e, err := p.Parse(sc.Bytes())
		if err != nil {
			t.Fatalf("corpus line does not parse: %v", err)
		}
		c.Observe(e)
		for _, s := range oracle(t, sc.Bytes()) {
			want[s]++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	got := nonZero(t, reg)
	if !maps.Equal(got, want) {
		t.Errorf("Observe and the oracle disagree over %d corpus events:\ngot  %v\nwant %v", n, sorted(got), sorted(want))
	}
	// The corpus must exercise the signals, or the comparison proves little.
	for _, prefix := range []string{
		`audit_shipper_api_requests_total{outcome="forbidden"`,
		`audit_shipper_api_requests_total{outcome="client_error"`,
		`audit_shipper_rbac_changes_total`,
		`audit_shipper_secret_reads_total{actor="user"`,
	} {
		var sum float64
		for k, v := range got {
			if strings.HasPrefix(k, prefix) {
				sum += v
			}
		}
		if sum == 0 {
			t.Errorf("no corpus event counted in %s...}", prefix)
		}
		t.Logf("%s...}: %v", prefix, sum)
	}
}

func FuzzMember(f *testing.F) {
	for _, s := range []string{
		`{"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`,
		`{"a":"\"roleRef\":1","roleRef":[1,{"x":"}"}],"roleRef":null}`,
		` { "role\u0052ef" : "x\\" , "b" : {} } `,
		`{"roleRef":"\\\\"}`,
		`[{"roleRef":1}]`,
		`{"roleRef":tru`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		got := member(b, "roleRef") // must not panic on anything
		var obj map[string]json.RawMessage
		if !json.Valid(b) || json.Unmarshal(b, &obj) != nil || obj == nil {
			return
		}
		want, ok := obj["roleRef"]
		if !ok {
			want = nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("member(%q, roleRef) = %q, encoding/json says %q", b, got, want)
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	var buf bytes.Buffer
	if err := corpus.New(corpus.Options{Seed: 1}).Write(&buf, 2000); err != nil {
		b.Fatal(err)
	}
	// Each event keeps its own parser, so that all stay valid at once.
	var events []*parse.Event
	for _, l := range bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n")) {
		e, err := new(parse.Parser).Parse(l)
		if err != nil {
			b.Fatal(err)
		}
		events = append(events, e)
	}
	b.Run("corpus", func(b *testing.B) {
		c := New(prometheus.NewRegistry())
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			c.Observe(events[i%len(events)])
		}
	})
	// The slowest event: a binding whose roleRef comes after 100 KB of metadata.
	big := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a","stage":"ResponseComplete","verb":"create",` +
		`"user":{"username":"jane"},"objectRef":{"resource":"clusterrolebindings","name":"x","apiGroup":"rbac.authorization.k8s.io"},` +
		`"responseStatus":{"code":201},"requestObject":{"metadata":{"annotations":{"a":"` + strings.Repeat(`x\"`, 50<<10) + `"}},` +
		`"subjects":[{"kind":"User","name":"mallory"}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}}`
	e, err := new(parse.Parser).Parse([]byte(big))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cluster-admin-binding-100KB", func(b *testing.B) {
		c := New(prometheus.NewRegistry())
		b.ReportAllocs()
		b.SetBytes(int64(len(big)))
		for b.Loop() {
			c.Observe(e)
		}
	})
}
