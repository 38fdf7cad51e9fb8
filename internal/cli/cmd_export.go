package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/export"
)

// exportFormats maps --format to its writer and default file name in DIR.
var exportFormats = map[string]struct {
	file  string
	write func(io.Writer, *analyze.Result) error
}{
	"perfetto": {"trace.json", export.WritePerfetto},
	"csv":      {"pings.csv", export.WriteCSV},
}

func newExportCommand() *cobra.Command {
	var format, out string
	cmd := &cobra.Command{
		Use:   "export DIR --format perfetto|csv [-o FILE]",
		Short: "Write a run's pings as a Perfetto/Chrome trace (one track per vantage point) or as CSV",
		Long: `export analyses DIR as analyze does and writes every ping in another format:

  perfetto  JSON Trace Event Format, for ui.perfetto.dev (Open trace file) or
            chrome://tracing: a process per machine, a track per vantage point
            (tracer), one slice per segment per ping at its place along the path,
            the unmeasured virtualization time as its own slices, and flows that
            follow each ping from machine to machine. Default FILE: DIR/trace.json.
  csv       one row per ping: ICMP id and seq, wall time, every segment, total
            and residual in µs, and the values the plausibility gates refused.
            Default FILE: DIR/pings.csv.

Where two machines share a clock (the lab) each slice sits where it happened;
otherwise the unmeasured time and C/J are split evenly between request and
reply and marked "estimated" (docs/analysis.md). "-o -" writes to stdout.`,
		Example: `  pingpath export runs/today --format perfetto -o today.trace.json   # then open it in ui.perfetto.dev
  pingpath export runs/today --format csv -o - | column -s, -t | less -S`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, ok := exportFormats[format]
			if !ok {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--format %q: want perfetto or csv", format)}
			}
			res, err := analyze.RunContext(cmd.Context(), args[0], analyze.Options{})
			if err != nil {
				return inputError(cmd, err)
			}
			if out == "-" {
				return f.write(cmd.OutOrStdout(), res)
			}
			if out == "" {
				out = filepath.Join(args[0], f.file)
			}
			if err := writeAtomic(out, func(w io.Writer) error { return f.write(w, res) }); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: %d pings\n", out, len(res.Pings))
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "perfetto or csv (required)")
	cmd.Flags().StringVarP(&out, "output", "o", "", "output file, - for stdout (default: DIR/trace.json or DIR/pings.csv)")
	_ = cmd.MarkFlagRequired("format")
	return cmd
}

// writeAtomic writes path through a temporary file in the same directory,
// so a failed export never leaves half a file under the final name.
func writeAtomic(path string, fn func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := fn(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
