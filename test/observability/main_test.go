package observability

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// promInstall installs prometheus and promtool (Debian's package).
const promInstall = "apt-get install -y prometheus"

// requireTool returns the path of Debian's prometheus or promtool. When it
// is missing the test fails with the command that installs it, or is
// skipped under -short.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path := "/usr/bin/" + name
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed (%s is missing); install it with: %s", name, path, promInstall)
	if testing.Short() {
		t.Skip("skipping in -short mode: " + msg)
	}
	t.Fatal(msg)
	return ""
}

var (
	rootOnce sync.Once
	root     string
	rootErr  error
)

// moduleRoot is the directory of go.mod above this package.
func moduleRoot(t testing.TB) string {
	t.Helper()
	rootOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			rootErr = fmt.Errorf("cannot find the module root with go env GOMOD: %w", err)
			return
		}
		root = filepath.Dir(strings.TrimSpace(string(out)))
	})
	if rootErr != nil {
		t.Fatal(rootErr)
	}
	return root
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// shipperBinary builds ./cmd/audit-shipper once for the tests that run it
// (as test/acceptance does), into a directory removed by TestMain.
func shipperBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binary = filepath.Join(binDir, "audit-shipper")
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/audit-shipper")
		cmd.Dir = moduleRoot(t)
		if msg, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("cannot build the binary under test (cd %s && go build ./cmd/audit-shipper): %v\n%s", cmd.Dir, err, msg)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "audit-shipper-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "observability: cannot make a directory for the binary: %v\n", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// exposition is a /metrics page: each family's series, as label maps.
type exposition map[string][]map[string]string

// parseMetrics reads a /metrics page in the text format.
func parseMetrics(t *testing.T, page []byte) (map[string]*dto.MetricFamily, exposition) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("the shipper's /metrics is not the text format: %v", err)
	}
	exp := exposition{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			exp[name] = append(exp[name], ls)
		}
	}
	return fams, exp
}

// hasLabelValue reports whether a series of metric (a histogram's _bucket,
// _sum or _count included) has label=value.
func (e exposition) hasLabelValue(metric, label, value string) bool {
	series, ok := e[metric]
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, cut := strings.CutSuffix(metric, suffix); !ok && cut {
			series, ok = e[base]
		}
	}
	for _, s := range series {
		if s[label] == value {
			return true
		}
	}
	return false
}
