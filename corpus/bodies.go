package corpus

import (
	"strconv"
	"time"
)

// body writes a request or response object of about size bytes for h.
func (g *Generator) body(h *header, size int, request bool) {
	start := len(g.b)
	switch {
	case h.res.name == "tokenreviews":
		g.tokenReview(request)
		return
	case h.res.name == "serviceaccounts":
		g.tokenRequest(h, request)
		return
	case h.verb == "delete" && request:
		g.raw(`{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}`)
		return
	case h.verb == "patch" && request:
		g.patch(h)
		return
	}
	g.raw(`{"kind":"` + h.res.kind + `","apiVersion":"`)
	if h.res.group != "" {
		g.raw(h.res.group + "/")
	}
	g.raw(h.res.version + `",`)
	g.metadata(h, request)
	fill := func() bool { return len(g.b)-start < size }
	switch h.res.name {
	case "configmaps":
		g.raw(`,"data":{`)
		for i := 0; i == 0 || fill(); i++ {
			if i > 0 {
				g.raw(",")
			}
			g.str(g.pick(configKeys) + "-" + strconv.Itoa(i))
			g.raw(":")
			g.str(g.configValue())
		}
		g.raw("}}")
	case "secrets":
		g.raw(`,"data":{`)
		for i := 0; i == 0 || fill(); i++ {
			if i > 0 {
				g.raw(",")
			}
			g.str([]string{"tls.crt", "tls.key", "password", "token", "ca.crt", ".dockerconfigjson"}[i%6] + suffix(i/6))
			g.raw(":")
			g.str(g.randBase64(32 + g.r.IntN(600)))
		}
		g.raw(`},"type":"Opaque"}`)
	case "roles":
		g.raw(`,"rules":[`)
		for i := 0; i == 0 || fill(); i++ {
			if i > 0 {
				g.raw(",")
			}
			g.raw(`{"verbs":["get","list","watch"`)
			if g.r.IntN(2) == 0 {
				g.raw(`,"create","update","patch","delete"`)
			}
			g.raw(`],"apiGroups":["`)
			g.raw(resources[i%len(resources)].group)
			g.raw(`"],"resources":["`)
			g.raw(resources[i%len(resources)].name)
			g.raw(`"]`)
			if i%4 == 3 {
				g.raw(`,"resourceNames":["`)
				g.raw(g.pick(appNames))
				g.raw(`"]`)
			}
			g.raw("}")
		}
		g.raw("]}")
	case "rolebindings":
		g.raw(`,"subjects":[`)
		for i := 0; i == 0 || fill(); i++ {
			if i > 0 {
				g.raw(",")
			}
			if i%3 == 0 {
				g.raw(`{"kind":"ServiceAccount","name":"`)
				g.raw(g.pick(appNames))
				g.raw(`","namespace":"`)
				g.raw(g.pick(namespaces))
				g.raw(`"}`)
			} else {
				g.raw(`{"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":`)
				g.str("user-" + strconv.Itoa(i) + "@example.com")
				g.raw("}")
			}
		}
		g.raw(`],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"edit"}}`)
	case "deployments":
		g.raw(`,"spec":{"replicas":`)
		g.b = strconv.AppendInt(g.b, int64(1+g.r.IntN(5)), 10)
		g.raw(`,"selector":{"matchLabels":{"app":"`)
		g.raw(h.name)
		g.raw(`"}},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"`)
		g.raw(h.name)
		g.raw(`"}},"spec":`)
		g.podSpec(h, start, size)
		g.raw(`},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"25%","maxSurge":"25%"}},"revisionHistoryLimit":10,"progressDeadlineSeconds":600}`)
		if !request {
			g.raw(`,"status":{"observedGeneration":4,"replicas":2,"updatedReplicas":2,"readyReplicas":2,"availableReplicas":2,"conditions":[{"type":"Available","status":"True","lastUpdateTime":"2024-05-30T10:00:00Z","lastTransitionTime":"2024-05-30T10:00:00Z","reason":"MinimumReplicasAvailable","message":"Deployment has minimum availability."}]}`)
		}
		g.raw("}")
	default: // pods
		g.raw(`,"spec":`)
		g.podSpec(h, start, size)
		if !request {
			g.raw(`,"status":{"phase":"Pending","qosClass":"Burstable"}`)
		}
		g.raw("}")
	}
}

func suffix(i int) string {
	if i == 0 {
		return ""
	}
	return "." + strconv.Itoa(i)
}

var configKeys = []string{"config.yaml", "nginx.conf", "app.properties", "settings.json", "Corefile", "ca.crt", "feature-flags"}

func (g *Generator) configValue() string {
	switch g.r.IntN(4) {
	case 0:
		return "server {\n\tlisten 8080;\n\tlocation / {\n\t\tproxy_pass http://backend;\n\t\tproxy_set_header Host $host;\n\t}\n}\n"
	case 1:
		return `{"log_level":"info","endpoints":["https://a.example.com","https://b.example.com"],"threshold":0.75,"retries":3,"tags":{"env":"prod","team":"<ops> & sre"}}`
	case 2:
		return ".:53 {\n    errors\n    health {\n        lameduck 5s\n    }\n    forward . /etc/resolv.conf\n    cache 30\n}\n"
	}
	return "key=" + g.randHex(8+g.r.IntN(64))
}

// metadata writes "metadata":{...} with labels, annotations and managedFields.
func (g *Generator) metadata(h *header, request bool) {
	g.raw(`"metadata":{"name":`)
	g.str(h.name)
	if h.ns != "" {
		g.raw(`,"namespace":`)
		g.str(h.ns)
	}
	if !request || h.verb != "create" {
		g.raw(`,"uid":"`)
		g.b = g.appendUUID(g.b, g.n^0x3c3c3c)
		g.raw(`","resourceVersion":"`)
		g.b = strconv.AppendInt(g.b, int64(1e6+g.r.IntN(9e6)), 10)
		g.raw(`","generation":`)
		g.b = strconv.AppendInt(g.b, int64(1+g.r.IntN(9)), 10)
		g.raw(`,"creationTimestamp":"2024-05-30T10:00:00Z"`)
	}
	g.raw(`,"labels":{"app.kubernetes.io/name":`)
	g.str(h.name)
	g.raw(`,"app.kubernetes.io/managed-by":"Helm","helm.sh/chart":"app-1.2.3"}`)
	if g.r.IntN(2) == 0 {
		g.raw(`,"annotations":{"kubectl.kubernetes.io/last-applied-configuration":`)
		g.str(`{"apiVersion":"` + h.res.version + `","kind":"` + h.res.kind + `","metadata":{"annotations":{},"name":"` + h.name + `","namespace":"` + h.ns + "\"}}\n")
		g.raw("}")
	}
	g.raw(`,"managedFields":[{"manager":"kubectl-client-side-apply","operation":"Update","apiVersion":"`)
	g.raw(h.res.version)
	g.raw(`","time":"`)
	g.b = g.stage.Add(-time.Hour).Truncate(time.Second).AppendFormat(g.b, time.RFC3339)
	g.raw(`","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app.kubernetes.io/name":{}}}}}`)
	if !request {
		g.raw(`,{"manager":"kube-controller-manager","operation":"Update","apiVersion":"`)
		g.raw(h.res.version)
		g.raw(`","time":"2024-05-30T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{".":{},"k:{\"type\":\"Ready\"}":{".":{},"f:status":{}}}}},"subresource":"status"}`)
	}
	g.raw("]}")
}

// podSpec writes a pod spec, adding env vars until the body from start reaches size.
func (g *Generator) podSpec(h *header, start, size int) {
	g.raw(`{"volumes":[{"name":"kube-api-access","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}],"defaultMode":420}}],"containers":[{"name":"app","image":"registry.example.com/`)
	g.raw(g.pick(appNames))
	g.raw(`:v1.`)
	g.b = strconv.AppendInt(g.b, int64(g.r.IntN(30)), 10)
	g.raw(`","args":["--port=8080","--log-level=info"],"ports":[{"containerPort":8080,"protocol":"TCP"}],"env":[`)
	for i := 0; i == 0 || len(g.b)-start < size-600; i++ {
		if i > 0 {
			g.raw(",")
		}
		g.raw(`{"name":"VAR_`)
		g.b = strconv.AppendInt(g.b, int64(i), 10)
		g.raw(`","value":`)
		g.str(g.randHex(8 + g.r.IntN(40)))
		g.raw("}")
	}
	g.raw(`],"resources":{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","imagePullPolicy":"IfNotPresent","securityContext":{"runAsNonRoot":true,"readOnlyRootFilesystem":true}}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"default","securityContext":{},"schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true}`)
}

// patch writes a strategic merge patch, with numbers in several forms.
func (g *Generator) patch(h *header) {
	g.raw(`{"metadata":{"annotations":{"deployment.kubernetes.io/revision":"`)
	g.b = strconv.AppendInt(g.b, int64(1+g.r.IntN(20)), 10)
	g.raw(`","kubectl.kubernetes.io/restartedAt":"`)
	g.b = g.stage.Truncate(time.Second).AppendFormat(g.b, time.RFC3339)
	g.raw(`"}},"spec":{"replicas":`)
	g.b = strconv.AppendInt(g.b, int64(g.r.IntN(10)), 10)
	g.raw(`,"x-scale":{"ratio":0.75,"min":-1,"epsilon":1e-06,"max":1.5E+3,"zero":0,"negZero":-0.0}}}`)
}

func (g *Generator) tokenRequest(h *header, request bool) {
	g.raw(`{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"name":`)
	g.str(h.name)
	g.raw(`,"namespace":`)
	g.str(h.ns)
	g.raw(`,"creationTimestamp":null,"managedFields":[{"manager":"kubelet","operation":"Update","apiVersion":"authentication.k8s.io/v1","time":"2024-05-30T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:audiences":{},"f:boundObjectRef":{},"f:expirationSeconds":{}}}}]},"spec":{"audiences":["https://kubernetes.default.svc.cluster.local","rke2"],"expirationSeconds":3607,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"`)
	g.raw(g.pick(appNames))
	g.raw(`-` + g.randHex(5) + `","uid":"`)
	g.b = g.appendUUID(g.b, g.n^0x7777)
	g.raw(`"}},"status":{"token":"`)
	if !request {
		g.jwt()
		g.raw(`","expirationTimestamp":"`)
		g.b = g.stage.Add(time.Hour).Truncate(time.Second).AppendFormat(g.b, time.RFC3339)
		g.raw(`"}}`)
		return
	}
	g.raw(`","expirationTimestamp":null}}`)
}

func (g *Generator) tokenReview(request bool) {
	g.raw(`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"token":"`)
	g.jwt()
	g.raw(`","audiences":["https://kubernetes.default.svc.cluster.local","rke2"]},"status":{`)
	if !request {
		g.raw(`"authenticated":true,"user":{"username":"system:serviceaccount:cattle-system:rancher","uid":"8f0e5a51-0b65-4f0c-9b2e-5d1f6a3c7e21","groups":["system:serviceaccounts","system:serviceaccounts:cattle-system","system:authenticated"],"extra":{"authentication.kubernetes.io/pod-name":["rancher-7d9f-abcde"]}},"audiences":["https://kubernetes.default.svc.cluster.local"]`)
	}
	g.raw("}}")
}

// jwt writes a token shaped like a service account JWT (three base64url parts).
func (g *Generator) jwt() {
	g.raw("eyJhbGciOiJSUzI1NiIsImtpZCI6I")
	for _, n := range []int{28, 380, 256} {
		s := g.randBase64(n)
		for i := 0; i < len(s); i++ {
			switch c := s[i]; c {
			case '+':
				g.b = append(g.b, '-')
			case '/':
				g.b = append(g.b, '_')
			case '=':
			default:
				g.b = append(g.b, c)
			}
		}
		if n != 256 {
			g.raw(".")
		}
	}
}

// escapesBody is a configmap whose keys and values hold raw unicode and every
// JSON escape, including forms kube-apiserver does not write itself (\/, \b,
// \f, surrogate pairs, upper-case hex) but other writers of the format may.
func (g *Generator) escapesBody(h *header) {
	g.raw(`{"kind":"ConfigMap","apiVersion":"v1",`)
	g.metadata(h, false)
	g.raw(`,"data":{"greeting.txt":`)
	g.str(g.pick(unicodeNames) + " — grüße, привет, こんにちは, مرحبا, 😀👍🏽 \u2028line\u2029para")
	g.raw(`,"escapes.txt":"quote \" backslash \\ slash \/ \b\f\n\r\t ctl \u0001\u001f nul \u0000 e\u0301 \u00e9\u00C9 \u20ac \ud83d\ude00 \uD83D\uDE80 html \u003cb\u003e \u0026amp;"`)
	g.raw(`,"lone-surrogate.txt":"lone \ud800 high, lone \udfff low"`)
	g.raw(`,"script.sh":`)
	g.str("#!/bin/sh\nset -eu\nif [ \"$1\" = '<x>' ] && true; then\n\techo \"ok\\n\"\nfi\n")
	g.raw(`,"raw-unicode-key-ключ":"значение"}}`)
}

// bigBody is a configmap over 100 KB: escaped JSON dashboards, as
// rancher-monitoring ships them.
func (g *Generator) bigBody(h *header, size int) {
	start := len(g.b)
	g.raw(`{"kind":"ConfigMap","apiVersion":"v1",`)
	g.metadata(h, false)
	g.raw(`,"data":{`)
	for i := 0; len(g.b)-start < size; i++ {
		if i > 0 {
			g.raw(",")
		}
		g.str("dashboard-" + strconv.Itoa(i) + ".json")
		g.raw(":")
		panel := `{"datasource":"Prometheus","expr":"sum(rate(apiserver_request_total{verb=~\"LIST|GET\",code!~\"2..\"}[5m])) by (resource) > 0.5","legendFormat":"{{resource}}","gridPos":{"h":8,"w":12,"x":0,"y":` + strconv.Itoa(i) + `},"title":"Ошибки & <errors>"}`
		s := `{"panels":[`
		for j := 0; j < 20; j++ {
			if j > 0 {
				s += ","
			}
			s += panel
		}
		g.str(s + `],"refresh":"30s"}` + "\n")
	}
	g.raw("}}")
}
