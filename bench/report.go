package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report is everything one run of the harness measured.
type report struct {
	opts                  *options
	subject               subject
	started               time.Time
	loadBefore, loadAfter string
	backlog               *auditLog
	generations           int
	floors                map[string]floorResult
	backlogRuns, liveRuns []result
	// compareRuns are the backlog runs again on compareBacklog
	// (-compare-size).
	compareBacklog *auditLog
	compareRuns    []result
}

const (
	mb  = 1e6
	gb  = 1e9
	mib = 1 << 20
)

func (r *report) write(w io.Writer) {
	o := r.opts
	fmt.Fprintf(w, "### Run of %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s. Load average (1, 5, 15 min) %s at the start, %s at the end.\n\n", machine(), r.loadBefore, r.loadAfter)
	fmt.Fprintf(w, "Shipper under test: %s. Command: `%s`.\n\n", r.subject.name, strings.Join(append([]string{"shipbench"}, os.Args[1:]...), " "))

	if r.backlog != nil {
		b := r.backlog
		fmt.Fprintf(w, "Backlog: %d events, %.0f MB (mean %.0f bytes per line), %d generations of up to %d MiB (lumberjack), written before the shipper starts; read from the page cache.\n\n",
			b.events, float64(b.bytes)/mb, float64(b.bytes)/float64(b.events), r.generations, o.rotate>>20)
		fmt.Fprintln(w, "Floors (the least work of a path, each in a process of its own; best of two runs, before and after the shipper's runs; the parse floors also cut and parse every line, as a shipper that applies rules and redacts must):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| floor | MB/s | CPU s/GB | MB per CPU-s | peak RSS MiB | output |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
		for _, k := range floorKinds {
			f, ok := r.floors[k]
			if !ok {
				continue
			}
			out := "-"
			if f.out > 0 {
				out = fmt.Sprintf("%.1f%% of input", 100*float64(f.out)/float64(b.bytes))
			}
			fmt.Fprintf(w, "| %s | %.0f | %.2f | %.0f | %.1f | %s |\n", floorName(k), float64(b.bytes)/mb/f.wall.Seconds(),
				f.cpu.Seconds()/(float64(b.bytes)/gb), float64(b.bytes)/mb/f.cpu.Seconds(), float64(f.peakRSS)/mib, out)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Backlog runs (from the shipper's start to the last acknowledgement; progress and Go heap sampled every %s):\n", interval(r.subject, o.sampleAll))
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| path | events/s | MB/s | CPU s/GB | MB per CPU-s | CPU x floor | time x floor | CPU x parse floor | peak RSS MiB | peak heap MiB | stored |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, x := range r.backlogRuns {
			f, pf := r.floors[floorOf[x.path]], r.floors[parseFloorOf[x.path]]
			fmt.Fprintf(w, "| %s | %.0f | %.0f | %.2f | %.0f | %.2f | %.2f | %.2f | %.1f | %s | %s |\n", x.path,
				float64(x.events)/x.wall.Seconds(), float64(x.bytes)/mb/x.wall.Seconds(),
				x.cpu.Seconds()/(float64(x.bytes)/gb), float64(x.bytes)/mb/x.cpu.Seconds(),
				x.cpu.Seconds()/f.cpu.Seconds(), x.wall.Seconds()/f.wall.Seconds(), x.cpu.Seconds()/pf.cpu.Seconds(),
				float64(x.peakRSS)/mib, heap(x), stored(x))
		}
		fmt.Fprintln(w)
		r.writeCompare(w)
	}
	if len(r.liveRuns) > 0 {
		fmt.Fprintf(w, "Live runs: the shipper started on an empty log, events written at %d/s for %s (%d MiB rotation); latency from each write to the first sample (every %s) that counts it acknowledged, the first %s left out:\n\n",
			o.rate, o.live, o.rotate>>20, interval(r.subject, o.sample), o.warmup)
		fmt.Fprintln(w, "| path | events | MB | p50 ms | p99 ms | max ms | CPU % of a core | idle, sampled alike | peak RSS MiB | peak heap MiB | RSS backlog / live | stored |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, x := range r.liveRuns {
			ratio := "-"
			for _, b := range r.backlogRuns {
				if b.path == x.path {
					ratio = fmt.Sprintf("%.2f", float64(b.peakRSS)/float64(x.peakRSS))
				}
			}
			fmt.Fprintf(w, "| %s | %d | %.0f | %d | %d | %d | %.1f | %.1f | %.1f | %s | %s | %s |\n", x.path, x.events, float64(x.bytes)/mb,
				x.lat.p50.Milliseconds(), x.lat.p99.Milliseconds(), x.lat.max.Milliseconds(),
				100*x.cpu.Seconds()/x.wall.Seconds(), 100*x.idleCPU, float64(x.peakRSS)/mib, heap(x), ratio, stored(x))
		}
		fmt.Fprintln(w)
	}
	for _, x := range slices.Concat(r.backlogRuns, r.compareRuns, r.liveRuns) {
		if !x.complete {
			fmt.Fprintf(w, "**%s: not every event was acknowledged** (the run stalled for %s); its figures are of a partial run.\n\n", x.path, o.stall)
		}
		if x.lat.missing > 0 {
			fmt.Fprintf(w, "**%s: %d events never acknowledged.**\n\n", x.path, x.lat.missing)
		}
		if x.profiles != "" {
			fmt.Fprintf(w, "Profiles of %s: %s (`go tool pprof -top %s/cpu-*.pprof`).\n\n", x.path, x.profiles, x.profiles)
		}
	}
}

// writeCompare writes the backlog runs against those on the backlog of
// -compare-size: the same figures should not grow with the backlog.
func (r *report) writeCompare(w io.Writer) {
	if len(r.compareRuns) == 0 {
		return
	}
	a, b := r.backlog, r.compareBacklog
	sa, sb := fmt.Sprintf("%.0f MB", float64(a.bytes)/mb), fmt.Sprintf("%.0f MB", float64(b.bytes)/mb)
	fmt.Fprintf(w, "The same backlog runs on %d events, %s, written and run afterwards (-compare-size), against those on %s:\n\n", b.events, sb, sa)
	fmt.Fprintf(w, "| path | CPU s/GB, %s | CPU s/GB, %s | ratio | peak RSS MiB, %s | peak RSS MiB, %s | ratio | peak heap MiB, %s | peak heap MiB, %s | ratio |\n", sa, sb, sa, sb, sa, sb)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, x := range r.backlogRuns {
		for _, y := range r.compareRuns {
			if y.path != x.path {
				continue
			}
			cx, cy := x.cpu.Seconds()/(float64(x.bytes)/gb), y.cpu.Seconds()/(float64(y.bytes)/gb)
			fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f | %.1f | %.1f | %.2f | %s | %s | %s |\n", x.path, cx, cy, cx/cy,
				float64(x.peakRSS)/mib, float64(y.peakRSS)/mib, float64(x.peakRSS)/float64(y.peakRSS),
				heap(x), heap(y), ratio(x.peakHeap, y.peakHeap))
		}
	}
	fmt.Fprintln(w)
}

func ratio(a, b int64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func floorName(k string) string {
	switch k {
	case floorCat:
		return "read (cat > /dev/null)"
	case floorSnappy:
		return "read + snappy"
	case floorGzip:
		return "read + gzip -1"
	case floorBoth:
		return "read + snappy + gzip -1"
	case floorParse:
		return "read + parse"
	case floorParseSnappy:
		return "read + parse + snappy"
	case floorParseGzip:
		return "read + parse + gzip -1"
	default:
		return "read + parse + snappy + gzip -1"
	}
}

func heap(x result) string {
	if x.peakHeap == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(x.peakHeap)/mib)
}

// stored says how many events each sink's server holds at the end of a
// run (the file sink's /dev/null is not counted).
func stored(x result) string {
	var parts []string
	for _, k := range []sinkKind{sinkFile, sinkLoki, sinkES} {
		n, ok := x.stored[k]
		if !ok {
			continue
		}
		s := fmt.Sprintf("%s %d", k, n)
		if n != x.events {
			s = "**" + s + "**"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// machine describes the CPU, memory and software of this machine.
func machine() string {
	model, mem, kernel := "unknown CPU", "", ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if n, err := parseStatusKB(b, "MemTotal"); err == nil {
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(n)/(1<<30))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d x %s%s%s, %s %s/%s", runtime.NumCPU(), model, mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}
