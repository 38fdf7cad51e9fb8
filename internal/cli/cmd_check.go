package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/orchestrate"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
)

func newCheckCommand() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "check -c env.yaml",
		Short: "Check that every node of the environment is ready for a run",
		Long: `check connects to the four nodes in parallel and verifies: SSH reachability and
authentication (host keys verified), root through sudo, kernel and BTF, the
attach methods the kernel offers, that the configured interfaces exist, that
each VM owns its IP, and that the sender VM can ping the receiver VM. It prints
a table and one actionable line per failure; the exit code is 1 when anything
failed, 2 for a bad environment file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := loadEnv(config)
			if err != nil {
				return err
			}
			pw, err := sudoPassword(env, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rep := orchestrate.Check(cmd.Context(), orchestrate.Options{
				Env: env, ConfigFile: config, Dial: orchestrate.SSHDialer(sshremote.Options{}), SudoPassword: pw,
			})
			rep.WriteTable(cmd.OutOrStdout())
			if n := rep.Failed(); n > 0 {
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%d check(s) failed", n)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "", "environment file (env.yaml)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
