package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/report"
)

func newAnalyzeCommand() *cobra.Command {
	var out string
	var in inputFlags
	cmd := &cobra.Command{
		Use:   "analyze DIR",
		Short: "Break every ping of a run (or of origin tool logs) into segments and write report.{md,html,json}",
		Long: `analyze reads a pingpath run directory or a directory of the origin tools' logs
(files are recognised by content), joins every vantage point's observations per
ping, computes every segment, residual and layer over the same set of pings,
and writes report.md, report.html (self-contained, opens offline) and
report.json into OUT (default: DIR), then prints a summary.

Every file is accounted for in the report; a vantage point whose tool failed
or observed nothing is a warning at the top. A run in which the tracers
observed no ping is reported as empty (exit 0). A directory holding nothing
to analyse, or files of two runs (two streams of one vantage point), is an
error (exit 2): --prefix picks one run of such a directory.`,
		Example: `  pingpath analyze runs/today                  # writes runs/today/report.{md,html,json}
  pingpath analyze /data/origin-logs -o /tmp/r  # origin tool logs; reports elsewhere
  pingpath analyze /data/cmp --prefix env-a-    # one of two log sets in one directory`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := in.options()
			if err != nil {
				return err
			}
			res, err := analyze.RunContext(cmd.Context(), args[0], opts)
			if err != nil {
				return inputError(cmd, err)
			}
			dir := out
			if dir == "" {
				dir = args[0]
				if err := checkWritable(dir); err != nil {
					_ = report.Summary(cmd.OutOrStdout(), res)
					return err
				}
			}
			// The reports first: a reader that stops reading the summary
			// early (analyze DIR | head) must not cost them.
			if err := report.WriteAll(dir, res); err != nil {
				return fmt.Errorf("%w (use -o to write the reports elsewhere)", err)
			}
			w := cmd.OutOrStdout()
			if err := report.Summary(w, res); err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "report: %s/report.{md,html,json}\n", dir)
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory for the reports (default: DIR)")
	in.register(cmd)
	return cmd
}

// inputFlags are the flags that choose what analyze and compare read.
type inputFlags struct {
	prefix      string
	maxFileSize string
}

func (f *inputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.prefix, "prefix", "", "read only the files whose name starts with this (one run of a directory holding several)")
	cmd.Flags().StringVar(&f.maxFileSize, "max-file-size", fmt.Sprintf("%dMiB", parse.DefaultMaxFileBytes>>20), "read at most this much of each file (e.g. 512MiB, 4GiB); the rest is left unread with a warning")
}

func (f *inputFlags) options() (analyze.Options, error) {
	n, err := parseByteSize(f.maxFileSize)
	if err != nil {
		return analyze.Options{}, &ExitError{Code: ExitUsage, Err: fmt.Errorf("--max-file-size: %w", err)}
	}
	return analyze.Options{Prefix: f.prefix, MaxFileBytes: n}, nil
}

// parseByteSize reads "4096", "512KiB", "512MiB", "4GiB" (K/M/G and KB/MB/GB
// are read as binary units too).
func parseByteSize(s string) (int64, error) {
	num := strings.TrimRight(s, "KMGTiBb")
	unit := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s[len(num):]), "B"), "I")
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
	sh, ok := shift[unit]
	v, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if !ok || err != nil || v <= 0 || v > (1<<62)>>sh {
		return 0, fmt.Errorf("%q is not a size (e.g. 4096, 512MiB, 4GiB)", s)
	}
	if v<<sh < 1<<20 {
		return 0, fmt.Errorf("%q is below 1 MiB", s)
	}
	return v << sh, nil
}

// inputError maps what analyze.RunContext refuses to exit codes: a
// directory with nothing to analyse, files of several runs or a missing
// directory are usage errors; an interrupt ends with ExitSignal (Main).
func inputError(cmd *cobra.Command, err error) error {
	if cmd.Context().Err() != nil {
		return err
	}
	return &ExitError{Code: ExitUsage, Err: err}
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
