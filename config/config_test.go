package config

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/*.bad.err from what Load returns now")

// The sink types below stand in for the real ones (sinks/loki,
// sinks/elasticsearch, the file sink) the way their constructors use this
// package: Decode, then Errorf and ResolveSecret for what they check.
type testTLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

type testLoki struct {
	URL       string `yaml:"url"`
	TenantID  string `yaml:"tenant_id"`
	BasicAuth struct {
		Username     string `yaml:"username"`
		Password     string `yaml:"password"`
		PasswordFile string `yaml:"password_file"`
	} `yaml:"basic_auth"`
	BearerToken     string            `yaml:"bearer_token"`
	BearerTokenFile string            `yaml:"bearer_token_file"`
	Labels          map[string]string `yaml:"labels"`
	TLS             testTLS           `yaml:"tls"`
	Timeout         Duration          `yaml:"timeout"`
}

type testFile struct {
	Path string `yaml:"path"`
}

// buildSink does what the shipper does with each sink entry after Load.
func buildSink(s *Sink) (any, error) {
	switch s.Type {
	case "file":
		var f testFile
		if err := s.Decode(&f); err != nil {
			return nil, err
		}
		if f.Path == "" {
			return nil, s.Errorf("path", `is missing; write a file path, or "-" for stdout`)
		}
		return &f, nil
	case "loki":
		var l testLoki
		if err := s.Decode(&l); err != nil {
			return nil, err
		}
		if l.URL == "" {
			return nil, s.Errorf("url", "is missing; write the push URL, such as http://loki.monitoring:3100/loki/api/v1/push")
		}
		var err error
		if l.BasicAuth.Password, err = s.ResolveSecret("basic_auth.password", l.BasicAuth.Password, l.BasicAuth.PasswordFile); err != nil {
			return nil, err
		}
		if l.BearerToken, err = s.ResolveSecret("bearer_token", l.BearerToken, l.BearerTokenFile); err != nil {
			return nil, err
		}
		return &l, nil
	}
	return nil, s.Errorf("type", "%q is not a sink type; write file, loki or elasticsearch", s.Type)
}

func loadAndBuild(path string) (*Config, []any, error) {
	c, err := Load(path)
	if err != nil {
		return nil, nil, err
	}
	var built []any
	for i := range c.Sinks {
		b, err := buildSink(&c.Sinks[i])
		if err != nil {
			return nil, nil, err
		}
		built = append(built, b)
	}
	return c, built, nil
}

// unreadableDir makes a directory holding an audit.log the test process
// cannot open, points TESTDATA_TMP at it, and returns it. Root opens any
// file whatever its mode, so as root the open is made to fail the way it
// fails for an unprivileged user.
func unreadableDir(t *testing.T) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(p, []byte("{}\n"), 0o000); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		openRead = func(name string) (*os.File, error) {
			if name == p {
				return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
			}
			return os.Open(name)
		}
		t.Cleanup(func() { openRead = os.Open })
	}
	t.Setenv("TESTDATA_TMP", dir)
	return dir
}

// TestBadConfigs loads every testdata/*.bad.yaml (and the .bad.err files
// without a .yaml: the file is missing) and compares the one-line error
// with the golden .bad.err. Run with -update to rewrite the goldens.
func TestBadConfigs(t *testing.T) {
	t.Setenv("AUDIT_SHIPPER_TEST_UNSET", "")
	os.Unsetenv("AUDIT_SHIPPER_TEST_UNSET")
	tmp := unreadableDir(t)

	names := map[string]bool{}
	for _, pat := range []string{"testdata/*.bad.yaml", "testdata/*.bad.err"} {
		files, _ := filepath.Glob(pat)
		for _, f := range files {
			names[strings.TrimSuffix(strings.TrimSuffix(f, ".yaml"), ".err")] = true
		}
	}
	if len(names) < 20 {
		t.Fatalf("found %d bad configs in testdata, want at least 20", len(names))
	}
	for base := range names {
		t.Run(filepath.Base(base), func(t *testing.T) {
			_, _, err := loadAndBuild(base + ".yaml")
			if err == nil {
				t.Fatal("loaded without error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is a %T, not an *Error: %v", err, err)
			}
			got := strings.ReplaceAll(err.Error(), tmp, "${TESTDATA_TMP}")
			if strings.Contains(got, "\n") {
				t.Errorf("the message has more than one line:\n%s", got)
			}
			golden := base + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config/ -run TestBadConfigs -update to write it)", err)
			}
			if got != strings.TrimSuffix(string(want), "\n") {
				t.Errorf("error\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

// exported returns c without the decoder's bookkeeping, for comparison.
func exported(c *Config) Config {
	out := *c
	out.root = nil
	out.Sinks = nil
	for _, s := range c.Sinks {
		out.Sinks = append(out.Sinks, Sink{Name: s.Name, Type: s.Type, Batch: s.Batch,
			MaxInflightBytes: s.MaxInflightBytes, MaxRequestsInFlight: s.MaxRequestsInFlight, Retry: s.Retry})
	}
	return out
}

func TestGoodConfigs(t *testing.T) {
	t.Setenv("TESTDATA_LOKI_HOST", "loki.eu:3100")
	t.Setenv("TESTDATA_MAX_EVENTS", "250")
	t.Setenv("TESTDATA_STATE", "") // empty: the :- default applies

	defaultSink := Sink{
		Batch:               Batch{MaxEvents: 1000, MaxBytes: 1 << 20, MaxWait: Duration(time.Second)},
		MaxInflightBytes:    32 << 20,
		MaxRequestsInFlight: 2,
		Retry:               Retry{MinBackoff: Duration(100 * time.Millisecond), MaxBackoff: Duration(30 * time.Second)},
	}
	local := defaultSink
	local.Name, local.Type = "local", "file"

	minimal := Config{
		File: "testdata/minimal.good.yaml",
		Source: Source{
			Path:          "testdata/no-such-dir/audit.log",
			PositionsFile: "/var/lib/audit-shipper/positions.json",
			StartAt:       "beginning",
			MaxLineBytes:  4 << 20,
			PollInterval:  Duration(250 * time.Millisecond),
			SyncInterval:  Duration(time.Second),
		},
		DeadLetter: DeadLetter{Path: "/var/lib/audit-shipper/dead-letter.ndjson"},
		Buffer:     Buffer{MaxInflightBytes: 32 << 20},
		Rules:      Rules{RedactSecrets: true},
		Sinks:      []Sink{local},
		Metrics:    Metrics{Listen: ":9464"},
		Log:        Log{Level: "info", Format: "json"},
		Shutdown:   Shutdown{Timeout: Duration(20 * time.Second)},
	}

	fullLocal := local
	fullLocal.MaxInflightBytes = 64 << 20 // buffer's, not the default
	full := Config{
		File: "testdata/full.good.yaml",
		Source: Source{
			Path:          "testdata/no-such-dir/audit.log",
			PositionsFile: "/var/lib/shipper/positions.json",
			StartAt:       "end",
			MaxLineBytes:  3 << 19,
			PollInterval:  Duration(time.Second),
			SyncInterval:  Duration(5 * time.Second),
		},
		DeadLetter: DeadLetter{Path: "/var/lib/shipper/dead.ndjson"},
		Buffer:     Buffer{MaxInflightBytes: 64 << 20},
		Rules:      Rules{RedactSecrets: false, PolicyFile: "testdata/secret.txt"},
		Sinks: []Sink{fullLocal, {
			Name: "loki-eu_1", Type: "loki",
			Batch:               Batch{MaxEvents: 250, MaxBytes: 2000000, MaxWait: Duration(500 * time.Millisecond)},
			MaxInflightBytes:    16 << 20,
			MaxRequestsInFlight: 4,
			Retry:               Retry{MinBackoff: Duration(time.Second), MaxBackoff: Duration(time.Minute)},
		}},
		Metrics:  Metrics{Listen: "127.0.0.1:9000", Pprof: true},
		Log:      Log{Level: "debug", Format: "text"},
		Shutdown: Shutdown{Timeout: Duration(90 * time.Second)},
	}
	fullLoki := &testLoki{URL: "https://loki.eu:3100/loki/api/v1/push", Labels: map[string]string{"cluster": "prod-${not-a-variable}"}}
	fullLoki.BasicAuth.Username = "shipper"
	fullLoki.BasicAuth.Password = "hunter2"
	fullLoki.BasicAuth.PasswordFile = "testdata/secret.txt"

	for _, tc := range []struct {
		file  string
		want  Config
		sinks []any
	}{
		{"testdata/minimal.good.yaml", minimal, []any{&testFile{Path: "-"}}},
		{"testdata/full.good.yaml", full, []any{&testFile{Path: "-"}, fullLoki}},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			c, built, err := loadAndBuild(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if got := exported(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("config\n got: %+v\nwant: %+v", got, tc.want)
			}
			if !reflect.DeepEqual(built, tc.sinks) {
				t.Errorf("sinks\n got: %+v\nwant: %+v", built, tc.sinks)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if len(c.Sinks) != 1 || c.Sinks[0].Type != "file" {
		t.Fatalf("default sinks = %+v, want one file sink", c.Sinks)
	}
	b, err := buildSink(&c.Sinks[0])
	if err != nil {
		t.Fatal(err)
	}
	if f := b.(*testFile); f.Path != "-" {
		t.Errorf("default file sink path = %q, want stdout (-)", f.Path)
	}
	c.Source.Path = filepath.Join(t.TempDir(), "audit.log") // the machine's may be unreadable
	if err := c.Validate(); err != nil {
		t.Errorf("the default does not validate: %v", err)
	}
	if got, want := c.Sinks[0].MaxInflightBytes, c.Buffer.MaxInflightBytes; got != want {
		t.Errorf("default sink max_inflight_bytes = %v, want buffer's %v", got, want)
	}
	c.Sinks[0].Name = "changed"
	if Default().Sinks[0].Name == "changed" {
		t.Error("Default returns shared state: a caller's change shows in the next call")
	}
}

func TestParseSize(t *testing.T) {
	f := func(in string, want Size, wantErr string) {
		t.Helper()
		got, err := ParseSize(in)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("ParseSize(%q) error = %v, want it to contain %q", in, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v, want %d", in, got, err, want)
		}
	}
	f("0", 0, "")
	f("512", 512, "")
	f("512B", 512, "")
	f("4KiB", 4096, "")
	f("4MiB", 4<<20, "")
	f("1GiB", 1<<30, "")
	f("2TiB", 2<<40, "")
	f("4KB", 4000, "")
	f("1MB", 1000000, "")
	f("3GB", 3e9, "")
	f("1TB", 1e12, "")
	f("1.5MiB", 3<<19, "")
	f(" 8 MiB ", 8<<20, "")
	f("4XB", 0, `"4XB" is not a size; write a number with a unit such as 512KiB, 4MiB or 1GiB`)
	f("4mb", 0, "is not a size")
	f("-1", 0, "is not a size")
	f("MiB", 0, "is not a size")
	f("1e3", 0, "is not a size")
	f("0x10", 0, "is not a size")
	f("inf", 0, "is not a size")
	f(".5KiB", 0, "is not a size")
	f("1.5B", 0, "not a whole number of bytes")
	f("8EiB", 0, "is not a size")
	f("9000000TiB", 0, "too large")
	f("99999999999999999999", 0, "too large")
}

func TestSizeString(t *testing.T) {
	for _, s := range []Size{0, 1, 1023, 1024, 3 << 19, 4 << 20, 1 << 30, 5 << 40, 1000} {
		back, err := ParseSize(s.String())
		if err != nil || back != s {
			t.Errorf("Size(%d).String() = %q reads back as %d, %v", int64(s), s.String(), back, err)
		}
	}
	if got := Size(4 << 20).String(); got != "4MiB" {
		t.Errorf("String() = %q, want 4MiB", got)
	}
}

func TestDurationUnmarshal(t *testing.T) {
	f := func(in string, want time.Duration, wantErr string) {
		t.Helper()
		var d Duration
		err := yaml.Unmarshal([]byte("v: "+in), &struct {
			V *Duration `yaml:"v"`
		}{&d})
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%q: error = %v, want it to contain %q", in, err, wantErr)
			}
			return
		}
		if err != nil || d.D() != want {
			t.Errorf("%q = %v, %v, want %v", in, d, err, want)
		}
	}
	f("250ms", 250*time.Millisecond, "")
	f("1m30s", 90*time.Second, "")
	f("0", 0, "")
	f("30", 0, `"30" has no unit`)
	f("1 minute", 0, `"1 minute" is not a duration`)
	f("-1s", 0, "cannot be negative")
	f("[1s]", 0, "found a list, expected a duration")
}

func TestExpand(t *testing.T) {
	t.Setenv("SET", "value")
	t.Setenv("EMPTY", "")
	t.Setenv("UNSET_FOR_TEST", "")
	os.Unsetenv("UNSET_FOR_TEST")
	f := func(in, want, wantErr string) {
		t.Helper()
		got, err := expand(in)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("expand(%q) error = %v, want it to contain %q", in, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	f("plain $HOME and $", "plain $HOME and $", "")
	f("${SET}", "value", "")
	f("a-${SET}-b-${SET}", "a-value-b-value", "")
	f("${EMPTY}", "", "")
	f("${EMPTY:-dflt}", "dflt", "")
	f("${UNSET_FOR_TEST:-dflt}", "dflt", "")
	f("${UNSET_FOR_TEST:-}", "", "")
	f("${SET:-dflt}", "value", "")
	f("${UNSET_FOR_TEST:-a:-b}", "a:-b", "")
	f("$${SET}", "${SET}", "")
	f("p$$${SET}", "p$${SET}", "")
	f("${UNSET_FOR_TEST}", "", "environment variable UNSET_FOR_TEST is not set")
	f("${SET", "", "without its closing }")
	f("${1BAD}", "", "is not an environment variable reference")
	f("${}", "", "is not an environment variable reference")
}

// TestExpandRetypes checks that an unquoted ${ENV} is typed by its value
// and a quoted one stays a string.
func TestExpandRetypes(t *testing.T) {
	t.Setenv("N", "42")
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("plain: ${N}\nquoted: \"${N}\"\n"), &doc); err != nil {
		t.Fatal(err)
	}
	if err := expandEnv("f", &doc, ""); err != nil {
		t.Fatal(err)
	}
	m := doc.Content[0]
	if got := m.Content[1].ShortTag(); got != "!!int" {
		t.Errorf("plain ${N} tag = %s, want !!int", got)
	}
	if got := m.Content[3].ShortTag(); got != "!!str" {
		t.Errorf("quoted ${N} tag = %s, want !!str", got)
	}
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{"a.yaml", 12, "sinks[1].url", "is missing; add it"}, "a.yaml:12: sinks[1].url: is missing; add it"},
		{Error{"a.yaml", 0, "", "does not exist; fix it"}, "a.yaml: does not exist; fix it"},
		{Error{"a.yaml", 3, "", "invalid YAML"}, "a.yaml:3: invalid YAML"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

const sinkDoc = `sinks:
  - name: es
    type: elasticsearch
    addresses:
      - https://a:9200
      - https://b:9200
    tls:
      ca_file: /ca.pem
    password: p
    password_file: testdata/secret.txt
`

func loadString(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := parse("mem.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSinkErrorf(t *testing.T) {
	s := &loadString(t, sinkDoc).Sinks[0]
	for _, tc := range []struct{ key, want string }{
		{"addresses", "mem.yaml:4: sinks[0].addresses: m"},
		{"addresses[1]", "mem.yaml:6: sinks[0].addresses[1]: m"},
		{"addresses[7]", "mem.yaml:4: sinks[0].addresses[7]: m"},
		{"tls.ca_file", "mem.yaml:8: sinks[0].tls.ca_file: m"},
		{"tls.cert_file", "mem.yaml:7: sinks[0].tls.cert_file: m"},
		{"url", "mem.yaml:2: sinks[0].url: m"},
	} {
		if got := s.Errorf(tc.key, "m").Error(); got != tc.want {
			t.Errorf("Errorf(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestResolveSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	crlf := write("crlf", "s3cret\r\n\n")
	inner := write("inner", "line1\nline2\n")
	empty := write("empty", "\n")
	s := &loadString(t, sinkDoc).Sinks[0]
	f := func(value, file, want, wantErr string) {
		t.Helper()
		got, err := s.ResolveSecret("password", value, file)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("ResolveSecret(%q, %q) error = %v, want it to contain %q", value, file, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("ResolveSecret(%q, %q) = %q, %v, want %q", value, file, got, err, want)
		}
	}
	f("inline", "", "inline", "")
	f("", "", "", "")
	f("", crlf, "s3cret", "")
	f("", inner, "line1\nline2", "")
	f("", empty, "", `mem.yaml:10: sinks[0].password_file: "`+empty+`" is empty; write the secret into it`)
	f("", filepath.Join(dir, "absent"), "", `mem.yaml:10: sinks[0].password_file: cannot read "`+filepath.Join(dir, "absent")+`": no such file or directory; check the path`)
	f("p", "testdata/secret.txt", "", "mem.yaml:10: sinks[0].password_file: both password and password_file are set; keep one")
}

func TestDecodeStrict(t *testing.T) {
	type es struct {
		Addresses    []string `yaml:"addresses"`
		TLS          testTLS  `yaml:"tls"`
		Password     string   `yaml:"password"`
		PasswordFile string   `yaml:"password_file"`
	}
	s := &loadString(t, sinkDoc).Sinks[0]
	var got es
	if err := s.Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := es{Addresses: []string{"https://a:9200", "https://b:9200"}, TLS: testTLS{CAFile: "/ca.pem"}, Password: "p", PasswordFile: "testdata/secret.txt"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Decode = %+v, want %+v", got, want)
	}

	var narrow struct {
		Addresses []string `yaml:"addresses"`
	}
	err := s.Decode(&narrow)
	if err == nil || err.Error() != "mem.yaml:7: sinks[0].tls: unknown key; valid keys here: addresses, batch, max_inflight_bytes, max_requests_in_flight, name, retry, rules, type" {
		t.Errorf("Decode into a struct without tls: %v", err)
	}
}

func TestCommonKeys(t *testing.T) {
	want := []string{"batch", "max_inflight_bytes", "max_requests_in_flight", "name", "retry", "rules", "type"}
	got := append([]string(nil), commonKeys...)
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("common sink keys = %v, want %v (update the Decode doc comment)", got, want)
	}
}

// TestSourcePathStates covers what is not an error: the shipper waits for
// a missing file or a missing directory.
func TestSourcePathStates(t *testing.T) {
	dir := t.TempDir()
	readable := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(readable, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{readable, filepath.Join(dir, "later.log"), filepath.Join(dir, "no", "dir", "audit.log")} {
		c := Default()
		c.Source.Path = p
		if err := c.Validate(); err != nil {
			t.Errorf("source.path %s: %v", p, err)
		}
	}
}

// FuzzParse feeds arbitrary files to the loader: it must never panic, and
// every failure must be a one-line *Error.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		c, err := parse("fuzz.yaml", b)
		if err == nil {
			for i := range c.Sinks {
				var x struct {
					Path string `yaml:"path"`
				}
				err = c.Sinks[i].Decode(&x)
				if err != nil {
					break
				}
			}
		}
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error is a %T: %v", err, err)
		}
	})
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4MiB", "1.5GiB", "512", "4XB", "9.99999TB", " 1 KB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, v)
		}
		if back, err := ParseSize(v.String()); err != nil || back != v {
			t.Fatalf("ParseSize(%q) = %d, whose String %q reads back as %d, %v", s, v, v.String(), back, err)
		}
	})
}

// TestDecodeKinds covers the Go kinds a sink type's struct may use.
func TestDecodeKinds(t *testing.T) {
	type inner struct {
		A string `yaml:"a"`
	}
	type all struct {
		Inline   inner             `yaml:",inline"`
		Untagged string            // key "untagged", as go.yaml.in/yaml/v3 names it
		Skipped  string            `yaml:"-"`
		U        uint16            `yaml:"u"`
		F        float64           `yaml:"f"`
		P        *inner            `yaml:"p"`
		M        map[string]int    `yaml:"m"`
		L        []Size            `yaml:"l"`
		Any      any               `yaml:"any"`
		Keep     string            `yaml:"keep"`
		Null     map[string]string `yaml:"null"`
	}
	f := func(doc string, want all, wantErr string) {
		t.Helper()
		c := loadString(t, "sinks:\n  - name: x\n    type: t\n"+doc)
		got := all{Keep: "default"}
		err := c.Sinks[0].Decode(&got)
		if wantErr != "" {
			if err == nil || err.Error() != wantErr {
				t.Errorf("%q: error = %v\nwant %s", doc, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", doc, got, want)
		}
	}
	f("    a: in\n    untagged: u\n    u: 65535\n    f: 0.5\n    p: {a: b}\n    m: {x: 1}\n    l: [1KiB, 2]\n    any: [1, two]\n    null:\n",
		all{Inline: inner{A: "in"}, Untagged: "u", U: 65535, F: 0.5, P: &inner{A: "b"}, M: map[string]int{"x": 1},
			L: []Size{1024, 2}, Any: []any{1, "two"}, Keep: "default"}, "")
	f("    base: x\n", all{}, `mem.yaml:4: sinks[0].base: unknown key; valid keys here: a, any, batch, f, keep, l, m, max_inflight_bytes, max_requests_in_flight, name, null, p, retry, rules, type, u, untagged`)
	f("    kep: x\n", all{}, `mem.yaml:4: sinks[0].kep: unknown key; did you mean "keep"? (valid keys here: a, any, batch, f, keep, l, m, max_inflight_bytes, max_requests_in_flight, name, null, p, retry, rules, type, u, untagged)`)
	f("    skipped: x\n", all{}, `mem.yaml:4: sinks[0].skipped: unknown key; valid keys here: a, any, batch, f, keep, l, m, max_inflight_bytes, max_requests_in_flight, name, null, p, retry, rules, type, u, untagged`)
	f("    l: [&one 1KiB, *one]\n    m: {}\n", all{L: []Size{1024, 1024}, M: map[string]int{}, Keep: "default"}, "")
	f("    u: -1\n", all{}, `mem.yaml:4: sinks[0].u: found the number -1; write a whole number such as 1000`)
	f("    u: 70000\n", all{}, `mem.yaml:4: sinks[0].u: found the number 70000; write a whole number such as 1000`)
	f("    f: fast\n", all{}, `mem.yaml:4: sinks[0].f: found "fast"; write a number such as 0.5`)
	f("    keep: [a]\n", all{}, `mem.yaml:4: sinks[0].keep: found a list; write a string`)
	f("    m: {x: true}\n", all{}, `mem.yaml:4: sinks[0].m.x: found the boolean true; write a whole number such as 1000`)
	f("    m: {x: 1, x: 2}\n", all{}, `mem.yaml:4: sinks[0].m.x: the key appears twice; keep one`)
	f("    m: [1]\n", all{}, `mem.yaml:4: sinks[0].m: found a list; write a mapping (key: value lines)`)
	f("    l: [1KiB, 2XB]\n", all{}, `mem.yaml:4: sinks[0].l[1]: "2XB" is not a size; write a number with a unit such as 512KiB, 4MiB or 1GiB`)
	f("    l:\n      - 1\n      - {a: 1}\n", all{}, `mem.yaml:6: sinks[0].l[1]: found a mapping, expected a size; write a number with a unit such as 512KiB, 4MiB or 1GiB`)
	f("    p: 3\n", all{}, `mem.yaml:4: sinks[0].p: found the number 3; write a mapping (key: value lines)`)
}

func TestDecodeWrongShapes(t *testing.T) {
	for doc, want := range map[string]string{
		"- a\n":                          `mem.yaml:1: found a list; write a mapping (key: value lines)`,
		"sinks: [local]\n":               `mem.yaml:1: sinks[0]: found "local"; write a mapping with at least name and type`,
		"source: {max_line_bytes: 1}\n":  "",
		"source: {max_line_bytes: -1}\n": `mem.yaml:1: source.max_line_bytes: "-1" is not a size; write a number with a unit such as 512KiB, 4MiB or 1GiB`,
		"metrics: {pprof: 1}\n":          `mem.yaml:1: metrics.pprof: found the number 1; write true or false`,
	} {
		_, err := parse("mem.yaml", []byte(doc))
		if got := fmt.Sprint(err); (want == "" && err != nil) || (want != "" && got != want) {
			t.Errorf("%q: error = %v, want %s", doc, err, want)
		}
	}
}

// TestMarshalRoundTrip checks that an effective configuration printed as
// YAML (sizes and durations with units) loads back to the same values.
func TestMarshalRoundTrip(t *testing.T) {
	c := Default()
	c.Source.MaxLineBytes = 3 << 19
	c.Buffer.MaxInflightBytes = 1000
	c.Shutdown.Timeout = Duration(1500 * time.Millisecond)
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"max_line_bytes: 1536KiB", "max_inflight_bytes: 1000B", "timeout: 1.5s"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("marshalled config lacks %q:\n%s", s, out)
		}
	}
	back, err := parse("printed.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	a, b := exported(c), exported(back)
	a.File, b.File = "", ""
	// An empty list prints as [] and reads back empty, not nil.
	if len(a.Rules.RedactResources) == 0 && len(b.Rules.RedactResources) == 0 {
		a.Rules.RedactResources, b.Rules.RedactResources = nil, nil
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("round trip\n got %+v\nwant %+v", b, a)
	}
}

// A sink's rules inherit what they leave out from the top-level rules.
func TestSinkRulesInherit(t *testing.T) {
	c := loadString(t, `source:
  path: /nonexistent/audit.log
rules:
  redact_resources: [configmaps]
sinks:
  - name: a
    type: file
  - name: b
    type: file
    rules:
      redact_secrets: false
`)
	a, b := c.RulesFor(&c.Sinks[0]), c.RulesFor(&c.Sinks[1])
	if !a.RedactSecrets || !reflect.DeepEqual(a.RedactResources, []string{"configmaps"}) {
		t.Errorf("sink a rules %+v: want the top-level ones", a)
	}
	if b.RedactSecrets || !reflect.DeepEqual(b.RedactResources, []string{"configmaps"}) {
		t.Errorf("sink b rules %+v: want redact_secrets false, redact_resources inherited", b)
	}
}
