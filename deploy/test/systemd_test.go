package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/audit-shipper/audit-shipper/config"
)

const unitFile = "deploy/systemd/audit-shipper.service"

// systemdAnalyze returns systemd-analyze, or fails with the command that
// installs it (skips with -short).
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err == nil {
		return p
	}
	if testing.Short() {
		t.Skip("systemd-analyze is not installed; -short skips the unit's verification")
	}
	t.Fatal("systemd-analyze is not installed: apt-get install -y systemd")
	return ""
}

// unitFor copies the unit with ExecStart pointed at the binary built by
// TestMain: systemd-analyze verify refuses a unit whose binary is
// missing, and /usr/local/bin/audit-shipper is not installed here.
func unitFor(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, unitFile))
	if err != nil {
		t.Fatal(err)
	}
	const installed = "ExecStart=/usr/local/bin/audit-shipper "
	if !strings.Contains(string(data), installed) {
		t.Fatalf("%s: no %q line", unitFile, installed)
	}
	unit := filepath.Join(t.TempDir(), "audit-shipper.service")
	if err := os.WriteFile(unit, []byte(strings.Replace(string(data), installed, "ExecStart="+shipperBin+" ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return unit
}

// TestSystemdUnitVerifies runs systemd-analyze verify (every warning is a
// failure) and systemd-analyze security, whose exposure score must stay
// at 2.0 or below ("OK"). The unit is not started: this machine has no
// running systemd.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := systemdAnalyze(t)
	unit := unitFor(t)
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", "--threshold=20", "--no-pager", unit).CombinedOutput()
	score := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || score == nil {
		t.Fatalf("systemd-analyze security: %v (threshold 2.0)\n%s", err, out)
	}
	t.Logf("systemd-analyze security: exposure %s (0 best, 10 worst)", score[1])
}

// unit is a parsed unit file: "Section.Key" -> values in order.
type unit map[string][]string

func parseUnit(t *testing.T) unit {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, unitFile))
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not key=value", unitFile, line)
			}
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	return u
}

func (u unit) one(key string) string {
	if v := u[key]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// words splits every value of key into its space-separated words, with
// the "-" (may be missing) prefix removed.
func (u unit) words(key string) []string {
	var out []string
	for _, v := range u[key] {
		for _, w := range strings.Fields(v) {
			out = append(out, strings.TrimPrefix(w, "-"))
		}
	}
	return out
}

// TestSystemdUnitHardening checks the unit against the shipper: the
// user, the one capability, the read-only audit directories, the state
// directory the configuration's positions live in, the stop deadline
// against shutdown.timeout, the memory cap against the sinks' windows.
func TestSystemdUnitHardening(t *testing.T) {
	u := parseUnit(t)
	// The configuration the docs install as /etc/audit-shipper/config.yaml.
	cfg, err := config.Load(filepath.Join(repo, "configs/audit-shipper.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.one("Service.ExecStart"), "/usr/local/bin/audit-shipper run --config /etc/audit-shipper/config.yaml"; got != want {
		t.Errorf("ExecStart=%s, want %s", got, want)
	}
	if user := u.one("Service.User"); user == "" || user == "root" || user == "0" || u.one("Service.DynamicUser") == "yes" {
		t.Errorf("User=%q: want a dedicated user", user)
	}
	for key, want := range map[string]string{
		"Service.AmbientCapabilities":      "CAP_DAC_READ_SEARCH",
		"Service.CapabilityBoundingSet":    "CAP_DAC_READ_SEARCH",
		"Service.NoNewPrivileges":          "yes",
		"Service.ProtectSystem":            "strict",
		"Service.ProtectHome":              "yes",
		"Service.PrivateTmp":               "yes",
		"Service.StateDirectory":           "audit-shipper",
		"Service.KillSignal":               "SIGTERM",
		"Service.RestartPreventExitStatus": "2", // bad configuration
		"Service.Restart":                  "on-failure",
		"Unit.StartLimitIntervalSec":       "0",
	} {
		if got := u.one(key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	ro := u.words("Service.ReadOnlyPaths")
	for _, dir := range []string{filepath.Dir(cfg.Source.Path), "/var/lib/rancher/rke2/server/logs"} {
		if !slices.Contains(ro, dir) {
			t.Errorf("ReadOnlyPaths %v lacks the audit directory %s", ro, dir)
		}
	}
	hidden := u.words("Service.InaccessiblePaths")
	for _, secret := range []string{"/var/lib/rancher/rke2/server/tls", "/var/lib/rancher/rke2/server/db", "/etc/rancher/rke2/config.yaml"} {
		if !slices.Contains(hidden, secret) {
			t.Errorf("InaccessiblePaths %v lacks %s, which DAC_READ_SEARCH could otherwise read", hidden, secret)
		}
	}
	state := "/var/lib/" + u.one("Service.StateDirectory")
	for key, path := range map[string]string{"source.positions_file": cfg.Source.PositionsFile, "dead_letter.path": cfg.DeadLetter.Path} {
		if filepath.Dir(path) != state {
			t.Errorf("%s %s is not in StateDirectory %s, the one writable directory", key, path, state)
		}
	}
	stop, err := time.ParseDuration(u.one("Service.TimeoutStopSec"))
	if err != nil || stop < cfg.Shutdown.Timeout.D()+10*time.Second {
		t.Errorf("TimeoutStopSec=%s (%v) must be at least shutdown.timeout (%v) + 10s", u.one("Service.TimeoutStopSec"), err, cfg.Shutdown.Timeout.D())
	}
	memMax, err := resource.ParseQuantity(strings.TrimSuffix(u.one("Service.MemoryMax"), "M") + "Mi")
	var inflight int64
	for _, s := range cfg.Sinks {
		inflight += int64(s.MaxInflightBytes)
	}
	if err != nil || memMax.Value() < inflight+idleFootprint {
		t.Errorf("MemoryMax=%s is below the sinks' max_inflight_bytes of configs/audit-shipper.yaml (%d MiB) plus the idle footprint (%d MiB)", u.one("Service.MemoryMax"), inflight>>20, idleFootprint>>20)
	}
	var goMemLimit string
	for _, e := range u["Service.Environment"] {
		if v, ok := strings.CutPrefix(e, "GOMEMLIMIT="); ok {
			goMemLimit = strings.TrimSuffix(v, "B")
		}
	}
	if lim, err := resource.ParseQuantity(goMemLimit); err != nil || lim.Cmp(memMax) >= 0 {
		t.Errorf("GOMEMLIMIT=%s must be below MemoryMax=%s", goMemLimit, u.one("Service.MemoryMax"))
	}
}
