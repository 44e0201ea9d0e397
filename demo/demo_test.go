package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/corpus"
)

func TestCount(t *testing.T) {
	g := corpus.New(corpus.Options{Seed: 3})
	a, b := string(g.Next(nil)), string(g.Next(nil))
	path := filepath.Join(t.TempDir(), "shipped.ndjson")
	// Two events, one sent twice, a torn fragment left by a crash, and a
	// blank line.
	doc := a + "\n" + b + "\n" + a[:40] + "\n\n" + a + "\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	unique, dups, err := Count(path)
	if err != nil || unique != 2 || dups != 1 {
		t.Fatalf("Count = %d unique, %d duplicates, %v; want 2, 1, nil", unique, dups, err)
	}
	if u, d, err := Count(filepath.Join(t.TempDir(), "absent")); u != 0 || d != 0 || err != nil {
		t.Fatalf("Count of a missing file = %d, %d, %v; want zeros", u, d, err)
	}
}

// Write rotates as kube-apiserver does: the events end up in gzipped
// backups and the live file, every one of them a whole line.
func TestWriteRotates(t *testing.T) {
	dir := t.TempDir()
	if err := Write(context.Background(), dir, 3000, 0); err != nil {
		t.Fatal(err)
	}
	// lumberjack compresses in the background and cannot be waited for:
	// wait until no plain backup is left, so the directory can be removed.
	var backups int
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		entries, err := os.ReadDir(filepath.Join(dir, "audit"))
		if err != nil {
			t.Fatal(err)
		}
		backups = 0
		plain := 0
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "audit-") {
				backups++
				if !strings.HasSuffix(e.Name(), ".gz") {
					plain++
				}
			}
		}
		if plain == 0 || time.Now().After(deadline) {
			break
		}
	}
	if backups < 2 {
		t.Fatalf("%d backups after 3000 events of ~2.5 KB with 1 MB rotation, want at least 2", backups)
	}
	cfg, err := Config(dir, "", "info")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Path != filepath.Join(dir, "audit", "audit.log") || len(cfg.Sinks) != 1 || cfg.Sinks[0].Type != "file" {
		t.Fatalf("demo config %+v: want the file sink over %s/audit/audit.log", cfg, dir)
	}
}
