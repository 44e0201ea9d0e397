package rules

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
)

// maxFuzzLine caps fuzz inputs: longer lines exercise nothing new.
const maxFuzzLine = 64 << 10

// FuzzApply: for any line parse accepts, under redaction and policies that
// cut everything Apply can cut, the output is valid JSON that parse accepts
// again, holds no top-level body that should be gone, and is a fixed point
// (applying the rules again changes nothing).
//
//	go test ./rules/ -run '^$' -fuzz FuzzApply -fuzztime 30s
func FuzzApply(f *testing.F) {
	g := corpus.New(corpus.Options{Seed: 21})
	for i := 0; i < 200; i++ {
		if line := g.Next(nil); len(line) <= maxFuzzLine {
			f.Add(line)
		}
	}
	for _, e := range []secretEvent{
		{level: "RequestResponse", stage: "ResponseComplete", verb: "list", resource: "pods", resp: podList, annotations: "null"},
		{level: "RequestResponse", stage: "ResponseComplete", verb: "list", resource: "pods", resp: podTable, annotations: " { } "},
		{level: "RequestResponse", stage: "ResponseComplete", verb: "update", resource: "secrets", req: secretBody, resp: secretBody},
		{level: "Request", stage: "ResponseComplete", verb: "create", resource: "serviceaccounts", sub: "token", req: tokenReqBody, extraBeforeBodies: `,"requestObject":null`},
	} {
		f.Add(e.line())
	}
	f.Add([]byte(`{"requestObject":{"metadata":{"managedFields":[1]}},"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Bogus","auditID":"a","stage":"ResponseComplete","objectRef":{"resource":"secrets"},"request\u004fbject":{"a":"\"}"},"responseObject":{"items":[{"metadata":{"managedFields":[]}}]}}`))

	configs := []struct {
		c      Config
		policy string
		cuts   func(*parse.Event) bool // bodies must be gone from the events it keeps
	}{
		{Config{RedactSecrets: true, RedactResources: []string{"*"}}, "", func(ev *parse.Event) bool { return ev.HasObjectRef }},
		{Config{}, policyHead + "omitStages: [Panic]\nrules:\n- level: Metadata\n  verbs: [get]\n- level: Request\n  omitManagedFields: true\n  verbs: [create]\n- level: RequestResponse\n  omitManagedFields: true\n", func(*parse.Event) bool { return false }},
		{Config{RedactSecrets: true}, policyHead + "rules:\n- level: Metadata\n", func(*parse.Event) bool { return true }},
	}
	rules := make([]*Rules, len(configs))
	for i, c := range configs {
		rules[i] = newRules(f, c.c, c.policy)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if len(line) > maxFuzzLine {
			t.Skip()
		}
		var p parse.Parser
		ev, err := p.Parse(line)
		if err != nil {
			return
		}
		for i, r := range rules {
			out, v := r.Apply(nil, ev)
			if v.Drop {
				continue
			}
			if !json.Valid(out) {
				t.Fatalf("config %d: invalid JSON out of valid input\n in: %q\nout: %q", i, line, out)
			}
			var q parse.Parser
			ev2, err := q.Parse(out)
			if err != nil {
				t.Fatalf("config %d: output does not parse: %v\n in: %q\nout: %q", i, err, line, out)
			}
			if configs[i].cuts(ev) {
				for _, k := range topKeys(t, out) {
					if k == "requestObject" || k == "responseObject" {
						t.Fatalf("config %d: %s left\n in: %q\nout: %q", i, k, line, out)
					}
				}
			}
			again, v2 := r.Apply(nil, ev2)
			if !bytes.Equal(again, out) || v2.Redacted || v2.Drop {
				t.Fatalf("config %d: not a fixed point (%+v)\n in: %q\nout: %q\nagain: %q", i, v2, line, out, again)
			}
		}
	})
}

// topKeys lists the top-level keys of an object whose value is not null,
// duplicates included, unescaped.
func topKeys(t *testing.T, b []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if string(v) != "null" {
			keys = append(keys, k.(string))
		}
	}
	return keys
}
