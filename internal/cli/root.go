// Package cli builds pingpath's command tree. It is the only package that
// imports cobra; every command lives in its own cmd_<verb>.go file with a
// newXCommand constructor, and the work itself is done by the concept
// packages under internal/.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/buildinfo"
)

// Exit codes returned by Main. They are documented in README.md.
const (
	ExitOK      = 0 // everything worked
	ExitFailure = 1 // the command failed
	ExitUsage   = 2 // bad command line or bad input file
	ExitPartial = 3 // a run completed only partly (a node was lost); what was collected is kept
	ExitSignal  = 130
)

// ExitError carries a specific exit code through cobra's error return.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Main runs the pingpath command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "pingpath: %v\n", err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if ctx.Err() != nil {
		return ExitSignal
	}
	// cobra checks required flags itself, before any hook of ours runs, and
	// returns an untyped error; it is still a usage mistake.
	if strings.HasPrefix(err.Error(), "required flag(s)") {
		return ExitUsage
	}
	return ExitFailure
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "pingpath",
		Short: "Break VM-to-VM ping latency into per-layer segments with eBPF",
		Example: `  pingpath lab up --dir /tmp/lab                  # a four-node lab on this machine (root)
  pingpath check -c /tmp/lab/env.yaml             # can every node do its part?
  pingpath run -c env.yaml -o runs/today          # measure, collect, analyse
  pingpath analyze runs/today                     # re-analyse a run (or origin tool logs)
  pingpath compare runs/yesterday runs/today      # what changed, and where
  pingpath export runs/today --format perfetto    # every ping on a timeline, for ui.perfetto.dev`,
		Version:       buildinfo.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// --version prints what `pingpath version` prints.
	root.SetVersionTemplate(versionLine())
	root.SetOut(stdout)
	root.SetErr(stderr)
	// One line per command; each constructor lives in its own cmd_<verb>.go.
	root.AddCommand(newVersionCommand())
	root.AddCommand(newTraceCommand())
	root.AddCommand(newLabCommand())
	root.AddCommand(newAnalyzeCommand())
	root.AddCommand(newCompareCommand())
	root.AddCommand(newExportCommand())
	root.AddCommand(newRunCommand())
	root.AddCommand(newWatchCommand())
	root.AddCommand(newCheckCommand())
	markUsageErrors(root)
	return root
}

// markUsageErrors makes every command-line mistake (a bad flag value, a
// wrong number of arguments, an unknown subcommand) exit with ExitUsage, as
// README documents, instead of the generic failure code.
func markUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: err}
	})
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			return nil
		}
	} else if cmd.HasSubCommands() && !cmd.Runnable() {
		// A bare parent (pingpath, pingpath lab, ...) shows its help; with an
		// unknown subcommand it is a usage error rather than help and exit 0.
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath())}
			}
			return c.Help()
		}
	}
	for _, sub := range cmd.Commands() {
		markUsageErrors(sub)
	}
}
