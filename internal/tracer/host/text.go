package host

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/tracer"
)

// The text view follows the origin tool's output (research notes §1.2) so
// people used to it can read it, with the role and devices added and times
// taken from the kernel timestamps rather than from when the line was read.

// stageLabels are the origin's names for the four stages.
var stageLabels = map[string]string{
	record.StageReqIn: "ReqRX", record.StageReqOut: "ReqTX", record.StageRepIn: "RepRX", record.StageRepOut: "RepTX",
}

// textStats counts what the text trailer summarises.
type textStats struct {
	complete, incomplete     int
	reqInternal, external    int
	repInternal, withReasons int
}

// TextHeader implements tracer.TextView.
func (t *Tool) TextHeader(w io.Writer, h *record.Header) {
	fmt.Fprintln(w, "=== pingpath host tracer (ICMP path and drops) ===")
	fmt.Fprintf(w, "Source IP: %s\nDestination IP: %s\n", t.cfg.SrcIP, t.cfg.DstIP)
	fmt.Fprintf(w, "VM Interface(s): %s\n", t.ifaceList(SideVM))
	fmt.Fprintf(w, "PHY Interface(s): %s\n", t.ifaceList(SidePhy))
	fmt.Fprintf(w, "Timeout: %d ms\nRole: %s\n", t.cfg.Timeout.Milliseconds(), t.cfg.Role)
	for _, role := range []string{record.RoleSender, record.RoleReceiver} {
		if t.cfg.Role != "auto" && t.cfg.Role != role {
			continue
		}
		fmt.Fprintf(w, "\nFlow path (%s host):\n", role)
		for i, st := range record.Host.Stages {
			what := "Request"
			if i >= 2 {
				what = "Reply"
			}
			dir := "RX"
			if i%2 == 1 {
				dir = "TX"
			}
			fmt.Fprintf(w, "  [%d] %s %s at %s\n", i, what, dir, t.stageIfaces(role, st))
		}
	}
	fmt.Fprintln(w)
	tracer.WriteProbesText(w, h)
	fmt.Fprintln(w, "\nTracing... Hit Ctrl-C to end.")
	fmt.Fprintln(w)
}

func (t *Tool) ifaceList(side Side) string {
	names := t.cfg.VMInterfaces
	if side == SidePhy {
		names = t.cfg.PhyInterfaces
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s(ifindex=%d)", n, t.ifindexOf[n])
	}
	return strings.Join(parts, ", ")
}

// stageIfaces names the configured interfaces where a role sees a stage.
func (t *Tool) stageIfaces(role, stage string) string {
	vmSide := (stage == record.StageReqIn || stage == record.StageRepOut) == (role == record.RoleSender)
	if vmSide {
		return strings.Join(t.cfg.VMInterfaces, ",")
	}
	return strings.Join(t.cfg.PhyInterfaces, ",")
}

// wallTime maps a monotonic timestamp to wall time through the header.
func wallTime(h *record.Header, mono uint64) string {
	ns := h.StartWallNS + (int64(mono) - int64(h.StartMonoNS))
	return time.Unix(0, ns).Format("2006-01-02 15:04:05.000")
}

func stageFlags(stages map[string]uint64, devs map[string]string) string {
	parts := make([]string, len(record.Host.Stages))
	for i, st := range record.Host.Stages {
		v := "-"
		if _, ok := stages[st]; ok {
			v = devs[st]
			if v == "" {
				v = "Y"
			}
		}
		parts[i] = stageLabels[st] + ":" + v
	}
	return strings.Join(parts, " ")
}

func lastTS(stages map[string]uint64) uint64 {
	var m uint64
	for _, v := range stages {
		m = max(m, v)
	}
	return m
}

// TextPing implements tracer.TextView.
func (t *Tool) TextPing(w io.Writer, h *record.Header, p *record.Ping) {
	state := "complete"
	if p.Extra["incomplete"] != "" {
		state = "incomplete"
		t.text.incomplete++
	} else {
		t.text.complete++
	}
	fmt.Fprintf(w, "%s [%s] ID=%d Seq=%d Role=%s %s\n", wallTime(h, lastTS(p.Stages)), state, p.ID, p.Seq, p.Role,
		stageFlags(p.Stages, p.Devices))
	us := func(name string) string {
		v, ok := p.Durations[name]
		if !ok {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(v)/1e3)
	}
	fmt.Fprintf(w, "  Latency(us): ReqInternal=%s  External=%s  RepInternal=%s  Total=%s\n",
		us("req_internal"), us("external"), us("rep_internal"), us("total"))
	if why := p.Extra["incomplete"]; why != "" {
		fmt.Fprintf(w, "  Incomplete: %s\n", why)
	}
	if enc := p.Extra["encap"]; enc != "" {
		fmt.Fprintf(w, "  Encapsulation: %s\n", enc)
	}
	fmt.Fprintln(w, strings.Repeat("-", 80))
}

// TextDrop implements tracer.TextView.
func (t *Tool) TextDrop(w io.Writer, h *record.Header, d *record.Drop) {
	fmt.Fprintf(w, "\n=== ICMP Drop Detected: %s ===\n", wallTime(h, lastTS(d.Stages)))
	fmt.Fprintf(w, "Flow: %s -> %s (ID=%d, Seq=%d) Role=%s\n", t.cfg.SrcIP, t.cfg.DstIP, d.ID, d.Seq, d.Role)
	for i, st := range record.Host.Stages {
		state := "MISSING"
		if _, ok := d.Stages[st]; ok {
			state = "recorded at " + d.Devices[st]
		}
		fmt.Fprintf(w, "  [%d] %s: %s\n", i, stageLabels[st], state)
	}
	seenAt, missAt := d.Devices[d.LastSeen], t.stageIfaces(d.Role, d.FirstMissed)
	fmt.Fprintln(w)
	switch d.FirstMissed {
	case record.StageReqOut:
		t.text.reqInternal++
		fmt.Fprintf(w, "Drop Location: Request dropped INTERNALLY\n  Request received at %s but NOT sent from %s\n", seenAt, missAt)
	case record.StageRepIn:
		t.text.external++
		fmt.Fprintf(w, "Drop Location: EXTERNAL (network or peer)\n  Request sent from %s but Reply NOT received at %s\n", seenAt, missAt)
	case record.StageRepOut:
		t.text.repInternal++
		fmt.Fprintf(w, "Drop Location: Reply dropped INTERNALLY\n  Reply received at %s but NOT sent from %s\n", seenAt, missAt)
	}
	if d.Reason != "" {
		t.text.withReasons++
		fmt.Fprintf(w, "  Kernel drop: reason=%s (%d) location=%s device=%s (+%.1fus after %s)\n",
			d.Reason, d.ReasonCode, orDash(d.Location), orDash(d.Device),
			float64(int64(d.AtNS)-int64(d.Stages[d.LastSeen]))/1e3, stageLabels[d.LastSeen])
	}
	fmt.Fprintln(w)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// TextTrailer implements tracer.TextView.
func (t *Tool) TextTrailer(w io.Writer, _ *record.Header, tr *record.Trailer) {
	s := t.text
	fmt.Fprintln(w, "\n=== ICMP Flow Statistics ===")
	fmt.Fprintf(w, "Total flows tracked: %d\n", s.complete+s.incomplete+s.reqInternal+s.external+s.repInternal)
	fmt.Fprintf(w, "Complete flows: %d\n", s.complete)
	fmt.Fprintf(w, "Incomplete flows (stage not observed, or cut off at exit): %d\n", s.incomplete)
	fmt.Fprintf(w, "Request internal drops: %d\n", s.reqInternal)
	fmt.Fprintf(w, "External drops: %d\n", s.external)
	fmt.Fprintf(w, "Reply internal drops: %d\n", s.repInternal)
	fmt.Fprintf(w, "Drops with a kernel reason: %d\n", s.withReasons)
	tracer.WriteTrailerText(w, tr)
}
