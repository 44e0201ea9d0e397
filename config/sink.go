package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// commonKeys are the keys of a sink entry that Sink itself holds; every
// other key belongs to the sink type and is read by Decode.
var commonKeys = func() []string {
	var keys []string
	for k := range fieldsOf(sinkType) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}()

func isCommon(k string) bool { return slices.Contains(commonKeys, k) }

// sink decodes the common keys of one sinks entry and keeps the node for
// the sink type's own Decode.
func (d *decoder) sink(n *yaml.Node, key string, line int, s *Sink) error {
	if n.Kind != yaml.MappingNode {
		return d.mismatch(n, key, line, "a mapping with at least name and type")
	}
	*s = sinkDefaults()
	s.file, s.line, s.key, s.node = d.file, line, key, n
	return d.structure(n, key, line, reflect.ValueOf(s).Elem(), func(k string) bool { return !isCommon(k) }, nil)
}

// Decode decodes the keys of this sink entry that are not common keys
// (those of Sink: name, type, batch, max_inflight_bytes,
// max_requests_in_flight, retry, rules) strictly into dst, a pointer to the sink
// type's own struct with yaml tags. ${ENV} references were expanded by
// Load; Size and Duration fields parse as in the rest of the file; every
// error is an *Error whose key is the full path, such as "sinks[1].url".
// dst keeps the values it already holds for absent keys, so fill it with
// the sink type's defaults first.
func (s *Sink) Decode(dst any) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("config: Sink.Decode needs a non-nil pointer to a struct, got %T", dst))
	}
	if s.node == nil {
		return nil // built in Go, not from a file: nothing of the type's own
	}
	d := decoder{file: s.file}
	return d.structure(s.node, s.key, s.line, v.Elem(), isCommon, commonKeys)
}

// Errorf returns an *Error positioned at key, a key of this sink entry in
// dotted form ("url", "tls.ca_file", "addresses[1]"): on the line of that
// key when the entry has it, else on the line of the entry. Sink
// constructors use it for what they validate themselves.
func (s *Sink) Errorf(key, format string, args ...any) error {
	return errorf(s.file, s.lineOf(key), join(s.key, key), format, args...)
}

// ResolveSecret returns value, or, when file is set, the contents of that
// file without trailing newlines. key is the dotted key of the value
// ("basic_auth.password"); the file's key is key+"_file". Setting both, or
// naming a file that cannot be read or is empty, is an *Error.
func (s *Sink) ResolveSecret(key, value, file string) (string, error) {
	fileKey := key + "_file"
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", s.Errorf(fileKey, "both %s and %s are set; keep one (the _file form keeps the secret out of the configuration)", key, fileKey)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", s.Errorf(fileKey, "cannot read %q: %v; check the path, and that the shipper's user may read the file", file, unwrapPath(err))
	}
	secret := strings.TrimRight(string(b), "\r\n")
	if secret == "" {
		return "", s.Errorf(fileKey, "%q is empty; write the secret into it", file)
	}
	return secret, nil
}

// lineOf finds the line of a dotted key path below the entry.
func (s *Sink) lineOf(key string) int {
	line := s.line
	n := s.node
	for part := range strings.SplitSeq(key, ".") {
		name, index, _ := strings.Cut(part, "[")
		k, v := child(n, name)
		if k == nil {
			return line
		}
		line, n = k.Line, v
		for index != "" {
			var i string
			i, index, _ = strings.Cut(index, "]")
			index = strings.TrimPrefix(index, "[")
			k, err := strconv.Atoi(i)
			if err != nil || n.Kind != yaml.SequenceNode || k < 0 || k >= len(n.Content) {
				return line
			}
			n = n.Content[k]
			line = n.Line
		}
	}
	return line
}

// child returns the key node and the value node of key in mapping n, or
// nils.
func child(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}
