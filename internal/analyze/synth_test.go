package analyze

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
)

// synthRun describes a generated run: every segment of every ping is known,
// so the analysis must give back exactly these values.
type synthRun struct {
	pings     int
	firstSeq  uint16
	id        uint16
	sharedClk bool         // one boot id for every stream (the lab)
	lost      map[int]bool // pings dropped by the receiver host's kernel
	swapHost  bool         // write the sender host's records out of order
	noPingLog bool
	// pingQuietLast writes ping's output as iputils does: no "no answer
	// yet" line for a lost last ping (it is printed only when the next
	// request goes out).
	pingQuietLast bool
	extraC        int64 // added to every ping's C (a slower wire)
}

// Gaps that no tracer covers; each side's residual is their sum.
const (
	gKick    = 5_000  // sender guest xmit → kick
	gQdisc   = 1_000  // vnet qdisc before tun_net_xmit
	gIRQ     = 10_000 // posted IRQ → guest netif_receive_skb
	synthIvl = 1_000_000_000
	synthRes = gKick + gQdisc + gIRQ // each side's residual
)

// segs returns ping k's segment values in ns.
func (s synthRun) segs(k int) map[string]int64 {
	return map[string]int64{
		"A": 10_000 + int64(k%7)*1000, "B_1": 20_000 + int64(k%3)*500, "B": 30_000 + int64(k%5)*100,
		"C": 40_000 + int64(k%11)*1000 + s.extraC, "D": 25_000, "E": 35_000 + int64(k%4)*2000, "F": 15_000, "G": 5_000 + int64(k%2)*100,
		"H": 8_000, "I_1": 22_000, "I": 27_000, "J": 45_000 + int64(k%9)*700, "K": 33_000, "L": 31_000 + int64(k%6)*300,
		"M": 12_000 + int64(k%8)*250,
	}
}

// expectRTT is the sender VM's total for ping k.
func (s synthRun) expectRTT(k int) int64 {
	var sum int64
	for _, v := range s.segs(k) {
		sum += v
	}
	return sum + 2*synthRes
}

type synthStream struct {
	f   *os.File
	bw  *bufio.Writer
	w   *record.Writer
	buf []any
}

func (s synthRun) write(t testing.TB, dir string) {
	t.Helper()
	boot := func(node string) string {
		if s.sharedClk {
			return "11111111-2222-3333-4444-555555555555"
		}
		return "boot-" + node
	}
	open := func(name, tool, role, node string) *synthStream {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		st := &synthStream{f: f, bw: bw, w: record.NewWriter(bw)}
		h := &record.Header{Tool: tool, Version: "test", Kernel: "6.18.0", Hostname: node, BootID: boot(node),
			Clock: "CLOCK_MONOTONIC", StartMonoNS: 1_000_000_000, StartWallNS: 1_764_200_000_000_000_000, Role: role}
		if err := st.w.Write(h); err != nil {
			t.Fatal(err)
		}
		return st
	}
	svm := open("a.jsonl", record.ToolVM, "tx", "sender-vm")
	rvm := open("b.jsonl", record.ToolVM, "rx", "receiver-vm")
	sh := open("c.jsonl", record.ToolHost, "auto", "sender-host")
	rh := open("d.jsonl", record.ToolHost, "auto", "receiver-host")
	svr := open("e.jsonl", record.ToolVhostRX, "auto", "sender-host")
	rvr := open("f.jsonl", record.ToolVhostRX, "auto", "receiver-host")
	svt := open("g.jsonl", record.ToolVhostTX, "auto", "sender-host")
	rvt := open("h.jsonl", record.ToolVhostTX, "auto", "receiver-host")
	all := []*synthStream{svm, rvm, sh, rh, svr, rvr, svt, rvt}
	var pingLog *bufio.Writer
	if !s.noPingLog {
		f, err := os.Create(filepath.Join(dir, "ping.log"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		pingLog = bufio.NewWriter(f)
		defer pingLog.Flush()
		fmt.Fprintf(pingLog, "PING 198.18.2.1 (198.18.2.1) 56(84) bytes of data.\n")
	}
	ping := func(seq uint16, role string, st map[string]uint64) *record.Ping {
		return &record.Ping{ID: s.id, Seq: seq, Role: role, Stages: st}
	}
	received := 0
	for k := 0; k < s.pings; k++ {
		seq := s.firstSeq + uint16(k)
		v := s.segs(k)
		u := func(n string) uint64 { return uint64(v[n]) }
		t0 := uint64(2_000_000_000 + int64(k)*synthIvl)
		p1s := t0
		p1e := p1s + u("A")
		kick := p1e + gKick
		shIn := kick + u("B_1")
		shOut := shIn + u("B")
		rhIn := shOut + u("C")
		if s.lost[k] {
			svm.buf = append(svm.buf, &record.Drop{ID: s.id, Seq: seq, Role: "tx", LastSeen: "p1_end", FirstMissed: "p2_start",
				Stages: map[string]uint64{"p1_start": p1s, "p1_end": p1e}})
			svt.w.Write(ping(seq, "request", map[string]uint64{"kick": kick, "netif_receive": shIn}))
			sh.buf = append(sh.buf, &record.Drop{ID: s.id, Seq: seq, Role: "sender", LastSeen: "req_out", FirstMissed: "rep_in",
				Stages: map[string]uint64{"req_in": shIn, "req_out": shOut}})
			rh.buf = append(rh.buf, &record.Drop{ID: s.id, Seq: seq, Role: "receiver", LastSeen: "req_in", FirstMissed: "req_out",
				Stages: map[string]uint64{"req_in": rhIn}, Reason: "NETFILTER_DROP", ReasonCode: 6, Location: "nft_do_chain", AtNS: rhIn + 2000})
			if pingLog != nil && !(s.pingQuietLast && k == s.pings-1) {
				fmt.Fprintf(pingLog, "[%d.%06d] no answer yet for icmp_seq=%d\n", 1764200001+k, 0, seq)
			}
			continue
		}
		rhOut := rhIn + u("D")
		e1 := rhOut + gQdisc
		e5 := e1 + u("E")
		r1s := e5 + gIRQ
		r1e := r1s + u("F")
		r2s := r1e + u("G")
		r2e := r2s + u("H")
		rk := r2e + gKick
		rhRepIn := rk + u("I_1")
		rhRepOut := rhRepIn + u("I")
		shRepIn := rhRepOut + u("J")
		shRepOut := shRepIn + u("K")
		l1 := shRepOut + gQdisc
		l5 := l1 + u("L")
		s2s := l5 + gIRQ
		s2e := s2s + u("M")
		svm.buf = append(svm.buf, ping(seq, "", map[string]uint64{"p1_start": p1s, "p1_end": p1e, "p2_start": s2s, "p2_end": s2e}))
		rvm.w.Write(ping(seq, "", map[string]uint64{"p1_start": r1s, "p1_end": r1e, "p2_start": r2s, "p2_end": r2e}))
		sh.buf = append(sh.buf, ping(seq, "sender", map[string]uint64{"req_in": shIn, "req_out": shOut, "rep_in": shRepIn, "rep_out": shRepOut}))
		rh.buf = append(rh.buf, ping(seq, "receiver", map[string]uint64{"req_in": rhIn, "req_out": rhOut, "rep_in": rhRepIn, "rep_out": rhRepOut}))
		rvr.w.Write(ping(seq, "request", map[string]uint64{"s1_tun_xmit": e1, "s2_vhost_recv": e1 + 3000, "s5_kvm_irq": e5}))
		svr.w.Write(ping(seq, "reply", map[string]uint64{"s1_tun_xmit": l1, "s5_kvm_irq": l5}))
		svt.w.Write(ping(seq, "request", map[string]uint64{"kick": kick, "netif_receive": shIn}))
		rvt.w.Write(ping(seq, "reply", map[string]uint64{"kick": rk, "netif_receive": rhRepIn}))
		received++
		if pingLog != nil {
			rtt := float64(s2e-p1s+30_000) / 1e6
			fmt.Fprintf(pingLog, "[%d.%06d] 64 bytes from 198.18.2.1: icmp_seq=%d ttl=64 time=%.3f ms\n", 1764200001+k, 123, seq, rtt)
		}
	}
	for _, st := range []*synthStream{svm, sh, rh} {
		if st == sh && s.swapHost {
			// Ring buffers of several CPUs: neighbours come out swapped.
			for i := 0; i+1 < len(st.buf); i += 2 {
				st.buf[i], st.buf[i+1] = st.buf[i+1], st.buf[i]
			}
		}
		for _, r := range st.buf {
			if err := st.w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, st := range all {
		st.w.Write(&record.Trailer{EndMonoNS: 9e18, ExitReason: "signal", Counters: map[string]uint64{"events": 1}})
		if err := st.bw.Flush(); err != nil {
			t.Fatal(err)
		}
		st.f.Close()
	}
	if pingLog != nil {
		fmt.Fprintf(pingLog, "\n--- 198.18.2.1 ping statistics ---\n%d packets transmitted, %d received, %d%% packet loss, time 1000ms\n",
			s.pings, received, (s.pings-received)*100/max(s.pings, 1))
	}
}
