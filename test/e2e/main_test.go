package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	minRequests  = flag.Int("e2e.requests", 30000, "least number of API requests per run")
	minRotations = flag.Int("e2e.rotations", 12, "least number of audit-log rotations per run (the traffic goes on until both this and -e2e.requests are reached)")
	maxBackup    = flag.Int("e2e.maxbackup", 10, "--audit-log-maxbackup: backups the apiserver keeps, older ones are deleted, shipped or not (10 is RKE2's default; at about one rotation a second, 5 lets retention outrun a shipper down for 3 seconds)")
	kills        = flag.Int("e2e.kills", 4, "SIGKILLs of the shipper per run, spread over the traffic")
	workers      = flag.Int("e2e.workers", 8, "client-go goroutines making requests")
	keep         = flag.Bool("e2e.keep", false, "keep each run's directory (audit files, sink output, every process's log) even when it passes; a failing run's is always kept")
)

// Install commands, in the failure messages of missing binaries.
const (
	installEtcd  = "apt-get update && apt-get install -y etcd-server"
	installVLogs = "go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1"
	buildServer  = "test/e2e/apiserver/build.sh"
)

// binaries are the programs a run starts.
type binaries struct {
	repo      string // the audit-shipper repository
	shipper   string
	apiserver string
	etcd      string
	vlogs     string
}

// findBinaries builds the shipper and finds (or builds, once per machine)
// the servers. A missing server fails the test with the command that
// installs it.
func findBinaries(t *testing.T) binaries {
	t.Helper()
	var b binaries
	var err error
	if b.repo, err = filepath.Abs("../.."); err != nil {
		t.Fatal(err)
	}
	if mod, err := os.ReadFile(filepath.Join(b.repo, "go.mod")); err != nil || !bytes.HasPrefix(mod, []byte("module github.com/audit-shipper/audit-shipper\n")) {
		t.Fatalf("%s is not the audit-shipper repository (go.mod: %v); run the suite from test/e2e", b.repo, err)
	}
	if b.etcd, err = findBinary("etcd", "ETCD_BIN", installEtcd); err != nil {
		t.Fatal(err)
	}
	if b.vlogs, err = findBinary("victoria-logs", "VICTORIA_LOGS_BIN", installVLogs); err != nil {
		t.Fatal(err)
	}
	if b.apiserver = os.Getenv("KUBE_APISERVER_BIN"); b.apiserver == "" {
		// The build takes minutes the first time on a machine; its
		// progress line goes to the test's output.
		cmd := exec.Command("sh", filepath.Join(b.repo, buildServer))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cannot build kube-apiserver with %s: %v", buildServer, err)
		}
		b.apiserver = strings.TrimSpace(string(out))
	}
	b.shipper = filepath.Join(t.TempDir(), "audit-shipper")
	cmd := exec.Command("go", "build", "-o", b.shipper, "./cmd/audit-shipper")
	cmd.Dir = b.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cannot build the shipper (cd %s && go build ./cmd/audit-shipper): %v\n%s", b.repo, err, out)
	}
	return b
}

// workDir makes a directory for one run, removed afterwards unless the
// run failed or -e2e.keep is set.
func workDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "audit-shipper-e2e-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || *keep {
			t.Logf("kept %s (process logs under logs/)", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	for _, sub := range []string{"audit", "archive", "logs", "out", "state", "certs", "etcd"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// count formats n with thousands separators, for the report.
func count[N int | int64](n N) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}
