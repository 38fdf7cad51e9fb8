package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pingpath/pingpath/internal/analyze"
)

// CompareSchema names the compare.json format.
const CompareSchema = "pingpath.compare/v1"

//go:embed compare.html.tmpl
var compareTemplate string

var comparePage = template.Must(template.New("compare").Funcs(pageFuncs).Parse(compareTemplate))

// CompareDoc is compare.json.
type CompareDoc struct {
	Schema string `json:"schema"`
	A      string `json:"a"`
	B      string `json:"b"`
	*analyze.Comparison
}

// WriteCompare writes compare.md, compare.html and compare.json into outDir.
func WriteCompare(outDir string, c *analyze.Comparison) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("creating report directory: %w", err)
	}
	doc := &CompareDoc{Schema: CompareSchema, A: c.A.Label(), B: c.B.Label(), Comparison: c}
	data, err := writeJSON(filepath.Join(outDir, "compare.json"), doc)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(outDir, "compare.md"), func(f *os.File) error { return CompareMarkdown(f, c) }); err != nil {
		return err
	}
	return writeFile(filepath.Join(outDir, "compare.html"), func(f *os.File) error {
		key, other := envSplit(c.Env)
		return comparePage.Execute(f, map[string]any{"C": c, "Data": data, "Rows": compareRows(c), "Layers": layerRows(c),
			"Verdict": compareVerdict(c), "EnvKey": key, "EnvOther": other, "CSS": template.CSS(pageCSS),
			"ECharts": template.JS(echartsJS), "EChartsVersion": echartsVersion(), "JS": template.JS(chartsCommonJS + compareJS)})
	})
}

// Row states of the comparison.
const (
	stateSignificant   = "significant"
	stateNoChange      = "no significant change"
	stateNotComparable = "not comparable"
	stateNotMeasured   = "not measured"
)

// compareRow is one line of the comparison table, with what may be said
// about it: a value measured on one side only, or that the analysis marked
// (Delta.Comment), is not comparable and never flagged.
type compareRow struct {
	Name  string
	State string
	Why   string
	analyze.Delta
}

func rowOf(name string, d analyze.Delta) compareRow {
	r := compareRow{Name: name, Delta: d}
	switch {
	case d.AN == 0 && d.BN == 0 && (d.Comparable || d.NotComparable == analyze.NotMeasuredEither):
		r.State, r.Why = stateNotMeasured, "on neither side"
	case !d.Comparable && d.NotComparable != "":
		// The analysis says why: refused, missing or measured differently.
		r.State, r.Why = stateNotComparable, d.NotComparable
	case d.AN == 0:
		r.State, r.Why = stateNotComparable, "measured only in the compared run"
	case d.BN == 0:
		r.State, r.Why = stateNotComparable, "measured only in the baseline"
	case d.PValue == nil:
		r.State, r.Why = stateNotComparable, d.Comment
	case d.Signif:
		r.State, r.Why = stateSignificant, d.Comment
	default:
		r.State, r.Why = stateNoChange, d.Comment
	}
	return r
}

func compareRows(c *analyze.Comparison) []compareRow {
	rows := []compareRow{rowOf("RTT", c.RTT)}
	for _, k := range c.Order {
		rows = append(rows, rowOf(k, c.Segments[k]))
	}
	return rows
}

// layerRow is one layer of the comparison.
type layerRow struct {
	compareRow
	AMean, BMean, DMean, AShare, BShare float64
}

// layerRows marks a layer none of whose segments either run measured as
// not measured (its values are zeros, and a test on zeros says nothing).
func layerRows(c *analyze.Comparison) []layerRow {
	var rows []layerRow
	for k, l := range c.Layers {
		r := layerRow{compareRow: rowOf(l.Name, l.Delta), AMean: l.AMean, BMean: l.BMean, DMean: l.DMean, AShare: l.AShare, BShare: l.BShare}
		measured := false
		for _, res := range []*analyze.Result{c.A, c.B} {
			if k < len(res.Layers) {
				for _, seg := range res.Layers[k].Segments {
					d, ok := c.Segments[seg]
					measured = measured || !ok && seg != "unattributed" || d.AN > 0 || d.BN > 0
				}
			}
		}
		if !measured {
			r.State, r.Why = stateNotMeasured, "none of its segments was measured in either run"
		}
		rows = append(rows, r)
	}
	return rows
}

// importantEnv says which environment facts change a path's latency; the
// others (tracer versions, tool availability, ...) are listed apart.
var importantEnv = []string{"kernel", "cpu_model", "cpus", "cmdline", "tuned_profile", "cpuidle", "max_cstate", "clocksource",
	"lab ", "emulation", "mtu", "driver", "offload", "ping interval", "ping count", "arch"}

// envSplit separates the differences that matter from the rest.
func envSplit(env []analyze.EnvDiff) (key, other []analyze.EnvDiff) {
	for _, e := range env {
		important := false
		for _, k := range importantEnv {
			important = important || strings.Contains(e.What, k)
		}
		if important {
			key = append(key, e)
		} else {
			other = append(other, e)
		}
	}
	return key, other
}

// compareVerdict is the comparison's answer in a few lines.
func compareVerdict(c *analyze.Comparison) *Verdict {
	v := &Verdict{}
	r := rowOf("RTT", c.RTT)
	rtt := fmt.Sprintf("the median RTT went from %s to %s µs (%s)", nf1(c.RTT.AP50, c.RTT.AN), nf1(c.RTT.BP50, c.RTT.BN), r.State)
	if r.State == stateNotComparable || r.State == stateNotMeasured {
		rtt = "the RTT is " + r.State + ": " + r.Why
	}
	change := fmt.Sprintf("the mean RTT changed by %+.1f µs", c.RTTDelta)
	if !c.RTTDeltaComparable {
		change = fmt.Sprintf("the segments both runs measured alike changed by %+.1f µs in all", c.AttributedDelta)
	}
	v.Lines = append(v.Lines, VerdictLine{"change", fmt.Sprintf("%s; %s.", rtt, change)})
	var parts []string
	for _, a := range c.Attribution {
		if len(parts) == 3 {
			break
		}
		if a.NotComparable != "" {
			continue
		}
		p := fmt.Sprintf("%s %+.1f µs", a.Segment, a.DMean)
		if c.ShareOf != "" {
			p += " (" + pct(a.Share) + ")"
		}
		parts = append(parts, p)
	}
	if len(parts) > 0 {
		of := "of the mean RTT change"
		if !c.RTTDeltaComparable {
			of = "largest changes of the segments measured alike"
		}
		v.Lines = append(v.Lines, VerdictLine{"where", of + ": " + strings.Join(parts, ", ") + "."})
	}
	var nc []string
	for _, row := range compareRows(c) {
		if row.State == stateNotComparable {
			nc = append(nc, row.Name+" ("+row.Why+")")
		}
	}
	if len(nc) > 0 {
		v.Lines = append(v.Lines, VerdictLine{"not comparable", strings.Join(nc, "; ") + "."})
	}
	key, _ := envSplit(c.Env)
	var env []string
	for _, e := range key {
		if len(env) == 4 {
			env = append(env, fmt.Sprintf("and %d more", len(key)-4))
			break
		}
		env = append(env, fmt.Sprintf("%s: %s → %s", e.What, cmpOr(clip(e.A, 60), "(none)"), cmpOr(clip(e.B, 60), "(none)")))
	}
	if len(env) > 0 {
		v.Lines = append(v.Lines, VerdictLine{"differences", strings.Join(env, "; ") + "."})
	} else {
		v.Lines = append(v.Lines, VerdictLine{"differences", "no environment difference that affects latency was recorded (kernel, CPU, cmdline, tuned, C-states, clocksource, lab wire)."})
	}
	v.Caution = append(v.Caution, c.Warnings...)
	return v
}

// nf1 renders a value that only exists when n > 0.
func nf1(x float64, n int) string {
	if n == 0 {
		return "–"
	}
	return f1(x)
}

// pval renders a p-value (below what a double resolves: "< 1e-6") and ✱
// when the change is significant.
func pval(d analyze.Delta) string {
	if d.PValue == nil {
		return "–"
	}
	p := *d.PValue
	s := fmt.Sprintf("%.2g", p)
	if p < 1e-6 {
		s = "< 1e-6"
	}
	if d.Signif {
		s += " ✱"
	}
	return s
}

// comparability is the note a row carries when it is not comparable.
func comparability(d analyze.Delta) string {
	if d.Comparable {
		return ""
	}
	return "not comparable: " + d.NotComparable
}

// share renders an attribution share, "–" where there is none.
func share(c *analyze.Comparison, a analyze.Attribution) string {
	if a.NotComparable != "" || c.ShareOf == "" {
		return "–"
	}
	return pct(a.Share)
}

// rttChangeText says how the mean RTT changed and what of it is attributed.
func rttChangeText(c *analyze.Comparison) string {
	if c.RTTDeltaComparable {
		return fmt.Sprintf("Mean RTT over each run's layer set changed by %+.1f µs; per ping the segments add up to the RTT, so the deltas of the segments both runs measured alike add up to %+.1f µs of it", c.RTTDelta, c.AttributedDelta)
	}
	why := c.RTT.NotComparable
	if why == "" {
		why = "a run's layers leave refused values out of its RTT"
	}
	return fmt.Sprintf("The mean RTT change (%+.1f µs) is not comparable (%s); the segments both runs measured alike changed by %+.1f µs in all", c.RTTDelta, why, c.AttributedDelta)
}

// signifRule explains ✱.
func signifRule(th analyze.Thresholds) string {
	return fmt.Sprintf("✱ significant: p < %.2f (two-sided Mann–Whitney U) and |Δ p50| ≥ max(%.0f µs, %.0f %% of the larger median); "+
		"not comparable: refused, missing or measured differently on either side (the reason is given); never flagged, never attributed.", th.Alpha, th.MinDeltaUS, th.MinDeltaRel*100)
}

// CompareMarkdown writes compare.md.
func CompareMarkdown(out io.Writer, c *analyze.Comparison) error {
	w := mdWriter(out)
	w.printf("# pingpath comparison\n\nBaseline: %s (%d complete pings) · compared: %s (%d complete pings)\n\n",
		mdCode(c.A.Label()), c.A.Counts.Complete, mdCode(c.B.Label()), c.B.Counts.Complete)
	v := compareVerdict(c)
	for _, x := range v.Caution {
		w.printf("> **Caution:** %s\n>\n", x)
	}
	w.printf("**Verdict**\n\n")
	for _, l := range v.Lines {
		w.printf("- **%s:** %s\n", l.Label, l.Text)
	}
	w.printf("\nMedians per segment over each run's complete pings. %s\n\n", signifRule(c.Thresholds))
	mdHeader(w, "segment", "baseline p50 µs", "compared p50 µs", "Δ p50 µs", "baseline mean", "compared mean", "Δ mean", "n baseline", "n compared", "p", "change")
	for _, r := range compareRows(c) {
		d := r.Delta
		mdRow(w, r.Name, nf1(d.AP50, d.AN), nf1(d.BP50, d.BN), nf1(d.DP50, min(d.AN, d.BN)), nf1(d.AMean, d.AN),
			nf1(d.BMean, d.BN), nf1(d.DMean, min(d.AN, d.BN)), fmt.Sprint(d.AN), fmt.Sprint(d.BN), pval(d), strings.TrimSuffix(r.State+": "+r.Why, ": "))
	}
	w.printf("\n## Layers\n\n")
	mdHeader(w, "layer", "baseline mean µs", "compared mean µs", "Δ mean µs", "baseline share", "compared share", "p", "change")
	for _, l := range layerRows(c) {
		p := pval(l.Delta)
		if l.State == stateNotMeasured {
			p = "–"
		}
		mdRow(w, l.Name, f1(l.AMean), f1(l.BMean), f1(l.DMean), pct(l.AShare), pct(l.BShare), p, strings.TrimSuffix(l.State+": "+l.Why, ": "))
	}
	w.printf("\n## Where the RTT change went\n\n%s:\n\n", rttChangeText(c))
	mdHeader(w, "segment", "Δ mean µs", "share of Δ", "note")
	for _, a := range c.Attribution {
		note := ""
		if a.NotComparable != "" {
			note = "not attributed: " + a.NotComparable
		}
		mdRow(w, a.Segment, f1(a.DMean), share(c, a), note)
	}
	w.printf("\n## Environment differences\n\n")
	key, other := envSplit(c.Env)
	if len(c.Env) == 0 {
		w.printf("None found (or no manifest on either side).\n")
	}
	for i, part := range [][]analyze.EnvDiff{key, other} {
		if len(part) == 0 {
			continue
		}
		if i == 1 {
			w.printf("\nOther differences:\n\n")
		}
		mdHeader(w, "what", "baseline", "compared")
		for _, e := range part {
			mdRow(w, e.What, e.A, e.B)
		}
	}
	if len(c.Warnings) > 0 {
		w.printf("\n## Warnings\n\n- %s\n", strings.Join(c.Warnings, "\n- "))
	}
	return w.err
}

// CompareSummary prints what `pingpath compare` shows: the verdict, then
// the table.
func CompareSummary(out io.Writer, c *analyze.Comparison) error {
	w := &errWriter{w: out}
	for i, l := range compareVerdict(c).Lines {
		if i == 0 {
			w.printf("verdict: %s\n", l.Text)
			continue
		}
		w.printf("  %s: %s\n", l.Label, l.Text)
	}
	w.printf("%-26s %12s %12s %10s %10s  %s\n", "segment", "base p50 µs", "cmp p50 µs", "Δ p50", "p", "change")
	for _, r := range compareRows(c) {
		if r.State == stateNotMeasured {
			continue
		}
		d := r.Delta
		w.printf("%-26s %12s %12s %10s %10s  %s\n", r.Name, nf1(d.AP50, d.AN), nf1(d.BP50, d.BN), nf1(d.DP50, min(d.AN, d.BN)), pval(d), r.State)
	}
	return w.err
}
