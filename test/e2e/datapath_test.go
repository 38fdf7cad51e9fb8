package e2e

// Real cloud data paths on the KVM lab (issue 23): the hosts' switch is
// Open vSwitch, their uplink a kernel bond of two NICs both cabled to the
// wire, and the VMs' frames cross the wire inside Geneve, so a ping goes
// vnet0 → OVS datapath → genev_sys_6081 → bond0 → eth0|eth1 → wire and back
// on either member. One lab serves every check (bringing a KVM lab up takes
// minutes); the whole test takes 5-15 minutes on the 2-CPU development
// machine, depending on its load (see docs/lab.md).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/record"
)

const (
	// dpPings at dpInterval make one series: ping's RTT under TCG is
	// 5-100 ms, so 200 ms keeps the pings apart.
	dpPings    = 10
	dpInterval = 200 * time.Millisecond
	// dpDropPings is the series run through the OVS drop flow.
	dpDropPings = 8
	// dpRunTimeout bounds one `pingpath run` on the KVM lab: the tracers'
	// start (BPF verification and attach under TCG, minutes at a load of
	// 20), the pings, the stop and the collection.
	dpRunTimeout = 20 * time.Minute
)

// TestKVMDatapathOVSGeneveBond runs the workflow over Open vSwitch with a
// Geneve overlay on bonded uplinks. Like TestKVMWholePath it takes longer
// than `make test` can spend (13-18 minutes on a 2-CPU machine, the OVS
// image build not counted), so it runs when asked: PINGPATH_KVM_E2E=1
// (make test-kvm-e2e).
func TestKVMDatapathOVSGeneveBond(t *testing.T) {
	if os.Getenv(kvmE2EVar) == "" {
		t.Skipf("the OVS/Geneve/bond data path on the KVM lab takes 13-18 minutes: set %s=1 (make test-kvm-e2e) to run it", kvmE2EVar)
	}
	requireLab(t)
	start := time.Now()
	l := labtest.UpKVM(t, lab.Options{KVM: lab.KVMOptions{Datapath: "ovs", Bond: true, Overlay: "geneve"}})
	t.Logf("kvm lab %s up in %s (host boots %v): %s", l.Name, time.Since(start).Round(time.Second), l.KVM.HostBoots, l.KVM.Describe())
	t.Run("BuiltWithTheRealTools", func(t *testing.T) {
		for _, h := range []string{lab.SenderHost, lab.ReceiverHost} {
			// OVS: br0 holds the VM's tap and the Geneve tunnel port, and
			// vswitchd made the kernel's Geneve device.
			ports := strings.Fields(sshNode(t, l, h, "ovs-vsctl list-ports br0"))
			if !slices.Contains(ports, "vnet0") || !slices.Contains(ports, "tun0") {
				t.Errorf("%s: br0 ports %v, want vnet0 and tun0", h, ports)
			}
			if typ := strings.TrimSpace(sshNode(t, l, h, "ovs-vsctl get interface tun0 type")); typ != "geneve" {
				t.Errorf("%s: tun0 is %s, want geneve", h, typ)
			}
			if out := sshNode(t, l, h, "ip -d link show genev_sys_6081"); !strings.Contains(out, "geneve") || !strings.Contains(out, "openvswitch") {
				t.Errorf("%s: no OVS Geneve device:\n%s", h, out)
			}
			// The bond: both NICs enslaved and up, carrying the underlay address.
			bond := sshNode(t, l, h, "cat /proc/net/bonding/bond0")
			for _, want := range []string{"Bonding Mode: load balancing (xor)", "Slave Interface: eth0", "Slave Interface: eth1"} {
				if !strings.Contains(bond, want) {
					t.Errorf("%s: /proc/net/bonding/bond0 lacks %q:\n%s", h, want, bond)
				}
			}
			if addr := sshNode(t, l, h, "ip -4 -o addr show dev bond0"); !strings.Contains(addr, l.KVM.Underlay[h].String()) {
				t.Errorf("%s: bond0 lacks its underlay address %s: %s", h, l.KVM.Underlay[h], addr)
			}
		}
	})

	base := dpRun(t, l, "base", dpPings, "vm,host,vhost-rx,vhost-tx")
	t.Run("EverySegmentWithICMPIdentity", func(t *testing.T) { dpCheckEverySegment(t, base, dpPings) })
	t.Run("InnerICMPOnTheUplink", func(t *testing.T) { dpCheckEncapsulated(t, base, "geneve") })
	t.Run("ReplyOnTheOtherMember", func(t *testing.T) { dpCheckOtherMember(t, base) })
	t.Run("OVSDropFlow", func(t *testing.T) { dpCheckOVSDrop(t, l) })
	t.Logf("the whole test took %s", time.Since(start).Round(time.Second))
}

// dpRun runs `pingpath run` with the tracers named on the lab and returns
// the series with its report.json.
func dpRun(t *testing.T, l *lab.Lab, name string, count int, tracers string) *series {
	t.Helper()
	s := &series{Name: name, Lab: l, Dir: filepath.Join(t.TempDir(), name)}
	ctx, cancel := context.WithTimeout(context.Background(), dpRunTimeout)
	defer cancel()
	began := time.Now()
	out, err := runPingpath(ctx, labtest.Binary(t), "run", "-c", l.EnvFile, "-o", s.Dir,
		"--count", fmt.Sprint(count), "--interval", dpInterval.String(), "--tracers", tracers,
		// Tracing costs the emulated CPUs many times what it costs real
		// ones, and a loaded machine starts tracers slowly; this test is
		// about paths and identities, not cost (the cost gate has its own
		// tests).
		"--max-cpu", "200", "--ready-timeout", "10m")
	s.Report = readJSONIfAny(s.Dir)
	if err != nil && s.Report == nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Logf("%s run took %s (exit: %v):\n%s", name, time.Since(began).Round(time.Second), err, summaryOf(out))
	if s.Report == nil {
		t.Fatalf("%s: no report.json in %s", name, s.Dir)
	}
	return s
}

// readJSONIfAny reads a run's report.json, nil when there is none or it
// does not decode (a partial run exits 3 and still writes it).
func readJSONIfAny(dir string) *report {
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		return nil
	}
	r := new(report)
	if json.Unmarshal(b, r) != nil {
		return nil
	}
	return r
}

// hostSegments are the segments the host tracers give (docs/analysis.md):
// the hosts' internal times and the wire between them.
var hostSegments = []string{"B", "CJ", "D", "I", "K"}

// dpCheckEverySegment: every ping answered and complete, joined from every
// vantage point by its ICMP id and sequence: each ping has every segment
// any ping of the run has, and at least the hosts' segments, which cross
// the data path under test. A tracer that did not finish (on emulated
// machines under load, a VM tracer can miss its start) leaves its segments
// out of every ping, never out of some: that is logged with the run's
// summary.
func dpCheckEverySegment(t *testing.T, s *series, sent int) {
	p := s.Report.Pings
	if p.Sent != sent || p.Lost != 0 || p.Complete != sent {
		t.Fatalf("%d sent, %d lost, %d complete; want %d, none, all", p.Sent, p.Lost, p.Complete, sent)
	}
	measured := map[string]bool{}
	for _, pp := range s.Report.PerPing {
		for seg := range pp.Values {
			measured[seg] = true
		}
	}
	var absent []string
	for _, seg := range pathSegments {
		if !measured[seg] {
			absent = append(absent, seg)
		}
	}
	t.Logf("segments measured in no ping: %v (warnings: %v)", absent, s.Report.Warnings)
	seqs := map[int]bool{}
	for _, pp := range s.Report.PerPing {
		seqs[pp.Seq] = true
		var missing []string
		for _, seg := range pathSegments {
			if _, ok := pp.Values[seg]; !ok && (measured[seg] || slices.Contains(hostSegments, seg)) {
				missing = append(missing, seg)
			}
		}
		if !pp.Complete || len(missing) > 0 {
			t.Errorf("ping id %d seq %d: complete %v, segments missing %v (excluded %v)", pp.ID, pp.Seq, pp.Complete, missing, pp.Excluded)
		}
	}
	if len(seqs) != sent {
		t.Errorf("%d distinct sequence numbers in per_ping, want %d", len(seqs), sent)
	}
}

// dpCheckEncapsulated: both host tracers saw every ping's phy stages inside
// the overlay's frames (the inner ICMP matched on the bond members) and the
// VM stages bare on vnet0.
func dpCheckEncapsulated(t *testing.T, s *series, overlay string) {
	members := []string{"eth0", "eth1"}
	for _, h := range []struct{ host, phyIn, phyOut string }{
		{lab.SenderHost, "rep_in", "req_out"}, {lab.ReceiverHost, "req_in", "rep_out"},
	} {
		st := readStream(t, filepath.Join(s.Dir, h.host+".host.jsonl"))
		if len(st.Pings) != dpPings {
			t.Errorf("%s: %d ping records, want %d", h.host, len(st.Pings), dpPings)
		}
		for _, p := range st.Pings {
			for _, stage := range []string{h.phyIn, h.phyOut} {
				if !slices.Contains(members, p.Devices[stage]) {
					t.Errorf("%s seq %d: %s on %q, want a bond member %v", h.host, p.Seq, stage, p.Devices[stage], members)
				}
			}
			if !strings.Contains(p.Extra["encap"], overlay) {
				t.Errorf("%s seq %d: encap %q, want %s", h.host, p.Seq, p.Extra["encap"], overlay)
			}
		}
	}
}

// dpCheckOtherMember: the wire's port channel delivers frames on either
// member, so some pings' replies came back on the member their request did
// not leave by, and those pings are still whole.
func dpCheckOtherMember(t *testing.T, s *series) {
	st := readStream(t, filepath.Join(s.Dir, lab.SenderHost+".host.jsonl"))
	complete := map[int]bool{}
	for _, pp := range s.Report.PerPing {
		complete[pp.Seq] = pp.Complete
	}
	crossed := 0
	for _, p := range st.Pings {
		if p.Devices["req_out"] != p.Devices["rep_in"] {
			crossed++
			if !complete[int(p.Seq)] {
				t.Errorf("seq %d: request out of %s, reply in on %s, not joined whole", p.Seq, p.Devices["req_out"], p.Devices["rep_in"])
			}
		}
	}
	t.Logf("%d of %d replies came back on the other bond member", crossed, len(st.Pings))
	if crossed == 0 {
		t.Error("no reply came back on the other bond member")
	}
}

// dpCheckOVSDrop puts a drop flow for the requests on the receiver host's
// OVS bridge and checks that every ping of a run is lost there, placed after
// the request entered the host. The first requests miss the kernel's flow
// table and go up to ovs-vswitchd, which drops them in user space (it sends
// nothing back for a drop action): the kernel consumed those packets, so
// they have no drop reason, only their place. Once vswitchd installed the
// datapath flow, the kernel drops the rest with its OVS_DROP_* reason in the
// openvswitch module.
func dpCheckOVSDrop(t *testing.T, l *lab.Lab) {
	svm, rvm := l.Nodes[0].DataIP, l.Nodes[3].DataIP
	flow := fmt.Sprintf("priority=100,icmp,nw_src=%s,nw_dst=%s,icmp_type=8", svm, rvm)
	sshNode(t, l, lab.ReceiverHost, "ovs-ofctl add-flow br0 '"+flow+",actions=drop'")
	s := func() *series {
		defer sshNode(t, l, lab.ReceiverHost, "ovs-ofctl --strict del-flows br0 '"+flow+"'")
		// The host tracers place the drop; the VMs' and vhost's tracers
		// would only see requests leave and nothing come back.
		return dpRun(t, l, "ovs-drop", dpDropPings, "host")
	}()
	if s.Report.Pings.Lost != dpDropPings {
		t.Errorf("%d of %d pings lost, want all", s.Report.Pings.Lost, dpDropPings)
	}
	st := readStream(t, filepath.Join(s.Dir, lab.ReceiverHost+".host.jsonl"))
	if len(st.Drops) != dpDropPings {
		t.Fatalf("receiver host: %d drop records, want %d", len(st.Drops), dpDropPings)
	}
	slices.SortFunc(st.Drops, func(a, b record.Drop) int { return int(a.Seq) - int(b.Seq) })
	inKernel := 0
	for _, d := range st.Drops {
		t.Logf("receiver host drop seq %d: %s→%s reason %q (%d) at %q on %q", d.Seq, d.LastSeen, d.FirstMissed, d.Reason, d.ReasonCode, d.Location, d.Device)
		if d.LastSeen != "req_in" || d.FirstMissed != "req_out" {
			t.Errorf("seq %d: dropped between %s and %s, want req_in→req_out", d.Seq, d.LastSeen, d.FirstMissed)
		}
		switch {
		case strings.HasPrefix(d.Reason, "OVS_DROP_"):
			inKernel++
		case d.Reason == "" && inKernel == 0:
			// dropped by vswitchd before the datapath flow was installed
		default:
			t.Errorf("seq %d: reason %q after %d in-kernel OVS drops, want an OVS_DROP_ reason of the kernel's ovs_drop_reason", d.Seq, d.Reason, inKernel)
		}
	}
	if inKernel == 0 {
		t.Errorf("none of %d drops had the kernel's OVS_DROP_ reason: the datapath flow was never used", len(st.Drops))
	}
}
