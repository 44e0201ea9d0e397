package faults

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audit-shipper/audit-shipper/corpus"
)

var auditIDKey = []byte(`"auditID":"`)

// auditID returns the first auditID of an audit Event line written in
// kube-apiserver's key order, where the event's own auditID comes before
// any nested object.
func auditID(line []byte) (string, bool) {
	i := bytes.Index(line, auditIDKey)
	if i < 0 {
		return "", false
	}
	rest := line[i+len(auditIDKey):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// auditLog writes generated events the way kube-apiserver does: one Write
// per line through lumberjack, rotating at 1 MB, every backup kept. One
// goroutine writes at a time; ids is read once it is done, bytes at any
// time.
type auditLog struct {
	lj  *lumberjack.Logger
	src *corpus.Generator
	buf []byte

	// size mirrors lumberjack's count of the live file so that rotations
	// are known before they happen.
	size      int64
	rotations atomic.Int64
	lastRot   time.Time

	ids   []string
	bytes atomic.Int64
}

func newAuditLog(path string, seed int64) *auditLog {
	return &auditLog{
		lj:  &lumberjack.Logger{Filename: path, MaxSize: 1},
		src: corpus.New(corpus.Options{Seed: seed, Start: time.Now().Add(-time.Hour)}),
	}
}

// write appends one event.
func (l *auditLog) write() error {
	l.buf = l.src.Next(l.buf[:0])
	id, ok := auditID(l.buf)
	if !ok {
		return fmt.Errorf("the corpus made a line without an auditID: %.200s", l.buf)
	}
	l.buf = append(l.buf, '\n')
	if l.size+int64(len(l.buf)) > mib {
		// lumberjack names a backup after the rotation's millisecond: two
		// rotations within one would overwrite a backup.
		if d := 2*time.Millisecond - time.Since(l.lastRot); d > 0 {
			time.Sleep(d)
		}
		l.size = 0
		l.rotations.Add(1)
		l.lastRot = time.Now()
	}
	if _, err := l.lj.Write(l.buf); err != nil {
		return fmt.Errorf("lumberjack write: %w", err)
	}
	l.size += int64(len(l.buf))
	l.bytes.Add(int64(len(l.buf)))
	l.ids = append(l.ids, id)
	return nil
}

// writeN appends n events as fast as it can.
func (l *auditLog) writeN(n int) error {
	for range n {
		if err := l.write(); err != nil {
			return err
		}
	}
	return nil
}

// writeRotations appends events until n more rotations have happened and
// the new live file holds at least one event.
func (l *auditLog) writeRotations(n int) error {
	want := l.rotations.Load() + int64(n)
	for l.rotations.Load() < want || l.size == 0 {
		if err := l.write(); err != nil {
			return err
		}
	}
	return nil
}

// writeAt appends rate events a second, in bursts every 10ms, for d or
// until ctx is done.
func (l *auditLog) writeAt(ctx context.Context, rate int, d time.Duration) error {
	const tick = 10 * time.Millisecond
	begin := time.Now()
	t := time.NewTicker(tick)
	defer t.Stop()
	for written := 0; ; {
		elapsed := time.Since(begin)
		if elapsed >= d {
			return nil
		}
		for due := int(elapsed.Seconds() * float64(rate)); written < due; written++ {
			if err := l.write(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// close closes the live file.
func (l *auditLog) close(t *testing.T) {
	t.Helper()
	if err := l.lj.Close(); err != nil {
		t.Errorf("closing the audit log writer: %v", err)
	}
}

// background runs write in a goroutine; wait returns its error.
type background struct {
	done chan struct{}
	err  error
}

func inBackground(write func() error) *background {
	b := &background{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.err = write()
	}()
	return b
}

func (b *background) wait(t *testing.T) {
	t.Helper()
	<-b.done
	if b.err != nil {
		t.Fatal(b.err)
	}
}

// timeline runs actions at offsets from its start, in order, while
// checking that the shipper stays up.
type timeline struct {
	t       *testing.T
	s       *shipper
	begin   time.Time
	actions []action
}

type action struct {
	at   time.Duration
	what string
	do   func()
}

func newTimeline(t *testing.T, s *shipper) *timeline {
	return &timeline{t: t, s: s}
}

// at adds an action at offset d.
func (tl *timeline) at(d time.Duration, what string, do func()) {
	tl.actions = append(tl.actions, action{at: d, what: what, do: do})
}

// run performs the actions in time order and returns when the last is
// done.
func (tl *timeline) run() {
	tl.t.Helper()
	acts := tl.actions
	for i := 1; i < len(acts); i++ {
		for j := i; j > 0 && acts[j].at < acts[j-1].at; j-- {
			acts[j], acts[j-1] = acts[j-1], acts[j]
		}
	}
	tl.begin = time.Now()
	for _, a := range acts {
		for d := time.Until(tl.begin.Add(a.at)); d > 0; d = time.Until(tl.begin.Add(a.at)) {
			time.Sleep(min(d, 500*time.Millisecond))
			tl.s.alive()
		}
		tl.t.Logf("%6.1fs %s", time.Since(tl.begin).Seconds(), a.what)
		a.do()
	}
}
