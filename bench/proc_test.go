package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	f := func(stat string, want time.Duration, wantErr string) {
		t.Helper()
		got, err := parseStatCPU([]byte(stat))
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("parseStatCPU(%q) = %v, %v; want an error with %q", stat, got, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("parseStatCPU(%q) = %v, %v; want %v", stat, got, err, want)
		}
	}
	// utime 250 and stime 31 ticks: 2.81 s.
	f("4242 (audit-shipper) S 1 4242 4242 0 -1 4194560 2875 0 0 0 250 31 0 0 20 0 9 0 1000 1 1", 2810*time.Millisecond, "")
	// A command name with spaces and a parenthesis.
	f("7 (fluent bit) x) R 1 7 7 0 -1 0 0 0 0 0 100 100 5 5 20 0 1 0", 2*time.Second, "")
	f("7 fluent-bit R 1", 0, "parentheses")
	f("7 (x) R 1 2 3", 0, "at least 13")
	f("7 (x) R 1 7 7 0 -1 0 0 0 0 0 abc 1 0 0", 0, "utime or stime")
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\taudit-shipper\nVmPeak:\t  900000 kB\nVmHWM:\t   53248 kB\nVmRSS:\t   40000 kB\n"
	got, err := parseStatusKB([]byte(status), "VmHWM")
	if err != nil || got != 53248<<10 {
		t.Fatalf("VmHWM = %d, %v; want %d", got, err, 53248<<10)
	}
	if _, err := parseStatusKB([]byte(status), "VmSwap"); err == nil {
		t.Fatal("a missing key gave no error")
	}
	if _, err := parseStatusKB([]byte("VmHWM:\t12 MB\n"), "VmHWM"); err == nil {
		t.Fatal("a value not in kB gave no error")
	}
}

// TestProcSelf reads this test's own process: the CPU time grows with
// work done, and the peak RSS covers memory touched.
func TestProcSelf(t *testing.T) {
	pid := os.Getpid()
	before, err := procCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	// Spin until the CPU clock has moved by a few ticks.
	deadline := time.Now().Add(10 * time.Second)
	after := before
	for after < before+50*time.Millisecond && time.Now().Before(deadline) {
		for i := range buf {
			buf[i] ^= byte(i >> 3)
		}
		if after, err = procCPU(pid); err != nil {
			t.Fatal(err)
		}
	}
	if after < before+50*time.Millisecond {
		t.Fatalf("CPU time went from %v to %v over 10 s of work", before, after)
	}
	rss, err := procPeakRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss < int64(len(buf)) {
		t.Fatalf("peak RSS %d is less than the %d bytes written", rss, len(buf))
	}
}
