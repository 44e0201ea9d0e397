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
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const manifests = "deploy/kubernetes"

// optionalManifests are in deploy/kubernetes but not in its
// kustomization: the Prometheus Operator's objects (their CRDs may be
// missing) and the example Secret.
var optionalManifests = []string{"podmonitor.yaml", "secret.example.yaml", "servicemonitor.yaml"}

// TestManifestsDecodeStrictly decodes every file of deploy/kubernetes into
// its typed object (the kustomization into kustomize's own type), and
// checks that each is either a resource of the kustomization or one of the
// documented optional files.
func TestManifestsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repo, manifests, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", manifests, err)
	}
	var k types.Kustomization
	data, err := os.ReadFile(filepath.Join(repo, manifests, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		if name == "kustomization.yaml" {
			continue
		}
		objs := readObjects(t, filepath.Join(manifests, name))
		if len(objs) == 0 {
			t.Errorf("%s holds no object", name)
		}
		if !slices.Contains(k.Resources, name) && !slices.Contains(optionalManifests, name) {
			t.Errorf("%s is neither a resource of kustomization.yaml nor a documented optional manifest", name)
		}
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(repo, manifests, r)); err != nil {
			t.Errorf("kustomization.yaml resource %s: %v", r, err)
		}
	}
}

// TestManifests checks what `kubectl apply -k deploy/kubernetes` applies
// (built here by kustomize's own library), with the optional
// ServiceMonitor, PodMonitor and example Secret added, and runs the
// ConfigMap's configuration through `audit-shipper check`.
func TestManifests(t *testing.T) {
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(repo, manifests))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", manifests, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode("kustomize build "+manifests, out)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Namespace", "PriorityClass", "ServiceAccount", "ConfigMap", "DaemonSet", "Service"} {
		if !slices.ContainsFunc(objs, func(o object) bool { return o.gvk.Kind == kind }) {
			t.Errorf("kustomize build has no %s", kind)
		}
	}
	for _, f := range optionalManifests {
		objs = append(objs, readObjects(t, filepath.Join(manifests, f))...)
	}
	expectSound(t, objs)
}

// TestCheckCatches proves the checks can fail: each case breaks one
// property of the plain manifests, and the checks must name it.
func TestCheckCatches(t *testing.T) {
	files := []string{}
	for _, f := range []string{"namespace.yaml", "priorityclass.yaml", "serviceaccount.yaml", "configmap.yaml", "daemonset.yaml", "service.yaml", "servicemonitor.yaml", "podmonitor.yaml", "secret.example.yaml"} {
		files = append(files, filepath.Join(manifests, f))
	}
	type env struct {
		objs []object
		ds   *appsv1.DaemonSet
		pod  *corev1.PodSpec
		c    *corev1.Container
		cm   *corev1.ConfigMap
	}
	vol := func(e env, name string) *corev1.Volume {
		for i := range e.pod.Volumes {
			if e.pod.Volumes[i].Name == name {
				return &e.pod.Volumes[i]
			}
		}
		t.Fatalf("no volume %s", name)
		return nil
	}
	mount := func(e env, name string) *corev1.VolumeMount {
		for i := range e.c.VolumeMounts {
			if e.c.VolumeMounts[i].Name == name {
				return &e.c.VolumeMounts[i]
			}
		}
		t.Fatalf("no volumeMount %s", name)
		return nil
	}
	f := func(want string, breakIt func(e env)) {
		t.Helper()
		objs := readObjects(t, files...)
		ds, _ := only[*appsv1.DaemonSet](objs, "")
		cm, _ := only[*corev1.ConfigMap](objs, "audit-shipper")
		e := env{objs, ds, &ds.Spec.Template.Spec, &ds.Spec.Template.Spec.Containers[0], cm}
		breakIt(e)
		setEnv(t, ds)
		probs, _ := checkDeployment(objs, t.TempDir())
		for _, p := range probs {
			if strings.Contains(p, want) {
				return
			}
		}
		t.Errorf("broken for %q, but the checks said: %q", want, probs)
	}
	f("must be mounted read-only", func(e env) { mount(e, "audit-log").ReadOnly = false })
	f("DIRECTORY", func(e env) {
		vol(e, "audit-log").HostPath.Path = "/var/log/kubernetes/audit/audit.log"
		mount(e, "audit-log").MountPath = "/var/log/kubernetes/audit/audit.log"
	})
	f("DIRECTORY", func(e env) { vol(e, "audit-log").HostPath.Path = "/var/lib/rancher/rke2/server/logs" })
	f("type Directory", func(e env) { vol(e, "audit-log").HostPath.Type = nil })
	f("writable hostPath", func(e env) { mount(e, "state").ReadOnly = true })
	f("writable hostPath", func(e env) {
		vol(e, "state").HostPath = nil
		vol(e, "state").EmptyDir = &corev1.EmptyDirVolumeSource{}
	})
	f("capabilities.add", func(e env) {
		e.c.SecurityContext.Capabilities.Add = append(e.c.SecurityContext.Capabilities.Add, "SYS_ADMIN")
	})
	f("capabilities.drop", func(e env) { e.c.SecurityContext.Capabilities.Drop = nil })
	f("a non-root process gets no capability", func(e env) {
		uid := int64(65532)
		nonRoot := true
		e.c.SecurityContext.RunAsUser, e.c.SecurityContext.RunAsNonRoot = &uid, &nonRoot
	})
	f("readOnlyRootFilesystem", func(e env) { e.c.SecurityContext.ReadOnlyRootFilesystem = nil })
	f("allowPrivilegeEscalation", func(e env) { yes := true; e.c.SecurityContext.AllowPrivilegeEscalation = &yes })
	f("seccompProfile", func(e env) { e.c.SecurityContext.SeccompProfile, e.pod.SecurityContext = nil, nil })
	f("node-role.kubernetes.io/etcd", func(e env) {
		e.pod.Tolerations = slices.DeleteFunc(e.pod.Tolerations, func(tol corev1.Toleration) bool { return tol.Key == "node-role.kubernetes.io/etcd" })
	})
	f("CriticalAddonsOnly", func(e env) { e.pod.Tolerations[0].Effect = corev1.TaintEffectNoSchedule })
	f("nodeSelector", func(e env) { e.pod.NodeSelector = nil })
	f("nodeSelector", func(e env) { e.pod.NodeSelector["node-role.kubernetes.io/worker"] = "true" })
	f("readinessProbe path", func(e env) { e.c.ReadinessProbe.HTTPGet.Path = "/healthz" })
	f("livenessProbe port", func(e env) { e.c.LivenessProbe.HTTPGet.Port = intstr.FromString("http") })
	f("probe port", func(e env) { e.c.Ports[0].ContainerPort = 8080 })
	f("maxSurge", func(e env) { one := intstr.FromInt32(1); e.ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge = &one })
	f("maxUnavailable", func(e env) { two := intstr.FromInt32(2); e.ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &two })
	f("terminationGracePeriodSeconds", func(e env) { g := int64(20); e.pod.TerminationGracePeriodSeconds = &g })
	f("memory limit", func(e env) { e.c.Resources.Limits[corev1.ResourceMemory] = resource.MustParse("96Mi") })
	f("resources must request", func(e env) { delete(e.c.Resources.Requests, corev1.ResourceCPU) })
	f("priorityClassName", func(e env) { e.pod.PriorityClassName = "" })
	f("priorityClassName", func(e env) { e.pod.PriorityClassName = "missing" })
	f("automountServiceAccountToken", func(e env) { e.pod.AutomountServiceAccountToken = nil })
	f("NODE_NAME", func(e env) { e.c.Env = e.c.Env[1:] })
	f("credential in the ConfigMap", func(e env) {
		e.cm.Data["config.yaml"] = strings.Replace(e.cm.Data["config.yaml"], "password_file: /var/run/secrets/audit-shipper/loki-password", "password: hunter2", 1)
	})
	f("not in a Secret volume", func(e env) {
		e.cm.Data["config.yaml"] = strings.Replace(e.cm.Data["config.yaml"], "/var/run/secrets/audit-shipper/loki-password", "/etc/audit-shipper/loki-password", 1)
	})
	f("no volume item provides", func(e env) { vol(e, "credentials").Secret.Items = vol(e, "credentials").Secret.Items[:1] })
	f("under no volume mount", func(e env) {
		e.cm.Data["config.yaml"] = strings.Replace(e.cm.Data["config.yaml"], "/var/lib/audit-shipper/positions.json", "/data/positions.json", 1)
	})
	f("subPath", func(e env) { mount(e, "config").SubPath = "config.yaml" })
	f("inside", func(e env) { mount(e, "credentials").MountPath = "/etc/audit-shipper/secrets" })
	f("targetPort", func(e env) {
		svc, _ := only[*corev1.Service](e.objs, "")
		svc.Spec.Ports[0].TargetPort = intstr.FromString("http")
	})
	f("pod-security.kubernetes.io/enforce=privileged", func(e env) {
		ns, _ := only[*corev1.Namespace](e.objs, "")
		delete(ns.Labels, "pod-security.kubernetes.io/enforce")
	})
	f("the configuration does not load", func(e env) {
		e.cm.Data["config.yaml"] = strings.Replace(e.cm.Data["config.yaml"], "start_at: beginning", "start_at: now", 1)
	})
	f("has no key", func(e env) {
		s, _ := only[*corev1.Secret](e.objs, "")
		delete(s.StringData, "es-api-key")
	})
}

// TestShipperCheckCatches proves the configuration really goes through
// `audit-shipper check`: a sink key only the sink validates, broken in the
// ConfigMap, must be refused with exit code 2.
func TestShipperCheckCatches(t *testing.T) {
	objs := readObjects(t, filepath.Join(manifests, "configmap.yaml"), filepath.Join(manifests, "daemonset.yaml"), filepath.Join(manifests, "serviceaccount.yaml"), filepath.Join(manifests, "priorityclass.yaml"))
	cm, _ := only[*corev1.ConfigMap](objs, "audit-shipper")
	cm.Data["config.yaml"] = strings.Replace(cm.Data["config.yaml"], "url: http://", "url: ftp://", 1)
	ds, _ := only[*appsv1.DaemonSet](objs, "")
	setEnv(t, ds)
	_, cfgFile := checkDeployment(objs, t.TempDir())
	out, err := exec.Command(shipperBin, "check", "--config", cfgFile).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "url") {
		t.Fatalf("audit-shipper check on a loki url with scheme ftp: %v, %s; want exit 2 naming the url", err, out)
	}
}
