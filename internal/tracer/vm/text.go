package vm

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// The text view follows kernel_icmp_rtt.py's blocks (dev-branch labels
// "P1 (hook)"), so people and the origin-log parser read it the same way.

const rule = "================================================================================"

// TextHeader implements tracer.TextView.
func (t *Tracer) TextHeader(w io.Writer, h *record.Header) {
	local, remote := h.SrcIP, h.DstIP
	if h.Role == record.RoleRX {
		local, remote = remote, local
	}
	fmt.Fprintln(w, "=== Kernel ICMP RTT Tracer (pingpath) ===")
	fmt.Fprintf(w, "Trace Direction: %s\n", strings.ToUpper(h.Role))
	fmt.Fprintf(w, "Ping Session: %s -> %s\n", h.SrcIP, h.DstIP)
	fmt.Fprintf(w, "Local IP: %s\nRemote IP: %s\n", local, remote)
	if len(h.Interfaces) > 0 {
		fmt.Fprintf(w, "Monitoring interface(s): %s\n", strings.Join(h.Interfaces, ","))
	} else {
		fmt.Fprintln(w, "Monitoring interface(s): all")
	}
	fmt.Fprintf(w, "Kernel: %s  Host: %s  Netns: %d  Version: %s\n\n", h.Kernel, h.Hostname, h.Netns, h.Version)
	tracer.WriteProbesText(w, h)
	fmt.Fprintf(w, "\nTracing ICMP RTT (src=%s, dst=%s, dir=%s) ... Hit Ctrl-C to end.\n", h.SrcIP, h.DstIP, h.Role)
}

func probeLabel(h *record.Header, stage string) string {
	for _, p := range h.Probes {
		if p.Stage == stage && p.Available {
			return p.Target
		}
	}
	return "unavailable"
}

func us(ns int64) string { return fmt.Sprintf("%7.3f", float64(ns)/1e3) }

// TextPing implements tracer.TextView.
func (t *Tracer) TextPing(w io.Writer, h *record.Header, p *record.Ping) {
	wall := time.Unix(0, h.StartWallNS+int64(p.Stages[record.StageP1Start])-int64(h.StartMonoNS))
	dir, req, rep := "TX (Local -> Remote)", "Request: TX to "+h.DstIP, "Reply:   RX from "+h.DstIP
	reqStage, repStage := record.StageP1Start, record.StageP2End
	if h.Role == record.RoleRX {
		dir, req, rep = "RX (Remote -> Local)", "Request: RX from "+h.SrcIP, "Reply:   TX to "+h.SrcIP
		reqStage, repStage = record.StageP1Start, record.StageP2Start
	}
	fmt.Fprintln(w, rule)
	fmt.Fprintf(w, "=== ICMP RTT Trace: %s (%s) ===\n", wall.Format("2006-01-02 15:04:05.000"), dir)
	fmt.Fprintf(w, "Session: %s -> %s (ID: %d, Seq: %d)\n", h.SrcIP, h.DstIP, p.ID, p.Seq)
	line := func(label, stage string, icmpType int) {
		dev := p.Devices[stage]
		if dev == "" {
			dev = "unknown"
		}
		fmt.Fprintf(w, "%-45s: PID=%-6d COMM=%-12s IF=%-10s ICMP_Type=%d\n", label, p.PID[stage], p.Comm[stage], dev, icmpType)
	}
	line("Path 1 ("+req+")", reqStage, 8)
	line("Path 2 ("+rep+")", repStage, 0)
	seg := func(idx, from, to string) {
		v := "   N/A "
		if a, ok := p.Stages[from]; ok {
			if b, ok := p.Stages[to]; ok {
				v = us(int64(b) - int64(a))
			}
		}
		fmt.Fprintf(w, "  %s P%s (%s) -> P%s (%s) : %s us\n", idx, from[1:2], probeLabel(h, from), to[1:2], probeLabel(h, to), v)
	}
	total := func(name string) {
		if d, ok := p.Durations[name]; ok {
			fmt.Fprintf(w, "  Total Path %s: %s us\n", name[len(name)-1:], us(d))
		}
	}
	p1, p2 := "[0->1]", "[3->5]"
	if h.Role == record.RoleRX {
		p1, p2 = "[0->2]", "[4->5]"
	}
	fmt.Fprintln(w, "\nPath 1 Latencies (us):")
	seg(p1, record.StageP1Start, record.StageP1End)
	total("path1")
	fmt.Fprintln(w, "\nPath 2 Latencies (us):")
	seg(p2, record.StageP2Start, record.StageP2End)
	total("path2")
	fmt.Fprintln(w)
	if d, ok := p.Durations["total"]; ok {
		fmt.Fprintf(w, "Total RTT (Path1 Start to Path2 End): %s us\n", us(d))
	}
	if d, ok := p.Durations["inter_path"]; ok {
		fmt.Fprintf(w, "Inter-Path Latency (P1 end -> P2 start): %s us\n", us(d))
	}
	fmt.Fprintln(w, rule)
	fmt.Fprintln(w)
}

// TextDrop implements tracer.TextView.
func (t *Tracer) TextDrop(w io.Writer, h *record.Header, d *record.Drop) {
	fmt.Fprintf(w, "=== Incomplete ping: Session: %s -> %s (ID: %d, Seq: %d) last seen %s, missing %s ===\n",
		h.SrcIP, h.DstIP, d.ID, d.Seq, d.LastSeen, d.FirstMissed)
}

// TextTrailer implements tracer.TextView.
func (t *Tracer) TextTrailer(w io.Writer, _ *record.Header, tr *record.Trailer) {
	tracer.WriteTrailerText(w, tr)
}
