package elasticsearch

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/sinks"
)

// fate is what a test expects for one record.
type fate struct {
	retryable bool
	reason    string // for permanent errors
	text      string // a part of the error message
}

// checkFates compares an error from Send or classify with the expected
// fate of each failed record; records not in want must have succeeded.
func checkFates(t *testing.T, err error, want map[int]fate) {
	t.Helper()
	var items sinks.ItemErrors
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("want every record delivered, got %v", err)
		}
		return
	}
	if !errors.As(err, &items) {
		t.Fatalf("want ItemErrors, got %T %v", err, err)
	}
	got := map[int]bool{}
	for _, it := range items {
		if got[it.Index] {
			t.Errorf("record %d is named twice", it.Index)
		}
		got[it.Index] = true
		w, ok := want[it.Index]
		if !ok {
			t.Errorf("record %d failed (%v) but should have been delivered", it.Index, it.Err)
			continue
		}
		var r *sinks.RetryableError
		var p *sinks.PermanentError
		switch {
		case w.retryable && !errors.As(it.Err, &r):
			t.Errorf("record %d: want retryable, got %T %v", it.Index, it.Err, it.Err)
		case !w.retryable && !errors.As(it.Err, &p):
			t.Errorf("record %d: want permanent, got %T %v", it.Index, it.Err, it.Err)
		case !w.retryable && p.Reason != w.reason:
			t.Errorf("record %d: reason %q, want %q", it.Index, p.Reason, w.reason)
		}
		if !strings.Contains(it.Err.Error(), w.text) {
			t.Errorf("record %d: error %q does not contain %q", it.Index, it.Err, w.text)
		}
	}
	for i := range want {
		if !got[i] {
			t.Errorf("record %d should have failed but is not named", i)
		}
	}
}

// mixedFates is the expected outcome of testdata/bulk-mixed.json.
var mixedFates = map[int]fate{
	2: {retryable: true, text: "es_rejected_execution_exception"},
	3: {reason: "mapping", text: "Can't get text on a START_OBJECT"},
	4: {retryable: true, text: "primary shard is not active"},
	6: {reason: "mapping", text: "Limit of total fields [1000]"},
	7: {retryable: true, text: "grant the sink's user create_doc"},
	8: {reason: "illegal_argument", text: "op_type of create"},
	9: {reason: "rejected_422", text: "x_content_parse_exception"},
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClassifyMixed(t *testing.T) {
	recs := records(t, 1, 10, time.Now())
	failed, counts, err := classify(readTestdata(t, "bulk-mixed.json"), recs)
	if err != nil {
		t.Fatal(err)
	}
	checkFates(t, failed, mixedFates)
	want := tally{resultCreated: 2, resultDuplicate: 1, resultRetryable: 3, resultRejected: 4}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: %d, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
}

func TestClassifyVictoriaLogs(t *testing.T) {
	failed, counts, err := classify(readTestdata(t, "bulk-victorialogs.json"), records(t, 1, 3, time.Now()))
	if err != nil || failed != nil || counts[resultCreated] != 3 {
		t.Fatalf("failed %v, counts %v, err %v; want 3 created", failed, counts, err)
	}
}

func TestClassifyUnmatched(t *testing.T) {
	recs := records(t, 1, 3, time.Now())
	for name, body := range map[string]string{
		"not JSON":          `<html>bad gateway</html>`,
		"too few items":     `{"errors":false,"items":[{"create":{"status":201}}]}`,
		"index, not create": `{"errors":false,"items":[{"index":{"status":201}},{"create":{"status":201}},{"create":{"status":201}}]}`,
	} {
		_, _, err := classify([]byte(body), recs)
		var r *sinks.RetryableError
		if !errors.As(err, &r) {
			t.Errorf("%s: want a retryable error for the whole batch, got %v", name, err)
		}
	}
}

func TestRequestError(t *testing.T) {
	now := time.Now()
	f := func(status int, header, body string, retryable bool, reason string, wantAfter time.Duration) {
		t.Helper()
		resp := &http.Response{StatusCode: status, Status: http.StatusText(status), Header: http.Header{}}
		if header != "" {
			resp.Header.Set("Retry-After", header)
		}
		err := requestError(resp, []byte(body))
		if got := sinks.IsPermanent(err); got == retryable {
			t.Errorf("%d: permanent=%v, want %v (%v)", status, got, !retryable, err)
		}
		if got := sinks.PermanentReason(err); got != reason {
			t.Errorf("%d: reason %q, want %q", status, got, reason)
		}
		if got := sinks.RetryAfter(err); got < wantAfter-2*time.Second || got > wantAfter {
			t.Errorf("%d %q: RetryAfter %v, want %v", status, header, got, wantAfter)
		}
		if !strings.Contains(err.Error(), body) {
			t.Errorf("%d: the error %q does not quote the answer", status, err)
		}
	}
	f(429, "7", `{"error":"too many requests"}`, true, "", 7*time.Second)
	f(429, now.Add(30*time.Second).UTC().Format(http.TimeFormat), "busy", true, "", 30*time.Second)
	f(503, "", "unavailable", true, "", 0)
	f(502, "garbage", "bad gateway", true, "", 0)
	f(500, "-3", "oops", true, "", 0)
	f(401, "", "missing authentication credentials", true, "", 0)
	f(403, "", "unauthorized", true, "", 0)
	f(404, "", "no handler", true, "", 0)
	f(400, "", "illegal_argument_exception", false, "rejected_400", 0)
	f(413, "", "", false, "too_large", 0)
}

// FuzzClassify: whatever a server answers, classify names only records
// that were sent, each once, and an answer it cannot match to the request
// fails the whole batch as retryable rather than passing it as delivered.
func FuzzClassify(f *testing.F) {
	for _, name := range []string{"bulk-mixed.json", "bulk-victorialogs.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(10))
	}
	f.Add([]byte(`{"errors":true,"items":[{"create":{"status":409}},{"create":{"status":0}},{"create":{"status":-1,"error":null}}]}`), uint8(3))
	all := records(f, 1, 255, time.Now())
	f.Fuzz(func(t *testing.T, body []byte, n uint8) {
		recs := all[:n]
		failed, counts, err := classify(body, recs)
		if err != nil {
			var r *sinks.RetryableError
			if !errors.As(err, &r) || failed != nil {
				t.Fatalf("an unmatched answer must be retryable as a whole, got %v with %d items", err, len(failed))
			}
			return
		}
		total := 0
		for _, c := range counts {
			total += c
		}
		if total != len(recs) {
			t.Fatalf("%d items counted for %d sent", total, len(recs))
		}
		seen := map[int]bool{}
		for _, it := range failed {
			if it.Index < 0 || it.Index >= len(recs) || seen[it.Index] {
				t.Fatalf("record %d named, which was not sent or is named twice", it.Index)
			}
			seen[it.Index] = true
		}
		if len(failed) != counts[resultRetryable]+counts[resultRejected] {
			t.Fatalf("%d failed but counts say %v", len(failed), counts)
		}
	})
}
