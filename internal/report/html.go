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

//go:embed charts.js
var chartsJS string

// pageFuncs are shared by the report and compare pages.
var pageFuncs = template.FuncMap{
	"f1":    f1,
	"pval":  pval,
	"nf1":   nf1,
	"min":   func(a, b int) int { return min(a, b) },
	"pct":   pct,
	"cells": statsCells,
	"name":  func(v int) string { return analyze.ValueNames[v] },
	"desc":  func(v int) string { return analyze.SegmentDescriptions[v] },
	"stat":  func(res *analyze.Result, v int) analyze.Stats { return res.Stats[v] },
	"join":  strings.Join,
}

var reportPage = template.Must(template.New("report").Funcs(pageFuncs).Parse(reportTemplate))

// renderHTML writes report.html: one file with its data (doc's compact JSON
// encoding; encoding/json escapes <, > and & so it cannot close the
// <script> element), styles and chart script inline, so it opens offline.
func renderHTML(w io.Writer, res *analyze.Result, doc *Doc, data template.JS) error {
	return reportPage.Execute(w, map[string]any{
		"Res":     res,
		"Doc":     doc,
		"Rows":    statRows(res),
		"Refused": refusedCounts(res),
		"Header":  statsHeader,
		"Data":    data,
		"JS":      template.JS(chartsJS),
		"Source":  sourceName(res.Source),
	})
}
