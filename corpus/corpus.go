// Package corpus generates deterministic, realistic kube-apiserver audit logs:
// the test and benchmark input of every package that reads audit events.
//
// The mix follows what an RKE2 control-plane node writes: about 60% reads
// (get, list, watch) at Metadata level of about 1 KB; about 25% writes
// (create, update, patch, delete) at Request or RequestResponse level with
// 1-10 KB bodies of pods, deployments, configmaps, secrets, roles,
// rolebindings, TokenRequests (serviceaccounts/token, with status.token) and
// TokenReviews (spec.token), all with metadata.managedFields; RequestReceived
// and ResponseStarted stages; Metadata-level writes; and rarer events with
// impersonation, errors, raw unicode, every JSON escape and bodies over 100 KB.
// Events are written with kube-apiserver's key order and string escaping
// (encoding/json's: <, > and & as \u003c, \u003e, \u0026).
//
// The same Options give the same bytes on every run and platform; a change of
// output shows up in the golden file under testdata.
package corpus

import (
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"
	"unicode/utf8"
)

// Options selects one deterministic corpus.
type Options struct {
	Seed  int64
	Start time.Time     // stageTimestamp of the first event; zero = 2024-06-01T00:00:00Z
	Step  time.Duration // mean time between events; zero = 1ms
}

// DefaultStart is the first stageTimestamp when Options.Start is zero.
var DefaultStart = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)

// Generator produces audit Event lines. Not safe for concurrent use.
type Generator struct {
	r     *rand.Rand
	seed  uint64
	n     uint64    // events generated so far
	stage time.Time // stageTimestamp of the last event
	step  time.Duration
	b     []byte // the line being built; it is the caller's dst
}

// New returns a generator for o.
func New(o Options) *Generator {
	g := &Generator{
		seed:  uint64(o.Seed),
		r:     rand.New(rand.NewPCG(uint64(o.Seed), 0x6175646974)),
		stage: o.Start,
		step:  o.Step,
	}
	if g.stage.IsZero() {
		g.stage = DefaultStart
	}
	if g.step <= 0 {
		g.step = time.Millisecond
	}
	g.stage = g.stage.UTC().Truncate(time.Microsecond)
	return g
}

// Next appends one audit Event line (no newline) to dst and returns it. Every
// call yields a unique auditID (deterministic for a seed); stageTimestamp
// grows strictly with call order, by Step on average, at microsecond
// resolution.
func (g *Generator) Next(dst []byte) []byte {
	g.b = dst
	g.event()
	dst, g.b = g.b, nil
	g.n++
	return dst
}

// Write writes n lines (each followed by '\n') to w.
func (g *Generator) Write(w io.Writer, n int) error {
	var line []byte
	for i := 0; i < n; i++ {
		line = append(g.Next(line[:0]), '\n')
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("write audit event %d of %d: %w", i+1, n, err)
		}
	}
	return nil
}

// event kinds and their share, in percent of events.
const (
	pctRead            = 60 // get, list, watch at Metadata
	pctWrite           = 25 // bodies at Request or RequestResponse
	pctRequestReceived = 7  // the first stage of a write
	pctMetadataWrite   = 5  // writes without bodies (leases, events)
	// the rest (3%): specials
)

func (g *Generator) event() {
	if g.n > 0 {
		// Uniform in [0, 2*Step): integer arithmetic, so the output is the
		// same on every platform (floating-point functions may differ in the
		// last bit between architectures).
		g.stage = g.stage.Add(max(time.Microsecond, time.Duration(g.r.Int64N(2*int64(g.step))).Truncate(time.Microsecond)))
	}
	x := g.r.IntN(100)
	switch {
	case x < pctRead:
		g.read()
	case x < pctRead+pctWrite:
		g.write(g.pick(writeVerbs), g.pickLevel(), "ResponseComplete", (g.r.IntN(9)+1)<<10+g.r.IntN(1<<10))
	case x < pctRead+pctWrite+pctRequestReceived:
		g.write(g.pick(writeVerbs), g.pickLevel(), "RequestReceived", 0)
	case x < pctRead+pctWrite+pctRequestReceived+pctMetadataWrite:
		g.write(g.pick(writeVerbs), "Metadata", "ResponseComplete", 0)
	default:
		g.special()
	}
}

var (
	readVerbs  = []string{"get", "get", "get", "list", "list", "watch"}
	writeVerbs = []string{"create", "update", "update", "patch", "patch", "delete"}
)

func (g *Generator) pickLevel() string {
	if g.r.IntN(5) < 2 {
		return "Request"
	}
	return "RequestResponse"
}

func (g *Generator) pick(s []string) string { return s[g.r.IntN(len(s))] }

// header is everything before the bodies.
type header struct {
	level, stage, verb string
	res                resource
	ns, name           string
	user               *user
	impersonate        string
	code               int
	uriSuffix          string
}

func (g *Generator) read() {
	h := header{level: "Metadata", stage: "ResponseComplete", verb: g.pick(readVerbs), res: g.pickResource(), user: g.pickUser(), code: 200}
	h.ns = g.pick(namespaces)
	switch h.verb {
	case "get":
		h.name = g.objectName(h.res)
		if g.r.IntN(20) == 0 {
			h.code = 404
		}
	case "list":
		h.uriSuffix = "?limit=500&resourceVersion=0"
		if g.r.IntN(3) == 0 {
			h.ns = ""
		}
	case "watch":
		h.uriSuffix = "?allowWatchBookmarks=true&resourceVersion=" + strconv.Itoa(1e6+g.r.IntN(9e6)) + "&timeout=" + strconv.Itoa(5+g.r.IntN(5)) + "m" + strconv.Itoa(g.r.IntN(60)) + "s&timeoutSeconds=" + strconv.Itoa(300+g.r.IntN(300)) + "&watch=true"
		if g.r.IntN(2) == 0 {
			h.stage = "ResponseStarted"
		}
	}
	if !h.res.namespaced {
		h.ns = ""
	}
	g.head(&h)
	g.tail(&h, nil, nil)
}

func (g *Generator) write(verb, level, stage string, size int) {
	h := header{level: level, stage: stage, verb: verb, res: g.pickWriteResource(), user: g.pickUser(), code: 200}
	h.ns = g.pick(namespaces)
	h.name = g.objectName(h.res)
	switch h.res.name {
	case "serviceaccounts":
		h.verb = "create" // TokenRequest
	case "tokenreviews":
		h.verb, h.ns, h.name = "create", "", ""
	}
	switch h.verb {
	case "create":
		h.code = 201
		if h.res.name == "tokenreviews" || h.res.name == "serviceaccounts" {
			h.code = 201
		}
	case "patch":
		h.uriSuffix = "?fieldManager=kubectl-client-side-apply&fieldValidation=Strict"
	case "delete":
		if g.r.IntN(2) == 0 {
			h.code = 200
		}
	}
	g.head(&h)
	if stage == "RequestReceived" || level == "Metadata" {
		g.tail(&h, nil, nil)
		return
	}
	req := func() { g.body(&h, size, true) }
	var resp func()
	if level == "RequestResponse" {
		resp = func() { g.body(&h, size, false) }
	}
	g.tail(&h, req, resp)
}

// special events: rarer shapes that exercise the decoder.
func (g *Generator) special() {
	x := g.r.IntN(60)
	if x%6 == 3 && g.r.IntN(10) != 0 {
		x = 0 // bodies over 100 KB in about 1 of 2,000 events
	}
	switch x % 6 {
	case 0: // impersonation
		h := header{level: "Metadata", stage: "ResponseComplete", verb: "get", res: resources[0], user: &users[0], code: 200, impersonate: g.pick(unicodeNames)}
		h.ns, h.name = "default", g.objectName(h.res)
		g.head(&h)
		g.tail(&h, nil, nil)
	case 1: // forbidden
		h := header{level: "Metadata", stage: "ResponseComplete", verb: g.pick(readVerbs), res: g.pickResource(), user: &anonymous, code: 403}
		h.ns = g.pick(namespaces)
		g.head(&h)
		g.tail(&h, nil, nil)
	case 2: // unicode and every escape in a configmap
		h := header{level: "RequestResponse", stage: "ResponseComplete", verb: "update", res: configmaps, user: g.pickUser(), code: 200}
		h.ns, h.name = g.pick(namespaces), "i18n-"+strconv.Itoa(g.r.IntN(100))
		g.head(&h)
		body := func() { g.escapesBody(&h) }
		g.tail(&h, body, body)
	case 3: // a body over 100 KB
		h := header{level: "RequestResponse", stage: "ResponseComplete", verb: "update", res: configmaps, user: g.pickUser(), code: 200}
		h.ns, h.name = "cattle-dashboards", "rancher-default-dashboards-"+strconv.Itoa(g.r.IntN(20))
		size := 100<<10 + g.r.IntN(200<<10)
		g.head(&h)
		g.tail(&h, func() { g.bigBody(&h, size) }, func() { g.bigBody(&h, size) })
	case 4: // ResponseStarted watch by a controller
		h := header{level: "Request", stage: "ResponseStarted", verb: "watch", res: g.pickResource(), user: &users[2], code: 200}
		h.uriSuffix = "?allowWatchBookmarks=true&resourceVersion=" + strconv.Itoa(1e6+g.r.IntN(9e6)) + "&watch=true"
		g.head(&h)
		g.tail(&h, nil, nil)
	default: // user names and agents in other scripts
		u := user{name: g.pick(unicodeNames), uid: g.uuid(uint64(g.r.Uint32())), groups: []string{"system:authenticated", "équipe-ops"}}
		h := header{level: "Metadata", stage: "ResponseComplete", verb: "list", res: g.pickResource(), user: &u, code: 200}
		g.head(&h)
		g.tail(&h, nil, nil)
	}
}

func (g *Generator) head(h *header) {
	g.raw(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"`)
	g.raw(h.level)
	g.raw(`","auditID":"`)
	g.b = g.appendUUID(g.b, g.n)
	g.raw(`","stage":"`)
	g.raw(h.stage)
	g.raw(`","requestURI":`)
	g.str(h.uri())
	g.raw(`,"verb":"`)
	g.raw(h.verb)
	g.raw(`","user":{"username":`)
	g.str(h.user.name)
	if h.user.uid != "" {
		g.raw(`,"uid":`)
		g.str(h.user.uid)
	}
	g.raw(`,"groups":[`)
	for i, gr := range h.user.groups {
		if i > 0 {
			g.raw(",")
		}
		g.str(gr)
	}
	g.raw("]")
	if h.user.extra {
		g.raw(`,"extra":{"authentication.kubernetes.io/credential-id":["JTI=`)
		g.b = g.appendUUID(g.b, g.n^0x5a5a)
		g.raw(`"],"authentication.kubernetes.io/node-name":["server-0"]}`)
	}
	g.raw("}")
	if h.impersonate != "" {
		g.raw(`,"impersonatedUser":{"username":`)
		g.str(h.impersonate)
		g.raw(`,"groups":["system:authenticated"]}`)
	}
	g.raw(`,"sourceIPs":["`)
	g.raw(h.user.ip)
	g.raw(`"],"userAgent":`)
	g.str(h.user.agent)
	g.raw(`,"objectRef":{"resource":"`)
	g.raw(h.res.name)
	if h.ns != "" {
		g.raw(`","namespace":`)
		g.str(h.ns)
	} else {
		g.raw(`"`)
	}
	if h.name != "" {
		g.raw(`,"name":`)
		g.str(h.name)
	}
	if h.res.group != "" {
		g.raw(`,"apiGroup":"`)
		g.raw(h.res.group)
		g.raw(`"`)
	}
	g.raw(`,"apiVersion":"`)
	g.raw(h.res.version)
	g.raw(`"`)
	if h.res.sub != "" {
		g.raw(`,"subresource":"`)
		g.raw(h.res.sub)
		g.raw(`"`)
	}
	g.raw("}")
}

func (h *header) uri() string {
	u := "/api/"
	if h.res.group != "" {
		u = "/apis/" + h.res.group + "/"
	}
	u += h.res.version
	if h.ns != "" {
		u += "/namespaces/" + h.ns
	}
	u += "/" + h.res.name
	if h.name != "" {
		u += "/" + h.name
	}
	if h.res.sub != "" {
		u += "/" + h.res.sub
	}
	return u + h.uriSuffix
}

// tail writes responseStatus, the bodies, the timestamps and annotations.
func (g *Generator) tail(h *header, req, resp func()) {
	if h.stage != "RequestReceived" {
		g.raw(`,"responseStatus":{"metadata":{}`)
		if h.code >= 400 {
			reason := map[int]string{403: "Forbidden", 404: "NotFound"}[h.code]
			g.raw(`,"status":"Failure","message":`)
			msg := h.res.name + ` "` + h.name + `" not found`
			if h.code == 403 {
				msg = h.res.name + ` is forbidden: User "` + h.user.name + `" cannot ` + h.verb + ` resource "` + h.res.name + `" in API group "` + h.res.group + `" in the namespace "` + h.ns + `"`
			}
			g.str(msg)
			g.raw(`,"reason":"` + reason + `","details":{"name":`)
			g.str(h.name)
			g.raw(`,"kind":"` + h.res.name + `"}`)
		}
		g.raw(`,"code":`)
		g.b = strconv.AppendInt(g.b, int64(h.code), 10)
		g.raw("}")
	}
	if req != nil {
		g.raw(`,"requestObject":`)
		req()
	}
	if resp != nil {
		g.raw(`,"responseObject":`)
		resp()
	}
	latency := time.Duration(200+g.r.IntN(20000)) * time.Microsecond
	switch {
	case h.stage == "RequestReceived":
		latency = 0
	case h.verb == "watch" && h.stage == "ResponseComplete":
		latency = time.Duration(300+g.r.IntN(300)) * time.Second
	}
	g.raw(`,"requestReceivedTimestamp":"`)
	g.b = g.stage.Add(-latency).AppendFormat(g.b, timeLayout)
	g.raw(`","stageTimestamp":"`)
	g.b = g.stage.AppendFormat(g.b, timeLayout)
	g.raw(`"`)
	if h.stage == "RequestReceived" && g.r.IntN(2) == 0 {
		g.raw("}")
		return
	}
	g.raw(`,"annotations":{`)
	if h.code == 403 {
		g.raw(`"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""`)
	} else {
		g.raw(`"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":`)
		g.str(h.user.reason)
	}
	if h.res.name == "pods" && h.verb == "create" {
		g.raw(`,"pod-security.kubernetes.io/enforce-policy":"privileged:latest"`)
	}
	g.raw("}}")
}

// timeLayout is how kube-apiserver writes timestamps (metav1.MicroTime).
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

func (g *Generator) raw(s string) { g.b = append(g.b, s...) }

// str appends s as a JSON string the way encoding/json (and so kube-apiserver) does.
func (g *Generator) str(s string) { g.b = appendString(g.b, s) }

func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += n
			start = i
			continue
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendUUID appends a UUID-shaped id (version 4 layout) that is unique for
// each n below 2^60 within a seed: its first 60 bits are a bijection of n.
func (g *Generator) appendUUID(b []byte, n uint64) []byte {
	const mask = 1<<60 - 1
	x := (n ^ mix(g.seed)) & mask
	x = (x * 0x9E3779B97F4A7C15) & mask
	x ^= x >> 29
	x = (x * 0xBF58476D1CE4E5B9) & mask
	x ^= x >> 31
	lo := mix(n ^ mix(g.seed+1))
	var u [16]byte
	hi := x>>12<<16 | 0x4000 | x&0xfff // 48 bits, version nibble, 12 bits
	for i := 0; i < 8; i++ {
		u[i] = byte(hi >> (56 - 8*i))
		u[8+i] = byte(lo >> (56 - 8*i))
	}
	u[8] = u[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return b
}

func (g *Generator) uuid(n uint64) string { return string(g.appendUUID(nil, n^0xfeedface<<32)) }

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// randBase64 returns n random bytes in standard base64, as Secret data is written.
func (g *Generator) randBase64(n int) string {
	raw := make([]byte, n)
	for i := range raw {
		raw[i] = byte(g.r.Uint32())
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func (g *Generator) randHex(n int) string {
	const hex = "0123456789abcdef"
	s := make([]byte, n)
	for i := range s {
		s[i] = hex[g.r.IntN(16)]
	}
	return string(s)
}
