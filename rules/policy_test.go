package rules

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
)

const policyHead = "apiVersion: audit.k8s.io/v1\nkind: Policy\n"

var (
	podBody  = `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x","namespace":"ns","managedFields":[{"manager":"kubectl","operation":"Update"}],"labels":{"a":"b"}},"spec":{}}`
	podList  = `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[` + podBody + `,{"metadata":{"managedFields":[]}},{"metadata":{"name":"y"}},` + podBody + `]}`
	podTable = `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"7"},"columnDefinitions":[],"rows":[{"cells":["x"],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"x","managedFields":[{"manager":"m"}]}}},{"cells":["y"],"object":{"metadata":{"managedFields":[{"manager":"m"}],"name":"y"}}}]}`
)

func TestPolicyApply(t *testing.T) {
	pods := func(level, stage, verb, req, resp string) secretEvent {
		return secretEvent{level: level, stage: stage, verb: verb, resource: "pods", req: req, resp: resp, annotations: `{"authorization.k8s.io/decision":"allow"}`}
	}
	f := func(name, policy string, e secretEvent, want Verdict, cut []string, level string) {
		t.Helper()
		r := newRules(t, Config{RedactSecrets: true}, policyHead+policy)
		line := e.line()
		var p parse.Parser
		out, v := r.Apply(make([]byte, 0, 16), mustParse(t, &p, line))
		if v != want {
			t.Fatalf("%s: verdict %+v, want %+v", name, v, want)
		}
		if v.Drop {
			if out != nil {
				t.Errorf("%s: dropped but returned a line", name)
			}
			return
		}
		if len(cut) == 0 && level == "" {
			if &out[0] != &line[0] {
				t.Errorf("%s: unchanged but copied", name)
			}
			return
		}
		checkCut(t, line, out, cut, level, "")
	}
	rr := pods("RequestResponse", "ResponseComplete", "update", podBody, podBody)
	f("None drops", "rules:\n- level: None\n", rr, Verdict{Drop: true, DropReason: "policy_none"}, nil, "")
	f("no rule matches: None", "rules:\n- level: Metadata\n  users: [bob]\n", rr, Verdict{Drop: true, DropReason: "policy_none"}, nil, "")
	f("rule omitStages", "rules:\n- level: Metadata\n  omitStages: [ResponseComplete]\n", rr, Verdict{Drop: true, DropReason: "omit_stage"}, nil, "")
	f("policy omitStages", "omitStages: [ResponseComplete]\nrules:\n- level: Metadata\n", rr, Verdict{Drop: true, DropReason: "omit_stage"}, nil, "")
	f("None before omitStages", "omitStages: [ResponseComplete]\nrules:\n- level: None\n", rr, Verdict{Drop: true, DropReason: "policy_none"}, nil, "")
	f("other stage kept", "omitStages: [RequestReceived]\nrules:\n- level: RequestResponse\n", rr, Verdict{}, nil, "")
	f("to Metadata", "rules:\n- level: Metadata\n", rr, Verdict{Lowered: true}, []string{"requestObject", "responseObject"}, "Metadata")
	f("to Request", "rules:\n- level: Request\n", rr, Verdict{Lowered: true}, []string{"responseObject"}, "Request")
	f("to Metadata without bodies", "rules:\n- level: Metadata\n", pods("Request", "RequestReceived", "get", "", ""), Verdict{Lowered: true}, nil, "Metadata")
	f("never raised", "rules:\n- level: RequestResponse\n", pods("Metadata", "ResponseComplete", "get", "", ""), Verdict{}, nil, "")
	f("same level", "rules:\n- level: Request\n", pods("Request", "ResponseComplete", "create", podBody, ""), Verdict{}, nil, "")
	f("first match wins", "rules:\n- level: Request\n  verbs: [update]\n- level: Metadata\n", rr, Verdict{Lowered: true}, []string{"responseObject"}, "Request")
	f("managedFields", "omitManagedFields: true\nrules:\n- level: RequestResponse\n", rr, Verdict{Lowered: true},
		[]string{"requestObject.metadata.managedFields", "responseObject.metadata.managedFields"}, "")
	f("managedFields of the kept body", "omitManagedFields: true\nrules:\n- level: Request\n", rr, Verdict{Lowered: true},
		[]string{"requestObject.metadata.managedFields", "responseObject"}, "Request")
	f("managedFields: rule overrides policy", "omitManagedFields: true\nrules:\n- level: RequestResponse\n  omitManagedFields: false\n", rr, Verdict{}, nil, "")
	f("managedFields: rule sets it", "rules:\n- level: RequestResponse\n  omitManagedFields: true\n", rr, Verdict{Lowered: true},
		[]string{"requestObject.metadata.managedFields", "responseObject.metadata.managedFields"}, "")
	f("managedFields of list items", "omitManagedFields: true\nrules:\n- level: RequestResponse\n", pods("RequestResponse", "ResponseComplete", "list", "", podList), Verdict{Lowered: true},
		[]string{"responseObject.items.[].metadata.managedFields"}, "")
	f("managedFields of table rows", "omitManagedFields: true\nrules:\n- level: RequestResponse\n", pods("RequestResponse", "ResponseComplete", "list", "", podTable), Verdict{Lowered: true},
		[]string{"responseObject.rows.[].object.metadata.managedFields"}, "")
	f("no managedFields", "omitManagedFields: true\nrules:\n- level: RequestResponse\n", pods("RequestResponse", "ResponseComplete", "delete", `{"kind":"DeleteOptions"}`, `{"kind":"Status"}`), Verdict{}, nil, "")

	// Redaction after lowering: only what is left is marked.
	sec := secretEvent{level: "RequestResponse", stage: "ResponseComplete", verb: "update", resource: "secrets", req: secretBody, resp: secretBody}
	r := newRules(t, Config{RedactSecrets: true}, policyHead+"rules:\n- level: Request\n")
	var p parse.Parser
	out, v := r.Apply(nil, mustParse(t, &p, sec.line()))
	if v != (Verdict{Lowered: true, Redacted: true}) {
		t.Errorf("secret lowered to Request: %+v", v)
	}
	checkCut(t, sec.line(), out, []string{"requestObject", "responseObject"}, "Request", "requestObject")
}

// TestDecide checks the evaluator's matching rules on hand-made requests;
// rules/oracle compares it with kube-apiserver's own on a large corpus.
func TestDecide(t *testing.T) {
	const policy = policyHead + `omitStages: [Panic]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/version"]
- level: Request
  users: [alice]
  userGroups: [ops]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/*"]
    resourceNames: [web]
- level: Metadata
  omitStages: [RequestReceived]
  resources:
  - group: "*"
    resources: ["*/status"]
- level: Request
  namespaces: [""]
- level: RequestResponse
  verbs: [post]
- level: Metadata
  resources:
  - group: apps
`
	pol, findings := Lint([]byte(policy))
	if pol == nil {
		t.Fatal(findings)
	}
	type req struct {
		user, group, verb, uri string
		resource               bool
		res, sub, ns, name, g  string
	}
	f := func(name string, q req, rule int, level Level) {
		t.Helper()
		e := parse.Event{Username: q.user, Groups: []string{q.group}, Verb: q.verb, RequestURI: q.uri, HasObjectRef: q.resource,
			ObjectRef: parse.ObjectRef{Resource: q.res, Subresource: q.sub, Namespace: q.ns, Name: q.name, APIGroup: q.g}}
		d := pol.Decide(&e)
		if d.Rule != rule || d.Level != level {
			t.Errorf("%s: rule %d at %s, want rule %d at %s", name, d.Rule, d.Level, rule, level)
		}
		if !d.OmitStages.Has("Panic") {
			t.Errorf("%s: the policy's omitStages are not in the rule's", name)
		}
	}
	f("healthz prefix", req{verb: "get", uri: "/healthz/etcd?verbose"}, 0, LevelNone)
	f("version exact", req{verb: "get", uri: "/version"}, 0, LevelNone)
	f("version longer", req{verb: "get", uri: "/versions", group: "x"}, -1, LevelNone)
	f("escaped path", req{verb: "get", uri: "/health%7A"}, 0, LevelNone)
	f("user and group", req{user: "alice", group: "ops", verb: "get", uri: "/api"}, 1, LevelRequest)
	f("user without group", req{user: "alice", group: "dev", verb: "post", uri: "/api"}, 5, LevelRequestResponse)
	f("pods/* with name", req{verb: "get", resource: true, res: "pods", sub: "log", ns: "a", name: "web"}, 2, LevelRequestResponse)
	f("pods/* matches pods", req{verb: "get", resource: true, res: "pods", ns: "a", name: "web"}, 2, LevelRequestResponse)
	f("pods/* other name", req{verb: "get", resource: true, res: "pods", ns: "a", name: "db"}, -1, LevelNone)
	f("create has no name yet", req{verb: "create", resource: true, res: "pods", ns: "a", name: "web"}, -1, LevelNone)
	f("create on subresource keeps it", req{verb: "create", resource: true, res: "pods", sub: "eviction", ns: "a", name: "web"}, 2, LevelRequestResponse)
	f("*/status", req{verb: "patch", resource: true, res: "nodes", sub: "status", g: "", name: "n"}, 3, LevelMetadata)
	f("cluster-scoped", req{verb: "get", resource: true, res: "nodes", name: "n"}, 4, LevelRequest)
	f("resource requests never match nonResourceURLs", req{verb: "get", uri: "/healthz", resource: true, res: "pods", ns: "a"}, -1, LevelNone)
	f("verbs alone match resource requests", req{verb: "post", resource: true, res: "pods", ns: "a"}, 5, LevelRequestResponse)
	f("group without resources", req{verb: "get", resource: true, res: "deployments", g: "apps", ns: "a"}, 6, LevelMetadata)
	f("wrong group", req{verb: "get", resource: true, res: "deployments", g: "extensions", ns: "a"}, -1, LevelNone)

	d := pol.Decide(&parse.Event{Verb: "patch", HasObjectRef: true, ObjectRef: parse.ObjectRef{Resource: "pods", Subresource: "status", Namespace: "a"}})
	if !d.OmitStages.Has("RequestReceived") || d.OmitStages.Has("ResponseComplete") {
		t.Errorf("omitStages of rules[3]: %b", d.OmitStages)
	}
}

func TestNewErrors(t *testing.T) {
	f := func(name string, c Config, want ...string) {
		t.Helper()
		_, err := New(c)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", name, err, w)
			}
		}
	}
	f("missing file", Config{PolicyFile: "testdata/none.yaml"}, "rules.policy_file", "testdata/none.yaml", "readable")
	f("blog policy", Config{PolicyFile: "testdata/lint/rke2-blog-basic.yaml"}, "rules.policy_file: testdata/lint/rke2-blog-basic.yaml:5: invalid YAML", "indentation")
	f("unknown key", Config{PolicyFile: "testdata/lint/unknown-keys.yaml"}, "unknown-keys.yaml:7:", `"user"`, "2 more problems: run `audit-shipper policy lint testdata/lint/unknown-keys.yaml`")
	if _, err := New(Config{PolicyFile: "testdata/lint/warnings.yaml"}); err != nil {
		t.Errorf("a policy with warnings only is refused: %v", err)
	}
}

// TestApplyAllocs: steady-state Apply allocates nothing, whatever it cuts.
func TestApplyAllocs(t *testing.T) {
	pol, err := os.ReadFile("testdata/lint/tricky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		policy string
	}{{"redact", ""}, {"redact+policy", string(pol)}} {
		r := newRules(t, Config{RedactSecrets: true, RedactResources: []string{"configmaps"}}, c.policy)
		g := corpus.New(corpus.Options{Seed: 3})
		lines := make([][]byte, 2000)
		for i := range lines {
			lines[i] = g.Next(nil)
		}
		lines = append(lines, pods2List())
		var p parse.Parser
		dst := make([]byte, 0, 1<<20)
		changed := 0
		for _, l := range lines { // warm up the parser's buffers
			out, _ := r.Apply(dst, mustParse(t, &p, l))
			if !bytes.Equal(out, l) {
				changed++
			}
		}
		// testing.AllocsPerRun rounds down: count every allocation instead.
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 3 {
			for _, l := range lines {
				ev, _ := p.Parse(l)
				r.Apply(dst, ev)
			}
		}
		runtime.ReadMemStats(&after)
		if n := after.Mallocs - before.Mallocs; n != 0 {
			t.Errorf("%s: %d allocations over %d events", c.name, n, 3*len(lines))
		}
		if changed < len(lines)/20 {
			t.Errorf("%s: only %d of %d events changed: the test proves little", c.name, changed, len(lines))
		}
	}
}

func pods2List() []byte {
	return secretEvent{level: "RequestResponse", stage: "ResponseComplete", verb: "list", resource: "pods", resp: podList}.line()
}

// TestConcurrentApply: one *Rules serves several goroutines (one per sink
// and cursor) with the results of one.
func TestConcurrentApply(t *testing.T) {
	pol, err := os.ReadFile("testdata/lint/tricky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := newRules(t, Config{RedactSecrets: true}, string(pol))
	g := corpus.New(corpus.Options{Seed: 9})
	lines := make([][]byte, 500)
	want := make([]string, len(lines))
	var p parse.Parser
	for i := range lines {
		lines[i] = g.Next(nil)
		out, v := r.Apply(nil, mustParse(t, &p, lines[i]))
		want[i] = string(out) + v.DropReason
	}
	done := make(chan string)
	for w := 0; w < 4; w++ {
		go func() {
			var p parse.Parser
			var dst []byte
			for i, l := range lines {
				ev, err := p.Parse(l)
				if err != nil {
					done <- err.Error()
					return
				}
				out, v := r.Apply(dst, ev)
				if string(out)+v.DropReason != want[i] {
					done <- "event " + strconv.Itoa(i) + " differs"
					return
				}
				if len(out) > 0 && &out[0] != &l[0] {
					dst = out // reuse the buffer Apply grew, never the line
				}
			}
			done <- ""
		}()
	}
	for w := 0; w < 4; w++ {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
}
