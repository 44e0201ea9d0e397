package loki

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
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/audit-shipper/audit-shipper/sinks"
)

// TestFaults injects each way a push can fail and checks what Send makes
// of it: the class of the error, the Retry-After it carries, the message,
// and the requests_total class counted.
func TestFaults(t *testing.T) {
	type want struct {
		permanent  string // reason, or "" for retryable
		retryAfter time.Duration
		msg        string
		class      string
	}
	f := func(name string, h http.HandlerFunc, w want) {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			s, _ := newSink(t, "url: "+srv.URL+"/loki/api/v1/push\ntimeout: 300ms")
			start := time.Now()
			err := s.Send(context.Background(), goldenRecords(t))
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Send took %s", took)
			}
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if w.permanent != "" {
				if got := sinks.PermanentReason(err); got != w.permanent {
					t.Errorf("Send = %v; want a permanent error with reason %q", err, w.permanent)
				}
			} else {
				var re *sinks.RetryableError
				if !errors.As(err, &re) {
					t.Errorf("Send = %T %v; want a *RetryableError", err, err)
				}
				if got := sinks.RetryAfter(err); got != w.retryAfter {
					t.Errorf("RetryAfter = %s, want %s", got, w.retryAfter)
				}
			}
			if !strings.Contains(err.Error(), w.msg) {
				t.Errorf("error %q does not say %q", err, w.msg)
			}
			if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues(w.class)); got != 1 {
				t.Errorf("requests_total{code=%q} = %v, want 1", w.class, got)
			}
			if got := testutil.ToFloat64(s.metrics.entries); got != 0 {
				t.Errorf("sent_entries_total = %v after a failure, want 0", got)
			}
		})
	}
	status := func(code int, header, value, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			discard(r.Body)
			if header != "" {
				w.Header().Set(header, value)
			}
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}
	}

	f("429 with Retry-After seconds", status(429, "Retry-After", "7", "Ingestion rate limit exceeded"),
		want{retryAfter: 7 * time.Second, msg: "Ingestion rate limit exceeded", class: "429"})
	f("429 without Retry-After", status(429, "", "", "slow down"),
		want{msg: "slow down", class: "429"})
	f("500", status(500, "", "", "internal error"), want{msg: "500 Internal Server Error: internal error", class: "5xx"})
	f("503 with Retry-After", status(503, "Retry-After", "2", ""), want{retryAfter: 2 * time.Second, msg: "503", class: "5xx"})
	f("400 names the entry", status(400, "", "", "entry for stream '{job=\"kubernetes-audit\"}' has timestamp too old"),
		want{permanent: "rejected_400", msg: "timestamp too old", class: "4xx"})
	f("413", status(413, "", "", ""), want{permanent: "too_large_413", msg: "batch.max_bytes", class: "4xx"})
	f("422", status(422, "", "", ""), want{permanent: "rejected_4xx", msg: "422", class: "4xx"})
	f("401 waits for the operator", status(401, "", "", "no org id"), want{msg: "check basic_auth", class: "4xx"})
	f("403 waits for the operator", status(403, "", "", ""), want{msg: "check basic_auth", class: "4xx"})
	f("404 waits for the operator", status(404, "", "", "404 page not found"), want{msg: "full push URL", class: "4xx"})
	f("connection reset", func(w http.ResponseWriter, r *http.Request) {
		discard(r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
			_ = tc.SetLinger(0) // RST instead of FIN
		}
		conn.Close()
	}, want{msg: "pushing 4 entries", class: "error"})
	f("slow past the timeout", func(w http.ResponseWriter, r *http.Request) {
		discard(r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}, want{msg: "no answer within the timeout of 300ms", class: "error"})
	f("headers, then a stalled body", func(w http.ResponseWriter, r *http.Request) {
		discard(r.Body)
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}, want{msg: "no answer within the timeout of 300ms", class: "error"})
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	f := func(h string, want time.Duration) {
		t.Helper()
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", h, got, want)
		}
	}
	f("", 0)
	f("0", 0)
	f("30", 30*time.Second)
	f("-5", 0)
	f("soon", 0)
	f(now.Add(90*time.Second).Format(http.TimeFormat), 90*time.Second)
	f(now.Add(-time.Hour).Format(http.TimeFormat), 0)
}

// TestStopping checks that a Send cut short by the shipper returns
// ctx.Err(), not a sink error.
func TestStopping(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		discard(r.Body) // the server notices the client is gone only after the body
		<-r.Context().Done()
	}))
	defer srv.Close()
	s, _ := newSink(t, "url: "+srv.URL+"/loki/api/v1/push")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Send(ctx, goldenRecords(t)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send = %v, want ctx.Err()", err)
	}
}

// TestHeaders checks tenant, credentials, extra headers, and that secrets
// in files are read again for each request (a rotated token is used at
// once).
func TestHeaders(t *testing.T) {
	srv, got := captureServer(t)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	pwFile := filepath.Join(dir, "password")
	write := func(path, s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tokFile, "tok-1\n")
	write(pwFile, "pw-1\n")
	u := "url: " + srv.URL + "/loki/api/v1/push\n"

	bearer, _ := newSink(t, u+"tenant_id: team-a\nbearer_token_file: "+tokFile+"\nheaders: {X-Extra: yes}")
	basic, _ := newSink(t, u+"basic_auth: {username: shipper, password_file: "+pwFile+"}\nencoding: json")
	static, _ := newSink(t, u+"bearer_token: tok-static")
	send := func(s *Sink) {
		t.Helper()
		if err := s.Send(context.Background(), goldenRecords(t)); err != nil {
			t.Fatal(err)
		}
	}
	send(bearer)
	write(tokFile, "tok-2")
	send(bearer)
	send(basic)
	write(pwFile, "pw-2")
	send(basic)
	send(static)

	reqs := got()
	check := func(i int, key, want string) {
		t.Helper()
		if v := reqs[i].header.Get(key); v != want {
			t.Errorf("request %d: %s = %q, want %q", i, key, v, want)
		}
	}
	check(0, "X-Scope-OrgID", "team-a")
	check(0, "Authorization", "Bearer tok-1")
	check(0, "X-Extra", "yes")
	check(0, "Content-Type", "application/x-protobuf")
	check(0, "User-Agent", "audit-shipper")
	check(1, "Authorization", "Bearer tok-2")
	check(2, "Authorization", basicAuth("shipper", "pw-1"))
	check(2, "Content-Type", "application/json")
	check(2, "X-Scope-OrgID", "")
	check(3, "Authorization", basicAuth("shipper", "pw-2"))
	check(4, "Authorization", "Bearer tok-static")

	// A token file that disappears is an operator's problem: retried.
	if err := os.Remove(tokFile); err != nil {
		t.Fatal(err)
	}
	err := bearer.Send(context.Background(), goldenRecords(t))
	var re *sinks.RetryableError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "bearer_token_file") {
		t.Errorf("Send without the token file = %v, want a retryable error naming bearer_token_file", err)
	}
}

// TestTLS checks a CA file and a client certificate against an HTTPS
// fake, and that a server the CA did not sign is refused (and retried).
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pair := selfSigned(t, dir)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		discard(r.Body)
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	u := "url: " + srv.URL + "/loki/api/v1/push\n"
	client := ", cert_file: " + certFile + ", key_file: " + keyFile

	good, _ := newSink(t, u+"tls: {ca_file: "+certFile+client+", server_name: loki.example}")
	if err := good.Send(context.Background(), goldenRecords(t)); err != nil {
		t.Errorf("Send with the CA and a client certificate = %v", err)
	}
	noClientCert, _ := newSink(t, u+"tls: {ca_file: "+certFile+"}")
	if err := noClientCert.Send(context.Background(), goldenRecords(t)); sinks.RetryAfter(err) != 0 || !strings.Contains(fmt.Sprint(err), "401") {
		t.Errorf("Send without a client certificate = %v, want the fake's 401", err)
	}
	wrongName, _ := newSink(t, u+"tls: {ca_file: "+certFile+client+", server_name: other.example}")
	err := wrongName.Send(context.Background(), goldenRecords(t))
	var re *sinks.RetryableError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Send with the wrong server_name = %v, want a retryable certificate error", err)
	}
	noCA, _ := newSink(t, u)
	err = noCA.Send(context.Background(), goldenRecords(t))
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Send without the CA = %v, want a retryable certificate error", err)
	}
	insecure, _ := newSink(t, u+"tls: {insecure_skip_verify: true"+client+"}")
	if err := insecure.Send(context.Background(), goldenRecords(t)); err != nil {
		t.Errorf("Send with insecure_skip_verify = %v", err)
	}
}

// selfSigned writes a self-signed certificate for loki.example and
// 127.0.0.1, usable by server and client, and returns its files and pair.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "loki.example"},
		DNSNames:              []string{"loki.example"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}
