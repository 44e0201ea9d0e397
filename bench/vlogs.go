package main

import (
	"bufio"
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
	"time"
)

// vlogsInstall builds the VictoriaLogs binary the Loki and Elasticsearch
// paths send to.
const vlogsInstall = "go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1"

// vlogsListenRE finds the address VictoriaLogs bound: it listens on port
// 0 and logs the port the kernel chose.
var vlogsListenRE = regexp.MustCompile(`started server at http://([^/\s]+)/`)

// vlogs is a running VictoriaLogs, the stand-in for Loki and
// Elasticsearch: it takes both protocols and counts what it stored.
type vlogs struct {
	url    string
	cmd    *exec.Cmd
	exited chan error
	client *http.Client
}

// findVlogs returns bin if set, else victoria-logs from
// $VICTORIA_LOGS_BIN, PATH or $(go env GOPATH)/bin.
func findVlogs(bin string) (string, error) {
	if bin == "" {
		bin = os.Getenv("VICTORIA_LOGS_BIN")
	}
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("VictoriaLogs binary %q: %w; build it with: %s", bin, err, vlogsInstall)
		}
		return bin, nil
	}
	if p, err := exec.LookPath("victoria-logs"); err == nil {
		return p, nil
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), string(os.PathListSeparator))
		p := filepath.Join(first, "bin", "victoria-logs")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("victoria-logs not found (-vlogs-bin, $VICTORIA_LOGS_BIN, PATH, $(go env GOPATH)/bin); build it with: %s", vlogsInstall)
}

// startVlogs runs bin on a free loopback port with its data in dir and
// its output in dir/victoria-logs.log, and waits until it answers.
// Lines up to the shipper's max_line_bytes are taken, and timestamps of
// any age.
func startVlogs(ctx context.Context, bin, dir string) (*vlogs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "victoria-logs.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"-httpListenAddr=127.0.0.1:0",
		"-storageDataPath="+filepath.Join(dir, "data"),
		"-retentionPeriod=100y",
		"-insert.maxLineSizeBytes=4MiB",
		"-loggerLevel=INFO")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	v := &vlogs{cmd: cmd, exited: make(chan error, 1), client: &http.Client{Timeout: time.Minute}}
	// One goroutine owns the pipe: it copies the output to the log file
	// and reports the listen address once it appears.
	addrc := make(chan string, 1)
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if found {
				continue
			}
			if m := vlogsListenRE.FindStringSubmatch(sc.Text()); m != nil {
				found = true
				addrc <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		v.exited <- cmd.Wait()
		pw.Close()
	}()

	deadline := time.After(time.Minute)
	select {
	case addr := <-addrc:
		v.url = "http://" + addr
	case err := <-v.exited:
		return nil, fmt.Errorf("victoria-logs exited before listening (%v); see %s", err, logf.Name())
	case <-deadline:
		v.stop()
		return nil, fmt.Errorf("victoria-logs did not log its listen address within a minute; see %s", logf.Name())
	case <-ctx.Done():
		v.stop()
		return nil, ctx.Err()
	}
	for {
		if _, err := v.get(ctx, "/health"); err == nil {
			return v, nil
		}
		select {
		case err := <-v.exited:
			return nil, fmt.Errorf("victoria-logs exited while starting (%v); see %s", err, logf.Name())
		case <-deadline:
			v.stop()
			return nil, fmt.Errorf("victoria-logs at %s did not answer /health within a minute; see %s", v.url, logf.Name())
		case <-ctx.Done():
			v.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop interrupts the server and waits for it, killing it after 10 s.
func (v *vlogs) stop() {
	_ = v.cmd.Process.Signal(os.Interrupt)
	select {
	case <-v.exited:
	case <-time.After(10 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.exited
	}
}

// count returns how many rows the server holds, after making every row
// ingested so far visible to queries.
func (v *vlogs) count(ctx context.Context) (int64, error) {
	if _, err := v.get(ctx, "/internal/force_flush"); err != nil {
		return 0, err
	}
	q := url.Values{"query": {"* | stats count() n"}}
	b, err := v.get(ctx, "/select/logsql/query?"+q.Encode())
	if err != nil {
		return 0, err
	}
	var row struct{ N string }
	if err := json.Unmarshal(b, &row); err != nil {
		return 0, fmt.Errorf("victoria-logs count: cannot decode %q: %w", b, err)
	}
	return strconv.ParseInt(row.N, 10, 64)
}

func (v *vlogs) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.url+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status + ": " + strings.TrimSpace(string(b)))
	}
	return b, nil
}
