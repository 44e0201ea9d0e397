package shipper

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxFuzzPositions caps fuzz inputs: a positions file holds a few sinks
// with a few generations ahead each; longer inputs exercise nothing new.
const maxFuzzPositions = 64 << 10

// FuzzLoadPositions feeds loadPositions arbitrary file contents. It must
// never panic; a file it refuses gets the error that names the file and
// the fix; a file it accepts holds no number the shipper could never have
// written and cannot use (a negative offset stalls the sink's reader on
// "seeking to offset -1", a negative fingerprint length panics in
// readUpTo, a negative size makes a lost-bytes counter go down), keeps
// every sink's position through a save and a load, and saving what was
// loaded again changes nothing.
//
//	go test ./shipper/ -run '^$' -fuzz FuzzLoadPositions -fuzztime 30s
func FuzzLoadPositions(f *testing.F) {
	valid := positionsFile{Version: positionsVersion, Sinks: testPositions()}
	b, err := json.MarshalIndent(valid, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2]) // a torn write
	compact, _ := json.Marshal(valid)
	f.Add(compact)
	for _, seed := range []string{
		"",
		"\x00\x00\x00\x00",
		"null",
		"[]",
		`{}`,
		`{"version":1}`,
		`{"version":1,"sinks":null}`,
		`{"version":1,"sinks":{}}`,
		`{"version":2,"sinks":{}}`,
		`{"version":1.0,"sinks":{}}`,
		`{"version":"1","sinks":{}}`,
		`{"version":1,"sinks":{"loki":null}}`,
		`{"version":1,"sinks":{"loki":{"offset":"12"}}}`,
		`{"version":1,"sinks":{"loki":{"offset":12},"loki":{"offset":7}}}`,
		`{"version":1,"version":2,"sinks":{}}`,
		`{"version":1,"sinks":{"":{"offset":0}}}`,
		`{"version":1,"sinks":{"loki":{"offset":-1}}}`,
		`{"version":1,"sinks":{"loki":{"file":{"fp_len":-5}}}}`,
		`{"version":1,"sinks":{"loki":{"ahead":[{"size":-7}]}}}`,
		`{"version":1,"sinks":{"loki":{"offset":9223372036854775807}}}`,
		`{"version":1,"sinks":{"loki":{"offset":9223372036854775808}}}`,
		`{"version":1,"sinks":{"loki":{"mtime":"2024-06-01T12:00:00+02:00"}}}`,
		`{"version":1,"sinks":{"loki":{"mtime":"9999-12-31T23:59:59-23:59"}}}`,
		`{"version":1,"sinks":{"loki":{"mtime":"2024-06-01 12:00:00"}}}`,
		`{"version":1,"sinks":{"loki":{"path":"\ud800\udc00\ud800","file":{"fp":"\u0000"}}}}`,
		"{\"version\":1,\"sinks\":{\"lo\xffki\":{}}}",
		`{"version":1,"sinks":{"loki":{"ahead":[{"missing":"0001-01-01T00:00:00Z"},null]}}}`,
		`{"version":1,"sinks":{"loki":{"unknown":true}}} `,
		`{"version":1,"sinks":{}} trailing`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		if len(content) > maxFuzzPositions {
			t.Skip()
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "positions.json")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := loadPositions(path)
		if err != nil {
			for _, want := range []string{path, "corrupt", "move it aside"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("refused with %q, which does not say %q\ncontent %q", err, want, content)
				}
			}
			return
		}
		for name, p := range s.pos {
			if msg := impossible(p); msg != "" {
				t.Fatalf("accepted a position of sink %q with %s: the file is corrupt and must be refused\ncontent %q", name, msg, content)
			}
		}
		loaded := encodePositions(t, s)

		// Saved by the shipper: every sink's position set (dirty even
		// with no sink, so that the file is written).
		again := filepath.Join(dir, "again", "positions.json")
		saved := &positionStore{path: again, pos: map[string]Position{}, dirty: true}
		for name, p := range s.pos {
			saved.set(name, p)
		}
		if err := saved.save(); err != nil {
			t.Fatalf("loaded, then cannot save it again: %v\ncontent %q", err, content)
		}
		first, err := os.ReadFile(again)
		if err != nil {
			t.Fatal(err)
		}
		reloaded, err := loadPositions(again)
		if err != nil {
			t.Fatalf("cannot load what it saved: %v\nsaved %s\ncontent %q", err, first, content)
		}
		if got := encodePositions(t, reloaded); !bytes.Equal(got, loaded) {
			t.Fatalf("positions changed through a save and a load:\nloaded %s\nreloaded %s\ncontent %q", loaded, got, content)
		}
		reloaded.dirty = true
		if err := reloaded.save(); err != nil {
			t.Fatal(err)
		}
		second, err := os.ReadFile(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("saving what was loaded changed the file:\nfirst %s\nsecond %s\ncontent %q", first, second, content)
		}
	})
}

// impossible names a number of p that no shipper writes, or returns "".
func impossible(p Position) string {
	switch {
	case p.Offset < 0:
		return fmt.Sprintf("offset %d", p.Offset)
	case p.Size < 0:
		return fmt.Sprintf("size %d", p.Size)
	case p.File.FPLen < 0:
		return fmt.Sprintf("fp_len %d", p.File.FPLen)
	}
	for i, a := range p.Ahead {
		switch {
		case a.Size < 0:
			return fmt.Sprintf("ahead[%d].size %d", i, a.Size)
		case a.File.FPLen < 0:
			return fmt.Sprintf("ahead[%d].file.fp_len %d", i, a.File.FPLen)
		}
	}
	return ""
}

// encodePositions is s's positions as JSON with sorted keys, to compare.
func encodePositions(t *testing.T, s *positionStore) []byte {
	t.Helper()
	b, err := json.Marshal(s.pos)
	if err != nil {
		t.Fatalf("the loaded positions do not encode: %v", err)
	}
	return b
}
