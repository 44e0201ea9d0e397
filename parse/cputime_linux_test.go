package parse

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPU is the CPU time of the whole process, every thread included (the
// garbage collector's too), so that throughput per CPU-second can be measured
// on a busy machine and compared fairly between decoders that allocate and
// decoders that do not.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
