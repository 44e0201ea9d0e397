package acceptance

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// output follows the file sink's NDJSON as it grows.
type output struct {
	path string
	off  int64
	rest []byte

	// count is how many times each auditID arrived; order holds the
	// auditIDs in the order they first arrived.
	count map[string]int
	order []string
	lines int
	// torn counts lines that are not a whole audit event: the fragments
	// a SIGKILL leaves behind.
	torn       int
	tornSample []string
	// dupBytes is the size of the lines that repeated an auditID.
	dupBytes int64
}

func newOutput(path string) *output {
	return &output{path: path, count: make(map[string]int)}
}

// poll reads the lines appended since the last poll; a line without its
// newline yet waits for the next poll.
func (o *output) poll(t *testing.T) {
	t.Helper()
	f, err := os.Open(o.path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(o.off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		o.off += int64(n)
		data := buf[:n]
		for {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				o.rest = append(o.rest, data...)
				break
			}
			if len(o.rest) > 0 {
				o.rest = append(o.rest, data[:i]...)
				o.line(o.rest)
				o.rest = o.rest[:0]
			} else {
				o.line(data[:i])
			}
			data = data[i+1:]
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (o *output) line(l []byte) {
	o.lines++
	id, err := eventKey(l)
	if err != nil {
		o.torn++
		if len(o.tornSample) < 3 {
			o.tornSample = append(o.tornSample, fmt.Sprintf("%.120q (%v)", l, err))
		}
		return
	}
	o.count[id]++
	if o.count[id] == 1 {
		o.order = append(o.order, id)
	} else {
		o.dupBytes += int64(len(l)) + 1
	}
}

// tally compares the output with the auditIDs written, in their order.
type tally struct {
	written, delivered, duplicates, lost, torn, unexpected int
	// missing are the first auditIDs written but not delivered.
	missing []string
	// firstMisorder is the index in the output's first-arrival order where
	// it first differs from the written order, or -1; misorder says how.
	firstMisorder int
	misorder      string
}

func (o *output) tally(written []string) tally {
	tl := tally{written: len(written), torn: o.torn, firstMisorder: -1}
	want := make(map[string]bool, len(written))
	for _, id := range written {
		want[id] = true
		if n := o.count[id]; n > 0 {
			tl.delivered++
			tl.duplicates += n - 1
		} else {
			tl.lost++
			if len(tl.missing) < 5 {
				tl.missing = append(tl.missing, id)
			}
		}
	}
	for id, n := range o.count {
		if !want[id] {
			tl.unexpected += n
		}
	}
	j := 0
	for _, id := range o.order {
		if !want[id] {
			continue
		}
		if written[j] != id {
			tl.firstMisorder = j
			tl.misorder = fmt.Sprintf("event %d to arrive is %s, event %d written is %s", j, id, j, written[j])
			break
		}
		j++
	}
	return tl
}

// waitDelivered polls the output until every auditID of want has arrived,
// or fails the test when the deadline passes, when nothing has arrived for
// stallTimeout, or when s exits.
func (o *output) waitDelivered(t *testing.T, s *shipper, want []string, timeout time.Duration) {
	t.Helper()
	const stallTimeout = 30 * time.Second
	deadline := time.Now().Add(timeout)
	lines, progress := o.lines, time.Now()
	for {
		s.Alive()
		o.poll(t)
		tl := o.tally(want)
		if tl.lost == 0 {
			return
		}
		if o.lines != lines {
			lines, progress = o.lines, time.Now()
		}
		stalled := time.Since(progress) > stallTimeout
		if stalled || time.Now().After(deadline) {
			why := fmt.Sprintf("after %s", timeout)
			if stalled {
				why = fmt.Sprintf("with nothing arriving for %s", stallTimeout)
			}
			t.Errorf("%s, %d of %d events have not arrived (first missing: %v); delivered %d, duplicates %d, torn %d",
				why, tl.lost, tl.written, tl.missing, tl.delivered, tl.duplicates, tl.torn)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// summary prints a test's figures, and how many errors and warnings the
// shipper logged, to the test log and, when the log is not shown (no -v),
// to stdout.
func summary(t *testing.T, s *shipper, tl tally, deadLettered int, elapsed time.Duration, extra string) {
	t.Helper()
	errs, warns := s.LevelMsgs("ERROR"), s.LevelMsgs("WARN")
	for _, m := range []map[string]int{errs, warns} {
		for msg, n := range m {
			t.Logf("the shipper logged %d times: %s", n, msg)
		}
	}
	line := fmt.Sprintf("written=%d delivered=%d duplicates=%d lost=%d torn=%d dead_lettered=%d elapsed=%s log_errors=%d log_warnings=%d",
		tl.written, tl.delivered, tl.duplicates, tl.lost, tl.torn, deadLettered, elapsed.Round(time.Millisecond),
		total(errs), total(warns))
	if extra != "" {
		line += " " + extra
	}
	t.Log(line)
	if !testing.Verbose() {
		fmt.Printf("%s: %s\n", t.Name(), line)
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// deadLetter is one record of the dead-letter file.
type deadLetter struct {
	Time       string  `json:"time"`
	Sink       string  `json:"sink"`
	File       string  `json:"file"`
	Offset     *int64  `json:"offset"`
	Length     *int64  `json:"length"`
	Reason     string  `json:"reason"`
	Error      string  `json:"error"`
	Line       *string `json:"line"`
	LineBase64 []byte  `json:"line_base64"`
	Truncated  bool    `json:"truncated"`
}

// readDeadLetters reads the dead-letter file; a missing file has none.
func readDeadLetters(t *testing.T, path string) []deadLetter {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []deadLetter
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64*megabyte)
	for n := 1; sc.Scan(); n++ {
		var d deadLetter
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Errorf("%s:%d: a dead-letter record is not JSON: %v: %.200s", path, n, err, sc.Bytes())
			continue
		}
		if dup := repeatedKey(sc.Bytes()); dup != "" {
			t.Errorf("%s:%d: a dead-letter record has the key %q twice: readers disagree on which value counts: %.200s", path, n, dup, sc.Bytes())
		}
		recs = append(recs, d)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return recs
}

// repeatedKey returns a key that occurs twice at the top of the JSON
// object rec, or "".
func repeatedKey(rec []byte) string {
	dec := json.NewDecoder(bytes.NewReader(rec))
	if _, err := dec.Token(); err != nil { // {
		return ""
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := tok.(string)
		if seen[key] {
			return key
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// generation is one audit log file on disk.
type generation struct {
	name  string
	size  int64 // of its plain content
	lines [][]byte
	ids   []string
}

// readGenerations reads audit.log and every backup beside it (plain or
// gzipped), oldest first.
func readGenerations(t *testing.T, dir string) []generation {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "audit*.log*"))
	if err != nil {
		t.Fatal(err)
	}
	// Backup names sort by their time; audit.log sorts after them all
	// ("." < "-" is false: '-' is 0x2d, '.' is 0x2e).
	sort.Strings(names)
	var gens []generation
	for _, name := range names {
		data, err := readMaybeGzip(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // compressed or deleted by lumberjack meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		g := generation{name: filepath.Base(name), size: int64(len(data))}
		for _, l := range bytes.SplitAfter(data, []byte("\n")) {
			if len(l) == 0 {
				continue
			}
			id, err := eventKey(bytes.TrimSuffix(l, []byte("\n")))
			if err != nil {
				t.Fatalf("%s holds a line that is not an event (%v): %.100q", name, err, l)
			}
			g.lines = append(g.lines, l)
			g.ids = append(g.ids, id)
		}
		gens = append(gens, g)
	}
	return gens
}

func readMaybeGzip(name string) ([]byte, error) {
	if !strings.HasSuffix(name, ".gz") {
		return os.ReadFile(name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return io.ReadAll(zr)
}
