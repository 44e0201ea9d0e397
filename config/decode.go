package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decoder maps a YAML node tree onto Go values strictly. It exists instead
// of yaml.Node.Decode because that one cannot refuse unknown keys, and its
// messages name neither the key path nor the fix.
type decoder struct {
	file string
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	sinkType        = reflect.TypeFor[Sink]()
)

// decode stores n into v (settable), naming key in every error and
// placing a wrong value at line (that of its key: a mapping value's own
// line is that of its first key). A null node leaves v as it is, so that
// values filled in beforehand are defaults.
func (d *decoder) decode(n *yaml.Node, key string, line int, v reflect.Value) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n)
		if err == nil {
			return nil
		}
		if e, ok := errors.AsType[*Error](err); ok {
			return e
		}
		return errorf(d.file, line, key, "%s", err.Error())
	}
	if v.Type() == sinkType {
		return d.sink(n, key, line, v.Addr().Interface().(*Sink))
	}
	switch v.Kind() {
	case reflect.Struct:
		return d.structure(n, key, line, v, nil, nil)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(n, key, line, v.Elem())
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return d.mismatch(n, key, line, "a list (lines starting with '- ', or [a, b])")
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if err := d.decode(c, fmt.Sprintf("%s[%d]", key, i), c.Line, s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		if n.Kind != yaml.MappingNode || v.Type().Key().Kind() != reflect.String {
			return d.mismatch(n, key, line, "a mapping (key: value lines)")
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				return errorf(d.file, k.Line, join(key, k.Value), "the key appears twice; keep one")
			}
			e := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(val, join(key, k.Value), k.Line, e); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
		}
		v.Set(m)
		return nil
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			return errorf(d.file, line, key, "%v", err)
		}
		v.Set(reflect.ValueOf(x))
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return d.mismatch(n, key, line, kindName(v.Kind()))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Bool:
		if n.ShortTag() != "!!bool" {
			return d.mismatch(n, key, line, "true or false")
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 0, v.Type().Bits())
		if n.ShortTag() != "!!int" || err != nil {
			return d.mismatch(n, key, line, "a whole number such as 1000")
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(n.Value, 0, v.Type().Bits())
		if n.ShortTag() != "!!int" || err != nil {
			return d.mismatch(n, key, line, "a whole number such as 1000")
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, v.Type().Bits())
		if (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || err != nil {
			return d.mismatch(n, key, line, "a number such as 0.5")
		}
		v.SetFloat(f)
	default:
		return errorf(d.file, line, key, "cannot be decoded into a Go %s; this is a bug in audit-shipper", v.Type())
	}
	return nil
}

// structure decodes a mapping into the struct v. Keys for which skip
// returns true are left alone: a sink entry's keys are split between the
// common Sink fields and the sink type's own struct. alsoValid lists the
// skipped keys a user may write here, for the unknown-key message.
func (d *decoder) structure(n *yaml.Node, key string, line int, v reflect.Value, skip func(string) bool, alsoValid []string) error {
	if n.Kind != yaml.MappingNode {
		return d.mismatch(n, key, line, "a mapping (key: value lines)")
	}
	fields := fieldsOf(v.Type())
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if prev, dup := seen[k.Value]; dup {
			return errorf(d.file, k.Line, join(key, k.Value), "the key appears twice (first on line %d); keep one", prev)
		}
		seen[k.Value] = k.Line
		if skip != nil && skip(k.Value) {
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			return d.unknown(k, key, v.Type(), alsoValid)
		}
		if err := d.decode(val, join(key, k.Value), k.Line, v.FieldByIndex(idx)); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) unknown(k *yaml.Node, key string, t reflect.Type, alsoValid []string) *Error {
	valid := slices.Clone(alsoValid)
	for name := range fieldsOf(t) {
		valid = append(valid, name)
	}
	slices.Sort(valid)
	if best := closest(k.Value, valid); best != "" {
		return errorf(d.file, k.Line, join(key, k.Value), "unknown key; did you mean %q? (valid keys here: %s)", best, strings.Join(valid, ", "))
	}
	if len(valid) == 0 {
		return errorf(d.file, k.Line, join(key, k.Value), "unknown key; this place takes no keys")
	}
	return errorf(d.file, k.Line, join(key, k.Value), "unknown key; valid keys here: %s", strings.Join(valid, ", "))
}

func (d *decoder) mismatch(n *yaml.Node, key string, line int, want string) *Error {
	if strings.Contains(want, ";") {
		// want already says how to write it.
		return errorf(d.file, line, key, "found %s, expected %s", describe(n), want)
	}
	return errorf(d.file, line, key, "found %s; write %s", describe(n), want)
}

// fieldsOf maps yaml key names to field indexes, following yaml tags the
// way go.yaml.in/yaml/v3 does (lowercased field name when untagged,
// ",inline" merges a struct's keys).
func fieldsOf(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
			for k, idx := range fieldsOf(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = []int{i}
	}
	return out
}

// describe names a node the way a user wrote it, for "found X" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return describe(n.Alias)
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	}
	return strconv.Quote(n.Value)
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a whole number"
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// closest returns the candidate nearest to s when it is near enough to be
// a typo (edit distance 1 for short keys, 2 from 6 letters on), or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 2
	if len(s) >= 6 {
		bestD = 3
	}
	for _, c := range candidates {
		if d := distance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
