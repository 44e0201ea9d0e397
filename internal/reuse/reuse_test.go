package reuse

import (
	"runtime"
	"testing"
)

func TestListKeepsValuesAcrossCollections(t *testing.T) {
	made := 0
	l := NewList(2, func() *[]byte { made++; b := make([]byte, 0, 1<<20); return &b })
	a, b, c := l.Get(), l.Get(), l.Get()
	if made != 3 {
		t.Fatalf("made %d values for three Gets of an empty list, want 3", made)
	}
	l.Put(a)
	l.Put(b)
	l.Put(c) // over the bound: dropped
	// sync.Pool would be empty after these.
	runtime.GC()
	runtime.GC()
	got := map[*[]byte]bool{l.Get(): true, l.Get(): true}
	if !got[a] || !got[b] {
		t.Errorf("after two collections the list gave back %v, want the two values put first (%p, %p)", got, a, b)
	}
	if made != 3 {
		t.Errorf("made %d values, want 3: the kept ones were made again", made)
	}
	if v := l.Get(); v == c || made != 4 {
		t.Errorf("the value put past the bound was kept (made %d)", made)
	}
}

func TestListDrain(t *testing.T) {
	made := 0
	l := NewList(3, func() *int { made++; return new(int) })
	a, b := l.Get(), l.Get()
	l.Put(a)
	l.Put(b)
	l.Drain()
	if v := l.Get(); v == a || v == b || made != 3 {
		t.Errorf("after Drain the list still gave a kept value (made %d)", made)
	}
	l.Drain() // empty: returns at once
}
