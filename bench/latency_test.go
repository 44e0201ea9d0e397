package main

import (
	"testing"
	"time"
)

func TestLatencies(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	// Five events written 10 ms apart; samples every 25 ms.
	written := []time.Time{ms(0), ms(10), ms(20), ms(30), ms(40)}
	samples := []ackSample{
		{ms(5), 0},
		{ms(30), 2},  // events 0 and 1
		{ms(55), 2},  // nothing new
		{ms(80), 4},  // events 2 and 3
		{ms(105), 4}, // event 4 never
	}
	got := latencies(written, samples, 0)
	want := []time.Duration{30 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond, 50 * time.Millisecond, notAcked}
	if len(got) != len(want) {
		t.Fatalf("latencies = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("latencies = %v, want %v", got, want)
		}
	}
	// from leaves the first events out.
	if got := latencies(written, samples, 3); len(got) != 2 || got[0] != 50*time.Millisecond {
		t.Fatalf("latencies from 3 = %v, want [50ms -1]", got)
	}
	// A sample that counts an event cannot precede its write by more than
	// the writer's clock read: never a negative latency.
	early := latencies([]time.Time{ms(10)}, []ackSample{{ms(9), 1}}, 0)
	if early[0] != 0 {
		t.Fatalf("latency of an event counted before its write was read = %v, want 0", early[0])
	}

	if s := summarize(early); s.n != 1 || s.missing != 0 || s.p99 != 0 {
		t.Fatalf("summarize(%v) = %+v", early, s)
	}
	if s := summarize([]time.Duration{notAcked}); s.n != 0 || s.missing != 1 {
		t.Fatalf("summarize of none acknowledged = %+v", s)
	}
	s := summarize(got)
	if s.n != 4 || s.missing != 1 || s.p50 != 30*time.Millisecond || s.max != 60*time.Millisecond {
		t.Fatalf("summarize = %+v, want n 4, missing 1, p50 30ms, max 60ms", s)
	}
}

func TestPercentile(t *testing.T) {
	sorted := make([]time.Duration, 200)
	for i := range sorted {
		sorted[i] = time.Duration(i + 1)
	}
	f := func(p float64, want time.Duration) {
		t.Helper()
		if got := percentile(sorted, p); got != want {
			t.Fatalf("percentile(1..200, %v) = %v, want %v", p, got, want)
		}
	}
	// Nearest rank: the smallest value with at least p% of the values at
	// or below it.
	f(50, 100)
	f(99, 198)
	f(99.9, 200)
	f(100, 200)
	f(0, 1)
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Fatalf("percentile of one value = %v", got)
	}
}
