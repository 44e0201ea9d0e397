package elasticsearch

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/audit-shipper/audit-shipper/config"
)

// Config is the elasticsearch sink's own keys of a sinks entry; the keys
// every sink has (batch, retry, ...) are in config.Sink.
type Config struct {
	// Addresses are the nodes' base URLs; requests go round-robin and a
	// node that fails is set aside for a while. A path is kept as a
	// prefix (VictoriaLogs: http://host:9428/insert/elasticsearch).
	Addresses []string `yaml:"addresses"`
	// CloudID is an Elastic Cloud deployment's id, instead of addresses.
	CloudID string `yaml:"cloud_id"`

	// One authentication: basic, API key or bearer token; each secret
	// has a _file form.
	Username        string `yaml:"username"`
	Password        string `yaml:"password"`
	PasswordFile    string `yaml:"password_file"`
	APIKey          string `yaml:"api_key"`
	APIKeyFile      string `yaml:"api_key_file"`
	BearerToken     string `yaml:"bearer_token"`
	BearerTokenFile string `yaml:"bearer_token_file"`

	// Headers are added to every request.
	Headers map[string]string `yaml:"headers"`
	TLS     TLS               `yaml:"tls"`
	// Timeout bounds one bulk request, answer included.
	Timeout config.Duration `yaml:"timeout"`
	// Compress gzips request bodies.
	Compress bool `yaml:"compress"`

	Target Target `yaml:"target"`
	// Cluster and Node are written into every document when not empty.
	Cluster string `yaml:"cluster"`
	Node    string `yaml:"node"`
	// Timestamp is the event time @timestamp (and a dated index name) is
	// taken from: stage (stageTimestamp) or received
	// (requestReceivedTimestamp), the same key and values as the Loki sink's.
	Timestamp string `yaml:"timestamp"`
	// BodyEncoding is BodyString or BodyObject.
	BodyEncoding string `yaml:"body_encoding"`
	// InstallTemplate installs the index template at start.
	InstallTemplate bool `yaml:"install_template"`
}

// Target is where documents go: set one of the two.
type Target struct {
	DataStream string `yaml:"data_stream"`
	Index      string `yaml:"index"`
}

// TLS configures HTTPS to the nodes.
// TLS is the tls block, shared by every HTTPS sink.
type TLS = config.TLS

func defaults() Config {
	return Config{
		Timeout:      config.Duration(30 * time.Second),
		Compress:     true,
		Timestamp:    "stage",
		BodyEncoding: BodyString,
	}
}

// settings is a validated Config with its secrets and files read.
type settings struct {
	Config
	target           *target
	password, apiKey string
	bearer           string
	tls              *tls.Config // nil: the default
}

// load decodes and validates sec's own keys. It reads secret and
// certificate files but does no network I/O, so `audit-shipper check` can
// run it.
func load(sec *config.Sink) (*settings, error) {
	s := &settings{Config: defaults()}
	c := &s.Config
	if err := sec.Decode(c); err != nil {
		return nil, err
	}
	switch {
	case len(c.Addresses) == 0 && c.CloudID == "":
		return nil, sec.Errorf("addresses", "is missing; list the Elasticsearch nodes, such as [\"https://es.monitoring:9200\"] (or set cloud_id for Elastic Cloud)")
	case len(c.Addresses) > 0 && c.CloudID != "":
		return nil, sec.Errorf("cloud_id", "is set together with addresses; keep one")
	}
	for i, a := range c.Addresses {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, sec.Errorf(fmt.Sprintf("addresses[%d]", i), "%q is not an http:// or https:// URL with a host; write for example https://es.monitoring:9200", a)
		}
		if u.User != nil {
			return nil, sec.Errorf(fmt.Sprintf("addresses[%d]", i), "%q has credentials in the URL; move them to username and password_file so they stay out of logs", u.Redacted())
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, sec.Errorf(fmt.Sprintf("addresses[%d]", i), "%q has a query or fragment, which the client drops; pass parameters as headers instead (VictoriaLogs reads VL-Time-Field and the like from headers)", a)
		}
	}

	var err error
	if s.password, err = sec.ResolveSecret("password", c.Password, c.PasswordFile); err != nil {
		return nil, err
	}
	if s.apiKey, err = sec.ResolveSecret("api_key", c.APIKey, c.APIKeyFile); err != nil {
		return nil, err
	}
	if s.bearer, err = sec.ResolveSecret("bearer_token", c.BearerToken, c.BearerTokenFile); err != nil {
		return nil, err
	}
	methods := 0
	for _, set := range []bool{c.Username != "" || s.password != "", s.apiKey != "", s.bearer != ""} {
		if set {
			methods++
		}
	}
	switch {
	case methods > 1:
		return nil, sec.Errorf("username", "more than one authentication is set (username/password, api_key, bearer_token); keep one")
	case c.Username != "" && s.password == "":
		return nil, sec.Errorf("username", "is set without password or password_file; add one")
	case c.Username == "" && s.password != "":
		return nil, sec.Errorf("password", "is set without username; add it")
	}
	for k, v := range c.Headers {
		if k == "" || v == "" {
			return nil, sec.Errorf("headers", "header %q has an empty name or value; remove it", k)
		}
	}

	if c.Timeout <= 0 {
		return nil, sec.Errorf("timeout", "must be more than 0; 30s is a good value (a bulk of 1000 events takes well under a second on a healthy cluster)")
	}
	if c.Target.DataStream != "" && c.Target.Index != "" {
		return nil, sec.Errorf("target", "both data_stream and index are set; keep one")
	}
	if c.Target.DataStream == "" && c.Target.Index == "" {
		c.Target.DataStream = DefaultDataStream
	}
	if s.target, err = parseTarget(c.Target.DataStream, c.Target.Index); err != nil {
		key := "target.index"
		if c.Target.DataStream != "" {
			key = "target.data_stream"
		}
		return nil, sec.Errorf(key, "%v", err)
	}
	switch c.Timestamp {
	case "stage", "received":
	default:
		return nil, sec.Errorf("timestamp", "%q is not an event time; write stage (stageTimestamp, the default, grows with file order) or received (requestReceivedTimestamp)", c.Timestamp)
	}
	switch c.BodyEncoding {
	case BodyString, BodyObject:
	default:
		return nil, sec.Errorf("body_encoding", "%q is not a body encoding; write string (the default: bodies as JSON text, safe on any server) or object (bodies as objects: only with a template that maps them enabled: false)", c.BodyEncoding)
	}
	if c.Node == "" {
		if c.Node = os.Getenv("NODE_NAME"); c.Node == "" {
			c.Node, _ = os.Hostname()
		}
	}
	if s.tls, err = loadTLS(sec, &c.TLS); err != nil {
		return nil, err
	}
	return s, nil
}

// loadTLS builds the TLS configuration, or nil when none of its keys is
// set.
func loadTLS(sec *config.Sink, t *TLS) (*tls.Config, error) {
	if t.IsZero() {
		return nil, nil
	}
	return t.Build(sec, "give the CA that signed the nodes' certificates (for Elasticsearch, config/certs/http_ca.crt)")
}
