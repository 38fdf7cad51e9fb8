// Package report renders an analysis (internal/analyze) as Markdown, as one
// self-contained offline HTML file with inline SVG charts, as JSON, and as
// a short terminal summary. It never fetches anything: the HTML carries its
// data and script inline.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/timeline"
)

// Schema names the report.json format.
const Schema = "pingpath.report/v1"

// maxPerPing bounds the per-ping rows written to report.json and embedded in
// report.html, so that an hour at 100 pings/s stays a file a browser opens.
const maxPerPing = 20000

// Doc is report.json.
type Doc struct {
	Schema    string                   `json:"schema"`
	Dir       string                   `json:"dir"`
	Source    string                   `json:"source"`
	Empty     bool                     `json:"empty"`
	Pings     analyze.Counts           `json:"pings"`
	RTT       analyze.Stats            `json:"rtt"`
	PingRTT   analyze.Stats            `json:"ping_rtt"`
	Segments  map[string]analyze.Stats `json:"segments"`
	Residuals map[string]analyze.Stats `json:"residuals"`
	Totals    map[string]analyze.Stats `json:"totals"`
	Layers    []analyze.Layer          `json:"layers"`
	LayerRTT  float64                  `json:"layer_rtt_mean_us"`
	LayerN    int                      `json:"layer_pings"`
	Contrib   map[string]float64       `json:"contrib_mean_us,omitempty"`
	Tail      *analyze.Tail            `json:"tail,omitempty"`
	Drops     []analyze.Drop           `json:"drops"`
	Excluded  []analyze.Exclusion      `json:"excluded"`
	Warnings  []string                 `json:"warnings"`
	Notes     []string                 `json:"notes"`
	SharedClk bool                     `json:"shared_clock"`
	IDs       []uint16                 `json:"icmp_ids"`
	Vantages  []string                 `json:"vantages"`
	// Coverage says per vantage point whether it was measured, failed,
	// observed nothing, could not be read or did not run.
	Coverage []analyze.Coverage `json:"coverage"`
	// LayerRTTExcludes names the values taken out of layer_rtt_mean_us
	// (refused on every layer ping).
	LayerRTTExcludes []string `json:"layer_rtt_excludes,omitempty"`
	// ResidualContents says what each residual holds, or why it was not
	// computed.
	ResidualContents map[string]string  `json:"residual_contents"`
	Prefix           string             `json:"prefix,omitempty"`
	Files            []analyze.FileInfo `json:"files"`
	PerPing          []PingRow          `json:"per_ping"`
	// Cost is what the tracers cost each machine (their own measure).
	Cost []analyze.NodeCost `json:"measurement_cost"`
	// PerPingTruncated is true when only the first maxPerPing rows are kept.
	PerPingTruncated bool `json:"per_ping_truncated,omitempty"`
	// Added in v1 without breaking readers: the answer first, what was
	// measured, and the timelines of a few pings (the report's waterfall
	// and swim lanes; lanes in path order).
	Verdict   *Verdict   `json:"verdict"`
	Context   *Context   `json:"context"`
	Lanes     []string   `json:"lanes"`
	Timelines []Timeline `json:"timelines"`
	// Descriptions says what each value name is.
	Descriptions map[string]string `json:"descriptions"`
}

// PingRow is one ping's values in µs (absent: not measured).
type PingRow struct {
	ID       uint16 `json:"id"`
	Seq      uint16 `json:"seq"`
	TimeNS   int64  `json:"time_ns,omitempty"`
	Complete bool   `json:"complete"`
	Lost     bool   `json:"lost,omitempty"`
	// InStats is true for the pings every statistic is taken over; the
	// accepted values of a row are those of values_us not in excluded, of
	// a row with in_stats. Tables and charts use nothing else.
	InStats  bool               `json:"in_stats"`
	Values   map[string]float64 `json:"values_us"`
	Excluded []string           `json:"excluded,omitempty"`
}

// segmentKeys are the report.json segment keys in order (C and J only on a shared clock).
func segmentKeys(res *analyze.Result) []int {
	keys := append([]int(nil), analyze.ReportSegments...)
	if res.SharedClk {
		keys = append(keys, analyze.SegC, analyze.SegJ)
	}
	// An untraced VM's coarser segment, where the run declared one.
	for _, v := range []int{analyze.ValUntracedS, analyze.ValUntracedR} {
		if res.Stats[v].N > 0 {
			keys = append(keys, v)
		}
	}
	return keys
}

// Build turns a Result into the report.json document.
func Build(res *analyze.Result) *Doc {
	d := &Doc{Schema: Schema, Dir: res.Dir, Source: res.Source, Empty: res.Empty, Pings: res.Counts,
		RTT: res.Stats[analyze.ValRTT], PingRTT: res.Stats[analyze.ValPingRTT],
		Segments: map[string]analyze.Stats{}, Layers: res.Layers, LayerRTT: res.LayerRTTUS, LayerN: len(res.LayerSet),
		Contrib: res.Contrib, Tail: res.Tail, Drops: res.Drops, Excluded: res.Excluded, Warnings: res.Warnings,
		Notes: res.Notes, Cost: res.Cost, SharedClk: res.SharedClk, IDs: res.IDs, Vantages: res.Vantages, Files: res.Files,
		Coverage: res.Coverage, LayerRTTExcludes: res.LayerRTTExcludes, ResidualContents: res.ResidualContents, Prefix: res.Prefix,
		Residuals: map[string]analyze.Stats{
			"sender":   res.Stats[analyze.ValResidS],
			"receiver": res.Stats[analyze.ValResidR],
		},
		Totals: map[string]analyze.Stats{},
	}
	if d.Layers == nil {
		d.Layers = []analyze.Layer{}
	}
	if d.IDs == nil {
		d.IDs = []uint16{}
	}
	if d.Vantages == nil {
		d.Vantages = []string{}
	}
	if d.Coverage == nil {
		d.Coverage = []analyze.Coverage{}
	}
	if d.Cost == nil {
		d.Cost = []analyze.NodeCost{}
	}
	for _, s := range segmentKeys(res) {
		d.Segments[analyze.ValueNames[s]] = res.Stats[s]
	}
	for _, v := range []int{analyze.ValInterS, analyze.ValTotalS, analyze.ValExtS, analyze.ValTotalR, analyze.ValExtR, analyze.ValTotalRV} {
		d.Totals[analyze.ValueNames[v]] = res.Stats[v]
	}
	d.Verdict, d.Context = BuildVerdict(res), BuildContext(res)
	d.Lanes, d.Timelines = timeline.Lanes, timelines(res)
	d.Descriptions = map[string]string{}
	for v := 0; v < analyze.NumVals; v++ {
		d.Descriptions[analyze.ValueNames[v]] = analyze.SegmentDescriptions[v]
	}
	d.PerPing = perPing(res, maxPerPing)
	d.PerPingTruncated = len(res.Pings) > maxPerPing
	return d
}

func perPing(res *analyze.Result, limit int) []PingRow {
	n := min(len(res.Pings), limit)
	rows := make([]PingRow, 0, n)
	inStats := make([]bool, n)
	for _, i := range res.StatSet {
		if i < n {
			inStats[i] = true
		}
	}
	for i := 0; i < n; i++ {
		p := &res.Pings[i]
		row := PingRow{ID: p.ID, Seq: p.Seq, TimeNS: p.Time, Complete: p.Complete, Lost: p.Lost, InStats: inStats[i], Values: map[string]float64{}}
		for v := 0; v < analyze.NumVals; v++ {
			if p.Has&(1<<v) == 0 {
				continue
			}
			row.Values[analyze.ValueNames[v]] = float64(p.Val[v]) / 1000
			if p.Excl&(1<<v) != 0 {
				row.Excluded = append(row.Excluded, analyze.ValueNames[v])
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// WriteAll writes report.md, report.html and report.json into outDir.
func WriteAll(outDir string, res *analyze.Result) error {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("creating report directory: %w", err)
	}
	doc := Build(res)
	data, err := writeJSON(filepath.Join(outDir, "report.json"), doc)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(outDir, "report.md"), func(f *os.File) error { return Markdown(f, res) }); err != nil {
		return err
	}
	return writeFile(filepath.Join(outDir, "report.html"), func(f *os.File) error { return renderHTML(f, res, doc, data) })
}

// writeJSON writes v indented to path and returns its compact encoding for
// the page that embeds the same document (renderHTML), so the document
// (up to maxPerPing rows) is marshalled once. The file's bytes are those of a
// json.Encoder with SetIndent("", "  ").
func writeJSON(path string, v any) (template.JS, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return template.JS(data), writeFile(path, func(f *os.File) error {
		var b bytes.Buffer
		b.Grow(len(data) * 2)
		if err := json.Indent(&b, data, "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := f.Write(b.Bytes())
		return err
	})
}

// writeFile writes through a temporary file and renames, so a failed
// render never leaves half a report in place of a good one.
func writeFile(path string, fn func(*os.File) error) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := fn(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
