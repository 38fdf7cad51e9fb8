package tracer_test

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pingpath/pingpath/internal/tracer"
	"github.com/pingpath/pingpath/internal/tracer/vm"
)

// ConfigureEventBuffer sets the programs' switch and leaves only the used
// buffer as a real map: with perf, the ring buffer becomes a one-entry
// array (a kernel without ring buffers never creates one); with the ring
// buffer, the perf array has one slot instead of one per CPU.
func TestConfigureEventBuffer(t *testing.T) {
	for _, tc := range []struct {
		buffer   string
		ring     ebpf.MapType
		ringSize uint32
		perfSize uint32
		flag     uint8
	}{
		{tracer.EventBufferPerf, ebpf.Array, 1, 0, 1},
		{tracer.EventBufferRing, ebpf.RingBuf, 1 << 16, 1, 0},
	} {
		tr, err := vm.New(vm.Config{SrcIP: netip.MustParseAddr("10.0.0.1"), DstIP: netip.MustParseAddr("10.0.0.2"), Direction: "tx"})
		if err != nil {
			t.Fatal(err)
		}
		spec, err := tr.Spec(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tracer.ConfigureEventBuffer(spec, tc.buffer, 1<<16); err != nil {
			t.Fatalf("%s: %v", tc.buffer, err)
		}
		ring, perf := spec.Maps[tracer.EventsMap], spec.Maps[tracer.PerfMap]
		if ring.Type != tc.ring || ring.MaxEntries != tc.ringSize {
			t.Errorf("%s: %s is %s with %d entries, want %s with %d", tc.buffer, tracer.EventsMap, ring.Type, ring.MaxEntries, tc.ring, tc.ringSize)
		}
		if perf.Type != ebpf.PerfEventArray || perf.MaxEntries != tc.perfSize {
			t.Errorf("%s: %s is %s with %d entries, want PerfEventArray with %d", tc.buffer, tracer.PerfMap, perf.Type, perf.MaxEntries, tc.perfSize)
		}
		var flag uint8
		if err := spec.Variables["pp_perf_events"].Get(&flag); err != nil || flag != tc.flag {
			t.Errorf("%s: pp_perf_events = %d (%v), want %d", tc.buffer, flag, err, tc.flag)
		}
	}
}
