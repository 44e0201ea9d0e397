package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestPolicyLint(t *testing.T) {
	f := func(args []string, code int, stdout, stderr string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if got := policyCmd(args, &out, &errOut); got != code {
			t.Errorf("policy %v exited %d, want %d; stderr: %s", args, got, code, errOut.String())
		}
		if !strings.Contains(out.String(), stdout) || !strings.Contains(errOut.String(), stderr) {
			t.Errorf("policy %v said\n%s\n%s\nwant stdout to contain %q and stderr %q", args, out.String(), errOut.String(), stdout, stderr)
		}
	}
	const lint = "../../rules/testdata/lint/"
	f(nil, exitConfig, "", "audit-shipper policy lint FILE")
	f([]string{"help"}, exitOK, "audit-shipper policy lint FILE", "")
	f([]string{"check"}, exitConfig, "", "Usage:")
	f([]string{"lint"}, exitConfig, "", "name the policy file")
	f([]string{"lint", "../../configs/policies/production.yaml"}, exitOK, "production.yaml: ok (11 rules)", "")
	f([]string{"lint", "../../configs/policies/rke2-detailed.yaml"}, exitOK, "ok (5 rules), 1 warning\n",
		"rke2-detailed.yaml:20: warning: rules[1] logs secrets and configmaps at RequestResponse")
	f([]string{"lint", lint + "rke2-blog-basic.yaml"}, exitConfig, "",
		"rke2-blog-basic.yaml:5: error: invalid YAML: mapping values are not allowed in this context")
	f([]string{"lint", lint + "group-spaces.yaml", "../../configs/policies/rke2-basic.yaml"}, exitConfig, "rke2-basic.yaml: ok (2 rules)",
		`group-spaces.yaml:8: error: rules[0].resources[0].group "  " is not a valid API group`)
	f([]string{"lint", lint + "missing.yaml"}, exitConfig, "", "no such file")
}
