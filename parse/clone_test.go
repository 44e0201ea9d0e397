package parse

import (
	"reflect"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
)

// TestClone clones events one after the other into one arena, as the
// shipper's reader does, then checks each clone against a fresh parse of
// its line: nothing a clone holds may still point into the parser, whose
// buffers every later Parse rewrites, nor into the line it was parsed from.
func TestClone(t *testing.T) {
	g := corpus.New(corpus.Options{Seed: 9})
	lines := [][]byte{
		// Escaped strings live in the parser's buffer, not in the line.
		[]byte(ev(`"verb":"g\u0065t","user":{"username":"a\"b","groups":["x\\y","z"]},"sourceIPs":["10.0.0.1","::1"],"userAgent":"k\tc"`)),
		[]byte(ev(`"user":{"groups":[]},"sourceIPs":null`)),
	}
	for range 500 {
		lines = append(lines, g.Next(nil))
	}
	var p Parser
	var arena []byte
	var lists []string
	clones := make([]Event, len(lines))
	for i, l := range lines {
		e, err := p.Parse(l)
		if err != nil {
			t.Fatalf("line %d: %v\n%s", i, err, l)
		}
		raw := append([]byte(nil), l...)
		clones[i], arena, lists = e.Clone(raw, arena, lists)
		clear(l) // the clone must not read the line it came from
	}
	var fresh Parser
	for i, c := range clones {
		want, err := fresh.Parse(c.Raw)
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if !reflect.DeepEqual(c, *want) {
			t.Errorf("line %d: clone\n%+v\nwant\n%+v", i, c, *want)
		}
	}
	if c := clones[0]; c.Verb != "get" || c.Username != `a"b` || len(c.Groups) != 2 || c.Groups[0] != `x\y` || c.SourceIPs[1] != "::1" {
		t.Errorf("escaped clone: %+v", c)
	}
}

// TestCloneAllocs: once arena and lists are large enough, Clone allocates
// nothing.
func TestCloneAllocs(t *testing.T) {
	g := corpus.New(corpus.Options{Seed: 2})
	line := g.Next(nil)
	var p Parser
	e, err := p.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	arena := make([]byte, 0, 1<<20)
	lists := make([]string, 0, 1<<10)
	allocs := testing.AllocsPerRun(100, func() {
		_, arena, lists = e.Clone(line, arena[:0], lists[:0])
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Clone, want 0", allocs)
	}
}
