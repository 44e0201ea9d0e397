package loki

import (
	"cmp"
	"slices"
	"strings"

	"github.com/audit-shipper/audit-shipper/parse"
)

// shrinkSteps are the members removed, in this order, from an event longer
// than max_line_size, until it fits: first what nobody reads (the
// server-side-apply bookkeeping), then the response body, then the request
// body. The event keeps its identity, who did what to which object, and
// the outcome.
var shrinkSteps = []struct {
	name   string
	ranges func(ev *parse.Event) []parse.Range
}{
	{"managedFields", func(ev *parse.Event) []parse.Range {
		return []parse.Range{ev.RequestManagedFields, ev.ResponseManagedFields}
	}},
	{"responseObject", func(ev *parse.Event) []parse.Range { return []parse.Range{ev.ResponseObject} }},
	{"requestObject", func(ev *parse.Event) []parse.Range { return []parse.Range{ev.RequestObject} }},
}

// shrink returns line, longer than max, with members removed in shrinkSteps order until it is
// at most max bytes long, and the names of the steps taken, comma-separated
// ("" when none applied: the line is returned as it is). A line still too
// long after every step is returned as short as it got; Loki refuses it
// and the shipper dead-letters it.
//
// The result depends on the line alone, so a replay sends the same bytes
// and Loki deduplicates it like any other entry. It is written to e.values
// and stays valid until the batch is built; it uses e.parser, so the
// caller's *parse.Event is invalid afterwards.
func (e *encoder) shrink(line []byte, max int) ([]byte, string) {
	// The line is cut where it lands, at the end of e.values: no buffer
	// of its own, which would be as large as the longest line shrunk.
	start := len(e.values)
	e.values = append(e.values, line...)
	cur := e.values[start:]
	var removed []string
	for _, step := range shrinkSteps {
		ev, err := e.parser.Parse(cur)
		if err != nil {
			break // only the line as read parses for sure; stop shrinking
		}
		rs := slices.DeleteFunc(step.ranges(ev), func(r parse.Range) bool { return !r.Present() })
		if len(rs) == 0 {
			continue
		}
		// From the end of the line, so earlier offsets stay right.
		slices.SortFunc(rs, func(a, b parse.Range) int { return cmp.Compare(b.KeyStart, a.KeyStart) })
		for _, r := range rs {
			cur = removeMember(cur, r)
		}
		removed = append(removed, step.name)
		if len(cur) <= max {
			break
		}
	}
	if len(removed) == 0 {
		e.values = e.values[:start]
		return line, ""
	}
	e.values = e.values[:start+len(cur)]
	return cur[:len(cur):len(cur)], strings.Join(removed, ",")
}

// removeMember deletes the object member r (key, colon, value) from the
// valid JSON in b, with the comma that separates it from a neighbour, in
// place. The result is valid JSON.
func removeMember(b []byte, r parse.Range) []byte {
	from, to := r.KeyStart, r.ValueEnd
	i := from - 1
	for isSpace(b[i]) {
		i--
	}
	if b[i] == ',' {
		from = i // not the first member: take the comma before it
	} else {
		j := to
		for j < len(b) && isSpace(b[j]) {
			j++
		}
		if j < len(b) && b[j] == ',' {
			to = j + 1 // the first member: take the comma after it
		}
	}
	return append(b[:from], b[to:]...)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
