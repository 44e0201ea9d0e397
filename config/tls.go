package config

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

// TLS is the tls block of a sink that speaks HTTPS.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// IsZero reports whether no key of the block is set.
func (t TLS) IsZero() bool { return t == TLS{} }

// Build returns the client TLS configuration the block describes, reading
// the CA bundle and the client certificate now, so that a mistake fails at
// start. Errors are positioned at sec's tls keys; caHint ends the message
// for a CA file without certificates (which CA to give).
func (t TLS) Build(sec *Sink, caHint string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice, logged as a warning by the sink
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, sec.Errorf("tls.ca_file", "cannot read the CA bundle: %v; check the path and that the shipper's user may read it", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, sec.Errorf("tls.ca_file", "%q holds no PEM certificate; %s", t.CAFile, caHint)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, sec.Errorf("tls.cert_file", "cert_file and key_file go together; set both for a client certificate, or neither")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, sec.Errorf("tls.cert_file", "cannot load the client certificate and key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
