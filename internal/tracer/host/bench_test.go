package host

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// Benchmarks of the host tracer (numbers in docs/tracer-host.md). Run with
//
//	go test -run '^$' -bench . -benchtime 1x ./internal/tracer/host/

// BenchmarkStartReady measures Run from start to the ready line in-process
// (BTF, capability probes, load, verify, attach).
func BenchmarkStartReady(b *testing.B) {
	tp := newTopo(b, topoOptions{})
	cfg := Config{SrcIP: tp.src, DstIP: tp.dst}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rt := startTracer(b, tp.hostA, cfg)
		total += time.Since(t0)
		rt.Stop(b)
	}
	b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/ready")
}

// BenchmarkProcess runs the real binary in a host namespace: process start
// to ready line, and peak resident memory after a burst of matched pings.
func BenchmarkProcess(b *testing.B) {
	bin := tracertest.PingpathBinary(b)
	tp := newTopo(b, topoOptions{})
	pingAll(b, tp.vmA, tp.dst, 1, 1)
	var ready time.Duration
	var hwm float64
	for i := 0; i < b.N; i++ {
		// A ping flood costs more than --max-cpu's default.
		cmd := exec.Command(bin, "trace", "host", "--max-cpu", "10000", "--src-ip", tp.src.String(), "--dst-ip", tp.dst.String(),
			"--vm-interface", tp.hostA.vnet, "--phy-interface", tp.hostA.phy, "--output", os.DevNull)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := tp.hostA.ns.Start(cmd); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		for sc.Scan() && !strings.HasPrefix(sc.Text(), "ready ") {
		}
		ready += time.Since(t0)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, err := tp.vmA.Ping(ctx, nettest.PingOptions{Dst: tp.dst, ID: 99, FirstSeq: 1, Count: 5000, Wait: time.Second})
		cancel()
		if err != nil {
			b.Fatalf("ping: %v", err)
		}
		b.ReportMetric(float64(len(res.Replies)), "pings-answered")
		hwm = max(hwm, tracertest.StatusKB(cmd.Process.Pid, "VmHWM"))
		_ = cmd.Process.Signal(syscall.SIGINT)
		go func() { _, _ = bufioDrain(sc) }()
		if err := cmd.Wait(); err != nil {
			b.Fatalf("tracer exit: %v", err)
		}
	}
	b.ReportMetric(float64(ready.Microseconds())/1e3/float64(b.N), "ms/ready")
	b.ReportMetric(float64(hwm)/1024, "MB-peak-RSS")
}

func bufioDrain(sc *bufio.Scanner) (int, error) {
	n := 0
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

// BenchmarkBPFCost measures the kernel's own accounting (bpf_stats) of the
// tracer's programs: run time per program run for matched ICMP echo packets,
// and for unrelated UDP bridged across both hosts at the highest rate a Go
// sender reaches, plus the total BPF time per unrelated bridged packet and
// the flood rate with and without the tracer. A flood between two
// namespaces outside the topology gives what a run for another namespace's
// packet costs; the ping phase's runs beyond the matched ones (two per ping
// and hook: the request and the reply on this host's devices) are such runs,
// so the matched runs alone cost the rest ("ns/matched-run-").
func BenchmarkBPFCost(b *testing.B) {
	tp := newTopo(b, topoOptions{})
	other := nettest.NewPair(b, "10.92.0.1/24", "10.92.0.2/24")
	pingAll(b, tp.vmA, tp.dst, 1, 1)
	defer tracertest.EnableStats(b).Close()
	floodFor := func(d time.Duration) int { return tracertest.FloodFor(b, tp.vmA, tp.dst, d) }
	for i := 0; i < b.N; i++ {
		base := floodFor(time.Second)
		rt := startTracerOpts(b, tp.hostA, Config{SrcIP: tp.src, DstIP: tp.dst}, tracer.Options{MaxCPU: 10000})
		// The floor: empty programs on the tracer's two packet hooks.
		ids := append(rt.ProgramIDs(), tracertest.AttachFloor(b, "netif_receive_skb", "net_dev_start_xmit")...)

		s0 := tracertest.ReadStats(b, ids)
		tracertest.FloodFor(b, other.A, other.LinkB.Addr.Addr(), time.Second)
		s1 := tracertest.ReadStats(b, ids)
		const pings = 5000
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t0 := time.Now()
		res, err := tp.vmA.Ping(ctx, nettest.PingOptions{Dst: tp.dst, ID: 31, FirstSeq: 1, Count: pings, Wait: time.Second})
		pingRate := float64(len(res.Replies)) / time.Since(t0).Seconds() // Ping returns once all replies are in
		cancel()
		if err != nil {
			b.Fatalf("ping: %v", err)
		}
		// A loaded machine may lose some of a flood; the cost per run holds.
		b.ReportMetric(float64(len(res.Replies)), "pings-answered")
		s2 := tracertest.ReadStats(b, ids)
		traced := floodFor(time.Second)
		s3 := tracertest.ReadStats(b, ids)
		otherNS, _ := s1.Sub(s0)
		otherNS.Report(b, "otherns")
		matched, _ := s2.Sub(s1)
		matched.Report(b, "matched")
		// Whichever rung is attached (tp_btf where the kernel types its
		// tracepoints, else raw tracepoints; fentry for egress).
		for _, prog := range []string{"host_ingress_btf", "host_ingress_tp", "host_egress_btf", "host_egress_fentry", "host_egress_tp"} {
			m, ok := matched[prog]
			if !ok {
				continue
			}
			own := uint64(2 * len(res.Replies))
			if m.Runs <= own {
				continue
			}
			rest := float64(m.Runs-own) * otherNS[prog].PerRun()
			perMatched := (float64(m.Time.Nanoseconds()) - rest) / float64(own)
			b.Logf("matched run of %s: %.0f ns (%d of %d runs; the others at %.0f ns)", prog, perMatched, own, m.Runs, otherNS[prog].PerRun())
			b.ReportMetric(perMatched, "ns/matched-run-"+prog)
		}
		unrelated, total := s3.Sub(s2)
		unrelated.Report(b, "unrelated")
		b.ReportMetric(float64(total.Nanoseconds())/float64(traced), "bpf-ns/bridged-pkt")
		b.ReportMetric(float64(base), "pps-untraced")
		b.ReportMetric(float64(traced), "pps-traced")
		st := rt.Stop(b)
		b.ReportMetric(pingRate, "matched-pings/s")
		b.ReportMetric(float64(st.Trailer.Counters["pings"]), "pings-traced")
		b.ReportMetric(float64(st.Trailer.Counters["ringbuf_lost"]), "ringbuf-lost")
	}
}

// BenchmarkHookFloor measures what a BPF program costs a packet by being
// attached, whatever it does: UDP is flooded between two namespaces
// (unix.Sendto in a loop, which also runs the receive softirq on its CPU)
// with no program, then with hookFloorCopies empty programs (AttachEmpty)
// on each of the two hooks a datagram crosses (net_dev_start_xmit on the
// sender's veth, netif_receive_skb on the receiver's), rounds alternated.
// From the rates, without bpf_stats (clock-free): "ns/run-attached", the
// time one run adds to a packet; bpf_stats' own figure for the same runs
// ("ns/run-bpf_stats") is the program's inside as the kernel times it,
// plus its clock reads; "ns/run-stats-overhead" is what turning bpf_stats
// on adds per run. The tracers' per-run figures (BenchmarkBPFCost) sit on
// top of this floor; docs/observer-effect.md.
func BenchmarkHookFloor(b *testing.B) {
	const hookFloorCopies = 16
	pair := nettest.NewPair(b, "10.93.0.1/24", "10.93.0.2/24")
	dst := pair.LinkB.Addr.Addr()
	// flood returns the datagrams sent per second, and how many.
	flood := func() (float64, int) {
		t0 := time.Now()
		n := tracertest.FloodFor(b, pair.A, dst, time.Second)
		return float64(n) / time.Since(t0).Seconds(), n
	}
	var hooks []tracertest.Hook
	for i := 0; i < hookFloorCopies; i++ {
		hooks = append(hooks, tracertest.Hook{Method: "tp_btf", Target: "net_dev_start_xmit"}, tracertest.Hook{Method: "tp_btf", Target: "netif_receive_skb"})
	}
	_, _ = flood() // warm-up: ARP, caches
	for i := 0; i < b.N; i++ {
		var bare, attached, withStats []float64
		var runs, sent float64
		var stat tracertest.Stats
		for r := 0; r < 3; r++ {
			pps, _ := flood()
			bare = append(bare, pps)
			ids, detach := tracertest.AttachEmpty(b, hooks)
			pps, _ = flood()
			attached = append(attached, pps)
			stats := tracertest.EnableStats(b)
			s0 := tracertest.ReadStats(b, ids)
			pps, n := flood()
			withStats = append(withStats, pps)
			d, _ := tracertest.ReadStats(b, ids).Sub(s0)
			stats.Close()
			detach()
			stat = stat.Add(d)
			runs += float64(d[tracertest.EmptyProgram].Runs)
			sent += float64(n)
		}
		perPkt := func(pps []float64) float64 { return 1e9 / tracertest.Median(pps) } // ns per datagram
		runsPerPkt := runs / sent
		b.ReportMetric(runsPerPkt, "runs/pkt")
		b.ReportMetric(tracertest.Median(bare), "pps-bare")
		b.ReportMetric(tracertest.Median(attached), "pps-attached")
		b.ReportMetric(tracertest.Median(withStats), "pps-attached-stats")
		b.ReportMetric((perPkt(attached)-perPkt(bare))/runsPerPkt, "ns/run-attached")
		b.ReportMetric((perPkt(withStats)-perPkt(attached))/runsPerPkt, "ns/run-stats-overhead")
		b.ReportMetric(stat[tracertest.EmptyProgram].PerRun(), "ns/run-bpf_stats")
	}
}
