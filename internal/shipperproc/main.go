// Package shipperproc is the harness the black-box suites (test/acceptance,
// test/faults) share: it builds the audit-shipper binary once per suite,
// runs it as a subprocess over a configuration in a directory of its own
// (start, wait for /healthz, SIGTERM, SIGKILL, read its JSON logs and its
// /metrics), and writes audit logs the way kube-apiserver does. The two
// suites drive the same binary the same way; one copy of this code keeps a
// fix in one from being missed in the other.
package shipperproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Main runs a suite's tests against one binary, for its TestMain: it
// puts the binary in a new directory every user can read (some scenarios
// run the shipper as another user), sets *binary to its path, runs m and
// removes the directory. The binary is a copy of the file that the
// environment variable prebuiltEnv names when prebuiltEnv is not "" and
// set, else ./cmd/audit-shipper built from this module. It returns the
// exit code for os.Exit.
func Main(m *testing.M, binary *string, prebuiltEnv string) int {
	suite := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	dir, err := os.MkdirTemp("", "audit-shipper-"+suite+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: cannot make a directory for the binary: %v\n", suite, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", suite, err)
		return 1
	}
	*binary = filepath.Join(dir, "audit-shipper")
	if err := install(*binary, prebuiltEnv); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", suite, err)
		return 1
	}
	return m.Run()
}

func install(out, prebuiltEnv string) error {
	prebuilt := ""
	if prebuiltEnv != "" {
		prebuilt = os.Getenv(prebuiltEnv)
	}
	if prebuilt == "" {
		return build(out)
	}
	// A copy, so that the other user some scenarios use can run it.
	b, err := os.ReadFile(prebuilt)
	if err == nil {
		err = os.WriteFile(out, b, 0o755)
	}
	if err != nil {
		return fmt.Errorf("$%s=%q: %v; unset it to build ./cmd/audit-shipper", prebuiltEnv, prebuilt, err)
	}
	return nil
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
