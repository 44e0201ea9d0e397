// Package faults puts audit-shipper through the faults of a real node and
// network, against the real binary and real servers, and measures what
// arrives: a sink down for a long stretch while the audit log rotates, a
// flapping link, a blackhole, resets in the middle of a request, ten times
// the latency, a sink answering 429 with Retry-After, SIGKILL at random
// moments during each, a positions directory read-only or full, a corrupt
// positions file, an audit directory that is tampered with, hostile input,
// and a compressed soak.
//
// TestMain builds cmd/audit-shipper once (or takes $AUDIT_SHIPPER_BIN). Network faults come from
// internal/faultproxy, a TCP proxy on loopback between the shipper and
// VictoriaLogs (internal/vlogs), which takes the Loki push API and the
// Elasticsearch bulk API and is queried back to count every event by its
// auditID. Time is compressed: second-scale timeouts and backoffs stand in
// for the defaults, so that a scenario of "minutes" takes well under two.
//
// Run it with
//
//	go test -v -timeout 20m ./test/faults/
//
// Each scenario prints one line of figures (written, delivered,
// duplicates and their bound, lost, peak heap and RSS of the shipper) and
// the package ends with them as the markdown table of docs/reliability.md.
// -seed replays the kill schedules and faults; -run picks a scenario.
// Some scenarios need root (chattr +i, a tmpfs mount, running the shipper
// as another user); they fail with the reason without it.
package faults
