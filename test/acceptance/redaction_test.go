package acceptance

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
	"github.com/audit-shipper/audit-shipper/parse"
)

// credentials returns the credential values an audit event carries in its
// bodies: a Secret's data and stringData values, a TokenReview's
// spec.token, a TokenRequest's status.token.
func credentials(t *testing.T, line []byte) []string {
	t.Helper()
	var ev struct {
		ObjectRef                     struct{ Resource, Subresource string }
		RequestObject, ResponseObject json.RawMessage
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatalf("a written event does not decode: %v", err)
	}
	var out []string
	for _, body := range []json.RawMessage{ev.RequestObject, ev.ResponseObject} {
		if len(body) == 0 || body[0] != '{' {
			continue
		}
		var obj struct {
			Kind       string
			Data       map[string]string
			StringData map[string]string
			Spec       struct{ Token string }
			Status     struct{ Token string }
		}
		if err := json.Unmarshal(body, &obj); err != nil {
			continue // a list or a patch: no credential at these paths
		}
		for _, m := range []map[string]string{obj.Data, obj.StringData} {
			for _, v := range m {
				if ev.ObjectRef.Resource == "secrets" && len(v) >= 8 {
					out = append(out, v)
				}
			}
		}
		for _, tok := range []string{obj.Spec.Token, obj.Status.Token} {
			if len(tok) >= 8 {
				out = append(out, tok)
			}
		}
	}
	return out
}

// stringsOf collects every string value in a JSON document.
func stringsOf(v any, into map[string]bool) {
	switch v := v.(type) {
	case string:
		into[v] = true
	case map[string]any:
		for k, e := range v {
			into[k] = true
			stringsOf(e, into)
		}
	case []any:
		for _, e := range v {
			stringsOf(e, into)
		}
	}
}

// TestRedactionByDefault: with the embedded default rules, no credential
// value written by the apiserver (the corpus logs secrets, token reviews
// and token requests at RequestResponse) reaches the sink, every event
// still arrives, and the redacted ones say so.
func TestRedactionByDefault(t *testing.T) {
	s := newShipper(t, defaults)
	alog := newAuditLog(s.logDir(), 1000, true, 21)
	out := newOutput(s.outPath())
	s.Start()
	s.WaitUp()
	n := scaled(20000)
	if err := alog.WriteN(n); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	begin := time.Now()
	out.waitDelivered(t, s, alog.IDs(), 2*time.Minute)
	s.Stop()
	out.poll(t)

	// What was written: every generation, read back.
	secret := map[string]bool{}
	sensitive := map[string]bool{} // auditIDs of events that carried one
	for _, g := range readGenerations(t, s.logDir()) {
		for _, line := range g.lines {
			creds := credentials(t, line)
			if len(creds) == 0 {
				continue
			}
			id, _ := shipperproc.AuditID(line)
			sensitive[id] = true
			for _, c := range creds {
				secret[c] = true
			}
		}
	}
	if len(secret) == 0 {
		t.Fatal("the corpus wrote no credential: the test proves nothing")
	}

	// What arrived: every string of every event, and the redaction marks.
	f, err := os.Open(s.outPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var p parse.Parser
	leaked, marked, unmarked := 0, 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var doc any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			t.Fatalf("a shipped event is not valid JSON: %v", err)
		}
		seen := map[string]bool{}
		stringsOf(doc, seen)
		for v := range seen {
			if secret[v] {
				leaked++
			}
		}
		ev, err := p.Parse(sc.Bytes())
		if err != nil {
			t.Fatalf("a shipped event does not parse: %v", err)
		}
		if sensitive[ev.AuditID] {
			if seen["audit-shipper/redacted"] && !ev.RequestObject.Present() && !ev.ResponseObject.Present() {
				marked++
			} else {
				unmarked++
			}
		}
	}
	tl := out.tally(alog.IDs())
	summary(t, s, tl, 0, time.Since(begin), "")
	t.Logf("credential values written %d in %d events; leaked %d; redacted events marked %d, unmarked %d",
		len(secret), len(sensitive), leaked, marked, unmarked)
	if leaked != 0 {
		t.Errorf("%d credential values reached the sink", leaked)
	}
	if unmarked != 0 || marked != len(sensitive) {
		t.Errorf("%d of %d events with credentials arrived with a body or without the redaction mark", unmarked, len(sensitive))
	}
	if tl.lost != 0 {
		t.Errorf("lost %d events (first %v)", tl.lost, tl.missing)
	}
}
