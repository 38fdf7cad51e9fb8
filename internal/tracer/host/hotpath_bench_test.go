package host

import (
	"encoding/binary"
	"testing"
	"time"
)

// BenchmarkHotPath drives the sender host tracer's user-space path (decode,
// reorder, correlate, record) through the tracer.Tool interface: four
// events per ping at 10 000 pings/s of event time, the reply's two events
// delivered in swapped order (another CPU), a Tick every 100 ms.
func BenchmarkHotPath(b *testing.B) {
	t := &Tool{cfg: Config{Role: "auto", Timeout: time.Second}, sides: map[uint32]Side{1: SideVM, 2: SidePhy}}
	out := &counted{}
	if err := t.Start(nil, out); err != nil {
		b.Fatal(err)
	}
	stage := [4]struct {
		off     uint64
		kind    Kind
		dir     Dir
		ifindex uint32
	}{{0, KindIngress, DirRequest, 1}, {80_000, KindEgress, DirRequest, 2},
		{535_000, KindEgress, DirReply, 1}, {480_000, KindIngress, DirReply, 2}}
	raw := make([]byte, eventSize)
	ne := binary.NativeEndian
	const base = uint64(1e12)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, st := uint64(i/4), stage[i%4]
		ts := base + p*100_000 + st.off
		ne.PutUint64(raw[0:], ts)
		ne.PutUint32(raw[8:], st.ifindex)
		ne.PutUint16(raw[20:], 7)
		ne.PutUint16(raw[22:], uint16(p))
		raw[24], raw[25] = uint8(st.kind), uint8(st.dir)
		copy(raw[48:], "vnet0\x00")
		if err := t.Event(raw); err != nil {
			b.Fatal(err)
		}
		if i%4000 == 3999 {
			t.Tick(ts + 1_000_000)
		}
	}
	t.Finish()
	if out.pings < b.N/4-1 || out.drops > 1 {
		b.Fatalf("%d pings %d drops of %d events", out.pings, out.drops, b.N)
	}
}
