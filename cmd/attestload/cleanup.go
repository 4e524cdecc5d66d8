package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestload/attestload/attestation/enroll"
)

func newCleanupCmd(stdout, _ io.Writer) *cobra.Command {
	var (
		prefix  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "cleanup DB_URL",
		Short: "Remove the agents and policies earlier runs left in the verifier's database (after a crash or kill -9)",
		Long: `Removes every row that attestload runs with the given prefix wrote: evidence items, attestations, sessions,
agents, then the policies no other agent uses. Rows of agents that attestload did not create are never touched.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &usageError{fmt.Errorf("cleanup takes exactly one argument, the database URL (got %d)", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			pool, err := enroll.Connect(ctx, args[0])
			if err != nil {
				return fmt.Errorf("database: %w", err)
			}
			defer pool.Close()
			left, err := enroll.FindLeftovers(ctx, pool, prefix)
			if err != nil {
				return fmt.Errorf("look for leftovers: %w", err)
			}
			for _, l := range left {
				fmt.Fprintf(stdout, "found run %s (prefix %s): %d agents\n", l.RunID, l.Prefix, l.Agents)
			}
			removed, err := enroll.CleanupPrefix(ctx, pool, prefix)
			if err != nil {
				return fmt.Errorf("cleanup: %w", err)
			}
			fmt.Fprintf(stdout, "removed %d runs: %d agents, %d attestations, %d evidence items, %d sessions, %d policies\n",
				len(removed.Runs), removed.Agents, removed.Attestations, removed.EvidenceItems, removed.Sessions,
				removed.IMAPolicies+removed.MBPolicies)
			return nil
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", enroll.DefaultPrefix, "agent id prefix of the runs to remove")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up after this long")
	return cmd
}
