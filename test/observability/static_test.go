package observability

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// rule is one alerting rule of deploy/prometheus.
type rule struct {
	file, group, alert, expr string
	labels, annotations      map[string]string
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	files, err := filepath.Glob(repoPath(t, "deploy", "prometheus", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in deploy/prometheus (%v)", err)
	}
	var rules []rule
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []struct {
				Name  string
				Rules []struct {
					Alert, Record, Expr string
					Labels, Annotations map[string]string
				}
			}
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range doc.Groups {
			for _, r := range g.Rules {
				rules = append(rules, rule{file: filepath.Base(f), group: g.Name, alert: r.Alert + r.Record, expr: r.Expr,
					labels: r.Labels, annotations: r.Annotations})
			}
		}
	}
	return rules
}

// query is one query of a dashboard: a panel target or a variable.
type query struct {
	where, expr, datasource string // datasource: prometheus or loki
}

type dashboardFile struct {
	path    string
	uid     string
	dsType  string // the type of its datasource variable
	queries []query
}

func loadDashboards(t *testing.T) []dashboardFile {
	t.Helper()
	files, err := filepath.Glob(repoPath(t, "deploy", "grafana", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in deploy/grafana (%v)", err)
	}
	var out []dashboardFile
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			UID, Title string
			Templating struct {
				List []struct {
					Name, Type string
					Query      any
					Datasource struct{ Type, UID string }
				}
			}
			Panels []panel
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s is not valid JSON: %v", f, err)
		}
		df := dashboardFile{path: filepath.Base(f), uid: d.UID}
		if d.UID == "" || d.Title == "" {
			t.Errorf("%s: uid and title are required", df.path)
		}
		for _, v := range d.Templating.List {
			switch v.Type {
			case "datasource":
				df.dsType, _ = v.Query.(string)
			case "query":
				q := v.Query
				if m, ok := q.(map[string]any); ok {
					q = m["query"]
				}
				s, _ := q.(string)
				if s == "" || v.Datasource.UID != "${datasource}" {
					t.Errorf("%s: variable %s needs a query and the datasource ${datasource}", df.path, v.Name)
				}
				df.queries = append(df.queries, query{fmt.Sprintf("%s variable %s", df.path, v.Name), s, v.Datasource.Type})
			}
		}
		if df.dsType != "prometheus" && df.dsType != "loki" {
			t.Errorf("%s: its datasource variable must select prometheus or loki, not %q", df.path, df.dsType)
		}
		ids := map[int]string{}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if prev, dup := ids[p.ID]; dup {
					t.Errorf("%s: panels %q and %q have the same id %d", df.path, prev, p.Title, p.ID)
				}
				ids[p.ID] = p.Title
				if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
					t.Errorf("%s: panel %q does not fit the 24-column grid: %+v", df.path, p.Title, g)
				}
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no query", df.path, p.Title)
				}
				for _, tg := range p.Targets {
					ds := tg.Datasource
					if ds.UID == "" {
						ds = p.Datasource
					}
					if ds.UID != "${datasource}" || ds.Type != df.dsType {
						t.Errorf("%s: panel %q queries datasource %+v, want {%s ${datasource}}", df.path, p.Title, ds, df.dsType)
					}
					if tg.Expr == "" || tg.RefID == "" {
						t.Errorf("%s: panel %q has a target without expr or refId", df.path, p.Title)
					}
					df.queries = append(df.queries, query{fmt.Sprintf("%s panel %q", df.path, p.Title), tg.Expr, ds.Type})
				}
			}
		}
		walk(d.Panels)
		out = append(out, df)
	}
	return out
}

type panel struct {
	ID         int
	Type       string
	Title      string
	GridPos    struct{ X, Y, W, H int }
	Datasource struct{ Type, UID string }
	Targets    []struct {
		RefID      string
		Expr       string
		Datasource struct{ Type, UID string }
	}
	Panels []panel
}

// TestDashboards: both dashboards load, one per datasource, with distinct
// uids.
func TestDashboards(t *testing.T) {
	ds := loadDashboards(t)
	types, uids := map[string]int{}, map[string]bool{}
	for _, d := range ds {
		types[d.dsType]++
		if uids[d.uid] {
			t.Errorf("%s: uid %q is used by another dashboard", d.path, d.uid)
		}
		uids[d.uid] = true
		t.Logf("%s: %d queries on %s", d.path, len(d.queries), d.dsType)
	}
	if types["prometheus"] == 0 || types["loki"] == 0 {
		t.Errorf("want a dashboard on Prometheus (the shipper) and one on Loki (audit activity), got %v", types)
	}
}

// TestQueriesUseCatalogue: every metric and label the rules and the
// shipper dashboard use is in docs/metrics.md, and every label and field
// the Loki dashboard uses is one the loki sink sets by default.
func TestQueriesUseCatalogue(t *testing.T) {
	c := readCatalogue(t)
	var problems []string
	for _, r := range loadRules(t) {
		problems = append(problems, checkPromQL(c, nil, r.file+" "+r.alert, r.expr)...)
	}
	labels, metadata := lokiFields(t)
	for _, d := range loadDashboards(t) {
		for _, q := range d.queries {
			if q.datasource == "loki" {
				problems = append(problems, checkLogQL(labels, metadata, q.where, q.expr)...)
			} else {
				problems = append(problems, checkPromQL(c, nil, q.where, q.expr)...)
			}
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestCheckersFindMistakes feeds the checkers queries with the mistakes
// they exist to find.
func TestCheckersFindMistakes(t *testing.T) {
	c := catalogue{
		"audit_shipper_x_total":          {name: "audit_shipper_x_total", typ: "counter", labels: []string{"reason", "sink"}},
		"audit_shipper_duration_seconds": {name: "audit_shipper_duration_seconds", typ: "histogram", labels: []string{"sink"}},
	}
	exposed := exposition{"audit_shipper_x_total": {{"sink": "a", "reason": "too_long"}}}
	f := func(q string, want int) {
		t.Helper()
		if got := checkPromQL(c, exposed, "test", q); len(got) != want {
			t.Errorf("checkPromQL(%q): %d problems, want %d: %v", q, len(got), want, got)
		}
	}
	f(`sum by (sink, le) (rate(audit_shipper_duration_seconds_bucket{job=~"$job"}[5m]))`, 0)
	f(`increase(audit_shipper_x_total{reason=~"too_long|$r"}[5m])`, 0)
	f(`audit_shipper_y_total`, 1)                                   // not catalogued
	f(`audit_shipper_duration_seconds`, 1)                          // a histogram has no series of its base name
	f(`audit_shipper_x_total{resaon="too_long"}`, 1)                // no such label
	f(`audit_shipper_x_total{reason="toolong"}`, 1)                 // no such value
	f(`audit_shipper_x_total{reason=~"too_long|sink_rejected"}`, 1) // one alternative missing
	f(`sum by (outcome) (audit_shipper_x_total)`, 1)                // grouping by a label it lacks
	f(`histogram_quantile(0.9, rate(audit_shipper_x_total_bucket[1m]))`, 1)

	labels, metadata := []string{"job", "stage"}, []string{"user"}
	g := func(q string, want int) {
		t.Helper()
		if got := checkLogQL(labels, metadata, "test", q); len(got) != want {
			t.Errorf("checkLogQL(%q): %d problems, want %d: %v", q, len(got), want, got)
		}
	}
	g(`sum by (user) (count_over_time({job="a", stage=~"$s"} | user!="x" |= "y" [1m]))`, 0)
	g(`{job="a", user="x"}`, 1)    // user is metadata, not a stream label
	g(`{job="a"} | verb="get"`, 1) // not sent by default
	g(`sum by (resource) (rate({job="a"}[1m]))`, 1)
	g(`{job="a"} | json | user="x"`, 1)
}

// TestRules: every alert has a severity, a summary, a description and a
// runbook_url whose section exists, and is fired by a promtool unit test.
func TestRules(t *testing.T) {
	runbook, err := os.ReadFile(repoPath(t, "deploy", "prometheus", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, h := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(string(runbook), -1) {
		anchors[githubAnchor(h[1])] = true
	}
	fired := firedInTests(t)
	rules := loadRules(t)
	for _, r := range rules {
		if r.alert == "" || r.expr == "" {
			t.Errorf("%s group %s: a rule without alert or expr", r.file, r.group)
			continue
		}
		if s := r.labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, s) {
			t.Errorf("%s: severity %q, want info, warning or critical", r.alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.annotations[a] == "" {
				t.Errorf("%s: annotation %s is missing", r.alert, a)
			}
		}
		_, anchor, _ := strings.Cut(r.annotations["runbook_url"], "#")
		if !strings.Contains(r.annotations["runbook_url"], "/deploy/prometheus/runbook.md#") || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q does not point at a section of deploy/prometheus/runbook.md", r.alert, r.annotations["runbook_url"])
		}
		if !fired[r.alert] {
			t.Errorf("%s: no test in deploy/prometheus/tests expects it to fire", r.alert)
		}
	}
	t.Logf("%d alerts, each with a runbook section and a unit test that fires it", len(rules))
}

// githubAnchor is the anchor GitHub gives a heading.
func githubAnchor(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	h = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}

// firedInTests is every alert some promtool test expects to fire.
func firedInTests(t *testing.T) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(repoPath(t, "deploy", "prometheus", "tests", "*.yaml"))
	fired := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string
					ExpAlerts []any `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			}
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, tc := range doc.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
	}
	return fired
}

// TestPromtoolRules runs promtool check rules and promtool test rules on
// deploy/prometheus.
func TestPromtoolRules(t *testing.T) {
	promtool := requireTool(t, "promtool")
	rules, _ := filepath.Glob(repoPath(t, "deploy", "prometheus", "*.yaml"))
	tests, _ := filepath.Glob(repoPath(t, "deploy", "prometheus", "tests", "*.yaml"))
	if len(tests) == 0 {
		t.Fatal("no promtool unit tests in deploy/prometheus/tests")
	}
	for _, args := range [][]string{append([]string{"check", "rules"}, rules...), append([]string{"test", "rules"}, tests...)} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", args[0]+" "+args[1], out)
		}
	}
}

// TestDocsNameOnlyCataloguedMetrics: a metric named anywhere in the
// documentation, the runbook or the examples is in the catalogue, so that
// renaming a metric cannot leave a stale name behind.
func TestDocsNameOnlyCataloguedMetrics(t *testing.T) {
	c := readCatalogue(t)
	var files []string
	for _, pattern := range [][]string{{"docs", "*.md"}, {"docs", "*", "*.md"}, {"*.md"}, {"deploy", "prometheus", "*.md"}, {"configs", "*.yaml"}} {
		m, _ := filepath.Glob(repoPath(t, pattern...))
		files = append(files, m...)
	}
	name := regexp.MustCompile(`\baudit_shipper_[a-z0-9_]*[a-z0-9]`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range slices.Compact(slices.Sorted(slices.Values(name.FindAllString(string(b), -1)))) {
			_, ok := c[n] // a histogram by its own name
			if !ok {
				_, _, ok = c.lookup(n)
			}
			if !ok {
				rel, _ := filepath.Rel(moduleRoot(t), f)
				t.Errorf("%s names %s, which docs/metrics.md does not list", rel, n)
			}
		}
	}
}
