package acceptance

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

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
	// Whether the shipper is still behind when SIGTERM arrives is a race
	// this test cannot decide; it tries again in a new directory when the
	// shipper had finished everything.
	const attempts = 3
	var r *retention
	for i := 1; r == nil; i++ {
		if i > attempts {
			t.Fatalf("in %d attempts the shipper always finished every generation before it stopped: the test could not make the race it is about", attempts)
		}
		r = stopBehind(t)
		if r == nil {
			t.Logf("attempt %d: the shipper had read everything when it stopped; trying again", i)
		}
	}
	s, out := r.s, r.out

	if err := r.alog.WriteRotations(8); err != nil {
		t.Fatal(err)
	}
	r.alog.Close(t)
	onDisk := make(map[string]bool)
	var onDiskIDs []string
	for _, g := range readGenerations(t, s.logDir()) {
		for _, id := range g.ids {
			onDisk[id] = true
		}
		onDiskIDs = append(onDiskIDs, g.ids...)
	}

	// What the shipper should report: per deleted generation, its size at
	// the stop minus the prefix it had delivered.
	wantLost := make(map[string]int64)
	var wantTotal int64
	for _, g := range r.atStop {
		if len(g.ids) == 0 || onDisk[g.ids[0]] {
			continue // still on disk (audit.log has become a backup) or empty
		}
		if unread := g.size - deliveredPrefix(g, out); unread > 0 {
			wantLost[g.name] = unread
			wantTotal += unread
		}
	}
	t.Logf("at the stop: %s; expected lost: %v", describe(r.atStop, out), wantLost)
	if wantTotal == 0 {
		t.Fatalf("harness: 8 rotations left a generation the shipper had not finished on disk (%s)", describe(r.atStop, out))
	}

	s.Start()
	s.WaitUp()
	out.waitDelivered(t, s, onDiskIDs, 2*time.Minute)
	lost := s.waitMetric("audit_shipper_lost_bytes_total", 10*time.Second, func(v float64) bool { return v == float64(wantTotal) }, fmt.Sprint(wantTotal))
	elapsed := time.Since(r.begin)
	s.Stop()
	out.poll(t)
	tl := out.tally(onDiskIDs)
	all := out.tally(r.alog.IDs())
	dls := readDeadLetters(t, s.deadLetter())

	gotLost := make(map[string]int64)
	for _, rec := range s.LogRecords(shipperproc.LostMsg) {
		file, _ := rec["file"].(string)
		n, ok := rec["lost_bytes"].(float64)
		if file == "" || !ok {
			t.Errorf("log record %q lacks the attribute file or lost_bytes: %v", shipperproc.LostMsg, rec)
			continue
		}
		gotLost[filepath.Base(file)] += int64(n)
	}
	if fmt.Sprint(gotLost) != fmt.Sprint(wantLost) {
		t.Errorf("the log reports lost generations %v (file: lost_bytes), want %v", gotLost, wantLost)
	}

	summary(t, s, tl, len(dls), elapsed, fmt.Sprintf("lost_bytes=%v lost_bytes_want=%d written_total=%d delivered_total=%d rotations=%d",
		lost, wantTotal, all.written, all.delivered, r.alog.Rotations()))
	if tl.lost != 0 || all.unexpected != 0 || tl.torn != 0 {
		t.Errorf("of the events still on disk, lost %d (first %v); never written %d, torn %d %v", tl.lost, tl.missing, all.unexpected, tl.torn, out.tornSample)
	}
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}

// retention is the state of TestRetentionRace when the shipper stopped.
type retention struct {
	s      *shipper
	alog   *shipperproc.AuditLog
	out    *output
	begin  time.Time
	atStop []generation
}

// stopBehind writes three generations (none deleted yet: two backups and
// a half full audit.log), starts the shipper and stops it as soon as it
// delivered something: it has seen all three. It returns nil when the
// shipper had nevertheless finished them all.
func stopBehind(t *testing.T) *retention {
	t.Helper()
	// A small in-flight bound keeps the shipper from reading everything
	// into memory before the stop, which it would then flush; batches of
	// one event (one fsync each) keep it from delivering everything before
	// SIGTERM arrives.
	set := defaults
	set.maxInflightBytes, set.maxLineBytes, set.batchEvents = "1MiB", "1MiB", 1
	r := &retention{s: newShipper(t, set), begin: time.Now()}
	r.alog = newAuditLog(r.s.logDir(), 2, false, 2)
	r.out = newOutput(r.s.outPath())
	if err := r.alog.WriteBytes(2*megabyte + megabyte/2); err != nil {
		t.Fatal(err)
	}
	r.s.Start()
	deadline := time.Now().Add(30 * time.Second)
	for r.out.poll(t); r.out.lines == 0; r.out.poll(t) {
		r.s.Alive()
		if time.Now().After(deadline) {
			t.Fatalf("nothing delivered within 30s of the start; the shipper's log:\n%s", r.s.LogTail(20))
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.s.Stop()
	r.out.poll(t)
	r.atStop = readGenerations(t, r.s.logDir())
	for _, g := range r.atStop {
		if deliveredPrefix(g, r.out) < g.size {
			return r
		}
	}
	return nil
}

// deliveredPrefix is how many bytes at the start of g were delivered.
func deliveredPrefix(g generation, out *output) int64 {
	var n int64
	for i, id := range g.ids {
		if out.count[id] == 0 {
			break
		}
		n += int64(len(g.lines[i]))
	}
	return n
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
