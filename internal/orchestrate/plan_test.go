package orchestrate

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/remote"
)

// TestPlanUntracedAndBTF: untraced VMs get no tracer (the hosts keep all
// theirs), and a node's btf: file reaches each of its tracers as --btf.
func TestPlanUntracedAndBTF(t *testing.T) {
	env := &envfile.Environment{
		Sender: envfile.Side{VM: envfile.VM{SSH: "sv", IP: "198.18.1.1", Untraced: true},
			Host: envfile.Host{SSH: "sh", VnetInterface: "vnet0", PhyInterface: "eth0", BTF: "/var/lib/btf/vmlinux"}},
		Receiver: envfile.Side{VM: envfile.VM{IP: "198.18.2.1", Untraced: true},
			Host: envfile.Host{SSH: "rh", VnetInterface: "vnet1", PhyInterface: "eth1"}},
	}
	nodes := map[string]*node{}
	for _, n := range env.Nodes() {
		nodes[n.Role] = &node{spec: n, bin: &remote.Local{SHA256: strings.Repeat("ab", 32)}}
	}
	phases := plan(planInput{env: env, nodes: nodes, maxDuration: time.Minute})
	var got []string
	for _, ph := range phases {
		for _, tr := range ph {
			got = append(got, tr.node.role()+"/"+tr.tool)
			btf := slices.Index(tr.args, "--btf")
			switch {
			case tr.node.role() == "sender-host" && (btf < 0 || tr.args[btf+1] != "/var/lib/btf/vmlinux"):
				t.Errorf("%s %s: no --btf in %q", tr.node.role(), tr.tool, tr.args)
			case tr.node.role() != "sender-host" && btf >= 0:
				t.Errorf("%s %s: --btf without btf: %q", tr.node.role(), tr.tool, tr.args)
			}
		}
	}
	want := "receiver-host/host receiver-host/vhost-rx receiver-host/vhost-tx sender-host/host sender-host/vhost-rx sender-host/vhost-tx"
	if strings.Join(got, " ") != want {
		t.Errorf("plan %v, want %s", got, want)
	}
}

// TestPlanOriginBackstop: the origin tools run under timeout(1) in the
// foreground (so the tool alone gets the SIGINT, once), with --max-duration's
// time, and its SIGKILL no earlier than pingpath's own stop would kill.
func TestPlanOriginBackstop(t *testing.T) {
	env := &envfile.Environment{
		Sender: envfile.Side{VM: envfile.VM{SSH: "sv", IP: "198.18.1.1"},
			Host: envfile.Host{SSH: "sh", VnetInterface: "vnet0", PhyInterface: "eth0"}},
		Receiver: envfile.Side{VM: envfile.VM{SSH: "rv", IP: "198.18.2.1"},
			Host: envfile.Host{SSH: "rh", VnetInterface: "vnet1", PhyInterface: "eth1"}},
		Tools: envfile.Tools{KernelICMPRTT: "/opt/o/kernel_icmp_rtt.py", ICMPDropDetector: "/opt/o/icmp_drop_detector.py", Python: "python3"},
	}
	nodes := map[string]*node{}
	for _, n := range env.Nodes() {
		nodes[n.Role] = &node{spec: n, bin: &remote.Local{SHA256: strings.Repeat("ab", 32)}}
	}
	for _, c := range []struct {
		killAfter time.Duration
		want      string
	}{
		{0, "timeout --foreground -s INT -k 10 120 python3 -u /opt/o/"},
		{7 * time.Second, "timeout --foreground -s INT -k 10 120 python3 -u /opt/o/"},
		{70 * time.Second, "timeout --foreground -s INT -k 70 120 python3 -u /opt/o/"},
	} {
		origins := 0
		for _, ph := range plan(planInput{env: env, nodes: nodes, maxDuration: 2 * time.Minute, killAfter: c.killAfter}) {
			for _, tr := range ph {
				if !tr.origin {
					continue
				}
				origins++
				if got := strings.Join(tr.args, " "); !strings.HasPrefix(got, c.want) {
					t.Errorf("kill after %s: %s %s runs %q, want it to start with %q", c.killAfter, tr.node.role(), tr.tool, got, c.want)
				}
			}
		}
		if origins != 4 {
			t.Errorf("%d origin tools planned, want 4", origins)
		}
	}
}

// TestPlanEmulatedFlags: on emulated machines (env.yaml emulation:) the host
// tracers get a --timeout ten times their default, since a round trip
// there can outlast it, and the vhost tracers an --arm-window ten times
// theirs, since a worker can stall that long, and every tracer a
// --max-cpu-window ten times its default, since an emulated machine's CPU
// time comes in jumps; elsewhere they keep their own defaults.
func TestPlanEmulatedFlags(t *testing.T) {
	env := &envfile.Environment{
		Sender: envfile.Side{VM: envfile.VM{SSH: "sv", IP: "198.18.1.1"},
			Host: envfile.Host{SSH: "sh", VnetInterface: "vnet0", PhyInterface: "eth0"}},
		Receiver: envfile.Side{VM: envfile.VM{SSH: "rv", IP: "198.18.2.1"},
			Host: envfile.Host{SSH: "rh", VnetInterface: "vnet1", PhyInterface: "eth1"}},
	}
	nodes := map[string]*node{}
	for _, n := range env.Nodes() {
		nodes[n.Role] = &node{spec: n, bin: &remote.Local{SHA256: strings.Repeat("ab", 32)}}
	}
	for _, emulation := range []string{"", "emulated: QEMU TCG"} {
		env.Emulation = emulation
		o := &Options{Env: env}
		want, wantArm, wantWindow := "", "", ""
		if emulation != "" {
			want, wantArm, wantWindow = "10s", "500ms", "20s"
		}
		hosts := 0
		for _, ph := range plan(planInput{env: env, nodes: nodes, maxDuration: time.Minute, emulated: o.emulated()}) {
			for _, tr := range ph {
				window := ""
				if i := slices.Index(tr.args, "--max-cpu-window"); i >= 0 {
					window = tr.args[i+1]
				}
				if window != wantWindow {
					t.Errorf("emulation %q: %s %s --max-cpu-window %q, want %q", emulation, tr.node.role(), tr.tool, window, wantWindow)
				}
				got, arm := "", ""
				if i := slices.Index(tr.args, "--timeout"); i >= 0 {
					got = tr.args[i+1]
				}
				if i := slices.Index(tr.args, "--arm-window"); i >= 0 {
					arm = tr.args[i+1]
				}
				if w := map[bool]string{true: wantArm}[strings.HasPrefix(tr.tool, "vhost-")]; arm != w {
					t.Errorf("emulation %q: %s %s --arm-window %q, want %q", emulation, tr.node.role(), tr.tool, arm, w)
				}
				if tr.tool == "host" {
					hosts++
				} else {
					want := ""
					if got != want {
						t.Errorf("emulation %q: %s %s got --timeout %s", emulation, tr.node.role(), tr.tool, got)
					}
					continue
				}
				if got != want {
					t.Errorf("emulation %q: %s host --timeout %q, want %q", emulation, tr.node.role(), got, want)
				}
			}
		}
		if hosts != 2 {
			t.Errorf("emulation %q: %d host tracers planned, want 2", emulation, hosts)
		}
	}
}
