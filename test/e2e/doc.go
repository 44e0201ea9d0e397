// Package e2e is audit-shipper's end-to-end suite against a real
// kube-apiserver: the server of k8s.io/kubernetes v1.37.2 (built by
// apiserver/build.sh, cached per machine) on Debian's etcd, writing real
// audit logs through its own lumberjack rotation, driven by client-go, and
// shipped by the real audit-shipper binary, killed with SIGKILL now and
// then, to a file, to Loki's push API and to Elasticsearch's bulk API
// (both served by VictoriaLogs). The tests then read every line the
// apiserver wrote and prove that each event reached every sink and that no
// secret did.
//
// It is a module of its own so that client-go never enters audit-shipper's
// go.mod; it talks to the shipper only through its binary and its outputs.
// How to run it: docs/e2e.md.
package e2e
