package shipperproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LostMsg is what the shipper logs when an audit log generation was
// deleted before it was shipped.
const LostMsg = "audit log generation deleted before it was shipped"

// Options are the parts of how the binary runs that suites vary.
type Options struct {
	// Credential runs the shipper as this uid and gid instead of the
	// test's.
	Credential *syscall.Credential
	// UpTimeout is how long WaitUp waits for /healthz; 0 means 30s.
	UpTimeout time.Duration
}

// Proc runs the binary under test, once or many times, over one
// configuration file in a directory of its own, which holds the log of
// every run. Its methods are called from the test's goroutine, except
// Current and Scrape, which any goroutine may call.
type Proc struct {
	t      testing.TB
	binary string
	opts   Options
	dir    string
	listen string

	logFiles []string

	// mu guards what Current reads.
	mu      sync.Mutex
	runs    int
	cmd     *exec.Cmd
	done    chan struct{}
	started time.Time
}

// New prepares a run of binary in a new WorkDir with the subdirectories
// logs/ and state/, and a free loopback address for /metrics and
// /healthz. The caller writes the configuration with WriteConfig; the
// process is killed when the test ends.
func New(t testing.TB, binary string, opts Options) *Proc {
	t.Helper()
	dir := WorkDir(t)
	for _, d := range []string{"logs", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if opts.UpTimeout == 0 {
		opts.UpTimeout = 30 * time.Second
	}
	p := &Proc{t: t, binary: binary, opts: opts, dir: dir, listen: FreeAddr(t)}
	t.Cleanup(p.cleanup)
	return p
}

// WorkDir makes a directory for one test, readable by every user (some
// scenarios run the shipper as another), that outlives the test when it
// fails, so that its logs, positions and output can be read afterwards.
func WorkDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "audit-shipper-"+strings.ReplaceAll(t.Name(), "/", "-")+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept the test's files in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// FreeAddr returns a loopback address nobody listens on at the moment.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Dir is the process's directory.
func (p *Proc) Dir() string { return p.dir }

// ConfigPath is the configuration file every run reads.
func (p *Proc) ConfigPath() string { return filepath.Join(p.dir, "config.yaml") }

// Listen is the address the configuration must give metrics.listen.
func (p *Proc) Listen() string { return p.listen }

// LogFiles are the logs of the runs so far, the latest last.
func (p *Proc) LogFiles() []string { return p.logFiles }

// Started is when the latest run was started.
func (p *Proc) Started() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// WriteConfig writes cfg to ConfigPath, for the next run.
func (p *Proc) WriteConfig(cfg []byte) {
	p.t.Helper()
	if err := os.WriteFile(p.ConfigPath(), cfg, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// Start runs `audit-shipper run` and returns without waiting for it to be
// up: callers that need it up call WaitUp.
func (p *Proc) Start() {
	p.t.Helper()
	if p.Running() {
		p.t.Fatal("harness: start while the shipper runs")
	}
	run := p.runs + 1
	logPath := filepath.Join(p.dir, fmt.Sprintf("shipper-%02d.log", run))
	logFile, err := os.Create(logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	p.logFiles = append(p.logFiles, logPath)
	cmd := exec.Command(p.binary, "run", "--config", p.ConfigPath())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if p.opts.Credential != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.opts.Credential}
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		p.t.Fatalf("starting %s: %v", p.binary, err)
	}
	logFile.Close()
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	p.mu.Lock()
	p.runs, p.cmd, p.done, p.started = run, cmd, done, time.Now()
	p.mu.Unlock()
}

// Current returns the number of the latest run (1 for the first, 0
// before any) and whether it still runs.
func (p *Proc) Current() (run int, running bool) {
	p.mu.Lock()
	run, done := p.runs, p.done
	p.mu.Unlock()
	if done == nil {
		return run, false
	}
	select {
	case <-done:
		return run, false
	default:
		return run, true
	}
}

// Running reports whether the latest run still runs.
func (p *Proc) Running() bool {
	_, running := p.Current()
	return running
}

// WaitUp waits until /healthz answers 200.
func (p *Proc) WaitUp() {
	p.t.Helper()
	deadline := time.Now().Add(p.opts.UpTimeout)
	for {
		if !p.Running() {
			p.t.Fatalf("the shipper exited at start (%v); its log:\n%s", p.cmd.ProcessState, p.LogTail(20))
		}
		resp, err := http.Get("http://" + p.listen + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("/healthz on %s did not answer 200 within %s (last error %v); the shipper's log:\n%s", p.listen, p.opts.UpTimeout, err, p.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Exited waits up to d for the shipper to exit by itself and returns its
// exit code, or fails the test.
func (p *Proc) Exited(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		p.t.Fatalf("the shipper still runs %s after its start; its log:\n%s", d, p.LogTail(20))
		return -1
	}
}

// Stop sends SIGTERM and requires exit 0 within 30s, which is more than
// the suites' shutdown.timeout.
func (p *Proc) Stop() {
	p.t.Helper()
	if !p.Running() {
		p.t.Fatalf("harness: the shipper is not running to be stopped (it exited: %v); its log:\n%s", p.cmd.ProcessState, p.LogTail(20))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("the shipper did not exit within 30s of SIGTERM (see shutdown.timeout in %s); its log:\n%s", p.ConfigPath(), p.LogTail(20))
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("the shipper exited with %v after SIGTERM, want exit 0; its log:\n%s", p.cmd.ProcessState, p.LogTail(20))
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	p.t.Helper()
	if !p.Running() {
		p.t.Fatalf("the shipper died before it was killed (%v); its log:\n%s", p.cmd.ProcessState, p.LogTail(20))
	}
	p.cmd.Process.Kill()
	<-p.done
}

// Alive fails the test when the shipper exited without being told to.
func (p *Proc) Alive() {
	p.t.Helper()
	if p.cmd != nil && !p.Running() {
		p.t.Fatalf("the shipper exited by itself (%v); its log:\n%s", p.cmd.ProcessState, p.LogTail(30))
	}
}

func (p *Proc) cleanup() {
	if p.Running() {
		p.cmd.Process.Kill()
		<-p.done
	}
	if p.t.Failed() && len(p.logFiles) > 0 {
		p.t.Logf("the last shipper log (%s) ends with:\n%s", p.logFiles[len(p.logFiles)-1], p.LogTail(30))
	}
}

// LogTail returns the last n lines of the latest run's log or, when the
// process panicked or died of a fatal error, n lines from there.
func (p *Proc) LogTail(n int) string {
	if len(p.logFiles) == 0 {
		return "(no log)"
	}
	b, err := os.ReadFile(p.logFiles[len(p.logFiles)-1])
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			return strings.Join(lines[i:min(len(lines), i+n)], "\n")
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// maxLogLine is the longest log line LogRecords reads.
const maxLogLine = 16 << 20

// LogRecords returns every JSON log record of every run whose msg
// contains msg. A line that contains msg but is not JSON fails the test:
// the suites configure log.format json.
func (p *Proc) LogRecords(msg string) []map[string]any {
	p.t.Helper()
	var recs []map[string]any
	for _, path := range p.logFiles {
		f, err := os.Open(path)
		if err != nil {
			p.t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, maxLogLine)
		for sc.Scan() {
			if !bytes.Contains(sc.Bytes(), []byte(msg)) {
				continue
			}
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				p.t.Errorf("%s: a log line is not JSON (log.format is json): %v: %.2000s", path, err, sc.Bytes())
				continue
			}
			if m, _ := rec["msg"].(string); strings.Contains(m, msg) {
				recs = append(recs, rec)
			}
		}
		if err := sc.Err(); err != nil {
			p.t.Errorf("reading the shipper's log %s: %v", path, err)
		}
		f.Close()
	}
	return recs
}

// NoLossReported fails the test when the shipper reported a generation
// deleted before it was shipped: in tests where lumberjack keeps every
// backup, that is a false alarm.
func (p *Proc) NoLossReported() {
	p.t.Helper()
	if recs := p.LogRecords(LostMsg); len(recs) > 0 {
		p.t.Errorf("the shipper logged %d times %q, though no generation was deleted; the first: %v", len(recs), LostMsg, recs[0])
	}
}

// LevelMsgs counts the log records at level (ERROR, WARN) over every run,
// by message.
func (p *Proc) LevelMsgs(level string) map[string]int {
	msgs := make(map[string]int)
	for _, path := range p.logFiles {
		b, _ := os.ReadFile(path)
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if !bytes.Contains(line, []byte(`"level":"`+level+`"`)) {
				continue
			}
			var rec struct{ Msg string }
			json.Unmarshal(line, &rec)
			msgs[rec.Msg]++
		}
	}
	return msgs
}
