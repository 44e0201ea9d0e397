package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

const (
	chart      = "deploy/helm/audit-shipper"
	ciValues   = "deploy/helm/audit-shipper/ci/loki-elasticsearch-values.yaml"
	rke2Chart  = "deploy/rke2/audit-shipper.yaml"
	helmModule = "helm.sh/helm/v3/cmd/helm@v3.22.0"
	// kubeVersion is what the chart is rendered for: helm built with go
	// install assumes Kubernetes 1.20, below the chart's kubeVersion.
	kubeVersion = "v1.33.0"
)

// helm returns the helm CLI, from PATH or $(go env GOPATH)/bin. Without
// it the test fails with the command that installs it (skips with -short).
func helm(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if testing.Short() {
		t.Skip("helm is not installed; -short skips the chart tests")
	}
	t.Fatalf("helm is not installed (Debian has no package); build it with: go install %s", helmModule)
	return ""
}

// helmTemplate renders the chart as release "audit-shipper" in namespace
// audit-shipper with the given extra arguments.
func helmTemplate(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	argv := append([]string{"template", "audit-shipper", filepath.Join(repo, chart), "--namespace", "audit-shipper", "--kube-version", kubeVersion}, args...)
	cmd := exec.Command(helm(t), argv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New(err.Error() + ": " + stderr.String())
	}
	return out, nil
}

func render(t *testing.T, args ...string) []object {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	objs, err := decode("helm template "+strings.Join(args, " "), out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestChartLint(t *testing.T) {
	for _, args := range [][]string{nil, {"-f", filepath.Join(repo, ciValues)}} {
		argv := append([]string{"lint", "--strict", "--kube-version", kubeVersion, filepath.Join(repo, chart)}, args...)
		if out, err := exec.Command(helm(t), argv...).CombinedOutput(); err != nil {
			t.Errorf("helm %v: %v\n%s", argv, err, out)
		}
	}
}

// TestChartDefault: the chart with its default values (the stdout sink
// only, no credentials).
func TestChartDefault(t *testing.T) {
	objs := render(t)
	expectSound(t, objs)
	d := (&problems{}).find(objs)
	sinks := d.tree["sinks"].([]any)
	if len(sinks) != 1 || sinks[0].(map[string]any)["type"] != "file" {
		t.Errorf("default sinks = %v, want the stdout file sink alone", sinks)
	}
	if d.volume("credentials") != nil {
		t.Errorf("a credentials volume without any Secret reference")
	}
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "Namespace", "Secret"} {
		if slices.ContainsFunc(objs, func(o object) bool { return o.gvk.Kind == kind }) {
			t.Errorf("the default render holds a %s", kind)
		}
	}
}

// TestChartLokiElasticsearch: both sinks with credentials from existing
// Secrets, the ServiceMonitor, a policy.
func TestChartLokiElasticsearch(t *testing.T) {
	objs := render(t, "-f", filepath.Join(repo, ciValues))
	expectSound(t, objs)
	d := (&problems{}).find(objs)
	want := map[string]map[string]string{
		"loki":          {"type": "loki", "cluster": "prod-eu-1", "tenant_id": "platform"},
		"elasticsearch": {"type": "elasticsearch", "cluster": "prod-eu-1", "api_key_file": "/var/run/secrets/audit-shipper/elasticsearch/api-key"},
	}
	sinks := d.tree["sinks"].([]any)
	if len(sinks) != len(want) {
		t.Fatalf("sinks = %v, want loki and elasticsearch", sinks)
	}
	for _, s := range sinks {
		s := s.(map[string]any)
		for k, v := range want[s["name"].(string)] {
			if s[k] != v {
				t.Errorf("sink %s: %s = %v, want %s", s["name"], k, s[k], v)
			}
		}
	}
	if got := d.tree["sinks"].([]any)[0].(map[string]any)["basic_auth"].(map[string]any)["password_file"]; got != "/var/run/secrets/audit-shipper/loki/password" {
		t.Errorf("loki password_file = %v", got)
	}
	creds := d.volume("credentials")
	if creds == nil || creds.Projected == nil {
		t.Fatal("no projected credentials volume")
	}
	var refs []string
	for _, src := range creds.Projected.Sources {
		for _, it := range src.Secret.Items {
			refs = append(refs, src.Secret.Name+"/"+it.Key+"->"+it.Path)
		}
	}
	slices.Sort(refs)
	if w := []string{"es-credentials/api_key->elasticsearch/api-key", "es-credentials/ca.crt->elasticsearch/ca.crt", "loki-credentials/password->loki/password"}; !slices.Equal(refs, w) {
		t.Errorf("credentials volume items = %v, want %v", refs, w)
	}
	if _, err := only[*monitoringv1.ServiceMonitor](objs, ""); err != nil {
		t.Error(err)
	}
	if p := d.path("rules", "policy_file", ""); p != "/etc/audit-shipper/policy.yaml" {
		t.Errorf("rules.policy_file = %q", p)
	}
}

// TestChartChecksumRollsPods: a changed configuration changes the pod
// template, so `helm upgrade` rolls the DaemonSet.
func TestChartChecksumRollsPods(t *testing.T) {
	sum := func(args ...string) string {
		ds, err := only[*appsv1.DaemonSet](render(t, args...), "")
		if err != nil {
			t.Fatal(err)
		}
		return ds.Spec.Template.Annotations["checksum/config"]
	}
	a, b := sum(), sum("--set", "config.log.level=debug")
	if a == "" || a == b {
		t.Errorf("checksum/config %q then %q: a changed configuration must change the pod template", a, b)
	}
}

// TestChartRefuses: values that would deploy a broken shipper are refused
// at render time, with a message that says what to do.
func TestChartRefuses(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		out, err := helmTemplate(t, args...)
		if err == nil {
			t.Errorf("helm template %v rendered (%d bytes); want a refusal naming %q", args, len(out), want)
		} else if !strings.Contains(err.Error(), want) {
			t.Errorf("helm template %v: %v; want it to name %q", args, err, want)
		}
	}
	f("no sink is enabled", "--set", "stdout.enabled=false")
	f("terminationGracePeriodSeconds (25) must be at least", "--set", "terminationGracePeriodSeconds=25")
	f("loki.url is empty", "--set", "loki.enabled=true")
	f("elasticsearch.addresses is empty", "--set", "elasticsearch.enabled=true")
	f("passwordSecret.name", "--set", "loki.enabled=true,loki.url=http://loki:3100/loki/api/v1/push,loki.basicAuth.username=u")
	f("invalid propertyName 'password'", "--set", "loki.extraConfig.password=hunter2")
	f("invalid propertyName 'api_key'", "--set", "elasticsearch.extraConfig.api_key=x")
	f("additional properties 'password' not allowed", "--set", "loki.basicAuth.password=hunter2")
	f("additional properties 'typo' not allowed", "--set", "typo=1")
	f("both enabled", "--set", "metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true")
	f("/audit/directory", "--set", "audit.directory=var/log")
	f("/config/source", "--set", "config.source.path=/etc/shadow")
}

// TestRKE2HelmChart: the manifest an operator drops into RKE2's manifests
// directory decodes strictly, installs the chart version in this
// repository into a namespace Pod Security lets the pod into, and its
// valuesContent renders a sound deployment.
func TestRKE2HelmChart(t *testing.T) {
	objs := readObjects(t, rke2Chart)
	hc, err := only[*helmChart](objs, "audit-shipper")
	if err != nil {
		t.Fatal(err)
	}
	if hc.Namespace != "kube-system" {
		t.Errorf("HelmChart in namespace %q; RKE2's helm-controller watches kube-system", hc.Namespace)
	}
	var meta struct {
		Version string `json:"version"`
	}
	data, err := os.ReadFile(filepath.Join(repo, chart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		t.Fatal(err)
	}
	if want := "https://%{KUBERNETES_API}%/static/charts/audit-shipper-" + meta.Version + ".tgz"; hc.Spec.Chart != want {
		t.Errorf("spec.chart = %q, want %q (the file `helm package` writes for Chart.yaml's version)", hc.Spec.Chart, want)
	}
	if hc.Spec.Bootstrap {
		t.Error("spec.bootstrap is true: the shipper is no bootstrap component")
	}
	ns, err := only[*corev1.Namespace](objs, hc.Spec.TargetNamespace)
	if err != nil {
		t.Fatalf("targetNamespace %q: %v", hc.Spec.TargetNamespace, err)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(hc.Spec.ValuesContent), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := helmTemplate(t, "-f", values, "--namespace", hc.Spec.TargetNamespace)
	if err != nil {
		t.Fatalf("rendering spec.valuesContent: %v", err)
	}
	rendered, err := decode("helm template -f valuesContent", out)
	if err != nil {
		t.Fatal(err)
	}
	expectSound(t, append(rendered, object{source: rke2Chart, gvk: corev1.SchemeGroupVersion.WithKind("Namespace"), obj: ns}))
}
