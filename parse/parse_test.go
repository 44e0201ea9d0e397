package parse

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const head = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","stage":"ResponseComplete"`

// ev builds an event line: the minimal valid head, then members.
func ev(members string) string {
	if members == "" {
		return head + "}"
	}
	return head + "," + members + "}"
}

func TestParseFields(t *testing.T) {
	line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"6a1c0f55-3a49-4e57-9e0e-0c1f0d1b2a3c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/x?timeout=5s","verb":"update","user":{"username":"system:admin","uid":"u-1","groups":["system:masters","system:authenticated"],"extra":{"k":["v"]}},"impersonatedUser":{"username":"bob"},"sourceIPs":["10.0.0.1","::1"],"userAgent":"kubectl/v1.30.0 (linux/amd64)","objectRef":{"resource":"secrets","namespace":"default","name":"x","apiVersion":"v1","subresource":"status","apiGroup":""},"responseStatus":{"metadata":{},"code":200},"requestObject":{"kind":"Secret","metadata":{"name":"x","managedFields":[{"manager":"kubectl"}]},"data":{"k":"dg=="}},"responseObject":{"kind":"Secret","metadata":{"name":"x"}},"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z","stageTimestamp":"2024-05-06T09:08:09.654321+02:00","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"admin\""}}`
	var p Parser
	e, err := p.Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	check("AuditID", e.AuditID, "6a1c0f55-3a49-4e57-9e0e-0c1f0d1b2a3c")
	check("Stage", e.Stage, "ResponseComplete")
	check("Level", e.Level, "RequestResponse")
	check("Verb", e.Verb, "update")
	check("RequestURI", e.RequestURI, "/api/v1/namespaces/default/secrets/x?timeout=5s")
	check("UserAgent", e.UserAgent, "kubectl/v1.30.0 (linux/amd64)")
	check("Username", e.Username, "system:admin")
	check("UID", e.UID, "u-1")
	check("Groups", strings.Join(e.Groups, ","), "system:masters,system:authenticated")
	check("ImpersonatedUser", e.ImpersonatedUser, "bob")
	check("SourceIPs", strings.Join(e.SourceIPs, ","), "10.0.0.1,::1")
	if want := (ObjectRef{Resource: "secrets", Subresource: "status", Namespace: "default", Name: "x", APIVersion: "v1"}); e.ObjectRef != want || !e.HasObjectRef {
		t.Errorf("ObjectRef = %+v (%v), want %+v", e.ObjectRef, e.HasObjectRef, want)
	}
	if e.Code != 200 {
		t.Errorf("Code = %d", e.Code)
	}
	check("Decision", e.Decision, "allow")
	check("Reason", e.Reason, `RBAC: allowed by ClusterRoleBinding "admin"`)
	if want := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC); !e.RequestReceived.Equal(want) {
		t.Errorf("RequestReceived = %v, want %v", e.RequestReceived, want)
	}
	if want := time.Date(2024, 5, 6, 7, 8, 9, 654321000, time.UTC); !e.StageTime.Equal(want) {
		t.Errorf("StageTime = %v, want %v", e.StageTime, want)
	}
	cut := func(r Range) string { return line[r.KeyStart:r.ValueStart] + "|" + line[r.ValueStart:r.ValueEnd] }
	check("RequestObject", cut(e.RequestObject), `"requestObject":|{"kind":"Secret","metadata":{"name":"x","managedFields":[{"manager":"kubectl"}]},"data":{"k":"dg=="}}`)
	check("ResponseObject", cut(e.ResponseObject), `"responseObject":|{"kind":"Secret","metadata":{"name":"x"}}`)
	check("RequestManagedFields", cut(e.RequestManagedFields), `"managedFields":|[{"manager":"kubectl"}]`)
	if e.ResponseManagedFields.Present() {
		t.Errorf("ResponseManagedFields present: %+v", e.ResponseManagedFields)
	}
	check("Annotations", cut(e.Annotations)[:len(`"annotations":|{`)], `"annotations":|{`)
	if e.Annotations.ValueEnd != len(line)-1 {
		t.Errorf("Annotations ends at %d, want %d", e.Annotations.ValueEnd, len(line)-1)
	}
	if msg := compare([]byte(line), e, nil); msg != "" {
		t.Error(msg)
	}
}

// TestEdgeCases runs every case through the decoder and the oracle; the
// expected reason ("" = accepted) pins down the decoder's own answer.
func TestEdgeCases(t *testing.T) {
	for _, c := range edgeCases() {
		var p Parser
		e, err := p.Parse([]byte(c.line))
		var got Reason
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Errorf("%s: error %T", c.name, err)
				continue
			}
			got = perr.Reason
		}
		if got != c.want {
			t.Errorf("%s: reason %q, want %q (err %v)\nline %q", c.name, got, c.want, err, c.line)
		}
		if msg := compare([]byte(c.line), e, err); msg != "" {
			t.Errorf("%s: differs from the oracle: %s\nline %q", c.name, msg, c.line)
		}
	}
}

type edgeCase struct {
	name, line string
	want       Reason // "" when the line is an event
}

// edgeCases covers every item of the correctness contract; the fuzz target
// uses them as seeds.
func edgeCases() []edgeCase {
	var cases []edgeCase
	f := func(name, line string, want Reason) { cases = append(cases, edgeCase{name, line, want}) }
	// Empty and not objects.
	f("empty", "", ReasonEmpty)
	f("blank", " \t\r\n ", ReasonEmpty)
	f("null top", "null", ReasonSyntax)
	f("array top", "[1]", ReasonSyntax)
	f("string top", `"x"`, ReasonSyntax)
	f("two objects", ev("")+ev(""), ReasonSyntax)
	f("trailing garbage", ev("")+"x", ReasonSyntax)
	f("surrounding whitespace", " \t"+ev("")+"\r\n ", "")
	f("empty object", "{}", ReasonNotEvent)

	// Truncation at every kind of place.
	full := ev(`"verb":"get","requestObject":{"a":[1,2.5e3,true,false,null,"x\u00e9"]},"user":{"groups":["a"]}`)
	for _, n := range []int{1, 2, 10, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, len(full) - 1} {
		if n < len(full) {
			f("truncated at "+string(rune('0'+n%10)), full[:n], ReasonTruncated)
		}
	}
	f("truncated in literal", ev(`"requestObject":tru`)[:len(ev(`"requestObject":tru`))-1], ReasonTruncated)
	f("truncated in utf8", head+`,"verb":"é`[:len(`,"verb":"é`)-1], ReasonTruncated)
	f("truncated in escape", head+`,"verb":"\u00`, ReasonTruncated)

	// Kind, apiVersion, required fields.
	f("v1beta1", strings.Replace(ev(""), "audit.k8s.io/v1", "audit.k8s.io/v1beta1", 1), "")
	f("wrong kind", strings.Replace(ev(""), `"Event"`, `"EventList"`, 1), ReasonNotEvent)
	f("wrong apiVersion", strings.Replace(ev(""), "audit.k8s.io/v1", "v1", 1), ReasonNotEvent)
	f("no auditID", `{"kind":"Event","apiVersion":"audit.k8s.io/v1","stage":"ResponseComplete"}`, ReasonNotEvent)
	f("empty auditID", `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"","stage":"ResponseComplete"}`, ReasonNotEvent)
	f("null auditID", `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":null,"stage":"ResponseComplete"}`, ReasonNotEvent)
	f("no stage", `{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a"}`, ReasonNotEvent)
	f("case-sensitive keys", `{"Kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"s"}`, ReasonNotEvent)
	f("case-sensitive auditID", ev(`"AuditID":"other","Verb":"x"`), "")
	f("any field order", `{"stage":"s","annotations":{},"auditID":"a","verb":"get","apiVersion":"audit.k8s.io/v1","kind":"Event"}`, "")
	f("unknown fields", ev(`"x":{"y":[{}]},"z":1,"verb":"get","w":[],"v":""`), "")

	// Escapes, surrogates, UTF-8.
	f("every escape", ev(`"verb":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00"`), "")
	f("escaped key", ev(`"ver\u0062":"get","user":{"user\u006eame":"x"}`), "")
	f("escaped annotation key", ev(`"annotations":{"authorization.k8s.io\/decision":"allow"}`), "")
	f("lone high surrogate", ev(`"verb":"a\ud800b"`), "")
	f("lone low surrogate", ev(`"verb":"a\udc00b"`), "")
	f("high then non-surrogate", ev(`"verb":"\ud800\u0041"`), "")
	f("two highs then low", ev(`"verb":"\ud800\ud800\udc00"`), "")
	f("high then escape", ev(`"verb":"\ud800\n"`), "")
	f("uppercase hex", ev(`"verb":"\u00E9\uD83D\uDE00"`), "")
	f("bad escape", ev(`"verb":"\x"`), ReasonSyntax)
	f("bad unicode escape", ev(`"verb":"\u12g4"`), ReasonSyntax)
	f("single quote escape", ev(`"verb":"\'"`), ReasonSyntax)
	f("raw unicode", ev(`"verb":"é€😀 日本"`), "")
	f("invalid utf8 in string", ev("\"verb\":\"a\xffb\""), ReasonInvalidUTF8)
	f("invalid utf8 in key", ev("\"ve\xc3\x28rb\":\"x\""), ReasonInvalidUTF8)
	f("invalid utf8 in body", ev("\"requestObject\":{\"a\":\"\xed\xa0\x80\"}"), ReasonInvalidUTF8)
	f("overlong utf8", ev("\"verb\":\"\xc0\xaf\""), ReasonInvalidUTF8)
	f("invalid utf8 outside strings", ev("\"verb\":\xff"), ReasonInvalidUTF8)
	f("valid utf8 outside strings", ev("\"verb\":é"), ReasonSyntax)
	f("raw control char", ev("\"verb\":\"a\tb\""), ReasonSyntax)
	f("raw newline", ev("\"verb\":\"a\nb\""), ReasonSyntax)
	f("raw NUL", ev("\"verb\":\"a\x00b\""), ReasonSyntax)
	f("DEL is fine", ev("\"verb\":\"a\x7fb\""), "")
	f("U+2028", ev("\"verb\":\"a\u2028b\""), "")
	f("long strings", ev(`"verb":"`+strings.Repeat("abcdefgh", 40)+`\n"`), "")

	// Duplicate keys: the oracle's last-wins and merge rules.
	f("dup string", ev(`"verb":"get","verb":"list"`), "")
	f("dup null string", ev(`"verb":"get","verb":null`), "")
	f("dup user merges", ev(`"user":{"username":"a"},"user":{"uid":"b"}`), "")
	f("user null", ev(`"user":{"username":"a"},"user":null`), "")
	f("dup objectRef merges", ev(`"objectRef":{"resource":"pods"},"objectRef":{"name":"x"}`), "")
	f("objectRef null", ev(`"objectRef":{"resource":"pods"},"objectRef":null`), "")
	f("objectRef null then object", ev(`"objectRef":{"resource":"pods"},"objectRef":null,"objectRef":{"name":"x"}`), "")
	f("empty objectRef", ev(`"objectRef":{}`), "")
	f("impersonated null", ev(`"impersonatedUser":{"username":"a"},"impersonatedUser":null`), "")
	f("status null", ev(`"responseStatus":{"code":404},"responseStatus":null`), "")
	f("status merge", ev(`"responseStatus":{"code":404},"responseStatus":{"status":"x"}`), "")
	f("dup groups", ev(`"user":{"groups":["a","b","c"],"groups":["x"]}`), "")
	f("groups null elements reuse", ev(`"user":{"groups":["a","b","c"],"groups":["x"],"groups":[null,null,null,null]}`), "")
	f("groups null then null elements", ev(`"user":{"groups":["a","b"],"groups":null,"groups":[null,"y"]}`), "")
	f("groups null", ev(`"user":{"groups":["a"],"groups":null}`), "")
	f("groups empty", ev(`"user":{"groups":[]}`), "")
	f("sourceIPs whitespace", ev(`"sourceIPs" : [ "1.2.3.4" , "5.6.7.8" ] `), "")
	f("dup annotations merge", ev(`"annotations":{"authorization.k8s.io/decision":"allow"},"annotations":{"authorization.k8s.io/reason":"r"}`), "")
	f("annotations null clears", ev(`"annotations":{"authorization.k8s.io/decision":"allow"},"annotations":null`), "")
	f("annotation null value", ev(`"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/decision":null}`), "")
	f("dup annotation", ev(`"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/decision":"forbid"}`), "")
	f("dup requestObject", ev(`"requestObject":{"metadata":{"managedFields":[1]}},"requestObject":{"a":1}`), "")
	f("dup metadata", ev(`"requestObject":{"metadata":{"managedFields":[1]},"metadata":{"name":"x"}}`), "")
	f("dup managedFields", ev(`"responseObject":{"metadata":{"managedFields":[1],"managedFields":[2]}}`), "")
	f("metadata null", ev(`"requestObject":{"metadata":{"managedFields":[1]},"metadata":null}`), "")
	f("managedFields null", ev(`"requestObject":{"metadata":{"managedFields":null}}`), "")
	f("dup timestamps", ev(`"stageTimestamp":"2024-01-01T00:00:00Z","stageTimestamp":"2024-01-02T00:00:00Z"`), "")
	f("dup kind", `{"kind":"Other","kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a","stage":"s"}`, "")

	// Null and other types for objects and bodies.
	f("requestObject null", ev(`"requestObject":null`), "")
	f("requestObject string", ev(`"requestObject":"x"`), "")
	f("requestObject array", ev(`"requestObject":[{"metadata":{"managedFields":[]}}]`), "")
	f("requestObject number", ev(`"requestObject":-1.5e-3`), "")
	f("metadata string", ev(`"requestObject":{"metadata":"x"}`), "")
	f("annotations empty", ev(`"annotations":{}`), "")

	// Known fields of the wrong type.
	f("verb number", ev(`"verb":1`), ReasonNotEvent)
	f("verb object", ev(`"verb":{}`), ReasonNotEvent)
	f("verb bool", ev(`"verb":true`), ReasonNotEvent)
	f("user string", ev(`"user":"x"`), ReasonNotEvent)
	f("groups string", ev(`"user":{"groups":"x"}`), ReasonNotEvent)
	f("groups number element", ev(`"user":{"groups":["a",1]}`), ReasonNotEvent)
	f("sourceIPs object", ev(`"sourceIPs":{}`), ReasonNotEvent)
	f("objectRef array", ev(`"objectRef":[]`), ReasonNotEvent)
	f("code string", ev(`"responseStatus":{"code":"200"}`), ReasonNotEvent)
	f("code float", ev(`"responseStatus":{"code":200.0}`), ReasonNotEvent)
	f("code exponent", ev(`"responseStatus":{"code":2e2}`), ReasonNotEvent)
	f("code too big", ev(`"responseStatus":{"code":2147483648}`), ReasonNotEvent)
	f("code huge", ev(`"responseStatus":{"code":99999999999999999999999}`), ReasonNotEvent)
	f("code max", ev(`"responseStatus":{"code":2147483647}`), "")
	f("code min", ev(`"responseStatus":{"code":-2147483648}`), "")
	f("code too small", ev(`"responseStatus":{"code":-2147483649}`), ReasonNotEvent)
	f("code minus zero", ev(`"responseStatus":{"code":-0}`), "")
	f("code null", ev(`"responseStatus":{"code":404,"code":null}`), "")
	f("annotation number", ev(`"annotations":{"x":1}`), ReasonNotEvent)
	f("annotations array", ev(`"annotations":[]`), ReasonNotEvent)
	f("timestamp number", ev(`"stageTimestamp":1`), ReasonNotEvent)
	f("wrong type then syntax error", ev(`"verb":1,"x":tru`)+"e", ReasonSyntax)
	f("wrong type then truncated", ev(`"verb":1,"x":"abc`)[:len(ev(`"verb":1,"x":"abc`))-2], ReasonTruncated)

	// Timestamps.
	for _, ts := range []string{
		"2024-01-02T03:04:05Z", "2024-01-02T03:04:05.1Z", "2024-01-02T03:04:05.123456Z",
		"2024-01-02T03:04:05.123456789Z", "2024-01-02T03:04:05.1234567891234Z",
		"2024-01-02T03:04:05+05:30", "2024-01-02T03:04:05.5-08:00", "2024-02-29T00:00:00Z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.5Z",
		"2024-01-02T03:04:05+23:59",
	} {
		f("time "+ts, ev(`"stageTimestamp":"`+ts+`","requestReceivedTimestamp":"`+ts+`"`), "")
	}
	for _, ts := range []string{
		"2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-02T24:00:00Z", "2024-01-02T03:60:00Z",
		"2024-01-02T03:04:60Z", "2024-01-02 03:04:05Z", "2024-01-02T03:04:05", "2024-01-02T03:04:05z",
		"2024-01-02T03:04:05+0530", "2024-01-02T03:04:05.Z", "2024-01-02T03:04:05\\u002e5Z", "",
		"2024-01-02T03:04:05,5Z", "2024-01-02T3:04:05Z", "2024-01-02T03:04:05+24:00",
	} {
		f("bad time "+ts, ev(`"stageTimestamp":"`+ts+`"`), ReasonNotEvent)
	}
	f("time null", ev(`"stageTimestamp":"2024-01-02T03:04:05Z","stageTimestamp":null`), "")

	// Numbers in every form, literals, nesting.
	for _, n := range []string{"0", "-0", "1", "-1", "123456789012345678901234567890", "0.5", "-0.5", "1e5", "1E5", "1e+5", "1e-5", "1.5E-5", "-0e0", "1.7976931348623157e309"} {
		f("number "+n, ev(`"x":`+n+`,"requestObject":[`+n+`]`), "")
	}
	for _, n := range []string{"01", "-", "+1", ".5", "1.", "1e", "1e+", "0x1", "1.5.5", "--1", "Infinity", "NaN", "1_000"} {
		f("bad number "+n, ev(`"x":`+n), ReasonSyntax)
	}
	f("bad literal", ev(`"x":nul`)+"l", ReasonSyntax)
	f("bad literal True", ev(`"x":True`), ReasonSyntax)
	f("missing colon", head+`,"x" 1}`, ReasonSyntax)
	f("missing comma", head+` "x":1}`, ReasonSyntax)
	f("trailing comma", head+`,}`, ReasonSyntax)
	f("trailing comma array", ev(`"x":[1,]`), ReasonSyntax)
	f("trailing comma nested", ev(`"x":{"a":1,}`), ReasonSyntax)
	f("mismatched close", ev(`"x":[1}`), ReasonSyntax)
	f("mismatched close 2", ev(`"x":{"a":1]`), ReasonSyntax)
	f("number key", head+`,1:2}`, ReasonSyntax)
	f("whitespace everywhere", "{ \"kind\" : \"Event\" ,\n\"apiVersion\"\t:\"audit.k8s.io/v1\" , \"auditID\" : \"a\" , \"stage\" : \"s\" , \"x\" : [ 1 , { } , [ ] , { \"a\" : null } ] }", "")
	f("deep nesting ok", ev(`"requestObject":`+strings.Repeat("[", maxDepth-1)+strings.Repeat("]", maxDepth-1)), "")
	f("deep nesting objects ok", ev(`"x":`+strings.Repeat(`{"a":`, maxDepth-1)+"1"+strings.Repeat("}", maxDepth-1)), "")
	f("deep nesting too deep", ev(`"requestObject":`+strings.Repeat("[", maxDepth)+strings.Repeat("]", maxDepth)), ReasonSyntax)
	f("deep nesting in metadata", ev(`"requestObject":{"metadata":{"managedFields":`+strings.Repeat("[", maxDepth-3)+strings.Repeat("]", maxDepth-3)+`}}`), "")
	f("deep nesting in metadata too deep", ev(`"requestObject":{"metadata":{"managedFields":`+strings.Repeat("[", maxDepth-2)+strings.Repeat("]", maxDepth-2)+`}}`), ReasonSyntax)
	return cases
}

func TestErrorMessage(t *testing.T) {
	var p Parser
	line := ev(`"verb":"get"x`)
	at := strings.Index(line, `"get"x`) + len(`"get"`)
	_, err := p.Parse([]byte(line))
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"invalid_json", fmt.Sprintf("byte %d", at), "unexpected 'x'", `get\"x}`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if perr.Offset != at {
		t.Errorf("Offset = %d, want %d", perr.Offset, at)
	}
}

func TestReuse(t *testing.T) {
	var p Parser
	a := []byte(ev(`"verb":"g\u0065t","user":{"groups":["a","b","c"]}`))
	b := []byte(ev(`"user":{"groups":["x"]}`))
	e, err := p.Parse(a)
	if err != nil || e.Verb != "get" || len(e.Groups) != 3 {
		t.Fatalf("first: %v %+v", err, e)
	}
	e, err = p.Parse(b)
	if err != nil || e.Verb != "" || len(e.Groups) != 1 || e.Groups[0] != "x" {
		t.Fatalf("second: %v %+v", err, e)
	}
	if _, err := p.Parse([]byte("{")); err == nil {
		t.Fatal("no error")
	}
	e, err = p.Parse(a)
	if err != nil || e.Verb != "get" || len(e.Groups) != 3 {
		t.Fatalf("after error: %v %+v", err, e)
	}
}
