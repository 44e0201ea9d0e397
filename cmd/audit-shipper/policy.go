package main

import (
	"fmt"
	"io"
	"os"

	"github.com/audit-shipper/audit-shipper/rules"
)

const policyUsage = `Usage:
  audit-shipper policy lint FILE...   validate audit.k8s.io/v1 Policy files as kube-apiserver does,
                                      and warn where one logs credentials or never matches

Exit codes: 0 valid (warnings may be printed), 2 a file is invalid, unreadable, or bad usage.
`

// policyCmd runs `audit-shipper policy lint FILE...`.
func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "lint" {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, policyUsage)
			return exitOK
		}
		fmt.Fprint(stderr, policyUsage)
		return exitConfig
	}
	files := args[1:]
	if len(files) == 0 {
		fmt.Fprintf(stderr, "audit-shipper policy lint: name the policy file(s) to check\n\n%s", policyUsage)
		return exitConfig
	}
	code := exitOK
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "audit-shipper policy lint: %v\n", err)
			code = exitConfig
			continue
		}
		p, findings := rules.Lint(b)
		fmt.Fprint(stderr, rules.FormatFindings(f, findings))
		if p == nil {
			fmt.Fprintf(stderr, "%s: invalid: kube-apiserver would not start with this policy, nor would audit-shipper\n", f)
			code = exitConfig
			continue
		}
		switch len(findings) {
		case 0:
			fmt.Fprintf(stdout, "%s: ok (%d rules)\n", f, p.Len())
		case 1:
			fmt.Fprintf(stdout, "%s: ok (%d rules), 1 warning\n", f, p.Len())
		default:
			fmt.Fprintf(stdout, "%s: ok (%d rules), %d warnings\n", f, p.Len(), len(findings))
		}
	}
	return code
}
