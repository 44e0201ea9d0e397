package main

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/sinks"
	"github.com/audit-shipper/audit-shipper/sinks/elasticsearch"
	"github.com/audit-shipper/audit-shipper/sinks/file"
	"github.com/audit-shipper/audit-shipper/sinks/loki"
)

// TestPeerConfigs checks that audit-shipper's config of each path loads
// in the environment shipbench gives it, with the sinks of the path, each
// of which builds (what `audit-shipper check` does).
func TestPeerConfigs(t *testing.T) {
	for path, kinds := range pathSinks {
		t.Run(path, func(t *testing.T) {
			dir := t.TempDir()
			tg := &target{
				path: path, dir: dir, listen: "127.0.0.1:1",
				log:     &auditLog{dir: filepath.Join(dir, "log")},
				servers: map[sinkKind]sinkServer{},
			}
			for _, k := range kinds {
				if k != sinkFile {
					tg.servers[k] = fixedURL("http://127.0.0.1:2")
				}
			}
			for _, d := range []string{tg.log.dir, filepath.Join(dir, "state")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, kv := range tg.commandEnv() {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			b, err := peerConfigs.ReadFile("peers/audit-shipper/" + path + ".yaml")
			if err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(dir, "config.yaml")
			if err := os.WriteFile(conf, b, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(conf)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Metrics.Listen != tg.listen || cfg.Source.Path != tg.log.path() {
				t.Fatalf("metrics.listen %q, source.path %q: the environment was not applied", cfg.Metrics.Listen, cfg.Source.Path)
			}
			if len(cfg.Sinks) != len(kinds) {
				t.Fatalf("%d sinks, want %v", len(cfg.Sinks), kinds)
			}
			for i, k := range kinds {
				sec := &cfg.Sinks[i]
				if sec.Name != string(k) {
					t.Fatalf("sink %d is named %q, want %q: the harness reads its metrics by that name", i, sec.Name, k)
				}
				env := sinks.Env{Name: sec.Name, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()}
				var s sinks.Sink
				switch sec.Type {
				case "file":
					s, err = file.New(sec, env)
				case "loki":
					s, err = loki.New(sec, env)
				case "elasticsearch":
					s, err = elasticsearch.New(sec, env)
				default:
					t.Fatalf("sink %s has type %q", sec.Name, sec.Type)
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// fixedURL is a sink server that is only an address: nothing listens.
type fixedURL string

func (u fixedURL) URL() string          { return string(u) }
func (u fixedURL) Stored() (int, error) { return 0, errors.New("no server at " + string(u)) }
func (u fixedURL) Stop()                {}
