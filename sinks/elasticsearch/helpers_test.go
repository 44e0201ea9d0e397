package elasticsearch

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/internal/sinktest"
	"github.com/audit-shipper/audit-shipper/parse"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// loadSink loads a configuration whose only sink is an elasticsearch sink
// with the given keys, as `audit-shipper run` would, and returns that entry.
func loadSink(t testing.TB, keys string) *config.Sink {
	t.Helper()
	return sinktest.LoadSink(t, "search", "elasticsearch", keys)
}

type testEnv = sinktest.Env

func newEnv() *testEnv { return sinktest.NewEnv("search") }

// newSink builds a sink from keys, failing the test on a configuration error.
func newSink(t testing.TB, keys string) (*Sink, *testEnv) {
	t.Helper()
	env := newEnv()
	s, err := New(loadSink(t, keys), env.Env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, env
}

func record(t testing.TB, p *parse.Parser, line []byte) sinks.Record {
	t.Helper()
	return sinktest.Record(t, p, line)
}

func records(t testing.TB, seed int64, n int, start time.Time) []sinks.Record {
	t.Helper()
	return sinktest.Records(t, seed, n, start)
}

// fileRecords reads testdata events, one per line.
func fileRecords(t testing.TB, name string) []sinks.Record {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var p parse.Parser
	var recs []sinks.Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		recs = append(recs, record(t, &p, bytes.Clone(sc.Bytes())))
	}
	return recs
}
