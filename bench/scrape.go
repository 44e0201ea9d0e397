package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// series is one sample of the Prometheus text format.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// exposition is one scrape of /metrics.
type exposition []series

// sum adds the values of every series of name whose labels include
// match (label name, value, name, value...). ok is false when no series
// matched.
func (e exposition) sum(name string, match ...string) (v float64, ok bool) {
	for _, s := range e {
		if s.name != name || !hasLabels(s.labels, match) {
			continue
		}
		v += s.value
		ok = true
	}
	return v, ok
}

func hasLabels(l map[string]string, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if l[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}

// parseExposition reads the Prometheus text format (version 0.0.4): what
// a client_golang registry serves by default. Comments are skipped, and
// so are timestamps.
func parseExposition(text string) (exposition, error) {
	var e exposition
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSeries(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
		e = append(e, s)
	}
	return e, nil
}

func parseSeries(line string) (series, error) {
	s := series{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return s, fmt.Errorf("no metric name followed by labels or a value")
	}
	s.name, line = line[:end], line[end:]
	if line[0] == '{' {
		rest, err := parseLabels(line[1:], s.labels)
		if err != nil {
			return s, err
		}
		line = rest
	}
	f := strings.Fields(line)
	if len(f) == 0 || len(f) > 2 {
		return s, fmt.Errorf("want a value and an optional timestamp after the labels, found %q", line)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	s.value = v
	return s, nil
}

// parseLabels reads `name="value",...}` into l and returns what follows
// the closing brace. Values may hold \\, \" and \n escapes.
func parseLabels(in string, l map[string]string) (string, error) {
	for {
		in = strings.TrimLeft(in, " ,")
		if strings.HasPrefix(in, "}") {
			return in[1:], nil
		}
		eq := strings.Index(in, `="`)
		if eq <= 0 {
			return "", fmt.Errorf(`want name="value" in the labels, found %q`, in)
		}
		name := in[:eq]
		in = in[eq+2:]
		var v strings.Builder
		for {
			if in == "" {
				return "", fmt.Errorf("label %s: value not closed by a quote", name)
			}
			c := in[0]
			in = in[1:]
			if c == '"' {
				break
			}
			if c == '\\' && in != "" {
				c, in = in[0], in[1:]
				if c == 'n' {
					c = '\n'
				}
			}
			v.WriteByte(c)
		}
		l[name] = v.String()
	}
}

// scrape fetches and parses url (a /metrics endpoint).
func scrape(ctx context.Context, client *http.Client, url string) (exposition, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// Uncompressed: gzip would cost the shipper under test CPU on every
	// sample.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	e, err := parseExposition(string(b))
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	return e, nil
}
