package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/orchestrate"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
	"github.com/pingpath/pingpath/internal/report"
	"github.com/pingpath/pingpath/internal/role"
)

func newRunCommand() *cobra.Command {
	var (
		config, out        string
		count, size        int
		interval, readyMax time.Duration
		noAnalyze          bool
		tracers            []string
		tracedNodes        []string
		maxCPU             float64
		pushBinaries       []string
	)
	cmd := &cobra.Command{
		Use:   "run -c env.yaml -o DIR",
		Short: "Measure: push pingpath, start the tracers on all four nodes, ping, collect into DIR, analyse",
		Long: `run reads the environment file, connects to the four nodes over SSH (host keys
verified against known_hosts), pushes this pingpath binary (skipped when the
same checksum is already there), starts the tracers receivers first and waits
for each one's ready line, runs ping on the sender VM, stops the tracers
(stdin EOF and SIGINT, then SIGTERM, SIGKILL), and streams everything into DIR
with a manifest.json. Then it analyses DIR unless --no-analyze.

Exit codes: 0 complete; 1 failed (nothing usable, e.g. a node unreachable at
the start; or only the analysis failed); 2 bad command line or environment file; 3 partial (a node or a
tracer was lost, or a tracer detached itself over --max-cpu: what was collected
is kept and analysed); 130 interrupted
(Ctrl-C: tracers stopped, collected data kept). See docs/run.md.`,
		Example: `  pingpath run -c env.yaml -o runs/today
  pingpath run -c env.yaml -o runs/slow --count 500 --interval 20ms
  pingpath run -c env.yaml -o runs/vm-only --tracers vm,host --no-analyze
  pingpath run -c env.yaml -o runs/untraced --traced-nodes none --no-analyze
  pingpath run -c env.yaml -o runs/mixed --push-binary ./pingpath-arm64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := loadEnv(config)
			if err != nil {
				return err
			}
			if out == "" {
				return &ExitError{Code: ExitUsage, Err: errors.New("-o DIR is required")}
			}
			if err := checkRunFlags(cmd, env, count, size, interval, readyMax, tracers); err != nil {
				return err
			}
			var nodes []string // nil: all four
			if cmd.Flags().Changed("traced-nodes") {
				if nodes, err = checkTracedNodes(tracedNodes); err != nil {
					return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--traced-nodes: %w", err)}
				}
			}
			if maxCPU < 0 || maxCPU != maxCPU {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--max-cpu %g: must be a positive percentage of one CPU", maxCPU)}
			}
			bin, pw, err := pushedBinary(cmd, env)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			progress := newTerminalProgress(stderr)
			opts := orchestrate.RunOptions{
				Options: orchestrate.Options{
					Env: env, ConfigFile: config, Dial: orchestrate.SSHDialer(sshremote.Options{}),
					SudoPassword: pw, Progress: progress, Binary: bin, OtherBinaries: pushBinaries, Tracers: tracers,
					TracedNodes: nodes,
				},
				OutDir: out, Count: count, Interval: interval, Size: size, ReadyTimeout: readyMax, MaxCPU: maxCPU,
			}
			if !cmd.Flags().Changed("tracers") {
				opts.Tracers = builtTracers(cmd)
			}
			if !noAnalyze {
				opts.Analyze = func(ctx context.Context, dir string) error {
					res, err := analyze.RunContext(ctx, dir, analyze.Options{})
					if err != nil {
						return err
					}
					if err := report.WriteAll(dir, res); err != nil {
						return err
					}
					// Freeze the live block first: on a terminal it is
					// redrawn in place and would overwrite the summary.
					progress.Done()
					return report.Summary(cmd.OutOrStdout(), res)
				}
			}
			res, err := orchestrate.Run(cmd.Context(), opts)
			if err != nil {
				return err // a runtime failure (the output directory, the machines): ExitFailure
			}
			m := res.Manifest
			fmt.Fprintf(stderr, "run %s: %s (ping %d/%d answered) in %s\n", out, m.Status, m.Ping.Received, m.Ping.Sent,
				time.Duration(m.Timings.TotalMS)*time.Millisecond)
			for _, f := range m.Failures {
				fmt.Fprintf(stderr, "  %s: %s\n", strings.TrimSpace(f.Node+" "+f.Step), f.Error)
			}
			if res.AnalyzeErr != nil {
				fmt.Fprintf(stderr, "  analysis: %v\n", res.AnalyzeErr)
			}
			switch {
			case res.WriteErr != nil:
				// Before an interrupt: a run whose files could not be
				// written has failed, however it ended.
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("run failed: %w", res.WriteErr)}
			case res.Interrupted:
				return &ExitError{Code: ExitSignal, Err: fmt.Errorf("interrupted; what was collected is in %s (analyse it with: pingpath analyze %s)", out, out)}
			case m.Status == orchestrate.StatusFailed:
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("run failed: %w", res.Err)}
			case m.Status == orchestrate.StatusPartial:
				return &ExitError{Code: ExitPartial, Err: fmt.Errorf("partial run (kept in %s): %w", out, res.Err)}
			case res.AnalyzeErr != nil:
				return fmt.Errorf("the run is complete in %s but its analysis failed (retry with pingpath analyze %s): %w", out, out, res.AnalyzeErr)
			case noAnalyze:
				fmt.Fprintf(stderr, "analyse it with: pingpath analyze %s\n", out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&config, "config", "c", "", "environment file (env.yaml)")
	f.StringVarP(&out, "output", "o", "", "run directory to create (must not exist or be empty)")
	f.IntVar(&count, "count", 0, "pings to send (default: measurement.ping_count)")
	f.DurationVar(&interval, "interval", 0, "ping interval (default: measurement.interval)")
	f.IntVar(&size, "size", 0, "ping's payload in bytes (ping -s; default ping's 56): large pings find an MTU too small on the path, e.g. for an overlay's encapsulation")
	f.DurationVar(&readyMax, "ready-timeout", 0, "how long each tracer may take to print its ready line (default 30s, 90s with origin tools)")
	f.BoolVar(&noAnalyze, "no-analyze", false, "only collect; analyse later with pingpath analyze DIR")
	f.Float64Var(&maxCPU, "max-cpu", 0, "every tracer's --max-cpu: it detaches itself (and the run ends partial) when tracing costs its machine more than this percentage of one CPU (default: the tracers' 5)")
	f.StringSliceVar(&tracers, "tracers", nil, "pingpath tracers to run (default: all of vm,host,vhost-rx,vhost-tx this build has)")
	f.StringSliceVar(&tracedNodes, "traced-nodes", nil, "the nodes whose tracers run ("+strings.Join(role.All, ",")+"; default all four); the others only ping or answer; none: no tracer at all, ping alone (the untraced baseline of an observer-effect measurement)")
	f.StringArrayVar(&pushBinaries, "push-binary", nil, "a pingpath built for another architecture (GOARCH=arm64 CGO_ENABLED=0 go build -o pingpath-arm64 ./cmd/pingpath), pushed instead of this one to the nodes whose uname -m is its architecture; repeat for more (a mixed fleet)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// checkRunFlags checks run's numbers against the bounds the environment
// file's own values were checked against (a flag left out takes the file's
// value), and the tracer names against this build's tracers.
func checkRunFlags(cmd *cobra.Command, env *envfile.Environment, count, size int, interval, readyMax time.Duration, tracers []string) error {
	f := cmd.Flags()
	bad := func(flag string, err error) error {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--%s: %w", flag, err)}
	}
	if f.Changed("count") {
		if err := envfile.CheckPingCount(count); err != nil {
			return bad("count", err)
		}
	} else {
		count = env.Measurement.PingCount
	}
	if f.Changed("interval") {
		if err := envfile.CheckInterval(interval); err != nil {
			return bad("interval", err)
		}
	} else if d, err := time.ParseDuration(env.Measurement.Interval); err == nil {
		interval = d
	}
	if err := envfile.CheckRunLength(count, interval); err != nil {
		flag := "interval"
		if f.Changed("count") {
			flag = "count"
		}
		return bad(flag, err)
	}
	if f.Changed("size") && (size < 1 || size > orchestrate.MaxPingSize) {
		return bad("size", fmt.Errorf("%d is out of range 1..%d", size, orchestrate.MaxPingSize))
	}
	if f.Changed("ready-timeout") {
		if err := envfile.CheckReadyTimeout(readyMax); err != nil {
			return bad("ready-timeout", err)
		}
	}
	if f.Changed("tracers") {
		if err := checkTracerNames(cmd, tracers); err != nil {
			return bad("tracers", err)
		}
	}
	return nil
}

// checkTracedNodes checks --traced-nodes: role names, or "none" alone
// (no tracer: an empty, non-nil list).
func checkTracedNodes(nodes []string) ([]string, error) {
	if len(nodes) == 0 {
		return nil, fmt.Errorf("no node named (want some of %s, or none)", strings.Join(role.All, ", "))
	}
	if slices.Equal(nodes, []string{"none"}) {
		return []string{}, nil
	}
	for _, n := range nodes {
		if !slices.Contains(role.All, n) {
			return nil, fmt.Errorf("unknown node %q (want some of %s, or none)", n, strings.Join(role.All, ", "))
		}
	}
	return nodes, nil
}

// pushedBinary is this pingpath binary, which run and watch push to the
// nodes, and the sudo password when a node needs one (asked now).
func pushedBinary(cmd *cobra.Command, env *envfile.Environment) (string, []byte, error) {
	bin, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("finding the pingpath binary to push: %w", err)
	}
	pw, err := sudoPassword(env, cmd.ErrOrStderr())
	return bin, pw, err
}

// checkTracerNames checks --tracers against this build's tracers.
func checkTracerNames(cmd *cobra.Command, tracers []string) error {
	built := builtTracers(cmd)
	if len(tracers) == 0 {
		return fmt.Errorf("no tracer named (this build has %s)", strings.Join(built, ", "))
	}
	for _, t := range tracers {
		if !slices.Contains(built, t) {
			return fmt.Errorf("unknown tracer %q (this build has %s)", t, strings.Join(built, ", "))
		}
	}
	return nil
}

// builtTracers lists the `pingpath trace` subcommands of this binary: the
// pushed binary is this one, so these are the tracers the nodes can run.
func builtTracers(cmd *cobra.Command) []string {
	names := []string{}
	if tr, _, err := cmd.Root().Find([]string{"trace"}); err == nil && tr.Name() == "trace" {
		for _, c := range tr.Commands() {
			names = append(names, c.Name())
		}
	}
	return names
}

// loadEnv reads the environment file; its errors name file:line: field.
func loadEnv(path string) (*envfile.Environment, error) {
	env, err := envfile.Load(path)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: fmt.Errorf("environment file:\n%w", err)}
	}
	return env, nil
}

// sudoPassword asks once, on the terminal, for the password of nodes with
// sudo: password. It is never echoed, logged or stored.
func sudoPassword(env *envfile.Environment, prompt io.Writer) ([]byte, error) {
	need := false
	for _, n := range env.Nodes() {
		need = need || n.Options.Sudo == envfile.SudoPassword
	}
	if !need {
		return nil, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, &ExitError{Code: ExitUsage, Err: errors.New("sudo: password needs a terminal to ask for it; use sudo: passwordless for unattended runs")}
	}
	defer tty.Close()
	fmt.Fprint(tty, "sudo password for the nodes with sudo: password: ")
	pw, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("reading the sudo password: %w", err)
	}
	return pw, nil
}

// newTerminalProgress shows live progress on w: redrawn in place on a
// terminal (colored unless NO_COLOR is set), plain lines otherwise.
func newTerminalProgress(w io.Writer) orchestrate.Progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
	}
	_, noColor := os.LookupEnv("NO_COLOR")
	return orchestrate.NewTerminal(w, tty, !noColor)
}
