//go:build amd64 && !purego

package parse

// specialMasks sets masks[k] to the special-byte mask of b[64k:64k+64], for
// every k < len(masks); len(b) >= 64*len(masks). SSE2, which every amd64 has.
//
//go:noescape
func specialMasks(b []byte, masks []uint64)
