package corpus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./corpus/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("corpus output changed: %s differs; if the change is intended, run go test ./corpus/ -update and review the diff", path)
	}
}

func TestGolden(t *testing.T) {
	var sample bytes.Buffer
	if err := New(Options{Seed: 1}).Write(&sample, 40); err != nil {
		t.Fatal(err)
	}
	golden(t, "seed1-first40.ndjson", sample.Bytes())

	h := sha256.New()
	if err := New(Options{Seed: 1}).Write(h, 20000); err != nil {
		t.Fatal(err)
	}
	golden(t, "seed1-20000.sha256", []byte(hex.EncodeToString(h.Sum(nil))+"\n"))
}

// event is what the tests check in each generated line.
type event struct {
	Kind, APIVersion, Level, AuditID, Stage, Verb string
	ObjectRef                                     struct{ Resource, Subresource string }
	RequestObject, ResponseObject                 json.RawMessage
	RequestReceivedTimestamp, StageTimestamp      time.Time
}

func TestCorpus(t *testing.T) {
	const n = 20000
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	g := New(Options{Seed: 42, Start: start, Step: 2 * time.Millisecond})
	ids := make(map[string]bool, n)
	var (
		line                                       []byte
		last                                       time.Time
		reads, writes, big, received, started, mfs int
		totalBytes                                 int
		kinds                                      = map[string]int{}
		sawToken, sawReview, sawSecretData, sawEsc bool
	)
	for i := 0; i < n; i++ {
		line = g.Next(line[:0])
		totalBytes += len(line)
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("event %d is not JSON: %v\n%s", i, err, line)
		}
		if !bytes.HasPrefix(line, []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"`)) {
			t.Fatalf("event %d does not start like kube-apiserver's: %.80s", i, line)
		}
		if len(e.AuditID) != 36 || e.AuditID[14] != '4' || strings.Count(e.AuditID, "-") != 4 {
			t.Fatalf("auditID %q is not UUID-shaped", e.AuditID)
		}
		if ids[e.AuditID] {
			t.Fatalf("auditID %q repeated at event %d", e.AuditID, i)
		}
		ids[e.AuditID] = true
		if i == 0 && !e.StageTimestamp.Equal(start) {
			t.Errorf("first stageTimestamp %v, want %v", e.StageTimestamp, start)
		}
		if !e.StageTimestamp.After(last) {
			t.Fatalf("stageTimestamp %v at event %d does not grow (previous %v)", e.StageTimestamp, i, last)
		}
		last = e.StageTimestamp
		if e.RequestReceivedTimestamp.After(e.StageTimestamp) {
			t.Errorf("event %d received after its stage", i)
		}
		switch e.Verb {
		case "get", "list", "watch":
			if e.Level == "Metadata" {
				reads++
			}
		default:
			if e.RequestObject != nil {
				writes++
			}
		}
		for _, b := range []json.RawMessage{e.RequestObject, e.ResponseObject} {
			if len(b) > 100<<10 {
				big++
			}
			if bytes.Contains(b, []byte(`"managedFields":[`)) {
				mfs++
			}
		}
		switch e.Stage {
		case "RequestReceived":
			received++
		case "ResponseStarted":
			started++
		}
		if e.RequestObject != nil {
			var k struct{ Kind string }
			_ = json.Unmarshal(e.RequestObject, &k)
			kinds[k.Kind]++
		}
		sawToken = sawToken || e.ObjectRef.Subresource == "token" && bytes.Contains(e.ResponseObject, []byte(`"status":{"token":"eyJ`))
		sawReview = sawReview || bytes.Contains(e.RequestObject, []byte(`"spec":{"token":"eyJ`))
		sawSecretData = sawSecretData || e.ObjectRef.Resource == "secrets" && bytes.Contains(e.RequestObject, []byte(`"data":{`))
		sawEsc = sawEsc || bytes.Contains(line, []byte(`\ud83d\ude00`)) && bytes.Contains(line, []byte(`\/`))
	}
	wantEnd := start.Add(n * 2 * time.Millisecond)
	if d := last.Sub(wantEnd); d < -wantEnd.Sub(start)/10 || d > wantEnd.Sub(start)/10 {
		t.Errorf("last stageTimestamp %v, want about %v (Step)", last, wantEnd)
	}
	pct := func(x int) float64 { return 100 * float64(x) / n }
	t.Logf("reads %.1f%%, writes with bodies %.1f%%, RequestReceived %.1f%%, ResponseStarted %.1f%%, bodies >100KB %d, mean %d B/event, kinds %v",
		pct(reads), pct(writes), pct(received), pct(started), big, totalBytes/n, kinds)
	if p := pct(reads); p < 55 || p > 65 {
		t.Errorf("reads at Metadata: %.1f%%, want about 60%%", p)
	}
	if p := pct(writes); p < 22 || p > 30 {
		t.Errorf("writes with bodies: %.1f%%, want about 25%%", p)
	}
	if received == 0 || started == 0 || big == 0 || mfs == 0 {
		t.Errorf("missing shapes: RequestReceived %d, ResponseStarted %d, >100KB %d, managedFields %d", received, started, big, mfs)
	}
	for _, k := range []string{"Pod", "Deployment", "ConfigMap", "Secret", "Role", "RoleBinding", "TokenRequest", "TokenReview", "DeleteOptions"} {
		if kinds[k] == 0 {
			t.Errorf("no %s bodies", k)
		}
	}
	if !sawToken || !sawReview || !sawSecretData || !sawEsc {
		t.Errorf("token %v, review %v, secret data %v, escapes %v", sawToken, sawReview, sawSecretData, sawEsc)
	}
}

func TestDeterministic(t *testing.T) {
	var a, b, c bytes.Buffer
	if err := New(Options{Seed: 7}).Write(&a, 500); err != nil {
		t.Fatal(err)
	}
	if err := New(Options{Seed: 7}).Write(&b, 500); err != nil {
		t.Fatal(err)
	}
	if err := New(Options{Seed: 8}).Write(&c, 500); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("same seed, different output")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("different seeds, same output")
	}
	if strings.Count(a.String(), "\n") != 500 {
		t.Errorf("Write wrote %d lines", strings.Count(a.String(), "\n"))
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "\"\\/\b\f\n\r\t\x00\x1f<>&", "é€😀\u2028\u2029", "zoë & <ops>"} {
		got := appendString(nil, s)
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	}
}

func BenchmarkNext(b *testing.B) {
	g := New(Options{Seed: 1})
	var line []byte
	n := 0
	for b.Loop() {
		line = g.Next(line[:0])
		n += len(line)
	}
	b.SetBytes(int64(n / max(b.N, 1)))
}
