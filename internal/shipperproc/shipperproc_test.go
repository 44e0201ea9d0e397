package shipperproc

import (
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestAuditID(t *testing.T) {
	for _, c := range []struct {
		name, line, want string
		ok               bool
	}{
		{"event", `{"kind":"Event","auditID":"a1","objectRef":{"auditID":"nested"}}`, "a1", true},
		{"torn after the id", `{"kind":"Event","auditID":"a1","stage":"Resp`, "a1", true},
		{"no auditID", `{"kind":"Event","stage":"ResponseComplete"}`, "", false},
		{"empty auditID", `{"auditID":""}`, "", false},
		{"unterminated", `{"auditID":"a1`, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := AuditID([]byte(c.line))
			if got != c.want || ok != c.ok {
				t.Errorf("AuditID(%s) = %q, %v; want %q, %v", c.line, got, ok, c.want, c.ok)
			}
		})
	}
}

func TestMetricsValue(t *testing.T) {
	const text = `# TYPE shipped counter
shipped{sink="loki",code="200"} 3
shipped{sink="loki",code="error"} 4
shipped{sink="es",code="200"} 5
# TYPE lag gauge
lag{sink="loki"} 7
`
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	m := Metrics(fams)
	check := func(name string, want float64, wantOK bool, labels ...string) {
		t.Helper()
		got, ok := m.Value(name, labels...)
		if got != want || ok != wantOK {
			t.Errorf("Value(%s, %v) = %v, %v; want %v, %v", name, labels, got, ok, want, wantOK)
		}
	}
	check("shipped", 12, true)
	check("shipped", 7, true, "sink", "loki")
	check("shipped", 4, true, "sink", "loki", "code", "error")
	check("shipped", 0, false, "sink", "file")
	check("lag", 7, true, "sink", "loki")
	check("missing", 0, false)
}

func TestLogs(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "shipper-01.log")
	second := filepath.Join(dir, "shipper-02.log")
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(first, `{"level":"WARN","msg":"cannot save positions: disk full"}
{"level":"INFO","msg":"started"}
`)
	write(second, `{"level":"WARN","msg":"cannot save positions: disk full"}
{"level":"ERROR","msg":"cannot open"}
panic: boom
goroutine 1 [running]:
main.main()
`)
	p := &Proc{t: t, logFiles: []string{first, second}}

	if recs := p.LogRecords("cannot save positions"); len(recs) != 2 {
		t.Errorf("LogRecords found %d records whose msg contains the text, want 2: %v", len(recs), recs)
	}
	warns, errs := p.LevelMsgs("WARN"), p.LevelMsgs("ERROR")
	if warns["cannot save positions: disk full"] != 2 || len(warns) != 1 || errs["cannot open"] != 1 || len(errs) != 1 {
		t.Errorf("LevelMsgs: warnings %v, errors %v", warns, errs)
	}
	if got, want := p.LogTail(2), "panic: boom\ngoroutine 1 [running]:"; got != want {
		t.Errorf("LogTail(2) = %q, want the panic: %q", got, want)
	}
	write(second, "a\nb\nc\n")
	if got := p.LogTail(2); got != "b\nc" {
		t.Errorf("LogTail(2) = %q, want the last two lines", got)
	}
}

func TestAuditLogRotations(t *testing.T) {
	for _, c := range []struct {
		name       string
		maxBackups int
		compress   bool
	}{
		{"every backup kept", 0, false},
		{"one backup compressed", 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := NewAuditLog(filepath.Join(dir, "audit.log"), LogOptions{MaxBackups: c.maxBackups, Compress: c.compress, Seed: 1})
			if err := l.WriteRotations(2); err != nil {
				t.Fatal(err)
			}
			l.Close(t)
			if l.Rotations() != 2 {
				t.Errorf("Rotations() = %d, want 2", l.Rotations())
			}
			files, _ := filepath.Glob(filepath.Join(dir, "audit*"))
			ids := make(map[string]bool)
			var size int64
			for _, f := range files {
				if c.compress && f != l.Path() && !strings.HasSuffix(f, ".gz") {
					t.Errorf("%s is not compressed after Close", f)
				}
				n, lines := readIDs(t, f, ids)
				size += n
				if lines == 0 {
					t.Errorf("%s is empty", f)
				}
			}
			wantKept := c.maxBackups
			if wantKept == 0 {
				wantKept = 2
			}
			if kept := len(files) - 1; kept != wantKept {
				t.Errorf("%d backups kept, want %d: %v", kept, wantKept, files)
			}
			if c.maxBackups == 0 {
				if len(ids) != len(l.IDs()) || size != l.Bytes() {
					t.Errorf("the files hold %d events in %d bytes, the writer says %d in %d", len(ids), size, len(l.IDs()), l.Bytes())
				}
			}
			for _, id := range l.IDs()[len(l.IDs())-10:] {
				if !ids[id] {
					t.Errorf("auditID %s written last is in no file", id)
				}
			}
		})
	}
}

// readIDs adds the auditIDs of the (maybe gzipped) file to ids and
// returns its uncompressed size and line count.
func readIDs(t *testing.T, path string, ids map[string]bool) (size int64, lines int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		id, ok := AuditID(sc.Bytes())
		if !ok {
			t.Fatalf("%s: a line without an auditID: %.100s", path, sc.Bytes())
		}
		if ids[id] {
			t.Errorf("%s: auditID %s again", path, id)
		}
		ids[id] = true
		size += int64(len(sc.Bytes())) + 1
		lines++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return size, lines
}

func TestContinue(t *testing.T) {
	dir := t.TempDir()
	first := NewAuditLog(filepath.Join(dir, "a.log"), LogOptions{Seed: 2, Start: time.Unix(0, 0)})
	if err := first.WriteN(10); err != nil {
		t.Fatal(err)
	}
	first.Close(t)
	next := first.Continue(filepath.Join(dir, "b.log"))
	if err := next.WriteN(10); err != nil {
		t.Fatal(err)
	}
	next.Close(t)
	if len(next.IDs()) != 20 {
		t.Fatalf("the continued log's IDs hold %d events, want the first's 10 and its own 10", len(next.IDs()))
	}
	ids := make(map[string]bool)
	readIDs(t, filepath.Join(dir, "a.log"), ids)
	readIDs(t, filepath.Join(dir, "b.log"), ids)
	for _, id := range next.IDs() {
		if !ids[id] {
			t.Errorf("auditID %s is in neither file", id)
		}
	}
}
