package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/audit-shipper/audit-shipper/internal/sinktest"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// sinkAt builds a file sink writing to path.
func sinkAt(t *testing.T, path string) *Sink {
	t.Helper()
	s, err := New(sinktest.LoadSink(t, "out", "file", "path: "+path), sinks.Env{Name: "out"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSendAppendsLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.ndjson")
	s := sinkAt(t, path)
	for _, batch := range [][]string{{`{"a":1}`, `{"b":2}`}, {`{"c":3}`}} {
		var recs []sinks.Record
		for _, l := range batch {
			recs = append(recs, sinks.Record{Line: []byte(l)})
		}
		if err := s.Send(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := os.ReadFile(path)
	if want := "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"; string(got) != want {
		t.Fatalf("file holds %q, want %q", got, want)
	}
	if !s.Ordered() {
		t.Error("the file sink must get batches one at a time, in order")
	}
}

// A torn last line (a crash in the middle of a write) is ended before new
// lines are appended, so that no event is glued to a fragment.
func TestTornLineIsEnded(t *testing.T) {
	f := func(before, want string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "out.ndjson")
		if before != "" {
			if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s := sinkAt(t, path)
		if err := s.Send(context.Background(), []sinks.Record{{Line: []byte(`{"n":1}`)}}); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		if string(got) != want {
			t.Errorf("after %q: file holds %q, want %q", before, got, want)
		}
	}
	f("", "{\"n\":1}\n")
	f("{\"x\":1}\n", "{\"x\":1}\n{\"n\":1}\n")
	f("{\"x\":1}\n{\"tor", "{\"x\":1}\n{\"tor\n{\"n\":1}\n")
}

func TestUnwritablePath(t *testing.T) {
	sec := sinktest.LoadSink(t, "out", "file", "path: "+filepath.Join(t.TempDir(), "missing", "dir", "out.ndjson"))
	if _, err := New(sec, sinks.Env{Name: "out"}); err == nil {
		t.Fatal("New accepted a path in a directory that does not exist")
	}
}
