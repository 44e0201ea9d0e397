// Package elasticsearch is the sink that indexes audit events into
// Elasticsearch (or a server speaking its bulk API: OpenSearch,
// VictoriaLogs) with the bulk API.
//
// One Send is one bulk request of create actions, sent once: the shipper
// owns batching, retries and acknowledgement. Each document has an id
// derived from its event, so a batch sent again after a lost answer is
// answered 409 for what is already stored, which counts as delivered.
// Bodies are written as JSON strings by default, which keeps every
// document's field names the same whatever the objects hold (see
// docs/sinks/elasticsearch.md).
package elasticsearch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/klauspost/compress/gzip"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/internal/reuse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// Sink is an Elasticsearch bulk sink. It is safe for concurrent use.
type Sink struct {
	name    string
	log     *slog.Logger
	set     *settings
	perform func(*http.Request) (*http.Response, error)
	closeTP func(context.Context) error
	enc     encoder
	m       *metrics

	// requests holds one set of buffers per request in flight, kept
	// across garbage collections; a set comes back once the transport is
	// done with the body built in it.
	requests *reuse.List[*request]
}

// request is the buffers of one bulk request.
type request struct {
	enc encodeState
	gz  gzipState
}

// maxKeptBuffer is the largest buffer kept for the next request: a batch
// of unusually long lines does not pin its memory for good.
const maxKeptBuffer = 16 << 20

func (r *request) oversized() bool {
	return cap(r.enc.body) > maxKeptBuffer || r.gz.buf.Cap() > maxKeptBuffer
}

var _ sinks.Sink = (*Sink)(nil)

// maxAnswer bounds how much of an answer is read: a bulk answer is about
// 100 bytes per item, and error answers are cut for messages anyway.
const maxAnswer = 64 << 20

// New builds the sink from its configuration entry. It reads secret and
// certificate files but does no network I/O; Start installs the template
// when install_template is set.
func New(sec *config.Sink, env sinks.Env) (*Sink, error) {
	set, err := load(sec)
	if err != nil {
		return nil, err
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if set.TLS.InsecureSkipVerify {
		log.Warn("TLS certificate verification is OFF for this Elasticsearch sink (tls.insecure_skip_verify: true): anyone on the network path can read and alter the audit events and the credentials sent with them; set tls.ca_file instead")
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	if set.tls != nil {
		tr.TLSClientConfig = set.tls
	}
	hdr := http.Header{}
	for k, v := range set.Headers {
		hdr.Set(k, v)
	}
	client, err := elasticsearch.NewBaseClient(elasticsearch.Config{
		Addresses:    set.Addresses,
		CloudID:      set.CloudID,
		Username:     set.Username,
		Password:     set.password,
		APIKey:       set.apiKey,
		ServiceToken: set.bearer,
		Header:       hdr,
		Transport:    tr,
		// Send once: the shipper retries with backoff, Retry-After and
		// no limit; the client's own retries would hide failures from it.
		// A node that fails is still set aside by the connection pool, so
		// the shipper's next attempt goes to another one.
		DisableRetry: true,
	})
	if err != nil {
		return nil, sec.Errorf("addresses", "cannot build the Elasticsearch client: %v", err)
	}
	reg := env.Registerer
	if reg == nil {
		return nil, errors.New("elasticsearch sink: Env.Registerer is nil; this is a bug in the shipper")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch sink %q: cannot register metrics: %w", env.Name, err)
	}

	s := &Sink{
		name: env.Name,
		log:  log,
		set:  set,
		// The transport, not client.Perform: Perform refuses any server
		// that does not answer X-Elastic-Product: Elasticsearch, which
		// locks out OpenSearch and other compatible servers.
		perform: client.Transport.Perform,
		closeTP: client.Close,
		enc: encoder{
			target:   set.target,
			bodies:   set.BodyEncoding,
			received: set.Timestamp == "received",
			fields:   docFields(set.Cluster, set.Node),
		},
		m: m,
	}
	s.requests = reuse.NewList(max(1, sec.MaxRequestsInFlight), func() *request { return &request{} })
	return s, nil
}

// docFields encodes the fields every document starts with after
// @timestamp, each followed by a comma.
func docFields(cluster, node string) []byte {
	var b []byte
	for _, f := range [...]struct{ k, v string }{{"cluster", cluster}, {"node", node}} {
		if f.v == "" {
			continue
		}
		b = append(b, '"')
		b = append(b, f.k...)
		b = append(b, `":`...)
		b = appendQuoted(b, []byte(f.v))
		b = append(b, ',')
	}
	return b
}

// gzipState gzips a bulk body as it is encoded, piece by piece, so that
// the whole NDJSON body is never held, only its compressed form.
type gzipState struct {
	w   *gzip.Writer
	buf bytes.Buffer
	err error // the first write's error
	n   int   // NDJSON bytes written
}

// gzipPiece is how much NDJSON is encoded before it is handed to gzip.
const gzipPiece = 64 << 10

func (g *gzipState) start() {
	g.buf.Reset()
	g.err, g.n = nil, 0
	if g.w == nil {
		// Level 1: audit NDJSON still shrinks several times over, at a
		// fraction of the CPU of the default level (docs/sinks/elasticsearch.md).
		// NewWriterLevel fails only for a level out of range.
		g.w, _ = gzip.NewWriterLevel(&g.buf, gzip.BestSpeed)
	} else {
		g.w.Reset(&g.buf)
	}
}

// drain compresses b once it holds a piece, and returns what the encoder
// goes on appending to.
func (g *gzipState) drain(b []byte) []byte {
	if len(b) < gzipPiece {
		return b
	}
	g.write(b)
	return b[:0]
}

func (g *gzipState) write(b []byte) {
	g.n += len(b)
	if g.err == nil {
		_, g.err = g.w.Write(b)
	}
}

// finish compresses the rest, rest, and returns the gzip stream, valid
// until g is started again.
func (g *gzipState) finish(rest []byte) ([]byte, error) {
	g.write(rest)
	if g.err == nil {
		g.err = g.w.Close()
	}
	return g.buf.Bytes(), g.err
}

// Send indexes recs with one bulk request; see sinks.Sink for what its
// error means.
func (s *Sink) Send(ctx context.Context, recs []sinks.Record) error {
	rq := s.requests.Get()
	done := func() {
		if !rq.oversized() {
			s.requests.Put(rq)
		}
	}
	var payload []byte
	if s.set.Compress {
		rq.gz.start()
		s.enc.encode(&rq.enc, recs, rq.gz.drain)
		var err error
		payload, err = rq.gz.finish(rq.enc.body)
		s.m.bodyBytes.Add(float64(rq.gz.n))
		if err != nil {
			done()
			return fmt.Errorf("cannot gzip a bulk body of %d bytes: %w", rq.gz.n, err)
		}
	} else {
		s.enc.encode(&rq.enc, recs, nil)
		payload = rq.enc.body
		s.m.bodyBytes.Add(float64(len(payload)))
	}

	failed, err := s.post(ctx, payload, recs, done)
	if err != nil {
		return err
	}
	if len(failed) == 0 {
		return nil
	}
	return failed
}

// post sends one bulk body and classifies the answer. done runs once the
// body is no longer read.
func (s *Sink) post(ctx context.Context, payload []byte, recs []sinks.Record, done func()) (sinks.ItemErrors, error) {
	rctx, cancel := context.WithTimeout(ctx, s.set.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, "/_bulk", nil)
	if err != nil {
		done()
		return nil, fmt.Errorf("cannot build the bulk request: %w", err)
	}
	// If the request never reaches the transport (no node to send it to),
	// nothing closes its body and the buffers are left to the collector.
	defer reuse.Lend(req, payload, done).Release()
	req.Header.Set("Content-Type", "application/x-ndjson")
	if s.set.Compress {
		req.Header.Set("Content-Encoding", "gzip")
	}

	start := time.Now()
	s.m.sentBytes.Add(float64(len(payload)))
	resp, err := s.perform(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		resp.Body.Close()
	}
	s.m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.requests.WithLabelValues(codeError).Inc()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if rctx.Err() != nil {
			return nil, sinks.Retryable(fmt.Errorf("the bulk request of %d documents got no answer within timeout %v: %w; the server may be overloaded, or raise timeout", len(recs), s.set.Timeout, err), 0)
		}
		return nil, sinks.Retryable(fmt.Errorf("bulk request of %d documents failed: %w", len(recs), err), 0)
	}
	s.m.requests.WithLabelValues(code(resp.StatusCode)).Inc()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, requestError(resp, body)
	}
	failed, counts, err := classify(body, recs)
	if err != nil {
		return nil, err
	}
	for result, n := range counts {
		s.m.items.WithLabelValues(result).Add(float64(n))
	}
	for _, f := range failed {
		if r := sinks.PermanentReason(f.Err); r != "" {
			s.m.rejected.WithLabelValues(r).Inc()
		}
	}
	return failed, nil
}

// Trim lets go of the request buffers kept for the next requests; the
// shipper calls it when the sink has been idle for a while.
func (s *Sink) Trim() { s.requests.Drain() }

// Close releases the client's idle connections. It is called after the
// last Send has returned.
func (s *Sink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.closeTP(ctx); err != nil && !errors.Is(err, elasticsearch.ErrAlreadyClosed) {
		return fmt.Errorf("closing the Elasticsearch client: %w", err)
	}
	return nil
}
