package acceptance

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	update = flag.Bool("update", false, "rewrite the golden files under testdata from the binary's output")
	seed   = flag.Int64("seed", 0, "seed of the crash test's kill schedule; 0 takes one from the clock")
)

// binary is the audit-shipper built for this run of the package.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "audit-shipper-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "acceptance: cannot make a directory for the binary: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "audit-shipper")
	if err := build(binary); err != nil {
		fmt.Fprintf(os.Stderr, "acceptance: %v\n", err)
		return 1
	}
	return m.Run()
}

// build compiles ./cmd/audit-shipper of the module this package is in.
func build(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("cannot find the module root with go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "build", "-o", out, "./cmd/audit-shipper")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cannot build the binary under test (cd %s && go build ./cmd/audit-shipper): %v\n%s", root, err, msg)
	}
	return nil
}

// scaled returns n, or a tenth of it under -short.
func scaled(n int) int {
	if testing.Short() {
		return n / 10
	}
	return n
}
