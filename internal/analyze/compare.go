package analyze

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/parse"
)

// Alpha is the significance level of compare's Mann–Whitney U tests.
const Alpha = 0.05

// A change is significant only if it is also large enough to matter: with
// a hundred pings a side the U test gives p < 0.05 for median shifts of a
// few µs that two runs with identical settings show (another CPU, another
// moment's cache state; up to 43 µs between such runs in the lab under
// load). By default |Δp50| must reach MinEffectUS and MinEffectRel of the
// larger of the two medians (docs/analysis.md, "Compare", explains the
// choice); `pingpath compare --min-effect` changes them.
const (
	MinEffectUS  = 50.0
	MinEffectRel = 0.10
)

// Thresholds are the rules behind Delta.Signif, written into compare.json
// so that a reader sees what "significant" meant.
type Thresholds struct {
	Alpha       float64 `json:"alpha"`
	MinDeltaUS  float64 `json:"min_delta_p50_us"`
	MinDeltaRel float64 `json:"min_delta_p50_rel"`
	Rule        string  `json:"rule"`
}

// DefaultThresholds returns the thresholds Compare applies.
func DefaultThresholds() Thresholds {
	return Thresholds{Alpha: Alpha, MinDeltaUS: MinEffectUS, MinDeltaRel: MinEffectRel}
}

const thresholdRule = "p_value < alpha and |delta_p50_us| >= max(min_delta_p50_us, min_delta_p50_rel * max(|a_p50_us|, |b_p50_us|))"

// minEffect is the smallest |Δp50| that counts for medians a and b.
func (th Thresholds) minEffect(a, b float64) float64 {
	return max(th.MinDeltaUS, th.MinDeltaRel*max(math.Abs(a), math.Abs(b)))
}

// Delta compares one series between run A and run B.
type Delta struct {
	AP50   float64  `json:"a_p50_us"`
	BP50   float64  `json:"b_p50_us"`
	DP50   float64  `json:"delta_p50_us"`
	PValue *float64 `json:"p_value"`     // null when a side has no values
	Signif bool     `json:"significant"` // p < Alpha and |Δp50| ≥ MinEffect
	// MinEffectUS is the |Δp50| this delta needed to be significant.
	MinEffectUS float64 `json:"min_effect_us"`
	AN          int     `json:"a_n"`
	BN          int     `json:"b_n"`
	AMean       float64 `json:"a_mean_us"`
	BMean       float64 `json:"b_mean_us"`
	DMean       float64 `json:"delta_mean_us"`
	Comment     string  `json:"comment,omitempty"`
	// Comparable is false when the value was refused, missing or measured
	// differently on either side; NotComparable then says why, and the
	// delta is shown but never significant and never attributed.
	Comparable    bool   `json:"comparable"`
	NotComparable string `json:"not_comparable,omitempty"`
}

// refuse marks a delta not comparable.
func (d *Delta) refuse(why string) {
	d.Comparable, d.NotComparable, d.Signif = false, why, false
}

// LayerDelta compares one layer's mean between the runs.
type LayerDelta struct {
	Name   string  `json:"name"`
	AMean  float64 `json:"a_mean_us"`
	BMean  float64 `json:"b_mean_us"`
	DMean  float64 `json:"delta_mean_us"`
	AShare float64 `json:"a_share"`
	BShare float64 `json:"b_share"`
	Delta
}

// Attribution is one segment's part of the change of the mean RTT. Over
// each run's layer set the contributions add up to the mean RTT, so their
// deltas add up to the RTT delta.
type Attribution struct {
	Segment string  `json:"segment"`
	DMean   float64 `json:"delta_mean_us"`
	Share   float64 `json:"share"` // of Comparison.ShareOf
	// NotComparable says why this part is left out of the attribution
	// (its share is then 0).
	NotComparable string `json:"not_comparable,omitempty"`
}

// EnvDiff is one environment fact that differs between the runs.
type EnvDiff struct {
	What string `json:"what"`
	A    string `json:"a"`
	B    string `json:"b"`
}

// Comparison is the result of comparing two analyses.
type Comparison struct {
	A, B       *Result          `json:"-"`
	Thresholds Thresholds       `json:"significance"`
	RTT        Delta            `json:"rtt"`
	Segments   map[string]Delta `json:"segments"`
	Order      []string         `json:"segment_order"`
	Layers     []LayerDelta     `json:"layers"`
	RTTDelta   float64          `json:"rtt_mean_delta_us"`
	// RTTDeltaComparable is false when the mean RTT change means nothing
	// (the RTT is not comparable, or a run's layers leave refused values
	// out of it); the attribution is then over AttributedDelta alone.
	RTTDeltaComparable bool `json:"rtt_mean_delta_comparable"`
	// AttributedDelta is the sum of the mean changes of the segments both
	// runs measured alike. The shares are of RTTDelta when it is comparable
	// (ShareOf "rtt_mean_delta_us"), else there are none (ShareOf "").
	AttributedDelta float64       `json:"attributed_delta_us"`
	ShareOf         string        `json:"share_of"`
	Attribution     []Attribution `json:"attribution"`
	Env             []EnvDiff     `json:"environment"`
	Warnings        []string      `json:"warnings"`
}

// values returns a value over the result's statistic set, in µs.
func (r *Result) values(v int) []float64 {
	var out []float64
	for _, i := range r.StatSet {
		if x, ok := r.Pings[i].Get(v); ok {
			out = append(out, float64(x)/1000)
		}
	}
	return out
}

// layerValues returns one layer's per-ping sum over the layer set, in µs.
func (r *Result) layerValues(segs []int) []float64 {
	var out []float64
	for _, i := range r.LayerSet {
		p := &r.Pings[i]
		var sum int64
		for _, s := range segs {
			if x, ok := p.Get(s); ok {
				sum += x
			}
		}
		out = append(out, float64(sum)/1000)
	}
	return out
}

// delta compares two samples; it sorts them in place (callers pass fresh
// slices), so the statistics and the rank test share one sort.
func delta(a, b []float64, th Thresholds) Delta {
	sa, sb := SummarizeUS(a), SummarizeUS(b)
	d := Delta{AP50: sa.P50, BP50: sb.P50, AN: sa.N, BN: sb.N, AMean: sa.Mean, BMean: sb.Mean,
		MinEffectUS: round3(th.minEffect(sa.P50, sb.P50))}
	if sa.N > 0 && sb.N > 0 {
		d.DP50, d.DMean = round3(sb.P50-sa.P50), round3(sb.Mean-sa.Mean)
	}
	p := mannWhitneySorted(a, b)
	switch {
	case math.IsNaN(p) && (sa.N == 0 || sb.N == 0):
		d.Comment = "no values on one side"
	case math.IsNaN(p):
		p = 1
		d.PValue = &p
	default:
		p = math.Round(p*1e6) / 1e6
		d.PValue = &p
		d.Signif = p < th.Alpha && math.Abs(d.DP50) >= d.MinEffectUS
	}
	return d
}

// Compare compares run A (baseline) with run B with the default thresholds.
func Compare(a, b *Result) *Comparison { return CompareWith(a, b, DefaultThresholds()) }

// CompareWith compares run A (baseline) with run B; th decides what is
// significant.
func CompareWith(a, b *Result, th Thresholds) *Comparison {
	th.Rule = thresholdRule
	c := &Comparison{A: a, B: b, Segments: map[string]Delta{}, Thresholds: th}
	c.RTT = delta(a.values(ValRTT), b.values(ValRTT), th)
	comparable(&c.RTT, a, b, ValRTT)
	if !a.hasRawStat(ValRTT) || !b.hasRawStat(ValRTT) {
		// Without a sender VM RTT, ping's own RTT is the RTT.
		if pr := delta(a.values(ValPingRTT), b.values(ValPingRTT), th); pr.AN > 0 && pr.BN > 0 {
			c.RTT = pr
			comparable(&c.RTT, a, b, ValPingRTT)
			c.RTT.Comment = "ping's own RTT (no sender VM RTT on one side)"
		}
	}
	keys := append([]int(nil), ReportSegments...)
	if a.SharedClk && b.SharedClk {
		keys = append(keys, SegC, SegJ)
	}
	keys = append(keys, ValResidS, ValResidR)
	for _, v := range keys {
		d := delta(a.values(v), b.values(v), th)
		comparable(&d, a, b, v)
		c.Segments[ValueNames[v]] = d
		c.Order = append(c.Order, ValueNames[v])
	}
	for k, l := range layerDefs {
		ld := LayerDelta{Name: l.name, Delta: delta(a.layerValues(l.segs), b.layerValues(l.segs), th)}
		ld.Comparable = true
		for _, s := range l.segs {
			if d := c.Segments[ValueNames[s]]; !d.Comparable && !(d.AN == 0 && d.BN == 0 && d.NotComparable == NotMeasuredEither) {
				ld.refuse(fmt.Sprintf("%s: %s", ValueNames[s], d.NotComparable))
				break
			}
		}
		if k < len(a.Layers) && k < len(b.Layers) && (!a.Layers[k].Measured || !b.Layers[k].Measured) && ld.Comparable {
			ld.refuse("not measured in " + map[bool]string{true: "A", false: "B"}[!a.Layers[k].Measured])
		}
		if k < len(a.Layers) {
			ld.AMean, ld.AShare = a.Layers[k].MeanUS, a.Layers[k].Share
		}
		if k < len(b.Layers) {
			ld.BMean, ld.BShare = b.Layers[k].MeanUS, b.Layers[k].Share
		}
		ld.DMean = round3(ld.BMean - ld.AMean)
		c.Layers = append(c.Layers, ld)
	}
	c.RTTDelta = round3(b.LayerRTTUS - a.LayerRTTUS)
	c.RTTDeltaComparable = c.RTT.Comparable && !a.LayersPartial && !b.LayersPartial &&
		len(a.LayerSet) > 0 && len(b.LayerSet) > 0
	names := map[string]bool{}
	for k := range a.Contrib {
		names[k] = true
	}
	for k := range b.Contrib {
		names[k] = true
	}
	sortedNames := make([]string, 0, len(names))
	for k := range names {
		sortedNames = append(sortedNames, k)
	}
	sort.Strings(sortedNames)
	var left []Attribution
	for _, k := range sortedNames {
		at := Attribution{Segment: k, DMean: round3(b.Contrib[k] - a.Contrib[k])}
		if d, ok := c.Segments[k]; ok && !d.Comparable {
			at.NotComparable = d.NotComparable
		} else if !ok {
			at.NotComparable = "the part of the RTT no tracer covered"
		}
		if at.NotComparable != "" {
			left = append(left, at)
			continue
		}
		c.AttributedDelta += at.DMean
		c.Attribution = append(c.Attribution, at)
	}
	c.AttributedDelta = round3(c.AttributedDelta)
	// Shares only of a mean RTT change both runs measured alike: of a sum
	// of segments whose changes offset each other they would mean nothing.
	if c.RTTDeltaComparable {
		c.ShareOf = "rtt_mean_delta_us"
		for i := range c.Attribution {
			if c.RTTDelta != 0 {
				c.Attribution[i].Share = c.Attribution[i].DMean / c.RTTDelta
			}
		}
	}
	sort.SliceStable(c.Attribution, func(i, j int) bool {
		return math.Abs(c.Attribution[i].DMean) > math.Abs(c.Attribution[j].DMean)
	})
	c.Attribution = append(c.Attribution, left...)
	if !c.RTTDeltaComparable && len(a.LayerSet) > 0 && len(b.LayerSet) > 0 {
		why := c.RTT.NotComparable
		if why == "" {
			why = "a run's layers leave refused values out of its RTT"
		}
		c.Warnings = append(c.Warnings, fmt.Sprintf("the mean RTT change (%+.1f µs) is not comparable (%s): only the change of the segments both runs measured alike (%+.1f µs) is attributed", c.RTTDelta, why, c.AttributedDelta))
	}
	if len(a.LayerSet) == 0 || len(b.LayerSet) == 0 {
		c.Warnings = append(c.Warnings, "one run has no ping with a full breakdown: the RTT delta cannot be attributed to segments")
	}
	c.Env = envDiff(a, b)
	if c.Warnings == nil {
		c.Warnings = []string{}
	}
	if c.Env == nil {
		c.Env = []EnvDiff{}
	}
	return c
}

// envDiff lists what differs between the two runs' environments: from the
// manifests (kernels, versions, facts, ping settings) and from the tracer
// headers when a manifest is missing.
func envDiff(a, b *Result) []EnvDiff {
	fa, fb := envFacts(a), envFacts(b)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []EnvDiff
	for k := range keys {
		if fa[k] == fb[k] || strings.HasSuffix(k, " probes") && digitRun.ReplaceAllString(fa[k], "#") == digitRun.ReplaceAllString(fb[k], "#") {
			// Attach methods that differ only by a number (the pid of the
			// VM's backend in a reason) are the same methods.
			continue
		}
		out = append(out, EnvDiff{What: k, A: fa[k], B: fb[k]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].What < out[j].What })
	return out
}

func envFacts(r *Result) map[string]string {
	m := map[string]string{}
	if mf := r.Manifest; mf != nil {
		m["environment"] = mf.Environment
		m["pingpath version"] = mf.Version
		m["ping interval"] = mf.Ping.Interval
		m["ping count"] = fmt.Sprint(mf.Ping.Count)
		if mf.Emulation != "" {
			m["emulation"] = mf.Emulation
		}
		if l := mf.Lab; l != nil {
			m["lab kind"] = l.Kind
			m["lab VM link"] = l.VMLink
			m["lab wire"] = l.Wire
			m["lab wire delay"] = l.WireDelay
			m["lab wire jitter"] = l.WireJitter
			m["lab wire loss %"] = fmt.Sprint(l.WireLoss)
		}
		for _, n := range mf.Nodes {
			addNode(m, n)
		}
		return m
	}
	for _, f := range r.Files {
		if f.Kernel != "" {
			m[f.Vantage+": kernel"] = f.Kernel
		}
		if f.Version != "" {
			m[f.Vantage+": tracer version"] = f.Version
		}
	}
	return m
}

// noiseFacts differ between any two runs without saying anything about
// the path: they are left out of the environment differences.
var noiseFacts = map[string]bool{"boot_id": true, "uid": true}

var digitRun = regexp.MustCompile(`[0-9]+`)

func addNode(m map[string]string, n manifest.Node) {
	m[n.Role+": kernel"] = n.Kernel
	m[n.Role+": arch"] = n.Arch
	for k, v := range n.Facts {
		if noiseFacts[k] {
			continue
		}
		m[n.Role+": "+k] = v
	}
	for _, t := range n.Tracers {
		if len(t.Probes) > 0 {
			m[n.Role+": "+t.Tool+" probes"] = fmt.Sprint(t.Probes)
		}
	}
}

// The comparability rules: a value is compared only when both runs
// measured it, the gates accepted enough of it, and it was measured the
// same way (the same tool per vantage point, the same parts subtracted
// from a residual).
const (
	// maxRefusedShare is the share of refused values above which the
	// accepted rest is no fair sample of the segment.
	maxRefusedShare = 0.10
	// NotMeasuredEither is Delta.NotComparable of a value neither run
	// measured.
	NotMeasuredEither = "not measured in either run"
)

// comparable decides whether d (value v of runs a and b) can be compared,
// and says why not.
func comparable(d *Delta, a, b *Result, v int) {
	d.Comparable = true
	ra, rb := a.statRaw(v), b.statRaw(v)
	switch {
	case ra == 0 && rb == 0:
		d.refuse(NotMeasuredEither)
		return
	case ra == 0:
		d.refuse("not measured in A" + a.notMeasuredWhy(v))
		return
	case rb == 0:
		d.refuse("not measured in B" + b.notMeasuredWhy(v))
		return
	}
	for _, side := range []struct {
		name     string
		r        *Result
		raw, acc int
	}{{"A", a, ra, d.AN}, {"B", b, rb, d.BN}} {
		refused := side.raw - side.acc
		switch {
		case side.acc == 0:
			d.refuse(fmt.Sprintf("refused on every ping of %s: %s", side.name, side.r.refusalReason(v)))
			return
		case float64(refused) > maxRefusedShare*float64(side.raw):
			d.refuse(fmt.Sprintf("%d of %d values refused in %s (%s)", refused, side.raw, side.name, side.r.refusalReason(v)))
			return
		}
	}
	if ma, mb := a.method(v), b.method(v); ma != mb {
		d.refuse(fmt.Sprintf("measured differently: %s in A, %s in B", ma, mb))
	}
}

// statRaw counts the pings of the statistic set that have v, refused or not.
func (r *Result) statRaw(v int) int {
	n := 0
	for _, i := range r.StatSet {
		if _, ok := r.Pings[i].raw(v); ok {
			n++
		}
	}
	return n
}

func (r *Result) hasRawStat(v int) bool { return r.statRaw(v) > 0 }

// refusalReason is the reason the gates gave for the first refused v.
func (r *Result) refusalReason(v int) string {
	for _, e := range r.Excluded {
		if e.Segment == ValueNames[v] {
			return e.Reason
		}
	}
	return "refused by the plausibility gates"
}

// valueVantages names the vantage points a value is measured at.
var valueVantages = func() map[int][]parse.Vantage {
	out := map[int][]parse.Vantage{
		SegCJ: {parse.HostSender, parse.HostReceiver}, SegC: {parse.HostSender, parse.HostReceiver},
		SegJ: {parse.HostSender, parse.HostReceiver}, ValPingRTT: {parse.PingOwn},
		ValResidS: {parse.VMTx, parse.HostSender}, ValResidR: {parse.HostReceiver, parse.VMRx},
	}
	for v, vals := range coreVals {
		for _, x := range vals {
			out[x] = []parse.Vantage{v}
		}
	}
	for v, x := range vhostVal {
		out[x] = []parse.Vantage{v}
	}
	return out
}()

// notMeasuredWhy says why a value is missing when a vantage point it needs
// failed or did not run (" (sender host failed)"), "" otherwise.
func (r *Result) notMeasuredWhy(v int) string {
	var why []string
	for _, vp := range valueVantages[v] {
		if c, ok := r.coverageOf(vp); ok && c.Status != CovMeasured {
			why = append(why, fmt.Sprintf("%s %s", vp, c.StatusText()))
		}
	}
	if len(why) == 0 {
		return ""
	}
	return " (" + strings.Join(why, ", ") + ")"
}

// method describes how a run measured v: the tool at each vantage point
// it comes from, and for a residual which measured parts it subtracts.
func (r *Result) method(v int) string {
	tools := r.vantageTools()
	var parts []string
	for _, vp := range valueVantages[v] {
		parts = append(parts, tools[vp.String()])
	}
	m := strings.Join(parts, " + ")
	if v == ValResidS || v == ValResidR {
		sub := []int{SegB1, SegL}
		if v == ValResidR {
			sub = []int{SegE, SegI1}
		}
		var minus []string
		for _, s := range sub {
			if r.Stats[s].N > 0 {
				minus = append(minus, ValueNames[s])
			}
		}
		if len(minus) == 0 {
			m += ", nothing subtracted"
		} else {
			m += ", minus " + strings.Join(minus, " and ")
		}
	}
	return m
}

// vantageTools names the tool whose observations each vantage point used:
// "pingpath vm", "kernel_icmp_rtt".
func (r *Result) vantageTools() map[string]string {
	out := map[string]string{}
	for _, f := range r.Files {
		if f.Status != FileUsed || f.Vantage == "" {
			continue
		}
		tool := f.Tool
		if f.Kind == parse.KindRecord.String() {
			tool = "pingpath " + tool
		}
		for _, v := range strings.Split(f.Vantage, ", ") {
			out[v] = tool
		}
	}
	return out
}
