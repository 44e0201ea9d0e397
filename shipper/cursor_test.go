package shipper

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audit-shipper/audit-shipper/corpus"
)

func newTestCursor(t testing.TB, live string, maxLine int) *cursor {
	c := newCursor(live, maxLine, slog.New(slog.DiscardHandler))
	t.Cleanup(c.close)
	return c
}

// cursorLine is one line a cursor returned.
type cursorLine struct {
	line string
	off  int64
	file string // base name of the generation it came from
}

// follow reads what there is the way the pipeline's reader does: next; on
// errWait, check (a rotated file turns final and is drained); on errDone,
// advance. It returns when the live file has no complete line and nothing
// newer is there.
func follow(t testing.TB, c *cursor) (lines []cursorLine, lost []FileRef) {
	t.Helper()
	for range 100_000 {
		line, off, tooLong, err := c.next()
		switch {
		case err == nil:
			if tooLong {
				t.Fatalf("unexpected over-long line at %s:%d", c.gen.path, off)
			}
			lines = append(lines, cursorLine{string(line), off, filepath.Base(c.gen.path)})
		case errors.Is(err, errWait):
			if err := c.check(); err != nil {
				t.Fatalf("check: %v", err)
			}
			if !c.final {
				return lines, lost
			}
		case errors.Is(err, errTruncated):
			// Restarted at 0: read on.
		case errors.Is(err, errDone):
			l, err := c.advance()
			lost = append(lost, l...)
			switch {
			case err == nil, errors.Is(err, errRenamed):
			case errors.Is(err, errWait):
				return lines, lost
			default:
				t.Fatalf("advance from %s: %v", c.gen.path, err)
			}
		default:
			t.Fatalf("next: %v", err)
		}
	}
	t.Fatal("follow did not come to an end")
	return nil, nil
}

func texts(lines []cursorLine) []string {
	var s []string
	for _, l := range lines {
		s = append(s, l.line)
	}
	return s
}

// sameLines fails unless got holds exactly want, in order.
func sameLines(t testing.TB, got []cursorLine, want []string) {
	t.Helper()
	have := texts(got)
	if slices.Equal(have, want) {
		return
	}
	for i := range min(len(have), len(want)) {
		if have[i] != want[i] {
			t.Fatalf("read %d lines, want %d; first difference at line %d (%s:%d):\n got %q\nwant %q",
				len(have), len(want), i, got[i].file, got[i].off, have[i], want[i])
		}
	}
	t.Fatalf("read %d lines, want %d; read %q", len(have), len(want), have)
}

// cursorAnswer is one answer expected from the cursor: next's, or rest's
// when rest is set.
type cursorAnswer struct {
	line    string
	off     int64
	tooLong bool
	rest    bool
	ended   bool
	err     error
}

func (a cursorAnswer) String() string {
	return fmt.Sprintf("%.200q (%d bytes) at %d, tooLong %v, rest %v, ended %v", a.line, len(a.line), a.off, a.tooLong, a.rest, a.ended)
}

func TestCursorNext(t *testing.T) {
	// f writes content to a live audit.log or to a backup (final), opens
	// it at offset 0 and checks every answer of next and rest.
	f := func(name, content string, final bool, maxLine int, want []cursorAnswer) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, live := testLog(t)
			path := live
			if final {
				path = backupPath(live, stamp0)
			}
			appendFile(t, path, content)
			c := newTestCursor(t, live, maxLine)
			if err := c.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			if c.final != final {
				t.Fatalf("opened %s with final=%v", c.gen.path, c.final)
			}
			for i, w := range want {
				var s cursorAnswer
				if w.rest {
					var b bytes.Buffer
					s.rest = true
					s.ended, s.err = c.rest(&b)
					s.line = b.String()
				} else {
					var line []byte
					line, s.off, s.tooLong, s.err = c.next()
					s.line = string(line)
				}
				if !errors.Is(s.err, w.err) {
					t.Fatalf("answer %d: %.100q, %v; want %.100q, %v", i, s.line, s.err, w.line, w.err)
				}
				s.err = w.err
				if s != w {
					t.Fatalf("answer %d: %s\nwant      %s", i, s, w)
				}
			}
		})
	}
	a, b, c := auditLine("a", 0), auditLine("a", 1), auditLine("a", 2)
	la, lb := int64(len(a)+1), int64(len(b)+1)

	f("lines of a live file", a+"\n"+b+"\n", false, 4096, []cursorAnswer{
		{line: a, off: 0}, {line: b, off: la}, {err: errWait}, {err: errWait}})
	f("lines of a final file", a+"\n"+b+"\n", true, 4096, []cursorAnswer{
		{line: a, off: 0}, {line: b, off: la}, {err: errDone}, {err: errDone}})
	f("empty lines", "\n\n"+a+"\n\n", true, 4096, []cursorAnswer{
		{line: "", off: 0}, {line: "", off: 1}, {line: a, off: 2}, {line: "", off: 2 + la}, {err: errDone}})
	f("empty live file", "", false, 4096, []cursorAnswer{{err: errWait}})
	f("empty final file", "", true, 4096, []cursorAnswer{{err: errDone}})
	f("unterminated last line of a final file is a line", a+"\n"+b+"\n"+c, true, 4096, []cursorAnswer{
		{line: a, off: 0}, {line: b, off: la}, {line: c, off: la + lb}, {err: errDone}})
	f("unterminated last line of a live file waits", a+"\n"+b, false, 4096, []cursorAnswer{
		{line: a, off: 0}, {err: errWait}, {err: errWait}})
	f("CR is content", "x\r\n", true, 4096, []cursorAnswer{{line: "x\r", off: 0}, {err: errDone}})
	f("NUL bytes are content", "x\x00y\n", true, 4096, []cursorAnswer{{line: "x\x00y", off: 0}, {err: errDone}})

	long := strings.Repeat("0123456789", 10) // 100 bytes
	f("over-long line", long+"\nx\n", true, 16, []cursorAnswer{
		{line: long[:16], off: 0, tooLong: true},
		{rest: true, line: long[16:], ended: true},
		{line: "x", off: 101},
		{err: errDone}})
	f("over-long line then a short one", long+"\nshort\n", false, 32, []cursorAnswer{
		{line: long[:32], off: 0, tooLong: true},
		{rest: true, line: long[32:], ended: true},
		{line: "short", off: 101},
		{err: errWait}})
	f("over-long unterminated last line of a final file", "short\n"+long, true, 32, []cursorAnswer{
		{line: "short", off: 0},
		{line: long[:32], off: 6, tooLong: true},
		{rest: true, line: long[32:], ended: true},
		{err: errDone}})
	f("over-long unterminated line of a live file waits in rest", long, false, 32, []cursorAnswer{
		{line: long[:32], off: 0, tooLong: true},
		{rest: true, line: long[32:], err: errWait},
		{rest: true, line: "", err: errWait}})
	big := strings.Repeat(long, 1500) // 150 KB: the buffer starts at 64 KiB
	f("line longer than the first buffer", "x\n"+big+"\n", true, 200<<10, []cursorAnswer{
		{line: "x", off: 0}, {line: big, off: 2}, {err: errDone}})
	f("over-long line past the first buffer", big+"\n", true, 100<<10, []cursorAnswer{
		{line: big[:100<<10], off: 0, tooLong: true},
		{rest: true, line: big[100<<10:], ended: true},
		{err: errDone}})

	// max_line_bytes: "longer lines are dead-lettered whole", so a line of
	// exactly maxLine bytes is a line. The boundary must not depend on how
	// the file was read either.
	f("line of maxLine-1 bytes", long[:31]+"\nshort\n", true, 32, []cursorAnswer{
		{line: long[:31], off: 0}, {line: "short", off: 32}, {err: errDone}})
	f("line of maxLine+1 bytes", long[:33]+"\nshort\n", true, 32, []cursorAnswer{
		{line: long[:32], off: 0, tooLong: true},
		{rest: true, line: long[32:33], ended: true},
		{line: "short", off: 34}, {err: errDone}})
}

func TestCursorMaxLineBoundary(t *testing.T) {
	long := strings.Repeat("0123456789", 10)
	for _, c := range []struct {
		name    string
		content string
	}{
		{"buffer full", long[:32] + "\nshort\n"},
		{"after a short line", "s\n" + long[:32] + "\nshort\n"},
		{"unterminated in a final file", long[:32]},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, live := testLog(t)
			appendFile(t, backupPath(live, stamp0), c.content)
			cur := newTestCursor(t, live, 32)
			if err := cur.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			for {
				line, off, tooLong, err := cur.next()
				if err != nil {
					break
				}
				if tooLong {
					t.Fatalf("line %q at %d of %d bytes (maxLine 32) came back tooLong", line, off, len(line))
				}
			}
		})
	}
}

// TestCursorBufferShrinksAfterLongLines: the buffer grows for a long line
// and goes back to its first size once shrinkAfter bytes of short lines
// have been read, so a few long events do not hold a megabyte in each
// sink's cursor for good; long lines that keep coming keep it.
func TestCursorBufferShrinksAfterLongLines(t *testing.T) {
	long := strings.Repeat("x", 1<<20) + "\n"
	short := strings.Repeat("s", 100) + "\n"
	for _, tc := range []struct {
		name    string
		content string
		kept    bool // the buffer is still large at the end
	}{
		{"short lines after the long one", strings.Repeat(short, 100) + long + strings.Repeat(short, 30000), false},
		{"too few short lines after it", strings.Repeat(short, 100) + long + strings.Repeat(short, 500), true},
		{"long lines keep coming", strings.Repeat(strings.Repeat(short, 500)+long, 4) + short, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, live := testLog(t)
			appendFile(t, backupPath(live, stamp0), tc.content)
			c := newTestCursor(t, live, 4<<20)
			c.shrinkAfter = 200_000
			if err := c.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			var got []string
			grown, shrunk := 0, 0
			for {
				line, _, tooLong, err := c.next()
				if err != nil {
					break
				}
				if tooLong {
					t.Fatalf("a line of %d bytes came back tooLong", len(line))
				}
				got = append(got, string(line))
				if len(c.buf) < grown {
					shrunk++
				}
				grown = max(grown, len(c.buf))
			}
			if want := strings.Split(strings.TrimSuffix(tc.content, "\n"), "\n"); !slices.Equal(got, want) {
				t.Fatalf("read %d lines, want %d, or they differ", len(got), len(want))
			}
			if grown <= 1<<20 {
				t.Fatalf("the buffer never grew past %d bytes for a line of 1 MiB", grown)
			}
			if large := len(c.buf) > keptBuffer; large != tc.kept {
				t.Errorf("the buffer is %d bytes at the end (kept up to %d), want it kept large: %v", len(c.buf), keptBuffer, tc.kept)
			}
			if shrunk > 1 {
				t.Errorf("the buffer shrank %d times", shrunk)
			}
		})
	}
}

// TestCursorRestAcrossReads streams an over-long line that arrives in
// pieces while the cursor waits for it, in a live file that then rotates.
func TestCursorRestAcrossReads(t *testing.T) {
	const maxLine = 1000
	_, live := testLog(t)
	// 1 MB of varied bytes so that a misplaced piece shows.
	var sb strings.Builder
	for i := 0; sb.Len() < 1<<20; i++ {
		fmt.Fprintf(&sb, "%07d,", i)
	}
	long := sb.String()
	pieces := []string{long[:300_000], long[300_000:300_001], long[300_001:700_000], long[700_000:]}

	appendFile(t, live, "first\n"+pieces[0])
	c := newTestCursor(t, live, maxLine)
	if err := c.startAt("beginning"); err != nil {
		t.Fatal(err)
	}
	if line, off, tooLong, err := c.next(); string(line) != "first" || off != 0 || tooLong || err != nil {
		t.Fatalf("first line: %q %d %v %v", line, off, tooLong, err)
	}
	head, off, tooLong, err := c.next()
	if string(head) != long[:maxLine] || off != 6 || !tooLong || err != nil {
		t.Fatalf("head: %d bytes at %d, tooLong %v, %v", len(head), off, tooLong, err)
	}
	var rest bytes.Buffer
	waits := 0
	for i := 1; ; {
		ended, err := c.rest(&rest)
		if ended {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		if !errors.Is(err, errWait) {
			t.Fatalf("rest: %v", err)
		}
		waits++
		if i == len(pieces) {
			t.Fatalf("rest did not end after every piece was written; %d bytes", rest.Len())
		}
		if i == len(pieces)-1 {
			// The line ends in the old file; audit.log is then rotated.
			appendFile(t, live, pieces[i]+"\nlast of old\n")
			rotateByHand(t, live, stamp0)
			appendFile(t, live, "first of new\n")
		} else {
			appendFile(t, live, pieces[i])
		}
		i++
	}
	if waits != len(pieces)-1 {
		t.Errorf("rest waited %d times, want %d", waits, len(pieces)-1)
	}
	if rest.String() != long[maxLine:] {
		t.Fatalf("rest streamed %d bytes, want %d; differ at %d", rest.Len(), len(long)-maxLine, firstDiff(rest.String(), long[maxLine:]))
	}
	if c.offset() != int64(6+len(long)+1) {
		t.Fatalf("offset after the long line: %d, want %d", c.offset(), 6+len(long)+1)
	}
	lines, _ := follow(t, c)
	sameLines(t, lines, []string{"last of old", "first of new"})
	if lines[0].off != int64(6+len(long)+1) || lines[1].off != 0 {
		t.Errorf("offsets after the long line: %+v", lines)
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestCursorRotation follows audit.log through lumberjack rotations with
// the cursor behind: each generation is read once, whole, in order.
func TestCursorRotation(t *testing.T) {
	f := func(name string, compress bool, rotations int) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, live := testLog(t)
			l := &lumberjack.Logger{Filename: live, MaxSize: 100, Compress: compress}
			t.Cleanup(func() { l.Close() })
			write := func(lines []string) {
				t.Helper()
				if _, err := l.Write([]byte(joinLines(lines))); err != nil {
					t.Fatal(err)
				}
			}
			var want []string
			first := genLines("g0", 30)
			write(first)
			want = append(want, first...)

			c := newTestCursor(t, live, 4096)
			if err := c.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			// The cursor reads most of the first generation and falls behind.
			var lines []cursorLine
			for range 25 {
				line, _, _, err := c.next()
				if err != nil {
					t.Fatal(err)
				}
				lines = append(lines, cursorLine{line: string(line)})
			}
			for g := 1; g <= rotations; g++ {
				more := genLines(fmt.Sprintf("g%d", g), 20+g)
				write(more[:5]) // after the cursor's last read, before the rename
				rotateLumberjack(t, l)
				write(more[5:])
				want = append(want, more...)
			}
			if compress {
				waitCompressed(t, live, rotations)
			}
			rest, lost := follow(t, c)
			if len(lost) != 0 {
				t.Errorf("reported lost: %+v", lost)
			}
			sameLines(t, append(lines, rest...), want)
			if !c.gen.live || c.final {
				t.Errorf("ended on %s (live %v, final %v), want the live file", c.gen.path, c.gen.live, c.final)
			}
			// Nothing is read twice when more arrives.
			write([]string{"after"})
			tail, _ := follow(t, c)
			sameLines(t, tail, []string{"after"})
		})
	}
	f("one rotation", false, 1)
	f("two rotations while behind", false, 2)
	f("three rotations while behind", false, 3)
	f("three rotations, compressed", true, 3)
}

// TestCursorConcurrentRotations follows lumberjack rotating (and
// compressing) as fast as it can while the cursor reads: every line is
// read once, in order, and nothing is reported lost.
func TestCursorConcurrentRotations(t *testing.T) {
	f := func(name string, compress bool) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			const generations, perGen = 40, 40
			_, live := testLog(t)
			l := &lumberjack.Logger{Filename: live, MaxSize: 100, Compress: compress}
			t.Cleanup(func() { l.Close() })
			if _, err := l.Write([]byte("0\n")); err != nil {
				t.Fatal(err)
			}
			writerDone := make(chan error, 1)
			go func() {
				seq := 1
				for range generations {
					for range perGen {
						if _, err := fmt.Fprintf(l, "%d\n", seq); err != nil {
							writerDone <- err
							return
						}
						seq++
					}
					time.Sleep(2 * time.Millisecond) // one backup name per millisecond
					if err := l.Rotate(); err != nil {
						writerDone <- err
						return
					}
				}
				writerDone <- nil
			}()
			c := newTestCursor(t, live, 4096)
			if err := c.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			const total = generations*perGen + 1
			want, writing := 0, true
			deadline := time.Now().Add(30 * time.Second)
			for want < total || writing {
				if time.Now().After(deadline) {
					t.Fatalf("read up to %d of %d lines in %s", want, total, c.gen.path)
				}
				if writing {
					select {
					case err := <-writerDone:
						if err != nil {
							t.Fatal(err)
						}
						writing = false
					default:
					}
				}
				line, off, _, err := c.next()
				switch {
				case err == nil:
					if string(line) != fmt.Sprint(want) {
						t.Fatalf("read %q at %s:%d, want %d", line, c.gen.path, off, want)
					}
					want++
				case errors.Is(err, errWait):
					if err := c.check(); err != nil {
						t.Fatal(err)
					}
					if !c.final {
						time.Sleep(100 * time.Microsecond)
					}
				case errors.Is(err, errDone):
					lost, err := c.advance()
					if len(lost) != 0 {
						t.Fatalf("reported lost: %+v", lost)
					}
					if err != nil && !errors.Is(err, errWait) && !errors.Is(err, errRenamed) {
						t.Fatal(err)
					}
					if err != nil {
						time.Sleep(100 * time.Microsecond)
					}
				default:
					t.Fatal(err)
				}
			}
			if compress {
				waitCompressed(t, live, generations)
			}
		})
	}
	f("plain", false)
	f("compressed", true)
}

// rotateLumberjack rotates, a millisecond after the last rotation at least:
// lumberjack names backups to the millisecond, and a second rotation in the
// same millisecond would overwrite the first backup.
func rotateLumberjack(t testing.TB, l *lumberjack.Logger) {
	t.Helper()
	time.Sleep(2 * time.Millisecond)
	if err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
}

// waitCompressed waits until lumberjack's compression has left n gzipped
// backups and no plain one.
func waitCompressed(t testing.TB, live string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		gz, plain := 0, 0
		gens, err := listGenerations(live)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gens {
			switch {
			case g.compressed:
				gz++
			case !g.live:
				plain++
			}
		}
		if gz == n && plain == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lumberjack left %d gzipped and %d plain backups, want %d and 0", gz, plain, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCursorRotationByHand covers the rotations lumberjack does not do in
// one cursorAnswer: a rotation noticed only after its backup was compressed, and
// one whose successor is not created yet.
func TestCursorRotationByHand(t *testing.T) {
	t.Run("open file rotated and compressed before check", func(t *testing.T) {
		_, live := testLog(t)
		g0, g1 := genLines("g0", 30), genLines("g1", 30)
		appendFile(t, live, joinLines(g0[:10]))
		c := newTestCursor(t, live, 4096)
		if err := c.startAt("beginning"); err != nil {
			t.Fatal(err)
		}
		lines, _ := follow(t, c)
		appendFile(t, live, joinLines(g0[10:]))
		gzipLikeLumberjack(t, rotateByHand(t, live, stamp0))
		appendFile(t, live, joinLines(g1))
		rest, lost := follow(t, c)
		if len(lost) != 0 {
			t.Errorf("reported lost: %+v", lost)
		}
		sameLines(t, append(lines, rest...), append(g0, g1...))
	})
	t.Run("rotated, new audit.log not created yet", func(t *testing.T) {
		_, live := testLog(t)
		g0 := genLines("g0", 20)
		appendFile(t, live, joinLines(g0[:10]))
		c := newTestCursor(t, live, 4096)
		if err := c.startAt("beginning"); err != nil {
			t.Fatal(err)
		}
		lines, _ := follow(t, c)
		appendFile(t, live, joinLines(g0[10:]))
		if err := os.Rename(live, backupPath(live, stamp0)); err != nil {
			t.Fatal(err)
		}
		// No audit.log: the open file is still followed (it may be the
		// apiserver's until it rotates).
		more, _ := follow(t, c)
		lines = append(lines, more...)
		appendFile(t, live, "new\n")
		more, _ = follow(t, c)
		sameLines(t, append(lines, more...), append(g0, "new"))
	})
}

// copytruncate is what logrotate's copytruncate does to audit.log: copy it
// aside under a name that is no generation, truncate it in place; the
// writer goes on at offset 0.
func copytruncate(t testing.TB, live, after string) {
	t.Helper()
	b, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(live+".1", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(live, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, after)
}

// TestCursorCopytruncate: the cursor caught up with audit.log, which is
// then truncated in place and written again before the cursor looks.
func TestCursorCopytruncate(t *testing.T) {
	f := func(name string, before, after []string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, live := testLog(t)
			appendFile(t, live, joinLines(before))
			c := newTestCursor(t, live, 4096)
			if err := c.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			lines, _ := follow(t, c)
			sameLines(t, lines, before)
			copytruncate(t, live, joinLines(after))
			// The cursor had waited: before it reads on it finds the
			// truncation and starts again from 0.
			if line, off, _, err := c.next(); !errors.Is(err, errTruncated) {
				t.Fatalf("next after the truncation: %q at %d, %v; want errTruncated", line, off, err)
			}
			if c.offset() != 0 || c.final {
				t.Fatalf("restarted at %d (final %v), want 0", c.offset(), c.final)
			}
			lines, _ = follow(t, c)
			sameLines(t, lines, after)
			if len(lines) > 0 && lines[0].off != 0 {
				t.Errorf("first line after the truncation at %d", lines[0].off)
			}
			if err := c.check(); err != nil {
				t.Errorf("second check: %v", err)
			}
			if _, _, _, err := c.next(); !errors.Is(err, errWait) {
				t.Errorf("next after reading the new content: %v, want errWait", err)
			}
		})
	}
	f("shorter new content", genLines("a", 30), genLines("b", 3))
	f("same length new content", genLines("a", 20), genLines("b", 20))
	f("empty", genLines("a", 20), nil)
	f("young file", genLines("a", 3), genLines("b", 1))
	f("young file, same length", genLines("a", 3), genLines("b", 3))
}

// TestCursorCopytruncateOutgrown: truncated in place and written past the
// old read position before the cursor looked again (a poll interval of a
// busy apiserver on a small file). The cursor must not read the new
// content from the old offset: lines out of place, then all again.
func TestCursorCopytruncateOutgrown(t *testing.T) {
	f := func(name string, before, after []string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, live := testLog(t)
			appendFile(t, live, joinLines(before))
			c := newTestCursor(t, live, 4096)
			if err := c.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			lines, _ := follow(t, c)
			sameLines(t, lines, before)
			copytruncate(t, live, joinLines(after))
			lines, _ = follow(t, c)
			sameLines(t, lines, after)
		})
	}
	// Lines of another length than before, so that the old offset falls
	// inside a new line.
	longer := func(gen string, n int) []string {
		lines := genLines(gen, n)
		for i := range lines {
			lines[i] += `,"user":{"username":"system:serviceaccount:kube-system:replicaset-controller"}`
		}
		return lines
	}
	f("longer new content", genLines("a", 10), longer("b", 40))
	f("young file, longer young content", genLines("a", 2), longer("b", 3))
}

func TestCursorDeletedByHand(t *testing.T) {
	_, live := testLog(t)
	// The apiserver's descriptor stays open across the deletion.
	w, err := os.OpenFile(live, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeW := func(lines []string) {
		t.Helper()
		if _, err := w.WriteString(joinLines(lines)); err != nil {
			t.Fatal(err)
		}
	}
	old, recreated := genLines("old", 30), genLines("new", 10)
	writeW(old[:10])
	c := newTestCursor(t, live, 4096)
	if err := c.startAt("beginning"); err != nil {
		t.Fatal(err)
	}
	lines, _ := follow(t, c)
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	writeW(old[10:20])
	more, _ := follow(t, c)
	if c.final {
		t.Fatal("audit.log deleted by hand: the open file turned final, want it followed")
	}
	lines = append(lines, more...)
	sameLines(t, lines, old[:20])

	// Lines written to the deleted file before audit.log comes back are
	// drained, then the new audit.log is read from its start.
	writeW(old[20:])
	appendFile(t, live, joinLines(recreated))
	more, lost := follow(t, c)
	if len(lost) != 0 {
		t.Errorf("reported lost: %+v", lost)
	}
	sameLines(t, append(lines, more...), append(old, recreated...))
	if !c.gen.live || c.gen.path != live {
		t.Errorf("ended in %s", c.gen.path)
	}
}

func TestCursorStartAt(t *testing.T) {
	b1, b2 := genLines("b1", 20), genLines("b2", 20)
	cur := genLines("live", 20)
	setup := func(t *testing.T, backups bool) string {
		_, live := testLog(t)
		if backups {
			appendFile(t, backupPath(live, stamp0.Add(-2*time.Hour)), joinLines(b1))
			appendFile(t, backupPath(live, stamp0.Add(-time.Hour)), joinLines(b2))
		}
		appendFile(t, live, joinLines(cur))
		return live
	}
	f := func(name, where string, backups bool, want []string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			live := setup(t, backups)
			c := newTestCursor(t, live, 4096)
			if err := c.startAt(where); err != nil {
				t.Fatal(err)
			}
			lines, lost := follow(t, c)
			if len(lost) != 0 {
				t.Errorf("lost: %+v", lost)
			}
			appendFile(t, live, "appended\n")
			more, _ := follow(t, c)
			sameLines(t, append(lines, more...), want)
		})
	}
	all := slices.Concat(b1, b2, cur, []string{"appended"})
	f("beginning", "beginning", true, all)
	f("beginning, live only", "beginning", false, all[40:])
	f("end", "end", true, []string{"appended"})
	f("end, live only", "end", false, []string{"appended"})

	t.Run("no audit log yet", func(t *testing.T) {
		_, live := testLog(t)
		c := newTestCursor(t, live, 4096)
		for _, where := range []string{"beginning", "end"} {
			if err := c.startAt(where); !errors.Is(err, errWait) {
				t.Fatalf("%s: %v, want errWait", where, err)
			}
		}
		appendFile(t, live, "x\n")
		if err := c.startAt("beginning"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCursorResume opens saved positions: inside a plain backup, inside a
// gzipped one (taken while it was the live file), in the live file.
func TestCursorResume(t *testing.T) {
	// f writes initial lines of 40, takes a position after read of them,
	// writes the rest, moves the file on (rotation, compression), and
	// resumes.
	f := func(name string, initial, read int, moveOn func(t *testing.T, live string)) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, live := testLog(t)
			g0, g1 := genLines("g0", 40), genLines("g1", 5)
			appendFile(t, live, joinLines(g0[:initial]))
			first := newTestCursor(t, live, 4096)
			if err := first.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			for range read {
				if _, _, _, err := first.next(); err != nil {
					t.Fatal(err)
				}
			}
			pos := first.position(first.offset())
			first.close()
			if young := initial*len(g0[0]) < fingerprintBytes; young != (pos.File.FPLen < fingerprintBytes) {
				t.Fatalf("position taken with a fingerprint of %d bytes", pos.File.FPLen)
			}
			appendFile(t, live, joinLines(g0[initial:]))
			if moveOn != nil {
				moveOn(t, live)
			}
			appendFile(t, live, joinLines(g1))

			c := newTestCursor(t, live, 4096)
			lost, err := c.resume(pos)
			if err != nil || len(lost) != 0 {
				t.Fatalf("resume at %+v: lost %+v, %v", pos, lost, err)
			}
			lines, lost := follow(t, c)
			if len(lost) != 0 {
				t.Errorf("lost: %+v", lost)
			}
			sameLines(t, lines, append(slices.Clone(g0[read:]), g1...))
			want := int64(len(joinLines(g0[:read])))
			if read < len(g0) && lines[0].off != want {
				t.Errorf("first line read at %d, want %d", lines[0].off, want)
			}
		})
	}
	rotate := func(t *testing.T, live string) { rotateByHand(t, live, stamp0) }
	compress := func(t *testing.T, live string) { gzipLikeLumberjack(t, rotateByHand(t, live, stamp0)) }
	f("live file", 20, 7, nil)
	f("plain backup", 20, 7, rotate)
	f("gzipped backup", 20, 7, compress)
	f("gzipped backup, position taken while young", 3, 2, compress)
	f("plain backup, position taken while young", 3, 2, rotate)
	f("live file, position taken while young", 3, 3, nil)
	f("at offset 0 of a gzipped backup", 20, 0, compress)
	f("at the end of a gzipped backup", 40, 40, compress)
}

// TestCursorResumeGone resumes a position whose generation was deleted:
// its unread bytes are lost, and the next newer generation is opened, never
// an older one.
func TestCursorResumeGone(t *testing.T) {
	f := func(name string, newer bool) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, live := testLog(t)
			gone := backupPath(live, stamp0.Add(-time.Hour))
			content := joinLines(genLines("gone", 20))
			appendFile(t, gone, content)
			mt := stamp0.Add(-time.Hour - time.Second) // written until just before its rotation
			if err := os.Chtimes(gone, mt, mt); err != nil {
				t.Fatal(err)
			}
			first := newTestCursor(t, live, 4096)
			if err := first.startAt("beginning"); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, _, _, err := first.next(); err != nil {
					t.Fatal(err)
				}
			}
			pos := first.position(first.offset())
			first.close()
			if err := os.Remove(gone); err != nil {
				t.Fatal(err)
			}
			older := genLines("older", 5) // read before the lost one: not again
			appendFile(t, backupPath(live, stamp0.Add(-2*time.Hour)), joinLines(older))
			want := genLines("live", 5)
			if newer {
				next := genLines("next", 5)
				appendFile(t, backupPath(live, stamp0), joinLines(next))
				want = append(next, want...)
			}
			appendFile(t, live, joinLines(want[len(want)-5:]))

			c := newTestCursor(t, live, 4096)
			lost, err := c.resume(pos)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			wantLost := []FileRef{{File: pos.File, Path: gone, Size: int64(len(content)) - pos.Offset}}
			if !slices.Equal(lost, wantLost) {
				t.Fatalf("lost %+v\nwant %+v", lost, wantLost)
			}
			lines, more := follow(t, c)
			if len(more) != 0 {
				t.Errorf("lost again while following: %+v", more)
			}
			sameLines(t, lines, want)
		})
	}
	f("next newer backup", true)
	f("live file next", false)

}

// TestCursorAdvanceCorruptGzip: a gzipped backup that cannot be read must
// not leave the cursor unusable (the reader retries next and advance).
func TestCursorAdvanceCorruptGzip(t *testing.T) {
	_, live := testLog(t)
	appendFile(t, backupPath(live, stamp0.Add(-time.Hour)), joinLines(genLines("a", 3)))
	if err := os.WriteFile(backupPath(live, stamp0)+".gz", []byte("\x1f\x8b not gzip"), 0o600); err != nil {
		t.Fatal(err)
	}
	appendFile(t, live, "live\n")
	c := newTestCursor(t, live, 4096)
	if err := c.startAt("beginning"); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, _, err := c.next(); err != nil {
			break
		}
	}
	_, err := c.advance()
	if err == nil {
		t.Fatalf("advance onto a corrupt gzip: no error, opened %s", c.gen.path)
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("after advance failed (%v), next panics: %v", err, r)
		}
	}()
	for range 3 {
		_, _, _, nerr := c.next()
		if nerr == nil {
			t.Fatal("next returned a line after a failed advance")
		}
		if _, err := c.advance(); err == nil {
			break
		}
	}
}

// TestSurvey: a generation deleted while ahead of the cursor is reported
// lost once it has stayed missing for confirmLoss, once; an empty one is
// never reported.
func TestSurvey(t *testing.T) {
	_, live := testLog(t)
	first := backupPath(live, stamp0.Add(-3*time.Hour))
	empty := backupPath(live, stamp0.Add(-2*time.Hour))
	ahead := backupPath(live, stamp0.Add(-time.Hour))
	appendFile(t, first, joinLines(genLines("first", 5)))
	appendFile(t, empty, "")
	aheadContent := joinLines(genLines("ahead", 20))
	appendFile(t, ahead, aheadContent)
	appendFile(t, live, joinLines(genLines("live", 5)))

	c := newTestCursor(t, live, 4096)
	if err := c.startAt("beginning"); err != nil {
		t.Fatal(err)
	}
	if c.gen.path != first {
		t.Fatalf("opened %s", c.gen.path)
	}
	var paths []string
	for _, a := range c.ahead {
		paths = append(paths, filepath.Base(a.Path))
	}
	if want := []string{filepath.Base(empty), filepath.Base(ahead), "audit.log"}; !slices.Equal(paths, want) {
		t.Fatalf("ahead %q, want %q", paths, want)
	}
	aheadID := c.ahead[1].File
	if err := os.Remove(empty); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ahead); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	resurvey := func() []FileRef {
		t.Helper()
		lost, err := c.resurvey()
		if err != nil {
			t.Fatal(err)
		}
		return lost
	}
	if lost := resurvey(); len(lost) != 0 {
		t.Fatalf("reported lost as soon as missing: %+v", lost)
	}
	time.Sleep(confirmLoss / 2)
	if lost := resurvey(); len(lost) != 0 && time.Since(start) < confirmLoss {
		t.Fatalf("reported lost after %v missing: %+v", time.Since(start), lost)
	}
	time.Sleep(confirmLoss - time.Since(start) + 100*time.Millisecond)
	lost := resurvey()
	want := []FileRef{{File: aheadID, Path: ahead, Size: int64(len(aheadContent))}}
	if len(lost) != 1 || lost[0].File != want[0].File || lost[0].Path != want[0].Path || lost[0].Size != want[0].Size {
		t.Fatalf("after %v missing: lost %+v, want %+v", time.Since(start), lost, want)
	}
	if lost := resurvey(); len(lost) != 0 {
		t.Fatalf("reported lost again: %+v", lost)
	}
	// Reading on finds nothing else missing.
	lines, lost := follow(t, c)
	if len(lost) != 0 {
		t.Errorf("lost while following: %+v", lost)
	}
	sameLines(t, lines, append(genLines("first", 5), genLines("live", 5)...))
}

// TestSurveyStartAtEnd: backups behind the end of audit.log were skipped on
// purpose; lumberjack deleting them later is no loss.
func TestSurveyStartAtEnd(t *testing.T) {
	_, live := testLog(t)
	old1 := backupPath(live, stamp0.Add(-2*time.Hour))
	old2 := backupPath(live, stamp0.Add(-time.Hour))
	appendFile(t, old1, joinLines(genLines("old1", 20)))
	appendFile(t, old2, joinLines(genLines("old2", 20)))
	appendFile(t, live, joinLines(genLines("live", 20)))
	c := newTestCursor(t, live, 4096)
	if err := c.startAt("end"); err != nil {
		t.Fatal(err)
	}
	if len(c.ahead) != 0 {
		t.Errorf("ahead of the end of audit.log: %+v", c.ahead)
	}
	// Before the first survey (the reader waits surveyEvery), lumberjack's
	// maxbackup removes the old backups.
	os.Remove(old1)
	os.Remove(old2)
	var lost []FileRef
	for _, wait := range []time.Duration{0, confirmLoss + 50*time.Millisecond} {
		time.Sleep(wait)
		l, err := c.resurvey()
		if err != nil {
			t.Fatal(err)
		}
		lost = append(lost, l...)
	}
	if len(lost) != 0 {
		t.Errorf("backups behind the start reported lost: %+v", lost)
	}
}

// BenchmarkCursorNext reads a 64 MiB file of corpus lines with the cursor,
// and with a bufio.Scanner as the floor.
func BenchmarkCursorNext(b *testing.B) {
	const size = 64 << 20
	const maxLine = 4 << 20 // the default source.max_line_bytes
	_, live := testLog(b)
	f, err := os.Create(live)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	g := corpus.New(corpus.Options{Seed: 1})
	var line []byte
	var n, lines int64
	for n < size {
		line = append(g.Next(line[:0]), '\n')
		w.Write(line)
		n += int64(len(line))
		lines++
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()

	b.Run("cursor", func(b *testing.B) {
		b.SetBytes(n)
		b.ReportAllocs()
		for b.Loop() {
			c := newCursor(live, maxLine, slog.New(slog.DiscardHandler))
			if err := c.startAt("beginning"); err != nil {
				b.Fatal(err)
			}
			var read int64
			for {
				_, _, _, err := c.next()
				if err != nil {
					if !errors.Is(err, errWait) {
						b.Fatal(err)
					}
					break
				}
				read++
			}
			c.close()
			if read != lines {
				b.Fatalf("read %d lines, want %d", read, lines)
			}
		}
	})
	b.Run("bufio.Scanner", func(b *testing.B) {
		b.SetBytes(n)
		b.ReportAllocs()
		for b.Loop() {
			f, err := os.Open(live)
			if err != nil {
				b.Fatal(err)
			}
			s := bufio.NewScanner(f)
			s.Buffer(make([]byte, 64<<10), maxLine)
			var read int64
			for s.Scan() {
				read++
			}
			f.Close()
			if s.Err() != nil || read != lines {
				b.Fatalf("read %d lines, want %d: %v", read, lines, s.Err())
			}
		}
	})
}
