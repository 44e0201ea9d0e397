package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// repo is the repository's root, seen from this module.
var repo = func() string {
	abs, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	return abs
}()

// shipperBin is audit-shipper built from the repository by TestMain.
var shipperBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shipperBin = filepath.Join(dir, "audit-shipper")
	build := exec.Command("go", "build", "-trimpath", "-o", shipperBin, "./cmd/audit-shipper")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building audit-shipper: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// shipperCheck runs `audit-shipper check` on cfgFile and fails the test
// unless it accepts it with the expected number of sinks.
func shipperCheck(t *testing.T, cfgFile string, sinks int) {
	t.Helper()
	cmd := exec.Command(shipperBin, "check", "--config", cfgFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		cfg, _ := os.ReadFile(cfgFile)
		t.Fatalf("audit-shipper check refused the deployed configuration: %v\n%s\nconfiguration:\n%s", err, out, cfg)
	}
	if want := fmt.Sprintf("ok (%d sinks)", sinks); !strings.Contains(string(out), want) {
		t.Fatalf("audit-shipper check said %q, want %q", out, want)
	}
}

// readObjects decodes the files (relative to the repository) strictly.
func readObjects(t *testing.T, files ...string) []object {
	t.Helper()
	var objs []object
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		o, err := decode(f, data)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	return objs
}

// expectSound runs every check on objs and `audit-shipper check` on the
// configuration they carry.
func expectSound(t *testing.T, objs []object) {
	t.Helper()
	ds, err := only[*appsv1.DaemonSet](objs, "")
	if err != nil {
		t.Fatal(err)
	}
	setEnv(t, ds)
	probs, cfgFile := checkDeployment(objs, t.TempDir())
	for _, p := range probs {
		t.Error(p)
	}
	if t.Failed() {
		t.FailNow()
	}
	d := (&problems{}).find(objs)
	sinks, _ := d.tree["sinks"].([]any)
	shipperCheck(t, cfgFile, len(sinks))
}
