package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/attestload/attestload/dashboards"
)

// newDashboardsCmd builds `attestload dashboards`, which writes the Grafana dashboards that dashboards.Build
// generates. All logic is in the dashboards package; this only maps the flag.
func newDashboardsCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "dashboards --out DIR",
		Short: "Write the Grafana dashboards (overview.json, database.json, fleet.json) into a directory",
		Long: `Writes attestload's Grafana dashboards as JSON files, ready for Grafana's file provisioning or for import.
They query the Prometheus metrics that attestload run exports (see deploy/ for a provisioned Grafana). The
directory is created if needed; existing files of the same names are replaced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out: the directory to write the dashboards into is required")
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out %s: %w", out, err)
			}
			paths, err := dashboards.Write(out)
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the dashboard JSON files into (required)")
	return cmd
}
