package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/audit-shipper/audit-shipper/corpus"
)

// auditLog is an audit log directory written the way kube-apiserver
// writes one: corpus events through lumberjack, rotated at a size, every
// backup kept (so the shipper under test can be checked for every event).
type auditLog struct {
	dir    string
	events int64
	bytes  int64
}

func (a *auditLog) path() string { return filepath.Join(a.dir, "audit.log") }

func newLumberjack(dir string, rotate int64) *lumberjack.Logger {
	return &lumberjack.Logger{
		Filename: filepath.Join(dir, "audit.log"),
		// lumberjack counts megabytes of 2^20 bytes.
		MaxSize: int(max(1, rotate>>20)),
	}
}

// writeBacklog writes corpus events (seed) into dir until size bytes are
// written, rotating every rotate bytes. Timestamps start now, one
// millisecond apart on average.
func writeBacklog(dir string, size, rotate, seed int64) (*auditLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	a := &auditLog{dir: dir}
	lj := newLumberjack(dir, rotate)
	g := corpus.New(corpus.Options{Seed: seed, Start: time.Now()})
	var line []byte
	for a.bytes < size {
		line = append(g.Next(line[:0]), '\n')
		if _, err := lj.Write(line); err != nil {
			lj.Close()
			return nil, fmt.Errorf("writing the backlog into %s: %w", dir, err)
		}
		a.events++
		a.bytes += int64(len(line))
	}
	return a, lj.Close()
}

// files returns the generations of the log, oldest first: lumberjack's
// backups (audit-<time>.log, whose names sort by time), then audit.log.
func (a *auditLog) files() ([]string, error) {
	backups, err := filepath.Glob(filepath.Join(a.dir, "audit-*.log"))
	if err != nil {
		return nil, err
	}
	slices.Sort(backups)
	return append(backups, a.path()), nil
}

// steadyWrites is what writeSteady did: when each event was written
// (after its write returned), in file order.
type steadyWrites struct {
	log     *auditLog
	written []time.Time
}

// writeSteady writes corpus events into dir at rate events per second
// for d, each with its own write as kube-apiserver does, and records
// when each write returned. Event i is due at start + i/rate; a writer
// that falls behind catches up without sleeping, so the rate holds on
// average, and each event's latency is measured from its actual write.
func writeSteady(ctx context.Context, dir string, rotate, seed int64, rate int, d time.Duration) (*steadyWrites, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	interval := time.Second / time.Duration(rate)
	w := &steadyWrites{log: &auditLog{dir: dir}}
	lj := newLumberjack(dir, rotate)
	g := corpus.New(corpus.Options{Seed: seed, Start: time.Now(), Step: interval})
	n := int(d / interval)
	w.written = make([]time.Time, 0, n)
	var line []byte
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				lj.Close()
				return nil, ctx.Err()
			}
		}
		line = append(g.Next(line[:0]), '\n')
		if _, err := lj.Write(line); err != nil {
			lj.Close()
			return nil, fmt.Errorf("writing event %d into %s: %w", i, dir, err)
		}
		w.written = append(w.written, time.Now())
		w.log.events++
		w.log.bytes += int64(len(line))
	}
	return w, lj.Close()
}
