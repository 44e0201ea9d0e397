package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// vlogs is one VictoriaLogs server, standing in for Loki or Elasticsearch.
// Each sink gets its own, so that counting a server's rows counts what one
// sink delivered.
type vlogs struct {
	name   string
	url    string
	p      *proc
	client *http.Client
}

func startVLogs(t *testing.T, b binaries, dir, name string) *vlogs {
	t.Helper()
	port := freePort(t)
	v := &vlogs{name: name, url: fmt.Sprintf("http://127.0.0.1:%d", port), client: &http.Client{Timeout: 5 * time.Minute}}
	var err error
	v.p, err = startProc("victoria-logs for "+name, filepath.Join(dir, "logs", "victoria-logs-"+name+".log"), b.vlogs,
		fmt.Sprintf("-httpListenAddr=127.0.0.1:%d", port),
		"-storageDataPath="+filepath.Join(dir, "victoria-logs-"+name),
		// Audit lines up to the shipper's max_line_bytes; VictoriaLogs'
		// default (256KiB) skips longer ones with only a warning.
		"-insert.maxLineSizeBytes=4MiB",
		// Its default 7 days would refuse nothing here, but the suite
		// must not depend on the clock.
		"-retentionPeriod=100y",
		"-loggerLevel=INFO")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.p.stop(10 * time.Second) })
	if err := v.p.waitReady(v.url+"/health", "", time.Minute); err != nil {
		t.Fatal(err)
	}
	return v
}

// query runs a LogsQL query and calls each for every row of the answer
// (one JSON object per line), without holding the answer in memory.
func (v *vlogs) query(logsql string, each func(row []byte) error) error {
	// Rows ingested in the last seconds become visible to queries only
	// after a flush.
	if err := v.do(http.MethodGet, "/internal/force_flush", nil, func([]byte) error { return nil }); err != nil {
		return err
	}
	return v.do(http.MethodPost, "/select/logsql/query", url.Values{"query": {logsql}}, each)
}

func (v *vlogs) do(method, path string, form url.Values, each func([]byte) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, v.url+path, body)
	if err != nil {
		return err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s of VictoriaLogs for %s: %w", method, path, v.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s %s of VictoriaLogs for %s (%v) answered %s: %s", method, path, v.name, form, resp.Status, bytes.TrimSpace(b))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		if err := each(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the answer of %s %s of VictoriaLogs for %s: %w", method, path, v.name, err)
	}
	return nil
}

// keys counts the rows of each (auditID, stage), counted by the server.
// Rows without an auditID are counted under the empty key.
func (v *vlogs) keys() (map[key]int, error) {
	got := map[key]int{}
	err := v.query(`* | stats by (auditID, stage) count() n`, func(row []byte) error {
		var r struct{ AuditID, Stage, N string }
		if err := json.Unmarshal(row, &r); err != nil {
			return fmt.Errorf("a stats row of VictoriaLogs for %s: %w: %s", v.name, err, row)
		}
		n, err := strconv.Atoi(r.N)
		if err != nil {
			return fmt.Errorf("a stats row of VictoriaLogs for %s: count %q: %w", v.name, r.N, err)
		}
		got[key{r.AuditID, r.Stage}] += n
		return nil
	})
	return got, err
}

// leaks scans every field of every row the server holds.
func (v *vlogs) leaks() (leaks, error) {
	pr, pw := io.Pipe()
	defer pr.Close() // a scan that stops early must not leave the query blocked
	go func() {
		pw.CloseWithError(v.query(`*`, func(row []byte) error { _, err := pw.Write(append(row, '\n')); return err }))
	}()
	return scanLeaks(pr)
}

// dropped returns the warnings with which VictoriaLogs drops rows after
// answering the ingestion request with success (too many field names in
// a block, a line over its size limit): rows a query can no longer find,
// which would otherwise look like the shipper's losses.
func (v *vlogs) dropped() []string {
	b, err := os.ReadFile(v.p.logPath)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for l := range strings.SplitSeq(string(b), "\n") {
		for _, w := range []string{"ignoring", "skipping it", "dropping log line"} {
			if strings.Contains(l, w) {
				out = append(out, l)
			}
		}
	}
	return out
}

// idRecorder sits between the elasticsearch sink and VictoriaLogs and
// records, for every document of every bulk request, its _id, auditID and
// stage, without changing a byte of either the request or the answer.
// VictoriaLogs ignores _id and stores every copy a replay sends;
// Elasticsearch stores one document per _id and answers 409 to the
// others. So "none twice in Elasticsearch" is proven on what the sink
// sent: each (auditID, stage) under exactly one _id, each _id for exactly
// one (auditID, stage).
type idRecorder struct {
	srv *httptest.Server

	mu       sync.Mutex // guards the fields below, written by the proxy's handlers
	byID     map[string]key
	ids      map[key]map[string]bool
	docs     int // documents sent, copies included
	requests int
	wire     leaks // what the bulk bodies held, decompressed
	err      error
}

func startIDRecorder(t *testing.T, target string) *idRecorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &idRecorder{byID: map[string]key{}, ids: map[key]map[string]bool{}, wire: leaks{lines: map[string]int{}}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	// A request cut by the shipper's SIGKILL is expected; the shipper
	// sends its batch again after the restart.
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/_bulk") {
			raw, err := io.ReadAll(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.record(req.Header.Get("Content-Encoding"), raw)
			req.Body = io.NopCloser(bytes.NewReader(raw))
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *idRecorder) record(encoding string, raw []byte) {
	body := raw
	if encoding == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			r.fail(fmt.Errorf("a bulk body does not decompress: %w", err))
			return
		}
	}
	l, err := scanLeaks(bytes.NewReader(body))
	if err != nil {
		r.fail(err)
		return
	}
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	if len(lines)%2 != 0 {
		r.fail(fmt.Errorf("a bulk body of %d lines: not action and document pairs", len(lines)))
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	for name, n := range l.lines {
		r.wire.lines[name] += n
		if r.wire.example == "" {
			r.wire.example = l.example
		}
	}
	for i := 0; i < len(lines); i += 2 {
		var action map[string]struct {
			ID string `json:"_id"`
		}
		if err := json.Unmarshal(lines[i], &action); err != nil || len(action) != 1 {
			r.failLocked(fmt.Errorf("bulk action line %q: %v", lines[i], err))
			return
		}
		var id string
		for _, a := range action {
			id = a.ID
		}
		k, err := eventKey(lines[i+1])
		if err != nil {
			r.failLocked(fmt.Errorf("bulk document for _id %q: %w", id, err))
			return
		}
		r.docs++
		if prev, ok := r.byID[id]; ok && prev != k {
			r.failLocked(fmt.Errorf("_id %q was sent for %v and for %v: two events would be stored as one", id, prev, k))
		}
		r.byID[id] = k
		if r.ids[k] == nil {
			r.ids[k] = map[string]bool{}
		}
		r.ids[k][id] = true
	}
}

func (r *idRecorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failLocked(err)
}

// failLocked keeps the first error.
func (r *idRecorder) failLocked(err error) {
	if r.err == nil {
		r.err = err
	}
}

// fileKeys reads the file sink's NDJSON: the lines per (auditID, stage),
// and the lines that are not whole events (a line torn by SIGKILL, which
// the sink ends at its next start).
func fileKeys(path string) (got map[key]int, torn int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	got = map[key]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		k, err := eventKey(sc.Bytes())
		if err != nil {
			torn++
			continue
		}
		got[k]++
	}
	return got, torn, sc.Err()
}

// fileLeaks scans a file that may not exist (the dead-letter file is
// created at the first dead letter).
func fileLeaks(path string) (leaks, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return leaks{lines: map[string]int{}}, nil
	}
	if err != nil {
		return leaks{}, err
	}
	defer f.Close()
	return scanLeaks(f)
}
