// Package deploy tests the deployment material of audit-shipper: the plain
// manifests, the Helm chart, the RKE2 HelmChart, the Dockerfile and the
// systemd unit. Nothing here needs a cluster: every object is decoded
// strictly into the typed objects of k8s.io/api (an unknown or misspelt
// field is an error, as kubectl apply --validate=strict would say), its
// wiring is checked (volumes, ports, selectors, Secrets), and the
// configuration each way of deploying carries is run through the real
// `audit-shipper check` on a file tree laid out as the kubelet would.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object is one decoded Kubernetes document and where it came from.
type object struct {
	source string // file or command, and the document's index
	gvk    schema.GroupVersionKind
	obj    metav1.Object // a pointer to the typed object
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.gvk.Kind, o.obj.GetNamespace(), o.obj.GetName(), o.source)
}

// kinds are the objects the deployment material may hold, each with its
// typed Go struct. A kind not listed here is an error: nothing is decoded
// into a map where a typo would pass.
var kinds = map[schema.GroupVersionKind]func() metav1.Object{
	corev1.SchemeGroupVersion.WithKind("Namespace"):                                    func() metav1.Object { return &corev1.Namespace{} },
	corev1.SchemeGroupVersion.WithKind("ServiceAccount"):                               func() metav1.Object { return &corev1.ServiceAccount{} },
	corev1.SchemeGroupVersion.WithKind("ConfigMap"):                                    func() metav1.Object { return &corev1.ConfigMap{} },
	corev1.SchemeGroupVersion.WithKind("Secret"):                                       func() metav1.Object { return &corev1.Secret{} },
	corev1.SchemeGroupVersion.WithKind("Service"):                                      func() metav1.Object { return &corev1.Service{} },
	appsv1.SchemeGroupVersion.WithKind("DaemonSet"):                                    func() metav1.Object { return &appsv1.DaemonSet{} },
	schedulingv1.SchemeGroupVersion.WithKind("PriorityClass"):                          func() metav1.Object { return &schedulingv1.PriorityClass{} },
	monitoringv1.SchemeGroupVersion.WithKind("ServiceMonitor"):                         func() metav1.Object { return &monitoringv1.ServiceMonitor{} },
	monitoringv1.SchemeGroupVersion.WithKind("PodMonitor"):                             func() metav1.Object { return &monitoringv1.PodMonitor{} },
	schema.GroupVersionKind{Group: "helm.cattle.io", Version: "v1", Kind: "HelmChart"}: func() metav1.Object { return &helmChart{} },
}

// helmChart is helm.cattle.io/v1 HelmChart, the object RKE2's (and k3s')
// helm-controller installs charts from. Its module
// (github.com/k3s-io/helm-controller) is not one this machine can fetch, so
// its spec is written out here from the controller's API; a field the
// controller does not have is still an error.
type helmChart struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              helmChartSpec `json:"spec,omitempty"`
}

type helmChartSpec struct {
	TargetNamespace       string                        `json:"targetNamespace,omitempty"`
	CreateNamespace       bool                          `json:"createNamespace,omitempty"`
	Chart                 string                        `json:"chart,omitempty"`
	Version               string                        `json:"version,omitempty"`
	Repo                  string                        `json:"repo,omitempty"`
	RepoCA                string                        `json:"repoCA,omitempty"`
	RepoCAConfigMap       *corev1.LocalObjectReference  `json:"repoCAConfigMap,omitempty"`
	Set                   map[string]intstr.IntOrString `json:"set,omitempty"`
	ValuesContent         string                        `json:"valuesContent,omitempty"`
	HelmVersion           string                        `json:"helmVersion,omitempty"`
	Bootstrap             bool                          `json:"bootstrap,omitempty"`
	ChartContent          string                        `json:"chartContent,omitempty"`
	JobImage              string                        `json:"jobImage,omitempty"`
	BackOffLimit          *int32                        `json:"backOffLimit,omitempty"`
	Timeout               *metav1.Duration              `json:"timeout,omitempty"`
	FailurePolicy         string                        `json:"failurePolicy,omitempty"`
	AuthSecret            *corev1.LocalObjectReference  `json:"authSecret,omitempty"`
	AuthPassCredentials   bool                          `json:"authPassCredentials,omitempty"`
	InsecureSkipTLSVerify bool                          `json:"insecureSkipTLSVerify,omitempty"`
	PlainHTTP             bool                          `json:"plainHTTP,omitempty"`
	DockerRegistrySecret  *corev1.LocalObjectReference  `json:"dockerRegistrySecret,omitempty"`
	PodSecurityContext    *corev1.PodSecurityContext    `json:"podSecurityContext,omitempty"`
	SecurityContext       *corev1.SecurityContext       `json:"securityContext,omitempty"`
}

// decode splits a YAML stream into documents and decodes each strictly
// into its typed object. Documents holding only comments are skipped.
func decode(source string, data []byte) ([]object, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading document %d: %w", source, i, err)
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, fmt.Errorf("%s: document %d is not YAML: %w", source, i, err)
		}
		if probe == nil {
			continue // comments only
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
		newObj, ok := kinds[gvk]
		if !ok {
			return nil, fmt.Errorf("%s: document %d: unexpected kind %q of %q; add it to kinds with its typed struct if it belongs here", source, i, tm.Kind, tm.APIVersion)
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s: document %d (%s %s): %w", source, i, tm.Kind, probeName(probe), err)
		}
		objs = append(objs, object{source: fmt.Sprintf("%s#%d", source, i), gvk: gvk, obj: obj})
	}
}

func probeName(doc map[string]any) string {
	if md, ok := doc["metadata"].(map[string]any); ok {
		if n, ok := md["name"].(string); ok {
			return n
		}
	}
	return "(no name)"
}

// only returns the single object of type T named name ("" matches any
// name), or an error saying what was found instead.
func only[T metav1.Object](objs []object, name string) (T, error) {
	var found []T
	for _, o := range objs {
		if t, ok := o.obj.(T); ok && (name == "" || o.obj.GetName() == name) {
			found = append(found, t)
		}
	}
	var zero T
	if len(found) != 1 {
		return zero, fmt.Errorf("want exactly one %T named %q, found %d", zero, name, len(found))
	}
	return found[0], nil
}

// all returns every object of type T.
func all[T metav1.Object](objs []object) []T {
	var found []T
	for _, o := range objs {
		if t, ok := o.obj.(T); ok {
			found = append(found, t)
		}
	}
	return found
}
