package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed default.yaml
var defaultYAML []byte

// defaultFile names the embedded default in error messages.
const defaultFile = "(embedded default configuration)"

// inheritInflight marks a sink whose max_inflight_bytes was not given: it
// takes buffer.max_inflight_bytes. No size written in a file is negative.
const inheritInflight Size = -1

// defaults returns every default of a configuration file, sinks excepted.
// Load decodes the file over it, so an absent key keeps its default and a
// key written as 0 or false keeps what was written.
func defaults() Config {
	return Config{
		Source: Source{
			Path:          "/var/log/kubernetes/audit/audit.log",
			PositionsFile: "/var/lib/audit-shipper/positions.json",
			StartAt:       "beginning",
			MaxLineBytes:  4 << 20,
			PollInterval:  Duration(250 * time.Millisecond),
			SyncInterval:  Duration(time.Second),
		},
		DeadLetter: DeadLetter{Path: "/var/lib/audit-shipper/dead-letter.ndjson"},
		Buffer:     Buffer{MaxInflightBytes: 32 << 20},
		Rules:      Rules{RedactSecrets: true},
		Metrics:    Metrics{Listen: ":9464"},
		Log:        Log{Level: "info", Format: "json"},
		Shutdown:   Shutdown{Timeout: Duration(20 * time.Second)},
	}
}

// sinkDefaults is what each sinks entry starts from before its keys are
// decoded.
func sinkDefaults() Sink {
	return Sink{
		Batch:               Batch{MaxEvents: 1000, MaxBytes: 1 << 20, MaxWait: Duration(time.Second)},
		MaxInflightBytes:    inheritInflight,
		MaxRequestsInFlight: 2,
		Retry:               Retry{MinBackoff: Duration(100 * time.Millisecond), MaxBackoff: Duration(30 * time.Second)},
	}
}

// Load reads path, expands ${ENV} (and ${ENV:-default}) in every string
// scalar, decodes strictly (every unknown key is an error), applies
// defaults, and validates. Every error is an *Error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &Error{File: path, Msg: "the configuration file does not exist; pass the right path to --config (start from configs/audit-shipper.yaml in the project, then run audit-shipper check --config FILE)"}
	}
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read the configuration file: %v; check the path and its permissions, then run audit-shipper check --config FILE", unwrapPath(err))}
	}
	c, err := parse(path, data)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Default returns the embedded default configuration (the file sink
// writing NDJSON to stdout), used by `audit-shipper run` without
// --config. It is not validated against the machine: call Validate to
// learn whether source.path can be read.
func Default() *Config {
	c, err := parse(defaultFile, defaultYAML)
	if err != nil {
		panic("config: the embedded default configuration is broken: " + err.Error())
	}
	return c
}

// parse decodes data (the contents of file) over the defaults.
func parse(file string, data []byte) (*Config, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, syntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(file, err)
		}
		return nil, errorf(file, extra.Line, "", "the file holds a second YAML document (after ---); keep one configuration per file")
	}
	c := defaults()
	c.File = file
	if len(doc.Content) == 0 {
		return &c, nil // empty file: validation says what is missing
	}
	root := doc.Content[0]
	c.root = root
	if err := expandEnv(file, root, ""); err != nil {
		return nil, err
	}
	d := decoder{file: file}
	if err := d.decode(root, "", root.Line, reflect.ValueOf(&c).Elem()); err != nil {
		return nil, err
	}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.MaxInflightBytes == inheritInflight {
			s.MaxInflightBytes = c.Buffer.MaxInflightBytes
		}
		if s.Rules != nil {
			// Decode the sink's rules again, over the top-level ones, so
			// that what it leaves out is inherited.
			r := c.Rules
			k, v := child(s.node, "rules")
			if err := d.decode(v, join(s.key, "rules"), k.Line, reflect.ValueOf(&r).Elem()); err != nil {
				return nil, err
			}
			s.Rules = &r
		}
	}
	return &c, nil
}

// sinkName is what a sink name must look like: it is a metric label value
// and a key of the positions file.
var sinkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Validate checks the values, and that source.path is not a directory and
// can be read when it exists. It returns the first mistake as an *Error.
// Which sink types exist, and their own keys, are checked by the sinks.
func (c *Config) Validate() error {
	s := c.Source
	if err := c.sourcePath(); err != nil {
		return err
	}
	if s.PositionsFile == "" {
		return c.errorf("source.positions_file", "is empty; give a file in a directory that survives restarts, such as /var/lib/audit-shipper/positions.json")
	}
	if s.StartAt != "beginning" && s.StartAt != "end" {
		return c.errorf("source.start_at", "%q is not a start point; write beginning (ship every audit file on disk) or end (only what is written from now on)", s.StartAt)
	}
	checks := []struct {
		key string
		ok  bool
		msg string
	}{
		{"source.max_line_bytes", s.MaxLineBytes > 0, "must be more than 0; audit lines of several hundred KiB are routine, 4MiB is a safe value"},
		{"source.poll_interval", s.PollInterval > 0, "must be more than 0; 250ms is a good value"},
		{"source.sync_interval", s.SyncInterval > 0, "must be more than 0; 1s is a good value"},
		{"dead_letter.path", c.DeadLetter.Path != "", "is empty; give a file in a directory that survives restarts, such as /var/lib/audit-shipper/dead-letter.ndjson"},
		{"buffer.max_inflight_bytes", c.Buffer.MaxInflightBytes > 0, "must be more than 0, such as 32MiB"},
		{"buffer.max_inflight_bytes", c.Buffer.MaxInflightBytes >= s.MaxLineBytes, fmt.Sprintf("%v is less than source.max_line_bytes (%v), so one long line would stall the reader; raise it or lower max_line_bytes", c.Buffer.MaxInflightBytes, s.MaxLineBytes)},
		{"shutdown.timeout", c.Shutdown.Timeout > 0, "must be more than 0; 20s is a good value"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return c.errorf(ch.key, "%s", ch.msg)
		}
	}
	if p := c.Rules.PolicyFile; p != "" {
		if fi, err := os.Stat(p); err != nil {
			return c.errorf("rules.policy_file", "cannot read %q: %v; give the path of an audit.k8s.io/v1 Policy file, or remove the key", p, unwrapPath(err))
		} else if !fi.Mode().IsRegular() {
			return c.errorf("rules.policy_file", "%q is not a regular file; give the path of an audit.k8s.io/v1 Policy file", p)
		}
	}
	if err := c.validateSinks(); err != nil {
		return err
	}
	if l := c.Metrics.Listen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			return c.errorf("metrics.listen", "%q is not host:port; write for example \":9464\" (all interfaces) or \"127.0.0.1:9464\", or \"\" to turn metrics off", l)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return c.errorf("log.level", "%q is not a level; write debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		return c.errorf("log.format", "%q is not a format; write json or text", c.Log.Format)
	}
	return nil
}

func (c *Config) validateSinks() error {
	if len(c.Sinks) == 0 {
		return c.errorf("sinks", "no sink is configured; add at least one, for example:  sinks: [{name: local, type: file, path: \"-\"}]")
	}
	names := map[string]int{}
	for i := range c.Sinks {
		s := &c.Sinks[i]
		if s.key == "" { // built in Go rather than decoded
			s.file, s.key = c.File, fmt.Sprintf("sinks[%d]", i)
		}
		switch {
		case s.Name == "":
			return s.Errorf("name", "is missing; give each sink a name such as loki or es-audit (it labels metrics and keys the saved positions)")
		case !sinkName.MatchString(s.Name):
			return s.Errorf("name", "%q is not a valid sink name; use lowercase letters, digits, - and _, starting with a letter or digit (it labels metrics and keys the saved positions)", s.Name)
		}
		if prev, dup := names[s.Name]; dup {
			return s.Errorf("name", "%q is already the name of sinks[%d]; give each sink its own name (each keeps its own position)", s.Name, prev)
		}
		names[s.Name] = i
		if s.Type == "" {
			return s.Errorf("type", "is missing; write the sink type, such as file, loki or elasticsearch")
		}
		checks := []struct {
			key string
			ok  bool
			msg string
		}{
			{"batch.max_events", s.Batch.MaxEvents > 0, "must be more than 0, such as 1000"},
			{"batch.max_bytes", s.Batch.MaxBytes > 0, "must be more than 0, such as 1MiB"},
			{"batch.max_wait", s.Batch.MaxWait > 0, "must be more than 0, such as 1s"},
			{"max_inflight_bytes", s.MaxInflightBytes > 0, "must be more than 0, such as 32MiB; remove the key to use buffer.max_inflight_bytes"},
			{"batch.max_bytes", s.Batch.MaxBytes <= s.MaxInflightBytes, fmt.Sprintf("%v is more than this sink's max_inflight_bytes (%v), so a batch could never fill; lower batch.max_bytes or raise max_inflight_bytes", s.Batch.MaxBytes, s.MaxInflightBytes)},
			{"max_requests_in_flight", s.MaxRequestsInFlight > 0, "must be at least 1; 2 keeps one batch filling while one is sent"},
			{"retry.min_backoff", s.Retry.MinBackoff > 0, "must be more than 0, such as 100ms"},
			{"retry.max_backoff", s.Retry.MaxBackoff >= s.Retry.MinBackoff, fmt.Sprintf("%v is less than retry.min_backoff (%v); raise it, 30s is a good value", s.Retry.MaxBackoff, s.Retry.MinBackoff)},
		}
		for _, ch := range checks {
			if !ch.ok {
				return s.Errorf(ch.key, "%s", ch.msg)
			}
		}
	}
	return nil
}

// openRead opens a file for reading; tests running as root replace it,
// because root reads any file whatever its mode.
var openRead = os.Open

// permissionHint is what to do when the audit log cannot be read.
const permissionHint = "run the shipper as root or grant it CAP_DAC_READ_SEARCH (kube-apiserver writes the audit log as root, mode 0600); in a container, mount the log's directory, not the file"

// sourcePath checks source.path. A missing file, or missing directory, is
// fine: the shipper waits for the apiserver to create it.
func (c *Config) sourcePath() error {
	p := c.Source.Path
	if p == "" {
		return c.errorf("source.path", "is empty; give the audit log kube-apiserver writes (--audit-log-path), such as /var/log/kubernetes/audit/audit.log")
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, fs.ErrPermission):
		return c.errorf("source.path", "cannot look up %q: %v; %s", p, unwrapPath(err), permissionHint)
	case err != nil:
		return c.errorf("source.path", "cannot look up %q: %v; give the audit log kube-apiserver writes (--audit-log-path)", p, unwrapPath(err))
	case fi.IsDir():
		return c.errorf("source.path", "%q is a directory; give the audit log file inside it, such as %s", p, strings.TrimSuffix(p, "/")+"/audit.log")
	case !fi.Mode().IsRegular():
		return c.errorf("source.path", "%q is not a regular file; give the audit log kube-apiserver writes (--audit-log-path)", p)
	}
	f, err := openRead(p)
	if err != nil {
		return c.errorf("source.path", "cannot read %q: %v; %s", p, unwrapPath(err), permissionHint)
	}
	f.Close() // opened only to prove it can be read
	return nil
}

// errorf returns an *Error at the line of key (a dotted path from the
// top of the file), or at the line of its closest parent present.
func (c *Config) errorf(key, format string, args ...any) *Error {
	line := 0
	n := c.root
	for part := range strings.SplitSeq(key, ".") {
		k, v := child(n, part)
		if k == nil {
			break
		}
		line, n = k.Line, v
	}
	return errorf(c.File, line, key, format, args...)
}

// unwrapPath drops the "op path:" prefix of a *fs.PathError, since the
// message names the path already.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}
