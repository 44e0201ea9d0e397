package faults

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// throttler stands in front of a VictoriaLogs as an overloaded Loki or
// Elasticsearch does: while it is told to, it answers every push or bulk
// request 429 with a Retry-After, and records when each came; otherwise it
// hands requests on.
type throttler struct {
	next *httputil.ReverseProxy

	mu sync.Mutex
	// retryAfter makes the header for a request at now; nil passes
	// requests on.
	retryAfter func(now time.Time) string
	refused    []time.Time
	passed     int
}

func newThrottler(t *testing.T, vl *vlogs.Server) (*throttler, string) {
	t.Helper()
	target, err := url.Parse(vl.URL())
	if err != nil {
		t.Fatal(err)
	}
	th := &throttler{next: httputil.NewSingleHostReverseProxy(target)}
	srv := httptest.NewServer(th)
	t.Cleanup(srv.Close)
	return th, strings.TrimPrefix(srv.URL, "http://")
}

func (th *throttler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ingest := r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/push") || strings.HasSuffix(r.URL.Path, "/_bulk"))
	th.mu.Lock()
	retryAfter := th.retryAfter
	if ingest && retryAfter != nil {
		th.refused = append(th.refused, time.Now())
	} else if ingest {
		th.passed++
	}
	th.mu.Unlock()
	if ingest && retryAfter != nil {
		w.Header().Set("Retry-After", retryAfter(time.Now()))
		http.Error(w, `{"error":"too many requests: ingestion rate limit exceeded"}`, http.StatusTooManyRequests)
		return
	}
	th.next.ServeHTTP(w, r)
}

func (th *throttler) set(retryAfter func(time.Time) string) {
	th.mu.Lock()
	th.retryAfter = retryAfter
	th.mu.Unlock()
}

// attempts returns the times of the requests refused in [from, to).
func (th *throttler) attempts(from, to time.Time) []time.Time {
	th.mu.Lock()
	defer th.mu.Unlock()
	var out []time.Time
	for _, at := range th.refused {
		if !at.Before(from) && at.Before(to) {
			out = append(out, at)
		}
	}
	return out
}

// TestRetryAfter: both sinks' servers answer 429 for 24 seconds, asking
// first for "Retry-After: 3" (seconds), then for an HTTP date 3 seconds
// ahead; the shipper is SIGKILLed once in the middle. Between two
// attempts of one run the shipper must wait at least what it was told
// (measured at the server), so it sends a handful of requests instead of
// hammering at its 100ms-1s backoff, and afterwards delivers everything.
// Each sink has one request in flight, so that its attempts are one
// sequence.
func TestRetryAfter(t *testing.T) {
	rng := newRand(t)
	const (
		from    = 3 * time.Second
		seconds = 12 * time.Second // Retry-After: 3
		date    = 12 * time.Second // Retry-After: <HTTP date 3s ahead>
		wait    = 3 * time.Second
	)
	lokiVL, esVL := vlogs.Start(t), vlogs.Start(t, "-insert.maxLineSizeBytes=4MiB")
	lokiFront, lokiAddr := newThrottler(t, lokiVL)
	esFront, esAddr := newThrottler(t, esVL)
	loki := lokiSink("loki", lokiAddr, "max_requests_in_flight: 1").countedBy(lokiVL, t)
	es := esSink("es", esAddr, "max_requests_in_flight: 1").countedBy(esVL, t)
	loki.requests, es.requests = 1, 1
	s := newShipper(t, options{}, loki, es)
	alog := newAuditLog(s.opts.logPath, 3)

	begin := time.Now()
	s.Start()
	s.WaitUp()
	w := inBackground(func() error { return alog.WriteAt(context.Background(), linkRate, from+seconds+date+2*time.Second) })
	fronts := []*throttler{lokiFront, esFront}
	var secondsAt, dateAt, endAt, killAt time.Time
	tl := newTimeline(t, s)
	tl.at(from, "429, Retry-After: 3", func() {
		secondsAt = time.Now()
		for _, f := range fronts {
			f.set(func(time.Time) string { return fmt.Sprint(int(wait.Seconds())) })
		}
	})
	tl.at(from+seconds, "429, Retry-After: an HTTP date 3s ahead", func() {
		dateAt = time.Now()
		for _, f := range fronts {
			f.set(func(now time.Time) string { return now.Add(wait).UTC().Format(http.TimeFormat) })
		}
	})
	tl.at(from+randomIn(rng, 4*time.Second, seconds+date-4*time.Second), "SIGKILL and restart", func() {
		// Every attempt before killAt is the old process', every one
		// after it the new one's.
		s.Kill()
		killAt = time.Now()
		s.Start()
	})
	tl.at(from+seconds+date, "accept again", func() {
		endAt = time.Now()
		for _, f := range fronts {
			f.set(nil)
		}
	})
	tl.run()
	w.wait(t)
	alog.Close(t)
	s.WaitUp()
	s.waitCaughtUp(2 * time.Minute)
	elapsed := time.Since(begin)
	s.Stop()
	s.logSummary()

	stretch := endAt.Sub(secondsAt)
	for _, k := range []struct {
		name  string
		vl    *vlogs.Server
		front *throttler
	}{{"loki", lokiVL, lokiFront}, {"es", esVL, esFront}} {
		// The date form is written to the second: the wait it asks for is
		// between 2 and 3 seconds.
		minNumeric, minDate := waits(k.front.attempts(secondsAt, dateAt), killAt), waits(k.front.attempts(dateAt, endAt), killAt)
		all := k.front.attempts(secondsAt, endAt)
		// One attempt per wait, and one more for the restart.
		most := int(stretch/(2*time.Second)) + 2
		if t.Failed() || testing.Verbose() {
			t.Logf("sink %s: 429 answers at %s (SIGKILL at %.1fs)", k.name, offsets(all, begin), killAt.Sub(begin).Seconds())
		}
		tally := vlTally(t, k.vl, alog.IDs(), 30*time.Second)
		bound := s.dupBound(k.name, 0)
		extra := fmt.Sprintf("stretch=%s attempts_429=%d (at most %d) min_wait_seconds_form=%s min_wait_date_form=%s",
			stretch.Round(time.Second), len(all), most, minNumeric.Round(time.Millisecond), minDate.Round(time.Millisecond))
		report(t, figuresOf(s, "429 with Retry-After 24s", k.name, tally, bound, elapsed, extra))
		tally.check(t, k.name, bound)
		// The timer can fire a hair early relative to the server's clock
		// reading; 50ms is far below the 100ms-1s backoff it replaces.
		switch {
		case minNumeric == 0 || minDate == 0:
			t.Errorf("sink %s: fewer than two attempts in a run under one form of Retry-After: nothing to measure", k.name)
		case minNumeric < wait-50*time.Millisecond:
			t.Errorf("sink %s: after \"Retry-After: 3\" it came back after %s", k.name, minNumeric)
		case minDate < wait-time.Second-50*time.Millisecond:
			t.Errorf("sink %s: after a Retry-After date 3s ahead it came back after %s", k.name, minDate)
		}
		if len(all) > most || len(all) < 4 {
			t.Errorf("sink %s: %d attempts in %s of 429s with a 3s Retry-After, want 4 to %d", k.name, len(all), stretch, most)
		}
	}
	s.NoLossReported()
}

// offsets lists times as seconds after begin.
func offsets(times []time.Time, begin time.Time) string {
	var b strings.Builder
	for _, at := range times {
		fmt.Fprintf(&b, "%.2fs ", at.Sub(begin).Seconds())
	}
	return strings.TrimSpace(b.String())
}

// waits returns the shortest time between two consecutive attempts of one
// run (the pair around the restart at kill does not count), or 0 when
// there are fewer than two.
func waits(attempts []time.Time, kill time.Time) time.Duration {
	var gaps []time.Duration
	for i := 1; i < len(attempts); i++ {
		if attempts[i-1].Before(kill) && !attempts[i].Before(kill) {
			continue
		}
		gaps = append(gaps, attempts[i].Sub(attempts[i-1]))
	}
	if len(gaps) == 0 {
		return 0
	}
	return slices.Min(gaps)
}
