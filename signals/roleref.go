package signals

import (
	"bytes"
	"unicode/utf8"

	"github.com/audit-shipper/audit-shipper/parse"
)

// bindsClusterAdmin reports whether the binding ev writes has the ClusterRole
// cluster-admin as its roleRef. The request body says so; when it holds no
// roleRef name (a patch of the subjects only), the response body does. roleRef
// is immutable, so a successful request that names it names the binding's
// own. Events logged at Metadata level have neither body and never count:
// the audit policy must log RBAC writes at Request level or above
// (configs/policies/production.yaml logs them at RequestResponse).
//
// Only roleRef members of the top-level object count, so a roleRef in an
// annotation or in last-applied-configuration neither triggers nor hides it.
func bindsClusterAdmin(ev *parse.Event) bool {
	req, resp := body(ev.Raw, ev.RequestObject), body(ev.Raw, ev.ResponseObject)
	// Most bindings are to other roles: a fast search of both bodies spares
	// walking them member by member.
	respMay := mayNameClusterAdmin(resp)
	if !respMay && !mayNameClusterAdmin(req) {
		return false
	}
	if found, admin := roleRefIsClusterAdmin(req); found || !respMay {
		return admin
	}
	_, admin := roleRefIsClusterAdmin(resp)
	return admin
}

// mayNameClusterAdmin is false when no string in b can be "cluster-admin":
// the text is not there, and neither is a \u escape that could spell it.
func mayNameClusterAdmin(b []byte) bool {
	return bytes.Contains(b, []byte("cluster-admin")) || bytes.Contains(b, []byte(`\u`))
}

func body(raw []byte, r parse.Range) []byte {
	if !r.Present() || r.ValueStart < 0 || r.ValueEnd > len(raw) || r.ValueStart > r.ValueEnd {
		return nil
	}
	return raw[r.ValueStart:r.ValueEnd]
}

// roleRefIsClusterAdmin looks at the roleRef of the object obj: found
// reports that it has a name, admin that the name is cluster-admin and the
// kind ClusterRole (or absent, as in a patch: a Role named cluster-admin is
// rare enough to be worth a look too).
func roleRefIsClusterAdmin(obj []byte) (found, admin bool) {
	ref := member(obj, "roleRef")
	name := member(ref, "name")
	if len(name) == 0 || name[0] != '"' {
		return false, false
	}
	kind := member(ref, "kind")
	return true, isString(name, "cluster-admin") && (kind == nil || isString(kind, "ClusterRole"))
}

// member returns the value of the member key of the JSON object b, or nil
// when b is not an object or has no such member. Like Kubernetes' decoder
// it matches keys exactly (after unescaping) and takes the last of
// duplicate keys. b is valid JSON when it comes from the parser; anything
// else gives nil, never a panic.
func member(b []byte, key string) []byte {
	i := skipWS(b, 0)
	if i == len(b) || b[i] != '{' {
		return nil
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	var found []byte
	for {
		if i == len(b) || b[i] != '"' {
			return nil
		}
		end := skipString(b, i)
		if end < 0 {
			return nil
		}
		k := b[i+1 : end-1]
		if i = skipWS(b, end); i == len(b) || b[i] != ':' {
			return nil
		}
		i = skipWS(b, i+1)
		vend := skipValue(b, i)
		if vend < 0 {
			return nil
		}
		if literalIs(k, key) {
			found = b[i:vend]
		}
		i = skipWS(b, vend)
		if i == len(b) {
			return nil
		}
		switch b[i] {
		case '}':
			return found
		case ',':
			i = skipWS(b, i+1)
		default:
			return nil
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index past the string literal whose opening quote
// is at i, or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index past the JSON value at i, or -1. A byte loop:
// the strings of Kubernetes objects are mostly short (managedFields keys),
// too short for bytes.IndexByte to pay for its call.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth, inString := 0, false
		for j := i; j < len(b); j++ {
			c := b[j]
			if inString {
				if c == '\\' {
					j++
				} else if c == '"' {
					inString = false
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	// A number, true, false or null.
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] > ' ' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// isString reports whether v is a JSON string literal whose value is want.
func isString(v []byte, want string) bool {
	return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && literalIs(v[1:len(v)-1], want)
}

// literalIs reports whether the content of a string literal (between the
// quotes, escapes included) unescapes to want, which must be ASCII and
// shorter than 60 bytes.
func literalIs(lit []byte, want string) bool {
	if bytes.IndexByte(lit, '\\') < 0 {
		return string(lit) == want
	}
	var buf [64]byte
	out := buf[:0]
	for i := 0; i < len(lit); {
		if len(out) > len(want) {
			return false
		}
		c := lit[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		if i+1 == len(lit) {
			return false
		}
		switch e := lit[i+1]; e {
		case 'u':
			r, ok := hex4(lit[i+2:])
			if !ok || r >= utf8.RuneSelf {
				return false // want is ASCII
			}
			out = append(out, byte(r))
			i += 6
			continue
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		default: // '"', '\\', '/'
			c = e
		}
		out = append(out, c)
		i += 2
	}
	return string(out) == want
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
