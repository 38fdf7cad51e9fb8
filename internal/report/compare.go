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
	doc := &CompareDoc{Schema: CompareSchema, A: c.A.Dir, B: c.B.Dir, Comparison: c}
	data, err := writeJSON(filepath.Join(outDir, "compare.json"), doc)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(outDir, "compare.md"), func(f *os.File) error { return CompareMarkdown(f, c) }); err != nil {
		return err
	}
	return writeFile(filepath.Join(outDir, "compare.html"), func(f *os.File) error {
		return comparePage.Execute(f, map[string]any{"C": c, "Data": data, "Rows": compareRows(c)})
	})
}

// compareRow is one line of the comparison table.
type compareRow struct {
	Name string
	analyze.Delta
}

func compareRows(c *analyze.Comparison) []compareRow {
	rows := []compareRow{{"RTT", c.RTT}}
	for _, k := range c.Order {
		rows = append(rows, compareRow{k, c.Segments[k]})
	}
	return rows
}

// nf1 renders a value that only exists when n > 0.
func nf1(x float64, n int) string {
	if n == 0 {
		return "–"
	}
	return f1(x)
}

func pval(d analyze.Delta) string {
	if d.PValue == nil {
		return "–"
	}
	s := fmt.Sprintf("%.3g", *d.PValue)
	if d.Signif {
		s += " *"
	}
	return s
}

// CompareMarkdown writes compare.md.
func CompareMarkdown(out io.Writer, c *analyze.Comparison) error {
	w := &errWriter{w: out}
	w.printf("# pingpath comparison\n\nA (baseline): `%s` (%d complete pings) · B: `%s` (%d complete pings)\n\n",
		c.A.Dir, c.A.Counts.Complete, c.B.Dir, c.B.Counts.Complete)
	th := c.Thresholds
	w.printf("Medians per segment over each run's complete pings; p-value of a two-sided Mann–Whitney U test. "+
		"* = significant: p < %.2f and |Δ p50| ≥ max(%.0f µs, %.0f %% of the larger median).\n\n", th.Alpha, th.MinDeltaUS, th.MinDeltaRel*100)
	mdHeader(w, "segment", "A p50 µs", "B p50 µs", "Δ p50 µs", "A mean", "B mean", "Δ mean", "n A", "n B", "p")
	for _, r := range compareRows(c) {
		d := r.Delta
		mdRow(w, r.Name, nf1(d.AP50, d.AN), nf1(d.BP50, d.BN), nf1(d.DP50, min(d.AN, d.BN)), nf1(d.AMean, d.AN),
			nf1(d.BMean, d.BN), nf1(d.DMean, min(d.AN, d.BN)), fmt.Sprint(d.AN), fmt.Sprint(d.BN), pval(d))
	}
	w.printf("\n## Layers\n\n")
	mdHeader(w, "layer", "A mean µs", "B mean µs", "Δ mean µs", "A share", "B share", "Δ p50 µs", "p")
	for _, l := range c.Layers {
		mdRow(w, l.Name, f1(l.AMean), f1(l.BMean), f1(l.DMean), pct(l.AShare), pct(l.BShare), f1(l.DP50), pval(l.Delta))
	}
	w.printf("\n## Where the RTT change went\n\nMean RTT over each run's layer set changed by **%+.1f µs**. Per ping the segments add up to the RTT, so these deltas add up to it:\n\n", c.RTTDelta)
	mdHeader(w, "segment", "Δ mean µs", "share of Δ")
	for _, a := range c.Attribution {
		mdRow(w, a.Segment, f1(a.DMean), pct(a.Share))
	}
	w.printf("\n## Environment differences\n\n")
	if len(c.Env) == 0 {
		w.printf("None found (or no manifest on either side).\n")
	} else {
		mdHeader(w, "what", "A", "B")
		for _, e := range c.Env {
			mdRow(w, e.What, e.A, e.B)
		}
	}
	if len(c.Warnings) > 0 {
		w.printf("\n## Warnings\n\n- %s\n", strings.Join(c.Warnings, "\n- "))
	}
	return w.err
}

// CompareSummary prints the terminal table `pingpath compare` shows.
func CompareSummary(out io.Writer, c *analyze.Comparison) error {
	w := &errWriter{w: out}
	w.printf("%-26s %10s %10s %10s %10s\n", "segment", "A p50 µs", "B p50 µs", "Δ p50", "p")
	for _, r := range compareRows(c) {
		if r.AN == 0 && r.BN == 0 {
			continue
		}
		d := r.Delta
		w.printf("%-26s %10s %10s %10s %10s\n", r.Name, nf1(d.AP50, d.AN), nf1(d.BP50, d.BN), nf1(d.DP50, min(d.AN, d.BN)), pval(d))
	}
	w.printf("mean RTT delta %+.1f µs", c.RTTDelta)
	if len(c.Attribution) > 0 {
		w.printf(", largest part %s %+.1f µs", c.Attribution[0].Segment, c.Attribution[0].DMean)
	}
	w.printf("\n")
	return w.err
}
