// Package loki is the sink of type "loki": it pushes audit events to
// Grafana Loki's push API (/loki/api/v1/push), as snappy-compressed
// protobuf by default or as JSON, with a small fixed set of stream labels
// and the rest of the event's identity as structured metadata.
//
// The line Loki stores is the shipper's line byte for byte, with the same
// timestamp and labels on every attempt, so a batch sent again after a
// retry or a restart is deduplicated by Loki instead of stored twice.
package loki

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/internal/reuse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// maxErrorBody bounds how much of an error answer is read and quoted.
const maxErrorBody = 4 << 10

// Sink pushes batches of audit events to Loki.
type Sink struct {
	sec     *config.Sink // for the secrets read from files at each request
	set     *settings
	client  *http.Client
	metrics *metrics
	// encoders holds one per request in flight, kept across garbage
	// collections; an encoder comes back once the transport is done with
	// the body it built.
	encoders *reuse.List[*encoder]
}

var _ sinks.Sink = (*Sink)(nil)

// New builds a loki sink from its configuration entry. It reads the files
// the configuration names (CA, client certificate, secrets) but does no
// network I/O, so `audit-shipper check` can call it.
func New(sec *config.Sink, env sinks.Env) (*Sink, error) {
	cfg := defaults()
	if err := sec.Decode(&cfg); err != nil {
		return nil, err
	}
	set, err := cfg.validate(sec)
	if err != nil {
		return nil, err
	}
	if set.tls != nil && set.tls.InsecureSkipVerify {
		env.Logger.Warn("TLS CERTIFICATE VERIFICATION IS OFF for the loki sink (tls.insecure_skip_verify: true): "+
			"anyone on the path to Loki can read and alter the audit trail; set tls.ca_file to the CA that signed Loki's certificate instead",
			"url", set.url)
	}
	m, err := newMetrics(env.Registerer)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: set.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       set.tls,
		TLSHandshakeTimeout:   set.timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   max(2, sec.MaxRequestsInFlight),
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	s := &Sink{
		sec:     sec,
		set:     set,
		client:  &http.Client{Transport: transport},
		metrics: m,
	}
	s.encoders = reuse.NewList(max(1, sec.MaxRequestsInFlight), func() *encoder { return newEncoder(set) })
	return s, nil
}

// Send encodes recs into one push request and sends it once; the shipper
// retries. See sinks.Sink for what each error means.
func (s *Sink) Send(ctx context.Context, recs []sinks.Record) error {
	enc := s.encoders.Get()
	out := enc.encode(recs)
	return s.push(ctx, out, func() {
		if !enc.oversized() {
			s.encoders.Put(enc)
		}
	})
}

// Trim lets go of the encoders kept for the next requests; the shipper
// calls it when the sink has been idle for a while.
func (s *Sink) Trim() { s.encoders.Drain() }

// Close releases idle connections.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// push sends one request body and classifies the outcome. done runs once
// the body is no longer read.
func (s *Sink) push(ctx context.Context, out encoded, done func()) error {
	body, n := out.body, out.entries
	rctx, cancel := context.WithTimeout(ctx, s.set.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.set.url, nil)
	if err != nil {
		done()
		return fmt.Errorf("building a push request to %s: %w", s.set.url, err)
	}
	if err := s.header(req.Header); err != nil {
		done()
		return err
	}
	defer reuse.Lend(req, body, done).Release()

	start := time.Now()
	resp, err := s.client.Do(req)
	if err == nil {
		// Read the answer within the timeout too: a server that stalls
		// after its headers is as dead as one that never answers.
		var msg []byte
		msg, err = readAnswer(resp)
		if err == nil {
			s.metrics.duration.Observe(time.Since(start).Seconds())
			s.metrics.requests.WithLabelValues(statusClass(resp.StatusCode)).Inc()
			if resp.StatusCode/100 == 2 {
				s.metrics.entries.Add(float64(n))
				s.metrics.bytes.Add(float64(len(body)))
				s.metrics.truncated.Add(float64(out.truncated))
				return nil
			}
			return s.classify(resp, msg, n)
		}
	}
	s.metrics.duration.Observe(time.Since(start).Seconds())
	s.metrics.requests.WithLabelValues(classError).Inc()
	if ctx.Err() != nil {
		return ctx.Err() // the shipper is stopping; not Loki's fault
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return sinks.Retryable(fmt.Errorf("pushing %d entries to %s: no answer within the timeout of %s; Loki is overloaded or unreachable (raise timeout if it is only slow)", n, s.set.url, s.set.timeout), 0)
	}
	return sinks.Retryable(fmt.Errorf("pushing %d entries to %s: %w", n, s.set.url, err), 0)
}

// header sets the request's headers, reading secrets kept in files.
func (s *Sink) header(h http.Header) error {
	h.Set("User-Agent", "audit-shipper")
	if s.set.json {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/x-protobuf")
	}
	for k, v := range s.set.headers {
		h.Set(k, v)
	}
	switch {
	case s.set.passwordFile != "":
		pw, err := s.sec.ResolveSecret("basic_auth.password", "", s.set.passwordFile)
		if err != nil {
			return sinks.Retryable(fmt.Errorf("reading the Loki password: %w", err), 0)
		}
		h.Set("Authorization", basicAuth(s.set.username, pw))
	case s.set.bearerTokenFile != "":
		tok, err := s.sec.ResolveSecret("bearer_token", "", s.set.bearerTokenFile)
		if err != nil {
			return sinks.Retryable(fmt.Errorf("reading the Loki bearer token: %w", err), 0)
		}
		h.Set("Authorization", "Bearer "+tok)
	}
	return nil
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// readAnswer reads at most maxErrorBody bytes of the answer, drains the
// rest so the connection can be reused, and closes it.
func readAnswer(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	msg, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return msg, err
}

func statusClass(code int) string {
	switch {
	case code == http.StatusTooManyRequests:
		return class429
	case code >= 500:
		return class5xx
	case code >= 400:
		return class4xx
	case code >= 300:
		return class3xx
	default:
		return class2xx
	}
}

// classify turns a non-2xx answer into a sink error. Only answers that say
// this very request is wrong are permanent; a refusal the operator can
// fix (credentials, tenant, URL) is retried, so that the events wait in
// the audit log instead of being dead-lettered by a typo.
func (s *Sink) classify(resp *http.Response, msg []byte, n int) error {
	code := resp.StatusCode
	err := fmt.Errorf("pushing %d entries to %s: Loki answered %s: %s", n, s.set.url, resp.Status, bytes.TrimSpace(msg))
	switch {
	case code == http.StatusBadRequest:
		// Loki names the entries at fault (too old, too far ahead, line too
		// long, out of order, stream limit) and has stored the others; the
		// shipper splits the batch to find the rejected ones, and resending
		// the stored ones is harmless: Loki deduplicates them.
		return sinks.Permanent("rejected_400", err)
	case code == http.StatusRequestEntityTooLarge:
		return sinks.Permanent("too_large_413", fmt.Errorf("%w; lower batch.max_bytes below Loki's request size limit (grpc_server_max_recv_msg_size)", err))
	case code == http.StatusTooManyRequests || code >= 500:
		return sinks.Retryable(err, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return sinks.Retryable(fmt.Errorf("%w; check basic_auth, bearer_token and tenant_id: the events wait in the audit log until Loki accepts them", err), 0)
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed || code/100 == 3:
		return sinks.Retryable(fmt.Errorf("%w; url must be the full push URL, such as http://loki:3100/loki/api/v1/push: the events wait in the audit log until it is fixed", err), 0)
	case code == http.StatusRequestTimeout:
		return sinks.Retryable(err, retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	case code >= 400:
		return sinks.Permanent("rejected_4xx", err)
	default:
		return sinks.Retryable(fmt.Errorf("%w; unexpected answer to a push", err), 0)
	}
}

// retryAfter reads a Retry-After header: a number of seconds or an HTTP
// date. It returns 0 when there is none or it cannot be read.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if secs, err := strconv.Atoi(h); err == nil {
		return time.Duration(max(secs, 0)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
