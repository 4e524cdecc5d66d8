package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/attestload/attestload/dashboards"
)

// newDashboardsCmd builds `attestload dashboards`, which writes the Grafana dashboards that dashboards.Build
// generates. All logic is in the dashboards package; this only maps the flag.
func newDashboardsCmd() *cobra.Command {
	var (
		out          string
		list         bool
		rateInterval string
	)
	cmd := &cobra.Command{
		Use:   "dashboards --out DIR | --queries",
		Short: "Write the Grafana dashboards (overview.json, database.json, fleet.json) into a directory",
		Long: `Writes attestload's Grafana dashboards as JSON files, ready for Grafana's file provisioning or for import.
They query the Prometheus metrics that attestload run exports (see deploy/ for a provisioned Grafana). The
directory is created if needed; existing files of the same names are replaced.

With --queries it writes nothing and prints every panel query instead, one per line as
DASHBOARD<TAB>PANEL<TAB>REFID<TAB>PROMQL, with all instances and runs selected and $__rate_interval set to
--rate-interval: an end-to-end check can evaluate each with Prometheus's HTTP API.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if list {
				if out != "" {
					return &usageError{errors.New("--queries and --out: give one of them")}
				}
				if _, err := time.ParseDuration(rateInterval); err != nil {
					return &usageError{fmt.Errorf("--rate-interval %q: want a duration such as 1m", rateInterval)}
				}
				qs, err := dashboards.Queries()
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				for _, q := range qs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", q.Dashboard, q.Panel, q.RefID, dashboards.Expand(q.Expr, rateInterval))
				}
				return nil
			}
			if out == "" {
				return &usageError{errors.New("--out: the directory to write the dashboards into is required")}
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
	cmd.Flags().StringVar(&out, "out", "", "directory to write the dashboard JSON files into (required unless --queries)")
	cmd.Flags().BoolVar(&list, "queries", false, "print every panel query (expanded) instead of writing files")
	cmd.Flags().StringVar(&rateInterval, "rate-interval", "1m", "$__rate_interval for --queries")
	return cmd
}
