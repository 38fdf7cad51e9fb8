package cli

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/wire"
)

func newLabCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run the four-node test lab (two VMs on two hosts) on this machine",
		Long: `The lab builds the two-VMs-on-two-hosts topology from network namespaces on
this machine (root needed): sender-vm, sender-host, receiver-host, receiver-vm,
each with a real sshd on a management network, so that the whole pingpath
workflow runs against it. See docs/lab.md.`,
		Example: `  pingpath lab up --dir /tmp/lab && pingpath run -c /tmp/lab/env.yaml -o /tmp/run
  pingpath lab status --dir /tmp/lab
  pingpath lab down --dir /tmp/lab`,
	}
	cmd.AddCommand(newLabUpCommand(), newLabDownCommand(), newLabStatusCommand())
	for _, name := range lab.ChildNames() {
		cmd.AddCommand(newLabChildCommand(name))
	}
	return cmd
}

func newLabUpCommand() *cobra.Command {
	var (
		o               lab.Options
		dataNet, mgmtNt string
		verbose         bool
	)
	cmd := &cobra.Command{
		Use:   "up --dir DIR",
		Short: "Bring a lab up; prints the path of its env.yaml last",
		Example: `  pingpath lab up --dir /tmp/lab
  pingpath lab up --dir /tmp/slow --name slow --wire-delay 1ms --wire-jitter 200us --wire-loss 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.DataNet, err = parsePrefix("--data-net", dataNet); err != nil {
				return err
			}
			if o.MgmtPool, err = parsePrefix("--mgmt-net", mgmtNt); err != nil {
				return err
			}
			if verbose || o.Hypervisor == lab.HypervisorKVM {
				// A KVM lab takes a minute (and its first image minutes):
				// always show its progress.
				o.Log = cmd.ErrOrStderr()
			}
			l, err := lab.Up(cmd.Context(), o)
			if err != nil {
				if errors.Is(err, lab.ErrExists) || errors.Is(err, lab.ErrOptions) {
					return &ExitError{Code: ExitUsage, Err: err}
				}
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "lab %s is up (vm link %s, wire %s", l.Name, l.VMLink, l.Wire)
			if l.Wire == lab.WireRelay {
				fmt.Fprintf(out, ": delay %s, jitter %s, loss %g%%", l.WireDelay, l.WireJitter, l.WireLoss)
			}
			fmt.Fprintln(out, ")")
			if l.IsKVM() {
				fmt.Fprintf(out, "kvm: kernel %s, hosts %d MiB/%d vCPU (QEMU TCG), VMs %d MiB/%d vCPU (nested KVM, vhost-net)\n",
					l.KVM.Kernel, l.KVM.HostMemoryMB, l.KVM.HostCPUs, l.KVM.VMMemoryMB, l.KVM.VMCPUs)
				if l.KVM.BCC {
					fmt.Fprintf(out, "bcc: bpfcc-tools, python3-bpfcc and linux-headers-%s on hosts and VMs\n", l.KVM.Kernel)
				}
				fmt.Fprintf(out, "datapath: %s\n", l.KVM.Describe())
				fmt.Fprintf(out, "NOTE: %s\n", l.Emulation)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tNETNS\tMGMT\tDATA")
			for _, n := range l.Nodes {
				data := n.Bridge + ": " + n.Vnet + " + " + n.Phy
				if n.IsVM() {
					data = n.DataIP.String() + " on " + n.Interface
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, cmp.Or(n.Netns, "(machine)"), n.MgmtIP, data)
			}
			tw.Flush()
			fmt.Fprintf(out, "ssh: ssh -F %s receiver-vm\n", l.SSHConfig)
			fmt.Fprintln(out, l.EnvFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Dir, "dir", "", "lab directory (keys, configs, pid files, logs, env.yaml)")
	f.StringVar(&o.Name, "name", lab.DefaultName, "lab name; prefixes the namespaces so labs can coexist")
	f.StringVar(&o.Hypervisor, "hypervisor", lab.HypervisorNetns, "lab kind: netns (namespaces of this machine) or kvm (QEMU TCG hosts running their VMs under nested KVM with vhost-net; see docs/lab.md)")
	f.StringVar(&o.KVM.Kernel, "kernel", "6.12", "kvm: Debian kernel series of hosts and VMs (6.12, 6.1 or 5.10)")
	f.IntVar(&o.KVM.HostMemoryMB, "host-memory", 0, "kvm: MiB of RAM per host (0: 768, with --with-bcc 1280)")
	f.IntVar(&o.KVM.HostCPUs, "host-cpus", 2, "kvm: vCPUs per host")
	f.IntVar(&o.KVM.VMMemoryMB, "vm-memory", 0, "kvm: MiB of RAM per VM (0: 256, with --with-bcc 512)")
	f.StringVar(&o.KVM.Datapath, "switch", "bridge", "kvm: the hosts' switch: bridge (Linux bridge) or ovs (Open vSwitch; its own image with openvswitch-switch)")
	f.BoolVar(&o.KVM.Bond, "bond", false, "kvm: each host's uplink is a kernel bond of two NICs, both cabled to the wire (the relay, as the switch's port channel)")
	f.StringVar(&o.KVM.Overlay, "overlay", "", "kvm: tunnel between the hosts: geneve or vxlan (the switch's port to the wire; the uplinks carry underlay addresses)")
	f.BoolVar(&o.KVM.BCC, "with-bcc", false, "kvm: the machines also carry Debian's BCC (bpfcc-tools, python3-bpfcc) and their kernel's headers, for the origin tools (its own image)")
	f.StringSliceVar(&o.KVM.ExtraPackages, "image-package", nil, "kvm: extra Debian package for the machine image (repeatable; builds a new image once)")
	f.StringVar(&o.VMLink, "vm-link", "", "netns: VM to host link: tap (TAP pair + userspace backend, default) or veth")
	f.StringVar(&o.Wire, "wire", lab.WireAuto, "wire between the hosts: auto (netns: veth, kvm: bridge, unless impaired), veth (netns), bridge (kvm), or relay")
	f.DurationVar(&o.WireDelay, "wire-delay", 0, "one-way delay the wire adds in each direction")
	f.DurationVar(&o.WireJitter, "wire-jitter", 0, "uniform jitter (±) on top of the delay")
	f.Float64Var(&o.WireLoss, "wire-loss", 0, "percentage of frames the wire drops in each direction")
	f.Uint64Var(&o.WireSeed, "wire-seed", 1, "seed of the loss and jitter draws")
	f.StringVar((*string)(&o.WireClock), "wire-clock", string(wire.ClockKernel), "relay receipt clock: kernel (SO_TIMESTAMPNS: the wire adds the delay plus a few µs) or user (relay+D minus relay+0 is D)")
	f.StringVar(&dataNet, "data-net", lab.DefaultDataNet.String(), "VM data network (sender VM .1.1, receiver VM .2.1)")
	f.StringVar(&mgmtNt, "mgmt-net", lab.DefaultMgmtPool.String(), "management /16; each lab takes a free /24 of it")
	f.StringVar(&o.Binary, "pingpath-binary", "", "pingpath executable for the background processes (default: this one)")
	f.BoolVar(&o.SudoUser, "sudo-user", false, "log in as a non-root user pp-NAME that may sudo: without a password on the VMs, with the one in DIR/sudo-password on the hosts (env.yaml says so)")
	f.BoolVar(&o.KeepOnFailure, "keep-on-failure", false, "leave a half-built lab in place when up fails (for debugging)")
	f.BoolVarP(&verbose, "verbose", "v", false, "print each step and its duration")
	_ = cmd.MarkFlagRequired("dir")
	_ = f.MarkHidden("pingpath-binary")
	return cmd
}

func parsePrefix(flag, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s %q: %w", flag, s, err)}
	}
	return p, nil
}

// newLabDirCommand is a lab subcommand working on an existing lab: it
// takes the lab directory (--dir) and hands run the loaded lab. A directory
// without a lab is a usage error.
func newLabDirCommand(use, short string, run func(*cobra.Command, *lab.Lab) error) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:     use + " --dir DIR",
		Short:   short,
		Example: "  pingpath lab " + use + " --dir /tmp/lab",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Load(dir)
			if errors.Is(err, lab.ErrNoLab) {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			if err != nil {
				return err
			}
			return run(cmd, l)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "lab directory")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newLabDownCommand() *cobra.Command {
	return newLabDirCommand("down", "Stop a lab and remove everything it made", func(cmd *cobra.Command, l *lab.Lab) error {
		if err := l.Down(cmd.Context()); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "lab %s is down\n", l.Name)
		return nil
	})
}

func newLabStatusCommand() *cobra.Command {
	return newLabDirCommand("status", "Show each node of a lab and whether it answers SSH", labStatus)
}

// labStatus prints each node of l and whether it answers SSH, and each of
// the lab's background processes; any not answering is an error.
func labStatus(cmd *cobra.Command, l *lab.Lab) error {
	nodes, daemons := l.Status(cmd.Context())
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "lab %s (%s) in %s: vm link %s, wire %s\n", l.Name, l.State, l.Dir, l.VMLink, l.Wire)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNETNS\tSSHD\tMGMT\tSSH")
	bad := 0
	for i, s := range nodes {
		ns, pid, answer := "missing", "-", s.SSHBanner
		if s.NetnsOK {
			ns = s.Netns
		}
		if s.SSHDPid != 0 {
			pid = strconv.Itoa(s.SSHDPid)
		}
		if answer == "" {
			answer = "no answer: " + s.Err
		}
		if !s.OK() {
			bad++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Node, ns, pid, l.Nodes[i].MgmtIP, answer)
	}
	tw.Flush()
	for _, name := range slices.Sorted(maps.Keys(daemons)) {
		state := "not running"
		if daemons[name] != 0 {
			state = "pid " + strconv.Itoa(daemons[name])
		} else {
			bad++
		}
		fmt.Fprintf(out, "%s: %s\n", name, state)
	}
	if bad > 0 {
		return fmt.Errorf("lab %s: %d node(s) or process(es) not answering", l.Name, bad)
	}
	return nil
}

// newLabChildCommand is one of the lab's background processes (pingpath lab
// wire, tap-backend, node-init). lab up starts them detached inside the
// right namespace; their flags are parsed by package lab, which test
// binaries reuse (labtest.Main) without the CLI.
func newLabChildCommand(name string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              "lab background process (started by lab up)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := lab.ChildMain(cmd.Context(), name, args, cmd.ErrOrStderr()); code != 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("lab %s failed", name)}
			}
			return nil
		},
	}
}
