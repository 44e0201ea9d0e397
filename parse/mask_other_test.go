//go:build !amd64 || purego

package parse

var useSSE2 func(b []byte, masks []uint64)
