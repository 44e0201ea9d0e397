// Package observability proves the shipper's metrics, alerting rules and
// dashboards against the real tools:
//
//   - an end-to-end test runs the binary on a written corpus with a file
//     sink, two sinks on a VictoriaLogs server and a sink whose server is
//     down, has Debian's Prometheus scrape it every second with the rules
//     of deploy/prometheus loaded, and compares what Prometheus' HTTP API
//     answers (events shipped, lag, a security counter) with the shipper's
//     /metrics and with the corpus; every query of the rules and of the
//     shipper dashboard is evaluated by that Prometheus;
//   - promtool checks the /metrics output, checks the rules and runs their
//     unit tests (deploy/prometheus/tests);
//   - the catalogue of docs/metrics.md must match what /metrics exposes
//     (names, types, labels), and every metric, label and label value the
//     rules and dashboards use must be in it (for the Loki dashboard: the
//     stream labels and structured metadata of docs/sinks/loki.md).
//
// Run it with
//
//	go test -v ./test/observability/
//
// It needs /usr/bin/prometheus and /usr/bin/promtool (apt-get install -y
// prometheus) and VictoriaLogs (see internal/vlogs); without them the tests
// that need them fail, or are skipped under -short.
package observability
