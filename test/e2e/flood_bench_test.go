package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/pingpath/pingpath/internal/lab"
	"github.com/pingpath/pingpath/internal/lab/labtest"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
)

const (
	floodRounds = 3
	floodFor    = 2 * time.Second
)

// BenchmarkFlood measures what tracing costs a hypervisor host's traffic
// that nobody asked about: unrelated UDP from the sender VM to the receiver
// VM, as fast as one sender goes, bridged vnet → phy by the sender host,
// alternately with no tracer and with the sender host's three tracers (host,
// vhost-rx, vhost-tx; --max-cpu raised so they stay), in one lab per VM link
// kind. Per variant it reports
//
//   - the forwarding rate (the sender host's phy TX packets per second) and
//     its ratio to the untraced rate of the same rounds;
//   - the BPF run time per forwarded packet, per program and summed over
//     the host's tracers (kernel bpf_stats, our programs only), in the lab
//     ("lab": every run the frame causes in this one kernel, on the other
//     nodes' devices too) and for the host alone ("host"): the runs on the
//     other nodes' devices cost what runs for a flood between two
//     namespaces outside the lab cost, measured in the same round, and are
//     taken out;
//   - the tracer processes' CPU per forwarded packet (/proc/PID/stat);
//   - "cost at 1 Mpps": (BPF + process) per packet × 10⁶, in % of one CPU;
//   - the tracers' own account of their BPF time (trailer cost) against
//     the kernel's (self/kernel ratio).
//
// With $PINGPATH_BENCH_BASELINE (another build's binary, e.g. main's) its
// tracers take a turn in each round too ("-base" metrics). Run:
//
//	go test -run '^$' -bench Flood -benchtime 1x ./test/e2e
func BenchmarkFlood(b *testing.B) {
	requireLab(b)
	enableRunTimeStats(b)
	for _, c := range []struct{ name, link string }{
		// The data path entirely in the kernel.
		{"veth", lab.VMLinkVeth},
		// A TAP with a userspace backend, like QEMU without vhost-net:
		// every frame from the VM is a write(2) on the tun fd.
		{"tap", lab.VMLinkTap},
	} {
		b.Run(c.name, func(b *testing.B) { floodCase(b, lab.Options{VMLink: c.link}) })
	}
}

// floodVariant accumulates one variant's rounds.
type floodVariant struct {
	bin      *tracerBinary // nil: no tracer
	fwd      uint64        // packets the sender host's phy sent
	elapsed  time.Duration
	progs    map[string]*progStat // by program name, during the lab flood
	others   map[string]*progStat // the same during a flood outside the lab
	procCPU  time.Duration        // tracer processes' CPU time
	selfBPF  time.Duration        // the tracers' own BPF estimate (trailers)
	selfRuns uint64
}

// ownRuns is how often each program runs for one frame the host bridges
// vnet → phy on a real host, where only the host's own devices exist:
// ingress on the vnet, egress on the phy, the vhost-tx receive hook on the
// vnet, vhost-rx's transmit hook on the phy (tracepoint rungs; its fentry
// rung fires on tun devices only), the free after transmission where
// vhost-rx has a consume_skb program, and with a user space backend its
// write(2). Frames die at the receiver VM here, not on the host: the drop
// hooks are not a frame's cost. Keyed by "tool hook" (ownHook): the
// programs of a hook's tp_btf and raw tracepoint rungs count alike. always
// marks the hooks every such frame runs on any host: a flood without one of
// them has program names this table no longer knows (as when the tp_btf
// rungs came, and the host figure read 0).
var ownRuns = map[string]struct {
	runs   float64
	always bool
}{
	"host host_ingress": {1, true}, "host host_egress": {1, true}, "vhost-tx netif": {1, true},
	"vhost-rx s1": {1, true}, "vhost-rx skb_consumed": {1, false}, "vhost-tx sendmsg_tp_write": {1, false},
}

// ownHook is the ownRuns key of a "tool program" name: the program without
// its rung's suffix (_btf, _tp).
func ownHook(name string) string {
	return strings.TrimSuffix(strings.TrimSuffix(name, "_btf"), "_tp")
}

// addStats adds the program counters from before to after into into.
func addStats(into map[string]*progStat, before, after map[ebpf.ProgramID]*progStat) {
	for id, a := range after {
		k := a.tool + " " + a.name
		p := into[k]
		if p == nil {
			p = &progStat{tool: a.tool, name: a.name}
			into[k] = p
		}
		p.runs += a.runs - before[id].runs
		p.runtime += a.runtime - before[id].runtime
	}
}

// perRun is a program's mean run time (ns).
func (p *progStat) perRun() float64 {
	if p == nil || p.runs == 0 {
		return 0
	}
	return float64(p.runtime.Nanoseconds()) / float64(p.runs)
}

func floodCase(b *testing.B, opts lab.Options) {
	l := labtest.Up(b, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if _, err := pingSeries(ctx, l, 3); err != nil {
		b.Fatal(err)
	}
	rvm, _ := l.Node(lab.ReceiverVM)
	host, _ := l.Node(lab.SenderHost)
	dst := netip.AddrPortFrom(rvm.DataIP, 9)

	// Two namespaces outside the lab: their flood is traffic of other
	// namespaces for every tracer of the lab.
	pair := nettest.NewPair(b, "10.91.0.1/24", "10.91.0.2/24")
	variants := []*floodVariant{{}}
	for _, bin := range benchBinaries(b) {
		variants = append(variants, &floodVariant{bin: &bin, progs: map[string]*progStat{}, others: map[string]*progStat{}})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for r := 0; r < floodRounds; r++ {
			// Rotate the order so that no variant always follows another.
			for k := range variants {
				v := variants[(k+r)%len(variants)]
				var tr tracers
				if v.bin != nil {
					tr = startTracers(b, ctx, l, []string{"host", "vhost-rx", "vhost-tx"}, []string{lab.SenderHost}, *v.bin)
				}
				before := map[ebpf.ProgramID]*progStat{}
				tr.collectStats(b, before)
				cpu0 := tr.cpu(b)
				tx0 := txPackets(b, l, lab.SenderHost, host.Phy)
				t0 := time.Now()
				fctx, fcancel := context.WithTimeout(ctx, floodFor)
				_, err := labtest.UDPFlood(fctx, l, lab.SenderVM, dst)
				fcancel()
				if err != nil {
					b.Fatal(err)
				}
				v.elapsed += time.Since(t0)
				v.fwd += txPackets(b, l, lab.SenderHost, host.Phy) - tx0
				if v.bin == nil {
					continue
				}
				after := map[ebpf.ProgramID]*progStat{}
				tr.collectStats(b, after)
				v.procCPU += tr.cpu(b) - cpu0
				addStats(v.progs, before, after)
				octx, ocancel := context.WithTimeout(ctx, floodFor/2)
				_, err = pair.A.UDPFlood(octx, netip.AddrPortFrom(pair.LinkB.Addr.Addr(), 9), 0)
				ocancel()
				if err != nil {
					b.Fatal(err)
				}
				others := map[ebpf.ProgramID]*progStat{}
				tr.collectStats(b, others)
				addStats(v.others, after, others)
				for _, s := range tr.stop(b) {
					if c := s.Trailer.Cost; c != nil {
						v.selfBPF += time.Duration(c.BPFNS)
						v.selfRuns += c.BPFRuns
					}
				}
			}
		}
	}
	b.StopTimer()

	base := variants[0]
	basePPS := float64(base.fwd) / base.elapsed.Seconds()
	b.ReportMetric(basePPS, "pps-off")
	for _, v := range variants[1:] {
		sfx := ""
		if v.bin.name != "new" {
			sfx = "-" + v.bin.name
		}
		pps := float64(v.fwd) / v.elapsed.Seconds()
		b.ReportMetric(pps, "pps-on"+sfx)
		b.ReportMetric(pps/basePPS, "fwd-ratio"+sfx)
		if v.fwd == 0 {
			b.Fatalf("%s: nothing forwarded", v.bin.name)
		}
		var bpf time.Duration
		names := make([]string, 0, len(v.progs))
		for n, p := range v.progs {
			bpf += p.runtime
			names = append(names, n)
		}
		sort.Strings(names)
		var sb strings.Builder
		fmt.Fprintf(&sb, "%-30s %10s %10s %12s\n", "tool program", "runs", "ns/run", "ns/fwd pkt")
		for _, n := range names {
			p := v.progs[n]
			per := 0.0
			if p.runs > 0 {
				per = float64(p.runtime.Nanoseconds()) / float64(p.runs)
			}
			perPkt := float64(p.runtime.Nanoseconds()) / float64(v.fwd)
			fmt.Fprintf(&sb, "%-30s %10d %10.0f %12.1f\n", n, p.runs, per, perPkt)
			b.ReportMetric(perPkt, "bpf-ns/pkt-"+strings.ReplaceAll(n, " ", "-")+sfx)
		}
		// The host alone: each program's runs beyond its own per frame are
		// runs on the other nodes' devices, at what a run for another
		// namespace's packet costs.
		var host float64
		fmt.Fprintf(&sb, "host alone, per frame bridged vnet → phy:\n")
		counted := map[string]bool{}
		for _, n := range names {
			hook := ownHook(n)
			p, own := v.progs[n], ownRuns[hook].runs
			if own == 0 || p.runs == 0 {
				continue
			}
			counted[hook] = true
			runs := float64(p.runs) / float64(v.fwd) // per frame, in the lab
			other := max(runs-own, 0)
			c := (float64(p.runtime.Nanoseconds())/float64(v.fwd) - other*v.others[n].perRun()) / min(own, runs)
			host += own * c
			fmt.Fprintf(&sb, "  %-28s %.1f runs/frame in the lab, %.1f own at %.0f ns, others at %.0f ns\n", n, runs, own, c, v.others[n].perRun())
			b.ReportMetric(c, "bpf-ns/own-run-"+strings.ReplaceAll(n, " ", "-")+sfx)
		}
		for h, o := range ownRuns {
			if o.always && !counted[h] {
				b.Fatalf("%s: no program of hook %q ran in the flood (programs: %v): the host's per-frame figure would leave it out", v.bin.name, h, names)
			}
		}
		bpfPkt := float64(bpf.Nanoseconds()) / float64(v.fwd)
		procPkt := float64(v.procCPU.Nanoseconds()) / float64(v.fwd)
		b.ReportMetric(bpfPkt, "bpf-ns/pkt-lab"+sfx)
		b.ReportMetric(host, "bpf-ns/pkt-host"+sfx)
		b.ReportMetric(procPkt, "proc-ns/pkt"+sfx)
		// ns per packet × 10⁶ packets/s = ns/s; / 10⁹ × 100 = % of one CPU.
		b.ReportMetric((host+procPkt)/10, "cpu%-at-1Mpps"+sfx)
		if v.selfRuns > 0 && bpf > 0 {
			b.ReportMetric(float64(v.selfBPF)/float64(bpf), "self/kernel-bpf"+sfx)
		}
		b.Logf("%s: %.0f pps forwarded (untraced %.0f, ratio %.2f); BPF per frame %.0f ns in the lab, %.0f ns on the host alone; processes %.0f ns per frame; cost at 1 Mpps %.1f %% of one CPU\n%s",
			v.bin.name, pps, basePPS, pps/basePPS, bpfPkt, host, procPkt, (host+procPkt)/10, sb.String())
	}
}

// txPackets reads a lab node's interface TX packet counter.
func txPackets(b *testing.B, l *lab.Lab, node, ifname string) uint64 {
	b.Helper()
	var n uint64
	err := l.Do(node, func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if st := link.Attrs().Statistics; st != nil {
			n = st.TxPackets
		}
		return nil
	})
	if err != nil {
		b.Fatalf("%s %s statistics: %v", node, ifname, err)
	}
	return n
}

// cpu is the CPU time (user + system, all threads) the tracer processes
// used so far.
func (ts tracers) cpu(b *testing.B) time.Duration {
	b.Helper()
	var total time.Duration
	for _, tr := range ts {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", tr.pid))
		if err != nil {
			b.Fatalf("%s %s: %v", tr.node, tr.tool, err)
		}
		// Fields after the command (which may hold spaces) in parentheses:
		// state is field 3, utime 14, stime 15, in clock ticks (USER_HZ 100).
		rest := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		for _, f := range rest[11:13] {
			ticks, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				b.Fatalf("%s %s: /proc stat %q: %v", tr.node, tr.tool, f, err)
			}
			total += time.Duration(ticks) * 10 * time.Millisecond
		}
	}
	return total
}
