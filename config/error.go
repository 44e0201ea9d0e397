package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Error is a configuration mistake. Error() renders one line:
// "FILE:LINE: KEY: what is wrong; what to do", for example
//
//	/etc/audit-shipper.yaml:12: sinks[1].batch.max_bytes: "4XB" is not a size; write a number with a unit such as 512KiB, 4MiB or 1GiB
//
// Line is 0 when the mistake has no line (the file is missing) and Key is
// empty when it concerns the whole file; both are then left out.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func errorf(file string, line int, key, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// yamlLine matches the position prefix go.yaml.in/yaml/v3 puts on syntax
// errors, so that the line can move into Error.Line.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxError turns a YAML parser error into an *Error with the hint a
// newcomer most likely needs.
func syntaxError(file string, err error) *Error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	hint := "check the indentation (spaces only) and quote values that contain ': ' or start with a special character"
	if strings.Contains(msg, "cannot start any token") {
		hint = "YAML indents with spaces: replace the tab characters"
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg + "; " + hint}
}
