package acceptance

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const lostMsg = "audit log generation deleted before it was shipped"

// TestRetentionRace: with MaxBackups 2 the shipper is stopped while it is
// behind, many rotations happen while it is down and lumberjack deletes
// the generations it had not finished. At its next start it must count
// their unread bytes as lost, name them in its log, and deliver everything
// still on disk.
//
// The shipper can only account for what it saw: the expected loss is each
// deleted generation's size when the shipper stopped minus what it had
// delivered from it. Bytes appended to a generation after the stop, and
// generations created and deleted while it was down, are lost without
// anyone able to tell.
func TestRetentionRace(t *testing.T) {
	// A small in-flight bound keeps the shipper from reading everything
	// into memory before the stop, which it would then flush.
	set := defaults
	set.maxInflightBytes, set.maxLineBytes = "1MiB", "1MiB"
	s := newShipper(t, set)
	alog := newAuditLog(s.logDir(), 2, false, 2)
	out := newOutput(s.outPath())
	begin := time.Now()

	// Three generations on disk, none deleted yet: two backups and a half
	// full audit.log.
	if err := alog.writeBytes(2*megabyte + megabyte/2); err != nil {
		t.Fatal(err)
	}
	// Stopped as soon as it delivered something, the shipper has seen all
	// three generations and finished none.
	s.start()
	deadline := time.Now().Add(30 * time.Second)
	for out.poll(t); out.lines == 0; out.poll(t) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing delivered within 30s of the start; the shipper's log:\n%s", s.logTail(20))
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.stop()
	out.poll(t)
	atStop := readGenerations(t, s.logDir())

	if err := alog.writeRotations(8); err != nil {
		t.Fatal(err)
	}
	alog.close(t)
	atEnd := readGenerations(t, s.logDir())
	onDisk := make(map[string]bool)
	var onDiskIDs []string
	for _, g := range atEnd {
		for _, id := range g.ids {
			onDisk[id] = true
		}
		onDiskIDs = append(onDiskIDs, g.ids...)
	}

	// What the shipper should report: per deleted generation, its size at
	// the stop minus the prefix it had delivered.
	wantLost := make(map[string]int64)
	var wantTotal int64
	for _, g := range atStop {
		if len(g.ids) == 0 || onDisk[g.ids[0]] {
			continue // still on disk (audit.log has become a backup) or empty
		}
		delivered := int64(0)
		for i, id := range g.ids {
			if out.count[id] == 0 {
				break
			}
			delivered += int64(len(g.lines[i]))
		}
		if unread := g.size - delivered; unread > 0 {
			wantLost[g.name] = unread
			wantTotal += unread
		}
	}
	t.Logf("at the stop: %s; expected lost: %v", describe(atStop, out), wantLost)
	if wantTotal == 0 {
		t.Fatalf("the test did not make the race it is about: the shipper had finished every generation deleted later (%s)", describe(atStop, out))
	}

	s.start()
	s.waitUp()
	out.waitDelivered(t, onDiskIDs, 2*time.Minute)
	lost := s.waitMetric("audit_shipper_lost_bytes_total", 10*time.Second, func(v float64) bool { return v == float64(wantTotal) }, fmt.Sprint(wantTotal))
	elapsed := time.Since(begin)
	s.stop()
	out.poll(t)
	tl := out.tally(onDiskIDs)
	all := out.tally(alog.ids)
	dls := readDeadLetters(t, s.deadLetter())

	gotLost := make(map[string]int64)
	for _, rec := range s.logRecords(lostMsg) {
		file, _ := rec["file"].(string)
		n, ok := rec["lost_bytes"].(float64)
		if file == "" || !ok {
			t.Errorf("log record %q lacks the attribute file or lost_bytes: %v", lostMsg, rec)
			continue
		}
		gotLost[filepath.Base(file)] += int64(n)
	}
	if fmt.Sprint(gotLost) != fmt.Sprint(wantLost) {
		t.Errorf("the log reports lost generations %v (file: lost_bytes), want %v", gotLost, wantLost)
	}

	summary(t, s, tl, len(dls), elapsed, fmt.Sprintf("lost_bytes=%v lost_bytes_want=%d written_total=%d delivered_total=%d rotations=%d",
		lost, wantTotal, all.written, all.delivered, alog.rotations))
	if tl.lost != 0 || tl.unexpected != 0 || tl.torn != 0 {
		t.Errorf("of the events still on disk, lost %d (first %v); unexpected %d, torn %d %v", tl.lost, tl.missing, tl.unexpected, tl.torn, out.tornSample)
	}
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}

// describe says, per generation, how many of its events were delivered.
func describe(gens []generation, out *output) string {
	var parts []string
	for _, g := range gens {
		n := 0
		for _, id := range g.ids {
			if out.count[id] > 0 {
				n++
			}
		}
		parts = append(parts, fmt.Sprintf("%s %d bytes %d/%d delivered", g.name, g.size, n, len(g.ids)))
	}
	return strings.Join(parts, ", ")
}
