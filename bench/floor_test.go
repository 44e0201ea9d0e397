package main

import (
	"bytes"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
)

// TestLineParser: the parse floors parse every line once, whatever the
// block boundaries cut, and count a line that does not parse.
func TestLineParser(t *testing.T) {
	g := corpus.New(corpus.Options{Seed: 9})
	var log bytes.Buffer
	const events = 300
	for range events {
		log.Write(g.Next(nil))
		log.WriteByte('\n')
	}
	log.WriteString(`{"kind":"Event","auditID":` + "\n") // cut short
	for _, block := range []int{1, 7, 4096, 1 << 20} {
		var l lineParser
		for b := log.Bytes(); len(b) > 0; {
			n := min(block, len(b))
			l.parse(b[:n])
			b = b[n:]
		}
		l.parse([]byte{'\n'})
		if l.n != events+1 || l.bad != 1 {
			t.Errorf("blocks of %d bytes: %d lines parsed, %d refused; want %d and 1", block, l.n, l.bad, events+1)
		}
	}
}
