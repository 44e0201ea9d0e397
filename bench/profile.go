package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// profileChunk is the length of each CPU profile taken while a run lasts:
// the run's end is not known in advance, so the profile is taken in
// chunks and the chunks merged (pprof merges every file it is given).
const profileChunk = 2 * time.Second

// cpuProfiler takes CPU profiles of an audit-shipper (metrics.pprof:
// true) back to back until stopped.
type cpuProfiler struct {
	stop  chan struct{}
	done  chan struct{}
	files []string
	err   error
}

// profileCPU starts taking profiles from base (http://host:port) into dir.
func profileCPU(base, dir string) *cpuProfiler {
	p := &cpuProfiler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			default:
			}
			f := filepath.Join(dir, fmt.Sprintf("cpu-%03d.pprof", i))
			url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(profileChunk/time.Second))
			if err := fetch(url, f); err != nil {
				p.err = err
				return
			}
			p.files = append(p.files, f)
		}
	}()
	return p
}

// finish waits for the chunk being taken (the run it covers may end
// before the chunk does: the shipper is then idle and adds few samples)
// and returns the files.
func (p *cpuProfiler) finish() ([]string, error) {
	close(p.stop)
	<-p.done
	return p.files, p.err
}

// fetch writes the answer of url to the file path.
func fetch(url, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), profileChunk+time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	return f.Close()
}

// topTable writes `go tool pprof -top` of the merged profiles to out.
func topTable(out string, profiles ...string) error {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, profiles...)
	b, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof -top: %w: %s", err, b)
	}
	return os.WriteFile(out, b, 0o644)
}
