package faultproxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"
)

// echoServer answers every connection with what it receives.
func echoServer(t *testing.T) string {
	t.Helper()
	return server(t, func(c net.Conn) { io.Copy(c, c) })
}

// server runs handle for every connection on a loopback listener.
func server(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func start(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo writes msg on c and reads it back, failing the test on any error.
func echo(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo of %d bytes: %v", len(msg), err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing %d bytes: %v", len(msg), err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("the echo differs from what was sent")
	}
}

func random(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// silent requires that nothing arrives on c within d.
func silent(t *testing.T, c net.Conn, d time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: read %d bytes, %v; want nothing until the deadline", what, n, err)
	}
}

// isReset reports whether err is the peer's RST.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// readReset requires that c was reset: a read fails with ECONNRESET.
func readReset(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if !isReset(err) {
		t.Fatalf("%s: read ended with %v, want a connection reset", what, err)
	}
}

func TestForward(t *testing.T) {
	p := start(t, echoServer(t))
	c := dial(t, p)
	msg := random(t, 1<<20)
	echo(t, c, msg)
	echo(t, c, []byte("and again"))
	c.Close()
	// The proxy counts a chunk after it has passed it on, so the client
	// can have its echo a moment before the count includes it.
	want := int64(len(msg) + len("and again"))
	ok := func(st Stats) bool {
		return st.Up == want && st.Down == want && st.Accepted == 1 && st.Resets == 0
	}
	st := p.Stats()
	for deadline := time.Now().Add(2 * time.Second); !ok(st) && time.Now().Before(deadline); st = p.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	if !ok(st) {
		t.Errorf("stats %+v, want %d bytes up and down over 1 connection, no reset", st, want)
	}
}

// A closed target is a reset for the client, not a hang.
func TestTargetDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p := start(t, addr)
	// The RST can come so soon that the dial itself sees it.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		readReset(t, c, "target refuses")
		c.Close()
	} else if !isReset(err) {
		t.Fatalf("dial: %v, want a connection or a reset", err)
	}
	if st := p.Stats(); st.DialErrors != 1 {
		t.Errorf("stats %+v, want 1 dial error", st)
	}
	p.SetTarget(echoServer(t))
	echo(t, dial(t, p), []byte("retargeted"))
}

func TestLatency(t *testing.T) {
	p := start(t, echoServer(t))
	c := dial(t, p)
	echo(t, c, []byte("warm")) // the dial is not what is measured
	const d = 150 * time.Millisecond
	p.SetLatency(d)
	begin := time.Now()
	echo(t, c, []byte("ping"))
	if rtt := time.Since(begin); rtt < 2*d || rtt > 2*d+time.Second {
		t.Errorf("round trip %s with one-way latency %s, want about %s", rtt, d, 2*d)
	}
	// Latency is a delay, not a queue: 20 chunks in a row arrive in about
	// one round trip, not twenty.
	begin = time.Now()
	echo(t, c, random(t, 20*chunkSize))
	if took := time.Since(begin); took > 10*d {
		t.Errorf("20 chunks took %s with a one-way latency of %s: chunks wait behind each other", took, d)
	}
	p.SetLatency(0)
	begin = time.Now()
	echo(t, c, []byte("fast"))
	if rtt := time.Since(begin); rtt > d {
		t.Errorf("round trip %s after the latency was lifted", rtt)
	}
}

func TestBandwidth(t *testing.T) {
	p := start(t, echoServer(t))
	c := dial(t, p)
	const bps = 256 << 10
	p.SetBandwidth(bps)
	begin := time.Now()
	echo(t, c, random(t, 2*bps)) // 2 s each way, pipelined
	took := time.Since(begin)
	if took < 1800*time.Millisecond || took > 8*time.Second {
		t.Errorf("512 KiB at 256 KiB/s each way took %s, want about 2s", took)
	}
	p.SetBandwidth(0)
	begin = time.Now()
	echo(t, c, random(t, 2*bps))
	if took := time.Since(begin); took > time.Second {
		t.Errorf("512 KiB took %s after the limit was lifted", took)
	}
}

func TestBlackhole(t *testing.T) {
	p := start(t, echoServer(t))
	before := dial(t, p)
	echo(t, before, []byte("up"))
	p.Blackhole()
	during := dial(t, p) // accepted
	for _, c := range []net.Conn{before, during} {
		if _, err := c.Write([]byte("anyone?")); err != nil {
			t.Fatal(err)
		}
	}
	silent(t, before, 300*time.Millisecond, "a connection opened before the blackhole")
	silent(t, during, 300*time.Millisecond, "a connection opened during the blackhole")
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	readReset(t, before, "held through a blackhole, after Restore")
	readReset(t, during, "accepted in a blackhole, after Restore")
	echo(t, dial(t, p), []byte("back"))
	if st := p.Stats(); st.Blackholed != 1 || st.Resets != 2 {
		t.Errorf("stats %+v, want 1 connection blackholed and 2 resets", st)
	}
}

func TestReset(t *testing.T) {
	p := start(t, echoServer(t))
	c := dial(t, p)
	echo(t, c, []byte("up"))
	if n := p.Reset(); n != 1 {
		t.Errorf("Reset reset %d connections, want 1", n)
	}
	readReset(t, c, "after Reset")
	echo(t, dial(t, p), []byte("a new connection works"))
}

func TestCut(t *testing.T) {
	p := start(t, echoServer(t))
	c := dial(t, p)
	echo(t, c, []byte("up"))
	p.Cut()
	readReset(t, c, "open when the link was cut")
	if _, err := net.Dial("tcp", p.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial while cut: %v, want connection refused", err)
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	echo(t, dial(t, p), []byte("restored on the same address"))
}

// SetResets cuts a stream after a byte budget: the target gets exactly
// that prefix, the client an RST.
func TestResetMidStream(t *testing.T) {
	got := make(chan int64, 1)
	addr := server(t, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		got <- n
	})
	p := start(t, addr)
	p.SetResets(100_000, 100_000, 1)
	c := dial(t, p)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, werr := c.Write(random(t, 1<<20))
	_, rerr := c.Read(make([]byte, 1))
	if !isReset(werr) && !isReset(rerr) {
		t.Errorf("write: %v, read: %v; want a reset", werr, rerr)
	}
	select {
	case n := <-got:
		if n != 100_000 {
			t.Errorf("the target received %d bytes, want the 100000 before the reset", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the target's connection did not end")
	}
	if st := p.Stats(); st.Resets != 1 {
		t.Errorf("stats %+v, want 1 reset", st)
	}
	p.SetResets(0, 0, 0)
	c = dial(t, p)
	if _, err := c.Write(random(t, 200_000)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case n := <-got:
		if n != 200_000 {
			t.Errorf("with resets off, the target received %d bytes, want 200000", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("with resets off, the target's connection did not end")
	}
}

// Through HTTP, as the sinks use it: a blackhole is a client timeout, a
// restored link answers again.
func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	p := start(t, srv.Listener.Addr().String())
	client := &http.Client{Timeout: 500 * time.Millisecond}
	post := func() error {
		resp, err := client.Post("http://"+p.Addr()+"/push", "text/plain", bytes.NewReader(random(t, 64<<10)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != "ok" {
			err = errors.New("answer " + string(b))
		}
		return err
	}
	if err := post(); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	var ne net.Error
	if err := post(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("POST into a blackhole: %v, want a timeout", err)
	}
	p.Restore()
	if err := post(); err != nil {
		t.Fatalf("POST after Restore: %v", err)
	}
	p.Cut()
	if err := post(); err == nil {
		t.Fatal("POST over a cut link succeeded")
	}
	p.Restore()
	if err := post(); err != nil {
		t.Fatalf("POST after Restore: %v", err)
	}
}
