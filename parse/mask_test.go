package parse

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSpecialMasks checks the SIMD masks against the Go ones and against a
// byte-by-byte definition, on random blocks rich in edge bytes.
func TestSpecialMasks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	edge := []byte{0x00, 0x1f, 0x20, 0x21, '"', '\\', 0x7f, 0x80, 0xff, 0xc3, 'a', 0x5b, 0x5d}
	b := make([]byte, 64*50)
	for round := 0; round < 200; round++ {
		for i := range b {
			if r.IntN(2) == 0 {
				b[i] = edge[r.IntN(len(edge))]
			} else {
				b[i] = byte(r.Uint32())
			}
		}
		got := make([]uint64, 50)
		want := make([]uint64, 50)
		specialMasks(b, got)
		specialMasksGo(b, want)
		if useSSE2 != nil {
			sse := make([]uint64, 50)
			useSSE2(b, sse)
			if !slices.Equal(sse, got) {
				t.Fatalf("SSE2 and AVX2 masks differ")
			}
		}
		for k := range got {
			var def uint64
			for j := 0; j < 64; j++ {
				if c := b[64*k+j]; c == '"' || c == '\\' || c < 0x20 || c >= 0x80 {
					def |= 1 << j
				}
			}
			if got[k] != def || want[k] != def {
				t.Fatalf("block %d: specialMasks %064b, Go %064b, want %064b", k, got[k], want[k], def)
			}
		}
	}
}

func TestNextSpecial(t *testing.T) {
	for n := 0; n < 200; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		var p Parser
		p.computeMasks(b)
		for i := 0; i <= n; i++ {
			if got := p.nextSpecial(i); got != n {
				t.Fatalf("len %d: nextSpecial(%d) = %d, want %d", n, i, got, n)
			}
		}
		if n > 0 {
			b[n/2] = '"'
			p.computeMasks(b)
			if got := p.nextSpecial(0); got != n/2 {
				t.Fatalf("len %d: nextSpecial(0) = %d, want %d", n, got, n/2)
			}
		}
	}
}
