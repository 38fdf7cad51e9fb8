package vhost

import (
	"fmt"
	"io"
	"strings"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// TextHeader implements tracer.TextView: the probe choices and what
// discovery found, like the origin tools' banners.
func (t *Tool) TextHeader(w io.Writer, h *record.Header) {
	fmt.Fprintf(w, "=== pingpath %s tracer %s on %s (kernel %s, host %s) ===\n", h.Tool, h.Version, t.cfg.Interface, h.Kernel, h.Hostname)
	fmt.Fprintf(w, "Discovery: %s\n", h.Args["discovery"])
	fmt.Fprintf(w, "Filter: src %s dst %s (requests src→dst, replies dst→src)\n", orAny(h.SrcIP), orAny(h.DstIP))
	tracer.WriteProbesText(w, h)
	fmt.Fprintln(w, "Stage times are relative to the first stage seen; total = last − first stage of the chain.")
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

func (t *Tool) stages() []string {
	if t.cfg.Tool == record.ToolVhostRX {
		return record.VhostRX.Stages
	}
	return record.VhostTX.Stages
}

// TextPing implements tracer.TextView: one line per packet with every stage
// seen, relative to the first.
func (t *Tool) TextPing(w io.Writer, h *record.Header, p *record.Ping) {
	var first uint64
	for _, s := range t.stages() {
		if ts, ok := p.Stages[s]; ok && (first == 0 || ts < first) {
			first = ts
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] %-7s id=%d seq=%d", strings.ToUpper(h.Tool), t.cfg.Interface, p.Role, p.ID, p.Seq)
	for _, s := range t.stages() {
		if ts, ok := p.Stages[s]; ok {
			fmt.Fprintf(&b, " %s=+%.3fus", s, float64(ts-first)/1e3)
		}
	}
	if tot, ok := p.Durations["total"]; ok {
		fmt.Fprintf(&b, " total=%.3fus", float64(tot)/1e3)
	}
	if m := p.Extra["missing"]; m != "" {
		fmt.Fprintf(&b, " (not seen: %s)", m)
	}
	fmt.Fprintln(w, b.String())
}

// TextDrop implements tracer.TextView.
func (t *Tool) TextDrop(w io.Writer, h *record.Header, d *record.Drop) {
	reason := d.Reason
	if reason == "" {
		reason = "not taken by the backend before the timeout"
	}
	fmt.Fprintf(w, "%s [%s] DROP %s id=%d seq=%d after %s: %s\n", strings.ToUpper(h.Tool), t.cfg.Interface, d.Role, d.ID, d.Seq, d.LastSeen, reason)
}

// TextTrailer implements tracer.TextView.
func (t *Tool) TextTrailer(w io.Writer, _ *record.Header, tr *record.Trailer) {
	tracer.WriteTrailerText(w, tr)
}
