package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// traffic is what a busy cluster's users and controllers ask of the
// apiserver, made with client-go: a namespace's life (service account,
// secrets, configmaps, pods, deployments, services, RBAC), service-account
// tokens requested and reviewed, requests as that service account, an
// unprivileged user refused, watches, and deletes.
type traffic struct {
	url                     string
	adminToken, viewerToken string
	admin, viewer           kubernetes.Interface

	requests   atomic.Int64 // HTTP requests sent, watches included
	forbidden  atomic.Int64 // the unprivileged user's requests, refused as they must be
	unexpected atomic.Int64 // any other failure
	issued     atomic.Int64 // service-account tokens issued
	markers    atomic.Int64 // secret values written

	mu     sync.Mutex // guards errors
	errors []string   // the first unexpected failures
}

func newTraffic(c *cluster) (*traffic, error) {
	// client-go logs, through klog, each request cut short when the
	// traffic stops; call counts every failure that matters.
	klog.SetLogger(logr.Discard())
	tr := &traffic{url: c.url, adminToken: c.adminToken, viewerToken: c.viewerToken}
	var err error
	if tr.admin, err = tr.client(c.adminToken); err != nil {
		return nil, err
	}
	if tr.viewer, err = tr.client(c.viewerToken); err != nil {
		return nil, err
	}
	return tr, nil
}

// client is a clientset that authenticates with token and counts its
// requests.
func (tr *traffic) client(token string) (kubernetes.Interface, error) {
	cfg := &rest.Config{
		Host:            tr.url,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, // the apiserver's self-signed loopback certificate
		UserAgent:       "audit-shipper-e2e",
		QPS:             -1, // no client-side rate limit: the load is the point
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return countingTransport{rt, &tr.requests}
		},
	}
	return kubernetes.NewForConfig(cfg)
}

type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

// run makes requests from workers goroutines until ctx is done.
func (tr *traffic) run(ctx context.Context, run string, workers int) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				tr.namespace(ctx, fmt.Sprintf("%s-%d", run, next.Add(1)))
			}
		})
	}
	wg.Go(func() { tr.watches(ctx) })
	wg.Wait()
}

// call makes one request and counts its outcome. A request of the
// unprivileged user must be refused with 403; any other failure is
// unexpected (a cancelled context at the end of the traffic is not).
func (tr *traffic) call(ctx context.Context, what string, wantForbidden bool, f func() error) bool {
	err := f()
	switch {
	case ctx.Err() != nil:
		return false
	case wantForbidden && apierrors.IsForbidden(err):
		tr.forbidden.Add(1)
		return true
	case wantForbidden && err == nil:
		err = errors.New("the unprivileged user was allowed")
	case err == nil:
		return true
	}
	tr.unexpected.Add(1)
	tr.mu.Lock()
	if len(tr.errors) < 10 {
		tr.errors = append(tr.errors, what+": "+err.Error())
	}
	tr.mu.Unlock()
	return false
}

var create, update = metav1.CreateOptions{}, metav1.UpdateOptions{}

// namespace lives one namespace's life, about 45 requests.
func (tr *traffic) namespace(ctx context.Context, ns string) {
	a, core := tr.admin, tr.admin.CoreV1()
	labels := map[string]string{"app.kubernetes.io/name": "shop", "e2e": "audit-shipper"}
	obj := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}
	if !tr.call(ctx, "create namespace", false, func() error {
		_, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, create)
		return err
	}) {
		return
	}
	tr.call(ctx, "create serviceaccount", false, func() error {
		_, err := core.ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: obj("app")}, create)
		return err
	})

	// Secrets, whose values the policy logs and the shipper must remove.
	// client-go returns an empty object with an error: only the objects
	// of calls that succeeded are used again.
	var secret *corev1.Secret
	secretMade := tr.call(ctx, "create secret", false, func() (err error) {
		tr.markers.Add(2)
		secret, err = core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: obj("db-credentials"), Type: corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"password": []byte(marker())},
			StringData: map[string]string{"api-key": marker()}}, create)
		return err
	})
	tr.call(ctx, "get secret", false, func() error { _, err := core.Secrets(ns).Get(ctx, "db-credentials", metav1.GetOptions{}); return err })
	tr.call(ctx, "list secrets", false, func() error { _, err := core.Secrets(ns).List(ctx, metav1.ListOptions{}); return err })
	if secretMade {
		tr.call(ctx, "update secret", false, func() error {
			tr.markers.Add(1)
			secret.Data["password"] = []byte(marker())
			_, err := core.Secrets(ns).Update(ctx, secret, update)
			return err
		})
	}
	tr.call(ctx, "patch secret", false, func() error {
		tr.markers.Add(1)
		_, err := core.Secrets(ns).Patch(ctx, "db-credentials", types.MergePatchType, []byte(`{"stringData":{"rotated":"`+marker()+`"}}`), metav1.PatchOptions{})
		return err
	})

	var cm *corev1.ConfigMap
	cmMade := tr.call(ctx, "create configmap", false, func() (err error) {
		cm, err = core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: obj("app-config"),
			Data: map[string]string{"app.yaml": "replicas: 2\nlog_level: info\nfeatures: [search, cart]\n", "LOG_FORMAT": "json"}}, create)
		return err
	})
	tr.call(ctx, "get configmap", false, func() error { _, err := core.ConfigMaps(ns).Get(ctx, "app-config", metav1.GetOptions{}); return err })
	if cmMade {
		tr.call(ctx, "update configmap", false, func() error {
			cm.Data["LOG_FORMAT"] = "text"
			_, err := core.ConfigMaps(ns).Update(ctx, cm, update)
			return err
		})
	}
	tr.call(ctx, "list configmaps", false, func() error { _, err := core.ConfigMaps(ns).List(ctx, metav1.ListOptions{}); return err })

	podSpec := corev1.PodSpec{
		ServiceAccountName:           "app",
		AutomountServiceAccountToken: new(false),
		Containers: []corev1.Container{{Name: "app", Image: "registry.example/shop/app:1.4.2",
			Ports:   []corev1.ContainerPort{{ContainerPort: 8080}},
			EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "db-credentials"}}}}}},
	}
	tr.call(ctx, "create pod", false, func() error {
		_, err := core.Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: obj("app-0"), Spec: podSpec}, create)
		return err
	})
	tr.call(ctx, "get pod", false, func() error { _, err := core.Pods(ns).Get(ctx, "app-0", metav1.GetOptions{}); return err })
	tr.call(ctx, "patch pod", false, func() error {
		_, err := core.Pods(ns).Patch(ctx, "app-0", types.StrategicMergePatchType, []byte(`{"metadata":{"labels":{"tier":"web"}}}`), metav1.PatchOptions{})
		return err
	})
	tr.call(ctx, "list pods", false, func() error { _, err := core.Pods(ns).List(ctx, metav1.ListOptions{}); return err })

	apps := a.AppsV1().Deployments(ns)
	tr.call(ctx, "create deployment", false, func() error {
		_, err := apps.Create(ctx, &appsv1.Deployment{ObjectMeta: obj("app"), Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec},
		}}, create)
		return err
	})
	tr.call(ctx, "get deployment", false, func() error { _, err := apps.Get(ctx, "app", metav1.GetOptions{}); return err })
	tr.call(ctx, "scale deployment", false, func() error {
		_, err := apps.UpdateScale(ctx, "app", &autoscalingv1.Scale{ObjectMeta: obj("app"), Spec: autoscalingv1.ScaleSpec{Replicas: 3}}, update)
		return err
	})
	tr.call(ctx, "create service", false, func() error {
		_, err := core.Services(ns).Create(ctx, &corev1.Service{ObjectMeta: obj("app"), Spec: corev1.ServiceSpec{
			Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}, create)
		return err
	})
	tr.call(ctx, "get service", false, func() error { _, err := core.Services(ns).Get(ctx, "app", metav1.GetOptions{}); return err })

	// RBAC: a role for the service account, and a binding to
	// cluster-admin, the kind of grant an audit trail exists to catch.
	rbac := a.RbacV1()
	tr.call(ctx, "create role", false, func() error {
		_, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: obj("config-reader"), Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}}, create)
		return err
	})
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: ns}}
	tr.call(ctx, "create rolebinding", false, func() error {
		_, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: obj("app-config-reader"), Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "config-reader"}}, create)
		return err
	})
	tr.call(ctx, "create rolebinding to cluster-admin", false, func() error {
		_, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: obj("app-admin"), Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}}, create)
		return err
	})

	tr.serviceAccount(ctx, ns)
	tr.refused(ctx, ns)
	tr.shortWatch(ctx, ns)

	tr.call(ctx, "delete pod", false, func() error { return core.Pods(ns).Delete(ctx, "app-0", metav1.DeleteOptions{}) })
	tr.call(ctx, "delete deployment", false, func() error { return apps.Delete(ctx, "app", metav1.DeleteOptions{}) })
	tr.call(ctx, "delete service", false, func() error { return core.Services(ns).Delete(ctx, "app", metav1.DeleteOptions{}) })
	tr.call(ctx, "delete configmaps", false, func() error {
		return core.ConfigMaps(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "e2e=audit-shipper"})
	})
	tr.call(ctx, "delete secret", false, func() error { return core.Secrets(ns).Delete(ctx, "db-credentials", metav1.DeleteOptions{}) })
	tr.call(ctx, "delete rolebinding", false, func() error { return rbac.RoleBindings(ns).Delete(ctx, "app-admin", metav1.DeleteOptions{}) })
	// Without a controller manager the namespace stays Terminating; the
	// request is what the audit log records.
	tr.call(ctx, "delete namespace", false, func() error { return core.Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
}

// serviceAccount requests a token for the namespace's service account,
// has it and others reviewed, and uses it.
func (tr *traffic) serviceAccount(ctx context.Context, ns string) {
	var jwt string
	if !tr.call(ctx, "create token", false, func() error {
		tr.issued.Add(1)
		expiry := int64(3600)
		res, err := tr.admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app",
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, create)
		if err == nil {
			jwt = res.Status.Token
		}
		return err
	}) {
		return
	}
	for _, c := range []struct {
		token string
		valid bool
	}{{jwt, true}, {tr.viewerToken, true}, {marker(), false}} {
		tr.call(ctx, "review token", false, func() error {
			res, err := tr.admin.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: c.token}}, create)
			if err == nil && res.Status.Authenticated != c.valid {
				err = fmt.Errorf("authenticated %v, want %v (%s)", res.Status.Authenticated, c.valid, res.Status.Error)
			}
			return err
		})
	}
	sa, err := tr.client(jwt)
	if err != nil {
		tr.call(ctx, "service-account client", false, func() error { return err })
		return
	}
	tr.call(ctx, "list pods as the service account", false, func() error { _, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); return err })
	tr.call(ctx, "create configmap as the service account", false, func() error {
		_, err := sa.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "written-by-app", Labels: map[string]string{"e2e": "audit-shipper"}},
			Data: map[string]string{"status": "ready"}}, create)
		return err
	})
}

// refused makes requests of the unprivileged user, each refused.
func (tr *traffic) refused(ctx context.Context, ns string) {
	v := tr.viewer.CoreV1()
	tr.call(ctx, "get secret as viewer", true, func() error { _, err := v.Secrets(ns).Get(ctx, "db-credentials", metav1.GetOptions{}); return err })
	tr.call(ctx, "list pods as viewer", true, func() error { _, err := v.Pods(ns).List(ctx, metav1.ListOptions{}); return err })
	tr.call(ctx, "create configmap as viewer", true, func() error {
		_, err := v.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}, create)
		return err
	})
	tr.call(ctx, "delete namespace as viewer", true, func() error { return v.Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}) })
}

// shortWatch watches the namespace's configmaps, sees one created, and
// closes the watch, as an informer does when it restarts.
func (tr *traffic) shortWatch(ctx context.Context, ns string) {
	core := tr.admin.CoreV1()
	tr.call(ctx, "watch configmaps", false, func() error {
		w, err := core.ConfigMaps(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "watched=yes"})
		if err != nil {
			return err
		}
		defer w.Stop()
		if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched",
			Labels: map[string]string{"watched": "yes", "e2e": "audit-shipper"}}}, create); err != nil {
			return err
		}
		select {
		case <-w.ResultChan():
			return nil
		case <-time.After(30 * time.Second):
			return errors.New("no event within 30s")
		case <-ctx.Done():
			return nil
		}
	})
}

// watches keeps cluster-wide watches open for the whole traffic, renewed
// every few seconds (each watch is a ResponseStarted line and, when it
// ends, a ResponseComplete line), and the unprivileged user tries to
// watch secrets.
func (tr *traffic) watches(ctx context.Context) {
	for ctx.Err() == nil {
		timeout := int64(5)
		tr.call(ctx, "watch secrets", false, func() error {
			w, err := tr.admin.CoreV1().Secrets("").Watch(ctx, metav1.ListOptions{TimeoutSeconds: &timeout})
			if err != nil {
				return err
			}
			for range w.ResultChan() {
			}
			return nil
		})
		tr.call(ctx, "watch secrets as viewer", true, func() error {
			_, err := tr.viewer.CoreV1().Secrets("").Watch(ctx, metav1.ListOptions{})
			return err
		})
	}
}

// failures describes the unexpected failures, for the report.
func (tr *traffic) failures() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.errors...)
}
