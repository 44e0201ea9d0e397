package shipper

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

// deadLetter is one line no sink could take, with why.
type deadLetter struct {
	Time   time.Time `json:"time"`
	Sink   string    `json:"sink"`
	File   string    `json:"file"`
	Offset int64     `json:"offset"`
	Length int64     `json:"length"`
	Reason string    `json:"reason"`
	Error  string    `json:"error"`
	// Line is the line when it is valid UTF-8; LineBase64 otherwise, so
	// that every byte is kept.
	Line       *string `json:"line,omitempty"`
	LineBase64 string  `json:"line_base64,omitempty"`
	Truncated  bool    `json:"truncated,omitempty"`
}

// maxDeadLetterLine bounds how much of one line the dead-letter file keeps;
// past it the record says truncated and still gives the whole length.
const maxDeadLetterLine = 256 << 20

// deadLetters appends records to the dead-letter file. Every sink's reader
// and sender writes here, so a mutex keeps records whole. Each record is
// in the file (the page cache) when its write returns: a caller whose write
// failed keeps its position and tries again, so no record is reported
// written and then dropped. sync makes them durable before positions are
// saved.
type deadLetters struct {
	path string

	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer // over f, flushed at the end of every record
	// torn is set when a write failed part-way (a full disk): the next
	// record starts on a new line, so the fragment stands alone.
	torn bool
}

// begin readies the writer for a record, after a failed one if need be.
// Called with mu held.
func (d *deadLetters) begin() {
	if d.torn {
		d.w.WriteByte('\n')
		d.torn = false
	}
}

// end flushes the record to the file, or forgets it: bufio.Writer keeps
// its first error forever, so a new one takes its place, and the next
// record starts on a line of its own. Called with mu held.
func (d *deadLetters) end(err error) error {
	if err == nil {
		err = d.w.Flush()
	}
	if err != nil {
		d.w = bufio.NewWriterSize(d.f, 64<<10)
		d.torn = true
		return fmt.Errorf("writing to dead-letter file %q: %w", d.path, err)
	}
	return nil
}

func openDeadLetters(path string) (*deadLetters, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("creating the dead-letter directory for %q: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening dead-letter file %q: %w; set dead_letter.path to a writable file", path, err)
	}
	return &deadLetters{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// write appends one record for a line held whole in memory.
func (d *deadLetters) write(rec deadLetter, line []byte) error {
	rec.Length = int64(len(line))
	if utf8.Valid(line) {
		s := string(line)
		rec.Line = &s
	} else {
		rec.LineBase64 = base64.StdEncoding.EncodeToString(line)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding a dead letter: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.begin()
	_, err = d.w.Write(append(b, '\n'))
	return d.end(err)
}

// stream appends one record for a line too long to hold in memory: head is
// its start, and rest is called until it reports the line ended, writing
// the remaining bytes to the writer it is given. The line is spilled to a
// temporary file beside the dead-letter file (up to maxDeadLetterLine
// bytes), then copied into the record: as a string when it is valid UTF-8
// and whole, as base64 otherwise.
func (d *deadLetters) stream(rec deadLetter, head []byte, rest func(io.Writer) (bool, error)) error {
	spill, err := os.CreateTemp(filepath.Dir(d.path), ".dead-letter-line-*")
	if err != nil {
		return fmt.Errorf("spilling an over-long line next to %q: %w", d.path, err)
	}
	defer os.Remove(spill.Name())
	defer spill.Close()
	bw := bufio.NewWriterSize(spill, 256<<10)
	cw := &cappedWriter{w: bw, room: maxDeadLetterLine}
	cw.Write(head)
	for {
		ended, err := rest(cw)
		if err != nil {
			return err
		}
		if ended {
			break
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("spilling an over-long line to %q: %w", spill.Name(), err)
	}
	rec.Length = cw.n
	rec.Truncated = cw.n > maxDeadLetterLine
	text := !rec.Truncated
	if text {
		if text, err = validUTF8(spill); err != nil {
			return err
		}
	}
	if _, err := spill.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rereading %q: %w", spill.Name(), err)
	}
	hdr, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding a dead letter: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The record without its closing brace, then the line, then the brace.
	d.begin()
	d.w.Write(hdr[:len(hdr)-1])
	if text {
		d.w.WriteString(`,"line":"`)
		err = copyEscaped(d.w, spill)
	} else {
		d.w.WriteString(`,"line_base64":"`)
		enc := base64.NewEncoder(base64.StdEncoding, d.w)
		_, err = io.Copy(enc, spill)
		if err == nil {
			err = enc.Close()
		}
	}
	if err == nil {
		_, err = d.w.WriteString("\"}\n")
	}
	return d.end(err)
}

// validUTF8 reads r from its start and reports whether it is valid UTF-8.
func validUTF8(f *os.File) (bool, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, fmt.Errorf("rereading %q: %w", f.Name(), err)
	}
	br := bufio.NewReaderSize(f, 256<<10)
	for {
		r, size, err := br.ReadRune()
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("rereading %q: %w", f.Name(), err)
		}
		if r == utf8.RuneError && size == 1 {
			return false, nil
		}
	}
}

// copyEscaped copies valid UTF-8 from r to w as the inside of a JSON
// string. Only ASCII bytes need escaping, so multi-byte runes split across
// reads pass through intact.
func copyEscaped(w *bufio.Writer, r io.Reader) error {
	const hex = "0123456789abcdef"
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			switch {
			case c == '"' || c == '\\':
				w.WriteByte('\\')
				w.WriteByte(c)
			case c < 0x20:
				w.WriteString(`\u00`)
				w.WriteByte(hex[c>>4])
				w.WriteByte(hex[c&0xf])
			default:
				w.WriteByte(c)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// cappedWriter passes on at most room bytes and counts them all.
type cappedWriter struct {
	w    io.Writer
	room int64
	n    int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.room > 0 {
		k := min(int64(len(p)), c.room)
		c.room -= k
		if _, err := c.w.Write(p[:k]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// sync makes every record written so far durable; the saver calls it
// before a position that depends on those records is saved.
func (d *deadLetters) sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.w.Flush(); err != nil {
		return d.end(err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("syncing dead-letter file %q: %w", d.path, err)
	}
	return nil
}

func (d *deadLetters) close() error {
	if err := d.sync(); err != nil {
		d.f.Close()
		return err
	}
	return d.f.Close()
}
