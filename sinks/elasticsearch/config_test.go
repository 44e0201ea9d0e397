package elasticsearch

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/sinks"
)

func TestConfigDefaults(t *testing.T) {
	t.Setenv("NODE_NAME", "server-1")
	set, err := load(loadSink(t, "addresses: [https://es.monitoring:9200]"))
	if err != nil {
		t.Fatal(err)
	}
	if !set.Compress || set.Timeout.D() != 30*time.Second || set.BodyEncoding != BodyString ||
		set.Timestamp != "stage" || set.InstallTemplate || set.Node != "server-1" || set.Cluster != "" {
		t.Errorf("unexpected defaults: %+v", set.Config)
	}
	if !set.target.dataStream || set.target.raw != DefaultDataStream {
		t.Errorf("default target %+v, want data stream %s", set.target, DefaultDataStream)
	}
	t.Setenv("NODE_NAME", "")
	set, err = load(loadSink(t, "addresses: [https://es.monitoring:9200]"))
	if err != nil {
		t.Fatal(err)
	}
	if host, _ := os.Hostname(); set.Node != host {
		t.Errorf("node %q, want the host name %q without $NODE_NAME", set.Node, host)
	}
}

// TestConfigErrors: each mistake is reported at its key with a fix.
func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const es = "addresses: [https://es:9200]\n"
	f := func(keys, wantKey, wantText string) {
		t.Helper()
		_, err := New(loadSink(t, keys), newEnv().Env)
		if err == nil {
			t.Errorf("%s: no error, want one at %s", keys, wantKey)
			return
		}
		if !strings.Contains(err.Error(), "sinks[0]."+wantKey+":") || !strings.Contains(err.Error(), wantText) {
			t.Errorf("%s:\n got %v\nwant key sinks[0].%s and %q", keys, err, wantKey, wantText)
		}
	}
	f("timeout: 5s", "addresses", "is missing")
	f(es+"cloud_id: x:eA==", "cloud_id", "keep one")
	f("addresses: [es:9200]", "addresses[0]", "not an http:// or https:// URL")
	f("addresses: [https://es:9200, ftp://es]", "addresses[1]", "not an http://")
	f("addresses: [\"https://u:p@es:9200\"]", "addresses[0]", "credentials in the URL")
	f("addresses: [\"https://es:9200/?pretty\"]", "addresses[0]", "query or fragment")
	f(es+"username: u", "username", "without password")
	f(es+"password: p", "password", "without username")
	f(es+"username: u\npassword: p\npassword_file: "+pw, "password_file", "keep one")
	f(es+"api_key_file: /nonexistent/key", "api_key_file", "cannot read")
	f(es+"api_key: k\nbearer_token: b", "username", "more than one authentication")
	f(es+"headers: {X-Empty: \"\"}", "headers", "empty name or value")
	f(es+"timeout: 0s", "timeout", "more than 0")
	f(es+"target: {data_stream: logs-a-b, index: a-%Y}", "target", "keep one")
	f(es+"target: {index: audit-%y}", "target.index", "unknown date verb")
	f(es+"target: {data_stream: Logs}", "target.data_stream", "lower case")
	f(es+"timestamp: auditTime", "timestamp", "requestReceivedTimestamp")
	f(es+"body_encoding: flattened", "body_encoding", "write string")
	f(es+"tls: {ca_file: /nonexistent/ca.pem}", "tls.ca_file", "cannot read")
	f(es+"tls: {ca_file: "+pw+"}", "tls.ca_file", "no PEM certificate")
	f(es+"tls: {cert_file: "+pw+"}", "tls.cert_file", "go together")
	f(es+"compres: false", "compres", `did you mean "compress"`)
}

// TestTLS: a CA file, a client certificate, and insecure_skip_verify
// with its warning.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	clientCert(t, certFile, keyFile)

	es := newFakeES(t)
	srv := httptest.NewUnstartedServer(es.srv.Config.Handler)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake failure below is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	send := func(keys string) (*testEnv, error) {
		s, env := newSink(t, "addresses: ["+srv.URL+"]\n"+keys)
		return env, s.Send(context.Background(), records(t, 1, 3, time.Now()))
	}

	if _, err := send(""); err == nil || sinks.IsPermanent(err) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: want a retryable certificate error, got %v", err)
	}
	if _, err := send("tls: {ca_file: " + caFile + "}"); err != nil {
		t.Errorf("with the CA: %v", err)
	}
	env, err := send("tls: {insecure_skip_verify: true}")
	if err != nil {
		t.Errorf("insecure: %v", err)
	}
	if !strings.Contains(env.Log.String(), "level=WARN") || !strings.Contains(env.Log.String(), "verification is OFF") {
		t.Errorf("insecure_skip_verify logged no warning: %s", env.Log.String())
	}

	var gotCN string
	es.setAnswer(func(_ int, _ []fakeItem, _ http.ResponseWriter, r *http.Request) bool {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			gotCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		return false
	})
	if _, err := send("tls: {ca_file: " + caFile + ", cert_file: " + certFile + ", key_file: " + keyFile + "}"); err != nil {
		t.Fatal(err)
	}
	if gotCN != "audit-shipper" {
		t.Errorf("the server saw client certificate %q, want audit-shipper", gotCN)
	}
}

// clientCert writes a self-signed client certificate and its key.
func clientCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "audit-shipper"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600),
	); err != nil {
		t.Fatal(err)
	}
}
