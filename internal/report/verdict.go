package report

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pingpath/pingpath/internal/analyze"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/record"
)

// Verdict is the answer the reports start with: where the time goes, what
// drives the tail, what was lost where, what was not measured and why. It
// is built only from the analysis' own results (layers, tail, drops,
// warnings), so a state the analysis marks (a flagged layer, a refused
// value, a warning) is what the verdict says, never recomputed here.
type Verdict struct {
	Lines []VerdictLine `json:"lines"`
	// Caution is shown above the verdict when its numbers must not be read
	// as production numbers or when the analysis warned.
	Caution []string `json:"caution,omitempty"`
}

// VerdictLine is one line: a short label ("where", "tail", "lost", "not
// measured") and the sentence.
type VerdictLine struct {
	Label string `json:"label"`
	Text  string `json:"text"`
}

// Context says what was measured: environment, date, machines, kernels,
// attach methods, lab kind, pingpath version.
type Context struct {
	Environment string `json:"environment,omitempty"`
	Started     string `json:"started,omitempty"` // RFC 3339, UTC
	Version     string `json:"version,omitempty"` // pingpath on the controller
	// LabKind is "namespace lab", "KVM lab (emulated, TCG)" or "" for real
	// machines (or unknown: no manifest).
	LabKind   string        `json:"lab_kind,omitempty"`
	Emulation string        `json:"emulation,omitempty"`
	Wire      string        `json:"wire,omitempty"` // the lab's wire settings
	Status    string        `json:"status,omitempty"`
	Source    string        `json:"source"`
	Nodes     []ContextNode `json:"nodes"`
}

// ContextNode is one machine of the run.
type ContextNode struct {
	Role     string `json:"role"`
	Hostname string `json:"hostname,omitempty"`
	Kernel   string `json:"kernel,omitempty"`
	// Attach summarises the attach methods its tracers chose, per tracer:
	// "vm: raw_tracepoint ×4".
	Attach []string `json:"attach,omitempty"`
	// Probes lists every stage as "tool stage=method:target".
	Probes []string `json:"probes,omitempty"`
}

// segmentTool says which tracer measures a segment (for the reason a
// segment was not measured).
var segmentTool = map[string]string{
	"A": record.ToolVM, "M": record.ToolVM, "F": record.ToolVM, "G": record.ToolVM, "H": record.ToolVM,
	"B": record.ToolHost, "D": record.ToolHost, "I": record.ToolHost, "K": record.ToolHost, "CJ": record.ToolHost,
	"E": record.ToolVhostRX, "L": record.ToolVhostRX, "B_1": record.ToolVhostTX, "I_1": record.ToolVhostTX,
}

// BuildVerdict reads the verdict off an analysis.
func BuildVerdict(res *analyze.Result) *Verdict {
	v := &Verdict{}
	if m := res.Manifest; m != nil && m.Emulation != "" {
		v.Caution = append(v.Caution, "Emulated machines: "+m.Emulation+".")
	}
	// A vantage point that ran but gave nothing (its tool failed, it
	// observed no ping, its file could not be read) comes first.
	v.Caution = append(v.Caution, coverageProblems(res)...)
	if n := len(res.Warnings); n > 0 {
		v.Caution = append(v.Caution, fmt.Sprintf("%d warning(s) — read them before the numbers (first: %s)", n, clip(res.Warnings[0], 200)))
	}
	if res.Empty {
		v.Lines = append(v.Lines, VerdictLine{"where", "Nothing to break down: no tracer observed any ping."})
		return v
	}
	v.Lines = append(v.Lines, VerdictLine{"where", where(res)})
	if t := tailLine(res); t != "" {
		v.Lines = append(v.Lines, VerdictLine{"tail", t})
	}
	v.Lines = append(v.Lines, VerdictLine{"lost", lostLine(res)})
	if s := notMeasured(res); s != "" {
		v.Lines = append(v.Lines, VerdictLine{"not measured", s})
	}
	return v
}

// where names the dominant layer and, inside it, the dominant segment.
func where(res *analyze.Result) string {
	if len(res.Layers) == 0 {
		return fmt.Sprintf("No ping has every value needed to split its round trip (%d of %d pings complete); see the segment table.", res.Counts.Complete, res.Counts.Sent)
	}
	top := res.Layers[0]
	for _, l := range res.Layers[1:] {
		if l.Share > top.Share {
			top = l
		}
	}
	s := fmt.Sprintf("%s takes %s of the mean RTT (%s µs over %d pings)", top.Name, pct(top.Share), f1(res.LayerRTTUS), len(res.LayerSet))
	seg, segUS := "", 0.0
	for _, name := range top.Segments {
		if x := res.Contrib[name]; seg == "" || x > segUS {
			seg, segUS = name, x
		}
	}
	if seg != "" && len(top.Segments) > 1 && res.LayerRTTUS != 0 {
		s += fmt.Sprintf(", mostly %s (%s µs, %s)", seg, f1(segUS), pct(segUS/res.LayerRTTUS))
	}
	if top.Flag != "" {
		s += " — " + top.Flag
	}
	if res.LayersPartial {
		s += " — over pings with refused values taken out (see warnings)"
	}
	return s + "."
}

func tailLine(res *analyze.Result) string {
	t := res.Tail
	if t == nil || len(t.Growth) == 0 {
		return ""
	}
	g := t.Growth[0]
	return fmt.Sprintf("the slowest %d ping(s) (≥ p90 %s µs) take %s µs more than the median; %s of that is %s (+%s µs).",
		t.Pings, f1(t.ThresholdUS), f1(t.TailRTTUS-t.MedianRTTUS), pct(g.Share), g.Segment, f1(g.GrowthUS))
}

// lostLine groups the lost pings by where they died and the kernel's reason.
func lostLine(res *analyze.Result) string {
	type key struct{ where, reason string }
	count := map[key]int{}
	var order []key
	lost := 0
	for _, d := range res.Drops {
		if d.Status != "lost" {
			continue
		}
		lost++
		k := key{d.Segment, strings.TrimSpace(d.Reason + " " + d.Location)}
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	if lost == 0 {
		if res.Counts.Lost > 0 {
			return fmt.Sprintf("%d of %d pings lost; no vantage point located them.", res.Counts.Lost, res.Counts.Sent)
		}
		return fmt.Sprintf("none of %d pings.", res.Counts.Sent)
	}
	sort.SliceStable(order, func(i, j int) bool { return count[order[i]] > count[order[j]] })
	var parts []string
	for _, k := range order {
		p := fmt.Sprintf("%d in %s", count[k], cmpOr(k.where, "an unknown place"))
		if k.reason != "" {
			p += ", kernel reason " + k.reason
		} else {
			p += ", no kernel drop reason seen"
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("%d of %d pings: %s.", lost, res.Counts.Sent, strings.Join(parts, "; "))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// notMeasured lists the segments no ping has, with the reason: refused by
// the plausibility gates, or the tracer's own reason (its unavailable
// probes, its state) — one sentence per distinct reason.
func notMeasured(res *analyze.Result) string {
	refused := refusedCounts(res)
	type group struct {
		segs  []string
		tools []string
	}
	groups := map[string]*group{}
	var order []string
	for _, s := range analyze.ReportSegments {
		seg := analyze.ValueNames[s]
		if res.Stats[s].N != 0 {
			continue
		}
		tool := segmentTool[seg]
		why := whyNot(res, tool, seg)
		if refused[seg] > 0 {
			why = fmt.Sprintf("refused by the plausibility gates on every ping (%d value(s), see the refused values)", refused[seg])
		}
		g := groups[why]
		if g == nil {
			g = &group{}
			groups[why] = g
			order = append(order, why)
		}
		g.segs = append(g.segs, seg)
		if !slices.Contains(g.tools, tool) {
			g.tools = append(g.tools, tool)
		}
	}
	var parts []string
	for _, why := range order {
		g := groups[why]
		parts = append(parts, fmt.Sprintf("%s (%s): %s", strings.Join(g.segs, ", "), strings.Join(g.tools, ", "), why))
	}
	if !res.SharedClk {
		parts = append(parts, "C and J separately: the hosts do not share a clock, so only their sum CJ is measured")
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + "."
}

var digits = regexp.MustCompile(`[0-9]+`)

// whyNot finds why a tracer gave nothing for seg: the reason its probes
// give most often (numbers such as pids ignored), its state when it did not
// run cleanly, or the analysis' note about the segment.
func whyNot(res *analyze.Result, tool, seg string) string {
	if m := res.Manifest; m != nil {
		count := map[string]int{}
		first := map[string]string{}
		for _, n := range m.Nodes {
			for _, t := range n.Tracers {
				if t.Tool != tool {
					continue
				}
				var reasons []string
				if t.State != "" && t.State != "ok" {
					reasons = append(reasons, strings.TrimSpace(t.State+" "+clip(t.Error, 120)))
				}
				for _, p := range t.Probes {
					if _, r, ok := strings.Cut(p, "=unavailable: "); ok {
						reasons = append(reasons, strings.Split(r, "; ")...)
					}
				}
				for _, r := range reasons {
					k := digits.ReplaceAllString(r, "#")
					if count[k] == 0 {
						first[k] = r
					}
					count[k]++
				}
			}
		}
		best := ""
		for k, c := range count {
			if best == "" || c > count[best] || c == count[best] && k < best {
				best = k
			}
		}
		if best != "" {
			return clip(first[best], 200)
		}
		if !ranTool(m, tool) {
			return "tracer not run"
		}
	}
	for _, n := range res.Notes {
		if strings.Contains(n, "so "+seg+" is not measured") {
			return clip(n, 200)
		}
	}
	if why := res.NotMeasuredReason(seg); why != "" {
		return clip(why, 200)
	}
	return "no observation"
}

func ranTool(m *manifest.Manifest, tool string) bool {
	for _, n := range m.Nodes {
		for _, t := range n.Tracers {
			if t.Tool == tool && t.State != "not-started" {
				return true
			}
		}
	}
	return false
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// BuildContext describes what was measured, from the manifest when there is
// one, else from the tracer files' headers.
func BuildContext(res *analyze.Result) *Context {
	c := &Context{Source: sourceName(res.Source), Nodes: []ContextNode{}}
	m := res.Manifest
	if m == nil {
		byRole := map[string]int{}
		for _, f := range res.Files {
			if f.Vantage == "" || f.Vantage == "ping" {
				continue
			}
			role := vantageRole(f.Vantage)
			i, ok := byRole[role]
			if !ok {
				i = len(c.Nodes)
				byRole[role] = i
				c.Nodes = append(c.Nodes, ContextNode{Role: role})
			}
			n := &c.Nodes[i]
			n.Hostname = cmpOr(n.Hostname, f.Hostname)
			n.Kernel = cmpOr(n.Kernel, f.Kernel)
			n.Attach = append(n.Attach, cmpOr(f.Tool, f.Kind))
			c.Version = cmpOr(c.Version, f.Version)
		}
		sort.SliceStable(c.Nodes, func(i, j int) bool { return roleRank(c.Nodes[i].Role) < roleRank(c.Nodes[j].Role) })
		return c
	}
	c.Environment, c.Version, c.Status, c.Emulation = m.Environment, m.Version, m.Status, m.Emulation
	if !m.Started.IsZero() {
		c.Started = m.Started.UTC().Format(time.RFC3339)
	}
	if l := m.Lab; l != nil {
		switch l.Kind {
		case "kvm":
			c.LabKind = "KVM lab"
		default:
			c.LabKind = "namespace lab"
		}
		if m.Emulation != "" {
			c.LabKind += " (emulated, TCG)"
		}
		c.Wire = labWire(l)
	} else if m.Emulation != "" {
		c.LabKind = "emulated machines"
	}
	for _, n := range m.Nodes {
		cn := ContextNode{Role: n.Role, Hostname: n.Hostname, Kernel: n.Kernel}
		for _, t := range n.Tracers {
			methods := map[string]int{}
			var order []string
			for _, p := range t.Probes {
				stage, rest, _ := strings.Cut(p, "=")
				method, _, _ := strings.Cut(rest, ":")
				if strings.HasPrefix(rest, "unavailable") {
					method = "unavailable"
				}
				if methods[method] == 0 {
					order = append(order, method)
				}
				methods[method]++
				cn.Probes = append(cn.Probes, t.Tool+" "+stage+"="+rest)
			}
			var parts []string
			for _, k := range order {
				parts = append(parts, fmt.Sprintf("%s ×%d", k, methods[k]))
			}
			a := t.Tool + ": "
			switch {
			case len(parts) > 0:
				a += strings.Join(parts, ", ")
			case t.State != "" && t.State != "ok":
				a += t.State
			default:
				a += "no probe list"
			}
			cn.Attach = append(cn.Attach, a)
		}
		c.Nodes = append(c.Nodes, cn)
	}
	sort.SliceStable(c.Nodes, func(i, j int) bool { return roleRank(c.Nodes[i].Role) < roleRank(c.Nodes[j].Role) })
	return c
}

func labWire(l *manifest.Lab) string {
	var parts []string
	if l.VMLink != "" {
		parts = append(parts, "VM link "+l.VMLink)
	}
	w := "wire " + cmpOr(l.Wire, "?")
	if l.WireDelay != "" {
		w += ", delay " + l.WireDelay
	}
	if l.WireJitter != "" {
		w += ", jitter ±" + l.WireJitter
	}
	if l.WireLoss != 0 {
		w += fmt.Sprintf(", loss %g %%", l.WireLoss)
	}
	return strings.Join(append(parts, w), ", ")
}

// vantageRole maps an analysis vantage name to the machine role.
func vantageRole(v string) string {
	switch {
	case strings.HasPrefix(v, "sender VM"):
		return manifest.RoleSenderVM
	case strings.HasPrefix(v, "receiver VM"):
		return manifest.RoleReceiverVM
	case strings.HasPrefix(v, "sender host"):
		return manifest.RoleSenderHost
	case strings.HasPrefix(v, "receiver host"):
		return manifest.RoleReceiverHost
	}
	return v
}

func roleRank(r string) int {
	for i, x := range []string{manifest.RoleSenderVM, manifest.RoleSenderHost, manifest.RoleReceiverHost, manifest.RoleReceiverVM} {
		if x == r {
			return i
		}
	}
	return 9
}

// Line is the context in one line, for the terminal and the page header.
func (c *Context) Line() string {
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, s)
		}
	}
	add(c.Environment)
	if c.Started != "" {
		if t, err := time.Parse(time.RFC3339, c.Started); err == nil {
			add(t.Format("2006-01-02 15:04 UTC"))
		}
	}
	switch {
	case c.LabKind != "" && c.Wire != "":
		add(c.LabKind + " (" + c.Wire + ")")
	case c.LabKind != "":
		add(c.LabKind)
	case c.Environment != "":
		add("real machines (not a pingpath lab)")
	}
	kernels := map[string][]string{}
	var order []string
	for _, n := range c.Nodes {
		if n.Kernel == "" {
			continue
		}
		if len(kernels[n.Kernel]) == 0 {
			order = append(order, n.Kernel)
		}
		kernels[n.Kernel] = append(kernels[n.Kernel], n.Role)
	}
	for _, k := range order {
		if len(kernels[k]) == len(c.Nodes) && len(order) == 1 {
			add("kernel " + k + " on every node")
		} else {
			add("kernel " + k + " on " + strings.Join(kernels[k], ", "))
		}
	}
	add(c.Source)
	if c.Version != "" {
		add("pingpath " + c.Version)
	}
	return strings.Join(parts, " · ")
}
