package shipper_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/rules"
	"github.com/audit-shipper/audit-shipper/shipper"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// checkingSink compares, while Send runs (the records' lifetime), each
// record's Event with a parse of its Line of its own.
type checkingSink struct {
	mu        sync.Mutex
	parser    parse.Parser
	n         int
	rewritten int // lines the rules changed
	written   map[string][]byte
	maxBytes  int // batch.max_bytes
	errs      []string
}

func (s *checkingSink) Send(_ context.Context, recs []sinks.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	size := 0
	for _, r := range recs {
		size += len(r.Line)
	}
	if size > s.maxBytes && len(recs) > 1 {
		s.errs = append(s.errs, fmt.Sprintf("a batch of %d records holds %d bytes of lines, over batch.max_bytes %d", len(recs), size, s.maxBytes))
	}
	for _, r := range recs {
		s.n++
		fail := func(format string, args ...any) {
			if len(s.errs) < 5 {
				s.errs = append(s.errs, fmt.Sprintf("record %s/%s: ", r.AuditID, r.Stage)+fmt.Sprintf(format, args...))
			}
		}
		if r.Event == nil {
			fail("no Event")
			continue
		}
		if len(r.Line) == 0 || &r.Event.Raw[0] != &r.Line[0] || len(r.Event.Raw) != len(r.Line) {
			fail("Event.Raw is not Line")
		}
		want, err := s.parser.Parse(r.Line)
		if err != nil {
			fail("line does not parse: %v", err)
			continue
		}
		if !reflect.DeepEqual(*r.Event, *want) {
			fail("Event\n%+v\nparse of Line\n%+v", *r.Event, *want)
		}
		if r.AuditID != want.AuditID || r.Stage != want.Stage || !r.StageTime.Equal(want.StageTime) {
			fail("AuditID, Stage or StageTime differ from the line's")
		}
		if !bytes.Equal(s.written[r.AuditID+"/"+r.Stage], r.Line) {
			s.rewritten++
		}
	}
	return nil
}

func (s *checkingSink) Close() error { return nil }

// TestRecordsCarryTheirEvent: every record's Event is its Line parsed,
// for lines the rules left alone and for lines they rewrote, across many
// small batches whose arenas are pooled and reused; and no batch of more
// than one record passes batch.max_bytes.
func TestRecordsCarryTheirEvent(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.log")
	g := corpus.New(corpus.Options{Seed: 4})
	var p parse.Parser
	var buf bytes.Buffer
	sink := &checkingSink{written: map[string][]byte{}, maxBytes: 64 << 10}
	const n = 5000
	for range n {
		line := g.Next(nil)
		ev, err := p.Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		sink.written[ev.AuditID+"/"+ev.Stage] = line
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(live, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.Source.Path = live
	cfg.Source.PositionsFile = filepath.Join(dir, "positions.json")
	cfg.DeadLetter.Path = filepath.Join(dir, "dead-letter.ndjson")
	sc := cfg.Sinks[0]
	sc.Batch.MaxEvents = 37
	sc.Batch.MaxBytes = config.Size(sink.maxBytes)
	r, err := rules.New(rules.Config{RedactSecrets: true, PolicyFile: "../configs/policies/production.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := shipper.New(cfg, []shipper.Sink{{Config: sc, Sink: sink, Rules: r}}, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	filtered := func() float64 {
		return counterSum(t, reg, "audit_shipper_events_filtered_total")
	}
	deadline := time.Now().Add(time.Minute)
	for {
		sink.mu.Lock()
		got := sink.n
		sink.mu.Unlock()
		if got+int(filtered()) >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events after a minute", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, e := range sink.errs {
		t.Error(e)
	}
	// Both paths must have been taken for the test to say anything.
	if sink.rewritten == 0 || sink.rewritten == sink.n {
		t.Errorf("%d of %d records were rewritten by the rules; the corpus and policy should give some of each", sink.rewritten, sink.n)
	}
	t.Logf("%d records, %d rewritten by the rules, %.0f filtered", sink.n, sink.rewritten, filtered())
}

func counterSum(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
