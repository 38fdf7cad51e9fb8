// Package orchestrate drives a measurement over SSH: `pingpath check`
// (can every node do its part?) and `pingpath run` (push pingpath, start the
// tracers receivers first, ping, stop everything, collect it all into a run
// directory with a manifest).
package orchestrate

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/remote"
	"github.com/pingpath/pingpath/internal/remote/sshremote"
)

// Dialer opens a transport to one node of the environment.
type Dialer func(ctx context.Context, n envfile.Node) (remote.Transport, error)

// SSHDialer resolves the node's destination (ssh_config aliases, merged
// options) and connects with sshremote.
func SSHDialer(opts sshremote.Options) Dialer {
	return func(ctx context.Context, n envfile.Node) (remote.Transport, error) {
		t, err := envfile.Resolve(n.SSH, n.Options)
		if err != nil {
			return nil, err
		}
		o := opts
		if o.KeepAlive == 0 {
			o.KeepAlive = keepAliveFor(t.ConnectTimeout)
		}
		c, err := sshremote.Dial(ctx, sshEndpoint(t), o)
		if err != nil {
			// Not a typed nil in the interface.
			return nil, err
		}
		return c, nil
	}
}

// keepAliveFor is the keepalive interval for a node given its
// connect_timeout: a node allowed that long to answer a handshake may take
// as long to answer a keepalive (three missed ones declare it lost). The
// keepalive reply also waits behind the data in flight: pushing pingpath
// (27 MB) to a KVM lab VM runs at about 0.5 MB/s, so its replies lag by
// seconds. sshremote's 5 s is the floor.
func keepAliveFor(connectTimeout time.Duration) time.Duration {
	return max(5*time.Second, connectTimeout/3)
}

// sshEndpoint is the connection a resolved env-file target asks for.
func sshEndpoint(t *envfile.Target) *sshremote.Endpoint {
	if t == nil {
		return nil
	}
	return &sshremote.Endpoint{Name: t.Name, Host: t.Host, Port: t.Port, User: t.User,
		IdentityFiles: t.IdentityFiles, KnownHosts: t.KnownHosts, Agent: t.Agent,
		InsecureIgnoreHostKey: t.InsecureIgnoreHostKey, ConnectTimeout: t.ConnectTimeout, Jump: sshEndpoint(t.Jump)}
}

// Options are shared by Check and Run.
type Options struct {
	Env        *envfile.Environment
	ConfigFile string
	Dial       Dialer
	// SudoPassword is used for nodes with sudo: password. The caller asks
	// for it once; it is only ever written to sudo's stdin.
	SudoPassword []byte
	Progress     Progress
	// Binary is the local pingpath executable pushed to the nodes (run
	// always; check when set, to try every tracer for a moment).
	Binary string
	// OtherBinaries are pingpath builds for other architectures than
	// Binary's (run only): a node gets the one of its `uname -m`, read
	// before the tracers' command lines are made (a mixed fleet).
	OtherBinaries []string
	// Tracers, if set, limits pingpath's own tracers to these names (the
	// `pingpath trace` subcommands this build has, or the user's --tracers
	// choice). The others are recorded as not started. Origin tools named
	// in tools: always run.
	Tracers []string
	// TracedNodes, if non-nil, limits every tracer (origin tools too) to
	// the nodes of these roles; the other nodes only ping or answer. Empty
	// and non-nil: no tracer at all, the untraced baseline an observer
	// effect is measured against (the ping, its sessions and the
	// collection stay the same).
	TracedNodes []string
}

// traced reports whether the tracers of the node of role r run.
func (o *Options) traced(r string) bool {
	return o.TracedNodes == nil || slices.Contains(o.TracedNodes, r)
}

// emulatedMaxCPU is the tracers' --max-cpu on emulated machines. Under
// QEMU TCG every instruction of a BPF program and of the tracer costs 5-50
// times what it does on hardware; the KVM lab's tracers peaked at 14-92 %
// of a vCPU at 30 pings (before a timed sample's run time was capped at
// 100 µs; 5 % detached them all, 60 % half of them). 150 % of one CPU (of a
// host's two vCPUs) still stops a tracer that takes the machine over.
const emulatedMaxCPU = 150

// emulationSlowdown is how much longer than on real machines a tracer may
// take to load and attach its BPF programs when the environment says its
// machines are emulated (env.yaml emulation:, the KVM lab): the verifier
// and every attach run under QEMU TCG, 5-50 times slower, and the lab's
// two hosts share the controller's CPUs. Measured on a 2-CPU machine at
// load 20-30: host tracers ready after 60-95 s, vhost tracers after
// 100-170 s, a VM's (nested KVM inside TCG) after 125 s to over 180 s.
const emulationSlowdown = 10

// emulated reports whether the environment says its machines are emulated
// (env.yaml emulation:, the KVM lab).
func (o *Options) emulated() bool { return o.Env != nil && o.Env.Emulation != "" }

// slowed scales a timeout meant for real machines by emulationSlowdown
// when the machines are emulated.
func (o *Options) slowed(d time.Duration) time.Duration {
	if o.emulated() {
		return d * emulationSlowdown
	}
	return d
}

// emulatedHostTimeout is the host tracer's --timeout on emulated machines
// (its default is 1 s: a ping idle that long without completing is a
// drop). Under TCG at a load of 30 a round trip took up to 1.2 s on the
// KVM lab's OVS data path, and the sender host wrote 2 of 10 answered
// pings as drops between its request out and reply in.
const emulatedHostTimeout = time.Second * emulationSlowdown

// emulatedArmWindow is the vhost tracers' --arm-window on emulated
// machines (their default is 50 ms: a worker's signal is seen only that
// long after it took the packet). On the KVM lab at a load of 30 a host's
// vhost worker paused 60-230 ms between taking a request (tun_recvmsg) and
// signalling it (vhost_add_used_and_signal_n): the signal went unseen and
// the request's chain took the next request's, an E of 235 ms.
const emulatedArmWindow = 50 * time.Millisecond * emulationSlowdown

// hostTimeout is the host tracer's --timeout (0: its default).
func (o *Options) hostTimeout() time.Duration {
	if o.emulated() {
		return emulatedHostTimeout
	}
	return 0
}

// emulatedMaxCPUWindow is the tracers' --max-cpu-window on emulated
// machines (their default is 2 s). In a nested VM whose host was busy
// compiling BCC programs, an idle vm tracer measured 165.7 % of one CPU
// over 2.3 s and stopped itself before the first ping: under emulation the
// guest's CPU time comes in jumps. Over 20 s such a jump averages out; a
// tracer that keeps costing more still stops.
const emulatedMaxCPUWindow = 2 * time.Second * emulationSlowdown

// emulatedFlags are the flags a pingpath tracer of tool gets on emulated
// machines besides --max-cpu (tracerMaxCPU, which a user's --max-cpu
// overrides): `run` and `watch` both add them.
func emulatedFlags(tool string) []string {
	f := []string{"--max-cpu-window", emulatedMaxCPUWindow.String()}
	switch tool {
	case "host":
		f = append(f, "--timeout", emulatedHostTimeout.String())
	case "vhost-rx", "vhost-tx":
		f = append(f, "--arm-window", emulatedArmWindow.String())
	}
	return f
}

// tracerMaxCPU is the --max-cpu the tracers get (0: their default). On
// emulated machines the default is emulatedMaxCPU: emulation makes the
// same BPF runs and tracer work 5-50 times dearer in the machine's own CPU
// time, which is not a production host's CPU.
func (o *Options) tracerMaxCPU(set float64) float64 {
	if set == 0 && o.emulated() {
		return emulatedMaxCPU
	}
	return set
}

func (o *Options) progress() Progress {
	if o.Progress == nil {
		return nopProgress{}
	}
	return o.Progress
}

// node is one connected machine.
type node struct {
	spec     envfile.Node
	t        remote.Transport
	password []byte
	facts    map[string]string
	err      error // connection failure
	// bin is the pingpath binary this node runs (pushed when one of its
	// tracers is ours): the plan names its pushed path and checksum.
	bin *remote.Local
}

func (n *node) role() string { return n.spec.Role }

// contacted tells whether the node has a connection (every node but an
// untraced receiver VM without ssh).
func (n *node) contacted() bool { return n.t != nil }

// readFacts reads the node's facts: as root where tracers run (which checks
// sudo), as the login user on an untraced VM, which is never asked for root.
func (n *node) readFacts(ctx context.Context, then remote.Command) (*remote.Result, error) {
	if n.spec.Untraced {
		return nil, n.userFacts(ctx)
	}
	return n.gatherFacts(ctx, then)
}

// pushedName is the name pingpath pushes itself under in remote_dir.
const pushedName = "pingpath"

// binaryPath is where the pingpath binary with checksum sum is on the node
// once pushed.
func (n *node) binaryPath(sum string) string {
	return remote.PushedPath(n.spec.Options.RemoteDir, pushedName, sum)
}

// push copies the node's pingpath binary (n.bin) to it unless
// a verified copy is there already. It runs as root: root runs the copy.
// check is the result of remote.PushCheck's command when it ran already
// (nil to run it now).
func (n *node) push(ctx context.Context, check *remote.Result) (*remote.PushResult, error) {
	bin := n.bin
	// An executable of another architecture would fail later, at its
	// first start, with "exec format error".
	if err := bin.FitsMachine(n.facts["arch"]); err != nil {
		return nil, fmt.Errorf("pushing pingpath to %s (%s): %w", n.role(), n.spec.SSH, err)
	}
	dir := n.spec.Options.RemoteDir
	var res *remote.PushResult
	var err error
	if check == nil {
		res, err = remote.Push(ctx, n.runAsRoot, bin, dir, pushedName)
	} else {
		res, err = remote.PushChecked(ctx, n.runAsRoot, bin, dir, pushedName, check)
	}
	if err != nil {
		return nil, fmt.Errorf("pushing pingpath to %s (%s): %w", n.role(), n.spec.SSH, err)
	}
	return res, nil
}

// prepare reads the node's facts (as root, which checks sudo) and, when
// withBinary, pushes n.bin unless a verified copy is there (the push's
// check runs in the facts' shell). It returns how long the push took.
func (n *node) prepare(ctx context.Context, withBinary bool, prog Progress) (time.Duration, error) {
	var check remote.Command
	if withBinary {
		var err error
		if check, err = remote.PushCheck(n.spec.Options.RemoteDir, pushedName, n.bin.SHA256); err != nil {
			return 0, err
		}
	}
	checked, err := n.readFacts(ctx, check)
	if err != nil || check.Args == nil {
		return 0, err
	}
	return n.pushTimed(ctx, checked, prog)
}

// pushTimed pushes n.bin (check as for push), reports it to prog and
// returns how long it took.
func (n *node) pushTimed(ctx context.Context, check *remote.Result, prog Progress) (time.Duration, error) {
	prog.NodeState(n.role(), "pushing", "")
	t0 := time.Now()
	res, err := n.push(ctx, check)
	if err != nil {
		return 0, err
	}
	switch {
	case res.Skipped:
		prog.NodeState(n.role(), "pushed", "already there")
	case res.Replaced:
		prog.NodeState(n.role(), "pushed", "replaced a damaged copy")
	default:
		prog.NodeState(n.role(), "pushed", "")
	}
	return time.Since(t0), nil
}

// runAsRoot runs cmd per the node's sudo mode.
func (n *node) runAsRoot(ctx context.Context, cmd remote.Command) (*remote.Result, error) {
	cmd, err := n.sudo(cmd)
	if err != nil {
		return nil, err
	}
	return n.t.Run(ctx, cmd)
}

// sudo wraps cmd per the node's sudo mode.
func (n *node) sudo(cmd remote.Command) (remote.Command, error) {
	return remote.WithSudo(cmd, n.spec.Options.Sudo, n.password)
}

// recordedArgv is the command as the manifest shows it: with sudo and env,
// without the pid wrapper, and of course without the password.
func (n *node) recordedArgv(args []string, env map[string]string) []string {
	cmd, err := remote.WithSudo(remote.Command{Args: args, Env: env}, n.spec.Options.Sudo, []byte{})
	if err != nil {
		return args
	}
	out, err := remote.Argv(cmd)
	if err != nil {
		return args
	}
	return out
}

// runRoot runs cmd as root (per the sudo mode) and returns trimmed stdout; a
// non-zero exit is an error carrying stderr.
func (n *node) runRoot(ctx context.Context, args ...string) (string, error) {
	cmd, err := n.sudo(remote.Command{Args: args})
	if err != nil {
		return "", err
	}
	return n.runCmd(ctx, cmd)
}

func (n *node) runCmd(ctx context.Context, cmd remote.Command) (string, error) {
	res, err := n.t.Run(ctx, cmd)
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		msg := strings.TrimSpace(string(res.Stderr))
		if msg == "" {
			msg = strings.TrimSpace(string(res.Stdout))
		}
		return "", fmt.Errorf("%s: exit %d: %s", cmd.Args[0], res.ExitCode, msg)
	}
	return strings.TrimSpace(string(res.Stdout)), nil
}

// connectAll dials every node in parallel. Each node carries its own error.
func connectAll(ctx context.Context, o *Options) []*node {
	specs := o.Env.Nodes()
	nodes := make([]*node, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		n := &node{spec: s}
		if s.Options.Sudo == envfile.SudoPassword {
			n.password = o.SudoPassword
		}
		nodes[i] = n
		if !s.Contacted() {
			// An untraced receiver VM without ssh only answers pings.
			o.progress().NodeState(s.Role, "untraced", "not contacted: it only answers pings")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.progress().NodeState(s.Role, "connecting", "")
			n.t, n.err = o.Dial(ctx, s)
			if n.err != nil {
				n.t = nil
				n.err = fmt.Errorf("%s: %w", s.Role, n.err)
				o.progress().NodeState(s.Role, "failed", n.err.Error())
				return
			}
			o.progress().NodeState(s.Role, "connected", "")
		}()
	}
	wg.Wait()
	return nodes
}

func closeAll(nodes []*node) {
	for _, n := range nodes {
		if n.t != nil {
			n.t.Close()
		}
	}
}

// factsScript gathers what a run records about a node and what check
// reports. It is a constant: no value from the environment file is in it.
// It forks as little as it can: every SSH command already pays for a login
// shell (and its rc files) on the node.
const factsScript = `
k() { printf '%s=%s\n' "$1" "$2"; }
f() { [ -r "$2" ] && IFS= read -r v < "$2" && k "$1" "$v"; }
f hostname /proc/sys/kernel/hostname
f kernel /proc/sys/kernel/osrelease
k arch "$(uname -m)"
k uid "$(id -u)"
f boot_id /proc/sys/kernel/random/boot_id
[ -e /sys/kernel/btf/vmlinux ] && k btf yes || k btf no
if [ -d /sys/kernel/tracing/events ]; then k tracefs mounted
else
	while IFS= read -r l; do case "$l" in *tracefs*) k tracefs available; break ;; esac; done < /proc/filesystems
fi
if [ -e /sys/kernel/tracing/kprobe_events ] || [ -e /sys/kernel/debug/tracing/kprobe_events ]; then k kprobe_events yes
elif [ -d /sys/kernel/tracing/events ]; then k kprobe_events no
else k kprobe_events unknown; fi
n=0 m=
while IFS= read -r l; do
	case "$l" in processor*) n=$((n+1)) ;; "model name"*) [ -z "$m" ] && m=${l#*: } ;; esac
done < /proc/cpuinfo
k cpu_model "$m"
k cpus "$n"
f cpuidle_driver /sys/devices/system/cpu/cpuidle/current_driver
f cpuidle_governor /sys/devices/system/cpu/cpuidle/current_governor_ro
f intel_idle_max_cstate /sys/module/intel_idle/parameters/max_cstate
f processor_max_cstate /sys/module/processor/parameters/max_cstate
f cmdline /proc/cmdline
f tuned_profile /etc/tuned/active_profile
f clocksource /sys/devices/system/clocksource/clocksource0/current_clocksource
command -v ping >/dev/null 2>&1 && k ping yes || k ping no
command -v python3 >/dev/null 2>&1 && k python3 yes || k python3 no
for i in $PINGPATH_INTERFACES; do
	case "$i" in *[!A-Za-z0-9_.:@-]*) continue ;; esac
	# ip and ethtool ask the kernel in this network namespace (/sys/class/net
	# shows the one that mounted sysfs).
	# (A function: its own positional parameters; the script's "$@" runs below.)
	mtu() { n=$1; shift; while [ $# -gt 1 ]; do [ "$1" = mtu ] && k "nic $n mtu" "$2"; shift; done; }
	mtu "$i" $(ip -o link show dev "$i" 2>/dev/null)
	command -v ethtool >/dev/null 2>&1 || continue
	ethtool -i "$i" 2>/dev/null | while IFS=': ' read -r a b; do [ "$a" = driver ] && k "nic $i driver" "$b"; done
	ethtool "$i" 2>/dev/null | while IFS=': 	' read -r a b; do [ "$a" = Speed ] && k "nic $i speed" "$b"; done
	ethtool -k "$i" 2>/dev/null | {
		o=
		while read -r a b c; do
			case "$a" in rx-checksumming:|tx-checksumming:|scatter-gather:|tcp-segmentation-offload:|generic-segmentation-offload:|generic-receive-offload:|large-receive-offload:) o="$o ${a%:}=$b" ;; esac
		done
		[ -n "$o" ] && k "nic $i offloads" "${o# }"
	}
done
`

// interfaces are the node's configured interfaces: the guest NIC of a VM
// (when set), the vnet and physical NICs of a host.
func (n *node) interfaces() []string {
	if n.spec.IsVM() {
		if n.spec.Interface != "" {
			return []string{n.spec.Interface}
		}
		return nil
	}
	return append([]string{n.spec.VnetInterface}, n.spec.PhyInterfaces...)
}

// gatherFacts runs factsScript as root (per the node's sudo mode), then,
// in the same shell (one login shell less on the node), the command then
// if it has Args; its result is returned, the facts' lines ahead of its
// output. It fails, with advice, when sudo does not work or the commands
// do not run as root.
func (n *node) gatherFacts(ctx context.Context, then remote.Command) (*remote.Result, error) {
	// The interfaces go in the environment (quoted by remote), never into
	// the script; the script skips names with characters no interface has.
	res, err := n.runAsRoot(ctx, remote.Command{Args: append([]string{"sh", "-c", factsScript + `[ $# -eq 0 ] || exec "$@"`, "sh"}, then.Args...),
		Env: map[string]string{"PINGPATH_INTERFACES": strings.Join(n.interfaces(), " ")}})
	if err == nil {
		n.facts = parseFacts(string(res.Stdout))
		if n.facts["uid"] == "" {
			// The script did not run (sudo refused, or no shell).
			n.facts = nil
			err = fmt.Errorf("exit %d: %s", res.ExitCode, cmp.Or(firstLine(res.Stderr), firstLine(res.Stdout)))
		}
	}
	if err != nil {
		switch n.spec.Options.Sudo {
		case envfile.SudoPasswordless:
			return nil, fmt.Errorf("sudo -n failed on %s (%v): allow passwordless sudo for the login user, or set sudo: password", n.role(), err)
		case envfile.SudoPassword:
			return nil, fmt.Errorf("sudo with password failed on %s (%v): wrong password, or the user may not sudo", n.role(), err)
		}
		return nil, fmt.Errorf("reading facts on %s: %w", n.role(), err)
	}
	if uid := n.facts["uid"]; uid != "0" {
		return nil, fmt.Errorf("commands on %s run as uid %s, not root: set sudo: passwordless or sudo: password for it", n.role(), uid)
	}
	return res, nil
}

// userFacts runs factsScript as the login user, for check to report what it
// can when root is not available.
func (n *node) userFacts(ctx context.Context) error {
	out, err := n.runCmd(ctx, remote.Command{Args: []string{"sh", "-c", factsScript}})
	if err != nil {
		return fmt.Errorf("reading facts on %s: %w", n.role(), err)
	}
	n.facts = parseFacts(out)
	return nil
}

// missingInterfaces reports which of names do not exist on the node. It
// reads /proc/net/dev, which shows the caller's network namespace (unlike
// /sys/class/net, which shows the namespace that mounted sysfs).
func (n *node) missingInterfaces(ctx context.Context, names []string) ([]string, error) {
	out, err := n.runCmd(ctx, remote.Command{Args: []string{"cat", "/proc/net/dev"}})
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok {
			have[strings.TrimSpace(name)] = true
		}
	}
	var missing []string
	for _, name := range names {
		if !have[name] {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// ownsIP tells whether ip is configured on one of the node's interfaces
// (and on which).
func (n *node) ownsIP(ctx context.Context, ip string) (string, error) {
	out, err := n.runCmd(ctx, remote.Command{Args: []string{"ip", "-o", "-4", "addr", "show"}})
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" && strings.SplitN(f[i+1], "/", 2)[0] == ip && len(f) > 1 {
				return strings.TrimSuffix(f[1], ":"), nil
			}
		}
	}
	return "", nil
}

// firstLine is the first line of b, for short error messages.
func firstLine(b []byte) string {
	l, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(l)
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

// parseFacts reads the key=value lines of factsScript.
func parseFacts(out string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && v != "" {
			m[k] = v
		}
	}
	return m
}
