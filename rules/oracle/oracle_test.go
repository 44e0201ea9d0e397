package oracle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/klog/v2"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/rules"
)

// request is one request with the attributes kube-apiserver evaluates the
// policy on, and the event it writes for it.
type request struct {
	attrs authorizer.AttributesRecord
	line  []byte
	event auditv1.Event
}

var stages = []auditv1.Stage{auditv1.StageRequestReceived, auditv1.StageResponseStarted, auditv1.StageResponseComplete, auditv1.StagePanic}

// kind is a resource with the subresources kube-apiserver serves for it.
type kind struct {
	group, version, resource string
	subs                     []string
	namespaced               bool
}

var kinds = []kind{
	{"", "v1", "pods", []string{"", "status", "log", "exec", "attach", "portforward", "proxy", "eviction", "binding", "ephemeralcontainers", "resize"}, true},
	{"", "v1", "services", []string{"", "status", "proxy"}, true},
	{"", "v1", "endpoints", []string{""}, true},
	{"", "v1", "configmaps", []string{""}, true},
	{"", "v1", "secrets", []string{""}, true},
	{"", "v1", "serviceaccounts", []string{"", "token"}, true},
	{"", "v1", "nodes", []string{"", "status", "proxy"}, false},
	{"", "v1", "namespaces", []string{"", "status", "finalize"}, false},
	{"", "v1", "events", []string{""}, true},
	{"", "v1", "persistentvolumeclaims", []string{"", "status"}, true},
	{"apps", "v1", "deployments", []string{"", "status", "scale"}, true},
	{"apps", "v1", "statefulsets", []string{"", "status", "scale"}, true},
	{"apps", "v1", "daemonsets", []string{"", "status"}, true},
	{"apps", "v1", "replicasets", []string{"", "status", "scale"}, true},
	{"rbac.authorization.k8s.io", "v1", "roles", []string{""}, true},
	{"rbac.authorization.k8s.io", "v1", "rolebindings", []string{""}, true},
	{"rbac.authorization.k8s.io", "v1", "clusterroles", []string{""}, false},
	{"rbac.authorization.k8s.io", "v1", "clusterrolebindings", []string{""}, false},
	{"authentication.k8s.io", "v1", "tokenreviews", []string{""}, false},
	{"authorization.k8s.io", "v1", "subjectaccessreviews", []string{""}, false},
	{"authorization.k8s.io", "v1", "selfsubjectaccessreviews", []string{""}, false},
	{"certificates.k8s.io", "v1", "certificatesigningrequests", []string{"", "approval", "status"}, false},
	{"coordination.k8s.io", "v1", "leases", []string{""}, true},
	{"discovery.k8s.io", "v1", "endpointslices", []string{""}, true},
	{"events.k8s.io", "v1", "events", []string{""}, true},
	{"apiextensions.k8s.io", "v1", "customresourcedefinitions", []string{"", "status"}, false},
	{"helm.cattle.io", "v1", "helmcharts", []string{""}, true},
	{"example.com", "v1alpha1", "widgets", []string{"", "status", "scale"}, true},
}

var (
	resourceVerbs    = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy"}
	nonResourceVerbs = []string{"get", "post", "put", "patch", "delete", "head", "options"}
	// nonResourcePaths are URL paths (unescaped, as url.URL.Path holds them).
	nonResourcePaths = []string{"/", "/healthz", "/healthz/etcd", "/healthz/poststarthook/start-informers", "/livez", "/livez/ping",
		"/readyz", "/version", "/version/", "/versions", "/openapi/v2", "/openapi/v3", "/openapi/v3/apis/apps/v1", "/api", "/api/",
		"/apis", "/apis/apps", "/apis/apps/v1", "/metrics", "/metrics/slis", "/logs/", "/logs/kube-apiserver.log", "/debug/pprof/",
		"/foo bar", "/ünï", "/ünïcode/x", "/100%", "/a/b", "/.well-known/openid-configuration", "/openid/v1/jwks"}
	users = []string{"system:admin", "system:kube-proxy", "system:kube-controller-manager", "system:kube-scheduler",
		"system:node:server-0", "system:serviceaccount:kube-system:default", "system:serviceaccount:kube-system:endpoint-controller",
		"system:serviceaccount:cattle-system:rancher", "system:anonymous", "system:apiserver", "jane@example.com", "alice", "владимир", ""}
	groupSets = [][]string{nil, {"system:authenticated"}, {"system:nodes", "system:authenticated"}, {"system:masters", "system:authenticated"},
		{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}, {"system:unauthenticated"},
		{"ops"}, {"developers", "ops", "system:authenticated"}}
	namespaces = []string{"default", "kube-system", "team-a", "cattle-system", "kube-public", "ns-ünï"}
	names      = []string{"web", "coredns", "db", "kube-root-ca.crt", "rke2-ingress-nginx-controller", "csr-1", "server-0", "x"}
	levels     = []auditv1.Level{auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse}
)

// generator builds requests and the events kube-apiserver writes for them.
type generator struct {
	r *rand.Rand
	n int
}

func pick[T any](g *generator, s []T) T { return s[g.r.IntN(len(s))] }

// resource makes a resource request.
func (g *generator) resource(k kind, sub, verb string, stage auditv1.Stage) request {
	a := authorizer.AttributesRecord{
		User:            &user.DefaultInfo{Name: pick(g, users), Groups: pick(g, groupSets)},
		Verb:            verb,
		APIGroup:        k.group,
		APIVersion:      k.version,
		Resource:        k.resource,
		Subresource:     sub,
		ResourceRequest: true,
	}
	if k.namespaced && g.r.IntN(6) != 0 {
		a.Namespace = pick(g, namespaces)
	}
	if k.resource == "namespaces" && g.r.IntN(2) == 0 {
		a.Namespace = pick(g, namespaces) // kube-apiserver sets it to the name
		a.Name = a.Namespace
	}
	switch {
	case verb == "create" && sub == "":
		// the name is in the body, not the URL
	case verb == "list" || verb == "watch" || verb == "deletecollection":
		if g.r.IntN(4) == 0 {
			a.Name = pick(g, names) // fieldSelector=metadata.name=...
		}
	case a.Name == "":
		a.Name = pick(g, names)
	}
	path := "/api/" + k.version
	if k.group != "" {
		path = "/apis/" + k.group + "/" + k.version
	}
	if a.Namespace != "" && k.resource != "namespaces" {
		path += "/namespaces/" + a.Namespace
	}
	path += "/" + k.resource
	if a.Name != "" && verb != "list" && verb != "watch" && verb != "deletecollection" {
		path += "/" + a.Name
	}
	if sub != "" {
		path += "/" + sub
	}
	a.Path = path
	ref := &auditv1.ObjectReference{Resource: a.Resource, Subresource: a.Subresource, Namespace: a.Namespace, Name: a.Name, APIGroup: a.APIGroup, APIVersion: a.APIVersion}
	return g.event(a, ref, stage, g.query(verb))
}

func (g *generator) query(verb string) string {
	switch verb {
	case "list":
		return "limit=500&resourceVersion=0"
	case "watch":
		return "watch=true&timeoutSeconds=300"
	case "patch":
		return "fieldManager=kubectl"
	}
	return ""
}

// nonResource makes a non-resource request.
func (g *generator) nonResource(path, verb string, stage auditv1.Stage) request {
	a := authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: pick(g, users), Groups: pick(g, groupSets)},
		Verb: verb,
		Path: path,
	}
	q := ""
	if g.r.IntN(3) == 0 {
		q = "verbose"
	}
	return g.event(a, nil, stage, q)
}

// event writes the event kube-apiserver writes for a at stage: objectRef
// from the attributes (LogRequestMetadata), the name of a created object
// from its body after the policy was evaluated (LogRequestObject), bodies
// as the event's level allows.
func (g *generator) event(a authorizer.AttributesRecord, ref *auditv1.ObjectReference, stage auditv1.Stage, query string) request {
	g.n++
	u := url.URL{Path: a.Path, RawQuery: query}
	if a.Path == "/a/b" {
		u.RawPath = "/a%2Fb" // an escaped slash: the path is unescaped for matching
	}
	level := pick(g, levels)
	ev := auditv1.Event{
		TypeMeta:                 metav1.TypeMeta{Kind: "Event", APIVersion: "audit.k8s.io/v1"},
		Level:                    level,
		AuditID:                  types.UID(fmt.Sprintf("0000-%08d", g.n)),
		Stage:                    stage,
		RequestURI:               u.RequestURI(),
		Verb:                     a.Verb,
		User:                     authnv1.UserInfo{Username: a.User.GetName(), Groups: a.User.GetGroups()},
		SourceIPs:                []string{"10.0.0.1"},
		UserAgent:                "oracle-test",
		ObjectRef:                ref,
		RequestReceivedTimestamp: metav1.NewMicroTime(time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)),
		StageTimestamp:           metav1.NewMicroTime(time.Date(2024, 6, 1, 0, 0, 1, 0, time.UTC)),
	}
	if ref != nil && stage != auditv1.StageRequestReceived && a.Verb == "create" && ref.Name == "" {
		ref.Name = pick(g, names)
	}
	if stage != auditv1.StageRequestReceived {
		ev.ResponseStatus = &metav1.Status{Code: 200}
		ev.Annotations = map[string]string{"authorization.k8s.io/decision": "allow"}
	}
	body := func(list bool) *runtime.Unknown {
		obj := `{"kind":"Widget","apiVersion":"v1","metadata":{"name":"x","managedFields":[{"manager":"m","operation":"Update"}]},"spec":{"n":1}}`
		if list {
			obj = `{"kind":"WidgetList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[` + obj + `,` + obj + `]}`
		}
		return &runtime.Unknown{Raw: []byte(obj), ContentType: runtime.ContentTypeJSON}
	}
	if ref != nil && level != auditv1.LevelMetadata && (a.Verb == "create" || a.Verb == "update" || a.Verb == "patch") {
		ev.RequestObject = body(false)
	}
	if ref != nil && level == auditv1.LevelRequestResponse && stage == auditv1.StageResponseComplete && a.Verb != "watch" {
		ev.ResponseObject = body(a.Verb == "list" || a.Verb == "deletecollection")
	}
	line, err := json.Marshal(&ev)
	if err != nil {
		panic(err)
	}
	return request{attrs: a, line: line, event: ev}
}

// fromCorpus derives the attributes of a corpus event as kube-apiserver
// had them: from the event it wrote (its own type, decoded by the
// standard library), the path from requestURI by net/url.
func fromCorpus(t *testing.T, line []byte) request {
	var ev auditv1.Event
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatal(err)
	}
	u, err := url.ParseRequestURI(ev.RequestURI)
	if err != nil {
		t.Fatal(err)
	}
	a := authorizer.AttributesRecord{
		User: &user.DefaultInfo{Name: ev.User.Username, Groups: ev.User.Groups},
		Verb: ev.Verb,
		Path: u.Path,
	}
	if o := ev.ObjectRef; o != nil {
		a.ResourceRequest = true
		a.Namespace, a.APIGroup, a.APIVersion, a.Resource, a.Subresource, a.Name = o.Namespace, o.APIGroup, o.APIVersion, o.Resource, o.Subresource, o.Name
		if ev.Verb == "create" && o.Subresource == "" {
			a.Name = "" // see the comment of generator.event
		}
	}
	return request{attrs: a, line: line, event: ev}
}

// requests is the corpus: every resource kind and subresource with every
// verb at every stage, every non-resource path with every method at every
// stage, then random requests, then package corpus' events.
func requests(t *testing.T) []request {
	g := &generator{r: rand.New(rand.NewPCG(1, 2))}
	var out []request
	for _, k := range kinds {
		for _, sub := range k.subs {
			for _, verb := range resourceVerbs {
				for _, st := range stages {
					out = append(out, g.resource(k, sub, verb, st))
				}
			}
		}
	}
	for _, p := range nonResourcePaths {
		for _, verb := range nonResourceVerbs {
			for _, st := range stages {
				out = append(out, g.nonResource(p, verb, st))
			}
		}
	}
	for range 6000 {
		if g.r.IntN(5) == 0 {
			out = append(out, g.nonResource(pick(g, nonResourcePaths), pick(g, nonResourceVerbs), pick(g, stages)))
			continue
		}
		k := pick(g, kinds)
		out = append(out, g.resource(k, pick(g, k.subs), pick(g, resourceVerbs), pick(g, stages)))
	}
	c := corpus.New(corpus.Options{Seed: 5})
	for range 5000 {
		out = append(out, fromCorpus(t, c.Next(nil)))
	}
	return out
}

// policies are the example policies and the test policies both
// kube-apiserver and rules accept.
func policies(t *testing.T) map[string][]byte {
	files, _ := filepath.Glob("../../configs/policies/*.yaml")
	own, _ := filepath.Glob("../testdata/lint/*.yaml")
	out := map[string][]byte{}
	for _, f := range append(files, own...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := rules.Lint(b)
		if _, err := policy.LoadPolicyFromBytes(b); err == nil && p != nil {
			out[f] = b
		}
	}
	if len(files) < 6 || len(out) < len(files)+4 {
		t.Fatalf("%d policies accepted by both of %v and %v: too few", len(out), files, own)
	}
	return out
}

func has(stages []auditinternal.Stage, s string) bool {
	return slices.Contains(stages, auditinternal.Stage(s))
}

// TestDifferential: for every request and every policy, rules.Policy.Decide
// says what kube-apiserver's evaluator says (level, omitted stages,
// omitManagedFields), and rules.Rules.Apply does with the event what that
// decision means.
func TestDifferential(t *testing.T) {
	reqs := requests(t)
	coverage(t, reqs)
	for name, b := range policies(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			mine, _ := rules.Lint(b)
			internal, err := policy.LoadPolicyFromBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			theirs := policy.NewPolicyRuleEvaluator(internal)
			file := filepath.Join(t.TempDir(), "policy.yaml")
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := rules.New(rules.Config{PolicyFile: file})
			if err != nil {
				t.Fatal(err)
			}
			var p parse.Parser
			levels := map[string]int{}
			failures := 0
			for i, q := range reqs {
				ev, err := p.Parse(q.line)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				want := theirs.EvaluatePolicyRule(q.attrs)
				got := mine.Decide(ev)
				levels[string(want.Level)]++
				msg := ""
				if got.Level.String() != string(want.Level) {
					msg += fmt.Sprintf(" level %s (rules[%d]), kube-apiserver %s;", got.Level, got.Rule, want.Level)
				}
				for _, s := range stages {
					if got.OmitStages.Has(string(s)) != has(want.OmitStages, string(s)) {
						msg += fmt.Sprintf(" omits %s: %v, kube-apiserver %v;", s, got.OmitStages.Has(string(s)), want.OmitStages)
					}
				}
				if got.OmitManagedFields != want.OmitManagedFields {
					msg += fmt.Sprintf(" omitManagedFields %v, kube-apiserver %v;", got.OmitManagedFields, want.OmitManagedFields)
				}
				if msg == "" {
					msg = checkApply(r, ev, q, want)
				}
				if msg != "" {
					t.Errorf("request %d (%s):%s\n%s", i, describe(q.attrs), msg, q.line)
					if failures++; failures > 10 {
						t.FailNow()
					}
				}
			}
			t.Logf("%d requests; kube-apiserver's levels: %v", len(reqs), levels)
			if len(levels) < 2 {
				t.Errorf("every request got the same level: the policy tests nothing here")
			}
		})
	}
}

// checkApply checks what Apply made of the event against kube-apiserver's
// decision for its request.
func checkApply(r *rules.Rules, ev *parse.Event, q request, want audit.RequestAuditConfig) string {
	out, v := r.Apply(nil, ev)
	switch {
	case want.Level == auditinternal.LevelNone:
		if !v.Drop || v.DropReason != "policy_none" {
			return fmt.Sprintf(" Apply: %+v, want a policy_none drop", v)
		}
		return ""
	case has(want.OmitStages, string(q.event.Stage)):
		if !v.Drop || v.DropReason != "omit_stage" {
			return fmt.Sprintf(" Apply: %+v, want an omit_stage drop", v)
		}
		return ""
	case v.Drop:
		return fmt.Sprintf(" Apply dropped it: %+v", v)
	}
	var got auditv1.Event
	if err := json.Unmarshal(out, &got); err != nil {
		return " Apply's output: " + err.Error()
	}
	level := min(rank(q.event.Level), rank(auditv1.Level(want.Level)))
	if rank(got.Level) != level {
		return fmt.Sprintf(" Apply: level %s, want %s", got.Level, levelNames[level])
	}
	for _, b := range []struct {
		name      string
		in, out   *runtime.Unknown
		needLevel int
	}{{"requestObject", q.event.RequestObject, got.RequestObject, 2}, {"responseObject", q.event.ResponseObject, got.ResponseObject, 3}} {
		switch {
		case b.in == nil && b.out != nil:
			return " Apply added " + b.name
		case b.in != nil && level < b.needLevel && b.out != nil:
			return " Apply kept " + b.name + " at " + levelNames[level]
		case b.in != nil && level >= b.needLevel && b.out == nil:
			return " Apply cut " + b.name + " at " + levelNames[level]
		case b.out != nil && want.OmitManagedFields && bytes.Contains(b.out.Raw, []byte(`"managedFields"`)):
			return " Apply kept managedFields in " + b.name
		case b.out != nil && !want.OmitManagedFields && !bytes.Equal(b.in.Raw, b.out.Raw):
			return " Apply changed " + b.name
		}
	}
	mf := func(u *runtime.Unknown) bool { return u != nil && bytes.Contains(u.Raw, []byte(`"managedFields"`)) }
	cutMF := want.OmitManagedFields && (got.RequestObject != nil && mf(q.event.RequestObject) || got.ResponseObject != nil && mf(q.event.ResponseObject))
	if v.Lowered != (level < rank(q.event.Level) || cutMF) {
		return fmt.Sprintf(" Apply: Lowered=%v", v.Lowered)
	}
	return ""
}

func describe(a authorizer.AttributesRecord) string {
	s := fmt.Sprintf("user %q groups %q verb %s", a.User.GetName(), a.User.GetGroups(), a.Verb)
	if !a.ResourceRequest {
		return s + fmt.Sprintf(" path %q", a.Path)
	}
	return s + fmt.Sprintf(" %s/%s/%s namespace %q name %q", a.APIGroup, a.Resource, a.Subresource, a.Namespace, a.Name)
}

var levelNames = []string{"None", "Metadata", "Request", "RequestResponse"}

func rank(l auditv1.Level) int { return slices.Index(levelNames, string(l)) }

// coverage fails when the generated requests miss a shape the issue asks
// for.
func coverage(t *testing.T, reqs []request) {
	seen := map[string]bool{}
	for _, q := range reqs {
		a := q.attrs
		seen["verb "+a.Verb] = true
		seen["stage "+string(q.event.Stage)] = true
		if a.ResourceRequest {
			seen["resource "+a.APIGroup+"/"+a.Resource+"/"+a.Subresource] = true
			seen["namespace "+a.Namespace] = true
		} else {
			seen["path "+a.Path] = true
		}
		seen["user "+a.User.GetName()] = true
		seen[fmt.Sprint("groups ", a.User.GetGroups())] = true
	}
	var missing []string
	for _, v := range append(resourceVerbs, nonResourceVerbs...) {
		missing = append(missing, "verb "+v)
	}
	for _, s := range stages {
		missing = append(missing, "stage "+string(s))
	}
	for _, k := range kinds {
		for _, s := range k.subs {
			missing = append(missing, "resource "+k.group+"/"+k.resource+"/"+s)
		}
	}
	for _, p := range nonResourcePaths {
		missing = append(missing, "path "+p)
	}
	for _, u := range users {
		missing = append(missing, "user "+u)
	}
	for _, g := range groupSets {
		missing = append(missing, fmt.Sprint("groups ", g))
	}
	for _, n := range append(namespaces, "") {
		missing = append(missing, "namespace "+n)
	}
	missing = slices.DeleteFunc(missing, func(k string) bool { return seen[k] })
	if len(reqs) < 10000 || len(missing) > 0 {
		t.Fatalf("%d requests; shapes missing: %s", len(reqs), strings.Join(missing, ", "))
	}
}

var yamlLine = regexp.MustCompile(`yaml: line (\d+):`)

// TestValidationDifferential: rules.Lint refuses every policy file that
// kube-apiserver refuses, at the same line for YAML errors, and accepts
// every file kube-apiserver accepts, but for what kube-apiserver ignores
// with only a warning in its log (unknown or repeated keys, a second
// document), which rules refuses on purpose.
func TestValidationDifferential(t *testing.T) {
	files, _ := filepath.Glob("../testdata/lint/*.yaml")
	configs, _ := filepath.Glob("../../configs/policies/*.yaml")
	accepted, refused := 0, 0
	for _, f := range append(files, configs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, findings := rules.Lint(b)
		_, apiErr := policy.LoadPolicyFromBytes(b)
		switch {
		case apiErr != nil && p != nil:
			t.Errorf("%s: kube-apiserver refuses it (%v), rules accepts it", f, apiErr)
		case apiErr != nil:
			refused++
			if m := yamlLine.FindStringSubmatch(apiErr.Error()); m != nil {
				if line, _ := strconv.Atoi(m[1]); findings[0].Line != line {
					t.Errorf("%s: YAML error at line %d, kube-apiserver says %d (%v)", f, findings[0].Line, line, apiErr)
				}
			}
		case p == nil:
			accepted++
			for _, x := range findings {
				if x.Severity == rules.SeverityError {
					t.Errorf("%s: kube-apiserver accepts it, rules says: %s", f, x.Msg)
				}
			}
		default:
			accepted++
		}
	}
	t.Logf("kube-apiserver accepts %d files and refuses %d", accepted, refused)
	if accepted < 10 || refused < 8 {
		t.Errorf("too few cases on one side")
	}
}

// TestMain silences klog: kube-apiserver's policy loader logs a warning for
// each test policy it reads leniently, which the tests expect.
func TestMain(m *testing.M) {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	os.Exit(m.Run())
}
