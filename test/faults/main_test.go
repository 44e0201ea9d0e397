package faults

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the kill schedules and faults; 0 takes one from the clock")

// binary is the audit-shipper built for this run of the package.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "audit-shipper-faults-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "faults: cannot make a directory for the binary: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Readable by the unprivileged user some scenarios run the shipper as.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		return 1
	}
	binary = filepath.Join(dir, "audit-shipper")
	if prebuilt := os.Getenv("AUDIT_SHIPPER_BIN"); prebuilt != "" {
		// A binary built elsewhere, copied so that the unprivileged user
		// some scenarios use can run it.
		b, err := os.ReadFile(prebuilt)
		if err == nil {
			err = os.WriteFile(binary, b, 0o755)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "faults: $AUDIT_SHIPPER_BIN=%q: %v; unset it to build ./cmd/audit-shipper\n", prebuilt, err)
			return 1
		}
	} else if err := build(binary); err != nil {
		fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		return 1
	}
	code := m.Run()
	printTable()
	return code
}

// build compiles ./cmd/audit-shipper of the module this package is in.
func build(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("cannot find the module root with go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "build", "-o", out, "./cmd/audit-shipper")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cannot build the binary under test (cd %s && go build ./cmd/audit-shipper): %v\n%s", root, err, msg)
	}
	return nil
}

// newRand returns the scenario's random source and logs its seed.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -seed %d -run '^%s$')", seed, seed, strings.Split(t.Name(), "/")[0])
	return rand.New(rand.NewPCG(seed, 0x6661756c7473))
}

// figures are one scenario's results for one sink: a row of the table in
// docs/reliability.md.
type figures struct {
	scenario, sink string
	written        int
	delivered      int
	duplicates     int
	// dupBound is the most duplicates the scenario allows (see
	// shipper.dupBound); -1 when it allows none.
	dupBound int
	lost     int
	kills    int
	// peakHeap and peakRSS are the shipper's largest
	// go_memstats_heap_inuse_bytes and process_resident_memory_bytes.
	peakHeap, peakRSS float64
	elapsed           time.Duration
	extra             string
}

var (
	tableMu sync.Mutex
	table   []figures
)

// report logs f and keeps it for the table printed at the end.
func report(t *testing.T, f figures) {
	t.Helper()
	bound := "0"
	if f.dupBound >= 0 {
		bound = fmt.Sprint(f.dupBound)
	}
	line := fmt.Sprintf("%s sink=%s written=%d delivered=%d duplicates=%d duplicate_bound=%s lost=%d kills=%d peak_heap_mib=%.1f peak_rss_mib=%.1f elapsed=%s",
		f.scenario, f.sink, f.written, f.delivered, f.duplicates, bound, f.lost, f.kills, f.peakHeap/mib, f.peakRSS/mib, f.elapsed.Round(time.Second))
	if f.extra != "" {
		line += " " + f.extra
	}
	t.Log(line)
	if !testing.Verbose() {
		fmt.Println(line)
	}
	tableMu.Lock()
	table = append(table, f)
	tableMu.Unlock()
}

func printTable() {
	tableMu.Lock()
	defer tableMu.Unlock()
	if len(table) == 0 {
		return
	}
	fmt.Println("\n| scenario | sink | written | delivered | duplicates (bound) | lost | kills | peak heap | peak RSS | elapsed |")
	fmt.Println("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, f := range table {
		dup := fmt.Sprint(f.duplicates)
		if f.dupBound >= 0 {
			dup += fmt.Sprintf(" (≤ %d)", f.dupBound)
		}
		fmt.Printf("| %s | %s | %d | %d | %s | %d | %d | %.0f MiB | %.0f MiB | %s |\n",
			f.scenario, f.sink, f.written, f.delivered, dup, f.lost, f.kills, f.peakHeap/mib, f.peakRSS/mib, f.elapsed.Round(time.Second))
	}
}
