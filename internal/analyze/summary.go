package analyze

import (
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"

	"github.com/pingpath/pingpath/internal/parse"
)

var coreVantages = []parse.Vantage{parse.VMTx, parse.VMRx, parse.HostSender, parse.HostReceiver}

// classifyPings decides complete, matched and lost per ping and the counts.
func (j *joiner) classifyPings() {
	res := j.res
	nPresent := 0
	for v := parse.Vantage(0); v < parse.NumVantages; v++ {
		if j.present[v] {
			nPresent++
		}
	}
	// A ping is matched when at least two vantage points saw it: with one
	// vantage point nothing can be matched.
	const need = 2
	if nPresent == 1 && len(res.Pings) > 0 {
		for v := parse.Vantage(0); v < parse.NumVantages; v++ {
			if j.present[v] {
				j.notef("only one vantage point (%s) observed pings: nothing can be matched across vantage points", v)
			}
		}
	}
	var coreMask uint64
	anyCore := false
	for _, v := range coreVantages {
		if j.present[v] {
			anyCore = true
			for _, x := range coreVals[v] {
				coreMask |= 1 << x
			}
		}
	}
	// The last ping the sender VM tracer saw, per id: loss is inferred only
	// inside the span it was running.
	lastVM := map[uint16]int64{}
	for i := range res.Pings {
		p := &res.Pings[i]
		if p.Seen&(1<<parse.VMTx) != 0 && p.Key > lastVM[p.ID] {
			lastVM[p.ID] = p.Key
		}
	}
	final := finalCheckpoint(j.present)
	havePing := j.pingFile != nil && (len(j.pingFile.Replies) > 0 || j.pingSent() > 0)
	c := &res.Counts
	for i := range res.Pings {
		p := &res.Pings[i]
		if bits.OnesCount16(p.Seen) >= need {
			c.Matched++
		}
		p.Complete = anyCore && p.Has&coreMask == coreMask
		if p.Complete {
			c.Complete++
		}
		switch {
		case havePing && p.PingListed:
			p.Lost = !p.Replied
		case havePing:
			// Seen by tracers but never printed by ping (before ping started
			// or after it ended): not part of the run's count.
		case final >= 0 && p.Checkpoints&(1<<final) == 0:
			if j.present[parse.VMTx] {
				if last, ok := lastVM[p.ID]; ok && p.Key < last {
					p.Lost = true
				}
			} else if len(p.DropReports) > 0 {
				p.Lost = true
			}
		}
		if p.Lost {
			c.Lost++
		}
	}
	switch {
	case havePing && j.pingFile.Sent > 0:
		c.Sent = j.pingFile.Sent
		if l := j.pingFile.Sent - j.pingFile.Received; l > c.Lost {
			c.Lost = l
		}
	case havePing:
		for i := range res.Pings {
			if res.Pings[i].PingListed {
				c.Sent++
			}
		}
	case res.Manifest != nil && res.Manifest.Ping.Sent > 0:
		c.Sent = res.Manifest.Ping.Sent
	default:
		c.Sent = len(res.Pings)
	}
	if !havePing && len(res.Pings) > 0 {
		j.notef("no ping output: sent = pings seen by any tracer; loss is inferred from the tracers (a ping the sender VM tracer never saw come back, inside the span it ran)")
	}
}

// finalCheckpoint is the last checkpoint of the path that some present
// vantage observes (−1 when none).
func finalCheckpoint(present [parse.NumVantages]bool) int {
	last := -1
	for _, v := range coreVantages {
		if present[v] {
			for _, cp := range vantageCheckpoints[v] {
				if cp > last {
					last = cp
				}
			}
		}
	}
	return last
}

// layerDefs are the five layers with their segments.
var layerDefs = []struct {
	name string
	segs []int
}{
	{"VM stack", []int{SegA, SegF, SegG, SegH, SegM}},
	{"host forwarding", []int{SegB, SegD, SegI, SegK}},
	{"physical network", []int{SegCJ}},
	{"virtualization measured", []int{SegE, SegL, SegB1, SegI1}},
	// Only when a VM was declared untraced: its coarser segment stands for
	// its stack segments and its side's residual.
	{"untraced VMs", []int{ValUntracedS, ValUntracedR}},
	{"virtualization unmeasured", []int{ValResidS, ValResidR}},
}

// measuredLayers are the layers made of values the tracers measured (or
// the host tracers bounded); the last layer holds what is left.
var measuredLayers = layerDefs[:len(layerDefs)-1]

// LayerOf names the layer value index v belongs to ("" for values that are
// no layer's part, such as the RTTs).
func LayerOf(v int) string {
	for _, l := range layerDefs {
		if slices.Contains(l.segs, v) {
			return l.name
		}
	}
	return ""
}

// rttBasis returns the per-ping RTT the layers partition: the sender VM's
// total, or ping's own RTT when no sender VM tracer ran.
func rttBasis(p *Ping, useVM bool) (int64, bool) {
	if useVM {
		return p.raw(ValRTT)
	}
	return p.raw(ValPingRTT)
}

func summarize(res *Result) {
	for i := range res.Pings {
		if res.Pings[i].Complete {
			res.StatSet = append(res.StatSet, i)
		}
	}
	if len(res.StatSet) == 0 && len(res.Pings) > 0 {
		for i := range res.Pings {
			res.StatSet = append(res.StatSet, i)
		}
		res.Warnings = append(res.Warnings, "no ping was observed by every vantage point: each statistic is over the pings that have that value, so the segments do not add up")
	}
	buf := make([]int64, 0, len(res.StatSet))
	for v := 0; v < NumVals; v++ {
		buf = buf[:0]
		for _, i := range res.StatSet {
			if x, ok := res.Pings[i].Get(v); ok {
				buf = append(buf, x)
			}
		}
		res.Stats[v] = Summarize(buf)
	}
	for _, v := range []int{ValResidS, ValResidR} {
		neg := 0
		for _, i := range res.StatSet {
			if x, ok := res.Pings[i].Get(v); ok && x < 0 {
				neg++
			}
		}
		if neg > 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is negative on %d ping(s): the measured segments exceed their container (flagged, not excluded)", ValueNames[v], neg))
		}
	}
	layers(res)
	res.describeResiduals()
	tail(res)
}

// layers partitions the mean RTT of one ping set into the five layers. Per
// ping: RTT = A+M+B+K+CJ+D+I+F+G+H + B_1+L+E+I_1 + residuals exactly, so
// the layer means add up to the mean RTT and the shares to 100 %.
func layers(res *Result) {
	useVM := res.Stats[ValRTT].N > 0 || hasRaw(res, ValRTT)
	var layerMask uint64
	for _, l := range layerDefs {
		for _, s := range l.segs {
			layerMask |= 1 << s
		}
	}
	layerMask |= 1 << ValRTT
	partial := false
	for _, i := range res.StatSet {
		p := &res.Pings[i]
		if _, ok := rttBasis(p, useVM); ok && p.Complete && p.Excl&layerMask == 0 {
			res.LayerSet = append(res.LayerSet, i)
		}
	}
	if len(res.LayerSet) == 0 {
		for _, i := range res.StatSet {
			p := &res.Pings[i]
			if _, ok := rttBasis(p, useVM); ok && p.Complete {
				res.LayerSet = append(res.LayerSet, i)
			}
		}
		partial = len(res.LayerSet) > 0
	}
	if len(res.LayerSet) == 0 {
		return
	}
	n := float64(len(res.LayerSet))
	sums := map[int]float64{}
	var rttSum float64
	var excludedNames = map[string]bool{}
	for _, i := range res.LayerSet {
		p := &res.Pings[i]
		rtt, _ := rttBasis(p, useVM)
		var measured int64
		for _, l := range measuredLayers {
			for _, s := range l.segs {
				if x, ok := p.raw(s); ok {
					if p.Excl&(1<<s) != 0 {
						// Partial mode: the refused value is taken out of
						// the RTT too, so the rest still adds up.
						rtt -= x
						excludedNames[ValueNames[s]] = true
						continue
					}
					measured += x
					sums[s] += float64(x)
				}
			}
		}
		// What no tracer measured: the residuals when every core vantage
		// ran (the identity makes them equal); a residual whose bounds were
		// measured when only one side's were; the rest is not covered.
		rest := rtt - measured
		res.layerRTT = append(res.layerRTT, rtt)
		rttSum += float64(rtt)
		rs, okS := p.raw(ValResidS)
		rr, okR := p.raw(ValResidR)
		_, untracedS := p.raw(ValUntracedS)
		_, untracedR := p.raw(ValUntracedR)
		switch {
		case okS && okR && abs64(rs+rr-rest) <= 1000:
			// Printed origin values are rounded independently, so the
			// identity holds to within a few hundred ns; the remainder
			// stays with the sender-side residual.
			sums[ValResidS] += float64(rest - rr)
			sums[ValResidR] += float64(rr)
		case okS && untracedR && abs64(rs-rest) <= 1000:
			// The untraced receiver VM's segment holds its side's residual.
			sums[ValResidS] += float64(rest)
		case okR && untracedS && abs64(rr-rest) <= 1000:
			sums[ValResidR] += float64(rest)
		case untracedS && untracedR && abs64(rest) <= 1000:
			// Both VMs untraced: the host tracers partition ping's RTT.
		case okS && !okR:
			sums[ValResidS] += float64(rs)
			sums[notCovered] += float64(rest - rs)
		case okR && !okS:
			sums[ValResidR] += float64(rr)
			sums[notCovered] += float64(rest - rr)
		default:
			sums[notCovered] += float64(rest)
		}
	}
	res.LayerRTTUS = round3(rttSum / n / 1000)
	res.Contrib = map[string]float64{}
	for s, v := range sums {
		name := "unattributed"
		if s >= 0 {
			name = ValueNames[s]
		}
		res.Contrib[name] = round3(v / n / 1000)
	}
	// Values no ping of the layer set has; an untraced VM's segments are
	// not missing but inside its coarser segment (and the coarser segment
	// of a traced VM is not missing either).
	untracedS, untracedR := res.UntracedVMs()
	withinUntraced := map[int]bool{ValUntracedS: !untracedS, ValUntracedR: !untracedR}
	if untracedS {
		withinUntraced[SegA], withinUntraced[SegM], withinUntraced[ValResidS] = true, true, true
	}
	if untracedR {
		withinUntraced[SegF], withinUntraced[SegG], withinUntraced[SegH], withinUntraced[ValResidR] = true, true, true, true
	}
	missing, measuredAny := map[int]bool{}, map[int]bool{}
	for _, l := range layerDefs {
		for _, s := range l.segs {
			has := layerSetHas(res, s)
			measuredAny[s] = has
			if !has && !withinUntraced[s] {
				missing[s] = true
			}
		}
	}
	for _, l := range layerDefs {
		var sum float64
		var names, notMeasured []string
		measured := false
		for _, s := range l.segs {
			sum += sums[s]
			names = append(names, ValueNames[s])
			measured = measured || measuredAny[s]
			if missing[s] {
				notMeasured = append(notMeasured, ValueNames[s])
			}
		}
		if l.name == "untraced VMs" && !layerSetHas(res, l.segs...) {
			continue
		}
		layer := Layer{Name: l.name, Segments: names, Measured: measured, NotMeasured: notMeasured}
		layer.MeanUS = round3(sum / n / 1000)
		if rttSum != 0 {
			layer.Share = sum / rttSum
		}
		see := ""
		if _, ok := sums[notCovered]; ok {
			see = fmt.Sprintf(" (see %q)", res.notCoveredName())
		}
		switch {
		case !layer.Measured && len(notMeasured) == 0:
			// Inside the untraced VMs' coarser segments.
		case !layer.Measured:
			layer.Flag = "not measured"
		case l.name == "virtualization measured" && len(notMeasured) > 0:
			layer.Flag = fmt.Sprintf("%s not measured (inside the unmeasured residuals)", strings.Join(notMeasured, ", "))
		case l.name == "virtualization unmeasured" && len(notMeasured) > 0:
			layer.Flag = fmt.Sprintf("%s not computed%s", strings.Join(notMeasured, ", "), see)
		case len(notMeasured) > 0:
			layer.Flag = fmt.Sprintf("%s not measured%s", strings.Join(notMeasured, ", "), see)
		}
		if layer.MeanUS < 0 {
			layer.Flag = "negative: the measured segments exceed the RTT on average (mis-joined pings or a tracer error)"
		}
		res.Layers = append(res.Layers, layer)
	}
	if _, ok := sums[notCovered]; ok {
		var inside []string
		for _, l := range layerDefs {
			for _, s := range l.segs {
				if missing[s] && !vhostSegment(s) {
					inside = append(inside, ValueNames[s])
				}
			}
		}
		layer := Layer{Name: res.notCoveredName(), Segments: []string{"unattributed"}, Measured: true,
			MeanUS: round3(sums[notCovered] / n / 1000), NotCovered: true,
			Flag: fmt.Sprintf("no tracer measured this part of the RTT; it holds %s", strings.Join(inside, ", "))}
		if len(inside) == 0 {
			layer.Flag = "no tracer measured this part of the RTT (the residuals do not add up to it)"
		}
		if rttSum != 0 {
			layer.Share = sums[notCovered] / rttSum
		}
		res.Layers = append(res.Layers, layer)
	}
	res.LayersPartial = partial
	if partial {
		names := make([]string, 0, len(excludedNames))
		for k := range excludedNames {
			names = append(names, k)
		}
		sort.Strings(names)
		res.LayerRTTExcludes = names
		res.Warnings = append(res.Warnings, fmt.Sprintf("no complete ping passed every plausibility gate: layers are over %d pings with %v refused and taken out of the RTT (shares are of the RTT without them)", len(res.LayerSet), names))
	}
}

// notCovered is the key of the RTT part no tracer covered in the layer sums.
const notCovered = -1

// vhostSegment reports whether s is measured by a vhost tracer (inside a
// residual when not measured).
func vhostSegment(s int) bool { return s == SegE || s == SegL || s == SegB1 || s == SegI1 }

// layerSetHas reports whether some ping of the layer set has one of vs.
func layerSetHas(res *Result, vs ...int) bool {
	for _, i := range res.LayerSet {
		for _, v := range vs {
			if _, ok := res.Pings[i].raw(v); ok {
				return true
			}
		}
	}
	return false
}

// describeResiduals says what each residual contains: the guest entry/exit
// gaps no tracer can see, and the vhost segments no vhost tracer measured;
// or why it could not be computed.
func (res *Result) describeResiduals() {
	res.ResidualContents = map[string]string{}
	for _, side := range []struct {
		v           int
		outer, in   parse.Vantage
		parts       []int
		description string
	}{
		{ValResidS, parse.VMTx, parse.HostSender, []int{SegB1, SegL}, "InterPath_s − Total_s"},
		{ValResidR, parse.HostReceiver, parse.VMRx, []int{SegE, SegI1}, "Ext_r − Total_rv"},
	} {
		name := ValueNames[side.v]
		if untraced := map[int]int{ValResidS: ValUntracedS, ValResidR: ValUntracedR}[side.v]; res.Stats[side.v].N == 0 && res.Stats[untraced].N > 0 {
			res.ResidualContents[name] = fmt.Sprintf("not computed: the VM is not traced; its side's guest entry/exit is inside %s", ValueNames[untraced])
			continue
		}
		if res.Stats[side.v].N == 0 {
			var why []string
			for _, v := range []parse.Vantage{side.outer, side.in} {
				if c, ok := res.coverageOf(v); ok && c.Status != CovMeasured {
					why = append(why, fmt.Sprintf("%s %s", v, c.StatusText()))
				}
			}
			if len(why) == 0 {
				why = append(why, "no ping has both bounds")
			}
			res.ResidualContents[name] = "not computed: " + strings.Join(why, ", ")
			continue
		}
		var unmeasured, measured []string
		for _, s := range side.parts {
			if res.Stats[s].N > 0 {
				measured = append(measured, ValueNames[s])
			} else {
				unmeasured = append(unmeasured, ValueNames[s])
			}
		}
		text := "guest entry/exit not measured"
		if len(unmeasured) > 0 {
			text += " + " + strings.Join(unmeasured, " + ") + " (no vhost tracer measured them)"
		}
		formula := side.description
		for _, m := range measured {
			formula += " − " + m
		}
		res.ResidualContents[name] = text + ": " + formula
	}
}

func hasRaw(res *Result, v int) bool {
	for i := range res.Pings {
		if _, ok := res.Pings[i].raw(v); ok {
			return true
		}
	}
	return false
}

// tail compares the pings at or above the RTT's p90 with the median of
// every contribution over the layer set.
func tail(res *Result) {
	if len(res.LayerSet) < 2 {
		return
	}
	rtts := make([]float64, 0, len(res.LayerSet))
	for _, r := range res.layerRTT {
		rtts = append(rtts, float64(r)/1000)
	}
	sorted := append([]float64(nil), rtts...)
	sort.Float64s(sorted)
	thr := quantile(sorted, 0.9)
	med := quantile(sorted, 0.5)
	var tailIdx []int
	var tailSum float64
	for k, i := range res.LayerSet {
		if rtts[k] >= thr {
			tailIdx = append(tailIdx, i)
			tailSum += rtts[k]
		}
	}
	t := &Tail{ThresholdUS: round3(thr), Pings: len(tailIdx), TailRTTUS: round3(tailSum / float64(len(tailIdx))), MedianRTTUS: round3(med)}
	grow := t.TailRTTUS - t.MedianRTTUS
	for v := 0; v < NumVals; v++ {
		if v >= NumSegs && v != ValResidS && v != ValResidR {
			continue
		}
		if v == SegC || v == SegJ {
			continue
		}
		var all, tl []float64
		for _, i := range res.LayerSet {
			if x, ok := res.Pings[i].Get(v); ok {
				all = append(all, float64(x)/1000)
			}
		}
		for _, i := range tailIdx {
			if x, ok := res.Pings[i].Get(v); ok {
				tl = append(tl, float64(x)/1000)
			}
		}
		if len(all) == 0 || len(tl) == 0 {
			continue
		}
		sort.Float64s(all)
		var s float64
		for _, x := range tl {
			s += x
		}
		g := Growth{Segment: ValueNames[v], TailMeanUS: round3(s / float64(len(tl))), MedianUS: round3(quantile(all, 0.5))}
		g.GrowthUS = round3(g.TailMeanUS - g.MedianUS)
		if grow != 0 {
			g.Share = g.GrowthUS / grow
		}
		t.Growth = append(t.Growth, g)
	}
	sort.SliceStable(t.Growth, func(a, b int) bool { return t.Growth[a].GrowthUS > t.Growth[b].GrowthUS })
	res.Tail = t
}
