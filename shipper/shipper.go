// Package shipper follows the kube-apiserver audit log across rotations and
// restarts and carries every event to every sink: one cursor, one batch
// loop and one acknowledged position per sink, over the same files.
package shipper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/rules"
	"github.com/audit-shipper/audit-shipper/signals"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// readyGrace is how long a sink may fail before /readyz says so.
const readyGrace = 30 * time.Second

// Sink is a built sink with the config entry it came from, and the rules
// its events go through (nil: none).
type Sink struct {
	Config config.Sink
	Sink   sinks.Sink
	Rules  *rules.Rules
}

// Ordered is implemented by sinks whose output must keep the audit log's
// order (a file): they get one batch at a time.
type Ordered interface {
	Ordered() bool
}

// Trimmer is implemented by sinks that keep buffers for their next
// requests. Trim lets them go; the shipper calls it once the sink has
// been idle, with nothing in flight, for a while, so that memory taken by
// a burst or a catch-up goes back after it. It may run while Send does.
type Trimmer interface {
	Trim()
}

// Starter is implemented by sinks with work to do before their first Send
// (installing an index template). Start is called until it succeeds, with
// the sink's backoff between attempts; the sink's batches wait meanwhile,
// and its reader stops at the in-flight bound.
type Starter interface {
	Start(ctx context.Context) error
}

// Shipper runs one pipeline per sink and saves their positions.
type Shipper struct {
	cfg   *config.Config
	log   *slog.Logger
	m     *metrics
	store *positionStore
	dl    *deadLetters
	pipes []*pipeline
}

// New prepares a shipper: it loads the saved positions and opens the
// dead-letter file, so that their problems show before anything is read.
func New(cfg *config.Config, built []Sink, log *slog.Logger, reg prometheus.Registerer) (*Shipper, error) {
	store, err := loadPositions(cfg.Source.PositionsFile)
	if err != nil {
		return nil, err
	}
	dl, err := openDeadLetters(cfg.DeadLetter.Path)
	if err != nil {
		return nil, err
	}
	s := &Shipper{cfg: cfg, log: log, m: newMetrics(reg), store: store, dl: dl}
	for _, b := range built {
		requests := b.Config.MaxRequestsInFlight
		if o, ok := b.Sink.(Ordered); ok && o.Ordered() {
			requests = 1
		}
		p := newPipeline(b.Config.Name, b.Sink, b.Config, cfg.Source, requests,
			log.With("sink", b.Config.Name), s.m.forSink(b.Config.Name), dl, store)
		// Security signals count what each sink's reader reads, before
		// the rules: what happened, not what was shipped.
		p.signals = signals.New(prometheus.WrapRegistererWith(prometheus.Labels{"sink": b.Config.Name}, reg))
		p.rules = b.Rules
		s.pipes = append(s.pipes, p)
	}
	return s, nil
}

// Run ships until ctx is done, then stops in order: no more reading, the
// batches in flight get shutdown.timeout to be delivered, positions are
// saved, sinks closed. What was not delivered is read again at the next
// start.
func (s *Shipper) Run(ctx context.Context) error {
	sendCtx, cancelSend := context.WithCancel(context.Background())
	defer cancelSend()
	var wg sync.WaitGroup
	for _, p := range s.pipes {
		wg.Go(func() { p.run(ctx, sendCtx) })
	}
	pipesDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(pipesDone)
	}()

	var helpers sync.WaitGroup
	stopHelpers := make(chan struct{})
	helpers.Go(func() { s.notify(stopHelpers) })
	helpers.Go(func() { s.saveEvery(stopHelpers) })

	select {
	case <-pipesDone:
	case <-ctx.Done():
		s.log.Info("stopping: no more reading; flushing batches in flight", "timeout", s.cfg.Shutdown.Timeout.D().String())
		select {
		case <-pipesDone:
		case <-time.After(s.cfg.Shutdown.Timeout.D()):
			s.log.Warn("shutdown timeout reached; batches still in flight are sent again at the next start")
			cancelSend()
			<-pipesDone
		}
	}
	close(stopHelpers)
	helpers.Wait()

	err := s.save()
	for _, p := range s.pipes {
		if cerr := p.sink.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing sink %q: %w", p.name, cerr))
		}
	}
	if cerr := s.dl.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// save makes the dead letters durable, then the positions that passed them.
func (s *Shipper) save() error {
	err := s.dl.sync()
	if err == nil {
		err = s.store.save()
	}
	if err != nil {
		s.m.positionSave.WithLabelValues("error").Inc()
		return err
	}
	s.m.positionSave.WithLabelValues("ok").Inc()
	return nil
}

func (s *Shipper) saveEvery(stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.Source.SyncInterval.D())
	defer t.Stop()
	failing := false
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		err := s.save()
		switch {
		case err != nil && !failing:
			s.log.Error("cannot save positions; events will be sent again after a restart until this is fixed", "err", err)
		case err == nil && failing:
			s.log.Info("saving positions again")
		}
		failing = err != nil
	}
}

// notify wakes the readers when the audit log's directory changes, so that
// they need not wait for the next poll. Without inotify the poll does it.
func (s *Shipper) notify(stop <-chan struct{}) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("no file change notifications; polling only", "poll_interval", s.cfg.Source.PollInterval.D().String(), "err", err)
		return
	}
	defer w.Close()
	dir := filepath.Dir(s.cfg.Source.Path)
	retry := time.NewTicker(s.cfg.Source.PollInterval.D())
	defer retry.Stop()
	watching := false
	for {
		if !watching {
			watching = w.Add(dir) == nil
		}
		select {
		case <-stop:
			return
		case _, ok := <-w.Events:
			if !ok {
				return
			}
			for _, p := range s.pipes {
				poke(p.wake)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.log.Warn("file change notifications failed; polling meanwhile", "err", err)
			watching = false
		case <-retry.C:
		}
	}
}

// Ready returns nil when every sink is delivering or has nothing to
// deliver, and otherwise says which sink is failing and why.
func (s *Shipper) Ready() error {
	var errs []error
	for _, p := range s.pipes {
		if err := p.health.status(readyGrace); err != nil {
			errs = append(errs, fmt.Errorf("sink %q: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}
