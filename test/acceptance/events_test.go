package acceptance

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

// eventSource makes audit Event lines (without the newline), each with an
// auditID never made before.
type eventSource interface {
	Next(dst []byte) []byte
}

func newEvents(seed uint64) eventSource {
	return &events{rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// events makes lines of the shape kube-apiserver writes at level Metadata.
type events struct {
	rng *rand.Rand
	n   uint64
}

var (
	verbs     = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	resources = []string{"pods", "configmaps", "leases", "nodes", "services", "endpointslices", "deployments"}
	users     = []string{"system:kube-controller-manager", "system:kube-scheduler", "system:serviceaccount:kube-system:coredns", "system:node:server-0", "admin"}
)

func (e *events) Next(dst []byte) []byte {
	e.n++
	r := e.rng
	now := time.Now().UTC()
	verb, res := verbs[r.IntN(len(verbs))], resources[r.IntN(len(resources))]
	ns := fmt.Sprintf("ns-%d", r.IntN(40))
	return fmt.Appendf(dst, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%08x-%04x-4%03x-8%03x-%012x","stage":"ResponseComplete",`+
		`"requestURI":"/api/v1/namespaces/%s/%s?limit=%d","verb":"%s","user":{"username":"%s","groups":["system:authenticated"]},`+
		`"sourceIPs":["10.42.%d.%d"],"userAgent":"kube-controller-manager/v1.31.4+rke2r1 (linux/amd64) kubernetes/%07x",`+
		`"objectRef":{"resource":"%s","namespace":"%s","name":"obj-%d","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},`+
		`"requestReceivedTimestamp":"%s","stageTimestamp":"%s","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:%s\""}}`,
		r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff, r.Uint32()&0xfff, e.n,
		ns, res, r.IntN(1000), verb, users[r.IntN(len(users))],
		r.IntN(256), r.IntN(256), r.Uint32()&0xfffffff,
		res, ns, r.IntN(100000),
		now.Add(-time.Duration(r.IntN(5000))*time.Microsecond).Format(time.RFC3339Nano), now.Format(time.RFC3339Nano), res)
}

// eventKey returns the auditID of a whole audit Event line, or an error for
// anything else (a torn fragment, another JSON value).
func eventKey(line []byte) (string, error) {
	var ev struct {
		Kind    string `json:"kind"`
		AuditID string `json:"auditID"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return "", err
	}
	if ev.Kind != "Event" || ev.AuditID == "" {
		return "", errors.New("not an audit event")
	}
	return ev.AuditID, nil
}

// auditLog writes events the way kube-apiserver does: one Write per line
// through lumberjack, which rotates at 1 MB. It keeps the auditIDs in the
// order they were written.
type auditLog struct {
	lj  *lumberjack.Logger
	src eventSource
	buf []byte

	// size mirrors lumberjack's count of the live file so that rotations
	// are known before they happen.
	size      int64
	rotations int
	lastRot   time.Time

	ids   []string
	seen  map[string]bool
	bytes int64
}

const megabyte = 1024 * 1024

func newAuditLog(dir string, maxBackups int, compress bool, seed uint64) *auditLog {
	return &auditLog{
		lj: &lumberjack.Logger{
			Filename:   filepath.Join(dir, "audit.log"),
			MaxSize:    1,
			MaxBackups: maxBackups,
			Compress:   compress,
		},
		src:  newEvents(seed),
		seen: make(map[string]bool),
	}
}

// write appends one event.
func (l *auditLog) write() error {
	l.buf = l.src.Next(l.buf[:0])
	id, err := eventKey(l.buf)
	if err != nil {
		return fmt.Errorf("the event source made a line that is not an audit event (%v): %.200s", err, l.buf)
	}
	if l.seen[id] {
		return fmt.Errorf("the event source repeated auditID %s", id)
	}
	l.seen[id] = true
	l.buf = append(l.buf, '\n')
	if l.size+int64(len(l.buf)) > megabyte {
		// lumberjack names a backup after the rotation's millisecond: two
		// rotations within one would overwrite a backup and lose events
		// before the shipper could see them.
		if d := 2*time.Millisecond - time.Since(l.lastRot); d > 0 {
			time.Sleep(d)
		}
		l.size = 0
		l.rotations++
		l.lastRot = time.Now()
	}
	if _, err := l.lj.Write(l.buf); err != nil {
		return fmt.Errorf("lumberjack write: %w", err)
	}
	l.size += int64(len(l.buf))
	l.bytes += int64(len(l.buf))
	l.ids = append(l.ids, id)
	return nil
}

// writeN appends n events.
func (l *auditLog) writeN(n int) error {
	for range n {
		if err := l.write(); err != nil {
			return err
		}
	}
	return nil
}

// writeRotations appends events until n more rotations have happened and
// the new live file holds at least one event.
func (l *auditLog) writeRotations(n int) error {
	want := l.rotations + n
	for l.rotations < want || l.size == 0 {
		if err := l.write(); err != nil {
			return err
		}
	}
	return nil
}

// writeBytes appends events until at least n bytes more were written.
func (l *auditLog) writeBytes(n int64) error {
	want := l.bytes + n
	for l.bytes < want {
		if err := l.write(); err != nil {
			return err
		}
	}
	return nil
}

func (l *auditLog) close(t *testing.T) {
	t.Helper()
	if err := l.lj.Close(); err != nil {
		t.Errorf("closing the audit log writer: %v", err)
	}
}
