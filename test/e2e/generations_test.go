package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// archiver keeps a hard link to every generation of the audit log. The
// apiserver deletes backups beyond --audit-log-maxbackup (and, with
// --audit-log-compress, replaces each plain backup by a gzipped copy), so
// at the end of a run its directory no longer holds everything it wrote.
// A hard link taken while a generation is still the live audit.log keeps
// that file's inode, and so every byte written to it, whatever the
// apiserver renames or deletes later. The links live in another directory,
// which the shipper never looks at, and change nothing it can see: it
// knows files by device, inode and content, not by link count.
type archiver struct {
	auditDir, dir string
	stop, done    chan struct{}

	mu     sync.Mutex // guards the fields below, written by the polling goroutine
	inodes map[uint64]string
	err    error
}

// pollEvery is far shorter than the time the apiserver takes to fill a
// 1 MiB generation and rotate it, so no generation can be born and
// renamed between two looks.
const pollEvery = 20 * time.Millisecond

func startArchiver(auditDir, dir string) *archiver {
	a := &archiver{auditDir: auditDir, dir: dir, stop: make(chan struct{}), done: make(chan struct{}), inodes: map[uint64]string{}}
	go func() {
		defer close(a.done)
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		for {
			if err := a.pass(); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
				return
			}
			select {
			case <-a.stop:
				return
			case <-t.C:
			}
		}
	}()
	return a
}

// pass links each plain generation (audit.log, audit-*.log) not linked yet.
func (a *archiver) pass() error {
	entries, err := os.ReadDir(a.auditDir)
	if err != nil {
		return fmt.Errorf("listing %s: %w", a.auditDir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if name != "audit.log" && !(strings.HasPrefix(name, "audit-") && strings.HasSuffix(name, ".log")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // renamed or deleted since the listing: the next pass sees it
		}
		if a.known(info) {
			continue
		}
		// Link first and ask the link which inode it got: the name may
		// have moved to another file since the listing.
		tmp := filepath.Join(a.dir, "linking")
		if err := os.Link(filepath.Join(a.auditDir, name), tmp); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("linking %s: %w", name, err)
		}
		linked, err := os.Stat(tmp)
		if err != nil {
			return err
		}
		ino := inode(linked)
		a.mu.Lock()
		_, dup := a.inodes[ino]
		final := filepath.Join(a.dir, fmt.Sprintf("generation-%03d-inode-%d.log", len(a.inodes), ino))
		if !dup {
			a.inodes[ino] = final
		}
		a.mu.Unlock()
		if dup {
			err = os.Remove(tmp)
		} else {
			err = os.Rename(tmp, final)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *archiver) known(info fs.FileInfo) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.inodes[inode(info)]
	return ok
}

func inode(info fs.FileInfo) uint64 { return info.Sys().(*syscall.Stat_t).Ino }

// generations is how many generations have been seen so far.
func (a *archiver) generations() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.inodes)
}

// close stops polling after one last pass, once the apiserver has stopped,
// and returns the archived files.
func (a *archiver) close() ([]string, error) {
	close(a.stop)
	<-a.done
	if a.err != nil { // the goroutine that wrote it is done
		return nil, a.err
	}
	if err := a.pass(); err != nil {
		return nil, err
	}
	files := make([]string, 0, len(a.inodes))
	for _, f := range a.inodes {
		files = append(files, f)
	}
	return files, nil
}

// key names one audit event line: an auditID has one line per stage.
type key struct{ auditID, stage string }

// eventKey reads the auditID and stage of an audit line.
func eventKey(line []byte) (key, error) {
	var ev struct {
		Kind    string `json:"kind"`
		AuditID string `json:"auditID"`
		Stage   string `json:"stage"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return key{}, err
	}
	if ev.Kind != "Event" || ev.AuditID == "" || ev.Stage == "" {
		return key{}, fmt.Errorf("not an audit event (kind %q, auditID %q, stage %q)", ev.Kind, ev.AuditID, ev.Stage)
	}
	return key{ev.AuditID, ev.Stage}, nil
}

// written is everything the apiserver wrote in one run.
type written struct {
	events      map[key]int // lines per (auditID, stage); 1 each
	lines       int
	bytes       int64
	generations int // plain generations read (rotations = generations - 1)
	gzipped     int // .gz backups on disk at the end, each matched to a generation
	plainOnDisk int // plain backups on disk at the end
	leaks       leaks
}

// readWritten reads every archived generation, and every gzipped backup
// still on disk, which must decompress to exactly one of the generations
// (the apiserver's compression must not change a byte).
func readWritten(files []string, auditDir string) (*written, error) {
	w := &written{events: map[key]int{}, leaks: leaks{lines: map[string]int{}}}
	sums := map[[32]byte]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		sums[sha256.Sum256(b)] = true
		w.generations++
		w.bytes += int64(len(b))
		if err := w.add(f, b); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(auditDir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".log.gz"):
			b, err := gunzip(filepath.Join(auditDir, name))
			if err != nil {
				// lumberjack writes the .gz in place and removes the
				// plain backup when it is done; a stop in between leaves
				// both, and the plain one was archived.
				if _, plain := os.Stat(filepath.Join(auditDir, strings.TrimSuffix(name, ".gz"))); plain == nil {
					w.plainOnDisk++
					continue
				}
				return nil, err
			}
			if !sums[sha256.Sum256(b)] {
				return nil, fmt.Errorf("%s decompresses to %d bytes that match no generation the apiserver wrote: a generation was missed", name, len(b))
			}
			w.gzipped++
		case strings.HasPrefix(name, "audit-") && strings.HasSuffix(name, ".log"):
			w.plainOnDisk++
		}
	}
	return w, nil
}

func (w *written) add(file string, b []byte) error {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return fmt.Errorf("%s does not end with a newline: the apiserver left a torn line", file)
	}
	l, err := scanLeaks(bytes.NewReader(b))
	if err != nil {
		return err
	}
	for name, n := range l.lines {
		w.leaks.lines[name] += n
	}
	if len(b) == 0 {
		return nil
	}
	for i, line := range bytes.Split(b[:len(b)-1], []byte("\n")) {
		k, err := eventKey(line)
		if err != nil {
			return fmt.Errorf("%s line %d: %w", file, i+1, err)
		}
		w.events[k]++
		w.lines++
	}
	return nil
}

func gunzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}
