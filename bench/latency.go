package main

import (
	"math"
	"slices"
	"sort"
	"time"
)

// ackSample says that by time at, the first done events were finished by
// every sink. The shipper acknowledges in file order (its counters move
// with the saved position), so a count is a prefix of the events written.
type ackSample struct {
	at   time.Time
	done int64
}

// notAcked marks an event no sample counts.
const notAcked time.Duration = -1

// latencies returns, for each event i in [from, len(written)), the time
// from its write to the first sample that counts it (notAcked if none
// does): an upper bound of its write-to-acknowledgement latency, late by
// at most one sampling interval and one scrape. samples must be in time
// order, their done counts non-decreasing.
func latencies(written []time.Time, samples []ackSample, from int) []time.Duration {
	lat := make([]time.Duration, 0, max(0, len(written)-from))
	for i := from; i < len(written); i++ {
		// The first sample that counts event i (the i+1st).
		j := sort.Search(len(samples), func(j int) bool { return samples[j].done > int64(i) })
		if j == len(samples) {
			lat = append(lat, notAcked)
			continue
		}
		// written[i] is read after the write returned, so the writer's
		// goroutine may read it after the shipper acknowledged the event.
		lat = append(lat, max(0, samples[j].at.Sub(written[i])))
	}
	return lat
}

// latencySummary is what the report shows of one live run.
type latencySummary struct {
	n             int
	missing       int
	p50, p99, max time.Duration
}

func summarize(lat []time.Duration) latencySummary {
	var s latencySummary
	sorted := make([]time.Duration, 0, len(lat))
	for _, l := range lat {
		if l == notAcked {
			s.missing++
			continue
		}
		sorted = append(sorted, l)
	}
	s.n = len(sorted)
	if s.n == 0 {
		return s
	}
	slices.Sort(sorted)
	s.p50, s.p99, s.max = percentile(sorted, 50), percentile(sorted, 99), sorted[len(sorted)-1]
	return s
}

// percentile is the nearest-rank percentile p of sorted (not empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
