package e2e

// Real cloud data paths on the KVM lab (issue 23): the hosts' switch is
// Open vSwitch, their uplink a kernel bond of two NICs both cabled to the
// wire, and the VMs' frames cross the wire inside Geneve, so a ping goes
// vnet0 → OVS datapath → genev_sys_6081 → bond0 → eth0|eth1 → wire and back
// on either member. One lab serves every check (bringing a KVM lab up takes
// minutes): the data path built, the workflow with every tracer, an OVS
// drop flow, a bond member pulled mid-run and pings too large for the
// tunnel. The whole test takes 20-30 minutes on the 2-CPU development
// machine, depending on its load (see docs/lab.md).

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer/host"
	"golang.org/x/sys/unix"
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
// than `make test` can spend (20-30 minutes on a 2-CPU machine, the OVS
// image build not counted), so it runs when asked: PINGPATH_KVM_E2E=1
// (make test-kvm-e2e).
func TestKVMDatapathOVSGeneveBond(t *testing.T) {
	if os.Getenv(kvmE2EVar) == "" {
		t.Skipf("the OVS/Geneve/bond data path on the KVM lab takes 20-30 minutes: set %s=1 (make test-kvm-e2e) to run it", kvmE2EVar)
	}
	requireLab(t)
	start := time.Now()
	// 1 GiB hosts: with OVS, three tracers and the 256 MiB VM running, a
	// 768 MiB host had 160-210 MiB left (measured), too little margin for
	// the tracers' BPF verification at the same moment.
	l := labtest.UpKVM(t, lab.Options{KVM: lab.KVMOptions{Datapath: "ovs", Bond: true, Overlay: "geneve", HostMemoryMB: 1024}})
	t.Logf("kvm lab %s up in %s (host boots %v): %s", l.Name, time.Since(start).Round(time.Second), l.KVM.HostBoots, l.KVM.Describe())
	// Every kernel message on the consoles (the lab boots them quiet): an
	// Oops in a VM then reaches its console log in the host, a host's the
	// lab's logs/console-HOST.log, and dpDiagnose shows them.
	for _, n := range lab.NodeNames() {
		sshNode(t, l, n, "dmesg -n 7")
	}
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
	t.Run("InnerICMPOnTheUplink", func(t *testing.T) { dpCheckEncapsulated(t, base, "geneve", []string{"eth0", "eth1"}, dpPings) })
	t.Run("ReplyOnTheOtherMember", func(t *testing.T) { dpCheckOtherMember(t, base) })
	t.Run("OVSDropFlow", func(t *testing.T) { dpCheckOVSDrop(t, l) })
	t.Run("BondMemberDown", func(t *testing.T) { dpCheckMemberDown(t, l) })
	t.Run("MTUTooSmallForGeneve", func(t *testing.T) { dpCheckMTU(t, l) })
	t.Logf("the whole test took %s", time.Since(start).Round(time.Second))
}

// dpRun runs `pingpath run` with the tracers named on the lab and returns
// the series with its report.json.
func dpRun(t *testing.T, l *lab.Lab, name string, count int, tracers string) *series {
	t.Helper()
	return dpRunWhile(t, l, name, count, dpInterval, tracers, nil, nil)
}

// dpRunWhile is dpRun with the ping interval given, extra flags for
// `pingpath run`, and during, when not nil, run while `pingpath run` runs
// (it gets a context that ends with the run).
func dpRunWhile(t *testing.T, l *lab.Lab, name string, count int, interval time.Duration, tracers string, extra []string, during func(context.Context)) *series {
	t.Helper()
	dpWarmNeighbour(t, l)
	s := &series{Name: name, Lab: l, Dir: filepath.Join(t.TempDir(), name)}
	ctx, cancel := context.WithTimeout(context.Background(), dpRunTimeout)
	defer cancel()
	began := time.Now()
	var (
		out string
		err error
	)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		args := []string{"run", "-c", l.EnvFile, "-o", s.Dir,
			"--count", fmt.Sprint(count), "--interval", interval.String(), "--tracers", tracers,
			// Tracing costs the emulated CPUs many times what it costs real
			// ones, and a loaded machine starts tracers slowly; this test is
			// about paths and identities, not cost (the cost gate has its own
			// tests).
			"--max-cpu", "200", "--ready-timeout", "10m"}
		out, err = runPingpath(ctx, labtest.Binary(t), append(args, extra...)...)
	}()
	if during != nil {
		dctx, dcancel := context.WithCancel(ctx)
		go func() { <-ran; dcancel() }()
		during(dctx)
	}
	<-ran
	s.Report = readJSONIfAny(s.Dir)
	if err != nil && (s.Report == nil || strings.Contains(err.Error(), " lost")) {
		dpDiagnose(t, l)
	}
	if err != nil && s.Report == nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Logf("%s run took %s (exit: %v):\n%s", name, time.Since(began).Round(time.Second), err, summaryOf(out))
	if s.Report == nil {
		t.Fatalf("%s: no report.json in %s", name, s.Dir)
	}
	return s
}

// dpWarmNeighbour pings the receiver VM from the sender VM before a run. On
// a fresh lab the sender VM's first ARP request crosses both OVS bridges by
// upcalls to ovs-vswitchd, which under TCG with the tracers attached took
// longer than the kernel's three 1 s probes: the run's first pings came back
// "Destination Host Unreachable" (seen once). Resolved now, the neighbour
// stays (stale, then confirmed by unicast) through the tracers' start.
func dpWarmNeighbour(t *testing.T, l *lab.Lab) {
	t.Helper()
	rvm := l.Nodes[3].DataIP
	out, err := exec.Command("ssh", "-F", l.SSHConfig, lab.SenderVM,
		fmt.Sprintf("ping -n -c 3 -i 0.5 -W 5 %s | tail -2; ip neigh show %s", rvm, rvm)).CombinedOutput()
	t.Logf("neighbour warm-up (err %v):\n%s", err, out)
}

// dpDiagnose logs what each host knows about a lost VM or a failed run: its
// VM's QEMU, memory, the end of its kernel log and of its VM's console and
// QEMU output (the VM's QEMU exited during the tracers' start in two runs of
// the previous session, with no trace kept).
func dpDiagnose(t *testing.T, l *lab.Lab) {
	t.Helper()
	for _, h := range []string{lab.SenderHost, lab.ReceiverHost} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, "ssh", "-F", l.SSHConfig, h,
			"pgrep -a qemu-system | cut -c1-80; free -m; dmesg | tail -n 40; "+
				"for f in /run/pingpath/vm/*.log; do echo \"== $f\"; tail -n 40 \"$f\"; done").CombinedOutput()
		cancel()
		t.Logf("diagnosis of %s (err %v):\n%s", h, err, out)
		if b, err := os.ReadFile(l.LogFile("console-" + h)); err == nil {
			t.Logf("%s console (the lab's log), its end:\n%s", h, tail(string(b), 40))
		}
	}
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
	// A ping whose request or reply the guest took by polling (vhost-rx's
	// extra.notify "suppressed") has no E or L to measure, as in
	// TestKVMWholePath.
	polled := map[int][]string{}
	if measured["E"] || measured["L"] {
		polled = polledSeqs(t, s)
	}
	seqs := map[int]bool{}
	for _, pp := range s.Report.PerPing {
		seqs[pp.Seq] = true
		var missing []string
		for _, seg := range pathSegments {
			if _, ok := pp.Values[seg]; !ok && (measured[seg] || slices.Contains(hostSegments, seg)) {
				missing = append(missing, seg)
			}
		}
		if pp.Complete && len(missing) > 0 && !slices.ContainsFunc(missing, func(seg string) bool { return !slices.Contains(polled[pp.Seq], seg) }) {
			t.Logf("seq %d: no %v: the guest took the packet by polling, no interrupt to measure", pp.Seq, missing)
			continue
		}
		if !pp.Complete || len(missing) > 0 {
			t.Errorf("ping id %d seq %d: complete %v, segments missing %v (excluded %v)", pp.ID, pp.Seq, pp.Complete, missing, pp.Excluded)
		}
	}
	if len(seqs) != sent {
		t.Errorf("%d distinct sequence numbers in per_ping, want %d", len(seqs), sent)
	}
}

// dpCheckEncapsulated: both host tracers saw each of the n pings whole,
// its phy stages inside the overlay's frames (the inner ICMP matched on the
// uplink's NICs, phys: the bond members or the one NIC) and the VM stages
// bare on vnet0.
func dpCheckEncapsulated(t *testing.T, s *series, overlay string, phys []string, n int) {
	for _, h := range []struct{ host, phyIn, phyOut string }{
		{lab.SenderHost, "rep_in", "req_out"}, {lab.ReceiverHost, "req_in", "rep_out"},
	} {
		st := readStream(t, filepath.Join(s.Dir, h.host+".host.jsonl"))
		if len(st.Pings) != n || len(st.Drops) != 0 {
			t.Errorf("%s: %d ping records and %d drops, want %d and none", h.host, len(st.Pings), len(st.Drops), n)
		}
		for _, p := range st.Pings {
			if len(p.Stages) != 4 || p.Extra["incomplete"] != "" {
				t.Errorf("%s seq %d: stages %v (%s), want all four", h.host, p.Seq, p.Stages, p.Extra["incomplete"])
			}
			for _, stage := range []string{h.phyIn, h.phyOut} {
				if !slices.Contains(phys, p.Devices[stage]) {
					t.Errorf("%s seq %d: %s on %q, want the uplink's %v", h.host, p.Seq, stage, p.Devices[stage], phys)
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
// they have no drop reason; the host tracer places them at the upcall
// (openvswitch:ovs_dp_upcall, host.UpcallLocation). Once vswitchd installed
// the datapath flow, the kernel drops the rest with its OVS_DROP_* reason in
// the openvswitch module.
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
		case d.Reason == "" && inKernel == 0 && d.Location == host.UpcallLocation:
			// dropped by vswitchd before the datapath flow was installed
		default:
			t.Errorf("seq %d: reason %q at %q after %d in-kernel OVS drops, want an OVS_DROP_ reason of the kernel's ovs_drop_reason (or, before the first, none and the upcall)", d.Seq, d.Reason, d.Location, inKernel)
		}
	}
	if inKernel == 0 {
		t.Errorf("none of %d drops had the kernel's OVS_DROP_ reason: the datapath flow was never used", len(st.Drops))
	}
}

const (
	// dpMemberPings at dpMemberInterval is the series during which a bond
	// member goes down: long enough (12 s) for the pull to land in its
	// middle, the host's side going over an SSH session opened before.
	dpMemberPings    = 30
	dpMemberInterval = 400 * time.Millisecond
)

// dpCheckMemberDown pulls the cable of the sender host's bond member that
// carries the requests, in the middle of a run: once its first requests
// crossed the wire (counted on the member's port in the wire namespace),
// the member goes down in the host (`ip link set ethN down`: the bond fails
// over at once) and then its port on the wire (the relay's port channel
// sends only on the other member). The pings keep flowing on the other
// member, and each ping lost in between is placed by the host tracers.
func dpCheckMemberDown(t *testing.T, l *lab.Lab) {
	ports, err := l.WirePorts(lab.SenderHost)
	if err != nil {
		t.Fatal(err)
	}
	members := []string{"eth0", "eth1"}
	if len(ports) != len(members) {
		t.Fatalf("sender host's wire ports %v, want one per bond member %v", ports, members)
	}
	hostCmd := exec.Command("ssh", "-F", l.SSHConfig, lab.SenderHost, `read -r m && ip link set dev "$m" down && echo "$m down"`)
	stdin, err := hostCmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var hostOut strings.Builder
	hostCmd.Stdout, hostCmd.Stderr = &hostOut, &hostOut
	if err := hostCmd.Start(); err != nil {
		t.Fatal(err)
	}
	pulled := -1
	defer func() {
		stdin.Close()
		_ = hostCmd.Wait()
		// Cables back in for whatever runs next on the lab.
		for i, p := range ports {
			if out, err := exec.Command("ip", "-n", l.WireNetns, "link", "set", "dev", p, "up").CombinedOutput(); err != nil {
				t.Errorf("wire port %s up: %v %s", p, err, out)
			}
			sshNode(t, l, lab.SenderHost, "ip link set dev "+members[i]+" up")
		}
	}()
	s := dpRunWhile(t, l, "member-down", dpMemberPings, dpMemberInterval, "host", nil, func(ctx context.Context) {
		member, err := waitEncapsulatedRequests(ctx, l, ports, 3)
		if err != nil {
			t.Errorf("watching the wire for the first requests: %v", err)
			return
		}
		pulled = member
		fmt.Fprintln(stdin, members[pulled])
		stdin.Close()
		err = hostCmd.Wait()
		t.Logf("after 3 requests out of %s: %s (err %v); its wire port %s down", members[pulled], strings.TrimSpace(hostOut.String()), err, ports[pulled])
		if out, err := exec.Command("ip", "-n", l.WireNetns, "link", "set", "dev", ports[pulled], "down").CombinedOutput(); err != nil {
			t.Errorf("wire port %s down: %v %s", ports[pulled], err, out)
		}
	})
	if pulled < 0 {
		t.Fatal("the run ended before its requests crossed the wire: no member was pulled")
	}
	down, other := members[pulled], members[1-pulled]
	st := readStream(t, filepath.Join(s.Dir, lab.SenderHost+".host.jsonl"))
	bySeq := map[int]record.Ping{}
	for _, p := range st.Pings {
		bySeq[int(p.Seq)] = p
	}
	// The requests leave on the pulled member, then on the other for good.
	var before, after []int
	for seq := 1; seq <= dpMemberPings; seq++ {
		p, ok := bySeq[seq]
		if !ok {
			continue
		}
		switch p.Devices["req_out"] {
		case down:
			before = append(before, seq)
			if len(after) > 0 {
				t.Errorf("seq %d: request out of %s after seq %d had failed over to %s", seq, down, after[0], other)
			}
		case other:
			after = append(after, seq)
		}
	}
	t.Logf("requests out of %s: seqs %v; then out of %s: %v", down, before, other, after)
	if len(before) == 0 || len(after) < 3 {
		t.Errorf("%d requests out of %s before it went down and %d out of %s after; want some before and the pings to keep flowing after", len(before), down, len(after), other)
	}
	// Once the wire's side is down too, the replies come back on the other member only.
	if n := len(after); n >= 3 {
		for _, seq := range after[n-3:] {
			if p := bySeq[seq]; p.Stages["rep_in"] != 0 && p.Devices["rep_in"] != other {
				t.Errorf("seq %d: reply in on %s after %s's cable was pulled", seq, p.Devices["rep_in"], down)
			}
		}
	}
	// Whatever was lost while the member went down is placed.
	lost := lostSeqs(t, filepath.Join(s.Dir, "ping.log"))
	placed, perSegment := placeLost(t, s, lost)
	for seq, d := range placed {
		t.Logf("seq %d: %s in %s (last seen %s, first missed %s), reason %q", seq, d.Status, d.Segment, d.LastSeen, d.FirstMissed, d.Reason)
		// In the sender host (B, K: e.g. QDISC_DROP, queued on the member
		// as it went down) or on its cable (CJ, C, J).
		if seg, _, _ := strings.Cut(d.Segment, " "); !slices.Contains([]string{"B", "K", "CJ", "C", "J"}, seg) {
			t.Errorf("seq %d: lost as a bond member went down, placed in %q", seq, d.Segment)
		}
	}
	t.Logf("%d of %d pings lost while %s went down, placed %v", len(lost), dpMemberPings, down, perSegment)
	if len(lost) > dpMemberPings/2 {
		t.Errorf("%d of %d pings lost: the bond did not keep the pings flowing on %s", len(lost), dpMemberPings, other)
	}
}

// waitEncapsulatedRequests watches a host's wire ports until n echo
// requests inside Geneve came out of its NICs and returns the index of the
// port the n-th came by (the bond's member for the ping's flow). Everything
// else (ARP, the underlay's neighbour probes) is not counted.
func waitEncapsulatedRequests(ctx context.Context, l *lab.Lab, ports []string, n int) (int, error) {
	fds := make([]int, len(ports))
	err := lab.InNetns(l.WireNetns, func() error {
		for i, p := range ports {
			ifi, err := net.InterfaceByName(p)
			if err != nil {
				return err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(unix.ETH_P_IP)))
			if err != nil {
				return err
			}
			fds[i] = fd
			_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
			if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
				return fmt.Errorf("binding to %s: %w", p, err)
			}
		}
		return nil
	})
	defer func() {
		for _, fd := range fds {
			if fd > 0 {
				unix.Close(fd)
			}
		}
	}()
	if err != nil {
		return -1, err
	}
	buf := make([]byte, 2048)
	seen := 0
	for ctx.Err() == nil {
		for i, fd := range fds {
			for {
				m, _, err := unix.Recvfrom(fd, buf, 0)
				if err != nil {
					break
				}
				if isGeneveEchoRequest(buf[:m]) {
					if seen++; seen == n {
						return i, nil
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1, ctx.Err()
}

// isGeneveEchoRequest reports whether an Ethernet frame is IPv4/UDP to the
// Geneve port carrying an IPv4 ICMP echo request.
func isGeneveEchoRequest(f []byte) bool {
	const eth, ip, udp, gnv = 14, 20, 8, 8
	if len(f) < eth+ip+udp+gnv || f[eth]>>4 != 4 || f[eth+9] != unix.IPPROTO_UDP {
		return false
	}
	o := eth + int(f[eth]&0x0f)*4
	if binary.BigEndian.Uint16(f[o+2:]) != 6081 {
		return false
	}
	o += udp
	o += gnv + int(f[o]&0x3f)*4 // Geneve options
	if len(f) < o+eth+ip+1 || binary.BigEndian.Uint16(f[o+12:]) != unix.ETH_P_IP {
		return false
	}
	o += eth
	inner := f[o:]
	return inner[9] == unix.IPPROTO_ICMP && len(inner) > int(inner[0]&0x0f)*4 && inner[int(inner[0]&0x0f)*4] == 8
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

const (
	// dpMTUPings large pings meet the overlay's MTU.
	dpMTUPings = 5
	// dpMTUSize is the payload of a ping whose packet (1500 bytes) fills
	// the VMs' MTU: inside Geneve (50 bytes more) it does not fit the
	// underlay's 1500.
	dpMTUSize = 1472
	// dpGeneveMTU is what the tunnel leaves for the VMs' packets: the
	// underlay's 1500 minus Geneve's outer Ethernet, IPv4, UDP and Geneve
	// headers (14+20+8+8).
	dpGeneveMTU = 1450
)

// dpCheckMTU pings with packets as large as the VMs' MTU (1500 bytes), too
// large for the Geneve tunnel over the hosts' 1500-byte underlay: the MTU
// is too small for the encapsulation, as on a cloud that did not give its
// VMs a smaller MTU. What the kernel does (measured on Debian 6.12):
//   - the first request, with DF, is turned by the sender host's tunnel
//     (skb_tunnel_check_pmtu) into an ICMP "fragmentation needed, mtu
//     1450" back to the VM: nothing is freed, so the host tracer places it
//     between the request's entry and exit with no kernel reason;
//   - having learnt the path MTU, the VM fragments the next requests, which
//     arrive; the receiver VM's 1500-byte replies have no DF, so its
//     host's tunnel cannot answer them with an ICMP error and they vanish
//     there: placed in the receiver host's reply path (I), again with no
//     kernel drop reason.
func dpCheckMTU(t *testing.T, l *lab.Lab) {
	// The VMs forget any path MTU learnt before, before and after.
	flush := func() {
		for _, vm := range []string{lab.SenderVM, lab.ReceiverVM} {
			sshNode(t, l, vm, "ip route flush cache")
		}
	}
	flush()
	defer flush()
	s := dpRunWhile(t, l, "mtu", dpMTUPings, dpMemberInterval, "host", []string{"--size", fmt.Sprint(dpMTUSize)}, nil)
	b, err := os.ReadFile(filepath.Join(s.Dir, "ping.log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("icmp_seq=1 Frag needed and DF set (mtu = %d)", dpGeneveMTU); !strings.Contains(string(b), want) {
		t.Errorf("ping.log lacks the tunnel's %q:\n%s", want, b)
	}
	lost := lostSeqs(t, filepath.Join(s.Dir, "ping.log"))
	placed, perSegment := placeLost(t, s, lost)
	t.Logf("%d of %d pings of %d bytes lost, placed %v", len(lost), dpMTUPings, dpMTUSize, perSegment)
	if len(lost) != dpMTUPings {
		t.Errorf("%d of %d pings lost, want all: no reply of 1500 bytes fits the tunnel", len(lost), dpMTUPings)
	}
	for seq, d := range placed {
		t.Logf("seq %d: %s in %s (last seen %s, first missed %s), reason %q", seq, d.Status, d.Segment, d.LastSeen, d.FirstMissed, d.Reason)
		want := "I"
		if seq == 1 {
			want = "B"
		}
		if seg, _, _ := strings.Cut(d.Segment, " "); seg != want {
			t.Errorf("seq %d: placed in %q, want %s", seq, d.Segment, want)
		}
	}
}
