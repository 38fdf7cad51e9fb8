// Package tracer is what every pingpath tracer shares: the probe ladder (which
// attach method observes each stage on this kernel), the in-kernel filter
// configuration, loading and attaching a bpf2go collection, the ring-buffer
// event loop, per-ping correlation, the record/text output and the lifecycle
// (ready line, signals, --duration, --max-duration, stdin EOF, trailer).
//
// A tracer (internal/tracer/vm, .../host, ...) declares its stages as data and
// implements Tool; Run does the rest. See docs/tracers.md ("Writing a tracer").
package tracer

import (
	"fmt"
	"strings"

	"github.com/pingpath/pingpath/internal/record"
)

// Method is a way of attaching a BPF program to the kernel.
type Method string

// Attach methods, best first. A stage's ladder lists its rungs in this order.
const (
	Fentry Method = "fentry" // BPF trampoline on a BTF function (cheapest, needs BTF + trampolines)
	// TpBTF is a raw tracepoint whose arguments the kernel types through
	// its BTF ("tp_btf", 5.5+): the program reads kernel structs with plain
	// loads instead of bpf_probe_read_kernel, like fentry, but needs no
	// trampoline. Needs the kernel's own BTF (not a --btf file).
	TpBTF         Method = "tp_btf"
	Kprobe        Method = "kprobe"         // kprobe on a kernel function (needs CONFIG_KPROBES)
	Tracepoint    Method = "tracepoint"     // classic tracepoint "group/name" (needs tracefs)
	RawTracepoint Method = "raw_tracepoint" // raw tracepoint "name" (no tracefs needed)
)

// Probe values accepted by --probe.
const (
	ProbeAuto       = "auto"
	ProbeFentry     = "fentry"
	ProbeKprobe     = "kprobe"
	ProbeTpBTF      = "tp_btf"
	ProbeTracepoint = "tracepoint" // forces tracepoint or raw_tracepoint rungs (untyped)
)

// ParseProbe validates a --probe value.
func ParseProbe(s string) (string, error) {
	switch s {
	case ProbeAuto, ProbeFentry, ProbeTpBTF, ProbeKprobe, ProbeTracepoint:
		return s, nil
	case "":
		return ProbeAuto, nil
	}
	return "", fmt.Errorf("--probe %q: want auto, fentry, tp_btf, kprobe or tracepoint", s)
}

// rungFamily maps a method to the --probe value that forces it.
func rungFamily(m Method) string {
	if m == RawTracepoint {
		return ProbeTracepoint
	}
	return string(m)
}

// Hook is one BPF program attached to one kernel target.
type Hook struct {
	// Target is the function name (fentry, kprobe), "group/name"
	// (tracepoint) or tracepoint name (raw_tracepoint).
	Target string
	// Program is the name of the BPF program (the C function) in the
	// collection. One program may serve several targets.
	Program string
}

// Rung is one way of observing a stage. A rung with several hooks attaches
// every hook whose target exists on this kernel (e.g. ip_local_out and
// __ip_local_out); it is usable when at least one exists.
type Rung struct {
	Method Method
	Hooks  []Hook
	// Note says what the hook sees, for docs and the header's reason field
	// (e.g. "syscall entry: includes socket, route lookup and skb build").
	Note string
}

// Stage is a named instant of a ping's path and the ladder of rungs that can
// observe it, best first.
type Stage struct {
	Name  string
	Rungs []Rung
	// Required stages make the tracer fail to start when no rung works;
	// others are reported unavailable and their durations are left out.
	Required bool
}

// Capabilities is what the running kernel offers, as data so that Select can
// be tested on fabricated kernels. kernel.Probe fills it on a real one.
type Capabilities struct {
	// Methods maps each attach method to "" when usable or the reason it is
	// not. A method missing from the map is not usable.
	Methods map[Method]string
	// Targets maps method → target → present on this kernel (function in BTF
	// for fentry, traceable symbol for kprobe, tracepoint for the others).
	Targets map[Method]map[string]bool
	// Unusable maps method → target → why a target this kernel has cannot
	// be used with that method (e.g. an fentry program on it would never
	// run); such targets are absent from Targets.
	Unusable map[Method]map[string]string
}

func (c Capabilities) methodReason(m Method) string {
	r, ok := c.Methods[m]
	if !ok {
		return "not supported by this kernel"
	}
	return r
}

func (c Capabilities) has(m Method, target string) bool { return c.Targets[m][target] }

// Choice is the rung chosen for a stage, with only the hooks whose targets
// exist, or Available=false and the reason.
type Choice struct {
	Stage     string
	Available bool
	Rung      Rung
	Reason    string
}

// Probe converts the choice to the header's record.Probe.
func (c Choice) Probe() record.Probe {
	p := record.Probe{Stage: c.Stage, Available: c.Available, Reason: c.Reason}
	if c.Available {
		p.Method = string(c.Rung.Method)
		targets := make([]string, len(c.Rung.Hooks))
		for i, h := range c.Rung.Hooks {
			targets[i] = h.Target
		}
		p.Target = strings.Join(targets, "+")
	}
	return p
}

// present returns the rung restricted to hooks whose target exists, or the
// reason it cannot be used.
func (c Capabilities) present(r Rung) (Rung, string) {
	if why := c.methodReason(r.Method); why != "" {
		return Rung{}, fmt.Sprintf("%s: %s", r.Method, why)
	}
	out := Rung{Method: r.Method, Note: r.Note}
	var missing, unusable []string
	for _, h := range r.Hooks {
		switch {
		case c.has(r.Method, h.Target):
			out.Hooks = append(out.Hooks, h)
		case c.Unusable[r.Method][h.Target] != "":
			unusable = append(unusable, c.Unusable[r.Method][h.Target])
		default:
			missing = append(missing, h.Target)
		}
	}
	if len(out.Hooks) == 0 {
		var why []string
		if len(missing) > 0 {
			why = append(why, strings.Join(missing, ", ")+" not found")
		}
		return Rung{}, fmt.Sprintf("%s: %s", r.Method, strings.Join(append(why, unusable...), "; "))
	}
	return out, ""
}

// absent reports whether none of the stage's hook targets exists on this
// kernel by any method: an optional stage of a module that is not loaded
// (the host tracer's OVS upcall where openvswitch is not).
func (c Capabilities) absent(st Stage) bool {
	for _, r := range st.Rungs {
		for _, h := range r.Hooks {
			if c.has(r.Method, h.Target) || c.Unusable[r.Method][h.Target] != "" {
				return false
			}
		}
	}
	return true
}

// Select picks a rung for every stage.
//
// probe "auto" (or "") takes the first usable rung of each stage. A forced
// probe (fentry, kprobe, tracepoint) takes that rung for every stage that has
// one, and fails when such a rung exists but cannot work here (a forced run
// must never silently test something else). A stage without a rung of the
// forced family falls back to its own best usable rung, and its reason says
// so. A stage with no usable rung is unavailable, or an error when Required;
// an optional stage none of whose targets exists is unavailable under a
// forced probe too.
func Select(stages []Stage, caps Capabilities, probe string) ([]Choice, error) {
	probe, err := ParseProbe(probe)
	if err != nil {
		return nil, err
	}
	choices := make([]Choice, 0, len(stages))
	for _, st := range stages {
		ch, err := selectStage(st, caps, probe)
		if err != nil {
			return nil, err
		}
		choices = append(choices, ch)
	}
	return choices, nil
}

func selectStage(st Stage, caps Capabilities, probe string) (Choice, error) {
	var prefix string
	if probe != ProbeAuto {
		var failed []string
		for _, r := range st.Rungs {
			if rungFamily(r.Method) != probe {
				continue
			}
			got, why := caps.present(r)
			if why == "" {
				return Choice{Stage: st.Name, Available: true, Rung: got, Reason: joinReason("forced --probe "+probe, r.Note)}, nil
			}
			failed = append(failed, why)
		}
		if len(failed) > 0 {
			if !st.Required && caps.absent(st) {
				// Nothing of the stage exists on this kernel (its module
				// is not loaded): no rung could run, so forcing one cannot
				// make it test something else.
				return Choice{Stage: st.Name, Reason: fmt.Sprintf("--probe %s forced; nothing to attach to on this kernel: %s", probe, strings.Join(failed, "; "))}, nil
			}
			return Choice{}, fmt.Errorf("stage %s: --probe %s forced but %s", st.Name, probe, strings.Join(failed, "; "))
		}
		prefix = fmt.Sprintf("no %s rung for this stage", probe)
	}
	var skipped []string
	for _, r := range st.Rungs {
		got, why := caps.present(r)
		if why != "" {
			skipped = append(skipped, why)
			continue
		}
		reason := prefix
		if len(skipped) > 0 {
			reason = joinReason(reason, "skipped "+strings.Join(skipped, "; "))
		}
		reason = joinReason(reason, r.Note)
		return Choice{Stage: st.Name, Available: true, Rung: got, Reason: reason}, nil
	}
	reason := "no usable rung"
	if len(st.Rungs) == 0 {
		reason = "not observable on any attach method"
	} else if len(skipped) > 0 {
		reason += ": " + strings.Join(skipped, "; ")
	}
	if st.Required {
		return Choice{}, fmt.Errorf("stage %s: %s", st.Name, reason)
	}
	return Choice{Stage: st.Name, Reason: reason}, nil
}

// Targets lists every (method, target) the stages mention, for probing only
// what a tracer needs.
func Targets(stages []Stage) map[Method][]string {
	out := map[Method][]string{}
	seen := map[Method]map[string]bool{}
	for _, st := range stages {
		for _, r := range st.Rungs {
			if seen[r.Method] == nil {
				seen[r.Method] = map[string]bool{}
			}
			for _, h := range r.Hooks {
				if !seen[r.Method][h.Target] {
					seen[r.Method][h.Target] = true
					out[r.Method] = append(out[r.Method], h.Target)
				}
			}
		}
	}
	return out
}

func joinReason(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
