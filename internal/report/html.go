package report

import (
	_ "embed"
	"html/template"
	"io"
	"strings"

	"github.com/pingpath/pingpath/internal/analyze"
)

//go:embed report.html.tmpl
var reportTemplate string

// The chart scripts: chartlib.js is shared, then each page's own.
var (
	//go:embed chartlib.js
	chartsCommonJS string
	//go:embed report.js
	reportJS string
	//go:embed compare.js
	compareJS string
)

//go:embed page.css
var pageCSS string

// The charting library, vendored by scripts/vendor-echarts.sh and checked
// against its pin by `make lint` and TestVendoredECharts.
var (
	//go:embed vendor/echarts.min.js
	echartsJS string
	//go:embed vendor/echarts.pin
	echartsPin string
)

// echartsVersion is the VERSION line of the pin.
func echartsVersion() string {
	for _, l := range strings.Split(echartsPin, "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION="); ok {
			return v
		}
	}
	return "?"
}

// pageFuncs are shared by the report and compare pages.
var pageFuncs = template.FuncMap{
	"f1":     f1,
	"pval":   pval,
	"nf1":    nf1,
	"min":    func(a, b int) int { return min(a, b) },
	"pct":    pct,
	"cells":  statsCells,
	"name":   func(v int) string { return analyze.ValueNames[v] },
	"stat":   func(res *analyze.Result, v int) analyze.Stats { return res.Stats[v] },
	"join":   strings.Join,
	"signif": signifRule,
	// The same wording as report.md and the terminal summary.
	"coverageLine":  coverageLine,
	"layerRTT":      layerRTTText,
	"layerMean":     func(l analyze.Layer) string { m, _ := layerCells(l); return m },
	"layerShare":    func(l analyze.Layer) string { _, s := layerCells(l); return s },
	"describe":      describe,
	"fileNote":      fileNote,
	"comparability": comparability,
	"share":         share,
	"rttChange":     rttChangeText,
	"cost":          costLine,
}

var reportPage = template.Must(template.New("report").Funcs(pageFuncs).Parse(reportTemplate))

// probeRow is one stage's attach method, for the report's table.
type probeRow struct{ Node, Tool, Stage, How string }

func probeRows(ctx *Context) []probeRow {
	var rows []probeRow
	for _, n := range ctx.Nodes {
		for _, p := range n.Probes {
			tool, rest, _ := strings.Cut(p, " ")
			stage, how, _ := strings.Cut(rest, "=")
			rows = append(rows, probeRow{n.Role, tool, stage, how})
		}
	}
	return rows
}

// renderHTML writes report.html: one file with its data, styles, the
// charting library and the chart script inline (no network fetches), so it
// opens offline. data is doc's compact JSON encoding.
func renderHTML(w io.Writer, res *analyze.Result, doc *Doc, data template.JS) error {
	return reportPage.Execute(w, map[string]any{
		"Res":            res,
		"Doc":            doc,
		"Verdict":        doc.Verdict,
		"Ctx":            doc.Context,
		"Probes":         probeRows(doc.Context),
		"Rows":           statRows(res),
		"Refused":        refusedCounts(res),
		"Header":         statsHeader,
		"Data":           data,
		"CSS":            template.CSS(pageCSS),
		"ECharts":        template.JS(echartsJS),
		"EChartsVersion": echartsVersion(),
		"JS":             template.JS(chartsCommonJS + reportJS),
		"Source":         sourceName(res.Source),
	})
}
