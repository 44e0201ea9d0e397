package reuse

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

var errReadAfterClose = errors.New("reuse: read of a closed request body")

// errReleased is GetBody's answer once the buffer has gone back to its
// owner; net/http only asks for a body again while the request is being
// sent, before that can happen.
var errReleased = errors.New("reuse: the request body's buffer was already released")

// Body lends a buffer to an HTTP request as its body and gives it back,
// by calling done once, when both the sender has called Release and the
// transport has closed every reader of it.
//
// The transport may go on reading a body after the client returns: a
// server may answer before it has read the whole request, and the
// request is then still being written. Reusing the buffer as soon as the
// client returns would change bytes being sent; copying it for each
// request, as bytes.NewReader's callers must, allocates a body's worth
// per request.
type Body struct {
	buf  []byte
	refs atomic.Int64
	done func()
}

// Lend sets req's body (and GetBody, for redirects and HTTP/2 retries)
// to read buf, and returns the loan. The caller must call Release once it
// has the answer, or once it gives up on the request.
func Lend(req *http.Request, buf []byte, done func()) *Body {
	b := &Body{buf: buf, done: done}
	b.refs.Store(1) // the sender's
	req.ContentLength = int64(len(buf))
	if len(buf) == 0 {
		req.Body, req.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
		return b
	}
	req.Body, _ = b.open()
	req.GetBody = b.open
	return b
}

// Release ends the sender's hold on the buffer.
func (b *Body) Release() { b.unref() }

// open returns a new reader of the buffer, holding it until closed.
func (b *Body) open() (io.ReadCloser, error) {
	for {
		n := b.refs.Load()
		if n == 0 {
			return nil, errReleased
		}
		if b.refs.CompareAndSwap(n, n+1) {
			r := &reader{body: b}
			r.r.Reset(b.buf)
			return r, nil
		}
	}
}

func (b *Body) unref() {
	if b.refs.Add(-1) == 0 {
		b.done()
	}
}

// reader is one reading of a lent buffer. A transport does not always
// stop reading before the body is closed: net/http's client closes a
// request's body when it follows a redirect, while the transport may
// still be writing that body to a server that answered early. So Close
// waits for a Read in progress, and a Read after Close reads nothing;
// Read copies at most the caller's buffer, never waiting on the network.
type reader struct {
	mu   sync.Mutex
	r    bytes.Reader
	body *Body // nil once closed
}

func (r *reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.body == nil {
		return 0, errReadAfterClose
	}
	return r.r.Read(p)
}

// Close releases the reader's hold; the transport may call it more than
// once, and from another goroutine than the one that reads.
func (r *reader) Close() error {
	r.mu.Lock()
	b := r.body
	r.body = nil
	r.mu.Unlock()
	if b != nil {
		b.unref()
	}
	return nil
}
