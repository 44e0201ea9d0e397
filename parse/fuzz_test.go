package parse

import (
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
)

// maxFuzzLine caps fuzz inputs: longer lines exercise nothing new, only slow
// the fuzzer down.
const maxFuzzLine = 64 << 10

// FuzzParse is differential: the decoder must accept exactly what the oracle
// accepts (but for the documented differences), with equal fields, and never
// panic. Each input is parsed by a parser that has just parsed a full corpus
// event, so state leaking from one line to the next is caught too.
//
//	go test ./parse/ -run '^$' -fuzz FuzzParse -fuzztime 30s
func FuzzParse(f *testing.F) {
	for _, c := range edgeCases() {
		if len(c.line) <= maxFuzzLine {
			f.Add([]byte(c.line))
		}
	}
	g := corpus.New(corpus.Options{Seed: 11})
	for i := 0; i < 200; i++ {
		if line := g.Next(nil); len(line) <= maxFuzzLine {
			f.Add(line)
		}
	}
	previous := corpus.New(corpus.Options{Seed: 12}).Next(nil)
	f.Fuzz(func(t *testing.T, line []byte) {
		if len(line) > maxFuzzLine {
			t.Skip()
		}
		var p Parser
		if _, err := p.Parse(previous); err != nil {
			t.Fatal(err)
		}
		e, err := p.Parse(line)
		if msg := compare(line, e, err); msg != "" {
			t.Fatalf("%s\nline %q", msg, line)
		}
	})
}
