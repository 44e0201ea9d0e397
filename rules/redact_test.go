package rules

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
)

// TestRedactCorpus runs redaction over the generated corpus: no credential
// value survives, the rest of each event is byte-identical, and events of
// other resources are returned untouched (ev.Raw itself, no copy).
func TestRedactCorpus(t *testing.T) {
	r := newRules(t, Config{RedactSecrets: true}, "")
	g := corpus.New(corpus.Options{Seed: 7})
	var p parse.Parser
	var dst []byte
	counts := map[string]int{}
	for i := 0; i < 20000; i++ {
		line := g.Next(nil)
		ev := mustParse(t, &p, line)
		secret := ev.ObjectRef.Resource == "secrets" || ev.ObjectRef.Resource == "tokenreviews" ||
			ev.ObjectRef.Resource == "serviceaccounts" && ev.ObjectRef.Subresource == "token"
		values := credentialValues(t, line)
		out, v := r.Apply(dst, ev)
		dst = out
		if v.Drop || v.Lowered {
			t.Fatalf("event %d: %+v without a policy", i, v)
		}
		if !secret {
			if &out[0] != &line[0] || len(out) != len(line) {
				t.Fatalf("event %d (%s): changed or copied without need", i, ev.ObjectRef.Resource)
			}
			continue
		}
		var cut []string
		for _, m := range []struct {
			name string
			r    parse.Range
		}{{"requestObject", ev.RequestObject}, {"responseObject", ev.ResponseObject}} {
			if m.r.Present() {
				cut = append(cut, m.name)
			}
		}
		if len(cut) == 0 {
			if !bytes.Equal(out, line) || v.Redacted {
				t.Fatalf("event %d: a %s event without bodies was changed (%+v)", i, ev.ObjectRef.Resource, v)
			}
			counts["no body"]++
			continue
		}
		if !v.Redacted {
			t.Fatalf("event %d: bodies of %s not redacted", i, ev.ObjectRef.Resource)
		}
		counts[ev.ObjectRef.Resource+"/"+ev.Level]++
		for _, s := range values {
			if bytes.Contains(out, []byte(s)) {
				t.Fatalf("event %d: credential %q survived:\n%s", i, s, out)
			}
		}
		checkCut(t, line, out, cut, "", strings.Join(cut, ","))
	}
	t.Logf("redacted events by resource/level: %v", counts)
	for _, k := range []string{"secrets/Request", "secrets/RequestResponse", "tokenreviews/RequestResponse", "serviceaccounts/RequestResponse"} {
		if counts[k] < 50 {
			t.Errorf("only %d %s events in the corpus: the test proves little", counts[k], k)
		}
	}
}

// secretEvent writes an audit event line in kube-apiserver's member order.
type secretEvent struct {
	level, stage, verb       string
	group, resource, sub     string
	req, resp                string // raw JSON bodies, "" for none
	annotations              string // raw JSON, "" for none
	extraBeforeBodies, after string // raw members (with a leading comma) around the bodies
}

func (e secretEvent) line() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":%q,"auditID":"0b1c","stage":%q,"requestURI":"/api/v1/namespaces/ns/%s","verb":%q,"user":{"username":"jane","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl","objectRef":{"resource":%q,"namespace":"ns","name":"x","apiGroup":%q,"apiVersion":"v1"`,
		e.level, e.stage, e.resource, e.verb, e.resource, e.group)
	if e.sub != "" {
		fmt.Fprintf(&b, `,"subresource":%q`, e.sub)
	}
	b.WriteString(`},"responseStatus":{"metadata":{},"code":200}`)
	b.WriteString(e.extraBeforeBodies)
	if e.req != "" {
		b.WriteString(`,"requestObject":` + e.req)
	}
	if e.resp != "" {
		b.WriteString(`,"responseObject":` + e.resp)
	}
	b.WriteString(`,"requestReceivedTimestamp":"2024-06-01T00:00:00.000000Z","stageTimestamp":"2024-06-01T00:00:00.001000Z"`)
	if e.annotations != "" {
		b.WriteString(`,"annotations":` + e.annotations)
	}
	b.WriteString(e.after)
	b.WriteString("}")
	return []byte(b.String())
}

const (
	secretData  = "c3VwZXItc2VjcmV0LXBhc3N3b3JkLTEyMzQ1Njc4OTA="
	secretPlain = "plain-text-password-in-stringData"
	bearer      = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXBheWxvYWQ.c2lnbmF0dXJl"
)

var (
	secretBody      = `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"x","namespace":"ns","managedFields":[{"manager":"kubectl"}]},"data":{"password":"` + secretData + `"},"stringData":{"p2":"` + secretPlain + `"},"type":"Opaque"}`
	secretListBody  = `{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[` + secretBody + `,` + secretBody + `]}`
	secretPatch     = `{"data":{"password":"` + secretData + `"}}`
	tokenReviewBody = `{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"token":"` + bearer + `"},"status":{"user":{}}}`
	tokenReqBody    = `{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"name":"x"},"spec":{"audiences":["api"]},"status":{"token":"` + bearer + `","expirationTimestamp":"2024-06-01T01:00:00Z"}}`
)

// TestRedactEveryLevelAndStage: for each credential resource, at every
// level and stage, with and without a shipper policy, in every position
// of the annotations, no credential byte survives and the rest stays.
func TestRedactEveryLevelAndStage(t *testing.T) {
	type shape struct {
		group, resource, sub, verb string
		req, resp                  string
	}
	shapes := []shape{
		{"", "secrets", "", "create", secretBody, secretBody},
		{"", "secrets", "", "update", secretBody, secretBody},
		{"", "secrets", "", "patch", secretPatch, secretBody},
		{"", "secrets", "", "get", "", secretBody},
		{"", "secrets", "", "list", "", secretListBody},
		{"", "secrets", "", "delete", `{"kind":"DeleteOptions","apiVersion":"v1"}`, secretBody},
		{"authentication.k8s.io", "tokenreviews", "", "create", tokenReviewBody, tokenReviewBody},
		{"", "serviceaccounts", "token", "create", tokenReqBody, tokenReqBody},
	}
	policies := map[string]string{
		"no policy":       "",
		"RequestResponse": "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n",
		"Request":         "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Request\n",
		"Metadata":        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n",
		"omitManagedFields": "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\n" +
			"rules:\n- level: RequestResponse\n",
	}
	annotations := []string{"", "null", "{}", `{"authorization.k8s.io/decision":"allow"}`, ` { "a" : "b" } `}
	var p parse.Parser
	n := 0
	for pname, pol := range policies {
		r := newRules(t, Config{RedactSecrets: true}, pol)
		for _, s := range shapes {
			for _, level := range []string{"Metadata", "Request", "RequestResponse"} {
				for _, stage := range []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"} {
					for _, ann := range annotations {
						e := secretEvent{level: level, stage: stage, verb: s.verb, group: s.group, resource: s.resource, sub: s.sub, annotations: ann}
						if level != "Metadata" {
							e.req = s.req
						}
						if level == "RequestResponse" && stage != "RequestReceived" {
							e.resp = s.resp
						}
						line := e.line()
						out, v := r.Apply(nil, mustParse(t, &p, line))
						n++
						name := fmt.Sprintf("%s: %s %s/%s at %s, %s, annotations %q", pname, s.verb, s.resource, s.sub, level, stage, ann)
						if v.Drop {
							t.Fatalf("%s: dropped", name)
						}
						for _, secret := range []string{secretData, secretPlain, bearer} {
							if bytes.Contains(out, []byte(secret)) {
								t.Fatalf("%s: %q survived:\n%s", name, secret, out)
							}
						}
						if bytes.Contains(out, []byte(`"requestObject":`)) || bytes.Contains(out, []byte(`"responseObject":`)) {
							t.Fatalf("%s: a body survived:\n%s", name, out)
						}
						var cut []string
						if e.req != "" {
							cut = append(cut, "requestObject")
						}
						if e.resp != "" {
							cut = append(cut, "responseObject")
						}
						// What the policy cuts first is not marked as redacted.
						var redacted []string
						for _, c := range cut {
							if pname == "Metadata" || pname == "Request" && c == "responseObject" {
								continue
							}
							redacted = append(redacted, c)
						}
						if v.Redacted != (len(redacted) > 0) {
							t.Errorf("%s: Redacted=%v, want %v", name, v.Redacted, len(redacted) > 0)
						}
						lowered := ""
						if pname == "Metadata" && level != "Metadata" || pname == "Request" && level == "RequestResponse" {
							lowered = pname
						}
						checkCut(t, line, out, cut, lowered, strings.Join(redacted, ","))
					}
				}
			}
		}
	}
	t.Logf("%d events checked", n)
}

// TestRedactTricky covers lines kube-apiserver does not write but that are
// valid: keys twice, escaped keys, whitespace, bodies first or alone.
func TestRedactTricky(t *testing.T) {
	r := newRules(t, Config{RedactSecrets: true}, "")
	head := `"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a","stage":"ResponseComplete","verb":"get","objectRef":{"resource":"secrets","namespace":"ns","name":"x","apiVersion":"v1"}`
	f := func(name, line string, cut []string, redacted string) {
		t.Helper()
		var p parse.Parser
		out, v := r.Apply(nil, mustParse(t, &p, []byte(line)))
		if !v.Redacted {
			t.Fatalf("%s: not redacted", name)
		}
		for _, s := range []string{secretData, secretPlain} {
			if bytes.Contains(out, []byte(s)) {
				t.Fatalf("%s: %q survived:\n%s", name, s, out)
			}
		}
		checkCut(t, []byte(line), out, cut, "", redacted)
	}
	f("key twice", `{`+head+`,"responseObject":`+secretBody+`,"responseObject":`+secretBody+`}`, []string{"responseObject"}, "responseObject")
	f("escaped key", `{`+head+`,"response\u004fbject":`+secretBody+`,"annotations":{}}`, []string{"responseObject"}, "responseObject")
	f("escaped key twice", `{`+head+`,"request\u004Fbject":`+secretBody+`,"requestObject":`+secretPatch+`}`, []string{"requestObject"}, "requestObject")
	f("bodies first", `{"requestObject":`+secretBody+`,"responseObject":`+secretBody+`,`+head+`}`, []string{"requestObject", "responseObject"}, "requestObject,responseObject")
	f("body first, then annotations", `{"responseObject":`+secretBody+`,`+head+`,"annotations":{"a":"b"}}`, []string{"responseObject"}, "responseObject")
	f("whitespace", "{ "+strings.ReplaceAll(head, ",", " ,\t")+" ,\n \"requestObject\" :\r "+secretBody+" , \"responseObject\" : "+secretBody+" }\n", []string{"requestObject", "responseObject"}, "requestObject,responseObject")
	f("annotations between bodies", `{`+head+`,"requestObject":`+secretBody+`,"annotations":null,"responseObject":`+secretBody+`}`, []string{"requestObject", "responseObject"}, "requestObject,responseObject")
	f("null body stays", `{`+head+`,"requestObject":null,"responseObject":`+secretBody+`}`, []string{"responseObject"}, "responseObject")
}

func TestRedactResources(t *testing.T) {
	f := func(entries []string, group, resource, sub string, want bool) {
		t.Helper()
		r := newRules(t, Config{RedactResources: entries}, "")
		e := secretEvent{level: "RequestResponse", stage: "ResponseComplete", verb: "update", group: group, resource: resource, sub: sub, req: `{"a":"b"}`}
		var p parse.Parser
		_, v := r.Apply(nil, mustParse(t, &p, e.line()))
		if v.Redacted != want {
			t.Errorf("redact_resources %q, %s/%s in group %q: redacted %v, want %v", entries, resource, sub, group, v.Redacted, want)
		}
	}
	f([]string{"configmaps"}, "", "configmaps", "", true)
	f([]string{"configmaps"}, "example.com", "configmaps", "", true)
	f([]string{"configmaps"}, "", "configmaps", "status", false)
	f([]string{"configmaps.example.com"}, "", "configmaps", "", false)
	f([]string{"configmaps.example.com"}, "example.com", "configmaps", "", true)
	f([]string{"pods/log"}, "", "pods", "log", true)
	f([]string{"pods/log"}, "", "pods", "", false)
	f([]string{"pods/*"}, "", "pods", "", true)
	f([]string{"pods/*"}, "", "pods", "exec", true)
	f([]string{"*"}, "apps", "deployments", "", true)
	f([]string{"*"}, "", "deployments", "scale", true) // "*" takes subresources too, as in a policy
	f([]string{"*"}, "", "", "x", true)                // found by FuzzApply
	f(nil, "", "secrets", "", false)                   // redact_secrets off

	for _, bad := range []string{"", "Config Maps", "pods/", "/log", "pods/log/x", "pods.Apps", "configmaps.", "pods/Log"} {
		if _, err := New(Config{RedactResources: []string{bad}}); err == nil {
			t.Errorf("redact_resources %q accepted", bad)
		} else if !strings.Contains(err.Error(), "rules.redact_resources[0]") {
			t.Errorf("redact_resources %q: error %q does not say where", bad, err)
		}
	}
}
