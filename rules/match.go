package rules

import (
	"net/url"
	"strings"

	"github.com/audit-shipper/audit-shipper/parse"
)

// Decision is what a policy says about the request of one event, as
// kube-apiserver's evaluator (k8s.io/apiserver/pkg/audit/policy) says it
// for the same request.
type Decision struct {
	Rule              int // index of the first matching rule; -1 when none matched
	Level             Level
	OmitStages        StageSet // the rule's and the policy's omitStages
	OmitManagedFields bool
}

// Decide evaluates the policy for the request ev records: rules in order,
// the first that matches decides; none matching means LevelNone.
//
// The request's attributes are taken from the event as kube-apiserver
// wrote them from the same attributes: the user (the authenticated one,
// not impersonatedUser: the policy is evaluated before impersonation),
// verb, objectRef (present exactly for resource requests) and, for
// non-resource requests, the path of requestURI. One exception: for a
// create without subresource, kube-apiserver fills objectRef.name from the
// request body after the policy was evaluated with an empty name, so the
// name is taken as empty there too.
func (p *Policy) Decide(ev *parse.Event) Decision {
	var path string
	pathDone := false
	for i := range p.rules {
		r := &p.rules[i]
		if !r.matchesUser(ev) {
			continue
		}
		if len(r.namespaces) > 0 || len(r.resources) > 0 {
			if !ev.HasObjectRef || !r.matchesResource(ev) {
				continue
			}
		} else if len(r.nonResourceURLs) > 0 {
			if ev.HasObjectRef {
				continue
			}
			if !pathDone {
				path, pathDone = requestPath(ev.RequestURI), true
			}
			if !r.matchesPath(path) {
				continue
			}
		}
		return Decision{Rule: i, Level: r.level, OmitStages: r.omitStages, OmitManagedFields: r.omitManagedFields}
	}
	return Decision{Rule: -1, Level: LevelNone, OmitStages: p.omitStages, OmitManagedFields: p.omitManagedFields}
}

func (r *rule) matchesUser(ev *parse.Event) bool {
	if len(r.users) > 0 && !has(r.users, ev.Username) {
		return false
	}
	if len(r.userGroups) > 0 {
		found := false
		for _, g := range ev.Groups {
			if has(r.userGroups, g) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return len(r.verbs) == 0 || has(r.verbs, ev.Verb)
}

func (r *rule) matchesResource(ev *parse.Event) bool {
	o := &ev.ObjectRef
	if len(r.namespaces) > 0 && !has(r.namespaces, o.Namespace) {
		return false
	}
	if len(r.resources) == 0 {
		return true
	}
	name := o.Name
	if ev.Verb == "create" && o.Subresource == "" {
		name = ""
	}
	for i := range r.resources {
		gr := &r.resources[i]
		if gr.group != o.APIGroup && gr.group != "*" {
			continue
		}
		if len(gr.resources) == 0 {
			return true
		}
		if len(gr.resourceNames) > 0 && !has(gr.resourceNames, name) {
			continue
		}
		for _, res := range gr.resources {
			if resourceMatches(res, o.Resource, o.Subresource) {
				return true
			}
		}
	}
	return false
}

// resourceMatches is kube-apiserver's test of one policy resource entry:
// "resource", "resource/subresource", "*", "*/subresource", "resource/*".
func resourceMatches(res, resource, sub string) bool {
	if res == "*" {
		return true
	}
	if sub == "" {
		if res == resource {
			return true
		}
	} else if len(res) == len(resource)+1+len(sub) && strings.HasPrefix(res, resource) && res[len(resource)] == '/' && strings.HasSuffix(res, sub) {
		return true
	}
	if sub != "" && len(res) == 2+len(sub) && strings.HasPrefix(res, "*/") && strings.HasSuffix(res, sub) {
		return true
	}
	return len(res) == len(resource)+2 && strings.HasSuffix(res, "/*") && strings.HasPrefix(res, resource)
}

func (r *rule) matchesPath(path string) bool {
	for _, spec := range r.nonResourceURLs {
		if spec == "*" || spec == path {
			return true
		}
		if strings.HasSuffix(spec, "*") && strings.HasPrefix(path, strings.TrimRight(spec, "*")) {
			return true
		}
	}
	return false
}

// requestPath is the request's URL path (what kube-apiserver matches
// nonResourceURLs against) from requestURI, which kube-apiserver writes as
// the escaped path and the query.
func requestPath(uri string) string {
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if strings.IndexByte(uri, '%') < 0 {
		return uri
	}
	if p, err := url.PathUnescape(uri); err == nil {
		return p
	}
	return uri
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
