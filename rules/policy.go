package rules

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Level is an audit level, ordered by detail.
type Level uint8

// The levels of audit.k8s.io/v1, least detail first.
const (
	LevelNone Level = iota
	LevelMetadata
	LevelRequest
	LevelRequestResponse
)

var levelNames = [...]string{"None", "Metadata", "Request", "RequestResponse"}

func (l Level) String() string { return levelNames[l] }

// parseLevel returns the level named s.
func parseLevel(s string) (Level, bool) {
	for i, n := range levelNames {
		if s == n {
			return Level(i), true
		}
	}
	return LevelNone, false
}

// StageSet is a set of audit stages.
type StageSet uint8

var stageNames = [...]string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}

func stageBit(s string) StageSet {
	for i, n := range stageNames {
		if s == n {
			return 1 << i
		}
	}
	return 0
}

// Has reports whether the stage named s is in the set; an unknown stage
// never is.
func (s StageSet) Has(stage string) bool { return s&stageBit(stage) != 0 }

// Policy is a compiled audit.k8s.io/v1 Policy. It is immutable.
type Policy struct {
	rules             []rule
	omitStages        StageSet
	omitManagedFields bool
}

// Len is the number of rules.
func (p *Policy) Len() int { return len(p.rules) }

// rule is a PolicyRule with the policy-wide settings folded in, as
// kube-apiserver's evaluator does when it is built.
type rule struct {
	level             Level
	users, userGroups []string
	verbs, namespaces []string
	resources         []groupResources
	nonResourceURLs   []string
	omitStages        StageSet // the rule's and the policy's
	omitManagedFields bool     // the rule's, else the policy's
}

// ruleSource is where a rule's parts are written, for findings.
type ruleSource struct {
	node                  *yaml.Node
	level                 *yaml.Node // nil when absent
	levelName             string
	verbs, nonResourceURL *yaml.Node
	resources             []*yaml.Node // the items of resources
	omitManagedFields     bool         // the rule sets it
}

type groupResources struct {
	group         string
	resources     []string
	resourceNames []string
}

// Severity says how bad a finding is.
type Severity uint8

const (
	// SeverityError: kube-apiserver refuses the policy (and does not start).
	SeverityError Severity = iota
	// SeverityIgnored: kube-apiserver loads the policy but ignores part of
	// it, with only a warning in its log ("falling back to lenient
	// decoding"). The shipper refuses such a policy: an ignored key changes
	// what the rule matches (a misspelt users: makes it match everyone).
	SeverityIgnored
	// SeverityWarning: valid, but most likely not what was meant.
	SeverityWarning
)

func (s Severity) String() string {
	return [...]string{"error", "error", "warning"}[s]
}

// Finding is one problem in a policy file.
type Finding struct {
	Line     int // 1-based; 0 when it concerns the whole file
	Severity Severity
	Msg      string // what is wrong and what to write instead
}

// ReadPolicy reads and compiles the policy file at path. A finding of
// SeverityError or SeverityIgnored makes it fail with one line naming the
// file, the line of the first problem and its fix; warnings are not
// reported here (`audit-shipper policy lint` shows them).
func ReadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit policy: %w; rules.policy_file must name a readable audit.k8s.io/v1 Policy file", err)
	}
	p, findings := Lint(b)
	if p != nil {
		return p, nil
	}
	var first Finding
	errs := 0
	for _, f := range findings {
		if f.Severity != SeverityWarning {
			if errs == 0 {
				first = f
			}
			errs++
		}
	}
	pos := path
	if first.Line > 0 {
		pos += ":" + strconv.Itoa(first.Line)
	}
	more := ""
	if errs > 1 {
		more = fmt.Sprintf(" (%d more problems: run `audit-shipper policy lint %s`)", errs-1, path)
	}
	return nil, fmt.Errorf("%s: %s%s", pos, first.Msg, more)
}

// Lint decodes and validates an audit policy the way kube-apiserver does
// (k8s.io/apiserver/pkg/audit/policy.LoadPolicyFromBytes: strict decoding,
// then the validation of k8s.io/apiserver/pkg/apis/audit/validation) and
// adds warnings for policies that are valid but leak or never match. The
// policy is nil when any finding is an error (SeverityError or
// SeverityIgnored). Findings are in the order of the file.
func Lint(b []byte) (*Policy, []Finding) {
	d := &decoder{}
	p := d.decode(b)
	if p != nil {
		d.validate(p)
	}
	slices.SortStableFunc(d.findings, func(a, b Finding) int { return a.Line - b.Line })
	for _, f := range d.findings {
		if f.Severity != SeverityWarning {
			return nil, d.findings
		}
	}
	return p, d.findings
}

// decoder turns the YAML tree into a Policy, recording findings.
type decoder struct {
	findings []Finding
	src      []ruleSource // of each rule
}

func (d *decoder) add(n *yaml.Node, sev Severity, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.findings = append(d.findings, Finding{Line: line, Severity: sev, Msg: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

func (d *decoder) decode(b []byte) *Policy {
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		msg, line := err.Error(), 0
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = msg[len(m[0]):]
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		if msg == "EOF" {
			d.findings = append(d.findings, Finding{Severity: SeverityError,
				Msg: "the file is empty; an audit policy starts with apiVersion: audit.k8s.io/v1, kind: Policy and rules:"})
			return nil
		}
		d.findings = append(d.findings, Finding{Line: line, Severity: SeverityError,
			Msg: "invalid YAML: " + msg + "; check the indentation: a rule's keys (level, resources, users, ...) line up under the first one after its '-', and write `key: value` with a space after the colon"})
		return nil
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		d.add(&next, SeverityIgnored, "a second YAML document: kube-apiserver reads only the first; remove the '---' and what follows, or merge the rules into the first document")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		d.add(root, SeverityError, "an audit policy is a mapping with apiVersion: audit.k8s.io/v1, kind: Policy and rules: [...]")
		return nil
	}
	p := &Policy{}
	var apiVersion, kind *yaml.Node
	var rules *yaml.Node
	d.members(root, "", func(key string, k, v *yaml.Node) {
		switch key {
		case "apiVersion":
			apiVersion = v
		case "kind":
			kind = v
		case "metadata":
			d.metadata(v)
		case "rules":
			rules = v
		case "omitStages":
			p.omitStages = d.stages(v, "omitStages")
		case "omitManagedFields":
			p.omitManagedFields, _ = d.boolean(v, "omitManagedFields")
		default:
			d.unknown(k, key, "", "apiVersion, kind, metadata, rules, omitStages, omitManagedFields")
		}
	})
	ok := true
	if s, _ := d.str(kind, "kind"); kind == nil || s == "" {
		d.add(root, SeverityError, "kind is missing; add `kind: Policy`")
		ok = false
	} else if s != "Policy" {
		d.add(kind, SeverityError, "kind is %q; an audit policy has `kind: Policy`", s)
		ok = false
	}
	if s, _ := d.str(apiVersion, "apiVersion"); apiVersion == nil || s == "" {
		d.add(root, SeverityError, "apiVersion is missing; add `apiVersion: audit.k8s.io/v1`")
		ok = false
	} else if s != "audit.k8s.io/v1" {
		d.add(apiVersion, SeverityError, "apiVersion %q is not served by kube-apiserver; write `apiVersion: audit.k8s.io/v1` (the rules are the same)", s)
		ok = false
	}
	if rules != nil && rules.Kind != yaml.ScalarNode {
		if rules.Kind != yaml.SequenceNode {
			d.add(rules, SeverityError, "rules is not a list; write each rule as a list item starting with `- level: ...`")
			ok = false
		} else {
			for i, rn := range rules.Content {
				r, src := d.policyRule(rn, i)
				p.rules = append(p.rules, r)
				d.src = append(d.src, src)
			}
		}
	} else if rules != nil && !isNull(rules) {
		d.add(rules, SeverityError, "rules is not a list; write each rule as a list item starting with `- level: ...`")
		ok = false
	}
	if ok && len(p.rules) == 0 {
		at := rules
		if at == nil {
			at = root
		}
		d.add(at, SeverityError, "the policy has no rules (kube-apiserver refuses it: \"loaded illegal policy with 0 rules\"); add at least `rules: [{level: Metadata}]`")
	}
	for i := range p.rules {
		r := &p.rules[i]
		r.omitStages |= p.omitStages
		if !d.src[i].omitManagedFields {
			r.omitManagedFields = p.omitManagedFields
		}
	}
	return p
}

func (d *decoder) policyRule(n *yaml.Node, i int) (rule, ruleSource) {
	var r rule
	src := ruleSource{node: n}
	path := "rules[" + strconv.Itoa(i) + "]"
	if isNull(n) {
		return r, src // validation reports the missing level
	}
	if n.Kind != yaml.MappingNode {
		d.add(n, SeverityError, "%s is not a mapping: a rule is `- level: ...` with its other keys lined up under level (found %s)", path, describe(n))
		return r, src
	}
	d.members(n, path, func(key string, k, v *yaml.Node) {
		p := path + "." + key
		switch key {
		case "level":
			src.level = v
			src.levelName, _ = d.str(v, p)
		case "users":
			r.users = d.strs(v, p)
		case "userGroups":
			r.userGroups = d.strs(v, p)
		case "verbs":
			src.verbs = v
			r.verbs = d.strs(v, p)
		case "namespaces":
			r.namespaces = d.strs(v, p)
		case "nonResourceURLs":
			src.nonResourceURL = v
			r.nonResourceURLs = d.strs(v, p)
		case "resources":
			r.resources, src.resources = d.resources(v, p)
		case "omitStages":
			r.omitStages = d.stages(v, p)
		case "omitManagedFields":
			r.omitManagedFields, src.omitManagedFields = d.boolean(v, p)
		default:
			hint := "level, users, userGroups, verbs, resources, namespaces, nonResourceURLs, omitStages, omitManagedFields"
			switch key {
			case "group", "resourceNames":
				hint += "; " + key + " belongs inside a resources item: `resources: [{group: \"\", resources: [\"pods\"]}]`"
			case "user", "groups", "verb", "resource", "namespace", "nonResourceURL":
				hint += "; did you mean the plural?"
			}
			d.unknown(k, key, path, hint)
		}
	})
	return r, src
}

func (d *decoder) resources(n *yaml.Node, path string) ([]groupResources, []*yaml.Node) {
	if isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		d.add(n, SeverityError, "%s is not a list; write `resources:` followed by items like `- group: \"\"` and `resources: [\"pods\"]` indented under it (found %s)", path, describe(n))
		return nil, nil
	}
	out := make([]groupResources, 0, len(n.Content))
	for i, item := range n.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		var gr groupResources
		if item.Kind != yaml.MappingNode && !isNull(item) {
			d.add(item, SeverityError, "%s is not a mapping of group, resources and resourceNames (found %s); write `- group: \"\"` with `resources: [...]` lined up under group", p, describe(item))
		} else if item.Kind == yaml.MappingNode {
			d.members(item, p, func(key string, k, v *yaml.Node) {
				switch key {
				case "group":
					gr.group, _ = d.str(v, p+".group")
				case "resources":
					gr.resources = d.strs(v, p+".resources")
				case "resourceNames":
					gr.resourceNames = d.strs(v, p+".resourceNames")
				default:
					d.unknown(k, key, p, "group, resources, resourceNames")
				}
			})
		}
		out = append(out, gr)
	}
	return out, n.Content
}

func (d *decoder) metadata(n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.add(n, SeverityError, "metadata is not a mapping (found %s); write `metadata: {name: my-policy}` or leave it out", describe(n))
		return
	}
	d.members(n, "metadata", func(key string, k, v *yaml.Node) {
		switch key {
		case "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion":
			d.str(v, "metadata."+key)
		case "labels", "annotations":
			if v.Kind == yaml.MappingNode {
				d.members(v, "metadata."+key, func(_ string, _, val *yaml.Node) { d.str(val, "metadata."+key+" values") })
			} else if !isNull(v) {
				d.add(v, SeverityError, "metadata.%s is not a mapping of strings (found %s)", key, describe(v))
			}
		case "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
			"ownerReferences", "finalizers", "managedFields":
			// ObjectMeta fields that no policy sets; kube-apiserver decodes them.
		default:
			d.unknown(k, key, "metadata", "name, labels, annotations")
		}
	})
}

// members calls fn for each key of a mapping; a key given twice is an
// Ignored finding and the last value wins, as in kube-apiserver's lenient
// fallback.
func (d *decoder) members(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]bool{}
	var order []string
	last := map[string][2]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if k.Kind != yaml.ScalarNode {
			d.add(k, SeverityError, "a key of %s is not a string", orTop(path))
			continue
		}
		if seen[key] {
			d.add(k, SeverityIgnored, "%s is given twice in %s (kube-apiserver keeps the last one); remove one", key, orTop(path))
		} else {
			order = append(order, key)
		}
		seen[key] = true
		last[key] = [2]*yaml.Node{k, v}
	}
	for _, key := range order {
		kv := last[key]
		v := kv[1]
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		fn(key, kv[0], v)
	}
}

func (d *decoder) unknown(k *yaml.Node, key, path, known string) {
	d.add(k, SeverityIgnored, "unknown key %q in %s (kube-apiserver ignores it, so the rule matches more than written); the keys are %s", key, orTop(path), known)
}

func orTop(path string) string {
	if path == "" {
		return "the policy"
	}
	return path
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// yaml11Bools are the plain scalars that YAML 1.1, which kube-apiserver's
// YAML reader follows, reads as booleans (go.yaml.in/yaml/v3 reads them as
// strings).
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"n": false, "N": false, "no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
}

// scalarType is the JSON type kube-apiserver's YAML reader gives a scalar.
func scalarType(n *yaml.Node) string {
	switch n.Tag {
	case "!!null":
		return "null"
	case "!!bool":
		return "bool"
	case "!!int", "!!float":
		return "number"
	case "!!str":
		if _, ok := yaml11Bools[n.Value]; ok && n.Style == 0 {
			return "bool"
		}
	}
	return "string"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%s %q", scalarType(n), n.Value)
}

// str decodes a string; null is "" as in kube-apiserver.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n == nil {
		return "", false
	}
	if n.Kind == yaml.ScalarNode {
		switch scalarType(n) {
		case "string":
			return n.Value, true
		case "null":
			return "", true
		}
	}
	d.add(n, SeverityError, "%s must be a string, found %s; quote it", path, describe(n))
	return "", false
}

func (d *decoder) strs(n *yaml.Node, path string) []string {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.add(n, SeverityError, "%s must be a list of strings, found %s; write it as [\"a\", \"b\"]", path, describe(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		s, _ := d.str(item, path+"["+strconv.Itoa(i)+"]")
		out = append(out, s)
	}
	return out
}

// boolean decodes a boolean; set is false for null.
func (d *decoder) boolean(n *yaml.Node, path string) (v, set bool) {
	if n.Kind == yaml.ScalarNode {
		switch scalarType(n) {
		case "null":
			return false, false
		case "bool":
			if b, ok := yaml11Bools[n.Value]; ok {
				return b, true
			}
			return strings.EqualFold(n.Value, "true"), true
		}
	}
	d.add(n, SeverityError, "%s must be true or false, found %s", path, describe(n))
	return false, false
}

func (d *decoder) stages(n *yaml.Node, path string) StageSet {
	var set StageSet
	for i, s := range d.strs(n, path) {
		bit := stageBit(s)
		if bit == 0 {
			d.add(n.Content[i], SeverityError, "%s[%d]: %q is not a stage; the stages are %s", path, i, s, strings.Join(stageNames[:], ", "))
		}
		set |= bit
	}
	return set
}
