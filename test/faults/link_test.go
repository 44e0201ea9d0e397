package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/internal/faultproxy"
	"github.com/audit-shipper/audit-shipper/internal/vlogs"
)

// The link faults run for faultTime from faultFrom, while the audit log
// grows at linkRate events a second for writeTime.
const (
	linkRate  = 100
	faultFrom = 3 * time.Second
	faultTime = 20 * time.Second
	writeTime = faultFrom + faultTime + 2*time.Second
)

// linkFault schedules a fault on both sinks' links and says how many
// requests it can have cut off after the server took them (each may be
// stored twice).
type linkFault struct {
	name string
	// what describes the fault for the table.
	what     string
	schedule func(tl *timeline, link *faultproxy.Proxy, rng *rand.Rand) (interrupted func() int)
}

// requestsInFlight is how many requests each sink has in flight at most
// (max_requests_in_flight): what one cut or blackhole can catch.
const requestsInFlight = 2

var linkFaults = []linkFault{
	{
		name: "flap", what: "link cut and restored every 2s for 20s",
		schedule: func(tl *timeline, link *faultproxy.Proxy, _ *rand.Rand) func() int {
			cuts := 0
			for at := faultFrom; at < faultFrom+faultTime; at += 4 * time.Second {
				tl.at(at, "cut", func() { link.Cut(); cuts++ })
				tl.at(at+2*time.Second, "restore", func() { restore(tl.t, link) })
			}
			return func() int { return cuts * requestsInFlight }
		},
	},
	{
		name: "blackhole", what: "blackhole 8s (4x the 2s timeout), twice",
		schedule: func(tl *timeline, link *faultproxy.Proxy, _ *rand.Rand) func() int {
			for _, at := range []time.Duration{faultFrom, faultFrom + 12*time.Second} {
				tl.at(at, "blackhole", link.Blackhole)
				tl.at(at+8*time.Second, "restore", func() { restore(tl.t, link) })
			}
			// A blackhole holds the answers of the requests the server
			// already took; what it accepts later never reaches the
			// server.
			return func() int { return 2 * requestsInFlight }
		},
	},
	{
		name: "reset", what: "RST after 16KiB-256KiB of each connection, and of all every 4s, for 20s",
		schedule: func(tl *timeline, link *faultproxy.Proxy, rng *rand.Rand) func() int {
			seed := rng.Uint64()
			tl.at(faultFrom, "resets in the middle of request bodies", func() { link.SetResets(16<<10, 256<<10, seed) })
			for at := faultFrom + 2*time.Second; at < faultFrom+faultTime; at += 4 * time.Second {
				tl.at(at, "reset every connection", func() { link.Reset() })
			}
			tl.at(faultFrom+faultTime, "restore", func() { restore(tl.t, link) })
			return func() int { return link.Stats().Resets }
		},
	},
	{
		name: "latency", what: "250ms one way (10x a 25ms WAN) for 20s",
		schedule: func(tl *timeline, link *faultproxy.Proxy, _ *rand.Rand) func() int {
			tl.at(faultFrom, "latency 250ms each way", func() { link.SetLatency(250 * time.Millisecond) })
			tl.at(faultFrom+faultTime, "restore", func() { restore(tl.t, link) })
			return nil // timeouts: counted by the sinks as requests without an answer
		},
	},
}

func restore(t *testing.T, link *faultproxy.Proxy) {
	t.Helper()
	if err := link.Restore(); err != nil {
		t.Fatal(err)
	}
}

// TestLinkFaults runs each fault on the links of a loki and an
// elasticsearch sink (each to its own VictoriaLogs, each through its own
// proxy) while the audit log grows and rotates and the shipper is
// SIGKILLed twice at random moments of the fault. Nothing may be lost;
// duplicates are counted and bounded by what the kills and the
// interrupted requests can explain.
func TestLinkFaults(t *testing.T) {
	for _, f := range linkFaults {
		t.Run(f.name, func(t *testing.T) { testLinkFault(t, f) })
	}
}

func testLinkFault(t *testing.T, f linkFault) {
	rng := newRand(t)
	lokiVL, esVL := vlogs.Start(t), vlogs.Start(t, "-insert.maxLineSizeBytes=4MiB")
	lokiLink, esLink := startProxy(t, hostPort(lokiVL)), startProxy(t, hostPort(esVL))
	s := newShipper(t, options{}, lokiSink("loki", lokiLink.Addr()).countedBy(lokiVL, t), esSink("es", esLink.Addr()).countedBy(esVL, t))
	alog := newAuditLog(s.opts.logPath, 2)

	begin := time.Now()
	s.Start()
	s.WaitUp()
	w := inBackground(func() error { return alog.WriteAt(context.Background(), linkRate, writeTime) })
	tl := newTimeline(t, s)
	lokiInterrupted := f.schedule(tl, lokiLink, rng)
	esInterrupted := f.schedule(tl, esLink, rng)
	for range 2 {
		tl.at(faultFrom+randomIn(rng, 0, faultTime), "SIGKILL and restart", s.restart)
	}
	tl.run()
	w.wait(t)
	alog.Close(t)
	s.WaitUp()
	s.waitCaughtUp(2 * time.Minute)
	elapsed := time.Since(begin)
	s.Stop()
	s.logSummary()

	for _, k := range []struct {
		name        string
		vl          *vlogs.Server
		link        *faultproxy.Proxy
		interrupted func() int
	}{{"loki", lokiVL, lokiLink, lokiInterrupted}, {"es", esVL, esLink, esInterrupted}} {
		n := s.noAnswers(k.name)
		if k.interrupted != nil {
			n = k.interrupted()
		}
		bound := s.dupBound(k.name, n)
		tally := vlTally(t, k.vl, alog.IDs(), 30*time.Second)
		st := k.link.Stats()
		extra := fmt.Sprintf("rotations=%d fault=%q interrupted=%d no_answer=%d proxy_conns=%d proxy_resets=%d",
			alog.Rotations(), f.what, n, s.noAnswers(k.name), st.Accepted, st.Resets)
		report(t, figuresOf(s, "link "+f.name, k.name, tally, bound, elapsed, extra))
		tally.check(t, k.name, bound)
	}
	s.NoLossReported()
}
