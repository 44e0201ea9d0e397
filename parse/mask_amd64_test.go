//go:build amd64 && !purego

package parse

// useSSE2 lets the tests compare the SSE2 masks with the AVX2 ones.
var useSSE2 = specialMasksSSE2
