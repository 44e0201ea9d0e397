// Package faultproxy is a TCP proxy on loopback that puts network faults
// between a client under test and a real server: latency, a bandwidth
// limit, a blackhole (connections accepted and never answered), resets
// (RST, as a crashed peer or a middlebox sends) and a cut link (connections
// refused), each switched on and off while traffic flows.
//
// The proxy knows nothing of the protocol it carries, so a reset can land
// in the middle of a request body or of an answer, as it does on a real
// network.
package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// chunkSize bounds one read; a throttled or delayed link moves data in
// chunks of at most this size.
const chunkSize = 16 << 10

// queueChunks bounds the chunks in flight in one direction of one
// connection: with latency, the link carries at most
// queueChunks*chunkSize bytes per latency period, as a TCP window does.
const queueChunks = 64

// Stats counts what the proxy did since it started.
type Stats struct {
	// Accepted counts connections accepted, Blackholed those of them held
	// without an answer.
	Accepted, Blackholed int
	// Resets counts connections the proxy reset: by Reset, Cut, Restore
	// after a blackhole, or the byte budget of SetResets.
	Resets int
	// DialErrors counts connections reset because the target refused them.
	DialErrors int
	// Up and Down count bytes delivered to the target and to the clients.
	Up, Down int64
}

// Proxy forwards connections from its loopback address to a target. Its
// methods may be called from any goroutine.
type Proxy struct {
	addr string

	mu        sync.Mutex
	ln        net.Listener // nil while cut
	target    string
	latency   time.Duration
	blackhole bool
	// flowing is closed while traffic flows; a blackhole replaces it with
	// an open channel, which Restore closes.
	flowing chan struct{}
	// resetMin and resetMax bound the client bytes after which a new
	// connection is reset; 0 disables.
	resetMin, resetMax int64
	rng                *rand.Rand
	links              map[*link]struct{}
	stats              Stats
	closed             bool
	up, down           throttle

	wg sync.WaitGroup
}

// Start listens on a free loopback port and forwards every connection to
// target (host:port).
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening on loopback: %w", err)
	}
	flowing := make(chan struct{})
	close(flowing)
	p := &Proxy{
		addr: ln.Addr().String(), ln: ln, target: target, flowing: flowing,
		rng:   rand.New(rand.NewPCG(1, 2)),
		links: make(map[*link]struct{}),
	}
	p.wg.Add(1)
	go p.serve(ln)
	return p, nil
}

// Addr is the proxy's host:port; it stays the same across Cut and Restore.
func (p *Proxy) Addr() string { return p.addr }

// SetTarget sends new connections to target; open ones keep theirs.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// SetLatency delays every chunk by d in each direction (one way), from the
// moment the proxy reads it: a round trip takes 2d more. Chunks keep their
// order and are not serialised behind each other's delay.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// SetBandwidth limits each direction to bytesPerSecond, shared by every
// connection, as one link would; 0 lifts the limit.
func (p *Proxy) SetBandwidth(bytesPerSecond int64) {
	p.up.set(bytesPerSecond)
	p.down.set(bytesPerSecond)
}

// SetResets resets each connection accepted from now on after the client
// has sent a number of bytes drawn uniformly from [minBytes, maxBytes]
// (seeded by seed, so a run can be replayed): the target gets a prefix of
// what was sent, and both sides an RST. 0, 0 stops it.
func (p *Proxy) SetResets(minBytes, maxBytes int64, seed uint64) {
	p.mu.Lock()
	p.resetMin, p.resetMax = minBytes, max(minBytes, maxBytes)
	p.rng = rand.New(rand.NewPCG(seed, 2))
	p.mu.Unlock()
}

// Blackhole stops all traffic: open connections stay open and carry
// nothing, new ones are accepted and never answered (nor forwarded).
// Restore ends it.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.blackhole {
		p.blackhole = true
		p.flowing = make(chan struct{})
	}
}

// Reset resets every open connection now and returns how many there were.
func (p *Proxy) Reset() int {
	p.mu.Lock()
	links := p.takeLinks()
	p.mu.Unlock()
	for _, l := range links {
		l.reset()
	}
	return len(links)
}

// takeLinks empties the set of open connections, counting them as reset.
// Called with mu held.
func (p *Proxy) takeLinks() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
		delete(p.links, l)
	}
	p.stats.Resets += len(links)
	return links
}

// Cut takes the link down: new connections are refused (the port is
// closed) and open ones reset.
func (p *Proxy) Cut() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	links := p.takeLinks()
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, l := range links {
		l.reset()
	}
}

// Restore makes the link clean again: it listens again after a Cut, ends a
// blackhole (resetting the connections it held, whose clients have given
// up on them or will), and lifts latency, bandwidth limit and resets.
func (p *Proxy) Restore() error {
	p.SetBandwidth(0)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("faultproxy: Restore after Close")
	}
	p.latency, p.resetMin, p.resetMax = 0, 0, 0
	if p.blackhole {
		links := p.takeLinks()
		p.blackhole = false
		close(p.flowing)
		for _, l := range links {
			l.reset()
		}
	}
	if p.ln == nil {
		// The port was closed by Cut; on loopback nobody else takes it in
		// between unless they ask for it by number.
		ln, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("faultproxy: listening again on %s: %w", p.addr, err)
		}
		p.ln = ln
		p.wg.Add(1)
		go p.serve(ln)
	}
	return nil
}

// Stats returns the proxy's counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops listening, resets every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	if p.blackhole {
		p.blackhole = false
		close(p.flowing)
	}
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) serve(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed by Cut or Close
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c.(*net.TCPConn))
		}()
	}
}

// handle carries one connection until either side ends it or the proxy
// resets it.
func (p *Proxy) handle(client *net.TCPConn) {
	l := &link{client: client, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.reset()
		return
	}
	p.stats.Accepted++
	p.links[l] = struct{}{}
	blackholed, target := p.blackhole, p.target
	if p.resetMax > 0 {
		l.resetAfter = p.resetMin + p.rng.Int64N(p.resetMax-p.resetMin+1)
	}
	if blackholed {
		p.stats.Blackholed++
	}
	p.mu.Unlock()
	defer p.forget(l)

	if blackholed {
		// Accepted, never answered: read and drop until the client gives
		// up or Restore resets the connection.
		io.Copy(io.Discard, client)
		l.close()
		return
	}
	conn, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		p.mu.Lock()
		p.stats.DialErrors++
		p.mu.Unlock()
		l.reset()
		return
	}
	server := conn.(*net.TCPConn)
	if !l.attach(server) { // reset while dialling
		server.SetLinger(0)
		server.Close()
		return
	}
	var dirs sync.WaitGroup
	dirs.Go(func() { p.pipe(l, client, server, true) })
	dirs.Go(func() { p.pipe(l, server, client, false) })
	dirs.Wait()
	l.close()
}

func (p *Proxy) forget(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// chunk is data read from one side, due at the other at a time.
type chunk struct {
	data []byte
	due  time.Time
}

// pipe carries one direction of l, from src to dst: a reader stamps each
// chunk with its due time, a writer waits for the link to flow, for the
// due time and for the bandwidth, then writes it.
func (p *Proxy) pipe(l *link, src, dst *net.TCPConn, up bool) {
	q := make(chan chunk, queueChunks)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				p.mu.Lock()
				due := time.Now().Add(p.latency)
				p.mu.Unlock()
				select {
				case q <- chunk{data: buf[:n], due: due}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	if p.forward(l, q, dst, up) {
		// src ended: pass the end on, and let the other direction finish.
		dst.CloseWrite()
	}
	for range q { // l has ended: the reader stops at its next read
	}
}

// forward writes the chunks of q to dst until q ends (true) or l does.
func (p *Proxy) forward(l *link, q <-chan chunk, dst *net.TCPConn, up bool) bool {
	th := &p.down
	if up {
		th = &p.up
	}
	for c := range q {
		if !p.wait(l, c, th) {
			return false
		}
		data := c.data
		reset := false
		if up && l.resetAfter > 0 && l.sent+int64(len(data)) >= l.resetAfter {
			data, reset = data[:l.resetAfter-l.sent], true
		}
		n, err := dst.Write(data)
		p.count(up, n)
		if up {
			l.sent += int64(n)
		}
		switch {
		case reset:
			p.take(l)
			l.reset()
			return false
		case err != nil:
			l.close()
			return false
		}
	}
	return true
}

// wait blocks until c may be written: the link flows, c is due, and the
// bandwidth allows it. It returns false when l ended meanwhile.
func (p *Proxy) wait(l *link, c chunk, th *throttle) bool {
	for {
		p.mu.Lock()
		flowing := p.flowing
		p.mu.Unlock()
		select {
		case <-flowing:
		case <-l.done:
			return false
		}
		if d := time.Until(c.due); d > 0 && !sleep(d, l.done) {
			return false
		}
		if !th.wait(len(c.data), l.done) {
			return false
		}
		// A blackhole that began while this chunk waited holds it too.
		p.mu.Lock()
		still := !p.blackhole
		p.mu.Unlock()
		if still {
			return true
		}
	}
}

// take removes l from the open connections and counts it as reset, unless
// something else took it first.
func (p *Proxy) take(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.links[l]; ok {
		delete(p.links, l)
		p.stats.Resets++
	}
}

func (p *Proxy) count(up bool, n int) {
	p.mu.Lock()
	if up {
		p.stats.Up += int64(n)
	} else {
		p.stats.Down += int64(n)
	}
	p.mu.Unlock()
}

// link is one proxied connection.
type link struct {
	client *net.TCPConn
	// resetAfter is how many client bytes the target gets before the
	// proxy resets the connection; 0 is never. sent counts them; both are
	// the upstream writer's.
	resetAfter, sent int64
	// done is closed when the link ends.
	done chan struct{}

	mu     sync.Mutex
	server *net.TCPConn // nil until dialled
	ended  bool
}

// attach gives l its connection to the target; false when l has ended.
func (l *link) attach(server *net.TCPConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return false
	}
	l.server = server
	return true
}

// reset ends both sides with an RST: SO_LINGER 0 makes Close send one
// instead of a FIN.
func (l *link) reset() {
	l.end(true)
}

// close ends both sides with a FIN.
func (l *link) close() {
	l.end(false)
}

func (l *link) end(rst bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.ended = true
	close(l.done)
	for _, c := range []*net.TCPConn{l.client, l.server} {
		if c == nil {
			continue
		}
		if rst {
			c.SetLinger(0)
		}
		c.Close()
	}
}

// throttle spreads writes so that they average at most bps bytes a
// second, shared by whoever waits on it.
type throttle struct {
	mu   sync.Mutex
	bps  int64
	next time.Time
}

func (t *throttle) set(bps int64) {
	t.mu.Lock()
	t.bps = bps
	t.next = time.Time{}
	t.mu.Unlock()
}

// wait reserves n bytes of the bandwidth and sleeps until they are due.
func (t *throttle) wait(n int, done <-chan struct{}) bool {
	t.mu.Lock()
	if t.bps <= 0 {
		t.mu.Unlock()
		return true
	}
	now := time.Now()
	if t.next.Before(now) {
		t.next = now
	}
	t.next = t.next.Add(time.Duration(int64(n) * int64(time.Second) / t.bps))
	until := t.next
	t.mu.Unlock()
	return sleep(time.Until(until), done)
}

func sleep(d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-done:
		return false
	}
}
