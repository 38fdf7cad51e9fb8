package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/orchestrate"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
)

func newCheckCommand() *cobra.Command {
	var (
		config    string
		noTracers bool
	)
	cmd := &cobra.Command{
		Use:   "check -c env.yaml",
		Short: "Check that every node of the environment is ready for a run",
		Long: `check connects to the four nodes in parallel and verifies: SSH reachability and
authentication (host keys verified), root through sudo, kernel and BTF, the
attach methods the kernel offers, that the configured interfaces exist, that
each VM owns its IP, and that the sender VM can ping the receiver VM. Then it
pushes pingpath (as run would) and runs each node's tracers for one second: the
probes they report say which attach method every stage gets on that kernel
(skip with --no-tracers). It prints a table and one actionable line per
failure; the exit code is 1 when anything failed, 2 for a bad environment file.`,
		Example: `  pingpath check -c env.yaml
  pingpath check -c env.yaml --no-tracers     # connectivity, root, kernel and interfaces only`,
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
			o := orchestrate.Options{
				Env: env, ConfigFile: config, Dial: orchestrate.SSHDialer(sshremote.Options{}), SudoPassword: pw,
			}
			if !noTracers {
				if o.Binary, err = os.Executable(); err != nil {
					return fmt.Errorf("finding the pingpath binary to push: %w", err)
				}
				o.Tracers = builtTracers(cmd)
			}
			rep := orchestrate.Check(cmd.Context(), o)
			rep.WriteTable(cmd.OutOrStdout())
			if n := rep.Failed(); n > 0 {
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%d check(s) failed", n)}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "", "environment file (env.yaml)")
	cmd.Flags().BoolVar(&noTracers, "no-tracers", false, "do not push pingpath nor try the tracers")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
