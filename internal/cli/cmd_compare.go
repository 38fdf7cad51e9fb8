package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/report"
)

func newCompareCommand() *cobra.Command {
	var out string
	var minEffect time.Duration
	th := analyze.DefaultThresholds()
	cmd := &cobra.Command{
		Use:   "compare A B",
		Short: "Compare two runs per segment and layer; write compare.{md,html,json}",
		Long: `compare analyses two run directories (A is the baseline) and reports, per
segment and per layer, the change of the median with a Mann–Whitney U test,
the mean RTT change attributed to segments, and the environment differences
found in the two manifests. Output goes to OUT (default: B).

A change is significant when p < 0.05 and the medians differ by at least
max(--min-effect, --min-effect-rel × the larger median): two runs with the same
settings differ by tens of µs on a busy machine, and with a hundred pings a
side the test alone calls such shifts significant.`,
		Example: `  pingpath compare runs/before runs/after                 # writes runs/after/compare.{md,html,json}
  pingpath compare runs/before runs/after -o /tmp/cmp --min-effect 20us`,
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
			if minEffect < 0 || th.MinDeltaRel < 0 {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--min-effect and --min-effect-rel must not be negative")}
			}
			th.MinDeltaUS = float64(minEffect) / float64(time.Microsecond)
			c := analyze.CompareWith(res[0], res[1], th)
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
	cmd.Flags().DurationVar(&minEffect, "min-effect", time.Duration(analyze.MinEffectUS*float64(time.Microsecond)),
		"smallest median change that can be significant")
	cmd.Flags().Float64Var(&th.MinDeltaRel, "min-effect-rel", analyze.MinEffectRel,
		"smallest median change that can be significant, as a fraction of the larger median")
	return cmd
}
