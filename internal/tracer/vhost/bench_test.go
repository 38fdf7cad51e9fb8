package vhost

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pingpath/pingpath/internal/nettest"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testenv"
)

// runStats is a program's bpf_stats at one moment.
type runStats map[string]ebpf.ProgramStats

func (rt *runningTracer) stats(b testing.TB) runStats {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := runStats{}
	for name, p := range rt.loaded.Coll.Programs {
		s, err := p.Stats()
		if err != nil {
			b.Fatalf("reading stats of %s: %v", name, err)
		}
		out[name] = *s
	}
	return out
}

// delta returns, per program, runs and run time between two snapshots, and
// their sum.
func delta(before, after runStats) (map[string][2]float64, time.Duration) {
	out := map[string][2]float64{}
	var total time.Duration
	for name, a := range after {
		runs := a.RunCount - before[name].RunCount
		d := a.Runtime - before[name].Runtime
		total += d
		if runs > 0 {
			out[name] = [2]float64{float64(runs), float64(d.Nanoseconds()) / float64(runs)}
		}
	}
	return out, total
}

// BenchmarkTapLinkBPFCost runs vhost-rx and vhost-tx on the tap link and
// reads the kernel's bpf_stats: run time per program run and total BPF time
// per packet, for an ICMP echo flood (every packet traced: requests into
// the guest, replies out of it) and for unrelated UDP at the highest rate a
// Go sender reaches. It also reports the rates with and without tracers.
func BenchmarkTapLinkBPFCost(b *testing.B) {
	l := newTapLink(b)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	testenv.Require(b, err == nil, fmt.Sprintf("bpf_stats: %v", err))
	defer stats.Close()
	flood := func(d time.Duration) int {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		n, err := l.host.UDPFlood(ctx, netip.AddrPortFrom(l.vmIP, 9), 0)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	// 5000 pings/s: high for ping, within what the Go relay forwards
	// without dropping on this 2-core machine.
	pingFlood := func(count int, id uint16) (int, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		res, err := l.host.Ping(ctx, nettest.PingOptions{Dst: l.vmIP, ID: id, FirstSeq: 1, Count: count,
			Interval: 200 * time.Microsecond, Wait: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		return len(res.Replies), time.Since(start)
	}
	const pings = 3000
	for i := 0; i < b.N; i++ {
		basePPS := flood(time.Second)
		_, baseDur := pingFlood(pings, 0x5001)
		rx := startTracer(b, l.host, l.vnet, record.ToolVhostRX, "auto", l.hostIP, l.vmIP)
		tx := startTracer(b, l.host, l.vnet, record.ToolVhostTX, "auto", l.hostIP, l.vmIP)
		r0, t0 := rx.stats(b), tx.stats(b)
		got, dur := pingFlood(pings, 0x5002)
		r1, t1 := rx.stats(b), tx.stats(b)
		tracedPPS := flood(time.Second)
		r2, t2 := rx.stats(b), tx.stats(b)
		rxs, txs := rx.stop(b), tx.stop(b)

		rxPing, rxPingTotal := delta(r0, r1)
		txPing, txPingTotal := delta(t0, t1)
		rxUDP, rxUDPTotal := delta(r1, r2)
		txUDP, txUDPTotal := delta(t1, t2)
		report := func(prefix string, m map[string][2]float64) {
			names := make([]string, 0, len(m))
			for n := range m {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				b.ReportMetric(m[n][1], "ns/run-"+prefix+"-"+n)
				b.Logf("%s %-16s runs %8.0f  %6.1f ns/run", prefix, n, m[n][0], m[n][1])
			}
		}
		report("ping", rxPing)
		report("ping", txPing)
		report("udp", rxUDP)
		report("udp", txUDP)
		rxRecs, txRecs := len(pingsBy(rxs, "request", 0x5002)), len(pingsBy(txs, "reply", 0x5002))
		// Every traced packet: the request into the guest (vhost-rx) and
		// the reply out of it (vhost-tx), each with its own chain of hooks.
		b.ReportMetric(float64((rxPingTotal+txPingTotal).Nanoseconds())/float64(rxRecs+txRecs), "bpf-ns/traced-pkt")
		b.ReportMetric(float64(rxPingTotal.Nanoseconds())/float64(rxRecs), "bpf-ns/rx-pkt")
		b.ReportMetric(float64(txPingTotal.Nanoseconds())/float64(txRecs), "bpf-ns/tx-pkt")
		b.ReportMetric(float64((rxUDPTotal+txUDPTotal).Nanoseconds())/float64(tracedPPS), "bpf-ns/udp-pkt")
		b.ReportMetric(float64(pings)/baseDur.Seconds(), "pings/s-untraced")
		b.ReportMetric(float64(got)/dur.Seconds(), "pings/s-traced")
		b.ReportMetric(float64(basePPS), "udp-pps-untraced")
		b.ReportMetric(float64(tracedPPS), "udp-pps-traced")
		b.ReportMetric(float64(got), "replies")
		b.ReportMetric(float64(rxRecs), "rx-records")
		b.ReportMetric(float64(txRecs), "tx-records")
		b.ReportMetric(float64(rxs.Trailer.Counters["ringbuf_lost"]+txs.Trailer.Counters["ringbuf_lost"]), "ringbuf-lost")
	}
}
