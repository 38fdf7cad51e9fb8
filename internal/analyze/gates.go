package analyze

import (
	"fmt"
)

// Plausibility gates. Each refuses one value of one ping, lists it in
// Result.Excluded with the reason, and keeps it out of every statistic.
// Negative residuals are not refused: they are shown and flagged, since
// they are what tells a reader that the join or a tracer is wrong.
//
//   - a negative segment (a duration cannot be negative);
//   - a segment larger than what contains it: E and I_1 inside Ext_r, B_1
//     and L inside the sender VM's Inter-Path;
//   - a VM stack segment far beyond the host-side totals: A or M more than
//     10× and 1 ms above the sender host's whole round trip of the same
//     ping (e.g. the ~60 ms Path 1 of the origin logs while the host saw
//     < 1 ms), unless ping's own RTT confirms the VM's RTT. A first ping
//     legitimately waits for neighbour resolution inside A, so A can exceed
//     the host's round trip by a little;
//   - the VM RTT far from ping's own RTT: above it by more than
//     max(100 µs, 10 %) (ping's RTT contains the VM's), or below it by more
//     than max(1 ms, 50 %);
//   - the VM RTT when A or M was refused (it contains them).
func applyGates(res *Result) {
	for i := range res.Pings {
		p := &res.Pings[i]
		excl := func(v int, format string, args ...any) {
			if p.Excl&(1<<v) != 0 {
				return
			}
			p.Excl |= 1 << v
			res.Excluded = append(res.Excluded, Exclusion{ID: p.ID, Seq: p.Seq, Segment: ValueNames[v],
				ValueUS: us(p.Val[v]), Reason: fmt.Sprintf(format, args...)})
		}
		for s := 0; s < NumSegs; s++ {
			if v, ok := p.raw(s); ok && v < 0 {
				if s == SegCJ {
					excl(s, "negative: the receiver host's total exceeds the sender host's external time, so the two hosts saw different packets or a clock is wrong")
				} else {
					excl(s, "negative duration")
				}
			}
		}
		if er, ok := p.raw(ValExtR); ok {
			for _, s := range []int{SegE, SegI1} {
				if v, ok := p.raw(s); ok && v > er {
					excl(s, "larger than the receiver host's external time (%.1f µs) that contains it", us(er))
				}
			}
		}
		if ip, ok := p.raw(ValInterS); ok {
			for _, s := range []int{SegB1, SegL} {
				if v, ok := p.raw(s); ok && v > ip {
					excl(s, "larger than the sender VM's Inter-Path (%.1f µs) that contains it", us(ip))
				}
			}
		}
		if ts, ok := p.raw(ValTotalS); ok && !pingConfirmsVM(p) {
			for _, s := range []int{SegA, SegM} {
				if v, ok := p.raw(s); ok && v > 10*ts && v > ts+1_000_000 {
					excl(s, "sender VM stack segment far beyond the sender host's whole round trip (%.1f µs) of the same ping", us(ts))
				}
			}
		}
		if rtt, ok := p.raw(ValRTT); ok {
			if p.Excl&(1<<SegA|1<<SegM) != 0 {
				excl(ValRTT, "contains a refused A or M")
			}
			if pr, ok := p.raw(ValPingRTT); ok {
				over := max(100_000, pr/10)
				under := max(1_000_000, pr/2)
				switch {
				case rtt > pr+over:
					excl(ValRTT, "larger than ping's own RTT (%.1f µs), which contains it", us(pr))
				case pr-rtt > under:
					excl(ValRTT, "far below ping's own RTT (%.1f µs)", us(pr))
				}
			}
		}
	}
}

// pingConfirmsVM reports whether ping's own RTT agrees with the sender VM's
// RTT (the VM RTT is inside ping's, by at most max(1 ms, 50 %) less).
func pingConfirmsVM(p *Ping) bool {
	rtt, ok1 := p.raw(ValRTT)
	pr, ok2 := p.raw(ValPingRTT)
	return ok1 && ok2 && rtt <= pr+max(100_000, pr/10) && pr-rtt <= max(1_000_000, pr/2)
}

func us(ns int64) float64 { return round3(float64(ns) / 1000) }
