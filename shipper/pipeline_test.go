package shipper

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/signals"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// scriptedSink answers each Send with what its script says for that batch,
// and records every attempt.
type scriptedSink struct {
	mu       sync.Mutex
	attempts [][]string
	answer   func(ids []string, attempt int) error
	got      []string
}

func (s *scriptedSink) Send(_ context.Context, recs []sinks.Record) error {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.AuditID
	}
	s.mu.Lock()
	s.attempts = append(s.attempts, ids)
	n := len(s.attempts)
	s.mu.Unlock()
	err := s.answer(ids, n)
	var items sinks.ItemErrors
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.got = append(s.got, ids...)
	case errors.As(err, &items):
		failed := map[int]bool{}
		for _, it := range items {
			failed[it.Index] = true
		}
		for i, id := range ids {
			if !failed[i] {
				s.got = append(s.got, id)
			}
		}
	}
	return err
}

func (s *scriptedSink) Close() error { return nil }

func testPipeline(t *testing.T, sink sinks.Sink) (*pipeline, string) {
	t.Helper()
	dir := t.TempDir()
	dl, err := openDeadLetters(filepath.Join(dir, "dead.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dl.close() })
	cfg := config.Default()
	sc := cfg.Sinks[0]
	sc.Name = "t"
	sc.Retry = config.Retry{MinBackoff: config.Duration(time.Millisecond), MaxBackoff: config.Duration(4 * time.Millisecond)}
	m := newMetrics(prometheus.NewRegistry()).forSink("t")
	p := newPipeline("t", sink, sc, cfg.Source, 1, slog.New(slog.NewTextHandler(io.Discard, nil)), m, dl, nil)
	return p, dl.path
}

func records(ids ...string) []sinks.Record {
	recs := make([]sinks.Record, len(ids))
	for i, id := range ids {
		recs[i] = sinks.Record{Line: []byte(`{"auditID":"` + id + `"}`), AuditID: id, Stage: "ResponseComplete", File: "audit.log", Offset: int64(100 * i)}
	}
	return recs
}

func deadLetterRecords(t *testing.T, path string) []deadLetter {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []deadLetter
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d deadLetter
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		out = append(out, d)
	}
	return out
}

func TestDeliver(t *testing.T) {
	bad := func(ids []string) bool { return slices.Contains(ids, "c") || slices.Contains(ids, "f") }
	cases := []struct {
		name      string
		answer    func(ids []string, attempt int) error
		delivered []string
		dead      []string // auditIDs dead-lettered, in order
		minCalls  int
		retries   float64
	}{{
		name:      "accepted at once",
		answer:    func([]string, int) error { return nil },
		delivered: []string{"a", "b", "c", "d", "e", "f", "g"},
		minCalls:  1,
	}, {
		name: "recoverable errors are retried until accepted",
		answer: func(_ []string, attempt int) error {
			if attempt < 4 {
				return sinks.Retryable(errors.New("503"), 0)
			}
			return nil
		},
		delivered: []string{"a", "b", "c", "d", "e", "f", "g"},
		minCalls:  4,
		retries:   3,
	}, {
		name: "unclassified errors are retried, never dropped",
		answer: func(_ []string, attempt int) error {
			if attempt < 3 {
				return errors.New("connection reset")
			}
			return nil
		},
		delivered: []string{"a", "b", "c", "d", "e", "f", "g"},
		minCalls:  3,
		retries:   2,
	}, {
		name: "a permanent rejection is split until only the bad records are left",
		answer: func(ids []string, _ int) error {
			if bad(ids) {
				return sinks.Permanent("rejected_400", errors.New("400 entry too far behind"))
			}
			return nil
		},
		delivered: []string{"a", "b", "d", "e", "g"},
		dead:      []string{"c", "f"},
	}, {
		name: "item errors: permanent ones dead-lettered, retryable ones sent again",
		answer: func(ids []string, attempt int) error {
			var items sinks.ItemErrors
			for i, id := range ids {
				switch {
				case id == "b":
					items = append(items, sinks.ItemError{Index: i, Err: sinks.Permanent("mapping", errors.New("mapper_parsing_exception"))})
				case id == "e" && attempt == 1:
					items = append(items, sinks.ItemError{Index: i, Err: sinks.Retryable(errors.New("429"), 0)})
				}
			}
			if items == nil {
				return nil
			}
			return items
		},
		delivered: []string{"a", "c", "d", "f", "g", "e"},
		dead:      []string{"b"},
		minCalls:  2,
		retries:   1,
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sink := &scriptedSink{answer: c.answer}
			p, dlPath := testPipeline(t, sink)
			if err := p.deliver(context.Background(), records("a", "b", "c", "d", "e", "f", "g")); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sink.got, c.delivered) {
				t.Errorf("delivered %v, want %v", sink.got, c.delivered)
			}
			if err := p.dl.sync(); err != nil {
				t.Fatal(err)
			}
			var dead []string
			for _, d := range deadLetterRecords(t, dlPath) {
				var ev struct{ AuditID string }
				json.Unmarshal([]byte(*d.Line), &ev)
				dead = append(dead, ev.AuditID)
				if d.Reason != reasonSinkRejected || d.Sink != "t" || d.File != "audit.log" {
					t.Errorf("dead letter %+v: want reason %s, sink t, file audit.log", d, reasonSinkRejected)
				}
			}
			if !slices.Equal(dead, c.dead) {
				t.Errorf("dead-lettered %v, want %v", dead, c.dead)
			}
			if len(sink.attempts) < c.minCalls {
				t.Errorf("%d attempts, want at least %d", len(sink.attempts), c.minCalls)
			}
			if got := testutil.ToFloat64(p.m.retries); got != c.retries {
				t.Errorf("retries counter %v, want %v", got, c.retries)
			}
		})
	}
}

// A RetryAfter from the sink is waited out, even when it is longer than the
// backoff.
func TestDeliverHonoursRetryAfter(t *testing.T) {
	const wait = 300 * time.Millisecond
	var times []time.Time
	sink := &scriptedSink{answer: func(_ []string, attempt int) error {
		times = append(times, time.Now())
		if attempt == 1 {
			return sinks.Retryable(errors.New("429"), wait)
		}
		return nil
	}}
	p, _ := testPipeline(t, sink)
	if err := p.deliver(context.Background(), records("a")); err != nil {
		t.Fatal(err)
	}
	if len(times) != 2 {
		t.Fatalf("%d attempts, want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < wait {
		t.Errorf("retried after %s, the sink asked for %s", gap, wait)
	}
}

// Cancelling the context stops the retries and reports it.
func TestDeliverStopsWithContext(t *testing.T) {
	sink := &scriptedSink{answer: func([]string, int) error { return sinks.Retryable(errors.New("down"), 0) }}
	p, _ := testPipeline(t, sink)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p.deliver(ctx, records("a")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deliver = %v, want the context's error", err)
	}
	if err := p.health.status(0); err == nil {
		t.Error("a sink failing since the first attempt reports ready")
	}
}

// The committer moves the position only past batches whose predecessors
// are all done, and never past one abandoned at shutdown.
func TestCommitInOrder(t *testing.T) {
	p, _ := testPipeline(t, &scriptedSink{})
	dir := t.TempDir()
	store, err := loadPositions(filepath.Join(dir, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	p.store = store
	in := make(chan *batch)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.commit(in)
	}()
	at := func(off int64) Position { return Position{Path: "audit.log", Offset: off} }
	send := func(seq uint64, off int64, ok bool) {
		in <- &batch{seq: seq, end: at(off), ok: ok, recs: make([]sinks.Record, 1)}
	}
	pos := func() int64 {
		time.Sleep(10 * time.Millisecond)
		got, _ := store.get("t")
		return got.Offset
	}
	send(1, 200, true)
	if got := pos(); got != 0 {
		t.Fatalf("position %d after batch 1 alone, want 0: batch 0 is not done", got)
	}
	send(0, 100, true)
	if got := pos(); got != 200 {
		t.Fatalf("position %d after batches 0 and 1, want 200", got)
	}
	send(3, 400, true)
	send(2, 300, false) // abandoned at shutdown
	if got := pos(); got != 200 {
		t.Fatalf("position %d, want 200: batch 2 was not delivered", got)
	}
	close(in)
	<-done
	if got := testutil.ToFloat64(p.m.shipped); got != 2 {
		t.Errorf("shipped counter %v, want 2", got)
	}
}

// startingSink fails to start a few times before it succeeds.
type startingSink struct {
	scriptedSink
	failures int
	starts   int
}

func (s *startingSink) Start(context.Context) error {
	s.starts++
	if s.starts <= s.failures {
		return sinks.Retryable(errors.New("403: missing manage_index_templates"), 0)
	}
	return nil
}

func TestStartIsRetriedUntilItSucceeds(t *testing.T) {
	sink := &startingSink{failures: 2}
	p, _ := testPipeline(t, sink)
	p.start(context.Background())
	if sink.starts != 3 {
		t.Fatalf("Start called %d times, want 3", sink.starts)
	}
	if err := p.health.status(0); err != nil {
		t.Fatalf("after a successful start the sink reports %v", err)
	}
}

// trimSink counts what it is sent and how often it is told to trim.
type trimSink struct {
	n, trims atomic.Int64
}

func (s *trimSink) Send(_ context.Context, recs []sinks.Record) error {
	s.n.Add(int64(len(recs)))
	return nil
}

func (s *trimSink) Close() error { return nil }
func (s *trimSink) Trim()        { s.trims.Add(1) }

// TestIdleTrim: once a sink has waited for lines with nothing in flight
// for idleTrim, its kept batches and the sink's own buffers are let go,
// once per idle spell.
func TestIdleTrim(t *testing.T) {
	defer func(d time.Duration) { idleTrim = d }(idleTrim)
	idleTrim = 150 * time.Millisecond
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.log")
	g := corpus.New(corpus.Options{Seed: 5})
	write := func(n int) {
		f, err := os.OpenFile(live, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for range n {
			if _, err := f.Write(append(g.Next(nil), '\n')); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(300)
	store, err := loadPositions(filepath.Join(dir, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	sink := &trimSink{}
	p, _ := testPipeline(t, sink)
	p.store = store
	p.signals = signals.New(prometheus.NewRegistry())
	p.src.Path = live
	p.src.StartAt = "beginning"
	p.src.PollInterval = config.Duration(20 * time.Millisecond)
	p.cfg.Batch.MaxEvents = 50
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx, ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 10 s (%d events sent, %d trims)", what, sink.n.Load(), sink.trims.Load())
			}
		}
	}
	waitFor("300 events sent", func() bool { return sink.n.Load() == 300 })
	waitFor("the sink trimmed", func() bool { return sink.trims.Load() == 1 })
	if b := p.batches.Get(); b.recs != nil {
		t.Error("a batch kept from the burst is still there after the trim")
	}
	time.Sleep(4 * idleTrim)
	if n := sink.trims.Load(); n != 1 {
		t.Errorf("trimmed %d times in one idle spell, want once", n)
	}
	write(100)
	waitFor("400 events sent", func() bool { return sink.n.Load() == 400 })
	waitFor("the sink trimmed after the second burst", func() bool { return sink.trims.Load() == 2 })
}
