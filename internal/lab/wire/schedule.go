// Package wire is the lab's impaired "physical" link: a relay between two
// interfaces (the peers of the two hosts' eth0, in the lab's wire namespace)
// that forwards every Ethernet frame with AF_PACKET sockets and applies a
// fixed delay, uniform jitter and random loss, because netem is not
// available on every kernel the lab runs on.
package wire

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Impairment is what the wire does to each frame, in each direction.
type Impairment struct {
	Delay  time.Duration // added to every frame
	Jitter time.Duration // uniform in [-Jitter, +Jitter] on top of Delay (never below zero in total)
	Loss   float64       // drop probability in percent, 0..100 (ARP is exempt)
	Seed   uint64        // seeds the loss and jitter draws; equal seeds repeat them
}

// Validate checks the ranges.
func (im Impairment) Validate() error {
	switch {
	case im.Delay < 0:
		return fmt.Errorf("wire delay %s: must not be negative", im.Delay)
	case im.Jitter < 0:
		return fmt.Errorf("wire jitter %s: must not be negative", im.Jitter)
	case im.Loss < 0 || im.Loss > 100:
		return fmt.Errorf("wire loss %g%%: must be within 0..100", im.Loss)
	}
	return nil
}

// Zero reports whether the impairment changes nothing.
func (im Impairment) Zero() bool { return im.Delay == 0 && im.Jitter == 0 && im.Loss == 0 }

// Scheduler decides, for one direction, whether a frame is lost and when it
// leaves the wire. Times are nanoseconds on one monotonic clock. Release
// times never go backwards, so frames keep their order in a direction even
// with jitter (a jittered frame that would overtake its predecessor leaves
// right after it instead), as on a real cable.
type Scheduler struct {
	im   Impairment
	rng  *rand.Rand
	last int64 // release time of the previous kept frame
}

// NewScheduler returns a scheduler for one direction. Each direction gets
// its own stream (stream 0 and 1) from the same seed.
func NewScheduler(im Impairment, stream uint64) *Scheduler {
	return &Scheduler{im: im, rng: rand.New(rand.NewPCG(im.Seed, stream))}
}

// Schedule returns the release time for a frame received at rx, or keep
// false when the frame is lost. Frames with mayDrop false (ARP, see
// lossExempt) are delayed but never lost.
func (s *Scheduler) Schedule(rx int64, mayDrop bool) (release int64, keep bool) {
	if mayDrop && s.im.Loss > 0 && s.rng.Float64()*100 < s.im.Loss {
		return 0, false
	}
	release = rx + int64(s.im.Delay)
	if j := int64(s.im.Jitter); j > 0 {
		release += s.rng.Int64N(2*j+1) - j
	}
	if release < rx {
		release = rx
	}
	if release < s.last {
		release = s.last
	}
	s.last = release
	return release, true
}

// lossExempt reports whether a frame is never dropped: ARP. Losing ARP
// would make a lossy lab mostly measure neighbour resolution retries (1 s
// each) instead of the loss of the traffic under test, and the kernel would
// drop the queued pings itself, where no tracer attributes them to the wire.
func lossExempt(frame []byte) bool {
	return len(frame) >= 14 && frame[12] == 0x08 && frame[13] == 0x06
}
