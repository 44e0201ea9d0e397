package observability

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// entry is one row of a metric table of docs/metrics.md.
type entry struct {
	name, typ string
	labels    []string // sorted
	section   string   // the ## heading the table is under
	line      int
}

// catalogue is docs/metrics.md's metrics by name.
type catalogue map[string]entry

var backticked = regexp.MustCompile("`([^`]*)`")

// readCatalogue parses every table whose header is
// `| metric | type | labels | meaning |`.
func readCatalogue(t *testing.T) catalogue {
	t.Helper()
	path := repoPath(t, "docs", "metrics.md")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := catalogue{}
	section, inTable, n := "", false, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = h
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case slices.Equal(cells, []string{"metric", "type", "labels", "meaning"}):
			inTable = true
			continue
		case !inTable || strings.HasPrefix(cells[0], "---"):
			continue
		}
		if len(cells) < 4 {
			t.Fatalf("%s:%d: a row of %d cells, want metric | type | labels | meaning", path, n, len(cells))
		}
		names := backticked.FindAllStringSubmatch(cells[0], -1)
		if len(names) != 1 {
			t.Fatalf("%s:%d: the metric cell %q must hold one `name`", path, n, cells[0])
		}
		e := entry{name: names[0][1], typ: cells[1], section: section, line: n}
		for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
			e.labels = append(e.labels, m[1])
		}
		slices.Sort(e.labels)
		if strings.Trim(backticked.ReplaceAllString(cells[2], ""), ", ") != "" {
			t.Fatalf("%s:%d: the labels cell %q must be `label`, `label`, ...", path, n, cells[2])
		}
		if !slices.Contains([]string{"counter", "gauge", "histogram", "summary"}, e.typ) {
			t.Fatalf("%s:%d: type %q is not counter, gauge, histogram or summary", path, n, e.typ)
		}
		if prev, dup := c[e.name]; dup {
			t.Fatalf("%s:%d: %s is listed twice (first at line %d)", path, n, e.name, prev.line)
		}
		c[e.name] = e
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(c) == 0 {
		t.Fatalf("%s: no metric table found", path)
	}
	return c
}

// targetLabels are added by Prometheus to every scraped series; histogram
// buckets have le.
var targetLabels = []string{"job", "instance"}

// lookup finds the catalogue entry of a series name as a query writes it
// (a histogram's _bucket, _sum and _count included), and the labels it may
// carry. up is Prometheus' own.
func (c catalogue) lookup(name string) (entry, []string, bool) {
	if name == "up" {
		return entry{name: "up", typ: "gauge"}, targetLabels, true
	}
	if e, ok := c[name]; ok && e.typ != "histogram" {
		return e, append(slices.Clone(e.labels), targetLabels...), true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if e, ok := c[base]; ok && (e.typ == "histogram" || e.typ == "summary") {
				labels := append(slices.Clone(e.labels), targetLabels...)
				if suffix == "_bucket" {
					labels = append(labels, "le")
				}
				return e, labels, true
			}
		}
	}
	return entry{}, nil, false
}

// repoPath is a path from the module root.
func repoPath(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{moduleRoot(t)}, elem...)...)
}

// checkPromQL reports every metric, label and label value of a PromQL query
// that the catalogue does not have. exposed, when not nil, is the live
// /metrics: a literal label value must then match at least one series
// (every series a rule or panel can select exists at 0 from the start).
func checkPromQL(c catalogue, exposed exposition, where, q string) []string {
	r, err := queryRefs(q)
	if err != nil {
		return []string{fmt.Sprintf("%s: cannot read %q: %v", where, q, err)}
	}
	var problems []string
	var all []string // every label of every metric in the query
	for _, s := range r.selectors {
		if s.metric == "" {
			problems = append(problems, fmt.Sprintf("%s: a selector without a metric name in %q", where, q))
			continue
		}
		_, labels, ok := c.lookup(s.metric)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: metric %s is not in docs/metrics.md", where, s.metric))
			continue
		}
		all = append(all, labels...)
		for _, m := range s.matchers {
			if !slices.Contains(labels, m.label) {
				problems = append(problems, fmt.Sprintf("%s: %s has no label %q (docs/metrics.md: %v)", where, s.metric, m.label, labels))
				continue
			}
			vals, ok := literalAlternatives(m)
			if !ok || exposed == nil || slices.Contains(targetLabels, m.label) {
				continue
			}
			for _, v := range vals {
				if !exposed.hasLabelValue(s.metric, m.label, v) {
					problems = append(problems, fmt.Sprintf("%s: no series of %s has %s=%q in the shipper's /metrics", where, s.metric, m.label, v))
				}
			}
		}
	}
	for _, g := range append(r.grouping, r.values...) {
		if !slices.Contains(all, g) {
			problems = append(problems, fmt.Sprintf("%s: label %q is on none of the metrics of %q", where, g, q))
		}
	}
	if len(r.fields) > 0 || len(r.parsers) > 0 {
		problems = append(problems, fmt.Sprintf("%s: LogQL pipeline in a PromQL query: %q", where, q))
	}
	return problems
}

// lokiFields are the stream labels and the structured metadata the loki
// sink sets by default, from the keys table of docs/sinks/loki.md: job,
// cluster and node (keys of their own), the default label_fields, and the
// default structured_metadata.
func lokiFields(t *testing.T) (labels, metadata []string) {
	t.Helper()
	path := repoPath(t, "docs", "sinks", "loki.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defaultList := func(key string) []string {
		re := regexp.MustCompile("(?m)^\\| `" + key + "` \\| `\\[([^\\]]*)\\]` \\|")
		m := re.FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: no row `%s` with a default `[...]` in the keys table", path, key)
		}
		var out []string
		for _, f := range strings.Split(string(m[1]), ",") {
			out = append(out, strings.TrimSpace(f))
		}
		return out
	}
	labels = append([]string{"job", "cluster", "node"}, defaultList("label_fields")...)
	return labels, defaultList("structured_metadata")
}

// checkLogQL reports every stream label and field of a LogQL query that
// the loki sink does not set by default.
func checkLogQL(labels, metadata []string, where, q string) []string {
	r, err := queryRefs(q)
	if err != nil {
		return []string{fmt.Sprintf("%s: cannot read %q: %v", where, q, err)}
	}
	var problems []string
	fields := append(slices.Clone(labels), metadata...)
	if len(r.selectors) == 0 {
		problems = append(problems, fmt.Sprintf("%s: no stream selector in %q", where, q))
	}
	for _, s := range r.selectors {
		if s.metric != "" {
			problems = append(problems, fmt.Sprintf("%s: metric name %s in a LogQL query", where, s.metric))
		}
		for _, m := range s.matchers {
			if !slices.Contains(labels, m.label) {
				problems = append(problems, fmt.Sprintf("%s: %q is not a stream label of the loki sink (%v)", where, m.label, labels))
			}
		}
	}
	for _, f := range r.fields {
		if !slices.Contains(fields, f.label) {
			problems = append(problems, fmt.Sprintf("%s: %q is neither a stream label nor default structured metadata of the loki sink", where, f.label))
		}
	}
	for _, g := range append(r.grouping, r.values...) {
		if !slices.Contains(fields, g) {
			problems = append(problems, fmt.Sprintf("%s: grouping by %q, which the loki sink does not set", where, g))
		}
	}
	if len(r.parsers) > 0 {
		problems = append(problems, fmt.Sprintf("%s: parser stages %v: use the structured metadata instead, it needs no parsing", where, r.parsers))
	}
	return problems
}
