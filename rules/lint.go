package rules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// validate applies kube-apiserver's validation
// (k8s.io/apiserver/pkg/apis/audit/validation.ValidatePolicy) to the decoded
// rules, sets their levels, then adds the warnings.
func (d *decoder) validate(p *Policy) {
	for i := range p.rules {
		r, src := &p.rules[i], &d.src[i]
		path := "rules[" + strconv.Itoa(i) + "]"
		at := src.node
		if src.level != nil {
			at = src.level
		}
		switch l, ok := parseLevel(src.levelName); {
		case ok:
			r.level = l
		case src.levelName == "" && src.level != nil && !isNull(src.level):
			// not a string: reported by the decoder
		case src.levelName == "":
			d.add(at, SeverityError, "%s.level is missing; every rule needs `level:` None, Metadata, Request or RequestResponse", path)
		default:
			d.add(at, SeverityError, "%s.level %q is not one of None, Metadata, Request, RequestResponse", path, src.levelName)
		}
		for j, u := range r.nonResourceURLs {
			n := src.nonResourceURL.Content[j]
			if u == "*" {
				continue
			}
			if !strings.HasPrefix(u, "/") {
				d.add(n, SeverityError, "%s.nonResourceURLs[%d] %q must begin with '/' (or be \"*\")", path, j, u)
			}
			if u != "" && strings.Contains(u[:len(u)-1], "*") {
				d.add(n, SeverityError, "%s.nonResourceURLs[%d] %q: '*' is allowed only as the last character (\"/healthz*\")", path, j, u)
			}
		}
		for j, gr := range r.resources {
			n := src.resources[j]
			if gr.group != "" && gr.group != "*" && !isDNSSubdomain(gr.group) {
				hint := "an API group is a lowercase DNS name such as apps or rbac.authorization.k8s.io, \"*\" for every group"
				if strings.TrimSpace(gr.group) == "" {
					hint = "the core group (pods, secrets, configmaps, ...) is written as the empty string: group: \"\""
				} else if strings.Contains(gr.group, "/") {
					hint = "write the group without its version: " + strconv.Quote(gr.group[:strings.Index(gr.group, "/")])
				}
				d.add(valueOf(n, "group"), SeverityError, "%s.resources[%d].group %q is not a valid API group; %s", path, j, gr.group, hint)
			}
			if len(gr.resourceNames) > 0 && len(gr.resources) == 0 {
				d.add(valueOf(n, "resourceNames"), SeverityError, "%s.resources[%d]: resourceNames need at least one resource in resources", path, j)
			}
		}
		if len(r.nonResourceURLs) > 0 && (len(r.resources) > 0 || len(r.namespaces) > 0) {
			d.add(src.nonResourceURL, SeverityError, "%s: a rule cannot match both resources (resources, namespaces) and nonResourceURLs; split it into two rules", path)
		}
	}
	for _, f := range d.findings {
		if f.Severity != SeverityWarning {
			return // kube-apiserver stops at the errors: fix them first
		}
	}
	d.warnings(p)
}

// valueOf is the value node of key in mapping n, or n itself.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
	}
	return n
}

// isDNSSubdomain is k8s.io/apimachinery's IsDNS1123Subdomain: at most 253
// characters of dot-separated labels of [a-z0-9-], each starting and ending
// with [a-z0-9].
func isDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// requestVerbs are the verbs audit events carry: kube-apiserver's resource
// verbs, and for non-resource URLs the lower-cased HTTP method.
var requestVerbs = append(resourceVerbs, "post", "put", "head", "options")

var resourceVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy"}

// credential is a resource whose bodies hold credentials.
type credential struct {
	group, resource, subresource string
	what                         string // what the bodies hold
}

var credentials = []credential{
	{"", "secrets", "", "the secrets' data"},
	{"", "configmaps", "", "the config maps' contents (often passwords and keys)"},
	{"", "serviceaccounts", "token", "the service account tokens issued (status.token)"},
	{"authentication.k8s.io", "tokenreviews", "", "the bearer tokens under review (spec.token)"},
}

// credentialNames is "secrets", "secrets and configmaps", "a, b and c".
func credentialNames(cs []credential) string {
	var b strings.Builder
	for i, c := range cs {
		switch {
		case i == 0:
		case i == len(cs)-1:
			b.WriteString(" and ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(c.name())
	}
	return b.String()
}

func credentialContents(cs []credential) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.what
	}
	return strings.Join(parts, ", ")
}

// credentialResources is the resources list of a rule that matches cs.
func credentialResources(cs []credential) string {
	var groups []string
	byGroup := map[string][]string{}
	for _, c := range cs {
		if _, ok := byGroup[c.group]; !ok {
			groups = append(groups, c.group)
		}
		byGroup[c.group] = append(byGroup[c.group], strconv.Quote(c.name()))
	}
	var items []string
	for _, g := range groups {
		items = append(items, fmt.Sprintf("{group: %q, resources: [%s]}", g, strings.Join(byGroup[g], ", ")))
	}
	return "[" + strings.Join(items, ", ") + "]"
}

func (c credential) name() string {
	if c.subresource != "" {
		return c.resource + "/" + c.subresource
	}
	return c.resource
}

// warnings flags rules that log credentials' bodies and verbs or
// resources that never match.
func (d *decoder) warnings(p *Policy) {
	shadowed := make([]bool, len(credentials))
	for i := range p.rules {
		r, src := &p.rules[i], &d.src[i]
		path := "rules[" + strconv.Itoa(i) + "]"
		for j, v := range r.verbs {
			n := src.verbs.Content[j]
			switch {
			case v == "*":
				d.add(n, SeverityWarning, "%s.verbs: \"*\" matches no request in an audit policy (it is not RBAC); leave verbs out to match every verb", path)
			case !slices.Contains(requestVerbs, v):
				d.add(n, SeverityWarning, "%s.verbs: %q never appears in an audit event, so this verb never matches; the verbs are %s", path, v, strings.Join(requestVerbs, ", "))
			}
		}
		for j, gr := range r.resources {
			for _, res := range gr.resources {
				if res != strings.ToLower(res) {
					d.add(src.resources[j], SeverityWarning, "%s.resources[%d]: %q never matches: resources are lowercase plurals such as pods or deployments", path, j, res)
				}
			}
		}
		var logged []credential
		for c, cred := range credentials {
			if shadowed[c] {
				continue
			}
			some, all := r.matchesCredential(cred)
			if !some {
				continue
			}
			if r.level >= LevelRequest {
				logged = append(logged, cred)
			}
			shadowed[c] = all
		}
		if len(logged) > 0 {
			at := src.node
			if src.level != nil {
				at = src.level
			}
			d.add(at, SeverityWarning, "%s logs %s at %s, so the audit log holds %s. Fix: add before it `- level: Metadata` with `resources: %s`, or lower this rule to Metadata. (audit-shipper's rules.redact_secrets cuts these bodies before shipping, but the audit log on the node keeps them.)",
				path, credentialNames(logged), r.level, credentialContents(logged), credentialResources(logged))
		}
		if i == len(p.rules)-1 && i > 0 && r.level == LevelNone {
			d.add(src.node, SeverityWarning, "%s: a None rule at the end changes nothing (requests that match no rule are not logged anyway); to stop logging these requests, move it before the rules that match them", path)
		}
	}
}

// matchesCredential reports whether the rule matches some requests for c
// (some) and whether it matches every one of them (all), so that later
// rules never see c.
func (r *rule) matchesCredential(c credential) (some, all bool) {
	if len(r.nonResourceURLs) > 0 && len(r.resources) == 0 && len(r.namespaces) == 0 {
		return false, false
	}
	if len(r.verbs) > 0 && !slices.ContainsFunc(r.verbs, func(v string) bool { return slices.Contains(resourceVerbs, v) }) {
		return false, false // only verbs of non-resource requests
	}
	restricted := len(r.users) > 0 || len(r.userGroups) > 0 || len(r.verbs) > 0 || len(r.namespaces) > 0
	if len(r.resources) == 0 {
		return true, !restricted
	}
	for _, gr := range r.resources {
		if gr.group != c.group && gr.group != "*" {
			continue
		}
		if len(gr.resources) == 0 {
			return true, !restricted
		}
		for _, res := range gr.resources {
			if resourceMatches(res, c.resource, c.subresource) {
				some = true
				if len(gr.resourceNames) == 0 && !restricted {
					return true, true
				}
			}
		}
	}
	return some, false
}

// FormatFindings renders findings one per line as FILE:LINE: SEVERITY: MSG.
func FormatFindings(file string, findings []Finding) string {
	var b strings.Builder
	for _, f := range findings {
		b.WriteString(file)
		if f.Line > 0 {
			fmt.Fprintf(&b, ":%d", f.Line)
		}
		fmt.Fprintf(&b, ": %s: %s\n", f.Severity, f.Msg)
	}
	return b.String()
}
