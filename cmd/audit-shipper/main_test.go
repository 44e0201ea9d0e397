package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	doc := "source:\n  path: " + dir + "/audit.log\n  positions_file: " + dir + "/pos.json\n" +
		"dead_letter:\n  path: " + dir + "/dead.ndjson\nsinks:\n  - name: out\n    type: file\n    path: " + dir + "/out.ndjson\n"
	if err := os.WriteFile(good, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	unknownType := filepath.Join(dir, "unknown-type.yaml")
	if err := os.WriteFile(unknownType, []byte(strings.Replace(doc, "type: file", "type: kafka", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(args []string, code int, out string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if got := run(args, &stdout, &stderr); got != code {
			t.Errorf("audit-shipper %v exited %d, want %d; stderr: %s", args, got, code, stderr.String())
		}
		if all := stdout.String() + stderr.String(); !strings.Contains(all, out) {
			t.Errorf("audit-shipper %v said %q, want it to contain %q", args, all, out)
		}
	}
	f(nil, exitConfig, "Usage:")
	f([]string{"help"}, exitOK, "audit-shipper check --config FILE")
	f([]string{"version"}, exitOK, "audit-shipper ")
	f([]string{"ship"}, exitConfig, `unknown command "ship"`)
	f([]string{"check"}, exitConfig, "--config FILE is required")
	f([]string{"check", "--config", good}, exitOK, "ok (1 sinks)")
	f([]string{"check", "--config", unknownType}, exitConfig, `unknown-type.yaml:8: sinks[0].type: unknown sink type "kafka"; use one of: `)
	f([]string{"run", "--config", good, "extra"}, exitConfig, `unexpected argument "extra"`)
}

// TestTuneGC: the shipper collects at gcPercent unless the environment
// says otherwise, and then leaves the runtime's choice alone.
func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	log := slog.New(slog.DiscardHandler)

	t.Setenv("GOGC", "80")
	tuneGC(log)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set, the GC percent became %d; want it left alone", got)
	}
	os.Unsetenv("GOGC")
	tuneGC(log)
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("without GOGC, the GC percent is %d, want %d", got, gcPercent)
	}
}
