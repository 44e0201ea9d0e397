// Package file is the embedded default sink: each event as one line of
// NDJSON, appended to a file or written to standard output.
package file

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// Config is the file sink's own keys.
type Config struct {
	// Path is the output file; "-" is standard output.
	Path string `yaml:"path"`
	// Fsync syncs the file before a batch is acknowledged (default true),
	// so that an acknowledged event survives a machine crash too.
	Fsync bool `yaml:"fsync"`
}

// Sink appends records to a file. Batches arrive one at a time (Ordered),
// so the file keeps the audit log's order.
type Sink struct {
	path  string
	fsync bool

	mu  sync.Mutex // one Send at a time writes
	w   io.Writer
	f   *os.File // nil for stdout
	buf []byte
}

var _ sinks.Sink = (*Sink)(nil)

// New builds a file sink from its config entry. It opens the file, so that
// a path that cannot be written fails at start.
func New(sec *config.Sink, env sinks.Env) (*Sink, error) {
	cfg := Config{Fsync: true}
	if err := sec.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.Path == "" {
		return nil, sec.Errorf("path", `path is missing; set it to the output file, or "-" for standard output`)
	}
	s := &Sink{path: cfg.Path, fsync: cfg.Fsync}
	if cfg.Path == "-" {
		s.w, s.fsync = os.Stdout, false
		return s, nil
	}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, sec.Errorf("path", "cannot open %q for appending: %v; choose a writable path", cfg.Path, err)
	}
	if err := endLine(f); err != nil {
		f.Close()
		return nil, sec.Errorf("path", "cannot prepare %q: %v", cfg.Path, err)
	}
	s.w, s.f = f, f
	return s, nil
}

// endLine writes a newline when the file ends in a torn line (a crash in
// the middle of a write), so that the fragment stands alone and the next
// event starts on a line of its own.
func endLine(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, st.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	_, err = f.Write([]byte{'\n'})
	return err
}

// Ordered keeps batches in file order: the shipper sends one at a time.
func (s *Sink) Ordered() bool { return true }

// Send writes the batch with one write call, then syncs.
func (s *Sink) Send(ctx context.Context, recs []sinks.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = s.buf[:0]
	for _, r := range recs {
		s.buf = append(s.buf, r.Line...)
		s.buf = append(s.buf, '\n')
	}
	if _, err := s.w.Write(s.buf); err != nil {
		return sinks.Retryable(fmt.Errorf("writing to %q: %w", s.path, err), 0)
	}
	if s.fsync {
		if err := s.f.Sync(); err != nil {
			return sinks.Retryable(fmt.Errorf("syncing %q: %w", s.path, err), 0)
		}
	}
	return nil
}

// Close closes the file.
func (s *Sink) Close() error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}
