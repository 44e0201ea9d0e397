package observability

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// What a PromQL or LogQL query refers to, found by a lexer rather than a
// full parser: enough to check names against the catalogue, and Prometheus
// itself parses every PromQL query in the end-to-end test.

type tokenKind int

const (
	tIdent tokenKind = iota
	tString
	tNumber
	tVar   // a Grafana variable: $name, ${name}
	tPunct // { } ( ) [ ] ,
	tOp
)

type token struct {
	kind tokenKind
	text string // for strings, the unquoted value
}

// twoCharOps are the operators of two characters, tried before one.
var twoCharOps = []string{"=~", "!~", "!=", "==", ">=", "<=", "|=", "|~"}

func lex(q string) ([]token, error) {
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#': // a comment to the end of the line
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case isIdentStart(c):
			j := i + 1
			for j < len(q) && isIdentPart(q[j]) {
				j++
			}
			toks = append(toks, token{tIdent, q[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i + 1
			for j < len(q) && (isIdentPart(q[j]) || q[j] == '.' || (q[j] == '+' || q[j] == '-') && (q[j-1] == 'e' || q[j-1] == 'E')) {
				j++
			}
			toks = append(toks, token{tNumber, q[i:j]})
			i = j
		case c == '$':
			j := i + 1
			if j < len(q) && q[j] == '{' {
				k := strings.IndexByte(q[j:], '}')
				if k < 0 {
					return nil, fmt.Errorf("unclosed ${ at byte %d", i)
				}
				j += k + 1
			} else {
				for j < len(q) && isIdentPart(q[j]) {
					j++
				}
			}
			toks = append(toks, token{tVar, q[i:j]})
			i = j
		case c == '"' || c == '\'' || c == '`':
			j, s, err := unquote(q, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tString, s})
			i = j
		case strings.IndexByte("{}()[],", c) >= 0:
			toks = append(toks, token{tPunct, string(c)})
			i++
		default:
			op := string(c)
			for _, o := range twoCharOps {
				if strings.HasPrefix(q[i:], o) {
					op = o
					break
				}
			}
			if strings.IndexByte("=!<>+-*/%^|", op[0]) < 0 {
				return nil, fmt.Errorf("unexpected %q at byte %d", c, i)
			}
			toks = append(toks, token{tOp, op})
			i += len(op)
		}
	}
	return toks, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// unquote reads the string literal at i and returns the index past it and
// its value (Go escapes, as PromQL and LogQL have them).
func unquote(q string, i int) (int, string, error) {
	quote := q[i]
	var b strings.Builder
	for j := i + 1; j < len(q); j++ {
		c := q[j]
		switch {
		case c == quote:
			return j + 1, b.String(), nil
		case c == '\\' && quote != '`' && j+1 < len(q):
			j++
			switch e := q[j]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return 0, "", fmt.Errorf("unclosed string at byte %d", i)
}

// matcher is one label matcher of a selector, or one label filter of a
// LogQL pipeline.
type matcher struct{ label, op, value string }

// selector is a metric selector, or a LogQL stream selector (metric "").
type selector struct {
	metric   string
	matchers []matcher
}

// refs is what one query refers to.
type refs struct {
	selectors []selector
	grouping  []string  // labels of by, without, on, ignoring, group_left, group_right
	fields    []matcher // LogQL label filters after the stream selector
	parsers   []string  // LogQL parser stages (| json, ...), which invent fields
	values    []string  // label_values(selector, label): the label
}

var promKeywords = []string{"and", "or", "unless", "offset", "bool", "inf", "nan", "by", "without", "on", "ignoring", "group_left", "group_right"}
var groupingKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
var logqlParsers = []string{"json", "logfmt", "regexp", "pattern", "unpack", "line_format", "label_format", "drop", "keep", "unwrap", "decolorize"}

// queryRefs finds the selectors, grouping labels and LogQL filters of q.
func queryRefs(q string) (refs, error) {
	toks, err := lex(q)
	if err != nil {
		return refs{}, err
	}
	var r refs
	depth := map[string]int{}
	for _, t := range toks {
		if t.kind == tPunct {
			depth[t.text]++
		}
	}
	if depth["("] != depth[")"] || depth["{"] != depth["}"] || depth["["] != depth["]"] {
		return refs{}, fmt.Errorf("unbalanced brackets")
	}
	next := func(i int) token {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return token{}
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == tIdent && next(i).text == "(" && slices.Contains(groupingKeywords, t.text):
			j := i + 2
			for ; j < len(toks) && toks[j].text != ")"; j++ {
				if toks[j].kind == tIdent {
					r.grouping = append(r.grouping, toks[j].text)
				}
			}
			i = j
		case t.kind == tIdent && t.text == "label_values" && next(i).text == "(":
			// label_values([selector,] label)
			end := i + 2
			for end < len(toks) && toks[end].text != ")" {
				end++
			}
			if end-1 <= i+1 || toks[end-1].kind != tIdent {
				return refs{}, fmt.Errorf("label_values without a label")
			}
			inner, err := queryRefs(joinTokens(toks[i+2 : end-1]))
			if err != nil {
				return refs{}, err
			}
			r.selectors = append(r.selectors, inner.selectors...)
			r.values = append(r.values, toks[end-1].text)
			i = end
		case t.kind == tIdent && (next(i).text == "(" || next(i).text == "by" || next(i).text == "without"):
			// a function, or an aggregation (sum by (x) (...))
		case t.kind == tIdent && slices.Contains(promKeywords, t.text):
		case t.kind == tIdent:
			sel := selector{metric: t.text}
			if next(i).text == "{" {
				var err error
				if sel.matchers, i, err = matchers(toks, i+1); err != nil {
					return refs{}, err
				}
			}
			r.selectors = append(r.selectors, sel)
		case t.text == "{":
			sel := selector{}
			var err error
			if sel.matchers, i, err = matchers(toks, i); err != nil {
				return refs{}, err
			}
			for _, m := range sel.matchers {
				if m.label == "__name__" && m.op == "=" {
					sel.metric = m.value
				}
			}
			r.selectors = append(r.selectors, sel)
		case t.text == "[":
			for i < len(toks) && toks[i].text != "]" {
				i++
			}
		case t.kind == tOp && t.text == "|" && next(i).kind == tIdent:
			if slices.Contains(logqlParsers, next(i).text) {
				r.parsers = append(r.parsers, next(i).text)
				i++
				continue
			}
			// A label filter: field op value, joined by and, or, ','.
			for {
				if i+3 >= len(toks) || toks[i+1].kind != tIdent || toks[i+2].kind != tOp {
					return refs{}, fmt.Errorf("a pipeline stage that is not a label filter after token %d", i)
				}
				r.fields = append(r.fields, matcher{toks[i+1].text, toks[i+2].text, toks[i+3].text})
				i += 3
				if n := next(i); n.text == "and" || n.text == "or" || n.text == "," {
					i++
					continue
				}
				break
			}
		}
	}
	return r, nil
}

// matchers reads `{label op "value", ...}` from the '{' at i and returns the
// index of its '}'.
func matchers(toks []token, i int) ([]matcher, int, error) {
	var ms []matcher
	for i++; i < len(toks) && toks[i].text != "}"; i++ {
		if toks[i].text == "," {
			continue
		}
		if i+2 >= len(toks) || toks[i].kind != tIdent || toks[i+1].kind != tOp || toks[i+2].kind != tString && toks[i+2].kind != tVar {
			return nil, 0, fmt.Errorf("a label matcher that is not `label op \"value\"` at token %d", i)
		}
		ms = append(ms, matcher{toks[i].text, toks[i+1].text, toks[i+2].text})
		i += 2
	}
	return ms, i, nil
}

func joinTokens(toks []token) string {
	var b strings.Builder
	for _, t := range toks {
		if t.kind == tString {
			fmt.Fprintf(&b, "%q ", t.text)
		} else {
			b.WriteString(t.text + " ")
		}
	}
	return b.String()
}

// literalAlternatives returns the values a matcher's value can take when it
// is a literal (=) or an alternation of literals (=~ "a|b"), and false for
// Grafana variables and other regular expressions.
func literalAlternatives(m matcher) ([]string, bool) {
	if strings.Contains(m.value, "$") {
		return nil, false
	}
	switch m.op {
	case "=":
		return []string{m.value}, true
	case "=~":
		if regexp.MustCompile(`^[A-Za-z0-9_:.-]+(\|[A-Za-z0-9_:.-]+)*$`).MatchString(m.value) {
			return strings.Split(m.value, "|"), true
		}
	}
	return nil, false
}

func TestQueryRefs(t *testing.T) {
	f := func(q string, want refs) {
		t.Helper()
		got, err := queryRefs(q)
		if err != nil {
			t.Errorf("queryRefs(%q): %v", q, err)
			return
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("queryRefs(%q)\n got %+v\nwant %+v", q, got, want)
		}
	}
	f(`sum by (sink, le) (rate(a_bucket{job=~"$job", x="y"}[$__rate_interval])) > 0`, refs{
		selectors: []selector{{"a_bucket", []matcher{{"job", "=~", "$job"}, {"x", "=", "y"}}}},
		grouping:  []string{"sink", "le"}})
	f(`a > 5 * sum(max without (sink) (rate(b{o="f"}[1h] offset 5m))) unless on (i) c`, refs{
		selectors: []selector{{"a", nil}, {"b", []matcher{{"o", "=", "f"}}}, {"c", nil}},
		grouping:  []string{"sink", "i"}})
	f(`time() - a{s='x'} > 900 and a > 0 or vector(0)`, refs{selectors: []selector{{"a", []matcher{{"s", "=", "x"}}}, {"a", nil}}})
	f(`label_values(m{j=~"$j"}, instance)`, refs{selectors: []selector{{"m", []matcher{{"j", "=~", "$j"}}}}, values: []string{"instance"}})
	f(`label_values({job="k"}, cluster)`, refs{selectors: []selector{{"", []matcher{{"job", "=", "k"}}}}, values: []string{"cluster"}})
	f(`topk(5, sum by (user) (count_over_time({job="k", stage="R"} | decision="forbid" or code=~"4.." | user!~"system:.*" |= "a\"b" != "c" [$__range])))`, refs{
		selectors: []selector{{"", []matcher{{"job", "=", "k"}, {"stage", "=", "R"}}}},
		grouping:  []string{"user"},
		fields:    []matcher{{"decision", "=", "forbid"}, {"code", "=~", "4.."}, {"user", "!~", "system:.*"}}})
	f(`{job="k"} | json | x="1"`, refs{selectors: []selector{{"", []matcher{{"job", "=", "k"}}}}, parsers: []string{"json"},
		fields: []matcher{{"x", "=", "1"}}})
	for _, bad := range []string{`sum(a`, `a{b}`, `a{b="c"`, `{a="b"} | x`, `"open`} {
		if _, err := queryRefs(bad); err == nil {
			t.Errorf("queryRefs(%q) accepted it", bad)
		}
	}
}
