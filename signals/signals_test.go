package signals

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// event is a hand-made audit event, written as kube-apiserver writes one.
type event struct {
	Kind       string          `json:"kind"`
	APIVersion string          `json:"apiVersion"`
	Level      string          `json:"level"`
	AuditID    string          `json:"auditID"`
	Stage      string          `json:"stage"`
	RequestURI string          `json:"requestURI"`
	Verb       string          `json:"verb"`
	User       map[string]any  `json:"user"`
	Imp        map[string]any  `json:"impersonatedUser,omitempty"`
	ObjectRef  map[string]any  `json:"objectRef,omitempty"`
	Status     map[string]any  `json:"responseStatus,omitempty"`
	Request    json.RawMessage `json:"requestObject,omitempty"`
	Response   json.RawMessage `json:"responseObject,omitempty"`
	Annots     map[string]any  `json:"annotations,omitempty"`
}

// ev describes an event in a few words: "stage verb user group/resource/subresource code [uri]".
// group is empty for the core group; "-" leaves a part out (no objectRef,
// no code). Bodies and other details are set by the options.
func ev(t *testing.T, desc string, opts ...func(*event)) []byte {
	t.Helper()
	f := strings.Fields(desc)
	if len(f) < 5 {
		t.Fatalf("bad event description %q", desc)
	}
	e := event{Kind: "Event", APIVersion: "audit.k8s.io/v1", Level: "Metadata", AuditID: "0b1c2d3e-0000-4000-8000-000000000001",
		Stage: f[0], Verb: f[1], User: map[string]any{"username": f[2], "groups": []string{"system:authenticated"}},
		RequestURI: "/api/v1/namespaces/team-a/things/x"}
	if len(f) > 5 {
		e.RequestURI = f[5]
	}
	if f[3] != "-" {
		parts := strings.Split(f[3], "/")
		if len(parts) < 2 {
			t.Fatalf("objectRef %q in %q: want group/resource[/subresource]", f[3], desc)
		}
		e.ObjectRef = map[string]any{"resource": parts[1], "namespace": "team-a", "name": "x", "apiVersion": "v1"}
		if parts[0] != "" {
			e.ObjectRef["apiGroup"] = parts[0]
		}
		if len(parts) > 2 {
			e.ObjectRef["subresource"] = parts[2]
		}
	}
	if f[4] != "-" {
		var code int
		if _, err := fmt.Sscan(f[4], &code); err != nil {
			t.Fatalf("code %q in %q: %v", f[4], desc, err)
		}
		e.Status = map[string]any{"metadata": map[string]any{}, "code": code}
	}
	for _, o := range opts {
		o(&e)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decision(d string) func(*event) {
	return func(e *event) { e.Annots = map[string]any{"authorization.k8s.io/decision": d} }
}
func impersonating(u string) func(*event) {
	return func(e *event) { e.Imp = map[string]any{"username": u} }
}
func request(body string) func(*event) {
	return func(e *event) { e.Level, e.Request = "Request", json.RawMessage(body) }
}
func response(body string) func(*event) {
	return func(e *event) { e.Level, e.Response = "RequestResponse", json.RawMessage(body) }
}

// observed runs lines through a fresh Counters and returns every series
// that is not 0, as `name{label="value",...}`.
func observed(t testing.TB, lines ...[]byte) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := New(reg)
	var p parse.Parser
	for _, l := range lines {
		e, err := p.Parse(l)
		if err != nil {
			t.Fatalf("hand-made event does not parse: %v\n%s", err, l)
		}
		c.Observe(e)
	}
	return nonZero(t, reg)
}

func nonZero(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				got[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
			}
		}
	}
	return got
}

func TestNewStartsEverySeriesAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(prometheus.WrapRegistererWith(prometheus.Labels{"sink": "loki"}, reg))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"audit_shipper_api_requests_total":           len(verbClasses) * len(outcomes),
		"audit_shipper_rbac_changes_total":           len(rbacResources) * len(rbacVerbs),
		"audit_shipper_cluster_admin_bindings_total": len(bindingResources),
		"audit_shipper_secret_reads_total":           len(secretVerbs) * len(actors),
		"audit_shipper_pod_connections_total":        len(podSubresources),
	}
	got, total := map[string]int{}, 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter().GetValue() != 0 {
				t.Errorf("%s starts at %v", mf.GetName(), m.GetCounter().GetValue())
			}
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "sink" && l.GetValue() == "loki" }) {
				t.Errorf("%s %v: want the registerer's sink label", mf.GetName(), m.GetLabel())
			}
			got[mf.GetName()]++
			total++
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("series per metric = %v, want %v", got, want)
	}
	if total != 64 {
		t.Errorf("%d series, the package doc says 64", total)
	}
}

func TestObserve(t *testing.T) {
	f := func(name string, want map[string]float64, lines ...[]byte) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			t.Helper()
			got := observed(t, lines...)
			if !maps.Equal(got, want) {
				t.Errorf("got  %v\nwant %v", sorted(got), sorted(want))
			}
		})
	}
	req := func(class, outcome string) string {
		return fmt.Sprintf(`audit_shipper_api_requests_total{outcome=%q,verb_class=%q}`, outcome, class)
	}
	rbac := func(resource, verb string) string {
		return fmt.Sprintf(`audit_shipper_rbac_changes_total{resource=%q,verb=%q}`, resource, verb)
	}
	admin := func(resource string) string {
		return fmt.Sprintf(`audit_shipper_cluster_admin_bindings_total{resource=%q}`, resource)
	}
	secret := func(verb, actor string) string {
		return fmt.Sprintf(`audit_shipper_secret_reads_total{actor=%q,verb=%q}`, actor, verb)
	}
	pod := func(sub string) string {
		return fmt.Sprintf(`audit_shipper_pod_connections_total{subresource=%q}`, sub)
	}
	type m = map[string]float64

	// Stages: one count per request.
	f("stages that do not carry the outcome are not counted", m{},
		ev(t, "RequestReceived create jane /secrets -"),
		ev(t, "ResponseStarted watch jane /secrets 200"),
		ev(t, "ResponseStarted create jane /pods/exec 101"))
	f("a request's stages count once", m{req("watch", "success"): 1, secret("watch", "user"): 1},
		ev(t, "RequestReceived watch jane /secrets -"),
		ev(t, "ResponseStarted watch jane /secrets 200"),
		ev(t, "ResponseComplete watch jane /secrets 200"))
	f("panic", m{req("write", "server_error"): 2},
		ev(t, "Panic update jane apps/deployments 500"),
		ev(t, "Panic update jane apps/deployments -"))

	// Verb classes and outcomes.
	f("verb classes", m{req("read", "success"): 2, req("watch", "success"): 1, req("write", "success"): 3,
		req("delete", "success"): 2, req("other", "success"): 3},
		ev(t, "ResponseComplete get jane /configmaps 200"),
		ev(t, "ResponseComplete list jane /configmaps 200"),
		ev(t, "ResponseComplete watch jane /configmaps 200"),
		ev(t, "ResponseComplete create jane /configmaps 201"),
		ev(t, "ResponseComplete update jane /configmaps 200"),
		ev(t, "ResponseComplete patch jane /configmaps 200"),
		ev(t, "ResponseComplete delete jane /configmaps 200"),
		ev(t, "ResponseComplete deletecollection jane /configmaps 200"),
		ev(t, "ResponseComplete post jane - 201 /apis/example.com/v1/things"),
		ev(t, "ResponseComplete proxy jane /services/proxy 200"),
		ev(t, "ResponseComplete impersonate jane /users 200"))
	f("non-resource get is a read", m{req("read", "success"): 1}, ev(t, "ResponseComplete get system:anonymous - 200 /healthz"))
	f("outcomes", m{req("read", "success"): 3, req("read", "unauthorized"): 1, req("read", "forbidden"): 2,
		req("read", "client_error"): 2, req("read", "server_error"): 2, req("read", "unknown"): 1},
		ev(t, "ResponseComplete get jane /configmaps 200"),
		ev(t, "ResponseComplete get jane /configmaps 304"),
		ev(t, "ResponseComplete get jane /configmaps 101"),
		ev(t, "ResponseComplete get system:anonymous /configmaps 401"),
		ev(t, "ResponseComplete get jane /configmaps 403", decision("forbid")),
		ev(t, "ResponseComplete get jane /configmaps -", decision("forbid")),
		ev(t, "ResponseComplete get jane /configmaps 404"),
		ev(t, "ResponseComplete get jane /configmaps 429"),
		ev(t, "ResponseComplete get jane /configmaps 500"),
		ev(t, "ResponseComplete get jane /configmaps 503"),
		ev(t, "ResponseComplete get jane /configmaps -"))
	f("admission refusal after an allow is forbidden", m{req("write", "forbidden"): 1},
		ev(t, "ResponseComplete create jane /pods 403", decision("allow")))

	// RBAC changes.
	f("rbac changes by resource and verb", m{req("write", "success"): 3, req("delete", "success"): 2,
		rbac("roles", "create"): 1, rbac("clusterroles", "update"): 1, rbac("rolebindings", "patch"): 1,
		rbac("clusterrolebindings", "delete"): 1, rbac("roles", "deletecollection"): 1},
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/roles 201"),
		ev(t, "ResponseComplete update jane rbac.authorization.k8s.io/clusterroles 200"),
		ev(t, "ResponseComplete patch jane rbac.authorization.k8s.io/rolebindings 200"),
		ev(t, "ResponseComplete delete jane rbac.authorization.k8s.io/clusterrolebindings 200"),
		ev(t, "ResponseComplete deletecollection jane rbac.authorization.k8s.io/roles 200"))
	f("rbac changes that did not happen", m{req("write", "forbidden"): 1, req("write", "client_error"): 1,
		req("write", "success"): 3, req("read", "success"): 1},
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/roles 403", decision("forbid")),
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/roles 409"),
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/roles 201 /apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles?dryRun=All"),
		ev(t, "ResponseComplete patch jane rbac.authorization.k8s.io/roles 200 /apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles/x?fieldManager=kubectl&dryRun=All"),
		ev(t, "ResponseComplete get jane rbac.authorization.k8s.io/roles 200"),
		ev(t, "ResponseComplete create jane example.com/roles 201"))
	f("dryRun= only in the query", m{req("write", "success"): 1, rbac("roles", "create"): 1},
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/roles 201 /apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles?fieldManager=xdryRun=All"))

	// Bindings to cluster-admin.
	const (
		adminRef = `"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"}`
		editRef  = `"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"edit"}`
		subjects = `"subjects":[{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"mallory"}]`
		meta     = `"metadata":{"name":"x","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"roleRef\":{\"kind\":\"ClusterRole\",\"name\":\"cluster-admin\"}}\n"}}`
	)
	crb := "ResponseComplete create jane rbac.authorization.k8s.io/clusterrolebindings 201"
	f("create a clusterrolebinding to cluster-admin", m{req("write", "success"): 1, rbac("clusterrolebindings", "create"): 1, admin("clusterrolebindings"): 1},
		ev(t, crb, request(`{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"x"},`+subjects+`,`+adminRef+`}`)))
	f("update a rolebinding to cluster-admin", m{req("write", "success"): 1, rbac("rolebindings", "update"): 1, admin("rolebindings"): 1},
		ev(t, "ResponseComplete update jane rbac.authorization.k8s.io/rolebindings 200", request(`{`+subjects+`,`+adminRef+`}`), response(`{`+subjects+`,`+adminRef+`}`)))
	f("a binding to another role", m{req("write", "success"): 1, rbac("clusterrolebindings", "create"): 1},
		ev(t, crb, request(`{`+meta+`,`+subjects+`,`+editRef+`}`)))
	f("a Role named cluster-admin", m{req("write", "success"): 1, rbac("rolebindings", "create"): 1},
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/rolebindings 201", request(`{"roleRef":{"kind":"Role","name":"cluster-admin"}}`)))
	f("patch of the subjects: the response names the role", m{req("write", "success"): 1, rbac("clusterrolebindings", "patch"): 1, admin("clusterrolebindings"): 1},
		ev(t, "ResponseComplete patch jane rbac.authorization.k8s.io/clusterrolebindings 200",
			request(`{`+subjects+`}`), response(`{"kind":"ClusterRoleBinding",`+meta+`,`+subjects+`,`+adminRef+`}`)))
	f("json patch of the subjects", m{req("write", "success"): 1, rbac("clusterrolebindings", "patch"): 1, admin("clusterrolebindings"): 1},
		ev(t, "ResponseComplete patch jane rbac.authorization.k8s.io/clusterrolebindings 200",
			request(`[{"op":"add","path":"/subjects/-","value":{"kind":"User","name":"mallory"}}]`), response(`{`+adminRef+`}`)))
	f("patch naming the role without its kind", m{req("write", "success"): 1, rbac("clusterrolebindings", "patch"): 1, admin("clusterrolebindings"): 1},
		ev(t, "ResponseComplete patch jane rbac.authorization.k8s.io/clusterrolebindings 200", request(`{"roleRef":{"name":"cluster-admin"},`+subjects+`}`)))
	f("patch at Request level without roleRef cannot be seen", m{req("write", "success"): 1, rbac("clusterrolebindings", "patch"): 1},
		ev(t, "ResponseComplete patch jane rbac.authorization.k8s.io/clusterrolebindings 200", request(`{`+subjects+`}`)))
	f("Metadata level cannot be seen", m{req("write", "success"): 1, rbac("clusterrolebindings", "create"): 1}, ev(t, crb))
	f("roleRef only in nested objects", m{req("write", "success"): 1, rbac("clusterrolebindings", "create"): 1},
		ev(t, crb, request(`{"metadata":{"name":"x","labels":{"roleRef":"cluster-admin"}},"spec":{`+adminRef+`},"items":[{`+adminRef+`}],`+editRef+`}`)))
	f("escaped name", m{req("write", "success"): 1, rbac("clusterrolebindings", "create"): 1, admin("clusterrolebindings"): 1},
		ev(t, crb, request(`{"role\u0052ef":{"kind":"Cluster\u0052ole","name":"cluster\u002dadmin"}}`)))
	f("duplicate roleRef: the last wins", m{req("write", "success"): 1, rbac("clusterrolebindings", "create"): 1, admin("clusterrolebindings"): 1},
		ev(t, crb, request(`{`+editRef+`,`+adminRef+`}`)))
	f("duplicate roleRef: the last loses", m{req("write", "success"): 1, rbac("clusterrolebindings", "create"): 1},
		ev(t, crb, request(`{`+adminRef+`,`+editRef+`}`)))
	f("case matters", m{req("write", "success"): 1, rbac("clusterrolebindings", "create"): 1},
		ev(t, crb, request(`{"roleref":{"kind":"ClusterRole","name":"cluster-admin"},"roleRef":{"kind":"ClusterRole","name":"Cluster-Admin"}}`)))
	f("not counted: forbidden, dry run, delete", m{req("write", "forbidden"): 1, req("write", "success"): 1, req("delete", "success"): 1,
		rbac("clusterrolebindings", "delete"): 1},
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/clusterrolebindings 403", decision("forbid"), request(`{`+adminRef+`}`)),
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/clusterrolebindings 201 /apis/rbac.authorization.k8s.io/v1/clusterrolebindings?dryRun=All", request(`{`+adminRef+`}`)),
		ev(t, "ResponseComplete delete jane rbac.authorization.k8s.io/clusterrolebindings 200", response(`{`+adminRef+`}`)))
	f("bindings only", m{req("write", "success"): 1, rbac("clusterroles", "create"): 1},
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/clusterroles 201", request(`{`+adminRef+`}`)))

	// Secret reads.
	f("secret reads by actor", m{req("read", "success"): 5, req("watch", "success"): 1,
		secret("get", "user"): 2, secret("list", "serviceaccount"): 1, secret("watch", "anonymous"): 1, secret("get", "serviceaccount"): 1},
		ev(t, "ResponseComplete get jane@example.com /secrets 200"),
		ev(t, "ResponseComplete get u-6xk2m /secrets 200"),
		ev(t, "ResponseComplete list system:serviceaccount:team-a:app /secrets 200"),
		ev(t, "ResponseComplete watch system:anonymous /secrets 200"),
		ev(t, "ResponseComplete get system:serviceaccount:kube-systemx:app /secrets 200"),
		ev(t, "ResponseComplete get system:serviceaccount:cattle-system:rancher /secrets 200"))
	f("the control plane's secret reads", m{req("read", "success"): 7},
		ev(t, "ResponseComplete get system:serviceaccount:kube-system:helm-controller /secrets 200"),
		ev(t, "ResponseComplete list system:serviceaccount:kube-public:x /secrets 200"),
		ev(t, "ResponseComplete list system:serviceaccount:kube-node-lease:x /secrets 200"),
		ev(t, "ResponseComplete get system:serviceaccount:cattle-fleet-system:fleet-agent /secrets 200"),
		ev(t, "ResponseComplete get system:node:server-0 /secrets 200"),
		ev(t, "ResponseComplete get system:kube-controller-manager /secrets 200"),
		ev(t, "ResponseComplete get system:admin /secrets 200"))
	f("impersonation", m{req("read", "success"): 4, secret("get", "user"): 2, secret("get", "serviceaccount"): 1},
		ev(t, "ResponseComplete get system:serviceaccount:cattle-impersonation-system:cattle-impersonation-u-6xk2m /secrets 200", impersonating("u-6xk2m")),
		ev(t, "ResponseComplete get jane /secrets 200", impersonating("system:kube-scheduler")),
		ev(t, "ResponseComplete get jane /secrets 200", impersonating("system:serviceaccount:team-a:app")),
		ev(t, "ResponseComplete get system:serviceaccount:kube-system:x /secrets 200", impersonating("system:node:server-0")))
	f("not secret reads", m{req("read", "forbidden"): 1, req("read", "client_error"): 1, req("write", "success"): 1, req("read", "success"): 2},
		ev(t, "ResponseComplete get jane /secrets 403", decision("forbid")),
		ev(t, "ResponseComplete get jane /secrets 404"),
		ev(t, "ResponseComplete create jane /secrets 201"),
		ev(t, "ResponseComplete get jane example.com/secrets 200"),
		ev(t, "ResponseComplete get jane /secrets/status 200"))

	// exec, attach, port-forward.
	f("pod connections", m{req("write", "success"): 2, req("read", "success"): 2, pod("exec"): 2, pod("attach"): 1, pod("portforward"): 1},
		ev(t, "ResponseComplete create jane /pods/exec 101"),
		ev(t, "ResponseComplete get jane /pods/exec 101"),
		ev(t, "ResponseComplete create jane /pods/attach 200"),
		ev(t, "ResponseComplete get jane /pods/portforward 101"))
	f("not pod connections", m{req("write", "forbidden"): 1, req("read", "success"): 2, req("write", "success"): 1},
		ev(t, "ResponseComplete create jane /pods/exec 403", decision("forbid")),
		ev(t, "ResponseComplete get jane /pods/log 200"),
		ev(t, "ResponseComplete get jane /pods 200"),
		ev(t, "ResponseComplete create jane example.com/pods/exec 201"))
}

func sorted(m map[string]float64) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s %v", k, v))
	}
	slices.Sort(out)
	return out
}

func TestObserveDoesNotAllocate(t *testing.T) {
	lines := [][]byte{
		ev(t, "ResponseComplete get jane /secrets 200", impersonating("system:kube-scheduler")),
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/clusterrolebindings 201 /apis/rbac.authorization.k8s.io/v1/clusterrolebindings?dryRun=All"),
		ev(t, "ResponseComplete create jane rbac.authorization.k8s.io/clusterrolebindings 201",
			request(`{"metadata":{"name":"x"},"roleRef":{"kind":"Cluster\u0052ole","name":"cluster\u002dadmin"}}`)),
		ev(t, "ResponseComplete patch jane rbac.authorization.k8s.io/rolebindings 200", request(`[]`), response(`{"roleRef":{"name":"cluster-admin"}}`)),
		ev(t, "ResponseComplete create jane /pods/exec 101"),
		ev(t, "Panic list system:serviceaccount:team-a:x /secrets -"),
	}
	c := New(prometheus.NewRegistry())
	for _, l := range lines {
		var p parse.Parser
		e, err := p.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { c.Observe(e) }); n != 0 {
			t.Errorf("Observe allocates %v times per call for %s", n, l)
		}
	}
}
