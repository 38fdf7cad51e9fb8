package orchestrate

import (
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/manifest"
)

// tracerSpec is one tracer to run on one node.
type tracerSpec struct {
	node   *node
	tool   string // "vm", "host", "vhost-rx", "vhost-tx", or the origin script's base name
	origin bool
	// args[0] is the pushed pingpath with this SHA-256 (our own tracers:
	// the node's binary), verified on the node before it runs.
	sum    string
	args   []string
	env    map[string]string
	file   string // output, relative to the run directory; "" for none (watch)
	stderr string // stderr file; "" when merged into file (origin tools) or none
	// ready matches the readiness line; failed matches a line that means the
	// tool did not attach although it may keep running or exit 0.
	ready  func(line string) bool
	failed func(line string) bool
	// onLine, if set, sees every watched line (ping progress).
	onLine func(line string)
	// onStdout, if set, sees every line of stdout (watch: the records).
	onStdout func(line string)
	order    int // position in the plan, for a stable manifest
}

// planInput is what the plan needs beyond the environment.
type planInput struct {
	env         *envfile.Environment
	nodes       map[string]*node // by role
	maxDuration time.Duration
	maxCPU      float64 // --max-cpu of our tracers (0: their default)
	// emulated adds emulatedFlags to our tracers (the machines are
	// emulated: env.yaml emulation:).
	emulated bool
	// killAfter is how long an origin tool has after its SIGINT before
	// timeout(1) kills it (at least originKillAfter).
	killAfter time.Duration
}

// originKillAfter is the least time an origin tool gets between its SIGINT
// and timeout(1)'s SIGKILL: BCC detaches its probes and the tool prints its
// summary in between.
const originKillAfter = 10 * time.Second

// plan returns the tracers in start phases: the receiver side (receiver VM
// and receiver host) first, then the sender side (sender host, sender VM).
// Each phase is started in parallel and must be ready before the next.
func plan(in planInput) [][]*tracerSpec {
	s, r := in.env.Sender.VM.IP, in.env.Receiver.VM.IP
	tools := in.env.Tools
	py := tools.Python
	ours := func(n *node, tool string, flags ...string) *tracerSpec {
		sum := n.bin.SHA256
		args := append([]string{n.binaryPath(sum), "trace", tool}, flags...)
		args = append(args, "--format", "json", "--stop-on-stdin-eof", "--max-duration", in.maxDuration.String())
		if n.spec.BTF != "" {
			args = append(args, "--btf", n.spec.BTF)
		}
		if in.maxCPU > 0 {
			args = append(args, "--max-cpu", strconv.FormatFloat(in.maxCPU, 'g', -1, 64))
		}
		if in.emulated {
			args = append(args, emulatedFlags(tool)...)
		}
		return &tracerSpec{
			node: n, tool: tool, args: args, sum: sum,
			file:   n.role() + "." + tool + ".jsonl",
			stderr: n.role() + "." + tool + ".stderr.log",
			ready:  func(l string) bool { return l == "ready" || strings.HasPrefix(l, "ready ") },
		}
	}
	// The origin tools have no --max-duration: timeout(1) is their
	// backstop (SIGINT, like a Ctrl-C, then SIGKILL 10 s later). It passes
	// the signals pingpath sends on to the tool; --foreground makes that
	// the tool alone: otherwise timeout also signals its process group,
	// the tool included, and a second SIGINT can land in the tool's
	// KeyboardInterrupt handler and lose its summary.
	// The SIGKILL comes no earlier than pingpath's own stop would send
	// one (on emulated machines that is minutes: detaching takes long).
	killAfter := max(in.killAfter, originKillAfter)
	backstop := []string{"timeout", "--foreground", "-s", "INT", "-k", strconv.Itoa(int(killAfter.Seconds())), strconv.Itoa(int(in.maxDuration.Seconds()))}
	origin := func(n *node, script, log, readyText string, flags ...string) *tracerSpec {
		return &tracerSpec{
			node: n, tool: path.Base(script), origin: true,
			args:  append(append(append([]string{}, backstop...), py, "-u", script), flags...),
			env:   map[string]string{"PYTHONUNBUFFERED": "1"},
			file:  log,
			ready: func(l string) bool { return strings.Contains(l, readyText) },
			failed: func(l string) bool {
				return strings.HasPrefix(l, "Failed to load BPF program") || strings.HasPrefix(l, "Traceback (most recent call last)")
			},
		}
	}
	vm := func(n *node, dir, log string) *tracerSpec {
		if tools.KernelICMPRTT != "" {
			f := []string{"--src-ip", s, "--dst-ip", r}
			if n.spec.Interface != "" {
				f = append(f, "--interface", n.spec.Interface)
			}
			f = append(f, "--direction", dir, "--disable-kernel-stacks")
			return origin(n, tools.KernelICMPRTT, log, "Hit Ctrl-C to end", f...)
		}
		f := []string{"--src-ip", s, "--dst-ip", r, "--direction", dir}
		if n.spec.Interface != "" {
			f = append(f, "--interface", n.spec.Interface)
		}
		return ours(n, "vm", f...)
	}
	host := func(n *node, sender bool, prefix string) []*tracerSpec {
		vnet, phy := n.spec.VnetInterface, strings.Join(n.spec.PhyInterfaces, ",")
		var out []*tracerSpec
		if tools.ICMPDropDetector != "" {
			rx, tx := phy, vnet
			if sender {
				rx, tx = vnet, phy
			}
			out = append(out, origin(n, tools.ICMPDropDetector, prefix+"-host-icmp.log", "Hit Ctrl-C to end",
				"--src-ip", s, "--dst-ip", r, "--rx-iface", rx, "--tx-iface", tx, "--verbose"))
		} else {
			out = append(out, ours(n, "host", "--src-ip", s, "--dst-ip", r, "--vm-interface", vnet, "--phy-interface", phy))
		}
		// Packets going into this host's VM: the request on the receiver
		// host (E), the reply on the sender host (L).
		toVM, fromVM := [2]string{s, r}, [2]string{r, s}
		if sender {
			toVM, fromVM = fromVM, toVM
		}
		if tools.TunTxToKVMIRQ != "" {
			out = append(out, origin(n, tools.TunTxToKVMIRQ, prefix+"-host-vhost-rx.log", "Ready for tracing",
				"--device", vnet, "--src-ip", toVM[0], "--dst-ip", toVM[1], "--protocol", "icmp"))
		} else {
			out = append(out, ours(n, "vhost-rx", "--vm-interface", vnet, "--src-ip", s, "--dst-ip", r))
		}
		if tools.KVMVhostTunLatency != "" {
			out = append(out, origin(n, tools.KVMVhostTunLatency, prefix+"-host-kvm-tun.log", "Hit Ctrl+C to end",
				"--device", vnet, "--flow", "proto=icmp,src="+fromVM[0]+",dst="+fromVM[1]))
		} else {
			out = append(out, ours(n, "vhost-tx", "--vm-interface", vnet, "--src-ip", s, "--dst-ip", r))
		}
		return out
	}
	rv, rh := in.nodes[manifest.RoleReceiverVM], in.nodes[manifest.RoleReceiverHost]
	sh, sv := in.nodes[manifest.RoleSenderHost], in.nodes[manifest.RoleSenderVM]
	// An untraced VM runs no tracer: the receiver VM only answers, the
	// sender VM only pings.
	var receivers, senders []*tracerSpec
	if !rv.spec.Untraced {
		receivers = append(receivers, vm(rv, "rx", "recv-vm-icmp.log"))
	}
	receivers = append(receivers, host(rh, false, "recv")...)
	senders = host(sh, true, "send")
	if !sv.spec.Untraced {
		senders = append(senders, vm(sv, "tx", "send-vm-icmp.log"))
	}
	phases := [][]*tracerSpec{receivers, senders}
	i := 0
	for _, ph := range phases {
		for _, t := range ph {
			t.order = i
			i++
		}
	}
	return phases
}

// needsBinary tells whether any of the node's tracers is pingpath's own.
func needsBinary(phases [][]*tracerSpec, role string) bool {
	for _, ph := range phases {
		for _, t := range ph {
			if t.node.role() == role && !t.origin {
				return true
			}
		}
	}
	return false
}
