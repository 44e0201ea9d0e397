package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"

	"github.com/audit-shipper/audit-shipper/parse"
)

// The floors: the least work any shipper of a path must do with the same
// bytes. Each runs in a child process of its own (this program, with
// floorArg first), so that its CPU time and peak RSS are measured the
// way the shipper's are: for that process alone.
const (
	floorCat = "cat" // read from the page cache: cat > /dev/null
	// read + snappy (Loki's push compression), with the fastest snappy
	// encoder there is, the loki sink's own (s2's snappy-compatible mode)
	floorSnappy = "snappy"
	floorGzip   = "gzip"        // read + gzip level 1 (the elasticsearch sink's level)
	floorBoth   = "snappy+gzip" // read once, both: the least work of the all path
)

// The parse floors add what a shipper that keeps guarantee 3 must also
// do: cut the lines and parse each one (parse.Parser, as the reader does)
// before compressing the same blocks. They show how much of a path is
// left once that is counted, not a target any shipper could beat without
// parsing.
const (
	floorParse           = "parse"
	floorParseSnappy     = "parse+snappy"
	floorParseGzip       = "parse+gzip"
	floorParseSnappyGzip = "parse+snappy+gzip"
)

// floorArg as the first argument makes this program run one floor.
const floorArg = "-run-floor"

// floorOf is each path's floor, and parseFloorOf its parse floor.
var (
	floorOf      = map[string]string{"file": floorCat, "loki": floorSnappy, "es": floorGzip, "all": floorBoth}
	parseFloorOf = map[string]string{"file": floorParse, "loki": floorParseSnappy, "es": floorParseGzip, "all": floorParseSnappyGzip}
)

// floorKinds is the order floors are run and reported in.
var floorKinds = []string{floorCat, floorSnappy, floorGzip, floorBoth, floorParse, floorParseSnappy, floorParseGzip, floorParseSnappyGzip}

// floorBlock is how much each read takes and each compression covers:
// one request's worth (the sinks' default batch.max_bytes is 1 MiB).
const floorBlock = 1 << 20

// catBlock is what cat(1) reads at a time (coreutils' io_blksize).
const catBlock = 128 << 10

// runFloor is the child: it does kind's work over files and prints the
// compressed size (which keeps the compiler from skipping the work and
// tells the report how much the compression saved) and its peak RSS.
func runFloor(kind string, files []string) error {
	block := floorBlock
	if kind == floorCat {
		block = catBlock
	}
	parses := strings.HasPrefix(kind, floorParse)
	snappy, gz := strings.Contains(kind, floorSnappy), strings.Contains(kind, floorGzip)
	buf := make([]byte, block)
	var dst []byte
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	var zbuf bytes.Buffer
	var out int64
	var lines lineParser
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		for {
			n, err := io.ReadFull(f, buf)
			if n > 0 {
				p := buf[:n]
				if parses {
					lines.parse(p)
				}
				if snappy {
					dst = s2.EncodeSnappy(dst[:cap(dst)], p)
					out += int64(len(dst))
				}
				if gz {
					zbuf.Reset()
					zw.Reset(&zbuf)
					if _, err := zw.Write(p); err != nil {
						return err
					}
					if err := zw.Close(); err != nil {
						return err
					}
					out += int64(zbuf.Len())
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			if err != nil {
				f.Close()
				return fmt.Errorf("reading %s: %w", name, err)
			}
		}
		f.Close()
	}
	if parses {
		lines.parse([]byte{'\n'}) // a last line without its newline
		if lines.bad > 0 {
			return fmt.Errorf("%d of %d lines of the backlog do not parse", lines.bad, lines.n)
		}
	}
	// The child's own peak RSS: the parent cannot take it from wait4's
	// rusage, whose ru_maxrss also counts the parent's memory the child
	// shared before exec (Go starts children with vfork).
	hwm, err := procPeakRSS(os.Getpid())
	if err != nil {
		return err
	}
	fmt.Println(out, hwm)
	return nil
}

// lineParser cuts blocks into lines, carrying a line cut by the end of a
// block into the next, and parses each line.
type lineParser struct {
	p      parse.Parser
	rest   []byte
	n, bad int // lines parsed, lines refused
}

func (l *lineParser) parse(block []byte) {
	for {
		i := bytes.IndexByte(block, '\n')
		if i < 0 {
			l.rest = append(l.rest, block...)
			return
		}
		line := block[:i]
		if len(l.rest) > 0 {
			l.rest = append(l.rest, line...)
			line = l.rest
		}
		if len(line) > 0 {
			l.n++
			if _, err := l.p.Parse(line); err != nil {
				l.bad++
			}
		}
		l.rest = l.rest[:0]
		block = block[i+1:]
	}
}

// floorResult is one floor run, measured from outside.
type floorResult struct {
	kind    string
	wall    time.Duration
	cpu     time.Duration
	peakRSS int64
	out     int64 // compressed bytes
}

// measureFloor runs kind over files in a child and measures it.
func measureFloor(kind string, files []string) (floorResult, error) {
	self, err := os.Executable()
	if err != nil {
		return floorResult{}, err
	}
	cmd := exec.Command(self, append([]string{floorArg, kind}, files...)...)
	cmd.Stderr = os.Stderr
	start := time.Now()
	stdout, err := cmd.Output()
	r := floorResult{kind: kind, wall: time.Since(start)}
	if err != nil {
		return r, fmt.Errorf("floor %s: %w", kind, err)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
	if _, err := fmt.Sscan(string(stdout), &r.out, &r.peakRSS); err != nil {
		return r, fmt.Errorf("floor %s: cannot read its output %q: %w", kind, stdout, err)
	}
	return r, nil
}
