package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsPaths: every file or directory of the repository that
// docs/deploy-rke2.md names exists, so the steps do not rot when files
// move.
func TestDocsPaths(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repo, "docs/deploy-rke2.md"))
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`\b(?:deploy|configs|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_/-]`).FindAllString(string(data), -1)
	if len(refs) < 10 {
		t.Fatalf("found %d repository paths in the doc; the pattern is broken", len(refs))
	}
	for _, ref := range refs {
		if _, err := os.Stat(filepath.Join(repo, strings.TrimSuffix(ref, "/"))); err != nil {
			t.Errorf("docs/deploy-rke2.md names %s: %v", ref, err)
		}
	}
}
