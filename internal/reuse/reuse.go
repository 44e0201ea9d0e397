// Package reuse keeps a sink's request buffers from one request to the
// next.
//
// sync.Pool empties at every garbage collection, and a shipper that runs
// with a small heap collects several times a second: its pooled batches
// and encoders were allocated again after almost every cycle, a megabyte
// or more each, which is most of what it allocated and what set its peak
// heap. A List keeps what is put in it until it is taken or drained, up
// to a bound its owner sets from the requests that can be in flight:
// what it keeps counts as live heap, so it keeps no more than is
// usually in use at once.
package reuse

// List is a free list of at most a fixed number of values: a bounded
// leaky bucket. It is safe for concurrent use.
type List[T any] struct {
	free  chan T
	fresh func() T
}

// NewList returns a list that keeps up to n values and makes new ones
// with fresh when it is empty.
func NewList[T any](n int, fresh func() T) *List[T] {
	return &List[T]{free: make(chan T, n), fresh: fresh}
}

// Get takes a kept value, or makes a new one.
func (l *List[T]) Get() T {
	select {
	case v := <-l.free:
		return v
	default:
		return l.fresh()
	}
}

// Put keeps v for a later Get, unless the list is full: v is then left
// to the garbage collector.
func (l *List[T]) Put(v T) {
	select {
	case l.free <- v:
	default:
	}
}

// Drain lets go of every kept value, for when the values will not be
// needed for a while: a shipper idle after a burst gives their memory
// back instead of holding the burst's buffers.
func (l *List[T]) Drain() {
	for {
		select {
		case <-l.free:
		default:
			return
		}
	}
}
