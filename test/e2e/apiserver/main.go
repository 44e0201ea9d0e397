// Command kube-apiserver is the unmodified kube-apiserver of k8s.io/kubernetes
// v1.37.2, built in a module of its own so that the end-to-end suite can run
// the real server (and its real lumberjack audit-log rotation) without pulling
// Kubernetes into the shipper's go.mod. The body is upstream's
// cmd/kube-apiserver/apiserver.go.
package main

import (
	"os"
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
