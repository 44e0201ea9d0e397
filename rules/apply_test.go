package rules

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/audit-shipper/audit-shipper/parse"
)

// newRules builds rules from c and, when policy is not empty, that policy
// written to a file.
func newRules(t testing.TB, c Config, policy string) *Rules {
	t.Helper()
	if policy != "" {
		c.PolicyFile = filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(c.PolicyFile, []byte(policy), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustParse(t testing.TB, p *parse.Parser, line []byte) *parse.Event {
	t.Helper()
	ev, err := p.Parse(line)
	if err != nil {
		t.Fatalf("%v\n%s", err, line)
	}
	return ev
}

// credentialValues returns the string values under the keys data,
// stringData and token anywhere in the event's bodies: what redaction must
// never let through. Values under 8 bytes are left out (they could occur
// elsewhere in the line by chance).
func credentialValues(t testing.TB, line []byte) []string {
	var e struct{ RequestObject, ResponseObject any }
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(v any, under bool)
	walk = func(v any, under bool) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, under || k == "data" || k == "stringData" || k == "token")
			}
		case []any:
			for _, x := range v {
				walk(x, under)
			}
		case string:
			if under && len(v) >= 8 {
				out = append(out, v)
			}
		}
	}
	walk(e.RequestObject, false)
	walk(e.ResponseObject, false)
	return out
}

// checkCut verifies that out is in with exactly the members cut listed
// removed (top-level names, or "requestObject.metadata.managedFields"
// style paths), level set to level when not empty, and the redaction
// annotation added when redacted is not empty: every other member is
// byte-identical.
func checkCut(t testing.TB, in, out []byte, cut []string, level, redacted string) {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("output is not valid JSON:\n%s", out)
	}
	var p parse.Parser
	if _, err := p.Parse(out); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, out)
	}
	want := decodeMembers(t, in)
	got := decodeMembers(t, out)
	for _, c := range cut {
		deletePath(t, want, c)
		if top, _, nested := strings.Cut(c, "."); nested {
			got[top] = normalise(t, got[top])
		}
	}
	if level != "" {
		want["level"] = json.RawMessage(`"` + level + `"`)
	}
	if redacted != "" {
		a := map[string]json.RawMessage{}
		if raw, ok := want["annotations"]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatal(err)
			}
		}
		ga := map[string]json.RawMessage{}
		if err := json.Unmarshal(got["annotations"], &ga); err != nil {
			t.Fatalf("annotations of the output: %v", err)
		}
		if v := string(ga["audit-shipper/redacted"]); v != `"`+redacted+`"` {
			t.Errorf("annotation audit-shipper/redacted is %s, want %q", v, redacted)
		}
		delete(ga, "audit-shipper/redacted")
		if !maps.EqualFunc(a, ga, rawEqual) {
			t.Errorf("annotations changed beyond the redaction mark:\n in: %s\nout: %s", want["annotations"], got["annotations"])
		}
		delete(want, "annotations")
		delete(got, "annotations")
	}
	if !maps.EqualFunc(want, got, rawEqual) {
		t.Errorf("members differ beyond the cuts %v:\n in: %s\nout: %s", cut, in, out)
	}
}

// decodeMembers decodes the top-level members of an event, keeping their
// bytes.
func decodeMembers(t testing.TB, line []byte) map[string]json.RawMessage {
	t.Helper()
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("%v\n%s", err, line)
	}
	return m
}

// deletePath removes a top-level member, or a nested one named with dots
// ("requestObject.metadata.managedFields"), re-encoding the parents of a
// nested one: its siblings are then compared as values, not bytes.
func deletePath(t testing.TB, m map[string]json.RawMessage, path string) {
	t.Helper()
	top, rest, nested := strings.Cut(path, ".")
	if !nested {
		delete(m, top)
		return
	}
	var v any
	if err := json.Unmarshal(m[top], &v); err != nil {
		t.Fatal(err)
	}
	var del func(v any, parts []string)
	del = func(v any, parts []string) {
		switch x := v.(type) {
		case map[string]any:
			if len(parts) == 1 {
				delete(x, parts[0])
				return
			}
			if parts[0] == "[]" {
				t.Fatalf("path %s: [] on an object", path)
			}
			del(x[parts[0]], parts[1:])
		case []any:
			if parts[0] != "[]" {
				t.Fatalf("path %s: %s on an array", path, parts[0])
			}
			for _, e := range x {
				del(e, parts[1:])
			}
		}
	}
	del(v, strings.Split(rest, "."))
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	m[top] = b
}

// normalise re-encodes a value as deletePath does.
func normalise(t testing.TB, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return out
}

func rawEqual(a, b json.RawMessage) bool { return bytes.Equal(a, b) }
