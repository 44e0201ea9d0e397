package shipperproc

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audit-shipper/audit-shipper/corpus"
)

var auditIDKey = []byte(`"auditID":"`)

// AuditID returns the first auditID of an audit Event line written in
// kube-apiserver's key order, where the event's own auditID comes before
// any nested object. It does not check that the line is whole.
func AuditID(line []byte) (string, bool) {
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

// rotateAt is the size at which lumberjack rotates (MaxSize 1, in MB).
const rotateAt = 1 << 20

// LogOptions are how an AuditLog rotates and what it writes.
type LogOptions struct {
	// MaxBackups is lumberjack's: how many rotated files it keeps; 0
	// keeps every one.
	MaxBackups int
	// Compress gzips the rotated files.
	Compress bool
	// Seed and Start are the corpus generator's.
	Seed  int64
	Start time.Time
}

// AuditLog writes generated events the way kube-apiserver does: one
// Write per line through lumberjack, which rotates at 1 MB. It keeps the
// auditIDs in the order they were written. One goroutine writes at a
// time; IDs is read once it is done, Bytes and Rotations at any time.
type AuditLog struct {
	lj  *lumberjack.Logger
	src *corpus.Generator
	buf []byte

	// size mirrors lumberjack's count of the live file so that rotations
	// are known before they happen.
	size      int64
	rotations atomic.Int64
	lastRot   time.Time

	ids   []string
	seen  map[string]bool
	bytes atomic.Int64
}

// NewAuditLog returns a writer of the live file path.
func NewAuditLog(path string, o LogOptions) *AuditLog {
	return &AuditLog{
		lj: &lumberjack.Logger{
			Filename:   path,
			MaxSize:    rotateAt >> 20,
			MaxBackups: o.MaxBackups,
			Compress:   o.Compress,
		},
		src:  corpus.New(corpus.Options{Seed: o.Seed, Start: o.Start}),
		seen: make(map[string]bool),
	}
}

// Continue returns a writer of path, rotated as l is, that goes on with
// l's events: IDs holds l's before its own. l is not written to again.
func (l *AuditLog) Continue(path string) *AuditLog {
	return &AuditLog{
		lj:   &lumberjack.Logger{Filename: path, MaxSize: l.lj.MaxSize, MaxBackups: l.lj.MaxBackups, Compress: l.lj.Compress},
		src:  l.src,
		ids:  l.ids,
		seen: l.seen,
	}
}

// Path is the live file.
func (l *AuditLog) Path() string { return l.lj.Filename }

// IDs are the auditIDs written, in order.
func (l *AuditLog) IDs() []string { return l.ids }

// Bytes is how many bytes were written.
func (l *AuditLog) Bytes() int64 { return l.bytes.Load() }

// Rotations is how many times lumberjack rotated the live file.
func (l *AuditLog) Rotations() int { return int(l.rotations.Load()) }

// Write appends one event.
func (l *AuditLog) Write() error {
	l.buf = l.src.Next(l.buf[:0])
	id, ok := AuditID(l.buf)
	if !ok {
		return fmt.Errorf("the corpus made a line without an auditID: %.200s", l.buf)
	}
	if l.seen[id] {
		return fmt.Errorf("the corpus repeated auditID %s", id)
	}
	l.seen[id] = true
	l.buf = append(l.buf, '\n')
	if l.size+int64(len(l.buf)) > rotateAt {
		// lumberjack names a backup after the rotation's millisecond: two
		// rotations within one would overwrite a backup and lose events
		// before the shipper could see them.
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

// WriteN appends n events as fast as it can.
func (l *AuditLog) WriteN(n int) error {
	for range n {
		if err := l.Write(); err != nil {
			return err
		}
	}
	return nil
}

// WriteRotations appends events until n more rotations have happened and
// the new live file holds at least one event.
func (l *AuditLog) WriteRotations(n int) error {
	want := l.rotations.Load() + int64(n)
	for l.rotations.Load() < want || l.size == 0 {
		if err := l.Write(); err != nil {
			return err
		}
	}
	return nil
}

// WriteBytes appends events until at least n bytes more were written.
func (l *AuditLog) WriteBytes(n int64) error {
	want := l.bytes.Load() + n
	for l.bytes.Load() < want {
		if err := l.Write(); err != nil {
			return err
		}
	}
	return nil
}

// WriteAt appends rate events a second, in bursts every 10ms, for d or
// until ctx is done.
func (l *AuditLog) WriteAt(ctx context.Context, rate int, d time.Duration) error {
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
			if err := l.Write(); err != nil {
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

// Close closes the live file and waits until lumberjack's background
// goroutine has finished: every backup compressed (with Compress) and at
// most MaxBackups kept (when it is not 0).
func (l *AuditLog) Close(t testing.TB) {
	t.Helper()
	if err := l.lj.Close(); err != nil {
		t.Errorf("closing the audit log writer: %v", err)
	}
	dir, name := filepath.Split(l.lj.Filename)
	ext := filepath.Ext(name)
	backups := filepath.Join(dir, name[:len(name)-len(ext)]+"-*"+ext)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		plain, err := filepath.Glob(backups)
		if err != nil {
			t.Fatal(err)
		}
		gz, err := filepath.Glob(backups + ".gz")
		if err != nil {
			t.Fatal(err)
		}
		compressed := !l.lj.Compress || len(plain) == 0
		pruned := l.lj.MaxBackups == 0 || len(plain)+len(gz) <= l.lj.MaxBackups
		if compressed && pruned {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lumberjack has not settled after 2 minutes: %d plain and %d compressed backups (MaxBackups %d, Compress %v)",
				len(plain), len(gz), l.lj.MaxBackups, l.lj.Compress)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
