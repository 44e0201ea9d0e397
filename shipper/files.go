package shipper

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
)

// fingerprintBytes is how much of a file's content names it. Every audit
// line starts with the same ~50 bytes, so a short prefix cannot tell two
// audit files apart; 1 KiB always reaches into the first event's auditID.
const fingerprintBytes = 1024

// backupTimeFormat is the timestamp lumberjack puts in a rotated file's
// name: audit.log becomes audit-2006-01-02T15-04-05.000.log.
const backupTimeFormat = "2006-01-02T15-04-05.000"

// FileID names one generation of the audit log by identity, never by name:
// rotation renames it, compression gives it a new inode but keeps its
// content, and copytruncate keeps the inode but replaces the content.
type FileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
	// FPLen is how many leading bytes of the (decompressed) content FP
	// covers; it grows with a young file up to fingerprintBytes.
	FPLen int    `json:"fp_len"`
	FP    string `json:"fp"`
}

// generation is one file of the audit log on disk: a rotated backup or the
// live file.
type generation struct {
	path       string
	compressed bool
	live       bool
	// rotatedAt is the rotation time lumberjack wrote in the name; zero for
	// the live file, which is always the newest.
	rotatedAt time.Time
	dev, ino  uint64
	size      int64
	modTime   time.Time
}

// listGenerations returns the audit log's generations oldest first: the
// backups by the time in their names, then the live file. A backup that
// exists both plain and gzipped is being compressed: the plain one is
// complete, the gzipped one may not be, so only the plain one is listed.
//
// A file renamed or removed while the directory is read (a rotation, a
// compression finishing) may be missed by that reading, so a listing that
// saw a file vanish is taken again.
func listGenerations(live string) ([]generation, error) {
	for range 4 {
		gens, vanished, err := readGenerations(live)
		if err != nil || !vanished {
			return gens, err
		}
	}
	gens, _, err := readGenerations(live)
	return gens, err
}

func readGenerations(live string) (gens []generation, vanished bool, err error) {
	dir := filepath.Dir(live)
	base := filepath.Base(live)
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext) + "-"
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("listing the audit log directory %q: %w", dir, err)
	}
	plain := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		g := generation{path: filepath.Join(dir, name)}
		switch {
		case name == base:
			g.live = true
		case strings.HasPrefix(name, prefix) && strings.HasSuffix(name, ext+".gz"):
			g.compressed = true
			fallthrough
		case strings.HasPrefix(name, prefix) && strings.HasSuffix(name, ext):
			ts := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".gz"), ext)
			t, err := time.Parse(backupTimeFormat, ts)
			if err != nil {
				continue // not one of lumberjack's backups
			}
			g.rotatedAt = t
			if !g.compressed {
				plain[ts] = true
			}
		default:
			continue
		}
		st, err := os.Stat(g.path)
		if err != nil {
			vanished = true
			continue
		}
		if !st.Mode().IsRegular() {
			continue
		}
		g.size, g.modTime = st.Size(), st.ModTime()
		g.dev, g.ino = devIno(st)
		gens = append(gens, g)
	}
	kept := gens[:0]
	for _, g := range gens {
		if g.compressed && plain[backupStamp(g, prefix, ext)] {
			continue
		}
		kept = append(kept, g)
	}
	sort.SliceStable(kept, func(i, j int) bool { return olderThan(kept[i], kept[j]) })
	return kept, vanished, nil
}

func backupStamp(g generation, prefix, ext string) string {
	name := strings.TrimSuffix(filepath.Base(g.path), ".gz")
	return strings.TrimSuffix(strings.TrimPrefix(name, prefix), ext)
}

func olderThan(a, b generation) bool {
	if a.live != b.live {
		return b.live
	}
	return a.rotatedAt.Before(b.rotatedAt)
}

func devIno(st fs.FileInfo) (dev, ino uint64) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), s.Ino
	}
	return 0, 0
}

// fingerprint hashes the first n bytes of content.
func fingerprint(prefix []byte) string {
	sum := sha256.Sum256(prefix)
	return hex.EncodeToString(sum[:16])
}

// readPrefix reads up to n bytes of a generation's content (decompressed),
// or fails with errRenamed when its name now stands for another file.
func readPrefix(g generation, n int) ([]byte, error) {
	f, err := os.Open(g.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The name may stand for another file by now (audit.log after a
	// rotation): the content must be the listed file's.
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if dev, ino := devIno(st); dev != g.dev || ino != g.ino {
		return nil, errRenamed
	}
	var r io.Reader = f
	if g.compressed {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("reading gzip header of %q: %w", g.path, err)
		}
		defer zr.Close()
		r = zr
	}
	buf, err := readUpTo(r, n)
	if err != nil {
		return nil, fmt.Errorf("reading the start of %q: %w", g.path, err)
	}
	return buf, nil
}

// readUpTo reads the first n bytes of r, or all of it when shorter.
func readUpTo(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, n)
	got, err := io.ReadFull(r, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:got], nil
}

// identities remembers the identity of each generation on disk, so that
// following a rotation does not reread (and decompress) the start of every
// backup. Owned by one cursor.
type identities map[identityKey]FileID

type identityKey struct {
	path     string
	dev, ino uint64
	size     int64
	modTime  time.Time
}

// of returns g's identity, reading its first bytes only when g is new or
// has changed. The key holds size and modification time too: an inode
// freed by a compressed or deleted backup comes back for a new audit.log,
// under the same name.
func (ids identities) of(g generation) (FileID, error) {
	k := identityKey{path: g.path, dev: g.dev, ino: g.ino, size: g.size, modTime: g.modTime}
	if id, ok := ids[k]; ok {
		return id, nil
	}
	prefix, err := readPrefix(g, fingerprintBytes)
	if err != nil {
		return FileID{}, err
	}
	id := FileID{Dev: g.dev, Ino: g.ino, FPLen: len(prefix), FP: fingerprint(prefix)}
	ids[k] = id
	return id, nil
}

// prune forgets generations no longer listed as they were.
func (ids identities) prune(gens []generation) {
	keep := make(map[identityKey]bool, len(gens))
	for _, g := range gens {
		keep[identityKey{path: g.path, dev: g.dev, ino: g.ino, size: g.size, modTime: g.modTime}] = true
	}
	for k := range ids {
		if !keep[k] {
			delete(ids, k)
		}
	}
}

// matches reports whether g holds the content id names. Plain files are
// matched by inode and content; a gzipped backup has a new inode, so it is
// matched by its decompressed content alone.
func (ids identities) matches(id FileID, g generation) bool {
	if !g.compressed && (g.dev != id.Dev || g.ino != id.Ino) {
		return false
	}
	if id.FPLen == 0 {
		return !g.compressed
	}
	have, err := ids.of(g)
	switch {
	case err != nil || have.FPLen < id.FPLen:
		return false
	case have.FPLen == id.FPLen:
		return have.FP == id.FP
	}
	// id was taken while the file was young: compare the same length.
	prefix, err := readPrefix(g, id.FPLen)
	return err == nil && id.sameContentStart(prefix)
}

// sameContentStart reports whether prefix still starts like the content id
// was taken from; false after copytruncate rewrote the file.
func (id FileID) sameContentStart(prefix []byte) bool {
	if len(prefix) < id.FPLen {
		return false
	}
	return fingerprint(prefix[:id.FPLen]) == id.FP
}

// locate returns the index of the generation id names, or -1.
func (ids identities) locate(gens []generation, id FileID) int {
	for i, g := range gens {
		if ids.matches(id, g) {
			return i
		}
	}
	return -1
}

// newerThan returns the index of the oldest generation that must have been
// written after a file last modified at mod, or -1. Used when the file a
// cursor was in is gone: a backup rotated before mod was finished before that
// file was written to. lumberjack's names keep milliseconds, so a tie counts
// as newer: reading a file twice is better than skipping one.
func newerThan(gens []generation, mod time.Time) int {
	cut := mod.Truncate(time.Millisecond)
	for i, g := range gens {
		if g.live || !g.rotatedAt.Before(cut) {
			return i
		}
	}
	return -1
}
