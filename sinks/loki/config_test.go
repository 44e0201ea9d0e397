package loki

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	t.Setenv("NODE_NAME", "cp-1")
	s, _ := newSink(t, "url: http://127.0.0.1:3100/loki/api/v1/push\ncluster: prod")
	set := s.set
	want := map[string]string{"job": "kubernetes-audit", "cluster": "prod", "node": "cp-1"}
	if len(set.staticLabels) != len(want) {
		t.Errorf("static labels = %v, want %v", set.staticLabels, want)
	}
	for k, v := range want {
		if set.staticLabels[k] != v {
			t.Errorf("label %s = %q, want %q", k, set.staticLabels[k], v)
		}
	}
	if got := names(set.labelFields); got != "stage,level" {
		t.Errorf("label fields = %s, want stage,level", got)
	}
	if got := names(set.metaFields); !strings.HasPrefix(got, "auditID,user,verb,resource") {
		t.Errorf("structured metadata = %s", got)
	}
	if set.timeout != 10*time.Second || set.json || set.received || set.tls != nil {
		t.Errorf("timeout %s json %v received %v tls %v: not the defaults", set.timeout, set.json, set.received, set.tls)
	}
}

func names(fs []field) string {
	var n []string
	for _, f := range fs {
		n = append(n, f.name)
	}
	return strings.Join(n, ",")
}

// TestBadConfig checks that every mistake is refused at start, on its key,
// with a message that says what to do.
func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(keys string, want ...string) {
		t.Helper()
		_, err := New(loadSink(t, keys), newEnv().Env)
		if err == nil {
			t.Errorf("New accepted\n%s", keys)
			return
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("New(%q) error\n  %v\nwant it to contain %q", keys, err, w)
			}
		}
	}
	const u = "url: http://loki:3100/loki/api/v1/push\n"

	f("tenant_id: x", "sinks[0].url", "is required")
	f("url: loki:3100", "not an http:// or https:// URL")
	f("url: http://loki:3100", "has no path", "http://loki:3100/loki/api/v1/push")
	f(u+"urll: x", "urll")
	f(u+"encoding: gzip", "sinks[0].encoding", "protobuf")
	f(u+"timestamp: now", "sinks[0].timestamp", "received")
	f(u+"timeout: 0s", "sinks[0].timeout", "positive")

	// The cardinality guard: why, and what to use instead.
	for _, name := range []string{"auditID", "user", "name", "sourceIP", "requestURI", "namespace", "resource", "code"} {
		f(u+"label_fields: [stage, "+name+"]", "sinks[0].label_fields[1]", `"`+name+`" cannot be a label`, "structured_metadata")
	}
	f(u+"label_fields: [uid]", "cannot be a label", "userUID", "structured_metadata")
	f(u+"label_fields: [username]", "cannot be a label", `called "user"`)
	f(u+"label_fields: [colour]", "not a field the sink knows", "stage, level, verb")
	f(u+"label_fields: [stage, stage]", "listed twice")
	f(u+"structured_metadata: [colour]", "sinks[0].structured_metadata[0]", "not a field", "auditID")
	f(u+"structured_metadata: [stage]", "already a label")
	f(u+"labels: {node: x}", "sinks[0].labels.node", "node key")
	f(u+"labels: {\"1x\": y}", "not a Loki label name")
	f(u+"labels: {__name__: y}", "not a Loki label name")
	f(u+"labels: {env: \"\"}", "is empty")
	f(u+"labels: {stage: x}\nlabel_fields: [stage]", "also a static label")

	f(u+"headers: {Authorization: x}", "sinks[0].headers.Authorization", "basic_auth or bearer_token")
	f(u+"headers: {x-scope-orgid: x}", "tenant_id")
	f(u+"headers: {\"a b\": x}", "not a valid HTTP header")
	f(u+"basic_auth: {password: p}", "basic_auth.username", "required")
	f(u+"basic_auth: {username: u}", "basic_auth.password", "required")
	f(u+"basic_auth: {username: u, password: p, password_file: /x}", "both")
	f(u+"basic_auth: {username: u, password_file: "+empty+"}", "basic_auth.password_file", "empty")
	f(u+"basic_auth: {username: u, password: p}\nbearer_token: t", "keep one")
	f(u+"bearer_token_file: "+filepath.Join(dir, "missing"), "sinks[0].bearer_token_file", "cannot read")

	f(u+"tls: {ca_file: x}", "url is http://")
	const s = "url: https://loki:3100/loki/api/v1/push\n"
	f(s+"tls: {ca_file: "+filepath.Join(dir, "missing")+"}", "sinks[0].tls.ca_file", "cannot read")
	f(s+"tls: {ca_file: "+notPEM+"}", "no PEM certificate")
	f(s+"tls: {cert_file: "+notPEM+"}", "go together")
	f(s+"tls: {cert_file: "+notPEM+", key_file: "+notPEM+"}", "cannot load the client certificate")
}

func TestNodeFromHostname(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skip("this machine has no host name")
	}
	s, _ := newSink(t, "url: http://127.0.0.1:3100/loki/api/v1/push")
	if got := s.set.staticLabels["node"]; got != host {
		t.Errorf("node = %q, want the host name %q", got, host)
	}
}

func TestInsecureSkipVerifyWarns(t *testing.T) {
	_, env := newSink(t, "url: https://127.0.0.1:3100/loki/api/v1/push\ntls: {insecure_skip_verify: true}")
	if !strings.Contains(env.Log.String(), "level=WARN") || !strings.Contains(env.Log.String(), "VERIFICATION IS OFF") {
		t.Errorf("no loud warning logged:\n%s", env.Log.String())
	}
}
