package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/report"
)

func newAnalyzeCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "analyze DIR",
		Short: "Break every ping of a run (or of origin tool logs) into segments and write report.{md,html,json}",
		Long: `analyze reads a pingpath run directory or a directory of the origin tools' logs
(files are recognised by content), joins every vantage point's observations per
ping, computes every segment, residual and layer over the same set of pings,
and writes report.md, report.html (self-contained, opens offline) and
report.json into OUT (default: DIR). A run in which no ping was observed is
reported as empty, not as an error.`,
		Example: `  pingpath analyze runs/today                  # writes runs/today/report.{md,html,json}
  pingpath analyze /data/origin-logs -o /tmp/r  # origin tool logs; reports elsewhere`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := analyze.Run(args[0])
			if err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			dir := out
			if dir == "" {
				dir = args[0]
				if err := checkWritable(dir); err != nil {
					_ = report.Summary(cmd.OutOrStdout(), res)
					return err
				}
			}
			// The summary first: it is still shown when DIR is read-only.
			w := cmd.OutOrStdout()
			if err := report.Summary(w, res); err != nil {
				return err
			}
			if err := report.WriteAll(dir, res); err != nil {
				return fmt.Errorf("%w (use -o to write the reports elsewhere)", err)
			}
			_, err = fmt.Fprintf(w, "report: %s/report.{md,html,json}\n", dir)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory for the reports (default: DIR)")
	return cmd
}

// checkWritable refuses to write reports into a directory whose mode says
// read-only (as root the kernel would allow it, but the owner meant it).
func checkWritable(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("checking report directory: %w", err)
	}
	if st.Mode().Perm()&0o200 == 0 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s is read-only: use -o DIR to write the reports elsewhere", dir)}
	}
	return nil
}
