package loki

import (
	"strconv"
	"strings"

	"github.com/audit-shipper/audit-shipper/parse"
)

// field is an event field the sink can put in a label or in structured
// metadata.
type field struct {
	name string
	// value appends the field's value to dst; nothing when the event has
	// none (the field is then left out). Appending, rather than returning
	// a string, copies the value out of the parser's buffers (valid only
	// until its next Parse) without an allocation of its own.
	value func(dst []byte, ev *parse.Event) []byte
	// notLabel says why the field must not be a stream label; "" for the
	// few fields with a small, fixed set of values.
	notLabel string
}

// Reasons a field is refused as a label. Loki keeps one stream per distinct
// label set, with its own index entry and chunks; its default limit is
// 5,000 active streams per tenant (max_global_streams_per_user), and every
// label multiplies the count by its number of values.
const (
	perEvent     = "it differs for every request, so every event would open a stream of its own"
	unbounded    = "it has no upper bound (it grows with the cluster's users, clients or objects), so the stream count would follow it past Loki's per-tenant stream limit"
	growsWithAPI = "it grows with the cluster's API (every CRD adds values) and multiplies the stream count of the other labels"
)

// fields is every field the sink knows, in the order structured metadata is
// written.
var fields = []field{
	{name: "auditID", value: str(func(ev *parse.Event) string { return ev.AuditID }), notLabel: perEvent},
	{name: "stage", value: str(func(ev *parse.Event) string { return ev.Stage })},
	{name: "level", value: str(func(ev *parse.Event) string { return ev.Level })},
	{name: "verb", value: str(func(ev *parse.Event) string { return ev.Verb })},
	{name: "user", value: str(func(ev *parse.Event) string { return ev.Username }), notLabel: unbounded},
	{name: "userUID", value: str(func(ev *parse.Event) string { return ev.UID }), notLabel: unbounded},
	{name: "impersonatedUser", value: str(func(ev *parse.Event) string { return ev.ImpersonatedUser }), notLabel: unbounded},
	{name: "sourceIP", value: func(dst []byte, ev *parse.Event) []byte {
		// The client first, then the proxies it came through.
		for i, ip := range ev.SourceIPs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, ip...)
		}
		return dst
	}, notLabel: unbounded},
	{name: "userAgent", value: str(func(ev *parse.Event) string { return ev.UserAgent }), notLabel: unbounded},
	{name: "requestURI", value: str(func(ev *parse.Event) string { return ev.RequestURI }), notLabel: perEvent},
	{name: "apiGroup", value: str(func(ev *parse.Event) string { return ev.ObjectRef.APIGroup }), notLabel: growsWithAPI},
	{name: "apiVersion", value: str(func(ev *parse.Event) string { return ev.ObjectRef.APIVersion }), notLabel: growsWithAPI},
	{name: "resource", value: str(func(ev *parse.Event) string { return ev.ObjectRef.Resource }), notLabel: growsWithAPI},
	{name: "subresource", value: str(func(ev *parse.Event) string { return ev.ObjectRef.Subresource }), notLabel: growsWithAPI},
	{name: "namespace", value: str(func(ev *parse.Event) string { return ev.ObjectRef.Namespace }), notLabel: unbounded},
	{name: "name", value: str(func(ev *parse.Event) string { return ev.ObjectRef.Name }), notLabel: unbounded},
	{name: "code", value: func(dst []byte, ev *parse.Event) []byte {
		if ev.Code == 0 {
			return dst
		}
		return strconv.AppendInt(dst, int64(ev.Code), 10)
	}, notLabel: "HTTP status codes are many, and each one multiplies the stream count of the other labels"},
	{name: "decision", value: str(func(ev *parse.Event) string { return ev.Decision })},
	{name: "authzReason", value: str(func(ev *parse.Event) string { return ev.Reason }), notLabel: unbounded},
}

// otherHighCardinality names event fields the sink does not extract but
// that people reach for as labels; the guard explains them too, instead of
// a bare "unknown field".
var otherHighCardinality = map[string]string{
	"uid":       unbounded + ` (the user's uid is called "userUID" here)`,
	"objectUID": unbounded,
	"groups":    unbounded,
	"username":  unbounded + ` (the field is called "user" here)`,
	"sourceIPs": unbounded + ` (the field is called "sourceIP" here)`,
	"timestamp": perEvent,
}

// str makes a field value from a string member of the event.
func str(get func(ev *parse.Event) string) func([]byte, *parse.Event) []byte {
	return func(dst []byte, ev *parse.Event) []byte { return append(dst, get(ev)...) }
}

func fieldByName(name string) (field, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

func fieldNames() string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}
