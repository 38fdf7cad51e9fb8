package tracer

import (
	"errors"
	"testing"
)

func TestChooseEventBuffer(t *testing.T) {
	noRing := func() error { return errors.New("map type RingBuf: not supported") }
	ring := func() error { return nil }
	for _, tc := range []struct {
		want       string
		support    func() error
		got, why   string
		usageError bool
	}{
		{EventBufferAuto, ring, EventBufferRing, "", false},
		{"", ring, EventBufferRing, "", false},
		{EventBufferAuto, noRing, EventBufferPerf, "no BPF ring buffer: map type RingBuf: not supported", false},
		{EventBufferPerf, ring, EventBufferPerf, "", false},
		{EventBufferPerf, noRing, EventBufferPerf, "", false},
		{EventBufferRing, ring, EventBufferRing, "", false},
		{EventBufferRing, noRing, "", "", true},
		{"mmap", ring, "", "", true},
	} {
		got, why, err := ChooseEventBuffer(tc.want, tc.support)
		var ue *UsageError
		if got != tc.got || why != tc.why || (err != nil) != tc.usageError || (err != nil && !errors.As(err, &ue)) {
			t.Errorf("ChooseEventBuffer(%q) = %q, %q, %v; want %q, %q, usage error %v", tc.want, got, why, err, tc.got, tc.why, tc.usageError)
		}
	}
}

// The per-CPU perf buffers hold what the ring would, but never fewer than
// a burst between two wake-ups; a size the caller chose is kept.
func TestPerfBufferBytes(t *testing.T) {
	for _, tc := range []struct {
		ring uint32
		cpus int
		want int
	}{
		{0, 2, 2 << 20},
		{0, 64, 128 << 10},
		{0, 0, 4 << 20},
		{1 << 20, 4, 256 << 10},
		{4096, 2, 4096},
	} {
		if got := PerfBufferBytes(tc.ring, tc.cpus); got != tc.want {
			t.Errorf("PerfBufferBytes(%d, %d) = %d, want %d", tc.ring, tc.cpus, got, tc.want)
		}
	}
}

// Each lost event is counted once: a kernel from 5.4 tells the program
// (full) and later the reader (records, at most full); one before 5.4 only
// the reader.
func TestMergeLost(t *testing.T) {
	for _, tc := range []struct{ all, full, records, want uint64 }{
		{0, 0, 0, 0},
		{7, 0, 0, 7},     // ring buffer
		{10, 10, 10, 10}, // 5.4+: every refusal reported both ways
		{10, 10, 6, 10},  // 5.4+: the last refusals not yet in a record
		{12, 10, 10, 12}, // plus 2 with no buffer on their CPU
		{0, 0, 9, 9},     // before 5.4: only the records
		{2, 0, 9, 11},    // before 5.4, plus 2 with no buffer
	} {
		if got := mergeLost(tc.all, tc.full, tc.records); got != tc.want {
			t.Errorf("mergeLost(%d, %d, %d) = %d, want %d", tc.all, tc.full, tc.records, got, tc.want)
		}
	}
}
