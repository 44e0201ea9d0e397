package shipper

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func openTestDeadLetters(t testing.TB) *deadLetters {
	t.Helper()
	d, err := openDeadLetters(filepath.Join(t.TempDir(), "dl", "dead-letters.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.close() })
	return d
}

// decodedLetter is a record as a reader of the file sees it.
type decodedLetter struct {
	rec  deadLetter
	line []byte // the line's bytes, from line or line_base64
	keys map[string]bool
}

// decodeDeadLetterFile syncs d and decodes every record in its file, failing
// unless each is one line of valid JSON with exactly one of line and
// line_base64.
func decodeDeadLetterFile(t testing.TB, d *deadLetters) []decodedLetter {
	t.Helper()
	if err := d.sync(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(d.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("dead-letter file does not end with a newline: ...%q", b[max(0, len(b)-40):])
	}
	var out []decodedLetter
	for i, raw := range bytes.SplitAfter(b, []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var dl decodedLetter
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			t.Fatalf("record %d is not JSON (%v): %.200q", i, err, raw)
		}
		if err := json.Unmarshal(raw, &dl.rec); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		dl.keys = map[string]bool{}
		for k := range keys {
			dl.keys[k] = true
		}
		switch {
		case dl.keys["line"] && !dl.keys["line_base64"]:
			dl.line = []byte(*dl.rec.Line)
		case dl.keys["line_base64"] && !dl.keys["line"]:
			dl.line, err = base64.StdEncoding.DecodeString(dl.rec.LineBase64)
			if err != nil {
				t.Fatalf("record %d: line_base64: %v", i, err)
			}
		default:
			t.Fatalf("record %d has keys %v, want one of line and line_base64", i, dl.keys)
		}
		out = append(out, dl)
	}
	return out
}

// checkLetter fails unless dl holds line whole, as text when it is UTF-8.
func checkLetter(t testing.TB, dl decodedLetter, line []byte) {
	t.Helper()
	if !bytes.Equal(dl.line, line) {
		t.Fatalf("record keeps %d bytes, want %d; first difference at %d", len(dl.line), len(line), firstDiff(string(dl.line), string(line)))
	}
	if dl.rec.Length != int64(len(line)) {
		t.Errorf("length %d, want %d", dl.rec.Length, len(line))
	}
	if text := utf8.Valid(line); dl.keys["line"] != text {
		t.Errorf("valid UTF-8 %v, but keys are %v", text, dl.keys)
	}
	if dl.rec.Truncated {
		t.Error("marked truncated")
	}
}

// Lines that need care in JSON: every control character, quotes,
// backslashes, HTML characters, the JavaScript line separators, and bytes
// that are not UTF-8.
var deadLines = map[string]string{
	"ascii":               `{"kind":"Event","auditID":"x"}`,
	"empty":               "",
	"multi-byte":          "héllo wörld ✓ 𝄞 日本語",
	"quotes and escapes":  `say "hi" \ \n \u0041 \"`,
	"control characters":  "\x00\x01\x02\x07\x08\t\n\v\f\r\x1b\x1f\x7f end",
	"html":                "<script>&amp;</script>",
	"line separators":     "a\u2028b\u2029c",
	"U+FFFD itself":       "bad \uFFFD char",
	"invalid byte":        "abc\xffdef",
	"lone continuation":   "\x80",
	"truncated rune":      "日本\xe8\xaa",
	"surrogate half":      "\xed\xa0\x80",
	"overlong encoding":   "\xc0\xaf",
	"invalid, with quote": "\"\xfe\"",
}

func TestDeadLetterWrite(t *testing.T) {
	d := openTestDeadLetters(t)
	var names []string
	for name, line := range deadLines {
		names = append(names, name)
		rec := deadLetter{Time: stamp0, Sink: "loki", File: "/var/log/audit.log", Offset: 42, Reason: "syntax", Error: "bad \"line\"\n" + name, Length: -1}
		if err := d.write(rec, []byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	letters := decodeDeadLetterFile(t, d)
	if len(letters) != len(names) {
		t.Fatalf("%d records, want %d", len(letters), len(names))
	}
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			dl := letters[i]
			checkLetter(t, dl, []byte(deadLines[name]))
			want := deadLetter{Time: stamp0, Sink: "loki", File: "/var/log/audit.log", Offset: 42, Reason: "syntax", Error: "bad \"line\"\n" + name,
				Length: int64(len(deadLines[name])), Line: dl.rec.Line, LineBase64: dl.rec.LineBase64}
			if !dl.rec.Time.Equal(want.Time) {
				t.Errorf("time %v, want %v", dl.rec.Time, want.Time)
			}
			dl.rec.Time = want.Time
			if dl.rec != want {
				t.Errorf("record %+v\nwant   %+v", dl.rec, want)
			}
		})
	}
}

// feedRest returns a rest function for stream that gives line in chunks of
// size n, answering "not ended" with nothing written now and then, as the
// reader does while it waits for the file to grow.
func feedRest(line []byte, n int) func(io.Writer) (bool, error) {
	calls := 0
	return func(w io.Writer) (bool, error) {
		calls++
		if calls%3 == 0 {
			return false, nil // waited: nothing new
		}
		k := min(n, len(line))
		if _, err := w.Write(line[:k]); err != nil {
			return false, err
		}
		line = line[k:]
		return len(line) == 0, nil
	}
}

func TestDeadLetterStream(t *testing.T) {
	// 5 MB of text with every kind of rune and the characters JSON
	// escapes; chunks of an odd size split multi-byte runes.
	var sb strings.Builder
	for sb.Len() < 5<<20 {
		sb.WriteString(`{"k":"v\"q\\ é ✓ 𝄞 日本語 \t` + "\x01\n\x1f<>&\u2028" + `"},`)
	}
	text := []byte(sb.String())
	// The invalid ones need not be as long: past the spill buffer will do.
	invalid := bytes.Clone(text[:1<<20+12345])
	invalid[len(invalid)/2] = 0xff
	splitLast := append(bytes.Clone(text[:1<<20-10]), "𝄞"[:2]...) // ends in half a rune

	const head = 1000
	f := func(name string, line []byte, chunk int) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			if len(line) > 1<<20 && utf8.Valid(line) && !splitsRunes(line[head:], chunk) {
				t.Fatalf("chunks of %d split no rune; pick another size", chunk)
			}
			d := openTestDeadLetters(t)
			rec := deadLetter{Time: stamp0, Sink: "es", File: "audit.log", Offset: 7, Reason: reasonTooLong, Error: "too long"}
			if err := d.stream(rec, line[:head], feedRest(line[head:], chunk)); err != nil {
				t.Fatal(err)
			}
			// A record after it starts on a line of its own.
			if err := d.write(rec, []byte("after")); err != nil {
				t.Fatal(err)
			}
			letters := decodeDeadLetterFile(t, d)
			if len(letters) != 2 {
				t.Fatalf("%d records, want 2", len(letters))
			}
			checkLetter(t, letters[0], line)
			if r := letters[0].rec; r.Reason != reasonTooLong || r.Offset != 7 || r.Sink != "es" || r.Error != "too long" || !r.Time.Equal(stamp0) {
				t.Errorf("record %+v", r)
			}
			checkLetter(t, letters[1], []byte("after"))
			leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(d.path), ".dead-letter-line-*"))
			if len(leftovers) != 0 {
				t.Errorf("spill files left: %v", leftovers)
			}
		})
	}
	f("valid UTF-8, runes split across chunks", text, 64<<10+1)
	f("valid UTF-8, byte by byte at the start", text[:head+5000], 1)
	f("invalid byte in the middle", invalid, 64<<10+1)
	f("ends in half a rune", splitLast, 1<<20+3)
	for name, line := range deadLines {
		if line != "" {
			f("short: "+name, []byte(strings.Repeat(line, head/len(line)+2)), 7)
		}
	}
}

func splitsRunes(b []byte, chunk int) bool {
	for k := chunk; k < len(b); k += chunk {
		if !utf8.RuneStart(b[k]) {
			return true
		}
	}
	return false
}

func TestDeadLetterStreamErrors(t *testing.T) {
	d := openTestDeadLetters(t)
	boom := errors.New("context canceled")
	calls := 0
	err := d.stream(deadLetter{Sink: "s"}, []byte("head"), func(w io.Writer) (bool, error) {
		calls++
		if calls == 3 {
			return false, boom
		}
		w.Write([]byte("more"))
		return false, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("stream: %v, want the rest function's error", err)
	}
	if letters := decodeDeadLetterFile(t, d); len(letters) != 0 {
		t.Fatalf("a record was written for a line not read whole: %+v", letters[0].rec)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(d.path), ".dead-letter-line-*"))
	if len(leftovers) != 0 {
		t.Errorf("spill files left: %v", leftovers)
	}
}

// TestDeadLetterStreamFromCursor dead-letters an over-long line the way
// the reader does: the cursor's head, then its rest, from a gzipped backup.
func TestDeadLetterStreamFromCursor(t *testing.T) {
	_, live := testLog(t)
	long := strings.Repeat("é\"日\\", 300_000) + "\xff tail"
	appendFile(t, backupPath(live, stamp0), "short\n"+long+"\nnext\n")
	gzipLikeLumberjack(t, backupPath(live, stamp0))
	c := newTestCursor(t, live, 64<<10)
	if err := c.startAt("beginning"); err != nil {
		t.Fatal(err)
	}
	c.next()
	head, off, tooLong, err := c.next()
	if err != nil || !tooLong || off != 6 {
		t.Fatalf("next: %d bytes at %d, tooLong %v, %v", len(head), off, tooLong, err)
	}
	d := openTestDeadLetters(t)
	if err := d.stream(deadLetter{Offset: off, Reason: reasonTooLong}, head, c.rest); err != nil {
		t.Fatal(err)
	}
	letters := decodeDeadLetterFile(t, d)
	if len(letters) != 1 {
		t.Fatalf("%d records", len(letters))
	}
	checkLetter(t, letters[0], []byte(long))
	if line, off, _, err := c.next(); string(line) != "next" || off != int64(6+len(long)+1) || err != nil {
		t.Fatalf("after the long line: %q at %d, %v", line, off, err)
	}
}

func TestDeadLetterSync(t *testing.T) {
	d := openTestDeadLetters(t)
	if err := d.write(deadLetter{Sink: "s"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// In the file when write returns (a failed write is known to the
	// caller, which keeps its position); sync makes it durable before the
	// saver saves a position past the line.
	if st, err := os.Stat(d.path); err != nil || st.Size() == 0 {
		t.Fatalf("before sync: %v bytes, %v; want the record written", st.Size(), err)
	}
	if n := len(decodeDeadLetterFile(t, d)); n != 1 {
		t.Fatalf("after sync: %d records, want 1", n)
	}
	// Reopened, it appends.
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	d2, err := openDeadLetters(d.path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.close()
	if err := d2.write(deadLetter{Sink: "s"}, []byte("y")); err != nil {
		t.Fatal(err)
	}
	letters := decodeDeadLetterFile(t, d2)
	if len(letters) != 2 || string(letters[0].line) != "x" || string(letters[1].line) != "y" {
		t.Fatalf("after reopening: %+v", letters)
	}
	if st, _ := os.Stat(d.path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600: dead letters hold audit events", st.Mode().Perm())
	}
}

func TestDeadLetterOpenError(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(notDir, "dl.ndjson"), dir} {
		_, err := openDeadLetters(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("open %q: %v, want an error naming it", path, err)
		}
	}
	if _, err := openDeadLetters(dir); err == nil || !strings.Contains(err.Error(), "dead_letter.path") {
		t.Errorf("open a directory: %v, want the setting to change", err)
	}
}

// TestDeadLetterConcurrent: every sink's reader and sender write; records
// stay whole.
func TestDeadLetterConcurrent(t *testing.T) {
	d := openTestDeadLetters(t)
	const writers, each = 8, 200
	long := []byte(strings.Repeat("ü", 3000))
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				var err error
				if i%50 == 0 {
					err = d.stream(deadLetter{Sink: "s", Offset: int64(w)}, long[:100], feedRest(long[100:], 999))
				} else {
					err = d.write(deadLetter{Sink: "s", Offset: int64(w)}, long[:i])
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i%40 == 0 {
					if err := d.sync(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	letters := decodeDeadLetterFile(t, d)
	if len(letters) != writers*each {
		t.Fatalf("%d records, want %d", len(letters), writers*each)
	}
	for _, dl := range letters {
		if !bytes.HasPrefix(long, dl.line) || int64(len(dl.line)) != dl.rec.Length {
			t.Fatalf("record damaged: %d bytes, length %d", len(dl.line), dl.rec.Length)
		}
	}
}
