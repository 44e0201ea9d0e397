package shipper

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/klauspost/compress/gzip"
)

var (
	// errWait: the open generation has no complete line yet and may grow.
	errWait = errors.New("no complete line yet")
	// errDone: the open generation was read to its end and will not grow.
	errDone = errors.New("generation finished")
	// errTruncated: the open file was truncated in place (copytruncate);
	// the cursor now reads it again from its start.
	errTruncated = errors.New("file truncated in place")
)

// Position is where a sink's cursor stands: the generation, known by
// identity, and the content offset below which everything was acknowledged.
type Position struct {
	File FileID `json:"file"`
	// Path is the generation's name when last seen, for messages only.
	Path   string `json:"path"`
	Offset int64  `json:"offset"`
	// Size and ModTime are the generation's as last seen: what is lost if it
	// is deleted unread, and where it stood among the backups.
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	// Final says the generation could not grow any more (it had been
	// rotated): at its end, nothing of it is left to lose.
	Final bool `json:"final,omitempty"`
	// Ahead are the newer generations seen on disk and not read yet, so
	// that one deleted before it was read is counted, even across restarts.
	Ahead []FileRef `json:"ahead,omitempty"`
}

// FileRef is a generation seen on disk.
type FileRef struct {
	File FileID `json:"file"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	// Missing is when it was first missed from a listing; a loss is
	// reported only when it stays missing.
	Missing time.Time `json:"missing,omitzero"`
}

// cursor reads one sink's way through the generations of the audit log, in
// order, each to its end. It is not safe for concurrent use: the sink's
// reader goroutine owns it.
type cursor struct {
	live    string
	maxLine int
	log     *slog.Logger

	f     *os.File
	r     io.Reader // f, or a gzip reader over it
	zr    *gzip.Reader
	gen   generation
	id    FileID
	final bool // the generation cannot grow: read it to EOF, then advance
	// waited is set when next last found no more data: before it reads
	// again it checks that the file was not truncated meanwhile.
	waited bool

	readPos int64 // content bytes taken from the file into buf
	buf     []byte
	// longAt is readPos when a line that needs more than keptBuffer was
	// last met, and shrinkAfter how much is read after that before buf
	// may shrink.
	longAt, shrinkAfter int64
	start, end          int // buf[start:end] is read and not yet returned

	ahead []FileRef
	ids   identities
}

func newCursor(live string, maxLine int, log *slog.Logger) *cursor {
	// The buffer holds up to maxLine+1 bytes: a line of exactly maxLine
	// bytes is still seen whole, with its newline.
	return &cursor{live: live, maxLine: maxLine, log: log, buf: make([]byte, min(readSize, maxLine+1)), shrinkAfter: shrinkAfter, ids: identities{}}
}

const (
	// readSize is the cursor's buffer, and so its largest read, while
	// lines are shorter.
	readSize = 64 << 10
	// keptBuffer is the largest buffer kept for good. One grown past it by
	// a long line goes back to readSize once shrinkAfter bytes have been
	// read since the last such line: a few events of max_line_bytes would
	// otherwise hold that much in each sink's cursor for good, and
	// shrinking it after every one (the corpus has one every 5 MB) would
	// allocate it again each time.
	keptBuffer  = 256 << 10
	shrinkAfter = 64 << 20
)

// list lists the generations on disk and forgets the identities of those
// gone.
func (c *cursor) list() ([]generation, error) {
	gens, err := listGenerations(c.live)
	if err == nil {
		c.ids.prune(gens)
	}
	return gens, err
}

// offset is the content offset of the next byte not yet returned.
func (c *cursor) offset() int64 { return c.readPos - int64(c.end-c.start) }

// position describes where the cursor stands after everything returned so
// far (or at off, a content offset in the open generation).
func (c *cursor) position(off int64) Position {
	return Position{File: c.id, Path: c.gen.path, Offset: off, Size: c.gen.size, ModTime: c.gen.modTime, Final: c.final, Ahead: c.ahead}
}

// open opens g and positions the cursor at the content offset off. The
// generation open so far stays open until g is ready, so a failure leaves
// the cursor as it was.
func (c *cursor) open(g generation, off int64) error {
	f, err := os.Open(g.path)
	if err != nil {
		return fmt.Errorf("opening audit log generation %q: %w", g.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("inspecting %q: %w", g.path, err)
	}
	if dev, ino := devIno(st); dev != g.dev || ino != g.ino {
		f.Close()
		return errRenamed
	}
	id, r, zr, err := position(f, g, off)
	if err != nil {
		f.Close()
		return err
	}
	c.close()
	c.f, c.r, c.zr, c.gen, c.id, c.final = f, r, zr, g, id, !g.live
	c.start, c.end, c.readPos = 0, 0, off
	return nil
}

// position takes the identity of the generation open as f, from f itself
// (its name may stand for another file by now), and readies a reader at the
// content offset off.
func position(f *os.File, g generation, off int64) (FileID, io.Reader, *gzip.Reader, error) {
	var prefix []byte
	if g.compressed {
		zr, err := gzip.NewReader(io.NewSectionReader(f, 0, 1<<62))
		if err != nil {
			return FileID{}, nil, nil, fmt.Errorf("reading gzip backup %q: %w", g.path, err)
		}
		prefix, err = readUpTo(zr, fingerprintBytes)
		zr.Close()
		if err != nil {
			return FileID{}, nil, nil, fmt.Errorf("reading the start of %q: %w", g.path, err)
		}
	} else {
		prefix = make([]byte, fingerprintBytes)
		n, err := f.ReadAt(prefix, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			return FileID{}, nil, nil, fmt.Errorf("reading the start of %q: %w", g.path, err)
		}
		prefix = prefix[:n]
	}
	id := FileID{Dev: g.dev, Ino: g.ino, FPLen: len(prefix), FP: fingerprint(prefix)}
	if !g.compressed {
		if st, err := f.Stat(); err == nil && off > st.Size() {
			return FileID{}, nil, nil, errPastEnd
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return FileID{}, nil, nil, fmt.Errorf("seeking to offset %d of %q: %w", off, g.path, err)
		}
		return id, f, nil, nil
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return FileID{}, nil, nil, fmt.Errorf("reading gzip backup %q: %w", g.path, err)
	}
	if _, err := io.CopyN(io.Discard, zr, off); err != nil {
		zr.Close()
		if errors.Is(err, io.EOF) {
			return FileID{}, nil, nil, errPastEnd
		}
		return FileID{}, nil, nil, fmt.Errorf("skipping to offset %d of %q: %w", off, g.path, err)
	}
	return id, zr, zr, nil
}

// errRenamed: the path named another file by the time it was opened.
var errRenamed = errors.New("file replaced while opening it")

// errPastEnd: a saved offset lies past the end of its generation.
var errPastEnd = errors.New("offset past the end of the file")

func (c *cursor) close() {
	if c.zr != nil {
		c.zr.Close()
		c.zr = nil
	}
	if c.f != nil {
		c.f.Close()
		c.f, c.r = nil, nil
	}
}

// fill reads more of the open generation into buf.
func (c *cursor) fill() (int, error) {
	if len(c.buf) > keptBuffer && c.readPos-c.longAt > c.shrinkAfter {
		c.shrink()
	}
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	if c.end == len(c.buf) {
		c.buf = append(c.buf, make([]byte, min(len(c.buf), c.maxLine+1-len(c.buf)))...)
	}
	n, err := c.r.Read(c.buf[c.end:])
	c.end += n
	c.readPos += int64(n)
	return n, err
}

// shrink puts buf back to readSize when it is larger and what it holds
// unread fits.
func (c *cursor) shrink() {
	if len(c.buf) > readSize && c.end-c.start <= readSize {
		buf := make([]byte, readSize)
		c.end = copy(buf, c.buf[c.start:c.end])
		c.start = 0
		c.buf = buf
	}
}

// next returns the next line of the open generation, without its newline,
// and the content offset it starts at. The line is valid until the next
// call. A line longer than maxLine comes back as its first bytes with
// tooLong set; the caller then takes the rest with rest. next returns
// errWait when no complete line is there yet and the file may grow, and
// errDone when the generation has been read to its end and will not grow
// (an unterminated last line of a finished generation is returned as a
// line first).
func (c *cursor) next() (line []byte, off int64, tooLong bool, err error) {
	for {
		if i := bytes.IndexByte(c.buf[c.start:c.end], '\n'); i >= 0 {
			if i >= keptBuffer {
				c.longAt = c.readPos
			}
			off = c.offset()
			line = c.buf[c.start : c.start+i]
			c.start += i + 1
			return line, off, false, nil
		}
		if c.end-c.start > c.maxLine {
			c.longAt = c.readPos
			off = c.offset()
			line = c.buf[c.start : c.start+c.maxLine]
			c.start += c.maxLine
			return line, off, true, nil
		}
		if c.waited {
			// The file may have been truncated and rewritten while the
			// reader waited: never read on from the old offset.
			c.waited = false
			if c.truncated() {
				if err := c.restart(); err != nil {
					return nil, 0, false, err
				}
				return nil, 0, false, errTruncated
			}
		}
		n, rerr := c.fill()
		if n > 0 {
			continue
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return nil, 0, false, fmt.Errorf("reading %q at offset %d: %w", c.gen.path, c.readPos, rerr)
		}
		if !c.final {
			c.waited = true
			return nil, 0, false, errWait
		}
		if c.start < c.end {
			off = c.offset()
			line = c.buf[c.start:c.end]
			c.start = c.end
			return line, off, false, nil
		}
		return nil, 0, false, errDone
	}
}

// rest writes the remainder of a line longer than maxLine to w, up to and
// without its newline, and reports whether the line has ended. At the end of
// data it returns errWait (the line goes on when the file grows).
func (c *cursor) rest(w io.Writer) (ended bool, err error) {
	for {
		chunk := c.buf[c.start:c.end]
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			_, err := w.Write(chunk[:i])
			c.start += i + 1
			return true, err
		}
		if _, err := w.Write(chunk); err != nil {
			return false, err
		}
		c.start = c.end
		n, rerr := c.fill()
		if n > 0 {
			continue
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return false, fmt.Errorf("reading %q at offset %d: %w", c.gen.path, c.readPos, rerr)
		}
		if c.final {
			return true, nil
		}
		return false, errWait
	}
}

// check runs when the open generation has no more data. It finds out
// whether the file was rotated away: then it is final, and what was written
// before the rename is still read, to the end. It stats the open
// descriptor, not the path, and compares identities, so a re-created
// audit.log is never taken for a truncation of the old one. (Truncation in
// place is found by next, right before it reads again.)
func (c *cursor) check() error {
	if c.final {
		return nil
	}
	st, err := c.f.Stat()
	if err != nil {
		return fmt.Errorf("inspecting open file %q: %w", c.gen.path, err)
	}
	c.gen.size, c.gen.modTime = st.Size(), st.ModTime()
	if c.id.FPLen < fingerprintBytes && st.Size() > int64(c.id.FPLen) {
		c.refingerprint()
	}
	lst, err := os.Stat(c.live)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// audit.log deleted by hand: the apiserver may still write to the
		// open file until it rotates, so keep following it.
	case err != nil:
		return fmt.Errorf("inspecting %q: %w", c.live, err)
	default:
		if dev, ino := devIno(lst); dev != c.id.Dev || ino != c.id.Ino {
			c.final = true
			// Renamed: no more writes. Its size now is its final size.
			if st, err := c.f.Stat(); err == nil {
				c.gen.size, c.gen.modTime = st.Size(), st.ModTime()
			}
		}
	}
	return nil
}

// truncated reports whether the open live file is shorter than what was
// read of it, or no longer starts with the bytes its identity was taken
// from: truncated in place, perhaps rewritten past the old offset.
func (c *cursor) truncated() bool {
	if c.final || c.gen.compressed {
		return false
	}
	st, err := c.f.Stat()
	if err != nil {
		return false
	}
	return st.Size() < c.readPos || !c.startUnchanged()
}

// startUnchanged reports whether the open file still begins with the bytes
// its identity was taken from.
func (c *cursor) startUnchanged() bool {
	if c.id.FPLen == 0 {
		return true
	}
	prefix := make([]byte, c.id.FPLen)
	n, _ := c.f.ReadAt(prefix, 0)
	return c.id.sameContentStart(prefix[:n])
}

func (c *cursor) refingerprint() {
	prefix := make([]byte, fingerprintBytes)
	n, _ := c.f.ReadAt(prefix, 0)
	if n > c.id.FPLen && c.id.sameContentStart(prefix[:n]) {
		c.id.FPLen, c.id.FP = n, fingerprint(prefix[:n])
	}
}

// restart rereads a file truncated in place from its start. What was
// appended after the last read and before the truncation cannot be known.
func (c *cursor) restart() error {
	c.log.Warn("audit log truncated in place (copytruncate?); reading it again from the start",
		"file", c.gen.path, "offset", c.readPos, "size", c.gen.size)
	g := c.gen
	return c.open(g, 0)
}

// resume opens the generation a saved position names, at its offset. When
// that generation is gone it returns the position's unread bytes as lost
// and opens the next newer generation instead.
func (c *cursor) resume(p Position) (lost []FileRef, err error) {
	gens, err := c.list()
	if err != nil {
		return nil, err
	}
	c.ahead = p.Ahead
	if i := c.ids.locate(gens, p.File); i >= 0 {
		err := c.open(gens[i], p.Offset)
		if errors.Is(err, errPastEnd) {
			// The positions do not match the disk (restored from another
			// machine, edited): read the generation again rather than skip
			// what may be in it.
			c.log.Warn("saved position is past the end of its audit log generation; reading the generation again from its start (duplicates, not losses)",
				"file", gens[i].path, "offset", p.Offset)
			err = c.open(gens[i], 0)
		}
		if err != nil {
			return nil, err
		}
		return c.survey(gens, i), nil
	}
	// Gone. Finished and read to its end, nothing of it is lost; else
	// bytes written to it after the last save cannot be known, so the
	// count is a floor.
	if !p.Final || p.Offset < p.Size {
		lost = append(lost, FileRef{File: p.File, Path: p.Path, Size: max(p.Size-p.Offset, 0)})
	}
	c.gen = generation{path: p.Path, modTime: p.ModTime}
	c.id = p.File
	more, err := c.openNewer(gens, newerThan(gens, p.ModTime))
	return append(lost, more...), err
}

// startAt opens the first generation for a sink with no saved position:
// the oldest on disk ("beginning") or the end of the live file ("end").
// It returns errWait while there is no audit log at all.
func (c *cursor) startAt(where string) error {
	gens, err := c.list()
	if err != nil {
		return err
	}
	if len(gens) == 0 {
		return errWait
	}
	g, off := gens[0], int64(0)
	if where == "end" {
		g = gens[len(gens)-1]
		if g.live {
			off = g.size
		}
	}
	if err := c.open(g, off); err != nil {
		return err
	}
	if where == "end" {
		c.survey(gens, len(gens)-1)
	} else {
		c.survey(gens, 0)
	}
	return nil
}

// advance closes the finished generation and opens the next newer one. It
// returns errWait when there is none yet, and the generations that were
// deleted before they could be read.
//
// A directory read while a file is renamed may miss that file (the rename
// of audit.log to its backup name, exactly what rotation does), and the
// successor it then picks would skip a whole generation. So the successor
// is taken only when a second, later listing agrees on it.
func (c *cursor) advance() (lost []FileRef, err error) {
	gens, next, err := c.successor()
	for range 8 {
		if err != nil || next < 0 || next >= len(gens) {
			break
		}
		again, next2, err2 := c.successor()
		if err2 == nil && next2 >= 0 && next2 < len(again) && c.ids.matches(c.identity(gens[next]), again[next2]) {
			break
		}
		gens, next, err = again, next2, err2
	}
	if err != nil {
		return nil, err
	}
	return c.openNewer(gens, next)
}

// successor lists the generations and finds the one after the open one.
func (c *cursor) successor() ([]generation, int, error) {
	gens, err := c.list()
	if err != nil {
		return nil, -1, err
	}
	i := c.ids.locate(gens, c.id)
	if i < 0 {
		return gens, newerThan(gens, c.gen.modTime), nil
	}
	c.log.Debug("advancing", "from", c.gen.path, "located", i, "generations", len(gens))
	return gens, i + 1, nil
}

// identity is g's identity, or a zero one that matches nothing compressed.
func (c *cursor) identity(g generation) FileID {
	id, err := c.ids.of(g)
	if err != nil {
		return FileID{Dev: g.dev, Ino: g.ino}
	}
	return id
}

func (c *cursor) openNewer(gens []generation, next int) ([]FileRef, error) {
	if next < 0 || next >= len(gens) {
		return nil, errWait
	}
	if err := c.open(gens[next], 0); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errRenamed // rotated or compressed since the listing
		}
		return nil, err
	}
	return c.survey(gens, next), nil
}

// confirmLoss is how long a generation must stay missing from the
// listings before it is reported lost: a listing taken during a rename or a
// compression may miss a file that is still there.
const confirmLoss = time.Second

// survey remembers the generations newer than the open one (gens[cur]),
// and returns those remembered before that have been gone for confirmLoss.
func (c *cursor) survey(gens []generation, cur int) (lost []FileRef) {
	now := time.Now()
	var missing []FileRef
	for _, a := range c.ahead {
		if a.File.FPLen == 0 || c.ids.matches(a.File, c.gen) || c.ids.locate(gens, a.File) >= 0 {
			// Present, or empty when seen: nothing known of it can be lost.
			continue
		}
		switch {
		case a.Missing.IsZero():
			a.Missing = now
			missing = append(missing, a)
		case now.Sub(a.Missing) < confirmLoss:
			missing = append(missing, a)
		default:
			lost = append(lost, a)
		}
	}
	c.ahead = missing
	for _, g := range gens[cur+1:] {
		if id, err := c.ids.of(g); err == nil {
			c.ahead = append(c.ahead, FileRef{File: id, Path: g.path, Size: g.size})
		}
	}
	return lost
}

// resurvey refreshes what lies ahead of the open generation; a reader that
// is far behind calls it now and then, so that a generation rotated in and
// deleted again while it read is still counted.
func (c *cursor) resurvey() ([]FileRef, error) {
	gens, err := c.list()
	if err != nil {
		return nil, err
	}
	i := c.ids.locate(gens, c.id)
	if i < 0 {
		// The open generation was deleted from under us: every listed one
		// is newer (we hold it open and finish it regardless).
		i = newerThan(gens, c.gen.modTime) - 1
		if i < -1 {
			i = len(gens) - 1
		}
	}
	return c.survey(gens, i), nil
}
