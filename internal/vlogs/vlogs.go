// Package vlogs runs a real VictoriaLogs server for tests and for the
// benchmark harness. VictoriaLogs
// speaks the ingestion protocols the sinks use (the Loki push API at
// /insert/loki/api/v1/push, the Elasticsearch bulk API at
// /insert/elasticsearch/_bulk) and is queried back with LogsQL, so a test
// can check what a sink delivered instead of what a fake accepted.
package vlogs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// InstallCommand builds the binary Start looks for.
const InstallCommand = "go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1"

const binaryName = "victoria-logs"

// startTimeout bounds how long Start waits for the server to answer; the
// first start on a cold 2-core machine takes a few seconds.
const startTimeout = time.Minute

// listenRE finds the address the server bound: it listens on port 0 and
// logs the port the kernel chose, so there is no window in which another
// process can take a port picked in advance.
var listenRE = regexp.MustCompile(`started server at http://([^/\s]+)/`)

// Server is a running VictoriaLogs.
type Server struct {
	url    string
	client *http.Client
	log    *syncBuffer // what Start collected of its output; nil after Run
	cmd    *exec.Cmd
	exited chan error // cmd.Wait's result, once
	copied chan struct{}
}

// Start finds the victoria-logs binary ($VICTORIA_LOGS_BIN, then PATH, then
// $(go env GOPATH)/bin), starts it on a free loopback port with a temporary
// -storageDataPath and a retention long enough for any test timestamp,
// followed by args (a later flag overrides an earlier one), waits until it
// answers, and stops it in t.Cleanup.
//
// When the binary is missing the test fails with the command that installs
// it; with -short it is skipped instead.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := Find("")
	if err != nil {
		if testing.Short() {
			t.Skipf("skipping in -short mode: %v", err)
		}
		t.Fatal(err)
	}
	out := &syncBuffer{}
	s, err := Run(context.Background(), bin, t.TempDir(), out.WriteLine, args...)
	if err != nil {
		t.Fatalf("%v; its output:\n%s", err, out.String())
	}
	s.log = out
	t.Cleanup(s.Stop)
	return s
}

// Run starts bin on a free loopback port with its data in dataDir and a
// retention long enough for any timestamp, followed by args, hands each
// line it prints to output, and waits until it answers. The caller stops
// it with Stop.
func Run(ctx context.Context, bin, dataDir string, output func(line string), args ...string) (*Server, error) {
	argv := append([]string{
		"-httpListenAddr=127.0.0.1:0",
		"-storageDataPath=" + dataDir,
		"-retentionPeriod=100y",
		"-loggerLevel=INFO",
	}, args...)
	cmd := exec.Command(bin, argv...)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s %s: %w", bin, strings.Join(argv, " "), err)
	}
	s := &Server{client: &http.Client{Timeout: time.Minute}, cmd: cmd, exited: make(chan error, 1), copied: make(chan struct{})}

	// One goroutine owns the pipe: it hands every line to output and
	// reports the listen address once it appears.
	addrc := make(chan string, 1)
	go func() {
		defer close(s.copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		found := false
		for sc.Scan() {
			line := sc.Text()
			output(line)
			if !found {
				if m := listenRE.FindStringSubmatch(line); m != nil {
					found = true
					addrc <- m[1]
				}
			}
		}
		// Drain whatever is left so the child never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		s.exited <- cmd.Wait()
		pw.Close()
	}()

	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, err
	}
	deadline := time.After(startTimeout)
	select {
	case addr := <-addrc:
		s.url = "http://" + addr
	case err := <-s.exited:
		s.exited <- err // for Stop, which waits on it
		return fail(fmt.Errorf("victoria-logs exited before listening (%v)", err))
	case <-deadline:
		return fail(fmt.Errorf("victoria-logs did not log its listen address within %s", startTimeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	for {
		if err := s.healthy(); err == nil {
			return s, nil
		}
		select {
		case err := <-s.exited:
			s.exited <- err
			return fail(fmt.Errorf("victoria-logs exited while starting (%v)", err))
		case <-deadline:
			return fail(fmt.Errorf("victoria-logs at %s did not answer /health within %s", s.url, startTimeout))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop interrupts the server and waits for it and for its output, killing
// it after 10 s.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-s.exited:
		s.exited <- err // a second Stop returns at once
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		s.exited <- <-s.exited
	}
	<-s.copied
}

// Find returns bin if it is set, else the victoria-logs binary from
// $VICTORIA_LOGS_BIN, PATH or $(go env GOPATH)/bin, or an error that says
// how to build it.
func Find(bin string) (string, error) {
	if bin == "" {
		bin = os.Getenv("VICTORIA_LOGS_BIN")
	}
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("the victoria-logs binary %q (given, or $VICTORIA_LOGS_BIN): %w; build it with: %s", bin, err, InstallCommand)
		}
		return bin, nil
	}
	if p, err := exec.LookPath(binaryName); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	// GOPATH may be a list; go install writes to the first entry's bin.
	if first, _, _ := strings.Cut(gopath, string(os.PathListSeparator)); first != "" {
		p := filepath.Join(first, "bin", binaryName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in $VICTORIA_LOGS_BIN, PATH or $(go env GOPATH)/bin; build it with: %s", binaryName, InstallCommand)
}

func (s *Server) healthy() error {
	resp, err := s.client.Get(s.url + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/health answered %s", resp.Status)
	}
	return nil
}

// URL is the server's base URL, http://127.0.0.1:PORT.
func (s *Server) URL() string { return s.url }

// Log returns everything a server from Start printed so far. VictoriaLogs answers
// some ingestion problems with success and only a warning here (for example
// "ignoring N rows in the block, because they contain more than 2000 unique
// field names"), so tests that count rows should look at it too.
func (s *Server) Log() string { return s.log.String() }

// Flush makes every row ingested so far visible to queries.
func (s *Server) Flush(t testing.TB) {
	t.Helper()
	if _, err := s.do(http.MethodGet, "/internal/force_flush", nil); err != nil {
		t.Fatalf("cannot flush victoria-logs: %v", err)
	}
}

// Query runs a LogsQL query and returns every row it answers, each as
// field name to value (VictoriaLogs returns every value as a string).
func (s *Server) Query(t testing.TB, logsql string) []map[string]string {
	t.Helper()
	rows, err := s.query(logsql)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func (s *Server) query(logsql string) ([]map[string]string, error) {
	body, err := s.do(http.MethodPost, "/select/logsql/query", url.Values{"query": {logsql}})
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", logsql, err)
	}
	var rows []map[string]string
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var row map[string]string
		if err := dec.Decode(&row); err != nil {
			if errors.Is(err, io.EOF) {
				return rows, nil
			}
			return nil, fmt.Errorf("query %q: cannot decode row %d of the answer: %w", logsql, len(rows)+1, err)
		}
		rows = append(rows, row)
	}
}

// Count returns how many rows match logsql, counted by the server
// (`logsql | stats count() n`) so that large results are not transferred.
func (s *Server) Count(t testing.TB, logsql string) int {
	t.Helper()
	n, err := s.count(logsql)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Stored returns how many rows the server holds, after making every row
// ingested so far visible to queries.
func (s *Server) Stored() (int, error) {
	if _, err := s.do(http.MethodGet, "/internal/force_flush", nil); err != nil {
		return 0, fmt.Errorf("flushing victoria-logs: %w", err)
	}
	return s.count("*")
}

func (s *Server) count(logsql string) (int, error) {
	q := logsql + " | stats count() n"
	rows, err := s.query(q)
	if err != nil {
		return 0, err
	}
	if len(rows) != 1 {
		return 0, fmt.Errorf("query %q answered %d rows, want 1: %v", q, len(rows), rows)
	}
	n, err := strconv.Atoi(rows[0]["n"])
	if err != nil {
		return 0, fmt.Errorf("query %q: count %q is not a number: %w", q, rows[0]["n"], err)
	}
	return n, nil
}

func (s *Server) do(method, path string, form url.Values) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s answered %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// syncBuffer is the server's output, written by the copying goroutine and
// read by tests.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) WriteLine(line string) {
	b.mu.Lock()
	b.buf.WriteString(line)
	b.buf.WriteByte('\n')
	b.mu.Unlock()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
