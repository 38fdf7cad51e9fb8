package analyze

import (
	"sort"

	"github.com/pingpath/pingpath/internal/parse"
)

// Values that combine vantage points (C/J, CJ, residuals), and the final
// order of the pings.

// derive computes the values that combine vantage points.
func (j *joiner) derive() {
	res := j.res
	sf, rf := j.hostFile[parse.HostSender], j.hostFile[parse.HostReceiver]
	shared := sf != nil && rf != nil && sf.Kind == parse.KindRecord && rf.Kind == parse.KindRecord &&
		sf.BootID != "" && sf.BootID == rf.BootID
	res.SharedClk = shared
	if shared {
		j.notef("both host streams share boot id %s (one CLOCK_MONOTONIC): C and J are computed separately", sf.BootID)
	}
	var cjMismatch int
	untracedS, untracedR := res.UntracedVMs()
	for i := range res.Pings {
		p := &res.Pings[i]
		if es, ok := p.raw(ValExtS); ok {
			if tr, ok := p.raw(ValTotalR); ok {
				p.set(SegCJ, es-tr)
			}
		}
		if shared && p.sHas&0b0110 == 0b0110 && p.rHas&0b1001 == 0b1001 {
			c := int64(p.rStage[parse.StReqIn] - p.sStage[parse.StReqOut])
			jj := int64(p.sStage[parse.StRepIn] - p.rStage[parse.StRepOut])
			p.set(SegC, c)
			p.set(SegJ, jj)
			if cj, ok := p.raw(SegCJ); ok && abs64(cj-(c+jj)) > 1000 {
				cjMismatch++
			}
		}
		// Residuals: what the sides' virtualization left unmeasured.
		p.residual(ValResidS, ValInterS, ValTotalS, SegB1, SegL)
		p.residual(ValResidR, ValExtR, ValTotalRV, SegE, SegI1)
		// An untraced VM: the host tracers bound its whole time. On the
		// sender side that is all of ping's RTT the sender host did not
		// see; on the receiver side the receiver host's vnet TX → vnet RX.
		if untracedS {
			p.residual(ValUntracedS, ValPingRTT, ValTotalS, SegB1, SegL)
		}
		if untracedR {
			p.remainder(ValUntracedR, ValExtR, SegE, SegI1)
		}
	}
	if cjMismatch > 0 {
		j.warnf("%d ping(s): C + J differs from Ext_s − Total_r by more than 1 µs (mis-joined host records?)", cjMismatch)
	}
	// Order: ids in order of first appearance, then by unwrapped sequence.
	sort.SliceStable(res.Pings, func(a, b int) bool {
		pa, pb := &res.Pings[a], &res.Pings[b]
		if pa.ID != pb.ID {
			return j.idRank[pa.ID] < j.idRank[pb.ID]
		}
		return pa.Key < pb.Key
	})
	for id := range j.ids {
		res.IDs = append(res.IDs, id)
	}
	sort.Slice(res.IDs, func(a, b int) bool { return j.idRank[res.IDs[a]] < j.idRank[res.IDs[b]] })
}

// raw returns a value regardless of gates.
func (p *Ping) raw(i int) (int64, bool) { return p.Val[i], p.Has&(1<<i) != 0 }

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// residual sets dst to outer − inner − the parts that were measured, when
// outer and inner are known.
func (p *Ping) residual(dst, outer, inner int, parts ...int) {
	if _, ok := p.raw(inner); ok {
		p.remainder(dst, outer, append(parts, inner)...)
	}
}

// remainder sets dst to outer − the parts that were measured, when outer is
// known.
func (p *Ping) remainder(dst, outer int, parts ...int) {
	r, ok := p.raw(outer)
	if !ok {
		return
	}
	for _, v := range parts {
		if x, ok := p.raw(v); ok {
			r -= x
		}
	}
	p.set(dst, r)
}
