package rules

import (
	"bytes"
	"unicode/utf8"

	"github.com/audit-shipper/audit-shipper/parse"
)

// The functions here navigate lines that parse has accepted: valid JSON,
// so they check nothing.

// edit replaces raw[start:end] by a+b+c, or removes the object member
// [start,end) (key to value end) with one comma next to it.
type edit struct {
	start, end int
	remove     bool
	a, b, c    string
}

// editor collects the edits of one line and applies them in one copy. It
// lives on the caller's stack: no slice may point into it (that would move
// it to the heap), hence the count and the separate overflow.
type editor struct {
	raw  []byte
	n    int
	buf  [8]edit
	more []edit // all edits, once there are more than buf holds (lines kube-apiserver does not write)
}

func (ed *editor) init(raw []byte) { ed.raw = raw }

func (ed *editor) add(e edit) {
	switch {
	case ed.more != nil:
		ed.more = append(ed.more, e)
	case ed.n == len(ed.buf):
		ed.more = make([]edit, ed.n, 2*ed.n)
		copy(ed.more, ed.buf[:])
		ed.more = append(ed.more, e)
	default:
		ed.buf[ed.n] = e
	}
	ed.n++
}

// remove cuts the member r and a comma beside it.
func (ed *editor) remove(r parse.Range) {
	ed.add(edit{start: r.KeyStart, end: r.ValueEnd, remove: true})
}

func (ed *editor) replace(start, end int, a, b, c string) {
	ed.add(edit{start: start, end: end, a: a, b: b, c: c})
}

// apply appends the edited line to dst.
func (ed *editor) apply(dst []byte) []byte {
	e := ed.more
	if e == nil {
		e = ed.buf[:ed.n]
	}
	for i := 1; i < len(e); i++ { // insertion sort: a handful of edits, mostly in order
		for j := i; j > 0 && e[j].start < e[j-1].start; j-- {
			e[j], e[j-1] = e[j-1], e[j]
		}
	}
	raw, pos := ed.raw, 0
	for i := range e {
		start, end := e[i].start, e[i].end
		if e[i].remove {
			start, end = ed.memberSpan(start, end, pos)
		}
		dst = append(dst, raw[pos:start]...)
		dst = append(dst, e[i].a...)
		dst = append(dst, e[i].b...)
		dst = append(dst, e[i].c...)
		pos = end
	}
	return append(dst, raw[pos:]...)
}

// memberSpan is what to cut for the member [ks,ve) so that its object stays
// valid: the comma before it, or when it is first in its object (or the
// comma before was cut with an earlier member, pos being where the last cut
// ended) the comma after it, or no comma when it is alone.
func (ed *editor) memberSpan(ks, ve, pos int) (int, int) {
	raw := ed.raw
	p := ks - 1
	for isWS(raw[p]) {
		p--
	}
	if raw[p] == ',' && p >= pos {
		return p, ve
	}
	q := skipWS(raw, ve)
	if raw[q] == ',' {
		return ks, q + 1
	}
	return ks, ve
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// stringEnd returns the index past the closing quote of the string whose
// content starts at i.
func stringEnd(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		j += i
		k := j
		for k > i && b[k-1] == '\\' {
			k--
		}
		if (j-k)%2 == 0 {
			return j + 1
		}
		i = j + 1
	}
}

// skipValue returns the index past the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i+1)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i+1) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && !isWS(b[i]) {
		i++
	}
	return i
}

// members calls fn for each member of the object at b[i] (which is '{')
// with its key (between the quotes, still escaped) and range, until fn
// returns false. value, when not nil, may give the end of a value that is
// known already (else -1), to skip scanning it.
func members(b []byte, i int, value func(ks int) int, fn func(key []byte, r parse.Range) bool) {
	i = skipWS(b, i+1)
	for i < len(b) && b[i] == '"' {
		ks := i
		ke := stringEnd(b, i+1)
		vs := skipWS(b, skipWS(b, ke)+1) // past the ':'
		ve := -1
		if value != nil {
			ve = value(ks)
		}
		if ve < 0 {
			ve = skipValue(b, vs)
		}
		if !fn(b[ks+1:ke-1], parse.Range{KeyStart: ks, ValueStart: vs, ValueEnd: ve}) {
			return
		}
		i = skipWS(b, ve)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
}

// keyIs compares an escaped key with a plain one.
func keyIs(key []byte, want string) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key) == want
	}
	var buf [32]byte
	n := 0
	for i := 0; i < len(key); {
		var r rune
		if key[i] != '\\' {
			r = rune(key[i])
			i++
		} else if key[i+1] == 'u' {
			for _, c := range key[i+2 : i+6] {
				r = r<<4 | rune(hexVal(c))
			}
			i += 6
		} else {
			r = rune(unescaped[key[i+1]])
			i += 2
		}
		if n+utf8.UTFMax > len(buf) {
			return false // longer than any key compared here
		}
		n += utf8.EncodeRune(buf[n:], r)
	}
	return string(buf[:n]) == want
}

var unescaped = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func hexVal(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// member is a top-level requestObject or responseObject with a value other
// than null.
type member struct {
	parse.Range
	response bool
	last     bool // the one parse reported (its managedFields range is known)
}

var quotedLevels = [...]string{`"None"`, `"Metadata"`, `"Request"`, `"RequestResponse"`}

// topMembers appends every requestObject and responseObject member of the
// line to bodies and, when newLevel is set, replaces the value of every
// "level" member with it, returning how many it replaced. Members whose
// range parse knows are not scanned again.
func topMembers(ev *parse.Event, bodies []member, ed *editor, newLevel string) ([]member, int) {
	b := ev.Raw
	levels := 0
	known := func(ks int) int {
		switch ks {
		case ev.RequestObject.KeyStart:
			return ev.RequestObject.ValueEnd
		case ev.ResponseObject.KeyStart:
			return ev.ResponseObject.ValueEnd
		case ev.Annotations.KeyStart:
			return ev.Annotations.ValueEnd
		}
		return -1
	}
	members(b, skipWS(b, 0), known, func(key []byte, r parse.Range) bool {
		switch {
		case keyIs(key, "level"):
			if newLevel != "" && b[r.ValueStart] == '"' {
				ed.replace(r.ValueStart, r.ValueEnd, newLevel, "", "")
				levels++
			}
		case keyIs(key, "requestObject"), keyIs(key, "responseObject"):
			if b[r.ValueStart] != 'n' {
				resp := keyIs(key, "responseObject")
				last := r.KeyStart == ev.RequestObject.KeyStart || r.KeyStart == ev.ResponseObject.KeyStart
				bodies = append(bodies, member{Range: r, response: resp, last: last})
			}
		}
		return true
	})
	return bodies, levels
}

var managedFieldsKey = []byte(`"managedFields"`)

// managedFields cuts metadata.managedFields from the body r, and from the
// metadata of its items (a list) or of its rows' objects (a table), as
// kube-apiserver's omitManagedFields does. It reports whether it cut any.
func managedFields(ed *editor, b []byte, r parse.Range) bool {
	if b[r.ValueStart] != '{' || !bytes.Contains(b[r.ValueStart:r.ValueEnd], managedFieldsKey) {
		return false
	}
	cut := false
	fromMetadata := func(m parse.Range) {
		if b[m.ValueStart] != '{' {
			return
		}
		members(b, m.ValueStart, nil, func(key []byte, f parse.Range) bool {
			if keyIs(key, "managedFields") {
				ed.remove(f)
				cut = true
			}
			return true
		})
	}
	// object calls fromMetadata for the metadata of the object at b[i]
	// and, when list is set, for that of its items and rows.
	var object func(i int, list bool)
	object = func(i int, list bool) {
		members(b, i, nil, func(key []byte, m parse.Range) bool {
			switch {
			case keyIs(key, "metadata"):
				fromMetadata(m)
			case list && keyIs(key, "items") && b[m.ValueStart] == '[':
				elements(b, m.ValueStart, func(el int) {
					if b[el] == '{' {
						object(el, false)
					}
				})
			case list && keyIs(key, "rows") && b[m.ValueStart] == '[':
				elements(b, m.ValueStart, func(el int) {
					if b[el] == '{' {
						members(b, el, nil, func(key []byte, o parse.Range) bool {
							if keyIs(key, "object") && b[o.ValueStart] == '{' {
								object(o.ValueStart, false)
							}
							return true
						})
					}
				})
			}
			return true
		})
	}
	object(r.ValueStart, true)
	return cut
}

// elements calls fn with the start of each element of the array at b[i].
func elements(b []byte, i int, fn func(el int)) {
	i = skipWS(b, i+1)
	for i < len(b) && b[i] != ']' {
		fn(i)
		i = skipWS(b, skipValue(b, i))
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
}

// annotate adds "audit-shipper/redacted": value to the event's annotations,
// creating them when absent or null.
func annotate(ed *editor, ev *parse.Event, value string) {
	const key = `"audit-shipper/redacted":"`
	b, a := ev.Raw, ev.Annotations
	switch {
	case !a.Present():
		end := len(b) - 1
		for isWS(b[end]) {
			end--
		}
		ed.replace(end, end, `,"annotations":{`+key, value, `"}`)
	case b[a.ValueStart] != '{':
		ed.replace(a.ValueStart, a.ValueEnd, `{`+key, value, `"}`)
	default:
		end := a.ValueEnd - 1
		p := end - 1
		for isWS(b[p]) {
			p--
		}
		if b[p] == '{' {
			ed.replace(end, end, key, value, `"`)
		} else {
			ed.replace(end, end, ","+key, value, `"`)
		}
	}
}
