package acceptance

import (
	"flag"
	"os"
	"testing"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

var (
	update = flag.Bool("update", false, "rewrite the golden files under testdata from the binary's output")
	seed   = flag.Int64("seed", 0, "seed of the crash test's kill schedule; 0 takes one from the clock")
)

// binary is the audit-shipper built for this run of the package.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(shipperproc.Main(m, &binary, ""))
}

// scaled returns n, or a tenth of it under -short.
func scaled(n int) int {
	if testing.Short() {
		return n / 10
	}
	return n
}
