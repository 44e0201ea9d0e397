// Package demo is a self-contained run of the shipper on generated data: a
// live audit log written and rotated exactly as kube-apiserver does it
// (lumberjack), and a count of what arrived at the other end.
package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
)

// Config writes the demo's configuration to dir/audit-shipper.yaml and
// loads it: the embedded default's settings, with the audit log in
// dir/audit, positions and dead letters in dir, and the file sink writing
// dir/shipped.ndjson.
func Config(dir, listen, logLevel string) (*config.Config, error) {
	path := filepath.Join(dir, "audit-shipper.yaml")
	doc := fmt.Sprintf(`# Written by audit-shipper demo.
source:
  path: %[1]s/audit/audit.log
  positions_file: %[1]s/positions.json
  start_at: beginning
dead_letter:
  path: %[1]s/dead-letter.ndjson
sinks:
  - name: local
    type: file
    path: %[1]s/shipped.ndjson
metrics:
  listen: %[2]q
log:
  format: text
  level: %[3]s
`, dir, listen, logLevel)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		return nil, fmt.Errorf("writing the demo's configuration: %w", err)
	}
	return config.Load(path)
}

// Write writes n generated events into dir/audit/audit.log at about rate
// events per second (0: as fast as it can), rotating every MiB and gzipping
// the backups, as kube-apiserver does with --audit-log-maxsize=1
// --audit-log-compress.
func Write(ctx context.Context, dir string, n, rate int) error {
	if err := os.MkdirAll(filepath.Join(dir, "audit"), 0o700); err != nil {
		return fmt.Errorf("creating the demo's audit directory: %w", err)
	}
	w := &lumberjack.Logger{Filename: filepath.Join(dir, "audit", "audit.log"), MaxSize: 1, MaxBackups: 100000, Compress: true}
	defer w.Close()
	g := corpus.New(corpus.Options{Seed: time.Now().UnixNano(), Start: time.Now()})
	var line []byte
	start := time.Now()
	for i := range n {
		if i%1000 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if rate > 0 {
				if ahead := time.Duration(i)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
		line = append(g.Next(line[:0]), '\n')
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("writing the demo's audit log: %w", err)
		}
	}
	return nil
}

// Count reads an NDJSON file of shipped events and returns how many
// distinct events (auditID and stage) it holds, and how many lines repeat
// one already seen.
func Count(path string) (unique, duplicates int, err error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("opening %q: %w", path, err)
	}
	defer f.Close()
	seen := map[string]struct{}{}
	var p parse.Parser
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		ev, err := p.Parse(sc.Bytes())
		if err != nil {
			continue // a torn line left by a crash; its event is sent again whole
		}
		key := ev.AuditID + "/" + ev.Stage
		if _, ok := seen[key]; ok {
			duplicates++
			continue
		}
		seen[key] = struct{}{}
	}
	return len(seen), duplicates, sc.Err()
}

// ShippedPath is where the demo's file sink writes.
func ShippedPath(dir string) string { return filepath.Join(dir, "shipped.ndjson") }
