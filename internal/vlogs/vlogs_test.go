package vlogs

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIngestAndQuery pushes lines through the Loki JSON API, as a sink
// would, and reads them back with Query and Count.
func TestIngestAndQuery(t *testing.T) {
	s := Start(t)

	ts := time.Now().UnixNano()
	body := fmt.Sprintf(`{"streams":[{"stream":{"job":"vlogs-test"},"values":[`+
		`["%d","first line",{"auditID":"a-1"}],`+
		`["%d","second line",{"auditID":"a-2"}]]}]}`, ts, ts+1)
	resp, err := http.Post(s.URL()+"/insert/loki/api/v1/push?disable_message_parsing=1", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("push answered %s", resp.Status)
	}

	// Before the flush the rows may not be visible; after it they must be.
	s.Flush(t)
	if n := s.Count(t, `{job="vlogs-test"}`); n != 2 {
		t.Fatalf("Count = %d, want 2; server log:\n%s", n, s.Log())
	}
	if n := s.Count(t, `{job="nothing-here"}`); n != 0 {
		t.Fatalf("Count of an empty stream = %d, want 0", n)
	}
	rows := s.Query(t, `auditID:="a-2"`)
	if len(rows) != 1 {
		t.Fatalf("Query returned %d rows, want 1: %v", len(rows), rows)
	}
	if got := rows[0]["_msg"]; got != "second line" {
		t.Errorf("_msg = %q, want %q", got, "second line")
	}
	if got := rows[0]["job"]; got != "vlogs-test" {
		t.Errorf("job = %q, want %q", got, "vlogs-test")
	}
	if !strings.Contains(s.Log(), "started server at") {
		t.Errorf("Log() does not hold the server's start message:\n%s", s.Log())
	}
}

// TestMissingBinary checks that a wrong $VICTORIA_LOGS_BIN is reported
// with the command that builds the binary.
func TestMissingBinary(t *testing.T) {
	t.Setenv("VICTORIA_LOGS_BIN", "/nonexistent/victoria-logs")
	_, err := Find("")
	if err == nil || !strings.Contains(err.Error(), InstallCommand) {
		t.Fatalf("Find(\"\") error = %v, want one naming %q", err, InstallCommand)
	}
}
