package vm

import (
	"encoding/binary"
	"testing"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// BenchmarkHotPath drives the sender VM tracer's user-space path (decode,
// correlate, record) through the tracer.Tool interface: four stage events
// per ping at 10 000 pings/s of event time, a Tick every 100 ms.
func BenchmarkHotPath(b *testing.B) {
	t := &Tracer{role: record.RoleTX, stageOf: stageOf(record.RoleTX)}
	var choices []tracer.Choice
	for _, s := range record.VM.Stages {
		choices = append(choices, tracer.Choice{Stage: s, Available: true})
	}
	out := &counted{}
	if err := t.Start(choices, out); err != nil {
		b.Fatal(err)
	}
	stage := [4]struct {
		off        uint64
		hook, kind uint8
	}{{0, hookIPOut, tracer.KindRequest}, {5_000, hookDevQueue, tracer.KindRequest},
		{60_000, hookNetifRX, tracer.KindReply}, {64_000, hookICMPRcv, tracer.KindReply}}
	raw := make([]byte, tracer.EventSize)
	copy(raw[32:], "ping")
	copy(raw[48:], "eth0")
	ne := binary.NativeEndian
	const base = uint64(1e12)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		p, st := uint64(i/4), stage[i%4]
		ts := base + p*100_000 + st.off
		ne.PutUint64(raw[0:], ts)
		ne.PutUint16(raw[20:], 7)
		ne.PutUint16(raw[22:], uint16(p))
		raw[24], raw[25] = st.hook, st.kind
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
