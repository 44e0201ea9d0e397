package rules

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/audit-shipper/audit-shipper/corpus"
	"github.com/audit-shipper/audit-shipper/parse"
)

// benchCorpus is parse's benchmark corpus: 10,000 events of seed 1, laid
// out contiguously as a file read into memory.
var benchCorpus = sync.OnceValues(func() ([][]byte, int) {
	var buf []byte
	g := corpus.New(corpus.Options{Seed: 1})
	ends := make([]int, 10000)
	for i := range ends {
		buf = g.Next(buf)
		ends[i] = len(buf)
	}
	lines := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		lines[i] = buf[start:end:end]
		start = end
	}
	return lines, len(buf)
})

// BenchmarkRules measures, in one run, parse alone, Apply alone under
// several rule sets (on events parsed beforehand), and both together. One
// operation handles the whole corpus.
//
//	go test ./rules/ -run '^$' -bench Rules -benchtime 3s -count 5 -cpu 1
func BenchmarkRules(b *testing.B) {
	lines, size := benchCorpus()
	policy := func(path string) string {
		p, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		return string(p)
	}
	var p parse.Parser
	events := make([]*parse.Event, len(lines))
	for i, l := range lines {
		events[i] = cloneEvent(mustParse(b, &p, l))
	}
	b.Run("parse", func(b *testing.B) {
		benchLines(b, lines, size, func(i int) (bool, bool) {
			_, err := p.Parse(lines[i])
			return err == nil, false
		})
	})
	for _, c := range []struct {
		name   string
		c      Config
		policy string
	}{
		{"redact", Config{RedactSecrets: true}, ""},
		{"redact+production.yaml", Config{RedactSecrets: true}, policy("../configs/policies/production.yaml")},
		{"redact+request-response.yaml", Config{RedactSecrets: true, RedactResources: []string{"configmaps"}}, policy("../configs/policies/request-response.yaml")},
	} {
		r := newRules(b, c.c, c.policy)
		dst := make([]byte, 0, 1<<20)
		apply := func(ev *parse.Event) bool {
			out, v := r.Apply(dst, ev)
			return len(out) > 0 && &out[0] != &ev.Raw[0] || v.Drop
		}
		b.Run("apply:"+c.name, func(b *testing.B) {
			benchLines(b, lines, size, func(i int) (bool, bool) { return true, apply(events[i]) })
		})
		b.Run("parse+apply:"+c.name, func(b *testing.B) {
			benchLines(b, lines, size, func(i int) (bool, bool) {
				ev, err := p.Parse(lines[i])
				return err == nil, err == nil && apply(ev)
			})
		})
	}
}

// cloneEvent copies the strings of ev that may point into the parser's
// buffer, so that it outlives the next Parse.
func cloneEvent(ev *parse.Event) *parse.Event {
	c := *ev
	for _, s := range []*string{&c.AuditID, &c.Stage, &c.Level, &c.Verb, &c.RequestURI, &c.UserAgent, &c.Username, &c.UID,
		&c.ImpersonatedUser, &c.Decision, &c.Reason, &c.ObjectRef.Resource, &c.ObjectRef.Subresource, &c.ObjectRef.Namespace,
		&c.ObjectRef.Name, &c.ObjectRef.APIGroup, &c.ObjectRef.APIVersion} {
		*s = strings.Clone(*s)
	}
	c.Groups = make([]string, len(ev.Groups))
	for i, g := range ev.Groups {
		c.Groups[i] = strings.Clone(g)
	}
	c.SourceIPs = nil
	return &c
}

// benchLines runs handle over every line per operation and reports events/s,
// allocations per event and the share of events the rules changed or
// dropped.
func benchLines(b *testing.B, lines [][]byte, size int, handle func(i int) (ok, changed bool)) {
	changed := 0
	for i, l := range lines { // warm up the reused buffers
		ok, c := handle(i)
		if !ok {
			b.Fatalf("not an event: %q", l)
		}
		if c {
			changed++
		}
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range lines {
			handle(j)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	events := float64(b.N) * float64(len(lines))
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
	b.ReportMetric(100*float64(changed)/float64(len(lines)), "%changed")
}
