package analyze

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/pingpath/pingpath/internal/manifest"
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
	Share   float64 `json:"share"` // of the mean RTT delta
}

// EnvDiff is one environment fact that differs between the runs.
type EnvDiff struct {
	What string `json:"what"`
	A    string `json:"a"`
	B    string `json:"b"`
}

// Comparison is the result of comparing two analyses.
type Comparison struct {
	A, B        *Result          `json:"-"`
	Thresholds  Thresholds       `json:"significance"`
	RTT         Delta            `json:"rtt"`
	Segments    map[string]Delta `json:"segments"`
	Order       []string         `json:"segment_order"`
	Layers      []LayerDelta     `json:"layers"`
	RTTDelta    float64          `json:"rtt_mean_delta_us"`
	Attribution []Attribution    `json:"attribution"`
	Env         []EnvDiff        `json:"environment"`
	Warnings    []string         `json:"warnings"`
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
	if c.RTT.AN == 0 || c.RTT.BN == 0 {
		// Without a sender VM RTT, ping's own RTT is the RTT.
		if pr := delta(a.values(ValPingRTT), b.values(ValPingRTT), th); pr.AN > 0 && pr.BN > 0 {
			c.RTT = pr
			c.RTT.Comment = "ping's own RTT (no sender VM RTT on one side)"
		}
	}
	keys := append([]int(nil), ReportSegments...)
	if a.SharedClk && b.SharedClk {
		keys = append(keys, SegC, SegJ)
	}
	keys = append(keys, ValResidS, ValResidR)
	for _, v := range keys {
		c.Segments[ValueNames[v]] = delta(a.values(v), b.values(v), th)
		c.Order = append(c.Order, ValueNames[v])
	}
	for k, l := range layerDefs {
		ld := LayerDelta{Name: l.name, Delta: delta(a.layerValues(l.segs), b.layerValues(l.segs), th)}
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
	for _, k := range sortedNames {
		d := round3(b.Contrib[k] - a.Contrib[k])
		at := Attribution{Segment: k, DMean: d}
		if c.RTTDelta != 0 {
			at.Share = d / c.RTTDelta
		}
		c.Attribution = append(c.Attribution, at)
	}
	sort.SliceStable(c.Attribution, func(i, j int) bool {
		return math.Abs(c.Attribution[i].DMean) > math.Abs(c.Attribution[j].DMean)
	})
	for _, r := range []*Result{a, b} {
		if r.LayersPartial {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: every complete ping had a refused value, so its layers exclude the refused segments; their share of the RTT delta is not meaningful", r.Dir))
		}
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
