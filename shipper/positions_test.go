package shipper

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

func testPositions() map[string]Position {
	id := func(ino uint64, fp string) FileID { return FileID{Dev: 64768, Ino: ino, FPLen: 1024, FP: fp} }
	return map[string]Position{
		"loki": {
			File: id(1001, "0123456789abcdef0123456789abcdef"), Path: "/var/log/kubernetes/audit/audit-2024-06-01T10-00-00.000.log.gz",
			Offset: 1 << 40, Size: 1<<40 + 7, ModTime: time.Date(2024, 6, 1, 9, 59, 59, 123456789, time.UTC),
			Ahead: []FileRef{
				{File: id(1002, "fedcba9876543210fedcba9876543210"), Path: "/var/log/kubernetes/audit/audit-2024-06-01T11-00-00.000.log", Size: 104857600},
				{File: FileID{Dev: 1, Ino: 1003, FPLen: 17, FP: "00"}, Path: "/var/log/kubernetes/audit/audit.log", Size: 17,
					Missing: time.Date(2024, 6, 1, 12, 0, 0, 1, time.UTC)},
			},
		},
		"elastic search \"prod\"/ü": {File: FileID{}, Path: "/var/log/kubernetes/audit/audit.log"},
	}
}

func TestPositionsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "positions.json")
	s, err := loadPositions(path)
	if err != nil {
		t.Fatal(err)
	}
	want := testPositions()
	for name, p := range want {
		s.set(name, p)
	}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	loaded, err := loadPositions(path)
	if err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		p, ok := loaded.get(name)
		if !ok || !reflect.DeepEqual(p, w) {
			t.Errorf("%q: loaded %+v, %v\nwant %+v", name, p, ok, w)
		}
	}
	if _, ok := loaded.get("other"); ok {
		t.Error("a sink never saved has a position")
	}
	var raw struct {
		Version int                        `json:"version"`
		Sinks   map[string]json.RawMessage `json:"sinks"`
	}
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &raw); err != nil || raw.Version != positionsVersion || len(raw.Sinks) != len(want) {
		t.Fatalf("file: %v, version %d, %d sinks:\n%s", err, raw.Version, len(raw.Sinks), b)
	}
	if n := strings.Count(string(b), `"missing"`); n != 1 {
		t.Errorf(`"missing" written %d times, want once (omitted when zero):\n%s`, n, b)
	}
}

func TestPositionsSaveOnlyWhenChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.json")
	s, err := loadPositions(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("nothing set, yet saved: %v", err)
	}
	s.set("loki", Position{Offset: 1})
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	before := inode(t, path)
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if inode(t, path) != before {
		t.Error("saved again with no change")
	}
	s.set("loki", Position{Offset: 2})
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if inode(t, path) == before {
		t.Error("a change was written in place, not renamed over the old file")
	}
	p, _ := mustLoad(t, path).get("loki")
	if p.Offset != 2 {
		t.Errorf("saved offset %d, want 2", p.Offset)
	}
}

func inode(t testing.TB, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	_, ino := devIno(st)
	return ino
}

func mustLoad(t testing.TB, path string) *positionStore {
	t.Helper()
	s, err := loadPositions(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPositionsAtomic saves over and over while another process (here a
// goroutine) reads the file: every read finds a whole file, and no
// temporary file is left.
func TestPositionsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "positions.json")
	s, err := loadPositions(path)
	if err != nil {
		t.Fatal(err)
	}
	big := testPositions()["loki"]
	for i := range 200 { // a file of some size, so that a torn write would show
		big.Ahead = append(big.Ahead, FileRef{Path: strings.Repeat("x", 100), Size: int64(i)})
	}
	s.set("loki", big)
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Size() < 32<<10 {
		t.Fatalf("a file of %d bytes is written at once anyway", st.Size())
	}
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			var f positionsFile
			b, err := os.ReadFile(path)
			if err == nil {
				err = json.Unmarshal(b, &f)
			}
			if err != nil || f.Version != positionsVersion || len(f.Sinks["loki"].Ahead) != len(big.Ahead) {
				t.Errorf("read a torn positions file (%d bytes): %v", len(b), err)
				return
			}
			reads.Add(1)
		}
	})
	for i := range 50 {
		big.Offset = int64(i)
		s.set("loki", big)
		if err := s.save(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Error("the reader never read")
	}
	p, _ := mustLoad(t, path).get("loki")
	if p.Offset != 49 {
		t.Errorf("offset %d, want the last saved, 49", p.Offset)
	}
	entries, _ := os.ReadDir(dir)
	if names := dirNames(entries); !slices.Equal(names, []string{"positions.json"}) {
		t.Errorf("left in the directory: %v", names)
	}
}

func TestPositionsCorrupt(t *testing.T) {
	f := func(name, content, cause string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "positions.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := loadPositions(path)
			if err == nil {
				t.Fatalf("loaded %+v, want an error", s.pos)
			}
			for _, want := range []string{path, "corrupt", cause, "move it aside", "restore it from a backup"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	f("empty file", "", "unexpected end of JSON input")
	f("torn write", `{"version":1,"sinks":{"loki":{"offset":12`, "unexpected end of JSON input")
	f("not JSON", "offset: 12\n", "invalid character")
	f("no version", `{"sinks":{}}`, "version 0, want 1")
	f("newer version", `{"version":2,"sinks":{}}`, "version 2, want 1")
	f("null", `null`, "version 0, want 1")
	f("wrong type", `{"version":1,"sinks":{"loki":{"offset":"12"}}}`, "cannot unmarshal string")
	f("array", `[{"version":1}]`, "cannot unmarshal array")
}

func TestPositionsMissing(t *testing.T) {
	f := func(name, path string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			s, err := loadPositions(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.pos) != 0 {
				t.Fatalf("positions from nowhere: %+v", s.pos)
			}
			s.set("loki", Position{Offset: 5})
			if err := s.save(); err != nil {
				t.Fatalf("saving creates the file and its directory: %v", err)
			}
			if p, _ := mustLoad(t, path).get("loki"); p.Offset != 5 {
				t.Errorf("offset %d", p.Offset)
			}
		})
	}
	f("no file", filepath.Join(t.TempDir(), "positions.json"))
	f("no directory", filepath.Join(t.TempDir(), "var", "lib", "audit-shipper", "positions.json"))

	t.Run("a directory in its place", func(t *testing.T) {
		path := t.TempDir()
		if _, err := loadPositions(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("got %v, want an error naming %q", err, path)
		}
	})
}

func TestPositionsReadOnlyDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "positions.json")
	s, err := loadPositions(path)
	if err != nil {
		t.Fatal(err)
	}
	s.set("loki", Position{Offset: 1})
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	writable := shipperproc.ReadOnlyDir(t, dir, 0o700)
	s.set("loki", Position{Offset: 2})
	err = s.save()
	if err == nil {
		t.Fatal("saved into a read-only directory")
	}
	for _, want := range []string{path, "must be writable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if p, _ := mustLoad(t, path).get("loki"); p.Offset != 1 {
		t.Errorf("the old file changed: offset %d", p.Offset)
	}
	// The change is still due: the next save writes it without a new set.
	writable()
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if p, _ := mustLoad(t, path).get("loki"); p.Offset != 2 {
		t.Errorf("after the directory became writable: offset %d, want 2", p.Offset)
	}
	entries, _ := os.ReadDir(dir)
	if names := dirNames(entries); !slices.Equal(names, []string{"positions.json"}) {
		t.Errorf("left in the directory: %v", names)
	}
}

func dirNames(entries []os.DirEntry) []string {
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
