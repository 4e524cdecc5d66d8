package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "attestload",
		Short: "Load-test a Keylime verifier with thousands of simulated push-mode agents",
		Long: `attestload impersonates push-mode Keylime agents with software TPMs (real RSA attestation keys, freshly
signed quotes, synthetic IMA logs, PoP bearer tokens), drives attestations against a verifier at the pace asked,
records every phase of every cycle to results/<YYYYmmddHHMMSS>.jsonl and leaves the verifier's database as it found it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(newRunCmd(stdout, stderr), newCleanupCmd(stdout, stderr), newVersionCmd(stdout))
	root.AddCommand(newReportCmd(), newDashboardsCmd())
	addOptionalCommands(root)
	return root
}

// optionalCommands are commands other files of this package register from init (e.g. verifier-sim), so the root
// does not have to know of them.
var optionalCommands []func() *cobra.Command

func addOptionalCommands(root *cobra.Command) {
	for _, f := range optionalCommands {
		root.AddCommand(f())
	}
}
