package loki

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/audit-shipper/audit-shipper/config"
)

// Config is the loki sink's own keys (docs/sinks/loki.md describes each).
type Config struct {
	URL      string `yaml:"url"`
	TenantID string `yaml:"tenant_id"`

	BasicAuth       *BasicAuth        `yaml:"basic_auth"`
	BearerToken     string            `yaml:"bearer_token"`
	BearerTokenFile string            `yaml:"bearer_token_file"`
	Headers         map[string]string `yaml:"headers"`
	TLS             TLS               `yaml:"tls"`
	Timeout         config.Duration   `yaml:"timeout"`

	Encoding string `yaml:"encoding"` // protobuf | json

	Cluster            string            `yaml:"cluster"`
	Node               string            `yaml:"node"`
	Labels             map[string]string `yaml:"labels"`
	LabelFields        []string          `yaml:"label_fields"`
	StructuredMetadata []string          `yaml:"structured_metadata"`
	Timestamp          string            `yaml:"timestamp"` // stage | received
	MaxLineSize        config.Size       `yaml:"max_line_size"`
}

// BasicAuth is HTTP basic authentication; the password may come from a file.
type BasicAuth struct {
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// TLS configures HTTPS to Loki.
// TLS is the tls block, shared by every HTTPS sink.
type TLS = config.TLS

const (
	encodingProtobuf = "protobuf"
	encodingJSON     = "json"
	timestampStage   = "stage"
	timestampRecv    = "received"
	defaultJob       = "kubernetes-audit"
)

// defaults returns the configuration before the user's keys are decoded
// over it. The node label comes from $NODE_NAME (set from spec.nodeName in
// the DaemonSet) or the host name.
func defaults() Config {
	node := os.Getenv("NODE_NAME")
	if node == "" {
		node, _ = os.Hostname()
	}
	return Config{
		Timeout:     config.Duration(10 * time.Second),
		Encoding:    encodingProtobuf,
		Node:        node,
		LabelFields: []string{"stage", "level"},
		StructuredMetadata: []string{
			"auditID", "user", "verb", "resource", "subresource", "namespace", "name",
			"apiGroup", "code", "sourceIP", "userAgent", "decision",
		},
		Timestamp: timestampStage,
		// Loki's own default, limits_config.max_line_size: 256KB, in its
		// smaller reading, so that a line sent whole is never too long.
		MaxLineSize: 256_000,
	}
}

// labelName is what Loki (and Prometheus) accept as a label name; names
// starting with __ are reserved for Loki's own use.
var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// reservedHeaders are set from the sink's own keys, never from headers.
var reservedHeaders = map[string]string{
	"Authorization":    "basic_auth or bearer_token",
	"X-Scope-Orgid":    "tenant_id",
	"Content-Type":     "encoding",
	"Content-Encoding": "encoding",
}

// settings is a validated Config, ready for the sink.
type settings struct {
	url          string
	headers      map[string]string // every fixed header, auth included when static
	timeout      time.Duration
	json         bool
	received     bool
	maxLineSize  int               // 0: lines are sent whole
	staticLabels map[string]string // job, cluster, node and labels
	labelFields  []field
	metaFields   []field
	tls          *tls.Config // nil for plain http
	// Secrets that live in files are read again for every request, so a
	// rotated token (a projected service-account token, for one) is picked
	// up without a restart.
	passwordFile    string
	bearerTokenFile string
	username        string
}

// validate checks c and builds the settings; every error is positioned on
// the key at fault with sec.Errorf.
func (c *Config) validate(sec *config.Sink) (*settings, error) {
	s := &settings{
		timeout:  c.Timeout.D(),
		headers:  map[string]string{},
		received: c.Timestamp == timestampRecv,
		json:     c.Encoding == encodingJSON,
	}

	if c.URL == "" {
		return nil, sec.Errorf("url", "is required: the full push URL, for example http://loki.monitoring:3100/loki/api/v1/push")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, sec.Errorf("url", "%q is not an http:// or https:// URL; write the full push URL, for example http://loki.monitoring:3100/loki/api/v1/push", c.URL)
	}
	if u.Path == "" || u.Path == "/" {
		return nil, sec.Errorf("url", "%q has no path; write the full push URL, for example %s://%s/loki/api/v1/push", c.URL, u.Scheme, u.Host)
	}
	s.url = c.URL

	if c.MaxLineSize < 0 {
		return nil, sec.Errorf("max_line_size", "must be 0 (send lines whole) or Loki's limits_config.max_line_size, 256KB by default")
	}
	s.maxLineSize = int(c.MaxLineSize)
	if s.timeout <= 0 {
		return nil, sec.Errorf("timeout", "must be positive, for example 10s")
	}
	switch c.Encoding {
	case encodingProtobuf, encodingJSON:
	default:
		return nil, sec.Errorf("encoding", "%q is not an encoding; use protobuf (the default, snappy-compressed) or json", c.Encoding)
	}
	switch c.Timestamp {
	case timestampStage, timestampRecv:
	default:
		return nil, sec.Errorf("timestamp", "%q is not a timestamp choice; use stage (stageTimestamp, the default) or received (requestReceivedTimestamp)", c.Timestamp)
	}

	if err := c.auth(sec, s); err != nil {
		return nil, err
	}
	for k, v := range c.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") || strings.ContainsAny(v, "\r\n") {
			return nil, sec.Errorf("headers."+k, "%q: %q is not a valid HTTP header; write Name: value on one line", k, v)
		}
		if own, ok := reservedHeaders[http.CanonicalHeaderKey(k)]; ok {
			return nil, sec.Errorf("headers."+k, "is set by the sink itself; use %s instead", own)
		}
		s.headers[k] = v
	}
	if c.TenantID != "" {
		s.headers["X-Scope-OrgID"] = c.TenantID
	}

	if s.tls, err = buildTLS(sec, c.TLS, u.Scheme == "https"); err != nil {
		return nil, err
	}

	if s.staticLabels, err = c.staticLabels(sec); err != nil {
		return nil, err
	}
	if s.labelFields, s.metaFields, err = c.fields(sec, s.staticLabels); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *Config) auth(sec *config.Sink, s *settings) error {
	if c.BasicAuth != nil && (c.BearerToken != "" || c.BearerTokenFile != "") {
		return sec.Errorf("bearer_token", "both basic_auth and a bearer token are set; Loki takes one Authorization header, keep one")
	}
	if ba := c.BasicAuth; ba != nil {
		if ba.Username == "" {
			return sec.Errorf("basic_auth.username", "is required with basic_auth")
		}
		// Read the file now, so that `audit-shipper check` reports a
		// missing or empty one.
		pw, err := sec.ResolveSecret("basic_auth.password", ba.Password, ba.PasswordFile)
		if err != nil {
			return err
		}
		if pw == "" {
			return sec.Errorf("basic_auth.password", "is required with basic_auth (or password_file)")
		}
		s.username, s.passwordFile = ba.Username, ba.PasswordFile
		if ba.PasswordFile == "" {
			s.headers["Authorization"] = basicAuth(ba.Username, pw)
		}
	}
	if c.BearerToken != "" || c.BearerTokenFile != "" {
		tok, err := sec.ResolveSecret("bearer_token", c.BearerToken, c.BearerTokenFile)
		if err != nil {
			return err
		}
		s.bearerTokenFile = c.BearerTokenFile
		if c.BearerTokenFile == "" {
			s.headers["Authorization"] = "Bearer " + tok
		}
	}
	return nil
}

func buildTLS(sec *config.Sink, t TLS, https bool) (*tls.Config, error) {
	if !https {
		if !t.IsZero() {
			return nil, sec.Errorf("tls", "is set but url is http://; use https:// or remove tls")
		}
		return nil, nil
	}
	return t.Build(sec, "point it at the CA that signed Loki's certificate")
}

// staticLabels merges job, cluster, node and labels into the label set
// every stream carries.
func (c *Config) staticLabels(sec *config.Sink) (map[string]string, error) {
	out := map[string]string{"job": defaultJob}
	for k, v := range c.Labels {
		key := "labels." + k
		switch {
		case !labelName.MatchString(k) || strings.HasPrefix(k, "__"):
			return nil, sec.Errorf(key, "%q is not a Loki label name; use letters, digits and _, not starting with a digit or __", k)
		case k == "cluster" || k == "node":
			return nil, sec.Errorf(key, "set the %s label with the %s key of the sink", k, k)
		case v == "":
			return nil, sec.Errorf(key, "is empty; Loki drops labels without a value, remove it or give it one")
		}
		out[k] = v
	}
	if c.Cluster != "" {
		out["cluster"] = c.Cluster
	}
	if c.Node == "" {
		// Every shipper instance must write streams of its own: two nodes
		// sharing a stream would interleave their timestamps and
		// deduplicate each other's identical lines.
		return nil, sec.Errorf("node", "is empty and neither $NODE_NAME nor the host name is known; set node, or NODE_NAME from spec.nodeName in the DaemonSet")
	}
	out["node"] = c.Node
	return out, nil
}

// fields resolves label_fields and structured_metadata, and refuses any
// label that would explode Loki's stream count.
func (c *Config) fields(sec *config.Sink, static map[string]string) (labels, meta []field, err error) {
	for i, name := range c.LabelFields {
		key := fmt.Sprintf("label_fields[%d]", i)
		f, known := fieldByName(name)
		why := f.notLabel
		if !known {
			why = otherHighCardinality[name]
		}
		if why != "" {
			return nil, nil, sec.Errorf(key, "%q cannot be a label: %s. Keep it in structured_metadata instead (it is then a field of every entry, filtered with {job=%q} | %s=\"...\" without creating streams); labels are for a few fields with a handful of values: stage, level, verb", name, why, defaultJob, name)
		}
		if !known {
			return nil, nil, sec.Errorf(key, "%q is not a field the sink knows; label fields are stage, level, verb or decision", name)
		}
		if _, dup := static[name]; dup {
			return nil, nil, sec.Errorf(key, "%q is also a static label; keep one", name)
		}
		if slices.ContainsFunc(labels, func(g field) bool { return g.name == name }) {
			return nil, nil, sec.Errorf(key, "%q is listed twice", name)
		}
		labels = append(labels, f)
	}
	for i, name := range c.StructuredMetadata {
		key := fmt.Sprintf("structured_metadata[%d]", i)
		f, known := fieldByName(name)
		if !known {
			return nil, nil, sec.Errorf(key, "%q is not a field the sink knows; use some of: %s", name, fieldNames())
		}
		if slices.ContainsFunc(labels, func(g field) bool { return g.name == name }) {
			return nil, nil, sec.Errorf(key, "%q is already a label (label_fields); keep it in one place", name)
		}
		if slices.ContainsFunc(meta, func(g field) bool { return g.name == name }) {
			return nil, nil, sec.Errorf(key, "%q is listed twice", name)
		}
		meta = append(meta, f)
	}
	return labels, meta, nil
}
