package loki

import (
	"io"
	"testing"
	"time"

	"github.com/audit-shipper/audit-shipper/config"
	"github.com/audit-shipper/audit-shipper/internal/sinktest"
	"github.com/audit-shipper/audit-shipper/sinks"
)

// loadSink loads a configuration whose only sink is a loki sink with the
// given keys, as `audit-shipper run` would, and returns that entry.
func loadSink(t testing.TB, keys string) *config.Sink {
	t.Helper()
	return sinktest.LoadSink(t, "loki", "loki", keys)
}

type testEnv = sinktest.Env

func newEnv() *testEnv { return sinktest.NewEnv("loki") }

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

// records returns n corpus events as the shipper hands them to a sink,
// with stageTimestamps from start on.
func records(t testing.TB, seed int64, n int, start time.Time) []sinks.Record {
	t.Helper()
	return sinktest.Records(t, seed, n, start)
}

// discard reads and drops a request body; fakes use it before answering.
func discard(r io.Reader) { _, _ = io.Copy(io.Discard, r) }
