package acceptance

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// TestCrash: like TestRotationUnderLoad, while the shipper is killed with
// SIGKILL at random moments and started again. Nothing may be lost; events
// may be delivered twice, but only those delivered since the last save of
// positions before each kill.
func TestCrash(t *testing.T) {
	const kills = 6
	runSeed := *seed
	if runSeed == 0 {
		runSeed = time.Now().UnixNano()
	}
	t.Logf("kill schedule seed %d (replay with -seed %d)", runSeed, runSeed)
	rng := rand.New(rand.NewPCG(uint64(runSeed), 0))

	n := scaled(200_000)
	s := newShipper(t, defaults)
	alog := newAuditLog(s.logDir(), 10_000, false, 3)
	out := newOutput(s.outPath())
	sizes := watchSize(t, s.outPath())

	begin := time.Now()
	s.Start()
	writeErr := make(chan error, 1)
	go func() { writeErr <- alog.WriteN(n) }()

	// A kill replays at most what was delivered since the last save of
	// positions before it: the positions file's modification time says
	// when that was (minus a margin: the saved positions were taken a
	// moment before the file was written). Before the first save, it is
	// everything.
	const margin = 250 * time.Millisecond
	var replayBound int64
	for k := range kills {
		// Random moments: from right after the start (positions not even
		// loaded) to past a few saves of positions.
		time.Sleep(time.Duration(rng.Int64N(int64(2500 * time.Millisecond))))
		s.Kill()
		var saved time.Time // the zero time: before anything was delivered
		lastSave := "before any save of positions"
		if fi, err := os.Stat(s.positions()); err == nil {
			saved = fi.ModTime().Add(-margin)
			lastSave = fmt.Sprintf("%s after the last save of positions", time.Since(fi.ModTime()).Round(time.Millisecond))
		}
		replayBound += sizes.now() - sizes.before(saved)
		t.Logf("kill %d after %s, %s", k+1, time.Since(s.Started()).Round(time.Millisecond), lastSave)
		out.poll(t)
		s.Start()
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	alog.Close(t)
	s.WaitUp()
	out.waitDelivered(t, s, alog.IDs(), 3*time.Minute)
	elapsed := time.Since(begin)
	s.Stop()
	sizes.stop()
	out.poll(t)
	tl := out.tally(alog.IDs())
	dls := readDeadLetters(t, s.deadLetter())

	summary(t, s, tl, len(dls), elapsed, fmt.Sprintf("kills=%d seed=%d duplicate_bytes=%d replay_bound_bytes=%d rotations=%d first_misorder=%d",
		kills, runSeed, out.dupBytes, replayBound, alog.Rotations(), tl.firstMisorder))
	s.NoLossReported()
	if tl.lost != 0 || tl.unexpected != 0 {
		t.Errorf("lost %d events (first %v), unexpected %d", tl.lost, tl.missing, tl.unexpected)
	}
	if tl.torn > kills {
		t.Errorf("%d torn lines after %d kills: at most one per kill; samples %v", tl.torn, kills, out.tornSample)
	}
	if out.dupBytes > replayBound {
		t.Errorf("duplicates take %d bytes, more than the %d bytes delivered between each kill and the save of positions before it: replays start before the saved position",
			out.dupBytes, replayBound)
	}
	if len(dls) != 0 {
		t.Errorf("%d dead letters for valid events, the first: %+v", len(dls), dls[0])
	}
}

// sizeWatch samples a file's size every 20ms.
type sizeWatch struct {
	path  string
	mu    sync.Mutex
	times []time.Time
	size  []int64
	quit  chan struct{}
	done  chan struct{}
}

func watchSize(t *testing.T, path string) *sizeWatch {
	w := &sizeWatch{path: path, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			w.sample()
			select {
			case <-w.quit:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *sizeWatch) sample() int64 {
	var size int64
	if fi, err := os.Stat(w.path); err == nil {
		size = fi.Size()
	}
	w.mu.Lock()
	w.times = append(w.times, time.Now())
	w.size = append(w.size, size)
	w.mu.Unlock()
	return size
}

// now samples the size now.
func (w *sizeWatch) now() int64 { return w.sample() }

// before returns the last size sampled at or before t: no more than the
// size at t.
func (w *sizeWatch) before(t time.Time) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var size int64
	for i, at := range w.times {
		if at.After(t) {
			break
		}
		size = w.size[i]
	}
	return size
}

func (w *sizeWatch) stop() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
}
