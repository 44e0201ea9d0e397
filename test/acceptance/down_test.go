package acceptance

import (
	"fmt"
	"testing"
	"time"
)

// TestDownAcrossRotations: the shipper is stopped while it is behind, the
// log rotates several times while it is down, and at its next start every
// event arrives in the order it was written.
func TestDownAcrossRotations(t *testing.T) {
	const rotationsWhileDown = 4
	// A small in-flight bound keeps the shipper from reading the whole
	// burst into memory before the stop.
	set := defaults
	set.maxInflightBytes, set.maxLineBytes = "1MiB", "1MiB"
	s := newShipper(t, set)
	alog := newAuditLog(s.logDir(), 1000, false, 4)
	out := newOutput(s.outPath())
	begin := time.Now()
	s.Start()
	s.WaitUp()

	// A burst right before SIGTERM leaves the shipper behind, so the stop
	// has batches in flight and a position in the middle of a generation.
	if err := alog.WriteBytes(2*megabyte + megabyte/2); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	out.poll(t)
	atStop := out.tally(alog.IDs())
	t.Logf("at the stop: %d of %d events delivered", atStop.delivered, atStop.written)

	if err := alog.WriteRotations(rotationsWhileDown); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	s.Start()
	out.waitDelivered(t, s, alog.IDs(), 2*time.Minute)
	elapsed := time.Since(begin)
	s.Stop()
	out.poll(t)
	tl := out.tally(alog.IDs())
	dls := readDeadLetters(t, s.deadLetter())

	summary(t, s, tl, len(dls), elapsed, fmt.Sprintf("rotations=%d rotations_while_down=%d delivered_before_stop=%d first_misorder=%d",
		alog.Rotations(), rotationsWhileDown, atStop.delivered, tl.firstMisorder))
	s.NoLossReported()
	if tl.lost != 0 || tl.unexpected != 0 || tl.torn != 0 {
		t.Errorf("lost %d (first %v), unexpected %d, torn %d %v", tl.lost, tl.missing, tl.unexpected, tl.torn, out.tornSample)
	}
	if tl.firstMisorder >= 0 {
		t.Errorf("events arrived out of file order: %s", tl.misorder)
	}
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}
