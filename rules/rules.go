// Package rules decides what becomes of each audit event before a sink sees
// it: the shipper-side audit policy (drop, lower the level, omit stages and
// managedFields, in the exact vocabulary and semantics of an
// audit.k8s.io/v1 Policy) and the redaction of credential bodies.
//
// Both work on the raw line: members are cut out by byte range and an
// annotation is inserted, so the result is valid JSON, byte-identical to the
// input outside the cuts, and never re-encoded.
package rules

import (
	"fmt"
	"strings"

	"github.com/audit-shipper/audit-shipper/parse"
)

// Config is what the shipper's configuration gives (the rules section, or a
// sink's override of it).
type Config struct {
	// RedactSecrets cuts the request and response bodies of secrets,
	// tokenreviews and serviceaccounts/token (TokenRequest).
	RedactSecrets bool
	// RedactResources are further resources whose bodies are cut, written
	// as in an audit policy with an optional API group:
	// "configmaps", "pods/log", "pods/*", "widgets.example.com".
	RedactResources []string
	// PolicyFile is an audit.k8s.io/v1 Policy applied to every event;
	// empty for none.
	PolicyFile string
}

// Rules applies a Config. A *Rules is immutable and safe for concurrent use.
type Rules struct {
	policy *Policy  // nil: no policy
	redact []target // resources whose bodies are cut
}

// Verdict is what Apply decided for one event.
type Verdict struct {
	Drop       bool
	DropReason string // one of DropReasons when Drop
	Redacted   bool   // credential bodies were removed
	Lowered    bool   // the policy lowered the level: bodies above it, or managedFields, removed
}

// DropReasons are the values of Verdict.DropReason, for counters started at 0.
var DropReasons = []string{"policy_none", "omit_stage"}

// New builds the rules of c. An unreadable or invalid policy file, or a
// redact_resources entry that is not a resource, is an error that says
// where and what to write instead.
func New(c Config) (*Rules, error) {
	r := &Rules{}
	if c.RedactSecrets {
		r.redact = append(r.redact, secretTargets...)
	}
	for i, s := range c.RedactResources {
		t, err := parseTarget(s)
		if err != nil {
			return nil, fmt.Errorf("rules.redact_resources[%d]: %w", i, err)
		}
		r.redact = append(r.redact, t)
	}
	if c.PolicyFile != "" {
		p, err := ReadPolicy(c.PolicyFile)
		if err != nil {
			return nil, fmt.Errorf("rules.policy_file: %w", err)
		}
		r.policy = p
	}
	return r, nil
}

// target is a resource whose bodies are redacted.
type target struct {
	group    string // "*" for every group
	resource string // "*" for every resource
	sub      string // "" none, "*" any or none, else that subresource
}

// secretTargets are what RedactSecrets cuts. They match in every API group:
// a resource of another group with the same name (an aggregated or custom
// "secrets") is as likely to hold credentials, and cutting too much is the
// safe side. certificatesigningrequests are not here: a CSR carries a
// PKCS#10 request (public key, subject) and the issued certificate, both
// public; the private key never reaches the API server.
var secretTargets = []target{
	{group: "*", resource: "secrets", sub: "*"},
	{group: "*", resource: "tokenreviews", sub: "*"},
	{group: "*", resource: "serviceaccounts", sub: "token"},
}

// parseTarget reads resource[.group][/subresource].
func parseTarget(s string) (target, error) {
	t := target{group: "*"}
	name, sub, hasSub := strings.Cut(s, "/")
	res, group, hasGroup := strings.Cut(name, ".")
	t.resource, t.sub = res, sub
	ok := res != "" && (res == "*" || isDNSLabel(res)) &&
		(!hasGroup || isDNSSubdomain(group)) &&
		(!hasSub || sub == "*" || isDNSLabel(sub))
	if hasSub && sub == "" || !ok {
		return target{}, fmt.Errorf("%q is not a resource; write resource, resource/subresource or resource.group as in an audit policy (configmaps, pods/log, pods/*, widgets.example.com)", s)
	}
	if hasGroup {
		t.group = group
	}
	if res == "*" && !hasSub {
		// As in an audit policy: "*" matches every resource and its
		// subresources.
		t.sub = "*"
	}
	return t, nil
}

func isDNSLabel(s string) bool { return !strings.Contains(s, ".") && isDNSSubdomain(s) }

func (t *target) matches(o *parse.ObjectRef) bool {
	if t.group != "*" && t.group != o.APIGroup {
		return false
	}
	if t.resource != "*" && t.resource != o.Resource {
		return false
	}
	return t.sub == "*" || t.sub == o.Subresource
}

// Apply decides what becomes of one event: dropped, or the line to ship.
// The line is ev.Raw itself when nothing changes, or otherwise the cut line
// appended to dst[:0]; either way valid only as long as ev.Raw and dst are.
// dst must not share memory with ev.Raw: keep a buffer of its own for it
// (and do not recycle a returned ev.Raw as the next dst).
//
// In order: the policy (when there is one) drops the event when its level
// is None (DropReason "policy_none") or its stage is omitted
// ("omit_stage"); it lowers the event's level, never raises it, to the
// policy's: below Request both bodies are cut, below RequestResponse the
// response body, and the "level" member is rewritten; omitManagedFields
// cuts metadata.managedFields from the bodies that remain (of list items
// and table rows too). Then redaction cuts the remaining bodies of the
// resources to redact and adds the annotation
// "audit-shipper/redacted" naming the members cut
// ("requestObject,responseObject", or one of them). A member whose value is
// null is left alone.
//
// It does not allocate in steady state (growing dst aside).
func (r *Rules) Apply(dst []byte, ev *parse.Event) ([]byte, Verdict) {
	var v Verdict
	level, known := parseLevel(ev.Level)
	if !known {
		level = LevelRequestResponse // unknown: assume everything may be there
	}
	keep, omitMF := level, false
	if r.policy != nil {
		d := r.policy.Decide(ev)
		if d.Level == LevelNone {
			return nil, Verdict{Drop: true, DropReason: "policy_none"}
		}
		if d.OmitStages.Has(ev.Stage) {
			return nil, Verdict{Drop: true, DropReason: "omit_stage"}
		}
		keep = min(keep, d.Level)
		omitMF = d.OmitManagedFields
	}
	redact := r.redacts(ev)
	hasBody := ev.RequestObject.Present() || ev.ResponseObject.Present()
	lower := keep < level
	if !lower && !(hasBody && (redact || omitMF)) {
		return ev.Raw, v
	}

	var ed editor
	ed.init(ev.Raw)
	newLevel := ""
	if lower && known {
		newLevel = quotedLevels[keep]
	}
	// Every requestObject and responseObject member, not only the last one
	// parse saw: a line with a key twice must not keep a secret in the first.
	var buf [4]member
	bodies, levels := topMembers(ev, buf[:0], &ed, newLevel)
	var cutReq, cutResp, mfCut bool
	for _, m := range bodies {
		switch {
		case m.response && keep < LevelRequestResponse, !m.response && keep < LevelRequest:
			ed.remove(m.Range)
			v.Lowered = true
		case redact:
			ed.remove(m.Range)
			cutReq = cutReq || !m.response
			cutResp = cutResp || m.response
		case omitMF:
			mf := ev.RequestManagedFields
			if m.response {
				mf = ev.ResponseManagedFields
			}
			if m.last && mf.Present() {
				ed.remove(mf)
				mfCut = true
			} else {
				mfCut = managedFields(&ed, ev.Raw, m.Range) || mfCut
			}
		}
	}
	if levels > 0 {
		v.Lowered = true
	}
	v.Lowered = v.Lowered || mfCut
	if cutReq || cutResp {
		v.Redacted = true
		annotate(&ed, ev, redactedValue(cutReq, cutResp))
	}
	if ed.n == 0 {
		return ev.Raw, v
	}
	return ed.apply(dst[:0]), v
}

func (r *Rules) redacts(ev *parse.Event) bool {
	if !ev.HasObjectRef {
		return false
	}
	for i := range r.redact {
		if r.redact[i].matches(&ev.ObjectRef) {
			return true
		}
	}
	return false
}

func redactedValue(req, resp bool) string {
	switch {
	case req && resp:
		return "requestObject,responseObject"
	case req:
		return "requestObject"
	}
	return "responseObject"
}
