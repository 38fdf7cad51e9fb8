package wire

import (
	"math"
	"testing"
	"time"
)

func TestScheduleDelay(t *testing.T) {
	s := NewScheduler(Impairment{Delay: 500 * time.Microsecond}, 0)
	for i, rx := range []int64{1000, 1500, 1_000_000, 1_000_001} {
		rel, keep := s.Schedule(rx, true)
		if !keep || rel != rx+500_000 {
			t.Fatalf("frame %d at %d: release %d keep %v, want %d", i, rx, rel, keep, rx+500_000)
		}
	}
}

func TestScheduleZeroIsImmediate(t *testing.T) {
	s := NewScheduler(Impairment{}, 0)
	for rx := int64(0); rx < 1000; rx += 7 {
		if rel, keep := s.Schedule(rx, true); !keep || rel != rx {
			t.Fatalf("at %d: release %d keep %v", rx, rel, keep)
		}
	}
}

// With jitter, release times stay within delay±jitter (or right after the
// previous frame) and never go backwards, so a direction keeps its order.
func TestScheduleJitterOrderAndBounds(t *testing.T) {
	im := Impairment{Delay: time.Millisecond, Jitter: 300 * time.Microsecond, Seed: 42}
	s := NewScheduler(im, 0)
	var last int64
	var sum, n float64
	minOff, maxOff := int64(math.MaxInt64), int64(0)
	for i := range 20000 {
		rx := int64(i) * 2_000_000 // far apart: order clamping never kicks in
		rel, keep := s.Schedule(rx, true)
		if !keep {
			t.Fatal("lost a frame without loss")
		}
		if rel < last {
			t.Fatalf("frame %d released at %d before its predecessor at %d", i, rel, last)
		}
		last = rel
		off := rel - rx
		minOff, maxOff = min(minOff, off), max(maxOff, off)
		sum += float64(off)
		n++
	}
	lo, hi := int64(im.Delay-im.Jitter), int64(im.Delay+im.Jitter)
	if minOff < lo || maxOff > hi {
		t.Fatalf("offsets in [%d, %d], want within [%d, %d]", minOff, maxOff, lo, hi)
	}
	// Uniform: the extremes are reached and the mean is the delay.
	if minOff > lo+10_000 || maxOff < hi-10_000 {
		t.Errorf("offsets in [%d, %d] do not span [%d, %d]", minOff, maxOff, lo, hi)
	}
	if mean := sum / n; math.Abs(mean-float64(im.Delay)) > 5_000 {
		t.Errorf("mean offset %.0f ns, want %d ± 5µs", mean, im.Delay)
	}

	// Frames closer together than the jitter: order is still kept.
	s = NewScheduler(im, 1)
	last = 0
	for i := range 10000 {
		rel, _ := s.Schedule(int64(i)*10_000, true)
		if rel < last {
			t.Fatalf("back-to-back frame %d reordered", i)
		}
		last = rel
	}
}

func TestScheduleLoss(t *testing.T) {
	for _, loss := range []float64{0, 1, 25, 50, 100} {
		s := NewScheduler(Impairment{Loss: loss, Seed: 3}, 0)
		const frames = 100000
		lost := 0
		for i := range frames {
			if _, keep := s.Schedule(int64(i), true); !keep {
				lost++
			}
		}
		got := 100 * float64(lost) / frames
		if math.Abs(got-loss) > 0.6 {
			t.Errorf("loss %g%%: lost %.2f%%", loss, got)
		}
		// Exempt frames are never lost.
		if _, keep := s.Schedule(frames, false); !keep {
			t.Errorf("loss %g%%: an exempt frame was lost", loss)
		}
	}
}

func TestScheduleSeedRepeats(t *testing.T) {
	im := Impairment{Delay: time.Millisecond, Jitter: 100 * time.Microsecond, Loss: 30, Seed: 9}
	a, b, other := NewScheduler(im, 0), NewScheduler(im, 0), NewScheduler(im, 1)
	same := true
	for i := range 1000 {
		ra, ka := a.Schedule(int64(i)*1e6, true)
		rb, kb := b.Schedule(int64(i)*1e6, true)
		if ra != rb || ka != kb {
			t.Fatalf("frame %d: same seed gave (%d,%v) and (%d,%v)", i, ra, ka, rb, kb)
		}
		ro, ko := other.Schedule(int64(i)*1e6, true)
		same = same && ro == ra && ko == ka
	}
	if same {
		t.Error("the two directions drew the same sequence")
	}
}

func TestLossExempt(t *testing.T) {
	arp := make([]byte, 42)
	arp[12], arp[13] = 0x08, 0x06
	ip := make([]byte, 98)
	ip[12], ip[13] = 0x08, 0x00
	if !lossExempt(arp) || lossExempt(ip) || lossExempt(arp[:10]) {
		t.Fatal("lossExempt: want ARP only")
	}
}

func TestValidate(t *testing.T) {
	for _, im := range []Impairment{{Delay: -1}, {Jitter: -1}, {Loss: -0.1}, {Loss: 100.1}} {
		if im.Validate() == nil {
			t.Errorf("%+v: want an error", im)
		}
	}
	if err := (Impairment{Delay: time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 100}).Validate(); err != nil {
		t.Error(err)
	}
}
