package rules

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestLintGolden")

// TestLintGolden lints every policy under testdata/lint and configs/policies
// and compares the findings with the .golden file beside the policy (for
// configs/policies: testdata/lint/configs-NAME.golden). Review a change of
// output, then: go test ./rules/ -run TestLintGolden -update
func TestLintGolden(t *testing.T) {
	own, _ := filepath.Glob("testdata/lint/*.yaml")
	configs, _ := filepath.Glob("../configs/policies/*.yaml")
	if len(own) < 6 || len(configs) < 6 {
		t.Fatalf("found %d policies in testdata/lint and %d in configs/policies, want at least 6 of each", len(own), len(configs))
	}
	for _, f := range append(own, configs...) {
		golden := strings.TrimSuffix(f, ".yaml") + ".golden"
		if strings.HasPrefix(f, "../configs/") {
			golden = "testdata/lint/configs-" + strings.TrimSuffix(filepath.Base(f), ".yaml") + ".golden"
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, findings := Lint(b)
			got := FormatFindings(filepath.Base(f), findings)
			if p != nil {
				got += "accepted\n"
			} else {
				got += "rejected\n"
			}
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v; create it with -update and review it", err)
			}
			if got != string(want) {
				t.Errorf("findings differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
