package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/attestload/attestload/daemon"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "attestload",
		Short: "Load-test a Keylime verifier with thousands of simulated push-mode agents",
		Long: `attestload impersonates push-mode Keylime agents with software TPMs (real RSA attestation keys, freshly
signed quotes, synthetic IMA logs, PoP bearer tokens), drives attestations against a verifier at the pace asked,
records every phase of every cycle to results/<YYYYmmddHHMMSS>.jsonl.zst and leaves the verifier's database as it found it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		// "unknown flag: --duraton" → "...; did you mean --duration?"
		if name, ok := strings.CutPrefix(err.Error(), "unknown flag: --"); ok {
			var names []string
			c.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
			if hint := daemon.DidYouMean(name, names); hint != "" {
				_, n, _ := strings.Cut(hint, "\"")
				err = fmt.Errorf("%w; did you mean --%s?", err, strings.TrimSuffix(n, "\"?"))
			}
		}
		return &usageError{err}
	})
	root.AddCommand(newRunCmd(stdout, stderr), newCleanupCmd(stdout, stderr), newVersionCmd(stdout))
	root.AddCommand(newReportCmd(), newDashboardsCmd(), newVerifierSimCmd())
	// cobra adds these two only inside Execute; Main looks the command up before that (to make an unknown command
	// a usage error), so without this `attestload help run` was an unknown command although the usage lists it.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		usageArgs(c)
	}
	return root
}

// usageArgs makes a wrong number of positional arguments a usage error (exit status 2), like a wrong flag.
func usageArgs(c *cobra.Command) {
	check := c.Args
	if check == nil {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		err := check(cmd, args)
		var ue *usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return &usageError{err}
	}
}
