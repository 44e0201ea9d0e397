package elasticsearch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultDataStream follows Elasticsearch's data stream naming scheme
// type-dataset-namespace, so the built-in logs-*-* template gives it
// sensible settings even when ours is not installed.
const DefaultDataStream = "logs-kubernetes.audit-default"

// target is where documents go: one data stream, or an index per day (or
// hour) of the event's time.
type target struct {
	dataStream bool
	// raw is the configured name or pattern.
	raw string
	// segs is the pattern cut into literal text and date verbs.
	segs []segment
	// bucket is the time span one index name covers: an hour with %H, a
	// day otherwise, 0 when the name has no date.
	bucket int64
}

// segment is literal text, or a date verb (Y, m, d or H) when verb is set.
type segment struct {
	lit  string
	verb byte
}

// parseTarget checks a data stream name or an index pattern against
// Elasticsearch's index naming rules.
func parseTarget(dataStream, index string) (*target, error) {
	if dataStream != "" {
		if strings.Contains(dataStream, "%") {
			return nil, errors.New("a data stream name takes no date (%); Elasticsearch rolls data streams over by itself. Use target.index for one index per day")
		}
		if err := checkIndexName(dataStream); err != nil {
			return nil, err
		}
		return &target{dataStream: true, raw: dataStream}, nil
	}
	t := &target{raw: index}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.segs = append(t.segs, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(index); i++ {
		c := index[i]
		if c != '%' {
			lit.WriteByte(c)
			continue
		}
		if i+1 == len(index) {
			return nil, fmt.Errorf("%q ends with a lone %%; use %%Y (year), %%m (month), %%d (day), %%H (hour, UTC)", index)
		}
		i++
		switch v := index[i]; v {
		case 'Y', 'm', 'd', 'H':
			flush()
			t.segs = append(t.segs, segment{verb: v})
			if v == 'H' {
				t.bucket = 3600
			} else if t.bucket == 0 {
				t.bucket = 86400
			}
		default:
			return nil, fmt.Errorf("%q: unknown date verb %%%c; use %%Y (year), %%m (month), %%d (day), %%H (hour, UTC)", index, v)
		}
	}
	flush()
	// Check the name with a sample date in place of the verbs.
	if err := checkIndexName(t.expand(time.Date(2025, 1, 2, 3, 0, 0, 0, time.UTC))); err != nil {
		return nil, err
	}
	return t, nil
}

// checkIndexName applies Elasticsearch's index and data stream naming
// rules, so that a bad name fails `audit-shipper check` rather than every
// bulk item at run time.
func checkIndexName(name string) error {
	switch {
	case name == "":
		return errors.New("the name is empty")
	case len(name) > 255:
		return fmt.Errorf("%q is %d bytes long; Elasticsearch allows 255", name, len(name))
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a valid index name", name)
	case strings.ContainsAny(name[:1], "-_+."):
		return fmt.Errorf("%q starts with %q; Elasticsearch index names cannot start with -, _, + or . (dot-names are hidden system indices)", name, name[:1])
	case strings.ToLower(name) != name:
		return fmt.Errorf("%q has upper-case letters; Elasticsearch index names are lower case", name)
	}
	if i := strings.IndexAny(name, "\\/*?\"<>| ,#:"); i >= 0 {
		return fmt.Errorf("%q contains %q, which Elasticsearch does not allow in index names (none of \\ / * ? \" < > | space , # :)", name, name[i])
	}
	return nil
}

// name returns the index or data stream for an event at ts, reusing st's
// last expansion while ts stays in the same bucket.
func (t *target) name(st *encodeState, ts time.Time) string {
	if t.bucket == 0 {
		return t.raw
	}
	sec := ts.Unix()
	key := sec / t.bucket
	if sec < 0 && sec%t.bucket != 0 {
		key-- // floor, so that a bucket never straddles the epoch
	}
	if st.index == "" || st.indexKey != key {
		st.index, st.indexKey = t.expand(ts), key
	}
	return st.index
}

// expand writes the pattern for ts, in UTC.
func (t *target) expand(ts time.Time) string {
	if t.dataStream {
		return t.raw
	}
	ts = ts.UTC()
	var b strings.Builder
	for _, s := range t.segs {
		switch s.verb {
		case 'Y':
			b.WriteString(strconv.Itoa(ts.Year()))
		case 'm':
			pad2(&b, int(ts.Month()))
		case 'd':
			pad2(&b, ts.Day())
		case 'H':
			pad2(&b, ts.Hour())
		default:
			b.WriteString(s.lit)
		}
	}
	return b.String()
}

func pad2(b *strings.Builder, n int) {
	b.WriteByte(byte('0' + n/10))
	b.WriteByte(byte('0' + n%10))
}

// pattern is the index pattern a template for this target matches: the
// data stream's own name, or the index pattern's text up to its first date
// verb followed by *.
func (t *target) pattern() string {
	if t.dataStream || t.bucket == 0 {
		return t.expand(time.Time{})
	}
	var b strings.Builder
	for _, s := range t.segs {
		if s.verb != 0 {
			break
		}
		b.WriteString(s.lit)
	}
	b.WriteByte('*')
	return b.String()
}
