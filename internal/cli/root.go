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

	"github.com/spf13/cobra"
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
	return ExitFailure
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "pingpath",
		Short:         "Break VM-to-VM ping latency into per-layer segments with eBPF",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	// One line per command; each constructor lives in its own cmd_<verb>.go.
	root.AddCommand(newVersionCommand())
	root.AddCommand(newTraceCommand())
	root.AddCommand(newLabCommand())
	root.AddCommand(newAnalyzeCommand())
	root.AddCommand(newCompareCommand())
	root.AddCommand(newRunCommand())
	root.AddCommand(newCheckCommand())
	return root
}
