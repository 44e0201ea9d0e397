package observability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// Sinks of the end-to-end test: three that deliver, one whose server is down.
var deliveringSinks = []string{"file", "loki", "es"}

const downSink = "down"

// TestPrometheusScrapesShipper runs the shipper on a corpus with four
// sinks (a file; Loki and Elasticsearch protocols on a real VictoriaLogs;
// a Loki nobody listens for), lets it ship, has a real Prometheus scrape it
// every second with the rules of deploy/prometheus, and checks that
// Prometheus' HTTP API answers what the shipper's /metrics says and what
// the corpus holds: the events shipped, the lag in bytes, the security
// counters. Along the way: promtool check metrics on /metrics, the
// catalogue of docs/metrics.md against /metrics, every query of the rules
// and of the shipper dashboard evaluated by Prometheus, and the alerts in
// the running Prometheus (the down sink's, no other).
func TestPrometheusScrapesShipper(t *testing.T) {
	promBin := requireTool(t, "prometheus")
	promtool := requireTool(t, "promtool")
	bin := shipperBinary(t)
	vl := vlogs.Start(t, "-insert.maxLineSizeBytes=4MiB")

	n := 10_000
	if testing.Short() {
		n = 1_000
	}
	dir := t.TempDir()
	auditLog := filepath.Join(dir, "audit.log")
	size := writeCorpus(t, auditLog, n, 7)
	want := tally(t, auditLog)
	t.Logf("corpus: %d events, %d bytes, %d requests (ResponseComplete or Panic), %d RBAC changes", n, size, want.requests, want.rbacChanges)

	sh := startShipper(t, bin, dir, fmt.Sprintf(`source:
  path: %[1]s
  positions_file: %[2]s/positions.json
  start_at: beginning
  poll_interval: 250ms
dead_letter:
  path: %[2]s/dead-letter.ndjson
sinks:
  - name: file
    type: file
    path: %[2]s/out.ndjson
  - name: loki
    type: loki
    url: %[3]s/insert/loki/api/v1/push?disable_message_parsing=1
    node: cp-0
  - name: es
    type: elasticsearch
    addresses: [%[3]s/insert/elasticsearch]
    headers: {VL-Time-Field: "@timestamp", VL-Msg-Field: requestURI, VL-Stream-Fields: "cluster,node"}
    node: cp-0
  - name: %[4]s
    type: loki
    url: http://%[5]s/loki/api/v1/push
    node: cp-0
    retry: {min_backoff: 100ms, max_backoff: 1s}
metrics:
  listen: 127.0.0.1:0
log: {level: info, format: json}
shutdown: {timeout: 2s}
`, auditLog, dir, vl.URL(), downSink, shipperproc.FreeAddr(t)))

	// Everything delivered, and the down sink's lag settled (it is checked
	// against the file's size below, with Prometheus' answer).
	var fams map[string]*dto.MetricFamily
	var page []byte
	deadline := time.Now().Add(3 * time.Minute)
	lastLag, same := -1.0, 0
	for {
		page = sh.get(t, "/metrics")
		fams, _ = parseMetrics(t, page)
		done := true
		for _, s := range deliveringSinks {
			done = done && value(fams, "audit_shipper_events_shipped_total", "sink", s) == float64(n) &&
				value(fams, "audit_shipper_position_lag_bytes", "sink", s) == 0
		}
		if lag := value(fams, "audit_shipper_position_lag_bytes", "sink", downSink); lag > 0 && lag == lastLag {
			same++
		} else {
			lastLag, same = lag, 0
		}
		if done && same >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes: shipped %v of %d, lag %v; the shipper's log:\n%s",
				perSink(fams, "audit_shipper_events_shipped_total"), n, perSink(fams, "audit_shipper_position_lag_bytes"), sh.logTail(30))
		}
		time.Sleep(300 * time.Millisecond)
	}

	t.Run("promtool check metrics", func(t *testing.T) {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(page)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on the shipper's /metrics: %v\n%s", err, out)
		}
	})
	t.Run("catalogue matches /metrics", func(t *testing.T) {
		compareCatalogue(t, readCatalogue(t), fams)
	})

	prom := startPrometheus(t, promBin, sh.addr)
	// The first scrapes take a second or two.
	waitQuery(t, prom, fmt.Sprintf(`audit_shipper_events_shipped_total{sink=%q}`, "file"), 30*time.Second)

	// The same page as Prometheus scraped: the counters compared below no
	// longer move.
	page = sh.get(t, "/metrics")
	fams, exposed := parseMetrics(t, page)
	for _, s := range deliveringSinks {
		compare(t, prom, fams, "audit_shipper_events_shipped_total", s, float64(n))
		compare(t, prom, fams, "audit_shipper_position_lag_bytes", s, 0)
	}
	compare(t, prom, fams, "audit_shipper_events_shipped_total", downSink, 0)
	compare(t, prom, fams, "audit_shipper_position_lag_bytes", downSink, float64(size))
	// The down sink's reader stopped when its in-flight window filled: it
	// has not seen every event.
	for _, s := range deliveringSinks {
		compare(t, prom, fams, "audit_shipper_api_requests_total", s, float64(want.requests))
		compare(t, prom, fams, "audit_shipper_rbac_changes_total", s, float64(want.rbacChanges))
	}

	t.Run("queries of the rules and the shipper dashboard", func(t *testing.T) {
		c := readCatalogue(t)
		var qs []query
		for _, r := range loadRules(t) {
			qs = append(qs, query{r.file + " " + r.alert, r.expr, "prometheus"})
		}
		for _, d := range loadDashboards(t) {
			for _, q := range d.queries {
				if q.datasource == "prometheus" {
					qs = append(qs, q)
				}
			}
		}
		for _, q := range qs {
			for _, p := range checkPromQL(c, exposed, q.where, q.expr) {
				t.Error(p)
			}
			if strings.HasPrefix(q.expr, "label_values(") {
				continue // Grafana's, not PromQL
			}
			if _, err := prom.query(grafanaVars.ReplaceAllStringFunc(q.expr, grafanaValue)); err != nil {
				t.Errorf("%s: Prometheus cannot evaluate %q: %v", q.where, q.expr, err)
			}
		}
		t.Logf("%d queries evaluated", len(qs))
	})

	t.Run("rules and alerts in Prometheus", func(t *testing.T) {
		checkAlerts(t, prom)
	})

	// A sink that is down stops reading when its in-flight window is full;
	// its lag must still follow the audit log, or no backlog alert fires.
	t.Run("the down sink's lag follows the growing audit log", func(t *testing.T) {
		more := n / 2
		size := writeCorpus(t, auditLog, more, 8)
		deadline := time.Now().Add(30 * time.Second)
		for {
			fams, _ := parseMetrics(t, sh.get(t, "/metrics"))
			shipped := perSink(fams, "audit_shipper_events_shipped_total")
			lag := value(fams, "audit_shipper_position_lag_bytes", "sink", downSink)
			if shipped["file"] == float64(n+more) && shipped["loki"] == float64(n+more) && shipped["es"] == float64(n+more) && lag == float64(size) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("30s after %d more events: shipped %v of %d; the down sink's lag %v, the audit log %d bytes", more, shipped, n+more, lag, size)
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		waitQuery(t, prom, fmt.Sprintf(`audit_shipper_position_lag_bytes{sink=%q} == %d`, downSink, size), 10*time.Second)
	})

	sh.stop(t)
	prom.stop(t)
}

// counts is what the corpus holds, decoded with encoding/json.
type counts struct{ requests, rbacChanges int }

// tally counts the requests (one ResponseComplete or Panic event each) and
// the successful RBAC changes in an audit log, as docs/metrics.md defines
// them.
func tally(t *testing.T, path string) counts {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var c counts
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var e struct {
			Stage, Verb, RequestURI string
			ObjectRef               struct{ Resource, Subresource, APIGroup string }
			ResponseStatus          struct{ Code int }
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("corpus line: %v", err)
		}
		if e.Stage != "ResponseComplete" && e.Stage != "Panic" {
			continue
		}
		c.requests++
		r := e.ObjectRef
		if r.APIGroup == "rbac.authorization.k8s.io" && r.Subresource == "" &&
			slices.Contains([]string{"roles", "clusterroles", "rolebindings", "clusterrolebindings"}, r.Resource) &&
			slices.Contains([]string{"create", "update", "patch", "delete", "deletecollection"}, e.Verb) &&
			e.ResponseStatus.Code >= 100 && e.ResponseStatus.Code < 400 && !strings.Contains(e.RequestURI, "dryRun=") {
			c.rbacChanges++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// writeCorpus appends n corpus events of the seed to the file at path and
// returns its size.
func writeCorpus(t *testing.T, path string, n int, seed int64) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := corpus.New(corpus.Options{Seed: seed, Start: time.Now().Add(-time.Hour)}).Write(w, n); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return st.Size()
}

// value is the sample of a family whose label has the given value; -1 when
// there is none. For several series (other labels), their sum.
func value(fams map[string]*dto.MetricFamily, name, label, v string) float64 {
	f, ok := fams[name]
	if !ok {
		return -1
	}
	sum, found := 0.0, false
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == v {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
				found = true
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}

func perSink(fams map[string]*dto.MetricFamily, name string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range append(deliveringSinks, downSink) {
		out[s] = value(fams, name, "sink", s)
	}
	return out
}

// compare checks that Prometheus and the shipper's /metrics agree on the
// sum of a metric's series for a sink, and that it is want.
func compare(t *testing.T, p *promServer, fams map[string]*dto.MetricFamily, name, sink string, want float64) {
	t.Helper()
	exported := value(fams, name, "sink", sink)
	if exported < 0 {
		hint := ""
		if strings.HasPrefix(name, "audit_shipper_api_") || strings.HasPrefix(name, "audit_shipper_rbac_") {
			hint = " (the security signals of package signals are not wired into the pipeline: signals.New per sink, Observe for each event read)"
		}
		t.Errorf("%s{sink=%q} is not in the shipper's /metrics%s", name, sink, hint)
		return
	}
	q := fmt.Sprintf("sum(%s{sink=%q})", name, sink)
	res, err := p.query(q)
	if err != nil {
		t.Errorf("Prometheus: %s: %v", q, err)
		return
	}
	got := -1.0
	if len(res) == 1 {
		got = res[0].value
	}
	t.Logf("%-40s sink=%-5s Prometheus %v, /metrics %v, expected %v", name, sink, got, exported, want)
	if got != exported || got != want {
		t.Errorf("%s{sink=%q}: Prometheus says %v, the shipper's /metrics %v, the corpus %v", name, sink, got, exported, want)
	}
}

// compareCatalogue checks that every audit_shipper_ family of /metrics is
// in the catalogue with its type and labels, and that every catalogued
// metric is exposed (the test configures a sink of every type).
func compareCatalogue(t *testing.T, c catalogue, fams map[string]*dto.MetricFamily) {
	types := map[dto.MetricType]string{dto.MetricType_COUNTER: "counter", dto.MetricType_GAUGE: "gauge",
		dto.MetricType_HISTOGRAM: "histogram", dto.MetricType_SUMMARY: "summary", dto.MetricType_UNTYPED: "untyped"}
	for name, f := range fams {
		e, ok := c[name]
		if !ok {
			if strings.HasPrefix(name, "audit_shipper_") {
				t.Errorf("/metrics has %s (%s), which docs/metrics.md does not list", name, f.GetHelp())
			}
			continue
		}
		if typ := types[f.GetType()]; typ != e.typ {
			t.Errorf("%s is a %s in /metrics, a %s in docs/metrics.md:%d", name, typ, e.typ, e.line)
		}
		var labels []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		slices.Sort(labels)
		if !slices.Equal(labels, e.labels) {
			t.Errorf("%s has labels %v in /metrics, %v in docs/metrics.md:%d", name, labels, e.labels, e.line)
		}
	}
	for name, e := range c {
		if _, ok := fams[name]; !ok {
			t.Errorf("docs/metrics.md:%d lists %s (%s), which /metrics does not have", e.line, name, e.section)
		}
	}
}

// grafanaVars are the dashboards' variables: $name or ${name}.
var grafanaVars = regexp.MustCompile(`\$\{?\w+\}?`)

// grafanaValue is what Grafana puts in place of a variable: a duration for
// its built-in intervals, "all values" for the dashboard's own.
func grafanaValue(v string) string {
	if strings.Contains(v, "__") {
		return "1m"
	}
	return ".*"
}

// checkAlerts waits until Prometheus has evaluated every rule, then
// requires each to be healthy, AuditShipperNotShipping to be pending or
// firing for the down sink, and no alert for the sinks that deliver.
func checkAlerts(t *testing.T, p *promServer) {
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Name, Health, LastError string
				LastEvaluation          time.Time
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := p.api("/api/v1/rules", nil, &rules); err != nil {
			t.Fatal(err)
		}
		evaluated, total := 0, 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				total++
				if !r.LastEvaluation.IsZero() && r.LastEvaluation.Year() > 1970 {
					evaluated++
				}
			}
		}
		if total > 0 && evaluated == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus evaluated %d of %d rules in 30s", evaluated, total)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Health != "ok" {
				t.Errorf("rule %s (group %s): health %q: %s", r.Name, g.Name, r.Health, r.LastError)
			}
		}
	}

	type alert struct {
		Labels map[string]string
		State  string
	}
	var alerts struct{ Alerts []alert }
	deadline = time.Now().Add(30 * time.Second)
	for {
		if err := p.api("/api/v1/alerts", nil, &alerts); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(alerts.Alerts, func(a alert) bool {
			return a.Labels["alertname"] == "AuditShipperNotShipping" && a.Labels["sink"] == downSink
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("AuditShipperNotShipping is not pending for the down sink after 30s; alerts: %+v", alerts.Alerts)
			break
		}
		time.Sleep(time.Second)
	}
	for _, a := range alerts.Alerts {
		t.Logf("alert %s %v", a.State, a.Labels)
		if slices.Contains(deliveringSinks, a.Labels["sink"]) || a.Labels["alertname"] == "AuditShipperDown" {
			t.Errorf("alert %s (%s) for a shipper that works: %v", a.Labels["alertname"], a.State, a.Labels)
		}
	}
}

// process is a child process whose output goes to a file.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, name, logPath string, argv ...string) *process {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", strings.Join(argv, " "), err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to 30s for the exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if !p.running() {
		t.Errorf("%s exited before the end of the test (%v); its log:\n%s", p.name, p.cmd.ProcessState, p.logTail(30))
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			t.Errorf("%s exited with %v after SIGTERM; its log:\n%s", p.name, p.cmd.ProcessState, p.logTail(30))
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not exit within 30s of SIGTERM; its log:\n%s", p.name, p.logTail(30))
	}
}

func (p *process) logTail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// shipperProcess is the running audit-shipper.
type shipperProcess struct {
	*process
	addr string // where /metrics is served
}

// startShipper writes cfg and runs `audit-shipper run` on it. It listens
// on port 0 and logs the address it got, so no other process can take a
// port picked in advance.
func startShipper(t *testing.T, bin, dir, cfg string) *shipperProcess {
	t.Helper()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, "audit-shipper", filepath.Join(dir, "shipper.log"), bin, "run", "--config", path)
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(p.log)
		for _, line := range strings.Split(string(b), "\n") {
			var l struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving metrics" && l.Listen != "" {
				return &shipperProcess{process: p, addr: l.Listen}
			}
		}
		if !p.running() || time.Now().After(deadline) {
			t.Fatalf("the shipper did not log \"serving metrics\" (running: %v); its log:\n%s", p.running(), p.logTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *shipperProcess) get(t *testing.T, path string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + path)
	if err != nil {
		t.Fatalf("GET %s from the shipper: %v; its log:\n%s", path, err, s.logTail(20))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s from the shipper: %s %v\n%s", path, resp.Status, err, b)
	}
	return b
}

// promServer is a running Prometheus.
type promServer struct {
	*process
	addr string
}

// startPrometheus runs Prometheus on a loopback port with a temporary
// storage path, scraping target every second and evaluating the rules of
// deploy/prometheus every second.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, _ := filepath.Glob(repoPath(t, "deploy", "prometheus", "*.yaml"))
	quoted := make([]string, len(rules))
	for i, r := range rules {
		quoted[i] = strconv.Quote(r)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: audit-shipper
    static_configs:
      - targets: [%q]
`, strings.Join(quoted, ", "), target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Prometheus cannot listen on port 0 and say which port it got: pick
	// one, and pick again if another process took it meanwhile.
	for attempt := 1; ; attempt++ {
		addr := shipperproc.FreeAddr(t)
		p := start(t, "prometheus", filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt)), bin,
			"--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr, "--log.level=info")
		s := &promServer{process: p, addr: addr}
		deadline := time.Now().Add(30 * time.Second)
		for p.running() && time.Now().Before(deadline) {
			if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return s
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		log := p.logTail(20)
		if p.running() || attempt == 3 || !strings.Contains(log, "address already in use") {
			t.Fatalf("Prometheus (%s) did not become ready on %s; its log:\n%s", bin, addr, log)
		}
	}
}

// api GETs a Prometheus API path and decodes its data member into out.
func (p *promServer) api(path string, params url.Values, out any) error {
	u := "http://" + p.addr + path
	if params != nil {
		u += "?" + params.Encode()
	}
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status, Error, ErrorType string
		Data                     json.RawMessage
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("GET %s: %s, not a Prometheus API answer: %v", path, resp.Status, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("%s: %s", body.ErrorType, body.Error)
	}
	return json.Unmarshal(body.Data, out)
}

type sample struct {
	labels map[string]string
	value  float64
}

// query runs an instant query (now) and returns its samples; a scalar is
// one sample without labels.
func (p *promServer) query(q string) ([]sample, error) {
	var data struct {
		ResultType string
		Result     json.RawMessage
	}
	if err := p.api("/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	parse := func(v []any) (float64, error) {
		if len(v) != 2 {
			return 0, fmt.Errorf("sample %v", v)
		}
		s, _ := v[1].(string)
		return strconv.ParseFloat(s, 64)
	}
	switch data.ResultType {
	case "vector":
		var res []struct {
			Metric map[string]string
			Value  []any
		}
		if err := json.Unmarshal(data.Result, &res); err != nil {
			return nil, err
		}
		out := make([]sample, len(res))
		for i, r := range res {
			v, err := parse(r.Value)
			if err != nil {
				return nil, err
			}
			out[i] = sample{r.Metric, v}
		}
		return out, nil
	case "scalar":
		var v []any
		if err := json.Unmarshal(data.Result, &v); err != nil {
			return nil, err
		}
		f, err := parse(v)
		return []sample{{value: f}}, err
	}
	return nil, fmt.Errorf("result type %q", data.ResultType)
}

// waitQuery waits until q has a result.
func waitQuery(t *testing.T, p *promServer, q string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res, err := p.query(q)
		if err == nil && len(res) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has no result for %s after %v (err %v); its log:\n%s", q, timeout, err, p.logTail(20))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
