package origin

import (
	"fmt"
	"strings"
	"testing"
)

type warnings []string

func (w *warnings) add(line int, format string, args ...any) {
	*w = append(*w, fmt.Sprintf("%d: ", line)+fmt.Sprintf(format, args...))
}

// A chain printed before its Stage-1 line (per-CPU perf rings) is paired
// with it by time, E = d2 + d4 + d5 (the tool's stage-4 delay counts from
// stage 2); a Stage-1 line 10 s away from the only other chain is not
// paired with it, and both leftovers are reported.
func TestTunPairsChainsByTime(t *testing.T) {
	in := `TUN TX QUEUE INTERRUPT TRACING STARTED
TUN TX INTERRUPT [vnet0:q0] Stage 2 [vhost_signal]: Time=1970-01-02 00:00:01.000 EventFD(vq)=0xaa Delay=0.030ms
TUN TX INTERRUPT [vnet0:q0] Stage 3 [eventfd]: Time=1970-01-02 00:00:01.000 EventFD(vq)=0xaa Delay=0.007ms
TUN TX INTERRUPT [vnet0:q0] Stage 4 [irqfd_wakeup]: Time=1970-01-02 00:00:01.000 EventFD(irqfd)=0xaa GSI(irqfd)=37 Delay=0.012ms
TUN TX INTERRUPT [vnet0:q0] Stage 5 [posted_int]: Time=1970-01-02 00:00:01.000 Vector(arg)=37 Delay=0.003ms
TUN TX INTERRUPT [vnet0:q0] Stage 1 [tun_net_xmit]: Time=1970-01-02 00:00:01.000 Queue=0 ICMP 10.0.0.1 -> 10.0.0.2 type=8 code=0 id=5 seq=1
TUN TX INTERRUPT [vnet0:q0] Stage 1 [tun_net_xmit]: Time=1970-01-02 00:00:02.000 Queue=0 ICMP 10.0.0.2 -> 10.0.0.1 type=0 code=0 id=5 seq=2
TUN TX INTERRUPT [vnet0:q0] Stage 2 [vhost_signal]: Time=1970-01-02 00:00:12.000 EventFD(vq)=0xff Delay=0.030ms
Total events collected: 6
`
	var w warnings
	log := ReadTun(strings.NewReader(in), w.add)
	if !log.Ended || log.Device != "vnet0" || len(log.Packets) != 2 {
		t.Fatalf("log %+v", log)
	}
	p := log.Packets[0]
	if p.ID != 5 || p.Seq != 1 || p.Type != 8 || p.Total != (Dur{45_000, true}) || p.FirstHop != (Dur{30_000, true}) || p.Line != 6 {
		t.Errorf("paired packet %+v", p)
	}
	if q := log.Packets[1]; q.Total.OK || q.FirstHop.OK || !strings.Contains(q.Note, "no stage 2–5 chain") {
		t.Errorf("far chain paired: %+v", q)
	}
	if len(w) != 2 || !strings.Contains(w[0], "1 stage-1 line(s) had no stage 2–5 chain") || !strings.Contains(w[1], "1 stage 2–5 chain(s) had no stage-1 line") {
		t.Errorf("warnings %q", w)
	}
}

// The host tool's flow lines accumulate the stages seen per ping; the
// latency line belongs to the [complete] line before it; the devices tell
// the role.
func TestHostFlowsAndRole(t *testing.T) {
	in := `=== ICMP Path Tracer ===
RX Interface(s): eth1(ifindex=3)
TX Interface(s): vnet35(ifindex=62), vnet36(ifindex=63)
2026-02-06 16:00:01.100 [incomplete] ID=7 Seq=1 ReqRX:Y ReqTX:- RepRX:- RepTX:-
2026-02-06 16:00:01.101 [incomplete] ID=7 Seq=1 ReqRX:Y ReqTX:Y RepRX:- RepTX:-
2026-02-06 16:00:01.102 [complete] ID=7 Seq=1 ReqRX:Y ReqTX:Y RepRX:Y RepTX:Y
  Latency(us): ReqInternal=12.5  External=300.0  RepInternal=N/A  Total=330.1
Detaching...
`
	var w warnings
	log := ReadHost(strings.NewReader(in), w.add)
	if log.Role() != RoleReceiver || log.TxIface != "vnet35,vnet36" || !log.Ended || len(log.Flows) != 1 {
		t.Fatalf("log %+v", log)
	}
	f := log.Flows[0]
	if f.Seen != 0xf || f.StageWall[1]-f.StageWall[0] != 1e6 || f.Latency[0] != (Dur{12_500, true}) || f.Latency[2].OK || f.Latency[3] != (Dur{330_100, true}) {
		t.Errorf("flow %+v", f)
	}
	if len(w) != 1 || !strings.HasPrefix(w[0], "7: bad latency value") {
		t.Errorf("warnings %q", w)
	}
}
