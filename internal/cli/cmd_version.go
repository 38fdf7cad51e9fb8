package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/buildinfo"
)

// versionLine is what `pingpath version` and `pingpath --version` print.
func versionLine() string {
	return fmt.Sprintf("pingpath %s %s/%s\n", buildinfo.String(), runtime.GOOS, runtime.GOARCH)
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the pingpath version",
		Example: "  pingpath version\n  pingpath --version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprint(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}
