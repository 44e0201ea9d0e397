package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// The files of configs/ the apiserver is started with.
const (
	rke2Config = "configs/rke2/config.yaml"
	// This policy logs secrets, token requests and token reviews at
	// RequestResponse, as a careless operator's would: the shipper's
	// redaction is what must keep their values out of every sink.
	auditPolicy = "configs/policies/logs-secrets-on-purpose.yaml"
)

// cluster is etcd and kube-apiserver on loopback ports.
type cluster struct {
	etcd, apiserver *proc
	url             string // https://127.0.0.1:PORT
	auditLog        string // --audit-log-path
	adminToken      string // user admin, group system:masters
	viewerToken     string // user e2e-viewer, granted nothing
	auditFlags      []string
}

// auditFlags returns the audit flags of configs/rke2/config.yaml, with the
// paths moved into dir, the policy that logs secrets, a 1 MiB rotation
// size, maxBackup backups and, when compress is set, gzipped backups. It
// fails when the file no longer sets the flags the suite relies on, so
// the suite follows the documented configuration instead of drifting from
// it.
func auditFlags(t *testing.T, repo, logPath string, compress bool) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repo, rke2Config))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Args []string `json:"kube-apiserver-arg"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", rke2Config, err)
	}
	override := map[string]string{
		"audit-policy-file":   filepath.Join(repo, auditPolicy),
		"audit-log-path":      logPath,
		"audit-log-maxsize":   "1",
		"audit-log-maxbackup": fmt.Sprint(*maxBackup),
	}
	var flags []string
	seen := map[string]bool{}
	for _, a := range cfg.Args {
		name, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(name, "audit-") {
			continue
		}
		seen[name] = true
		if v, ok := override[name]; ok {
			value = v
		}
		flags = append(flags, "--"+name+"="+value)
	}
	for name := range override {
		if !seen[name] {
			t.Fatalf("%s no longer sets kube-apiserver-arg %s; the suite starts the apiserver with that file's audit flags", rke2Config, name)
		}
	}
	if compress {
		flags = append(flags, "--audit-log-compress=true")
	}
	return flags
}

// startCluster starts etcd and kube-apiserver, writing the audit log to
// dir/audit/audit.log, and waits until the apiserver is ready.
func startCluster(t *testing.T, b binaries, dir string, compress bool) *cluster {
	t.Helper()
	c := &cluster{
		auditLog:    filepath.Join(dir, "audit", "audit.log"),
		adminToken:  marker(),
		viewerToken: marker(),
	}
	c.auditFlags = auditFlags(t, b.repo, c.auditLog, compress)

	clientPort, peerPort := freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	var err error
	c.etcd, err = startProc("etcd", filepath.Join(dir, "logs", "etcd.log"), b.etcd,
		"--name=e2e", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=e2e="+peerURL, "--quota-backend-bytes=8589934592")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.etcd.stop(10 * time.Second) })
	if err := c.etcd.waitReady(etcdURL+"/health", "", time.Minute); err != nil {
		t.Fatal(err)
	}

	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(c.adminToken+",admin,admin-uid,\"system:masters\"\n"+
		c.viewerToken+",e2e-viewer,viewer-uid,\"e2e-viewers\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "certs", "sa.key")
	writeRSAKey(t, saKey)

	port := freePort(t)
	c.url = fmt.Sprintf("https://127.0.0.1:%d", port)
	args := append([]string{b.apiserver,
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		// There is no node and no kube-proxy: the kubernetes service's
		// endpoints must not be reconciled to a loopback address.
		"--endpoint-reconciler-type=none",
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		// Room for a service per namespace of the traffic.
		"--service-cluster-ip-range=10.96.0.0/12",
	}, c.auditFlags...)
	c.apiserver, err = startProc("kube-apiserver", filepath.Join(dir, "logs", "kube-apiserver.log"), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.apiserver.stop(time.Minute) })
	// The first start on a loaded machine takes tens of seconds (RBAC and
	// priority-and-fairness bootstrap).
	if err := c.apiserver.waitReady(c.url+"/readyz", c.adminToken, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	return c
}

// stop stops the apiserver, so that the audit log is final, then etcd.
func (c *cluster) stop(t *testing.T) {
	t.Helper()
	if err := c.apiserver.stop(time.Minute); err != nil && !isSignalExit(err) {
		t.Logf("kube-apiserver: %v", err)
	}
	if err := c.etcd.stop(10 * time.Second); err != nil && !isSignalExit(err) {
		t.Logf("etcd: %v", err)
	}
}

// isSignalExit reports whether err is the exit of a process that ended on
// the SIGTERM it was sent: not a failure.
func isSignalExit(err error) bool {
	return err != nil && strings.Contains(err.Error(), "signal: terminated")
}

// writeRSAKey writes a new RSA private key, which kube-apiserver reads
// both to sign service-account tokens and, for its public half, to verify
// them.
func writeRSAKey(t *testing.T, path string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
