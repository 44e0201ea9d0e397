//go:build amd64 && !purego

package parse

import "golang.org/x/sys/cpu"

// specialMasks sets masks[k] to the special-byte mask of b[64k:64k+64], for
// every k < len(masks); len(b) >= 64*len(masks). AVX2 where the CPU has it,
// else SSE2, which every amd64 has.
func specialMasks(b []byte, masks []uint64) {
	if useAVX2 {
		specialMasksAVX2(b, masks)
	} else {
		specialMasksSSE2(b, masks)
	}
}

var useAVX2 = cpu.X86.HasAVX2

//go:noescape
func specialMasksSSE2(b []byte, masks []uint64)

//go:noescape
func specialMasksAVX2(b []byte, masks []uint64)
