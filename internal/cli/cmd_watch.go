package cli

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/orchestrate"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
	"github.com/pingpath/pingpath/internal/watch"
)

func newWatchCommand() *cobra.Command {
	var (
		config, listen, reportDir, keepDir string
		interval, readyMax, reportEvery    time.Duration
		settle, maxDuration                time.Duration
		count, reportPings                 int
		tracers                            []string
	)
	cmd := &cobra.Command{
		Use:   "watch -c env.yaml [--interval 1s] [--listen 127.0.0.1:9464]",
		Short: "Measure continuously: keep the tracers running, ping, expose per-segment metrics for Prometheus",
		Long: `watch starts the tracers on every node as run does and keeps them running:
each pair's ping goes on at --interval, the records stream back, every ping is
joined once its observations settled (the same join as pingpath analyze, over a
window, so memory stays flat), and /metrics on --listen serves, in the
OpenMetrics text format (or protobuf with native histograms, to a Prometheus
that asks for them): per-segment latency histograms per pair, pings sent,
answered, lost and complete, drops by location and kernel reason, tracer
ring-buffer loss, cost (BPF run time, CPU) and restarts, node connections. All series carry the
environment's name.

Several pairs: list them under pairs: in the environment file; one host
tracer per host serves every pair on it. A node that drops is reconnected with
backoff (its gap shows as missing data, not zeros); a tracer that dies is
restarted and counted. Ctrl-C stops every tracer; the tracers also stop by
themselves when the SSH session ends, and --max-duration after watch last
renewed them (every quarter of it). Example alert rules and a Grafana dashboard
are in monitoring/. See docs/watch.md.`,
		Example: `  pingpath watch -c env.yaml
  pingpath watch -c pairs.yaml --interval 100ms --listen 0.0.0.0:9464 --report-dir /var/lib/pingpath/report
  pingpath watch -c env.yaml --count 300 --keep-streams /tmp/streams   # then: pingpath analyze /tmp/streams/pair-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := loadEnv(config)
			if err != nil {
				return err
			}
			if err := checkWatchFlags(cmd, interval, readyMax, tracers); err != nil {
				return err
			}
			bin, pw, err := pushedBinary(cmd, env)
			if err != nil {
				return err
			}
			logger := log.New(cmd.ErrOrStderr(), "", log.LstdFlags)
			reg := prometheus.NewRegistry()
			var pairs []string
			for _, p := range env.SplitPairs() {
				pairs = append(pairs, p.Name)
			}
			col, err := watch.New(watch.Options{
				Environment: env.Environment, Pairs: pairs, Settle: settle,
				ReportDir: reportDir, ReportEvery: reportEvery, ReportPings: reportPings, KeepDir: keepDir,
				Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"environment": env.Environment}, reg),
				Logf:       logger.Printf,
			})
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--listen %s: %w", listen, err)}
			}
			mux := http.NewServeMux()
			mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true, ErrorLog: logger}))
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			go func() {
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					logger.Printf("serving metrics: %v", err)
				}
			}()
			logger.Printf("watching %d pair(s) of %s; metrics on http://%s/metrics", len(pairs), env.Environment, ln.Addr())
			ctx, stop := context.WithCancel(cmd.Context())
			defer stop()
			joined := make(chan struct{})
			go func() {
				defer close(joined)
				col.Run(ctx)
			}()
			opts := orchestrate.WatchOptions{
				Options: orchestrate.Options{Env: env, ConfigFile: config, Dial: orchestrate.SSHDialer(sshremote.Options{}),
					SudoPassword: pw, Binary: bin, Tracers: tracers},
				Sink: col, Interval: interval, Count: count, ReadyTimeout: readyMax, MaxDuration: maxDuration,
			}
			if !cmd.Flags().Changed("tracers") {
				opts.Tracers = builtTracers(cmd)
			}
			werr := orchestrate.Watch(cmd.Context(), opts)
			stop()
			<-joined
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
			if werr != nil {
				return werr
			}
			if cmd.Context().Err() != nil {
				logger.Printf("stopped: every tracer was stopped")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&config, "config", "c", "", "environment file (env.yaml), one pair or several (pairs:)")
	f.StringVar(&listen, "listen", "127.0.0.1:9464", "address of the /metrics endpoint")
	f.DurationVar(&interval, "interval", time.Second, "ping interval of every pair")
	f.IntVar(&count, "count", 0, "stop each pair's ping after this many pings (the tracers and /metrics stay); 0: until stopped")
	f.DurationVar(&readyMax, "ready-timeout", 30*time.Second, "how long each tracer may take to print its ready line")
	f.DurationVar(&settle, "settle", 5*time.Second, "how long after its first observation a ping is joined (longer than the tracers take to report it)")
	f.DurationVar(&maxDuration, "max-duration", 2*time.Minute, "every tracer's backstop, renewed every quarter of it while watch runs")
	f.StringVar(&reportDir, "report-dir", "", "write DIR/<pair>/report.{json,md,html} of the last --report-pings pings every --report-every")
	f.DurationVar(&reportEvery, "report-every", time.Minute, "how often the rolling report is written")
	f.IntVar(&reportPings, "report-pings", 1000, "pings the rolling report covers")
	f.StringVar(&keepDir, "keep-streams", "", "also write every stream under DIR/<pair>/ (for pingpath analyze; grows without bound)")
	f.StringSliceVar(&tracers, "tracers", nil, "pingpath tracers to run (default: all of vm,host,vhost-rx,vhost-tx this build has)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// checkWatchFlags checks watch's numbers against the same bounds as run's.
func checkWatchFlags(cmd *cobra.Command, interval, readyMax time.Duration, tracers []string) error {
	bad := func(flag string, err error) error {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--%s: %w", flag, err)}
	}
	if err := envfile.CheckInterval(interval); err != nil {
		return bad("interval", err)
	}
	if err := envfile.CheckReadyTimeout(readyMax); err != nil {
		return bad("ready-timeout", err)
	}
	f := cmd.Flags()
	for _, d := range []string{"settle", "max-duration", "report-every"} {
		if v, _ := f.GetDuration(d); v < time.Second {
			return bad(d, fmt.Errorf("%s: must be at least 1s", v))
		}
	}
	for _, n := range []string{"count", "report-pings"} {
		if v, _ := f.GetInt(n); v < 0 || n == "report-pings" && v == 0 {
			return bad(n, fmt.Errorf("%d: out of range", v))
		}
	}
	if f.Changed("tracers") {
		if err := checkTracerNames(cmd, tracers); err != nil {
			return bad("tracers", err)
		}
	}
	return nil
}
