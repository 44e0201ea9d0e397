// Package configs_test checks that every YAML example under configs/
// still parses, so that a broken example cannot land: users copy these
// files as they are.
package configs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/sinks/elasticsearch"
	"github.com/audit-shipper/audit-shipper/sinks/file"
	"github.com/audit-shipper/audit-shipper/sinks/loki"
)

// yamlFiles lists every YAML file under dir, so that a new example is
// checked without anyone adding it here.
func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(p); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEveryExampleIsChecked sorts every YAML file into one of the checks
// below; a file in a new place fails until a check covers it.
func TestEveryExampleIsChecked(t *testing.T) {
	files := yamlFiles(t, ".")
	if len(files) < 6 {
		t.Fatalf("found %d YAML files under configs/, want at least 6: %v", len(files), files)
	}
	for _, f := range files {
		switch dir := filepath.Dir(f); dir {
		case ".", "policies", "rke2":
		default:
			t.Errorf("%s: no test checks YAML files in %s/; add one to configs_test.go", f, dir)
		}
	}
}

// sinkConfigs are the sink types' own key sets; Decode into them is as
// strict as the sinks' constructors, without touching secret files or
// the network.
func sinkConfig(typ string) any {
	switch typ {
	case "file":
		return &file.Config{}
	case "loki":
		return &loki.Config{}
	case "elasticsearch":
		return &elasticsearch.Config{}
	}
	return nil
}

func TestShipperConfigs(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) < 2 {
		t.Fatalf("found %v, want audit-shipper.yaml and minimal.yaml at least", files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			c, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.Sinks {
				s := &c.Sinks[i]
				dst := sinkConfig(s.Type)
				if dst == nil {
					t.Errorf("sinks[%d]: type %q is not one of file, loki, elasticsearch", i, s.Type)
					continue
				}
				if err := s.Decode(dst); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestFullExampleHasEveryKey compares the keys written in
// audit-shipper.yaml with the fields of config.Config, so that a key added
// to the loader is documented in the example too.
func TestFullExampleHasEveryKey(t *testing.T) {
	b, err := os.ReadFile("audit-shipper.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			walk(n.Content[0], prefix)
		case yaml.MappingNode:
			for i := 0; i < len(n.Content); i += 2 {
				k := path.Join(prefix, n.Content[i].Value)
				written[k] = true
				walk(n.Content[i+1], k)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		}
	}
	walk(&doc, "")

	want := []string{
		"source/path", "source/positions_file", "source/start_at", "source/max_line_bytes",
		"source/poll_interval", "source/sync_interval", "dead_letter/path", "buffer/max_inflight_bytes",
		"rules/redact_secrets", "rules/redact_resources", "rules/policy_file", "sinks/rules", "sinks/rules/redact_secrets",
		"sinks/name", "sinks/type", "sinks/batch/max_events", "sinks/batch/max_bytes", "sinks/batch/max_wait",
		"sinks/max_inflight_bytes", "sinks/max_requests_in_flight", "sinks/retry/min_backoff", "sinks/retry/max_backoff",
		"metrics/listen", "metrics/pprof", "log/level", "log/format", "shutdown/timeout",
		// The sink keys the brief asks the example to show.
		"sinks/path", "sinks/url", "sinks/tenant_id", "sinks/basic_auth/username", "sinks/basic_auth/password_file",
		"sinks/labels", "sinks/tls/ca_file", "sinks/tls/cert_file", "sinks/tls/key_file", "sinks/tls/server_name",
		"sinks/tls/insecure_skip_verify", "sinks/addresses", "sinks/username", "sinks/password_file", "sinks/target/data_stream",
	}
	for _, k := range want {
		if !written[k] {
			t.Errorf("audit-shipper.yaml does not show %s", strings.ReplaceAll(k, "/", "."))
		}
	}
	// Every key of config.Config must be in want, or this test goes stale.
	out, err := yaml.Marshal(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	var def yaml.Node
	if err := yaml.Unmarshal(out, &def); err != nil {
		t.Fatal(err)
	}
	written = map[string]bool{}
	walk(&def, "")
	for k := range written {
		if hasChildren(written, k) {
			continue
		}
		if !slices.Contains(want, k) {
			t.Errorf("config key %s is missing from audit-shipper.yaml and from this test's list", strings.ReplaceAll(k, "/", "."))
		}
	}
}

func hasChildren(keys map[string]bool, k string) bool {
	for other := range keys {
		if strings.HasPrefix(other, k+"/") {
			return true
		}
	}
	return false
}

// policy is the shape of an audit.k8s.io/v1 Policy (k8s.io/apiserver
// pkg/apis/audit/v1), decoded strictly: a misspelt or misplaced key (the
// usual result of pasting a policy with broken indentation) is an error.
type policy struct {
	APIVersion        string         `yaml:"apiVersion"`
	Kind              string         `yaml:"kind"`
	Metadata          map[string]any `yaml:"metadata"`
	Rules             []policyRule   `yaml:"rules"`
	OmitStages        []string       `yaml:"omitStages"`
	OmitManagedFields bool           `yaml:"omitManagedFields"`
}

type policyRule struct {
	Level             string           `yaml:"level"`
	Users             []string         `yaml:"users"`
	UserGroups        []string         `yaml:"userGroups"`
	Verbs             []string         `yaml:"verbs"`
	Resources         []groupResources `yaml:"resources"`
	Namespaces        []string         `yaml:"namespaces"`
	NonResourceURLs   []string         `yaml:"nonResourceURLs"`
	OmitStages        []string         `yaml:"omitStages"`
	OmitManagedFields *bool            `yaml:"omitManagedFields"`
}

type groupResources struct {
	Group         string   `yaml:"group"`
	Resources     []string `yaml:"resources"`
	ResourceNames []string `yaml:"resourceNames"`
}

var (
	levels = []string{"None", "Metadata", "Request", "RequestResponse"}
	stages = []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
	verbs  = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "*"}
)

// decodePolicy decodes and checks a policy the way kube-apiserver's
// validation does (k8s.io/apiserver/pkg/apis/audit/validation).
func decodePolicy(b []byte) (*policy, error) {
	var p policy
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if p.APIVersion != "audit.k8s.io/v1" || p.Kind != "Policy" {
		return nil, errors.New("want apiVersion audit.k8s.io/v1 and kind Policy")
	}
	if len(p.Rules) == 0 {
		return nil, errors.New("a policy without rules logs nothing")
	}
	bad := func(i int, format string, args ...any) error {
		return fmt.Errorf("rules[%d]: %s", i, fmt.Sprintf(format, args...))
	}
	for _, s := range p.OmitStages {
		if !slices.Contains(stages, s) {
			return nil, errors.New("omitStages: unknown stage " + s)
		}
	}
	for i, r := range p.Rules {
		if !slices.Contains(levels, r.Level) {
			return nil, bad(i, "level %q is not one of %v", r.Level, levels)
		}
		if len(r.Resources) > 0 && len(r.NonResourceURLs) > 0 {
			return nil, bad(i, "rules may not have both resources and nonResourceURLs")
		}
		for _, v := range r.Verbs {
			if !slices.Contains(verbs, v) {
				return nil, bad(i, "unknown verb %q", v)
			}
		}
		for _, s := range r.OmitStages {
			if !slices.Contains(stages, s) {
				return nil, bad(i, "unknown stage %q", s)
			}
		}
		for _, u := range r.NonResourceURLs {
			if !strings.HasPrefix(u, "/") && u != "*" {
				return nil, bad(i, "nonResourceURL %q does not start with /", u)
			}
			if strings.Contains(strings.TrimSuffix(u, "*"), "*") {
				return nil, bad(i, "nonResourceURL %q: * is allowed only at the end", u)
			}
		}
		for _, g := range r.Resources {
			if strings.TrimSpace(g.Group) != g.Group {
				return nil, bad(i, "group %q has spaces; the core group is \"\"", g.Group)
			}
			if len(g.ResourceNames) > 0 && len(g.Resources) == 0 {
				return nil, bad(i, "resourceNames need resources")
			}
			for _, res := range g.Resources {
				if res == "" || strings.Count(res, "/") > 1 {
					return nil, bad(i, "resource %q is not resource or resource/subresource", res)
				}
			}
		}
	}
	return &p, nil
}

// level returns the level the first matching rule gives a request for
// resource (resource or resource/subresource) in group, by anyone.
func (p *policy) level(verb, group, resource string) string {
	for _, r := range p.Rules {
		if len(r.Users) > 0 || len(r.UserGroups) > 0 || len(r.Namespaces) > 0 || len(r.NonResourceURLs) > 0 {
			continue // these rules match only some requests
		}
		if len(r.Verbs) > 0 && !slices.Contains(r.Verbs, verb) && !slices.Contains(r.Verbs, "*") {
			continue
		}
		if len(r.Resources) == 0 {
			return r.Level
		}
		for _, g := range r.Resources {
			if g.Group == group && len(g.ResourceNames) == 0 && (slices.Contains(g.Resources, resource) || slices.Contains(g.Resources, "*")) {
				return r.Level
			}
		}
	}
	return "None"
}

func TestPolicies(t *testing.T) {
	credentials := []struct{ group, resource string }{
		{"", "secrets"}, {"", "configmaps"}, {"", "serviceaccounts/token"}, {"authentication.k8s.io", "tokenreviews"},
	}
	for _, tc := range []struct {
		file string
		// credentialLevel is the level every credential request must get
		// (create and get alike); writeLevel that of a deployment update.
		credentialLevel, writeLevel string
		// except overrides credentialLevel for some credential resources.
		except map[string]string
	}{
		{"policies/production.yaml", "Metadata", "Request", nil},
		{"policies/request-response.yaml", "Metadata", "RequestResponse", nil},
		{"policies/logs-secrets-on-purpose.yaml", "RequestResponse", "Metadata", nil},
		{"policies/rke2-basic.yaml", "None", "None", nil},
		// The blog's detailed policy as published, corrected only in form:
		// it logs secrets and configmaps (rules lint warns).
		{"policies/rke2-detailed.yaml", "RequestResponse", "RequestResponse",
			map[string]string{"serviceaccounts/token": "None", "tokenreviews": "Metadata"}},
		{"policies/rke2-detailed-secrets-safe.yaml", "Metadata", "RequestResponse", nil},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			p, err := decodePolicy(b)
			if err != nil {
				t.Fatalf("%s: %v", tc.file, err)
			}
			for _, c := range credentials {
				want := tc.credentialLevel
				if l, ok := tc.except[c.resource]; ok {
					want = l
				}
				for _, verb := range []string{"create", "get", "update"} {
					if got := p.level(verb, c.group, c.resource); got != want {
						t.Errorf("%s %s/%s is logged at %s, want %s", verb, c.group, c.resource, got, want)
					}
				}
			}
			if got := p.level("update", "apps", "deployments"); got != tc.writeLevel {
				t.Errorf("a deployment update is logged at %s, want %s", got, tc.writeLevel)
			}
		})
	}
	all := yamlFiles(t, "policies")
	if len(all) != 6 {
		t.Errorf("policies/ holds %v; give each new policy a case above", all)
	}
}

// TestPolicyCheckCatchesSeedMistakes makes sure decodePolicy is strict
// enough for the mistakes users paste: rule keys at the wrong indentation
// and a group written as "  ".
func TestPolicyCheckCatchesSeedMistakes(t *testing.T) {
	for name, doc := range map[string]string{
		"resources outdented": "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n- group: \"\"\n  resources: [pods]\n",
		"group with spaces":   "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  resources:\n  - group: \"  \"\n    resources: [pods]\n",
		"unknown level":       "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Full\n",
		"misspelt key":        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  user: [admin]\n",
		"both kinds":          "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/healthz]\n  resources: [{group: \"\"}]\n",
	} {
		if _, err := decodePolicy([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// rke2Config is the part of /etc/rancher/rke2/config.yaml the snippet
// sets.
type rke2Config struct {
	KubeAPIServerArg        []string `yaml:"kube-apiserver-arg"`
	KubeAPIServerExtraMount []string `yaml:"kube-apiserver-extra-mount"`
}

func TestRKE2Config(t *testing.T) {
	b, err := os.ReadFile("rke2/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c rke2Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	args := map[string]string{}
	for _, a := range c.KubeAPIServerArg {
		k, v, ok := strings.Cut(a, "=")
		if !ok || strings.HasPrefix(k, "-") || v == "" {
			t.Errorf("kube-apiserver-arg %q: want name=value without leading dashes", a)
		}
		args[k] = v
	}
	for _, k := range []string{"audit-policy-file", "audit-log-path", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize"} {
		if args[k] == "" {
			t.Errorf("kube-apiserver-arg does not set %s", k)
		}
	}
	logPath := args["audit-log-path"]
	if def := config.Default().Source.Path; logPath != def {
		t.Errorf("audit-log-path=%s, but the shipper's default source.path is %s", logPath, def)
	}
	ex, err := config.Load("audit-shipper.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if ex.Source.Path != logPath {
		t.Errorf("audit-shipper.yaml reads %s, the apiserver writes %s", ex.Source.Path, logPath)
	}
	want := filepath.Dir(logPath) + ":" + filepath.Dir(logPath)
	if !slices.Contains(c.KubeAPIServerExtraMount, want) {
		t.Errorf("kube-apiserver-extra-mount %v does not mount the log's directory (%s)", c.KubeAPIServerExtraMount, want)
	}
	for _, m := range c.KubeAPIServerExtraMount {
		if host, _, _ := strings.Cut(m, ":"); host == logPath {
			t.Errorf("kube-apiserver-extra-mount %q mounts the file: rotation needs the directory", m)
		}
	}
	if p := args["audit-policy-file"]; p != "/etc/rancher/rke2/audit-policy.yaml" {
		t.Errorf("audit-policy-file=%s: RKE2 mounts only its own default path into the apiserver pod", p)
	}
	if all := yamlFiles(t, "rke2"); len(all) != 1 {
		t.Errorf("rke2/ holds %v; this test checks only rke2/config.yaml", all)
	}
}
