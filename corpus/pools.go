package corpus

import "strconv"

type resource struct {
	name, group, version, sub, kind string
	namespaced                      bool
}

var (
	pods        = resource{name: "pods", version: "v1", kind: "Pod", namespaced: true}
	configmaps  = resource{name: "configmaps", version: "v1", kind: "ConfigMap", namespaced: true}
	secrets     = resource{name: "secrets", version: "v1", kind: "Secret", namespaced: true}
	deployments = resource{name: "deployments", group: "apps", version: "v1", kind: "Deployment", namespaced: true}
	roles       = resource{name: "roles", group: "rbac.authorization.k8s.io", version: "v1", kind: "Role", namespaced: true}
	bindings    = resource{name: "rolebindings", group: "rbac.authorization.k8s.io", version: "v1", kind: "RoleBinding", namespaced: true}
	tokens      = resource{name: "serviceaccounts", version: "v1", sub: "token", kind: "TokenRequest", namespaced: true}
	reviews     = resource{name: "tokenreviews", group: "authentication.k8s.io", version: "v1", kind: "TokenReview"}
)

// resources are what reads touch, weighted by repetition.
var resources = []resource{
	pods, pods, pods, configmaps, configmaps, secrets, deployments, roles, bindings,
	{name: "leases", group: "coordination.k8s.io", version: "v1", kind: "Lease", namespaced: true},
	{name: "leases", group: "coordination.k8s.io", version: "v1", kind: "Lease", namespaced: true},
	{name: "nodes", version: "v1", kind: "Node"},
	{name: "nodes", version: "v1", sub: "status", kind: "Node"},
	{name: "services", version: "v1", kind: "Service", namespaced: true},
	{name: "endpointslices", group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", namespaced: true},
	{name: "events", group: "events.k8s.io", version: "v1", kind: "Event", namespaced: true},
	{name: "replicasets", group: "apps", version: "v1", kind: "ReplicaSet", namespaced: true},
	{name: "namespaces", version: "v1", kind: "Namespace"},
	{name: "serviceaccounts", version: "v1", kind: "ServiceAccount", namespaced: true},
	{name: "customresourcedefinitions", group: "apiextensions.k8s.io", version: "v1", kind: "CustomResourceDefinition"},
	{name: "helmcharts", group: "helm.cattle.io", version: "v1", kind: "HelmChart", namespaced: true},
	{name: "clusterroles", group: "rbac.authorization.k8s.io", version: "v1", kind: "ClusterRole"},
}

// writeResources are what writes with bodies touch.
var writeResources = []resource{pods, pods, deployments, configmaps, configmaps, secrets, roles, bindings, tokens, reviews}

func (g *Generator) pickResource() resource { return resources[g.r.IntN(len(resources))] }
func (g *Generator) pickWriteResource() resource {
	return writeResources[g.r.IntN(len(writeResources))]
}

var namespaces = []string{"default", "kube-system", "kube-system", "cattle-system", "cattle-fleet-system", "monitoring", "ingress-nginx", "team-a", "team-b"}

var appNames = []string{"nginx", "coredns", "rke2-ingress-nginx-controller", "rancher", "fleet-agent", "metrics-server", "api", "web", "worker", "payments", "grafana", "prometheus-node-exporter"}

func (g *Generator) objectName(r resource) string {
	app := appNames[g.r.IntN(len(appNames))]
	switch r.name {
	case "pods":
		return app + "-" + g.randHex(10) + "-" + g.randHex(5)
	case "replicasets":
		return app + "-" + g.randHex(10)
	case "nodes":
		return "server-" + strconv.Itoa(g.r.IntN(3))
	case "leases":
		return []string{"kube-controller-manager", "kube-scheduler", "server-0", "server-1", "cloud-controller-manager"}[g.r.IntN(5)]
	case "secrets":
		return []string{app + "-tls", "sh.helm.release.v1." + app + ".v" + strconv.Itoa(1+g.r.IntN(9)), app + "-token-" + g.randHex(5), "serving-cert"}[g.r.IntN(4)]
	case "configmaps":
		return []string{"kube-root-ca.crt", app + "-config", "rke2-etcd-snapshots", "cluster-info", "extension-apiserver-authentication"}[g.r.IntN(5)]
	case "serviceaccounts":
		return []string{"default", app, "fleet-agent", "coredns"}[g.r.IntN(4)]
	}
	return app
}

type user struct {
	name, uid string
	groups    []string
	ip, agent string
	reason    string // authorization.k8s.io/reason
	extra     bool
}

const k8sVersion = "v1.30.4+rke2r1"

var users = []user{
	{name: "system:admin", groups: []string{"system:masters", "system:authenticated"}, ip: "10.0.0.10",
		agent: "kubectl/" + k8sVersion + " (linux/amd64) kubernetes/9e5ab06", reason: ""},
	{name: "system:node:server-0", groups: []string{"system:nodes", "system:authenticated"}, ip: "10.0.0.10", extra: true,
		agent: "kubelet/" + k8sVersion + " (linux/amd64) kubernetes/9e5ab06", reason: ""},
	{name: "system:kube-controller-manager", groups: []string{"system:authenticated"}, ip: "127.0.0.1",
		agent:  "kube-controller-manager/" + k8sVersion + " (linux/amd64) kubernetes/9e5ab06/system:serviceaccount:kube-system:replicaset-controller",
		reason: `RBAC: allowed by ClusterRoleBinding "system:kube-controller-manager" of ClusterRole "system:kube-controller-manager" to User "system:kube-controller-manager"`},
	{name: "system:kube-scheduler", groups: []string{"system:authenticated"}, ip: "127.0.0.1",
		agent:  "kube-scheduler/" + k8sVersion + " (linux/amd64) kubernetes/9e5ab06/scheduler",
		reason: `RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole "system:kube-scheduler" to User "system:kube-scheduler"`},
	{name: "system:serviceaccount:cattle-system:rancher", uid: "8f0e5a51-0b65-4f0c-9b2e-5d1f6a3c7e21", groups: []string{"system:serviceaccounts", "system:serviceaccounts:cattle-system", "system:authenticated"},
		ip: "10.42.0.17", extra: true, agent: "rancher/v2.9.1 (linux/amd64) kubernetes/$Format",
		reason: `RBAC: allowed by ClusterRoleBinding "rancher" of ClusterRole "cluster-admin" to ServiceAccount "rancher/cattle-system"`},
	{name: "system:serviceaccount:kube-system:helm-controller", uid: "0d7f2c44-6d0e-4d55-8c3f-2b9a1e6f4a10", groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
		ip: "10.0.0.10", agent: "Go-http-client/2.0",
		reason: `RBAC: allowed by ClusterRoleBinding "helm-kube-system-traefik" of ClusterRole "cluster-admin" to ServiceAccount "helm-traefik/kube-system"`},
	{name: "jane@example.com", uid: "u-6xk2m", groups: []string{"developers", "system:authenticated"}, ip: "192.168.10.23",
		agent:  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
		reason: `RBAC: allowed by RoleBinding "dev-edit/team-a" of ClusterRole "edit" to Group "developers"`},
	{name: "system:apiserver", uid: "4a8d1d63-37b5-4f0a-8b1f-9b3cf7a1e0d2", groups: []string{"system:authenticated"}, ip: "::1",
		agent: "kube-apiserver/" + k8sVersion + " (linux/amd64) kubernetes/9e5ab06", reason: ""},
}

var anonymous = user{name: "system:anonymous", groups: []string{"system:unauthenticated"}, ip: "203.0.113.7", agent: "curl/8.5.0"}

var unicodeNames = []string{"jürgen.müller@example.com", "владимир", "山田太郎", "ΔΕΛΤΑ-ops", "مدير", "émoji-😀-bot", "zoë & <ops>"}

func (g *Generator) pickUser() *user {
	// Controllers and nodes dominate real traffic.
	return &users[[]int{0, 1, 1, 1, 2, 2, 2, 3, 4, 5, 6, 7}[g.r.IntN(12)]]
}
