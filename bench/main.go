// Command shipbench is the end-to-end benchmark of audit-shipper: it
// writes a corpus audit log with kube-apiserver's rotation
// (lumberjack), runs the real binary (or any other shipper) on it, and
// measures each path (file sink to /dev/null, Loki push and
// Elasticsearch bulk to VictoriaLogs, all three at once): throughput to
// the last acknowledgement, CPU seconds per GB of the shipper process
// alone, peak RSS and Go heap, write-to-acknowledgement latency at a
// steady rate; and, in the same run on the same files, the floors every
// figure is a ratio to (read from the page cache, read + snappy, read +
// gzip). How to run it and read it: docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

type options struct {
	size, rotate int64
	compareSize  int64 // a second, smaller backlog run after the first
	paths        []string
	rate         int
	live, warmup time.Duration
	sample       time.Duration // live runs
	sampleAll    time.Duration // backlog runs
	stall        time.Duration
	seed         int64
	dir          string
	keep         bool
	profile      string
	shipperBin   string
	shipperCmd   string
	vlogsBin     string
	out          string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == floorArg {
		if len(os.Args) < 3 {
			fmt.Fprintln(os.Stderr, "shipbench: "+floorArg+" KIND FILE...")
			os.Exit(2)
		}
		if err := runFloor(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintln(os.Stderr, "shipbench:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shipbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "shipbench:", err)
		stop()
		os.Exit(1)
	}
}

// sizeFlag is a flag in config's size syntax ("1GB", "512MiB").
type sizeFlag struct{ v *int64 }

func (f sizeFlag) String() string {
	if f.v == nil {
		return ""
	}
	return config.Size(*f.v).String()
}

func (f sizeFlag) Set(s string) error {
	n, err := config.ParseSize(s)
	*f.v = int64(n)
	return err
}

func parseFlags(args []string) (*options, error) {
	o := &options{size: 1e9, rotate: 100 << 20}
	fs := flag.NewFlagSet("shipbench", flag.ContinueOnError)
	fs.Var(sizeFlag{&o.size}, "size", "bytes of audit log written before the shipper starts (the backlog runs); 0 skips them. For the 10 GB backlog case: -size 10GB")
	fs.Var(sizeFlag{&o.compareSize}, "compare-size", "after the backlog runs, run them again on a backlog of this size, written then, and report CPU per GB, peak RSS and peak heap of -size against it (does memory grow with backlog?), e.g. -size 10GB -compare-size 1GB")
	fs.Var(sizeFlag{&o.rotate}, "rotate", "rotate the audit log at this size, as --audit-log-maxsize does (every backup is kept)")
	paths := fs.String("paths", "file,loki,es,all", "paths to measure, comma-separated: file, loki, es, all")
	fs.IntVar(&o.rate, "rate", 5000, "events per second of the live runs")
	fs.DurationVar(&o.live, "live", 20*time.Second, "how long the live runs write at -rate; 0 skips them")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "the live runs' events written in this first while are left out of the latencies")
	fs.DurationVar(&o.sample, "sample", 20*time.Millisecond, "how often the live runs sample the shipper's progress (its /metrics; VictoriaLogs for -shipper-cmd, at least 250ms): the latencies' resolution")
	fs.DurationVar(&o.sampleAll, "sample-backlog", 250*time.Millisecond, "how often the backlog runs sample the shipper's progress and Go heap (each scrape costs the shipper CPU; the end of a run is read from its last acknowledgement's time)")
	fs.DurationVar(&o.stall, "stall", 2*time.Minute, "give up on a run when nothing was acknowledged for this long")
	fs.Int64Var(&o.seed, "seed", 1, "corpus seed")
	fs.StringVar(&o.dir, "dir", "", "working directory (audit logs, VictoriaLogs data, configs, the shipper's output); default: a temporary directory, removed at the end")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory")
	fs.StringVar(&o.profile, "profile", "", "write CPU and heap profiles of each backlog run of audit-shipper into this directory, one subdirectory per path, with cpu-top.txt (go tool pprof -top of the merged CPU profiles)")
	fs.StringVar(&o.shipperBin, "shipper-bin", "", "the audit-shipper binary; default: built from ./cmd/audit-shipper of the module in the current directory")
	fs.StringVar(&o.shipperCmd, "shipper-cmd", "", `another shipper to measure instead, run as this command line (split on spaces, no shell), e.g. "fluent-bit -c bench/peers/fluent-bit/loki.conf"; see bench/peers/README.md for its environment`)
	fs.StringVar(&o.vlogsBin, "vlogs-bin", "", "the victoria-logs binary; default: $VICTORIA_LOGS_BIN, PATH, $(go env GOPATH)/bin")
	fs.StringVar(&o.out, "out", "", "also write the report (markdown) to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q; every setting is a flag (-h lists them)", fs.Args())
	}
	for _, p := range strings.Split(*paths, ",") {
		if _, ok := pathSinks[p]; !ok {
			return nil, fmt.Errorf("-paths: unknown path %q; use file, loki, es or all", p)
		}
		o.paths = append(o.paths, p)
	}
	if o.rate <= 0 || o.rotate < 1<<20 || o.size < 0 {
		return nil, fmt.Errorf("-rate must be positive, -rotate at least 1MiB, -size not negative")
	}
	if o.compareSize < 0 || o.compareSize > 0 && o.size == 0 {
		return nil, fmt.Errorf("-compare-size must not be negative, and needs backlog runs (-size) to compare with")
	}
	if o.profile != "" && o.shipperCmd != "" {
		return nil, fmt.Errorf("-profile needs audit-shipper's /debug/pprof; it cannot profile a -shipper-cmd (use the tool's own profiler, or perf)")
	}
	return o, nil
}

func run(ctx context.Context, o *options) (err error) {
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "shipbench-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(o.dir)
		}
	}
	if o.profile != "" {
		if o.profile, err = filepath.Abs(o.profile); err != nil {
			return err
		}
	}
	subj, err := chooseSubject(o)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(o.paths, func(p string) bool { return p != "file" }) {
		if o.vlogsBin, err = vlogs.Find(o.vlogsBin); err != nil {
			return err
		}
	}
	rep := &report{opts: o, subject: subj, floors: map[string]floorResult{}, started: time.Now(), loadBefore: loadAverage()}
	progressf("working directory %s", o.dir)

	if o.size > 0 {
		progressf("writing %.0f MB of audit log (seed %d, rotated every %d MiB)", float64(o.size)/mb, o.seed, o.rotate>>20)
		log, err := writeBacklog(filepath.Join(o.dir, "backlog"), o.size, o.rotate, o.seed)
		if err != nil {
			return err
		}
		rep.backlog = log
		files, err := log.files()
		if err != nil {
			return err
		}
		rep.generations = len(files)
		// Floors before and after the shipper's runs, the best of each
		// kind kept: the machine's load varies over a run.
		if err := measureFloors(rep, files); err != nil {
			return err
		}
		for _, p := range o.paths {
			progressf("backlog run: %s", p)
			r, err := measureBacklog(ctx, o, subj, p, log)
			if err != nil {
				return fmt.Errorf("backlog run of %s: %w", p, err)
			}
			rep.backlogRuns = append(rep.backlogRuns, r)
		}
		if err := measureFloors(rep, files); err != nil {
			return err
		}
		if o.compareSize > 0 {
			if err := measureCompare(ctx, o, subj, rep); err != nil {
				return err
			}
		}
	}
	if o.live > 0 {
		for _, p := range o.paths {
			progressf("live run: %s at %d events/s for %s", p, o.rate, o.live)
			r, err := measureLive(ctx, o, subj, p)
			if err != nil {
				return fmt.Errorf("live run of %s: %w", p, err)
			}
			rep.liveRuns = append(rep.liveRuns, r)
		}
	}
	rep.loadAfter = loadAverage()

	var w io.Writer = os.Stdout
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	rep.write(w)
	return nil
}

// measureCompare runs every path again on a backlog of -compare-size,
// written once the first one is no longer needed, in a directory of its
// own and without profiles.
func measureCompare(ctx context.Context, o *options, subj subject, rep *report) error {
	if !o.keep {
		if err := os.RemoveAll(rep.backlog.dir); err != nil {
			return err
		}
	}
	co := *o
	co.dir, co.profile = filepath.Join(o.dir, "compare"), ""
	progressf("writing %.0f MB of audit log to compare with", float64(o.compareSize)/mb)
	log, err := writeBacklog(filepath.Join(co.dir, "backlog"), o.compareSize, o.rotate, o.seed)
	if err != nil {
		return err
	}
	rep.compareBacklog = log
	for _, p := range o.paths {
		progressf("backlog run to compare with: %s", p)
		r, err := measureBacklog(ctx, &co, subj, p, log)
		if err != nil {
			return fmt.Errorf("backlog run of %s on %.0f MB: %w", p, float64(o.compareSize)/mb, err)
		}
		rep.compareRuns = append(rep.compareRuns, r)
	}
	return nil
}

// measureFloors runs the floor of every path measured over files and
// keeps the best (least CPU) result of each kind in rep.
func measureFloors(rep *report, files []string) error {
	for _, kind := range floorKinds {
		if !slices.ContainsFunc(rep.opts.paths, func(p string) bool { return floorOf[p] == kind || parseFloorOf[p] == kind }) {
			continue
		}
		progressf("floor: %s", kind)
		f, err := measureFloor(kind, files)
		if err != nil {
			return err
		}
		if best, ok := rep.floors[kind]; !ok || f.cpu < best.cpu {
			rep.floors[kind] = f
		}
	}
	return nil
}

func chooseSubject(o *options) (subject, error) {
	if o.shipperCmd != "" {
		argv := strings.Fields(o.shipperCmd)
		return subject{cmd: argv, name: filepath.Base(argv[0])}, nil
	}
	if o.shipperBin != "" {
		return subject{bin: o.shipperBin, name: "audit-shipper"}, nil
	}
	progressf("building ./cmd/audit-shipper")
	bin, err := buildShipper(o.dir)
	return subject{bin: bin, name: "audit-shipper"}, err
}

// buildShipper builds the binary as the Makefile's build target does
// (static, -trimpath), keeping the symbols the profiles need.
func buildShipper(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if err != nil || root == "." || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", errors.New("cannot find the audit-shipper module: run shipbench from the repository, or pass -shipper-bin")
	}
	out := filepath.Join(dir, "audit-shipper")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/audit-shipper")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the shipper (cd %s && go build ./cmd/audit-shipper): %v\n%s", root, err, b)
	}
	return out, nil
}

func progressf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "shipbench: "+format+"\n", args...)
}
