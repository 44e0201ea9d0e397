package main

import (
	"strings"
	"testing"
)

const exposition1 = `# HELP audit_shipper_events_shipped_total Events the sink acknowledged.
# TYPE audit_shipper_events_shipped_total counter
audit_shipper_events_shipped_total{sink="es"} 1200
audit_shipper_events_shipped_total{sink="loki"} 3.5e+06
audit_shipper_dead_letters_total{reason="too_long",sink="loki"} 2
audit_shipper_dead_letters_total{reason="invalid_json",sink="loki"} 3
audit_shipper_dead_letters_total{reason="invalid_json",sink="es"} 7
odd_labels{a="x,y}",b="q\"uote\\",c="line\nbreak"} 1 1700000000000
go_memstats_heap_inuse_bytes 2.5165824e+07
`

func TestExposition(t *testing.T) {
	e, err := parseExposition(exposition1)
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string, match []string, want float64, wantOK bool) {
		t.Helper()
		got, ok := e.sum(name, match...)
		if got != want || ok != wantOK {
			t.Fatalf("sum(%s, %q) = %v, %v; want %v, %v", name, match, got, ok, want, wantOK)
		}
	}
	f("audit_shipper_events_shipped_total", []string{"sink", "loki"}, 3.5e6, true)
	f("audit_shipper_events_shipped_total", nil, 3.5e6+1200, true)
	f("audit_shipper_dead_letters_total", []string{"sink", "loki"}, 5, true)
	f("audit_shipper_dead_letters_total", []string{"sink", "es", "reason", "invalid_json"}, 7, true)
	f("audit_shipper_dead_letters_total", []string{"sink", "file"}, 0, false)
	f("go_memstats_heap_inuse_bytes", nil, 25165824, true)
	f("odd_labels", []string{"a", "x,y}", "b", `q"uote\`, "c", "line\nbreak"}, 1, true)
}

func TestExpositionErrors(t *testing.T) {
	for _, bad := range []string{
		`m{sink="a"`,           // labels not closed
		`m{sink=a} 1`,          // value not quoted
		`m{sink="a} 1`,         // quote not closed
		`m{sink="a"} x`,        // value not a number
		`m{sink="a"} 1 2 3`,    // too many fields
		`{sink="a"} 1`,         // no name
		`audit_shipper_events`, // no value
	} {
		if _, err := parseExposition(bad); err == nil {
			t.Errorf("parseExposition(%q) gave no error", bad)
		} else if !strings.Contains(err.Error(), "line 1") {
			t.Errorf("parseExposition(%q): error %q does not name the line", bad, err)
		}
	}
}
