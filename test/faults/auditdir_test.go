package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// TestAuditDirectory: what people and programs do to the audit log's
// directory besides kube-apiserver. Each case ends with every event that
// was written delivered by a file sink, except where a file was deleted
// before the shipper read it: then its bytes are counted as lost and it is
// named in the log.
func TestAuditDirectory(t *testing.T) {
	t.Run("audit.log deleted by hand", testDeletedByHand)
	t.Run("audit.log replaced", testReplaced)
	t.Run("permission denied", testPermissionDenied)
	t.Run("backup deleted before it was read", testBackupDeleted)
	t.Run("symlinked directory", testSymlinkedDir)
	t.Run("empty file", testEmptyFile)
	t.Run("directory missing at start", testDirectoryMissing)
}

// fileOutcome waits until the file sink "out" has acknowledged everything
// on disk, stops the shipper, and counts its output against written.
func fileOutcome(t *testing.T, s *shipper, written []string) tally {
	t.Helper()
	s.WaitUp()
	s.waitCaughtUp(time.Minute)
	s.Stop()
	s.logSummary()
	held, torn := fileHeld(t, s.out("out"))
	return count(held, written, torn)
}

// testDeletedByHand: kube-apiserver keeps writing into audit.log after
// someone deleted it, until its next rotation (kubernetes/kubernetes#111208).
// The shipper holds the file open, so it reads those events too.
func testDeletedByHand(t *testing.T) {
	begin := time.Now()
	s := newShipper(t, options{}, fileSink("out"))
	alog := newAuditLog(s.opts.logPath, 6)
	s.Start()
	s.WaitUp()
	if err := alog.WriteN(200); err != nil {
		t.Fatal(err)
	}
	s.waitCaughtUp(time.Minute)
	if err := os.Remove(s.opts.logPath); err != nil {
		t.Fatal(err)
	}
	// Into the deleted file, then on through lumberjack's next rotation
	// (which finds no audit.log to rename) into a new audit.log.
	if err := alog.WriteRotations(1); err != nil {
		t.Fatal(err)
	}
	if err := alog.WriteN(200); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	tally := fileOutcome(t, s, alog.IDs())
	report(t, figuresOf(s, "audit.log deleted by hand", "file", tally, -1, time.Since(begin), ""))
	tally.check(t, "file", -1)
	s.NoLossReported()
}

// testReplaced: audit.log is replaced by another file (kube-apiserver
// restarted after someone moved a file over it): the shipper finishes the
// file it holds open and reads the new one from its start.
func testReplaced(t *testing.T) {
	begin := time.Now()
	s := newShipper(t, options{}, fileSink("out"))
	alog := newAuditLog(s.opts.logPath, 7)
	s.Start()
	s.WaitUp()
	if err := alog.WriteN(300); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	// The replacement holds events the writer writes next, in a file of
	// its own that is then renamed over audit.log.
	next := filepath.Join(s.logDir(), "incoming.tmp")
	repl := alog.Continue(next)
	if err := repl.WriteN(300); err != nil {
		t.Fatal(err)
	}
	repl.Close(t)
	if err := os.Rename(next, s.opts.logPath); err != nil {
		t.Fatal(err)
	}
	// kube-apiserver starts again and appends to the new audit.log.
	again := repl.Continue(s.opts.logPath)
	if err := again.WriteN(300); err != nil {
		t.Fatal(err)
	}
	again.Close(t)
	tally := fileOutcome(t, s, again.IDs())
	report(t, figuresOf(s, "audit.log replaced", "file", tally, -1, time.Since(begin), ""))
	tally.check(t, "file", -1)
	s.NoLossReported()
}

// testPermissionDenied: the shipper may not read audit.log. At its start
// that is a configuration error (exit 2, naming the file and the fix);
// once it runs, generations it may not read (the mode of the live file
// changed, and a rotation gave it to the backup and the new audit.log)
// stop its cursor, logged and retried, until someone fixes the modes, and
// then everything arrives. As root the shipper runs as nobody (65534), which mode 0600
// root files keep out; as anyone else it runs as the test's user and the
// files get mode 0000.
func testPermissionDenied(t *testing.T) {
	begin := time.Now()
	var user *syscall.Credential
	denied := os.FileMode(0o000)
	if os.Geteuid() == 0 {
		user = &syscall.Credential{Uid: 65534, Gid: 65534}
		denied = 0o600
	}
	s := newShipper(t, options{user: user}, fileSink("out"))
	if user != nil {
		if err := os.Chown(s.stateDir(), int(user.Uid), int(user.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	alog := newAuditLog(s.opts.logPath, 8)
	if err := alog.WriteN(100); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.opts.logPath, denied); err != nil {
		t.Fatal(err)
	}
	s.Start()
	if code := s.Exited(15 * time.Second); code != 2 {
		t.Errorf("started on an unreadable audit.log, the shipper exited %d, want 2 (a configuration error)", code)
	}
	logged, _ := os.ReadFile(s.LogFiles()[0])
	for _, want := range []string{s.opts.logPath, "permission denied", "CAP_DAC_READ_SEARCH"} {
		if !bytes.Contains(logged, []byte(want)) {
			t.Errorf("the message at start does not say %q:\n%s", want, logged)
		}
	}

	if err := os.Chmod(s.opts.logPath, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Start()
	s.WaitUp()
	s.waitCaughtUp(time.Minute)
	// lumberjack gives a new audit.log the mode and owner of the old one.
	if err := os.Chmod(s.opts.logPath, denied); err != nil {
		t.Fatal(err)
	}
	if err := alog.WriteRotations(1); err != nil {
		t.Fatal(err)
	}
	if err := alog.WriteN(100); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	// Both the backup the rotation made of the file the shipper holds
	// open and the new audit.log: the shipper identifies a generation by
	// reading its start through its name.
	files, _ := filepath.Glob(filepath.Join(s.logDir(), "audit*.log"))
	for _, f := range files {
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	alog.Close(t)
	tally := fileOutcome(t, s, alog.IDs())
	var named int
	for _, rec := range s.LogRecords("cannot open") {
		if err, _ := rec["err"].(string); strings.Contains(err, "permission denied") && strings.Contains(err, s.logDir()) {
			named++
		}
	}
	report(t, figuresOf(s, "audit log unreadable (permission denied)", "file", tally, -1, time.Since(begin),
		fmt.Sprintf("permission_errors_logged=%d", named)))
	tally.check(t, "file", -1)
	if named == 0 {
		t.Errorf("no log record names the unreadable generation with \"permission denied\"; errors logged: %v", s.LevelMsgs("ERROR"))
	}
	s.NoLossReported()
}

// testBackupDeleted: a backup is deleted (by hand, or by retention) while
// the shipper is behind, before it read it: its bytes are counted as lost
// (audit_shipper_lost_bytes_total) and it is named in the log; every
// other event arrives. The shipper is held behind by a cut link to its
// Loki.
func testBackupDeleted(t *testing.T) {
	begin := time.Now()
	vl := vlogs.Start(t)
	link := startProxy(t, hostPort(vl))
	link.Cut()
	s := newShipper(t, options{maxInflight: "1MiB", maxLine: "1MiB"}, lokiSink("loki", link.Addr()).countedBy(vl, t))
	alog := newAuditLog(s.opts.logPath, 9)
	if err := alog.WriteRotations(4); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	s.Start()
	s.WaitUp()
	s.waitFor("the loki sink to hold events in flight", 30*time.Second, func(m shipperproc.Metrics) bool {
		v, _ := m.Value("audit_shipper_inflight_bytes", "sink", "loki")
		return v > 0
	})
	backups, err := filepath.Glob(filepath.Join(s.logDir(), "audit-*.log"))
	if err != nil || len(backups) != 4 {
		t.Fatalf("want 4 backups, found %v (%v)", backups, err)
	}
	slices.Sort(backups)
	victim := backups[2]
	victimIDs, victimSize := idsOf(t, victim)
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted %s (%d bytes, %d events) before the shipper read it", filepath.Base(victim), victimSize, len(victimIDs))
	time.Sleep(2 * time.Second) // a loss is reported once a file stays missing for a second
	restore(t, link)
	s.waitCaughtUp(time.Minute)
	lostBytes, _ := s.MustScrape().Value("audit_shipper_lost_bytes_total", "sink", "loki")
	lostFiles, _ := s.MustScrape().Value("audit_shipper_lost_files_total", "sink", "loki")
	elapsed := time.Since(begin)
	s.Stop()
	s.logSummary()

	gone := make(map[string]bool)
	for _, id := range victimIDs {
		gone[id] = true
	}
	var onDisk []string
	for _, id := range alog.IDs() {
		if !gone[id] {
			onDisk = append(onDisk, id)
		}
	}
	tally := vlTally(t, vl, onDisk, 30*time.Second)
	recs := s.LogRecords(shipperproc.LostMsg)
	report(t, figuresOf(s, "backup deleted before it was read", "loki", tally, s.dupBound("loki", 0), elapsed,
		fmt.Sprintf("deleted_events=%d deleted_bytes=%d lost_bytes_total=%v lost_files_total=%v", len(victimIDs), victimSize, lostBytes, lostFiles)))
	tally.check(t, "loki", s.dupBound("loki", 0))
	if lostBytes != float64(victimSize) || lostFiles != 1 {
		t.Errorf("audit_shipper_lost_bytes_total = %v, lost_files_total = %v; want %d bytes of 1 file", lostBytes, lostFiles, victimSize)
	}
	if len(recs) != 1 || recs[0]["file"] != victim || recs[0]["lost_bytes"] != float64(victimSize) {
		t.Errorf("want one log record %q with file %s and lost_bytes %d, got %v", shipperproc.LostMsg, victim, victimSize, recs)
	}
}

// idsOf returns the auditIDs of a plain audit log file and its size.
func idsOf(t *testing.T, path string) ([]string, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16*mib)
	for sc.Scan() {
		id, ok := shipperproc.AuditID(sc.Bytes())
		if !ok {
			t.Fatalf("%s holds a line without an auditID: %.100q", path, sc.Bytes())
		}
		ids = append(ids, id)
	}
	return ids, int64(len(b))
}

// testSymlinkedDir: source.path goes through a symlink to the directory
// kube-apiserver writes to (a host path mounted elsewhere); rotations and a
// SIGKILL happen behind it.
func testSymlinkedDir(t *testing.T) {
	begin := time.Now()
	dir := shipperproc.WorkDir(t)
	realDir := filepath.Join(dir, "real")
	if err := os.Mkdir(realDir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(realDir, link); err != nil {
		t.Fatal(err)
	}
	s := newShipper(t, options{logPath: filepath.Join(link, "audit.log")}, fileSink("out"))
	alog := newAuditLog(filepath.Join(realDir, "audit.log"), 10)
	s.Start()
	s.WaitUp()
	if err := alog.WriteRotations(2); err != nil {
		t.Fatal(err)
	}
	s.restart()
	if err := alog.WriteRotations(2); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	tally := fileOutcome(t, s, alog.IDs())
	bound := s.dupBound("out", 0)
	report(t, figuresOf(s, "symlinked audit directory", "file", tally, bound, time.Since(begin), ""))
	tally.check(t, "file", bound)
	s.NoLossReported()
}

// testEmptyFile: audit.log exists and is empty at the start (just
// rotated, or created by an installer); the shipper waits quietly and
// ships what comes.
func testEmptyFile(t *testing.T) {
	begin := time.Now()
	s := newShipper(t, options{}, fileSink("out"))
	if err := os.WriteFile(s.opts.logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Start()
	s.WaitUp()
	time.Sleep(2 * time.Second)
	quiet := len(s.LevelMsgs("ERROR")) == 0 && len(s.LevelMsgs("WARN")) == 0
	alog := newAuditLog(s.opts.logPath, 11)
	if err := alog.WriteN(300); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	tally := fileOutcome(t, s, alog.IDs())
	report(t, figuresOf(s, "empty audit.log at start", "file", tally, -1, time.Since(begin), ""))
	tally.check(t, "file", -1)
	if !quiet {
		t.Errorf("an empty audit.log is not an error, yet the shipper logged: errors %v, warnings %v", s.LevelMsgs("ERROR"), s.LevelMsgs("WARN"))
	}
	s.NoLossReported()
}

// testDirectoryMissing: the audit directory does not exist when the
// shipper starts (audit logging not switched on yet); it is created later
// and the shipper ships from its first event.
func testDirectoryMissing(t *testing.T) {
	begin := time.Now()
	dir := shipperproc.WorkDir(t)
	logDir := filepath.Join(dir, "audit")
	s := newShipper(t, options{logPath: filepath.Join(logDir, "audit.log")}, fileSink("out"))
	s.Start()
	s.WaitUp()
	time.Sleep(3 * time.Second)
	waited := s.LevelMsgs("ERROR")
	if err := os.Mkdir(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	alog := newAuditLog(s.opts.logPath, 12)
	if err := alog.WriteRotations(1); err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	tally := fileOutcome(t, s, alog.IDs())
	report(t, figuresOf(s, "audit directory missing at start", "file", tally, -1, time.Since(begin),
		fmt.Sprintf("errors_while_missing=%d", total(waited))))
	tally.check(t, "file", -1)
	s.NoLossReported()
}
