package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// shipperConfig writes the shipper's configuration for one run: the three
// sink types at once, each with its own position over the same files.
// There is no policy_file, so every event the apiserver wrote is one the
// rules keep; redact_secrets is the default, written out because it is
// what the run proves.
func shipperConfig(t *testing.T, dir, auditLog string, loki *vlogs, es *idRecorder) string {
	t.Helper()
	cfg := fmt.Sprintf(`source:
  path: %[1]s
  positions_file: %[2]s/state/positions.json
  start_at: beginning
  max_line_bytes: 4MiB
dead_letter:
  path: %[2]s/state/dead-letter.ndjson
rules:
  redact_secrets: true
sinks:
  - name: file
    type: file
    path: %[2]s/out/events.ndjson
  - name: loki
    type: loki
    # disable_message_parsing keeps each line whole in _msg; without it
    # VictoriaLogs splits the JSON into fields and drops blocks with more
    # than 2,000 field names.
    url: %[3]s/insert/loki/api/v1/push?disable_message_parsing=1
    node: e2e
  - name: search
    type: elasticsearch
    addresses: [%[4]s/insert/elasticsearch]
    headers: {VL-Time-Field: "@timestamp", VL-Msg-Field: requestURI, VL-Stream-Fields: node}
    node: e2e
metrics:
  listen: ""
log:
  level: info
  format: json
`, auditLog, dir, loki.url, es.srv.URL)
	path := filepath.Join(dir, "audit-shipper.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sinkNames are the sinks of shipperConfig, in the report's order.
var sinkNames = []string{"file", "loki", "search"}

// shipper runs the audit-shipper binary, and kills and restarts it. Only
// the goroutine running the test calls its methods.
type shipper struct {
	bin, config, logPath string
	p                    *proc
	starts, kills        int
}

func newShipper(t *testing.T, b binaries, dir, config string) *shipper {
	t.Helper()
	s := &shipper{bin: b.shipper, config: config, logPath: filepath.Join(dir, "logs", "audit-shipper.log")}
	t.Cleanup(func() {
		if s.p != nil && s.p.running() {
			s.p.kill()
		}
	})
	return s
}

func (s *shipper) start() error {
	p, err := startProc("audit-shipper", s.logPath, s.bin, "run", "--config", s.config)
	if err != nil {
		return err
	}
	s.p = p
	s.starts++
	return nil
}

// killAndRestart kills the shipper with SIGKILL, leaves it down for a
// moment while the apiserver goes on writing (and rotating), and starts it
// again.
func (s *shipper) killAndRestart(r *rand.Rand) error {
	if !s.p.running() {
		return fmt.Errorf("the shipper had exited by itself (%v); the end of %s:\n%s", s.p.err, s.logPath, s.p.tail())
	}
	s.p.kill()
	s.kills++
	time.Sleep(time.Duration(500+r.IntN(2500)) * time.Millisecond)
	return s.start()
}

// gzipped counts the gzipped backups the shipper named in its log (where
// it resumed or which rotation it followed): proof that it read
// generations the apiserver had compressed, not only plain ones.
func (s *shipper) gzipped() int {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return 0
	}
	seen := map[string]bool{}
	for _, m := range gzName.FindAllString(string(b), -1) {
		seen[m] = true
	}
	return len(seen)
}

var gzName = regexp.MustCompile(`audit-[0-9T:.-]+\.log\.gz`)

// lostReports are the shipper's own reports of generations deleted before
// it read them (docs/source.md), over all its lives.
func (s *shipper) lostReports() []string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.Contains(l, "deleted before it was shipped") {
			out = append(out, l)
		}
	}
	return out
}
