package parse

import (
	"encoding/binary"
	"math/bits"
)

// The parser finds string ends through a bitmap of the line computed once per
// line (SIMD on amd64): bit i of masks[i/64] is set when byte i is '"', '\\',
// a control character or not ASCII. Looking for the end of a string is then a
// shift and a count of trailing zeros, without a call or a loop per byte.
// Past the end of the line every bit is set, so a search always stops there.

// computeMasks fills p.masks for b.
func (p *Parser) computeMasks(b []byte) {
	n := len(b)/64 + 1 // one more word: it flags len(b)
	if cap(p.masks) < n {
		p.masks = make([]uint64, n, n+n/4)
	}
	p.masks = p.masks[:n]
	full := len(b) / 64
	specialMasks(b[:full*64], p.masks[:full])
	var last [64]byte
	rest := copy(last[:], b[full*64:])
	specialMasks(last[:], p.masks[full:])
	p.masks[full] |= ^uint64(0) << rest // bytes past the end count as special
}

// nextSpecial returns the index of the first special byte at or after i,
// which is len(b) when there is none.
func (p *Parser) nextSpecial(i int) int {
	if m := p.masks[i>>6] >> (i & 63); m != 0 {
		return i + bits.TrailingZeros64(m)
	}
	return p.nextSpecialFar(i)
}

// nextSpecialFar is nextSpecial past the 64-byte word of i, out of line so
// that nextSpecial and its callers inline.
func (p *Parser) nextSpecialFar(i int) int {
	for w := i>>6 + 1; ; w++ {
		if m := p.masks[w]; m != 0 {
			return w<<6 + bits.TrailingZeros64(m)
		}
	}
}

// specialMasksGo is specialMasks in Go.
func specialMasksGo(b []byte, masks []uint64) {
	for k := range masks {
		masks[k] = maskBlockGo(b[k*64 : k*64+64])
	}
}

// maskBlockGo returns the special-byte mask of a 64-byte block, eight bytes at
// a time with exact per-byte tests (no borrow between bytes).
func maskBlockGo(b []byte) uint64 {
	const (
		low7 = 0x7f7f7f7f7f7f7f7f
		high = 0x8080808080808080
		ones = 0x0101010101010101
	)
	var m uint64
	for k := 0; k < 8; k++ {
		x := binary.LittleEndian.Uint64(b[k*8:])
		q := x ^ (ones * '"')
		s := x ^ (ones * '\\')
		// A byte y<0x80 has its high bit clear in (y&0x7f)+0x7f only when y==0,
		// and in (y&0x7f)+0x60 only when y<0x20.
		zq := ^((q&low7 + low7) | q | low7)
		zs := ^((s&low7 + low7) | s | low7)
		ctl := ^((x&low7 + ones*0x60) | x | low7)
		f := (zq | zs | ctl | x&high) >> 7
		m |= (f * 0x0102040810204080 >> 56) << (8 * k)
	}
	return m
}
