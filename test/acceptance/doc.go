// Package acceptance proves audit-shipper's guarantees against the real
// binary: TestMain builds cmd/audit-shipper once, each test writes audit logs
// the way kube-apiserver does (lumberjack rotation) or byte by byte, runs,
// stops, kills and restarts the binary, and compares what the file sink
// delivered with what was written.
//
// Run it with
//
//	go test -v -timeout 15m ./test/acceptance/
//
// Each test prints its figures (written, delivered, duplicates, lost, torn,
// dead-lettered, elapsed). Without -v they appear only when go test shows
// the test's output (run from this directory, or when a test fails), so CI
// runs it with -v. -short scales the event counts down by ten; -seed
// replays the crash test's kill schedule; -update rewrites the golden files
// under testdata.
package acceptance
