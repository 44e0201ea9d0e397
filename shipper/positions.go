package shipper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// positionsVersion is written into the positions file so that a later
// format can be told apart.
const positionsVersion = 1

type positionsFile struct {
	Version int                 `json:"version"`
	Sinks   map[string]Position `json:"sinks"`
}

// positionStore holds every sink's acknowledged position and writes them
// to one file atomically. The committers set, the saver writes: a mutex
// keeps the map whole between them.
type positionStore struct {
	path string

	mu    sync.Mutex
	pos   map[string]Position
	dirty bool
}

// loadPositions reads the positions file. A missing file means no sink has
// a position yet; a corrupt one is an error, never a silent start from the
// wrong place.
func loadPositions(path string) (*positionStore, error) {
	s := &positionStore{path: path, pos: map[string]Position{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading positions file %q: %w", path, err)
	}
	var f positionsFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != positionsVersion {
		if err == nil {
			err = fmt.Errorf("version %d, want %d", f.Version, positionsVersion)
		}
		return nil, fmt.Errorf("positions file %q is corrupt (%v); move it aside to start every sink again as source.start_at says, or restore it from a backup", path, err)
	}
	for name, p := range f.Sinks {
		if err := p.valid(); err != nil {
			return nil, fmt.Errorf("positions file %q is corrupt (sink %q: %v); move it aside to start every sink again as source.start_at says, or restore it from a backup", path, name, err)
		}
		s.pos[name] = p
	}
	return s, nil
}

// valid says what makes p impossible for the shipper to have written.
func (p Position) valid() error {
	if p.Offset < 0 || p.Size < 0 {
		return fmt.Errorf("negative offset %d or size %d", p.Offset, p.Size)
	}
	if err := p.File.valid(); err != nil {
		return err
	}
	for _, a := range p.Ahead {
		if err := a.File.valid(); err != nil {
			return fmt.Errorf("ahead %q: %w", a.Path, err)
		}
		if a.Size < 0 {
			return fmt.Errorf("ahead %q: negative size %d", a.Path, a.Size)
		}
	}
	return nil
}

func (id FileID) valid() error {
	// A fingerprint that matches no file is not corrupt: the generation
	// is gone, which resume counts and recovers from.
	if id.FPLen < 0 || id.FPLen > fingerprintBytes {
		return fmt.Errorf("fingerprint length %d, want 0 to %d", id.FPLen, fingerprintBytes)
	}
	return nil
}

func (s *positionStore) get(sink string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pos[sink]
	return p, ok
}

func (s *positionStore) set(sink string, p Position) {
	s.mu.Lock()
	s.pos[sink] = p
	s.dirty = true
	s.mu.Unlock()
}

// save writes the positions if they changed: to a temporary file, synced,
// renamed over the old one, and the directory synced, so that a crash
// leaves either the old file or the new one, whole.
func (s *positionStore) save() error {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	f := positionsFile{Version: positionsVersion, Sinks: make(map[string]Position, len(s.pos))}
	for k, v := range s.pos {
		f.Sinks[k] = v
	}
	s.dirty = false
	s.mu.Unlock()

	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding positions: %w", err)
	}
	if err := writeAtomic(s.path, append(b, '\n')); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return err
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("creating the positions directory %q: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing positions next to %q: %w; the directory must be writable", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing positions to %q: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing positions to %q: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %q: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing positions file %q: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %q to sync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %q: %w", dir, err)
	}
	return nil
}
