package vhost

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

func allRX() map[string]bool {
	m := map[string]bool{}
	for _, s := range record.VhostRX.Stages {
		m[s] = true
	}
	return m
}

func allTX() map[string]bool {
	m := map[string]bool{}
	for _, s := range record.VhostTX.Stages {
		m[s] = true
	}
	return m
}

func readCorpus(t *testing.T, name string) []Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "chains", name))
	if err != nil {
		t.Fatal(err)
	}
	evs, err := ReadEvents(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return evs
}

func TestReplayRXBatchFastPath(t *testing.T) {
	var got []*pingOrDrop
	c := NewRXCorrelator(RXConfig{Available: allRX(), Device: "vnet0"}, collect(&got))
	replay(t, c, readCorpus(t, "rx-batch-fastpath.jsonl"))
	if len(got) != 2 {
		t.Fatalf("%d records, want 2", len(got))
	}
	for i, want := range []struct {
		seq    uint16
		s1, s2 uint64
	}{{1, 1000000, 1012000}, {2, 1004000, 1014000}} {
		p := got[i].ping
		if p == nil || p.Seq != want.seq || p.ID != 77 || p.Role != "request" {
			t.Fatalf("record %d: %+v", i, got[i])
		}
		st := p.Stages
		if st[record.StageTunXmit] != want.s1 || st[record.StageVhostRecv] != want.s2 || st[record.StageVhostSignal] != 1020000 ||
			st[record.StageIrqfd] != 1023000 || st[record.StageKVMIRQ] != 1025000 {
			t.Errorf("seq %d stages %v", want.seq, st)
		}
		if p.Durations["total"] != int64(1025000-want.s1) || p.Durations["s2_s3"] != int64(1020000-want.s2) ||
			p.Durations["s4_s5"] != 2000 || p.Durations["s3_s4"] != 3000 {
			t.Errorf("seq %d durations %v", want.seq, p.Durations)
		}
		if p.Extra["eventfd"] != "0xffff888160000700" || p.Extra["vector"] != "37" || p.Extra["gsi"] != "37" ||
			p.Extra["vhost_tid"] != "4300" || p.Extra["missing"] != "" || p.Devices[record.StageKVMIRQ] != "vnet0" {
			t.Errorf("seq %d extra %v devices %v", want.seq, p.Extra, p.Devices)
		}
	}
	if n := c.Counters()["unmatched"]; n != 1 {
		t.Errorf("unmatched %d, want 1 (the other VM's signal)", n)
	}
}

func TestReplayRXKworkerInjection(t *testing.T) {
	var got []*pingOrDrop
	replay(t, NewRXCorrelator(RXConfig{Available: allRX()}, collect(&got)), readCorpus(t, "rx-kworker-inject.jsonl"))
	if len(got) != 1 || got[0].ping == nil {
		t.Fatalf("records %+v", got)
	}
	p := got[0].ping
	if p.Role != "reply" || p.Seq != 300 {
		t.Errorf("identity %d/%d role %s", p.ID, p.Seq, p.Role)
	}
	if p.Stages[record.StageIrqfd] != 5015000 || p.Stages[record.StageKVMIRQ] != 5031000 || p.Comm[record.StageKVMIRQ] != "kworker/1:2" {
		t.Errorf("irqfd/injection %v %v", p.Stages, p.Comm)
	}
	if p.Durations["total"] != 31000 || p.Extra["gsi"] != "37" {
		t.Errorf("durations %v extra %v", p.Durations, p.Extra)
	}
}

func TestReplayRXSuppressedAndLost(t *testing.T) {
	var got []*pingOrDrop
	names := map[uint32]string{9: "TUN_RING_FULL"}
	c := NewRXCorrelator(RXConfig{Available: allRX(), Device: "vnet0", DropReason: func(c uint32) string { return names[c] }}, collect(&got))
	for _, ev := range readCorpus(t, "rx-suppressed-and-lost.jsonl") {
		c.Add(ev)
	}
	// Nothing is final before the timeout: seq 10 could still be signalled.
	c.Advance(9_300_000)
	for _, r := range got {
		if r.ping != nil {
			t.Fatalf("ping written before its timeout: %+v", r.ping)
		}
	}
	c.Advance(9_300_000 + 3_000_000_000)
	if len(got) != 3 {
		t.Fatalf("%d records, want 3", len(got))
	}
	if d := got[0].drop; d == nil || d.Seq != 11 || d.Reason != "TUN_RING_FULL" || d.ReasonCode != 9 || d.LastSeen != record.StageTunXmit || d.FirstMissed != record.StageVhostRecv {
		t.Errorf("first record %+v, want the drop of seq 11", got[0])
	}
	if p := got[1].ping; p == nil || p.Seq != 10 || len(p.Stages) != 3 || p.Extra["missing"] != "s4_irqfd,s5_kvm_irq" {
		t.Errorf("second record %+v, want seq 10 with s1..s3", got[1])
	} else if _, ok := p.Durations["total"]; ok {
		t.Errorf("seq 10 has a total without S5: %v", p.Durations)
	}
	if d := got[2].drop; d == nil || d.Seq != 12 || d.Reason != "" || d.FirstMissed != record.StageVhostRecv {
		t.Errorf("third record %+v, want seq 12 never taken", got[2])
	}
	cn := c.Counters()
	if cn["pings"] != 1 || cn["drops"] != 2 || cn["incomplete"] != 1 {
		t.Errorf("counters %v", cn)
	}
}

// TestReplayRXSuppressedThenSignalled: a signal without an eventfd signal
// (the guest was polling) ends its chain when the worker takes the next
// packet, without s4/s5 and with extra.notify "suppressed"; the next
// packet's irqfd wake-up and injection are its own, not the earlier
// chain's (they were, before 2026-12-06: E of 300 ms on the KVM lab).
func TestReplayRXSuppressedThenSignalled(t *testing.T) {
	var got []*pingOrDrop
	avail := allRX()
	avail[HookEventfd] = true // as on a host: what tells a suppressed signal
	replay(t, NewRXCorrelator(RXConfig{Available: avail, Device: "vnet0"}, collect(&got)), readCorpus(t, "rx-suppressed-then-signalled.jsonl"))
	if len(got) != 2 || got[0].ping == nil || got[1].ping == nil {
		t.Fatalf("records %+v, want two pings", got)
	}
	p10, p11 := got[0].ping, got[1].ping
	if p10.Seq != 10 || len(p10.Stages) != 3 || p10.Extra["missing"] != "s4_irqfd,s5_kvm_irq" || p10.Extra["notify"] != "suppressed" {
		t.Errorf("seq %d: stages %v extra %v, want s1..s3, missing s4/s5, notify suppressed", p10.Seq, p10.Stages, p10.Extra)
	}
	if _, ok := p10.Durations["total"]; ok {
		t.Errorf("seq 10 has a total without its own injection: %v", p10.Durations)
	}
	if p11.Seq != 11 || len(p11.Stages) != 5 || p11.Durations["total"] != 310460000-310000000 || p11.Extra["notify"] != "" {
		t.Errorf("seq %d: stages %v durations %v extra %v, want all five, total = s5 − s1", p11.Seq, p11.Stages, p11.Durations, p11.Extra)
	}
}

// TestReplayRXOnlyLiveStages is the tap-link situation of the lab: only S1
// and S2 exist; a chain is complete at S2 and nothing else is claimed.
func TestReplayRXOnlyLiveStages(t *testing.T) {
	var got []*pingOrDrop
	avail := map[string]bool{record.StageTunXmit: true, record.StageVhostRecv: true}
	replay(t, NewRXCorrelator(RXConfig{Available: avail}, collect(&got)), readCorpus(t, "rx-batch-fastpath.jsonl"))
	if len(got) != 2 {
		t.Fatalf("%d records", len(got))
	}
	for _, r := range got {
		p := r.ping
		if len(p.Stages) != 2 || p.Durations["s1_s2"] <= 0 || p.Extra["missing"] != "" {
			t.Errorf("record %+v", p)
		}
		if _, ok := p.Durations["total"]; ok {
			t.Errorf("total without S5: %v", p.Durations)
		}
	}
}

func TestReplayTXBatch(t *testing.T) {
	var got []*pingOrDrop
	replay(t, NewTXCorrelator(TXConfig{Available: allTX(), Device: "vnet0"}, collect(&got)), readCorpus(t, "tx-batch.jsonl"))
	if len(got) != 3 {
		t.Fatalf("%d records, want 3", len(got))
	}
	p1, p2, p3 := got[0].ping, got[1].ping, got[2].ping
	if p1.Seq != 1 || p1.Stages[record.StageKick] != 2000000 || p1.Stages[record.StageHandleTX] != 2010000 ||
		p1.Stages[record.StageTunSendmsg] != 2013000 || p1.Durations["total"] != 16000 || p1.Extra["kick_tid"] != "4250" {
		t.Errorf("seq 1: %+v", p1)
	}
	// The same handle_tx pass (and kick) sends seq 2 with its own sendmsg.
	if p2.Seq != 2 || p2.Stages[record.StageKick] != 2000000 || p2.Stages[record.StageTunSendmsg] != 2018000 || p2.Durations["tun_sendmsg_netif_receive"] != 2000 {
		t.Errorf("seq 2: %+v", p2)
	}
	if p3.Seq != 3 || len(p3.Stages) != 1 || p3.Extra["missing"] != "kick,handle_tx,tun_sendmsg" || p3.Durations != nil {
		t.Errorf("seq 3: %+v", p3)
	}
}

// TestReplayNeverInventsStages replays every corpus with each stage made
// unavailable in turn: a record never has a stage that was not available,
// and every record carries the packet's ICMP identity.
func TestReplayNeverInventsStages(t *testing.T) {
	files, _ := filepath.Glob("testdata/chains/*.jsonl")
	for _, f := range files {
		evs := readCorpus(t, filepath.Base(f))
		for _, tool := range []struct {
			stages []string
			mk     func(map[string]bool, tracer.Sink) *Correlator
		}{
			{record.VhostRX.Stages, func(a map[string]bool, e tracer.Sink) *Correlator { return NewRXCorrelator(RXConfig{Available: a}, e) }},
			{record.VhostTX.Stages, func(a map[string]bool, e tracer.Sink) *Correlator { return NewTXCorrelator(TXConfig{Available: a}, e) }},
		} {
			for _, off := range tool.stages {
				avail := map[string]bool{}
				for _, s := range tool.stages {
					avail[s] = s != off
				}
				var got []*pingOrDrop
				c := tool.mk(avail, collect(&got))
				for _, ev := range evs {
					// The BPF side emits nothing for a stage that is not attached.
					if stageOf(ev.Kind) == off {
						continue
					}
					c.Add(ev)
				}
				c.Flush(0)
				for _, r := range got {
					if r.ping == nil {
						continue
					}
					if r.ping.ID == 0 || r.ping.Seq == 0 {
						t.Errorf("%s without %s: record without identity %+v", f, off, r.ping)
					}
					if _, ok := r.ping.Stages[off]; ok {
						t.Errorf("%s without %s: record reports it: %+v", f, off, r.ping.Stages)
					}
				}
			}
		}
	}
}

func stageOf(k Kind) string {
	switch k {
	case KindTunXmit:
		return record.StageTunXmit
	case KindVhostRecv:
		return record.StageVhostRecv
	case KindVhostSignal:
		return record.StageVhostSignal
	case KindIrqfd:
		return record.StageIrqfd
	case KindKVMIRQ:
		return record.StageKVMIRQ
	case KindKick:
		return record.StageKick
	case KindHandleTX:
		return record.StageHandleTX
	case KindTunSendmsg:
		return record.StageTunSendmsg
	case KindNetifReceive:
		return record.StageNetifReceive
	}
	return ""
}

func TestTextView(t *testing.T) {
	tl := &Tool{cfg: Config{Tool: record.ToolVhostRX, Interface: "vnet7"}}
	var got []*pingOrDrop
	replay(t, NewRXCorrelator(RXConfig{Available: allRX()}, collect(&got)), readCorpus(t, "rx-batch-fastpath.jsonl"))
	var b strings.Builder
	h := &record.Header{Tool: record.ToolVhostRX}
	tl.TextPing(&b, h, got[0].ping)
	want := "VHOST-RX [vnet7] request id=77 seq=1 s1_tun_xmit=+0.000us s2_vhost_recv=+12.000us s3_vhost_signal=+20.000us s4_irqfd=+23.000us s5_kvm_irq=+25.000us total=25.000us\n"
	if b.String() != want {
		t.Errorf("text line\n got %q\nwant %q", b.String(), want)
	}
	b.Reset()
	tl.TextDrop(&b, h, &record.Drop{Role: "request", ID: 5, Seq: 11, LastSeen: record.StageTunXmit, Reason: "TUN_RING_FULL"})
	if !strings.Contains(b.String(), "DROP request id=5 seq=11 after s1_tun_xmit: TUN_RING_FULL") {
		t.Errorf("drop line %q", b.String())
	}
}

// TestAdvanceWithLaggingReader: a tick while the reader is behind (events
// arrived since the last tick) must not expire state by the wall clock; the
// packet's later events are still in the ring buffer.
func TestAdvanceWithLaggingReader(t *testing.T) {
	var got []*pingOrDrop
	c := NewTXCorrelator(TXConfig{Available: allTX()}, collect(&got))
	c.Add(Event{Kind: KindTunSendmsg, TS: 1_000_000, TID: 7})
	c.Tick(900_000_000) // 0.9 s later by the clock, reader far behind
	c.Add(Event{Kind: KindNetifReceive, TS: 1_050_000, TID: 7, ICMP: &Identity{Type: 0, ID: 1, Seq: 1}})
	c.Tick(900_100_000) // the reader caught up: time is the newest event's
	if len(got) != 0 {
		t.Fatalf("released before the reorder window passed: %+v", got[0])
	}
	c.Tick(900_200_000) // idle tick: now the clock counts
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	if p := got[0].ping; p.Stages[record.StageTunSendmsg] != 1_000_000 || p.Durations["tun_sendmsg_netif_receive"] != 50_000 {
		t.Errorf("record %+v lost its tun_sendmsg", p)
	}
}

// TestReplayRXWithoutKVM is vhost-net without KVM (a user space driver, as
// in the kernel-matrix guest): the chain ends at the signal, and the
// eventfd hook still names the call eventfd.
func TestReplayRXWithoutKVM(t *testing.T) {
	var got []*pingOrDrop
	avail := map[string]bool{record.StageTunXmit: true, record.StageVhostRecv: true, record.StageVhostSignal: true, HookEventfd: true}
	replay(t, NewRXCorrelator(RXConfig{Available: avail}, collect(&got)), readCorpus(t, "rx-batch-fastpath.jsonl"))
	if len(got) != 2 {
		t.Fatalf("%d records", len(got))
	}
	for _, r := range got {
		p := r.ping
		if len(p.Stages) != 3 || p.Extra["eventfd"] != "0xffff888160000700" || p.Extra["missing"] != "" {
			t.Errorf("record %+v", p)
		}
	}
}
