package shipper

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The helpers here build audit log directories the way kube-apiserver's
// lumberjack leaves them; the cursor and survey tests use them too.

// testLog returns a fresh directory and the live audit.log path in it.
func testLog(t testing.TB) (dir, live string) {
	t.Helper()
	dir = t.TempDir()
	return dir, filepath.Join(dir, "audit.log")
}

// auditLine is a short audit-shaped line: like real ones, every line starts
// with the same bytes, so only the auditID tells files apart.
func auditLine(gen string, i int) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%s-%04d","stage":"ResponseComplete","verb":"get"}`, gen, i)
}

func genLines(gen string, n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = auditLine(gen, i)
	}
	return lines
}

func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// appendFile appends s to path, creating it (0600, like lumberjack).
func appendFile(t testing.TB, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// backupPath is the name lumberjack gives live when it rotates it at at.
func backupPath(live string, at time.Time) string {
	ext := filepath.Ext(live)
	return strings.TrimSuffix(live, ext) + "-" + at.UTC().Format(backupTimeFormat) + ext
}

// rotateByHand does what lumberjack's openNew does: rename audit.log to its
// backup name, then create a new empty audit.log.
func rotateByHand(t testing.TB, live string, at time.Time) string {
	t.Helper()
	backup := backupPath(live, at)
	if err := os.Rename(live, backup); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(live, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return backup
}

// gzipLikeLumberjack does what lumberjack's compressLogFile does: write
// plain+".gz" beside the plain backup, then remove the plain one. The
// gzipped file keeps the plain one's modification time, as a file copied
// by a tool would not: either way the cursor must not rely on it.
func gzipLikeLumberjack(t testing.TB, plain string) string {
	t.Helper()
	dst := plain + ".gz"
	src, err := os.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if _, err := io.Copy(zw, src); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(plain); err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeGzip writes content gzipped to path.
func writeGzip(t testing.TB, path, content string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	if _, err := zw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func baseNames(gens []generation) []string {
	var names []string
	for _, g := range gens {
		names = append(names, filepath.Base(g.path))
	}
	return names
}

// listed returns the generation listed under base name.
func listed(t testing.TB, live, base string) generation {
	t.Helper()
	gens, err := listGenerations(live)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gens {
		if filepath.Base(g.path) == base {
			return g
		}
	}
	t.Fatalf("%s not listed; listed: %v", base, baseNames(gens))
	return generation{}
}

var stamp0 = time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)

func TestListGenerations(t *testing.T) {
	b1 := "audit-2024-06-01T08-00-00.000.log"
	b2 := "audit-2024-06-01T09-00-00.000.log"
	b3 := "audit-2024-06-01T09-00-00.001.log" // a millisecond later
	b4 := "audit-2024-06-02T00-00-00.000.log"
	f := func(name string, files []string, dirs []string, want []string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			dir, live := testLog(t)
			for i, name := range files {
				p := filepath.Join(dir, name)
				content := fmt.Sprintf("content of %s\n", name)
				if strings.HasSuffix(name, ".gz") {
					writeGzip(t, p, content)
				} else if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				// Modification times opposite to the name order: the name
				// decides.
				mt := stamp0.Add(-time.Duration(i) * time.Hour)
				if err := os.Chtimes(p, mt, mt); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range dirs {
				if err := os.Mkdir(filepath.Join(dir, d), 0o750); err != nil {
					t.Fatal(err)
				}
			}
			gens, err := listGenerations(live)
			if err != nil {
				t.Fatalf("listGenerations: %v", err)
			}
			if got := baseNames(gens); !slices.Equal(got, want) {
				t.Fatalf("listed %q, want %q", got, want)
			}
			for _, g := range gens {
				base := filepath.Base(g.path)
				st, err := os.Stat(g.path)
				if err != nil {
					t.Fatal(err)
				}
				dev, ino := devIno(st)
				if g.live != (base == "audit.log") || g.compressed != strings.HasSuffix(base, ".gz") ||
					g.size != st.Size() || !g.modTime.Equal(st.ModTime()) || g.dev != dev || g.ino != ino {
					t.Errorf("%s listed as %+v; on disk size %d mtime %v ino %d", base, g, st.Size(), st.ModTime(), ino)
				}
				if g.live {
					if !g.rotatedAt.IsZero() {
						t.Errorf("live file has rotatedAt %v", g.rotatedAt)
					}
					continue
				}
				stamp := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(base, "audit-"), ".gz"), ".log")
				want, _ := time.Parse(backupTimeFormat, stamp)
				if !g.rotatedAt.Equal(want) || want.IsZero() {
					t.Errorf("%s: rotatedAt %v, want %v", base, g.rotatedAt, want)
				}
			}
		})
	}

	f("live only", []string{"audit.log"}, nil, []string{"audit.log"})
	f("empty directory", nil, nil, nil)
	f("backups by the time in their names, live last",
		[]string{"audit.log", b4, b2, b1, b3}, nil,
		[]string{b1, b2, b3, b4, "audit.log"})
	f("backups without a live file", []string{b2, b1}, nil, []string{b1, b2})
	f("plain and gzipped of the same backup: only the plain one",
		[]string{"audit.log", b1, b1 + ".gz", b2 + ".gz"}, nil,
		[]string{b1, b2 + ".gz", "audit.log"})
	f("gzipped backups ordered with plain ones",
		[]string{b3, b2 + ".gz", b1 + ".gz", "audit.log", b4 + ".gz"}, nil,
		[]string{b1 + ".gz", b2 + ".gz", b3, b4 + ".gz", "audit.log"})
	f("foreign files and directories ignored",
		[]string{
			"audit.log", b1,
			"audit.log.1", "audit.log.gz", "other-2024-06-01T08-00-00.000.log", "other.log",
			"audit-yesterday.log", "audit-2024-06-01T08-00-00.log", "audit-2024-06-01T08-00-00.000.log.bak",
			"audit-2024-06-01T08-00-00.000.log.gz.tmp", ".dead-letter-line-1", "audit-2024-06-01T08-00-00.000.json",
			"xaudit-2024-06-01T08-00-00.000.log",
		},
		[]string{"audit-2024-06-01T07-00-00.000.log", "audit-2024-06-01T07-30-00.000.log.gz", "sub"},
		[]string{b1, "audit.log"})

	t.Run("audit.log a directory", func(t *testing.T) {
		dir, live := testLog(t)
		if err := os.Mkdir(live, 0o750); err != nil {
			t.Fatal(err)
		}
		appendFile(t, filepath.Join(dir, b1), "x\n")
		gens, err := listGenerations(live)
		if err != nil || !slices.Equal(baseNames(gens), []string{b1}) {
			t.Fatalf("listed %q, %v; want only %s", baseNames(gens), err, b1)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		gens, err := listGenerations(filepath.Join(t.TempDir(), "no", "such", "audit.log"))
		if err != nil || len(gens) != 0 {
			t.Fatalf("got %v, %v; want nothing and no error", baseNames(gens), err)
		}
	})
	t.Run("unreadable directory", func(t *testing.T) {
		dir, _ := testLog(t)
		notDir := filepath.Join(dir, "file")
		appendFile(t, notDir, "x")
		_, err := listGenerations(filepath.Join(notDir, "audit.log"))
		if err == nil || !strings.Contains(err.Error(), notDir) {
			t.Fatalf("got %v, want an error naming %q", err, notDir)
		}
	})
}

// idOf takes the identity of the file listed under base, with fresh
// identities (nothing cached).
func idOf(t testing.TB, live, base string) FileID {
	t.Helper()
	id, err := identities{}.of(listed(t, live, base))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestIdentities(t *testing.T) {
	full := joinLines(genLines("a", 40)) // well past fingerprintBytes
	young := joinLines(genLines("a", 3)) // shorter than fingerprintBytes
	other := joinLines(genLines("b", 40))
	backup := filepath.Base(backupPath("audit.log", stamp0))

	type step func(t *testing.T, live string)
	write := func(s string) step {
		return func(t *testing.T, live string) { appendFile(t, live, s) }
	}
	rotate := func(t *testing.T, live string) { rotateByHand(t, live, stamp0) }
	compress := func(t *testing.T, live string) { gzipLikeLumberjack(t, backupPath(live, stamp0)) }
	copytruncate := func(s string) step {
		return func(t *testing.T, live string) {
			if err := os.Truncate(live, 0); err != nil {
				t.Fatal(err)
			}
			appendFile(t, live, s)
		}
	}
	gzOther := func(t *testing.T, live string) { writeGzip(t, backupPath(live, stamp0)+".gz", other) }
	recreate := func(s string) step {
		return func(t *testing.T, live string) {
			if err := os.Remove(live); err != nil {
				t.Fatal(err)
			}
			appendFile(t, live, s)
		}
	}

	// f writes initial to audit.log, takes its identity, runs the steps,
	// then asks whether the generation now listed as base matches it.
	f := func(name, initial string, wantFPLen int, steps []step, base string, want bool) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			_, live := testLog(t)
			appendFile(t, live, initial)
			id := idOf(t, live, "audit.log")
			if id.FPLen != wantFPLen {
				t.Fatalf("identity of %d bytes covers %d, want %d", len(initial), id.FPLen, wantFPLen)
			}
			for _, s := range steps {
				s(t, live)
			}
			g := listed(t, live, base)
			ids := identities{}
			if got := ids.matches(id, g); got != want {
				t.Fatalf("matches(%s) = %v, want %v", base, got, want)
			}
			// The answer must not depend on what is cached.
			if got := ids.matches(id, g); got != want {
				t.Fatalf("matches(%s) with its identity cached = %v, want %v", base, got, want)
			}
		})
	}
	f("unchanged", full, fingerprintBytes, nil, "audit.log", true)
	f("grown", full, fingerprintBytes, []step{write(other)}, "audit.log", true)
	f("rotated (renamed, same inode)", full, fingerprintBytes, []step{rotate}, backup, true)
	f("new audit.log after rotation", full, fingerprintBytes, []step{rotate, write(full)}, "audit.log", false)
	f("compressed: plain vs gz, same content", full, fingerprintBytes, []step{rotate, compress}, backup+".gz", true)
	f("gz of other content", full, fingerprintBytes, []step{gzOther}, backup+".gz", false)
	f("young, grown", young, len(young), []step{write(other)}, "audit.log", true)
	f("young, grown past the fingerprint, rotated and compressed", young, len(young),
		[]step{write(other), rotate, compress}, backup+".gz", true)
	f("young, compressed still young", young, len(young), []step{rotate, compress}, backup+".gz", true)
	f("copytruncate, longer new content", full, fingerprintBytes, []step{copytruncate(other)}, "audit.log", false)
	f("copytruncate, shorter new content", full, fingerprintBytes, []step{copytruncate(auditLine("b", 0) + "\n")}, "audit.log", false)
	f("copytruncate, empty", full, fingerprintBytes, []step{copytruncate("")}, "audit.log", false)
	f("copytruncate of a young file", young, len(young), []step{copytruncate(other)}, "audit.log", false)
	// ext4 and tmpfs hand a freed inode to the next file created: the
	// same name, dev and inode, and only the content tells them apart.
	f("deleted and re-created with other content", full, fingerprintBytes, []step{recreate(other)}, "audit.log", false)
	f("young, deleted and re-created with other content", young, len(young), []step{recreate(other)}, "audit.log", false)
	f("empty: matches its own inode", "", 0, []step{write(full)}, "audit.log", true)
	f("empty: never a gz", "", 0, []step{write(full), rotate, compress}, backup+".gz", false)

	t.Run("inode reused under the same name with other content", func(t *testing.T) {
		// A stale identity from a file whose inode the file system gave to
		// the new audit.log: same dev and inode, other content.
		_, live := testLog(t)
		appendFile(t, live, full)
		g := listed(t, live, "audit.log")
		for _, c := range []struct {
			name  string
			stale string
		}{{"full", other}, {"young", joinLines(genLines("b", 3))}, {"same length, one byte off", strings.Replace(full, "a-0000", "a-000X", 1)}} {
			n := min(len(c.stale), fingerprintBytes)
			stale := FileID{Dev: g.dev, Ino: g.ino, FPLen: n, FP: fingerprint([]byte(c.stale[:n]))}
			if (identities{}).matches(stale, g) {
				t.Errorf("%s: a stale identity with this inode matches other content", c.name)
			}
		}
	})

	t.Run("listing while the name moves", func(t *testing.T) {
		// The identity of a generation is taken from the listed file, never
		// from whatever the name stands for when it is read.
		_, live := testLog(t)
		appendFile(t, live, full)
		g := listed(t, live, "audit.log")
		rotateByHand(t, live, stamp0)
		appendFile(t, live, other)
		if _, err := (identities{}).of(g); err != errRenamed {
			t.Fatalf("identity of a renamed listing: %v, want errRenamed", err)
		}
	})
}

func TestNewerThan(t *testing.T) {
	backup := func(at time.Time) generation { return generation{path: "b", rotatedAt: at} }
	gens := []generation{backup(stamp0.Add(-2 * time.Hour)), backup(stamp0.Add(-time.Hour)), backup(stamp0), {path: "audit.log", live: true}}
	f := func(name string, gens []generation, mod time.Time, want int) {
		t.Helper()
		if got := newerThan(gens, mod); got != want {
			t.Errorf("%s: newerThan = %d, want %d", name, got, want)
		}
	}
	f("older than every backup", gens, stamp0.Add(-3*time.Hour), 0)
	f("between backups", gens, stamp0.Add(-90*time.Minute), 1)
	f("just after a rotation", gens, stamp0.Add(-time.Hour+time.Millisecond), 2)
	f("same millisecond as a rotation counts as newer", gens, stamp0.Add(-time.Hour+999*time.Microsecond), 1)
	f("after every backup: the live file", gens, stamp0.Add(time.Minute), 3)
	f("after every backup, no live file", gens[:3], stamp0.Add(time.Minute), -1)
	f("nothing listed", nil, stamp0, -1)
}
