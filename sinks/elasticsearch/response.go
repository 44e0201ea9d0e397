package elasticsearch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/audit-shipper/audit-shipper/sinks"
)

// Item results, the values of the result label of items_total.
const (
	resultCreated   = "created"
	resultDuplicate = "duplicate" // 409 on create: stored by an earlier attempt
	resultRetryable = "retryable"
	resultRejected  = "rejected" // dead-lettered by the shipper
)

var itemResults = []string{resultCreated, resultDuplicate, resultRetryable, resultRejected}

// Reasons of rejected items, beside rejected_<status> for other 4xx.
const (
	reasonMapping         = "mapping"
	reasonIllegalArgument = "illegal_argument"
)

// bulkResponse is the part of a bulk answer the sink reads. Items come in
// the order of the request's actions; the sink only sends create actions.
type bulkResponse struct {
	Errors bool `json:"errors"`
	Items  []struct {
		Create *bulkItem `json:"create"`
	} `json:"items"`
}

type bulkItem struct {
	Index  string     `json:"_index"`
	ID     string     `json:"_id"`
	Status int        `json:"status"`
	Error  *itemError `json:"error"`
}

type itemError struct {
	Type     string     `json:"type"`
	Reason   string     `json:"reason"`
	CausedBy *itemError `json:"caused_by"`
}

func (e *itemError) String() string {
	if e == nil {
		return "no error given"
	}
	s := e.Type + ": " + e.Reason
	if e.CausedBy != nil {
		s += " (caused by " + e.CausedBy.String() + ")"
	}
	return s
}

// tally counts item results of one response.
type tally map[string]int

// classify reads a 2xx bulk answer to a request of one document per
// record, in order. It returns the records that failed and the count of
// each item result; a body it cannot match to the request is retryable as
// a whole, which is safe because documents have deterministic ids.
func classify(body []byte, recs []sinks.Record) (sinks.ItemErrors, tally, error) {
	var resp bulkResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, nil, sinks.Retryable(fmt.Errorf("cannot decode the bulk answer (%s): %w; is the address an Elasticsearch-compatible bulk endpoint?", excerpt(body), err), 0)
	}
	if len(resp.Items) != len(recs) {
		return nil, nil, sinks.Retryable(fmt.Errorf("the bulk answer has %d items for %d documents sent; sending the batch again", len(resp.Items), len(recs)), 0)
	}
	counts := tally{}
	var failed sinks.ItemErrors
	for i, it := range resp.Items {
		item := it.Create
		if item == nil {
			return nil, nil, sinks.Retryable(fmt.Errorf("bulk answer item %d is not the answer to a create action; sending the batch again", i), 0)
		}
		result, err := classifyItem(item, &recs[i])
		counts[result]++
		if err != nil {
			failed = append(failed, sinks.ItemError{Index: i, Err: err})
		}
	}
	return failed, counts, nil
}

// classifyItem decides the fate of one document from its bulk item.
func classifyItem(it *bulkItem, r *sinks.Record) (string, error) {
	st := it.Status
	switch {
	case st >= 200 && st < 300:
		return resultCreated, nil
	case st == http.StatusConflict:
		// Only create actions are sent, and their only conflict is an
		// existing document with the same id: this event, stored by an
		// earlier attempt whose answer was lost.
		return resultDuplicate, nil
	case st == http.StatusTooManyRequests || st >= 500:
		return resultRetryable, sinks.Retryable(fmt.Errorf("elasticsearch could not store event %s/%s in %q now: %d %s", r.AuditID, r.Stage, it.Index, st, it.Error), 0)
	case st == http.StatusUnauthorized || st == http.StatusForbidden || st == http.StatusNotFound:
		// The operator can fix these (privileges, a missing index or
		// template with auto-creation off), so the event waits.
		return resultRetryable, sinks.Retryable(fmt.Errorf("elasticsearch refused event %s/%s for %q: %d %s; grant the sink's user create_doc on the target (and create_index/auto_configure), or create the target; the event is retried until then", r.AuditID, r.Stage, it.Index, st, it.Error), 0)
	}
	reason := rejectReason(st, it.Error)
	fix := ""
	if reason == reasonMapping {
		fix = "; the target's mapping does not fit audit events: install the audit-shipper template (install_template: true, or deploy/elasticsearch) and roll the data stream or index over"
	}
	return resultRejected, sinks.Permanent(reason, fmt.Errorf("elasticsearch rejected event %s/%s for %q: %d %s%s", r.AuditID, r.Stage, it.Index, st, it.Error, fix))
}

// rejectReason is the bounded label for a rejected document.
func rejectReason(status int, e *itemError) string {
	for ; e != nil; e = e.CausedBy {
		switch {
		case strings.Contains(e.Type, "mapping") || strings.Contains(e.Type, "parsing") || e.Type == "mapper_exception":
			return reasonMapping
		case e.Type == "illegal_argument_exception":
			return reasonIllegalArgument
		}
	}
	return "rejected_" + strconv.Itoa(status)
}

// requestError classifies a non-2xx answer to the whole bulk request.
func requestError(resp *http.Response, body []byte) error {
	st := resp.StatusCode
	err := fmt.Errorf("elasticsearch answered the bulk request with %s: %s", resp.Status, excerpt(body))
	switch st {
	case http.StatusBadRequest:
		return sinks.Permanent("rejected_400", err)
	case http.StatusRequestEntityTooLarge:
		return sinks.Permanent("too_large", fmt.Errorf("%w; lower the sink's batch.max_bytes below the server's http.max_content_length", err))
	case http.StatusUnauthorized, http.StatusForbidden:
		return sinks.Retryable(fmt.Errorf("%w; check the sink's credentials and that they may write to the target; retrying until they do", err), retryAfter(resp.Header, time.Now()))
	case http.StatusNotFound:
		return sinks.Retryable(fmt.Errorf("%w; check that the address points at the bulk API's base (for VictoriaLogs, http://host:9428/insert/elasticsearch)", err), retryAfter(resp.Header, time.Now()))
	}
	// 429, 5xx and anything else: the server or a proxy may recover, and
	// dropping audit events on an unexpected status is worse than waiting.
	return sinks.Retryable(err, retryAfter(resp.Header, time.Now()))
}

// retryAfter reads Retry-After as seconds or as an HTTP date; 0 when
// absent or unreadable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// excerpt is up to 512 bytes of an answer, on one line, for an error
// message.
func excerpt(b []byte) string {
	const n = 512
	b = bytes.TrimSpace(b)
	cut := ""
	if len(b) > n {
		b, cut = b[:n], "..."
	}
	if len(b) == 0 {
		return "(empty answer)"
	}
	s := strings.ToValidUTF8(string(b), "\ufffd")
	return strings.Join(strings.Fields(s), " ") + cut
}
