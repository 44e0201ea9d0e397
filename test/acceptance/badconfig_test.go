package acceptance

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBadConfig runs `check` and `run` on each bad config under
// testdata/badconfig: both must exit 2 with one line that names the file,
// the line and the key, says what is wrong and how to fix it, and equals
// the golden file (-update rewrites those). The configs find their
// directories through ${ACCEPTANCE_DIR}, which the messages show as is.
func TestBadConfig(t *testing.T) {
	f := func(name, config, key string, sourceIsDir bool) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for _, d := range []string{"logs", "state"} {
				if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			audit := filepath.Join(dir, "logs", "audit.log")
			if sourceIsDir {
				if err := os.Mkdir(audit, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(audit, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			wantLines := markedLines(t, config)

			check := runBad(t, dir, "check", config)
			run := runBad(t, dir, "run", config)
			if run != check {
				t.Errorf("run and check say different things:\ncheck: %s\nrun:   %s", check, run)
			}
			checkMessage(t, check, config, key, wantLines)

			golden := filepath.Join("testdata", "badconfig", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(check+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./test/acceptance/ -run TestBadConfig -update to write it)", err)
			}
			if got := check + "\n"; got != string(want) {
				t.Errorf("message changed:\ngot:  %swant: %s(-update rewrites %s)", got, want, golden)
			}
		})
	}
	f("missing-file", "testdata/badconfig/does-not-exist.yaml", "", false)
	f("unknown-key", "testdata/badconfig/unknown-key.yaml", "max_line_byte", false)
	f("wrong-type", "testdata/badconfig/wrong-type.yaml", "max_events", false)
	f("missing-sink-path", "testdata/badconfig/missing-sink-path.yaml", "path", false)
	f("source-path-directory", "testdata/badconfig/source-path-directory.yaml", "path", true)
}

// markedLines returns the numbers of the config's lines marked
// "# want-line": where the error may point.
func markedLines(t *testing.T, config string) map[int]bool {
	t.Helper()
	b, err := os.ReadFile(config)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	lines := make(map[int]bool)
	for i, l := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(l, "# want-line") {
			lines[i+1] = true
		}
	}
	return lines
}

// runBad runs the binary's subcommand on a bad config, requires exit 2
// and returns its stderr, with dir shown as ${ACCEPTANCE_DIR}.
func runBad(t *testing.T, dir, sub, config string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, sub, "--config", config)
	cmd.Env = append(os.Environ(), "ACCEPTANCE_DIR="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("audit-shipper %s --config %s still ran after 10s: the config was accepted; stderr:\n%s", sub, config, stderr.Bytes())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("audit-shipper %s --config %s: %v, want exit status 2; stderr:\n%s", sub, config, err, stderr.Bytes())
	}
	if stdout.Len() != 0 {
		t.Errorf("audit-shipper %s --config %s wrote to stdout: %q", sub, config, stdout.Bytes())
	}
	return strings.ReplaceAll(strings.TrimSuffix(stderr.String(), "\n"), dir, "${ACCEPTANCE_DIR}")
}

// message is "FILE:LINE: key: what; fix", or "FILE: what; fix" when there
// is no line to point at.
var message = regexp.MustCompile(`^([^:\n]+?)(?::(\d+))?: (?:([^\s:]+): )?([^\n]+; [^\n]+)$`)

func checkMessage(t *testing.T, msg, config, key string, wantLines map[int]bool) {
	t.Helper()
	m := message.FindStringSubmatch(msg)
	if m == nil {
		t.Errorf("the message is not one line of the form FILE:LINE: key: what; fix:\n%s", msg)
		return
	}
	if m[1] != config {
		t.Errorf("the message names the file %q, want %q: %s", m[1], config, msg)
	}
	if key == "" {
		return
	}
	if n, _ := strconv.Atoi(m[2]); !wantLines[n] {
		t.Errorf("the message points at line %q, want one of %v: %s", m[2], slices.Sorted(maps.Keys(wantLines)), msg)
	}
	if !strings.HasSuffix(m[3], key) {
		t.Errorf("the message names the key %q, want one ending in %q: %s", m[3], key, msg)
	}
}
