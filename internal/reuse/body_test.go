package reuse

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBodyDoneOnceAfterSenderAndReaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		// steps: 'r' Release, 'c' close the body, 'g' open a body again
		// with GetBody, 'C' close that one.
		steps string
		// doneAfter is the number of steps after which done has run.
		doneAfter int
	}{
		{"released then closed", "rc", 2},
		{"closed then released", "cr", 2},
		{"released, never closed", "r", 99},
		{"closed twice", "ccr", 3},
		{"a second reading holds it", "gcrC", 4},
		{"released, second reading closed last", "gCcr", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://example.invalid/", nil)
			var done atomic.Int32
			b := Lend(req, []byte("payload"), func() { done.Add(1) })
			var again io.ReadCloser
			for i, s := range tc.steps {
				switch s {
				case 'r':
					b.Release()
				case 'c':
					req.Body.Close()
				case 'g':
					var err error
					if again, err = req.GetBody(); err != nil {
						t.Fatal(err)
					}
					if got, _ := io.ReadAll(again); string(got) != "payload" {
						t.Fatalf("GetBody read %q", got)
					}
				case 'C':
					again.Close()
				}
				want := int32(0)
				if i+1 >= tc.doneAfter {
					want = 1
				}
				if got := done.Load(); got != want {
					t.Fatalf("after step %d (%c) of %q done ran %d times, want %d", i+1, s, tc.steps, got, want)
				}
			}
			if done.Load() == 0 {
				return
			}
			if _, err := req.GetBody(); err == nil {
				t.Error("GetBody gave a reader of a released buffer")
			}
			if n, err := req.Body.Read(make([]byte, 4)); n != 0 || err == nil {
				t.Errorf("a read of the closed body got %d bytes, error %v; want none and an error", n, err)
			}
		})
	}
}

func TestBodyEmpty(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPost, "http://example.invalid/", nil)
	done := false
	Lend(req, nil, func() { done = true }).Release()
	if req.Body != http.NoBody || req.ContentLength != 0 || !done {
		t.Errorf("empty body: Body %v, ContentLength %d, done %v", req.Body, req.ContentLength, done)
	}
}

// send posts buf to url through a loan whose done overwrites buf, as the
// next request's encoding would: under -race, any read of buf by the
// transport after done is reported.
func send(t *testing.T, c *http.Client, url string, buf []byte) (status int, returned <-chan struct{}) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	ret := make(chan struct{})
	var once sync.Once
	b := Lend(req, buf, func() {
		once.Do(func() {
			for i := range buf {
				buf[i] = 'x'
			}
			close(ret)
		})
	})
	defer b.Release()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, ret
}

func waitReturned(t *testing.T, ret <-chan struct{}) {
	t.Helper()
	select {
	case <-ret:
	case <-time.After(10 * time.Second):
		t.Fatal("the buffer never came back: the transport did not close the body")
	}
}

func TestBodyOverHTTP(t *testing.T) {
	payload := bytes.Repeat([]byte("audit event line\n"), 1<<16)
	var mu sync.Mutex
	var got [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			// A 307 makes the client send the body again, through GetBody.
			http.Redirect(w, r, "/push", http.StatusTemporaryRedirect)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}))
	defer srv.Close()
	for _, path := range []string{"/push", "/moved"} {
		buf := bytes.Clone(payload)
		status, ret := send(t, srv.Client(), srv.URL+path, buf)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d", path, status)
		}
		waitReturned(t, ret)
	}
	if len(got) != 2 {
		t.Fatalf("the server read %d bodies, want 2 (one direct, one after the redirect)", len(got))
	}
	for i, b := range got {
		if !bytes.Equal(b, payload) {
			t.Errorf("body %d: %d bytes differ from the %d sent", i, len(b), len(payload))
		}
	}
}

// TestBodyAnsweredEarly is the case Body exists for: the server answers
// before reading the request, so the client returns while the transport
// may still be writing the body.
func TestBodyAnsweredEarly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}))
	defer srv.Close()
	for range 5 {
		status, ret := send(t, srv.Client(), srv.URL, bytes.Repeat([]byte{'a'}, 8<<20))
		if status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d", status)
		}
		waitReturned(t, ret)
	}
}
