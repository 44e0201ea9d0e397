package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// sizeUnits are the accepted suffixes, longest first so that "MiB" is not
// read as "B".
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// sizeNumber is the number part of a size: digits, optionally a fraction.
var sizeNumber = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

const sizeHint = "write a number with a unit such as 512KiB, 4MiB or 1GiB"

// ParseSize reads a size written as in the configuration file: a plain
// number of bytes or a number with a unit, "4MiB", "1.5GiB", "500 KB".
func ParseSize(s string) (Size, error) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	if !sizeNumber.MatchString(num) {
		return 0, fmt.Errorf("%q is not a size; %s", s, sizeHint)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("%q is too large; the largest size is 8EiB", s)
		}
		return Size(n * mult), nil
	}
	f, _ := strconv.ParseFloat(num, 64) // sizeNumber admits only what parses
	b := f * float64(mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large; the largest size is 8EiB", s)
	}
	if b != math.Trunc(b) {
		return 0, fmt.Errorf("%q is not a whole number of bytes; use a smaller unit, for example %dKiB", s, int64(b)>>10)
	}
	return Size(b), nil
}

// UnmarshalYAML accepts a plain integer or a string with a unit.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("found %s, expected a size; %s", describe(n), sizeHint)
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// String writes s with the largest binary unit that divides it exactly,
// so that it reads back to the same value.
func (s Size) String() string {
	for i := 3; i >= 0; i-- {
		u := sizeUnits[i]
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalYAML writes s as String does, so an effective configuration can be
// printed and read back.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

const durationHint = "write a number with a unit such as 250ms, 30s, 5m or 1h30m"

// UnmarshalYAML accepts Go duration syntax. A bare number is refused:
// "30" could mean seconds or milliseconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("found %s, expected a duration; %s", describe(n), durationHint)
	}
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
			return fmt.Errorf("%q has no unit; %s", n.Value, durationHint)
		}
		return fmt.Errorf("%q is not a duration; %s", n.Value, durationHint)
	}
	if v < 0 {
		return errors.New("a duration cannot be negative; " + durationHint)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d in Go syntax.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
