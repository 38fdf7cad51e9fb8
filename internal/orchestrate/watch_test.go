package orchestrate

import (
	"slices"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/envfile"
)

// Two pairs whose VMs sit on the same two hosts (the second pair's VMs are
// other VMs of the same hosts): four VMs, two hosts, one host tracer per
// host serving both pairs with every pair's VM device, a vm tracer per VM,
// vhost tracers per host and pair, and each pair's ping on its sender VM.
func TestPlanWatchSharesHostTracers(t *testing.T) {
	side := func(vm, ip, host, vnet string) envfile.Side {
		return envfile.Side{VM: envfile.VM{SSH: vm, IP: ip}, Host: envfile.Host{SSH: host, VnetInterface: vnet, PhyInterface: "eth0,eth1"}}
	}
	env := &envfile.Environment{Environment: "t", Pairs: []envfile.Pair{
		{Name: "a", Sender: side("vm1", "10.0.0.1", "hv1", "vnet1"), Receiver: side("vm2", "10.0.0.2", "hv2", "vnet2")},
		{Name: "b", Sender: side("vm3", "10.0.0.3", "hv1:22", "vnet3"), Receiver: side("vm4", "10.0.0.4", "root@hv2", "vnet4")},
	}}
	o := &WatchOptions{Options: Options{Env: env}}
	if err := o.defaults(); err == nil {
		t.Fatal("defaults without a sink")
	}
	machines, err := planWatch(o)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string][]string{}
	for _, m := range machines {
		for _, j := range m.jobs {
			desc := j.stream.Tool + "(" + strings.Join(j.stream.Pairs, ",") + ")"
			if j.ping {
				desc += " → " + j.pingDst
			} else {
				desc += " " + strings.Join(j.args("BIN")[3:], " ")
			}
			jobs[m.name] = append(jobs[m.name], desc)
		}
	}
	if len(machines) != 6 {
		t.Fatalf("%d machines, want 6 (hv1:22 is hv1, root@hv2 is hv2): %v", len(machines), jobs)
	}
	hv1 := jobs["hv1"]
	if len(hv1) != 5 || !strings.HasPrefix(hv1[0], "host(a,b) --src-ip 10.0.0.1 --dst-ip 10.0.0.2 --pair 10.0.0.3,10.0.0.4 --vm-interface vnet1,vnet3 --phy-interface eth0,eth1 ") {
		t.Errorf("hv1 jobs: %q", hv1)
	}
	for _, j := range hv1 {
		if !strings.Contains(j, "--renew-on-stdin") || !strings.Contains(j, "--stats-interval") {
			t.Errorf("hv1 job without renewal or stats: %s", j)
		}
	}
	if !slices.ContainsFunc(jobs["vm3"], func(j string) bool { return j == "ping(b) → 10.0.0.4" }) ||
		!slices.ContainsFunc(jobs["vm4"], func(j string) bool {
			return strings.HasPrefix(j, "vm(b) --src-ip 10.0.0.3 --dst-ip 10.0.0.4 --direction rx")
		}) {
		t.Errorf("vm3 %q, vm4 %q", jobs["vm3"], jobs["vm4"])
	}
}

// On emulated machines watch gives its tracers what run gives them there
// (TestPlanEmulatedFlags): --max-cpu and its window for every tracer, the
// host tracer's longer --timeout, the vhost tracers' --arm-window; and none
// of them elsewhere.
func TestPlanWatchEmulated(t *testing.T) {
	for _, emulation := range []string{"", "emulated: QEMU TCG"} {
		env := &envfile.Environment{Environment: "t", Emulation: emulation,
			Sender:   envfile.Side{VM: envfile.VM{SSH: "sv", IP: "198.18.1.1"}, Host: envfile.Host{SSH: "sh", VnetInterface: "vnet0", PhyInterface: "eth0"}},
			Receiver: envfile.Side{VM: envfile.VM{SSH: "rv", IP: "198.18.2.1"}, Host: envfile.Host{SSH: "rh", VnetInterface: "vnet1", PhyInterface: "eth1"}}}
		machines, err := planWatch(&WatchOptions{Options: Options{Env: env}})
		if err != nil {
			t.Fatal(err)
		}
		tracers := 0
		for _, m := range machines {
			for _, j := range m.jobs {
				if j.ping {
					continue
				}
				tracers++
				args := j.args("BIN")
				want := map[string]string{"--max-cpu": "", "--max-cpu-window": "", "--timeout": "", "--arm-window": ""}
				if j.stream.Tool == "vm" {
					want["--timeout"] = "2s" // the vm tracer's own, always
				}
				if emulation != "" {
					want["--max-cpu"], want["--max-cpu-window"] = "150", "20s"
					switch j.stream.Tool {
					case "host":
						want["--timeout"] = "10s"
					case "vhost-rx", "vhost-tx":
						want["--arm-window"] = "500ms"
					}
				}
				for flag, w := range want {
					got := ""
					if i := slices.Index(args, flag); i >= 0 {
						got = args[i+1]
					}
					if got != w {
						t.Errorf("emulation %q: %s %s %s %q, want %q", emulation, m.name, j.stream.Tool, flag, got, w)
					}
				}
			}
		}
		if tracers != 8 {
			t.Errorf("emulation %q: %d tracers, want 8 (vm, host, vhost-rx, vhost-tx on each side)", emulation, tracers)
		}
	}
}
