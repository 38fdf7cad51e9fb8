package cli

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/vm"
)

// newTraceCommand is `pingpath trace`, the parent of every tracer.
func newTraceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Run an eBPF tracer on this machine (vm, host, vhost-rx, vhost-tx)",
		Long: `Run one eBPF tracer on this machine. Output is a JSON-lines record stream
(docs/record-format.md) or a text view (--format text). The tracer prints a line
starting with "ready" on stderr once every probe is attached, stops on SIGINT or
SIGTERM, after --duration, after --max-duration (always on; with --renew-on-stdin
counted from the last line read on stdin), or when stdin closes with
--stop-on-stdin-eof, and then writes a trailer record with what tracing cost (its
BPF programs and its own process). When that cost exceeds --max-cpu (5 % of one
CPU by default) it detaches its probes, writes a warning record, prints a line
starting with "detached" on stderr and stops.`,
		Example: `  pingpath trace vm --src-ip 198.18.1.1 --dst-ip 198.18.2.1 --format text
  pingpath trace host --src-ip 198.18.1.1 --dst-ip 198.18.2.1 --vm-interface vnet0 --phy-interface eth0
  pingpath trace vhost-rx --vm-interface vnet0 --duration 30s > vhost-rx.jsonl`,
		Args: cobra.NoArgs,
	}
	// One line per tracer; each constructor lives in its own file.
	cmd.AddCommand(newTraceVMCommand())
	cmd.AddCommand(newTraceHostCommand())
	cmd.AddCommand(newTraceVhostRXCommand())
	cmd.AddCommand(newTraceVhostTXCommand())
	return cmd
}

// tracerFlags are the flags every tracer shares.
type tracerFlags struct {
	opts tracer.Options
}

// addTracerFlags registers the shared tracer flags on cmd.
func addTracerFlags(cmd *cobra.Command) *tracerFlags {
	tf := &tracerFlags{}
	f := cmd.Flags()
	f.StringVar(&tf.opts.Probe, "probe", tracer.ProbeAuto, "attach method: auto, fentry, tp_btf, kprobe or tracepoint (forced rungs fail when they cannot work)")
	f.StringVar(&tf.opts.EventBuffer, "event-buffer", tracer.EventBufferAuto, "how events leave the kernel: auto (the BPF ring buffer where the kernel has one, 5.8+, else the perf event array), ringbuf or perf")
	f.StringVar(&tf.opts.Format, "format", "json", "output format: json (record stream) or text")
	f.StringVarP(&tf.opts.Output, "output", "o", "-", "output file (- for stdout)")
	f.DurationVar(&tf.opts.Duration, "duration", 0, "stop after this long (0: until stopped)")
	f.DurationVar(&tf.opts.MaxDuration, "max-duration", tracer.DefaultMaxDuration, "always stop after this long; cannot be disabled")
	f.BoolVar(&tf.opts.StopOnStdinEOF, "stop-on-stdin-eof", false, "stop when stdin is closed (for controllers that run the tracer over SSH)")
	f.BoolVar(&tf.opts.RenewOnStdin, "renew-on-stdin", false, "every line on stdin renews --max-duration (for controllers that keep the tracer running: it stops --max-duration after the last line)")
	f.DurationVar(&tf.opts.StatsInterval, "stats-interval", 0, "write a stats record with the running counters this often (0: only the trailer has them)")
	f.StringVar(&tf.opts.BTF, "btf", "", "file with this kernel's BTF, for kernels without /sys/kernel/btf/vmlinux (pahole --btf_encode_detached, or a BTFHub-style archive's file); fentry then stays off")
	f.BoolVar(&tf.opts.ProbeReadCompat, "probe-read-compat", false, "call bpf_probe_read where the programs call bpf_probe_read_kernel/_user, as on kernels before 5.5 (which get it anyway): for proving that fallback on newer kernels")
	_ = f.MarkHidden("probe-read-compat")
	f.Float64Var(&tf.opts.MaxCPU, "max-cpu", tracer.DefaultMaxCPU, "detach and stop when tracing costs more than this percentage of one CPU (BPF programs on all CPUs plus this process, over --max-cpu-window); cannot be disabled")
	f.DurationVar(&tf.opts.MaxCPUWindow, "max-cpu-window", tracer.CostWindow, "the span --max-cpu is held over: shorter bursts do not stop the tracer")
	return tf
}

// options returns the tracer options for a run of cmd, with the flags the
// user set recorded for the header.
func (tf *tracerFlags) options(cmd *cobra.Command) tracer.Options {
	o := tf.opts
	o.Args = map[string]string{}
	cmd.Flags().Visit(func(fl *pflag.Flag) { o.Args[fl.Name] = fl.Value.String() })
	o.Stdin = cmd.InOrStdin()
	o.Stdout = cmd.OutOrStdout()
	o.Stderr = cmd.ErrOrStderr()
	return o
}

// endpointFlags are --src-ip and --dst-ip: the VM that sends the echo
// requests and the VM that answers them.
type endpointFlags struct {
	src, dst string
	required bool
}

// addEndpointFlags registers --src-ip and --dst-ip on cmd; optional ones
// default to any address.
func addEndpointFlags(cmd *cobra.Command, required bool) *endpointFlags {
	ef := &endpointFlags{required: required}
	note := " (default: any)"
	if required {
		note = " (required)"
	}
	f := cmd.Flags()
	f.StringVar(&ef.src, "src-ip", "", "IPv4 address of the VM that sends the echo requests"+note)
	f.StringVar(&ef.dst, "dst-ip", "", "IPv4 address of the VM that answers them"+note)
	if required {
		_ = cmd.MarkFlagRequired("src-ip")
		_ = cmd.MarkFlagRequired("dst-ip")
	}
	return ef
}

// parse stores the addresses in src and dst; an optional flag left empty
// leaves its address zero. Bad values exit with ExitUsage.
func (ef *endpointFlags) parse(src, dst *netip.Addr) error {
	for _, a := range []struct {
		flag, val string
		dst       *netip.Addr
	}{{"--src-ip", ef.src, src}, {"--dst-ip", ef.dst, dst}} {
		if a.val == "" && !ef.required {
			continue
		}
		ip, err := netip.ParseAddr(a.val)
		if err != nil {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: %w", a.flag, err)}
		}
		*a.dst = ip
	}
	return nil
}

// validate checks the shared flags before anything is loaded; bad values
// exit with ExitUsage.
func (tf *tracerFlags) validate() error {
	o := tf.opts
	if err := o.Validate(); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	return nil
}

// newTraceVMCommand is `pingpath trace vm`, run inside a VM.
func newTraceVMCommand() *cobra.Command {
	var ifaces, direction string
	var icmpID optionalID
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "vm --src-ip S --dst-ip D",
		Short: "Trace pings inside a VM (replaces kernel_icmp_rtt.py)",
		Long: `Timestamps each ping's echo request and reply at four stages of this VM's stack
(p1_start, p1_end, p2_start, p2_end; docs/record-format.md). Run it with the same
--src-ip (the pinging VM) and --dst-ip (the pinged VM) on both VMs; the direction
(tx on the sender, rx on the receiver) is found from which address is local.`,
		Example: `  pingpath trace vm --src-ip 198.18.1.1 --dst-ip 198.18.2.1 --format text   # on both VMs, same addresses
  pingpath trace vm --src-ip 198.18.1.1 --dst-ip 198.18.2.1 --interface eth0 --duration 60s > vm.jsonl`,
		Args: cobra.NoArgs,
	}
	tf := addTracerFlags(cmd)
	ep := addEndpointFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&ifaces, "interface", "", "comma-separated interfaces for the device stages (default: all)")
	f.StringVar(&direction, "direction", "auto", "auto, tx (this VM pings) or rx (this VM is pinged)")
	f.Var(&icmpID, "icmp-id", "only this ICMP echo identifier, 0-65535 (default: any)")
	f.DurationVar(&timeout, "timeout", 5*time.Second, "a ping not complete this long after its first stage is written as a drop record")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := tf.validate(); err != nil {
			return err
		}
		if timeout <= 0 {
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--timeout %s: must be positive", timeout)}
		}
		cfg := vm.Config{Interfaces: envfile.SplitInterfaces(ifaces), Direction: direction, FlowTimeout: timeout}
		if err := ep.parse(&cfg.SrcIP, &cfg.DstIP); err != nil {
			return err
		}
		cfg.ICMPID = icmpID.id
		t, err := vm.New(cfg)
		if err != nil {
			return tracerError(err)
		}
		return tracer.Run(cmd.Context(), t, tf.options(cmd))
	}
	return cmd
}

// tracerError gives a tracer's start-up error its exit code: a bad flag or
// device (tracer.UsageError) exits ExitUsage, a failure of this machine
// (netlink, the kernel) ExitFailure.
func tracerError(err error) error {
	if _, ok := errors.AsType[*tracer.UsageError](err); ok {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	return &ExitError{Code: ExitFailure, Err: err}
}

// optionalID is a flag holding an ICMP echo identifier or nothing (any id).
// Its unset value prints as empty, so the help shows no "(default -1)".
type optionalID struct{ id *uint16 }

func (o *optionalID) String() string {
	if o.id == nil {
		return ""
	}
	return strconv.Itoa(int(*o.id))
}

func (o *optionalID) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return fmt.Errorf("%q is not an ICMP identifier (0-65535)", s)
	}
	id := uint16(v)
	o.id = &id
	return nil
}

func (o *optionalID) Type() string { return "id" }
