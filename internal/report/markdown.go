package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pingpath/pingpath/internal/analyze"
)

// errWriter keeps the first write error so rendering code stays linear.
type errWriter struct {
	w   io.Writer
	err error
	// markdown: the output is Markdown, whose renderers pass HTML through.
	// Every string argument may carry what a run's files or a manifest say
	// (directory, environment and host names, kernel strings, warnings), so
	// printf escapes its HTML; the format strings are ours and hold none.
	markdown bool
}

// mdWriter renders Markdown to out.
func mdWriter(out io.Writer) *errWriter { return &errWriter{w: out, markdown: true} }

// mdCode is a string shown as a Markdown code span: fenced with more
// backticks than it holds in a row, so a name cannot close it early.
type mdCode string

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func (e *errWriter) printf(format string, args ...any) {
	if e.err != nil {
		return
	}
	if e.markdown {
		args = append([]any(nil), args...)
		for i, a := range args {
			switch a := a.(type) {
			case string:
				args[i] = htmlEscaper.Replace(a)
			case mdCode:
				args[i] = codeSpan(string(a))
			}
		}
	}
	_, e.err = fmt.Fprintf(e.w, format, args...)
}

// codeSpan fences s as a CommonMark code span (whose content is shown
// verbatim, HTML included, so it is not escaped).
func codeSpan(s string) string {
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

func f1(x float64) string { return fmt.Sprintf("%.1f", x) }

func pct(x float64) string { return fmt.Sprintf("%.1f %%", x*100) }

// statsCells renders n, mean, stddev, min, p50, p90, p99, max.
func statsCells(s analyze.Stats) []string {
	if s.N == 0 {
		return []string{"0", "–", "–", "–", "–", "–", "–", "–"}
	}
	return []string{fmt.Sprint(s.N), f1(s.Mean), f1(s.Stddev), f1(s.Min), f1(s.P50), f1(s.P90), f1(s.P99), f1(s.Max)}
}

var statsHeader = []string{"n", "mean", "stddev", "min", "p50", "p90", "p99", "max"}

func mdRow(w *errWriter, cells ...string) {
	for i := range cells {
		cells[i] = strings.ReplaceAll(cells[i], "|", `\|`)
	}
	w.printf("| %s |\n", strings.Join(cells, " | "))
}

func mdHeader(w *errWriter, cells ...string) {
	mdRow(w, cells...)
	sep := make([]string, len(cells))
	for i := range sep {
		sep[i] = "---"
	}
	w.printf("|%s|\n", strings.Join(sep, "|"))
}

// statRows lists the rows of the main table: RTT, ping's RTT, segments, residuals.
func statRows(res *analyze.Result) []int {
	rows := []int{analyze.ValRTT, analyze.ValPingRTT}
	rows = append(rows, segmentKeys(res)...)
	return append(rows, analyze.ValResidS, analyze.ValResidR)
}

// Markdown writes report.md.
func Markdown(out io.Writer, res *analyze.Result) error {
	w := mdWriter(out)
	w.printf("# pingpath report\n\n")
	v, ctx := BuildVerdict(res), BuildContext(res)
	for _, c := range v.Caution {
		w.printf("> **Caution:** %s\n>\n", c)
	}
	if len(v.Caution) > 0 {
		w.printf("\n")
	}
	w.printf("**Verdict**\n\n")
	for _, l := range v.Lines {
		w.printf("- **%s:** %s\n", l.Label, l.Text)
	}
	w.printf("\n**Context:** %s\n\n", ctx.Line())
	if len(ctx.Nodes) > 0 {
		mdHeader(w, "node", "hostname", "kernel", "tracers and attach methods")
		for _, n := range ctx.Nodes {
			mdRow(w, n.Role, cmpOr(n.Hostname, "–"), cmpOr(n.Kernel, "–"), strings.Join(n.Attach, "; "))
		}
		w.printf("\n")
	}
	w.printf("Directory: %s · input: %s · ICMP ids: %v\n\n", mdCode(res.Label()), sourceName(res.Source), res.IDs)
	c := res.Counts
	w.printf("Pings: **%d sent**, %d matched across vantage points, **%d complete** (seen by every vantage point that observed pings), %d lost.\n\n", c.Sent, c.Matched, c.Complete, c.Lost)
	if res.Empty {
		w.printf("**Empty run: no ping was observed by any tracer.** Nothing to break down.\n\n")
	}
	if line := coverageLine(res); line != "" {
		w.printf("Vantage points: %s.\n\n", line)
	}
	for _, n := range res.Notes {
		w.printf("- %s\n", n)
	}
	if len(res.Notes) > 0 {
		w.printf("\n")
	}
	w.printf("## Segments (µs)\n\n")
	w.printf("All statistics are over the same set of %d pings (complete pings), after the plausibility gates; a segment with n < that was not measured on every ping.\n\n", len(res.StatSet))
	refused := refusedCounts(res)
	mdHeader(w, append([]string{"segment"}, append(statsHeader, "refused", "what")...)...)
	for _, v := range statRows(res) {
		name := analyze.ValueNames[v]
		mdRow(w, append([]string{name}, append(statsCells(res.Stats[v]), fmt.Sprint(refused[name]), describe(res, v))...)...)
	}
	w.printf("\nHost and VM totals (µs) the residuals are derived from:\n\n")
	mdHeader(w, append([]string{"value"}, statsHeader...)...)
	for _, v := range []int{analyze.ValInterS, analyze.ValTotalS, analyze.ValExtS, analyze.ValTotalR, analyze.ValExtR, analyze.ValTotalRV} {
		mdRow(w, append([]string{analyze.ValueNames[v]}, statsCells(res.Stats[v])...)...)
	}
	w.printf("\n## Layers\n\n")
	if len(res.Layers) == 0 {
		w.printf("No ping has the values needed to partition its RTT.\n\n")
	} else {
		w.printf("Mean over %d pings; per ping RTT = A+M+B+K+CJ+D+I+F+G+H + B_1+L+E+I_1 + residuals exactly, so the shares add up to 100 %% (%s).\n\n", len(res.LayerSet), layerRTTText(res))
		mdHeader(w, "layer", "segments", "mean µs", "share", "flag")
		for _, l := range res.Layers {
			mean, share := layerCells(l)
			mdRow(w, l.Name, strings.Join(l.Segments, " "), mean, share, l.Flag)
		}
		w.printf("\n")
	}
	if t := res.Tail; t != nil {
		w.printf("## Tail attribution\n\n%d ping(s) at or above the RTT's p90 (%.1f µs) average %.1f µs against a median of %.1f µs. Growth of each segment (tail mean − median):\n\n", t.Pings, t.ThresholdUS, t.TailRTTUS, t.MedianRTTUS)
		mdHeader(w, "segment", "tail mean µs", "median µs", "growth µs", "share of growth")
		for _, g := range t.Growth {
			mdRow(w, g.Segment, f1(g.TailMeanUS), f1(g.MedianUS), f1(g.GrowthUS), pct(g.Share))
		}
		w.printf("\n")
	}
	w.printf("## Drops\n\n")
	if len(res.Drops) == 0 {
		w.printf("None.\n\n")
	} else {
		mdHeader(w, "id", "seq", "status", "last seen", "first missed", "where", "kernel reason", "reported by", "note")
		for _, d := range res.Drops {
			mdRow(w, fmt.Sprint(d.ID), fmt.Sprint(d.Seq), d.Status, d.LastSeen, d.FirstMissed, d.Segment,
				strings.TrimSpace(d.Reason+" "+d.Location), strings.Join(d.ReportedBy, "; "), d.Note)
		}
		w.printf("\n")
	}
	w.printf("## Values refused by plausibility gates\n\n")
	if len(res.Excluded) == 0 {
		w.printf("None.\n\n")
	} else {
		mdHeader(w, "id", "seq", "value", "µs", "reason")
		for _, e := range res.Excluded {
			mdRow(w, fmt.Sprint(e.ID), fmt.Sprint(e.Seq), e.Segment, f1(e.ValueUS), e.Reason)
		}
		w.printf("\n")
	}
	if len(res.Cost) > 0 {
		w.printf("## Measurement cost\n\n")
		w.printf("What the tracers cost each machine, as they measured it themselves: their BPF programs' run time on all CPUs plus their processes' CPU time, from ready to stop. Per ping = divided by the pings sent; %% of a CPU = over the time they traced.\n\n")
		for _, c := range res.Cost {
			w.printf("- %s\n", costLine(c))
		}
		w.printf("\n")
	}
	w.printf("## Warnings\n\n")
	if len(res.Warnings) == 0 {
		w.printf("None.\n\n")
	}
	for _, s := range res.Warnings {
		w.printf("- %s\n", s)
	}
	w.printf("\n## Files\n\n")
	mdHeader(w, "file", "status", "kind", "vantage", "identity", "observations", "drops", "note")
	for _, f := range res.Files {
		mdRow(w, f.Path, f.Status, f.Kind, f.Vantage, f.Identity, fmt.Sprint(f.Obs), fmt.Sprint(f.Drops), fileNote(f))
	}
	w.printf("\nMethod: every segment is a difference of two timestamps taken on one machine; C+J = Ext_s − Total_r of the same ping; E and L are t5 − t1 (not the sum of the origin tool's stage delays, which counts t3 − t2 twice); the residuals are what the virtualization layer took that no tracer covered (guest entry/exit gaps) and may be negative, which is flagged. See docs/analysis.md.\n")
	return w.err
}

// coverageProblems says, for each vantage point that ran but gave
// nothing, what happened to it; these go at the top of every output.
func coverageProblems(res *analyze.Result) []string {
	var out []string
	for _, c := range res.Coverage {
		// In an empty run, that every tracer observed nothing is said once.
		if !c.Problem() || res.Empty && c.Status == analyze.CovNoObs {
			continue
		}
		s := fmt.Sprintf("%s %s", c.Vantage, c.StatusText())
		if c.Detail != "" {
			s += ": " + c.Detail
		}
		if c.Core {
			s += ". Its segments are not measured"
		}
		out = append(out, s+".")
	}
	return out
}

// coverageLine lists the vantage points by status: "sender VM, receiver VM
// measured; sender host failed; ...".
func coverageLine(res *analyze.Result) string {
	var order []string
	by, text := map[string][]string{}, map[string]string{}
	vhostRan := false
	for _, c := range res.Coverage {
		vhostRan = vhostRan || !c.Core && c.Vantage != "ping" && c.Status != analyze.CovNotRun
	}
	for _, c := range res.Coverage {
		if c.Status == analyze.CovNotRun && (c.Vantage == "ping" || !c.Core && !vhostRan) {
			continue // said once below
		}
		if _, ok := by[c.Status]; !ok {
			order = append(order, c.Status)
		}
		by[c.Status] = append(by[c.Status], c.Vantage)
		text[c.Status] = c.StatusText()
	}
	var parts []string
	for _, st := range order {
		parts = append(parts, strings.Join(by[st], ", ")+" "+text[st])
	}
	if !vhostRan && len(res.Coverage) > 0 {
		parts = append(parts, "no vhost tracer ran")
	}
	return strings.Join(parts, "; ")
}

// layerRTTText is the mean RTT the layers partition, saying what it leaves
// out.
func layerRTTText(res *analyze.Result) string {
	s := fmt.Sprintf("mean RTT %.1f µs", res.LayerRTTUS)
	if len(res.LayerRTTExcludes) > 0 {
		s += fmt.Sprintf(" without %s, refused on every ping", strings.Join(res.LayerRTTExcludes, ", "))
	}
	return s
}

// layerCells are a layer's mean and share, or dashes when nothing of it
// was measured.
func layerCells(l analyze.Layer) (mean, share string) {
	if !l.Measured {
		return "–", "–"
	}
	return f1(l.MeanUS), pct(l.Share)
}

// describe says what a value is; a residual says what it contains in this
// run.
func describe(res *analyze.Result, v int) string {
	if s, ok := res.ResidualContents[analyze.ValueNames[v]]; ok {
		return s
	}
	return analyze.SegmentDescriptions[v]
}

// fileNote is everything the Files table says about a file.
func fileNote(f analyze.FileInfo) string {
	var parts []string
	for _, s := range []string{f.Note, f.Ignored} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if f.Truncated {
		parts = append(parts, "no closing summary (stopped abruptly or cut short)")
	}
	return strings.Join(parts, "; ")
}

// refusedCounts counts the values the gates refused, per value name.
func refusedCounts(res *analyze.Result) map[string]int {
	m := map[string]int{}
	for _, e := range res.Excluded {
		m[e.Segment]++
	}
	return m
}

func sourceName(s string) string {
	switch s {
	case "pingpath":
		return "pingpath record streams"
	case "origin":
		return "origin tool logs"
	case "mixed":
		return "pingpath record streams and origin tool logs"
	}
	return "nothing recognised"
}

// Summary prints what `pingpath analyze` and `pingpath run` show: the
// verdict and the context first, then the concise table.
func Summary(out io.Writer, res *analyze.Result) error {
	c := res.Counts
	tw := tabwriter.NewWriter(out, 2, 0, 2, ' ', tabwriter.AlignRight)
	w := &errWriter{w: out}
	v := BuildVerdict(res)
	for i, l := range v.Lines {
		if i == 0 {
			w.printf("verdict: %s\n", l.Text)
			continue
		}
		w.printf("  %s: %s\n", l.Label, l.Text)
	}
	for _, c := range v.Caution {
		w.printf("  ! %s\n", c)
	}
	if line := BuildContext(res).Line(); line != "" {
		w.printf("context: %s\n", line)
	}
	w.printf("pings: %d sent, %d matched, %d complete, %d lost", c.Sent, c.Matched, c.Complete, c.Lost)
	if res.Empty {
		w.printf("  — empty run: no ping was observed\n")
	} else {
		w.printf("\n")
	}
	if res.Empty {
		return w.err
	}
	tww := &errWriter{w: tw}
	tww.printf("segment\tn\tp50 µs\tp90 µs\tp99 µs\tmean µs\t\n")
	for _, v := range statRows(res) {
		s := res.Stats[v]
		if s.N == 0 {
			continue
		}
		tww.printf("%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", analyze.ValueNames[v], s.N, s.P50, s.P90, s.P99, s.Mean)
	}
	if tww.err == nil {
		tww.err = tw.Flush()
	}
	if tww.err != nil {
		return tww.err
	}
	if len(res.Layers) > 0 {
		w.printf("layers (%s, over %d pings):", layerRTTText(res), len(res.LayerSet))
		for _, l := range res.Layers {
			flag := ""
			if l.Flag != "" {
				flag = "!"
			}
			if !l.Measured {
				w.printf("  %s –", l.Name)
				continue
			}
			w.printf("  %s %.1f%%%s", l.Name, l.Share*100, flag)
		}
		w.printf("\n")
	}
	// (The tail is in the verdict's tail line above.)
	lost, falseDrops := 0, 0
	for _, d := range res.Drops {
		switch d.Status {
		case "lost":
			lost++
		case "false-drop":
			falseDrops++
		}
	}
	if lost+falseDrops > 0 {
		w.printf("drops: %d lost, %d drop report(s) refuted by later vantage points\n", lost, falseDrops)
	}
	if len(res.Excluded) > 0 {
		w.printf("plausibility gates refused %d value(s) (see report)\n", len(res.Excluded))
	}
	for _, c := range res.Cost {
		w.printf("%s\n", costLine(c))
	}
	if len(res.Warnings) > 0 {
		w.printf("%d warning(s) (see report)\n", len(res.Warnings))
	}
	return w.err
}

// costLine says what tracing cost one machine, in one line.
func costLine(c analyze.NodeCost) string {
	bpf := fmt.Sprintf("BPF %.1f µs per ping", c.BPFUSPerPing)
	if p := c.PingsBPFUSPerPing; p != nil {
		// The pings' own share apart: the rest is the host's other
		// traffic, which does not scale with the pings.
		bpf += fmt.Sprintf(", %.1f of it on the pings' packets and the rest in %d runs for other traffic", *p, c.OtherBPFRuns)
	}
	s := fmt.Sprintf("measurement cost on %s: %.1f µs per ping, %.2f %% of a CPU (%s; %s)",
		c.Node, c.USPerPing, c.CPUPercent, bpf, strings.Join(c.Tracers, ", "))
	if len(c.Detached) > 0 {
		s += fmt.Sprintf("; %s detached itself over --max-cpu (peak %.1f %%)", strings.Join(c.Detached, ", "), c.PeakCPUPercent)
	}
	return s
}
