package envfile

import (
	"fmt"
	"net/netip"
	"os"
	"path"
	"strings"
	"time"
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
	v.sshOptions("ssh", e.SSH)
	for _, s := range []struct {
		name string
		side *Side
	}{{"sender", &e.Sender}, {"receiver", &e.Receiver}} {
		vm, host := s.name+".vm", s.name+".host"
		v.dest(vm+".ssh", s.side.VM.SSH)
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
		if s.side.Host.PhyInterface == "" {
			v.fail(host+".phy_interface", "missing (the physical NIC, or comma-separated bond members)")
		} else {
			for _, n := range SplitInterfaces(s.side.Host.PhyInterface) {
				v.ifname(host+".phy_interface", n)
			}
		}
		v.sshOptions(host+".ssh_options", s.side.Host.Options)
	}
	if e.Sender.VM.IP != "" && e.Sender.VM.IP == e.Receiver.VM.IP {
		v.fail("receiver.vm.ip", "same address as sender.vm.ip (%s)", e.Sender.VM.IP)
	}
	m := e.Measurement
	if m.PingCount < 1 || m.PingCount > 1_000_000 {
		v.fail("measurement.ping_count", "%d out of range 1..1000000", m.PingCount)
	}
	v.duration("measurement.interval", m.Interval, time.Millisecond)
	if m.Duration != "" {
		v.duration("measurement.duration", m.Duration, time.Second)
	}
	v.tools(e.Tools)
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

func (v *validator) duration(field, s string, min time.Duration) {
	d, err := time.ParseDuration(s)
	if err != nil {
		v.fail(field, "%q is not a duration (examples: 200ms, 1s, 2m)", s)
		return
	}
	if d < min {
		v.fail(field, "%s is shorter than %s", d, min)
	}
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
		v.duration(field+".connect_timeout", o.ConnectTimeout, 100*time.Millisecond)
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
