package acceptance

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/shipperproc"
)

// TestRotationUnderLoad: lumberjack writes 200,000 events as fast as it
// can, rotating every megabyte, while the shipper runs; every event must
// arrive once.
func TestRotationUnderLoad(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		if compress {
			name = "compress"
		}
		t.Run(name, func(t *testing.T) { testRotationUnderLoad(t, compress) })
	}
}

func testRotationUnderLoad(t *testing.T, compress bool) {
	n := scaled(200_000)
	s := newShipper(t, defaults)
	alog := newAuditLog(s.logDir(), 10_000, compress, 1)
	out := newOutput(s.outPath())
	s.Start()
	s.WaitUp()

	begin := time.Now()
	writeErr := make(chan error, 1)
	go func() { writeErr <- alog.WriteN(n) }()
	for writing := true; writing; {
		select {
		case err := <-writeErr:
			if err != nil {
				t.Fatal(err)
			}
			writing = false
		case <-time.After(500 * time.Millisecond):
			s.Alive()
			out.poll(t)
		}
	}
	wrote := time.Since(begin)
	alog.Close(t)
	t.Logf("wrote %d events, %d MB, %d rotations in %s", n, alog.Bytes()/megabyte, alog.Rotations(), wrote.Round(time.Millisecond))

	out.waitDelivered(t, s, alog.IDs(), 3*time.Minute)
	caughtUp := time.Since(begin)

	checkSteadyMetrics(t, s, out, alog)
	s.Stop()
	out.poll(t)
	tl := out.tally(alog.IDs())
	dls := readDeadLetters(t, s.deadLetter())

	summary(t, s, tl, len(dls), caughtUp, fmt.Sprintf("mb=%d rotations=%d write_time=%s first_misorder=%d",
		alog.Bytes()/megabyte, alog.Rotations(), wrote.Round(time.Millisecond), tl.firstMisorder))
	s.NoLossReported()
	if tl.lost != 0 || tl.duplicates != 0 || tl.torn != 0 || tl.unexpected != 0 {
		t.Errorf("one uninterrupted run must deliver each event once: lost %d (first %v), duplicates %d, torn %d %v, unexpected %d",
			tl.lost, tl.missing, tl.duplicates, tl.torn, out.tornSample, tl.unexpected)
	}
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}

// checkSteadyMetrics checks the metrics of a shipper that ran
// uninterrupted and has delivered everything alog wrote.
func checkSteadyMetrics(t *testing.T, s *shipper, out *output, alog *shipperproc.AuditLog) {
	t.Helper()
	s.waitMetric("audit_shipper_events_shipped_total", 10*time.Second, func(v float64) bool { return v == float64(out.lines) }, fmt.Sprint(out.lines, " (the lines in the output)"))
	s.waitMetric("audit_shipper_position_lag_bytes", 10*time.Second, func(v float64) bool { return v == 0 }, "0 once everything is delivered and saved")
	s.waitMetric("audit_shipper_inflight_bytes", 10*time.Second, func(v float64) bool { return v == 0 }, "0 once everything is delivered")
	m := s.MustScrape()
	check := func(name string, want float64, labels ...string) {
		t.Helper()
		if got := sinkValue(t, m, name, labels...); got != want {
			t.Errorf("%s{sink=%q %v} = %v, want %v", name, sinkName, labels, got, want)
		}
	}
	check("audit_shipper_lines_read_total", float64(len(alog.IDs())))
	check("audit_shipper_bytes_read_total", float64(alog.Bytes()))
	check("audit_shipper_lost_bytes_total", 0)
	check("audit_shipper_rotations_total", float64(alog.Rotations()))
	check("audit_shipper_dead_letters_total", 0)
	files, _ := m.Value("audit_shipper_files_open", "sink", sinkName)
	t.Logf("files_open %v", files)

	resp, err := http.Get("http://" + s.Listen() + "/readyz")
	if err != nil {
		t.Error(err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz answers %s while the sink delivers, want 200", resp.Status)
	}
}
