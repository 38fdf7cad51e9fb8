package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/buildinfo"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the pingpath version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "pingpath %s %s/%s\n", buildinfo.String(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
