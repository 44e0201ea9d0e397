//go:build !linux

package parse

import "time"

func threadCPU() time.Duration { return 0 }
