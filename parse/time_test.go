package parse

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestParseTime compares both timestamp paths (the cached fast one across
// consecutive calls, and the general one) with the standard library.
func TestParseTime(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var c dateCache
	for n := 0; n < 200000; n++ {
		var want time.Time
		if n%3 == 0 && n > 0 {
			want = time.Unix(r.Int64N(253402300799), r.Int64N(1e6)*1000).UTC() // any date from 1970 to 9999
		} else {
			want = time.Date(2024, 6, 1+r.IntN(3), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1e6)*1000, time.UTC)
		}
		s := []byte(want.Format("2006-01-02T15:04:05.000000Z07:00"))
		if r.IntN(10) == 0 { // a corrupted byte
			s[r.IntN(len(s))] = "0123456789-:.TZ+x "[r.IntN(18)]
		}
		std, stdErr := time.Parse(time.RFC3339Nano, string(s))
		fast, fastOK := parseMicroZ(s, &c)
		slow, slowOK := parseTime(s)
		wantOK := stdErr == nil && kubeTime.Match(s)
		if slowOK != wantOK || fastOK && !wantOK {
			t.Fatalf("%s: fast %v, general %v, want %v (%v)", s, fastOK, slowOK, wantOK, stdErr)
		}
		if fastOK && !fast.Equal(std) || slowOK && !slow.Equal(std) {
			t.Fatalf("%s: fast %v, general %v, want %v", s, fast, slow, std)
		}
		if fastOK && fast.Location() != time.UTC {
			t.Fatalf("%s: location %v", s, fast.Location())
		}
	}
}
