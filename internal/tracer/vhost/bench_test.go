package vhost

import (
	"context"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// BenchmarkTapLinkBPFCost runs vhost-rx and vhost-tx on the tap link and
// reads the kernel's bpf_stats: run time per program run and total BPF time
// per packet, for an ICMP echo flood (every packet traced: requests into
// the guest, replies out of it) and for unrelated UDP at the highest rate a
// Go sender reaches. It also reports the rates with and without tracers.
func BenchmarkTapLinkBPFCost(b *testing.B) {
	l := newTapLink(b)
	defer tracertest.EnableStats(b).Close()
	flood := func(d time.Duration) int { return tracertest.FloodFor(b, l.host, l.vmIP, d) }
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
		// The floor (empty programs on the hooks of the two tracers the
		// unrelated UDP crosses) is read with vhost-rx's programs.
		rxIDs := append(rx.ProgramIDs(), tracertest.AttachFloor(b, "net_dev_start_xmit", "netif_receive_skb")...)
		r0, t0 := tracertest.ReadStats(b, rxIDs), tracertest.ReadStats(b, tx.ProgramIDs())
		got, dur := pingFlood(pings, 0x5002)
		r1, t1 := tracertest.ReadStats(b, rxIDs), tracertest.ReadStats(b, tx.ProgramIDs())
		tracedPPS := flood(time.Second)
		r2, t2 := tracertest.ReadStats(b, rxIDs), tracertest.ReadStats(b, tx.ProgramIDs())
		rxs, txs := rx.Stop(b), tx.Stop(b)

		rxPing, rxPingTotal := r1.Sub(r0)
		txPing, txPingTotal := t1.Sub(t0)
		rxUDP, rxUDPTotal := r2.Sub(r1)
		txUDP, txUDPTotal := t2.Sub(t1)
		rxPing.Report(b, "ping")
		txPing.Report(b, "ping")
		rxUDP.Report(b, "udp")
		txUDP.Report(b, "udp")
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
