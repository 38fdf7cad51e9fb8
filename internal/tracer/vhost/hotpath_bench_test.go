package vhost

import (
	"encoding/binary"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

type benchStage struct {
	off       uint64
	kind      Kind
	key, key2 uint64
	parsed    bool
}

// benchHotPath drives one vhost tool's user-space path (decode, reorder,
// link, record) through the tracer.Tool interface: one chain of stages per
// packet at 10 000 packets/s of event time, a Tick every 100 ms.
func benchHotPath(b *testing.B, tool string, stages []benchStage) {
	t := testTool(&testing.T{}, tool)
	var choices []tracer.Choice
	for _, s := range t.Stages() {
		choices = append(choices, tracer.Choice{Stage: s.Name, Available: true, Rung: tracer.Rung{Hooks: []tracer.Hook{{Target: "tun_recvmsg"}}}})
	}
	out := &counted{}
	if err := t.Start(choices, out); err != nil {
		b.Fatal(err)
	}
	raw := make([]byte, rawEventSize)
	ne := binary.NativeEndian
	const base = uint64(1e12)
	n := len(stages)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, st := uint64(i/n), stages[i%n]
		ts := base + p*100_000 + st.off
		ne.PutUint64(raw[0:], ts)
		ne.PutUint16(raw[20:], 7)
		ne.PutUint16(raw[22:], uint16(p))
		raw[24], raw[25], raw[26] = uint8(st.kind), 0, 8
		if st.parsed {
			raw[25] = 1
		}
		tail := raw[tracer.EventSize:]
		ne.PutUint64(tail[0:], st.key+p%64*0x100) // skb pointers are reused
		ne.PutUint64(tail[8:], st.key2)
		ne.PutUint32(tail[16:], 4242) // vhost worker
		if err := t.Event(raw); err != nil {
			b.Fatal(err)
		}
		if i%(1000*n) == 1000*n-1 {
			t.Tick(ts + 1_000_000)
		}
	}
	t.Finish()
	if out.pings < b.N/n-1 || out.drops > 1 {
		b.Fatalf("%d pings %d drops of %d events", out.pings, out.drops, b.N)
	}
}

func BenchmarkHotPathRX(b *testing.B) {
	benchHotPath(b, record.ToolVhostRX, []benchStage{
		{0, KindTunXmit, 0xffff000000, 0, true}, {8_000, KindVhostRecv, 0xffff000000, 0, false},
		{12_000, KindVhostSignal, 0, 0xaa00, false}, {13_000, KindEventfd, 0xee00, 0, false},
		{14_000, KindIrqfd, 0xee00, 0, false}, {15_000, KindKVMIRQ, IRQPosted, 0, false},
		{16_000, KindSkbConsumed, 0xffff000000, 0, false}})
}

func BenchmarkHotPathTX(b *testing.B) {
	benchHotPath(b, record.ToolVhostTX, []benchStage{
		{0, KindKick, 0, 0, false}, {1_000, KindPollWakeup, 0xbb00, 0, false},
		{6_000, KindHandleTX, 0xbb00, 0, false}, {7_000, KindTunSendmsg, 0, 0, false},
		{9_000, KindNetifReceive, 0xffff000000, 0, true}})
}
