package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bounds of one run's phases; generous for a loaded 2-core machine.
const (
	trafficLimit = 12 * time.Minute // to reach -e2e.requests and -e2e.rotations
	catchUpLimit = 5 * time.Minute  // for the shipper to deliver the rest once the apiserver stopped
	stallLimit   = time.Minute      // without any progress in any sink: what is missing will not come
)

// TestKubeAPIServer runs the whole product twice against a real
// kube-apiserver: with plain rotated backups, and with
// --audit-log-compress. Each run prints its figures; see docs/e2e.md.
func TestKubeAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("the end-to-end suite takes minutes and real servers; run it without -short (docs/e2e.md)")
	}
	b := findBinaries(t)
	var all []figures
	for _, c := range []struct {
		name     string
		compress bool
	}{{"plain", false}, {"compressed", true}} {
		t.Run(c.name, func(t *testing.T) { all = append(all, runOnce(t, b, c.compress)) })
	}
	t.Log(total(all))
}

// total sums the headline figures of the runs.
func total(all []figures) string {
	var written, rotations, restarts, leaked, severalIDs int
	var requests int64
	delivered, dups, lost := map[string]int{}, map[string]int{}, map[string]int{}
	for _, f := range all {
		written += f.written
		rotations += f.generations - 1
		restarts += f.starts - 1
		severalIDs += f.esKeysWithSeveralIDs
		requests += f.requests
		n, _ := f.leaked()
		leaked += n
		for _, s := range sinkNames {
			delivered[s] += f.delivered[s]
			dups[s] += f.duplicates[s]
			lost[s] += f.lost[s]
		}
	}
	per := func(m map[string]int) string {
		var parts []string
		for _, s := range sinkNames {
			parts = append(parts, s+" "+count(m[s]))
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%d runs: %s requests; events written by the apiserver %s; rotations %d; restarts of the shipper %d; delivered %s; duplicates %s (rows; by _id, as Elasticsearch stores them: %d); lost %s; secret markers found %d",
		len(all), count(requests), count(written), rotations, restarts, per(delivered), per(dups), severalIDs, per(lost), leaked)
}

// figures are what one run measured, printed at its end.
type figures struct {
	written, generations, gzipped, plainOnDisk int
	writtenBytes                               int64
	counted                                    int64 // apiserver_audit_event_total before the apiserver stopped
	requests, forbidden, unexpected, tokens    int64
	markers                                    int64
	trafficTook, catchUpTook                   time.Duration
	kills, starts, shipperReadGzipped          int
	delivered, duplicates, lost, foreign       map[string]int
	esIDs, esDocs, esKeysWithSeveralIDs        int
	torn, deadLetters                          int
	secrets                                    map[string]leaks
	inApiserverLog                             leaks
	shipperLost                                []string
}

func runOnce(t *testing.T, b binaries, compress bool) figures {
	dir := workDir(t)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("run directory %s, kill schedule seed %d", dir, seed)

	lokiVL := startVLogs(t, b, dir, "loki")
	esVL := startVLogs(t, b, dir, "elasticsearch")
	ids := startIDRecorder(t, esVL.url)

	// The archiver watches the directory before the apiserver creates the
	// first audit.log in it.
	arch := startArchiver(filepath.Join(dir, "audit"), filepath.Join(dir, "archive"))
	archived := false
	t.Cleanup(func() {
		if !archived {
			_, _ = arch.close()
		}
	})
	c := startCluster(t, b, dir, compress)
	t.Logf("kube-apiserver at %s with %s", c.url, strings.Join(c.auditFlags, " "))

	sh := newShipper(t, b, dir, shipperConfig(t, dir, c.auditLog, lokiVL, ids))
	if err := sh.start(); err != nil {
		t.Fatal(err)
	}

	f := figures{}
	tr, err := newTraffic(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	trafficDone := make(chan struct{})
	go func() {
		tr.run(ctx, "e2e", *workers)
		close(trafficDone)
	}()
	start := time.Now()
	var killAt []int64
	for k := 1; k <= *kills; k++ {
		killAt = append(killAt, int64(*minRequests)*int64(k)/int64(*kills+1))
	}
	for {
		time.Sleep(100 * time.Millisecond)
		n, rotations := tr.requests.Load(), arch.generations()-1
		if len(killAt) > 0 && n >= killAt[0] {
			if err := sh.killAndRestart(rng); err != nil {
				cancel()
				<-trafficDone
				t.Fatal(err)
			}
			killAt = killAt[1:]
		}
		if len(killAt) == 0 && n >= int64(*minRequests) && rotations >= *minRotations {
			break
		}
		if !c.apiserver.running() {
			cancel()
			<-trafficDone
			t.Fatalf("kube-apiserver exited during the traffic (%v); the end of its log:\n%s", c.apiserver.err, c.apiserver.tail())
		}
		if time.Since(start) > trafficLimit {
			cancel()
			<-trafficDone
			t.Fatalf("after %s: %s requests and %d rotations, want at least %d and %d: the apiserver is too slow on this machine, or lower -e2e.requests",
				trafficLimit, count(n), rotations, *minRequests, *minRotations)
		}
	}
	cancel()
	<-trafficDone
	f.trafficTook = time.Since(start)
	f.requests, f.forbidden, f.unexpected = tr.requests.Load(), tr.forbidden.Load(), tr.unexpected.Load()
	f.tokens, f.markers = tr.issued.Load(), tr.markers.Load()

	// The apiserver's own count of the events it generated, then a stop
	// that makes the audit log final.
	counted, auditErrors, err := auditCounters(c)
	if err != nil {
		t.Fatal(err)
	}
	f.counted = counted
	c.stop(t)
	files, err := arch.close()
	archived = true
	if err != nil {
		t.Fatal(err)
	}
	w, err := readWritten(files, filepath.Join(dir, "audit"))
	if err != nil {
		t.Fatal(err)
	}
	f.written, f.writtenBytes, f.generations, f.gzipped, f.plainOnDisk = w.lines, w.bytes, w.generations, w.gzipped, w.plainOnDisk
	f.inApiserverLog = w.leaks

	// Every (auditID, stage) the apiserver wrote must reach every sink.
	catchUp, progress, lastMissing := time.Now(), time.Now(), -1
	var got map[string]map[key]int
	for {
		if !sh.p.running() {
			t.Fatalf("the shipper exited by itself (%v); the end of %s:\n%s", sh.p.err, sh.logPath, sh.p.tail())
		}
		got, f.torn, err = sinkKeys(dir, lokiVL, esVL)
		if err != nil {
			t.Fatal(err)
		}
		m := missing(w.events, got)
		if m != lastMissing {
			progress, lastMissing = time.Now(), m
		}
		if m == 0 || time.Since(catchUp) > catchUpLimit || time.Since(progress) > stallLimit {
			break
		}
		time.Sleep(5 * time.Second)
	}
	stalled := time.Since(progress)
	f.catchUpTook = time.Since(catchUp)
	if err := sh.p.stop(30 * time.Second); err != nil {
		t.Errorf("the shipper did not stop cleanly on SIGTERM: %v; the end of %s:\n%s", err, sh.logPath, sh.p.tail())
	}
	f.kills, f.starts, f.shipperReadGzipped = sh.kills, sh.starts, sh.gzipped()
	f.shipperLost = sh.lostReports()
	// What arrived after the last look (a batch in flight at SIGTERM) counts too.
	if got, f.torn, err = sinkKeys(dir, lokiVL, esVL); err != nil {
		t.Fatal(err)
	}

	f.delivered, f.duplicates, f.lost, f.foreign = map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	for _, s := range sinkNames {
		for k, n := range got[s] {
			if w.events[k] == 0 {
				f.foreign[s] += n
				continue
			}
			f.delivered[s]++
			f.duplicates[s] += n - 1
		}
		f.lost[s] = len(w.events) - f.delivered[s]
	}

	ids.mu.Lock()
	idErr := ids.err
	f.esIDs, f.esDocs = len(ids.byID), ids.docs
	for k := range w.events {
		if len(ids.ids[k]) > 1 {
			f.esKeysWithSeveralIDs++
		}
	}
	wire := ids.wire
	ids.mu.Unlock()

	f.secrets = map[string]leaks{"search (bulk requests as sent)": wire}
	for name, scan := range map[string]func() (leaks, error){
		"file":        func() (leaks, error) { return fileLeaks(filepath.Join(dir, "out", "events.ndjson")) },
		"dead-letter": func() (leaks, error) { return fileLeaks(filepath.Join(dir, "state", "dead-letter.ndjson")) },
		"loki":        lokiVL.leaks,
		"search":      esVL.leaks,
	} {
		if f.secrets[name], err = scan(); err != nil {
			t.Fatal(err)
		}
	}
	if f.deadLetters, err = lineCount(filepath.Join(dir, "state", "dead-letter.ndjson")); err != nil {
		t.Fatal(err)
	}
	t.Log(f.report())

	// The checks, each with what it means when it fails.
	if f.generations-1 < *minRotations {
		t.Errorf("%d rotations, want at least %d", f.generations-1, *minRotations)
	}
	if compress && f.gzipped == 0 {
		t.Errorf("--audit-log-compress left no .gz backup to read")
	}
	if auditErrors != 0 {
		t.Errorf("apiserver_audit_error_total is %d: the apiserver failed to write audit events", auditErrors)
	}
	if int64(f.written) < f.counted {
		t.Errorf("the audit files hold %d events but the apiserver counted %d before stopping: a generation was not archived", f.written, f.counted)
	}
	for k, n := range w.events {
		if n > 1 {
			t.Errorf("the apiserver wrote %v %d times", k, n)
			break
		}
	}
	if f.unexpected*100 > f.requests {
		t.Errorf("%d of %d requests failed unexpectedly; the first: %q", f.unexpected, f.requests, tr.failures())
	}
	for _, p := range leakPatterns {
		if f.inApiserverLog.lines[p.name] == 0 {
			t.Errorf("the apiserver's own log holds no %s: the traffic or the policy changed, and finding none in the sinks would prove nothing", p.name)
		}
	}
	for _, s := range sinkNames {
		if f.lost[s] != 0 {
			t.Errorf("sink %s: %d of %d events lost (not delivered %s after the apiserver's stop, the last %s without progress); the first: %v",
				s, f.lost[s], len(w.events), f.catchUpTook.Round(time.Second), stalled.Round(time.Second), firstMissing(w.events, got[s]))
		}
		if f.foreign[s] != 0 {
			t.Errorf("sink %s holds %d rows that are no event the apiserver wrote", s, f.foreign[s])
		}
	}
	if idErr != nil {
		t.Errorf("elasticsearch bulk requests: %v", idErr)
	}
	if f.esKeysWithSeveralIDs != 0 {
		t.Errorf("%d events were sent to elasticsearch under more than one _id: Elasticsearch would store them twice", f.esKeysWithSeveralIDs)
	}
	if f.esIDs != f.delivered["search"] {
		t.Errorf("%d distinct _ids for %d events delivered to elasticsearch", f.esIDs, f.delivered["search"])
	}
	if n, example := f.leaked(); n != 0 {
		t.Errorf("%s lines in the sinks' output hold secret values or service-account tokens (per output above), for example %s. "+
			"rules.redact_secrets (on by default) must remove the bodies of secrets, serviceaccounts/token and tokenreviews before any sink sees them", count(n), example)
	}
	if f.deadLetters != 0 {
		t.Errorf("%d dead letters: every line kube-apiserver writes is a valid event", f.deadLetters)
	}
	for _, v := range []*vlogs{lokiVL, esVL} {
		if d := v.dropped(); len(d) != 0 {
			t.Errorf("VictoriaLogs for %s dropped rows after accepting them (%d warnings), so its counts are not the shipper's; the first: %s", v.name, len(d), d[0])
		}
	}
	return f
}

func (f figures) report() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("")
	p("events written by the apiserver: %s (%.1f MB) in %d generations, %d backups on disk at the end (%d gzipped, read and matched); apiserver_audit_event_total %s before its stop",
		count(f.written), float64(f.writtenBytes)/1e6, f.generations, f.gzipped+f.plainOnDisk, f.gzipped, count(f.counted))
	p("rotations: %d", f.generations-1)
	p("traffic: %s requests in %s (%.0f/s), %s refused to the unprivileged user as expected, %s unexpected failures; %s secret values written, %s service-account tokens issued",
		count(f.requests), f.trafficTook.Round(time.Second), float64(f.requests)/f.trafficTook.Seconds(), count(f.forbidden), count(f.unexpected), count(f.markers), count(f.tokens))
	p("restarts of the shipper: %d, after %d SIGKILLs; it read %d gzipped backups; delivery complete %s after the apiserver stopped",
		f.starts-1, f.kills, f.shipperReadGzipped, f.catchUpTook.Round(time.Second))
	var delivered, dups, lost []string
	for _, s := range sinkNames {
		delivered = append(delivered, s+" "+count(f.delivered[s]))
		dups = append(dups, s+" "+count(f.duplicates[s]))
		lost = append(lost, s+" "+count(f.lost[s]))
	}
	p("delivered per sink (distinct events): %s", strings.Join(delivered, ", "))
	p("duplicates per sink (extra copies, replays after SIGKILL): %s", strings.Join(dups, ", "))
	p("  loki: VictoriaLogs keeps every copy; Loki drops an entry identical to one it has (same stream, time and line)")
	p("  search: VictoriaLogs ignores _id; by _id, as Elasticsearch stores them: %s distinct _ids for %s events, %d events under more than one _id, so %d twice (%s documents sent in all)",
		count(f.esIDs), count(f.delivered["search"]), f.esKeysWithSeveralIDs, f.esKeysWithSeveralIDs, count(f.esDocs))
	// The shipper's own loss reports are a floor it cannot make exact
	// (docs/source.md): a generation deleted while it was down counts
	// even when everything in it had been delivered before the kill. The
	// comparison with what the apiserver wrote is what decides "lost".
	p("lost: %s; dead letters: %d; torn lines in the file sink: %d; generations the shipper reported deleted before it shipped them: %d%s",
		strings.Join(lost, ", "), f.deadLetters, f.torn, len(f.shipperLost), firstLine(f.shipperLost))
	total, _ := f.leaked()
	p("secret markers found: %s", count(total))
	for _, name := range outputs {
		p("  %s: %s", name, f.secrets[name])
	}
	p("  in the apiserver's own log, which the policy makes log them: %s lines", count(f.inApiserverLog.total()))
	return b.String()
}

func firstLine(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return " (the first: " + lines[0] + ")"
}

// outputs are where the run looks for secrets, in the report's order.
var outputs = []string{"file", "loki", "search", "search (bulk requests as sent)", "dead-letter"}

// leaked counts the output lines holding a secret, with one of them.
func (f figures) leaked() (n int, example string) {
	for _, name := range outputs {
		l := f.secrets[name]
		n += l.total()
		if example == "" && l.example != "" {
			example = name + ": " + l.example
		}
	}
	return n, example
}

// sinkKeys reads back what each sink holds.
func sinkKeys(dir string, loki, es *vlogs) (map[string]map[key]int, int, error) {
	file, torn, err := fileKeys(filepath.Join(dir, "out", "events.ndjson"))
	if err != nil {
		return nil, 0, err
	}
	got := map[string]map[key]int{"file": file}
	if got["loki"], err = loki.keys(); err != nil {
		return nil, 0, err
	}
	if got["search"], err = es.keys(); err != nil {
		return nil, 0, err
	}
	return got, torn, nil
}

// missing counts the events some sink does not hold yet.
func missing(want map[key]int, got map[string]map[key]int) int {
	n := 0
	for k := range want {
		for _, s := range sinkNames {
			if got[s][k] == 0 {
				n++
			}
		}
	}
	return n
}

func firstMissing(want, got map[key]int) []key {
	var out []key
	for k := range want {
		if got[k] == 0 && len(out) < 3 {
			out = append(out, k)
		}
	}
	return out
}

// auditCounters scrapes the apiserver's apiserver_audit_event_total and
// apiserver_audit_error_total.
func auditCounters(c *cluster) (events, errors int64, err error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, err := http.NewRequest(http.MethodGet, c.url+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.adminToken)
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("scraping the apiserver's metrics: %w", err)
	}
	defer resp.Body.Close()
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "apiserver_audit_event_total":
			events, found = int64(n), true
		case strings.HasPrefix(name, "apiserver_audit_error_total"):
			errors += int64(n)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, fmt.Errorf("the apiserver's /metrics (%s) has no apiserver_audit_event_total", resp.Status)
	}
	return events, errors, nil
}

// lineCount counts the lines of a file that may not exist.
func lineCount(path string) (int, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return 0, nil
	}
	return strings.Count(string(b), "\n"), err
}
