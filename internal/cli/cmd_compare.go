package cli

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/report"
)

func newCompareCommand() *cobra.Command {
	var out string
	var minEffect time.Duration
	var in inputFlags
	th := analyze.DefaultThresholds()
	cmd := &cobra.Command{
		Use:   "compare A B | compare DIR",
		Short: "Compare two runs per segment and layer; write compare.{md,html,json}",
		Long: `compare analyses two run directories (A is the baseline) and reports, per
segment and per layer, the change of the median with a Mann–Whitney U test,
the mean RTT change attributed to segments, and the environment differences
found in the two manifests. Output goes to OUT (default: B).

A change is significant when p < 0.05 and the medians differ by at least
max(--min-effect, --min-effect-rel × the larger median): two runs with the same
settings differ by tens of µs on a busy machine, and with a hundred pings a
side the test alone calls such shifts significant.

A segment that is refused, missing or measured differently (another tool,
another formula) on either side is "not comparable", with the reason: it is
never flagged and never part of the attribution, which covers only the
segments both runs measured alike.

With one directory holding two runs whose files are told apart by a name
prefix (the origin workflow's "env-a-…", "env-b-…"), compare DIR compares
them (A: the first prefix in name order). Comparing a run with itself is
refused.`,
		Example: `  pingpath compare runs/before runs/after                 # writes runs/after/compare.{md,html,json}
  pingpath compare runs/before runs/after -o /tmp/cmp --min-effect 20us
  pingpath compare /data/cmp                              # env-a-*.log against env-b-*.log`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if minEffect < 0 || th.MinDeltaRel < 0 {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--min-effect and --min-effect-rel must not be negative")}
			}
			opts, err := in.options()
			if err != nil {
				return err
			}
			res, err := compareInputs(cmd, args, opts)
			if err != nil {
				return err
			}
			th.MinDeltaUS = float64(minEffect) / float64(time.Microsecond)
			c := analyze.CompareWith(res[0], res[1], th)
			dir := out
			if dir == "" {
				dir = args[len(args)-1]
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
			_, err = fmt.Fprintf(w, "report: %s/compare.{md,html,json}\n", dir)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory for the reports (default: B)")
	cmd.Flags().StringVar(&in.maxFileSize, "max-file-size", fmt.Sprintf("%dMiB", parse.DefaultMaxFileBytes>>20), "read at most this much of each file")
	cmd.Flags().DurationVar(&minEffect, "min-effect", time.Duration(analyze.MinEffectUS*float64(time.Microsecond)),
		"smallest median change that can be significant")
	cmd.Flags().Float64Var(&th.MinDeltaRel, "min-effect-rel", analyze.MinEffectRel,
		"smallest median change that can be significant, as a fraction of the larger median")
	return cmd
}

// compareInputs analyses the two runs to compare: two directories, or the
// two runs one directory holds (told apart by a file name prefix). A run
// compared with itself is refused.
func compareInputs(cmd *cobra.Command, args []string, opts analyze.Options) ([2]*analyze.Result, error) {
	var res [2]*analyze.Result
	ctx := cmd.Context()
	if len(args) == 1 {
		dir := args[0]
		_, err := analyze.RunContext(ctx, dir, opts)
		var mr *analyze.MultiRunError
		switch {
		case err == nil:
			return res, &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s holds one run: give compare two run directories (A B)", dir)}
		case !errors.As(err, &mr):
			return res, inputError(cmd, err)
		case len(mr.Runs) != 2:
			return res, &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w; compare DIR needs exactly two runs told apart by a file name prefix", err)}
		}
		for i, prefix := range mr.Runs {
			o := opts
			o.Prefix = prefix
			r, err := analyze.RunContext(ctx, dir, o)
			if err != nil {
				return res, inputError(cmd, err)
			}
			res[i] = r
		}
		return res, nil
	}
	if same, err := sameDir(args[0], args[1]); err == nil && same {
		return res, &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s and %s are the same run: nothing to compare", args[0], args[1])}
	}
	for i, dir := range args {
		r, err := analyze.RunContext(ctx, dir, opts)
		if err != nil {
			return res, inputError(cmd, err)
		}
		res[i] = r
	}
	return res, nil
}

// sameDir reports whether two paths name one directory (also through
// symlinks or different spellings).
func sameDir(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}
