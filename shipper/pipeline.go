package shipper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/internal/reuse"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/rules"
	"github.com/audit-shipper/audit-shipper/signals"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// surveyEvery is how often a reader that never waits (it is behind) looks
// at the directory anyway, to see generations rotated in and deleted again.
const surveyEvery = 2 * time.Second

// idleTrim is how long a sink's reader waits for lines, with nothing in
// flight, before the buffers kept for the next batches are let go. A
// variable for the tests.
var idleTrim = time.Minute

// pipeline carries one sink's events from its own cursor over the audit log
// to its acknowledged position. Its reader goroutine owns the cursor and
// the batch being filled; its senders own a batch each while it is sent;
// its committer owns the order of acknowledgements.
type pipeline struct {
	name     string
	sink     sinks.Sink
	cfg      config.Sink
	src      config.Source
	requests int
	log      *slog.Logger
	m        *sinkMetrics
	dl       *deadLetters
	store    *positionStore
	health   *health
	signals  *signals.Counters
	rules    *rules.Rules // nil: every event as it was written
	// wake is poked when the audit log's directory changes.
	wake chan struct{}

	maxInflight int64
	inflight    atomic.Int64
	// released is poked by the committer when in-flight bytes drop.
	released chan struct{}

	// batches keeps acknowledged batches for the reader, across garbage
	// collections: one per sender, the one waiting for a sender and the one
	// being filled. Keeping more (for those acknowledged late, behind a
	// slower request) costs more than it saves: what is kept counts as
	// live, and the heap grows past what is live by GOGC percent.
	batches *reuse.List[*batch]
	// arenaSize is the arena a new batch starts with; one that grew past
	// twice that (a line longer than max_bytes) is not kept, so that
	// memory follows the batch size, not the longest line met.
	arenaSize int
}

// batch is a run of consecutive lines of the audit log: the records to
// send, and the position after its last line (lines that were
// dead-lettered or dropped included).
type batch struct {
	seq   uint64
	recs  []sinks.Record
	arena []byte // the records' lines
	// events are the records' parsed events, whose strings and lists are
	// in strs and lists.
	events []parse.Event
	strs   []byte
	lists  []string
	bytes  int64 // in-flight bytes held until acknowledged
	end    Position
	first  time.Time
	ok     bool
}

func newPipeline(name string, sink sinks.Sink, cfg config.Sink, src config.Source, requests int,
	log *slog.Logger, m *sinkMetrics, dl *deadLetters, store *positionStore) *pipeline {
	p := &pipeline{
		name: name, sink: sink, cfg: cfg, src: src, requests: requests, log: log, m: m, dl: dl, store: store,
		health:      &health{},
		wake:        make(chan struct{}, 1),
		released:    make(chan struct{}, 1),
		maxInflight: int64(cfg.MaxInflightBytes),
	}
	p.arenaSize = int(cfg.Batch.MaxBytes)
	p.batches = reuse.NewList(requests+2, func() *batch {
		return &batch{arena: make([]byte, 0, p.arenaSize)}
	})
	return p
}

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// run reads until readCtx is done, then lets the batches already read be
// delivered until sendCtx is done, and returns when every goroutine it
// started has returned. Errors do not stop it: they are logged, retried,
// and shown by /readyz and the metrics.
func (p *pipeline) run(readCtx, sendCtx context.Context) {
	// Unbuffered: a batch waits in the reader until a sender is free, so
	// a sink slower than the reader (any over a network) holds one batch
	// more than it is sending, not a queue of them.
	toSend := make(chan *batch)
	sent := make(chan *batch, p.requests)
	started := make(chan struct{})
	var senders sync.WaitGroup
	senders.Go(func() {
		defer close(started)
		p.start(sendCtx)
	})
	for range p.requests {
		senders.Go(func() {
			<-started
			p.send(sendCtx, toSend, sent)
		})
	}
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		p.commit(sent)
	}()
	r := &reader{p: p, out: toSend, cur: newCursor(p.src.Path, int(p.src.MaxLineBytes), p.log)}
	r.run(readCtx)
	close(toSend)
	senders.Wait()
	close(sent)
	<-committed
}

// reader turns lines into batches. It is the only goroutine that touches
// its cursor, parser and current batch.
type reader struct {
	p      *pipeline
	out    chan<- *batch
	cur    *cursor
	parser parse.Parser
	ruled  []byte // the buffer the rules build a cut line in
	b      *batch
	seq    uint64
	poll   *time.Ticker
	timer  *time.Timer
	survey time.Time
	// idleAt is where the cursor stood when the reader began to wait
	// there, at idleSince; trimmed is set once the buffers were let go.
	idleAt    int64
	idleSince time.Time
	trimmed   bool
}

func (r *reader) run(ctx context.Context) {
	p := r.p
	r.poll = time.NewTicker(p.src.PollInterval.D())
	defer r.poll.Stop()
	r.timer = time.NewTimer(time.Hour)
	r.timer.Stop()
	defer r.cur.close()
	defer p.m.filesOpen.Set(0)

	r.open(ctx)
	for ctx.Err() == nil {
		line, off, tooLong, err := r.cur.next()
		switch {
		case err == nil:
			r.line(ctx, line, off, tooLong)
		case errors.Is(err, errWait):
			r.idle(ctx)
		case errors.Is(err, errTruncated):
			p.m.truncations.Inc()
			r.mark(r.cur.position(0))
		case errors.Is(err, errDone):
			r.advance(ctx)
		default:
			p.log.Error("reading the audit log failed; retrying", "err", err)
			r.wait(ctx)
		}
	}
	r.flush()
}

// open puts the cursor where the sink left off, or where start_at says,
// waiting (until ctx is done) for the audit log to appear.
func (r *reader) open(ctx context.Context) {
	p := r.p
	saved, resume := p.store.get(p.name)
	reported := false
	for ctx.Err() == nil {
		var err error
		if resume {
			var lost []FileRef
			lost, err = r.cur.resume(saved)
			if !reported {
				// The saved generation stays gone on every later try.
				r.lost(lost)
				reported = true
			}
			if err == nil {
				p.log.Info("resuming", "file", r.cur.gen.path, "offset", r.cur.offset())
			}
		} else {
			err = r.cur.startAt(p.src.StartAt)
			if err == nil {
				p.log.Info("starting", "file", r.cur.gen.path, "offset", r.cur.offset(), "start_at", p.src.StartAt)
			}
		}
		switch {
		case err == nil:
			p.m.filesOpen.Set(1)
			if resume && r.cur.id != saved.File {
				// Moved on from a lost generation: save where it stands now.
				r.mark(r.cur.position(r.cur.offset()))
			}
			return
		case errors.Is(err, errWait), errors.Is(err, errRenamed):
		default:
			p.log.Error("cannot open the audit log; retrying", "path", p.src.Path, "err", err)
		}
		r.wait(ctx)
	}
}

// line handles one line read from the audit log.
func (r *reader) line(ctx context.Context, line []byte, off int64, tooLong bool) {
	p := r.p
	rec := deadLetter{Sink: p.name, File: r.cur.gen.path, Offset: off}
	if tooLong {
		rec.Reason = reasonTooLong
		rec.Error = fmt.Sprintf("line longer than source.max_line_bytes (%d bytes); raise it if such events are expected", p.src.MaxLineBytes)
		r.deadStream(ctx, rec, line)
		return
	}
	p.m.linesRead.Inc()
	p.m.bytesRead.Add(float64(r.cur.offset() - off))
	ev, err := r.parser.Parse(line)
	if err != nil {
		r.unparsable(ctx, rec, line, err)
		return
	}
	p.signals.Observe(ev)
	if p.rules != nil {
		out, v := p.rules.Apply(r.ruled, ev)
		switch {
		case v.Drop:
			p.m.filtered[v.DropReason].Inc()
			r.mark(r.cur.position(r.cur.offset()))
			return
		case v.Redacted || v.Lowered:
			// out was built in r.ruled; otherwise it is the line itself,
			// which must never become the next buffer.
			r.ruled = out[:0]
			if v.Redacted {
				p.m.redacted.Inc()
			}
			if v.Lowered {
				p.m.lowered.Inc()
			}
		}
		if v.Redacted || v.Lowered {
			// The sinks read the event's fields and members' offsets from
			// the record: they must be those of the line they are sent.
			if ev, err = r.parser.Parse(out); err != nil {
				// FuzzApply holds that this cannot happen; keep the line
				// as it was read rather than lose it.
				r.unparsable(ctx, rec, line, fmt.Errorf("the shipper's rules rewrote this event into a line that does not parse (a bug, please report it): %w", err))
				return
			}
		}
		line = out
	}
	r.add(ctx, line, off, ev)
	if time.Since(r.survey) > surveyEvery {
		r.resurvey()
	}
}

// unparsable dead-letters a line the parser refused, under the parser's
// reason.
func (r *reader) unparsable(ctx context.Context, rec deadLetter, line []byte, err error) {
	var pe *parse.Error
	rec.Reason = string(parse.ReasonSyntax)
	if errors.As(err, &pe) {
		rec.Reason = string(pe.Reason)
	}
	rec.Error = err.Error()
	r.dead(ctx, rec, line)
}

func (r *reader) dead(ctx context.Context, rec deadLetter, line []byte) {
	rec.Time = time.Now().UTC()
	for {
		err := r.p.dl.write(rec, line)
		if err == nil {
			break
		}
		// The position must not pass a line that was neither shipped nor
		// kept: stay here until the dead-letter file can be written.
		r.p.log.Error("cannot write the dead-letter file; the sink's position waits here", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	r.p.m.deadLetters[rec.Reason].Inc()
	r.mark(r.cur.position(r.cur.offset()))
}

// deadStream dead-letters a line too long to hold, streaming its rest.
func (r *reader) deadStream(ctx context.Context, rec deadLetter, head []byte) {
	rec.Time = time.Now().UTC()
	r.flush()
	err := r.p.dl.stream(rec, head, func(w io.Writer) (bool, error) {
		ended, err := r.cur.rest(w)
		if errors.Is(err, errWait) {
			if ctx.Err() != nil {
				return true, ctx.Err()
			}
			r.idle(ctx)
			return false, nil
		}
		return ended, err
	})
	r.p.m.linesRead.Inc()
	if err != nil {
		r.p.log.Error("cannot dead-letter an over-long line; the sink's position stops before it", "file", rec.File, "offset", rec.Offset, "err", err)
		return
	}
	r.p.m.bytesRead.Add(float64(r.cur.offset() - rec.Offset))
	r.p.m.deadLetters[rec.Reason].Inc()
	r.mark(r.cur.position(r.cur.offset()))
}

// add puts an event into the current batch, waiting for room under the
// in-flight bound first.
func (r *reader) add(ctx context.Context, line []byte, off int64, ev *parse.Event) {
	p := r.p
	n := r.cur.offset() - off // the line and its newline
	if !r.reserve(ctx, n) {
		return
	}
	b := r.batch()
	if len(b.recs) > 0 && len(b.arena)+len(line) > int(p.cfg.Batch.MaxBytes) {
		// max_bytes is a bound on the request (a server's limit), not a
		// threshold to pass: the line starts the next batch. Only a line
		// longer than max_bytes makes a batch, of its own, longer.
		r.flush()
		b = r.batch()
	}
	start := len(b.arena)
	b.arena = append(b.arena, line...)
	raw := b.arena[start:len(b.arena):len(b.arena)]
	var c parse.Event
	c, b.strs, b.lists = ev.Clone(raw, b.strs, b.lists)
	b.events = append(b.events, c)
	b.recs = append(b.recs, sinks.Record{
		Line:         raw,
		AuditID:      c.AuditID,
		Stage:        c.Stage,
		StageTime:    c.StageTime,
		ReceivedTime: c.RequestReceived,
		File:         r.cur.gen.path,
		Offset:       off,
		// When append moves events, this pointer keeps the old array,
		// which is never written again, alive.
		Event: &b.events[len(b.events)-1],
	})
	b.bytes += n
	b.end = r.cur.position(r.cur.offset())
	if len(b.recs) >= p.cfg.Batch.MaxEvents || len(b.arena) >= int(p.cfg.Batch.MaxBytes) || time.Since(b.first) >= p.cfg.Batch.MaxWait.D() {
		r.flush()
	}
}

// reserve takes n bytes of the in-flight budget, waiting while the sink
// holds too many. A line larger than the whole budget goes alone.
func (r *reader) reserve(ctx context.Context, n int64) bool {
	p := r.p
	for {
		held := p.inflight.Load()
		if held == 0 || held+n <= p.maxInflight {
			break
		}
		// The batch being filled holds budget too: send it so that it can
		// be acknowledged, then wait for the committer.
		r.flush()
		select {
		case <-p.released:
		case <-r.poll.C:
			r.refresh()
		case <-ctx.Done():
			return false
		}
	}
	p.m.inflight.Set(float64(p.inflight.Add(n)))
	return true
}

// mark moves the current batch's end past lines that carry no record.
func (r *reader) mark(pos Position) {
	r.batch().end = pos
}

func (r *reader) batch() *batch {
	if r.b == nil {
		r.b = r.p.batches.Get()
		r.b.first = time.Now()
		r.timer.Reset(r.p.cfg.Batch.MaxWait.D())
	}
	return r.b
}

// flush hands the current batch to the senders.
func (r *reader) flush() {
	if r.b == nil {
		return
	}
	r.timer.Stop()
	r.b.seq = r.seq
	r.seq++
	r.p.m.batches.Inc()
	for sent := false; !sent; {
		select {
		case r.out <- r.b:
			sent = true
		case <-r.poll.C:
			r.refresh()
		}
	}
	r.b = nil
}

// refresh keeps the lag gauge and the loss accounting current while the
// reader is held back by its sink: what is on disk goes on changing.
func (r *reader) refresh() {
	if err := r.cur.check(); err != nil {
		r.p.log.Error("checking the open audit log failed", "err", err)
	}
	if time.Since(r.survey) > surveyEvery {
		r.resurvey()
	}
	r.updateLag()
}

// idle runs when the open generation has no complete line: it checks for
// rotation, then waits for a change.
func (r *reader) idle(ctx context.Context) {
	r.refresh()
	if r.cur.final {
		return // drain it to the end, then advance
	}
	r.trim()
	r.wait(ctx)
}

// trim lets go of the buffers kept for the next batches (the reader's,
// the cursor's, the sink's) once the reader has waited at the same place
// for idleTrim with nothing in flight: what a burst or a catch-up took
// goes back after it.
func (r *reader) trim() {
	now := time.Now()
	if at := r.cur.readPos; at != r.idleAt || r.b != nil || r.p.inflight.Load() != 0 {
		r.idleAt, r.idleSince, r.trimmed = at, now, false
		return
	}
	if r.trimmed || now.Sub(r.idleSince) < idleTrim {
		return
	}
	r.trimmed = true
	r.p.batches.Drain()
	r.cur.shrink()
	if t, ok := r.p.sink.(Trimmer); ok {
		t.Trim()
	}
}

// wait blocks until the directory changes, the poll interval passes, the
// batch is due, or ctx is done.
func (r *reader) wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-r.p.wake:
	case <-r.poll.C:
	case <-r.timer.C:
		r.flush()
	}
}

// advance moves to the next generation once the open one is finished.
func (r *reader) advance(ctx context.Context) {
	p := r.p
	from := r.cur.gen.path
	lost, err := r.cur.advance()
	r.lost(lost)
	switch {
	case err == nil:
		p.m.rotations.Inc()
		p.log.Info("following rotation", "from", from, "to", r.cur.gen.path)
		r.mark(r.cur.position(0))
		r.updateLag()
	case errors.Is(err, errWait), errors.Is(err, errRenamed):
		r.wait(ctx)
	default:
		p.log.Error("cannot open the next generation of the audit log; retrying", "err", err)
		r.wait(ctx)
	}
}

func (r *reader) resurvey() {
	r.survey = time.Now()
	lost, err := r.cur.resurvey()
	if err != nil {
		r.p.log.Error("listing the audit log directory failed", "err", err)
	}
	r.lost(lost)
	r.updateLag()
}

func (r *reader) lost(files []FileRef) {
	for _, f := range files {
		r.p.log.Warn("audit log generation deleted before it was shipped",
			"file", f.Path, "lost_bytes", f.Size,
			"fix", "raise the apiserver's --audit-log-maxbackup or restore the sink sooner; bytes written after the last save cannot be counted")
		r.p.m.lostBytes.Add(float64(f.Size))
		r.p.m.lostFiles.Inc()
	}
}

// updateLag sets the lag gauge: what is on disk past the acknowledged
// position, counted from what is read plus what is in flight.
func (r *reader) updateLag() {
	lag := r.p.inflight.Load() + max(r.cur.gen.size-r.cur.offset(), 0)
	for _, a := range r.cur.ahead {
		lag += a.Size
	}
	r.p.m.lagBytes.Set(float64(lag))
}

// start runs the sink's Start, if it has one, until it succeeds or ctx is
// done.
func (p *pipeline) start(ctx context.Context) {
	st, ok := p.sink.(Starter)
	if !ok {
		return
	}
	p.retry(ctx, func() error {
		err := st.Start(ctx)
		if err != nil && p.health.failed(err) {
			p.log.Warn("sink cannot start; retrying with backoff", "err", err)
		}
		return err
	})
	if ctx.Err() == nil {
		p.delivered()
	}
}

// maxRetryAfter caps the wait a server may ask for: a proxy answering
// "Retry-After: 86400" must not silence a sink for a day.
const maxRetryAfter = 10 * time.Minute

// retry calls attempt until it succeeds or ctx is done, with the sink's
// backoff (and the wait a RetryableError asks for) between attempts.
func (p *pipeline) retry(ctx context.Context, attempt func() error) {
	backoff := p.cfg.Retry.MinBackoff.D()
	for {
		err := attempt()
		if err == nil || ctx.Err() != nil {
			return
		}
		if !sleep(ctx, max(jitter(backoff), min(sinks.RetryAfter(err), maxRetryAfter))) {
			return
		}
		backoff = min(backoff*2, p.cfg.Retry.MaxBackoff.D())
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// send delivers batches until in is closed. Once ctx is done it passes the
// remaining batches on undelivered, so that none is acknowledged.
func (p *pipeline) send(ctx context.Context, in <-chan *batch, out chan<- *batch) {
	for b := range in {
		b.ok = len(b.recs) == 0 || (ctx.Err() == nil && p.deliver(ctx, b.recs) == nil)
		out <- b
	}
}

// deliver sends recs until the sink has taken or rejected each of them.
// It gives up only when ctx is done.
func (p *pipeline) deliver(ctx context.Context, recs []sinks.Record) error {
	p.retry(ctx, func() error {
		var err error
		recs, err = p.attempt(ctx, recs)
		if err != nil && ctx.Err() == nil {
			p.m.retries.Inc()
		}
		return err
	})
	if len(recs) > 0 {
		return ctx.Err()
	}
	return nil
}

// attempt sends recs once and returns those to send again, with the error
// that says why.
func (p *pipeline) attempt(ctx context.Context, recs []sinks.Record) ([]sinks.Record, error) {
	err := p.sink.Send(ctx, recs)
	if err == nil {
		p.m.outcomes["ok"].Inc()
		p.delivered()
		return nil, nil
	}
	if ctx.Err() != nil {
		return recs, ctx.Err()
	}
	var items sinks.ItemErrors
	switch {
	case errors.As(err, &items):
		p.m.outcomes["partial"].Inc()
		var again []sinks.Record
		var why error
		for _, it := range items {
			if sinks.IsPermanent(it.Err) {
				p.reject(recs[it.Index], it.Err)
				continue
			}
			again = append(again, recs[it.Index])
			if why == nil {
				why = it.Err
			}
		}
		if len(again) == 0 {
			p.delivered()
		}
		return again, why
	case sinks.IsPermanent(err):
		p.m.outcomes["permanent"].Inc()
		if len(recs) == 1 {
			p.reject(recs[0], err)
			return nil, nil
		}
		// Split to find the records at fault; the others go through.
		half := len(recs) / 2
		if err := p.deliver(ctx, recs[:half]); err != nil {
			return recs, err
		}
		if err := p.deliver(ctx, recs[half:]); err != nil {
			return recs[half:], err
		}
		return nil, nil
	default:
		p.m.outcomes["retryable"].Inc()
		if p.health.failed(err) {
			p.log.Warn("sink is failing; retrying with backoff until it accepts", "err", err)
		}
		return recs, err
	}
}

// jitter spreads retries over [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

func (p *pipeline) delivered() {
	p.m.lastSuccess.SetToCurrentTime()
	if n := p.health.recovered(); n > 0 {
		p.log.Info("sink is delivering again", "failed_attempts", n)
	}
}

// reject dead-letters a record the sink will never accept.
func (p *pipeline) reject(rec sinks.Record, err error) {
	dl := deadLetter{Time: time.Now().UTC(), Sink: p.name, File: rec.File, Offset: rec.Offset, Reason: reasonSinkRejected,
		Error: fmt.Sprintf("auditID %s stage %s: %s: %v", rec.AuditID, rec.Stage, sinks.PermanentReason(err), err)}
	if werr := p.dl.write(dl, rec.Line); werr != nil {
		p.log.Error("cannot write the dead-letter file", "err", werr)
	}
	p.m.deadLetters[reasonSinkRejected].Inc()
}

// commit acknowledges batches in file order: a sink's position moves only
// past batches whose every predecessor is delivered too.
func (p *pipeline) commit(in <-chan *batch) {
	pending := map[uint64]*batch{}
	var next uint64
	broken := false
	for b := range in {
		pending[b.seq] = b
		for {
			b, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if !b.ok {
				broken = true // abandoned at shutdown: nothing after it may count
			}
			if !broken {
				p.store.set(p.name, b.end)
				p.m.shipped.Add(float64(len(b.recs)))
				if n := len(b.recs); n > 0 {
					p.m.lastEvent.Set(float64(b.recs[n-1].StageTime.UnixNano()) / 1e9)
				}
			}
			p.m.batches.Dec()
			p.m.inflight.Set(float64(p.inflight.Add(-b.bytes)))
			poke(p.released)
			p.recycle(b)
		}
	}
}

// recycle keeps an acknowledged batch for the reader, unless a very long
// line made its arena too large to be worth keeping.
func (p *pipeline) recycle(b *batch) {
	if cap(b.arena) > 2*p.arenaSize || cap(b.strs) > 2*p.arenaSize {
		return
	}
	clear(b.recs)
	*b = batch{recs: b.recs[:0], arena: b.arena[:0], events: b.events[:0], strs: b.strs[:0], lists: b.lists[:0]}
	p.batches.Put(b)
}

// health is what /readyz reports for one sink.
type health struct {
	mu       sync.Mutex
	since    time.Time // when the current run of failures began
	attempts int
	lastErr  error
}

// failed records a failed attempt and reports whether it began a run.
func (h *health) failed(err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastErr = err
	h.attempts++
	if h.since.IsZero() {
		h.since = time.Now()
		return true
	}
	return false
}

// recovered ends a run of failures and returns how many attempts it had.
func (h *health) recovered() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.attempts
	h.since, h.attempts, h.lastErr = time.Time{}, 0, nil
	return n
}

// status returns an error when the sink has been failing for longer than
// grace.
func (h *health) status(grace time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() || time.Since(h.since) < grace {
		return nil
	}
	return fmt.Errorf("failing for %s (%d attempts), last error: %v", time.Since(h.since).Round(time.Second), h.attempts, h.lastErr)
}
