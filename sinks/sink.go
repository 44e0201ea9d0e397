// Package sinks holds the contract between the shipper and the places audit
// events are delivered to. The shipper owns batching, the in-flight bound,
// retries and acknowledgement; a sink only encodes and sends one batch and
// says, record by record, what became of it.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/audit-shipper/audit-shipper/parse"
)

// Record is one audit event on its way to a sink.
type Record struct {
	// Line is the event's JSON after the shipper's rules, without the
	// trailing newline. It belongs to the shipper and stays valid until Send
	// returns: a sink that keeps bytes beyond that copies them. The same
	// Line is sent again, byte for byte, when a batch is retried or replayed
	// after a restart, so a sink that derives an identity from it stays
	// idempotent.
	Line []byte
	// AuditID and Stage identify the event; together they are unique.
	AuditID string
	Stage   string
	// StageTime is the event's stageTimestamp, which grows with file order.
	StageTime time.Time
	// ReceivedTime is the event's requestReceivedTimestamp.
	ReceivedTime time.Time
	// File and Offset say where the line starts in the audit log, for
	// messages and dead letters.
	File   string
	Offset int64
	// Event is Line parsed (its Raw is Line), with the same lifetime as
	// Line: the shipper parsed every line to apply its rules, so a sink
	// reads the fields it needs here instead of parsing the line again.
	Event *parse.Event
}

// Sink delivers batches of records.
//
// Send is called with 1 to the configured batch size of records, from up to
// max_requests_in_flight goroutines at once, so it must be safe for
// concurrent use. It may block for as long as one request takes; it returns
// early with ctx.Err() when ctx is done. Its error says what became of the
// batch:
//
//   - nil: every record was delivered.
//   - a *RetryableError (or any error not classified below): nothing can be
//     assumed delivered; the shipper sends the whole batch again after a
//     backoff, forever, honouring RetryAfter.
//   - a *PermanentError: the sink will never accept this batch as it is (a
//     400 for the request); the shipper splits the batch to find the records
//     at fault and dead-letters only those.
//   - an ItemErrors: the records it does not name were delivered; each named
//     record is retried or dead-lettered according to its own error.
//
// Close is called once, after the last Send has returned.
type Sink interface {
	Send(ctx context.Context, recs []Record) error
	Close() error
}

// Env is what the shipper hands a sink constructor besides its config.
type Env struct {
	// Name is the sink's name from the config; unique per shipper.
	Name string
	// Logger already carries the sink's name.
	Logger *slog.Logger
	// Registerer already carries the label sink=<name>; a sink registers
	// its own metrics here, never on the global registry.
	Registerer prometheus.Registerer
}

// RetryableError marks a failure that may succeed later: a network error, a
// timeout, 429, 5xx, or a credential the operator can still fix.
type RetryableError struct {
	Err error
	// RetryAfter is the wait the server asked for (Retry-After), or 0.
	RetryAfter time.Duration
}

func (e *RetryableError) Error() string { return e.Err.Error() }
func (e *RetryableError) Unwrap() error { return e.Err }

// Retryable wraps err as a RetryableError.
func Retryable(err error, retryAfter time.Duration) error {
	return &RetryableError{Err: err, RetryAfter: retryAfter}
}

// PermanentError marks a request the sink will never accept as it is.
type PermanentError struct {
	Err error
	// Reason is a short, bounded label for metrics and dead letters, such
	// as "rejected_400" or "mapping".
	Reason string
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError with a bounded reason label.
func Permanent(reason string, err error) error {
	return &PermanentError{Err: err, Reason: reason}
}

// ItemError is the fate of one record of a batch that partly failed.
type ItemError struct {
	// Index is the record's index in the slice given to Send.
	Index int
	// Err is a *RetryableError or a *PermanentError.
	Err error
}

// ItemErrors lists the records of a batch that were not delivered; every
// record it does not name was.
type ItemErrors []ItemError

func (e ItemErrors) Error() string {
	if len(e) == 0 {
		return "no item failed"
	}
	return fmt.Sprintf("%d of the batch's records failed, the first (record %d): %v", len(e), e[0].Index, e[0].Err)
}

// IsPermanent reports whether err says the request will never be accepted.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RetryAfter returns the wait a RetryableError asked for, or 0.
func RetryAfter(err error) time.Duration {
	var r *RetryableError
	if errors.As(err, &r) {
		return r.RetryAfter
	}
	return 0
}

// PermanentReason returns the reason label of a PermanentError, or "".
func PermanentReason(err error) string {
	var p *PermanentError
	if errors.As(err, &p) {
		return p.Reason
	}
	return ""
}
