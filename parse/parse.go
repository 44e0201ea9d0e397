// Package parse decodes kube-apiserver audit Event lines (audit.k8s.io/v1) in one
// pass over the line's bytes, without building the event's object tree.
//
// The decoder is a strict JSON parser for the fields it reads and a validating
// skipper for everything else: a line is accepted only if it is exactly one
// valid JSON object. Its answers match what Kubernetes' own case-sensitive
// decoder (sigs.k8s.io/json) yields when decoding into a struct of the same
// fields, with these deliberate differences, each covered by a test:
//   - invalid UTF-8 is rejected (ReasonInvalidUTF8); the oracle replaces it with U+FFFD;
//   - timestamps must be RFC 3339 as kube-apiserver writes it
//     (2006-01-02T15:04:05[.fraction](Z|±hh:mm)); the oracle's lenient fallback
//     (one-digit hours, comma fractions, offsets past 23:59) is rejected;
//     times are returned in UTC (the same instant the oracle returns);
//   - a top-level value that is not an object is ReasonSyntax, even `null`.
//
// Duplicate keys behave as in the oracle: the last one wins for strings,
// numbers, byte ranges and arrays; objects (user, objectRef, responseStatus,
// annotations, ...) are merged member by member; `null` clears what Kubernetes
// holds as a pointer, map or slice (impersonatedUser, objectRef,
// responseStatus, annotations, groups, sourceIPs) and leaves strings, times
// and user unchanged; a null annotation value stores "".
package parse

import (
	"bytes"
	"fmt"
	"math/bits"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// Reason says why a line is not an audit event. It is a bounded set, used as a
// metric label and in dead letters.
type Reason string

const (
	ReasonEmpty       Reason = "empty"           // empty or whitespace-only line
	ReasonInvalidUTF8 Reason = "invalid_utf8"    // the first offending byte is not UTF-8
	ReasonTruncated   Reason = "truncated"       // input ends inside a value (a line cut short)
	ReasonSyntax      Reason = "invalid_json"    // anything else that is not one JSON object
	ReasonNotEvent    Reason = "not_audit_event" // valid JSON, but not an audit.k8s.io Event, or a known field of the wrong type
)

// Reasons lists every Reason, so that per-reason counters can start at zero.
var Reasons = []Reason{ReasonEmpty, ReasonInvalidUTF8, ReasonTruncated, ReasonSyntax, ReasonNotEvent}

// Error is a line that could not be decoded. Errors are reported at the first
// offending byte, so a line with both a syntax error and invalid UTF-8 gets the
// reason of whichever comes first; a wrong-typed field (ReasonNotEvent) is
// reported only when the whole line is valid JSON.
type Error struct {
	Reason  Reason
	Offset  int    // byte offset into the line
	Msg     string // what was wrong
	Excerpt string // a copy of up to 40 bytes of the line around Offset
}

func (e *Error) Error() string {
	return fmt.Sprintf("audit event %s at byte %d: %s, near %q", e.Reason, e.Offset, e.Msg, e.Excerpt)
}

// Range is a member of the event located by byte offsets into Event.Raw:
// KeyStart is the opening quote of the member's key, [ValueStart,ValueEnd) its
// value (which may be `null`). All zero when the member is absent.
type Range struct{ KeyStart, ValueStart, ValueEnd int }

// Present reports whether the member was in the line.
func (r Range) Present() bool { return r.ValueEnd != 0 }

// ObjectRef is the event's objectRef.
type ObjectRef struct{ Resource, Subresource, Namespace, Name, APIGroup, APIVersion string }

// Event is the view of one audit event that the shipper needs.
type Event struct {
	Raw []byte // the line, untouched

	AuditID, Stage, Level, Verb, RequestURI, UserAgent string

	Username, UID    string
	Groups           []string
	ImpersonatedUser string // impersonatedUser.username
	SourceIPs        []string
	ObjectRef        ObjectRef
	HasObjectRef     bool // objectRef is present and not null
	Code             int  // responseStatus.code, 0 when absent

	RequestReceived, StageTime time.Time // in UTC; zero when absent
	Decision, Reason           string    // annotations authorization.k8s.io/decision and /reason

	RequestObject, ResponseObject, Annotations  Range
	RequestManagedFields, ResponseManagedFields Range // metadata.managedFields inside the bodies
}

// maxDepth is the nesting limit of the oracle's scanner (encoding/json's).
const maxDepth = 10000

// Parser decodes audit Event lines. Not safe for concurrent use; keep one per goroutine.
//
// It reuses its buffers: after warm-up, Parse allocates nothing for valid lines.
type Parser struct {
	ev  Event
	buf []byte // unescaped string values of the current line

	keyBuf []byte   // the current unescaped key
	stack  []byte   // open containers while skipping
	masks  []uint64 // special bytes of the line, see computeMasks

	groups, ips     []string
	groupsHW, ipsHW int // high-water marks of groups and ips in this line, see strs

	kind, apiVersion string
	dates            dateCache
	semErr           *Error // first wrong-typed field; reported only if the line is valid JSON
}

// Parse decodes one line (without its newline). The returned *Event, and every
// string and slice in it, are views into line or into p's buffers: valid until
// the next Parse call on p, and only while line is not modified. Strings that
// need no unescaping point into line (built with unsafe.String, so modifying
// line changes them); escaped ones are unescaped into p's buffer. Copy what
// must outlive the next call (strings.Clone).
//
// A non-nil error is always an *Error.
func (p *Parser) Parse(line []byte) (*Event, error) {
	if err := p.parse(line); err != nil {
		return nil, err
	}
	return &p.ev, nil
}

func (p *Parser) parse(b []byte) *Error {
	p.ev = Event{Raw: b}
	p.buf = p.buf[:0]
	p.groups, p.ips = p.groups[:0], p.ips[:0]
	p.groupsHW, p.ipsHW = 0, 0
	p.kind, p.apiVersion = "", ""
	p.semErr = nil
	p.computeMasks(b)

	i := skipWS(b, 0)
	if i == len(b) {
		return &Error{Reason: ReasonEmpty, Offset: 0, Msg: "empty line"}
	}
	if b[i] != '{' {
		return p.unexpected(b, i, "'{': an audit event is a JSON object")
	}
	i, done, err := p.open(b, i)
	next := fieldKind // the member kube-apiserver writes next
	for err == nil && !done {
		ks := i
		f := p.expected(b, i, next)
		if f != fieldUnknown {
			if i = skipWS(b, i+len(topKeys[f])); i == len(b) {
				err = p.truncated(b)
				break
			}
		} else {
			var key []byte
			if key, i, err = p.key(b, i); err != nil {
				break
			}
			f = topField(key)
		}
		if f != fieldUnknown {
			next = f + 1
		}
		e := &p.ev
		switch f {
		case fieldKind:
			i, err = p.str(b, i, 1, &p.kind, "kind")
		case fieldAPIVersion:
			i, err = p.str(b, i, 1, &p.apiVersion, "apiVersion")
		case fieldLevel:
			i, err = p.str(b, i, 1, &e.Level, "level")
		case fieldAuditID:
			i, err = p.str(b, i, 1, &e.AuditID, "auditID")
		case fieldStage:
			i, err = p.str(b, i, 1, &e.Stage, "stage")
		case fieldRequestURI:
			i, err = p.str(b, i, 1, &e.RequestURI, "requestURI")
		case fieldVerb:
			i, err = p.str(b, i, 1, &e.Verb, "verb")
		case fieldUserAgent:
			i, err = p.str(b, i, 1, &e.UserAgent, "userAgent")
		case fieldUser:
			i, err = p.user(b, i)
		case fieldImpersonatedUser:
			i, err = p.impersonatedUser(b, i)
		case fieldSourceIPs:
			i, err = p.strs(b, i, 1, &p.ips, &p.ipsHW, "sourceIPs")
		case fieldObjectRef:
			i, err = p.objectRef(b, i)
		case fieldResponseStatus:
			i, err = p.responseStatus(b, i)
		case fieldRequestObject:
			i, err = p.body(b, i, ks, &e.RequestObject, &e.RequestManagedFields)
		case fieldResponseObject:
			i, err = p.body(b, i, ks, &e.ResponseObject, &e.ResponseManagedFields)
		case fieldRequestReceived:
			i, err = p.time(b, i, 1, &e.RequestReceived, "requestReceivedTimestamp")
		case fieldStageTime:
			i, err = p.time(b, i, 1, &e.StageTime, "stageTimestamp")
		case fieldAnnotations:
			i, err = p.annotations(b, i, ks)
		default:
			i, err = p.skipValue(b, i, 1)
		}
		if err == nil {
			i, done, err = p.next(b, i)
		}
	}
	if err != nil {
		return err
	}
	if i = skipWS(b, i); i != len(b) {
		return p.unexpected(b, i, "end of line after the event object")
	}
	if p.semErr != nil {
		return p.semErr
	}
	switch {
	case p.kind != "Event":
		return p.notEvent(b, 0, fmt.Sprintf("kind is %q, want \"Event\"", p.kind))
	case p.apiVersion != "audit.k8s.io/v1" && p.apiVersion != "audit.k8s.io/v1beta1":
		return p.notEvent(b, 0, fmt.Sprintf("apiVersion is %q, want \"audit.k8s.io/v1\"", p.apiVersion))
	case p.ev.AuditID == "":
		return p.notEvent(b, 0, "auditID is missing")
	case p.ev.Stage == "":
		return p.notEvent(b, 0, "stage is missing")
	}
	p.ev.Groups, p.ev.SourceIPs = p.groups, p.ips
	return nil
}

// field numbers the members of an Event that the parser reads, in the order
// kube-apiserver writes them.
type field uint8

const (
	fieldUnknown field = iota
	fieldKind
	fieldAPIVersion
	fieldLevel
	fieldAuditID
	fieldStage
	fieldRequestURI
	fieldVerb
	fieldUser
	fieldImpersonatedUser
	fieldSourceIPs
	fieldUserAgent
	fieldObjectRef
	fieldResponseStatus
	fieldRequestObject
	fieldResponseObject
	fieldRequestReceived
	fieldStageTime
	fieldAnnotations
	fieldCount
)

// topKeys are the members as kube-apiserver writes them: quoted, without
// escapes and followed directly by the colon.
var topKeys = [fieldCount]string{
	fieldKind: `"kind":`, fieldAPIVersion: `"apiVersion":`, fieldLevel: `"level":`, fieldAuditID: `"auditID":`,
	fieldStage: `"stage":`, fieldRequestURI: `"requestURI":`, fieldVerb: `"verb":`, fieldUser: `"user":`,
	fieldImpersonatedUser: `"impersonatedUser":`, fieldSourceIPs: `"sourceIPs":`, fieldUserAgent: `"userAgent":`,
	fieldObjectRef: `"objectRef":`, fieldResponseStatus: `"responseStatus":`, fieldRequestObject: `"requestObject":`,
	fieldResponseObject: `"responseObject":`, fieldRequestReceived: `"requestReceivedTimestamp":`,
	fieldStageTime: `"stageTimestamp":`, fieldAnnotations: `"annotations":`,
}

// expected reports which of the member kube-apiserver writes next and the
// two after it (optional members are often absent) starts at i, comparing
// bytes instead of scanning the key: most lines never need the general path.
// It returns fieldUnknown when none does.
func (p *Parser) expected(b []byte, i int, next field) field {
	for f := next; f < next+3 && f < fieldCount; f++ {
		k := topKeys[f]
		if len(b)-i >= len(k) && string(b[i:i+len(k)]) == k {
			return f
		}
	}
	return fieldUnknown
}

// topField is the field of a top-level key.
func topField(key []byte) field {
	for f := fieldKind; f < fieldCount; f++ {
		if k := topKeys[f]; len(key) == len(k)-3 && string(key) == k[1:len(k)-2] {
			return f
		}
	}
	return fieldUnknown
}

func (p *Parser) user(b []byte, i int) (int, *Error) {
	if b[i] != '{' {
		i, _, err := p.nullOr(b, i, 1, "user", "an object")
		return i, err // null leaves a struct unchanged
	}
	i, done, err := p.open(b, i)
	for err == nil && !done {
		var key []byte
		if key, i, err = p.key(b, i); err != nil {
			break
		}
		switch string(key) {
		case "username":
			i, err = p.str(b, i, 2, &p.ev.Username, "user.username")
		case "uid":
			i, err = p.str(b, i, 2, &p.ev.UID, "user.uid")
		case "groups":
			i, err = p.strs(b, i, 2, &p.groups, &p.groupsHW, "user.groups")
		default:
			i, err = p.skipValue(b, i, 2)
		}
		if err == nil {
			i, done, err = p.next(b, i)
		}
	}
	return i, err
}

func (p *Parser) impersonatedUser(b []byte, i int) (int, *Error) {
	if b[i] != '{' {
		i, null, err := p.nullOr(b, i, 1, "impersonatedUser", "an object")
		if null {
			p.ev.ImpersonatedUser = ""
		}
		return i, err
	}
	i, done, err := p.open(b, i)
	for err == nil && !done {
		var key []byte
		if key, i, err = p.key(b, i); err != nil {
			break
		}
		if string(key) == "username" {
			i, err = p.str(b, i, 2, &p.ev.ImpersonatedUser, "impersonatedUser.username")
		} else {
			i, err = p.skipValue(b, i, 2)
		}
		if err == nil {
			i, done, err = p.next(b, i)
		}
	}
	return i, err
}

func (p *Parser) objectRef(b []byte, i int) (int, *Error) {
	r := &p.ev.ObjectRef
	if b[i] != '{' {
		i, null, err := p.nullOr(b, i, 1, "objectRef", "an object")
		if null {
			*r, p.ev.HasObjectRef = ObjectRef{}, false
		}
		return i, err
	}
	p.ev.HasObjectRef = true
	i, done, err := p.open(b, i)
	for err == nil && !done {
		var key []byte
		if key, i, err = p.key(b, i); err != nil {
			break
		}
		switch string(key) {
		case "resource":
			i, err = p.str(b, i, 2, &r.Resource, "objectRef.resource")
		case "subresource":
			i, err = p.str(b, i, 2, &r.Subresource, "objectRef.subresource")
		case "namespace":
			i, err = p.str(b, i, 2, &r.Namespace, "objectRef.namespace")
		case "name":
			i, err = p.str(b, i, 2, &r.Name, "objectRef.name")
		case "apiGroup":
			i, err = p.str(b, i, 2, &r.APIGroup, "objectRef.apiGroup")
		case "apiVersion":
			i, err = p.str(b, i, 2, &r.APIVersion, "objectRef.apiVersion")
		default:
			i, err = p.skipValue(b, i, 2)
		}
		if err == nil {
			i, done, err = p.next(b, i)
		}
	}
	return i, err
}

func (p *Parser) responseStatus(b []byte, i int) (int, *Error) {
	if b[i] != '{' {
		i, null, err := p.nullOr(b, i, 1, "responseStatus", "an object")
		if null {
			p.ev.Code = 0
		}
		return i, err
	}
	i, done, err := p.open(b, i)
	for err == nil && !done {
		var key []byte
		if key, i, err = p.key(b, i); err != nil {
			break
		}
		if string(key) == "code" {
			i, err = p.code(b, i)
		} else {
			i, err = p.skipValue(b, i, 2)
		}
		if err == nil {
			i, done, err = p.next(b, i)
		}
	}
	return i, err
}

// code reads responseStatus.code, an int32 in Kubernetes: the oracle rejects
// fractions, exponents and values out of range.
func (p *Parser) code(b []byte, i int) (int, *Error) {
	c := b[i]
	if c != '-' && (c < '0' || c > '9') {
		i, _, err := p.nullOr(b, i, 2, "responseStatus.code", "an integer")
		return i, err
	}
	start := i
	end, err := scanNumber(b, i)
	if err != nil {
		return 0, p.fail(b, err)
	}
	neg := b[start] == '-'
	j, n, ok := start, int64(0), true
	if neg {
		j++
	}
	for ; j < end && ok; j++ {
		if d := b[j]; d >= '0' && d <= '9' && n <= 1<<31 {
			n = n*10 + int64(d-'0')
		} else {
			ok = false
		}
	}
	if neg {
		n = -n
	}
	if !ok || n > 1<<31-1 || n < -1<<31 {
		p.mismatch(b, start, "responseStatus.code", "an int32")
		return end, nil
	}
	p.ev.Code = int(n)
	return end, nil
}

func (p *Parser) annotations(b []byte, i, ks int) (int, *Error) {
	start := i
	if b[i] != '{' {
		i, null, err := p.nullOr(b, i, 1, "annotations", "an object")
		if null {
			p.ev.Decision, p.ev.Reason = "", ""
			p.ev.Annotations = Range{ks, start, i}
		}
		return i, err
	}
	i, done, err := p.open(b, i)
	for err == nil && !done {
		var key []byte
		if key, i, err = p.key(b, i); err != nil {
			break
		}
		var dst *string
		switch string(key) {
		case "authorization.k8s.io/decision":
			dst = &p.ev.Decision
		case "authorization.k8s.io/reason":
			dst = &p.ev.Reason
		default:
			var discard string
			dst = &discard
		}
		if b[i] == 'n' {
			// A map element starts from zero, so null stores "".
			*dst = ""
		}
		if i, err = p.str(b, i, 2, dst, "annotations values"); err == nil {
			i, done, err = p.next(b, i)
		}
	}
	if err == nil {
		p.ev.Annotations = Range{ks, start, i}
	}
	return i, err
}

// body records the range of requestObject or responseObject and, when it is an
// object whose last metadata is an object, the range of that metadata's last
// managedFields.
func (p *Parser) body(b []byte, i, ks int, r, mf *Range) (int, *Error) {
	*mf = Range{}
	start := i
	if b[i] != '{' {
		end, err := p.skipValue(b, i, 1)
		*r = Range{ks, start, end}
		return end, err
	}
	i, done, err := p.open(b, i)
	for err == nil && !done {
		var key []byte
		if key, i, err = p.key(b, i); err != nil {
			break
		}
		if string(key) == "metadata" {
			*mf = Range{}
			if b[i] == '{' {
				i, err = p.metadata(b, i, mf)
			} else {
				i, err = p.skipValue(b, i, 2)
			}
		} else {
			i, err = p.skipValue(b, i, 2)
		}
		if err == nil {
			i, done, err = p.next(b, i)
		}
	}
	*r = Range{ks, start, i}
	return i, err
}

func (p *Parser) metadata(b []byte, i int, mf *Range) (int, *Error) {
	i, done, err := p.open(b, i)
	for err == nil && !done {
		ks := i
		var key []byte
		if key, i, err = p.key(b, i); err != nil {
			break
		}
		vs := i
		if i, err = p.skipValue(b, i, 3); err != nil {
			break
		}
		if string(key) == "managedFields" {
			*mf = Range{ks, vs, i}
		}
		i, done, err = p.next(b, i)
	}
	return i, err
}

// str reads a string member into dst. null leaves dst unchanged, as the oracle
// does for a string field.
func (p *Parser) str(b []byte, i, depth int, dst *string, field string) (int, *Error) {
	if b[i] != '"' {
		i, _, err := p.nullOr(b, i, depth, field, "a string")
		return i, err
	}
	if end := p.plainEnd(b, i+1); end > 0 {
		*dst = p.view(b[i+1:end-1], false)
		return end, nil
	}
	end, esc, err := p.scanStringSlow(b, i+1)
	if err != nil {
		return 0, p.fail(b, err)
	}
	*dst = p.view(b[i+1:end-1], esc)
	return end, nil
}

// strs reads an array of strings into *dst, as the oracle decodes into a
// []string: elements are written in place, a null element keeps what the
// backing array held at that index earlier in this line (hw is its high-water
// mark) and a null array drops the backing array.
func (p *Parser) strs(b []byte, i, depth int, dst *[]string, hw *int, field string) (int, *Error) {
	if b[i] != '[' {
		i, null, err := p.nullOr(b, i, depth, field, "an array of strings")
		if null {
			*dst, *hw = (*dst)[:0], 0
		}
		return i, err
	}
	s := (*dst)[:0]
	i = skipWS(b, i+1)
	if i == len(b) {
		return 0, p.truncated(b)
	}
	n := 0
	if b[i] == ']' {
		*dst = s
		return i + 1, nil
	}
	for {
		if i == len(b) {
			return 0, p.truncated(b)
		}
		if n == len(s) {
			if n < *hw {
				s = s[:n+1]
			} else {
				s = append(s, "")
			}
		}
		var err *Error
		if i, err = p.str(b, i, depth+1, &s[n], field); err != nil {
			return 0, err
		}
		n++
		i = skipWS(b, i)
		if i == len(b) {
			return 0, p.truncated(b)
		}
		if b[i] == ']' {
			i++
			break
		}
		if b[i] != ',' {
			return 0, p.unexpected(b, i, "',' or ']' in an array")
		}
		i = skipWS(b, i+1)
	}
	*hw = max(*hw, n)
	*dst = s[:n]
	return i, nil
}

func (p *Parser) time(b []byte, i, depth int, dst *time.Time, field string) (int, *Error) {
	if b[i] != '"' {
		i, _, err := p.nullOr(b, i, depth, field, "an RFC 3339 timestamp string")
		return i, err
	}
	end := p.plainEnd(b, i+1)
	if end == 0 {
		var err *scanErr
		if end, _, err = p.scanStringSlow(b, i+1); err != nil {
			return 0, p.fail(b, err)
		}
	}
	// The oracle (time.Time.UnmarshalJSON) does not unescape: neither do we.
	if t, ok := parseMicroZ(b[i+1:end-1], &p.dates); ok {
		*dst = t
	} else if t, ok := parseTime(b[i+1 : end-1]); ok {
		*dst = t
	} else {
		p.mismatch(b, i, field, "an RFC 3339 timestamp like 2006-01-02T15:04:05.000000Z")
	}
	return end, nil
}

// nullOr consumes a value that is not of the wanted type: null is accepted
// (the caller decides what it clears); anything else is skipped and recorded
// as a wrong-typed field.
func (p *Parser) nullOr(b []byte, i, depth int, field, want string) (int, bool, *Error) {
	if b[i] == 'n' {
		end, err := scanLiteral(b, i, "null")
		if err != nil {
			return 0, false, p.fail(b, err)
		}
		return end, true, nil
	}
	end, err := p.skipValue(b, i, depth)
	if err == nil {
		p.mismatch(b, i, field, want)
	}
	return end, false, err
}

func (p *Parser) mismatch(b []byte, at int, field, want string) {
	if p.semErr == nil {
		p.semErr = p.notEvent(b, at, field+" is not "+want)
	}
}

// view returns the content of a string literal: a view into the line, or its
// unescaped form in p.buf.
func (p *Parser) view(s []byte, esc bool) string {
	if len(s) == 0 {
		return ""
	}
	if !esc {
		return unsafe.String(&s[0], len(s))
	}
	start := len(p.buf)
	p.buf = unescape(p.buf, s)
	if len(p.buf) == start {
		return ""
	}
	// Earlier views stay valid if append moves p.buf: they keep the old array alive.
	return unsafe.String(&p.buf[start], len(p.buf)-start)
}

// open consumes '{' at i and the whitespace after it. done reports an empty
// object (then i is past its '}'); otherwise i is at the first key.
func (p *Parser) open(b []byte, i int) (int, bool, *Error) {
	i = skipWS(b, i+1)
	if i == len(b) {
		return 0, false, p.truncated(b)
	}
	if b[i] == '}' {
		return i + 1, true, nil
	}
	return i, false, nil
}

// next consumes what follows a member's value: ',' (then i is at the next key)
// or '}' (done, i past it).
func (p *Parser) next(b []byte, i int) (int, bool, *Error) {
	i = skipWS(b, i)
	if i == len(b) {
		return 0, false, p.truncated(b)
	}
	switch b[i] {
	case ',':
		i = skipWS(b, i+1)
		return i, false, nil
	case '}':
		return i + 1, true, nil
	}
	return 0, false, p.unexpected(b, i, "',' or '}' after an object member")
}

// key reads `"key" :` at i and returns the key, unescaped if need be (valid
// until the next key call), and the start of the value, which is within b.
func (p *Parser) key(b []byte, i int) ([]byte, int, *Error) {
	if i == len(b) {
		return nil, 0, p.truncated(b)
	}
	if b[i] != '"' {
		return nil, 0, p.unexpected(b, i, "'\"' to start an object key")
	}
	end, esc := p.plainEnd(b, i+1), false
	if end == 0 {
		var err *scanErr
		if end, esc, err = p.scanStringSlow(b, i+1); err != nil {
			return nil, 0, p.fail(b, err)
		}
	}
	key := b[i+1 : end-1]
	if esc {
		p.keyBuf = unescape(p.keyBuf[:0], key)
		key = p.keyBuf
	}
	i = skipWS(b, end)
	if i == len(b) {
		return nil, 0, p.truncated(b)
	}
	if b[i] != ':' {
		return nil, 0, p.unexpected(b, i, "':' after an object key")
	}
	i = skipWS(b, i+1)
	if i == len(b) {
		return nil, 0, p.truncated(b)
	}
	return key, i, nil
}

// skipValue validates the value at i (which is within b) inside depth open
// containers and returns the index just past it.
func (p *Parser) skipValue(b []byte, i, depth int) (int, *Error) {
	stack := p.stack[:0]
	defer func() { p.stack = stack }()
	var err *scanErr
	for {
		// A value starts at i.
		switch c := b[i]; c {
		case '"':
			if end := p.plainEnd(b, i+1); end > 0 {
				i = end
			} else {
				i, _, err = p.scanStringSlow(b, i+1)
			}
		case '{', '[':
			if depth+len(stack)+1 > maxDepth {
				return 0, p.syntax(b, i, fmt.Sprintf("nesting deeper than %d", maxDepth))
			}
			i = skipWS(b, i+1)
			if i == len(b) {
				return 0, p.truncated(b)
			}
			if b[i] == c+2 { // '}' or ']'
				i++
				break
			}
			stack = append(stack, c)
			if c == '{' {
				if k := p.keyEnd(b, i); k > 0 && k < len(b) && b[k] > ' ' {
					i = k
				} else if i, err = p.skipKey(b, i); err != nil {
					return 0, p.fail(b, err)
				}
			}
			continue
		case 't':
			i, err = scanLiteral(b, i, "true")
		case 'f':
			i, err = scanLiteral(b, i, "false")
		case 'n':
			i, err = scanLiteral(b, i, "null")
		default:
			if c == '-' || c >= '0' && c <= '9' {
				i, err = scanNumber(b, i)
			} else {
				return 0, p.unexpected(b, i, "a JSON value")
			}
		}
		if err != nil {
			return 0, p.fail(b, err)
		}
		// After a value: close containers until a ',' leads to the next value.
		for {
			if len(stack) == 0 {
				return i, nil
			}
			i = skipWS(b, i)
			if i == len(b) {
				return 0, p.truncated(b)
			}
			top := stack[len(stack)-1]
			if b[i] == ',' {
				i = skipWS(b, i+1)
				if top == '{' {
					k := 0
					if i < len(b) {
						k = p.keyEnd(b, i)
					}
					if k > 0 && k < len(b) && b[k] > ' ' {
						i = k
					} else if i, err = p.skipKey(b, i); err != nil {
						return 0, p.fail(b, err)
					}
				} else if i == len(b) {
					return 0, p.truncated(b)
				}
				break
			}
			if b[i] != top+2 {
				if top == '{' {
					return 0, p.unexpected(b, i, "',' or '}' after an object member")
				}
				return 0, p.unexpected(b, i, "',' or ']' in an array")
			}
			stack = stack[:len(stack)-1]
			i++
		}
	}
}

// keyEnd is the common case of skipKey, small enough to inline: a plain key
// directly followed by ':'. It returns the index past the ':', or 0; i must
// be within b.
func (p *Parser) keyEnd(b []byte, i int) int {
	if b[i] == '"' {
		// No test for plainEnd's 0: b[0] is never ':' in a line that got
		// this far (it starts with whitespace or '{').
		if e := p.plainEnd(b, i+1); e < len(b) && b[e] == ':' {
			return e + 1
		}
	}
	return 0
}

// skipKey is key for skipped objects: it does not unescape.
func (p *Parser) skipKey(b []byte, i int) (int, *scanErr) {
	if i == len(b) {
		return 0, &scanErr{at: i, eof: true}
	}
	if b[i] != '"' {
		return 0, &scanErr{at: i, want: "'\"' to start an object key"}
	}
	if end := p.plainEnd(b, i+1); end > 0 {
		i = end
	} else {
		var err *scanErr
		if i, _, err = p.scanStringSlow(b, i+1); err != nil {
			return 0, err
		}
	}
	i = skipWS(b, i)
	if i == len(b) {
		return 0, &scanErr{at: i, eof: true}
	}
	if b[i] != ':' {
		return 0, &scanErr{at: i, want: "':' after an object key"}
	}
	i = skipWS(b, i+1)
	if i == len(b) {
		return 0, &scanErr{at: i, eof: true}
	}
	return i, nil
}

// scanErr is a low-level scanning error, turned into an *Error by fail.
type scanErr struct {
	at      int
	eof     bool   // the input ended inside a value
	badUTF8 bool   // invalid UTF-8 at `at`
	msg     string // a complete message, or
	want    string // what was expected at `at`
}

func (p *Parser) fail(b []byte, e *scanErr) *Error {
	switch {
	case e.eof:
		return p.truncated(b)
	case e.badUTF8:
		return newError(b, ReasonInvalidUTF8, e.at, "invalid UTF-8")
	case e.msg != "":
		return p.syntax(b, e.at, e.msg)
	}
	return p.unexpected(b, e.at, e.want)
}

func (p *Parser) truncated(b []byte) *Error {
	return newError(b, ReasonTruncated, len(b), "the line ends inside a value")
}

func (p *Parser) syntax(b []byte, at int, msg string) *Error {
	return newError(b, ReasonSyntax, at, msg)
}

func (p *Parser) notEvent(b []byte, at int, msg string) *Error {
	return newError(b, ReasonNotEvent, at, msg)
}

// unexpected reports the byte at i, which is not want.
func (p *Parser) unexpected(b []byte, i int, want string) *Error {
	if c := b[i]; c >= utf8.RuneSelf {
		if r, n := utf8.DecodeRune(b[i:]); r == utf8.RuneError && n == 1 {
			return newError(b, ReasonInvalidUTF8, i, "invalid UTF-8")
		}
		return newError(b, ReasonSyntax, i, "unexpected character, want "+want)
	}
	return newError(b, ReasonSyntax, i, fmt.Sprintf("unexpected %q, want %s", b[i], want))
}

func newError(b []byte, r Reason, at int, msg string) *Error {
	lo, hi := max(at-16, 0), min(at+24, len(b))
	return &Error{Reason: r, Offset: at, Msg: msg, Excerpt: string(b[lo:hi])}
}

// skipWS returns the index of the first non-whitespace byte from i. Lines
// from kube-apiserver have no whitespace, so the first test is inlined.
func skipWS(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i
	}
	return skipWSLoop(b, i)
}

func skipWSLoop(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\n', '\t', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Strings are validated by plainEnd, or when it fails by scanStringSlow:
// together they take the index just past an opening quote and return the
// index past the closing one.

// plainEnd is the common case, small enough to inline: a
// string without escapes or non-ASCII bytes that ends within the 64-byte word
// of i. It returns the index past the closing quote, or 0.
func (p *Parser) plainEnd(b []byte, i int) int {
	if m := p.masks[i>>6] >> (i & 63); m != 0 {
		if j := i + bits.TrailingZeros64(m); j < len(b) && b[j] == '"' {
			return j + 1
		}
	}
	return 0
}

// scanStringSlow validates a string literal from i, anywhere inside it, and
// returns the index past its closing quote and whether it has escapes. It
// needs p.masks for b.
func (p *Parser) scanStringSlow(b []byte, i int) (int, bool, *scanErr) {
	esc := false
	for {
		j := p.nextSpecial(i)
		if j >= len(b) {
			return 0, false, &scanErr{at: j, eof: true}
		}
		c := b[j]
		if c == '\\' && j+1 < len(b) && escapes[b[j+1]] == 1 {
			esc, i = true, j+2 // the common escapes, without the switch below
			continue
		}
		switch {
		case c == '"':
			return j + 1, esc, nil
		case c == '\\':
			esc = true
			if j+1 == len(b) {
				return 0, false, &scanErr{at: j, eof: true}
			}
			switch b[j+1] {
			case 'u':
				for k := j + 2; k < j+6; k++ {
					if k == len(b) {
						return 0, false, &scanErr{at: k, eof: true}
					}
					if !isHex(b[k]) {
						return 0, false, &scanErr{at: k, msg: "invalid \\u escape: want 4 hex digits"}
					}
				}
				i = j + 6
			default:
				return 0, false, &scanErr{at: j, msg: "invalid escape in string"}
			}
		case c < 0x20:
			return 0, false, &scanErr{at: j, msg: "control character in string: escape it"}
		default:
			r, n := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && n == 1 {
				if !utf8.FullRune(b[j:]) {
					return 0, false, &scanErr{at: len(b), eof: true}
				}
				return 0, false, &scanErr{at: j, badUTF8: true}
			}
			i = j + n
		}
	}
}

// escapes marks the bytes that make a two-byte escape after a backslash.
var escapes = [256]byte{'"': 1, '\\': 1, '/': 1, 'b': 1, 'f': 1, 'n': 1, 'r': 1, 't': 1}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func scanNumber(b []byte, i int) (int, *scanErr) {
	if b[i] == '-' {
		i++
	}
	if i == len(b) {
		return 0, &scanErr{at: i, eof: true}
	}
	switch c := b[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i = digits(b, i+1)
	default:
		return 0, &scanErr{at: i, want: "a digit"}
	}
	if i < len(b) && b[i] == '.' {
		if i++; i == len(b) {
			return 0, &scanErr{at: i, eof: true}
		}
		if b[i] < '0' || b[i] > '9' {
			return 0, &scanErr{at: i, want: "a digit after '.'"}
		}
		i = digits(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) {
			return 0, &scanErr{at: i, eof: true}
		}
		if b[i] < '0' || b[i] > '9' {
			return 0, &scanErr{at: i, want: "a digit in the exponent"}
		}
		i = digits(b, i+1)
	}
	return i, nil
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func scanLiteral(b []byte, i int, lit string) (int, *scanErr) {
	for k := 0; k < len(lit); k++ {
		if i+k == len(b) {
			return 0, &scanErr{at: i + k, eof: true}
		}
		if b[i+k] != lit[k] {
			return 0, &scanErr{at: i + k, want: "'" + lit[k:k+1] + "' of " + lit}
		}
	}
	return i + len(lit), nil
}

// unescape appends the content of a validated string literal with escapes to
// dst, exactly as the oracle unquotes it (a lone or mismatched surrogate
// becomes U+FFFD).
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			j := bytes.IndexByte(s[i:], '\\')
			if j < 0 {
				return append(dst, s[i:]...)
			}
			dst = append(dst, s[i:i+j]...)
			i += j
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, hex4(s[i+2:])); dec != utf8.RuneError {
						dst = utf8.AppendRune(dst, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
