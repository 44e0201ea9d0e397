package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// sinkKind is where one sink of a path delivers. It is also the sink's
// name in the audit-shipper config, so its metrics carry it as the sink
// label.
type sinkKind string

const (
	sinkFile sinkKind = "file" // the file sink, to /dev/null
	sinkLoki sinkKind = "loki" // Loki push API (protobuf + snappy) of VictoriaLogs
	sinkES   sinkKind = "es"   // Elasticsearch bulk API (gzip) of VictoriaLogs
)

// pathSinks are the paths the harness measures and their sinks.
var pathSinks = map[string][]sinkKind{
	"file": {sinkFile},
	"loki": {sinkLoki},
	"es":   {sinkES},
	"all":  {sinkFile, sinkLoki, sinkES},
}

// subject is the shipper under test: the audit-shipper binary, run with
// its config of bench/peers/audit-shipper, or any command (-shipper-cmd),
// which finds its way in the environment of commandEnv.
type subject struct {
	bin  string   // audit-shipper; empty when cmd is set
	cmd  []string // the command line of another shipper
	name string   // for the report
}

func (s subject) ours() bool { return s.bin != "" }

// target is one run of the subject over one audit log, with the servers
// its sinks deliver to.
type target struct {
	subject
	path    string
	sinks   []sinkKind
	dir     string // the run's own directory: config, state, logs
	log     *auditLog
	servers map[sinkKind]sinkServer
	listen  string // audit-shipper's metrics listener, host:port (METRICS_LISTEN)
	pprof   bool
	out     *lineCounter // a command's file output

	proc   *exec.Cmd
	exited chan error
	client *http.Client
}

// newTarget starts the servers of path's sinks. The caller starts the
// subject with start and ends everything with close.
func newTarget(ctx context.Context, s subject, vlogsBin, path, dir string, log *auditLog, pprof bool) (*target, error) {
	t := &target{
		subject: s, path: path, sinks: pathSinks[path], dir: dir, log: log, pprof: pprof,
		servers: map[sinkKind]sinkServer{},
		client:  &http.Client{Timeout: 30 * time.Second},
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return nil, err
	}
	for _, k := range t.sinks {
		if k == sinkFile {
			continue
		}
		v, err := startVlogs(ctx, vlogsBin, filepath.Join(dir, "vlogs-"+string(k)))
		if err != nil {
			t.close()
			return nil, err
		}
		t.servers[k] = v
	}
	return t, nil
}

// start runs the subject, its output to dir/shipper.log.
func (t *target) start() error {
	out, err := os.Create(filepath.Join(t.dir, "shipper.log"))
	if err != nil {
		return err
	}
	if t.listen, err = freeAddr(); err != nil {
		out.Close()
		return err
	}
	var argv []string
	if t.ours() {
		conf := filepath.Join(t.dir, "config.yaml")
		b, err := peerConfigs.ReadFile("peers/audit-shipper/" + t.path + ".yaml")
		if err == nil {
			err = os.WriteFile(conf, b, 0o644)
		}
		if err != nil {
			out.Close()
			return err
		}
		argv = []string{t.bin, "run", "--config", conf}
	} else {
		t.out = &lineCounter{path: filepath.Join(t.dir, "out.ndjson")}
		argv = slices.Clone(t.cmd)
	}
	env := t.commandEnv()
	// $NAME in the command line is the run's value (the state directory,
	// for a tool that takes it as a flag), then the process's.
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	for i := range argv {
		argv[i] = os.Expand(argv[i], func(name string) string {
			if v, ok := vars[name]; ok {
				return v
			}
			return os.Getenv(name)
		})
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("starting %s: %w", strings.Join(argv, " "), err)
	}
	t.proc, t.exited = cmd, make(chan error, 1)
	go func() {
		err := cmd.Wait()
		out.Close()
		t.exited <- err
	}()
	return nil
}

// peerConfigs are audit-shipper's configs for each path, run as they
// are: what is measured is what a user can read and run.
//
//go:embed peers/audit-shipper/*.yaml
var peerConfigs embed.FS

// commandEnv tells the subject where to read and where to send; the
// configs under bench/peers read these variables (README.md there).
func (t *target) commandEnv() []string {
	out, outDir, outFile := os.DevNull, filepath.Dir(os.DevNull), filepath.Base(os.DevNull)
	if t.out != nil {
		out, outDir, outFile = t.out.path, filepath.Dir(t.out.path), filepath.Base(t.out.path)
	}
	env := []string{
		"BENCH_PATH=" + t.path,
		"AUDIT_LOG=" + t.log.path(),
		"AUDIT_LOG_DIR=" + t.log.dir,
		"BENCH_STATE_DIR=" + filepath.Join(t.dir, "state"),
		"BENCH_OUT=" + out,
		"BENCH_OUT_DIR=" + outDir,
		"BENCH_OUT_FILE=" + outFile,
		"METRICS_LISTEN=" + t.listen,
		fmt.Sprintf("BENCH_PPROF=%t", t.pprof),
	}
	for k, v := range t.servers {
		u, _ := url.Parse(v.URL())
		p := "VLOGS_" + strings.ToUpper(string(k)) + "_"
		env = append(env, p+"URL="+v.URL(), p+"HOST="+u.Hostname(), p+"PORT="+u.Port())
	}
	return env
}

// progress is one sample of how far the subject got.
type progress struct {
	// done is the number of events every sink has finished with:
	// acknowledged, dead-lettered or filtered out (audit-shipper's
	// counters, which move in file order), or stored in the sink's
	// server (a command's).
	done int64
	// heap is the Go heap in use, when the subject serves audit-shipper's
	// metrics; lastAck when its last batch was acknowledged.
	heap    int64
	lastAck time.Time
}

// progress samples the subject.
func (t *target) progress(ctx context.Context) (progress, error) {
	if t.ours() {
		return t.scrapeProgress(ctx)
	}
	p := progress{done: -1}
	for _, k := range t.sinks {
		var n int64
		var err error
		if k == sinkFile {
			n, err = t.out.count()
		} else {
			var c int
			c, err = t.servers[k].Stored()
			n = int64(c)
		}
		if err != nil {
			return p, err
		}
		if p.done < 0 || n < p.done {
			p.done = n
		}
	}
	return p, nil
}

func (t *target) scrapeProgress(ctx context.Context) (progress, error) {
	m, err := scrape(ctx, t.client, "http://"+t.listen+"/metrics")
	if err != nil {
		return progress{}, err
	}
	p := progress{done: -1}
	for _, k := range t.sinks {
		var n float64
		for _, name := range []string{"audit_shipper_events_shipped_total", "audit_shipper_dead_letters_total", "audit_shipper_events_filtered_total"} {
			v, _ := m.sum(name, "sink", string(k))
			n += v
		}
		if p.done < 0 || int64(n) < p.done {
			p.done = int64(n)
		}
		if v, ok := m.sum("audit_shipper_last_send_success_timestamp_seconds", "sink", string(k)); ok && v > 0 {
			if at := time.Unix(0, int64(v*1e9)); at.After(p.lastAck) {
				p.lastAck = at
			}
		}
	}
	h, _ := m.sum("go_memstats_heap_inuse_bytes")
	p.heap = int64(h)
	return p, nil
}

// waitUp waits until audit-shipper answers /healthz, or a command has
// had a second to start.
func (t *target) waitUp(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !t.ours() {
			return sleep(ctx, time.Second)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.listen+"/healthz", nil)
		if resp, err := t.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := t.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer /healthz on %s within 30s; see %s", t.name, t.listen, filepath.Join(t.dir, "shipper.log"))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// alive reports an error when the subject has exited.
func (t *target) alive() error {
	select {
	case err := <-t.exited:
		t.exited <- err
		return fmt.Errorf("%s exited (%v); see %s", t.name, err, filepath.Join(t.dir, "shipper.log"))
	default:
		return nil
	}
}

// usage returns the subject's CPU time so far and its peak RSS.
func (t *target) usage() (time.Duration, int64, error) {
	cpu, err := procCPU(t.proc.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	rss, err := procPeakRSS(t.proc.Process.Pid)
	return cpu, rss, err
}

// stored counts what each sink's server holds (a command's file output:
// its lines). audit-shipper's file sink writes to /dev/null: not counted.
func (t *target) stored(ctx context.Context) map[sinkKind]int64 {
	n := map[sinkKind]int64{}
	for k, v := range t.servers {
		if c, err := v.Stored(); err == nil {
			n[k] = int64(c)
		}
	}
	if t.out != nil && slices.Contains(t.sinks, sinkFile) {
		if c, err := t.out.count(); err == nil {
			n[sinkFile] = c
		}
	}
	return n
}

// close stops the subject (SIGTERM, then SIGKILL after 20 s) and the
// servers.
func (t *target) close() {
	if t.proc != nil {
		_ = t.proc.Process.Signal(syscall.SIGTERM)
		select {
		case <-t.exited:
		case <-time.After(20 * time.Second):
			_ = t.proc.Process.Kill()
			<-t.exited
		}
	}
	for _, v := range t.servers {
		v.Stop()
	}
	if t.out != nil && t.out.f != nil {
		t.out.f.Close()
	}
}

// lineCounter counts the lines of a file another process appends to,
// reading only what was added since the last count.
type lineCounter struct {
	path  string
	f     *os.File
	lines int64
	buf   []byte
}

func (c *lineCounter) count() (int64, error) {
	if c.f == nil {
		f, err := os.Open(c.path)
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		c.f, c.buf = f, make([]byte, 1<<20)
	}
	for {
		n, err := c.f.Read(c.buf)
		c.lines += int64(bytes.Count(c.buf[:n], []byte{'\n'}))
		if errors.Is(err, io.EOF) || n == 0 {
			return c.lines, nil
		}
		if err != nil {
			return c.lines, err
		}
	}
}

// freeAddr returns a loopback address nobody listens on at the moment.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sinkServer is what a target needs of the server behind a sink: a
// VictoriaLogs, or a stand-in in tests.
type sinkServer interface {
	URL() string
	Stored() (int, error)
	Stop()
}

// vlogsServer is a VictoriaLogs with its output in a file.
type vlogsServer struct {
	*vlogs.Server
	log *os.File
}

// startVlogs runs bin on a free loopback port with its data in dir and
// its output in dir/victoria-logs.log, and waits until it answers. Lines
// up to the shipper's max_line_bytes are taken.
func startVlogs(ctx context.Context, bin, dir string) (vlogsServer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return vlogsServer{}, err
	}
	logf, err := os.Create(filepath.Join(dir, "victoria-logs.log"))
	if err != nil {
		return vlogsServer{}, err
	}
	s, err := vlogs.Run(ctx, bin, filepath.Join(dir, "data"), func(line string) { fmt.Fprintln(logf, line) },
		"-insert.maxLineSizeBytes=4MiB")
	if err != nil {
		logf.Close()
		return vlogsServer{}, fmt.Errorf("%w; see %s", err, logf.Name())
	}
	return vlogsServer{Server: s, log: logf}, nil
}

// Stop stops the server, then closes its log, which its output goes to
// until it has exited.
func (v vlogsServer) Stop() {
	v.Server.Stop()
	v.log.Close()
}
