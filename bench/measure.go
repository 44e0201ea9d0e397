package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// result is what one run of the subject over one path measured.
type result struct {
	path     string
	events   int64
	bytes    int64
	wall     time.Duration // from the subject's start (backlog) or the first write (live) to the last acknowledgement
	cpu      time.Duration // the subject's user + system time (live: while writing and catching up)
	idleCPU  float64       // live: the subject's share of a core, idle but sampled as often, before the writes
	peakRSS  int64
	peakHeap int64 // 0 when the subject serves no Go heap metric
	stored   map[sinkKind]int64
	complete bool // every event was acknowledged before the stall timeout
	lat      latencySummary
	profiles string // the directory of the run's profiles, if any
}

// watched is what watch saw.
type watched struct {
	samples  []ackSample
	peakHeap int64
	last     progress
	complete bool
}

// watch samples t every so often until want() (negative while unknown)
// events are done, or nothing moved for stall (then w.complete is
// false).
func (t *target) watch(ctx context.Context, every, stall time.Duration, want func() int64) (watched, error) {
	var w watched
	moved := time.Now()
	last := int64(-1)
	for {
		p, err := t.progress(ctx)
		now := time.Now()
		if err == nil {
			w.samples = append(w.samples, ackSample{at: now, done: p.done})
			w.peakHeap = max(w.peakHeap, p.heap)
			w.last = p
			if n := want(); n >= 0 && p.done >= n {
				w.complete = true
				return w, nil
			}
			if p.done != last {
				last, moved = p.done, now
			}
		}
		if err := t.alive(); err != nil {
			return w, err
		}
		if now.Sub(moved) > stall {
			return w, nil
		}
		if err := sleep(ctx, every); err != nil {
			return w, err
		}
	}
}

// interval is every, or at least 250 ms for a command, each of whose
// samples makes VictoriaLogs flush.
func interval(s subject, every time.Duration) time.Duration {
	if s.ours() {
		return every
	}
	return max(every, 250*time.Millisecond)
}

// measureBacklog ships the whole of log, written before the subject
// starts, through path, and measures it.
func measureBacklog(ctx context.Context, o *options, s subject, path string, log *auditLog) (result, error) {
	r := result{path: path, events: log.events, bytes: log.bytes}
	t, err := newTarget(ctx, s, o.vlogsBin, path, filepath.Join(o.dir, "backlog-"+path), log, o.profile != "")
	if err != nil {
		return r, err
	}
	defer t.close()
	start := time.Now()
	if err := t.start(); err != nil {
		return r, err
	}
	var prof *cpuProfiler
	if o.profile != "" && s.ours() {
		if err := t.waitUp(ctx); err != nil {
			return r, err
		}
		r.profiles = filepath.Join(o.profile, path)
		if err := os.MkdirAll(r.profiles, 0o755); err != nil {
			return r, err
		}
		prof = profileCPU("http://"+t.listen, r.profiles)
		defer func() {
			if prof != nil { // the run failed: stop profiling, keep what was taken
				_, _ = prof.finish()
			}
		}()
	}
	w, err := t.watch(ctx, interval(s, o.sampleAll), o.stall, func() int64 { return log.events })
	if err != nil {
		return r, err
	}
	if r.cpu, r.peakRSS, err = t.usage(); err != nil {
		return r, err
	}
	if len(w.samples) == 0 {
		return r, fmt.Errorf("%s: no sample of the shipper's progress succeeded; see %s", path, t.dir)
	}
	end := w.samples[len(w.samples)-1].at
	if !w.last.lastAck.IsZero() {
		end = w.last.lastAck
	}
	r.wall, r.peakHeap, r.complete = end.Sub(start), w.peakHeap, w.complete
	if prof != nil {
		p := prof
		prof = nil
		if err := finishProfiles(p, "http://"+t.listen, r.profiles); err != nil {
			return r, err
		}
	}
	r.stored = t.stored(ctx)
	return r, nil
}

// finishProfiles waits for the last CPU profile, takes a heap profile and
// writes the top functions of the merged CPU profiles.
func finishProfiles(prof *cpuProfiler, base, dir string) error {
	files, err := prof.finish()
	if err != nil {
		return err
	}
	if err := fetch(base+"/debug/pprof/heap", filepath.Join(dir, "heap.pprof")); err != nil {
		return err
	}
	if len(files) == 0 {
		return nil
	}
	return topTable(filepath.Join(dir, "cpu-top.txt"), files...)
}

// idleWindow is how long a live run samples the subject before writing,
// to measure what sampling costs it.
const idleWindow = 2 * time.Second

// measureLive starts the subject on an empty log, writes events at
// o.rate for o.live and measures each event's time from write to
// acknowledgement.
func measureLive(ctx context.Context, o *options, s subject, path string) (result, error) {
	r := result{path: path}
	dir := filepath.Join(o.dir, "live-"+path)
	log := &auditLog{dir: filepath.Join(dir, "log")}
	if err := os.MkdirAll(log.dir, 0o755); err != nil {
		return r, err
	}
	t, err := newTarget(ctx, s, o.vlogsBin, path, dir, log, false)
	if err != nil {
		return r, err
	}
	defer t.close()
	if err := t.start(); err != nil {
		return r, err
	}
	if err := t.waitUp(ctx); err != nil {
		return r, err
	}
	// What sampling alone costs the subject: at 50 samples a second, a
	// scrape of /metrics weighs as much as shipping a few MB/s.
	idle0, _, err := t.usage()
	if err != nil {
		return r, err
	}
	idleStart := time.Now()
	if _, err := t.watch(ctx, interval(s, o.sample), idleWindow, func() int64 { return -1 }); err != nil {
		return r, err
	}
	cpu0, _, err := t.usage()
	if err != nil {
		return r, err
	}
	r.idleCPU = (cpu0 - idle0).Seconds() / time.Since(idleStart).Seconds()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var total atomic.Int64
	total.Store(-1)
	type written struct {
		w   *steadyWrites
		err error
	}
	wc := make(chan written, 1)
	start := time.Now()
	go func() {
		w, err := writeSteady(wctx, log.dir, o.rotate, o.seed, o.rate, o.live)
		if err == nil {
			total.Store(w.log.events)
		}
		wc <- written{w, err}
	}()
	w, err := t.watch(ctx, interval(s, o.sample), o.stall, total.Load)
	cancel()
	wr := <-wc
	if err != nil {
		return r, err
	}
	if wr.err != nil {
		return r, wr.err
	}
	if r.cpu, r.peakRSS, err = t.usage(); err != nil {
		return r, err
	}
	r.cpu -= cpu0
	if len(w.samples) == 0 {
		return r, fmt.Errorf("%s: no sample of the shipper's progress succeeded; see %s", path, t.dir)
	}
	r.events, r.bytes = wr.w.log.events, wr.w.log.bytes
	r.wall, r.peakHeap, r.complete = w.samples[len(w.samples)-1].at.Sub(start), w.peakHeap, w.complete
	warm := min(int(o.warmup*time.Duration(o.rate)/time.Second), len(wr.w.written))
	lat := latencies(wr.w.written, w.samples, warm)
	r.lat = summarize(lat)
	if o.keep {
		if err := writeLatencies(filepath.Join(dir, "latency.csv"), wr.w.written, warm, lat); err != nil {
			return r, err
		}
	}
	r.stored = t.stored(ctx)
	return r, nil
}

// writeLatencies keeps each event's latency (-1: never acknowledged),
// for plotting.
func writeLatencies(path string, written []time.Time, from int, lat []time.Duration) error {
	var b []byte
	b = append(b, "event,written_unix_ns,latency_ns\n"...)
	for k, l := range lat {
		b = fmt.Appendf(b, "%d,%d,%d\n", from+k, written[from+k].UnixNano(), l)
	}
	return os.WriteFile(path, b, 0o644)
}
