package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

// tinyTmpfs mounts a 64 KiB tmpfs on dir for the test's duration: a
// filesystem that can be filled in an instant.
func tinyTmpfs(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("cannot mount a 64 KiB tmpfs on %s to fill it (mount -t tmpfs -o size=64k tmpfs %s: %v %s); "+
			"this scenario needs root or CAP_SYS_ADMIN", dir, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
}

// fill writes dir's filesystem full with a filler file and returns the
// function that removes it.
func fill(t *testing.T, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 512)
	for {
		if _, err := f.Write(page); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
			}
			break
		}
	}
	return func() { os.Remove(path) }
}

// TestPositionsDirectory: the directory of the positions file stops
// taking writes while the shipper runs (read-only, or full), the shipper
// is SIGKILLed while it is so, and again after it was fixed. The shipper
// must say so in its log and go on shipping; a restart replays from the
// last positions saved (duplicates, bounded by what was acknowledged
// since), never loses; once the directory is fixed it saves again.
//
// Read-only is the immutable attribute (chattr +i: root ignores mode
// bits); full is a 64 KiB tmpfs filled up (ENOSPC).
func TestPositionsDirectory(t *testing.T) {
	for _, c := range []struct {
		name     string
		tmpfs    bool
		breakDir func(t *testing.T, dir string) (fix func())
	}{
		{"read-only", false, func(t *testing.T, dir string) func() { return shipperproc.ReadOnlyDir(t, dir, 0o755) }},
		{"full", true, fill},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(shipperproc.WorkDir(t), "positions")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if c.tmpfs {
				tinyTmpfs(t, dir)
			}
			testPositionsDirectory(t, dir, c.breakDir)
		})
	}
}

func testPositionsDirectory(t *testing.T, dir string, breakDir func(*testing.T, string) func()) {
	positions := filepath.Join(dir, "positions.json")
	s := newShipper(t, options{positions: positions}, fileSink("out"))
	out := s.out("out")
	alog := newAuditLog(s.opts.logPath, 4)

	begin := time.Now()
	s.Start()
	s.WaitUp()
	w := inBackground(func() error { return alog.WriteAt(context.Background(), 200, 20*time.Second) })
	var fix func()
	var brokenAt, fixedAt time.Time
	tl := newTimeline(t, s)
	tl.at(3*time.Second, "make the positions directory unwritable", func() {
		fix = breakDir(t, dir)
		brokenAt = time.Now()
	})
	tl.at(8*time.Second, "SIGKILL and restart while it is unwritable", s.restart)
	tl.at(13*time.Second, "make it writable again", func() {
		fix()
		fixedAt = time.Now()
	})
	tl.at(16*time.Second, "SIGKILL and restart", s.restart)
	tl.run()
	w.wait(t)
	alog.Close(t)
	s.WaitUp()
	s.waitCaughtUp(time.Minute)
	elapsed := time.Since(begin)
	s.Stop()
	s.logSummary()

	held, torn := fileHeld(t, out)
	tally := count(held, alog.IDs(), torn)
	bound := s.dupBound("out", 0)
	failed := s.LogRecords("cannot save positions")
	again := s.LogRecords("saving positions again")
	report(t, figuresOf(s, "positions directory "+filepath.Base(t.Name()), "file", tally, bound, elapsed,
		fmt.Sprintf("save_errors_logged=%d saving_again_logged=%d torn=%d", len(failed), len(again), torn)))
	tally.check(t, "file", bound)
	if torn > s.kills {
		t.Errorf("%d torn lines in the output after %d kills: at most one per kill", torn, s.kills)
	}
	// Runs 1 and 2 found the directory unwritable: each says so once,
	// naming the file.
	if len(failed) != 2 {
		t.Errorf("%d log records say the positions cannot be saved, want 2 (one per run that met the unwritable directory): %v", len(failed), failed)
	}
	for _, rec := range failed {
		if err, _ := rec["err"].(string); !strings.Contains(err, positions) {
			t.Errorf("the error does not name the positions file %s: %v", positions, rec)
		}
	}
	if len(again) != 1 {
		t.Errorf("%d log records say positions are saved again, want 1 (run 2, when the directory was fixed)", len(again))
	}
	if mt := modTime(positions); !mt.After(fixedAt) {
		t.Errorf("the positions file was last written at %s, before the directory was fixed at %s", mt, fixedAt)
	}
	// While unwritable nothing was written: the file is the one saved
	// before.
	if mt := modTime(positions); mt.After(brokenAt) && mt.Before(fixedAt) {
		t.Errorf("the positions file was written at %s while its directory was unwritable (%s to %s)", mt, brokenAt, fixedAt)
	}
	s.NoLossReported()
}

// TestPositionsCorrupt: a positions file that cannot be what the shipper
// wrote must stop it at start (exit 1) with a message naming the file and
// the fix, and deliver nothing; moving it aside as the message says makes
// the next start ship every event again from source.start_at
// (beginning: duplicates, no loss). A positions file that is well formed
// but no longer matches the disk (an offset past the end, a generation
// that is gone) is recovered from safely: duplicates, no loss, a warning.
func TestPositionsCorrupt(t *testing.T) {
	refused := []struct {
		name    string
		corrupt func(saved []byte) []byte
	}{
		{"garbage", func(saved []byte) []byte { return bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, '{'}, len(saved)/5) }},
		{"truncated", func(saved []byte) []byte { return saved[:len(saved)/2] }},
		{"empty", func([]byte) []byte { return nil }},
		// What a crash leaves of a file whose blocks were not written yet
		// on some filesystems.
		{"zeroed", func(saved []byte) []byte { return make([]byte, len(saved)) }},
		{"newer version", func(saved []byte) []byte {
			return bytes.Replace(saved, []byte(`"version": 1`), []byte(`"version": 2`), 1)
		}},
		{"negative offset", editPosition(func(p map[string]any) { p["offset"] = -100 })},
		{"negative fingerprint length", editPosition(func(p map[string]any) { p["file"].(map[string]any)["fp_len"] = -5 })},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) { testPositionsRefused(t, c.name, c.corrupt) })
	}
	recovered := []struct {
		name string
		edit func(p map[string]any)
	}{
		// The saved generation has rotated meanwhile: a backup that
		// cannot grow.
		{"offset past the end", func(p map[string]any) { p["offset"] = p["offset"].(float64) + 5*mib }},
		{"generation gone", func(p map[string]any) { p["file"].(map[string]any)["fp"] = "0000" }},
	}
	for _, c := range recovered {
		t.Run(c.name, func(t *testing.T) { testPositionsRecovered(t, c.name, editPosition(c.edit)) })
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// editPosition returns a corruption that edits the saved position of the
// sink "out" as JSON.
func editPosition(edit func(p map[string]any)) func([]byte) []byte {
	return func(saved []byte) []byte {
		var f map[string]any
		if err := json.Unmarshal(saved, &f); err != nil {
			panic(fmt.Sprintf("harness: the saved positions are not JSON: %v", err))
		}
		edit(f["sinks"].(map[string]any)["out"].(map[string]any))
		b, _ := json.MarshalIndent(f, "", "  ")
		return b
	}
}

// shipAndStop ships 600 events (a rotation and a half) to a file sink and
// stops, so that a position is saved.
func shipAndStop(t *testing.T) (*shipper, *shipperproc.AuditLog, string) {
	t.Helper()
	s := newShipper(t, options{}, fileSink("out"))
	out := s.out("out")
	alog := newAuditLog(s.opts.logPath, 5)
	if err := alog.WriteN(600); err != nil {
		t.Fatal(err)
	}
	s.Start()
	s.WaitUp()
	s.waitCaughtUp(time.Minute)
	s.Stop()
	return s, alog, out
}

// shipCorruptAndWrite ships a log and stops, passes the positions file it
// saved through corrupt, and writes 300 events more for the next start.
func shipCorruptAndWrite(t *testing.T, corrupt func([]byte) []byte) (*shipper, *shipperproc.AuditLog, string) {
	t.Helper()
	s, alog, out := shipAndStop(t)
	saved, err := os.ReadFile(s.opts.positions)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.opts.positions, corrupt(saved), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := alog.WriteN(300); err != nil {
		t.Fatal(err)
	}
	return s, alog, out
}

func testPositionsRefused(t *testing.T, name string, corrupt func([]byte) []byte) {
	begin := time.Now()
	s, alog, out := shipCorruptAndWrite(t, corrupt)
	before, _ := fileHeld(t, out)

	s.Start()
	code := s.Exited(15 * time.Second)
	logged, _ := os.ReadFile(s.LogFiles()[len(s.LogFiles())-1])
	if code != 1 {
		t.Errorf("with a %s positions file the shipper exited %d, want 1; its log:\n%s", name, code, s.LogTail(10))
	}
	recs := s.LogRecords("cannot start")
	switch {
	case len(recs) != 1:
		t.Errorf("want one log record \"cannot start\", got %d; the log:\n%s", len(recs), s.LogTail(10))
	default:
		msg, _ := recs[0]["err"].(string)
		for _, want := range []string{s.opts.positions, "move it aside"} {
			if !strings.Contains(msg, want) {
				t.Errorf("the error %q does not say %q", msg, want)
			}
		}
	}
	if bytes.Contains(logged, []byte("panic")) {
		t.Errorf("the shipper panicked:\n%s", s.LogTail(10))
	}
	if after, _ := fileHeld(t, out); len(after) != len(before) {
		t.Errorf("the refused start delivered %d events: it started from somewhere", len(after)-len(before))
	}

	// The fix the message gives: move it aside, start again.
	if err := os.Rename(s.opts.positions, s.opts.positions+".corrupt"); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	s.Start()
	s.WaitUp()
	s.waitCaughtUp(time.Minute)
	s.Stop()
	held, torn := fileHeld(t, out)
	tally := count(held, alog.IDs(), torn)
	// start_at: beginning ships everything on disk again.
	bound := len(before)
	report(t, figuresOf(s, "positions file "+name, "file", tally, bound, time.Since(begin),
		fmt.Sprintf("exit=%d then moved aside", code)))
	tally.check(t, "file", bound)
}

func testPositionsRecovered(t *testing.T, name string, corrupt func([]byte) []byte) {
	begin := time.Now()
	s, alog, out := shipCorruptAndWrite(t, corrupt)
	alog.Close(t)
	before, _ := fileHeld(t, out)
	s.Start()
	s.WaitUp()
	s.waitCaughtUp(time.Minute)
	s.Stop()
	held, torn := fileHeld(t, out)
	tally := count(held, alog.IDs(), torn)
	warned := total(s.LevelMsgs("WARN")) + total(s.LevelMsgs("ERROR"))
	report(t, figuresOf(s, "positions file "+name, "file", tally, len(before), time.Since(begin),
		fmt.Sprintf("warnings=%d", warned)))
	tally.check(t, "file", len(before))
	if warned == 0 {
		t.Error("no warning or error logged: the recovery from a positions file that does not match the disk is silent")
	}
	s.logSummary()
}
