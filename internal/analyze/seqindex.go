package analyze

import "math"

// seqIndex maps an unwrapped sequence key of one ICMP id to a ping index.
// Keys of one run are dense, so a slice offset by the first key does the
// work of a hash map at a fraction of the cost; keys far outside the dense
// range (a foreign burst, a garbage sequence) go to a small map.
type seqIndex struct {
	base  int64
	slots []int32 // ping index + 1; 0 = none
	far   map[int64]int32
}

// maxDense bounds the slice (4 M keys = 16 MiB) so a hostile sequence
// cannot make it grow without limit.
const maxDense = 1 << 22

func (s *seqIndex) get(key int64) (int, bool) {
	off := key - s.base
	if off >= 0 && off < int64(len(s.slots)) {
		v := s.slots[off]
		return int(v) - 1, v != 0
	}
	i, ok := s.far[key]
	return int(i), ok
}

func (s *seqIndex) put(key int64, i int) {
	if len(s.slots) == 0 && len(s.far) == 0 {
		s.base = key
	}
	off := key - s.base
	switch {
	case off >= 0 && off < int64(len(s.slots)):
		s.slots[off] = int32(i) + 1
		return
	case off >= int64(len(s.slots)) && off < maxDense:
		n := max(int(off)+1, 2*len(s.slots))
		n = min(n, maxDense)
		grown := make([]int32, n)
		copy(grown, s.slots)
		s.slots = grown
		s.slots[off] = int32(i) + 1
		return
	case off < 0 && -off+int64(len(s.slots)) < maxDense:
		grown := make([]int32, int64(len(s.slots))-off)
		copy(grown[-off:], s.slots)
		s.slots, s.base = grown, key
		s.slots[0] = int32(i) + 1
		return
	}
	if s.far == nil {
		s.far = map[int64]int32{}
	}
	s.far[key] = int32(i)
}

// seqUnwrapper turns 16-bit sequence numbers of one time-ordered stream
// into monotonically growing keys.
type seqUnwrapper struct {
	epoch   map[uint16]int64
	last    map[uint16]uint16
	refFrom map[uint16]int64
}

func (u *seqUnwrapper) key(id, seq uint16) int64 {
	e, ok := u.epoch[id]
	if !ok {
		if ref, ok := u.refFrom[id]; ok {
			// Start in the epoch that puts this sequence closest to the
			// reference stream's first ping.
			e = int64(math.Round(float64(ref-int64(seq)) / 65536))
			if e < 0 {
				e = 0
			}
		}
		u.epoch[id], u.last[id] = e, seq
		return e*65536 + int64(seq)
	}
	d := int(seq) - int(u.last[id])
	switch {
	case d < -32768:
		e++
		u.epoch[id] = e
	case d > 32768:
		// A straggler from before the last wrap.
		if e > 0 {
			return (e-1)*65536 + int64(seq)
		}
	}
	u.last[id] = seq
	return e*65536 + int64(seq)
}

func (j *joiner) newUnwrapper() *seqUnwrapper {
	return &seqUnwrapper{epoch: map[uint16]int64{}, last: map[uint16]uint16{}, refFrom: j.refFirst}
}
