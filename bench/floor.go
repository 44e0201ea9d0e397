package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
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

// floorArg as the first argument makes this program run one floor.
const floorArg = "-run-floor"

// floorOf is each path's floor.
var floorOf = map[string]string{"file": floorCat, "loki": floorSnappy, "es": floorGzip, "all": floorBoth}

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
	buf := make([]byte, block)
	var dst []byte
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	var zbuf bytes.Buffer
	var out int64
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		for {
			n, err := io.ReadFull(f, buf)
			if n > 0 {
				p := buf[:n]
				if kind == floorSnappy || kind == floorBoth {
					dst = s2.EncodeSnappy(dst[:cap(dst)], p)
					out += int64(len(dst))
				}
				if kind == floorGzip || kind == floorBoth {
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
