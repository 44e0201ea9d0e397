package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"sort"
	"strings"
)

// markerPrefix begins every secret value the traffic writes (Secret data
// and stringData, the static tokens, the tokens sent for review), followed
// by random letters. Its length is a multiple of 3, so the base64 of every
// marker (how a Secret's data appears in its JSON) begins with the base64
// of the prefix: one search finds every marker in either form, and nothing
// but a leak can contain it (no name, label or other value does).
const markerPrefix = "e2eSECRETe2e"

// jwtPrefix begins every service-account token kube-apiserver issues
// (base64url of `{"alg":`): TokenRequest answers and the tokens sent in
// TokenReviews. No other audit content contains it.
const jwtPrefix = "eyJhbGciOi"

// leakPatterns are what must never reach a sink, by name.
var leakPatterns = []struct{ name, text string }{
	{"secret marker", markerPrefix},
	{"secret marker (base64)", base64.StdEncoding.EncodeToString([]byte(markerPrefix))},
	{"service-account token", jwtPrefix},
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// marker returns a new secret value: markerPrefix and 24 random letters.
func marker() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return markerPrefix + string(b)
}

// leaks counts the lines that hold each leak pattern in one output, and
// keeps the first such line (shortened) as evidence.
type leaks struct {
	lines   map[string]int
	example string
}

func (l leaks) total() int {
	n := 0
	for _, c := range l.lines {
		n += c
	}
	return n
}

func (l leaks) String() string {
	if l.total() == 0 {
		return "0"
	}
	names := make([]string, 0, len(l.lines))
	for name := range l.lines {
		names = append(names, name)
	}
	sort.Strings(names)
	var parts []string
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s: %s lines", name, count(l.lines[name])))
	}
	return fmt.Sprintf("%s (%s)", count(l.total()), strings.Join(parts, ", "))
}

// scanLeaks reads r line by line (every output the suite checks is one
// record per line) and counts the lines holding each leak pattern.
func scanLeaks(r io.Reader) (leaks, error) {
	l := leaks{lines: map[string]int{}}
	sc := bufio.NewScanner(r)
	// Longer than any line the shipper accepts (max_line_bytes 4MiB),
	// with room for a sink's additions and JSON escaping.
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		for _, p := range leakPatterns {
			i := bytes.Index(line, []byte(p.text))
			if i < 0 {
				continue
			}
			l.lines[p.name]++
			if l.example == "" {
				l.example = fmt.Sprintf("%q", line[max(0, i-120):min(len(line), i+60)])
			}
		}
	}
	return l, sc.Err()
}
