package faults

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the kill schedules and faults; 0 takes one from the clock")

// binary is the audit-shipper built for this run of the package.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	code := shipperproc.Main(m, &binary, "AUDIT_SHIPPER_BIN")
	printTable()
	os.Exit(code)
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
