package envfile

import (
	"fmt"
	"net/netip"
	"os"
	"path"
	"strings"
	"time"
	"unicode"
)

// Sudo modes of SSHOptions.Sudo.
const (
	SudoNone         = "none"         // the login user is root already
	SudoPasswordless = "passwordless" // sudo -n
	SudoPassword     = "password"     // sudo -S, password asked once on the terminal
)

type validator struct {
	file string
	pos  map[string]int
	errs Errors
}

// fail records a problem with field; the line is the field's own, or that of
// its nearest present parent when the field is missing.
func (v *validator) fail(field, format string, args ...any) {
	line := 0
	for p := field; ; {
		if l, ok := v.pos[p]; ok {
			line = l
			break
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			line = v.pos[""]
			break
		}
		p = p[:i]
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) check(e *Environment) {
	v.name(e.Environment)
	v.sshOptions("ssh", e.SSH)
	if len(e.Pairs) == 0 {
		v.pair("", e.Sender, e.Receiver, e.SSH.Port)
	} else {
		v.pairs(e)
	}
	m := e.Measurement
	countOK := true
	if err := CheckPingCount(m.PingCount); err != nil {
		v.fail("measurement.ping_count", "%v", err)
		countOK = false
	}
	if d, ok := v.duration("measurement.interval", m.Interval, CheckInterval); ok && countOK {
		if err := CheckRunLength(m.PingCount, d); err != nil {
			v.fail("measurement.ping_count", "%v", err)
		}
	}
	if m.Duration != "" {
		v.duration("measurement.duration", m.Duration, CheckDuration)
	}
	v.tools(e.Tools)
}

// pairs checks a file with several pairs: each pair as a whole file's
// sender and receiver, unique names, and every machine named in several
// places the same kind of node each time (a VM with the same address).
func (v *validator) pairs(e *Environment) {
	if e.Sender != (Side{}) || e.Receiver != (Side{}) {
		v.fail("pairs", "give either sender and receiver (one pair) or pairs, not both")
	}
	names := map[string]int{}
	type seen struct {
		field, ip string
		vm        bool
	}
	machines := map[string]seen{}
	for i, p := range e.Pairs {
		prefix := fmt.Sprintf("pairs[%d]", i)
		name := p.PairName(i)
		if strings.IndexFunc(name, func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("._-", r)
		}) >= 0 {
			v.fail(prefix+".name", "%q: only letters, digits and . _ - (it labels metrics)", name)
		}
		if j, dup := names[name]; dup {
			v.fail(prefix+".name", "%q is also the name of pairs[%d]", name, j)
		}
		names[name] = i
		v.pair(prefix+".", p.Sender, p.Receiver, e.SSH.Port)
		for _, n := range []struct {
			field string
			vm    bool
			ssh   string
			ip    string
			opts  SSHOptions
		}{
			{prefix + ".sender.vm.ssh", true, p.Sender.VM.SSH, p.Sender.VM.IP, p.Sender.VM.Options},
			{prefix + ".sender.host.ssh", false, p.Sender.Host.SSH, "", p.Sender.Host.Options},
			{prefix + ".receiver.host.ssh", false, p.Receiver.Host.SSH, "", p.Receiver.Host.Options},
			{prefix + ".receiver.vm.ssh", true, p.Receiver.VM.SSH, p.Receiver.VM.IP, p.Receiver.VM.Options},
		} {
			key, ok := MachineKey(n.ssh, n.opts, e.SSH.Port)
			if !ok {
				continue // reported by dest
			}
			first, ok := machines[key]
			switch {
			case !ok:
				machines[key] = seen{n.field, n.ip, n.vm}
			case first.vm != n.vm:
				v.fail(n.field, "%q is a %s here and a %s in %s", n.ssh, kind(n.vm), kind(first.vm), first.field)
			case n.vm && n.ip != first.ip:
				v.fail(n.field, "%q is the same VM as %s, with another ip (%s, there %s)", n.ssh, first.field, n.ip, first.ip)
			}
		}
	}
}

func kind(vm bool) string {
	if vm {
		return "VM"
	}
	return "host"
}

// pair checks one pair's sender and receiver; prefix is "" for the file's
// own sender and receiver, "pairs[N]." for a pair of pairs.
func (v *validator) pair(prefix string, sender, receiver Side, port int) {
	for _, s := range []struct {
		name string
		side *Side
	}{{prefix + "sender", &sender}, {prefix + "receiver", &receiver}} {
		vm, host := s.name+".vm", s.name+".host"
		// An untraced receiver VM only answers pings: nothing connects to it.
		if !(strings.HasSuffix(s.name, "receiver") && s.side.VM.Untraced && s.side.VM.SSH == "") {
			v.dest(vm+".ssh", s.side.VM.SSH)
		}
		if s.side.VM.Untraced && s.side.VM.BTF != "" {
			v.fail(vm+".btf", "set on an untraced VM (no tracer runs there)")
		}
		v.nodePath(vm+".btf", s.side.VM.BTF)
		v.nodePath(host+".btf", s.side.Host.BTF)
		v.ipv4(vm+".ip", s.side.VM.IP)
		if s.side.VM.Interface != "" {
			v.ifname(vm+".interface", s.side.VM.Interface)
		}
		v.sshOptions(vm+".ssh_options", s.side.VM.Options)
		v.dest(host+".ssh", s.side.Host.SSH)
		if s.side.Host.VnetInterface == "" {
			v.fail(host+".vnet_interface", "missing (the VM's tap/vnet device on this host, e.g. vnet0)")
		} else {
			v.ifname(host+".vnet_interface", s.side.Host.VnetInterface)
		}
		if phy := s.side.Host.PhyInterface; phy == "" {
			v.fail(host+".phy_interface", "missing (the physical NIC, or comma-separated bond members)")
		} else {
			for _, n := range strings.Split(phy, ",") {
				if n = strings.TrimSpace(n); n == "" {
					v.fail(host+".phy_interface", "%q has an empty interface name", phy)
					break
				}
				v.ifname(host+".phy_interface", n)
			}
		}
		v.sshOptions(host+".ssh_options", s.side.Host.Options)
	}
	if sender.VM.IP != "" && sender.VM.IP == receiver.VM.IP {
		v.fail(prefix+"receiver.vm.ip", "same address as %ssender.vm.ip (%s)", prefix, sender.VM.IP)
	}
	v.distinctNodes(prefix, sender, receiver, port)
}

// name checks the environment's name, which reports show (as HTML and
// Markdown): letters, digits and a little punctuation, no markup.
func (v *validator) name(s string) {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(" ._-:/+@(),=", r) {
			v.fail("environment", "%q: only letters, digits, spaces and . _ - : / + @ ( ) , = (it is shown in reports)", s)
			return
		}
	}
}

// distinctNodes refuses a machine named twice in one pair (the same host
// and port, whatever the user): a pair's four nodes are four machines.
func (v *validator) distinctNodes(prefix string, sender, receiver Side, port int) {
	seen := map[string]string{}
	for _, n := range []struct {
		field, ssh string
		opts       SSHOptions
	}{
		{prefix + "sender.vm.ssh", sender.VM.SSH, sender.VM.Options},
		{prefix + "sender.host.ssh", sender.Host.SSH, sender.Host.Options},
		{prefix + "receiver.host.ssh", receiver.Host.SSH, receiver.Host.Options},
		{prefix + "receiver.vm.ssh", receiver.VM.SSH, receiver.VM.Options},
	} {
		key, ok := MachineKey(n.ssh, n.opts, port)
		if !ok {
			continue // reported by dest (or an untraced receiver VM without ssh)
		}
		if first, ok := seen[key]; ok {
			v.fail(n.field, "%q is the same node as %s", n.ssh, first)
			continue
		}
		seen[key] = n.field
	}
}

func (v *validator) dest(field, s string) {
	if s == "" {
		v.fail(field, "missing (an ssh_config alias or [user@]host[:port])")
		return
	}
	if _, err := ParseDestination(s); err != nil {
		v.fail(field, "%v", err)
	}
}

// nodePath checks an optional path on a node: absolute, and free of what
// would let it read as an option.
func (v *validator) nodePath(field, s string) {
	if s != "" && (!path.IsAbs(s) || strings.ContainsAny(s, "\n\x00")) {
		v.fail(field, "%q must be an absolute path on the node", s)
	}
}

func (v *validator) ipv4(field, s string) {
	if s == "" {
		v.fail(field, "missing (the VM's IPv4 address on the measured path)")
		return
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		v.fail(field, "%q is not an IPv4 address", s)
	}
}

// ifname accepts what the kernel accepts as an interface name.
func (v *validator) ifname(field, s string) {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\x00") {
		v.fail(field, "%q is not a valid interface name", s)
	}
}

// duration parses a duration field and checks it against its bounds.
func (v *validator) duration(field, s string, check func(time.Duration) error) (time.Duration, bool) {
	d, err := time.ParseDuration(s)
	if err != nil {
		v.fail(field, "%q is not a duration (examples: 200ms, 1s, 2m)", s)
		return 0, false
	}
	if err := check(d); err != nil {
		v.fail(field, "%v", err)
		return 0, false
	}
	return d, true
}

func (v *validator) sshOptions(field string, o SSHOptions) {
	if o.Port < 0 || o.Port > 65535 {
		v.fail(field+".port", "%d out of range 1..65535", o.Port)
	}
	switch o.Sudo {
	case "", SudoNone, SudoPasswordless, SudoPassword:
	default:
		v.fail(field+".sudo", "%q: want none, passwordless or password", o.Sudo)
	}
	if o.ConnectTimeout != "" {
		v.duration(field+".connect_timeout", o.ConnectTimeout, checkConnectTimeout)
	}
	if o.RemoteDir != "" && (!path.IsAbs(o.RemoteDir) || path.Clean(o.RemoteDir) == "/") {
		v.fail(field+".remote_dir", "%q must be an absolute path below /", o.RemoteDir)
	}
	if o.Jump != "" {
		if _, err := ParseDestination(o.Jump); err != nil {
			v.fail(field+".jump", "%v", err)
		}
	}
	for _, f := range []struct{ name, path string }{
		{"identity_file", o.IdentityFile}, {"config", o.Config},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(ExpandHome(f.path)); err != nil {
			v.fail(field+"."+f.name, "%v", err)
		}
	}
}

func (v *validator) tools(t Tools) {
	for _, f := range []struct{ name, path string }{
		{"kernel_icmp_rtt", t.KernelICMPRTT},
		{"icmp_drop_detector", t.ICMPDropDetector},
		{"tun_tx_to_kvm_irq", t.TunTxToKVMIRQ},
		{"kvm_vhost_tun_latency", t.KVMVhostTunLatency},
	} {
		if f.path != "" && !path.IsAbs(f.path) {
			v.fail("tools."+f.name, "%q must be an absolute path on the nodes", f.path)
		}
	}
	if t.KVMVhostTunLatency != "" && !strings.Contains(path.Base(t.KVMVhostTunLatency), "no_discovery") {
		v.fail("tools.kvm_vhost_tun_latency",
			"%q: only the single-phase kvm_vhost_tun_latency_no_discovery.py (--device/--flow) can be driven; the two-phase details script needs a discovery run first", t.KVMVhostTunLatency)
	}
}

// SplitInterfaces splits a comma-separated interface list (bond members),
// dropping blanks.
func SplitInterfaces(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ExpandHome replaces a leading "~/" with the user's home directory.
func ExpandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if h, err := os.UserHomeDir(); err == nil {
			return h + p[1:]
		}
	}
	return p
}
