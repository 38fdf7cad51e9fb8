package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/report"
)

func newCompareCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "compare A B",
		Short: "Compare two runs per segment and layer; write compare.{md,html,json}",
		Long: `compare analyses two run directories (A is the baseline) and reports, per
segment and per layer, the change of the median with a Mann–Whitney U test
(significant: p < 0.05 and a shift of at least max(25 µs, 10 % of the
median), so that run-to-run noise is not flagged), the mean RTT change attributed to segments, and the environment differences
found in the two manifests. Output goes to OUT (default: B).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var res [2]*analyze.Result
			for i, dir := range args {
				r, err := analyze.Run(dir)
				if err != nil {
					return &ExitError{Code: ExitUsage, Err: err}
				}
				res[i] = r
			}
			c := analyze.Compare(res[0], res[1])
			dir := out
			if dir == "" {
				dir = args[1]
				if err := checkWritable(dir); err != nil {
					return err
				}
			}
			if err := report.WriteCompare(dir, c); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if err := report.CompareSummary(w, c); err != nil {
				return err
			}
			_, err := fmt.Fprintf(w, "report: %s/compare.{md,html,json}\n", dir)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory for the reports (default: B)")
	return cmd
}
