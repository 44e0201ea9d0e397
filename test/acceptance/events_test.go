package acceptance

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

func newEvents(seed int64) *corpus.Generator {
	return corpus.New(corpus.Options{Seed: seed})
}

// eventKey returns the auditID of a whole audit Event line, or an error for
// anything else (a torn fragment, another JSON value).
func eventKey(line []byte) (string, error) {
	if !json.Valid(line) {
		return "", errors.New("not a whole JSON value")
	}
	id, ok := shipperproc.AuditID(line)
	if !ok || !bytes.HasPrefix(line, []byte(`{"kind":"Event",`)) {
		return "", errors.New("not an audit event")
	}
	return id, nil
}

const megabyte = 1024 * 1024

// newAuditLog writes dir/audit.log the way kube-apiserver does, keeping
// maxBackups rotated files.
func newAuditLog(dir string, maxBackups int, compress bool, seed int64) *shipperproc.AuditLog {
	return shipperproc.NewAuditLog(filepath.Join(dir, "audit.log"), shipperproc.LogOptions{MaxBackups: maxBackups, Compress: compress, Seed: seed})
}
