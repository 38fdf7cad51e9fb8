package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
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

// embedJSON marshals v for a <script type="application/json"> block.
// encoding/json escapes <, > and & so the data cannot close the element.
func embedJSON(v any) (template.JS, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding chart data: %w", err)
	}
	return template.JS(b), nil
}

// HTML writes report.html: one file with its data, styles and chart script
// inline (no network fetches), so it opens offline.
func HTML(w io.Writer, res *analyze.Result, doc *Doc) error {
	data, err := embedJSON(doc)
	if err != nil {
		return err
	}
	return renderHTML(w, res, doc, data)
}

// renderHTML writes report.html with data, doc's compact JSON encoding.
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
