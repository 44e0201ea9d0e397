//go:build !amd64 || purego

package parse

func specialMasks(b []byte, masks []uint64) { specialMasksGo(b, masks) }
