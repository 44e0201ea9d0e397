package acceptance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audit-shipper/audit-shipper/corpus"
)

func newEvents(seed int64) *corpus.Generator {
	return corpus.New(corpus.Options{Seed: seed})
}

var auditIDKey = []byte(`"auditID":"`)

// auditID returns the auditID of an audit Event line written in
// kube-apiserver's key order, where the event's own auditID comes before
// any nested object. It does not check that the line is whole.
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

// eventKey returns the auditID of a whole audit Event line, or an error for
// anything else (a torn fragment, another JSON value).
func eventKey(line []byte) (string, error) {
	if !json.Valid(line) {
		return "", errors.New("not a whole JSON value")
	}
	id, ok := auditID(line)
	if !ok || !bytes.HasPrefix(line, []byte(`{"kind":"Event",`)) {
		return "", errors.New("not an audit event")
	}
	return id, nil
}

// auditLog writes events the way kube-apiserver does: one Write per line
// through lumberjack, which rotates at 1 MB. It keeps the auditIDs in the
// order they were written.
type auditLog struct {
	lj  *lumberjack.Logger
	src *corpus.Generator
	buf []byte

	// size mirrors lumberjack's count of the live file so that rotations
	// are known before they happen.
	size      int64
	rotations int
	lastRot   time.Time

	ids   []string
	seen  map[string]bool
	bytes int64
}

const megabyte = 1024 * 1024

func newAuditLog(dir string, maxBackups int, compress bool, seed int64) *auditLog {
	return &auditLog{
		lj: &lumberjack.Logger{
			Filename:   filepath.Join(dir, "audit.log"),
			MaxSize:    1,
			MaxBackups: maxBackups,
			Compress:   compress,
		},
		src:  newEvents(seed),
		seen: make(map[string]bool),
	}
}

// write appends one event.
func (l *auditLog) write() error {
	l.buf = l.src.Next(l.buf[:0])
	id, ok := auditID(l.buf)
	if !ok {
		return fmt.Errorf("the corpus made a line without an auditID: %.200s", l.buf)
	}
	if l.seen[id] {
		return fmt.Errorf("the corpus repeated auditID %s", id)
	}
	l.seen[id] = true
	l.buf = append(l.buf, '\n')
	if l.size+int64(len(l.buf)) > megabyte {
		// lumberjack names a backup after the rotation's millisecond: two
		// rotations within one would overwrite a backup and lose events
		// before the shipper could see them.
		if d := 2*time.Millisecond - time.Since(l.lastRot); d > 0 {
			time.Sleep(d)
		}
		l.size = 0
		l.rotations++
		l.lastRot = time.Now()
	}
	if _, err := l.lj.Write(l.buf); err != nil {
		return fmt.Errorf("lumberjack write: %w", err)
	}
	l.size += int64(len(l.buf))
	l.bytes += int64(len(l.buf))
	l.ids = append(l.ids, id)
	return nil
}

// writeN appends n events.
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
	want := l.rotations + n
	for l.rotations < want || l.size == 0 {
		if err := l.write(); err != nil {
			return err
		}
	}
	return nil
}

// writeBytes appends events until at least n bytes more were written.
func (l *auditLog) writeBytes(n int64) error {
	want := l.bytes + n
	for l.bytes < want {
		if err := l.write(); err != nil {
			return err
		}
	}
	return nil
}

// close closes the live file and waits until lumberjack's background
// goroutine has finished: every backup compressed (with Compress) and at
// most MaxBackups kept.
func (l *auditLog) close(t *testing.T) {
	t.Helper()
	if err := l.lj.Close(); err != nil {
		t.Errorf("closing the audit log writer: %v", err)
	}
	dir := filepath.Dir(l.lj.Filename)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		plain, err := filepath.Glob(filepath.Join(dir, "audit-*.log"))
		if err != nil {
			t.Fatal(err)
		}
		gz, err := filepath.Glob(filepath.Join(dir, "audit-*.log.gz"))
		if err != nil {
			t.Fatal(err)
		}
		if (!l.lj.Compress || len(plain) == 0) && len(plain)+len(gz) <= l.lj.MaxBackups {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lumberjack has not settled after 2 minutes: %d plain and %d compressed backups (MaxBackups %d, Compress %v)",
				len(plain), len(gz), l.lj.MaxBackups, l.lj.Compress)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
