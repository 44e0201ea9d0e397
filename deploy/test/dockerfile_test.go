package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/audit-shipper/audit-shipper/config"
)

// There is no container engine on the machines this project is built on,
// so the image is never built here. What can be checked without one is:
// the Dockerfile's structure (below), and its build step, run on exactly
// the files .dockerignore lets into the build context
// (TestDockerBuildContext).

type instruction struct {
	line int
	cmd  string // upper case
	args string
}

type stage struct {
	from, name string
	ins        []instruction
}

// parseDockerfile returns the global ARG defaults and the stages.
// Continuation lines are joined and comment lines dropped, as the
// Dockerfile frontend does.
func parseDockerfile(t *testing.T) (map[string]string, []stage) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var ins []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		ins = append(ins, instruction{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	globals := map[string]string{}
	var stages []stage
	for _, in := range ins {
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
			st := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
		case len(stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			globals[k] = v
		case len(stages) == 0:
			t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	return globals, stages
}

func (s stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// buildRun is the build stage's RUN holding go build.
func buildRun(t *testing.T, build stage) instruction {
	t.Helper()
	for _, in := range build.find("RUN") {
		if strings.Contains(in.args, "go build") {
			return in
		}
	}
	t.Fatal("the build stage has no RUN with go build")
	return instruction{}
}

func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var argv []string
	if err := json.Unmarshal([]byte(in.args), &argv); err != nil {
		t.Fatalf("Dockerfile:%d: %s %s is not in exec (JSON) form: the final image has no shell to run it", in.line, in.cmd, in.args)
	}
	return argv
}

func TestDockerfile(t *testing.T) {
	globals, stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages; want a build stage and a minimal final stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if build.name == "" || !strings.HasPrefix(build.from, "golang:") {
		t.Errorf("first stage FROM %s AS %q: want a named golang build stage", build.from, build.name)
	}
	// The Go of the image is the Go of go.mod.
	gomod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil || build.from != "golang:${GO_VERSION}" || globals["GO_VERSION"] != string(goLine[1]) {
		t.Errorf("build stage FROM %s with GO_VERSION=%s; want golang:${GO_VERSION} with go.mod's Go (%s)", build.from, globals["GO_VERSION"], goLine[1])
	}
	run := buildRun(t, build)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "./cmd/audit-shipper", "GOOS=${TARGETOS}", "GOARCH=${TARGETARCH}"} {
		if !strings.Contains(run.args, want) {
			t.Errorf("Dockerfile:%d: the go build step lacks %s", run.line, want)
		}
	}
	out := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(run.args)
	if out == nil {
		t.Fatalf("Dockerfile:%d: go build without -o", run.line)
	}

	// The final stage: no shell, nothing but the binary.
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %s: want distroless static or scratch (no shell, no package manager)", final.from)
	}
	for _, cmd := range []string{"RUN", "SHELL", "ADD"} {
		if ins := final.find(cmd); len(ins) > 0 {
			t.Errorf("Dockerfile:%d: %s in the final stage, which has no shell", ins[0].line, cmd)
		}
	}
	copies := final.find("COPY")
	if len(copies) != 1 {
		t.Fatalf("final stage has %d COPY; want the binary alone", len(copies))
	}
	f := strings.Fields(copies[0].args)
	if len(f) != 3 || f[0] != "--from="+build.name || f[1] != out[1] {
		t.Fatalf("Dockerfile:%d: COPY %s; want COPY --from=%s %s <dest>", copies[0].line, copies[0].args, build.name, out[1])
	}
	bin := f[2]
	users := final.find("USER")
	if len(users) != 1 {
		t.Fatalf("final stage has %d USER; want one non-root user", len(users))
	}
	uid, _, _ := strings.Cut(users[0].args, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %s: want a numeric non-root uid (Kubernetes' runAsNonRoot can only verify numbers)", users[0].args)
	}
	ep := final.find("ENTRYPOINT")
	if len(ep) != 1 || !slices.Equal(execForm(t, ep[0]), []string{bin}) {
		t.Errorf("ENTRYPOINT %v; want [%q]", ep, bin)
	}
	cmd := final.find("CMD")
	if len(cmd) != 1 || !slices.Equal(execForm(t, cmd[0]), []string{"run", "--config", "/etc/audit-shipper/config.yaml"}) {
		t.Errorf("CMD %v; want [run --config /etc/audit-shipper/config.yaml], the path the manifests mount the config at", cmd)
	}
	labels := strings.Join(func() []string {
		var s []string
		for _, l := range final.find("LABEL") {
			s = append(s, l.args)
		}
		return s
	}(), " ")
	for _, k := range []string{"title", "description", "source", "version", "revision", "created"} {
		if !strings.Contains(labels, "org.opencontainers.image."+k+"=") {
			t.Errorf("no OCI label org.opencontainers.image.%s", k)
		}
	}
	if !strings.Contains(labels, `org.opencontainers.image.version="${VERSION}"`) {
		t.Error("the version label is not the stamped ${VERSION}")
	}
	_, port, _ := net.SplitHostPort(config.Default().Metrics.Listen)
	if ex := final.find("EXPOSE"); len(ex) != 1 || ex[0].args != port {
		t.Errorf("EXPOSE %v; want the default metrics port %s", ex, port)
	}
}

// ignoreRule is one line of .dockerignore, as Docker reads it.
type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

func parseDockerignore(t *testing.T) []ignoreRule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repo, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []ignoreRule
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		p := strings.TrimPrefix(filepath.ToSlash(filepath.Clean(strings.TrimPrefix(line, "!"))), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		rules = append(rules, ignoreRule{regexp.MustCompile(re.String()), neg})
	}
	return rules
}

// excluded says whether Docker leaves rel (slash-separated, relative to
// the context) out: the last rule matching it or one of its parents wins.
func excluded(rules []ignoreRule, rel string) bool {
	out := false
	for _, r := range rules {
		for p := rel; p != "." && p != ""; p = filepath.Dir(p) {
			if r.re.MatchString(p) {
				out = !r.negate
				break
			}
		}
	}
	return out
}

// TestDockerBuildContext copies the files .dockerignore lets through into
// a fresh directory, runs the Dockerfile's own go build step there, and
// checks the binary: static (no interpreter, no shared library), the
// version stamped, no build path left in it.
func TestDockerBuildContext(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary")
	}
	rules := parseDockerignore(t)
	for _, rel := range []string{".git/HEAD", "audit-shipper", "bin/audit-shipper", "deploy/test/go.mod", "docs/metrics.md", "config/testdata/empty.bad.yaml", "parse/parse_test.go"} {
		if !excluded(rules, rel) {
			t.Errorf(".dockerignore lets %s into the build context", rel)
		}
	}
	ctx := t.TempDir()
	var files int
	err := filepath.WalkDir(repo, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, path)
		if rel == "." {
			return nil
		}
		if excluded(rules, filepath.ToSlash(rel)) {
			if e.IsDir() {
				return filepath.SkipDir // no "!" rule re-includes anything below
			}
			return nil
		}
		if e.IsDir() || !e.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		dst := filepath.Join(ctx, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	_, stages := parseDockerfile(t)
	run := buildRun(t, stages[0])
	var words []string
	for _, w := range strings.Fields(run.args) {
		if !strings.HasPrefix(w, "--mount=") {
			words = append(words, w)
		}
	}
	outDir := t.TempDir()
	script := strings.Replace(strings.Join(words, " "), "-o /out/", "-o "+outDir+"/", 1)
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = ctx
	cmd.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH, "VERSION=v9.9.9-context")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Dockerfile's build step on the %d files of the build context: %v\n%s\n%s", files, err, script, out)
	}
	bin := filepath.Join(outDir, "audit-shipper")
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v): it would not start on distroless static", p.Type)
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(ctx)) {
		t.Errorf("the binary holds the build directory %s: -trimpath is not in effect", ctx)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(out), "v9.9.9-context") {
		t.Errorf("audit-shipper version = %q, %v; want the stamped VERSION v9.9.9-context", out, err)
	}
	t.Logf("build context: %d files; binary %d bytes, static", files, len(data))
}
