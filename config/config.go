// Package config holds audit-shipper's configuration: its shape, its
// defaults, and the strict loader that names the file, line and key of
// every mistake.
package config

import (
	"time"

	"go.yaml.in/yaml/v3"
)

// Size is a number of bytes. In YAML it is written as a plain integer or
// with a unit: B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB
// (powers of 1000), for example "4MiB" or "1.5GiB"; see ParseSize.
type Size int64

// Duration is a time.Duration written in Go syntax ("250ms", "1m30s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is a whole audit-shipper configuration file.
type Config struct {
	// File is the path the configuration was loaded from.
	File string `yaml:"-"`

	Source     Source     `yaml:"source"`
	DeadLetter DeadLetter `yaml:"dead_letter"`
	Buffer     Buffer     `yaml:"buffer"`
	Rules      Rules      `yaml:"rules"`
	Sinks      []Sink     `yaml:"sinks"`
	Metrics    Metrics    `yaml:"metrics"`
	Log        Log        `yaml:"log"`
	Shutdown   Shutdown   `yaml:"shutdown"`

	// root is the decoded file, for the lines of validation errors.
	root *yaml.Node
}

// Source says which audit log to follow and where to keep the cursors.
type Source struct {
	// Path is the live audit log; rotated backups (audit-*.log and
	// audit-*.log.gz, named by lumberjack) are found beside it.
	Path string `yaml:"path"`
	// PositionsFile holds one cursor per sink name.
	PositionsFile string `yaml:"positions_file"`
	// StartAt is "beginning" (every generation on disk, oldest first) or
	// "end" (the end of the live file); used only when a sink has no
	// saved position.
	StartAt string `yaml:"start_at"`
	// MaxLineBytes bounds one line; longer lines are dead-lettered whole.
	MaxLineBytes Size `yaml:"max_line_bytes"`
	// PollInterval is how often the files are checked when no change
	// notification arrives.
	PollInterval Duration `yaml:"poll_interval"`
	// SyncInterval is how often acknowledged positions are written to
	// PositionsFile (and the dead-letter file is synced).
	SyncInterval Duration `yaml:"sync_interval"`
}

// DeadLetter is where lines no sink can take are kept.
type DeadLetter struct {
	Path string `yaml:"path"`
}

// Buffer bounds what is held in memory.
type Buffer struct {
	// MaxInflightBytes bounds each sink's read-but-unacknowledged bytes.
	MaxInflightBytes Size `yaml:"max_inflight_bytes"`
}

// Rules are applied to every event before any sink sees it.
type Rules struct {
	// RedactSecrets removes the bodies of secrets, token reviews and token
	// requests. Default true.
	RedactSecrets bool `yaml:"redact_secrets"`
	// RedactResources are further resources (such as "configmaps") whose
	// request and response bodies are removed like those of secrets.
	RedactResources []string `yaml:"redact_resources"`
	// PolicyFile is an optional audit.k8s.io/v1 Policy the shipper applies.
	PolicyFile string `yaml:"policy_file"`
}

// Batch bounds one request to a sink: it is sent when any bound is reached.
// MaxBytes is a ceiling on its lines: a line that would pass it starts the
// next batch (only a line longer than MaxBytes makes a longer batch, alone).
type Batch struct {
	MaxEvents int      `yaml:"max_events"`
	MaxBytes  Size     `yaml:"max_bytes"`
	MaxWait   Duration `yaml:"max_wait"`
}

// Retry bounds the backoff between attempts; retries never stop.
type Retry struct {
	MinBackoff Duration `yaml:"min_backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`
}

// Sink is one entry of the sinks list: the keys every sink has, and the
// keys of its type, which the sink decodes itself with Decode.
type Sink struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	// Batch defaults: 1000 events, 1MiB, 1s.
	Batch Batch `yaml:"batch"`
	// MaxInflightBytes overrides buffer.max_inflight_bytes for this sink.
	MaxInflightBytes Size `yaml:"max_inflight_bytes"`
	// MaxRequestsInFlight is how many batches may be in flight at once
	// (default 2).
	MaxRequestsInFlight int `yaml:"max_requests_in_flight"`
	// Retry defaults: 100ms to 30s.
	Retry Retry `yaml:"retry"`
	// Rules overrides the top-level rules for this sink; the keys it does
	// not set keep the top-level values. Nil when the entry has none: use
	// Config.RulesFor.
	Rules *Rules `yaml:"rules"`

	// file is the configuration file, line the line of this entry, key
	// its path ("sinks[1]") and node the entry's whole mapping (for Decode
	// and Errorf).
	file string
	line int
	key  string
	node *yaml.Node
}

// Metrics is the HTTP listener for /metrics, /healthz and /readyz.
type Metrics struct {
	// Listen is host:port; empty disables the listener.
	Listen string `yaml:"listen"`
	// Pprof serves /debug/pprof on the same listener when true.
	Pprof bool `yaml:"pprof"`
}

// Log configures the shipper's own logs.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // json | text
}

// Shutdown bounds a graceful stop.
type Shutdown struct {
	// Timeout is how long in-flight batches may take to flush on SIGTERM
	// before the shipper stops anyway (their positions are not saved, so
	// they are sent again at the next start). Default 20s.
	Timeout Duration `yaml:"timeout"`
}

// RulesFor returns the rules that apply to a sink's events.
func (c *Config) RulesFor(s *Sink) Rules {
	if s.Rules != nil {
		return *s.Rules
	}
	return c.Rules
}
