// Package signals counts what security monitoring asks of an audit log:
// requests by verb class and outcome, changes to RBAC objects, bindings to
// cluster-admin, reads of secrets by anyone but the control plane, and
// exec, attach and port-forward into pods.
//
// Every label takes a few fixed values, never a user, namespace or object
// name, so the series count is the same on any cluster (64 per sink), and
// every series exists at 0 from the start, so that alerts on increase() see
// the first event. Who did it is in the audit event itself: the counters say
// when to look, the log store says what happened.
//
// A request is counted once, from the event of the stage that carries its
// outcome: ResponseComplete, or Panic when the handler panicked.
// RequestReceived and ResponseStarted (the start of a watch, exec or
// port-forward) are not counted, so a long-running request is counted when
// it ends.
package signals

import (
	"strings"

	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/prometheus/client_golang/prometheus"
)

// Label values. Their order is the order of the arrays in Counters.
var (
	verbClasses = [...]string{"read", "watch", "write", "delete", "other"}
	outcomes    = [...]string{"success", "forbidden", "unauthorized", "client_error", "server_error", "unknown"}

	rbacResources = [...]string{"roles", "clusterroles", "rolebindings", "clusterrolebindings"}
	rbacVerbs     = [...]string{"create", "update", "patch", "delete", "deletecollection"}

	bindingResources = [...]string{"rolebindings", "clusterrolebindings"}

	secretVerbs = [...]string{"get", "list", "watch"}
	actors      = [...]string{"user", "serviceaccount", "anonymous"}

	podSubresources = [...]string{"exec", "attach", "portforward"}
)

const rbacGroup = "rbac.authorization.k8s.io"

// Counters are the security signals of one sink's stream of events. Observe
// is called from one goroutine; the counters themselves are safe to collect
// concurrently.
type Counters struct {
	requests       [len(verbClasses)][len(outcomes)]prometheus.Counter
	rbacChanges    [len(rbacResources)][len(rbacVerbs)]prometheus.Counter
	clusterAdmin   [len(bindingResources)]prometheus.Counter
	secretReads    [len(secretVerbs)][len(actors)]prometheus.Counter
	podConnections [len(podSubresources)]prometheus.Counter
}

// New registers the counters on reg (which already carries the sink label)
// with every label combination at 0.
//
// It panics if reg already holds them: the shipper builds one Counters per
// sink, on a registerer of that sink's own.
func New(reg prometheus.Registerer) *Counters {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "audit_shipper_api_requests_total",
		Help: "API requests in the audit log (one per request, from its ResponseComplete or Panic event), by verb class and outcome.",
	}, []string{"verb_class", "outcome"})
	rbac := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "audit_shipper_rbac_changes_total",
		Help: "Successful changes (not dry runs) to roles, clusterroles, rolebindings and clusterrolebindings, by resource and verb.",
	}, []string{"resource", "verb"})
	admin := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "audit_shipper_cluster_admin_bindings_total",
		Help: "Successful creates, updates and patches (not dry runs) of (cluster)rolebindings whose roleRef is the ClusterRole cluster-admin.",
	}, []string{"resource"})
	secrets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "audit_shipper_secret_reads_total",
		Help: "Successful get, list and watch of secrets by anyone but the control plane and system namespaces' service accounts, by verb and actor.",
	}, []string{"verb", "actor"})
	pods := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "audit_shipper_pod_connections_total",
		Help: "Successful exec, attach and port-forward requests to pods, by subresource.",
	}, []string{"subresource"})
	reg.MustRegister(requests, rbac, admin, secrets, pods)

	c := &Counters{}
	for i, v := range verbClasses {
		for j, o := range outcomes {
			c.requests[i][j] = requests.WithLabelValues(v, o)
		}
	}
	for i, r := range rbacResources {
		for j, v := range rbacVerbs {
			c.rbacChanges[i][j] = rbac.WithLabelValues(r, v)
		}
	}
	for i, r := range bindingResources {
		c.clusterAdmin[i] = admin.WithLabelValues(r)
	}
	for i, v := range secretVerbs {
		for j, a := range actors {
			c.secretReads[i][j] = secrets.WithLabelValues(v, a)
		}
	}
	for i, s := range podSubresources {
		c.podConnections[i] = pods.WithLabelValues(s)
	}
	return c
}

// Observe counts one event. It must not allocate.
func (c *Counters) Observe(ev *parse.Event) {
	panicked := ev.Stage == "Panic"
	if !panicked && ev.Stage != "ResponseComplete" {
		return
	}
	c.requests[verbClass(ev.Verb)][outcome(ev.Code, ev.Decision, panicked)].Inc()
	// The other signals are about what was done, not attempted: forbidden
	// and failed requests are in api_requests_total. 101 is the answer to
	// an exec or port-forward that was let through (a protocol upgrade).
	if ev.Code < 100 || ev.Code >= 400 || !ev.HasObjectRef {
		return
	}
	ref := &ev.ObjectRef
	switch {
	case ref.APIGroup == rbacGroup && ref.Subresource == "":
		r, v := index(rbacResources[:], ref.Resource), index(rbacVerbs[:], ev.Verb)
		if r < 0 || v < 0 || dryRun(ev.RequestURI) {
			return
		}
		c.rbacChanges[r][v].Inc()
		if b := index(bindingResources[:], ref.Resource); b >= 0 && ev.Verb != "delete" && ev.Verb != "deletecollection" && bindsClusterAdmin(ev) {
			c.clusterAdmin[b].Inc()
		}
	case ref.APIGroup != "":
	case ref.Resource == "secrets" && ref.Subresource == "":
		v := index(secretVerbs[:], ev.Verb)
		if v < 0 {
			return
		}
		// The request is made as the impersonated user, but a person who
		// impersonates the control plane is still a person.
		a := -1
		if ev.ImpersonatedUser != "" {
			a = actorOf(ev.ImpersonatedUser)
		}
		if a < 0 {
			a = actorOf(ev.Username)
		}
		if a >= 0 {
			c.secretReads[v][a].Inc()
		}
	case ref.Resource == "pods":
		if s := index(podSubresources[:], ref.Subresource); s >= 0 {
			c.podConnections[s].Inc()
		}
	}
}

func index(values []string, v string) int {
	for i, s := range values {
		if s == v {
			return i
		}
	}
	return -1
}

// verbClass is the index in verbClasses of a verb. Requests to non-resource
// URLs (/healthz, /version) carry the lower-cased HTTP method as their verb:
// get is a read there too, post, put and the others are "other".
func verbClass(verb string) int {
	switch verb {
	case "get", "list":
		return 0
	case "watch":
		return 1
	case "create", "update", "patch":
		return 2
	case "delete", "deletecollection":
		return 3
	}
	return 4
}

// outcome is the index in outcomes of a response. 403 is forbidden whether
// the authorizer or an admission plugin (pod security, a webhook) said no;
// an authorizer's "forbid" decision counts even without a status code.
func outcome(code int, decision string, panicked bool) int {
	switch {
	case code == 401:
		return 2
	case code == 403 || decision == "forbid":
		return 1
	case code >= 500 || panicked:
		return 4
	case code >= 400:
		return 3
	case code >= 100:
		return 0
	}
	return 5
}

// dryRun reports a request made with ?dryRun=All, which changes nothing.
// The apiserver refuses any other value of the parameter, and object names
// cannot hold '=', so in a successful request the text means the parameter.
func dryRun(uri string) bool {
	_, query, ok := strings.Cut(uri, "?")
	return ok && (strings.HasPrefix(query, "dryRun=") || strings.Contains(query, "&dryRun="))
}

// systemNamespaces are the namespaces whose service accounts are the
// control plane's own: Kubernetes' and, on RKE2 clusters, Rancher's
// (every namespace whose name starts with "cattle-").
var systemNamespaces = [...]string{"kube-system", "kube-public", "kube-node-lease"}

// actorOf is the index in actors of the user who made a request, or -1 for
// the control plane: every "system:" user (nodes, the controller manager,
// the scheduler, the apiserver, RKE2's supervisor as system:admin) and the
// service accounts of system namespaces. system:anonymous is not the
// control plane: a secret it can read is readable by anyone.
func actorOf(username string) int {
	const sa = "system:serviceaccount:"
	switch {
	case username == "system:anonymous":
		return 2
	case strings.HasPrefix(username, sa):
		ns, _, _ := strings.Cut(username[len(sa):], ":")
		if index(systemNamespaces[:], ns) >= 0 || strings.HasPrefix(ns, "cattle-") {
			return -1
		}
		return 1
	case strings.HasPrefix(username, "system:"):
		return -1
	}
	return 0
}
