package vhost

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/testkit/nettest"
	"github.com/pingpath/pingpath/internal/testkit/testenv"
	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/tracertest"
)

// TestTraceRealPackets runs vhost-rx and vhost-tx on the vnet of a tap link
// (user space backend, like the lab's --vm-link tap) and pings both ways:
//   - host → guest: the requests go into the guest (vhost-rx role request:
//     S1 tun transmit, S2 the backend's read) and the replies come out of it
//     (vhost-tx role reply: the backend's write, netif_receive_skb);
//   - guest → host: the other way round (vhost-tx request, vhost-rx reply).
//
// The vhost/eventfd/irqfd/KVM stages cannot happen on this path; the test
// checks the header says so and that no record claims them. Honors
// PINGPATH_TEST_PROBE (the kernel matrix runs it per rung).
func TestTraceRealPackets(t *testing.T) {
	probe := testenv.Probe()
	l := newTapLink(t)
	tracertest.WithoutBTF(t, l.host.Do, func() (tracer.Tool, error) {
		return New(Config{Tool: record.ToolVhostRX, Interface: l.vnet, SrcIP: l.hostIP, DstIP: l.vmIP})
	})
	// One pair of tracers per ping direction, as on the two hosts of a run
	// (--src-ip is the pinging VM): each must see only its own pings.
	rx := startTracer(t, l.host, l.vnet, record.ToolVhostRX, probe, l.hostIP, l.vmIP)
	tx := startTracer(t, l.host, l.vnet, record.ToolVhostTX, probe, l.hostIP, l.vmIP)
	rxRev := startTracer(t, l.host, l.vnet, record.ToolVhostRX, probe, l.vmIP, l.hostIP)
	txRev := startTracer(t, l.host, l.vnet, record.ToolVhostTX, probe, l.vmIP, l.hostIP)

	const n = 20
	idOut, idIn := uint16(os.Getpid()&0x7fff|0x100), uint16(os.Getpid()&0x7fff|0x8000)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []struct {
		from *nettest.Netns
		opts nettest.PingOptions
	}{
		{l.host, nettest.PingOptions{Dst: l.vmIP, ID: idOut, FirstSeq: 1, Count: n, Interval: 5 * time.Millisecond}},
		{l.vm, nettest.PingOptions{Dst: l.hostIP, ID: idIn, FirstSeq: 1, Count: n, Interval: 5 * time.Millisecond}},
	} {
		res, err := p.from.Ping(ctx, p.opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Replies) != n {
			t.Fatalf("ping from %s: %d replies of %d (lost %v)", p.from.Name, len(res.Replies), n, res.Lost)
		}
	}
	seqs := make([]uint16, n)
	for i := range seqs {
		seqs[i] = uint16(i + 1)
	}
	for _, w := range []struct {
		tr *tracertest.Tracer
		id uint16
	}{{rx, idOut}, {tx, idOut}, {rxRev, idIn}, {txRev, idIn}} {
		w.tr.WaitRecords(t, tracertest.HasSeqs(w.id, seqs...))
	}
	assertNoTrackedSkbs(t, rx)
	assertNoTrackedSkbs(t, rxRev)
	rxs, txs := rx.Stop(t), tx.Stop(t)
	rxRevS, txRevS := rxRev.Stop(t), txRev.Stop(t)

	// Headers: the live stages with their rung, the rest unavailable with a reason.
	for _, c := range []struct {
		h    *record.Header
		live []string
		dead []string
	}{
		{rxs.Header, []string{record.StageTunXmit, record.StageVhostRecv}, []string{record.StageVhostSignal, record.StageIrqfd, record.StageKVMIRQ}},
		{txs.Header, []string{record.StageTunSendmsg, record.StageNetifReceive}, []string{record.StageKick, record.StageHandleTX}},
	} {
		for _, s := range c.live {
			p := probeOf(c.h, s)
			if !p.Available {
				t.Errorf("%s %s unavailable: %s", c.h.Tool, s, p.Reason)
			}
			if probe != tracer.ProbeAuto && p.Method != probe && !(probe == tracer.ProbeTracepoint && p.Method == string(tracer.RawTracepoint)) &&
				!strings.Contains(p.Reason, "no "+probe+" rung") {
				t.Errorf("%s %s: forced %s but got %s (%s)", c.h.Tool, s, probe, p.Method, p.Reason)
			}
		}
		for _, s := range c.dead {
			if p := probeOf(c.h, s); p.Available || !strings.Contains(p.Reason, "user space backend") {
				t.Errorf("%s %s: %+v, want unavailable because of the user space backend", c.h.Tool, s, p)
			}
		}
		if c.h.Args["discovery"] == "" || !strings.Contains(c.h.Args["discovery"], "held by pid") {
			t.Errorf("%s discovery: %q", c.h.Tool, c.h.Args["discovery"])
		}
	}
	t.Logf("vhost-rx: %s; probes %+v", describe(rxs), rxs.Header.Probes[:2])
	t.Logf("vhost-tx: %s", describe(txs))

	// check returns one stream's records of a role and id, after checking
	// there are exactly n, each with both live stages in order and none of
	// the stages this path cannot have.
	check := func(s *record.Stream, role string, id uint16, from, to, dur string, absent []string) map[uint16]record.Ping {
		got := pingsBy(s, role, id)
		if len(s.Pings) != n || len(got) != n {
			t.Errorf("%s src %s: %d records, %d of them %ss of id %d, want exactly %d", s.Header.Tool, s.Header.SrcIP, len(s.Pings), len(got), role, id, n)
		}
		for seq, p := range got {
			a, okA := p.Stages[from]
			b, okB := p.Stages[to]
			if !okA || !okB || b < a || p.Durations[dur] != int64(b-a) || b-a > uint64(time.Second) {
				t.Errorf("%s %s seq %d: stages %v durations %v", s.Header.Tool, role, seq, p.Stages, p.Durations)
			}
			for _, st := range absent {
				if _, ok := p.Stages[st]; ok {
					t.Errorf("%s %s seq %d reports %s", s.Header.Tool, role, seq, st)
				}
			}
			if _, ok := p.Durations["total"]; ok {
				t.Errorf("%s %s seq %d: a total without its end stages", s.Header.Tool, role, seq)
			}
		}
		return got
	}
	checkRX := func(s *record.Stream, role string, id uint16) map[uint16]record.Ping {
		got := check(s, role, id, record.StageTunXmit, record.StageVhostRecv, "s1_s2", []string{record.StageVhostSignal, record.StageIrqfd, record.StageKVMIRQ})
		for seq, p := range got {
			if p.Devices[record.StageTunXmit] != l.vnet || p.Extra["vhost_tid"] == "" {
				t.Errorf("vhost-rx %s seq %d: devices %v extra %v", role, seq, p.Devices, p.Extra)
			}
		}
		return got
	}
	checkTX := func(s *record.Stream, role string, id uint16) map[uint16]record.Ping {
		got := check(s, role, id, record.StageTunSendmsg, record.StageNetifReceive, "tun_sendmsg_netif_receive", []string{record.StageKick, record.StageHandleTX})
		for seq, p := range got {
			// The write and the receive happen in the backend's thread.
			if p.PID[record.StageTunSendmsg] != p.PID[record.StageNetifReceive] {
				t.Errorf("vhost-tx %s seq %d: tids %v", role, seq, p.PID)
			}
		}
		return got
	}
	reqIn := checkRX(rxs, "request", idOut)
	repOut := checkTX(txs, "reply", idOut)
	reqOut := checkTX(txRevS, "request", idIn)
	repIn := checkRX(rxRevS, "reply", idIn)
	// Per ping, on one clock: the request enters the guest before its
	// reply leaves it, and the guest's request leaves before the reply enters.
	for seq, in := range reqIn {
		if out, ok := repOut[seq]; ok && out.Stages[record.StageTunSendmsg] <= in.Stages[record.StageVhostRecv] {
			t.Errorf("seq %d: reply left the guest (%d) before the request was read (%d)", seq, out.Stages[record.StageTunSendmsg], in.Stages[record.StageVhostRecv])
		}
	}
	for seq, out := range reqOut {
		if in, ok := repIn[seq]; ok && in.Stages[record.StageTunXmit] <= out.Stages[record.StageNetifReceive] {
			t.Errorf("seq %d: reply sent toward the guest before its request arrived", seq)
		}
	}
	for _, s := range []*record.Stream{rxs, txs, rxRevS, txRevS} {
		if s.Trailer.ExitReason != tracer.ExitSignal || s.Trailer.Counters["ringbuf_lost"] != 0 {
			t.Errorf("%s trailer %+v", s.Header.Tool, s.Trailer)
		}
	}
}
