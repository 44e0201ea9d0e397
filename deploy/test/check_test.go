package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/audit-shipper/audit-shipper/config"
)

// rke2ServerTaints are the taints an RKE2 server node may carry: the one
// RKE2 advises for dedicated servers (node-taint in config.yaml), and those
// of split-role clusters (control-plane only, etcd only).
var rke2ServerTaints = []corev1.Taint{
	{Key: "CriticalAddonsOnly", Value: "true", Effect: corev1.TaintEffectNoExecute},
	{Key: "node-role.kubernetes.io/control-plane", Value: "true", Effect: corev1.TaintEffectNoSchedule},
	{Key: "node-role.kubernetes.io/etcd", Value: "true", Effect: corev1.TaintEffectNoExecute},
}

// rke2ServerLabels are the role labels RKE2 puts on every server node.
var rke2ServerLabels = labels.Set{
	"node-role.kubernetes.io/control-plane": "true",
	"node-role.kubernetes.io/etcd":          "true",
	"node-role.kubernetes.io/master":        "true",
}

// idleFootprint is the shipper's memory with nothing in flight: measured
// at 63 MiB (VmRSS) after catching up a 300,000-event backlog into two
// sinks (docs/deploy-rke2.md, "Resources"). The memory limit must hold it
// plus every sink's max_inflight_bytes.
const idleFootprint = 64 << 20

// secretKeys are the configuration keys that hold a credential; each has a
// *_file form.
var secretKeys = []string{"password", "bearer_token", "api_key"}

// problems collects what is wrong with a deployment, so that one run
// reports everything and the mutation tests can look for one message.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// deployment is the shipper's pod as one way of installing it creates it.
type deployment struct {
	objs []object
	ds   *appsv1.DaemonSet
	pod  *corev1.PodSpec
	c    *corev1.Container
	// configPath is the --config argument, configText the file the
	// container finds there, tree its generic form.
	configPath string
	configText string
	tree       map[string]any
}

// checkDeployment returns what keeps objs from being a correct deployment
// of the shipper on RKE2 server nodes, and the configuration file laid out
// under root (as the kubelet would lay out the container's volumes) for
// `audit-shipper check`. The caller's environment must hold the
// container's variables (setEnv).
func checkDeployment(objs []object, root string) (problems, string) {
	var p problems
	d := p.find(objs)
	if d == nil {
		return p, ""
	}
	p.scheduling(d)
	p.security(d)
	p.container(d)
	p.credentials(d)
	p.wiring(d)
	p.mounts(d)
	cfgFile, err := d.materialize(root)
	if err != nil {
		p.add("laying out the container's files: %v", err)
		return p, ""
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		p.add("the configuration does not load: %v", err)
		return p, cfgFile
	}
	p.withConfig(d, cfg, root)
	return p, cfgFile
}

// find picks out the DaemonSet, its container and its configuration.
func (p *problems) find(objs []object) *deployment {
	ds, err := only[*appsv1.DaemonSet](objs, "")
	if err != nil {
		p.add("%v", err)
		return nil
	}
	d := &deployment{objs: objs, ds: ds, pod: &ds.Spec.Template.Spec}
	if n := len(d.pod.Containers); n != 1 || len(d.pod.InitContainers) > 0 {
		p.add("the pod has %d containers and %d init containers; want the shipper alone", n, len(d.pod.InitContainers))
		return nil
	}
	d.c = &d.pod.Containers[0]
	args := append(slices.Clone(d.c.Command), d.c.Args...)
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			d.configPath = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			d.configPath = v
		}
	}
	if len(args) == 0 || args[0] != "run" || d.configPath == "" {
		p.add("container args %q: want run --config FILE", args)
		return nil
	}
	m, vol := d.mountOf(d.configPath)
	if vol == nil || vol.ConfigMap == nil {
		p.add("--config %s is not in a configMap volume", d.configPath)
		return nil
	}
	cm, err := only[*corev1.ConfigMap](objs, vol.ConfigMap.Name)
	if err != nil {
		p.add("the config volume's ConfigMap: %v", err)
		return nil
	}
	key := keyAt(vol.ConfigMap.Items, strings.TrimPrefix(d.configPath, m.MountPath+"/"))
	text, ok := cm.Data[key]
	if !ok {
		p.add("ConfigMap %s has no key %q for --config %s", cm.Name, key, d.configPath)
		return nil
	}
	d.configText = text
	if err := yaml.Unmarshal([]byte(text), &d.tree); err != nil {
		p.add("the configuration in ConfigMap %s is not YAML: %v", cm.Name, err)
		return nil
	}
	return d
}

// keyAt is the ConfigMap or Secret key a volume shows at path.
func keyAt(items []corev1.KeyToPath, path string) string {
	for _, it := range items {
		if it.Path == path {
			return it.Key
		}
	}
	if len(items) > 0 {
		return "" // listed items only
	}
	return path
}

// mountOf returns the container's mount holding path, the deepest one,
// and its volume.
func (d *deployment) mountOf(path string) (*corev1.VolumeMount, *corev1.Volume) {
	var best *corev1.VolumeMount
	for i := range d.c.VolumeMounts {
		m := &d.c.VolumeMounts[i]
		if within(path, m.MountPath) && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = m
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, d.volume(best.Name)
}

func (d *deployment) volume(name string) *corev1.Volume {
	for i := range d.pod.Volumes {
		if d.pod.Volumes[i].Name == name {
			return &d.pod.Volumes[i]
		}
	}
	return nil
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

func (p *problems) scheduling(d *deployment) {
	ds := d.ds
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(ds.Spec.Template.Labels)) {
		p.add("the DaemonSet's selector %v does not select its own pods (labels %v)", ds.Spec.Selector, ds.Spec.Template.Labels)
	}
	us := ds.Spec.UpdateStrategy
	switch {
	case us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil:
		p.add("updateStrategy must be RollingUpdate with maxUnavailable 1, got %+v", us)
	default:
		if mu := us.RollingUpdate.MaxUnavailable; mu == nil || *mu != intstr.FromInt32(1) {
			p.add("updateStrategy.rollingUpdate.maxUnavailable must be 1 (one server node at a time), got %v", mu)
		}
		if ms := us.RollingUpdate.MaxSurge; ms != nil && ms.IntValue() != 0 {
			p.add("updateStrategy.rollingUpdate.maxSurge must be 0: two pods on one node would share the positions file, got %v", ms)
		}
	}
	if d.pod.NodeSelector["node-role.kubernetes.io/control-plane"] != "true" {
		p.add(`nodeSelector must hold node-role.kubernetes.io/control-plane: "true" (RKE2 server nodes), got %v`, d.pod.NodeSelector)
	}
	if !labels.SelectorFromSet(d.pod.NodeSelector).Matches(rke2ServerLabels) {
		p.add("nodeSelector %v does not match an RKE2 server node's labels %v", d.pod.NodeSelector, rke2ServerLabels)
	}
	for _, taint := range rke2ServerTaints {
		if !slices.ContainsFunc(d.pod.Tolerations, func(tol corev1.Toleration) bool {
			return tol.ToleratesTaint(klog.Background(), &taint, false)
		}) {
			p.add("no toleration for RKE2's server taint %s", taint.ToString())
		}
	}
	pc := d.pod.PriorityClassName
	switch {
	case pc == "":
		p.add("priorityClassName is empty: a full control-plane node would not make room for the shipper")
	case strings.HasPrefix(pc, "system-"):
	default:
		c, err := only[*schedulingv1.PriorityClass](d.objs, pc)
		if err != nil {
			p.add("priorityClassName %s: %v", pc, err)
		} else if c.Value <= 0 || c.Value > 1_000_000_000 || c.GlobalDefault {
			p.add("PriorityClass %s: value %d, globalDefault %v; want a positive user value (at most 1e9), not the default", pc, c.Value, c.GlobalDefault)
		}
	}
	if d.pod.TerminationGracePeriodSeconds == nil {
		p.add("terminationGracePeriodSeconds is not set")
	}
}

func (p *problems) security(d *deployment) {
	pod, c := d.pod, d.c
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		p.add("the pod shares the host's network, PID or IPC namespace; it needs none")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		p.add("automountServiceAccountToken must be false: the shipper never calls the Kubernetes API")
	}
	if _, err := only[*corev1.ServiceAccount](d.objs, pod.ServiceAccountName); pod.ServiceAccountName == "" || err != nil {
		p.add("serviceAccountName %q: %v", pod.ServiceAccountName, err)
	}
	sc := c.SecurityContext
	if sc == nil {
		p.add("the container has no securityContext")
		return
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && pod.SecurityContext != nil {
		seccomp = pod.SecurityContext.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.add("seccompProfile must be RuntimeDefault, got %v", seccomp)
	}
	if sc.Privileged != nil && *sc.Privileged {
		p.add("the container is privileged")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.add("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		p.add("readOnlyRootFilesystem must be true")
	}
	caps := sc.Capabilities
	if caps == nil || !slices.Contains(caps.Drop, "ALL") {
		p.add("capabilities.drop must hold ALL")
	}
	if caps == nil || len(caps.Add) != 1 || caps.Add[0] != "DAC_READ_SEARCH" {
		p.add("capabilities.add must be exactly [DAC_READ_SEARCH] (the audit log is root's, mode 0600), got %v", caps)
	}
	// The documented choice: root holding that one capability. A non-root
	// process gets no capability in Kubernetes (no ambient capabilities,
	// and file capabilities need privilege escalation), so it could not
	// read the audit log at all.
	if (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		p.add("runAsUser must be 0 with runAsNonRoot false: a non-root process gets no capability in Kubernetes and could not read the root-only audit log (docs/deploy-rke2.md)")
	}
}

func (p *problems) container(d *deployment) {
	c := d.c
	if img := c.Image; img == "" || strings.HasSuffix(img, ":latest") || (!strings.Contains(img, "@sha256:") && !strings.Contains(img[strings.LastIndex(img, "/")+1:], ":")) {
		p.add("image %q: pin a tag or digest", img)
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
		p.add("resources must request cpu and memory and limit memory, got %v", c.Resources)
	} else if req.Memory().Cmp(*lim.Memory()) > 0 {
		p.add("memory request %v is above the limit %v", req.Memory(), lim.Memory())
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		p.add("env NODE_NAME must come from spec.nodeName: the sinks label every event with the node it came from")
	}
	for _, probe := range []struct {
		name string
		pr   *corev1.Probe
		path string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if probe.pr == nil || probe.pr.HTTPGet == nil {
			p.add("%s must be an HTTP GET of %s", probe.name, probe.path)
			continue
		}
		if probe.pr.HTTPGet.Path != probe.path {
			p.add("%s path is %q, want %s", probe.name, probe.pr.HTTPGet.Path, probe.path)
		}
		if _, ok := d.containerPort(probe.pr.HTTPGet.Port); !ok {
			p.add("%s port %v is not a port of the container", probe.name, probe.pr.HTTPGet.Port.String())
		}
	}
	for _, m := range c.VolumeMounts {
		if d.volume(m.Name) == nil {
			p.add("volumeMount %s names no volume", m.Name)
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			p.add("volumeMount %s uses subPath: the kubelet never updates such a file, so a changed ConfigMap or Secret would not reach the shipper", m.Name)
		}
		for _, outer := range c.VolumeMounts {
			v := d.volume(outer.Name)
			if outer.MountPath != m.MountPath && within(m.MountPath, outer.MountPath) && v != nil && (v.ConfigMap != nil || v.Secret != nil || v.Projected != nil) {
				p.add("volumeMount %s (%s) is inside %s (%s), a read-only volume where its mount point cannot be made", m.Name, m.MountPath, outer.Name, outer.MountPath)
			}
		}
	}
}

// containerPort resolves a probe's or Service's port to the container's.
func (d *deployment) containerPort(port intstr.IntOrString) (int32, bool) {
	for _, cp := range d.c.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// credentials: no credential is written in a ConfigMap; each comes from a
// Secret, as a file of a Secret volume or as ${VAR} from a secretKeyRef.
func (p *problems) credentials(d *deployment) {
	for _, cm := range all[*corev1.ConfigMap](d.objs) {
		for k, v := range cm.Data {
			if strings.Contains(v, "PRIVATE KEY-----") {
				p.add("ConfigMap %s key %s holds a private key: it belongs in a Secret", cm.Name, k)
			}
		}
	}
	walk(d.tree, "", func(key string, v any) {
		name := key[strings.LastIndex(key, ".")+1:]
		s, _ := v.(string)
		switch {
		case slices.Contains(secretKeys, name) && s != "":
			env, ok := wholeEnvRef(s)
			if !ok || !d.envFromSecret(env) {
				p.add("credential in the ConfigMap: %s is written there; use %s_file with a Secret volume, or ${VAR} with VAR from a secretKeyRef", key, name)
			}
		case strings.HasPrefix(key, "sinks[") && strings.HasSuffix(name, "_file") && name != "ca_file" && s != "":
			// Credentials and private keys: from a Secret only. (A CA
			// bundle is public and may come from anywhere.)
			_, vol := d.mountOf(s)
			if vol == nil || !(vol.Secret != nil || (vol.Projected != nil && projectsSecret(vol.Projected, s, d))) {
				p.add("%s: %s is not in a Secret volume", key, s)
			}
		}
	})
}

func projectsSecret(pv *corev1.ProjectedVolumeSource, path string, d *deployment) bool {
	m, _ := d.mountOf(path)
	rel := strings.TrimPrefix(path, m.MountPath+"/")
	for _, src := range pv.Sources {
		if src.Secret != nil && slices.ContainsFunc(src.Secret.Items, func(it corev1.KeyToPath) bool { return it.Path == rel }) {
			return true
		}
	}
	return false
}

var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

func wholeEnvRef(s string) (string, bool) {
	m := envRef.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	return m[1], true
}

func (d *deployment) envFromSecret(name string) bool {
	return slices.ContainsFunc(d.c.Env, func(e corev1.EnvVar) bool {
		return e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	})
}

// walk calls f for every scalar of a decoded YAML tree with its dotted key.
func walk(v any, key string, f func(key string, v any)) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			walk(c, strings.TrimPrefix(key+"."+k, "."), f)
		}
	case []any:
		for i, c := range t {
			walk(c, fmt.Sprintf("%s[%d]", key, i), f)
		}
	default:
		f(key, v)
	}
}

// wiring: the Service, the monitors and the namespace fit the pod.
func (p *problems) wiring(d *deployment) {
	podLabels := labels.Set(d.ds.Spec.Template.Labels)
	ns := d.ds.Namespace
	for _, o := range d.objs {
		if _, cluster := o.obj.(*schedulingv1.PriorityClass); cluster {
			continue
		}
		if n, isNS := o.obj.(*corev1.Namespace); isNS {
			if n.Name != ns {
				p.add("Namespace %s is not the DaemonSet's namespace %s", n.Name, ns)
			}
			if n.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
				p.add("Namespace %s must be labelled pod-security.kubernetes.io/enforce=privileged: hostPath and DAC_READ_SEARCH are refused by baseline and restricted", n.Name)
			}
			continue
		}
		if o.obj.GetNamespace() != ns {
			p.add("%v is not in the DaemonSet's namespace %q", o, ns)
		}
	}
	services := all[*corev1.Service](d.objs)
	for _, svc := range services {
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Selector) == 0 {
			p.add("Service %s selects %v, not the shipper's pods %v", svc.Name, svc.Spec.Selector, podLabels)
		}
		for _, sp := range svc.Spec.Ports {
			if _, ok := d.containerPort(sp.TargetPort); !ok {
				p.add("Service %s port %s: targetPort %s is not a port of the container", svc.Name, sp.Name, sp.TargetPort.String())
			}
		}
	}
	for _, sm := range all[*monitoringv1.ServiceMonitor](d.objs) {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		var svc *corev1.Service
		for _, s := range services {
			if err == nil && !sel.Empty() && sel.Matches(labels.Set(s.Labels)) {
				svc = s
			}
		}
		if svc == nil {
			p.add("ServiceMonitor %s selects no Service of the shipper", sm.Name)
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == ep.Port }) || ep.Path != "/metrics" {
				p.add("ServiceMonitor %s endpoint %s%s is not Service %s's metrics port and /metrics", sm.Name, ep.Port, ep.Path, svc.Name)
			}
		}
	}
	for _, pm := range all[*monitoringv1.PodMonitor](d.objs) {
		sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(podLabels) {
			p.add("PodMonitor %s does not select the shipper's pods", pm.Name)
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port == nil {
				p.add("PodMonitor %s endpoint has no port name", pm.Name)
			} else if _, ok := d.containerPort(intstr.FromString(*ep.Port)); !ok || ep.Path != "/metrics" {
				p.add("PodMonitor %s endpoint %s%s is not the container's metrics port and /metrics", pm.Name, *ep.Port, ep.Path)
			}
		}
	}
}

// withConfig checks the pod against the configuration it runs: the
// mounts under its paths, its port, its shutdown deadline, its memory.
// mounts checks the volumes under the configuration's paths (defaults
// where the file leaves them out).
func (p *problems) mounts(d *deployment) {
	def := config.Default()
	src := d.path("source", "path", def.Source.Path)
	auditDir := filepath.Dir(src)
	m, vol := d.mountOf(src)
	switch {
	case vol == nil || vol.HostPath == nil:
		p.add("source.path %s is not on a hostPath volume", src)
	default:
		if m.MountPath != auditDir || vol.HostPath.Path != auditDir {
			p.add("the audit log's DIRECTORY %s must be mounted from the same host directory (a file mount pins the inode the apiserver renames away at rotation): mount %s from host %s", auditDir, m.MountPath, vol.HostPath.Path)
		}
		if !m.ReadOnly {
			p.add("the audit directory %s must be mounted read-only", m.MountPath)
		}
		if vol.HostPath.Type == nil || *vol.HostPath.Type != corev1.HostPathDirectory {
			p.add("the audit hostPath %s must have type Directory, got %v", vol.HostPath.Path, vol.HostPath.Type)
		}
	}
	for key, path := range map[string]string{
		"source.positions_file": d.path("source", "positions_file", def.Source.PositionsFile),
		"dead_letter.path":      d.path("dead_letter", "path", def.DeadLetter.Path),
	} {
		m, vol := d.mountOf(path)
		if vol == nil || vol.HostPath == nil || m.ReadOnly || within(auditDir, m.MountPath) {
			p.add("%s %s must be on a writable hostPath of its own, so it survives restarts and upgrades", key, path)
		} else if t := vol.HostPath.Type; t == nil || (*t != corev1.HostPathDirectoryOrCreate && *t != corev1.HostPathDirectory) {
			p.add("the state hostPath %s must have type DirectoryOrCreate, got %v", vol.HostPath.Path, t)
		}
	}
}

// path is the configuration's section.key, or def when it is not set.
func (d *deployment) path(section, key, def string) string {
	if sec, ok := d.tree[section].(map[string]any); ok {
		if v, ok := sec[key].(string); ok && v != "" {
			return v
		}
	}
	return def
}

// withConfig checks the pod against the configuration it runs: its port,
// its shutdown deadline, its memory, its credential files.
func (p *problems) withConfig(d *deployment, cfg *config.Config, root string) {
	if _, port, err := net.SplitHostPort(cfg.Metrics.Listen); err != nil {
		p.add("metrics.listen %q: the probes need the metrics listener", cfg.Metrics.Listen)
	} else {
		for _, pr := range []*corev1.Probe{d.c.LivenessProbe, d.c.ReadinessProbe} {
			if pr != nil && pr.HTTPGet != nil {
				if n, _ := d.containerPort(pr.HTTPGet.Port); strconv.Itoa(int(n)) != port {
					p.add("probe port %s is %d, but metrics.listen is %s", pr.HTTPGet.Port.String(), n, cfg.Metrics.Listen)
				}
			}
		}
	}
	if g := d.pod.TerminationGracePeriodSeconds; g != nil {
		if grace, need := time.Duration(*g)*time.Second, cfg.Shutdown.Timeout.D()+10*time.Second; grace < need {
			p.add("terminationGracePeriodSeconds %d must be at least shutdown.timeout (%v) + 10s, so the positions are saved before SIGKILL", *g, cfg.Shutdown.Timeout.D())
		}
	}
	var inflight int64
	for _, s := range cfg.Sinks {
		inflight += int64(s.MaxInflightBytes)
	}
	if lim := d.c.Resources.Limits.Memory(); !lim.IsZero() && lim.Value() < inflight+idleFootprint {
		p.add("memory limit %v is below the sinks' max_inflight_bytes (%d MiB) plus the idle footprint (%d MiB)", lim, inflight>>20, idleFootprint>>20)
	}
	walk(d.tree, "", func(key string, v any) {
		if s, ok := v.(string); ok && strings.HasPrefix(key, "sinks[") && strings.HasSuffix(key, "_file") && s != "" {
			if fi, err := os.Stat(filepath.Join(root, s)); err != nil || !fi.Mode().IsRegular() {
				p.add("%s: no volume item provides %s", key, s)
			}
		}
	})
}

// materialize lays out the container's volumes under root as the kubelet
// would (ConfigMap and Secret items as files, hostPaths and emptyDirs as
// directories), writes the configuration with every path moved under
// root, and returns that file. Secret files get a placeholder fit for the
// key that reads them (a PEM certificate for tls.ca_file).
func (d *deployment) materialize(root string) (string, error) {
	roles := map[string]string{} // container path -> config key naming it
	var outside []string
	rewritten := rewrite(d.tree, "", func(key, s string) string {
		if !strings.HasPrefix(s, "/") {
			return s
		}
		if m, _ := d.mountOf(s); m == nil {
			outside = append(outside, key+"="+s)
		}
		roles[s] = key
		return filepath.Join(root, s)
	})
	if len(outside) > 0 {
		return "", fmt.Errorf("configuration paths under no volume mount (the image's root file system holds nothing there): %v", outside)
	}
	write := func(path string, data []byte) error {
		path = filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		return os.WriteFile(path, data, 0o600)
	}
	placeholder := func(path string) []byte {
		key := roles[path]
		switch {
		case strings.HasSuffix(key, "ca_file"), strings.HasSuffix(key, "cert_file"):
			return testCertPEM
		case strings.HasSuffix(key, "key_file"):
			return testKeyPEM
		}
		return []byte("placeholder-credential\n")
	}
	for _, m := range d.c.VolumeMounts {
		v := d.volume(m.Name)
		if v == nil {
			return "", fmt.Errorf("volumeMount %s names no volume", m.Name)
		}
		switch {
		case v.HostPath != nil, v.EmptyDir != nil:
			if err := os.MkdirAll(filepath.Join(root, m.MountPath), 0o755); err != nil {
				return "", err
			}
		case v.ConfigMap != nil:
			if err := d.writeConfigMap(v.ConfigMap.Name, v.ConfigMap.Items, m.MountPath, write); err != nil {
				return "", err
			}
		case v.Secret != nil:
			if len(v.Secret.Items) == 0 {
				return "", fmt.Errorf("secret volume %s lists no items: list them, so a missing key stops the pod with a clear event", v.Name)
			}
			if err := d.secretHas(v.Secret.SecretName, v.Secret.Items); err != nil {
				return "", err
			}
			for _, it := range v.Secret.Items {
				f := m.MountPath + "/" + it.Path
				if err := write(f, placeholder(f)); err != nil {
					return "", err
				}
			}
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				switch {
				case src.Secret != nil:
					if err := d.secretHas(src.Secret.Name, src.Secret.Items); err != nil {
						return "", err
					}
					for _, it := range src.Secret.Items {
						f := m.MountPath + "/" + it.Path
						if err := write(f, placeholder(f)); err != nil {
							return "", err
						}
					}
				case src.ConfigMap != nil:
					if err := d.writeConfigMap(src.ConfigMap.Name, src.ConfigMap.Items, m.MountPath, write); err != nil {
						return "", err
					}
				default:
					return "", fmt.Errorf("projected volume %s: a source of a kind this test does not lay out", v.Name)
				}
			}
		default:
			return "", fmt.Errorf("volume %s: a kind this test does not lay out", v.Name)
		}
	}
	// The live audit log, root-only as kube-apiserver writes it (unless
	// the mount is broken and a directory stands there).
	src := d.path("source", "path", config.Default().Source.Path)
	if fi, err := os.Stat(filepath.Join(root, src)); err != nil || !fi.IsDir() {
		if err := write(src, nil); err != nil {
			return "", err
		}
	}
	out, err := yaml.Marshal(rewritten)
	if err != nil {
		return "", err
	}
	cfgFile := filepath.Join(root, "check-config.yaml")
	return cfgFile, os.WriteFile(cfgFile, out, 0o600)
}

// secretHas checks, when the Secret is among the objects (an example
// Secret), that it holds every key the volume lists: the kubelet would
// refuse to start the pod otherwise.
func (d *deployment) secretHas(name string, items []corev1.KeyToPath) error {
	s, err := only[*corev1.Secret](d.objs, name)
	if err != nil {
		return nil // created by the operator, not shipped here
	}
	for _, it := range items {
		_, inData := s.Data[it.Key]
		_, inString := s.StringData[it.Key]
		if !inData && !inString {
			return fmt.Errorf("Secret %s has no key %q, which the credentials volume lists", name, it.Key)
		}
	}
	return nil
}

func (d *deployment) writeConfigMap(name string, items []corev1.KeyToPath, dir string, write func(string, []byte) error) error {
	cm, err := only[*corev1.ConfigMap](d.objs, name)
	if err != nil {
		return fmt.Errorf("configMap volume: %w", err)
	}
	if len(items) == 0 {
		for k := range cm.Data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	for _, it := range items {
		data, ok := cm.Data[it.Key]
		if !ok {
			return fmt.Errorf("ConfigMap %s has no key %q", name, it.Key)
		}
		if err := write(dir+"/"+it.Path, []byte(data)); err != nil {
			return err
		}
	}
	return nil
}

// rewrite returns a copy of a decoded YAML tree with f applied to every
// string.
func rewrite(v any, key string, f func(key, s string) string) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, c := range t {
			out[k] = rewrite(c, strings.TrimPrefix(key+"."+k, "."), f)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, c := range t {
			out[i] = rewrite(c, fmt.Sprintf("%s[%d]", key, i), f)
		}
		return out
	case string:
		return f(key, t)
	}
	return v
}

// setEnv gives the test process the container's environment, for
// config.Load and `audit-shipper check` (${VAR} in the configuration).
func setEnv(t *testing.T, d *appsv1.DaemonSet) {
	t.Helper()
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		v := e.Value
		if f := e.ValueFrom; f != nil {
			switch {
			case f.FieldRef != nil:
				v = "rke2-server-1"
			case f.ResourceFieldRef != nil:
				q := d.Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceName(strings.TrimPrefix(f.ResourceFieldRef.Resource, "limits."))]
				v = strconv.FormatInt(q.Value(), 10)
			default:
				v = "placeholder-credential"
			}
		}
		t.Setenv(e.Name, v)
	}
}

// testCertPEM and testKeyPEM stand in for CA bundles and client keys
// mounted from Secrets: the sinks parse them at start.
var testCertPEM, testKeyPEM = func() ([]byte, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "deploy-test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}()
