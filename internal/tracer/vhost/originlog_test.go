package vhost

import (
	"bufio"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
)

// The origin tool tun_tx_to_kvm_irq.py printed one line per stage, with
// millisecond wall times, microsecond delays measured from the previous
// stage (stage 4 from stage 2!) and ICMP identity on stage 1 only. These
// helpers turn such a log into the event sequence our BPF programs would
// have produced on that host, in the log's own (not chronological) order.

var (
	originStageRE = regexp.MustCompile(`Stage (\d) \[\w+\]: Time=\S+ (\d\d):(\d\d):(\d\d)\.(\d{3}) (.*)$`)
	originFieldRE = regexp.MustCompile(`([A-Za-z]+(?:\([a-z]+\))?)=(\S+)`)
	originICMPRE  = regexp.MustCompile(`ICMP (\S+) -> (\S+) type=(\d+) code=\d+ id=(\d+) seq=(\d+)`)
	originTotalRE = regexp.MustCompile(`Total\(S1->S5\): ([\d.]+)ms`)
)

type originLine struct {
	stage   int
	timeMS  uint64 // ms of the day
	fields  map[string]string
	icmp    *Identity
	delayNS uint64
	total   uint64 // ns, on the "-> Total" line following stage 5
	lineNo  int
}

func parseOriginVhostRX(t *testing.T, path string) []*originLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*originLine
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if m := originTotalRE.FindStringSubmatch(line); m != nil && len(out) > 0 {
			out[len(out)-1].total = msToNS(t, m[1])
			continue
		}
		m := originStageRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ol := &originLine{lineNo: n, fields: map[string]string{}}
		ol.stage, _ = strconv.Atoi(m[1])
		h, _ := strconv.Atoi(m[2])
		mi, _ := strconv.Atoi(m[3])
		s, _ := strconv.Atoi(m[4])
		ms, _ := strconv.Atoi(m[5])
		ol.timeMS = uint64(((h*60+mi)*60+s)*1000 + ms)
		for _, fm := range originFieldRE.FindAllStringSubmatch(m[6], -1) {
			ol.fields[fm[1]] = fm[2]
		}
		if d, ok := ol.fields["Delay"]; ok {
			ol.delayNS = msToNS(t, strings.TrimSuffix(d, "ms"))
		}
		if im := originICMPRE.FindStringSubmatch(m[6]); im != nil {
			typ, _ := strconv.Atoi(im[3])
			id, _ := strconv.Atoi(im[4])
			seq, _ := strconv.Atoi(im[5])
			ol.icmp = &Identity{Type: uint8(typ), ID: uint16(id), Seq: uint16(seq),
				Src: netip.MustParseAddr(im[1]), Dst: netip.MustParseAddr(im[2])}
		}
		out = append(out, ol)
	}
	return out
}

func msToNS(t *testing.T, s string) uint64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("parsing %q: %v", s, err)
	}
	return uint64(math.Round(v * 1e6))
}

func ptrField(t *testing.T, s string) Ptr {
	var p Ptr
	if err := p.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return p
}

// originChain is one reconstructed packet: its stage-1 line (nil when the
// log has none) and its stage 2..5 lines.
type originChain struct {
	s1    *originLine
	block []*originLine // stages 2..5 in order, as far as printed
}

// originExpect is what a correct tracer reports for one chain.
type originExpect struct {
	id, seq     uint16
	total       int64 // t5 − t1 = d2 + d4 + d5
	originTotal int64 // the origin's printed d2+d3+d4+d5
	d3          int64
	s3s4        int64 // t4 − t3 (our S3 is the origin's stage 2)
	complete    bool
}

// originEvents converts the log into events (in log order) and the
// expected records. Stage-1 lines are joined to the stage-2..5 block with the
// same tun socket printed within ±1 ms, wherever it sits in the file.
func originEvents(t *testing.T, lines []*originLine) ([]Event, []originExpect) {
	t.Helper()
	var s1s []*originLine
	var chains []*originChain
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l.stage == 1 {
			s1s = append(s1s, l)
			continue
		}
		if l.stage != 2 {
			continue // a block without its stage 2 cannot be placed
		}
		ch := &originChain{block: []*originLine{l}}
		for j := i + 1; j < len(lines) && lines[j].stage == ch.block[len(ch.block)-1].stage+1; j++ {
			ch.block = append(ch.block, lines[j])
			i = j
		}
		chains = append(chains, ch)
	}
	used := map[*originLine]bool{}
	for _, ch := range chains {
		var best *originLine
		for _, s1 := range s1s {
			if used[s1] || s1.fields["Sock(tfile)"] != ch.block[0].fields["Sock(vq)"] {
				continue
			}
			dt := int64(s1.timeMS) - int64(ch.block[0].timeMS)
			if dt < -1 || dt > 1 {
				continue
			}
			if best == nil || absI(int64(s1.timeMS)-int64(ch.block[0].timeMS)) < absI(int64(best.timeMS)-int64(ch.block[0].timeMS)) {
				best = s1
			}
		}
		if best != nil {
			used[best] = true
			ch.s1 = best
		}
	}
	for _, s1 := range s1s {
		if !used[s1] {
			chains = append(chains, &originChain{s1: s1})
		}
	}

	// Timestamps: t1 from the stage-1 time (ms), the rest from the delays,
	// undoing the origin's stage-4-from-stage-2 quirk.
	ts := map[*originLine]uint64{}
	var exp []originExpect
	for _, ch := range chains {
		var t1 uint64
		if ch.s1 != nil {
			t1 = ch.s1.timeMS * 1_000_000
			ts[ch.s1] = t1
		} else {
			t1 = ch.block[0].timeMS*1_000_000 - ch.block[0].delayNS
		}
		var d [6]uint64
		for _, l := range ch.block {
			d[l.stage] = l.delayNS
		}
		at := [6]uint64{1: t1, 2: t1 + d[2], 3: t1 + d[2] + d[3], 4: t1 + d[2] + d[4]}
		at[5] = at[4] + d[5]
		for _, l := range ch.block {
			ts[l] = at[l.stage]
		}
		if ch.s1 == nil || len(ch.block) == 0 {
			continue
		}
		e := originExpect{id: ch.s1.icmp.ID, seq: ch.s1.icmp.Seq, d3: int64(d[3]),
			s3s4: int64(d[4]), complete: len(ch.block) == 4}
		if e.complete {
			e.total = int64(d[2] + d[4] + d[5])
			e.originTotal = int64(ch.block[3].total)
		}
		exp = append(exp, e)
	}

	var evs []Event
	for _, l := range lines {
		at, ok := ts[l]
		if !ok {
			continue
		}
		pid, _ := strconv.ParseUint(l.fields["PID"], 10, 32)
		cpu, _ := strconv.ParseUint(l.fields["CPU"], 10, 32)
		ev := Event{TS: at, TID: uint32(pid), CPU: uint32(cpu), Comm: l.fields["COMM"], Method: "kprobe"}
		switch l.stage {
		case 1:
			ev.Kind, ev.Key, ev.ICMP = KindTunXmit, ptrField(t, l.fields["Sock(tfile)"]), l.icmp
		case 2:
			ev.Kind, ev.Key2 = KindVhostSignal, ptrField(t, l.fields["VQ"])
		case 3:
			ev.Kind, ev.Key = KindEventfd, ptrField(t, l.fields["EventFD(arg)"])
		case 4:
			gsi, _ := strconv.Atoi(l.fields["GSI(irqfd)"])
			ev.Kind, ev.Key, ev.Aux = KindIrqfd, ptrField(t, l.fields["EventFD(irqfd)"]), uint32(gsi)
		case 5:
			vec, _ := strconv.Atoi(l.fields["Vector(arg)"])
			ev.Kind, ev.Key2, ev.Aux = KindKVMIRQ, ptrField(t, l.fields["VCPU"]), uint32(vec)
		}
		evs = append(evs, ev)
	}
	return evs, exp
}

func absI(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// TestReplayOriginVhostRXLogs replays every real tun_tx_to_kvm_irq log
// through the vhost-rx correlation (as a host without our S2 probe, like the
// origin) and checks each packet's total is t5 − t1, i.e. the origin's
// printed total minus its double-counted eventfd delay.
func TestReplayOriginVhostRXLogs(t *testing.T) {
	logs, _ := filepath.Glob("../../parse/origin/testdata/anchor-logs/*/*-vhost-rx.log")
	if len(logs) == 0 {
		t.Fatal("../../parse/origin/testdata/anchor-logs/*/*-vhost-rx.log missing")
	}
	totalChains, complete, outOfOrder := 0, 0, 0
	for _, path := range logs {
		t.Run(filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path), func(t *testing.T) {
			lines := parseOriginVhostRX(t, path)
			evs, exp := originEvents(t, lines)
			for i := 1; i < len(evs); i++ {
				if evs[i].TS < evs[i-1].TS {
					outOfOrder++
				}
			}
			avail := map[string]bool{record.StageTunXmit: true, record.StageVhostSignal: true, record.StageIrqfd: true, record.StageKVMIRQ: true}
			var got []*pingOrDrop
			c := NewRXCorrelator(RXConfig{Available: avail, Device: "vnet"}, collect(&got))
			for _, ev := range evs {
				c.Add(ev)
			}
			c.Flush(0)
			byKey := map[[2]uint16]*pingOrDrop{}
			for _, r := range got {
				if r.ping == nil {
					t.Errorf("unexpected drop %+v", r.drop)
					continue
				}
				byKey[[2]uint16{r.ping.ID, r.ping.Seq}] = r
			}
			if len(got) != len(exp) {
				t.Errorf("%d records, want one per stage-1 line with its chain (%d)", len(got), len(exp))
			}
			for _, e := range exp {
				totalChains++
				r := byKey[[2]uint16{e.id, e.seq}]
				if r == nil {
					t.Errorf("id=%d seq=%d: no record", e.id, e.seq)
					continue
				}
				p := r.ping
				if p.Role != "request" && p.Role != "reply" {
					t.Errorf("id=%d seq=%d: role %q", e.id, e.seq, p.Role)
				}
				if _, ok := p.Stages[record.StageVhostRecv]; ok {
					t.Errorf("id=%d seq=%d: reports S2 that was never seen", e.id, e.seq)
				}
				if e.complete {
					complete++
				}
				if !e.complete {
					if _, ok := p.Durations["total"]; ok {
						t.Errorf("id=%d seq=%d: total without S5", e.id, e.seq)
					}
					continue
				}
				if got := p.Durations["total"]; got != e.total {
					t.Errorf("id=%d seq=%d: total %d ns, want t5-t1 = %d", e.id, e.seq, got, e.total)
				}
				if got := p.Stages[record.StageKVMIRQ] - p.Stages[record.StageTunXmit]; int64(got) != e.total {
					t.Errorf("id=%d seq=%d: s5-s1 = %d, want %d", e.id, e.seq, got, e.total)
				}
				if got := p.Durations["s3_s4"]; got != e.s3s4 {
					t.Errorf("id=%d seq=%d: s3_s4 %d, want %d", e.id, e.seq, got, e.s3s4)
				}
				// The origin's printed total double counts d3 (±1 µs of rounding).
				if e.originTotal != 0 {
					if diff := e.originTotal - e.d3 - p.Durations["total"]; diff < -1500 || diff > 1500 {
						t.Errorf("id=%d seq=%d: origin total %d − d3 %d = %d, ours %d", e.id, e.seq,
							e.originTotal, e.d3, e.originTotal-e.d3, p.Durations["total"])
					}
				}
			}
		})
	}
	t.Logf("%d chains (%d complete) from %d logs, %d out-of-order event pairs replayed", totalChains, complete, len(logs), outOfOrder)
	if complete < 100 || outOfOrder == 0 {
		t.Fatalf("the origin logs hold 125 chains with out-of-order lines; parsed %d complete, %d out of order", complete, outOfOrder)
	}
}

var originTXRE = regexp.MustCompile(`^\[(\d\d):(\d\d):(\d\d)\.(\d{3})\] tid=(\d+) queue=(\d+) s0=(\d+)us s1=(\d+)us s2=(\d+)us total=(\d+)us`)

// TestReplayOriginVhostTXLogs replays the real kvm_vhost_tun_latency logs:
// each printed packet becomes the kernel events of its chain (kick in a vcpu
// thread, the vhost poll wake-up it causes, handle_tx_kick, tun_sendmsg and
// netif_receive_skb in the vhost worker), interleaved with a kick of the
// guest's RX queue that must not be taken for a TX kick. The origin printed
// no ICMP identity; the replay numbers the packets in order.
func TestReplayOriginVhostTXLogs(t *testing.T) {
	logs, _ := filepath.Glob("../../parse/origin/testdata/anchor-logs/*/*-kvm-tun.log")
	if len(logs) == 0 {
		t.Fatal("../../parse/origin/testdata/anchor-logs/*/*-kvm-tun.log missing")
	}
	packets, withKick := 0, 0
	for _, path := range logs {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		type want struct {
			seq             uint16
			s0, s1, s2, tot int64
		}
		var evs []Event
		var wants []want
		for _, line := range strings.Split(string(data), "\n") {
			m := originTXRE.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			n := make([]int64, len(m))
			for i := 1; i < len(m); i++ {
				n[i], _ = strconv.ParseInt(m[i], 10, 64)
			}
			netif := uint64(((n[1]*60+n[2])*60+n[3])*1000+n[4]) * 1_000_000
			tid, queue := uint32(n[5]), n[6]
			s0, s1, s2 := n[7]*1000, n[8]*1000, n[9]*1000
			sendmsg := netif - uint64(s2)
			handle := sendmsg - uint64(s1)
			work := Ptr(0xffff888100000000 + uint64(queue)*0x1000)
			rxWork := work + 0x800
			vcpu := uint32(90000 + queue)
			seq := uint16(len(wants) + 1)
			if s0 > 0 {
				kick := handle - uint64(s0)
				evs = append(evs,
					Event{Kind: KindKick, TS: kick, TID: vcpu, Comm: "CPU 0/KVM"},
					Event{Kind: KindPollWakeup, TS: kick + 300, TID: vcpu, Key: work},
					// The guest refills its RX ring and kicks that queue too.
					Event{Kind: KindKick, TS: kick + 1000, TID: vcpu + 1, Comm: "CPU 1/KVM"},
					Event{Kind: KindPollWakeup, TS: kick + 1200, TID: vcpu + 1, Key: rxWork})
				withKick++
			}
			evs = append(evs,
				Event{Kind: KindHandleTX, TS: handle, TID: tid, Key: work, Comm: "vhost-43272"},
				Event{Kind: KindTunSendmsg, TS: sendmsg, TID: tid},
				Event{Kind: KindNetifReceive, TS: netif, TID: tid, ICMP: &Identity{Type: 8, ID: 7, Seq: seq}})
			wants = append(wants, want{seq, s0, s1, s2, n[10] * 1000})
		}
		avail := map[string]bool{record.StageKick: true, record.StageHandleTX: true, record.StageTunSendmsg: true, record.StageNetifReceive: true}
		var got []*pingOrDrop
		replay(t, NewTXCorrelator(TXConfig{Available: avail}, collect(&got)), evs)
		if len(got) != len(wants) {
			t.Fatalf("%s: %d records, want %d", path, len(got), len(wants))
		}
		for i, w := range wants {
			p := got[i].ping
			packets++
			if p.Seq != w.seq || p.Role != "request" {
				t.Errorf("%s: record %d is seq %d role %s, want seq %d request", path, i, p.Seq, p.Role, w.seq)
			}
			if p.Durations["handle_tx_tun_sendmsg"] != w.s1 || p.Durations["tun_sendmsg_netif_receive"] != w.s2 {
				t.Errorf("%s seq %d: durations %v, want s1=%d s2=%d", path, w.seq, p.Durations, w.s1, w.s2)
			}
			tot, ok := p.Durations["total"]
			switch {
			case w.s0 == 0 && ok:
				t.Errorf("%s seq %d: total %d without a kick (the origin printed total=0)", path, w.seq, tot)
			case w.s0 > 0 && (tot != w.tot || p.Durations["kick_handle_tx"] != w.s0):
				t.Errorf("%s seq %d: total %d kick_handle_tx %d, want %d and %d", path, w.seq, tot, p.Durations["kick_handle_tx"], w.tot, w.s0)
			}
		}
	}
	t.Logf("%d packets (%d with a kick) from %d logs", packets, withKick, len(logs))
	if packets < 100 || withKick == packets {
		t.Fatalf("the origin logs hold >100 packets, some without S0; got %d (%d with S0)", packets, withKick)
	}
}
