package faults

import (
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

// newAuditLog writes path the way kube-apiserver does, every backup
// kept, with events from an hour ago on.
func newAuditLog(path string, seed int64) *shipperproc.AuditLog {
	return shipperproc.NewAuditLog(path, shipperproc.LogOptions{Seed: seed, Start: time.Now().Add(-time.Hour)})
}

// background runs write in a goroutine; wait returns its error.
type background struct {
	done chan struct{}
	err  error
}

func inBackground(write func() error) *background {
	b := &background{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.err = write()
	}()
	return b
}

func (b *background) wait(t *testing.T) {
	t.Helper()
	<-b.done
	if b.err != nil {
		t.Fatal(b.err)
	}
}

// timeline runs actions at offsets from its start, in order, while
// checking that the shipper stays up.
type timeline struct {
	t       *testing.T
	s       *shipper
	begin   time.Time
	actions []action
}

type action struct {
	at   time.Duration
	what string
	do   func()
}

func newTimeline(t *testing.T, s *shipper) *timeline {
	return &timeline{t: t, s: s}
}

// at adds an action at offset d.
func (tl *timeline) at(d time.Duration, what string, do func()) {
	tl.actions = append(tl.actions, action{at: d, what: what, do: do})
}

// run performs the actions in time order and returns when the last is
// done.
func (tl *timeline) run() {
	tl.t.Helper()
	acts := tl.actions
	for i := 1; i < len(acts); i++ {
		for j := i; j > 0 && acts[j].at < acts[j-1].at; j-- {
			acts[j], acts[j-1] = acts[j-1], acts[j]
		}
	}
	tl.begin = time.Now()
	for _, a := range acts {
		for d := time.Until(tl.begin.Add(a.at)); d > 0; d = time.Until(tl.begin.Add(a.at)) {
			time.Sleep(min(d, 500*time.Millisecond))
			tl.s.Alive()
		}
		tl.t.Logf("%6.1fs %s", time.Since(tl.begin).Seconds(), a.what)
		a.do()
	}
}
